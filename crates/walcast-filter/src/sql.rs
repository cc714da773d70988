//! SQL for filters, for queries and relation conditions. Client values only ever travel as
//! parameters (text, cast to the column's type); identifiers and type names come from the
//! catalog, quoted.

use walcast_model::value::civil_from_days;
use walcast_model::{Column, Datum, Kind, Table};

use crate::ast::{CmpOp, Quantifier, RowFilter, TextOp};

pub use walcast_pgcluster::quote_ident;

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;

/// Postgres' ISO input form; years before 1 take the `BC` suffix Postgres expects.
fn pg_date(days: i64) -> (String, &'static str) {
    let (year, month, day) = civil_from_days(days);
    let (year, era) = if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    };
    (format!("{year:04}-{month:02}-{day:02}"), era)
}

fn pg_time(micros: i64) -> String {
    let secs = micros.div_euclid(US_PER_SEC);
    let frac = micros.rem_euclid(US_PER_SEC);
    format!(
        "{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn pg_timestamp(micros: i64, zone: &str) -> String {
    let (date, era) = pg_date(micros.div_euclid(US_PER_DAY));
    let time = pg_time(micros.rem_euclid(US_PER_DAY));
    format!("{date} {time}{zone}{era}")
}

/// An array literal (`{"a","b",NULL}`) of the elements' input forms.
fn pg_array(items: &[Datum], kind: Kind) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|d| match d {
            Datum::Array(inner) => pg_array(inner, kind),
            other => match pg_text(other, kind) {
                Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                None => "NULL".to_owned(),
            },
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A value in Postgres input syntax, to be cast to the column type in SQL. `None` for NULL
/// (and for a value Postgres did not send).
pub fn pg_text(d: &Datum, kind: Kind) -> Option<String> {
    Some(match d {
        Datum::Null | Datum::Unavailable => return None,
        Datum::Array(items) => pg_array(items, kind),
        Datum::Bool(b) => b.to_string(),
        Datum::Int(i) => i.to_string(),
        Datum::Float(f) => {
            if f.is_nan() {
                "NaN".into()
            } else if f.is_infinite() {
                if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()
            } else {
                // Shortest text that reads back as the same double.
                format!("{f:e}")
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
        Datum::TimestampTz(us) => pg_timestamp(*us, "+00"),
        Datum::Timestamp(us) => pg_timestamp(*us, ""),
        Datum::Date(days) => {
            let (date, era) = pg_date(i64::from(*days));
            format!("{date}{era}")
        }
        Datum::Time(us) => pg_time(*us),
    })
}

/// Builds SQL text and its parameters.
pub struct SqlBuilder<'t> {
    table: &'t Table,
    /// Column references are qualified with this alias.
    alias: String,
    pub params: Vec<Option<String>>,
    /// Subqueries of relation conditions are aliased `<alias>_<n>`.
    subqueries: usize,
}

fn cmp_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
    }
}

impl<'t> SqlBuilder<'t> {
    pub fn new(table: &'t Table, alias: &str) -> Self {
        SqlBuilder {
            table,
            alias: alias.to_owned(),
            params: Vec::new(),
            subqueries: 0,
        }
    }

    fn param(&mut self, v: Option<String>) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }

    /// The column as compared: text for types whose values walcast compares by their text
    /// form, jsonb for json (which has no equality operator); bytewise order for text.
    fn column_expr(alias: &str, c: &Column) -> String {
        let r = format!("{alias}.{}", quote_ident(&c.name));
        if c.ty.array {
            return r;
        }
        match c.ty.kind {
            Kind::Text => format!("{r} COLLATE \"C\""),
            Kind::Json => format!("{r}::jsonb"),
            Kind::Other => format!("({r})::text COLLATE \"C\""),
            _ => r,
        }
    }

    fn typed_param(&mut self, c: &Column, d: &Datum) -> String {
        let p = self.param(pg_text(d, c.ty.kind));
        if c.ty.array {
            return format!("CAST({p}::text AS {})", c.sql_type);
        }
        match c.ty.kind {
            Kind::Json => format!("CAST({p}::text AS jsonb)"),
            Kind::Other => format!("{p}::text"),
            _ => format!("CAST({p}::text AS {})", c.sql_type),
        }
    }

    /// The values as one parameter: an array literal cast to an array of the type the column
    /// is compared as (see [`SqlBuilder::column_expr`]).
    fn array_param(&mut self, c: &Column, values: &[Datum]) -> String {
        let p = self.param(Some(pg_array(values, c.ty.kind)));
        match c.ty.kind {
            Kind::Json => format!("CAST({p}::text AS jsonb[])"),
            Kind::Other => format!("CAST({p}::text AS text[])"),
            _ => format!("CAST({p}::text AS {}[])", c.sql_type),
        }
    }

    /// SQL for a filter on this builder's table; `TRUE` for an empty one.
    pub fn filter(&mut self, f: &RowFilter) -> String {
        let alias = self.alias.clone();
        self.render(self.table, &alias, f)
    }

    fn render(&mut self, table: &Table, alias: &str, f: &RowFilter) -> String {
        let column = |i: usize| {
            table
                .columns
                .get(i)
                .map(|c| (format!("{alias}.{}", quote_ident(&c.name)), c))
        };
        match f {
            RowFilter::All(v) if v.is_empty() => "TRUE".into(),
            RowFilter::All(v) => self.join(table, alias, v, " AND "),
            RowFilter::Any(v) if v.is_empty() => "FALSE".into(),
            RowFilter::Any(v) => self.join(table, alias, v, " OR "),
            RowFilter::None(v) if v.is_empty() => "TRUE".into(),
            RowFilter::None(v) => format!("(NOT {})", self.join(table, alias, v, " OR ")),
            RowFilter::IsNull { column: i, negated } => match column(*i) {
                Some((c, _)) => format!("({c} IS {}NULL)", if *negated { "NOT " } else { "" }),
                None => "FALSE".into(),
            },
            RowFilter::Cmp {
                column: i,
                op,
                value,
            } => {
                let Some((_, col)) = column(*i) else {
                    return "FALSE".into();
                };
                let c = Self::column_expr(alias, col);
                let p = self.typed_param(col, value);
                format!("({c} {} {p})", cmp_sql(*op))
            }
            RowFilter::In {
                column: i,
                values,
                negated,
            } => {
                let Some((plain, col)) = column(*i) else {
                    return "FALSE".into();
                };
                if values.is_empty() {
                    // `IN ()` is not SQL. Like `x IN (<nothing>)` would be: unknown for a NULL
                    // x, otherwise false (true when negated).
                    let known = if *negated { "TRUE" } else { "FALSE" };
                    return format!("(CASE WHEN {plain} IS NULL THEN NULL ELSE {known} END)");
                }
                let c = Self::column_expr(alias, col);
                if col.ty.array {
                    // An array of arrays would be one multidimensional array, whose `ANY`
                    // walks the scalars: array values keep a parameter each.
                    let items: Vec<String> =
                        values.iter().map(|v| self.typed_param(col, v)).collect();
                    return format!(
                        "({c} {}IN ({}))",
                        if *negated { "NOT " } else { "" },
                        items.join(", ")
                    );
                }
                // One array parameter, whatever the length: Postgres takes at most 65,535
                // parameters. `= ANY` and `<> ALL` are `IN` and `NOT IN`, NULLs included.
                let p = self.array_param(col, values);
                if *negated {
                    format!("({c} <> ALL ({p}))")
                } else {
                    format!("({c} = ANY ({p}))")
                }
            }
            RowFilter::Text {
                column: i,
                op,
                value,
                negated,
            } => {
                let Some((c, _)) = column(*i) else {
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
            RowFilter::Relation {
                relation,
                kind,
                filter,
            } => {
                self.subqueries += 1;
                let sub = format!("{}_{}", self.alias, self.subqueries);
                let target = &relation.target;
                let mut join = Vec::new();
                for (l, r) in relation
                    .relation
                    .local_columns
                    .iter()
                    .zip(&relation.relation.remote_columns)
                {
                    let (Some(lc), Some(rc)) = (table.columns.get(*l), target.columns.get(*r))
                    else {
                        return "FALSE".into();
                    };
                    join.push(format!(
                        "{sub}.{} = {alias}.{}",
                        quote_ident(&rc.name),
                        quote_ident(&lc.name)
                    ));
                }
                if join.is_empty() {
                    return "FALSE".into();
                }
                let cond = self.render(target, &sub, filter);
                let from = format!(
                    "SELECT 1 FROM {}.{} AS {sub} WHERE {}",
                    quote_ident(&target.schema),
                    quote_ident(&target.name),
                    join.join(" AND ")
                );
                match kind {
                    Quantifier::Single | Quantifier::Some => {
                        format!("(EXISTS ({from} AND {cond}))")
                    }
                    Quantifier::None => format!("(NOT EXISTS ({from} AND {cond}))"),
                    // A related row whose condition is unknown does not satisfy it either.
                    Quantifier::Every => format!("(NOT EXISTS ({from} AND ({cond}) IS NOT TRUE))"),
                }
            }
        }
    }

    fn join(&mut self, table: &Table, alias: &str, items: &[RowFilter], sep: &str) -> String {
        let parts: Vec<String> = items.iter().map(|f| self.render(table, alias, f)).collect();
        format!("({})", parts.join(sep))
    }
}
