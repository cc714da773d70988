//! The root types: `Query` and `Subscription`, one set of fields per table.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use juniper::{
    meta::MetaType, ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor,
    FieldError, GraphQLSubscriptionValue, GraphQLType, GraphQLValueAsync, Registry, Value,
    ValuesStream, ID,
};
use walcast_filter::{
    parse_mutated_limited, parse_subscription_where_limited, parse_where_limited, EventFilter,
    Limits,
};
use walcast_model::{Event, ResumePoint};

use crate::context::{Ctx, SubscriptionRequest};
use crate::error::Error;
use crate::info::{RootField, SchemaInfo, TableInfo};
use crate::input::{SubscriptionWhereInput, WhereInput};
use crate::objects::{MutatedObj, PayloadObj, RowObj};
use crate::payload::{resolve, response_key};
use crate::query;
use crate::resolver::{edge, impl_graphql_value};
use crate::scalars::input_to_json;

fn arg_json(args: &Arguments<S>, name: &str) -> Option<serde_json::Value> {
    args.get_input_value(name)
        .map(|v| input_to_json(&v.item))
        .filter(|v| !v.is_null())
}

fn arg_string(args: &Arguments<S>, name: &'static str) -> Result<Option<String>, Error> {
    match arg_json(args, name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(found) => Err(Error::ArgumentType {
            name,
            expected: "a String",
            found,
        }),
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

impl_graphql_value!(QueryRoot, context = Ctx, info = SchemaInfo);

impl GraphQLValueAsync<S> for QueryRoot {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a SchemaInfo,
        field: &'a str,
        args: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        if field == "_cursor" {
            return edge(async move {
                let open = ex.context().reads.get().await?;
                let snapshot = open
                    .as_ref()
                    .map(|o| ResumePoint::Snapshot(o.snapshot.clone()).encode())
                    .unwrap_or_else(|| ex.context().events.cursor_now().encode());
                Ok(Value::scalar(snapshot))
            });
        }
        let unknown = || Error::UnknownField {
            field: field.to_owned(),
            on: "Query".to_owned(),
        };
        edge(async move {
            let Some((kind, t)) = info.root_field(field) else {
                return Err(unknown());
            };
            match kind {
                RootField::Table => {
                    let user = match arg_json(args, "where") {
                        Some(w) => parse_where_limited(
                            &info.catalog,
                            &t.table,
                            &w,
                            ex.context().limits.filters,
                        )?,
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
                    Ok(ex.resolve_async(&**t, &objs).await?)
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
                                Some(obj) => Ok(ex.resolve_async(&**t, &obj).await?),
                                None => Ok(Value::null()),
                            }
                        }
                        None => Ok(Value::null()),
                    }
                }
                RootField::Mutated => Err(unknown()),
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

impl_graphql_value!(SubscriptionRoot, context = Ctx, info = SchemaInfo);

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
) -> Result<(EventFilter, Payload), Error> {
    match kind {
        RootField::Mutated => {
            let event = arg_string(args, "event")?;
            let filter = parse_mutated_limited(
                catalog,
                &t.table,
                event.as_deref(),
                arg_json(args, "where").as_ref(),
                limits,
            )?;
            Ok((filter, Payload::Mutated))
        }
        RootField::Table => {
            let w = arg_json(args, "where").or_else(|| arg_json(args, "filter"));
            let filter = parse_subscription_where_limited(
                catalog,
                &t.table,
                w.as_ref().unwrap_or(&serde_json::Value::Null),
                limits,
            )?;
            Ok((filter, Payload::Prisma))
        }
        RootField::ById => Err(Error::Internal("unknown subscription field")),
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
        edge(async move {
            if field == crate::messages::MESSAGE_FIELD && info.has_messages() {
                return crate::messages::subscribe(&args, executor).await;
            }
            let (kind, t) = info.root_field(field).ok_or_else(|| Error::UnknownField {
                field: field.to_owned(),
                on: "Subscription".to_owned(),
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
                Some(c) => Some(ResumePoint::decode(&c).ok_or(Error::NotACursor(c))?),
            };
            let ctx = executor.context();
            if let Some(point) = &after {
                crate::session::check_issued(&ctx.pool, point).await?;
            }
            let events = ctx.events.subscribe(SubscriptionRequest {
                table: t.table.clone(),
                filter,
                after,
                connection: ctx.connection.clone(),
                access: ctx.access.clone(),
            })?;
            let response = response_key(executor, field);
            let access = ctx.access.clone();
            let member = ctx.sharing.as_ref().map(|s| {
                Arc::new(crate::shared::Member::new(
                    s.groups.clone(),
                    format!("{}\u{0}{response}", s.operation),
                    &access.load().key,
                ))
            });
            let outbox = ctx.outbox.clone();
            // One executor for the whole stream: items resolve one at a time.
            let owned = Arc::new(executor.as_owned_executor());
            let stream = events.then(move |ev: Arc<Event>| {
                let owned = owned.clone();
                let member = member.clone();
                let access = access.clone();
                let outbox = outbox.clone();
                let response = response.clone();
                async move {
                    let build = || async {
                        match payload {
                            Payload::Mutated => {
                                resolve(&owned, &**t, &MutatedObj(&ev), &response).await
                            }
                            Payload::Prisma => {
                                resolve(&owned, &**t, &PayloadObj(&ev), &response).await
                            }
                        }
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
