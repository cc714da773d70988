//! walcast: live Postgres changes to GraphQL subscribers, straight from the write-ahead log.
//!
//! The library behind the `walcast` binary: `main.rs` only calls [`cli_main`]. Integration tests
//! reach the hub, the sessions and the server in-process through these modules.

/// A failpoint of the `fail` crate, configured through the `FAILPOINTS` environment variable;
/// compiled in only with the `failpoints` feature (tests), nothing otherwise. The second form
/// lets the point's `return` action leave the enclosing function with the closure's value.
#[cfg(feature = "failpoints")]
macro_rules! failpoint {
    ($name:literal) => {
        fail::fail_point!($name)
    };
    ($name:literal, $on_return:expr) => {
        fail::fail_point!($name, $on_return)
    };
}

#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint {
    ($name:literal) => {};
    ($name:literal, $on_return:expr) => {};
}

pub(crate) use failpoint;

pub mod app;
pub mod auth;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod db;
pub mod hub;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod permissions;
pub mod replicator;
pub mod request;
pub mod server;
pub mod source;
pub mod visibility;
pub mod ws;

use config::Command;

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Longest the runtime waits for its remaining tasks once the command returned.
const RUNTIME_STOP: std::time::Duration = std::time::Duration::from_millis(500);

/// Reads the configuration, starts the runtime and runs the chosen command.
pub fn cli_main() -> std::process::ExitCode {
    // Test builds: the failpoints named in FAILPOINTS, for the whole run.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    memory::configure();
    let cli = match config::parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("walcast: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let json_logs = cli.serve.log_format == "json";
    init_tracing(json_logs);
    for var in config::unknown_env_vars() {
        tracing::warn!(%var, "unknown WALCAST_* environment variable (ignored)");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walcast: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => commands::serve::run(cli.serve).await,
            Some(Command::Serve(args)) => commands::serve::run(args).await,
            Some(Command::Demo(args)) => commands::demo::run(args).await,
            Some(Command::Check(args)) => commands::check::run(args).await,
            Some(Command::Schema(args)) => commands::schema::run(args).await,
            Some(Command::Tail(args)) => commands::tail::run(args).await,
            Some(Command::ConfigReference(args)) => config::config_reference(&args),
        }
    });
    // Tasks still running past the command's own stop (sockets past their deadline, operations
    // being dropped) must not hold the exit: an implicit drop would wait for all of them.
    runtime.shutdown_timeout(RUNTIME_STOP);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walcast: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
