//! Password authentication (cleartext, md5, SCRAM-SHA-256) of the replication connection.

mod common;

use std::io::Write;
use std::sync::OnceLock;

use common::*;
use walcast_pgcluster::PgCluster;
use walcast_wal::{Lsn, ReplicationClient, WalError};

/// (role, pg_hba method, password_encryption, password); the password needs URL encoding.
const ROLES: [(&str, &str, &str, &str); 3] = [
    ("u_scram", "scram-sha-256", "scram-sha-256", "s3cret one"),
    ("u_md5", "md5", "md5", "s3cret:two"),
    ("u_plain", "password", "scram-sha-256", "s3cret@three"),
];

/// A cluster whose pg_hba.conf asks each role of [`ROLES`] for its password its own way.
fn auth_cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let pg = start_cluster(&Default::default());
        let mut sql =
            String::from("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;");
        let mut hba = String::new();
        for (role, method, encryption, password) in ROLES {
            sql.push_str(&format!(
                "SET password_encryption = '{encryption}';
                 CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}';"
            ));
            hba.push_str(&format!("host all {role} 127.0.0.1/32 {method}\n"));
        }
        psql(&pg, "postgres", &sql);
        // The first matching line wins, so ours go before initdb's `trust` lines.
        let path = pg.data_dir().join("pg_hba.conf");
        let stock = std::fs::read_to_string(&path).expect("reading pg_hba.conf");
        let mut file = std::fs::File::create(&path).expect("rewriting pg_hba.conf");
        write!(file, "{hba}{stock}").expect("writing pg_hba.conf");
        psql(&pg, "postgres", "SELECT pg_reload_conf()");
        pg
    })
}

fn url(pg: &PgCluster, role: &str, password: Option<&str>) -> String {
    let auth = match password {
        Some(pw) => format!("{role}:{}", url_encode(pw)),
        None => role.to_owned(),
    };
    format!("postgres://{auth}@127.0.0.1:{}/postgres", pg.port())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Connects once the reload of pg_hba.conf has happened (until then, initdb's `trust` lines let
/// anyone in, which would hide the password exchange).
async fn connect_with_hba(
    pg: &PgCluster,
    role: &str,
    password: Option<&str>,
) -> Result<ReplicationClient, WalError> {
    let probe = url(pg, role, Some("definitely wrong"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while ReplicationClient::connect(&probe).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pg_hba.conf was not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ReplicationClient::connect(&url(pg, role, password)).await
}

#[tokio::test]
async fn each_password_method_authenticates_a_replication_role() {
    let pg = auth_cluster();
    for (role, method, _, password) in ROLES {
        let mut repl = connect_with_hba(pg, role, Some(password))
            .await
            .unwrap_or_else(|e| panic!("{role} ({method}): {e}"));
        let info = repl.identify_system().await.expect("identify_system");
        assert_eq!(info.dbname.as_deref(), Some("postgres"));
        let slot = format!("slot_{role}");
        assert!(repl.ensure_slot(&slot).await.expect("slot"));
        let stream = repl.start(&slot, "p", Lsn(0)).await.expect("start");
        stream.close().await.expect("close");
    }
    assert_eq!(
        psql(
            pg,
            "postgres",
            "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'u_md5'"
        ),
        "t"
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_by_the_server() {
    let pg = auth_cluster();
    for (role, method, _, _) in ROLES {
        let err = connect_with_hba(pg, role, Some("wrong"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{role} ({method}) accepted a wrong password"));
        assert_eq!(err.sqlstate(), Some("28P01"), "{role}: {err}");
        let text = err.to_string();
        assert!(text.contains("password authentication failed"), "{text}");
        assert!(text.contains(role), "{text}");
    }
}

#[tokio::test]
async fn a_missing_password_is_a_client_side_error() {
    let pg = auth_cluster();
    let err = connect_with_hba(pg, "u_scram", None)
        .await
        .err()
        .expect("no password");
    assert!(matches!(err, WalError::Auth(_)), "{err}");
    assert!(err.to_string().contains("has none"), "{err}");
}
