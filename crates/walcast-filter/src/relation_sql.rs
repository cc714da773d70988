//! Relation conditions, answered by the database for a batch of candidate rows in one query.
//!
//! The candidates are not identified by their primary key but passed in by value: the columns
//! the filter reads (for a relation, its local key columns) travel as one JSON parameter, each
//! row `[ordinal, value, ...]` with values in Postgres text form, and are cast back to the
//! column types inside the query. So:
//! - a deleted row, which no longer exists, is judged on its previous values, exactly like an
//!   inserted or updated one is judged on its new values;
//! - the row's own columns are those of the commit, not whatever a later transaction left;
//!   related rows, which the query reads, are as of the query (as with any read).
//!
//! A candidate whose needed values are unknown (an unchanged TOASTed value, or a delete's
//! previous values without `REPLICA IDENTITY FULL`) is left out: its answer stays unknown, and
//! unknown never matches.
//!
//! The query returns one `int8` column: the ordinals (indexes into the `rows` given) of the
//! candidates that satisfy the filter.

use walcast_model::{Datum, Row, Table};

use crate::ast::RowFilter;
use crate::sql::{pg_text, quote_ident, SqlBuilder};

/// One query over a batch of candidate rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateQuery {
    pub sql: String,
    /// Text parameters (`$1` is the candidates' JSON), bound as `Option<String>`.
    pub params: Vec<Option<String>>,
    /// Indexes into the given rows that the query judges; the others stayed unknown.
    pub judged: Vec<usize>,
}

/// Builds the query deciding `filter` (a condition on `table`'s rows, usually relation
/// conditions) for each of `rows` (rows of `table`, as in events).
pub fn relation_sql(table: &Table, filter: &RowFilter, rows: &[&Row]) -> CandidateQuery {
    let columns = filter.columns();
    let mut judged = Vec::with_capacity(rows.len());
    let mut data = Vec::with_capacity(rows.len());
    'rows: for (i, row) in rows.iter().enumerate() {
        let mut item = Vec::with_capacity(columns.len() + 1);
        item.push(serde_json::Value::from(i as u64));
        for &c in &columns {
            let (Some(d), Some(col)) = (row.get(c), table.columns.get(c)) else {
                continue 'rows;
            };
            if matches!(d, Datum::Unavailable) {
                continue 'rows;
            }
            item.push(match pg_text(d, col.ty.kind) {
                Some(s) => serde_json::Value::String(s),
                None => serde_json::Value::Null,
            });
        }
        judged.push(i);
        data.push(serde_json::Value::Array(item));
    }

    let mut b = SqlBuilder::new(table, "c");
    // `$1` is the candidates; the filter's own parameters follow.
    b.params.push(None);
    let cond = b.filter(filter);
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .filter_map(|(n, &c)| {
            let col = table.columns.get(c)?;
            Some(format!(
                "CAST(v.e->>{} AS {}) AS {}",
                n + 1,
                col.sql_type,
                quote_ident(&col.name)
            ))
        })
        .collect();
    let sql = format!(
        "SELECT (v.e->>0)::int8 FROM json_array_elements($1::text::json) AS v(e) \
         CROSS JOIN LATERAL (SELECT {}) AS c WHERE {cond}",
        values.join(", ")
    );
    let mut params = b.params;
    if let Some(first) = params.first_mut() {
        *first = Some(serde_json::Value::Array(data).to_string());
    }
    CandidateQuery {
        sql,
        params,
        judged,
    }
}
