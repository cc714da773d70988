//! `walcast tail <table>`: a table's changes as JSON lines on standard output, the quickest way
//! to see what a filter matches. Against a running walcast over its WebSocket (graphql-transport-ws,
//! with `--after` from its retention window), or with `--database-url` straight from the WAL
//! through a temporary slot. Each line is the `<table>_mutated` payload: `key`, `event`,
//! `cursor`, `commitTime` and `data` (every scalar column; null for a delete). Progress and
//! errors go to standard error. Ctrl-C (or SIGTERM) ends it.

mod direct;
mod socket;

use std::io::Write;

use thiserror::Error;

use super::stop_signal;
use crate::config::TailArgs;

/// What stops tail before the user does.
#[derive(Debug, Error)]
pub enum TailError {
    #[error("--where is not JSON: {0}")]
    WhereNotJson(serde_json::Error),
    #[error("--where must be a JSON object like {{\"text_contains\": \"hi\"}}, not {0}")]
    WhereNotObject(String),
    #[error("--after needs a running walcast (its retention window): a temporary slot only sees changes from now on")]
    AfterWithoutServer,
    #[error("{0} is not a WebSocket URL (ws://HOST:PORT/graphql)")]
    NotWebSocket(String),
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let filter = match &args.where_json {
        None => None,
        Some(text) => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(TailError::WhereNotJson)?;
            if !value.is_object() {
                return Err(TailError::WhereNotObject(value.to_string()).into());
            }
            Some(value)
        }
    };
    let stop = stop_signal()?;
    match &args.database_url {
        Some(url) => {
            if args.after.is_some() {
                return Err(TailError::AfterWithoutServer.into());
            }
            direct::run(url, &args.table, filter.as_ref(), stop).await
        }
        None => socket::run(&args, filter, stop).await,
    }
}

/// One event as a line on standard output, flushed so a pipe sees it at once.
fn print_line(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

fn progress(line: &str) {
    eprintln!("walcast tail: {line}");
}
