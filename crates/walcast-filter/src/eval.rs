//! In-memory evaluation with SQL's three-valued logic; a `WHERE` clause (and [`RowFilter::matches`])
//! accepts only true. A comparison with NULL, or with a value Postgres did not send, is unknown;
//! so is a relation condition, which only the database can answer (`crate::relation_sql`), unless
//! the caller supplies its answer through a resolver.

use walcast_model::{Datum, Event, Kind, Op, Row, Table};

use crate::ast::{CmpOp, EventFilter, FieldsMatch, RowFilter, TextOp};

/// Three-valued result, so that `NOT` over unknown stays unknown as in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn from_bool(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    pub fn is_true(self) -> bool {
        self == Truth::True
    }
}

impl std::ops::Not for Truth {
    type Output = Truth;

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

/// Answers relation conditions (`RowFilter::Relation` nodes) for the row being evaluated.
pub type Resolver<'r> = dyn FnMut(&RowFilter) -> Truth + 'r;

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

struct RowEval<'a, 'r> {
    row: &'a Row,
    /// Known when evaluating an event: enums then order by their declared labels, as in SQL.
    table: Option<&'a Table>,
    resolve: &'a mut Resolver<'r>,
}

impl RowEval<'_, '_> {
    fn compare(&self, column: usize, v: &Datum, lit: &Datum) -> Option<std::cmp::Ordering> {
        match self.table.and_then(|t| t.columns.get(column)) {
            Some(c) if c.ty.kind == Kind::Enum => v.compare_typed(lit, &c.ty),
            _ => v.compare(lit),
        }
    }

    fn eval(&mut self, f: &RowFilter) -> Truth {
        let row = self.row;
        let col = |i: usize| row.get(i).unwrap_or(&Datum::Unavailable);
        match f {
            RowFilter::All(v) => all(v.iter().map(|f| self.eval(f))),
            RowFilter::Any(v) => any(v.iter().map(|f| self.eval(f))),
            RowFilter::None(v) => !any(v.iter().map(|f| self.eval(f))),
            RowFilter::IsNull { column, negated } => match col(*column) {
                Datum::Unavailable => Truth::Unknown,
                d => Truth::from_bool(matches!(d, Datum::Null) != *negated),
            },
            RowFilter::Cmp { column, op, value } => {
                let Some(v) = known(col(*column)) else {
                    return Truth::Unknown;
                };
                let Some(ord) = self.compare(*column, v, value) else {
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
                // SQL's `x IN (a, NULL)` is unknown, not false, when x is not a.
                let found = any(values.iter().map(|x| match self.compare(*column, v, x) {
                    Some(o) => Truth::from_bool(o.is_eq()),
                    None => Truth::Unknown,
                }));
                if *negated {
                    !found
                } else {
                    found
                }
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
            RowFilter::Relation { .. } => (self.resolve)(f),
        }
    }
}

fn unknown_relation(_: &RowFilter) -> Truth {
    Truth::Unknown
}

impl RowFilter {
    /// The three-valued result on a row; relation conditions are unknown.
    pub fn evaluate(&self, row: &Row) -> Truth {
        self.evaluate_with(None, row, &mut unknown_relation)
    }

    /// The three-valued result on a row of `table` (when given, enum columns order by their
    /// labels), with relation conditions answered by `resolve`.
    pub fn evaluate_with(
        &self,
        table: Option<&Table>,
        row: &Row,
        resolve: &mut Resolver<'_>,
    ) -> Truth {
        RowEval {
            row,
            table,
            resolve,
        }
        .eval(self)
    }

    /// True when the row certainly satisfies the filter (never with a relation condition that
    /// decides the outcome).
    pub fn matches(&self, row: &Row) -> bool {
        self.evaluate(row).is_true()
    }

    /// Like [`RowFilter::matches`], for a row of `table`: enums order by their labels.
    pub fn matches_in(&self, table: &Table, row: &Row) -> bool {
        self.evaluate_with(Some(table), row, &mut unknown_relation)
            .is_true()
    }
}

fn eval_event(f: &EventFilter, ev: &Event, resolve: &mut Resolver<'_>) -> Truth {
    match f {
        EventFilter::All(v) => all(v.iter().map(|f| eval_event(f, ev, resolve))),
        EventFilter::Any(v) => any(v.iter().map(|f| eval_event(f, ev, resolve))),
        EventFilter::None(v) => !any(v.iter().map(|f| eval_event(f, ev, resolve))),
        EventFilter::OpIn(ops) => Truth::from_bool(ops.contains(&ev.op)),
        EventFilter::Node(rf) => match ev.filter_row() {
            Some(row) => rf.evaluate_with(Some(&ev.table), row, resolve),
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
    /// The three-valued result; relation conditions are unknown. A filter with relations that
    /// comes out unknown needs the database (see `crate::batch::RelationBatch`).
    pub fn evaluate(&self, ev: &Event) -> Truth {
        eval_event(self, ev, &mut unknown_relation)
    }

    /// The three-valued result with relation conditions answered by `resolve` (called with the
    /// `RowFilter::Relation` node, for the event's filter row).
    pub fn evaluate_with(&self, ev: &Event, resolve: &mut Resolver<'_>) -> Truth {
        eval_event(self, ev, resolve)
    }

    pub fn matches(&self, ev: &Event) -> bool {
        self.evaluate(ev).is_true()
    }
}
