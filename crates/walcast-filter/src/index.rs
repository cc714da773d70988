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
//!
//! Each entry also keeps what is left to check once it has been found: the `mutation_in`
//! conditions its kind satisfies are dropped, and the bucket's equality is checked inline
//! (keys may collide) before the rest, so `id: 5` alone costs one comparison, not a walk of the
//! filter tree. The result is the full filter's three-valued result.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use indexmap::IndexMap;
use walcast_model::{Event, Op};

use crate::ast::{CmpOp, EventFilter, RowFilter};
use crate::eval::Truth;
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
enum Required<'f> {
    Eq(&'f RowFilter, usize, DatumKey),
    In(usize, Vec<DatumKey>),
}

fn required_in_row<'f>(f: &'f RowFilter, out: &mut Vec<Required<'f>>) {
    match f {
        RowFilter::All(items) => items.iter().for_each(|i| required_in_row(i, out)),
        RowFilter::Cmp {
            column,
            op: CmpOp::Eq,
            value,
        } => {
            if let Some(k) = key(value) {
                out.push(Required::Eq(f, *column, k));
            }
        }
        RowFilter::In {
            column,
            values,
            negated: false,
        } => {
            // A NULL in the list never equals anything: only the other values can match.
            // Duplicates are dropped through a set: a scan of the keys so far would make a long
            // list cost the square of its length.
            let mut keys = Vec::with_capacity(values.len());
            let mut seen = HashSet::with_capacity(values.len());
            for v in values
                .iter()
                .filter(|v| !matches!(v, walcast_model::Datum::Null))
            {
                match key(v) {
                    Some(k) => {
                        if seen.insert(k.clone()) {
                            keys.push(k);
                        }
                    }
                    None => return,
                }
            }
            out.push(Required::In(*column, keys));
        }
        _ => {}
    }
}

fn walk_conjunction<'f>(f: &'f EventFilter, ops: &mut [bool; 4], required: &mut Vec<Required<'f>>) {
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

fn plan(f: &EventFilter) -> (Plan, Option<&RowFilter>) {
    let mut ops = [true; 4];
    let mut required = Vec::new();
    walk_conjunction(f, &mut ops, &mut required);
    let eq = required.iter().find_map(|r| match r {
        Required::Eq(node, c, k) => Some((*node, *c, k.clone())),
        Required::In(..) => None,
    });
    if let Some((node, column, k)) = eq {
        let slot = Slot::Buckets {
            column,
            keys: vec![k],
        };
        return (Plan { ops, slot }, Some(node));
    }
    let best_in = required
        .iter()
        .filter_map(|r| match r {
            Required::In(c, keys) if !keys.is_empty() => Some((*c, keys)),
            _ => None,
        })
        .min_by_key(|(_, keys)| keys.len())
        .map(|(c, keys)| (c, keys.clone()));
    let slot = match best_in {
        Some((column, keys)) => Slot::Buckets { column, keys },
        None => Slot::Scan,
    };
    (Plan { ops, slot }, None)
}

/// The top-level conjuncts left to check once `mutation_in` holds (for every kind the entry is
/// filed under) and the row has been checked against `eq`: `None` when nothing is left.
fn residual(f: &EventFilter, eq: Option<&RowFilter>) -> Option<EventFilter> {
    fn rows(rf: &RowFilter, eq: Option<&RowFilter>, out: &mut Vec<RowFilter>) {
        match rf {
            RowFilter::All(items) => items.iter().for_each(|i| rows(i, eq, out)),
            other if eq.is_some_and(|e| std::ptr::eq(e, other)) => {}
            other => out.push(other.clone()),
        }
    }
    fn events(f: &EventFilter, eq: Option<&RowFilter>, out: &mut Vec<EventFilter>) {
        match f {
            EventFilter::All(items) => items.iter().for_each(|i| events(i, eq, out)),
            EventFilter::OpIn(_) => {}
            EventFilter::Node(rf) => {
                let mut kept = Vec::new();
                rows(rf, eq, &mut kept);
                // An empty node is true for any row, and for truncate's absence of one.
                if !kept.is_empty() {
                    out.push(EventFilter::Node(RowFilter::All(kept)));
                }
            }
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    events(f, eq, &mut out);
    match out.len() {
        0 => None,
        1 => out.pop(),
        _ => Some(EventFilter::All(out)),
    }
}

/// A filed subscription.
#[derive(Clone)]
struct Entry {
    filter: Arc<EventFilter>,
    /// The bucket's equality (a `RowFilter::Cmp`), checked on the event's row.
    eq: Option<RowFilter>,
    /// The rest of the filter.
    rest: Option<Arc<EventFilter>>,
}

fn unknown(_: &RowFilter) -> Truth {
    Truth::Unknown
}

impl Entry {
    /// The full filter's result, from the parts left to check.
    fn evaluate(&self, ev: &Event) -> Truth {
        // Without a row (truncate) node conditions behave differently: use the whole filter.
        if ev.filter_row().is_none() {
            return self.filter.evaluate(ev);
        }
        let first = match &self.eq {
            Some(cmp) => match ev.filter_row() {
                Some(row) => cmp.evaluate_with(Some(&ev.table), row, &mut unknown),
                None => Truth::Unknown,
            },
            None => Truth::True,
        };
        if first == Truth::False {
            return Truth::False;
        }
        let rest = match &self.rest {
            Some(f) => f.evaluate(ev),
            None => Truth::True,
        };
        match (first, rest) {
            (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }
}

/// Gives back a map's spare room once it is mostly empty: a subscription with a long `_in`
/// list grows its column's bucket map, which would otherwise keep that size after it leaves.
/// Halving the load before rebuilding keeps the rebuilds' cost within that of the removals.
fn shrink_map<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 2 * map.len() + 64 {
        map.shrink_to_fit();
    }
}

/// Subscriptions filed under one key: almost always one (`id: 5`), so without a map.
enum Bucket<K> {
    One(K, Entry),
    Many(HashMap<K, Entry>),
}

impl<K: Clone + Eq + Hash> Bucket<K> {
    fn insert(&mut self, key: K, entry: Entry) {
        match self {
            Bucket::One(k, _) if *k == key => *self = Bucket::One(key, entry),
            Bucket::One(k, e) => {
                let mut map = HashMap::with_capacity(2);
                map.insert(k.clone(), e.clone());
                map.insert(key, entry);
                *self = Bucket::Many(map);
            }
            Bucket::Many(map) => {
                map.insert(key, entry);
            }
        }
    }

    /// Removes `key`; true when the bucket is then empty.
    fn remove(&mut self, key: &K) -> bool {
        match self {
            Bucket::One(k, _) => k == key,
            Bucket::Many(map) => {
                map.remove(key);
                shrink_map(map);
                map.is_empty()
            }
        }
    }

    fn for_each<'s>(&'s self, mut visit: impl FnMut(&'s K, &'s Entry)) {
        match self {
            Bucket::One(k, e) => visit(k, e),
            Bucket::Many(map) => map.iter().for_each(|(k, e)| visit(k, e)),
        }
    }
}

struct ColumnBuckets<K> {
    column: usize,
    buckets: HashMap<DatumKey, Bucket<K>>,
}

struct OpIndex<K> {
    columns: Vec<ColumnBuckets<K>>,
    scan: IndexMap<K, Entry>,
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
        let (plan, eq) = plan(&filter);
        let entry = Entry {
            eq: eq.cloned(),
            rest: residual(&filter, eq).map(Arc::new),
            filter: filter.clone(),
        };
        let table = self.tables.entry(table_oid).or_default();
        for (slot, index) in table.ops.iter_mut().enumerate() {
            if !plan.ops[slot] {
                continue;
            }
            match &plan.slot {
                Slot::Scan => {
                    index.scan.insert(key.clone(), entry.clone());
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
                    let Some(cb) = index.columns.get_mut(at) else {
                        continue;
                    };
                    for k in keys {
                        match cb.buckets.get_mut(k) {
                            Some(bucket) => bucket.insert(key.clone(), entry.clone()),
                            None => {
                                cb.buckets
                                    .insert(k.clone(), Bucket::One(key.clone(), entry.clone()));
                            }
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
                    if index.scan.capacity() > 2 * index.scan.len() + 64 {
                        index.scan.shrink_to_fit();
                    }
                }
                Slot::Buckets { column, keys } => {
                    let Some(at) = index.columns.iter().position(|c| c.column == *column) else {
                        continue;
                    };
                    let Some(cb) = index.columns.get_mut(at) else {
                        continue;
                    };
                    for k in keys {
                        if cb.buckets.get_mut(k).is_some_and(|b| b.remove(key)) {
                            cb.buckets.remove(k);
                        }
                    }
                    if cb.buckets.is_empty() {
                        index.columns.swap_remove(at);
                    } else {
                        shrink_map(&mut cb.buckets);
                    }
                }
            }
        }
        if table.placed.is_empty() {
            self.tables.remove(&table_oid);
        } else {
            shrink_map(&mut table.placed);
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

    fn for_each_entry<'s>(&'s self, ev: &Event, mut visit: impl FnMut(&'s K, &'s Entry)) {
        let Some(table) = self.tables.get(&ev.table.oid) else {
            return;
        };
        let Some(index) = table.ops.get(op_slot(ev.op)) else {
            return;
        };
        for (k, e) in &index.scan {
            visit(k, e);
        }
        let Some(row) = ev.filter_row() else {
            return;
        };
        for cb in &index.columns {
            let value = row
                .get(cb.column)
                .unwrap_or(&walcast_model::Datum::Unavailable);
            match lookup(value) {
                Lookup::Key(k) => {
                    if let Some(bucket) = cb.buckets.get(&k) {
                        bucket.for_each(&mut visit);
                    }
                }
                Lookup::Never => {}
                Lookup::Any => {
                    // A subscription with an `_in` sits in several buckets: visit it once.
                    let mut seen: HashSet<&K> = HashSet::new();
                    for bucket in cb.buckets.values() {
                        bucket.for_each(|k, e| {
                            if seen.insert(k) {
                                visit(k, e);
                            }
                        });
                    }
                }
            }
        }
    }

    /// Visits each subscription that may match the event, once, without evaluating it.
    pub fn for_each_candidate<'s>(
        &'s self,
        ev: &Event,
        mut visit: impl FnMut(&'s K, &'s Arc<EventFilter>),
    ) {
        self.for_each_entry(ev, |k, e| visit(k, &e.filter));
    }

    /// The subscriptions that may match the event, unevaluated.
    pub fn candidates(&self, ev: &Event) -> Vec<(&K, &Arc<EventFilter>)> {
        let mut out = Vec::new();
        self.for_each_candidate(ev, |k, f| out.push((k, f)));
        out
    }

    /// Visits each candidate with its filter's in-memory result (relation conditions unknown),
    /// equal to `filter.evaluate(ev)` but cheaper: what the index already established is not
    /// evaluated again. The hub delivers `True`, and sends `Unknown` with
    /// `filter.has_relations()` to a `RelationBatch`.
    pub fn for_each_outcome<'s>(
        &'s self,
        ev: &Event,
        mut visit: impl FnMut(&'s K, &'s Arc<EventFilter>, Truth),
    ) {
        self.for_each_entry(ev, |k, e| visit(k, &e.filter, e.evaluate(ev)));
    }

    /// Visits each subscription whose filter matches the event in memory. A filter with
    /// relation conditions that could still match comes out unknown and is not visited (see
    /// [`SubscriptionIndex::for_each_outcome`]).
    pub fn for_each_match<'s>(&'s self, ev: &Event, mut visit: impl FnMut(&'s K)) {
        self.for_each_entry(ev, |k, e| {
            if e.evaluate(ev).is_true() {
                visit(k)
            }
        });
    }
}
