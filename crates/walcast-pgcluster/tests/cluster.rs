//! Tests against real Postgres servers. They fail (never skip) when no binaries are installed.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use walcast_pgcluster::{ClusterError, ClusterOptions, PgCluster};

fn start() -> PgCluster {
    PgCluster::start().unwrap_or_else(|e| panic!("starting cluster: {e}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn starts_with_logical_wal_level() {
    let pg = start();
    assert_eq!(
        pg.psql("postgres", "show wal_level").expect("psql"),
        "logical"
    );
    assert!(pg.major_version() >= 10, "version {}", pg.major_version());
    let version = pg
        .psql("postgres", "show server_version_num")
        .expect("psql");
    assert_eq!(
        version.parse::<u32>().expect("number") / 10000,
        pg.major_version()
    );
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(pg.user(), "postgres");
    assert_eq!(
        pg.url("app"),
        format!("postgres://postgres@127.0.0.1:{}/app", pg.port())
    );
    assert!(pg.bin_dir().join("initdb").exists());
    assert!(pg.data_dir().join("PG_VERSION").exists());
    assert_eq!(
        pg.psql("postgres", "show max_replication_slots")
            .expect("psql"),
        "20"
    );
}

#[test]
fn multi_statement_scripts_and_errors() {
    let pg = start();
    let out = pg
        .psql(
            "postgres",
            "create table t(a int);\ninsert into t values (1),(2);\nselect a from t order by a;",
        )
        .expect("script");
    assert_eq!(out, "1\n2");
    let err = pg
        .psql(
            "postgres",
            "select 1;\nselect * from missing_table;\nselect 2;",
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::Sql { .. }), "{msg}");
    assert!(msg.contains("missing_table"), "{msg}");
}

#[test]
fn database_survives_restart_and_kill() {
    let mut pg = start();
    pg.create_database("app-db").expect("create database");
    pg.psql(
        "app-db",
        "create table t(a text); insert into t values ('kept');",
    )
    .expect("write");
    let port = pg.port();

    pg.restart().expect("restart");
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("app-db", "select a from t").expect("read"), "kept");

    // Force the write out: commits are asynchronous, so an immediate stop may lose the tail.
    pg.psql("app-db", "checkpoint").expect("checkpoint");
    pg.kill().expect("kill");
    assert!(pg.psql("app-db", "select 1").is_err(), "server is down");
    pg.start_again().expect("start again");
    assert_eq!(pg.psql("app-db", "select a from t").expect("read"), "kept");

    pg.stop().expect("stop");
    pg.start_again().expect("start after stop");
    assert_eq!(pg.port(), port);
}

#[test]
fn options_apply_extra_conf_and_fixed_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let opts = ClusterOptions {
        extra_conf: vec![
            ("max_connections".into(), "42".into()),
            ("application_name".into(), "it's walcast".into()),
        ],
        port: Some(port),
    };
    let pg = PgCluster::start_with(&opts).expect("start");
    assert_eq!(pg.port(), port);
    assert_eq!(
        pg.psql("postgres", "show max_connections").expect("psql"),
        "42"
    );
    let replication = pg
        .psql(
            "postgres",
            "select count(*) from pg_hba_file_rules where 'replication' = any(database)",
        )
        .expect("psql");
    assert_ne!(replication, "0");
}

#[test]
fn occupied_fixed_port_reports_server_log() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let opts = ClusterOptions {
        port: Some(port),
        ..ClusterOptions::default()
    };
    let err = PgCluster::start_with(&opts).expect_err("port is taken");
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::Start { .. }), "{msg}");
    assert!(msg.contains("Address already in use"), "{msg}");
}

#[test]
fn drop_stops_server_and_removes_dir() {
    let pg = start();
    let root = pg.data_dir().parent().expect("root").to_path_buf();
    let port = pg.port();
    assert!(root.exists());
    drop(pg);
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening"
    );
}

#[test]
fn many_clusters_start_in_parallel() {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(PgCluster::start))
        .collect();
    let clusters: Vec<PgCluster> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("start"))
        .collect();
    let mut ports: Vec<u16> = clusters.iter().map(PgCluster::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), clusters.len());
    for pg in &clusters {
        assert_eq!(pg.psql("postgres", "select 1").expect("psql"), "1");
    }
}

#[test]
fn persist_keeps_dir() {
    let pg = start();
    let data_dir = pg.data_dir().to_path_buf();
    let root = pg.persist();
    assert_eq!(data_dir.parent(), Some(root.as_path()));
    assert!(data_dir.join("PG_VERSION").exists());
    // Clean up by hand, as a persisted cluster's owner would.
    let pg_ctl = PgCluster::find_bin_dir().expect("bin dir").join("pg_ctl");
    let stop = runas_prefix()
        .into_iter()
        .chain([
            pg_ctl.display().to_string(),
            "-D".into(),
            data_dir.display().to_string(),
        ])
        .chain(["stop".into(), "-m".into(), "immediate".into()])
        .collect::<Vec<_>>();
    let output = Command::new(&stop[0])
        .args(&stop[1..])
        .current_dir("/")
        .output()
        .expect("pg_ctl");
    assert!(output.status.success(), "{output:?}");
    std::fs::remove_dir_all(&root).expect("remove");
}

/// `runuser -u postgres --` when root, as the crate does internally.
fn runas_prefix() -> Vec<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        ["runuser", "-u", "postgres", "--"]
            .map(String::from)
            .to_vec()
    } else {
        Vec::new()
    }
}

const CHILD_ENV: &str = "WALCAST_PGCLUSTER_TEST_CHILD";

/// A cluster that is never dropped (a static, or a crashed process) is still removed when its
/// process exits.
#[test]
fn cleaned_up_when_process_exits_without_drop() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let pg = start();
        println!("ROOT={}", pg.data_dir().parent().expect("root").display());
        println!("PORT={}", pg.port());
        std::mem::forget(pg);
        std::process::exit(0);
    }
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new(exe)
        .args([
            "cleaned_up_when_process_exits_without_drop",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in child output: {stdout}"))
            .to_owned()
    };
    let root = PathBuf::from(field("ROOT="));
    let port: u16 = field("PORT=").parse().expect("port");
    wait_until("the cluster dir is removed", || !root.exists());
    wait_until("the server is stopped", || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

/// A standby replays what the primary writes, is read-only, and takes writes once promoted;
/// once through pg_basebackup (when one of the server's version is found) and once through a
/// copy of the stopped primary.
#[test]
fn standby_replays_and_promotes() {
    for force_copy in [false, true] {
        let mut primary = start();
        primary
            .psql(
                "postgres",
                "CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
            )
            .expect("create");
        let mut standby = primary
            .start_standby(&walcast_pgcluster::StandbyOptions {
                primary_slot_name: Some("standby".into()),
                force_copy,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("starting a standby (copy: {force_copy}): {e}"));
        assert_ne!(standby.port(), primary.port());
        assert_eq!(standby.major_version(), primary.major_version());
        assert!(standby.is_in_recovery().expect("recovery"));
        assert!(!primary.is_in_recovery().expect("recovery"));
        assert_eq!(
            standby.psql("postgres", "show wal_level").expect("psql"),
            "logical"
        );
        assert_eq!(
            standby
                .psql("postgres", "show hot_standby_feedback")
                .expect("psql"),
            "on"
        );
        primary
            .psql("postgres", "INSERT INTO t VALUES (2)")
            .expect("insert");
        primary
            .wait_replayed(&standby, Duration::from_secs(30))
            .expect("replayed");
        assert_eq!(
            standby
                .psql(
                    "postgres",
                    "SELECT string_agg(a::text, ',' ORDER BY a) FROM t"
                )
                .expect("read on the standby"),
            "1,2"
        );
        let active = primary
            .psql(
                "postgres",
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'standby'",
            )
            .expect("slot");
        assert_eq!(active, "t", "the standby streams through its slot");
        assert!(standby
            .psql("postgres", "INSERT INTO t VALUES (3)")
            .is_err());

        standby.promote().expect("promote");
        assert!(!standby.is_in_recovery().expect("recovery"));
        standby
            .psql("postgres", "INSERT INTO t VALUES (3)")
            .expect("a write after promotion");
    }
}

#[test]
fn a_session_keeps_its_transaction_between_statements() {
    let pg = PgCluster::start().expect("cluster");
    pg.psql("postgres", "CREATE TABLE t (n int)")
        .expect("create");
    let mut s = pg.session("postgres").expect("session");
    s.run("BEGIN; INSERT INTO t VALUES (1)").expect("insert");
    // Not committed: other connections do not see it, the session does.
    assert_eq!(
        pg.psql("postgres", "SELECT count(*) FROM t")
            .expect("count"),
        "0"
    );
    assert_eq!(s.run("SELECT count(*) FROM t").expect("count"), "1");
    s.run("COMMIT").expect("commit");
    assert_eq!(
        pg.psql("postgres", "SELECT count(*) FROM t")
            .expect("count"),
        "1"
    );
    let err = s.run("SELECT no_such_column FROM t").expect_err("an error");
    assert!(err.to_string().contains("no_such_column"), "{err}");
}
