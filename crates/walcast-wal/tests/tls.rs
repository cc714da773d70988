//! TLS (sslmode prefer / require / disable) against a server with a self-signed certificate.

mod common;

use std::sync::OnceLock;

use common::*;
use walcast_pgcluster::PgCluster;
use walcast_wal::{Lsn, PgOutput, ReplicationClient, WalError};

fn tls_cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let pg = start_cluster(&Default::default());
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("generating a certificate");
        let data = pg.data_dir();
        write_private(data, "server.crt", &key.cert.pem());
        write_private(data, "server.key", &key.signing_key.serialize_pem());
        psql(
            &pg,
            "postgres",
            "ALTER SYSTEM SET ssl = on;
             SELECT pg_reload_conf();
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE u_scram LOGIN REPLICATION PASSWORD 'pw';
             CREATE TABLE t (id int PRIMARY KEY);
             CREATE PUBLICATION p FOR TABLE t;",
        );
        // SCRAM over TLS: the server then also offers SCRAM-SHA-256-PLUS.
        let hba = data.join("pg_hba.conf");
        let stock = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
        std::fs::write(
            &hba,
            format!("hostssl all u_scram 127.0.0.1/32 scram-sha-256\n{stock}"),
        )
        .expect("writing pg_hba.conf");
        psql(&pg, "postgres", "SELECT pg_reload_conf()");
        pg
    })
}

/// The server reads its key only if the file belongs to it and nobody else can read it.
fn write_private(dir: &std::path::Path, name: &str, contents: &str) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("writing TLS file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let owner = std::fs::metadata(dir).expect("data dir");
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("chown");
}

/// Whether the session with `application_name` is encrypted.
fn uses_tls(pg: &PgCluster, application_name: &str) -> String {
    psql(
        pg,
        "postgres",
        &format!(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{application_name}'"
        ),
    )
}

async fn connect(
    pg: &PgCluster,
    sslmode: &str,
    application_name: &str,
) -> Result<ReplicationClient, WalError> {
    let url = format!(
        "{}?sslmode={sslmode}&application_name={application_name}",
        pg.url("postgres")
    );
    // `ssl = on` takes effect with the reload; until then `require` is refused.
    let mut last = None;
    for _ in 0..100 {
        match ReplicationClient::connect(&url).await {
            Err(WalError::Tls { message: e, .. }) if sslmode == "require" => last = Some(e),
            other => return other,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("TLS never became available: {last:?}")
}

#[tokio::test]
async fn sslmode_require_streams_over_tls() {
    let pg = tls_cluster();
    let mut repl = connect(pg, "require", "walcast_tls_require")
        .await
        .expect("connect");
    assert_eq!(uses_tls(pg, "walcast_tls_require"), "t");
    repl.ensure_slot("tls").await.expect("slot");
    let mut stream = repl.start("tls", "p", Lsn(0)).await.expect("start");
    psql(pg, "postgres", "INSERT INTO t VALUES (1)");
    assert!(matches!(
        next_message(&mut stream).await,
        PgOutput::Begin { .. }
    ));
    assert!(matches!(
        next_message(&mut stream).await,
        PgOutput::Relation(_)
    ));
    assert!(matches!(
        next_message(&mut stream).await,
        PgOutput::Insert { .. }
    ));
    let PgOutput::Commit { end_lsn, .. } = next_message(&mut stream).await else {
        panic!("expected Commit")
    };
    stream.acknowledge(end_lsn);
    stream.send_status().await.expect("status");
    eventually("the acknowledgement over TLS", || {
        confirmed_flush_lsn(pg, "postgres", "tls") == end_lsn
    })
    .await;
    stream.close().await.expect("close");
}

#[tokio::test]
async fn sslmode_prefer_uses_tls_and_disable_does_not() {
    let pg = tls_cluster();
    // Make sure TLS is on before judging `prefer`.
    drop(
        connect(pg, "require", "walcast_tls_probe")
            .await
            .expect("connect"),
    );
    let _prefer = connect(pg, "prefer", "walcast_tls_prefer")
        .await
        .expect("prefer");
    assert_eq!(uses_tls(pg, "walcast_tls_prefer"), "t");
    let _disable = connect(pg, "disable", "walcast_tls_disable")
        .await
        .expect("disable");
    assert_eq!(uses_tls(pg, "walcast_tls_disable"), "f");
}

#[tokio::test]
async fn scram_over_tls_without_channel_binding() {
    let pg = tls_cluster();
    drop(
        connect(pg, "require", "walcast_tls_probe2")
            .await
            .expect("connect"),
    );
    let url = format!(
        "postgres://u_scram:pw@127.0.0.1:{}/postgres?sslmode=require",
        pg.port()
    );
    let mut last = None;
    for _ in 0..100 {
        match ReplicationClient::connect(&url).await {
            Ok(mut repl) => {
                repl.identify_system().await.expect("identify_system");
                return;
            }
            // Until pg_hba.conf is reloaded there is no line for this role over TLS.
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("SCRAM over TLS failed: {:?}", last.map(|e| e.to_string()));
}
