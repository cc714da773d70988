//! Failover gaps: two walcast nodes (role both) on one slot and one nats-server, rows written at
//! a steady rate, one client counting every row by its id. The active reader is killed with
//! SIGKILL, the gap is the time from the kill to the client's first row committed after it (it
//! can only come through the new reader); the killed node is started again as the standby, and
//! the client moves to it with its cursor, so the next kill leaves it alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use walcast_natscluster::NatsServer;

use crate::bench::Bench;
use crate::client;
use crate::db::Database;
use crate::follower::{arrival_after, follow, Follower, Seen};
use crate::scenarios::cluster_latency::cluster_env;
use crate::stats::{ms, thousands};
use crate::walcast::{Walcast, WalcastOptions};

pub const SLOT: &str = "walcast_bench_failover";
/// The gap's target.
const TARGET: Duration = Duration::from_secs(10);
/// Writer transactions per second.
const TICKS_PER_SEC: u64 = 100;
/// Longest wait for a role, a row or a node.
const WAIT: Duration = Duration::from_secs(60);
/// Steady writing and delivery before each kill, so a kill never lands on a node still starting.
const SETTLE: Duration = Duration::from_secs(2);
/// A standby retries the slot every half second: a kill at a fixed time after the restart
/// would always meet the same phase of that retry, so up to this much is added at random.
const JITTER_US: i64 = 500_000;

#[derive(Debug, Clone)]
pub struct FailoverConfig {
    pub kills: usize,
    /// Rows per second of the writer.
    pub rate: u64,
}

#[derive(Debug, Clone)]
pub struct Round {
    /// Node 0 or 1.
    pub killed: usize,
    pub gap: Duration,
    /// From the kill until the killed node was back as the standby.
    pub restart: Duration,
    /// The last id committed when the kill was sent.
    pub boundary: i64,
}

#[derive(Debug, Clone, Default)]
pub struct FailoverResult {
    pub rounds: Vec<Round>,
    pub rows: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub errors: Vec<String>,
}

impl FailoverResult {
    pub fn markdown(&self, cfg: &FailoverConfig) -> String {
        let mut out = format!(
            "Failover: two nodes (role both) on one slot and the nats-server above, rows written at \
             {} rows/s ({TICKS_PER_SEC} transactions/s), one client counting every row by its id. \
             The active reader (its `walcast_cluster_role` gauge) is killed with SIGKILL; the gap is \
             from the kill to the client's first row committed after it. The killed node is then \
             started again and becomes the standby, and the client moves to it with its last \
             cursor (`after:`) so the next kill spares it; {} s and a random part of {} ms (the standby's \
             retry period) of steady writing before each of the {} kills.\n\n",
            thousands(cfg.rate),
            SETTLE.as_secs(),
            JITTER_US / 1000,
            cfg.kills
        );
        out.push_str(
            "| kill | node killed | gap: kill → first new row at the client | killed node back as standby |\n|---:|---:|---:|---:|\n",
        );
        for (i, r) in self.rounds.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {} | {} ms | {:.1} s |\n",
                i + 1,
                r.killed,
                ms(r.gap.as_micros() as u64),
                r.restart.as_secs_f64()
            ));
        }
        if let Some((p50, p99, max)) = self.summary() {
            let met = max < TARGET
                && self.missing == 0
                && self.duplicated == 0
                && self.rounds.len() == cfg.kills;
            out.push_str(&format!(
                "\nGaps: p50 {} ms, p99 {} ms, max {} ms (p99 of {} gaps is the nearest rank). \
                 Rows: {} written, {} received, {} missing, {} duplicated. Target: every gap < {} s, \
                 nothing lost or repeated: {}.\n",
                ms(p50.as_micros() as u64),
                ms(p99.as_micros() as u64),
                ms(max.as_micros() as u64),
                self.rounds.len(),
                thousands(self.rows),
                thousands(self.received),
                thousands(self.missing),
                thousands(self.duplicated),
                TARGET.as_secs(),
                if met { "met" } else { "**missed**" }
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out
    }

    /// p50, p99 (nearest rank) and max of the gaps.
    pub fn summary(&self) -> Option<(Duration, Duration, Duration)> {
        let mut gaps: Vec<Duration> = self.rounds.iter().map(|r| r.gap).collect();
        gaps.sort();
        let rank = |q: f64| {
            let i = ((q * gaps.len() as f64).ceil() as usize).clamp(1, gaps.len()) - 1;
            gaps[i]
        };
        let max = *gaps.last()?;
        Some((rank(0.5), rank(0.99), max))
    }
}

pub async fn run(bench: &mut Bench, nats: &NatsServer, cfg: &FailoverConfig) -> FailoverResult {
    let mut result = FailoverResult::default();
    if let Err(e) = kills(bench, nats, cfg, &mut result).await {
        result.errors.push(format!("{e:#}"));
    }
    if let Err(e) = bench.db.drop_slot(SLOT).await {
        result.errors.push(format!("dropping slot {SLOT}: {e:#}"));
    }
    result
}

/// Writes rows at `rate` from `first` until `stop`; `written` follows the last committed id.
fn spawn_writer(
    client: tokio_postgres::Client,
    first: i64,
    rate: u64,
    written: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let per_tick = (rate / TICKS_PER_SEC).max(1) as i64;
        let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / TICKS_PER_SEC));
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut next = first;
        while !stop.load(SeqCst) {
            interval.tick().await;
            Database::insert(&client, next, next + per_tick - 1).await?;
            next += per_tick;
            written.store(next - 1, SeqCst);
        }
        Ok(())
    })
}

/// The node reporting the reader role, once exactly one does.
async fn find_reader(nodes: &[Option<Walcast>; 2]) -> anyhow::Result<usize> {
    let start = Instant::now();
    loop {
        let mut readers = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Some(node) = node {
                if let Ok(Some("reader")) = node.cluster_role().await {
                    readers.push(i);
                }
            }
        }
        if let [one] = readers[..] {
            return Ok(one);
        }
        if start.elapsed() > WAIT {
            bail!(
                "{} nodes report the reader role after {WAIT:?}",
                readers.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node(nodes: &[Option<Walcast>; 2], i: usize) -> anyhow::Result<&Walcast> {
    nodes[i]
        .as_ref()
        .ok_or_else(|| anyhow!("node {i} is not running"))
}

async fn kills(
    bench: &mut Bench,
    nats: &NatsServer,
    cfg: &FailoverConfig,
    result: &mut FailoverResult,
) -> anyhow::Result<()> {
    bench.db.drop_slot(SLOT).await?;
    let opts: [WalcastOptions; 2] = [0, 1].map(|_| {
        let mut o = bench.walcast_options(SLOT);
        cluster_env(&mut o, nats, "both");
        o
    });
    let mut nodes: [Option<Walcast>; 2] = [None, None];
    nodes[0] = Some(bench.start_walcast(&opts[0]).await.context("node 0")?);
    node(&nodes, 0)?.wait_role("reader", WAIT).await?;
    nodes[1] = Some(bench.start_walcast(&opts[1]).await.context("node 1")?);
    node(&nodes, 1)?.wait_role("standby", WAIT).await?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut follower = Some(follow(1, node(&nodes, 1)?.ws_url(), None, seen.clone()).await?);
    Bench::wait_subscriptions(node(&nodes, 1)?, 1, WAIT).await?;

    let first = bench.db.next_id().await?;
    let written = Arc::new(AtomicI64::new(first - 1));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        bench.db.connect().await?,
        first,
        cfg.rate,
        written.clone(),
        stop.clone(),
    );
    let rounds = run_rounds(
        bench,
        cfg,
        &opts,
        &mut nodes,
        &mut follower,
        &seen,
        &written,
        result,
    )
    .await;
    stop.store(true, SeqCst);
    writer.await.context("the writer task")??;
    let last = written.load(SeqCst);
    // Everything written reaches the client, or nothing arrives for a while.
    let drained = arrival_after(&seen, last - 1, WAIT).await;
    if let Some(f) = follower {
        f.close().await;
    }
    for n in nodes.into_iter().flatten() {
        n.stop().await?;
    }
    rounds?;
    drained.context("waiting for the last row")?;
    count(&seen, first, last, result)
}

#[allow(clippy::too_many_arguments)]
async fn run_rounds(
    bench: &Bench,
    cfg: &FailoverConfig,
    opts: &[WalcastOptions; 2],
    nodes: &mut [Option<Walcast>; 2],
    follower: &mut Option<Follower>,
    seen: &Arc<Mutex<Seen>>,
    written: &AtomicI64,
    result: &mut FailoverResult,
) -> anyhow::Result<()> {
    arrival_after(seen, written.load(SeqCst), WAIT)
        .await
        .context("the first rows")?;
    for round in 0..cfg.kills {
        let reader = find_reader(nodes).await?;
        let survivor = 1 - reader;
        if follower.as_ref().map(|f| f.node) != Some(survivor) {
            // The old subscription ends before the cursor is read: a row it received after
            // that would come again from the new one.
            if let Some(old) = follower.take() {
                old.close().await;
            }
            let cursor = seen
                .lock()
                .map_err(|_| anyhow!("client state poisoned"))?
                .cursor
                .clone();
            *follower = Some(
                follow(
                    survivor,
                    node(nodes, survivor)?.ws_url(),
                    cursor,
                    seen.clone(),
                )
                .await?,
            );
            Bench::wait_subscriptions(node(nodes, survivor)?, 1, WAIT).await?;
        }
        // Steady state: the client is live on the survivor.
        let jitter = client::now_micros().rem_euclid(JITTER_US) as u64;
        tokio::time::sleep(SETTLE + Duration::from_micros(jitter)).await;
        arrival_after(seen, written.load(SeqCst), WAIT)
            .await
            .with_context(|| format!("before kill {}", round + 1))?;
        let victim = nodes[reader]
            .take()
            .ok_or_else(|| anyhow!("node {reader} is not running"))?;
        let killed_at = Instant::now();
        victim.kill();
        // Rows committed after this read were committed after the kill.
        let boundary = written.load(SeqCst);
        let arrived = arrival_after(seen, boundary, WAIT)
            .await
            .with_context(|| format!("after kill {}", round + 1))?;
        let gap = arrived.duration_since(killed_at);
        eprintln!(
            "cluster: kill {} of node {reader}: gap {} ms",
            round + 1,
            ms(gap.as_micros() as u64)
        );
        node(nodes, survivor)?.wait_role("reader", WAIT).await?;
        nodes[reader] = Some(
            bench
                .start_walcast(&opts[reader])
                .await
                .with_context(|| format!("restarting node {reader}"))?,
        );
        node(nodes, reader)?.wait_role("standby", WAIT).await?;
        result.rounds.push(Round {
            killed: reader,
            gap,
            restart: killed_at.elapsed(),
            boundary,
        });
    }
    Ok(())
}

/// Every id from `first` to `last` once: counts what is missing and what came twice.
fn count(
    seen: &Mutex<Seen>,
    first: i64,
    last: i64,
    result: &mut FailoverResult,
) -> anyhow::Result<()> {
    let s = seen.lock().map_err(|_| anyhow!("client state poisoned"))?;
    let mut times: BTreeMap<i64, u64> = BTreeMap::new();
    for (id, _) in &s.rows {
        *times.entry(*id).or_default() += 1;
    }
    result.rows = (last - first + 1).max(0) as u64;
    result.received = s.rows.len() as u64;
    result.missing = (first..=last).filter(|i| !times.contains_key(i)).count() as u64;
    result.duplicated = times.values().map(|n| n - 1).sum();
    let missing: Vec<i64> = (first..=last)
        .filter(|i| !times.contains_key(i))
        .take(10)
        .collect();
    let repeated: Vec<i64> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .take(10)
        .collect();
    if !missing.is_empty() || !repeated.is_empty() {
        result.errors.push(format!(
            "ids missing (first 10): {missing:?}; ids repeated (first 10): {repeated:?}; kills after ids {:?}",
            result.rounds.iter().map(|r| r.boundary).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_summary() {
        let mut r = FailoverResult::default();
        assert!(r.summary().is_none());
        for ms in [900, 300, 500, 700, 100] {
            r.rounds.push(Round {
                killed: 0,
                gap: Duration::from_millis(ms),
                restart: Duration::ZERO,
                boundary: 0,
            });
        }
        let (p50, p99, max) = r.summary().expect("gaps");
        assert_eq!(p50, Duration::from_millis(500));
        assert_eq!(p99, Duration::from_millis(900));
        assert_eq!(max, Duration::from_millis(900));
    }
}
