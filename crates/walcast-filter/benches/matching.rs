//! Per-event matching cost through the subscription index, against evaluating every
//! subscription (the naive baseline), for 10, 1,000 and 100,000 live subscriptions.
//!
//! `cargo bench -p walcast-filter --bench matching` prints a markdown table.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use walcast_filter::{parse_subscription_where, EventFilter, SubscriptionIndex};
use walcast_model::{Column, Cursor, Datum, Event, Kind, Op, PgType, ReplicaIdentity, Table};

fn column(name: &str, attnum: i16, kind: Kind, type_name: &str) -> Column {
    Column {
        name: name.into(),
        gql_name: name.into(),
        attnum,
        ty: PgType {
            oid: 0,
            name: type_name.into(),
            kind,
            array: false,
            enum_values: vec![],
        },
        sql_type: type_name.into(),
        not_null: false,
    }
}

fn items() -> Arc<Table> {
    Arc::new(Table {
        oid: 16384,
        schema: "public".into(),
        name: "items".into(),
        gql_name: "items".into(),
        columns: vec![
            column("id", 1, Kind::Int4, "int4"),
            column("title", 2, Kind::Text, "text"),
            column("status", 3, Kind::Text, "text"),
        ],
        primary_key: vec![0],
        replica_identity: ReplicaIdentity::Full,
        foreign_keys: vec![],
    })
}

/// A small deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const TITLES: &[&str] = &[
    "a quiet morning",
    "release notes",
    "fixing the build",
    "xylophone lessons",
    "weekly report",
];

fn events(table: &Arc<Table>, n: usize, ids: u64, rng: &mut Rng) -> Vec<Event> {
    (0..n)
        .map(|_| {
            let id = (rng.next() % ids) as i64;
            let title = TITLES[(rng.next() % TITLES.len() as u64) as usize];
            let row = vec![
                Datum::Int(id),
                Datum::Text(title.into()),
                Datum::Text("published".into()),
            ];
            Event {
                table: table.clone(),
                op: Op::Update,
                key: id.to_string(),
                new: Some(row.clone()),
                old: Some(row),
                updated: Some(vec![1]),
                cursor: Cursor::default(),
                xid: 1,
                commit_time: 0,
                batch: Default::default(),
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// `{node: {id: i}}` for every subscription.
    Equality,
    /// 10% `{node: {id: i, title_contains: "x"}}`: still indexed by the id.
    EqualityAndText,
    /// 10% `{node: {title_contains: "x"}}`: no equality, so scanned for every event.
    TextOnly,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Equality => "`id` equality",
            Mix::EqualityAndText => "`id` equality, 10% also `title_contains`",
            Mix::TextOnly => "`id` equality, 10% only `title_contains`",
        }
    }
}

fn filters(table: &Table, n: usize, mix: Mix) -> Vec<EventFilter> {
    (0..n)
        .map(|i| {
            let texty = i % 10 == 9;
            let input = match mix {
                Mix::EqualityAndText if texty => {
                    json!({"node": {"id": i, "title_contains": "x"}})
                }
                Mix::TextOnly if texty => json!({"node": {"title_contains": "x"}}),
                _ => json!({"node": {"id": i}}),
            };
            parse_subscription_where(table, &input).expect("valid filter")
        })
        .collect()
}

/// Nanoseconds per call of `run` over the events: the best of several rounds, so that other
/// work on the machine inflates the figures as little as possible.
fn measure(events: &[Event], round: Duration, mut run: impl FnMut(&Event) -> usize) -> f64 {
    for ev in events.iter().take(64) {
        black_box(run(ev));
    }
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < round {
            for ev in events {
                black_box(run(black_box(ev)));
                calls += 1;
            }
        }
        best = best.min(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    best
}

struct Result {
    mix: Mix,
    subs: usize,
    index_ns: f64,
    naive_ns: f64,
    matched: f64,
}

fn main() {
    let table = items();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut results = Vec::new();
    for mix in [Mix::Equality, Mix::EqualityAndText, Mix::TextOnly] {
        for subs in [10usize, 1_000, 100_000] {
            let fs = filters(&table, subs, mix);
            let mut index = SubscriptionIndex::new();
            for (i, f) in fs.iter().enumerate() {
                index.insert(table.oid, i as u64, f.clone());
            }
            let evs = events(&table, 4096, subs as u64, &mut rng);
            let mut hits = 0usize;
            let index_ns = measure(&evs, Duration::from_millis(100), |ev| {
                let mut n = 0;
                index.for_each_match(ev, |_| n += 1);
                hits += n;
                n
            });
            let total: usize = evs
                .iter()
                .map(|ev| {
                    let mut n = 0;
                    index.for_each_match(ev, |_| n += 1);
                    n
                })
                .sum();
            let naive_events = &evs[..evs.len().min(if subs > 10_000 { 64 } else { 4096 })];
            let naive_ns = measure(naive_events, Duration::from_millis(100), |ev| {
                fs.iter().filter(|f| f.matches(ev)).count()
            });
            // The index and the scan agree on what matches.
            for ev in naive_events {
                let mut n = 0;
                index.for_each_match(ev, |_| n += 1);
                assert_eq!(n, fs.iter().filter(|f| f.matches(ev)).count());
            }
            black_box(hits);
            results.push(Result {
                mix,
                subs,
                index_ns,
                naive_ns,
                matched: total as f64 / evs.len() as f64,
            });
        }
    }

    println!("| filters | subscriptions | matches/event | index ns/event | naive ns/event | naive / index |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.1}x |",
            r.mix.label(),
            r.subs,
            r.matched,
            r.index_ns,
            r.naive_ns,
            r.naive_ns / r.index_ns
        );
    }
    println!();
    println!("| filters | index 100,000 / 10 | naive 100,000 / 10 |");
    println!("|---|---:|---:|");
    for mix in [Mix::Equality, Mix::EqualityAndText, Mix::TextOnly] {
        let at = |n: usize| results.iter().find(|r| r.mix == mix && r.subs == n);
        if let (Some(small), Some(large)) = (at(10), at(100_000)) {
            println!(
                "| {} | {:.2}x | {:.0}x |",
                mix.label(),
                large.index_ns / small.index_ns,
                large.naive_ns / small.naive_ns
            );
        }
    }
}
