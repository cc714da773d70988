//! Output object types: a table's row, its previous values, and the two event payloads.

use std::sync::Arc;

use futures::future::BoxFuture;
use juniper::{
    meta::{Field, MetaType},
    ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor, GraphQLType,
    GraphQLValueAsync, Registry, Value, ID,
};
use walcast_filter::{parse_where_limited, RowFilter};
use walcast_model::{Batch, Datum, Event, Kind, Op, Row};

use crate::context::Ctx;
use crate::error::Error;
use crate::info::{ColumnInfo, TableInfo};
use crate::input::WhereInput;
pub use crate::mutation_type::MutationType;
use crate::relations::related;
use crate::resolver::{edge, impl_graphql_value, ready};
use crate::scalars::{self, input_to_json, json_to_value, ScalarType, Shape};

/// The output field of a column.
pub fn column_field(r: &mut Registry<S>, c: &ColumnInfo, not_null: bool) -> Field<S> {
    let shape = match (c.array, not_null) {
        (false, true) => Shape::Required,
        (false, false) => Shape::Optional,
        (true, true) => Shape::List,
        (true, false) => Shape::OptionalList,
    };
    scalars::field(r, c.name.clone(), c.scalar, shape)
}

fn kind_of(info: &TableInfo, c: &ColumnInfo) -> Kind {
    info.table
        .columns
        .get(c.index)
        .map(|col| col.ty.kind)
        .unwrap_or(Kind::Other)
}

/// The value of a column, as of the commit. `missing_is_error`: an unchanged TOASTed value
/// Postgres did not send resolves to null with an error, never to a wrong value.
fn column_value(
    info: &TableInfo,
    row: &Row,
    field: &str,
    missing_is_error: bool,
) -> Result<Value<S>, Error> {
    let c = info.column(field).ok_or_else(|| Error::UnknownField {
        field: field.to_owned(),
        on: info.name.to_string(),
    })?;
    match row.get(c.index).unwrap_or(&Datum::Unavailable) {
        Datum::Unavailable if missing_is_error => Err(Error::MissingValue {
            table: info.table.qualified_name(),
            field: field.to_owned(),
        }),
        Datum::Unavailable | Datum::Null => Ok(Value::null()),
        d => {
            let json = d.to_json(kind_of(info, c));
            Ok(match (c.scalar, json) {
                // IDs are strings in GraphQL, whatever the column type.
                (ScalarType::Id, serde_json::Value::Number(n)) => Value::scalar(n.to_string()),
                (_, json) => json_to_value(&json),
            })
        }
    }
}

/// A row of a table, resolved from the WAL tuple or a query result; relation fields load for
/// the whole batch (transaction or query result) the row belongs to.
pub struct RowObj<'r> {
    pub row: &'r Row,
    pub batch: Option<&'r Arc<Batch>>,
}

impl<'r> RowObj<'r> {
    pub fn of(ev: &'r Event) -> Option<RowObj<'r>> {
        ev.new.as_ref().map(|row| RowObj {
            row,
            batch: Some(&ev.batch),
        })
    }
}

impl GraphQLType<S> for RowObj<'_> {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.name.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let relation_columns: Vec<usize> = info
            .relations()
            .iter()
            .filter_map(|r| r.relation.column_field)
            .collect();
        let mut fields: Vec<_> = info
            .columns
            .iter()
            .filter(|c| !relation_columns.contains(&c.index))
            .map(|c| column_field(registry, c, c.not_null))
            .collect();
        for rel in info.relations() {
            let Some(target) = rel.target() else { continue };
            if rel.is_to_one() {
                fields.push(registry.field::<Option<RowObj>>(rel.name.clone(), &target));
            } else {
                fields.push(
                    registry
                        .field::<Vec<RowObj>>(rel.name.clone(), &target)
                        .argument(registry.arg::<Option<WhereInput>>("where", &target))
                        .argument(registry.arg::<Option<i32>>("first", &())),
                );
            }
        }
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl_graphql_value!(RowObj<'_>, context = Ctx, info = TableInfo);

impl GraphQLValueAsync<S> for RowObj<'_> {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a TableInfo,
        field: &'a str,
        args: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        let Some(rel) = info.relation(field) else {
            return ready(column_value(info, self.row, field, true));
        };
        edge(async move {
            let target = rel
                .target()
                .ok_or_else(|| Error::RelatedTableGone.at(field))?;
            let ctx = ex.context();
            let role = ctx.row_filter(target.table.oid);
            let user = match args
                .get_input_value("where")
                .map(|v| input_to_json(&v.item))
            {
                Some(w) if !w.is_null() => Some(
                    parse_where_limited(&info.catalog, &target.table, &w, ctx.limits.filters)
                        .map_err(|e| Error::from(e).at(field))?,
                ),
                _ => None,
            };
            let user = user.map(|u| crate::guard::confine(u, ctx));
            let filter = match (role, user) {
                (Some(a), Some(b)) => Some(RowFilter::All(vec![a, b])),
                (a, b) => a.or(b),
            };
            let rows = related(ctx, info, rel, &target, self.row, self.batch, filter).await?;
            if rel.is_to_one() {
                match rows.first().and_then(|ev| RowObj::of(ev)) {
                    Some(obj) => Ok(ex.resolve_async(&*target, &obj).await?),
                    None => Ok(Value::null()),
                }
            } else {
                let first = args.get::<i32>("first")?.map(|n| n.max(0) as usize);
                let objs: Vec<RowObj> = rows
                    .iter()
                    .take(first.unwrap_or(usize::MAX))
                    .filter_map(|ev| RowObj::of(ev))
                    .collect();
                Ok(ex.resolve_async(&*target, &objs).await?)
            }
        })
    }
}

/// The scalar values of a row before the change (Prisma's `previousValues`).
pub struct PreviousObj<'r>(pub &'r Row);

impl GraphQLType<S> for PreviousObj<'_> {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.previous.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        // Nullable throughout: without REPLICA IDENTITY FULL only the key columns are known.
        let fields: Vec<_> = info
            .columns
            .iter()
            .map(|c| column_field(registry, c, false))
            .collect();
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl_graphql_value!(PreviousObj<'_>, context = Ctx, info = TableInfo);

impl GraphQLValueAsync<S> for PreviousObj<'_> {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a TableInfo,
        field: &'a str,
        _: &'a Arguments<S>,
        _: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        ready(column_value(info, self.0, field, false))
    }
}

fn commit_time(ev: &Event) -> Value<S> {
    json_to_value(&Datum::TimestampTz(ev.commit_time).to_json(Kind::TimestampTz))
}

async fn resolve_row<'a>(
    info: &'a TableInfo,
    row: Option<&'a Row>,
    batch: Option<&'a Arc<Batch>>,
    ex: &'a Executor<'_, '_, Ctx, S>,
) -> ExecutionResult<S> {
    match row {
        Some(row) => ex.resolve_async(info, &RowObj { row, batch }).await,
        None => Ok(Value::null()),
    }
}

/// Directus' payload: `<table>_mutated { key event data cursor commitTime }`.
pub struct MutatedObj<'e>(pub &'e Event);

impl GraphQLType<S> for MutatedObj<'_> {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.mutated.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let fields = [
            registry.field::<ID>("key", &()),
            registry.field::<String>("event", &()),
            registry.field::<Option<RowObj>>("data", info),
            registry.field::<String>("cursor", &()),
            registry.field::<String>("commitTime", &()),
        ];
        registry
            .build_object_type::<Self>(info, &fields)
            .description(format!(
                "A committed change of {}, Directus style.",
                info.table.qualified_name()
            ))
            .into_meta()
    }
}

impl_graphql_value!(MutatedObj<'_>, context = Ctx, info = TableInfo);

impl GraphQLValueAsync<S> for MutatedObj<'_> {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a TableInfo,
        field: &'a str,
        _: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        let ev = self.0;
        match field {
            "key" => ready(Ok(Value::scalar(ev.key.clone()))),
            "event" => ready(Ok(Value::scalar(ev.op.as_str().to_owned()))),
            "cursor" => ready(Ok(Value::scalar(ev.cursor.encode()))),
            "commitTime" => ready(Ok(commit_time(ev))),
            "data" => Box::pin(resolve_row(info, ev.new.as_ref(), Some(&ev.batch), ex)),
            other => ready(Err(Error::UnknownField {
                field: other.to_owned(),
                on: info.mutated.to_string(),
            })),
        }
    }
}

/// Prisma 1's payload: `<table>SubscriptionPayload { mutation node updatedFields previousValues }`.
pub struct PayloadObj<'e>(pub &'e Event);

impl GraphQLType<S> for PayloadObj<'_> {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.payload.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let fields = [
            registry.field::<MutationType>("mutation", &()),
            registry.field::<Option<RowObj>>("node", info),
            registry.field::<Option<Vec<String>>>("updatedFields", &()),
            registry.field::<Option<PreviousObj>>("previousValues", info),
            registry.field::<String>("cursor", &()),
            registry.field::<String>("commitTime", &()),
        ];
        registry
            .build_object_type::<Self>(info, &fields)
            .description(format!(
                "A committed change of {}, Prisma 1 style.",
                info.table.qualified_name()
            ))
            .into_meta()
    }
}

impl_graphql_value!(PayloadObj<'_>, context = Ctx, info = TableInfo);

impl GraphQLValueAsync<S> for PayloadObj<'_> {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a TableInfo,
        field: &'a str,
        _: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        let ev = self.0;
        match field {
            "mutation" => ready(Ok(Value::scalar(
                match ev.op {
                    Op::Create => "CREATED",
                    Op::Update => "UPDATED",
                    Op::Delete | Op::Truncate => "DELETED",
                }
                .to_owned(),
            ))),
            "node" => Box::pin(resolve_row(info, ev.new.as_ref(), Some(&ev.batch), ex)),
            "updatedFields" => ready(Ok(match (ev.op, ev.updated_field_names()) {
                (Op::Update, Some(names)) => Value::list(
                    names
                        .into_iter()
                        .filter(|n| info.column(n).is_some())
                        .map(|n| Value::scalar(n.to_owned()))
                        .collect(),
                ),
                _ => Value::null(),
            })),
            "previousValues" => match (&ev.old, ev.op) {
                (Some(old), Op::Update | Op::Delete) => {
                    Box::pin(async move { ex.resolve_async(info, &PreviousObj(old)).await })
                }
                _ => ready(Ok(Value::null())),
            },
            "cursor" => ready(Ok(Value::scalar(ev.cursor.encode()))),
            "commitTime" => ready(Ok(commit_time(ev))),
            other => ready(Err(Error::UnknownField {
                field: other.to_owned(),
                on: info.payload.to_string(),
            })),
        }
    }
}
