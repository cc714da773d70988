//! `walcast-bench`: see `docs/benchmarks.md`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use walcast_bench::bench::{default_walcast_bin, raise_nofile_limit, Bench};
use walcast_bench::client::{Load, LoadSpec};
use walcast_bench::db::CLUSTER_SETTINGS;
use walcast_bench::report;
use walcast_bench::scenarios::{
    cluster, cluster_latency, failover, fanout, ingest, latency, matching, peers,
};

#[derive(Parser)]
#[command(
    name = "walcast-bench",
    about = "Benchmarks walcast against the Postgres walsender (pg_recvlogical): ingest, latency, fan-out, matching.",
    long_about = "Benchmarks walcast against the Postgres walsender (pg_recvlogical).\n\n\
Starts a throw-away Postgres (or uses DATABASE_URL) and the release walcast binary, runs the \
scenarios and prints a markdown report; --write FILE updates that file's sections. `load` is a \
graphql-transport-ws load generator for any server."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario.
    All(RunArgs),
    /// Ingest ceiling: walcast vs pg_recvlogical on the same backlog.
    Ingest(RunArgs),
    /// Commit-to-client latency at steady write rates, with S subscribers.
    Latency(RunArgs),
    /// Memory per connection and subscription, and latency to the last of many subscribers.
    Fanout(RunArgs),
    /// The in-process matching bench of walcast-filter.
    Matching(RunArgs),
    /// Cluster mode: the slot published to a JetStream stream by walcast's reader and read back
    /// by a gateway, against pg_recvlogical on the same backlog; commit → client latency through
    /// a reader node and a gateway node against a single node (the first of --rates and
    /// --subscribers [default: 1000 rows/s, 1000 subscribers; quick: 100], 1% each); failover
    /// gaps over --kills kills of the reader (needs nats-server; not in `all`).
    Cluster(RunArgs),
    /// A peer in the same run: the latency workload against walcast, then against PostGraphile 4
    /// with live queries (`@graphile/subscriptions-lds`), on the same database; walcast /
    /// PostGraphile ratios of p50 and p99 and the highest rate each sustains. Installs what it
    /// needs when missing: Debian's postgresql-<major>-wal2json (apt-get) and the npm packages
    /// (into --cache-dir); not in `all`.
    Peers(PeersArgs),
    /// Load generator against any graphql-transport-ws server.
    Load(LoadArgs),
    /// Tiny ingest and latency runs (about 10 s) that check the bench works and nothing is
    /// lost, not the timings: exits nonzero on any loss or failure. Runs in CI.
    Smoke(SmokeArgs),
}

#[derive(Args)]
struct SmokeArgs {
    /// Use this database instead of a throw-away cluster (needs wal_level=logical and REPLICATION).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The walcast binary [default: next to this one, else target/release/walcast].
    #[arg(long)]
    walcast_bin: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Small sizes (the whole run in about two minutes).
    #[arg(long)]
    quick: bool,
    /// Rows of the ingest and cluster scenarios [default: 200000; quick: 20000].
    #[arg(long)]
    rows: Option<u64>,
    /// Rows per transaction in the ingest and cluster scenarios.
    #[arg(long, default_value_t = 1000)]
    rows_per_tx: u64,
    /// Runs of each ingest variant (the median is reported) [default: 3; quick: 1].
    #[arg(long)]
    repeats: Option<usize>,
    /// Write rates of the latency scenario, rows/s [default: 1000,10000; quick: 1000].
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u64>,
    /// Subscriber counts of the latency scenario [default: 1,100,1000; quick: 1,100].
    #[arg(long, value_delimiter = ',')]
    subscribers: Vec<usize>,
    /// Subscribers of the latency scenario matching 1% of the rows, every row, or each in turn.
    #[arg(long, value_enum, default_value_t = MatchingArg::Both)]
    matching: MatchingArg,
    /// Seconds of writing per latency cell [default: 10; quick: 3].
    #[arg(long)]
    duration: Option<u64>,
    /// Connections of the fan-out scenario [default: 10000; quick: 1000].
    #[arg(long)]
    connections: Option<usize>,
    /// Subscriptions per connection in the fan-out scenario.
    #[arg(long, default_value_t = 10)]
    subscriptions_per_connection: usize,
    /// Rows (one per second) of the fan-out scenario [default: 10; quick: 3].
    #[arg(long)]
    fanout_rows: Option<u64>,
    /// Publishes in flight in the cluster scenario's reader [default: walcast-cluster's].
    #[arg(long)]
    in_flight: Option<usize>,
    /// Kills of the active reader in the cluster scenario's failover part [default: 5; quick: 2].
    #[arg(long)]
    kills: Option<usize>,
    /// Rows per second written during the failover part.
    #[arg(long, default_value_t = 100)]
    failover_rate: u64,
    /// Update this markdown file (e.g. docs/benchmarks.md) with the results.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Use this database instead of a throw-away cluster (needs wal_level=logical and REPLICATION).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The walcast binary [default: next to this one, else target/release/walcast].
    #[arg(long)]
    walcast_bin: Option<PathBuf>,
    /// Record CPU profiles (perf record -g) of walcast and the walsender during the ingest runs
    /// into this directory.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MatchingArg {
    OnePercent,
    All,
    Both,
}

impl MatchingArg {
    fn kinds(self) -> Vec<latency::Matching> {
        match self {
            MatchingArg::OnePercent => vec![latency::Matching::OnePercent],
            MatchingArg::All => vec![latency::Matching::All],
            MatchingArg::Both => vec![latency::Matching::OnePercent, latency::Matching::All],
        }
    }
}

#[derive(Args)]
struct PeersArgs {
    /// Write rates, rows/s.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,3000,5000")]
    rates: Vec<u64>,
    /// Subscribers, each on its own connection.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Subscribers matching 1% of the rows, every row, or each in turn.
    #[arg(long, value_enum, default_value_t = MatchingArg::OnePercent)]
    matching: MatchingArg,
    /// Seconds of writing per rate.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Where PostGraphile is installed with npm [default: $XDG_CACHE_HOME/walcast-bench/peers,
    /// else ~/.cache/walcast-bench/peers].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Write the report (markdown) to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Update this markdown file's peers section (e.g. docs/benchmarks.md).
    #[arg(long)]
    write: Option<PathBuf>,
    /// Use this database instead of a throw-away cluster (needs wal_level=logical, a superuser
    /// for PostGraphile's replication slot, and wal2json on the server).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The walcast binary [default: next to this one, else target/release/walcast].
    #[arg(long)]
    walcast_bin: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// WebSocket URL of the GraphQL endpoint.
    #[arg(long)]
    url: String,
    /// Subscription document; `{{i}}` is replaced by the subscription number (see --modulo).
    #[arg(long)]
    query: String,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, default_value_t = 1)]
    subscriptions_per_connection: usize,
    /// Access token, sent as `access_token` in the connection_init payload.
    #[arg(long)]
    token: Option<String>,
    /// `{{i}}` becomes the subscription number modulo this.
    #[arg(long)]
    modulo: Option<u64>,
    /// Stop after this many seconds [default: until --expect is reached or Ctrl-C].
    #[arg(long)]
    duration: Option<u64>,
    /// Stop once this many `next` messages have arrived.
    #[arg(long)]
    expect: Option<u64>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Also report, per row (by its sent_at), the latency to its last subscriber.
    #[arg(long)]
    track_rows: bool,
}

/// Sizes, with the --quick defaults applied.
struct Sizes {
    ingest: ingest::IngestConfig,
    latency: latency::LatencyConfig,
    fanout: fanout::FanoutConfig,
    label: String,
}

fn sizes(a: &RunArgs) -> Sizes {
    let q = a.quick;
    let pick = |given: &[u64], full: &[u64], quick: &[u64]| -> Vec<u64> {
        if !given.is_empty() {
            given.to_vec()
        } else if q {
            quick.to_vec()
        } else {
            full.to_vec()
        }
    };
    let subscribers: Vec<usize> = if !a.subscribers.is_empty() {
        a.subscribers.clone()
    } else if q {
        vec![1, 100]
    } else {
        vec![1, 100, 1000]
    };
    let ingest = ingest::IngestConfig {
        rows: a.rows.unwrap_or(if q { 20_000 } else { 200_000 }),
        rows_per_tx: a.rows_per_tx.max(1),
        repeats: a.repeats.unwrap_or(if q { 1 } else { 3 }),
    };
    let latency = latency::LatencyConfig {
        rates: pick(&a.rates, &[1000, 10_000], &[1000]),
        subscribers,
        matching: a.matching.kinds(),
        duration: Duration::from_secs(a.duration.unwrap_or(if q { 3 } else { 10 })),
    };
    let fanout = fanout::FanoutConfig {
        connections: a.connections.unwrap_or(if q { 1000 } else { 10_000 }),
        subscriptions_per_connection: a.subscriptions_per_connection,
        rows: a.fanout_rows.unwrap_or(if q { 3 } else { 10 }),
    };
    let label = format!(
        "{}: ingest {} rows x {} run(s); latency {:?} rows/s x {:?} subscribers, {} s each; fan-out {} connections x {} subscriptions, {} rows",
        if q { "--quick" } else { "full" },
        ingest.rows,
        ingest.repeats,
        latency.rates,
        latency.subscribers,
        latency.duration.as_secs(),
        fanout.connections,
        fanout.subscriptions_per_connection,
        fanout.rows
    );
    Sizes {
        ingest,
        latency,
        fanout,
        label,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    All,
    Ingest,
    Latency,
    Fanout,
    Matching,
    Cluster,
}

async fn run_scenarios(which: Which, args: RunArgs) -> anyhow::Result<()> {
    let nofile = raise_nofile_limit();
    let sizes = sizes(&args);
    let started = Instant::now();
    let stamp = format!(
        "Measured {} on walcast `{}` ({}).\n\n",
        report::today(),
        report::walcast_commit(),
        if args.quick {
            "--quick sizes"
        } else {
            "full sizes"
        }
    );
    let mut parts: Vec<(&str, String)> = Vec::new();
    let label = if which == Which::Cluster {
        format!(
            "cluster {} rows, {} per transaction",
            sizes.ingest.rows, sizes.ingest.rows_per_tx
        )
    } else {
        sizes.label.clone()
    };
    let needs_server = which != Which::Matching;
    if needs_server {
        let bin = args.walcast_bin.clone().unwrap_or_else(default_walcast_bin);
        let own_cluster = args.database_url.is_none();
        eprintln!("walcast-bench: {} (walcast: {})", label, bin.display());
        let mut bench = Bench::new(args.database_url.clone(), bin, args.quick)
            .await
            .context("setting up")?;
        bench.perf_dir = args.perf_dir.clone();
        let machine = report::machine(
            &bench.db.server_version,
            own_cluster,
            &label,
            CLUSTER_SETTINGS,
        );
        if which == Which::Cluster {
            // Its own section carries the machine: the shared one describes the other runs.
            let cfg = cluster::ClusterConfig {
                rows: sizes.ingest.rows,
                rows_per_tx: sizes.ingest.rows_per_tx,
                in_flight: args
                    .in_flight
                    .unwrap_or(walcast_cluster::DEFAULT_MAX_IN_FLIGHT),
                latency: cluster_latency::CompareConfig {
                    rate: args.rates.first().copied().unwrap_or(1000),
                    subscribers: args.subscribers.first().copied().unwrap_or(if args.quick {
                        100
                    } else {
                        1000
                    }),
                    duration: sizes.latency.duration,
                },
                failover: failover::FailoverConfig {
                    kills: args.kills.unwrap_or(if args.quick { 2 } else { 5 }),
                    rate: args.failover_rate,
                },
            };
            let r = cluster::run(&mut bench, &cfg).await;
            let command = format!(
                "`cargo run --release -p walcast-bench -- cluster --rows {} --rows-per-tx {} --in-flight {} \
                 --rates {} --subscribers {} --duration {} --kills {} --failover-rate {}`",
                cfg.rows,
                cfg.rows_per_tx,
                cfg.in_flight,
                cfg.latency.rate,
                cfg.latency.subscribers,
                cfg.latency.duration.as_secs(),
                cfg.failover.kills,
                cfg.failover.rate
            );
            parts.push((
                "cluster",
                format!("{stamp}{}\n{machine}\nCommand: {command}\n", r.markdown()),
            ));
        } else {
            parts.push(("machine", machine));
        }
        if matches!(which, Which::All | Which::Ingest) {
            let t = Instant::now();
            let r = ingest::run(&mut bench, &sizes.ingest).await;
            parts.push(("ingest", format!("{stamp}{}", r.markdown())));
            took("ingest", t);
        }
        if matches!(which, Which::All | Which::Latency) {
            let t = Instant::now();
            let r = latency::run(&mut bench, &sizes.latency).await;
            parts.push(("latency", format!("{stamp}{}", r.markdown())));
            took("latency", t);
        }
        if matches!(which, Which::All | Which::Fanout) {
            let t = Instant::now();
            let r = fanout::run(&mut bench, &sizes.fanout, nofile).await;
            parts.push(("fanout", format!("{stamp}{}", r.markdown())));
            took("fanout", t);
        }
        if !own_cluster {
            bench
                .db
                .cleanup(&[
                    ingest::SLOT,
                    latency::SLOT,
                    fanout::SLOT,
                    cluster::SLOT,
                    cluster_latency::SINGLE_SLOT,
                    cluster_latency::CLUSTER_SLOT,
                    failover::SLOT,
                ])
                .await?;
        }
    }
    if matches!(which, Which::All | Which::Matching) {
        let t = Instant::now();
        let r = matching::run();
        parts.push(("matching", format!("{stamp}{}", r.markdown())));
        took("matching", t);
    }
    let doc = report::document(&parts);
    println!("{doc}");
    if let Some(path) = &args.write {
        report::write(path, &parts)?;
        eprintln!("walcast-bench: updated {}", path.display());
    }
    eprintln!(
        "walcast-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where the time of a run goes (a full `all` takes minutes).
fn took(scenario: &str, since: Instant) {
    eprintln!(
        "walcast-bench: {scenario} took {:.0} s",
        since.elapsed().as_secs_f64()
    );
}

/// Scenarios 1 and 2 at sizes a debug build handles in seconds; every check is on counts.
async fn run_smoke(a: SmokeArgs) -> anyhow::Result<()> {
    raise_nofile_limit();
    let started = Instant::now();
    let bin = a.walcast_bin.unwrap_or_else(default_walcast_bin);
    let own_cluster = a.database_url.is_none();
    eprintln!("walcast-bench smoke (walcast: {})", bin.display());
    let mut bench = Bench::new(a.database_url, bin, true)
        .await
        .context("setting up")?;
    let mut failures: Vec<String> = Vec::new();
    let ingest_cfg = ingest::IngestConfig {
        rows: 2_000,
        rows_per_tx: 200,
        repeats: 1,
    };
    let r = ingest::run(&mut bench, &ingest_cfg).await;
    println!("{}", r.markdown());
    failures.extend(r.errors.iter().map(|e| format!("ingest: {e}")));
    for (what, runs) in [
        ("pg_recvlogical", &r.recvlogical),
        ("started on the backlog", &r.cold),
        ("walsender resumed", &r.paused),
        ("1 subscriber", &r.subscriber),
        ("1 subscriber, queue >= N", &r.subscriber_big_queue),
    ] {
        match runs.first() {
            None => failures.push(format!("ingest, {what}: no run")),
            Some(run) if !run.complete => failures.push(format!(
                "ingest, {what}: incomplete ({})",
                run.note.as_deref().unwrap_or("no note")
            )),
            Some(_) => {}
        }
    }
    for (k, received, close) in &r.big_transactions {
        if received != k {
            failures.push(format!(
                "ingest: one transaction of {k} rows: {received} received ({})",
                close.as_deref().unwrap_or("open")
            ));
        }
    }
    let latency_cfg = latency::LatencyConfig {
        rates: vec![200],
        subscribers: vec![1, 10],
        matching: vec![latency::Matching::OnePercent, latency::Matching::All],
        duration: Duration::from_secs(2),
    };
    let r = latency::run(&mut bench, &latency_cfg).await;
    println!("{}", r.markdown());
    failures.extend(r.errors.iter().map(|e| format!("latency: {e}")));
    if r.cells.is_empty() {
        failures.push("latency: no cell ran".into());
    }
    for c in &r.cells {
        if c.delivered != c.expected || c.expected == 0 {
            failures.push(format!(
                "latency, {} rows/s, {} subscriber(s): delivered {} of {}",
                c.rate, c.subscribers, c.delivered, c.expected
            ));
        }
    }
    if !own_cluster {
        bench.db.cleanup(&[ingest::SLOT, latency::SLOT]).await?;
    }
    eprintln!(
        "walcast-bench smoke: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        bail!("smoke run failed:\n  {}", failures.join("\n  "));
    }
    eprintln!("walcast-bench smoke: nothing lost");
    Ok(())
}

async fn run_peers(a: PeersArgs) -> anyhow::Result<()> {
    if a.rates.is_empty() || a.subscribers == 0 || a.duration < 2 {
        bail!("--rates needs a rate, --subscribers at least 1, --duration at least 2 s");
    }
    raise_nofile_limit();
    let started = Instant::now();
    let bin = a.walcast_bin.unwrap_or_else(default_walcast_bin);
    let own_cluster = a.database_url.is_none();
    let matching = clap::ValueEnum::to_possible_value(&a.matching)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let cfg = peers::PeersConfig {
        rates: a.rates,
        subscribers: a.subscribers,
        matching: a.matching.kinds(),
        duration: Duration::from_secs(a.duration),
        cache: a.cache_dir,
    };
    let label = format!(
        "peers: {:?} rows/s x {} subscribers, {} s each",
        cfg.rates,
        cfg.subscribers,
        cfg.duration.as_secs()
    );
    eprintln!("walcast-bench {label} (walcast: {})", bin.display());
    let mut bench = Bench::new(a.database_url, bin, false)
        .await
        .context("setting up")?;
    let machine = report::machine(
        &bench.db.server_version,
        own_cluster,
        &label,
        CLUSTER_SETTINGS,
    );
    let r = peers::run(&mut bench, &cfg).await;
    let command = format!(
        "`cargo run --release -p walcast-bench -- peers --rates {} --subscribers {} --matching {matching} --duration {}`",
        cfg.rates
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        cfg.subscribers,
        cfg.duration.as_secs()
    );
    let body = format!(
        "Measured {} on walcast `{}`.\n\n{}\n{machine}\nCommand: {command}\n",
        report::today(),
        report::walcast_commit(),
        r.markdown()
    );
    if !own_cluster {
        bench.db.cleanup(&[peers::SLOT]).await?;
    }
    println!("{body}");
    if let Some(path) = &a.markdown {
        std::fs::write(path, &body).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("walcast-bench: wrote {}", path.display());
    }
    if let Some(path) = &a.write {
        report::write(path, &[("peers", body)])?;
        eprintln!("walcast-bench: updated {}", path.display());
    }
    eprintln!(
        "walcast-bench peers: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if !r.errors.is_empty() {
        bail!("peers: {}", r.errors.join("; "));
    }
    Ok(())
}

async fn run_load(a: LoadArgs) -> anyhow::Result<()> {
    if a.connections == 0 || a.subscriptions_per_connection == 0 {
        bail!("--connections and --subscriptions-per-connection must be at least 1");
    }
    raise_nofile_limit();
    let mut spec = LoadSpec::new(a.url, a.query);
    spec.connections = a.connections;
    spec.subscriptions_per_connection = a.subscriptions_per_connection;
    spec.token = a.token;
    spec.modulo = a.modulo;
    spec.connect_concurrency = a.connect_concurrency;
    spec.track_rows = a.track_rows;
    let t = Instant::now();
    let load = Load::start(spec).await;
    eprintln!(
        "load: {} connection(s) open in {:.1} s, {} subscription(s)",
        load.connected(),
        t.elapsed().as_secs_f64(),
        load.subscriptions()
    );
    for (e, n) in load.connect_errors() {
        eprintln!("load: connection failed x{n}: {e}");
    }
    if load.connected() == 0 {
        bail!("no connection opened");
    }
    let deadline = a.duration.map(|s| Instant::now() + Duration::from_secs(s));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let now = load.received();
        eprintln!("load: received {now} (+{}/s)", now - last);
        last = now;
        if a.expect.is_some_and(|e| now >= e) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let report = load.finish().await;
    println!("{}", report.summary());
    if let Some(e) = a.expect {
        if report.received < e {
            bail!("received {} of the {e} expected", report.received);
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walcast-bench: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Cmd::All(a) => run_scenarios(Which::All, a).await,
            Cmd::Ingest(a) => run_scenarios(Which::Ingest, a).await,
            Cmd::Latency(a) => run_scenarios(Which::Latency, a).await,
            Cmd::Fanout(a) => run_scenarios(Which::Fanout, a).await,
            Cmd::Matching(a) => run_scenarios(Which::Matching, a).await,
            Cmd::Cluster(a) => run_scenarios(Which::Cluster, a).await,
            Cmd::Peers(a) => run_peers(a).await,
            Cmd::Load(a) => run_load(a).await,
            Cmd::Smoke(a) => run_smoke(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walcast-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
