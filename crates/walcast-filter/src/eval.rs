//! In-memory evaluation, with SQL's three-valued logic collapsed to false the way a `WHERE`
//! clause collapses it: a comparison with NULL (or with a value Postgres did not send) is not true.

use walcast_model::{Datum, Event, Op, Row};

use crate::ast::{CmpOp, EventFilter, FieldsMatch, RowFilter, TextOp};

/// Three-valued result, so that `NOT` over unknown stays unknown as in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn from_bool(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

fn all(items: impl Iterator<Item = Truth>) -> Truth {
    let mut out = Truth::True;
    for t in items {
        match t {
            Truth::False => return Truth::False,
            Truth::Unknown => out = Truth::Unknown,
            Truth::True => {}
        }
    }
    out
}

fn any(items: impl Iterator<Item = Truth>) -> Truth {
    let mut out = Truth::False;
    for t in items {
        match t {
            Truth::True => return Truth::True,
            Truth::Unknown => out = Truth::Unknown,
            Truth::False => {}
        }
    }
    out
}

fn known(d: &Datum) -> Option<&Datum> {
    match d {
        Datum::Null | Datum::Unavailable => None,
        other => Some(other),
    }
}

fn eval_row(f: &RowFilter, row: &Row) -> Truth {
    let col = |i: usize| row.get(i).unwrap_or(&Datum::Unavailable);
    match f {
        RowFilter::All(v) => all(v.iter().map(|f| eval_row(f, row))),
        RowFilter::Any(v) => any(v.iter().map(|f| eval_row(f, row))),
        RowFilter::None(v) => any(v.iter().map(|f| eval_row(f, row))).not(),
        RowFilter::IsNull { column, negated } => match col(*column) {
            Datum::Unavailable => Truth::Unknown,
            d => Truth::from_bool(matches!(d, Datum::Null) != *negated),
        },
        RowFilter::Cmp { column, op, value } => {
            let Some(v) = known(col(*column)) else {
                return Truth::Unknown;
            };
            let Some(ord) = v.compare(value) else {
                return Truth::Unknown;
            };
            Truth::from_bool(match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Lte => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Gte => ord.is_ge(),
            })
        }
        RowFilter::In {
            column,
            values,
            negated,
        } => {
            let Some(v) = known(col(*column)) else {
                return Truth::Unknown;
            };
            let found = values
                .iter()
                .any(|x| v.compare(x).is_some_and(|o| o.is_eq()));
            Truth::from_bool(found != *negated)
        }
        RowFilter::Text {
            column,
            op,
            value,
            negated,
        } => {
            let Some(Datum::Text(s)) = known(col(*column)) else {
                return Truth::Unknown;
            };
            let hit = match op {
                TextOp::Contains => s.contains(value.as_str()),
                TextOp::StartsWith => s.starts_with(value.as_str()),
                TextOp::EndsWith => s.ends_with(value.as_str()),
            };
            Truth::from_bool(hit != *negated)
        }
    }
}

impl RowFilter {
    /// True when the row certainly satisfies the filter.
    pub fn matches(&self, row: &Row) -> bool {
        eval_row(self, row) == Truth::True
    }
}

fn eval_event(f: &EventFilter, ev: &Event) -> Truth {
    match f {
        EventFilter::All(v) => all(v.iter().map(|f| eval_event(f, ev))),
        EventFilter::Any(v) => any(v.iter().map(|f| eval_event(f, ev))),
        EventFilter::None(v) => any(v.iter().map(|f| eval_event(f, ev))).not(),
        EventFilter::OpIn(ops) => Truth::from_bool(ops.contains(&ev.op)),
        EventFilter::Node(rf) => match ev.filter_row() {
            Some(row) => eval_row(rf, row),
            // Truncate has no row: only an unconditional node filter lets it through.
            None => Truth::from_bool(rf.is_always()),
        },
        EventFilter::UpdatedFields { columns, mode } => {
            if ev.op != Op::Update {
                return Truth::False;
            }
            let Some(updated) = &ev.updated else {
                return Truth::Unknown;
            };
            Truth::from_bool(match mode {
                FieldsMatch::Every => columns.iter().all(|c| updated.contains(c)),
                FieldsMatch::Some => columns.iter().any(|c| updated.contains(c)),
            })
        }
    }
}

impl EventFilter {
    pub fn matches(&self, ev: &Event) -> bool {
        eval_event(self, ev) == Truth::True
    }
}
