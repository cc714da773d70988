//! An operation from its request to its last message.

use std::sync::Arc;
use std::task::Poll;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use juniper::http::GraphQLResponse;
use juniper::{
    DefaultScalarValue, ExecutionError, OperationType, ValidatedOperation, Value, Variables,
};
use serde_json::json;
use walcast_graphql::{
    Ctx, MutationRoot, Payload, PayloadGroups, QueryRoot, Schema, Sharing, SubscriptionRoot,
};

use super::error::{Disconnected, OperationError};
use super::outlet::Outlet;
use crate::request::{validate, variables, Request};
use crate::ws::protocol::ServerMsg;

type Operation<'a> = ValidatedOperation<'a, QueryRoot, MutationRoot, SubscriptionRoot>;
/// A subscription's root fields, each a stream of its name and results.
type Streams<'a> = Vec<
    BoxStream<
        'a,
        (
            String,
            Result<Value, Vec<ExecutionError<DefaultScalarValue>>>,
        ),
    >,
>;

/// Runs the operation, sending its messages to `out`. Returns when the operation is complete
/// or the connection is gone.
pub async fn run(
    schema: Arc<Schema>,
    ctx: Ctx,
    groups: Arc<PayloadGroups>,
    id: String,
    req: Request,
    out: Outlet,
) {
    // A connection that is gone has nobody left to tell.
    let _ = execute(schema, ctx, groups, id, req, out).await;
}

async fn execute(
    schema: Arc<Schema>,
    mut ctx: Ctx,
    groups: Arc<PayloadGroups>,
    id: String,
    req: Request,
    out: Outlet,
) -> Result<(), Disconnected> {
    let vars = match variables(&req) {
        Ok(v) => v,
        Err(e) => return out.fail(&id, e.into()).await,
    };
    // Boxed, and the big futures below too: this task lives as long as the subscription, and its
    // state is as large as its largest await, so only pointers stay in it.
    let op = match validate(&schema, &req, &vars, &ctx) {
        Ok(op) => Box::new(op),
        Err(e) => return out.fail(&id, e.into()).await,
    };
    if op.operation_type() != OperationType::Subscription {
        return Box::pin(answer(&op, &vars, &ctx, id, &out)).await;
    }
    ctx.sharing = Some(Arc::new(sharing(&schema, &req, groups)));
    let streams = match Box::pin(subscribe(op, vars, &ctx)).await {
        Ok(streams) => streams,
        Err(e) => return out.fail(&id, e).await,
    };
    out.once(ServerMsg::Started { id: id.clone() }).await?;
    forward(streams, &ctx, &id, &out).await?;
    out.once(ServerMsg::Complete { id, result: None }).await
}

/// A query or mutation: its result, then `complete` (which repeats it where the protocol does).
async fn answer(
    op: &Operation<'_>,
    vars: &Variables<DefaultScalarValue>,
    ctx: &Ctx,
    id: String,
    out: &Outlet,
) -> Result<(), Disconnected> {
    let result = Box::pin(op.execute(vars, ctx)).await;
    Box::pin(ctx.reads.finish()).await;
    let payload = match result {
        Ok(result) => serde_json::to_value(GraphQLResponse::from_result(Ok(result))),
        Err(e) => return out.fail(&id, e.into()).await,
    };
    let payload = payload.unwrap_or_else(|e| json!({"errors": [{"message": e.to_string()}]}));
    let payload: Payload = payload.to_string().into();
    let next = ServerMsg::Next {
        id: id.clone(),
        payload: payload.clone(),
    };
    out.once(next).await?;
    let complete = ServerMsg::Complete {
        id,
        result: Some(payload),
    };
    out.once(complete).await
}

/// What the operation's subscriptions share event payloads by, with identical ones elsewhere:
/// the schema (view shape and catalog), the document, the operation name and the variables
/// decide the output together with the caller's access, which joins the key per event.
fn sharing(schema: &Arc<Schema>, req: &Request, groups: Arc<PayloadGroups>) -> Sharing {
    Sharing {
        groups,
        operation: format!(
            "{:x}\u{0}{}\u{0}{}\u{0}{}",
            Arc::as_ptr(schema) as usize,
            req.query,
            req.operation_name.as_deref().unwrap_or(""),
            req.variables
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ),
    }
}

/// The subscription's streams. The operation and the variables go when this returns: the
/// streams own what they need (juniper's owned executor copies the selection), and the parsed
/// document would otherwise stay for the life of the subscription.
async fn subscribe<'a>(
    op: Box<Operation<'a>>,
    vars: Variables<DefaultScalarValue>,
    ctx: &'a Ctx,
) -> Result<Streams<'a>, OperationError> {
    let (value, errors) = op.resolve_into_stream(&vars, ctx).await?;
    // An error before any stream exists (a bad filter, an expired cursor) ends the operation.
    if !errors.is_empty() {
        let resp = GraphQLResponse::from_result(Ok((Value::<DefaultScalarValue>::null(), errors)));
        let errors = serde_json::to_value(&resp)
            .ok()
            .and_then(|v| v.get("errors").cloned())
            .unwrap_or_else(|| json!([]));
        return Err(OperationError::Fields(errors));
    }
    let Value::Object(fields) = value else {
        return Err(OperationError::NoFields);
    };
    Ok(fields
        .into_iter()
        .filter_map(|(name, v)| match v {
            Value::Scalar(s) => Some(s.map(move |item| (name.clone(), item)).boxed()),
            _ => None,
        })
        .collect())
}

/// The streams' items as they come, until every stream ended; the streams are polled in turn,
/// starting after the one that gave the last item.
///
/// Not `stream::select_all`: its `FuturesUnordered` wakes the operation each time it has
/// polled all of its streams (a fairness yield), after every event. The operations of a
/// connection share its writer task's own `FuturesUnordered`, which takes two such wakes as a
/// request to yield: the connection wrote every two messages instead of once per batch.
fn merge<'a, T: 'a>(streams: Vec<BoxStream<'a, T>>) -> impl Stream<Item = T> + Unpin + 'a {
    let mut streams: Vec<Option<BoxStream<'a, T>>> = streams.into_iter().map(Some).collect();
    let mut start = 0;
    stream::poll_fn(move |cx| {
        let n = streams.len();
        let mut open = 0;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(s) = streams[i].as_mut() else {
                continue;
            };
            match s.poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => {
                    // The streams after it are polled at the next call, which follows at once.
                    start = (i + 1) % n;
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => streams[i] = None,
                Poll::Pending => open += 1,
            }
        }
        if open == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    })
}

/// Every event of the streams, as `next` messages, until they end.
async fn forward(
    streams: Streams<'_>,
    ctx: &Ctx,
    id: &str,
    out: &Outlet,
) -> Result<(), Disconnected> {
    let mut merged = merge(streams);
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
            id: id.to_owned(),
            payload,
        };
        out.next(next).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::testing::Wakes;
    use futures::channel::mpsc;
    use std::sync::Arc;
    use std::task::{Context, Waker};

    #[test]
    fn merge_gives_every_item_of_every_stream_and_ends_with_the_last() {
        let (a, ra) = mpsc::unbounded::<u32>();
        let (b, rb) = mpsc::unbounded::<u32>();
        let mut merged = merge(vec![ra.boxed(), rb.boxed()]);
        for i in 0..3 {
            a.unbounded_send(i).expect("send a");
            b.unbounded_send(10 + i).expect("send b");
        }
        drop(a);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        while let Poll::Ready(Some(i)) = merged.poll_next_unpin(&mut cx) {
            got.push(i);
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 10, 11, 12]);
        assert_eq!(wakes.count(), 0);
        b.unbounded_send(13).expect("send b");
        assert_eq!(wakes.count(), 1, "the open stream wakes the merge");
        assert_eq!(merged.poll_next_unpin(&mut cx), Poll::Ready(Some(13)));
        drop(b);
        assert_eq!(merged.poll_next_unpin(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_waiting_merge_does_not_wake_its_operation() {
        let (tx, rx) = mpsc::unbounded::<u32>();
        let mut merged = merge(vec![rx.boxed()]);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        for i in 0..3 {
            tx.unbounded_send(i).expect("send");
            assert_eq!(merged.poll_next_unpin(&mut cx), Poll::Ready(Some(i)));
            assert_eq!(merged.poll_next_unpin(&mut cx), Poll::Pending);
        }
        // One wake per item sent while it waited; none of its own: the writer running the
        // operation takes a wake during a poll as a request to yield.
        assert_eq!(wakes.count(), 2);
    }
}
