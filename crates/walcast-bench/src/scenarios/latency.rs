//! Latency under load: rows written at a steady rate while S subscribers receive them.

use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use crate::bench::{Bench, QUERY_ALL, QUERY_BUCKET};
use crate::client::{Load, LoadSpec};
use crate::db::Database;
use crate::stats::{ms, rate, thousands, Histogram};
use crate::walcast::{CpuMeter, Walcast};

pub const SLOT: &str = "walcast_bench_latency";
/// Transactions per second of the writer: rows per transaction = rate / this.
const TICKS_PER_SEC: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Every subscriber matches every row.
    All,
    /// Subscriber i matches `bucket = i % 100`: 1% of the rows.
    OnePercent,
}

impl Matching {
    fn label(self) -> &'static str {
        match self {
            Matching::All => "every row",
            Matching::OnePercent => "1% (`where: {bucket: K}`)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LatencyConfig {
    pub rates: Vec<u64>,
    pub subscribers: Vec<usize>,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub rate: u64,
    pub subscribers: usize,
    pub matching: Matching,
    pub rows: u64,
    pub achieved_rate: f64,
    pub expected: u64,
    pub delivered: u64,
    pub latency: Histogram,
    /// CPU use while writing and delivering, in cores: walcast, and this process (writer and
    /// clients).
    pub walcast_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LatencyResult {
    pub cells: Vec<Cell>,
    pub duration: Duration,
    pub errors: Vec<String>,
}

/// The targets of the issue, for the cells they speak about.
fn target(cell: &Cell) -> Option<f64> {
    match (cell.rate, cell.subscribers, cell.matching) {
        (1000, 1000, Matching::OnePercent) => Some(20.0),
        (1000, 100, Matching::All) => Some(100.0),
        _ => None,
    }
}

impl LatencyResult {
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Rows written for {} s at the given rate ({} transactions/s), each subscriber on its own connection. \
             Latency: from `sent_at` (the server's `clock_timestamp()` at insert, just before commit) to the \
             arrival of the `next` message at the client, in ms.\n\n",
            self.duration.as_secs(),
            TICKS_PER_SEC
        );
        out.push_str(
            "CPU: cores used while writing and delivering, by walcast and by this process (writer and \
             clients); the machine has two, Postgres takes its share too.\n\n",
        );
        out.push_str("| rows/s | subscribers | each matches | p50 | p95 | p99 | max | delivered / expected | CPU walcast / bench | target |\n");
        out.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
        for c in &self.cells {
            let p99 = c.latency.quantile(0.99);
            let complete = c.delivered == c.expected;
            let target = match target(c) {
                Some(t) => {
                    let ok = complete && (p99 as f64) < t * 1000.0;
                    format!(
                        "p99 < {t} ms, nothing lost: {}",
                        if ok { "met" } else { "**missed**" }
                    )
                }
                None => String::new(),
            };
            let mut delivered = format!("{} / {}", thousands(c.delivered), thousands(c.expected));
            if !complete {
                delivered = format!("**{delivered}**");
            }
            let mut rate_text = thousands(c.rate);
            if c.achieved_rate < c.rate as f64 * 0.95 {
                rate_text.push_str(&format!(" (writer reached {})", rate(c.achieved_rate)));
            }
            let cpu = |v: Option<f64>| v.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into());
            out.push_str(&format!(
                "| {rate_text} | {} | {} | {} | {} | {} | {} | {delivered} | {} / {} | {target} |\n",
                thousands(c.subscribers as u64),
                c.matching.label(),
                ms(c.latency.quantile(0.5)),
                ms(c.latency.quantile(0.95)),
                ms(p99),
                ms(c.latency.max()),
                cpu(c.walcast_cpu),
                cpu(c.client_cpu),
            ));
        }
        let notes: Vec<String> = self
            .cells
            .iter()
            .flat_map(|c| {
                c.notes.iter().map(move |n| {
                    format!(
                        "- {} rows/s, {} subscribers, {}: {n}",
                        thousands(c.rate),
                        c.subscribers,
                        c.matching.label()
                    )
                })
            })
            .collect();
        if !notes.is_empty() {
            out.push_str("\nNotes:\n\n");
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out
    }
}

/// Rows among ids `first..=last` with `id % 100 == bucket`.
fn in_bucket(first: i64, last: i64, bucket: i64) -> u64 {
    if last < first {
        return 0;
    }
    let upto = |n: i64| -> i64 {
        // Count of ids in 0..=n with id % 100 == bucket (n >= -1).
        if n < bucket {
            0
        } else {
            (n - bucket) / 100 + 1
        }
    };
    (upto(last) - upto(first - 1)) as u64
}

fn expected(matching: Matching, subscribers: usize, first: i64, last: i64) -> u64 {
    let rows = (last - first + 1).max(0) as u64;
    match matching {
        Matching::All => rows * subscribers as u64,
        Matching::OnePercent => (0..subscribers)
            .map(|i| in_bucket(first, last, (i % 100) as i64))
            .sum(),
    }
}

/// Writes at `rate` rows/s for `duration`; returns the ids written and the achieved rate.
async fn write_steady(
    db: &Database,
    first: i64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<(i64, i64, f64)> {
    let client = db.connect().await?;
    let per_tick = (rate / TICKS_PER_SEC).max(1) as i64;
    let ticks = (duration.as_secs_f64() * TICKS_PER_SEC as f64).round() as u64;
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / TICKS_PER_SEC));
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut next = first;
    for _ in 0..ticks {
        interval.tick().await;
        Database::insert(&client, next, next + per_tick - 1).await?;
        next += per_tick;
    }
    let secs = started.elapsed().as_secs_f64();
    let rows = (next - first) as f64;
    Ok((first, next - 1, rows / secs.max(1e-9)))
}

pub async fn run(bench: &mut Bench, cfg: &LatencyConfig) -> LatencyResult {
    let mut result = LatencyResult {
        duration: cfg.duration,
        ..Default::default()
    };
    if let Err(e) = run_cells(bench, cfg, &mut result).await {
        result.errors.push(format!("{e:#}"));
    }
    result
}

async fn run_cells(
    bench: &mut Bench,
    cfg: &LatencyConfig,
    result: &mut LatencyResult,
) -> anyhow::Result<()> {
    bench.db.drop_slot(SLOT).await?;
    let mut opts = bench.walcast_options(SLOT);
    let most = cfg.subscribers.iter().copied().max().unwrap_or(1);
    opts.max_connections = Some(most + 64);
    // Events of earlier cells need not stay in memory for replay.
    opts.retention = Some("10s".into());
    let walcast = bench.start_walcast(&opts).await?;
    for &rate in &cfg.rates {
        for &subscribers in &cfg.subscribers {
            for matching in [Matching::OnePercent, Matching::All] {
                eprintln!(
                    "latency: {rate} rows/s, {subscribers} subscribers, matching {}",
                    matching.label()
                );
                let cell = run_cell(bench, &walcast, &[], cfg, rate, subscribers, matching).await?;
                eprintln!(
                    "latency:   p50 {} p99 {} max {} ms, delivered {} of {}",
                    ms(cell.latency.quantile(0.5)),
                    ms(cell.latency.quantile(0.99)),
                    ms(cell.latency.max()),
                    cell.delivered,
                    cell.expected
                );
                result.cells.push(cell);
            }
        }
    }
    walcast.stop().await?;
    bench.db.drop_slot(SLOT).await?;
    Ok(())
}

/// One cell: `subscribers` connections to `walcast` while rows are written at `rate`. CPU is
/// that of `walcast` and of the `others` (the other nodes of a cluster) together.
pub(crate) async fn run_cell(
    bench: &Bench,
    walcast: &Walcast,
    others: &[&Walcast],
    cfg: &LatencyConfig,
    rate: u64,
    subscribers: usize,
    matching: Matching,
) -> anyhow::Result<Cell> {
    let mut notes = Vec::new();
    // The previous cell's connections are gone before this one starts.
    let _ = walcast
        .wait_metric_below(crate::walcast::CONNECTIONS, 1.0, Duration::from_secs(30))
        .await;
    let closes0 = walcast.metric("walcast_slow_consumer_closes_total").await?;
    let mut spec = LoadSpec::new(
        walcast.ws_url(),
        match matching {
            Matching::All => QUERY_ALL,
            Matching::OnePercent => QUERY_BUCKET,
        },
    );
    spec.modulo = Some(100);
    spec.connections = subscribers;
    let load = Load::start(spec).await;
    if load.connected() < subscribers {
        notes.push(format!(
            "only {} of {subscribers} connections opened: {:?}",
            load.connected(),
            load.connect_errors()
        ));
    }
    Bench::wait_subscriptions(walcast, load.subscriptions(), Duration::from_secs(60)).await?;
    let first = bench.db.next_id().await?;
    let walcast_cpu: Option<Vec<CpuMeter>> = std::iter::once(walcast)
        .chain(others.iter().copied())
        .map(|w| w.pid().and_then(CpuMeter::start))
        .collect();
    let client_cpu = CpuMeter::start(std::process::id());
    let (first, last, achieved) = write_steady(&bench.db, first, rate, cfg.duration).await?;
    let want = expected(matching, load.connected(), first, last);
    let drained = load.wait_for(want, Duration::from_secs(5)).await;
    let walcast_cpu =
        walcast_cpu.and_then(|meters| meters.iter().map(CpuMeter::cores).sum::<Option<f64>>());
    let client_cpu = client_cpu.and_then(|m| m.cores());
    if drained.is_none() {
        notes.push(format!(
            "gave up waiting 5 s after the last delivery ({} of {})",
            thousands(load.received()),
            thousands(want)
        ));
    }
    let report = load.finish().await;
    let closes = walcast.metric("walcast_slow_consumer_closes_total").await? - closes0;
    if closes > 0.0 {
        notes.push(format!("{closes} connection(s) closed as slow consumers"));
    }
    for (what, n) in report.closes.iter().chain(&report.errors) {
        notes.push(format!("{what} (x{n})"));
    }
    Ok(Cell {
        rate,
        subscribers,
        matching,
        rows: (last - first + 1) as u64,
        achieved_rate: achieved,
        expected: expected(matching, subscribers, first, last),
        delivered: report.received,
        latency: report.latency,
        walcast_cpu,
        client_cpu,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts() {
        assert_eq!(in_bucket(1, 100, 0), 1);
        assert_eq!(in_bucket(1, 100, 1), 1);
        assert_eq!(in_bucket(1, 99, 0), 0);
        assert_eq!(in_bucket(150, 349, 50), 2);
        let total: u64 = (0..100).map(|b| in_bucket(17, 1234, b)).sum();
        assert_eq!(total, 1234 - 17 + 1);
        assert_eq!(expected(Matching::OnePercent, 1000, 1, 1000), 10 * 1000);
        assert_eq!(expected(Matching::All, 3, 1, 10), 30);
    }
}
