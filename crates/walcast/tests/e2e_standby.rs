//! Logical decoding on a standby (Postgres 16+), end to end: `DATABASE_URL` is the primary (the
//! pool, the catalog, the publication), `WALCAST_REPLICATION_URL` a physical standby of it where
//! walcast creates and reads its slot. Writes on the primary reach subscribers through the
//! standby; when the standby is promoted, walcast keeps streaming from it.
//!
//! Needs Postgres 16 or newer, so `cargo test --workspace` (Postgres 15 in CI) lists it as
//! ignored, with the reason, and `scripts/pg-versions.sh test` runs it (`--include-ignored`) for
//! every major from 16 on. By hand:
//!
//! ```sh
//! WALCAST_PG_BINDIR=/opt/walcast-pg/16/bin cargo test -p walcast --test e2e_standby -- --include-ignored
//! ```
//!
//! On an older Postgres it fails with these instructions.

mod support;

use serde_json::{json, Value};
use support::*;
use walcast_pgcluster::StandbyOptions;

const DB: &str = "app";
const TOKEN: &str = "standby-admin-token";
const QUERY: &str = "subscription { messages_mutated { key event data { text } } }";

/// Field order matters for drop: the server goes before the databases it reads.
struct Setup {
    walcast: Walcast,
    standby: PgCluster,
    primary: PgCluster,
    _dir: TempDir,
}

fn setup() -> Setup {
    let mut primary = pg();
    assert!(
        primary.major_version() >= 16,
        "logical decoding on a standby needs Postgres 16 or newer, but the Postgres found ({}) \
         is {}; run this test with WALCAST_PG_BINDIR=/opt/walcast-pg/16/bin (or 17; \
         `scripts/pg-versions.sh install 16` fetches it, `scripts/pg-versions.sh test 16` runs it)",
        primary.bin_dir().display(),
        primary.major_version()
    );
    let url = demo_db(&primary, DB);
    let standby = primary
        .start_standby(&StandbyOptions {
            primary_slot_name: Some("walcast_standby".into()),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("starting a standby: {e}"));
    primary
        .wait_replayed(&standby, EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("standby");
    let tokens = tokens_file(&dir, &[(TOKEN, "admin")]);
    let tokens = tokens.to_str().expect("temp path is UTF-8");
    let standby_url = standby.url(DB);
    let walcast = Walcast::start(
        &url,
        &[
            ("WALCAST_REPLICATION_URL", &standby_url),
            ("WEBSOCKETS_GRAPHQL_AUTH", "handshake"),
            ("WALCAST_TOKENS_FILE", tokens),
        ],
    );
    Setup {
        walcast,
        standby,
        primary,
        _dir: dir,
    }
}

fn subscriber(w: &Walcast) -> JsClient {
    let url = w.ws_url();
    let mut c = JsClient::spawn(&[
        "--protocol",
        "transport",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--query",
        QUERY,
    ]);
    c.wait_kind("connected", CONNECT_TIMEOUT);
    c
}

fn next_mutation(c: &mut JsClient) -> Value {
    let data = c.expect_data(EVENT_TIMEOUT);
    data["messages_mutated"].clone()
}

#[test]
#[ignore = "needs Postgres 16+: scripts/pg-versions.sh test 16 17 runs it"]
fn a_standby_streams_the_primarys_writes_and_keeps_streaming_after_promotion() {
    let mut s = setup();

    // The slot lives on the standby; the primary has only the standby's physical slot.
    assert_eq!(
        sql(
            &s.standby,
            DB,
            "SELECT string_agg(slot_name || ':' || slot_type, ',') FROM pg_replication_slots"
        ),
        "walcast:logical"
    );
    assert_eq!(
        sql(
            &s.primary,
            DB,
            "SELECT string_agg(slot_name || ':' || slot_type, ',') FROM pg_replication_slots"
        ),
        "walcast_standby:physical"
    );

    let mut client = subscriber(&s.walcast);
    s.walcast.wait_subscriptions(1, CONNECT_TIMEOUT);
    let id = insert_message(&s.primary, DB, "written on the primary");
    sql(
        &s.primary,
        DB,
        &format!("UPDATE messages SET text = 'edited on the primary' WHERE id = {id}"),
    );
    assert_eq!(
        next_mutation(&mut client),
        json!({"key": id.to_string(), "event": "create", "data": {"text": "written on the primary"}})
    );
    assert_eq!(
        next_mutation(&mut client),
        json!({"key": id.to_string(), "event": "update", "data": {"text": "edited on the primary"}})
    );

    // Failover: the standby becomes the primary. Its slot survives the promotion, and what is
    // written on it from then on reaches the same subscriber.
    s.primary
        .wait_replayed(&s.standby, EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    s.standby
        .promote()
        .unwrap_or_else(|e| panic!("promoting: {e}"));
    s.primary.stop().unwrap_or_else(|e| panic!("stopping: {e}"));
    let after = insert_message(&s.standby, DB, "written after the failover");
    assert_eq!(
        next_mutation(&mut client),
        json!({"key": after.to_string(), "event": "create", "data": {"text": "written after the failover"}}),
        "{}",
        s.walcast.log_tail(40)
    );
    assert!(
        s.walcast.try_wait().is_none(),
        "walcast exited after the failover\n{}",
        s.walcast.log_tail(40)
    );
}
