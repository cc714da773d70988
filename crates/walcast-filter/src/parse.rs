//! Building filters from client input (already JSON), validated against the table.

use serde_json::{Map, Value};
use walcast_model::{value::parse_input, Catalog, Column, Datum, Kind, Op, Table};

use crate::ast::{CmpOp, EventFilter, FieldsMatch, Quantifier, RelationRef, RowFilter, TextOp};
use crate::relations::{relations, Relation, RelationKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{path}: expected {expected}, found {found}")]
    Type {
        path: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: unknown field {field:?} on {type_name}")]
    UnknownField {
        path: String,
        field: String,
        type_name: String,
    },
    #[error("{path}: operator {operator:?} does not apply to column {column:?} of type {pg_type}")]
    OperatorType {
        path: String,
        operator: String,
        column: String,
        pg_type: String,
    },
    #[error("{path}: {message}")]
    Value { path: String, message: String },
    #[error("updatedFields conditions need mutation_in: [UPDATED]: they cannot match CREATED or DELETED events")]
    UpdatedFieldsNeedsUpdate,
    #[error("event must be one of \"create\", \"update\", \"delete\", \"truncate\"; found {0:?}")]
    Event(String),
    #[error("{path}: a list of {items} items; filter lists hold at most {limit} (WALCAST_MAX_LIST_ITEMS)")]
    ListTooLong {
        path: String,
        items: usize,
        limit: usize,
    },
}

/// Bounds on client input beyond what the catalog checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most items in one list of a filter (`_in`, `_not_in`, `AND`/`OR`/`NOT`, `mutation_in`,
    /// `updatedFields_*`): every item costs memory in the subscription index and work per event.
    pub max_list_items: usize,
}

impl Default for Limits {
    /// No bound (trusted input: the permissions file).
    fn default() -> Self {
        Limits {
            max_list_items: usize::MAX,
        }
    }
}

/// The operator suffixes of `<table>WhereInput`, longest first so `_not_in` wins over `_in`.
pub const SUFFIXES: &[&str] = &[
    "_not_starts_with",
    "_not_ends_with",
    "_not_contains",
    "_starts_with",
    "_ends_with",
    "_contains",
    "_not_in",
    "_not",
    "_in",
    "_lte",
    "_gte",
    "_lt",
    "_gt",
];

/// Whether an operator suffix applies to a column type.
pub fn operator_applies(suffix: &str, column: &Column) -> bool {
    let ordered = !column.ty.array
        && matches!(
            column.ty.kind,
            Kind::Int2
                | Kind::Int4
                | Kind::Int8
                | Kind::Float4
                | Kind::Float8
                | Kind::Numeric
                | Kind::Money
                | Kind::Text
                | Kind::Uuid
                | Kind::Timestamp
                | Kind::TimestampTz
                | Kind::Date
                | Kind::Time
                | Kind::Enum
        );
    let text = !column.ty.array && matches!(column.ty.kind, Kind::Text);
    match suffix {
        "" | "_not" | "_in" | "_not_in" => true,
        "_lt" | "_lte" | "_gt" | "_gte" => ordered,
        _ => text,
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, FilterError> {
    v.as_object().ok_or_else(|| FilterError::Type {
        path: path.to_owned(),
        expected: "an input object",
        found: type_name(v),
    })
}

/// `AND`/`OR`/`NOT` take a list, or (as GraphQL input coercion allows) a single object.
fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

impl Limits {
    /// Refuses a list longer than the bound, before any of its items is parsed.
    fn check(&self, v: &Value, path: &str) -> Result<(), FilterError> {
        match v {
            Value::Array(items) if items.len() > self.max_list_items => {
                Err(FilterError::ListTooLong {
                    path: path.to_owned(),
                    items: items.len(),
                    limit: self.max_list_items,
                })
            }
            _ => Ok(()),
        }
    }
}

/// How deep `AND`/`OR`/`NOT` and relation conditions may nest: bounds recursion on hostile
/// input long before the stack is at risk.
pub const MAX_DEPTH: usize = 32;

fn datum(column: &Column, v: &Value, path: &str) -> Result<Datum, FilterError> {
    let value_error = |message: String| FilterError::Value {
        path: path.to_owned(),
        message,
    };
    if column.ty.array && !matches!(v, Value::Array(_) | Value::Null) {
        return Err(FilterError::Type {
            path: path.to_owned(),
            expected: "a list (the column is an array)",
            found: type_name(v),
        });
    }
    let d = parse_input(column.ty.kind, v).map_err(|e| value_error(e.to_string()))?;
    // An unknown label would make Postgres reject the whole query, not just this condition.
    if column.ty.kind == Kind::Enum && !column.ty.enum_values.is_empty() {
        let mut bad = None;
        check_labels(&d, &column.ty.enum_values, &mut bad);
        if let Some(label) = bad {
            return Err(value_error(format!(
                "{label:?} is not a value of enum {}; expected one of {}",
                column.ty.name,
                column.ty.enum_values.join(", ")
            )));
        }
    }
    Ok(d)
}

fn check_labels(d: &Datum, labels: &[String], bad: &mut Option<String>) {
    match d {
        Datum::Text(s) if !labels.contains(s) => *bad = Some(s.clone()),
        Datum::Array(items) => items.iter().for_each(|i| check_labels(i, labels, bad)),
        _ => {}
    }
}

/// Parses a `<table>WhereInput` value. Relation conditions need the catalog
/// ([`parse_where_in`]); here their keys are unknown fields.
pub fn parse_where(table: &Table, input: &Value) -> Result<RowFilter, FilterError> {
    Parser {
        catalog: None,
        limits: Limits::default(),
    }
    .row(table, input, "where", 0)
}

/// Parses a `<table>WhereInput` value, relation conditions included.
pub fn parse_where_in(
    catalog: &Catalog,
    table: &Table,
    input: &Value,
) -> Result<RowFilter, FilterError> {
    parse_where_limited(catalog, table, input, Limits::default())
}

/// [`parse_where_in`] for client input: lists longer than `limits` allow are refused.
pub fn parse_where_limited(
    catalog: &Catalog,
    table: &Table,
    input: &Value,
    limits: Limits,
) -> Result<RowFilter, FilterError> {
    Parser {
        catalog: Some(catalog),
        limits,
    }
    .row(table, input, "where", 0)
}

/// What a filter key names: a column with an operator suffix, or a relation condition.
enum Key<'t> {
    Column(usize, &'t Column, &'static str),
    Relation(Relation, Quantifier),
}

struct Parser<'c> {
    catalog: Option<&'c Catalog>,
    limits: Limits,
}

impl Parser<'_> {
    fn row(
        &self,
        table: &Table,
        input: &Value,
        path: &str,
        depth: usize,
    ) -> Result<RowFilter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::Value {
                path: path.to_owned(),
                message: format!("filters nest at most {MAX_DEPTH} levels deep"),
            });
        }
        if input.is_null() {
            return Ok(RowFilter::always());
        }
        let obj = object(input, path)?;
        let mut conds = Vec::with_capacity(obj.len());
        // Computed once per object, and only when a key is not a plain column.
        let mut rels: Option<Vec<Relation>> = None;
        for (key, v) in obj {
            let here = format!("{path}.{key}");
            match key.as_str() {
                "AND" | "OR" | "NOT" => {
                    self.limits.check(v, &here)?;
                    let items = list(v)
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| self.row(table, item, &format!("{here}[{i}]"), depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    conds.push(match key.as_str() {
                        "AND" => RowFilter::All(items),
                        "OR" => RowFilter::Any(items),
                        _ => RowFilter::None(items),
                    });
                }
                _ => match self.split_key(table, key, v, &mut rels) {
                    Some(Key::Column(column, col, suffix)) => {
                        self.limits.check(v, &here)?;
                        conds.push(parse_condition(column, col, suffix, v, &here)?)
                    }
                    Some(Key::Relation(relation, kind)) => {
                        conds.push(self.relation(relation, kind, v, &here, depth)?)
                    }
                    None => {
                        return Err(FilterError::UnknownField {
                            path: here,
                            field: key.clone(),
                            type_name: format!("{}WhereInput", table.gql_name),
                        })
                    }
                },
            }
        }
        Ok(if conds.len() == 1 {
            conds.pop().unwrap_or_else(RowFilter::always)
        } else {
            RowFilter::All(conds)
        })
    }

    /// Columns first; a Directus-style relation column (`author`) is the relation when given an
    /// object, the column otherwise.
    fn split_key<'t>(
        &self,
        table: &'t Table,
        key: &str,
        v: &Value,
        rels: &mut Option<Vec<Relation>>,
    ) -> Option<Key<'t>> {
        let column = split_column_key(table, key);
        if let Some(Key::Column(_, _, "")) = &column {
            let is_relation_column = v.is_object() && self.relation_for(table, key, rels).is_some();
            if !is_relation_column {
                return column;
            }
        }
        if let Some(found) = self.relation_for(table, key, rels) {
            return Some(found);
        }
        column
    }

    fn relation_for<'t>(
        &self,
        table: &Table,
        key: &str,
        rels: &mut Option<Vec<Relation>>,
    ) -> Option<Key<'t>> {
        let catalog = self.catalog?;
        let rels = rels.get_or_insert_with(|| relations(catalog, table));
        rels.iter().find_map(|r| {
            let kind = match r.kind {
                RelationKind::ManyToOne => (key == r.name).then_some(Quantifier::Single)?,
                RelationKind::OneToMany => match key.strip_prefix(r.name.as_str())? {
                    "_some" => Quantifier::Some,
                    "_every" => Quantifier::Every,
                    "_none" => Quantifier::None,
                    _ => return None,
                },
            };
            Some(Key::Relation(r.clone(), kind))
        })
    }

    fn relation(
        &self,
        relation: Relation,
        kind: Quantifier,
        v: &Value,
        path: &str,
        depth: usize,
    ) -> Result<RowFilter, FilterError> {
        let target = self
            .catalog
            .and_then(|c| c.table_by_oid(relation.target_oid))
            .ok_or_else(|| FilterError::Value {
                path: path.to_owned(),
                message: format!("relation {:?} has no table", relation.name),
            })?
            .clone();
        // `author: null`: no related row, i.e. the foreign key is NULL.
        if v.is_null() && kind == Quantifier::Single {
            let nulls: Vec<RowFilter> = relation
                .local_columns
                .iter()
                .map(|&column| RowFilter::IsNull {
                    column,
                    negated: false,
                })
                .collect();
            return Ok(RowFilter::All(nulls));
        }
        object(v, path)?;
        let filter = self.row(&target, v, path, depth + 1)?;
        Ok(RowFilter::Relation {
            relation: RelationRef { relation, target },
            kind,
            filter: Box::new(filter),
        })
    }

    fn subscription(
        &self,
        table: &Table,
        input: &Value,
        path: &str,
        depth: usize,
    ) -> Result<EventFilter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::Value {
                path: path.to_owned(),
                message: format!("filters nest at most {MAX_DEPTH} levels deep"),
            });
        }
        if input.is_null() {
            return Ok(EventFilter::All(vec![]));
        }
        let obj = object(input, path)?;
        let mut conds = Vec::with_capacity(obj.len());
        for (key, v) in obj {
            let here = format!("{path}.{key}");
            self.limits.check(v, &here)?;
            let cond = match key.as_str() {
                "AND" | "OR" | "NOT" => {
                    let items = list(v)
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| {
                            self.subscription(table, item, &format!("{here}[{i}]"), depth + 1)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    match key.as_str() {
                        "AND" => EventFilter::All(items),
                        "OR" => EventFilter::Any(items),
                        _ => EventFilter::None(items),
                    }
                }
                "mutation_in" => EventFilter::OpIn(
                    list(v)
                        .into_iter()
                        .map(|m| mutation_type(m, &here))
                        .collect::<Result<_, _>>()?,
                ),
                "node" => EventFilter::Node(self.row(table, v, &here, depth + 1)?),
                "updatedFields_contains" => EventFilter::UpdatedFields {
                    columns: field_names(table, v, &here)?,
                    mode: FieldsMatch::Every,
                },
                "updatedFields_contains_every" => EventFilter::UpdatedFields {
                    columns: field_names(table, v, &here)?,
                    mode: FieldsMatch::Every,
                },
                "updatedFields_contains_some" => EventFilter::UpdatedFields {
                    columns: field_names(table, v, &here)?,
                    mode: FieldsMatch::Some,
                },
                _ => {
                    return Err(FilterError::UnknownField {
                        path: here,
                        field: key.clone(),
                        type_name: format!("{}SubscriptionWhereInput", table.gql_name),
                    })
                }
            };
            conds.push(cond);
        }
        Ok(EventFilter::All(conds))
    }
}

/// Splits `title_not_in` into the column and the operator suffix.
fn split_column_key<'t>(table: &'t Table, key: &str) -> Option<Key<'t>> {
    if let Some((i, c)) = table.column_by_gql(key) {
        return Some(Key::Column(i, c, ""));
    }
    SUFFIXES.iter().find_map(|suffix| {
        let base = key.strip_suffix(suffix)?;
        table
            .column_by_gql(base)
            .map(|(i, c)| Key::Column(i, c, suffix))
    })
}

fn parse_condition(
    column: usize,
    col: &Column,
    suffix: &'static str,
    v: &Value,
    path: &str,
) -> Result<RowFilter, FilterError> {
    if !operator_applies(suffix, col) {
        return Err(FilterError::OperatorType {
            path: path.to_owned(),
            operator: suffix.trim_start_matches('_').to_owned(),
            column: col.gql_name.clone(),
            pg_type: col.ty.name.clone(),
        });
    }
    let negated = suffix.starts_with("_not");
    Ok(match suffix {
        "" | "_not" if v.is_null() => RowFilter::IsNull { column, negated },
        "" | "_not" => RowFilter::Cmp {
            column,
            op: if negated { CmpOp::Ne } else { CmpOp::Eq },
            value: datum(col, v, path)?,
        },
        "_in" | "_not_in" => {
            let Value::Array(items) = v else {
                return Err(FilterError::Type {
                    path: path.to_owned(),
                    expected: "a list",
                    found: type_name(v),
                });
            };
            let values = items
                .iter()
                .enumerate()
                .map(|(i, item)| datum(col, item, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            RowFilter::In {
                column,
                values,
                negated,
            }
        }
        "_lt" | "_lte" | "_gt" | "_gte" => {
            if v.is_null() {
                return Err(FilterError::Type {
                    path: path.to_owned(),
                    expected: "a value (null only compares with equality)",
                    found: type_name(v),
                });
            }
            RowFilter::Cmp {
                column,
                op: match suffix {
                    "_lt" => CmpOp::Lt,
                    "_lte" => CmpOp::Lte,
                    "_gt" => CmpOp::Gt,
                    _ => CmpOp::Gte,
                },
                value: datum(col, v, path)?,
            }
        }
        _ => {
            let Value::String(s) = v else {
                return Err(FilterError::Type {
                    path: path.to_owned(),
                    expected: "a string",
                    found: type_name(v),
                });
            };
            let op = if suffix.ends_with("contains") {
                TextOp::Contains
            } else if suffix.ends_with("starts_with") {
                TextOp::StartsWith
            } else {
                TextOp::EndsWith
            };
            RowFilter::Text {
                column,
                op,
                value: s.clone(),
                negated,
            }
        }
    })
}

fn mutation_type(v: &Value, path: &str) -> Result<Op, FilterError> {
    match v.as_str() {
        Some("CREATED") => Ok(Op::Create),
        Some("UPDATED") => Ok(Op::Update),
        Some("DELETED") => Ok(Op::Delete),
        _ => Err(FilterError::Type {
            path: path.to_owned(),
            expected: "CREATED, UPDATED or DELETED",
            found: type_name(v),
        }),
    }
}

fn field_names(table: &Table, v: &Value, path: &str) -> Result<Vec<usize>, FilterError> {
    list(v)
        .into_iter()
        .map(|item| {
            let name = item.as_str().ok_or_else(|| FilterError::Type {
                path: path.to_owned(),
                expected: "a field name",
                found: type_name(item),
            })?;
            table
                .column_by_gql(name)
                .map(|(i, _)| i)
                .ok_or_else(|| FilterError::UnknownField {
                    path: path.to_owned(),
                    field: name.to_owned(),
                    type_name: table.gql_name.clone(),
                })
        })
        .collect()
}

/// Parses a Prisma `<table>SubscriptionWhereInput`. Prisma subscriptions never see truncate.
/// Relation conditions need the catalog ([`parse_subscription_where_in`]).
pub fn parse_subscription_where(table: &Table, input: &Value) -> Result<EventFilter, FilterError> {
    subscription_where(
        Parser {
            catalog: None,
            limits: Limits::default(),
        },
        table,
        input,
    )
}

/// Parses a Prisma `<table>SubscriptionWhereInput`, relation conditions included.
pub fn parse_subscription_where_in(
    catalog: &Catalog,
    table: &Table,
    input: &Value,
) -> Result<EventFilter, FilterError> {
    parse_subscription_where_limited(catalog, table, input, Limits::default())
}

/// [`parse_subscription_where_in`] for client input: lists longer than `limits` allow are
/// refused.
pub fn parse_subscription_where_limited(
    catalog: &Catalog,
    table: &Table,
    input: &Value,
    limits: Limits,
) -> Result<EventFilter, FilterError> {
    subscription_where(
        Parser {
            catalog: Some(catalog),
            limits,
        },
        table,
        input,
    )
}

fn subscription_where(
    parser: Parser<'_>,
    table: &Table,
    input: &Value,
) -> Result<EventFilter, FilterError> {
    let inner = parser.subscription(table, input, "where", 0)?;
    check_updated_fields(&inner, &[Op::Create, Op::Update, Op::Delete])?;
    Ok(EventFilter::All(vec![
        EventFilter::OpIn(vec![Op::Create, Op::Update, Op::Delete]),
        inner,
    ]))
}

/// Prisma 1's rule: an `updatedFields_*` condition is an error wherever the operations that can
/// reach it include CREATED or DELETED. `ops` narrows through `AND` siblings' `mutation_in`.
/// The operations an event can have if it satisfies `f` (`{ mutation_in: [UPDATED] }` nested
/// in `AND` lists or single-key objects narrows just as a direct sibling does).
fn forced_ops(f: &EventFilter) -> Vec<Op> {
    const ALL: [Op; 4] = [Op::Create, Op::Update, Op::Delete, Op::Truncate];
    match f {
        EventFilter::OpIn(ops) => ops.clone(),
        EventFilter::All(items) => ALL
            .into_iter()
            .filter(|o| items.iter().all(|i| forced_ops(i).contains(o)))
            .collect(),
        EventFilter::Any(items) if !items.is_empty() => ALL
            .into_iter()
            .filter(|o| items.iter().any(|i| forced_ops(i).contains(o)))
            .collect(),
        _ => ALL.to_vec(),
    }
}

fn check_updated_fields(f: &EventFilter, ops: &[Op]) -> Result<(), FilterError> {
    match f {
        EventFilter::All(items) => {
            let mut narrowed: Vec<Op> = ops.to_vec();
            for item in items {
                let forced = forced_ops(item);
                narrowed.retain(|o| forced.contains(o));
            }
            items
                .iter()
                .try_for_each(|i| check_updated_fields(i, &narrowed))
        }
        EventFilter::Any(items) | EventFilter::None(items) => {
            items.iter().try_for_each(|i| check_updated_fields(i, ops))
        }
        EventFilter::UpdatedFields { .. } => {
            if ops.iter().any(|o| *o != Op::Update) {
                Err(FilterError::UpdatedFieldsNeedsUpdate)
            } else {
                Ok(())
            }
        }
        EventFilter::OpIn(_) | EventFilter::Node(_) => Ok(()),
    }
}

/// Directus' `<table>_mutated(event:, where:)`. Relation conditions need the catalog
/// ([`parse_mutated_in`]).
pub fn parse_mutated(
    table: &Table,
    event: Option<&str>,
    input: Option<&Value>,
) -> Result<EventFilter, FilterError> {
    mutated(
        Parser {
            catalog: None,
            limits: Limits::default(),
        },
        table,
        event,
        input,
    )
}

/// Directus' `<table>_mutated(event:, where:)`, relation conditions included.
pub fn parse_mutated_in(
    catalog: &Catalog,
    table: &Table,
    event: Option<&str>,
    input: Option<&Value>,
) -> Result<EventFilter, FilterError> {
    parse_mutated_limited(catalog, table, event, input, Limits::default())
}

/// [`parse_mutated_in`] for client input: lists longer than `limits` allow are refused.
pub fn parse_mutated_limited(
    catalog: &Catalog,
    table: &Table,
    event: Option<&str>,
    input: Option<&Value>,
    limits: Limits,
) -> Result<EventFilter, FilterError> {
    mutated(
        Parser {
            catalog: Some(catalog),
            limits,
        },
        table,
        event,
        input,
    )
}

fn mutated(
    parser: Parser<'_>,
    table: &Table,
    event: Option<&str>,
    input: Option<&Value>,
) -> Result<EventFilter, FilterError> {
    let mut conds = Vec::new();
    if let Some(e) = event {
        let op = Op::parse(e).ok_or_else(|| FilterError::Event(e.to_owned()))?;
        conds.push(EventFilter::OpIn(vec![op]));
    }
    if let Some(w) = input.filter(|w| !w.is_null()) {
        conds.push(EventFilter::Node(parser.row(table, w, "where", 0)?));
    }
    Ok(EventFilter::All(conds))
}
