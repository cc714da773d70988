//! TLS to Postgres: with `sslmode=require` both the replication connection and the ordinary
//! pool are encrypted, and events and queries flow as without it; with `verify-full` and
//! `verify-ca` both verify the server's certificate against `sslrootcert`, and a certificate
//! that does not verify stops walcast at start with the reason.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

const DB: &str = "app";
const TOKEN: &str = "tls-token";

/// Runs `openssl` with `args`; panics with its output when it fails.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp path is UTF-8")
}

/// A self-signed certificate for the server, in `data`.
fn self_signed(data: &Path) {
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-keyout",
        path_str(&data.join("server.key")),
        "-out",
        path_str(&data.join("server.crt")),
    ]);
}

/// A CA certificate and key `<name>.crt`, `<name>.key` in `dir` (P-256: quick to make).
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let crt = dir.join(format!("{name}.crt"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=walcast test {name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        path_str(&dir.join(format!("{name}.key"))),
        "-out",
        path_str(&crt),
    ]);
    crt
}

/// A server certificate for `DNS:localhost` only, signed by CA `ca` of `dir`, into `data`.
fn signed_by(dir: &Path, ca: &str, data: &Path) {
    let csr = dir.join("server.csr");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        path_str(&data.join("server.key")),
        "-out",
        path_str(&csr),
    ]);
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing the extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        path_str(&csr),
        "-CA",
        path_str(&dir.join(format!("{ca}.crt"))),
        "-CAkey",
        path_str(&dir.join(format!("{ca}.key"))),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        path_str(&ext),
        "-out",
        path_str(&data.join("server.crt")),
    ]);
}

/// Turns TLS on with `server.crt` and `server.key` of the data directory, which `make` writes.
fn enable_ssl(pg: &mut PgCluster, make: impl FnOnce(&Path)) {
    let data = pg.data_dir().to_path_buf();
    make(&data);
    // The data directory belongs to the server's user: so must the key, readable by it only.
    let owner = Command::new("stat")
        .args(["-c", "%U"])
        .arg(&data)
        .output()
        .expect("stat");
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    for f in ["server.key", "server.crt"] {
        let path = data.join(f);
        assert!(Command::new("chown")
            .arg(&owner)
            .arg(&path)
            .status()
            .expect("chown")
            .success());
        assert!(Command::new("chmod")
            .arg("600")
            .arg(&path)
            .status()
            .expect("chmod")
            .success());
    }
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on")
        .expect("ssl = on");
    pg.restart().expect("restart with ssl");
}

#[test]
fn events_and_queries_flow_over_tls() {
    let mut pg = pg();
    enable_ssl(&mut pg, self_signed);
    pg.create_database(DB).expect("create database");
    sql(
        &pg,
        DB,
        "CREATE TABLE messages (id serial PRIMARY KEY, text text)",
    );
    let url = format!("{}?sslmode=require", pg.url(DB));
    let dir = TempDir::new("tls");
    let tokens = tokens_file(&dir, &[(TOKEN, "admin")]);
    let tokens = tokens.to_str().expect("temp path is UTF-8");
    let w = Walcast::start(
        &url,
        &[
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens),
        ],
    );
    let ws = w.ws_url();
    let mut c = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &ws,
        "--token",
        TOKEN,
        "--query",
        "subscription { messages_mutated { event data { text } } }",
    ]);
    c.wait_kind("connected", CONNECT_TIMEOUT);
    w.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    sql(&pg, DB, "INSERT INTO messages (text) VALUES ('secret')");
    let data = c.expect_data(EVENT_TIMEOUT);
    assert_eq!(
        data["messages_mutated"],
        json!({"event": "create", "data": {"text": "secret"}})
    );
    let (status, body) = w.graphql("{ messages { text } }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"], json!([{"text": "secret"}]));
    // Both of walcast's connections are encrypted.
    let plain = sql(
        &pg,
        DB,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'walcast' AND NOT s.ssl",
    );
    let encrypted = sql(
        &pg,
        DB,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'walcast' AND s.ssl",
    );
    assert_eq!(plain, "0", "unencrypted walcast connections");
    assert!(
        encrypted.parse::<i32>().unwrap_or(0) >= 2,
        "encrypted walcast connections: {encrypted}"
    );
}

/// How many of walcast's sessions are encrypted and how many are not.
fn walcast_sessions_by_ssl(pg: &PgCluster) -> (String, String) {
    let count = |ssl: &str| {
        sql(
            pg,
            DB,
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'walcast' AND s.ssl = {ssl}"
            ),
        )
    };
    (count("true"), count("false"))
}

/// Waits for a `walcast serve` that must fail at start; returns its log.
fn start_failure(w: &mut Walcast) -> String {
    let status = w
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("walcast still runs\n{}", w.log_tail(40)));
    assert!(!status.success(), "walcast exited with {status}");
    w.log()
}

/// `walcast check` against `url`: exit success and standard output.
fn check(url: &str) -> (bool, String) {
    let mut cmd = Command::new(walcast_bin());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("WALCAST_") || key.starts_with("WEBSOCKETS_") {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd
        .arg("check")
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("running walcast check");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// verify-full and verify-ca against a server whose certificate a test CA signed for
/// `DNS:localhost`: the right CA and host serve events and queries; another CA, or a host the
/// certificate does not name, stop walcast at start, naming the connection and the reason.
#[test]
fn verify_full_and_verify_ca_check_the_servers_certificate() {
    let pki = TempDir::new("pki");
    let ca = make_ca(pki.path(), "ca");
    let other_ca = make_ca(pki.path(), "other-ca");
    let mut pg = pg();
    enable_ssl(&mut pg, |data| signed_by(pki.path(), "ca", data));
    pg.create_database(DB).expect("create database");
    sql(
        &pg,
        DB,
        "CREATE TABLE messages (id serial PRIMARY KEY, text text)",
    );
    let url = |host: &str, sslmode: &str, root: &Path| {
        format!(
            "postgres://postgres@{host}:{}/{DB}?sslmode={sslmode}&sslrootcert={}",
            pg.port(),
            path_str(root)
        )
    };

    // The failures first, side by side: each stops before serving.
    let mut unknown_ca = Walcast::launch(&url("localhost", "verify-full", &other_ca), &[]);
    let mut wrong_name = Walcast::launch(&url("127.0.0.1", "verify-full", &ca), &[]);
    let other_replication = url("localhost", "verify-full", &other_ca);
    let mut replication_unknown_ca = Walcast::launch(
        &url("localhost", "verify-full", &ca),
        &[("WALCAST_REPLICATION_URL", &other_replication)],
    );
    let missing = pki.path().join("missing.crt");
    let mut missing_root = Walcast::launch(&url("localhost", "verify-ca", &missing), &[]);

    let log = start_failure(&mut unknown_ca);
    for needle in [
        "certificate verification failed",
        "unknown issuer",
        "query pool",
        path_str(&other_ca),
    ] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
    let log = start_failure(&mut wrong_name);
    for needle in [
        "certificate verification failed",
        "name mismatch",
        "127.0.0.1",
    ] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
    let log = start_failure(&mut replication_unknown_ca);
    for needle in [
        "opening the replication connection",
        "certificate verification failed on the replication connection",
        "unknown issuer",
    ] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
    let log = start_failure(&mut missing_root);
    for needle in ["does not exist", "sslrootcert", path_str(&missing)] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
    let (ok, out) = check(&url("localhost", "verify-full", &other_ca));
    assert!(!ok, "walcast check passed with the wrong CA:\n{out}");
    assert!(
        out.contains("FAIL") && out.contains("certificate verification failed"),
        "{out}"
    );
    let (_, out) = check(&url("localhost", "verify-full", &ca));
    assert!(
        out.contains("chain and host name verified"),
        "walcast check does not report the verification:\n{out}"
    );

    // verify-full with the right CA and host name: events and queries flow.
    let dir = TempDir::new("tls");
    let tokens = tokens_file(&dir, &[(TOKEN, "admin")]);
    let tokens = path_str(&tokens);
    let mut w = Walcast::start(
        &url("localhost", "verify-full", &ca),
        &[
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens),
        ],
    );
    let mut c = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &w.ws_url(),
        "--token",
        TOKEN,
        "--query",
        "subscription { messages_mutated { event data { text } } }",
    ]);
    c.wait_kind("connected", CONNECT_TIMEOUT);
    w.wait_subscriptions_at_least(1, CONNECT_TIMEOUT);
    sql(&pg, DB, "INSERT INTO messages (text) VALUES ('verified')");
    let data = c.expect_data(EVENT_TIMEOUT);
    assert_eq!(
        data["messages_mutated"],
        json!({"event": "create", "data": {"text": "verified"}})
    );
    let (status, body) = w.graphql("{ messages { text } }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"], json!([{"text": "verified"}]));
    let (encrypted, plain) = walcast_sessions_by_ssl(&pg);
    assert_eq!(plain, "0", "unencrypted walcast connections");
    assert!(
        encrypted.parse::<i32>().unwrap_or(0) >= 2,
        "encrypted walcast connections: {encrypted}"
    );
    drop(c);
    w.stop();

    // verify-ca checks the chain only: 127.0.0.1, which the certificate does not name, is fine.
    let w = Walcast::start(
        &url("127.0.0.1", "verify-ca", &ca),
        &[("WALCAST_TOKENS_FILE", tokens)],
    );
    let (status, body) = w.graphql("{ messages { text } }", json!({}), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"], json!([{"text": "verified"}]));
}
