//! `walcast tail --database-url`: no walcast in between. A temporary logical slot (Postgres
//! drops it when this connection ends, even if tail is killed) on a publication that has the
//! table, decoded by the same [`ChangeDecoder`] as the service, filtered by the same
//! `walcast-filter` code. When no publication has the table, one is created for it and dropped
//! at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use walcast_filter::RowFilter;
use walcast_model::{Catalog, ChangeDecoder, Datum, Event, Kind, Op, Step, Table, TableSelection};
use walcast_wal::{quote_ident, Lsn, ReplicationClient, ReplicationEvent};

use super::{print_line, progress};
use crate::commands::stopped;

pub async fn run(
    url: &str,
    name: &str,
    filter: Option<&Value>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let pool = crate::db::pool(url)?;
    let client = pool
        .get()
        .await
        .context("connecting to the database (--database-url)")?;
    let (schema, table_name) = match name.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), name.to_owned()),
    };
    let selection = TableSelection {
        schemas: vec![schema.clone()],
        include: Vec::new(),
        exclude: Vec::new(),
        publication: None,
    };
    let catalog = Arc::new(
        Catalog::load(&client, &selection)
            .await
            .context("loading the catalog")?,
    );
    let table = catalog
        .tables
        .iter()
        .find(|t| t.name == table_name || t.gql_name == name)
        .cloned()
        .ok_or_else(|| anyhow!("no table {schema}.{table_name} that walcast can stream"))?;
    let filter = filter
        .map(|value| walcast_filter::parse_where(&table, value))
        .transpose()
        .map_err(|e| anyhow!("--where: {e}"))?;

    let pid = std::process::id();
    let slot = format!("walcast_tail_{pid}");
    let existing: Option<String> = client
        .query_opt(
            "SELECT pubname::text FROM pg_publication_tables \
             WHERE schemaname = $1 AND tablename = $2 ORDER BY pubname LIMIT 1",
            &[&table.schema, &table.name],
        )
        .await
        .context("looking for a publication with the table")?
        .map(|row| row.get(0));
    let (publication, created) = match existing {
        Some(p) => (p, false),
        None => {
            let p = slot.clone();
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR TABLE {}.{}",
                    quote_ident(&p),
                    quote_ident(&table.schema),
                    quote_ident(&table.name)
                ))
                .await
                .with_context(|| {
                    format!("no publication has {schema}.{table_name}, and creating one failed")
                })?;
            (p, true)
        }
    };

    let streamed = stream(
        url,
        &slot,
        &publication,
        catalog,
        selection,
        &table,
        filter.as_ref(),
        stop,
    )
    .await;

    // The slot goes with its connection; say so once Postgres has let go of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(0);
        if left == 0 {
            progress(&format!("temporary slot {slot} dropped"));
            break;
        }
        if Instant::now() >= deadline {
            progress(&format!(
                "temporary slot {slot} still listed; Postgres drops it when the connection is gone"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if created {
        match client
            .batch_execute(&format!("DROP PUBLICATION {}", quote_ident(&publication)))
            .await
        {
            Ok(()) => progress(&format!("publication {publication} dropped")),
            Err(e) => progress(&format!("dropping publication {publication}: {e}")),
        }
    }
    streamed
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    url: &str,
    slot: &str,
    publication: &str,
    catalog: Arc<Catalog>,
    selection: TableSelection,
    table: &Table,
    filter: Option<&RowFilter>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut repl = ReplicationClient::connect(url)
        .await
        .context("opening the replication connection")?;
    repl.create_temporary_slot(slot)
        .await
        .context("creating the temporary slot")?;
    let mut stream = repl
        .start(slot, publication, Lsn(0))
        .await
        .context("starting replication")?;
    progress(&format!(
        "temporary slot {slot} on publication {publication}: streaming {}.{}; Ctrl-C ends",
        table.schema, table.name
    ));
    let mut decoder = ChangeDecoder::new(catalog, selection);
    let mut stop_fut = std::pin::pin!(stopped(stop));
    loop {
        let event = tokio::select! {
            ev = stream.recv() => ev.context("reading the replication stream")?,
            () = &mut stop_fut => {
                stream.close().await.ok();
                return Ok(());
            }
        };
        match event {
            None => bail!("the server ended the replication stream"),
            Some(ReplicationEvent::Keepalive { wal_end, .. }) => {
                if !decoder.in_transaction() {
                    stream.acknowledge(wal_end);
                }
            }
            Some(ReplicationEvent::XLogData { message, .. }) => {
                match decoder.feed(message).context("decoding")? {
                    Step::CatalogStale { schema, table } => {
                        bail!("{schema}.{table} changed shape while tail ran; start it again")
                    }
                    Step::Committed(tx) => {
                        print_events(&tx.events, table, filter)?;
                        stream.acknowledge(tx.end_lsn);
                    }
                    Step::Part(tx) => print_events(&tx.events, table, filter)?,
                    _ => {}
                }
            }
        }
    }
}

fn print_events(
    events: &[Arc<Event>],
    table: &Table,
    filter: Option<&RowFilter>,
) -> anyhow::Result<()> {
    for ev in events.iter().filter(|ev| ev.table.oid == table.oid) {
        let matched = match (ev.op, filter) {
            (_, None) => true,
            (Op::Truncate, Some(_)) => false,
            (_, Some(f)) => ev.filter_row().is_some_and(|row| f.matches(row)),
        };
        if matched {
            print_line(&event_json(ev))?;
        }
    }
    Ok(())
}

/// The event as walcast's `<table>_mutated` payload with every scalar column in `data`.
fn event_json(ev: &Event) -> Value {
    let data = ev.new.as_ref().map(|row| {
        let single_key = match ev.table.primary_key.as_slice() {
            [i] => Some(*i),
            _ => None,
        };
        let mut obj = Map::new();
        for (i, (col, datum)) in ev.table.columns.iter().zip(row).enumerate() {
            let value = datum.to_json(col.ty.kind);
            // A single-column primary key is an ID, a string, as in the GraphQL schema.
            let value = match value {
                Value::Number(n) if single_key == Some(i) => Value::String(n.to_string()),
                other => other,
            };
            obj.insert(col.gql_name.clone(), value);
        }
        Value::Object(obj)
    });
    json!({
        "key": ev.key,
        "event": ev.op.as_str(),
        "cursor": ev.cursor.encode(),
        "commitTime": Datum::TimestampTz(ev.commit_time).to_json(Kind::TimestampTz),
        "data": data,
    })
}
