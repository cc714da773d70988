//! The root types: `Query` and `Subscription`, one set of fields per table.

use std::sync::Arc;

use futures::future::{self, BoxFuture};
use futures::StreamExt;
use juniper::{
    meta::MetaType, ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor,
    FieldError, GraphQLSubscriptionValue, GraphQLType, GraphQLValue, GraphQLValueAsync, Registry,
    Value, ValuesStream, ID,
};
use walcast_filter::{
    parse_mutated_limited, parse_subscription_where_limited, parse_where_limited, EventFilter,
    Limits,
};
use walcast_model::{Event, ResumePoint};

use crate::context::{Ctx, SubscriptionRequest};
use crate::info::{RootField, SchemaInfo, TableInfo};
use crate::input::{SubscriptionWhereInput, WhereInput};
use crate::objects::{MutatedObj, PayloadObj, RowObj};
use crate::query;
use crate::scalars::input_to_json;

fn arg_json(args: &Arguments<S>, name: &str) -> Option<serde_json::Value> {
    args.get_input_value(name)
        .map(|v| input_to_json(&v.item))
        .filter(|v| !v.is_null())
}

fn arg_string(args: &Arguments<S>, name: &str) -> Result<Option<String>, FieldError<S>> {
    match arg_json(args, name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("argument {name:?}: expected a String, found {other}").into()),
    }
}

pub struct QueryRoot;

impl GraphQLType<S> for QueryRoot {
    fn name(_: &SchemaInfo) -> Option<ArcStr> {
        Some(ArcStr::from("Query"))
    }

    fn meta(info: &SchemaInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let mut fields = vec![registry
            .field::<String>("_cursor", &())
            .description("The stream position now: pass it as `after:` to a subscription for a gapless snapshot and stream.")];
        for t in &info.tables {
            fields.push(
                registry
                    .field::<Vec<RowObj>>(t.name.clone(), t)
                    .argument(registry.arg::<Option<WhereInput>>("where", t))
                    .argument(registry.arg::<Option<Vec<String>>>("orderBy", &()))
                    .argument(registry.arg::<Option<i32>>("first", &()))
                    .argument(registry.arg::<Option<i32>>("skip", &()))
                    .description(format!("Rows of {}.", t.table.qualified_name())),
            );
            if t.id_column().is_some() {
                fields.push(
                    registry
                        .field::<Option<RowObj>>(t.by_id.clone(), t)
                        .argument(registry.arg::<ID>("id", &())),
                );
            }
        }
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl GraphQLValue<S> for QueryRoot {
    type Context = Ctx;
    type TypeInfo = SchemaInfo;

    fn type_name(&self, _: &SchemaInfo) -> Option<ArcStr> {
        Some(ArcStr::from("Query"))
    }

    fn concrete_type_name(&self, _: &Self::Context, info: &SchemaInfo) -> String {
        self.type_name(info)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }
}

impl GraphQLValueAsync<S> for QueryRoot {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a SchemaInfo,
        field: &'a str,
        args: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        if field == "_cursor" {
            return Box::pin(async move {
                let open = ex.context().reads.get().await?;
                let snapshot = open
                    .as_ref()
                    .map(|o| ResumePoint::Snapshot(o.snapshot.clone()).encode())
                    .unwrap_or_else(|| ex.context().events.cursor_now().encode());
                Ok(Value::scalar(snapshot))
            });
        }
        let Some((kind, t)) = info.root_field(field) else {
            return Box::pin(future::ready(Err(format!(
                "unknown field {field:?} on Query"
            )
            .into())));
        };
        Box::pin(async move {
            match kind {
                RootField::Table => {
                    let user = match arg_json(args, "where") {
                        Some(w) => parse_where_limited(
                            &info.catalog,
                            &t.table,
                            &w,
                            ex.context().limits.filters,
                        )
                        .map_err(|e| FieldError::from(e.to_string()))?,
                        None => walcast_filter::RowFilter::always(),
                    };
                    let user = crate::guard::confine(user, ex.context());
                    let filter = match ex.context().row_filter(t.table.oid) {
                        Some(role) => walcast_filter::RowFilter::All(vec![role, user]),
                        None => user,
                    };
                    let order = match arg_json(args, "orderBy") {
                        Some(serde_json::Value::Array(items)) => items
                            .into_iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect(),
                        Some(serde_json::Value::String(s)) => vec![s],
                        _ => vec![],
                    };
                    let first = args.get::<i32>("first")?;
                    let skip = args.get::<i32>("skip")?;
                    let rows = query::select(ex.context(), t, &filter, &order, first, skip).await?;
                    let events = crate::relations::query_batch(&t.table, rows, true);
                    let objs: Vec<RowObj> = events.iter().filter_map(|ev| RowObj::of(ev)).collect();
                    ex.resolve_async(&**t, &objs).await
                }
                RootField::ById => {
                    let id = args
                        .get::<ID>("id")?
                        .map(|i| i.to_string())
                        .unwrap_or_default();
                    let role = ex.context().row_filter(t.table.oid);
                    match query::by_id(ex.context(), t, &id, role.as_ref()).await? {
                        Some(row) => {
                            let events = crate::relations::query_batch(&t.table, vec![row], true);
                            match events.first().and_then(|ev| RowObj::of(ev)) {
                                Some(obj) => ex.resolve_async(&**t, &obj).await,
                                None => Ok(Value::null()),
                            }
                        }
                        None => Ok(Value::null()),
                    }
                }
                RootField::Mutated => Err(format!("unknown field {field:?} on Query").into()),
            }
        })
    }
}

pub struct SubscriptionRoot;

impl GraphQLType<S> for SubscriptionRoot {
    fn name(_: &SchemaInfo) -> Option<ArcStr> {
        Some(ArcStr::from("Subscription"))
    }

    fn meta(info: &SchemaInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let mut fields = Vec::new();
        for t in &info.tables {
            fields.push(
                registry
                    .field::<MutatedObj>(t.mutated.clone(), t)
                    .argument(registry.arg::<Option<String>>("event", &()).description(
                        "\"create\", \"update\", \"delete\" or \"truncate\"; all when absent.",
                    ))
                    .argument(registry.arg::<Option<WhereInput>>("where", t))
                    .argument(registry.arg::<Option<String>>("after", &()).description(
                        "A cursor: replay retained events after it, then continue live.",
                    ))
                    .description(format!(
                        "Committed changes of {}, Directus style.",
                        t.table.qualified_name()
                    )),
            );
            fields.push(
                registry
                    .field::<Option<PayloadObj>>(t.name.clone(), t)
                    .argument(registry.arg::<Option<SubscriptionWhereInput>>("where", t))
                    .argument(
                        registry
                            .arg::<Option<SubscriptionWhereInput>>("filter", t)
                            .description("Alias of `where` (Graphcool)."),
                    )
                    .argument(registry.arg::<Option<String>>("after", &()))
                    .description(format!(
                        "Committed changes of {}, Prisma 1 style.",
                        t.table.qualified_name()
                    )),
            );
        }
        if info.has_messages() {
            fields.push(crate::messages::field(registry));
        }
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl GraphQLValue<S> for SubscriptionRoot {
    type Context = Ctx;
    type TypeInfo = SchemaInfo;

    fn type_name(&self, _: &SchemaInfo) -> Option<ArcStr> {
        Some(ArcStr::from("Subscription"))
    }

    fn concrete_type_name(&self, _: &Self::Context, info: &SchemaInfo) -> String {
        self.type_name(info)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }
}

/// One event's response, as the socket layer sends it: a field that failed is null with its
/// error beside the rest of the event; an event that failed as a whole is null with its error.
fn event_payload(
    response: &str,
    value: Result<Value<S>, juniper::ExecutionError<S>>,
    field_errors: &[juniper::ExecutionError<S>],
) -> String {
    let errors_of = |errors: &[juniper::ExecutionError<S>]| -> Vec<serde_json::Value> {
        errors
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect()
    };
    let payload = match value {
        // Every event takes this path: written straight out, with no `serde_json::Value` tree
        // in between (the same bytes; `payload_written_directly_is_the_same_text` holds it).
        Ok(v) if field_errors.is_empty() => {
            if let Some(text) = data_payload(response, &v) {
                return text;
            }
            serde_json::json!({ "data": { response: v } })
        }
        Ok(v) => serde_json::json!({ "data": { response: v }, "errors": errors_of(field_errors) }),
        Err(e) => serde_json::json!({
            "data": { response: null },
            "errors": serde_json::to_value([e]).unwrap_or_else(|_| serde_json::json!([])),
        }),
    };
    payload.to_string()
}

/// `{"data":{response:value}}`, serialised without an intermediate JSON tree.
fn data_payload(response: &str, value: &Value<S>) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"data\":{");
    serde_json::to_writer(&mut out, response).ok()?;
    out.push(b':');
    serde_json::to_writer(&mut out, value).ok()?;
    out.extend_from_slice(b"}}");
    String::from_utf8(out).ok()
}

/// How one subscription field turns events into values.
#[derive(Clone, Copy)]
enum Payload {
    Mutated,
    Prisma,
}

fn subscription_filter(
    catalog: &walcast_model::Catalog,
    kind: RootField,
    t: &TableInfo,
    args: &Arguments<S>,
    limits: Limits,
) -> Result<(EventFilter, Payload), FieldError<S>> {
    let invalid = |e: walcast_filter::FilterError| FieldError::from(e.to_string());
    match kind {
        RootField::Mutated => {
            let event = arg_string(args, "event")?;
            let filter = parse_mutated_limited(
                catalog,
                &t.table,
                event.as_deref(),
                arg_json(args, "where").as_ref(),
                limits,
            )
            .map_err(invalid)?;
            Ok((filter, Payload::Mutated))
        }
        RootField::Table => {
            let w = arg_json(args, "where").or_else(|| arg_json(args, "filter"));
            let filter = parse_subscription_where_limited(
                catalog,
                &t.table,
                w.as_ref().unwrap_or(&serde_json::Value::Null),
                limits,
            )
            .map_err(invalid)?;
            Ok((filter, Payload::Prisma))
        }
        RootField::ById => Err("unknown subscription field".into()),
    }
}

impl GraphQLSubscriptionValue<S> for SubscriptionRoot {
    fn resolve_field_into_stream<'s, 'i, 'ft, 'args, 'e, 'ref_e, 'res, 'f>(
        &'s self,
        info: &'i SchemaInfo,
        field: &'ft str,
        args: Arguments<'args, S>,
        executor: &'ref_e Executor<'ref_e, 'e, Ctx, S>,
    ) -> BoxFuture<'f, Result<Value<ValuesStream<'res, S>>, FieldError<S>>>
    where
        's: 'f,
        'i: 'res,
        'ft: 'f,
        'args: 'f,
        'ref_e: 'f,
        'res: 'f,
        'e: 'res,
    {
        Box::pin(async move {
            if field == crate::messages::MESSAGE_FIELD && info.has_messages() {
                return crate::messages::subscribe(&args, executor).await;
            }
            let (kind, t) = info.root_field(field).ok_or_else(|| {
                FieldError::from(format!("unknown field {field:?} on Subscription"))
            })?;
            let t: &'i Arc<TableInfo> = t;
            let (filter, payload) = subscription_filter(
                &info.catalog,
                kind,
                t,
                &args,
                executor.context().limits.filters,
            )?;
            let filter = crate::guard::confine_event(filter, executor.context(), t)?;
            let after = match arg_string(&args, "after")? {
                None => None,
                Some(c) => Some(ResumePoint::decode(&c).ok_or_else(|| {
                    FieldError::from(format!(
                        "argument \"after\": {c:?} is not a cursor walcast issued"
                    ))
                })?),
            };
            let ctx = executor.context();
            if let Some(point) = &after {
                crate::session::check_issued(&ctx.pool, point).await?;
            }
            let events = ctx
                .events
                .subscribe(SubscriptionRequest {
                    table: t.table.clone(),
                    filter,
                    after,
                    connection: ctx.connection.clone(),
                    access: ctx.access.clone(),
                })
                .map_err(|e| FieldError::from(e.to_string()))?;
            // The response key (alias or name) from the path juniper gives this field's errors.
            let response = executor
                .new_error(FieldError::from(String::new()))
                .path()
                .last()
                .cloned()
                .unwrap_or_else(|| field.to_owned());
            let member = ctx.sharing.as_ref().map(|s| {
                Arc::new(crate::shared::Member::new(
                    s.groups.clone(),
                    format!("{}\u{0}{response}", s.operation),
                ))
            });
            let access = ctx.access.clone();
            let outbox = ctx.outbox.clone();
            // One executor for the whole stream: items resolve one at a time, and errors are
            // taken after each.
            let owned = Arc::new(executor.as_owned_executor());
            let response: Arc<str> = response.into();
            let stream = events.then(move |ev: Arc<Event>| {
                let owned = owned.clone();
                let member = member.clone();
                let access = access.clone();
                let outbox = outbox.clone();
                let response = response.clone();
                async move {
                    let build = || async {
                        let ex = owned.as_executor();
                        let value = match payload {
                            Payload::Mutated => ex.resolve_async(&**t, &MutatedObj(&ev)).await,
                            Payload::Prisma => ex.resolve_async(&**t, &PayloadObj(&ev)).await,
                        };
                        let errors = ex.take_errors();
                        let value = value.map_err(|e| ex.new_error(e));
                        crate::shared::Payload::from(event_payload(&response, value, &errors))
                    };
                    let text = match &member {
                        Some(m) => {
                            let key = access.load().key.clone();
                            m.payload(&ev, ev.cursor, &key, build).await
                        }
                        None => build().await,
                    };
                    outbox.push(text);
                    // The socket layer sends the outbox's payload; the value is not read.
                    Ok(Value::null())
                }
            });
            Ok(Value::Scalar(stream.boxed()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use juniper::graphql_value;

    #[test]
    fn payload_written_directly_is_the_same_text() {
        let values: Vec<Value<S>> = vec![
            graphql_value!(null),
            graphql_value!({
                "key": "{\"id\":\"7\"}",
                "event": "CREATED",
                "data": {
                    "id": 7,
                    "text": "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀",
                    "ratio": 0.1,
                    "big": 1e300,
                    "negative_zero": -0.0,
                    "flag": true,
                    "list": [1, "two", null, [3.5], {"nested": false}],
                    "empty": {},
                    "none": [],
                },
            }),
        ];
        for v in values {
            for response in ["messages_mutated", "alias \"quoted\""] {
                let tree = serde_json::json!({ "data": { response: v.clone() } }).to_string();
                assert_eq!(data_payload(response, &v).as_deref(), Some(tree.as_str()));
            }
        }
    }
}
