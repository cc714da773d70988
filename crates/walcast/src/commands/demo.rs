//! `walcast demo`: a throw-away local Postgres with the sample schema, served at once.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use walcast_pgcluster::PgCluster;

use crate::config::{AuthMode, Cli, DemoArgs};

const DEMO_SQL: &str = include_str!("../../../../sql/demo.sql");

fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    if bytes == [0u8; 16] {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    eprintln!("walcast demo: starting a throw-away Postgres (wal_level=logical)…");
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .context("starting Postgres")?
        .context("starting Postgres")?;
    eprintln!(
        "walcast demo: Postgres {} on port {}; loading the sample schema…",
        cluster.major_version(),
        cluster.port()
    );
    cluster
        .create_database("demo")
        .context("creating database demo")?;
    cluster
        .psql("demo", DEMO_SQL)
        .context("loading sql/demo.sql")?;
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let token = random_token();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("[{token}]\nrole = \"admin\"\n"))
        .context("writing the demo token")?;

    use clap::Parser;
    let mut serve = Cli::parse_from(["walcast"]).serve;
    serve.database_url = Some(cluster.url("demo"));
    serve.listen = args.listen;
    serve.auth = AuthMode::Handshake;
    serve.tokens_file = Some(tokens);
    serve.mutations = true;

    let url = cluster.url("demo");
    if args.writes_per_second > 0.0 {
        let period = Duration::from_secs_f64(1.0 / args.writes_per_second);
        tokio::spawn(writer(url.clone(), period));
    }
    let path = serve.graphql_path.clone();
    let token_for_banner = token.clone();
    let result = super::serve::serve_until(serve, super::serve::termination(), move |addr| {
        println!(
            "\nwalcast demo is live.\n\n  GraphiQL:   http://{addr}{path}?access_token={token_for_banner}\n  Live page:  http://{addr}/example?access_token={token_for_banner}\n  WebSocket:  ws://{addr}{path}\n  Token:      {token_for_banner}\n  Database:   {url}\n\nSubscribe (npm i graphql-ws):\n\n  import {{ createClient }} from 'graphql-ws';\n  const client = createClient({{\n    url: 'ws://{addr}{path}',\n    keepAlive: 30000,\n    connectionParams: async () => ({{ access_token: '{token_for_banner}' }}),\n  }});\n  client.subscribe(\n    {{ query: 'subscription {{ messages_mutated {{ key event data {{ text }} }} }}' }},\n    {{ next: ({{ data }}) => console.log(JSON.stringify(data)), error: console.error, complete: () => {{}} }},\n  );\n\nThen write with plain SQL:\n\n  psql '{url}' -c \"INSERT INTO messages (text) VALUES ('hi')\"\n\nCtrl-C stops walcast and removes the database.\n"
        );
    })
    .await;
    drop(cluster);
    result
}

/// Inserts and updates messages at a steady rate, so events flow without typing SQL.
async fn writer(url: String, period: Duration) {
    let Ok(pool) = crate::db::pool(&url) else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let Ok(client) = pool.get().await else {
            continue;
        };
        let text = format!("demo message {n}");
        let sql = if n.is_multiple_of(3) {
            "UPDATE messages SET text = $1 WHERE id = (SELECT max(id) FROM messages)"
        } else {
            "INSERT INTO messages (text) VALUES ($1)"
        };
        if let Err(e) = client.execute(sql, &[&text]).await {
            tracing::warn!(error = %e, "demo writer");
        }
    }
}
