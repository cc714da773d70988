//! The filter language, validated against a table: every column index and value type is checked
//! when the filter is built, so evaluation cannot fail.

use walcast_model::{Datum, Op};

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
}

impl RowFilter {
    pub fn always() -> RowFilter {
        RowFilter::All(vec![])
    }

    pub fn is_always(&self) -> bool {
        matches!(self, RowFilter::All(v) if v.is_empty())
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
