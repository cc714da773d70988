//! Ingest ceiling: N rows written first, then streamed, by pg_recvlogical and by walcast.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bench::{Bench, QUERY_ALL};
use crate::client::{Load, LoadSpec};
use crate::db::{self, PUBLICATION};
use crate::perf::Profile;
use crate::proxy::PausableProxy;
use crate::stats::{rate, thousands};

const RECV_SLOT: &str = "walcast_bench_recv";
pub const SLOT: &str = "walcast_bench_ingest";
/// Interval of the decoded-counter polling.
const POLL_MS: u64 = 100;
const DECODED: &str = "walcast_events_decoded_total";

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub rows: u64,
    pub rows_per_tx: u64,
    /// Runs of each variant; the median is reported.
    pub repeats: usize,
}

/// One timed run.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub secs: f64,
    /// Share of the WAL the walsender had decoded and sent before the clock started.
    pub present: Option<f64>,
    pub note: Option<String>,
    /// Every row arrived (else the time is not a throughput).
    pub complete: bool,
}

#[derive(Debug, Clone, Default)]
pub struct IngestResult {
    pub rows: u64,
    pub rows_per_tx: u64,
    pub recvlogical: Vec<Run>,
    /// walcast started on the backlog (written while it was stopped).
    pub cold: Vec<Run>,
    /// walcast running, its replication stream paused while writing, no subscriber.
    pub paused: Vec<Run>,
    /// As `paused`, with one subscriber receiving every event over a WebSocket.
    pub subscriber: Vec<Run>,
    /// As `subscriber`, with a client queue large enough for the whole backlog.
    pub subscriber_big_queue: Vec<Run>,
    /// One idle subscriber, one transaction of K rows: (K, received, how it was closed).
    pub big_transactions: Vec<(u64, u64, Option<String>)>,
    pub errors: Vec<String>,
}

fn median(runs: &[Run]) -> Option<&Run> {
    let mut sorted: Vec<&Run> = runs.iter().collect();
    sorted.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    sorted.get(sorted.len() / 2).copied()
}

impl IngestResult {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let n = self.rows as f64;
        let base = median(&self.recvlogical).map(|r| n / r.secs);
        out.push_str(&format!(
            "{} rows of 4 small columns, {} per transaction, written before streaming starts; median of {} run(s).\n\n",
            thousands(self.rows),
            thousands(self.rows_per_tx),
            self.recvlogical.len().max(self.cold.len())
        ));
        out.push_str("| reader | seconds | rows/s | vs pg_recvlogical | target | note |\n|---|---:|---:|---:|---|---|\n");
        let rows: [(&str, &[Run], Option<f64>); 5] = [
            (
                "pg_recvlogical (pgoutput, -f /dev/null)",
                &self.recvlogical,
                None,
            ),
            (
                "walcast, no subscriber, started on the backlog",
                &self.cold,
                Some(0.9),
            ),
            (
                "walcast, no subscriber, walsender resumed",
                &self.paused,
                Some(0.9),
            ),
            (
                "walcast, 1 subscriber receiving every event",
                &self.subscriber,
                Some(0.6),
            ),
            (
                "walcast, 1 subscriber receiving every event, queue ≥ N",
                &self.subscriber_big_queue,
                Some(0.6),
            ),
        ];
        for (label, runs, target) in rows {
            let Some(run) = median(runs) else {
                continue;
            };
            let per_sec = n / run.secs;
            let (secs, per_sec_text, ratio) = match (run.complete, base, target) {
                (false, _, _) => ("—".into(), "—".into(), "—".into()),
                (true, Some(b), Some(_)) => (
                    format!("{:.2}", run.secs),
                    rate(per_sec),
                    format!("{:.2}x", per_sec / b),
                ),
                (true, _, _) => (format!("{:.2}", run.secs), rate(per_sec), "1.00x".into()),
            };
            let target = match (base, target) {
                (Some(b), Some(t)) => {
                    let ok = run.complete && per_sec / b >= t;
                    format!("≥ {t}x: {}", if ok { "met" } else { "**missed**" })
                }
                _ => String::new(),
            };
            let mut note = run.note.clone().unwrap_or_default();
            if let Some(p) = run.present {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(&format!(
                    "{:.1}% of the WAL decoded before the resume",
                    p * 100.0
                ));
            }
            out.push_str(&format!(
                "| {label} | {secs} | {per_sec_text} | {ratio} | {target} | {note} |\n"
            ));
        }
        if !self.big_transactions.is_empty() {
            out.push_str(
                "\nOne transaction of K rows with one idle subscriber to every row (default \
                 `WALCAST_CLIENT_QUEUE`, 1,024):\n\n| K | received | connection |\n|---:|---:|---|\n",
            );
            for (k, received, close) in &self.big_transactions {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    thousands(*k),
                    thousands(*received),
                    close.as_deref().unwrap_or("open")
                ));
            }
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out
    }
}

pub async fn run(bench: &mut Bench, cfg: &IngestConfig) -> IngestResult {
    let mut result = IngestResult {
        rows: cfg.rows,
        rows_per_tx: cfg.rows_per_tx,
        ..Default::default()
    };
    for i in 0..cfg.repeats.max(1) {
        eprintln!("ingest: run {} of {}", i + 1, cfg.repeats.max(1));
        match recvlogical(bench, cfg).await {
            Ok(r) => result.recvlogical.push(r),
            Err(e) => result.errors.push(format!("pg_recvlogical: {e:#}")),
        }
        match cold(bench, cfg).await {
            Ok(r) => result.cold.push(r),
            Err(e) => result
                .errors
                .push(format!("walcast started on the backlog: {e:#}")),
        }
        match paused(bench, cfg, false, None).await {
            Ok(r) => result.paused.push(r),
            Err(e) => result.errors.push(format!("walcast, paused stream: {e:#}")),
        }
        match paused(bench, cfg, true, None).await {
            Ok(r) => result.subscriber.push(r),
            Err(e) => result
                .errors
                .push(format!("walcast with a subscriber: {e:#}")),
        }
        let queue = cfg.rows as usize + 1024;
        match paused(bench, cfg, true, Some(queue)).await {
            Ok(r) => result.subscriber_big_queue.push(r),
            Err(e) => result
                .errors
                .push(format!("walcast with a subscriber, large queue: {e:#}")),
        }
    }
    match big_transactions(bench, &[1000, 1024, 1025, 5000]).await {
        Ok(r) => result.big_transactions = r,
        Err(e) => result.errors.push(format!("large transactions: {e:#}")),
    }
    result
}

/// Delivers single transactions of each size to a fresh idle subscriber.
async fn big_transactions(
    bench: &mut Bench,
    sizes: &[u64],
) -> anyhow::Result<Vec<(u64, u64, Option<String>)>> {
    bench.db.drop_slot(SLOT).await?;
    let opts = bench.walcast_options(SLOT);
    let walcast = bench.start_walcast(&opts).await?;
    let mut out = Vec::new();
    for &rows in sizes {
        let mut spec = LoadSpec::new(walcast.ws_url(), QUERY_ALL);
        spec.connections = 1;
        let load = Load::start(spec).await;
        Bench::wait_subscriptions(&walcast, load.subscriptions(), Duration::from_secs(30)).await?;
        let first = bench.db.next_id().await?;
        bench.db.write_rows(first, rows, rows).await?;
        load.wait_for(rows, Duration::from_secs(2)).await;
        let report = load.finish().await;
        let close = report
            .closes
            .keys()
            .chain(report.errors.keys())
            .next()
            .map(|c| format!("closed: {c}"));
        out.push((rows, report.received, close));
        walcast
            .wait_metric_below("walcast_subscriptions_active", 1.0, Duration::from_secs(30))
            .await?;
    }
    walcast.stop().await?;
    bench.db.drop_slot(SLOT).await?;
    Ok(out)
}

pub(crate) async fn write(bench: &Bench, cfg: &IngestConfig) -> anyhow::Result<()> {
    let first = bench.db.next_id().await?;
    let t = Instant::now();
    bench
        .db
        .write_rows(first, cfg.rows, cfg.rows_per_tx)
        .await?;
    eprintln!(
        "ingest: wrote {} rows in {:.2} s",
        cfg.rows,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// pg_recvlogical on a fresh slot reads the backlog of `cfg.rows` rows written after the slot was made.
pub(crate) async fn recvlogical(bench: &Bench, cfg: &IngestConfig) -> anyhow::Result<Run> {
    let db = &bench.db;
    db.drop_slot(RECV_SLOT).await?;
    let bin = db.bin_dir.join("pg_recvlogical");
    let status = Command::new(&bin)
        .args([
            "-d",
            &db.url,
            "--slot",
            RECV_SLOT,
            "--create-slot",
            "-P",
            "pgoutput",
        ])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("pg_recvlogical --create-slot: {status}");
    }
    write(bench, cfg).await?;
    let end = db.current_lsn().await?;
    let mut cmd = Command::new(&bin);
    cmd.args(["-d", &db.url, "--slot", RECV_SLOT, "--start", "--no-loop"])
        .arg(format!("--endpos={end}"))
        .args(["-o", "proto_version=1"])
        .arg("-o")
        .arg(format!("publication_names={PUBLICATION}"));
    if db.server_version_num >= 140000 {
        // walcast asks for logical decoding messages too.
        cmd.args(["-o", "messages=true"]);
    }
    cmd.args(["-f", "/dev/null"]).stdin(Stdio::null());
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await?
        .context("running pg_recvlogical --start")?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("pg_recvlogical --start: {status}");
    }
    db.drop_slot(RECV_SLOT).await?;
    Ok(Run {
        secs,
        complete: true,
        ..Default::default()
    })
}

/// The slot is created by a first start; the rows are written while walcast is stopped; the
/// clock runs from the second start until the decoded counter reaches N.
async fn cold(bench: &mut Bench, cfg: &IngestConfig) -> anyhow::Result<Run> {
    bench.db.drop_slot(SLOT).await?;
    let opts = bench.walcast_options(SLOT);
    let walcast = bench.start_walcast(&opts).await?;
    walcast.stop().await?;
    write(bench, cfg).await?;
    let started = Instant::now();
    let mut walcast = crate::walcast::Walcast::spawn(&opts)?;
    // Nothing is served before the backlog is read: the first answer comes when it is.
    let done = walcast
        .wait_metric(
            DECODED,
            cfg.rows as f64,
            Duration::from_millis(5),
            Duration::from_secs(900),
        )
        .await?;
    let secs = done.duration_since(started).as_secs_f64();
    walcast.wait_ready(Duration::from_secs(60)).await?;
    let decoded = walcast.metric(DECODED).await?;
    walcast.stop().await?;
    bench.db.drop_slot(SLOT).await?;
    let note =
        (decoded as u64 != cfg.rows).then(|| format!("decoded {decoded}, expected {}", cfg.rows));
    Ok(Run {
        secs,
        present: None,
        complete: note.is_none(),
        note: Some(note.unwrap_or_else(|| "includes process start-up and catalog load".into())),
    })
}

/// Polls the decoded counter until it reaches `target`; returns the seconds until it did,
/// interpolated between the last two samples. The polling is sparse on purpose: frequent HTTP
/// requests slow walcast's replication loop down (see docs/benchmarks.md).
async fn progress(
    walcast: &crate::walcast::Walcast,
    from: f64,
    target: f64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (mut last_t, mut last_v) = (0.0, from);
    loop {
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        let v = walcast.metric(DECODED).await?;
        let t = started.elapsed().as_secs_f64();
        if v >= target {
            let share = if v > last_v {
                ((target - last_v) / (v - last_v)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return Ok(last_t + share * (t - last_t));
        }
        if t > 900.0 {
            bail!("{DECODED} is {v} after 900 s, expected {target}");
        }
        (last_t, last_v) = (t, v);
    }
}

/// Holds the walsender of walcast's slot while the backlog is written: stopped (SIGSTOP) on
/// a cluster of this process, else through a proxy that stops forwarding its output.
enum Pause {
    Walsender(i32),
    Proxy,
}

impl Pause {
    fn signal(pid: i32, sig: libc::c_int) {
        // SAFETY: kill(2) on the walsender of the throw-away cluster this process started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Resumes a stopped walsender even when the run fails half-way.
struct ContGuard(Option<i32>);

impl Drop for ContGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            Pause::signal(pid, libc::SIGCONT);
        }
    }
}

/// The backlog piles up in Postgres while walcast runs: the walsender is stopped (or its output
/// held back) while the rows are written; the clock runs from the resume until the events are
/// decoded (or, with a subscriber, received).
async fn paused(
    bench: &mut Bench,
    cfg: &IngestConfig,
    subscriber: bool,
    client_queue: Option<usize>,
) -> anyhow::Result<Run> {
    bench.db.drop_slot(SLOT).await?;
    let mut opts = bench.walcast_options(SLOT);
    opts.client_queue = client_queue;
    let proxy = if bench.db.own_cluster {
        None
    } else {
        let proxy = PausableProxy::start(bench.db.upstream).await?;
        opts.replication_url = Some(db::with_address(&bench.db.url, proxy.addr())?);
        Some(proxy)
    };
    let walcast = bench.start_walcast(&opts).await?;
    let load = if subscriber {
        let mut spec = LoadSpec::new(walcast.ws_url(), QUERY_ALL);
        spec.connections = 1;
        let load = Load::start(spec).await;
        if load.connected() != 1 {
            bail!("subscriber did not connect: {:?}", load.connect_errors());
        }
        Bench::wait_subscriptions(&walcast, 1, Duration::from_secs(30)).await?;
        Some(load)
    } else {
        None
    };
    let decoded0 = walcast.metric(DECODED).await?;
    let closes0 = walcast.metric("walcast_slow_consumer_closes_total").await?;
    let start_lsn = bench.db.current_lsn().await?;
    let pause = match &proxy {
        Some(proxy) => {
            proxy.pause();
            Pause::Proxy
        }
        None => {
            let pid = bench
                .db
                .walsender_pid(SLOT)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no walsender on slot {SLOT}"))?;
            Pause::signal(pid, libc::SIGSTOP);
            Pause::Walsender(pid)
        }
    };
    let mut guard = ContGuard(match pause {
        Pause::Walsender(pid) => Some(pid),
        Pause::Proxy => None,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(bench, cfg).await?;
    let end_lsn = bench.db.current_lsn().await?;
    let sent = bench.db.sent_lsn(SLOT).await?;
    let total = bench.db.lsn_diff(&end_lsn, &start_lsn).await?;
    let present = match sent {
        Some(sent) if total > 0.0 => {
            Some((bench.db.lsn_diff(&sent, &start_lsn).await? / total).clamp(0.0, 1.0))
        }
        _ => None,
    };
    let resume = |guard: &mut ContGuard| {
        if let Some(proxy) = &proxy {
            proxy.resume();
        }
        if let Some(pid) = guard.0.take() {
            Pause::signal(pid, libc::SIGCONT);
        }
    };
    let mut profiles = Vec::new();
    if let Some(dir) = &bench.perf_dir {
        let label = match (subscriber, client_queue) {
            (false, _) => "ingest-nosub",
            (true, None) => "ingest-sub",
            (true, Some(_)) => "ingest-sub-bigqueue",
        };
        if let Some(pid) = walcast.pid() {
            profiles.extend(Profile::start(dir, &format!("{label}-walcast"), pid).await);
        }
        if let Pause::Walsender(pid) = pause {
            // A stopped process can be attached to; its samples start at the resume.
            profiles.extend(Profile::start(dir, &format!("{label}-walsender"), pid as u32).await);
        }
    }
    let target = decoded0 + cfg.rows as f64;
    let mut complete = true;
    let secs = match &load {
        Some(load) => {
            // The target is armed before the resume, so the instant it is reached is exact.
            load.arm(cfg.rows);
            resume(&mut guard);
            let started = Instant::now();
            match load.wait_for(cfg.rows, Duration::from_secs(10)).await {
                Some(at) => at.duration_since(started).as_secs_f64(),
                None => {
                    complete = false;
                    started.elapsed().as_secs_f64()
                }
            }
        }
        None => {
            resume(&mut guard);
            progress(&walcast, decoded0, target).await?
        }
    };
    // Everything decoded, whatever happened to the subscriber.
    let _ = walcast
        .wait_metric(
            DECODED,
            target,
            Duration::from_millis(20),
            Duration::from_secs(300),
        )
        .await;
    for p in profiles {
        p.finish();
    }
    let decoded = walcast.metric(DECODED).await? - decoded0;
    let closes = walcast.metric("walcast_slow_consumer_closes_total").await? - closes0;
    let mut notes: Vec<String> = Vec::new();
    if let Some(load) = load {
        let report = load.finish().await;
        if report.received != cfg.rows {
            complete = false;
            notes.push(format!(
                "the subscriber received {} of {}",
                thousands(report.received),
                thousands(cfg.rows)
            ));
        }
        for (what, n) in report.closes.iter().chain(report.errors.iter()) {
            notes.push(format!(
                "then: {what}{}",
                if *n > 1 {
                    format!(" (x{n})")
                } else {
                    String::new()
                }
            ));
        }
    }
    if closes > 0.0 {
        notes.push(format!("{closes} slow-consumer close(s)"));
    }
    if decoded as u64 != cfg.rows {
        complete = false;
        notes.push(format!("decoded {decoded}, expected {}", cfg.rows));
    }
    if let Some(q) = client_queue {
        notes.insert(0, format!("WALCAST_CLIENT_QUEUE={q}"));
    }
    notes.push(match pause {
        Pause::Walsender(_) => "walsender stopped (SIGSTOP) while writing".into(),
        Pause::Proxy => "walsender output held back by a proxy while writing".into(),
    });
    walcast.stop().await?;
    drop(proxy);
    bench.db.drop_slot(SLOT).await?;
    Ok(Run {
        secs,
        present,
        complete,
        note: Some(notes.join("; ")),
    })
}
