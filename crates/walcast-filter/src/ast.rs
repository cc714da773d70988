//! The filter language, validated against a table: every column index and value type is checked
//! when the filter is built, so evaluation cannot fail.

use std::sync::Arc;

use walcast_model::{Datum, Op, Table};

use crate::relations::Relation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// How a relation condition quantifies over the related rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantifier {
    /// Many-to-one (`author: {..}`): the related row exists and satisfies the filter.
    Single,
    /// One-to-many `_some`: at least one related row satisfies the filter.
    Some,
    /// One-to-many `_every`: no related row fails to satisfy it (true when there are none).
    Every,
    /// One-to-many `_none`: no related row satisfies it.
    None,
}

/// A relation resolved against the catalog, with the table its nested filter applies to.
#[derive(Clone)]
pub struct RelationRef {
    pub relation: Relation,
    pub target: Arc<Table>,
}

impl PartialEq for RelationRef {
    fn eq(&self, other: &Self) -> bool {
        self.relation == other.relation && self.target.oid == other.target.oid
    }
}

impl std::fmt::Debug for RelationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {}.{}",
            self.relation.name, self.target.schema, self.target.name
        )
    }
}

/// A condition on the columns of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowFilter {
    /// Every one holds (`AND`, and the keys of one input object).
    All(Vec<RowFilter>),
    /// At least one holds (`OR`).
    Any(Vec<RowFilter>),
    /// None holds (`NOT`).
    None(Vec<RowFilter>),
    IsNull {
        column: usize,
        negated: bool,
    },
    Cmp {
        column: usize,
        op: CmpOp,
        value: Datum,
    },
    In {
        column: usize,
        values: Vec<Datum>,
        negated: bool,
    },
    Text {
        column: usize,
        op: TextOp,
        value: String,
        negated: bool,
    },
    /// A condition on related rows; `filter` applies to `relation.target`. Only the database
    /// can answer it: in-memory evaluation yields unknown (see `crate::relation_sql`).
    Relation {
        relation: RelationRef,
        kind: Quantifier,
        filter: Box<RowFilter>,
    },
}

impl RowFilter {
    pub fn always() -> RowFilter {
        RowFilter::All(vec![])
    }

    pub fn is_always(&self) -> bool {
        matches!(self, RowFilter::All(v) if v.is_empty())
    }

    /// Whether any part of the filter is a relation condition.
    pub fn has_relations(&self) -> bool {
        match self {
            RowFilter::All(v) | RowFilter::Any(v) | RowFilter::None(v) => {
                v.iter().any(RowFilter::has_relations)
            }
            RowFilter::Relation { .. } => true,
            _ => false,
        }
    }

    /// The relation conditions of this row's table (not those nested inside them).
    pub fn relation_nodes(&self) -> Vec<&RowFilter> {
        let mut out = Vec::new();
        self.collect_relations(&mut out);
        out
    }

    fn collect_relations<'a>(&'a self, out: &mut Vec<&'a RowFilter>) {
        match self {
            RowFilter::All(v) | RowFilter::Any(v) | RowFilter::None(v) => {
                v.iter().for_each(|f| f.collect_relations(out))
            }
            RowFilter::Relation { .. } => out.push(self),
            _ => {}
        }
    }

    /// How many values its `_in` / `_not_in` lists hold, nested conditions included.
    pub fn list_items(&self) -> usize {
        match self {
            RowFilter::All(v) | RowFilter::Any(v) | RowFilter::None(v) => {
                v.iter().map(RowFilter::list_items).sum()
            }
            RowFilter::In { values, .. } => values.len(),
            RowFilter::Relation { filter, .. } => filter.list_items(),
            _ => 0,
        }
    }

    /// Column indexes of this row's table the filter reads, sorted and without duplicates.
    pub fn columns(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_columns(&self, out: &mut Vec<usize>) {
        match self {
            RowFilter::All(v) | RowFilter::Any(v) | RowFilter::None(v) => {
                v.iter().for_each(|f| f.collect_columns(out))
            }
            RowFilter::IsNull { column, .. }
            | RowFilter::Cmp { column, .. }
            | RowFilter::In { column, .. }
            | RowFilter::Text { column, .. } => out.push(*column),
            RowFilter::Relation { relation, .. } => {
                out.extend_from_slice(&relation.relation.local_columns)
            }
        }
    }
}

/// Which of the updated fields a condition asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldsMatch {
    Every,
    Some,
}

/// A condition on a change event (Prisma's `<table>SubscriptionWhereInput`, or Directus'
/// `event` + `where`).
#[derive(Debug, Clone, PartialEq)]
pub enum EventFilter {
    All(Vec<EventFilter>),
    Any(Vec<EventFilter>),
    None(Vec<EventFilter>),
    OpIn(Vec<Op>),
    /// The row: new values for create and update, previous values for delete.
    Node(RowFilter),
    /// Column indexes that must be among the updated fields.
    UpdatedFields {
        columns: Vec<usize>,
        mode: FieldsMatch,
    },
}

impl EventFilter {
    /// Whether any row condition in the filter is a relation condition.
    pub fn has_relations(&self) -> bool {
        match self {
            EventFilter::All(v) | EventFilter::Any(v) | EventFilter::None(v) => {
                v.iter().any(EventFilter::has_relations)
            }
            EventFilter::Node(rf) => rf.has_relations(),
            EventFilter::OpIn(_) | EventFilter::UpdatedFields { .. } => false,
        }
    }

    /// How many values its `_in` / `_not_in` lists hold.
    pub fn list_items(&self) -> usize {
        match self {
            EventFilter::All(v) | EventFilter::Any(v) | EventFilter::None(v) => {
                v.iter().map(EventFilter::list_items).sum()
            }
            EventFilter::Node(rf) => rf.list_items(),
            EventFilter::OpIn(_) | EventFilter::UpdatedFields { .. } => 0,
        }
    }

    /// The relation conditions on the event's row, wherever they appear in the filter.
    pub fn relation_nodes(&self) -> Vec<&RowFilter> {
        let mut out = Vec::new();
        self.collect_relations(&mut out);
        out
    }

    fn collect_relations<'a>(&'a self, out: &mut Vec<&'a RowFilter>) {
        match self {
            EventFilter::All(v) | EventFilter::Any(v) | EventFilter::None(v) => {
                v.iter().for_each(|f| f.collect_relations(out))
            }
            EventFilter::Node(rf) => rf.collect_relations(out),
            EventFilter::OpIn(_) | EventFilter::UpdatedFields { .. } => {}
        }
    }
}
