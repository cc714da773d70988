//! GraphQL over HTTP POST.

use std::sync::Arc;

use bytes::Bytes;
use juniper::http::GraphQLResponse;
use serde_json::json;
use warp::http::StatusCode;
use warp::Reply;

use crate::app::App;
use crate::auth::{AuthError, Identity, TokenSources};
use crate::config::AuthMode;
use crate::request::{errors_json, validate, variables, Request};

fn json_reply(status: StatusCode, body: serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

pub async fn post(
    authorization: Option<String>,
    body: Bytes,
    app: Arc<App>,
) -> warp::reply::Response {
    // A header that is there but not `Bearer <token>` is a mistake to report, not an anonymous
    // request.
    let token = match TokenSources::from_header(authorization.as_deref()).find() {
        Err(e) if app.cfg.auth != AuthMode::Public => {
            return json_reply(
                StatusCode::UNAUTHORIZED,
                json!({"errors": [{"message": e.to_string()}]}),
            )
        }
        Ok(token) => token,
        Err(_) => None,
    };
    let who = match (app.cfg.auth, token) {
        (AuthMode::Public, _) => Identity::public(),
        (_, Some(token)) => match app.auth.load().verify(&token) {
            Ok(who) => who,
            Err(e) => {
                return json_reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"errors": [{"message": e.to_string()}]}),
                )
            }
        },
        // Strict mode refuses anonymous requests, as it refuses anonymous sockets.
        (AuthMode::Strict, None) => {
            return json_reply(
                StatusCode::UNAUTHORIZED,
                json!({"errors": [{"message": AuthError::Missing.to_string()}]}),
            )
        }
        (_, None) => Identity::public(),
    };
    let req: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": format!("body is not JSON: {e}")}]}),
            )
        }
    };
    let Some(query) = req.get("query").and_then(|q| q.as_str()) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "missing \"query\""}]}),
        );
    };
    let request = Request {
        query: query.to_owned(),
        variables: req.get("variables").filter(|v| !v.is_null()).cloned(),
        operation_name: req
            .get("operationName")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    let vars = match variables(&request) {
        Ok(v) => v,
        Err(e) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": e.to_string()}]}),
            )
        }
    };
    let access = app.access(&who);
    let schema = app.schemas.load().for_view(&access);
    let access = Arc::new(arc_swap::ArcSwap::from_pointee(access));
    let ctx = app.context(access, None);
    let op = match validate(&schema, &request, &vars, &ctx) {
        Ok(op) => op,
        Err(e) => return json_reply(StatusCode::BAD_REQUEST, json!({ "errors": errors_json(e) })),
    };
    let result = op.execute(&vars, &ctx).await;
    // Ends the read transaction, so its connection goes back to the pool clean.
    ctx.reads.finish().await;
    match result {
        Ok(result) => {
            let resp = GraphQLResponse::from_result(Ok(result));
            json_reply(
                StatusCode::OK,
                serde_json::to_value(&resp).unwrap_or_default(),
            )
        }
        Err(e) => json_reply(StatusCode::BAD_REQUEST, json!({ "errors": errors_json(e) })),
    }
}
