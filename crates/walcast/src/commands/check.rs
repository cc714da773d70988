//! `walcast check`: what the database lacks for walcast, with the SQL to fix each.

use anyhow::Context;
use walcast_model::{Catalog, ReplicaIdentity, Table};
use walcast_wal::{quote_ident, quote_literal, ReplicationClient, TlsProblem, WalError};

use crate::config::ServeArgs;
use crate::db;

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("ok    {what}");
    }
    fn warn(&mut self, what: &str, fix: &str) {
        println!("warn  {what}\n      fix: {fix}");
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.problems += 1;
        println!("FAIL  {what}\n      fix: {fix}");
    }
}

/// What a connection string's TLS settings verify of the server.
fn tls_summary(conninfo: &str) -> String {
    match walcast_wal::split_conninfo(conninfo).and_then(|(_, tls)| tls.client()) {
        Ok(Some(tls)) => tls.describe(),
        Ok(None) => "none (sslmode=disable)".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// The advice for a connection that failed, from the kind of TLS problem or the SQLSTATE in
/// its chain of causes.
fn connection_fix(e: &anyhow::Error) -> &'static str {
    let tls = e.chain().find_map(WalError::tls_problem_in);
    match tls {
        Some(TlsProblem::NameMismatch) => {
            "use the host name the server's certificate names in the connection string, or sslmode=verify-ca to check the chain only"
        }
        Some(TlsProblem::UntrustedCertificate) => {
            "set sslrootcert to the certificate of the CA that signed the server's certificate"
        }
        Some(TlsProblem::RootCertificates) => {
            "give sslrootcert=<file of the CA that signed the server's certificate> or sslrootcert=system, or an sslmode that does not verify"
        }
        Some(TlsProblem::ClientCertificate) => {
            "point sslcert and sslkey at a readable PEM certificate and its unencrypted key"
        }
        Some(TlsProblem::NotOffered) => {
            "enable ssl on the server, or use sslmode=prefer or sslmode=disable"
        }
        _ => match sqlstate(e) {
            Some("3D000") => "check the database name of the connection string",
            _ => "check the host, port, user, password and sslmode of the connection string, and that pg_hba.conf admits this client (a `replication` line for the replication connection)",
        },
    }
}

/// The SQLSTATE of a server error somewhere in the chain.
fn sqlstate(e: &anyhow::Error) -> Option<&str> {
    e.chain().find_map(|cause| {
        cause
            .downcast_ref::<WalError>()
            .and_then(WalError::sqlstate)
            .or_else(|| {
                cause
                    .downcast_ref::<tokio_postgres::Error>()
                    .and_then(|pg| pg.code())
                    .map(|c| c.code())
            })
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut r = Report { problems: 0 };
    let client = connections(&args, &mut r).await?;
    server_settings(&client, &mut r).await?;
    replication_role(&client, &mut r).await?;
    let catalog = Catalog::load(&client, &args.selection()).await?;
    slot(&client, &args, &mut r).await?;
    let published = publication(&client, &args, &catalog, &mut r).await?;
    for t in &catalog.tables {
        table(t, &catalog, &args, published.as_deref(), &mut r);
    }
    if let Some(url) = args.nats_url.as_deref() {
        nats(url, &args, &mut r).await;
    }
    if r.problems > 0 {
        anyhow::bail!("{} problem(s) found", r.problems);
    }
    println!("walcast can stream this database.");
    Ok(())
}

/// The ordinary and the replication connection, with the TLS each negotiated.
async fn connections(
    args: &ServeArgs,
    r: &mut Report,
) -> anyhow::Result<deadpool_postgres::Object> {
    let url = args.database_url()?;
    let pool = match db::pool(url) {
        Ok(pool) => pool,
        Err(e) => {
            r.fail(&format!("DATABASE_URL: {e:#}"), connection_fix(&e));
            return Err(e);
        }
    };
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            let e = anyhow::Error::new(e).context("connecting to the database (DATABASE_URL)");
            r.fail(&format!("{e:#}"), connection_fix(&e));
            return Err(e);
        }
    };
    r.ok(&format!(
        "connected (DATABASE_URL); TLS: {}",
        tls_summary(url)
    ));
    let replication_url = args.replication_url()?;
    match ReplicationClient::connect(replication_url).await {
        Ok(repl) => {
            r.ok(&format!(
                "replication connection; TLS: {}",
                tls_summary(replication_url)
            ));
            let _ = repl.close().await;
        }
        Err(e) => {
            let e = anyhow::Error::new(e).context(if args.replication_url.is_some() {
                "opening the replication connection (WALCAST_REPLICATION_URL)"
            } else {
                "opening the replication connection (DATABASE_URL)"
            });
            r.fail(&format!("{e:#}"), connection_fix(&e));
        }
    }
    Ok(client)
}

/// The server's version and the settings logical replication needs.
async fn server_settings(client: &deadpool_postgres::Object, r: &mut Report) -> anyhow::Result<()> {
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one("SELECT current_setting($1)", &[&name])
                .await
                .map(|row| row.get::<_, String>(0))
                .with_context(|| format!("reading {name}"))
        }
    };
    let version = setting("server_version_num").await?;
    let major = version.parse::<u32>().unwrap_or(0) / 10000;
    if major >= 13 {
        r.ok(&format!("Postgres {major}"));
    } else {
        r.fail(
            &format!("Postgres {major}: walcast needs 13 or newer"),
            "upgrade Postgres",
        );
    }
    let wal_level = setting("wal_level").await?;
    if wal_level == "logical" {
        r.ok("wal_level = logical");
    } else {
        r.fail(
            &format!("wal_level = {wal_level}"),
            "ALTER SYSTEM SET wal_level = logical; then restart Postgres",
        );
    }
    for (setting_name, used_sql) in [
        (
            "max_replication_slots",
            "SELECT count(*) FROM pg_replication_slots",
        ),
        (
            "max_wal_senders",
            "SELECT count(*) FROM pg_stat_replication",
        ),
    ] {
        let max: i64 = setting(setting_name).await?.parse().unwrap_or(0);
        let used: i64 = client.query_one(used_sql, &[]).await?.get(0);
        if used < max {
            r.ok(&format!("{setting_name}: {used} of {max} in use"));
        } else {
            r.fail(
                &format!("{setting_name}: {used} of {max} in use, none left"),
                &format!(
                    "ALTER SYSTEM SET {setting_name} = {}; then restart Postgres",
                    max + 2
                ),
            );
        }
    }
    Ok(())
}

/// The role walcast connects as must be allowed to replicate.
async fn replication_role(
    client: &deadpool_postgres::Object,
    r: &mut Report,
) -> anyhow::Result<()> {
    let row = client
        .query_one(
            "SELECT rolreplication OR rolsuper, current_user::text FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (can, user): (bool, String) = (row.get(0), row.get(1));
    if can {
        r.ok(&format!("role {user} may replicate"));
    } else {
        r.fail(
            &format!("role {user} lacks REPLICATION"),
            &format!("ALTER ROLE {} WITH REPLICATION;", quote_ident(&user)),
        );
    }
    Ok(())
}

/// The slot, if it exists, must be a pgoutput slot of this database.
async fn slot(
    client: &deadpool_postgres::Object,
    args: &ServeArgs,
    r: &mut Report,
) -> anyhow::Result<()> {
    let slot = client
        .query_opt(
            "SELECT slot_type::text, plugin::text, database::text, current_database()::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&args.slot],
        )
        .await?;
    let drop_it = format!(
        "SELECT pg_drop_replication_slot({});  -- or choose another WALCAST_SLOT",
        quote_literal(&args.slot)
    );
    match slot {
        None => r.ok(&format!("slot {} will be created at start", args.slot)),
        Some(row) => {
            let kind: Option<String> = row.try_get(0)?;
            let plugin: Option<String> = row.try_get(1)?;
            let database: Option<String> = row.try_get(2)?;
            let current: Option<String> = row.try_get(3)?;
            if kind.as_deref() != Some("logical") {
                r.fail(&format!("slot {} is a physical slot", args.slot), &drop_it);
            } else if plugin.as_deref() != Some("pgoutput") {
                r.fail(
                    &format!(
                        "slot {} uses plugin {}",
                        args.slot,
                        plugin.as_deref().unwrap_or("(none)")
                    ),
                    &drop_it,
                );
            } else if database != current {
                // A logical slot decodes one database only.
                r.fail(
                    &format!(
                        "slot {} belongs to database {}, not {}",
                        args.slot,
                        database.as_deref().unwrap_or("(none)"),
                        current.as_deref().unwrap_or("(none)")
                    ),
                    &drop_it,
                );
            } else {
                r.ok(&format!("slot {} exists", args.slot))
            }
        }
    }
    Ok(())
}

/// The publication's tables, or None when it does not exist yet (walcast creates it).
async fn publication(
    client: &deadpool_postgres::Object,
    args: &ServeArgs,
    catalog: &Catalog,
    r: &mut Report,
) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let published: Vec<(String, String)> = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&args.publication],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let pub_exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&args.publication],
        )
        .await?
        .is_some();
    if !pub_exists {
        r.ok(&format!(
            "publication {} will be created at start for {} tables",
            args.publication,
            catalog.tables.len()
        ));
    }
    Ok(pub_exists.then_some(published))
}

/// One table: in the publication, its published columns and rows, its key and replica identity.
fn table(
    t: &Table,
    catalog: &Catalog,
    args: &ServeArgs,
    published_tables: Option<&[(String, String)]>,
    r: &mut Report,
) {
    let name = format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name));
    if published_tables.is_some_and(|p| !p.contains(&(t.schema.clone(), t.name.clone()))) {
        r.fail(
            &format!(
                "table {} is not in publication {}",
                t.qualified_name(),
                args.publication
            ),
            &format!(
                "ALTER PUBLICATION {} ADD TABLE {name};",
                quote_ident(&args.publication)
            ),
        );
    }
    let published = catalog.published(t.oid);
    let column_list = published.and_then(|p| p.columns.as_ref());
    if let (Some(p), Some(columns)) = (published, column_list) {
        r.ok(&format!(
            "table {}: publication {} publishes columns ({}); not exposed: {}",
            t.qualified_name(),
            args.publication,
            columns.join(", "),
            if p.hidden.is_empty() {
                "none".to_owned()
            } else {
                p.hidden.join(", ")
            }
        ));
    }
    if let Some(filter) = published.and_then(|p| p.row_filter.as_ref()) {
        r.ok(&format!(
            "table {}: publication {} publishes only rows WHERE {filter}; an UPDATE that moves a row into the filter arrives as a create, out of it as a delete",
            t.qualified_name(),
            args.publication,
        ));
        if t.replica_identity != ReplicaIdentity::Full {
            r.warn(
                &format!(
                    "table {}: a row filter without REPLICA IDENTITY FULL makes Postgres refuse UPDATE and DELETE on the table when the filter reads a column outside the replica identity",
                    t.qualified_name()
                ),
                &format!("ALTER TABLE {name} REPLICA IDENTITY FULL;"),
            );
        }
    }
    key_and_identity(t, &name, column_list.is_some(), &args.publication, r);
}

/// The key events carry, and whether updates carry the previous row.
fn key_and_identity(t: &Table, name: &str, column_list: bool, publication: &str, r: &mut Report) {
    if t.primary_key.is_empty() && column_list {
        r.warn(
            &format!(
                "table {}: no primary key among the published columns: events carry an empty key",
                t.qualified_name()
            ),
            &format!(
                "ALTER PUBLICATION {pubname} DROP TABLE {name}; ALTER PUBLICATION {pubname} ADD TABLE {name} (<the key columns and the others>);",
                pubname = quote_ident(publication)
            ),
        );
    } else if t.primary_key.is_empty() {
        r.warn(
            &format!(
                "table {} has no primary key: events carry an empty key",
                t.qualified_name()
            ),
            &format!("ALTER TABLE {name} ADD PRIMARY KEY (...);"),
        );
    }
    if t.replica_identity == ReplicaIdentity::Full {
        r.ok(&format!(
            "table {} has REPLICA IDENTITY FULL",
            t.qualified_name()
        ));
    } else {
        r.warn(
            &format!(
                "table {}: without REPLICA IDENTITY FULL, previousValues holds only the key and updatedFields is null",
                t.qualified_name()
            ),
            &format!("ALTER TABLE {name} REPLICA IDENTITY FULL;"),
        );
    }
}

/// Cluster mode: NATS reachable, JetStream enabled, the stream usable as it is configured.
async fn nats(url: &str, args: &ServeArgs, r: &mut Report) {
    let js = match crate::cluster::connect(url).await {
        Ok(js) => js,
        Err(e) => {
            r.fail(
                &format!("{e:#}"),
                "check WALCAST_NATS_URL and that the NATS server is running and reachable",
            );
            return;
        }
    };
    r.ok(&format!("connected to NATS (WALCAST_NATS_URL {url})"));
    if let Err(e) = js.query_account().await {
        r.fail(
            &format!("JetStream: {e}"),
            "start nats-server with JetStream (-js, or jetstream {} in its configuration)",
        );
        return;
    }
    r.ok("JetStream enabled");
    let settings = crate::cluster::settings(args);
    let name = settings.stream_name();
    if js.get_stream(&name).await.is_err() {
        r.ok(&format!(
            "stream {name} does not exist yet: walcast creates it"
        ));
        return;
    }
    match crate::cluster::open_stream(&js, args).await {
        Ok(_) => r.ok(&format!("stream {name} has the configuration walcast needs")),
        Err(e) => r.fail(
            &format!("{e:#}"),
            "change the WALCAST_STREAM_* settings to match the stream, or update the stream (nats stream edit)",
        ),
    }
}
