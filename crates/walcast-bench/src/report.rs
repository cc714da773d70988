//! The markdown report and the update of docs/benchmarks.md.
//!
//! The document keeps each generated part between `<!-- walcast-bench:NAME -->` and
//! `<!-- /walcast-bench:NAME -->`; an update replaces only the parts that were measured, so text
//! outside the markers (findings, say) and the results of scenarios not run stay.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::bench::workspace_root;

/// Parts of the document, in order, with their headings.
pub const SECTIONS: &[(&str, &str)] = &[
    ("machine", "Machine and run"),
    ("ingest", "1. Ingest ceiling"),
    ("latency", "2. Latency under load"),
    ("fanout", "3. Fan-out scale"),
    ("matching", "4. Matching"),
    ("cluster", "5. Cluster mode: reader → JetStream → gateway"),
    ("peers", "6. A peer: PostGraphile 4 live queries"),
];

const INTRO: &str = "\
# Benchmarks

`walcast-bench` (crate `crates/walcast-bench`) measures walcast against the Postgres walsender
itself. It starts a throw-away Postgres (`walcast-pgcluster`; or uses `DATABASE_URL`), the release
`walcast` binary (`walcast serve`, auth `public`, a permissions file granting `select` on the
`bench` table), and a load generator of its own that speaks `graphql-transport-ws`. Every figure
below is measured in one run, baseline and walcast alike, on the machine described; the load
generator, the writer, Postgres and walcast share its cores.

```sh
cargo build --release -p walcast -p walcast-bench
cargo bench -p walcast-filter --bench matching --no-run            # the matching scenario's bench, built ahead
target/release/walcast-bench all --quick                          # small sizes, about 2 minutes
target/release/walcast-bench all --write docs/benchmarks.md       # full sizes, updates this file
target/release/walcast-bench ingest --rows 200000                 # one scenario
target/release/walcast-bench latency --rates 10000 --subscribers 1000 --matching one-percent   # one cell
target/release/walcast-bench peers --markdown peers.md            # against PostGraphile 4 (installs it)
target/release/walcast-bench load --url ws://127.0.0.1:8080/graphql \\
    --query 'subscription { bench_mutated(where: {bucket: {{i}}}) { key data { id sent_at } } }' \\
    --modulo 100 --connections 100 --subscriptions-per-connection 10 --token TOKEN --duration 30
```

The `load` command works against any `graphql-transport-ws` server: it opens the connections,
sends `connection_init` (with `access_token` when `--token` is given), subscribes, counts `next`
messages and, when a payload has a `sent_at` field (microseconds since the Unix epoch), reports the
latency from that time to the message's arrival. `{{i}}` in the query is replaced by the
subscription's number (modulo `--modulo`).

Method:

- **Ingest ceiling.** N rows (`bench(id int8 primary key, bucket int4, sent_at int8, payload text)`,
  1,000 per transaction) are written, then streamed. Baseline: `pg_recvlogical` with `pgoutput`
  (`proto_version=1`, the same publication, `messages=true` on Postgres 14+ as walcast asks) on a
  fresh slot, `--endpos` at the WAL position after the writes, output to `/dev/null`, timed from its
  start to its exit. walcast, each time on a fresh slot: *started on the backlog* (the slot made by
  a first start, the rows written while walcast is stopped, the clock running from the second start
  until `walcast_events_decoded_total` reaches N: process start, catalog load and the retention
  window included); *walsender resumed* (walcast running and caught up, its walsender stopped with
  SIGSTOP while the rows are written, so nothing is decoded ahead, the clock running from SIGCONT;
  with `DATABASE_URL` a proxy of the bench holds the stream instead); and the same with *one
  subscriber* receiving every event over a WebSocket, until its N-th `next` arrives, with the
  default `WALCAST_CLIENT_QUEUE` and with a queue of at least N. The counter is read every 100 ms and
  the moment it reaches N interpolated between the last two readings: reading it every few
  milliseconds slowed walcast down measurably on this shared machine. Last, single transactions of
  K rows go to one idle subscriber.
- **Latency under load.** Rows are written at a steady rate (100 transactions a second), each with
  `sent_at` = the server's `clock_timestamp()` in microseconds. S subscribers, one connection each,
  either all match every row or each matches 1% (`bench_mutated(where: {bucket: K})`,
  `bucket = id % 100`). Latency is from `sent_at` to the client's receipt; every delivery is counted
  and compared with what the filters should have matched; a cell waits for the rest at most 30 s
  after the last write. Each row also gives the p99 of the rows written in the cell's first and
  last second, and walcast's CPU time (/proc/PID/stat) over the cell per million messages
  delivered, the figure that does not depend on the machine's load. The cluster runs with
  `synchronous_commit=on` (and `fsync=off`): logical decoding only reads flushed WAL, so with
  asynchronous commit every change would wait for the WAL writer (up to 200 ms).
- **Fan-out scale.** C connections are opened (then C x 10 subscriptions to every row), idle;
  walcast's RSS (`VmRSS`) is read before connecting, after connecting and after subscribing. The
  bench raises its open-files limit to the hard limit; walcast inherits it. Then one row per
  second; the latency of every delivery and, per row, to its last subscriber. Last, SIGTERM with
  every connection still open: the time to the exit, its code, and the connections that got a
  `complete` for each subscription and a 1001 close.
- **Matching.** The in-process bench of `walcast-filter`, as it prints.

`--perf-dir DIR` records `perf record --call-graph dwarf` profiles of walcast (and the walsender)
during the ingest runs and of walcast during the fan-out rows.
";

fn marker(name: &str) -> (String, String) {
    (
        format!("<!-- walcast-bench:{name} -->"),
        format!("<!-- /walcast-bench:{name} -->"),
    )
}

/// A full document with the given sections (name, body); absent ones say so.
pub fn document(parts: &[(&str, String)]) -> String {
    let mut out = String::from(INTRO);
    for (name, heading) in SECTIONS {
        let (open, close) = marker(name);
        let body = parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| "Not measured yet.\n".into());
        out.push_str(&format!(
            "\n## {heading}\n\n{open}\n{}\n{close}\n",
            body.trim_end()
        ));
    }
    out
}

/// `existing` with the given sections replaced; `None` when a section's markers are missing.
pub fn update(existing: &str, parts: &[(&str, String)]) -> Option<String> {
    let mut doc = existing.to_owned();
    for (name, body) in parts {
        let (open, close) = marker(name);
        let start = doc.find(&open)? + open.len();
        let end = start + doc[start..].find(&close)?;
        doc.replace_range(start..end, &format!("\n{}\n", body.trim_end()));
    }
    Some(doc)
}

/// Writes the sections into `path`, keeping everything else; creates the file if needed.
pub fn write(path: &Path, parts: &[(&str, String)]) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(path).ok();
    let doc = existing
        .as_deref()
        .and_then(|text| update(text, parts))
        .unwrap_or_else(|| document(parts));
    std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `git rev-parse --short HEAD`, with `(+ uncommitted changes)` when the tree is dirty.
pub fn walcast_commit() -> String {
    let Some(head) = command_output("git", &["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match command_output("git", &["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if !s.is_empty() => format!("{head} (+ uncommitted changes)"),
        _ => head,
    }
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a calendar date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The machine and run description.
pub fn machine(
    pg_version: &str,
    own_cluster: bool,
    sizes: &str,
    settings: &[(&str, &str)],
) -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = meminfo_total()
        .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "unknown".into());
    let kernel = command_output("uname", &["-r"]).unwrap_or_else(|| "unknown".into());
    let mut out = String::new();
    out.push_str("| | |\n|---|---|\n");
    out.push_str(&format!("| date | {} |\n", today()));
    out.push_str(&format!("| walcast commit | `{}` |\n", walcast_commit()));
    out.push_str(&format!(
        "| CPU | {} (nproc {cores}) |\n",
        cpu_model().unwrap_or_else(|| "unknown".into())
    ));
    out.push_str(&format!("| memory | {memory} |\n"));
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let first: Vec<&str> = load.split_whitespace().take(3).collect();
        out.push_str(&format!(
            "| load average at start (1, 5, 15 min) | {} (other work on the machine shares the cores) |\n",
            first.join(", ")
        ));
    }
    out.push_str(&format!("| kernel | Linux {kernel} |\n"));
    let pg = if own_cluster {
        let extra: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{pg_version}, throw-away cluster (walcast-pgcluster: wal_level=logical, fsync=off, full_page_writes=off; \
             set by the bench: {})",
            extra.join(", ")
        )
    } else {
        format!("{pg_version} (DATABASE_URL)")
    };
    out.push_str(&format!("| Postgres | {pg} |\n"));
    out.push_str(&format!(
        "| build | release (`cargo build --release`) |\n| sizes | {sizes} |\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_only_given_sections() {
        let doc = document(&[("ingest", "first\n".into())]);
        assert!(doc.contains("first"));
        assert!(doc.contains("Not measured yet."));
        let doc = format!("{doc}\n## Findings\n\nkept\n");
        let updated = update(&doc, &[("latency", "| a |\n".into())]).expect("markers");
        assert!(updated.contains("first"));
        assert!(updated.contains("| a |"));
        assert!(updated.contains("kept"));
        let again = update(&updated, &[("latency", "| b |\n".into())]).expect("markers");
        assert!(!again.contains("| a |") && again.contains("| b |"));
        assert!(update("no markers", &[("ingest", String::new())]).is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
