//! Counters, gauges and histograms, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

/// A latency histogram with fixed buckets; lock-free.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// A counter or gauge by label values.
#[derive(Default)]
pub struct Labeled {
    values: Mutex<BTreeMap<Vec<String>, i64>>,
}

impl Labeled {
    pub fn add(&self, labels: &[&str], n: i64) {
        let mut v = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *v.entry(labels.iter().map(|s| (*s).to_owned()).collect())
            .or_insert(0) += n;
    }

    fn render(&self, out: &mut String, name: &str, kind: &str, help: &str, keys: &[&str]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let v = self.values.lock().unwrap_or_else(|p| p.into_inner());
        for (labels, n) in v.iter() {
            let pairs: Vec<String> = keys
                .iter()
                .zip(labels)
                .map(|(k, l)| format!("{k}=\"{}\"", l.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {n}", pairs.join(","));
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub events_decoded: Labeled,
    pub transactions: AtomicU64,
    pub events_matched: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Open sockets (all protocols), for the connection limit.
    pub connections: AtomicU64,
    pub connections_by: Labeled,
    /// Live subscriptions in the hub, for readiness checks in tests and dashboards.
    pub subscriptions: AtomicU64,
    pub subscriptions_by: Labeled,
    pub slow_consumer_closes: AtomicU64,
    /// Sockets closed because the client did not answer a ping frame in time.
    pub ping_timeouts: AtomicU64,
    pub replication_reconnects: AtomicU64,
    /// The slot vanished while walcast ran and was created again (changes in between are lost).
    pub slot_recreations: AtomicU64,
    pub schema_reloads: AtomicU64,
    /// Commit time of the last transaction handled, microseconds since the Unix epoch.
    pub last_commit_micros: AtomicU64,
    pub confirmed_lsn: AtomicU64,
    /// Bytes of WAL the slot holds (from the server; -1 until read).
    pub retained_wal_bytes: AtomicI64,
    /// Bytes between the server's WAL position and what the slot confirmed.
    pub slot_lag_bytes: AtomicI64,
    /// Queries that loaded related rows or answered relation conditions.
    pub relation_queries: Arc<AtomicU64>,
    /// Groups of identical subscriptions and the payloads they built and shared.
    pub payloads: Arc<walcast_graphql::PayloadGroups>,
    pub decode_seconds: Histogram,
    pub match_seconds: Histogram,
    pub serialize_seconds: Histogram,
    pub send_seconds: Histogram,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let n = |a: &AtomicU64| a.load(Relaxed) as i64;
        put(
            "walcast_transactions_total",
            "counter",
            "Committed transactions decoded.",
            n(&self.transactions),
        );
        put(
            "walcast_events_matched_total",
            "counter",
            "Event deliveries to subscriptions.",
            n(&self.events_matched),
        );
        put(
            "walcast_messages_sent_total",
            "counter",
            "WebSocket messages sent.",
            n(&self.messages_sent),
        );
        put(
            "walcast_bytes_sent_total",
            "counter",
            "WebSocket payload bytes sent.",
            n(&self.bytes_sent),
        );
        put(
            "walcast_subscriptions_active",
            "gauge",
            "Live subscriptions.",
            n(&self.subscriptions),
        );
        put(
            "walcast_slow_consumer_closes_total",
            "counter",
            "Connections closed as slow consumers.",
            n(&self.slow_consumer_closes),
        );
        put(
            "walcast_ping_timeouts_total",
            "counter",
            "Connections closed because the client did not answer a ping frame in time.",
            n(&self.ping_timeouts),
        );
        put(
            "walcast_replication_reconnects_total",
            "counter",
            "Replication connections re-established.",
            n(&self.replication_reconnects),
        );
        put(
            "walcast_slot_recreations_total",
            "counter",
            "Replication slots found missing on reconnect and created again: changes committed in between were not delivered.",
            n(&self.slot_recreations),
        );
        put(
            "walcast_schema_reloads_total",
            "counter",
            "Schema rebuilds from the catalog.",
            n(&self.schema_reloads),
        );
        put(
            "walcast_relation_queries_total",
            "counter",
            "Queries that loaded related rows or answered relation conditions.",
            self.relation_queries.load(Relaxed) as i64,
        );
        put(
            "walcast_payloads_built_total",
            "counter",
            "Event payloads resolved and serialised for subscribers.",
            self.payloads.built.load(Relaxed) as i64,
        );
        put(
            "walcast_payloads_shared_total",
            "counter",
            "Event payloads a subscriber took from an identical subscription instead of building.",
            self.payloads.shared.load(Relaxed) as i64,
        );
        put(
            "walcast_slot_confirmed_lsn",
            "gauge",
            "WAL position confirmed to the slot.",
            n(&self.confirmed_lsn),
        );
        put(
            "walcast_slot_retained_wal_bytes",
            "gauge",
            "WAL the replication slot holds on the server.",
            self.retained_wal_bytes.load(Relaxed),
        );
        put(
            "walcast_slot_lag_bytes",
            "gauge",
            "Bytes between the server's WAL position and the slot's confirmed position.",
            self.slot_lag_bytes.load(Relaxed),
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
                "# HELP walcast_slot_lag_seconds Seconds from the commit of the last transaction streamed to now.\n# TYPE walcast_slot_lag_seconds gauge\nwalcast_slot_lag_seconds {lag:.3}"
            );
        }
        self.events_decoded.render(
            &mut out,
            "walcast_events_decoded_total",
            "counter",
            "Row events decoded from the WAL.",
            &["table", "event"],
        );
        self.connections_by.render(
            &mut out,
            "walcast_connections",
            "gauge",
            "Open WebSocket connections.",
            &["protocol"],
        );
        self.subscriptions_by.render(
            &mut out,
            "walcast_operations_active",
            "gauge",
            "Running subscriptions by protocol and role.",
            &["protocol", "role"],
        );
        self.decode_seconds.render(
            &mut out,
            "walcast_decode_seconds",
            "Decoding one transaction into events.",
        );
        self.match_seconds.render(
            &mut out,
            "walcast_match_seconds",
            "Matching one transaction against the subscriptions.",
        );
        self.serialize_seconds.render(
            &mut out,
            "walcast_serialize_seconds",
            "Resolving and serialising one event for one subscription.",
        );
        self.send_seconds.render(
            &mut out,
            "walcast_send_seconds",
            "Writing a burst of messages to a socket (one flush).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.events_decoded.add(&["public.messages", "create"], 3);
        m.match_seconds.observe(Duration::from_micros(70));
        m.match_seconds.observe(Duration::from_secs(2));
        let text = m.render();
        assert!(
            text.contains(
                "walcast_events_decoded_total{table=\"public.messages\",event=\"create\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("walcast_match_seconds_bucket{le=\"0.0001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("walcast_match_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("walcast_match_seconds_count 2"), "{text}");
    }
}
