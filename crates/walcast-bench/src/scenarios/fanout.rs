//! Fan-out scale: many idle connections with several subscriptions each; memory per connection
//! and per subscription, then one row per second that every subscription receives.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::bench::{Bench, QUERY_ALL};
use crate::client::{Load, LoadSpec};
use crate::db::Database;
use crate::scenarios::latency::cpu_per_million;
use crate::stats::{kib, ms, thousands, Histogram};

pub const SLOT: &str = "walcast_bench_fanout";
/// The target of the issue: RSS per subscription with 10,000 x 10 idle.
const TARGET_KIB_PER_SUB: f64 = 16.0;

#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub connections: usize,
    pub subscriptions_per_connection: usize,
    /// Rows written, one per second, after the memory is measured.
    pub rows: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FanoutResult {
    pub connections: usize,
    pub subscriptions_per_connection: usize,
    pub connected: usize,
    pub subscriptions: u64,
    pub rss_idle: u64,
    pub rss_connected: u64,
    pub rss_subscribed: u64,
    pub connect_secs: f64,
    pub subscribe_secs: f64,
    pub rows: u64,
    pub expected: u64,
    pub delivered: u64,
    pub latency: Histogram,
    pub last_subscriber: Histogram,
    pub nofile_limit: u64,
    /// walcast's CPU use while the rows were delivered, in cores, and in seconds.
    pub walcast_cpu: Option<f64>,
    pub walcast_cpu_secs: Option<f64>,
    /// The bench's own (its clients') CPU over the same time, in cores.
    pub bench_cpu: Option<f64>,
    /// Socket writes (flushes) while the rows were delivered: with a connection's messages
    /// written together, about one per connection and row.
    pub socket_writes: Option<f64>,
    /// walcast's hub time over the rows (matching, then queueing and waking), in seconds: the
    /// serial part before any subscriber's connection can write.
    pub hub_secs: Option<(f64, f64)>,
    /// SIGTERM with every connection still open.
    pub shutdown: Option<Shutdown>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// What SIGTERM did with the connections open.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// From the signal to the process' exit.
    pub secs: f64,
    pub exit: String,
    pub connections: usize,
    pub subscriptions: u64,
    /// Connections closed with 1001 that got a `complete` for each of their subscriptions.
    pub completed_and_going_away: u64,
    pub going_away: u64,
    pub completes: u64,
}

impl FanoutResult {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        if self.connected == 0 || self.rss_connected == 0 || self.rss_subscribed == 0 {
            out.push_str(&format!(
                "Not measured completely ({} of {} connections opened; RSS idle {:.1} MiB, connected {:.1} MiB, subscribed {:.1} MiB).\n",
                thousands(self.connected as u64),
                thousands(self.connections as u64),
                self.rss_idle as f64 / 1048576.0,
                self.rss_connected as f64 / 1048576.0,
                self.rss_subscribed as f64 / 1048576.0
            ));
            for n in &self.notes {
                out.push_str(&format!("\nNote: {n}\n"));
            }
            for e in &self.errors {
                out.push_str(&format!("\nError: {e}\n"));
            }
            return out;
        }
        let conns = self.connected as f64;
        let subs = self.subscriptions.max(1) as f64;
        let per_conn = (self.rss_connected as f64 - self.rss_idle as f64) / conns;
        let per_sub_only = (self.rss_subscribed as f64 - self.rss_connected as f64) / subs;
        let per_sub_all = (self.rss_subscribed as f64 - self.rss_idle as f64) / subs;
        out.push_str(&format!(
            "{} connections opened ({} requested, open-files limit {}), {} subscriptions each to every row \
             of `bench`; walcast's RSS from /proc/PID/status. Opening took {:.1} s, subscribing {:.1} s.\n\n",
            thousands(self.connected as u64),
            thousands(self.connections as u64),
            thousands(self.nofile_limit),
            self.subscriptions_per_connection,
            self.connect_secs,
            self.subscribe_secs
        ));
        out.push_str("| | RSS (MiB) | per connection (KiB) | per subscription (KiB) |\n|---|---:|---:|---:|\n");
        out.push_str(&format!(
            "| idle, before connecting | {:.1} | | |\n",
            self.rss_idle as f64 / 1048576.0
        ));
        out.push_str(&format!(
            "| {} connections, no subscription | {:.1} | {} | |\n",
            thousands(self.connected as u64),
            self.rss_connected as f64 / 1048576.0,
            kib(per_conn)
        ));
        let verdict = if self.connected >= 10_000 && self.subscriptions_per_connection >= 10 {
            format!(
                " (target < {TARGET_KIB_PER_SUB} KiB, connections included: {})",
                if per_sub_all / 1024.0 < TARGET_KIB_PER_SUB {
                    "met"
                } else {
                    "**missed**"
                }
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| + {} subscriptions | {:.1} | {} | {} alone; {} with its share of the connection{verdict} |\n",
            thousands(self.subscriptions),
            self.rss_subscribed as f64 / 1048576.0,
            kib((self.rss_subscribed as f64 - self.rss_idle as f64) / conns),
            kib(per_sub_only),
            kib(per_sub_all)
        ));
        if self.rows > 0 {
            let complete = self.delivered == self.expected;
            let mut delivered = format!(
                "{} / {}",
                thousands(self.delivered),
                thousands(self.expected)
            );
            if !complete {
                delivered = format!("**{delivered}**");
            }
            out.push_str(&format!(
                "\nThen {} rows, one per second, each matching all {} subscriptions (latency in ms from `sent_at`):\n\n",
                self.rows,
                thousands(self.subscriptions)
            ));
            out.push_str("| deliveries / expected | p50 | p99 | max | to the last subscriber of a row: p50 | p99 | CPU walcast / bench (cores) | walcast CPU s / M msgs | messages per socket write | hub per row: matching + queueing (ms) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            out.push_str(&format!(
                "| {delivered} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                ms(self.latency.quantile(0.5)),
                ms(self.latency.quantile(0.99)),
                ms(self.latency.max()),
                ms(self.last_subscriber.quantile(0.5)),
                ms(self.last_subscriber.quantile(0.99)),
                match (self.walcast_cpu, self.bench_cpu) {
                    (Some(w), Some(b)) => format!("{w:.2} / {b:.2}"),
                    (Some(w), None) => format!("{w:.2} / ?"),
                    _ => "?".into(),
                },
                cpu_per_million(self.walcast_cpu_secs, self.delivered),
                self.socket_writes
                    .filter(|w| *w > 0.0)
                    .map(|w| format!("{:.1}", self.delivered as f64 / w))
                    .unwrap_or_else(|| "?".into()),
                self.hub_secs
                    .filter(|_| self.rows > 0)
                    .map(|(m, q)| {
                        let per_row = |s: f64| s * 1000.0 / self.rows as f64;
                        format!("{:.1} + {:.1}", per_row(m), per_row(q))
                    })
                    .unwrap_or_else(|| "?".into()),
            ));
        }
        if let Some(sd) = &self.shutdown {
            out.push_str(&format!(
                "\nSIGTERM with the {} connections open: {:.2} s to the exit ({}); {} / {} \
                 connections got a `complete` for each subscription and a 1001 close; `complete` \
                 {} / {}, 1001 closes {} / {}.\n",
                thousands(sd.connections as u64),
                sd.secs,
                sd.exit,
                thousands(sd.completed_and_going_away),
                thousands(sd.connections as u64),
                thousands(sd.completes),
                thousands(sd.subscriptions),
                thousands(sd.going_away),
                thousands(sd.connections as u64),
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("\nNote: {n}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out
    }
}

pub async fn run(bench: &mut Bench, cfg: &FanoutConfig, nofile_limit: u64) -> FanoutResult {
    let mut result = FanoutResult {
        connections: cfg.connections,
        subscriptions_per_connection: cfg.subscriptions_per_connection,
        nofile_limit,
        ..Default::default()
    };
    if let Err(e) = measure(bench, cfg, &mut result).await {
        result.errors.push(format!("{e:#}"));
    }
    result
}

/// Counts the writer's bursts, each ending in one flush of the socket.
const SOCKET_WRITES: &str = "walcast_send_seconds_count";
/// The hub's time per transaction: matching, then queueing and waking.
const HUB_SECONDS: [&str; 2] = ["walcast_match_seconds_sum", "walcast_dispatch_seconds_sum"];

/// The hub's time so far matching and queueing, in seconds.
async fn hub_seconds(walcast: &crate::walcast::Walcast) -> anyhow::Result<(f64, f64)> {
    Ok((
        walcast.metric(HUB_SECONDS[0]).await?,
        walcast.metric(HUB_SECONDS[1]).await?,
    ))
}

/// Settles for a moment, then reads the RSS.
async fn settled_rss(walcast: &crate::walcast::Walcast) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    walcast.rss_bytes()
}

async fn measure(
    bench: &mut Bench,
    cfg: &FanoutConfig,
    result: &mut FanoutResult,
) -> anyhow::Result<()> {
    // Each connection is a socket here and one in walcast, plus some slack for both.
    let needed = cfg.connections as u64 + 256;
    if result.nofile_limit > 0 && result.nofile_limit < needed {
        bail!(
            "{} connections need an open-files limit of at least {needed}; it is {} (ulimit -n)",
            cfg.connections,
            result.nofile_limit
        );
    }
    bench.db.drop_slot(SLOT).await?;
    let mut opts = bench.walcast_options(SLOT);
    opts.max_connections = Some(cfg.connections + 64);
    let walcast = bench.start_walcast(&opts).await?;
    result.rss_idle = settled_rss(&walcast).await?;

    let mut spec = LoadSpec::new(walcast.ws_url(), QUERY_ALL);
    spec.connections = cfg.connections;
    spec.subscriptions_per_connection = cfg.subscriptions_per_connection;
    spec.defer_subscribe = true;
    spec.track_rows = true;
    spec.connect_concurrency = 128;
    let t = Instant::now();
    let load = Load::start(spec).await;
    result.connect_secs = t.elapsed().as_secs_f64();
    result.connected = load.connected();
    for (e, n) in load.connect_errors() {
        result.notes.push(format!("connection failed x{n}: {e}"));
    }
    if load.connected() == 0 {
        bail!("no connection opened");
    }
    walcast
        .wait_metric(
            crate::walcast::CONNECTIONS,
            load.connected() as f64,
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .await?;
    result.rss_connected = settled_rss(&walcast).await?;

    let t = Instant::now();
    load.subscribe_all();
    Bench::wait_subscriptions(&walcast, load.subscriptions(), Duration::from_secs(600)).await?;
    result.subscribe_secs = t.elapsed().as_secs_f64();
    result.subscriptions = load.subscriptions();
    result.rss_subscribed = settled_rss(&walcast).await?;
    eprintln!(
        "fanout: {} connections, {} subscriptions; RSS {} -> {} -> {} MiB",
        load.connected(),
        load.subscriptions(),
        result.rss_idle >> 20,
        result.rss_connected >> 20,
        result.rss_subscribed >> 20
    );

    let mut profile = None;
    if let (Some(dir), Some(pid)) = (&bench.perf_dir, walcast.pid()) {
        profile = crate::perf::Profile::start(dir, "fanout-walcast", pid).await;
    }
    let cpu = walcast.pid().and_then(crate::walcast::CpuMeter::start);
    let bench_cpu = crate::walcast::CpuMeter::start(std::process::id());
    let writes_before = walcast.metric(SOCKET_WRITES).await.ok();
    let hub_before = hub_seconds(&walcast).await.ok();
    if cfg.rows > 0 {
        let client = bench.db.connect().await?;
        let first = bench.db.next_id().await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for k in 0..cfg.rows as i64 {
            tick.tick().await;
            Database::insert(&client, first + k, first + k).await?;
        }
        result.rows = cfg.rows;
        result.expected = cfg.rows * load.subscriptions();
        if load
            .wait_for(result.expected, Duration::from_secs(15))
            .await
            .is_none()
        {
            result.notes.push(format!(
                "gave up 15 s after the last delivery ({} of {})",
                thousands(load.received()),
                thousands(result.expected)
            ));
        }
    }
    result.walcast_cpu = cpu.as_ref().and_then(|m| m.cores());
    result.walcast_cpu_secs = cpu.and_then(|m| m.seconds());
    result.bench_cpu = bench_cpu.and_then(|m| m.cores());
    if let (Some(before), Ok(after)) = (writes_before, walcast.metric(SOCKET_WRITES).await) {
        result.socket_writes = Some(after - before);
    }
    if let (Some(before), Ok(after)) = (hub_before, hub_seconds(&walcast).await) {
        result.hub_secs = Some((after.0 - before.0, after.1 - before.1));
    }
    if let Some(p) = profile {
        p.finish();
    }
    let closes = walcast.metric("walcast_slow_consumer_closes_total").await?;
    if closes > 0.0 {
        result
            .notes
            .push(format!("{closes} connection(s) closed as slow consumers"));
    }
    // The stop under load: SIGTERM with every connection open, which then gets its goodbye.
    let subscriptions = load.subscriptions();
    let connections = load.connected();
    eprintln!("fanout: SIGTERM with {connections} connections open");
    let (took, status) = walcast.terminate().await?;
    let report = load.finish().await;
    result.shutdown = Some(Shutdown {
        secs: took.as_secs_f64(),
        exit: match status {
            Some(s) => s
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| s.to_string()),
            None => "still running, killed".into(),
        },
        connections,
        subscriptions,
        completed_and_going_away: report.completed_and_going_away,
        going_away: report.going_away,
        completes: report.completes,
    });
    result.delivered = report.received;
    result.latency = report.latency;
    result.last_subscriber = report.last_subscriber;
    for (what, n) in report.closes.iter().chain(&report.errors) {
        // Expected now: every connection goes away with the server.
        if what.starts_with("1001 ") {
            continue;
        }
        result.notes.push(format!("{what} (x{n})"));
    }
    bench.db.drop_slot(SLOT).await?;
    Ok(())
}
