//! Counters and gauges, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub events_decoded: AtomicU64,
    pub transactions: AtomicU64,
    pub events_matched: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub connections: AtomicU64,
    pub subscriptions: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub replication_reconnects: AtomicU64,
    pub schema_reloads: AtomicU64,
    /// Commit time of the last transaction handled, microseconds since the Unix epoch.
    pub last_commit_micros: AtomicU64,
    pub confirmed_lsn: AtomicU64,
    /// Queries that loaded related rows or answered relation conditions.
    pub relation_queries: std::sync::Arc<AtomicU64>,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        put(
            "walcast_events_decoded_total",
            "counter",
            "Row events decoded from the WAL.",
            self.events_decoded.load(Relaxed),
        );
        put(
            "walcast_transactions_total",
            "counter",
            "Committed transactions decoded.",
            self.transactions.load(Relaxed),
        );
        put(
            "walcast_events_matched_total",
            "counter",
            "Event deliveries to subscriptions.",
            self.events_matched.load(Relaxed),
        );
        put(
            "walcast_messages_sent_total",
            "counter",
            "WebSocket messages sent.",
            self.messages_sent.load(Relaxed),
        );
        put(
            "walcast_bytes_sent_total",
            "counter",
            "WebSocket payload bytes sent.",
            self.bytes_sent.load(Relaxed),
        );
        put(
            "walcast_connections_active",
            "gauge",
            "Open WebSocket connections.",
            self.connections.load(Relaxed),
        );
        put(
            "walcast_subscriptions_active",
            "gauge",
            "Live subscriptions.",
            self.subscriptions.load(Relaxed),
        );
        put(
            "walcast_slow_consumer_closes_total",
            "counter",
            "Connections closed as slow consumers.",
            self.slow_consumer_closes.load(Relaxed),
        );
        put(
            "walcast_replication_reconnects_total",
            "counter",
            "Replication connections re-established.",
            self.replication_reconnects.load(Relaxed),
        );
        put(
            "walcast_schema_reloads_total",
            "counter",
            "Schema rebuilds from the catalog.",
            self.schema_reloads.load(Relaxed),
        );
        put(
            "walcast_relation_queries_total",
            "counter",
            "Queries that loaded related rows or answered relation conditions.",
            self.relation_queries.load(Relaxed),
        );
        put(
            "walcast_slot_confirmed_lsn",
            "gauge",
            "WAL position confirmed to the slot.",
            self.confirmed_lsn.load(Relaxed),
        );
        let last = self.last_commit_micros.load(Relaxed);
        if last > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            let lag = now.saturating_sub(last) as f64 / 1e6;
            let _ = writeln!(
                out,
                "# HELP walcast_last_commit_age_seconds Seconds since the commit of the last transaction streamed.\n# TYPE walcast_last_commit_age_seconds gauge\nwalcast_last_commit_age_seconds {lag:.3}"
            );
        }
        out
    }
}
