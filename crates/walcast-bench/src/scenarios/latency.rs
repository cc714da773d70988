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
/// After the last write, a cell waits for the rest of its deliveries until nothing arrives for
/// `DRAIN_IDLE`, and at most `DRAIN_LIMIT`.
const DRAIN_IDLE: Duration = Duration::from_secs(5);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// Every subscriber matches every row.
    All,
    /// Subscriber i matches `bucket = i % 100`: 1% of the rows.
    OnePercent,
}

impl Matching {
    pub fn label(self) -> &'static str {
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
    /// The kinds of subscriber each (rate, subscribers) pair runs with, in this order.
    pub matching: Vec<Matching>,
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
    /// Latencies of the rows written in the first and in the last second of the cell.
    pub first_second: Histogram,
    pub last_second: Histogram,
    /// CPU use while writing and delivering, in cores: walcast, and this process (writer and
    /// clients).
    pub walcast_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
    /// walcast's CPU seconds over the cell.
    pub walcast_cpu_secs: Option<f64>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LatencyResult {
    pub cells: Vec<Cell>,
    pub duration: Duration,
    pub errors: Vec<String>,
}

/// A target of the issue: p99 below `p99_ms` with nothing lost, and for `sustained` the last
/// second no worse than the first (see [`Cell::sustained`]).
struct Target {
    p99_ms: f64,
    sustained: bool,
}

/// The targets of the issue, for the cells they speak about.
fn target(cell: &Cell) -> Option<Target> {
    let (p99_ms, sustained) = match (cell.rate, cell.subscribers, cell.matching) {
        (1000, 1000, Matching::OnePercent) => (20.0, false),
        (1000, 100, Matching::All) => (100.0, false),
        (10_000, 1000, Matching::OnePercent) => (20.0, false),
        (10_000, 100, Matching::All) => (250.0, true),
        _ => return None,
    };
    Some(Target { p99_ms, sustained })
}

/// The last second's p99 may exceed the first second's by this factor, or by [`SUSTAINED_SLACK_US`],
/// and the cell still counts as sustained.
pub const SUSTAINED_FACTOR: f64 = 2.0;
pub const SUSTAINED_SLACK_US: u64 = 10_000;

/// Below this many messages a cell's CPU per message is mostly walcast's idle work and the
/// 10 ms resolution of /proc/PID/stat.
pub const CPU_PER_MESSAGE_FROM: u64 = 100_000;

/// CPU seconds per million messages delivered ("—" for cells of too few messages).
pub fn cpu_per_million(cpu_secs: Option<f64>, delivered: u64) -> String {
    match cpu_secs {
        _ if delivered < CPU_PER_MESSAGE_FROM => "—".into(),
        Some(s) => format!("{:.2}", s * 1e6 / delivered as f64),
        None => "?".into(),
    }
}

impl Cell {
    /// Whether the delivery kept up to the end: nothing lost, and the p99 of the rows written in
    /// the last second at most [`SUSTAINED_FACTOR`] times (or [`SUSTAINED_SLACK_US`] above) the
    /// p99 of those written in the first.
    pub fn sustained(&self) -> bool {
        if self.delivered != self.expected
            || self.first_second.count() == 0
            || self.last_second.count() == 0
        {
            return false;
        }
        let first = self.first_second.quantile(0.99);
        let last = self.last_second.quantile(0.99);
        (last as f64) <= first as f64 * SUSTAINED_FACTOR || last <= first + SUSTAINED_SLACK_US
    }

    /// "p99 first second → last second", in ms.
    pub fn drift(&self) -> String {
        if self.first_second.count() == 0 || self.last_second.count() == 0 {
            return "—".into();
        }
        format!(
            "{} → {}",
            ms(self.first_second.quantile(0.99)),
            ms(self.last_second.quantile(0.99))
        )
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
        out.push_str(&format!(
            "CPU: cores used while writing and delivering, by walcast and by this process (writer and \
             clients: when the bench is near a full core, the cell measured the client); the machine has \
             two, Postgres takes its share too. *CPU s / M msgs*: walcast's CPU time (/proc/PID/stat, \
             user + system) over the cell divided by the messages delivered, per million: the figure \
             that does not depend on how busy the machine is (for cells of at least {} messages). *p99 first → last s*: the p99 of the \
             rows written in the cell's first second and of those written in its last; *sustained* \
             means nothing lost and the last at most {SUSTAINED_FACTOR}x the first (or at most {} ms \
             above it).\n\n",
            thousands(CPU_PER_MESSAGE_FROM),
            SUSTAINED_SLACK_US / 1000
        ));
        out.push_str("| rows/s | subscribers | each matches | p50 | p95 | p99 | max | p99 first → last s | delivered / expected | CPU walcast / bench | CPU s / M msgs | target |\n");
        out.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for c in &self.cells {
            let p99 = c.latency.quantile(0.99);
            let complete = c.delivered == c.expected;
            let target = match target(c) {
                Some(t) => {
                    let mut ok = complete && (p99 as f64) < t.p99_ms * 1000.0;
                    let mut what = format!("p99 < {} ms, nothing lost", t.p99_ms);
                    if t.sustained {
                        ok = ok && c.sustained();
                        what.push_str(", sustained");
                    }
                    format!("{what}: {}", if ok { "met" } else { "**missed**" })
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
                "| {rate_text} | {} | {} | {} | {} | {} | {} | {} | {delivered} | {} / {} | {} | {target} |\n",
                thousands(c.subscribers as u64),
                c.matching.label(),
                ms(c.latency.quantile(0.5)),
                ms(c.latency.quantile(0.95)),
                ms(p99),
                ms(c.latency.max()),
                c.drift(),
                cpu(c.walcast_cpu),
                cpu(c.client_cpu),
                cpu_per_million(c.walcast_cpu_secs, c.delivered),
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

pub(crate) fn expected(matching: Matching, subscribers: usize, first: i64, last: i64) -> u64 {
    let rows = (last - first + 1).max(0) as u64;
    match matching {
        Matching::All => rows * subscribers as u64,
        Matching::OnePercent => (0..subscribers)
            .map(|i| in_bucket(first, last, (i % 100) as i64))
            .sum(),
    }
}

/// Writes at `rate` rows/s for `duration`; returns the ids written and the achieved rate.
pub(crate) async fn write_steady(
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

/// walcast on a fresh `slot` for latency cells of up to `subscribers` connections.
pub(crate) async fn start_for_cells(
    bench: &mut Bench,
    slot: &str,
    subscribers: usize,
) -> anyhow::Result<crate::walcast::Walcast> {
    bench.db.drop_slot(slot).await?;
    let mut opts = bench.walcast_options(slot);
    opts.max_connections = Some(subscribers + 64);
    // Events of earlier cells need not stay in memory for replay.
    opts.retention = Some("10s".into());
    bench.start_walcast(&opts).await
}

async fn run_cells(
    bench: &mut Bench,
    cfg: &LatencyConfig,
    result: &mut LatencyResult,
) -> anyhow::Result<()> {
    let most = cfg.subscribers.iter().copied().max().unwrap_or(1);
    let walcast = start_for_cells(bench, SLOT, most).await?;
    for &rate in &cfg.rates {
        for &subscribers in &cfg.subscribers {
            for &matching in &cfg.matching {
                eprintln!(
                    "latency: {rate} rows/s, {subscribers} subscribers, matching {}",
                    matching.label()
                );
                let cell = run_cell(bench, &walcast, &[], cfg, rate, subscribers, matching).await?;
                eprintln!(
                    "latency:   p50 {} p99 {} max {} ms (p99 first → last second {}), delivered {} of {}, \
                     CPU walcast {} s / M msgs, bench {} cores",
                    ms(cell.latency.quantile(0.5)),
                    ms(cell.latency.quantile(0.99)),
                    ms(cell.latency.max()),
                    cell.drift(),
                    cell.delivered,
                    cell.expected,
                    cpu_per_million(cell.walcast_cpu_secs, cell.delivered),
                    cell.client_cpu.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into()),
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
    let start = crate::client::now_micros();
    let last_second = start + cfg.duration.as_micros() as i64 - 1_000_000;
    load.set_windows(start, last_second);
    let (first, last, achieved) = write_steady(&bench.db, first, rate, cfg.duration).await?;
    let want = expected(matching, load.connected(), first, last);
    // A cell far beyond what walcast delivers (1,000 x every row at 10,000 rows/s is 10 million
    // messages a second) would otherwise keep trickling in for many minutes.
    let drained = tokio::time::timeout(DRAIN_LIMIT, load.wait_for(want, DRAIN_IDLE))
        .await
        .map_err(|_| {
            format!(
                "still short {} s after the last write",
                DRAIN_LIMIT.as_secs()
            )
        });
    let walcast_cpu_secs = walcast_cpu
        .as_ref()
        .and_then(|meters| meters.iter().map(CpuMeter::seconds).sum::<Option<f64>>());
    let walcast_cpu =
        walcast_cpu.and_then(|meters| meters.iter().map(CpuMeter::cores).sum::<Option<f64>>());
    let client_cpu = client_cpu.and_then(|m| m.cores());
    let gave_up = match drained {
        Ok(Some(_)) => None,
        Ok(None) => Some(format!("nothing arrived for {} s", DRAIN_IDLE.as_secs())),
        Err(limit) => Some(limit),
    };
    if let Some(why) = gave_up {
        notes.push(format!(
            "gave up waiting: {why} ({} of {})",
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
        first_second: report.first_second,
        last_second: report.last_second,
        walcast_cpu,
        client_cpu,
        walcast_cpu_secs,
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
