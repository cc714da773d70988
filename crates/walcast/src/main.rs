//! walcast: live Postgres changes to GraphQL subscribers, straight from the write-ahead log.

mod app;
mod auth;
mod commands;
mod config;
mod db;
mod hub;
mod memory;
mod messages;
mod metrics;
mod permissions;
mod pipeline;
mod server;
mod standby;
mod visibility;
mod ws;

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

fn main() -> std::process::ExitCode {
    memory::configure();
    if let Err(e) = config::apply_config_file() {
        eprintln!("walcast: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let cli = config::parse_cli();
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
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walcast: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
