//! Related rows of events and query results, loaded in batches: the first subscriber that asks
//! for a relation field of any event of a transaction loads it for every event of the
//! transaction in one query, and every other subscriber reuses the result.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio_postgres::types::ToSql;
use walcast_filter::key::{key, DatumKey};
use walcast_filter::select::{from_clause, select_list};
use walcast_filter::sql::{pg_text, quote_ident, SqlBuilder};
use walcast_filter::RowFilter;
use walcast_model::{Batch, Event, Row, Table};

use crate::context::Ctx;
use crate::error::Error;
use crate::info::{RelationInfo, TableInfo};
use crate::query::decode_row;

/// Related rows by the key values they share with their parent.
type Grouped = HashMap<Vec<DatumKey>, Vec<Arc<Event>>>;
type Slot = OnceCell<Result<Arc<Grouped>, Error>>;

/// The key of `row` on `columns`; None when a value is null or unknown (no related row).
fn row_key(row: &Row, columns: &[usize]) -> Option<Vec<DatumKey>> {
    columns.iter().map(|&c| row.get(c).and_then(key)).collect()
}

/// The rows of the batch that belong to `table` (new values; previous ones for deletes).
fn batch_rows(batch: &Batch, table: &Table) -> Vec<Row> {
    batch
        .siblings
        .get()
        .map(|events| {
            events
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .filter(|e| e.table.oid == table.oid && Event::same_layout(&e.table, table))
                .filter_map(|e| e.filter_row().cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// The rows related to `row` through `rel`, satisfying `filter` (the caller's row permission on
/// the target and, for lists, the field's `where`).
pub async fn related(
    ctx: &Ctx,
    parent: &TableInfo,
    rel: &RelationInfo,
    target: &TableInfo,
    row: &Row,
    batch: Option<&Arc<Batch>>,
    filter: Option<RowFilter>,
) -> Result<Vec<Arc<Event>>, Error> {
    let r = &rel.relation;
    let Some(mine) = row_key(row, &r.local_columns) else {
        return Ok(vec![]);
    };
    let mut b = SqlBuilder::new(&target.table, "t");
    let cond = filter
        .as_ref()
        .map(|f| b.filter(f))
        .unwrap_or_else(|| "TRUE".into());
    let params = b.params;
    let fingerprint = serde_json::json!([parent.table.oid, &*rel.name, cond, params]).to_string();
    let own_batch;
    let batch = match batch {
        Some(b) => b,
        None => {
            own_batch = Arc::new(Batch::default());
            &own_batch
        }
    };
    let slot: Arc<Slot> = {
        let mut cache = walcast_model::sync::lock(&batch.cache);
        let entry = cache
            .entry(fingerprint)
            .or_insert_with(|| Arc::new(Slot::new()) as Arc<dyn std::any::Any + Send + Sync>);
        entry
            .clone()
            .downcast::<Slot>()
            .map_err(|_| Error::Internal("relation cache holds another type"))?
    };
    let grouped = slot
        .get_or_init(|| async {
            let mut rows = batch_rows(batch, &parent.table);
            if rows.is_empty() {
                rows.push(row.clone());
            }
            load(
                ctx,
                &parent.table,
                rel,
                &target.table,
                &rows,
                cond,
                params,
                batch.in_query,
            )
            .await
            .map(Arc::new)
        })
        .await
        .clone()?;
    Ok(grouped.get(&mine).cloned().unwrap_or_default())
}

#[allow(clippy::too_many_arguments)]
async fn load(
    ctx: &Ctx,
    parent: &Table,
    rel: &RelationInfo,
    target: &Arc<Table>,
    parents: &[Row],
    cond: String,
    mut params: Vec<Option<String>>,
    in_query: bool,
) -> Result<Grouped, Error> {
    let r = &rel.relation;
    // Distinct parent keys, as text in Postgres input syntax.
    let mut keys: Vec<Vec<String>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for row in parents {
        let Some(k) = row_key(row, &r.local_columns) else {
            continue;
        };
        if !seen.insert(k) {
            continue;
        }
        let text: Option<Vec<String>> = r
            .local_columns
            .iter()
            .map(|&c| {
                let kind = parent.columns.get(c)?.ty.kind;
                row.get(c).and_then(|d| pg_text(d, kind))
            })
            .collect();
        keys.extend(text);
    }
    if keys.is_empty() {
        return Ok(Grouped::new());
    }
    params.push(Some(serde_json::to_string(&keys).map_err(Error::database)?));
    let keys_param = params.len();
    let remote: Vec<&walcast_model::Column> = r
        .remote_columns
        .iter()
        .filter_map(|&c| target.columns.get(c))
        .collect();
    let tuple = |cols: Vec<String>| format!("({})", cols.join(", "));
    let lhs = tuple(
        remote
            .iter()
            .map(|c| format!("t.{}", quote_ident(&c.name)))
            .collect(),
    );
    let casts: Vec<String> = remote
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST(k.v->>{i} AS {})", c.sql_type))
        .collect();
    let order: Vec<String> = target
        .primary_key
        .iter()
        .filter_map(|&i| target.columns.get(i))
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {lhs} IN (SELECT {} FROM jsonb_array_elements(CAST(${keys_param}::text AS jsonb)) AS k(v)) AND {cond}{}",
        select_list(target, "t"),
        from_clause(target, "t"),
        casts.join(", "),
        if order.is_empty() { String::new() } else { format!(" ORDER BY {}", order.join(", ")) },
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    ctx.relation_queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rows = if in_query {
        let open = ctx.reads.get().await?;
        let client = open
            .as_ref()
            .ok_or_else(|| Error::database("no read transaction"))?
            .client()?;
        client.query(&sql, &refs).await.map_err(Error::postgres)?
    } else {
        let client = ctx.pool.get().await?;
        client.query(&sql, &refs).await.map_err(Error::postgres)?
    };
    // The related rows form a batch of their own, so their relations load together too.
    let loaded = query_batch(
        target,
        rows.iter().map(|r| decode_row(target, r)).collect(),
        in_query,
    );
    let mut grouped = Grouped::new();
    for ev in loaded {
        if let Some(k) = ev
            .new
            .as_ref()
            .and_then(|row| row_key(row, &r.remote_columns))
        {
            grouped.entry(k).or_default().push(ev);
        }
    }
    Ok(grouped)
}

/// Query results as a batch, so their relation fields load once for all rows too.
pub fn query_batch(table: &Arc<Table>, rows: Vec<Row>, in_query: bool) -> Vec<Arc<Event>> {
    let batch = Arc::new(Batch {
        in_query,
        ..Batch::default()
    });
    let events: Vec<Arc<Event>> = rows
        .into_iter()
        .map(|row| {
            Arc::new(Event {
                table: table.clone(),
                op: walcast_model::Op::Create,
                key: String::new(),
                new: Some(row),
                old: None,
                updated: None,
                cursor: walcast_model::Cursor::default(),
                xid: 0,
                commit_time: 0,
                batch: batch.clone(),
            })
        })
        .collect();
    Batch::link(&events);
    events
}
