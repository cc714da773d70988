//! `walcast schema`: the SDL generated from the database.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use walcast_model::Catalog;

use crate::config::ServeArgs;
use crate::db;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let pool = db::pool(args.database_url()?)?;
    let client = pool
        .get()
        .await
        .context("connecting to the database (DATABASE_URL)")?;
    let catalog = Catalog::load(&client, &args.selection())
        .await
        .context("loading the catalog")?;
    // `serve` offers admin `_logical_message` where pgoutput can send messages: 14 and newer.
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .context("reading the server version")?
        .get(0);
    let catalog = Arc::new(catalog);
    let view = walcast_graphql::full_view(&catalog);
    let schema = walcast_graphql::build_schema(catalog, &view, args.mutations, version >= 140_000);
    let sdl = schema.as_sdl();
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{sdl}").and_then(|()| out.flush()) {
        // `walcast schema | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the schema to standard output"),
    }
}
