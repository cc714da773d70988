//! Directus-named item mutations (`WALCAST_MUTATIONS=true`): `create_<t>_item`,
//! `update_<t>_item`, `delete_<t>_item`. They write with plain SQL; their events come back
//! through the WAL like any other writer's.
//!
//! The caller's row filter binds them as row-level security's `USING` and `WITH CHECK` do: an
//! update or delete reaches only a row the filter selects (the filter is part of the
//! statement's `WHERE`), and the row an insert or update leaves must still pass it (checked in
//! the statement's `RETURNING`, in the same transaction, which is rolled back otherwise).

use std::convert::Infallible;

use futures::future::BoxFuture;
use juniper::{
    meta::{Argument, MetaType},
    ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor, FieldError,
    FromInputValue, GraphQLType, GraphQLValue, GraphQLValueAsync, InputValue, Registry, Value, ID,
};
use tokio_postgres::types::ToSql;
use walcast_filter::sql::{quote_ident, SqlBuilder};
use walcast_model::{Row, Table};

use crate::context::Ctx;
use crate::info::{ColumnInfo, SchemaInfo, TableInfo};
use crate::objects::RowObj;
use crate::query::{db_error, decode_row, pg_error, select_list};
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

impl GraphQLValue<S> for ItemInput {
    type Context = ();
    type TypeInfo = TableInfo;
    fn type_name(&self, info: &TableInfo) -> Option<ArcStr> {
        Some(info.input.clone())
    }

    fn concrete_type_name(&self, _: &Self::Context, info: &TableInfo) -> String {
        self.type_name(info)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }
}

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

impl GraphQLValue<S> for DeletedKey {
    type Context = Ctx;
    type TypeInfo = TableInfo;
    fn type_name(&self, info: &TableInfo) -> Option<ArcStr> {
        Some(info.mutated_key.clone())
    }

    fn concrete_type_name(&self, _: &Self::Context, info: &TableInfo) -> String {
        self.type_name(info)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }
    fn resolve_field(
        &self,
        _: &TableInfo,
        field: &str,
        _: &Arguments<S>,
        _: &Executor<Ctx, S>,
    ) -> ExecutionResult<S> {
        match field {
            "id" => Ok(Value::scalar(self.0.clone())),
            other => Err(format!("unknown field {other:?}").into()),
        }
    }
}

impl GraphQLValueAsync<S> for DeletedKey {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a TableInfo,
        field: &'a str,
        args: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        Box::pin(futures::future::ready(
            self.resolve_field(info, field, args, ex),
        ))
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

impl GraphQLValue<S> for MutationRoot {
    type Context = Ctx;
    type TypeInfo = SchemaInfo;
    fn type_name(&self, info: &SchemaInfo) -> Option<ArcStr> {
        <Self as GraphQLType<S>>::name(info)
    }

    fn concrete_type_name(&self, _: &Self::Context, info: &SchemaInfo) -> String {
        self.type_name(info)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }
}

/// A client value in Postgres input syntax, passed as a text parameter and cast in SQL.
fn pg_input(v: &serde_json::Value, array: bool) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if array => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match pg_input(i, false) {
                    None => "NULL".to_owned(),
                    Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                })
                .collect();
            Some(format!("{{{}}}", parts.join(",")))
        }
        other => Some(other.to_string()),
    }
}

/// The `data` argument as (column, parameter) pairs, every name checked against the view.
fn assignments<'t>(
    t: &'t TableInfo,
    args: &Arguments<'_, S>,
) -> Result<Vec<(&'t walcast_model::Column, Option<String>)>, FieldError<S>> {
    let data = args
        .get_input_value("data")
        .map(|v| input_to_json(&v.item))
        .unwrap_or(serde_json::Value::Null);
    let serde_json::Value::Object(map) = data else {
        return Err("argument \"data\": expected an input object".into());
    };
    map.iter()
        .map(|(k, v)| {
            let c = t.column(k).ok_or_else(|| {
                FieldError::from(format!("data: unknown field {k:?} on {}", t.input))
            })?;
            let col = t
                .table
                .columns
                .get(c.index)
                .ok_or_else(|| FieldError::from(format!("data: unknown field {k:?}")))?;
            Ok((col, pg_input(v, c.array)))
        })
        .collect()
}

/// A mutation refused by the caller's row filter, or aimed at a row the caller cannot change.
/// "Not found" and "not yours" read the same, so the answer never tells whether a row exists.
fn forbidden(message: String) -> FieldError<S> {
    FieldError::new(
        format!("FORBIDDEN: {message}"),
        juniper::graphql_value!({ "code": "FORBIDDEN" }),
    )
}

/// The caller's row filter on the table as SQL over alias `t`, and its parameters (numbered
/// from `$1`; the statement's own parameters come after). `TRUE` without a filter.
fn role_condition(ctx: &Ctx, table: &Table) -> (String, Vec<Option<String>>) {
    match ctx.row_filter(table.oid) {
        None => ("TRUE".to_owned(), Vec::new()),
        Some(filter) => {
            let mut b = SqlBuilder::new(table, "t");
            let cond = b.filter(&filter);
            (cond, b.params)
        }
    }
}

/// Runs one writing statement in its own transaction. Its last output column says whether the
/// row written still passes the caller's row filter (`WITH CHECK`); when one does not, the
/// transaction is rolled back and nothing is written.
async fn write_checked(
    ctx: &Ctx,
    table: &Table,
    sql: &str,
    params: &[Option<String>],
) -> Result<Vec<(Row, bool)>, FieldError<S>> {
    let mut client = ctx.pool.get().await.map_err(db_error)?;
    let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = tx.query(sql, &refs).await.map_err(|e| pg_error(&e))?;
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
        tx.commit().await.map_err(|e| pg_error(&e))?;
    } else {
        tx.rollback().await.map_err(|e| pg_error(&e))?;
    }
    Ok(checked)
}

/// `create_<t>_item`: the new row must pass the caller's row filter.
async fn create_item<'a>(
    t: &'a TableInfo,
    field: &str,
    args: &Arguments<'_, S>,
    ex: &'a Executor<'_, '_, Ctx, S>,
) -> ExecutionResult<S> {
    let cols = assignments(t, args)?;
    let (check, mut params) = role_condition(ex.context(), &t.table);
    let names: Vec<String> = cols.iter().map(|(c, _)| quote_ident(&c.name)).collect();
    let values: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("CAST(${}::text AS {})", params.len() + i + 1, c.sql_type))
        .collect();
    params.extend(cols.into_iter().map(|(_, v)| v));
    let body = if names.is_empty() {
        "DEFAULT VALUES".to_owned()
    } else {
        format!("({}) VALUES ({})", names.join(", "), values.join(", "))
    };
    // In RETURNING, `t` is the row as inserted (defaults and triggers applied).
    let sql = format!(
        "INSERT INTO {} AS t {body} RETURNING {}, COALESCE(({check}), FALSE)",
        table_ref(&t.table),
        select_list(&t.table, "t")
    );
    let rows = write_checked(ex.context(), &t.table, &sql, &params).await?;
    match rows.first() {
        Some((row, true)) => ex.resolve_async(t, &RowObj { row, batch: None }).await,
        Some((_, false)) => Err(forbidden(format!(
            "{field}: the new row would be outside the rows this role may write; nothing was written"
        ))),
        None => Ok(Value::null()),
    }
}

/// `update_<t>_item`: only a row the caller's filter selects, and it must still pass after.
async fn update_item<'a>(
    t: &'a TableInfo,
    field: &str,
    id: String,
    args: &Arguments<'_, S>,
    ex: &'a Executor<'_, '_, Ctx, S>,
) -> ExecutionResult<S> {
    let pk = t
        .id_column()
        .and_then(|c| t.table.columns.get(c.index))
        .ok_or_else(|| FieldError::from("no single-column primary key"))?;
    let cols = assignments(t, args)?;
    if cols.is_empty() {
        return Err("argument \"data\": name at least one field to update".into());
    }
    // The filter's SQL (over `t`) is used twice with the same parameters: in WHERE, `t` is the
    // row before the update (USING); in RETURNING, the row after it (WITH CHECK).
    let (cond, mut params) = role_condition(ex.context(), &t.table);
    let sets: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (c, _))| {
            format!(
                "{} = CAST(${}::text AS {})",
                quote_ident(&c.name),
                params.len() + i + 1,
                c.sql_type
            )
        })
        .collect();
    params.extend(cols.into_iter().map(|(_, v)| v));
    params.push(Some(id));
    let sql = format!(
        "UPDATE {} AS t SET {} WHERE t.{} = CAST(${}::text AS {}) AND ({cond}) RETURNING {}, COALESCE(({cond}), FALSE)",
        table_ref(&t.table),
        sets.join(", "),
        quote_ident(&pk.name),
        params.len(),
        pk.sql_type,
        select_list(&t.table, "t")
    );
    let rows = write_checked(ex.context(), &t.table, &sql, &params).await?;
    match rows.first() {
        Some((row, true)) => ex.resolve_async(t, &RowObj { row, batch: None }).await,
        Some((_, false)) => Err(forbidden(format!(
            "{field}: the row would leave the rows this role may write; nothing was written"
        ))),
        None => Err(forbidden(format!(
            "{field}: no row with this id that this role may update"
        ))),
    }
}

/// `delete_<t>_item`: only a row the caller's filter selects.
async fn delete_item<'a>(
    t: &'a TableInfo,
    field: &str,
    id: String,
    ex: &'a Executor<'_, '_, Ctx, S>,
) -> ExecutionResult<S> {
    let pk = t
        .id_column()
        .and_then(|c| t.table.columns.get(c.index))
        .ok_or_else(|| FieldError::from("no single-column primary key"))?;
    let (cond, mut params) = role_condition(ex.context(), &t.table);
    params.push(Some(id));
    let sql = format!(
        "DELETE FROM {} AS t WHERE t.{pk} = CAST(${n}::text AS {ty}) AND ({cond}) RETURNING t.{pk}::text",
        table_ref(&t.table),
        pk = quote_ident(&pk.name),
        n = params.len(),
        ty = pk.sql_type,
    );
    let client = ex.context().pool.get().await.map_err(db_error)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let row = client
        .query_opt(&sql, &refs)
        .await
        .map_err(|e| pg_error(&e))?;
    match row {
        Some(r) => {
            let key: Option<String> = r.try_get(0).map_err(db_error)?;
            ex.resolve_async(t, &DeletedKey(key.unwrap_or_default()))
                .await
        }
        None => Err(forbidden(format!(
            "{field}: no row with this id that this role may delete"
        ))),
    }
}

fn table_ref(table: &Table) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}

impl GraphQLValueAsync<S> for MutationRoot {
    fn resolve_field_async<'a>(
        &'a self,
        info: &'a SchemaInfo,
        field: &'a str,
        args: &'a Arguments<S>,
        ex: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        Box::pin(async move {
            let parse = |prefix: &str| {
                field
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix("_item"))
                    .and_then(|n| info.table(n))
            };
            if let Some(t) = parse("create_").filter(|t| t.grants.insert) {
                return create_item(t, field, args, ex).await;
            }
            let id = || -> Result<String, FieldError<S>> {
                Ok(args
                    .get::<ID>("id")?
                    .map(|i| i.to_string())
                    .unwrap_or_default())
            };
            if let Some(t) = parse("update_").filter(|t| t.grants.update) {
                return update_item(t, field, id()?, args, ex).await;
            }
            if let Some(t) = parse("delete_").filter(|t| t.grants.delete) {
                return delete_item(t, field, id()?, ex).await;
            }
            Err(format!("unknown field {field:?} on Mutation").into())
        })
    }
}
