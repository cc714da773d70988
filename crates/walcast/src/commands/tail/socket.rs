//! `walcast tail` against a running walcast: a graphql-transport-ws client that asks the schema
//! for the table's columns, then subscribes to `<table>_mutated(where:, after:)`.

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use ws_stream::tungstenite::client::IntoClientRequest;
use ws_stream::tungstenite::http::HeaderValue;
use ws_stream::tungstenite::Message;
use ws_stream::{MaybeTlsStream, WebSocketStream};

use super::{print_line, progress, TailError};
use crate::commands::stopped;
use crate::config::TailArgs;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TYPE_REF: &str = "kind name ofType { kind name ofType { kind name ofType { kind name } } }";

pub async fn run(
    args: &TailArgs,
    filter: Option<Value>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if !args.url.starts_with("ws://") {
        return Err(TailError::NotWebSocket(args.url.clone()).into());
    }
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .with_context(|| format!("{} is not a WebSocket URL", args.url))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = ws_stream::connect_async(request)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;

    let payload = match &args.token {
        Some(token) => json!({ "access_token": token }),
        None => json!({}),
    };
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": payload }),
    )
    .await?;
    loop {
        let msg = recv(&mut ws).await?;
        match msg["type"].as_str() {
            Some("connection_ack") => break,
            Some("ping") => send(&mut ws, json!({ "type": "pong" })).await?,
            _ => bail!("unexpected message before connection_ack: {msg}"),
        }
    }

    let table = args.table.replace('.', "_");
    let columns = columns(&mut ws, &table).await?;
    let query = format!(
        "subscription Tail($where: {table}WhereInput, $after: String) {{ \
         {table}_mutated(where: $where, after: $after) {{ key event cursor commitTime{} }} }}",
        if columns.is_empty() {
            String::new()
        } else {
            format!(" data {{ {} }}", columns.join(" "))
        }
    );
    send(
        &mut ws,
        json!({
            "id": "tail",
            "type": "subscribe",
            "payload": { "query": query, "variables": { "where": filter, "after": args.after } },
        }),
    )
    .await?;
    progress(&format!(
        "subscribed to {table}_mutated at {}; Ctrl-C ends",
        args.url
    ));

    let field = format!("{table}_mutated");
    let mut stop_fut = std::pin::pin!(stopped(stop));
    loop {
        let msg = tokio::select! {
            msg = recv(&mut ws) => msg?,
            () = &mut stop_fut => {
                let _ = send(&mut ws, json!({ "id": "tail", "type": "complete" })).await;
                let _ = ws.close(None).await;
                return Ok(());
            }
        };
        match msg["type"].as_str() {
            Some("next") => {
                let payload = &msg["payload"];
                if let Some(errors) = payload.get("errors").filter(|e| !e.is_null()) {
                    if payload["data"].is_null() {
                        bail!("{}", messages(errors));
                    }
                    progress(&format!("field errors: {}", messages(errors)));
                }
                print_line(&payload["data"][&field])?;
            }
            Some("error") => bail!("{}", messages(&msg["payload"])),
            Some("complete") => return Ok(()),
            Some("ping") => send(&mut ws, json!({ "type": "pong" })).await?,
            _ => {}
        }
    }
}

/// The scalar columns of the table's `data`, in schema order, from a query over the socket.
async fn columns(ws: &mut Socket, table: &str) -> anyhow::Result<Vec<String>> {
    let query = format!(
        "query($n: String!) {{ __type(name: $n) {{ fields {{ name type {{ kind name \
         fields {{ name type {{ {TYPE_REF} }} }} }} }} }} }}"
    );
    send(
        ws,
        json!({
            "id": "columns",
            "type": "subscribe",
            "payload": { "query": query, "variables": { "n": format!("{table}_mutated") } },
        }),
    )
    .await?;
    let mut found = None;
    loop {
        let msg = recv(ws).await?;
        match (msg["type"].as_str(), msg["id"].as_str()) {
            (Some("next"), Some("columns")) => found = Some(msg["payload"].clone()),
            (Some("error"), Some("columns")) => bail!("{}", messages(&msg["payload"])),
            (Some("complete"), Some("columns")) => break,
            (Some("ping"), _) => send(ws, json!({ "type": "pong" })).await?,
            _ => {}
        }
    }
    let payload = found.ok_or_else(|| anyhow!("no answer to the schema query"))?;
    if let Some(errors) = payload.get("errors").filter(|e| !e.is_null()) {
        bail!("{}", messages(errors));
    }
    let Some(fields) = payload["data"]["__type"]["fields"].as_array() else {
        bail!(
            "this walcast has no table {table} for this token (no {table}_mutated in its schema; `walcast schema` lists them)"
        );
    };
    let data = fields
        .iter()
        .find(|f| f["name"] == "data")
        .map(|f| &f["type"]["fields"]);
    Ok(data
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter(|c| is_scalar(&c["type"]))
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// A scalar or enum, possibly non-null, but not a list or an object.
fn is_scalar(ty: &Value) -> bool {
    match ty["kind"].as_str() {
        Some("NON_NULL") => is_scalar(&ty["ofType"]),
        Some("SCALAR") | Some("ENUM") => true,
        _ => false,
    }
}

fn messages(errors: &Value) -> String {
    match errors.as_array() {
        Some(list) => list
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("error").to_owned())
            .collect::<Vec<_>>()
            .join("; "),
        None => errors.to_string(),
    }
}

async fn send(ws: &mut Socket, value: Value) -> anyhow::Result<()> {
    ws.send(Message::text(value.to_string()))
        .await
        .context("writing to the WebSocket")
}

/// The next JSON message; an error when the socket closes or sends something else.
async fn recv(ws: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            None => bail!("the WebSocket ended"),
            Some(Err(e)) => return Err(anyhow!(e).context("reading the WebSocket")),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .with_context(|| format!("not JSON from the server: {}", text.as_str()));
            }
            Some(Ok(Message::Close(frame))) => match frame {
                Some(f) => bail!(
                    "the server closed the socket: {} {}",
                    u16::from(f.code),
                    f.reason
                ),
                None => bail!("the server closed the socket"),
            },
            Some(Ok(_)) => {}
        }
    }
}
