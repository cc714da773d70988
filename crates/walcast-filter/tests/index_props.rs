//! The index finds exactly the subscriptions a full scan finds, for random filters and events.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use walcast_filter::relations::{Relation, RelationKind};
use walcast_filter::{
    CmpOp, EventFilter, FieldsMatch, Quantifier, RelationRef, RowFilter, SubscriptionIndex, TextOp,
    Truth,
};
use walcast_model::{Datum, Event, Kind, Op, Row, Table};

fn the_table() -> Arc<Table> {
    Arc::new(common::table(
        7,
        "t",
        &[
            ("id", Kind::Int4),
            ("num", Kind::Numeric),
            ("name", Kind::Text),
            ("flag", Kind::Bool),
            ("at", Kind::TimestampTz),
            ("doc", Kind::Jsonb),
        ],
    ))
}

/// Values of each column; `num` mixes ints, floats and numerics, which compare across kinds.
fn value(column: usize) -> BoxedStrategy<Datum> {
    match column {
        0 => (-2i64..3).prop_map(Datum::Int).boxed(),
        1 => prop_oneof![
            (-1i64..2).prop_map(Datum::Int),
            prop_oneof![Just(0.0), Just(-0.0), Just(1.0), Just(1.5), Just(f64::NAN)]
                .prop_map(Datum::Float),
            prop_oneof![
                Just("1"),
                Just("1.0"),
                Just("1.50"),
                Just("-0"),
                Just("NaN"),
                Just("1e0")
            ]
            .prop_map(|s| Datum::Numeric(s.into())),
        ]
        .boxed(),
        2 => prop_oneof![Just(""), Just("a"), Just("b"), Just("ab"), Just("ba")]
            .prop_map(|s| Datum::Text(s.into()))
            .boxed(),
        3 => any::<bool>().prop_map(Datum::Bool).boxed(),
        4 => (-1i64..2).prop_map(Datum::TimestampTz).boxed(),
        _ => prop_oneof![
            Just(serde_json::json!(1)),
            Just(serde_json::json!("a")),
            Just(serde_json::json!([1]))
        ]
        .prop_map(Datum::json)
        .boxed(),
    }
}

fn cell(column: usize) -> BoxedStrategy<Datum> {
    prop_oneof![
        8 => value(column),
        1 => Just(Datum::Null),
        1 => Just(Datum::Unavailable),
    ]
    .boxed()
}

fn row() -> impl Strategy<Value = Row> {
    (0..6usize).map(cell).collect::<Vec<_>>()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Create),
        Just(Op::Update),
        Just(Op::Delete),
        Just(Op::Truncate)
    ]
}

fn relation_node(table: &Arc<Table>, n: u8) -> RowFilter {
    RowFilter::Relation {
        relation: RelationRef {
            relation: Relation {
                name: format!("rel{n}"),
                kind: RelationKind::OneToMany,
                target_oid: table.oid,
                local_columns: vec![0],
                remote_columns: vec![0],
                constraint: String::new(),
                column_field: None,
            },
            target: table.clone(),
        },
        kind: Quantifier::Some,
        filter: Box::new(RowFilter::always()),
    }
}

fn leaf(table: Arc<Table>) -> impl Strategy<Value = RowFilter> {
    let cmp = prop_oneof![
        4 => Just(CmpOp::Eq),
        1 => Just(CmpOp::Ne),
        1 => Just(CmpOp::Lt),
        1 => Just(CmpOp::Gte),
    ];
    prop_oneof![
        6 => (0..6usize, cmp).prop_flat_map(|(c, op)| value(c).prop_map(move |value| RowFilter::Cmp { column: c, op, value })),
        2 => (0..6usize, any::<bool>(), 0..3usize).prop_flat_map(|(c, negated, n)| {
            proptest::collection::vec(prop_oneof![4 => value(c), 1 => Just(Datum::Null)], n)
                .prop_map(move |values| RowFilter::In { column: c, values, negated })
        }),
        1 => (0..6usize, any::<bool>()).prop_map(|(column, negated)| RowFilter::IsNull { column, negated }),
        1 => (prop_oneof![Just(""), Just("a"), Just("b")], any::<bool>()).prop_map(|(v, negated)| RowFilter::Text {
            column: 2, op: TextOp::Contains, value: v.into(), negated }),
        1 => (0u8..2).prop_map(move |n| relation_node(&table, n)),
    ]
}

fn row_filter(table: Arc<Table>) -> impl Strategy<Value = RowFilter> {
    leaf(table).prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            4 => proptest::collection::vec(inner.clone(), 0..4).prop_map(RowFilter::All),
            1 => proptest::collection::vec(inner.clone(), 0..3).prop_map(RowFilter::Any),
            1 => proptest::collection::vec(inner, 0..2).prop_map(RowFilter::None),
        ]
    })
}

fn event_filter(table: Arc<Table>) -> impl Strategy<Value = EventFilter> {
    let leaf = prop_oneof![
        2 => proptest::collection::vec(op(), 0..3).prop_map(EventFilter::OpIn),
        5 => row_filter(table).prop_map(EventFilter::Node),
        1 => (proptest::collection::vec(0..6usize, 1..3), any::<bool>()).prop_map(|(columns, every)| {
            EventFilter::UpdatedFields { columns, mode: if every { FieldsMatch::Every } else { FieldsMatch::Some } }
        }),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            5 => proptest::collection::vec(inner.clone(), 0..4).prop_map(EventFilter::All),
            1 => proptest::collection::vec(inner.clone(), 0..3).prop_map(EventFilter::Any),
            1 => proptest::collection::vec(inner, 0..2).prop_map(EventFilter::None),
        ]
    })
}

fn event(table: Arc<Table>) -> impl Strategy<Value = Event> {
    (
        op(),
        row(),
        row(),
        proptest::option::of(proptest::collection::vec(0..6usize, 0..3)),
    )
        .prop_map(move |(op, new, old, updated)| {
            let (new, old) = match op {
                Op::Create => (Some(new), None),
                Op::Update => (Some(new), Some(old)),
                Op::Delete => (None, Some(old)),
                Op::Truncate => (None, None),
            };
            let mut ev = common::event(&table, op, new, old);
            ev.updated = updated.filter(|_| op == Op::Update);
            ev
        })
}

/// Answers relation nodes by their name, so each resolution is deterministic.
fn resolve(mode: u8) -> impl FnMut(&RowFilter) -> Truth {
    move |node| match (mode, node) {
        (0, _) => Truth::Unknown,
        (1, _) => Truth::True,
        (_, RowFilter::Relation { relation, .. }) => {
            Truth::from_bool(relation.relation.name == "rel0")
        }
        _ => Truth::False,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn index_finds_what_a_scan_finds(
        (filters, events, removed) in {
            let t = the_table();
            (
                proptest::collection::vec(event_filter(t.clone()), 1..25),
                proptest::collection::vec(event(t), 1..8),
                proptest::collection::vec(any::<bool>(), 25),
            )
        }
    ) {
        let table = the_table();
        let mut index = SubscriptionIndex::new();
        let mut live = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            index.insert(table.oid, i, f.clone());
            // Re-inserting under the same key replaces.
            if i % 5 == 0 {
                index.insert(table.oid, i, f.clone());
            }
            live.push(i);
        }
        for (i, gone) in removed.iter().enumerate().take(filters.len()) {
            if *gone && i % 3 == 0 {
                prop_assert!(index.remove(table.oid, &i).is_some());
                live.retain(|k| *k != i);
            }
        }
        prop_assert_eq!(index.len(), live.len());
        // Another table's subscriptions are never candidates.
        index.insert(table.oid + 1, 999, EventFilter::All(vec![]));

        for ev in &events {
            for mode in 0..3u8 {
                let mut via_index = BTreeSet::new();
                let mut twice = Vec::new();
                index.for_each_candidate(ev, |k, f| {
                    if f.evaluate_with(ev, &mut resolve(mode)).is_true() && !via_index.insert(*k) {
                        twice.push(*k);
                    }
                });
                prop_assert!(twice.is_empty(), "visited twice: {:?}", twice);
                let scan: BTreeSet<usize> = live
                    .iter()
                    .copied()
                    .filter(|&k| filters[k].evaluate_with(ev, &mut resolve(mode)).is_true())
                    .collect();
                prop_assert_eq!(&via_index, &scan, "mode {} event {:?}", mode, ev);
            }
            let mut outcomes = Vec::new();
            index.for_each_outcome(ev, |k, f, t| outcomes.push((*k, t, f.evaluate(ev))));
            for (k, fast, full) in outcomes {
                prop_assert_eq!(fast, full, "subscription {} {:?}", k, filters[k]);
            }
            let mut matched = BTreeSet::new();
            index.for_each_match(ev, |k| { matched.insert(*k); });
            let scan: BTreeSet<usize> = live.iter().copied().filter(|&k| filters[k].matches(ev)).collect();
            prop_assert_eq!(matched, scan);
        }
    }
}

#[test]
fn equality_filters_are_bucketed() {
    let table = the_table();
    let mut index = SubscriptionIndex::new();
    for id in 0..1000i64 {
        let f = EventFilter::All(vec![
            EventFilter::OpIn(vec![Op::Create, Op::Update, Op::Delete]),
            EventFilter::Node(RowFilter::Cmp {
                column: 0,
                op: CmpOp::Eq,
                value: Datum::Int(id),
            }),
        ]);
        index.insert(table.oid, id, f);
    }
    let mut row: Row = vec![Datum::Null; 6];
    row[0] = Datum::Int(42);
    let ev = common::event(&table, Op::Update, Some(row.clone()), Some(row));
    let candidates = index.candidates(&ev);
    assert_eq!(candidates.len(), 1);
    assert_eq!(*candidates[0].0, 42);
    let truncate = common::event(&table, Op::Truncate, None, None);
    assert!(index.candidates(&truncate).is_empty());
    for id in 0..1000i64 {
        assert!(index.remove(table.oid, &id).is_some());
    }
    assert!(index.is_empty());
}
