//! Deciding relation conditions for one committed transaction: one query per distinct relation
//! condition, over every event row that needs it, never one per subscriber.
//!
//! Use:
//! 1. for each event (numbered within the transaction) and each candidate subscription whose
//!    `EventFilter::evaluate` is `Truth::Unknown` and `has_relations()`: [`RelationBatch::add`];
//! 2. run every [`RelationBatch::queries`] (each returns `int8` ordinals) and hand the ordinals
//!    back with [`RelationBatch::answer`];
//! 3. [`RelationBatch::matches`] for each pending (event, subscription).
//!
//! Conditions are the `RowFilter::Relation` nodes: subscriptions that share one (same relation,
//! same nested filter) share its query, whatever else their filters say.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use walcast_model::{Event, Row, Table};

use crate::ast::{EventFilter, RowFilter};
use crate::eval::Truth;
use crate::relation_sql::relation_sql;
use crate::sql::SqlBuilder;

struct Condition {
    table: Arc<Table>,
    node: RowFilter,
    events: BTreeSet<usize>,
}

/// A query to run for a [`RelationBatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct RelationQuery {
    /// Which condition this answers; pass the query back to [`RelationBatch::answer`].
    pub condition: usize,
    pub sql: String,
    /// Text parameters, bound as `Option<String>`.
    pub params: Vec<Option<String>>,
    /// Event numbers, by the ordinal the query returns.
    events: Vec<usize>,
    /// The ordinals the query judges; any other stays unknown.
    judged: Vec<usize>,
}

#[derive(Default)]
pub struct RelationBatch {
    conditions: Vec<Condition>,
    /// (table oid, the condition's SQL and parameters) → condition.
    by_text: HashMap<(u32, String), usize>,
    /// Node address → condition, for filters held in `kept`.
    by_node: HashMap<usize, usize>,
    /// Keeps added filters alive so node addresses stay unique for the batch's life.
    kept: HashMap<usize, Arc<EventFilter>>,
    rows: HashMap<usize, Row>,
    answers: HashMap<(usize, usize), bool>,
}

/// A condition's identity: its SQL with parameters, which says exactly what it asks.
fn fingerprint(table: &Table, node: &RowFilter) -> String {
    let mut b = SqlBuilder::new(table, "c");
    let sql = b.filter(node);
    serde_json::json!([sql, b.params]).to_string()
}

impl RelationBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    fn condition_of(&self, table: &Table, node: &RowFilter) -> Option<usize> {
        let addr = node as *const RowFilter as usize;
        if let Some(&c) = self.by_node.get(&addr) {
            return Some(c);
        }
        self.by_text
            .get(&(table.oid, fingerprint(table, node)))
            .copied()
    }

    /// Registers the relation conditions of `filter` for event number `event` (its index in the
    /// transaction).
    pub fn add(&mut self, event: usize, ev: &Event, filter: &Arc<EventFilter>) {
        let Some(row) = ev.filter_row() else {
            return;
        };
        let nodes = filter.relation_nodes();
        if nodes.is_empty() {
            return;
        }
        self.kept
            .entry(Arc::as_ptr(filter) as usize)
            .or_insert_with(|| filter.clone());
        for node in nodes {
            let addr = node as *const RowFilter as usize;
            let c = match self.by_node.get(&addr) {
                Some(&c) => c,
                None => {
                    let id = (ev.table.oid, fingerprint(&ev.table, node));
                    let c = match self.by_text.get(&id) {
                        Some(&c) => c,
                        None => {
                            self.conditions.push(Condition {
                                table: ev.table.clone(),
                                node: node.clone(),
                                events: BTreeSet::new(),
                            });
                            let c = self.conditions.len() - 1;
                            self.by_text.insert(id, c);
                            c
                        }
                    };
                    self.by_node.insert(addr, c);
                    c
                }
            };
            if let Some(cond) = self.conditions.get_mut(c) {
                cond.events.insert(event);
            }
        }
        self.rows.entry(event).or_insert_with(|| row.clone());
    }

    /// One query per distinct condition, over every event row registered for it.
    pub fn queries(&self) -> Vec<RelationQuery> {
        self.conditions
            .iter()
            .enumerate()
            .filter_map(|(i, cond)| {
                let events: Vec<usize> = cond
                    .events
                    .iter()
                    .copied()
                    .filter(|e| self.rows.contains_key(e))
                    .collect();
                let rows: Vec<&Row> = events.iter().filter_map(|e| self.rows.get(e)).collect();
                let q = relation_sql(&cond.table, &cond.node, &rows);
                if q.judged.is_empty() {
                    return None;
                }
                Some(RelationQuery {
                    condition: i,
                    sql: q.sql,
                    params: q.params,
                    events,
                    judged: q.judged,
                })
            })
            .collect()
    }

    /// Records a query's result: the ordinals it returned are true, the others it judged false.
    pub fn answer(&mut self, query: &RelationQuery, ordinals: impl IntoIterator<Item = i64>) {
        for &j in &query.judged {
            if let Some(&event) = query.events.get(j) {
                self.answers.insert((query.condition, event), false);
            }
        }
        for o in ordinals {
            let event = usize::try_from(o)
                .ok()
                .filter(|o| query.judged.binary_search(o).is_ok())
                .and_then(|o| query.events.get(o));
            if let Some(&event) = event {
                self.answers.insert((query.condition, event), true);
            }
        }
    }

    /// The filter's result for event number `event` with the answers recorded so far; a
    /// condition without an answer stays unknown.
    pub fn evaluate(&self, event: usize, ev: &Event, filter: &EventFilter) -> Truth {
        filter.evaluate_with(ev, &mut |node| match self
            .condition_of(&ev.table, node)
            .and_then(|c| self.answers.get(&(c, event)))
        {
            Some(true) => Truth::True,
            Some(false) => Truth::False,
            None => Truth::Unknown,
        })
    }

    pub fn matches(&self, event: usize, ev: &Event, filter: &EventFilter) -> bool {
        self.evaluate(event, ev, filter).is_true()
    }
}
