//! A peer in the same run: the latency workload (rows written at a steady rate, subscribers on
//! their own connections, latency from the `sent_at` in the row) against walcast, then against
//! PostGraphile 4 with live queries from `@graphile/subscriptions-lds`, on the same database.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bench::{Bench, QUERY_ALL, QUERY_BUCKET};
use crate::client::{Load, LoadSpec};
use crate::peer::install::{self, cache_dir};
use crate::peer::postgraphile::{live_query, PostGraphile};
use crate::scenarios::latency::{self, Matching};
use crate::stats::{ms, thousands, Histogram};
use crate::walcast::{CpuMeter, Walcast};

pub const SLOT: &str = "walcast_bench_peers";
/// A live query holds this many seconds of its subscriber's rows (see [`live_query`]).
const WINDOW_SECS: u64 = 5;
/// Every delivery must have arrived this long after the last write.
const CATCH_UP: Duration = Duration::from_secs(10);
/// A server fell behind when the p99 of the rows written in the last second exceeds this many
/// times the p99 of those written in the first (and [`BEHIND_FLOOR_US`]).
const BEHIND_FACTOR: f64 = 4.0;
const BEHIND_FLOOR_US: u64 = 100_000;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// PostGraphile answers each live query with its whole first result (with every row matching,
/// thousands of rows for each subscriber) before the cell can start.
const FIRST_RESULTS_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct PeersConfig {
    pub rates: Vec<u64>,
    pub subscribers: usize,
    pub matching: Vec<Matching>,
    pub duration: Duration,
    /// Where PostGraphile is installed [default: [`cache_dir`]].
    pub cache: Option<PathBuf>,
}

/// One server at one rate.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub rate: u64,
    pub achieved_rate: f64,
    pub expected: u64,
    pub delivered: u64,
    pub latency: Histogram,
    pub first_second: Histogram,
    pub last_second: Histogram,
    /// The server's CPU over the cell, in cores.
    pub cpu: Option<f64>,
    /// Query results received (PostGraphile: each carries a window of rows).
    pub results: u64,
    pub notes: Vec<String>,
}

impl Run {
    /// Delivery incomplete [`CATCH_UP`] after the last write, or the last second's p99 above
    /// [`BEHIND_FACTOR`] times the first second's and above [`BEHIND_FLOOR_US`].
    pub fn fell_behind(&self) -> bool {
        if self.delivered < self.expected || self.expected == 0 {
            return true;
        }
        let first = self.first_second.quantile(0.99);
        let last = self.last_second.quantile(0.99);
        last > BEHIND_FLOOR_US && last as f64 > first as f64 * BEHIND_FACTOR
    }
}

#[derive(Debug, Clone, Default)]
pub struct PeersResult {
    pub subscribers: usize,
    pub duration: Duration,
    /// Per kind of subscriber: walcast's runs and PostGraphile's, rate by rate.
    pub walcast: Vec<(Matching, Run)>,
    pub postgraphile: Vec<(Matching, Run)>,
    pub postgraphile_version: Option<String>,
    pub errors: Vec<String>,
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "—".into()
    } else {
        format!("{:.3}x", a as f64 / b as f64)
    }
}

fn delivered(r: &Run) -> String {
    let text = format!("{} / {}", thousands(r.delivered), thousands(r.expected));
    if r.delivered == r.expected {
        text
    } else {
        format!("**{text}**")
    }
}

/// The highest rate of `runs` (of one kind of subscriber) that did not fall behind, and whether
/// it was the highest one tried.
fn sustained(runs: &[&Run]) -> Option<(u64, bool)> {
    let top = runs.iter().map(|r| r.rate).max()?;
    let best = runs
        .iter()
        .filter(|r| !r.fell_behind())
        .map(|r| r.rate)
        .max()?;
    Some((best, best == top))
}

fn sustained_text(runs: &[&Run]) -> String {
    if runs.is_empty() {
        return "not run".into();
    }
    match sustained(runs) {
        None => "none of the rates".into(),
        Some((rate, true)) => format!("≥ {} rows/s (the highest tried)", thousands(rate)),
        Some((rate, false)) => format!("{} rows/s", thousands(rate)),
    }
}

impl PeersResult {
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "The latency workload against walcast, then against PostGraphile {} (`--live`, \
             `@graphile/subscriptions-lds` with its defaults: wal2json polled every 125 ms, at most one \
             update per subscription every 500 ms), on the same throw-away cluster: rows written for {} s \
             at each rate (100 transactions/s), {} subscribers on their own connections \
             (graphql-transport-ws to both). Latency in ms from `sent_at` (the server's \
             `clock_timestamp()` at insert) to the client's receipt. walcast sends one event per row; a \
             PostGraphile live query sends its whole result on each change, so each subscriber's \
             live query is `allBenches(condition: {{bucket: K}}, orderBy: ID_DESC, first: N)` (1%) or \
             `allBenches(orderBy: ID_DESC, first: N)` (every row), N holding {WINDOW_SECS} s of its \
             rows, and a row's latency is the time to the first result that contains its id: what a \
             user sees. A row that leaves the window before a result carries it is not delivered. \
             *Fell behind*: fewer deliveries than expected {} s after the last write, or the p99 of \
             the rows written in the last second above {BEHIND_FACTOR}x that of the first second \
             (and above {} ms). Ratios are walcast / PostGraphile (below 1: walcast is faster). CPU: \
             cores of each server's process over the cell.\n\n",
            self.postgraphile_version.as_deref().unwrap_or("4"),
            self.duration.as_secs(),
            thousands(self.subscribers as u64),
            CATCH_UP.as_secs(),
            BEHIND_FLOOR_US / 1000,
        );
        out.push_str("| each matches | rows/s | walcast p50 | p99 | delivered / expected | fell behind? | PostGraphile p50 | p99 | delivered / expected | fell behind? | p50 ratio | p99 ratio | CPU walcast / PostGraphile |\n");
        out.push_str("|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|\n");
        let cpu = |r: &Run| {
            r.cpu
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "?".into())
        };
        let behind = |r: &Run| if r.fell_behind() { "**yes**" } else { "no" };
        let mut kinds: Vec<Matching> = Vec::new();
        for (m, _) in self.walcast.iter().chain(&self.postgraphile) {
            if !kinds.contains(m) {
                kinds.push(*m);
            }
        }
        for &kind in &kinds {
            let w: Vec<&Run> = self
                .walcast
                .iter()
                .filter(|(m, _)| *m == kind)
                .map(|(_, r)| r)
                .collect();
            let p: Vec<&Run> = self
                .postgraphile
                .iter()
                .filter(|(m, _)| *m == kind)
                .map(|(_, r)| r)
                .collect();
            let mut rates: Vec<u64> = w.iter().chain(&p).map(|r| r.rate).collect();
            rates.sort_unstable();
            rates.dedup();
            for rate in rates {
                let wr = w.iter().find(|r| r.rate == rate);
                let pr = p.iter().find(|r| r.rate == rate);
                let side = |r: Option<&&Run>| match r {
                    Some(r) => format!(
                        "{} | {} | {} | {}",
                        ms(r.latency.quantile(0.5)),
                        ms(r.latency.quantile(0.99)),
                        delivered(r),
                        behind(r)
                    ),
                    None => "— | — | — | not run".into(),
                };
                let (p50, p99) = match (wr, pr) {
                    (Some(a), Some(b)) => (
                        ratio(a.latency.quantile(0.5), b.latency.quantile(0.5)),
                        ratio(a.latency.quantile(0.99), b.latency.quantile(0.99)),
                    ),
                    _ => ("—".into(), "—".into()),
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {p50} | {p99} | {} / {} |\n",
                    kind.label(),
                    thousands(rate),
                    side(wr),
                    side(pr),
                    wr.map(|r| cpu(r)).unwrap_or_else(|| "—".into()),
                    pr.map(|r| cpu(r)).unwrap_or_else(|| "—".into()),
                ));
            }
            let ws = sustained(&w);
            let ps = sustained(&p);
            // A server that kept up with the highest rate tried may keep up with more.
            let rate_ratio = match (ws, ps) {
                (Some((_, true)), Some((_, true))) => "; both kept up with every rate tried".into(),
                (Some((a, a_top)), Some((b, b_top))) => format!(
                    "; walcast / PostGraphile {}{}",
                    ratio(a, b),
                    match (a_top, b_top) {
                        (true, _) => " at least",
                        (false, true) => " at most",
                        (false, false) => "",
                    }
                ),
                _ => String::new(),
            };
            out.push_str(&format!(
                "\nHighest write rate sustained without falling behind, subscribers matching {}: walcast {}, \
                 PostGraphile {}{rate_ratio}.\n\n",
                kind.label(),
                sustained_text(&w),
                sustained_text(&p),
            ));
        }
        let notes: Vec<String> = [
            ("walcast", &self.walcast),
            ("PostGraphile", &self.postgraphile),
        ]
        .iter()
        .flat_map(|(server, runs)| {
            runs.iter().flat_map(move |(m, r)| {
                r.notes.iter().map(move |n| {
                    format!(
                        "- {server}, {} rows/s, {}: {n}",
                        thousands(r.rate),
                        m.label()
                    )
                })
            })
        })
        .collect();
        if !notes.is_empty() {
            out.push_str("Notes:\n\n");
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out
    }
}

/// What a cell waits for before writing: walcast's metric of live subscriptions, or the first
/// result of every live query.
enum Ready<'a> {
    Walcast(&'a Walcast),
    FirstResults,
}

/// The subscribers of one cell.
struct Subscribers<'a> {
    url: String,
    query: String,
    live_rows: bool,
    ready: Ready<'a>,
    pid: Option<u32>,
}

pub async fn run(bench: &mut Bench, cfg: &PeersConfig) -> PeersResult {
    let mut result = PeersResult {
        subscribers: cfg.subscribers,
        duration: cfg.duration,
        ..Default::default()
    };
    if let Err(e) = run_walcast(bench, cfg, &mut result).await {
        result.errors.push(format!("walcast: {e:#}"));
    }
    if let Err(e) = run_postgraphile(bench, cfg, &mut result).await {
        result.errors.push(format!("PostGraphile: {e:#}"));
    }
    result
}

async fn run_walcast(
    bench: &mut Bench,
    cfg: &PeersConfig,
    result: &mut PeersResult,
) -> anyhow::Result<()> {
    let walcast = super::latency::start_for_cells(bench, SLOT, cfg.subscribers).await?;
    for &matching in &cfg.matching {
        for &rate in &cfg.rates {
            eprintln!(
                "peers: walcast, {rate} rows/s, matching {}",
                matching.label()
            );
            // The previous cell's connections are gone before this one starts.
            let _ = walcast
                .wait_metric_below(crate::walcast::CONNECTIONS, 1.0, Duration::from_secs(30))
                .await;
            let subs = Subscribers {
                url: walcast.ws_url(),
                query: match matching {
                    Matching::All => QUERY_ALL.into(),
                    Matching::OnePercent => QUERY_BUCKET.into(),
                },
                live_rows: false,
                ready: Ready::Walcast(&walcast),
                pid: walcast.pid(),
            };
            let run = run_cell(bench, &subs, cfg, rate, matching).await?;
            result.walcast.push((matching, run));
        }
    }
    walcast.stop().await?;
    bench.db.drop_slot(SLOT).await?;
    Ok(())
}

async fn run_postgraphile(
    bench: &mut Bench,
    cfg: &PeersConfig,
    result: &mut PeersResult,
) -> anyhow::Result<()> {
    let cache = match &cfg.cache {
        Some(dir) => dir.clone(),
        None => cache_dir()?,
    };
    install::ensure_wal2json(&bench.db.url, bench.db.server_version_num).await?;
    tokio::task::spawn_blocking({
        let cache = cache.clone();
        move || install::ensure_postgraphile(&cache)
    })
    .await??;
    result.postgraphile_version = install::postgraphile_version(&cache);
    let log = bench.log_path("postgraphile.log");
    eprintln!(
        "peers: starting PostGraphile {} (log: {})",
        result.postgraphile_version.as_deref().unwrap_or("4"),
        log.display()
    );
    let server = PostGraphile::start(&cache, &bench.db.url, &log).await?;
    for &matching in &cfg.matching {
        for &rate in &cfg.rates {
            eprintln!(
                "peers: PostGraphile, {rate} rows/s, matching {}",
                matching.label()
            );
            let per_subscriber = match matching {
                Matching::All => rate,
                Matching::OnePercent => rate.div_ceil(100),
            };
            let subs = Subscribers {
                url: server.ws_url(),
                query: live_query(
                    matching == Matching::OnePercent,
                    (per_subscriber * WINDOW_SECS).max(10),
                ),
                live_rows: true,
                ready: Ready::FirstResults,
                pid: Some(server.pid()),
            };
            match run_cell(bench, &subs, cfg, rate, matching).await {
                Ok(run) => result.postgraphile.push((matching, run)),
                Err(e) => {
                    let e = e.context(format!(
                        "{rate} rows/s; its log ends:\n{}",
                        crate::walcast::log_tail(server.log_file(), 20)
                    ));
                    server.stop(Duration::from_secs(10)).await?;
                    return Err(e);
                }
            }
        }
    }
    server.stop(Duration::from_secs(10)).await
}

/// One cell: the subscribers connect, subscribe and are ready; rows are written at `rate`
/// for the configured duration; deliveries are awaited up to [`CATCH_UP`] after the last write.
async fn run_cell(
    bench: &Bench,
    subs: &Subscribers<'_>,
    cfg: &PeersConfig,
    rate: u64,
    matching: Matching,
) -> anyhow::Result<Run> {
    let mut notes = Vec::new();
    let mut spec = LoadSpec::new(subs.url.clone(), subs.query.clone());
    spec.modulo = Some(100);
    spec.connections = cfg.subscribers;
    spec.live_rows = subs.live_rows;
    // Subscribed only once the rows before this cell are known, which live results then skip.
    spec.defer_subscribe = true;
    let load = Load::start(spec).await;
    if load.connected() < cfg.subscribers {
        notes.push(format!(
            "only {} of {} connections opened: {:?}",
            load.connected(),
            cfg.subscribers,
            load.connect_errors()
        ));
    }
    let first = bench.db.next_id().await?;
    load.ignore_ids_below(first);
    load.subscribe_all();
    match subs.ready {
        Ready::Walcast(w) => {
            Bench::wait_subscriptions(w, load.subscriptions(), READY_TIMEOUT).await?
        }
        Ready::FirstResults => {
            let deadline = Instant::now() + FIRST_RESULTS_TIMEOUT;
            while load.results() < load.subscriptions() {
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "{} of {} live queries answered within {FIRST_RESULTS_TIMEOUT:?}",
                        load.results(),
                        load.subscriptions()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let cpu = subs.pid.and_then(CpuMeter::start);
    let start = crate::client::now_micros();
    load.set_windows(start, start + cfg.duration.as_micros() as i64 - 1_000_000);
    let (first, last, achieved) =
        latency::write_steady(&bench.db, first, rate, cfg.duration).await?;
    let wrote = Instant::now();
    let want = latency::expected(matching, load.connected(), first, last);
    while load.received() < want && wrote.elapsed() < CATCH_UP {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu.and_then(|m| m.cores());
    let report = load.finish().await;
    for (what, n) in report.closes.iter().chain(&report.errors) {
        notes.push(format!("{what} (x{n})"));
    }
    let run = Run {
        rate,
        achieved_rate: achieved,
        expected: latency::expected(matching, cfg.subscribers, first, last),
        delivered: report.received,
        latency: report.latency,
        first_second: report.first_second,
        last_second: report.last_second,
        cpu,
        results: report.results,
        notes,
    };
    if run.achieved_rate < rate as f64 * 0.95 {
        eprintln!(
            "peers:   the writer reached only {:.0} rows/s",
            run.achieved_rate
        );
    }
    eprintln!(
        "peers:   p50 {} p99 {} ms (p99 first → last second {} → {}), delivered {} of {}{}",
        ms(run.latency.quantile(0.5)),
        ms(run.latency.quantile(0.99)),
        ms(run.first_second.quantile(0.99)),
        ms(run.last_second.quantile(0.99)),
        run.delivered,
        run.expected,
        if run.fell_behind() {
            ", fell behind"
        } else {
            ""
        }
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_at(rate: u64, delivered: u64, first_ms: u64, last_ms: u64) -> Run {
        let mut r = Run {
            rate,
            expected: 100,
            delivered,
            ..Default::default()
        };
        r.first_second.record(first_ms * 1000);
        r.last_second.record(last_ms * 1000);
        r
    }

    #[test]
    fn falling_behind() {
        assert!(!run_at(100, 100, 1, 3).fell_behind());
        // Under the floor, a large factor is not falling behind.
        assert!(!run_at(100, 100, 1, 90).fell_behind());
        assert!(run_at(100, 100, 50, 600).fell_behind());
        assert!(!run_at(100, 100, 600, 800).fell_behind());
        assert!(run_at(100, 99, 1, 1).fell_behind());
        let runs = [
            run_at(100, 100, 1, 1),
            run_at(1000, 100, 1, 1),
            run_at(3000, 50, 1, 1),
        ];
        let refs: Vec<&Run> = runs.iter().collect();
        assert_eq!(sustained(&refs), Some((1000, false)));
        assert_eq!(sustained(&refs[..2]), Some((1000, true)));
    }

    #[test]
    fn the_table_pairs_rates() {
        let mut w = run_at(1000, 100, 1, 2);
        w.latency.record(2_000);
        let mut p = run_at(1000, 100, 500, 600);
        p.latency.record(500_000);
        let result = PeersResult {
            subscribers: 100,
            duration: Duration::from_secs(10),
            walcast: vec![
                (Matching::OnePercent, w),
                (Matching::OnePercent, run_at(3000, 100, 1, 2)),
            ],
            postgraphile: vec![
                (Matching::OnePercent, p),
                (Matching::OnePercent, run_at(3000, 10, 1, 2)),
            ],
            ..Default::default()
        };
        let md = result.markdown();
        assert!(md.contains("| 1,000 | 2.00 | 2.00 | 100 / 100 | no | 500 | 500 | 100 / 100 | no | 0.004x | 0.004x |"), "{md}");
        assert!(md.contains("walcast ≥ 3,000 rows/s (the highest tried), PostGraphile 1,000 rows/s; walcast / PostGraphile 3.000x at least"), "{md}");
    }
}
