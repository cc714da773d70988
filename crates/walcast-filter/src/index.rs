//! The subscription index: finds the subscriptions an event may match without visiting the
//! others.
//!
//! Per table and per event kind, each subscription sits in exactly one place:
//! - an equality bucket, keyed by (column, value), when its filter requires `column = value`
//!   (or `column IN (values)`: one bucket per value) in the conjunction at its top level; the
//!   first equality wins, else the `_in` with the fewest values;
//! - otherwise the kind's scan list, visited for every event of that kind.
//!
//! The kinds a subscription can match come from the `mutation_in` / `event:` conditions in the
//! same conjunction (and `updatedFields_*`, which only updates satisfy; a row condition rules out
//! truncate). An event looks up, for each indexed column of its kind, the bucket of its row's
//! value (the previous values for a delete), plus the scan list; only those candidates are
//! evaluated. Bucket keys follow `crate::key`, so no subscription that `EventFilter::matches`
//! would accept is skipped.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use indexmap::IndexMap;
use walcast_model::{Event, Op};

use crate::ast::{CmpOp, EventFilter, RowFilter};
use crate::key::{key, lookup, DatumKey, Lookup};

const OPS: [Op; 4] = [Op::Create, Op::Update, Op::Delete, Op::Truncate];

fn op_slot(op: Op) -> usize {
    match op {
        Op::Create => 0,
        Op::Update => 1,
        Op::Delete => 2,
        Op::Truncate => 3,
    }
}

/// Where a subscription is filed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Scan,
    Buckets { column: usize, keys: Vec<DatumKey> },
}

#[derive(Debug, Clone)]
struct Plan {
    /// Indexed by `op_slot`.
    ops: [bool; 4],
    slot: Slot,
}

/// A required equality found in the top-level conjunction.
enum Required {
    Eq(usize, DatumKey),
    In(usize, Vec<DatumKey>),
}

fn required_in_row(f: &RowFilter, out: &mut Vec<Required>) {
    match f {
        RowFilter::All(items) => items.iter().for_each(|i| required_in_row(i, out)),
        RowFilter::Cmp {
            column,
            op: CmpOp::Eq,
            value,
        } => {
            if let Some(k) = key(value) {
                out.push(Required::Eq(*column, k));
            }
        }
        RowFilter::In {
            column,
            values,
            negated: false,
        } => {
            // A NULL in the list never equals anything: only the other values can match.
            let mut keys = Vec::with_capacity(values.len());
            for v in values.iter().filter(|v| !matches!(v, walcast_model::Datum::Null)) {
                match key(v) {
                    Some(k) if !keys.contains(&k) => keys.push(k),
                    Some(_) => {}
                    None => return,
                }
            }
            out.push(Required::In(*column, keys));
        }
        _ => {}
    }
}

fn walk_conjunction(f: &EventFilter, ops: &mut [bool; 4], required: &mut Vec<Required>) {
    match f {
        EventFilter::All(items) => items
            .iter()
            .for_each(|i| walk_conjunction(i, ops, required)),
        EventFilter::OpIn(allowed) => {
            for (slot, op) in OPS.iter().enumerate() {
                ops[slot] &= allowed.contains(op);
            }
        }
        EventFilter::UpdatedFields { .. } => {
            for (slot, op) in OPS.iter().enumerate() {
                ops[slot] &= *op == Op::Update;
            }
        }
        EventFilter::Node(rf) => {
            // Truncate has no row: it passes a node condition only when that is empty.
            if !rf.is_always() {
                ops[op_slot(Op::Truncate)] = false;
            }
            required_in_row(rf, required);
        }
        EventFilter::Any(_) | EventFilter::None(_) => {}
    }
}

fn plan(f: &EventFilter) -> Plan {
    let mut ops = [true; 4];
    let mut required = Vec::new();
    walk_conjunction(f, &mut ops, &mut required);
    let best = required
        .iter()
        .find_map(|r| match r {
            Required::Eq(c, k) => Some((*c, vec![k.clone()])),
            Required::In(..) => None,
        })
        .or_else(|| {
            required
                .iter()
                .filter_map(|r| match r {
                    Required::In(c, keys) if !keys.is_empty() => Some((*c, keys)),
                    _ => None,
                })
                .min_by_key(|(_, keys)| keys.len())
                .map(|(c, keys)| (c, keys.clone()))
        });
    Plan {
        ops,
        slot: match best {
            Some((column, keys)) => Slot::Buckets { column, keys },
            None => Slot::Scan,
        },
    }
}

type Bucket<K> = HashMap<K, Arc<EventFilter>>;

struct ColumnBuckets<K> {
    column: usize,
    buckets: HashMap<DatumKey, Bucket<K>>,
}

struct OpIndex<K> {
    columns: Vec<ColumnBuckets<K>>,
    scan: IndexMap<K, Arc<EventFilter>>,
}

impl<K> Default for OpIndex<K> {
    fn default() -> Self {
        OpIndex {
            columns: Vec::new(),
            scan: IndexMap::new(),
        }
    }
}

struct TableIndex<K> {
    ops: [OpIndex<K>; 4],
    placed: HashMap<K, (Arc<EventFilter>, Plan)>,
}

impl<K> Default for TableIndex<K> {
    fn default() -> Self {
        TableIndex {
            ops: Default::default(),
            placed: HashMap::new(),
        }
    }
}

/// Live subscriptions of every table, keyed by the caller's subscriber key `K` (unique per
/// table).
pub struct SubscriptionIndex<K> {
    tables: HashMap<u32, TableIndex<K>>,
    len: usize,
}

impl<K: Clone + Eq + Hash> Default for SubscriptionIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> SubscriptionIndex<K> {
    pub fn new() -> Self {
        SubscriptionIndex {
            tables: HashMap::new(),
            len: 0,
        }
    }

    /// Adds a subscription to a table's events; replaces (and returns) one with the same key.
    pub fn insert(
        &mut self,
        table_oid: u32,
        key: K,
        filter: impl Into<Arc<EventFilter>>,
    ) -> Option<Arc<EventFilter>> {
        let previous = self.remove(table_oid, &key);
        let filter = filter.into();
        let plan = plan(&filter);
        let table = self.tables.entry(table_oid).or_default();
        for (slot, index) in table.ops.iter_mut().enumerate() {
            if !plan.ops[slot] {
                continue;
            }
            match &plan.slot {
                Slot::Scan => {
                    index.scan.insert(key.clone(), filter.clone());
                }
                Slot::Buckets { column, keys } => {
                    let at = match index.columns.iter().position(|c| c.column == *column) {
                        Some(at) => at,
                        None => {
                            index.columns.push(ColumnBuckets {
                                column: *column,
                                buckets: HashMap::new(),
                            });
                            index.columns.len() - 1
                        }
                    };
                    if let Some(cb) = index.columns.get_mut(at) {
                        for k in keys {
                            cb.buckets
                                .entry(k.clone())
                                .or_default()
                                .insert(key.clone(), filter.clone());
                        }
                    }
                }
            }
        }
        table.placed.insert(key, (filter, plan));
        self.len += 1;
        previous
    }

    /// Removes a subscription; returns its filter.
    pub fn remove(&mut self, table_oid: u32, key: &K) -> Option<Arc<EventFilter>> {
        let table = self.tables.get_mut(&table_oid)?;
        let (filter, plan) = table.placed.remove(key)?;
        for (slot, index) in table.ops.iter_mut().enumerate() {
            if !plan.ops[slot] {
                continue;
            }
            match &plan.slot {
                Slot::Scan => {
                    index.scan.swap_remove(key);
                }
                Slot::Buckets { column, keys } => {
                    let Some(at) = index.columns.iter().position(|c| c.column == *column) else {
                        continue;
                    };
                    let Some(cb) = index.columns.get_mut(at) else {
                        continue;
                    };
                    for k in keys {
                        if let Some(bucket) = cb.buckets.get_mut(k) {
                            bucket.remove(key);
                            if bucket.is_empty() {
                                cb.buckets.remove(k);
                            }
                        }
                    }
                    if cb.buckets.is_empty() {
                        index.columns.swap_remove(at);
                    }
                }
            }
        }
        if table.placed.is_empty() {
            self.tables.remove(&table_oid);
        }
        self.len -= 1;
        Some(filter)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The filter of a subscription.
    pub fn get(&self, table_oid: u32, key: &K) -> Option<&Arc<EventFilter>> {
        self.tables.get(&table_oid)?.placed.get(key).map(|(f, _)| f)
    }

    /// Visits each subscription that may match the event, once, without evaluating it.
    pub fn for_each_candidate<'s>(
        &'s self,
        ev: &Event,
        mut visit: impl FnMut(&'s K, &'s Arc<EventFilter>),
    ) {
        let Some(table) = self.tables.get(&ev.table.oid) else {
            return;
        };
        let Some(index) = table.ops.get(op_slot(ev.op)) else {
            return;
        };
        for (k, f) in &index.scan {
            visit(k, f);
        }
        let Some(row) = ev.filter_row() else {
            return;
        };
        for cb in &index.columns {
            let value = row.get(cb.column).unwrap_or(&walcast_model::Datum::Unavailable);
            match lookup(value) {
                Lookup::Key(k) => {
                    if let Some(bucket) = cb.buckets.get(&k) {
                        for (k, f) in bucket {
                            visit(k, f);
                        }
                    }
                }
                Lookup::Never => {}
                Lookup::Any => {
                    // A subscription with an `_in` sits in several buckets: visit it once.
                    let mut seen: HashSet<&K> = HashSet::new();
                    for bucket in cb.buckets.values() {
                        for (k, f) in bucket {
                            if seen.insert(k) {
                                visit(k, f);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The subscriptions that may match the event, unevaluated.
    pub fn candidates(&self, ev: &Event) -> Vec<(&K, &Arc<EventFilter>)> {
        let mut out = Vec::new();
        self.for_each_candidate(ev, |k, f| out.push((k, f)));
        out
    }

    /// Visits each subscription whose filter matches the event in memory. A filter with
    /// relation conditions that could still match comes out unknown and is not visited: use
    /// [`SubscriptionIndex::for_each_candidate`] with `EventFilter::evaluate` and a
    /// `RelationBatch` for those.
    pub fn for_each_match<'s>(&'s self, ev: &Event, mut visit: impl FnMut(&'s K)) {
        self.for_each_candidate(ev, |k, f| {
            if f.matches(ev) {
                visit(k)
            }
        });
    }
}
