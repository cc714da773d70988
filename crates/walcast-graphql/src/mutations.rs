//! Directus-named item mutations (`WALCAST_MUTATIONS=true`): `create_<t>_item`,
//! `update_<t>_item`, `delete_<t>_item`. They write with plain SQL; their events come back
//! through the WAL like any other writer's.
//!
//! The caller's row filter binds them as row-level security's `USING` and `WITH CHECK` do (the
//! statements are built in `walcast_filter::mutation`); a row an insert or update leaves outside
//! the filter rolls its transaction back.

use std::convert::Infallible;

use futures::future::BoxFuture;
use juniper::{
    meta::{Argument, MetaType},
    ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor, FromInputValue,
    GraphQLType, GraphQLValueAsync, InputValue, Registry, Value, ID,
};
use tokio_postgres::types::ToSql;
use walcast_filter::mutation::{self, Assignment, Statement};
use walcast_model::{Column, Row, Table};

use crate::context::Ctx;
use crate::error::Error;
use crate::info::{ColumnInfo, SchemaInfo, TableInfo};
use crate::objects::RowObj;
use crate::query::decode_row;
use crate::resolver::{edge, impl_graphql_value, ready};
use crate::scalars::{self, input_to_json, Shape};

fn input_field(r: &mut Registry<S>, c: &ColumnInfo) -> Argument<S> {
    let shape = if c.array {
        Shape::OptionalList
    } else {
        Shape::Optional
    };
    scalars::arg(r, c.name.clone(), c.scalar, shape)
}

/// `<table>_input`: every column, all optional.
pub struct ItemInput(pub InputValue<S>);

impl FromInputValue<S> for ItemInput {
    type Error = Infallible;
    fn from_input_value(v: &InputValue<S>) -> Result<Self, Infallible> {
        Ok(ItemInput(v.clone()))
    }
}

impl GraphQLType<S> for ItemInput {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.input.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let args: Vec<_> = info
            .columns
            .iter()
            .map(|c| input_field(registry, c))
            .collect();
        registry
            .build_input_object_type::<Self>(info, &args)
            .into_meta()
    }
}

impl_graphql_value!(ItemInput, context = (), info = TableInfo);

/// `<table>_mutated_key { id }`: what a delete returns.
pub struct DeletedKey(pub String);

impl GraphQLType<S> for DeletedKey {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.mutated_key.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let fields = [registry.field::<ID>("id", &())];
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl_graphql_value!(DeletedKey, context = Ctx, info = TableInfo);

impl GraphQLValueAsync<S> for DeletedKey {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a TableInfo,
        field: &'a str,
        _: &'a Arguments<S>,
        _: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        ready(match field {
            "id" => Ok(Value::scalar(self.0.clone())),
            other => Err(Error::UnknownField {
                field: other.to_owned(),
                on: info.mutated_key.to_string(),
            }),
        })
    }
}

pub struct MutationRoot;

impl GraphQLType<S> for MutationRoot {
    fn name(info: &SchemaInfo) -> Option<ArcStr> {
        // juniper leaves a mutation root of this name out of the schema.
        Some(ArcStr::from(if info.has_mutations() {
            "Mutation"
        } else {
            "_EmptyMutation"
        }))
    }

    fn meta(info: &SchemaInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let mut fields = Vec::new();
        for t in &info.tables {
            if t.grants.insert {
                fields.push(
                    registry
                        .field::<Option<RowObj>>(format!("create_{}_item", t.name), t)
                        .argument(registry.arg::<ItemInput>("data", t)),
                );
            }
            if t.id_column().is_none() {
                continue;
            }
            if t.grants.update {
                fields.push(
                    registry
                        .field::<Option<RowObj>>(format!("update_{}_item", t.name), t)
                        .argument(registry.arg::<ID>("id", &()))
                        .argument(registry.arg::<ItemInput>("data", t)),
                );
            }
            if t.grants.delete {
                fields.push(
                    registry
                        .field::<Option<DeletedKey>>(format!("delete_{}_item", t.name), t)
                        .argument(registry.arg::<ID>("id", &())),
                );
            }
        }
        registry
            .build_object_type::<Self>(info, &fields)
            .into_meta()
    }
}

impl_graphql_value!(MutationRoot, context = Ctx, info = SchemaInfo);

/// The `data` argument as (column, value) pairs, every name checked against the view.
fn assignments<'t>(
    t: &'t TableInfo,
    args: &Arguments<'_, S>,
) -> Result<Vec<Assignment<'t>>, Error> {
    let data = args
        .get_input_value("data")
        .map(|v| input_to_json(&v.item))
        .unwrap_or(serde_json::Value::Null);
    let serde_json::Value::Object(map) = data else {
        return Err(Error::DataNotObject);
    };
    map.iter()
        .map(|(k, v)| {
            let unknown = || {
                Error::UnknownField {
                    field: k.clone(),
                    on: t.input.to_string(),
                }
                .at("data")
            };
            let c = t.column(k).ok_or_else(unknown)?;
            let col = t.table.columns.get(c.index).ok_or_else(unknown)?;
            Ok((col, mutation::input_text(v, c.array)))
        })
        .collect()
}

/// Runs one writing statement in its own transaction. Its last output column says whether the
/// row written still passes the caller's row filter (`WITH CHECK`); when one does not, the
/// transaction is rolled back and nothing is written.
async fn write_checked(
    ctx: &Ctx,
    table: &Table,
    stmt: &Statement,
) -> Result<Vec<(Row, bool)>, Error> {
    let mut client = ctx.pool.get().await?;
    let tx = client.transaction().await.map_err(Error::postgres)?;
    let rows = tx
        .query(&stmt.sql, &params(stmt))
        .await
        .map_err(Error::postgres)?;
    let checked: Vec<(Row, bool)> = rows
        .iter()
        .map(|r| {
            let passes = r
                .try_get::<_, Option<bool>>(table.columns.len())
                .ok()
                .flatten()
                .unwrap_or(false);
            (decode_row(table, r), passes)
        })
        .collect();
    if checked.iter().all(|(_, passes)| *passes) {
        tx.commit().await.map_err(Error::postgres)?;
    } else {
        tx.rollback().await.map_err(Error::postgres)?;
    }
    Ok(checked)
}

fn params(stmt: &Statement) -> Vec<&(dyn ToSql + Sync)> {
    stmt.params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect()
}

/// The table's single-column primary key, the column `id` arguments name.
fn key_column(t: &TableInfo) -> Result<&Column, Error> {
    t.id_column()
        .and_then(|c| t.table.columns.get(c.index))
        .ok_or(Error::NoSingleKey)
}

/// The row an insert or update left, resolved if it passes the caller's row filter. `refused`:
/// the error when it does not; `missing`: when no row was written (None: the answer is null).
async fn written(
    t: &TableInfo,
    ex: &Executor<'_, '_, Ctx, S>,
    rows: Vec<(Row, bool)>,
    refused: String,
    missing: Option<String>,
) -> Result<Value<S>, Error> {
    match (rows.first(), missing) {
        (Some((row, true)), _) => Ok(ex.resolve_async(t, &RowObj { row, batch: None }).await?),
        (Some((_, false)), _) => Err(Error::Forbidden(refused)),
        (None, Some(missing)) => Err(Error::Forbidden(missing)),
        (None, None) => Ok(Value::null()),
    }
}

/// `create_<t>_item`: the new row must pass the caller's row filter.
async fn create_item(
    t: &TableInfo,
    field: &str,
    args: &Arguments<'_, S>,
    ex: &Executor<'_, '_, Ctx, S>,
) -> Result<Value<S>, Error> {
    let filter = ex.context().row_filter(t.table.oid);
    let stmt = mutation::insert(&t.table, assignments(t, args)?, filter.as_ref());
    let rows = write_checked(ex.context(), &t.table, &stmt).await?;
    let refused = format!(
        "{field}: the new row would be outside the rows this role may write; nothing was written"
    );
    written(t, ex, rows, refused, None).await
}

/// `update_<t>_item`: only a row the caller's filter selects, and it must still pass after.
async fn update_item(
    t: &TableInfo,
    field: &str,
    id: String,
    args: &Arguments<'_, S>,
    ex: &Executor<'_, '_, Ctx, S>,
) -> Result<Value<S>, Error> {
    let key = key_column(t)?;
    let filter = ex.context().row_filter(t.table.oid);
    let stmt = mutation::update(&t.table, key, id, assignments(t, args)?, filter.as_ref())
        .ok_or(Error::NothingToUpdate)?;
    let rows = write_checked(ex.context(), &t.table, &stmt).await?;
    let refused =
        format!("{field}: the row would leave the rows this role may write; nothing was written");
    let missing = format!("{field}: no row with this id that this role may update");
    written(t, ex, rows, refused, Some(missing)).await
}

/// `delete_<t>_item`: only a row the caller's filter selects.
async fn delete_item(
    t: &TableInfo,
    field: &str,
    id: String,
    ex: &Executor<'_, '_, Ctx, S>,
) -> Result<Value<S>, Error> {
    let filter = ex.context().row_filter(t.table.oid);
    let stmt = mutation::delete(&t.table, key_column(t)?, id, filter.as_ref());
    let client = ex.context().pool.get().await?;
    let row = client
        .query_opt(&stmt.sql, &params(&stmt))
        .await
        .map_err(Error::postgres)?
        .ok_or_else(|| {
            Error::Forbidden(format!(
                "{field}: no row with this id that this role may delete"
            ))
        })?;
    let key: Option<String> = row.try_get(0).map_err(Error::database)?;
    let key = DeletedKey(key.unwrap_or_default());
    Ok(ex.resolve_async(t, &key).await?)
}

impl GraphQLValueAsync<S> for MutationRoot {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a SchemaInfo,
        field: &'a str,
        args: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        edge(async move {
            let parse = |prefix: &str| {
                field
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix("_item"))
                    .and_then(|n| info.table(n))
            };
            let id = || -> Result<String, Error> {
                Ok(args
                    .get::<ID>("id")?
                    .map(|i| i.to_string())
                    .unwrap_or_default())
            };
            if let Some(t) = parse("create_").filter(|t| t.grants.insert) {
                create_item(t, field, args, ex).await
            } else if let Some(t) = parse("update_").filter(|t| t.grants.update) {
                update_item(t, field, id()?, args, ex).await
            } else if let Some(t) = parse("delete_").filter(|t| t.grants.delete) {
                delete_item(t, field, id()?, ex).await
            } else {
                Err(Error::UnknownField {
                    field: field.to_owned(),
                    on: "Mutation".to_owned(),
                })
            }
        })
    }
}
