//! Reads for the `Query` root. Values come back as text and go through the same conversion as
//! WAL tuples, so a row reads the same from a query as from an event.

use tokio_postgres::types::ToSql;
pub use walcast_filter::select::{from_clause, select_list};
use walcast_filter::sql::{pg_text, quote_ident, SqlBuilder};
use walcast_filter::RowFilter;
use walcast_model::{value::decode_text, Datum, Row, Table};

use crate::context::Ctx;
use crate::error::Error;
use crate::info::TableInfo;

/// Largest page a list query returns when `first` is not given.
const DEFAULT_LIMIT: i64 = 1000;

pub fn decode_row(table: &Table, row: &tokio_postgres::Row) -> Row {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match row.try_get::<_, Option<String>>(i) {
            Ok(Some(text)) => decode_text(&c.ty, &text).unwrap_or(Datum::Text(text)),
            Ok(None) => Datum::Null,
            Err(_) => Datum::Unavailable,
        })
        .collect()
}

async fn run(
    ctx: &Ctx,
    table: &Table,
    sql: &str,
    params: &[Option<String>],
) -> Result<Vec<Row>, Error> {
    let open = ctx.reads.get().await?;
    let client = open
        .as_ref()
        .ok_or_else(|| Error::database("no read transaction"))?
        .client()?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(sql, &refs).await.map_err(Error::postgres)?;
    Ok(rows.iter().map(|r| decode_row(table, r)).collect())
}

/// `orderBy: ["title_DESC", "id"]`: each entry a visible column with an optional direction.
fn order_by(t: &TableInfo, order: &[String]) -> Result<String, Error> {
    let mut parts = Vec::new();
    for o in order {
        let (name, dir) = if let Some(n) = o.strip_suffix("_DESC") {
            (n, "DESC")
        } else {
            (o.strip_suffix("_ASC").unwrap_or(o), "ASC")
        };
        let c = t
            .column(name)
            .and_then(|c| t.table.columns.get(c.index))
            .ok_or_else(|| {
                Error::UnknownColumn {
                    column: name.to_owned(),
                    on: t.name.to_string(),
                }
                .at("orderBy")
            })?;
        parts.push(format!("t.{} {dir}", quote_ident(&c.name)));
    }
    if parts.is_empty() {
        parts = t
            .table
            .primary_key
            .iter()
            .filter_map(|&i| t.table.columns.get(i))
            .map(|c| format!("t.{}", quote_ident(&c.name)))
            .collect();
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", parts.join(", "))
    })
}

pub async fn select(
    ctx: &Ctx,
    t: &TableInfo,
    filter: &RowFilter,
    order: &[String],
    first: Option<i32>,
    skip: Option<i32>,
) -> Result<Vec<Row>, Error> {
    let table = &t.table;
    let mut b = SqlBuilder::new(table, "t");
    let cond = b.filter(filter);
    let mut params = b.params;
    let limit = first.map(i64::from).unwrap_or(DEFAULT_LIMIT).max(0);
    params.push(Some(limit.to_string()));
    let limit_p = params.len();
    params.push(Some(skip.unwrap_or(0).max(0).to_string()));
    let offset_p = params.len();
    let sql = format!(
        "SELECT {} FROM {} WHERE {cond}{} LIMIT ${limit_p}::text::bigint OFFSET ${offset_p}::text::bigint",
        select_list(table, "t"),
        from_clause(table, "t"),
        order_by(t, order)?,
    );
    run(ctx, table, &sql, &params).await
}

pub async fn by_id(
    ctx: &Ctx,
    t: &TableInfo,
    id: &str,
    role_filter: Option<&RowFilter>,
) -> Result<Option<Row>, Error> {
    let Some(col) = t.id_column().and_then(|c| t.table.columns.get(c.index)) else {
        return Ok(None);
    };
    // Checked as `where: { id: ... }` checks it: a malformed id is the caller's error, not a
    // database one.
    let input = serde_json::json!({ col.gql_name.as_str(): id });
    let value = match walcast_filter::parse_where(&t.table, &input) {
        Ok(RowFilter::Cmp { value, .. }) => value,
        Ok(_) => return Ok(None),
        Err(walcast_filter::FilterError::Value { message, .. }) => {
            return Err(Error::Argument {
                name: "id",
                message,
            })
        }
        Err(e) => {
            return Err(Error::Argument {
                name: "id",
                message: e.to_string(),
            })
        }
    };
    let mut b = SqlBuilder::new(&t.table, "t");
    let cond = role_filter
        .map(|f| b.filter(f))
        .unwrap_or_else(|| "TRUE".into());
    let mut params = b.params;
    params.push(pg_text(&value, col.ty.kind));
    let sql = format!(
        "SELECT {} FROM {} WHERE t.{} = CAST(${}::text AS {}) AND {cond}",
        select_list(&t.table, "t"),
        from_clause(&t.table, "t"),
        quote_ident(&col.name),
        params.len(),
        col.sql_type
    );
    let rows = run(ctx, &t.table, &sql, &params).await?;
    Ok(rows.into_iter().next())
}
