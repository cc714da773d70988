//! SQL for filters, for queries and relation conditions. Client values only ever travel as
//! parameters; identifiers and type names come from the catalog.

use walcast_model::{Datum, Kind, Table};

use crate::ast::{CmpOp, RowFilter, TextOp};

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A value in Postgres input syntax, to be cast to the column type in SQL.
pub fn pg_text(d: &Datum, kind: Kind) -> Option<String> {
    Some(match d {
        Datum::Null | Datum::Unavailable | Datum::Array(_) => return None,
        Datum::Bool(b) => b.to_string(),
        Datum::Int(i) => i.to_string(),
        Datum::Float(f) => {
            if f.is_nan() {
                "NaN".into()
            } else if f.is_infinite() {
                if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()
            } else {
                f.to_string()
            }
        }
        Datum::Numeric(s) | Datum::Text(s) | Datum::TemporalText(s) => s.clone(),
        Datum::Json(v) => v.to_string(),
        Datum::Bytes(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        Datum::TimestampTz(_) | Datum::Timestamp(_) | Datum::Date(_) | Datum::Time(_) => {
            match d.to_json(kind) {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }
        }
    })
}

/// Builds SQL text and its parameters.
pub struct SqlBuilder<'t> {
    table: &'t Table,
    /// Column references are qualified with this alias.
    alias: String,
    pub params: Vec<Option<String>>,
}

impl<'t> SqlBuilder<'t> {
    pub fn new(table: &'t Table, alias: &str) -> Self {
        SqlBuilder {
            table,
            alias: alias.to_owned(),
            params: Vec::new(),
        }
    }

    fn param(&mut self, v: Option<String>) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }

    fn column(&self, i: usize) -> Option<(String, &'t walcast_model::Column)> {
        self.table
            .columns
            .get(i)
            .map(|c| (format!("{}.{}", self.alias, quote_ident(&c.name)), c))
    }

    fn typed_param(&mut self, c: &walcast_model::Column, d: &Datum) -> String {
        let p = self.param(pg_text(d, c.ty.kind));
        format!("CAST({p}::text AS {})", c.sql_type)
    }

    /// SQL for a filter; `TRUE` for an empty one.
    pub fn filter(&mut self, f: &RowFilter) -> String {
        match f {
            RowFilter::All(v) if v.is_empty() => "TRUE".into(),
            RowFilter::All(v) => self.join(v, " AND "),
            RowFilter::Any(v) if v.is_empty() => "FALSE".into(),
            RowFilter::Any(v) => self.join(v, " OR "),
            RowFilter::None(v) if v.is_empty() => "TRUE".into(),
            RowFilter::None(v) => format!("NOT ({})", self.join(v, " OR ")),
            RowFilter::IsNull { column, negated } => match self.column(*column) {
                Some((c, _)) => format!("({c} IS {}NULL)", if *negated { "NOT " } else { "" }),
                None => "FALSE".into(),
            },
            RowFilter::Cmp { column, op, value } => {
                let Some((c, col)) = self.column(*column) else {
                    return "FALSE".into();
                };
                let p = self.typed_param(col, value);
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::Ne => "<>",
                    CmpOp::Lt => "<",
                    CmpOp::Lte => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Gte => ">=",
                };
                // Text orders bytewise, as the in-memory evaluation does.
                let collate = if col.ty.kind == Kind::Text {
                    " COLLATE \"C\""
                } else {
                    ""
                };
                format!("({c}{collate} {op} {p})")
            }
            RowFilter::In {
                column,
                values,
                negated,
            } => {
                let Some((c, col)) = self.column(*column) else {
                    return "FALSE".into();
                };
                if values.is_empty() {
                    return if *negated {
                        format!("({c} IS NOT NULL)")
                    } else {
                        "FALSE".into()
                    };
                }
                let items: Vec<String> = values.iter().map(|v| self.typed_param(col, v)).collect();
                format!(
                    "({c} {}IN ({}))",
                    if *negated { "NOT " } else { "" },
                    items.join(", ")
                )
            }
            RowFilter::Text {
                column,
                op,
                value,
                negated,
            } => {
                let Some((c, _)) = self.column(*column) else {
                    return "FALSE".into();
                };
                let p = self.param(Some(value.clone()));
                let test = match op {
                    TextOp::Contains => format!("strpos({c}::text, {p}::text) > 0"),
                    TextOp::StartsWith => format!("starts_with({c}::text, {p}::text)"),
                    TextOp::EndsWith => {
                        format!("right({c}::text, length({p}::text)) = {p}::text")
                    }
                };
                if *negated {
                    format!("(NOT {test})")
                } else {
                    format!("({test})")
                }
            }
        }
    }

    fn join(&mut self, items: &[RowFilter], sep: &str) -> String {
        let parts: Vec<String> = items.iter().map(|f| self.filter(f)).collect();
        format!("({})", parts.join(sep))
    }
}
