//! Counters, gauges and histograms, exposed at `/metrics` through `prometheus-client`.
//!
//! The hot paths keep bumping plain atomics (lock-free, no label look-up per event); on each
//! scrape a [`Collector`] reads them and `prometheus-client` writes the exposition: the
//! Prometheus text format, or OpenMetrics when the scraper asks for it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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

    /// `(upper bound, count in that bucket alone)`, sum in seconds and count, as read now.
    fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let buckets = BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| (*b, c.load(Relaxed)))
            .collect();
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        (buckets, sum, self.count.load(Relaxed))
    }
}

/// A counter or gauge by label values.
#[derive(Default)]
pub struct Labeled {
    values: Mutex<BTreeMap<Vec<String>, i64>>,
}

impl Labeled {
    pub fn add(&self, labels: &[&str], n: i64) {
        let mut v = walcast_model::sync::lock(&self.values);
        *v.entry(labels.iter().map(|s| (*s).to_owned()).collect())
            .or_insert(0) += n;
    }

    fn snapshot(&self) -> Vec<(Vec<String>, i64)> {
        let v = walcast_model::sync::lock(&self.values);
        v.iter().map(|(k, n)| (k.clone(), *n)).collect()
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
    /// The server's `max_slot_wal_keep_size` in bytes (-1: unlimited, the default), for
    /// comparing the retained WAL with.
    pub wal_keep_size_bytes: AtomicI64,
    /// Queries that loaded related rows or answered relation conditions.
    pub relation_queries: Arc<AtomicU64>,
    /// Groups of identical subscriptions and the payloads they built and shared.
    pub payloads: Arc<walcast_graphql::PayloadGroups>,
    /// Cluster mode only.
    pub cluster: ClusterMetrics,
    pub decode_seconds: Histogram,
    pub match_seconds: Histogram,
    /// Queueing a transaction's matches: chunks, inboxes, wakes (not the slow-consumer grace).
    pub dispatch_seconds: Histogram,
    pub serialize_seconds: Histogram,
    pub send_seconds: Histogram,
}

/// What this node is in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderState {
    /// Not a reader candidate (single node, or a gateway only).
    None = 0,
    /// Holds the slot and publishes to the stream.
    Active = 1,
    /// Waits for the slot.
    Standby = 2,
}

/// Cluster mode's gauges and counters; rendered only when the node is in a cluster.
#[derive(Default)]
pub struct ClusterMetrics {
    /// A [`ReaderState`].
    pub reader: AtomicU64,
    /// 1 while this node serves subscribers from the stream.
    pub gateway: AtomicU64,
    /// Bytes of WAL between the server's position and the end of the last transaction whose
    /// every event the stream acknowledged (-1: standing by; a reader that cannot publish
    /// reports the slot's lag).
    pub reader_lag_bytes: AtomicI64,
    /// Stream messages past the last one this gateway delivered (-1: unknown).
    pub gateway_lag_messages: AtomicI64,
    /// Times this node took the slot over after standing by.
    pub failovers: AtomicU64,
    /// Publishes the stream refused because another reader appended (this one stepped down).
    pub fenced_publishes: AtomicU64,
}

impl ClusterMetrics {
    pub fn set_reader(&self, state: ReaderState) {
        self.reader.store(state as u64, Relaxed);
    }

    fn enabled(&self) -> bool {
        self.reader.load(Relaxed) != ReaderState::None as u64 || self.gateway.load(Relaxed) != 0
    }

    fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let reader = self.reader.load(Relaxed);
        let roles = [
            ("reader", reader == ReaderState::Active as u64),
            ("standby", reader == ReaderState::Standby as u64),
            ("gateway", self.gateway.load(Relaxed) != 0),
        ];
        let mut family = e.encode_descriptor(
            "walcast_cluster_role",
            "Cluster role of this node: 1 for the roles it has now.",
            None,
            MetricType::Gauge,
        )?;
        for (role, on) in roles {
            family
                .encode_family(&[("role", role)])?
                .encode_gauge(&i64::from(on))?;
        }
        gauge(
            e,
            "walcast_cluster_reader_lag_bytes",
            "WAL bytes between the server's position and the last transaction the stream acknowledged (-1: standing by).",
            self.reader_lag_bytes.load(Relaxed),
        )?;
        gauge(
            e,
            "walcast_cluster_gateway_lag_messages",
            "Stream messages past the last one this gateway delivered (-1: unknown).",
            self.gateway_lag_messages.load(Relaxed),
        )?;
        counter(
            e,
            "walcast_cluster_failovers",
            "Times this node took the slot over after standing by.",
            self.failovers.load(Relaxed),
        )?;
        counter(
            e,
            "walcast_cluster_fenced_publishes",
            "Publishes refused because another reader appended to the stream; the reader stepped down.",
            self.fenced_publishes.load(Relaxed),
        )
    }
}

/// The exposition formats of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4, what a plain `GET` gets.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper whose `Accept` header names it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// The exposition of every metric in `format`.
    pub fn render(self: &Arc<Self>, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail; a collector error would only come from there.
        let _ = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        };
        out
    }

    /// Seconds from the commit of the last transaction streamed to now, once there was one.
    pub fn lag_seconds(&self) -> Option<f64> {
        let last = self.last_commit_micros.load(Relaxed);
        (last > 0).then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            (now.saturating_sub(last) / 1000) as f64 / 1e3
        })
    }
}

/// Reads the atomics on each scrape.
struct Scrape(Arc<Metrics>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("walcast metrics")
    }
}

/// Counters are named without `_total`: the encoder appends it (and OpenMetrics wants the
/// family name without it).
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn labeled(
    e: &mut DescriptorEncoder,
    name: &str,
    kind: MetricType,
    help: &str,
    keys: &[&str],
    values: &Labeled,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, n) in values.snapshot() {
        let set: Vec<(&str, &str)> = keys
            .iter()
            .copied()
            .zip(labels.iter().map(String::as_str))
            .collect();
        let mut sample = m.encode_family(&set)?;
        match kind {
            MetricType::Counter => {
                sample.encode_counter::<NoLabelSet, _, u64>(&(n.max(0) as u64), None)?
            }
            _ => sample.encode_gauge(&n)?,
        }
    }
    Ok(())
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    let (buckets, sum, count) = h.snapshot();
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.0;
        let n = |a: &AtomicU64| a.load(Relaxed);
        counter(
            &mut e,
            "walcast_transactions",
            "Committed transactions decoded.",
            n(&m.transactions),
        )?;
        counter(
            &mut e,
            "walcast_events_matched",
            "Event deliveries to subscriptions.",
            n(&m.events_matched),
        )?;
        counter(
            &mut e,
            "walcast_messages_sent",
            "WebSocket messages sent.",
            n(&m.messages_sent),
        )?;
        counter(
            &mut e,
            "walcast_bytes_sent",
            "WebSocket payload bytes sent.",
            n(&m.bytes_sent),
        )?;
        gauge(
            &mut e,
            "walcast_subscriptions_active",
            "Live subscriptions.",
            n(&m.subscriptions),
        )?;
        counter(
            &mut e,
            "walcast_slow_consumer_closes",
            "Connections closed as slow consumers.",
            n(&m.slow_consumer_closes),
        )?;
        counter(
            &mut e,
            "walcast_ping_timeouts",
            "Connections closed because the client did not answer a ping frame in time.",
            n(&m.ping_timeouts),
        )?;
        counter(
            &mut e,
            "walcast_replication_reconnects",
            "Replication connections re-established.",
            n(&m.replication_reconnects),
        )?;
        counter(
            &mut e,
            "walcast_slot_recreations",
            "Replication slots found missing on reconnect and created again: changes committed in between were not delivered.",
            n(&m.slot_recreations),
        )?;
        counter(
            &mut e,
            "walcast_schema_reloads",
            "Schema rebuilds from the catalog.",
            n(&m.schema_reloads),
        )?;
        counter(
            &mut e,
            "walcast_relation_queries",
            "Queries that loaded related rows or answered relation conditions.",
            m.relation_queries.load(Relaxed),
        )?;
        counter(
            &mut e,
            "walcast_payloads_built",
            "Event payloads resolved and serialised for subscribers.",
            m.payloads.built.load(Relaxed),
        )?;
        counter(
            &mut e,
            "walcast_payloads_shared",
            "Event payloads a subscriber took from an identical subscription instead of building.",
            m.payloads.shared.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "walcast_slot_confirmed_lsn",
            "WAL position confirmed to the slot.",
            n(&m.confirmed_lsn),
        )?;
        gauge(
            &mut e,
            "walcast_slot_retained_wal_bytes",
            "WAL the replication slot holds on the server.",
            m.retained_wal_bytes.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "walcast_slot_lag_bytes",
            "Bytes between the server's WAL position and the slot's confirmed position.",
            m.slot_lag_bytes.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "walcast_slot_wal_keep_size_bytes",
            "The server's max_slot_wal_keep_size in bytes (-1: unlimited).",
            m.wal_keep_size_bytes.load(Relaxed),
        )?;
        if let Some(lag) = m.lag_seconds() {
            gauge(
                &mut e,
                "walcast_slot_lag_seconds",
                "Seconds from the commit of the last transaction streamed to now.",
                lag,
            )?;
        }
        labeled(
            &mut e,
            "walcast_events_decoded",
            MetricType::Counter,
            "Row events decoded from the WAL.",
            &["table", "event"],
            &m.events_decoded,
        )?;
        labeled(
            &mut e,
            "walcast_connections",
            MetricType::Gauge,
            "Open WebSocket connections.",
            &["protocol"],
            &m.connections_by,
        )?;
        labeled(
            &mut e,
            "walcast_operations_active",
            MetricType::Gauge,
            "Running subscriptions by protocol and role.",
            &["protocol", "role"],
            &m.subscriptions_by,
        )?;
        histogram(
            &mut e,
            "walcast_decode_seconds",
            "Decoding one transaction into events.",
            &m.decode_seconds,
        )?;
        histogram(
            &mut e,
            "walcast_match_seconds",
            "Matching one transaction against the subscriptions.",
            &m.match_seconds,
        )?;
        histogram(
            &mut e,
            "walcast_dispatch_seconds",
            "Queueing one transaction's matches in the subscribers' queues and waking them.",
            &m.dispatch_seconds,
        )?;
        histogram(
            &mut e,
            "walcast_serialize_seconds",
            "Encoding one burst of a connection's messages into its socket buffer.",
            &m.serialize_seconds,
        )?;
        histogram(
            &mut e,
            "walcast_send_seconds",
            "Writing a burst of messages to a socket (one flush).",
            &m.send_seconds,
        )?;
        if m.cluster.enabled() {
            m.cluster.encode(&mut e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Arc::new(Metrics::default());
        m.events_decoded.add(&["public.messages", "create"], 3);
        m.match_seconds.observe(Duration::from_micros(70));
        m.match_seconds.observe(Duration::from_secs(2));
        let text = m.render(Format::Prometheus);
        for line in [
            "# HELP walcast_events_decoded_total Row events decoded from the WAL.\n",
            "# TYPE walcast_events_decoded_total counter\n",
            "walcast_events_decoded_total{table=\"public.messages\",event=\"create\"} 3\n",
            "# TYPE walcast_match_seconds histogram\n",
            "walcast_match_seconds_bucket{le=\"0.0001\"} 1\n",
            "walcast_match_seconds_bucket{le=\"+Inf\"} 2\n",
            "walcast_match_seconds_count 2\n",
            "# TYPE walcast_dispatch_seconds histogram\n",
            "walcast_dispatch_seconds_count 0\n",
            "walcast_transactions_total 0\n",
            "walcast_subscriptions_active 0\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn escapes_label_values() {
        let m = Arc::new(Metrics::default());
        m.events_decoded.add(&["we\"ird\\na\nme", "create"], 1);
        let text = m.render(Format::Prometheus);
        assert!(
            text.contains(
                r#"walcast_events_decoded_total{table="we\"ird\\na\nme",event="create"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_openmetrics_when_asked() {
        let m = Arc::new(Metrics::default());
        m.events_decoded.add(&["messages", "update"], 2);
        let format = Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ));
        assert_eq!(format, Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        let text = m.render(format);
        assert!(
            text.contains("# TYPE walcast_events_decoded counter\n"),
            "{text}"
        );
        assert!(
            text.contains("walcast_events_decoded_total{table=\"messages\",event=\"update\"} 2\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
