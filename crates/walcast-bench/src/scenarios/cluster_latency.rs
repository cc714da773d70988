//! Commit → client latency through the cluster against a single node, in one run: the latency
//! scenario's cell (steady writes, subscribers matching 1%) once on a single-node walcast, once
//! on a gateway fed by a reader node through the JetStream stream.

use std::time::Duration;

use anyhow::Context;
use walcast_natscluster::NatsServer;

use crate::bench::Bench;
use crate::scenarios::latency::{self, Cell, LatencyConfig, Matching};
use crate::stats::{ms, thousands};
use crate::walcast::WalcastOptions;

pub const SINGLE_SLOT: &str = "walcast_bench_cl_single";
pub const CLUSTER_SLOT: &str = "walcast_bench_cl_latency";
/// The cluster's p99 may exceed the single node's by this much.
const TARGET_EXTRA_MS: f64 = 5.0;
const ROLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub rate: u64,
    pub subscribers: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct CompareResult {
    pub single: Option<Cell>,
    pub cluster: Option<Cell>,
    pub errors: Vec<String>,
}

fn cell_row(what: &str, c: &Cell) -> String {
    let cpu = c
        .walcast_cpu
        .map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "?".into());
    let delivered = format!("{} / {}", thousands(c.delivered), thousands(c.expected));
    format!(
        "| {what} | {} | {} | {} | {} | {} | {cpu} |\n",
        ms(c.latency.quantile(0.5)),
        ms(c.latency.quantile(0.95)),
        ms(c.latency.quantile(0.99)),
        ms(c.latency.max()),
        if c.delivered == c.expected {
            delivered
        } else {
            format!("**{delivered}**")
        },
    )
}

impl CompareResult {
    pub fn markdown(&self, cfg: &CompareConfig) -> String {
        let mut out = format!(
            "Commit → client latency, single node against cluster, in one run: {} rows/s for {} s, \
             {} subscribers on their own connections, each matching 1% (`where: {{bucket: K}}`). \
             Cluster: one node `--role reader` and one `--role gateway` (the subscribers on it) \
             sharing the nats-server above (stream R1, file storage). Latency from `sent_at` \
             (`clock_timestamp()` at insert) to the `next` message at the client, in ms; CPU in \
             cores of walcast (both nodes in the cluster).\n\n",
            thousands(cfg.rate),
            cfg.duration.as_secs(),
            thousands(cfg.subscribers as u64)
        );
        out.push_str("| walcast | p50 | p95 | p99 | max | delivered / expected | CPU walcast |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        if let Some(c) = &self.single {
            out.push_str(&cell_row("single node", c));
        }
        if let Some(c) = &self.cluster {
            out.push_str(&cell_row("cluster: reader → stream → gateway", c));
        }
        if let (Some(s), Some(c)) = (&self.single, &self.cluster) {
            let p50 = c.latency.quantile(0.5) as f64 - s.latency.quantile(0.5) as f64;
            let p99 = c.latency.quantile(0.99) as f64 - s.latency.quantile(0.99) as f64;
            let complete = s.delivered == s.expected && c.delivered == c.expected;
            let met = complete && p99 / 1000.0 <= TARGET_EXTRA_MS;
            out.push_str(&format!(
                "\nCluster minus single node: p50 {:+.2} ms, p99 {:+.2} ms. Target: cluster p99 within \
                 single-node p99 + {TARGET_EXTRA_MS} ms, nothing lost: {}.\n",
                p50 / 1000.0,
                p99 / 1000.0,
                if met { "met" } else { "**missed**" }
            ));
        }
        for c in self.single.iter().chain(&self.cluster) {
            for n in &c.notes {
                out.push_str(&format!("\nNote: {n}\n"));
            }
        }
        for e in &self.errors {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out
    }
}

/// Cluster-mode variables of a node.
pub fn cluster_env(opts: &mut WalcastOptions, nats: &NatsServer, role: &str) {
    opts.env = vec![
        ("WALCAST_NATS_URL".into(), nats.url()),
        ("WALCAST_ROLE".into(), role.into()),
    ];
}

pub async fn run(bench: &mut Bench, nats: &NatsServer, cfg: &CompareConfig) -> CompareResult {
    let mut result = CompareResult::default();
    let latency_cfg = LatencyConfig {
        rates: vec![cfg.rate],
        subscribers: vec![cfg.subscribers],
        matching: vec![Matching::OnePercent],
        duration: cfg.duration,
    };
    eprintln!(
        "cluster: latency, single node, {} rows/s x {} subscribers",
        cfg.rate, cfg.subscribers
    );
    match single(bench, &latency_cfg, cfg).await {
        Ok(cell) => result.single = Some(cell),
        Err(e) => result.errors.push(format!("single node: {e:#}")),
    }
    eprintln!("cluster: latency, reader node + gateway node");
    match cluster(bench, nats, &latency_cfg, cfg).await {
        Ok(cell) => result.cluster = Some(cell),
        Err(e) => result.errors.push(format!("cluster: {e:#}")),
    }
    for slot in [SINGLE_SLOT, CLUSTER_SLOT] {
        if let Err(e) = bench.db.drop_slot(slot).await {
            result.errors.push(format!("dropping slot {slot}: {e:#}"));
        }
    }
    result
}

fn options(bench: &mut Bench, slot: &str, cfg: &CompareConfig) -> WalcastOptions {
    let mut opts = bench.walcast_options(slot);
    opts.max_connections = Some(cfg.subscribers + 64);
    opts
}

async fn single(
    bench: &mut Bench,
    latency_cfg: &LatencyConfig,
    cfg: &CompareConfig,
) -> anyhow::Result<Cell> {
    bench.db.drop_slot(SINGLE_SLOT).await?;
    let opts = options(bench, SINGLE_SLOT, cfg);
    let walcast = bench.start_walcast(&opts).await?;
    let cell = latency::run_cell(
        bench,
        &walcast,
        &[],
        latency_cfg,
        cfg.rate,
        cfg.subscribers,
        Matching::OnePercent,
    )
    .await?;
    report(&cell);
    walcast.stop().await?;
    Ok(cell)
}

async fn cluster(
    bench: &mut Bench,
    nats: &NatsServer,
    latency_cfg: &LatencyConfig,
    cfg: &CompareConfig,
) -> anyhow::Result<Cell> {
    bench.db.drop_slot(CLUSTER_SLOT).await?;
    let mut reader_opts = options(bench, CLUSTER_SLOT, cfg);
    cluster_env(&mut reader_opts, nats, "reader");
    let reader = bench.start_walcast(&reader_opts).await?;
    reader
        .wait_role("reader", ROLE_TIMEOUT)
        .await
        .context("the reader node")?;
    let mut gateway_opts = options(bench, CLUSTER_SLOT, cfg);
    cluster_env(&mut gateway_opts, nats, "gateway");
    let gateway = bench
        .start_walcast(&gateway_opts)
        .await
        .context("the gateway node")?;
    let cell = latency::run_cell(
        bench,
        &gateway,
        &[&reader],
        latency_cfg,
        cfg.rate,
        cfg.subscribers,
        Matching::OnePercent,
    )
    .await?;
    report(&cell);
    gateway.stop().await?;
    reader.stop().await?;
    Ok(cell)
}

fn report(cell: &Cell) {
    eprintln!(
        "cluster:   p50 {} p99 {} max {} ms, delivered {} of {}",
        ms(cell.latency.quantile(0.5)),
        ms(cell.latency.quantile(0.99)),
        ms(cell.latency.max()),
        cell.delivered,
        cell.expected
    );
}
