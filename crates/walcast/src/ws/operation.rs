//! Running one GraphQL operation of a socket: a subscription streams, a query or mutation
//! answers once; both end with `complete`.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use juniper::http::GraphQLResponse;
use juniper::{
    DefaultScalarValue, GraphQLError, InputValue, OperationType, ValidatedOperation, Value,
};
use serde_json::json;
use tokio::sync::mpsc;
use walcast_graphql::{
    hints, Ctx, MutationRoot, PayloadGroups, QueryRoot, Schema, Sharing, SubscriptionRoot,
};

use super::protocol::{Request, ServerMsg};
use super::session::{OpEvent, Out};

/// The `errors` list of a request-level error.
pub fn errors_json(e: GraphQLError) -> serde_json::Value {
    let resp: GraphQLResponse<DefaultScalarValue> = GraphQLResponse::from_result(Err(e));
    serde_json::to_value(&resp)
        .ok()
        .and_then(|v| v.get("errors").cloned())
        .unwrap_or_else(|| json!([{"message": "invalid request"}]))
}

pub fn variables(req: &Request) -> Result<juniper::Variables<DefaultScalarValue>, String> {
    match &req.variables {
        None => Ok(Default::default()),
        Some(v) => {
            let input: InputValue<DefaultScalarValue> =
                serde_json::from_value(v.clone()).map_err(|e| format!("variables: {e}"))?;
            Ok(input
                .to_object_value()
                .map(|o| {
                    o.into_iter()
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default())
        }
    }
}

/// Parses and validates the operation, then weighs it (`WALCAST_MAX_OPERATION_COST`): an
/// operation over the limit is refused before anything runs.
pub fn validate<'a>(
    schema: &'a Schema,
    req: &'a Request,
    vars: &juniper::Variables<DefaultScalarValue>,
    ctx: &Ctx,
) -> Result<ValidatedOperation<'a, QueryRoot, MutationRoot, SubscriptionRoot>, GraphQLError> {
    let name = req.operation_name.as_deref();
    let op = ValidatedOperation::new(&req.query, name, schema).map_err(hints::explain)?;
    walcast_graphql::cost::check(
        schema,
        &req.query,
        name,
        vars,
        ctx.limits.max_operation_cost,
    )?;
    Ok(op)
}

/// Where an operation's messages go: events straight to the connection's writer (one hop, not
/// two, per event); its start and its end to the session too, which tracks them.
pub(super) struct Outlet {
    pub(super) messages: mpsc::Sender<Out>,
    pub(super) events: mpsc::Sender<OpEvent>,
}

impl Outlet {
    /// Sends a message that goes out once per operation (start, end, errors), and tells the
    /// session. The send futures are boxed: every await of an unboxed one takes its own room in
    /// this task's state, which lives as long as the subscription; only the per-event send is
    /// worth keeping inline.
    async fn once(&self, msg: ServerMsg) -> Result<(), ()> {
        match msg {
            // Through the session, which forgets the operation before the client can see its
            // end (and reuse its id); every `next` is already queued ahead of it.
            ServerMsg::Complete { .. } | ServerMsg::Error { .. } => {
                Box::pin(self.events.send(OpEvent::Ended(msg)))
                    .await
                    .map_err(|_| ())
            }
            ServerMsg::Started { ref id } => {
                let started = OpEvent::Started(id.clone());
                Box::pin(self.messages.send(Out::Msg(msg)))
                    .await
                    .map_err(|_| ())?;
                Box::pin(self.events.send(started)).await.map_err(|_| ())
            }
            msg => Box::pin(self.messages.send(Out::Msg(msg)))
                .await
                .map_err(|_| ()),
        }
    }
}

/// Runs the operation, sending its messages to `out`. Returns when the operation is complete
/// or the connection is gone.
pub(super) async fn run(
    schema: Arc<Schema>,
    mut ctx: Ctx,
    groups: Arc<PayloadGroups>,
    id: String,
    req: Request,
    out: Outlet,
) {
    let error = |errors| ServerMsg::Error {
        id: id.clone(),
        errors,
    };
    let vars = match variables(&req) {
        Ok(v) => v,
        Err(message) => {
            let _ = out.once(error(json!([{ "message": message }]))).await;
            return;
        }
    };
    // Boxed, and the big futures below too: this task lives as long as the subscription, and its
    // state is as large as its largest await, so only pointers stay in it.
    let op = match validate(&schema, &req, &vars, &ctx) {
        Ok(op) => Box::new(op),
        Err(e) => {
            let _ = out.once(error(errors_json(e))).await;
            return;
        }
    };
    if op.operation_type() != OperationType::Subscription {
        let result = Box::pin(op.execute(&vars, &ctx)).await;
        Box::pin(ctx.reads.finish()).await;
        let payload = match result {
            Ok(result) => serde_json::to_value(GraphQLResponse::from_result(Ok(result))),
            Err(e) => {
                let _ = out.once(error(errors_json(e))).await;
                return;
            }
        };
        let payload = payload.unwrap_or_else(|e| json!({"errors": [{"message": e.to_string()}]}));
        let payload: walcast_graphql::Payload = payload.to_string().into();
        let next = ServerMsg::Next {
            id: id.clone(),
            payload: payload.clone(),
        };
        if out.once(next).await.is_ok() {
            let complete = ServerMsg::Complete {
                id,
                result: Some(payload),
            };
            let _ = out.once(complete).await;
        }
        return;
    }
    // Subscriptions of this operation share event payloads with identical ones elsewhere: the
    // schema (view shape and catalog), the document, the operation name and the variables
    // decide the output together with the caller's access, which joins the key per event.
    ctx.sharing = Some(Arc::new(Sharing {
        groups,
        operation: format!(
            "{:x}\u{0}{}\u{0}{}\u{0}{}",
            Arc::as_ptr(&schema) as usize,
            req.query,
            req.operation_name.as_deref().unwrap_or(""),
            req.variables
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
    }));
    let resolved = Box::pin(op.resolve_into_stream(&vars, &ctx)).await;
    // The streams own what they need (juniper's owned executor copies the selection): the parsed
    // document and the variables would otherwise stay for the life of the subscription.
    drop(op);
    drop(vars);
    let (value, errors) = match resolved {
        Ok(r) => r,
        Err(e) => {
            let _ = out.once(error(errors_json(e))).await;
            return;
        }
    };
    // An error before any stream exists (a bad filter, an expired cursor) ends the operation.
    if !errors.is_empty() {
        let resp = GraphQLResponse::from_result(Ok((Value::<DefaultScalarValue>::null(), errors)));
        let errs = serde_json::to_value(&resp)
            .ok()
            .and_then(|v| v.get("errors").cloned())
            .unwrap_or_else(|| json!([]));
        let _ = out.once(error(errs)).await;
        return;
    }
    let Value::Object(fields) = value else {
        let _ = out
            .once(error(json!([{"message": "subscription has no fields"}])))
            .await;
        return;
    };
    let streams: Vec<_> = fields
        .into_iter()
        .filter_map(|(name, v)| match v {
            Value::Scalar(s) => Some(s.map(move |item| (name.clone(), item)).boxed()),
            _ => None,
        })
        .collect();
    if out
        .once(ServerMsg::Started { id: id.clone() })
        .await
        .is_err()
    {
        return;
    }
    let mut merged = stream::select_all(streams);
    while let Some((name, item)) = merged.next().await {
        // The stream leaves each event's serialised payload in the outbox.
        let payload = match (item, ctx.outbox.take()) {
            (Ok(_), Some(payload)) => payload,
            (Ok(_), None) => {
                json!({"data": { name.as_str(): null }, "errors": [{"message": "event payload missing"}]})
                    .to_string()
                    .into()
            }
            (Err(errs), _) => json!({
                "data": { name.as_str(): null },
                "errors": serde_json::to_value(&errs).unwrap_or_else(|_| json!([])),
            })
            .to_string()
            .into(),
        };
        let next = ServerMsg::Next {
            id: id.clone(),
            payload,
        };
        if out.messages.send(Out::Msg(next)).await.is_err() {
            return;
        }
    }
    let _ = out.once(ServerMsg::Complete { id, result: None }).await;
}
