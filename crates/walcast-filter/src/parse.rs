//! Building filters from client input (already JSON), validated against the table.

use serde_json::{Map, Value};
use walcast_model::{value::parse_input, Column, Kind, Op, Table};

use crate::ast::{CmpOp, EventFilter, FieldsMatch, RowFilter, TextOp};

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
fn list<'a>(v: &'a Value) -> Vec<&'a Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// Splits `title_not_in` into the column and the operator suffix.
fn split_key<'t>(table: &'t Table, key: &str) -> Option<(usize, &'t Column, &'static str)> {
    if let Some((i, c)) = table.column_by_gql(key) {
        return Some((i, c, ""));
    }
    SUFFIXES.iter().find_map(|suffix| {
        let base = key.strip_suffix(suffix)?;
        table.column_by_gql(base).map(|(i, c)| (i, c, *suffix))
    })
}

fn datum(column: &Column, v: &Value, path: &str) -> Result<walcast_model::Datum, FilterError> {
    if column.ty.array {
        // Arrays compare as whole values in their JSON form.
        return Ok(walcast_model::Datum::Json(v.clone()));
    }
    parse_input(column.ty.kind, v).map_err(|e| FilterError::Value {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Parses a `<table>WhereInput` value.
pub fn parse_where(table: &Table, input: &Value) -> Result<RowFilter, FilterError> {
    parse_where_at(table, input, "where")
}

fn parse_where_at(table: &Table, input: &Value, path: &str) -> Result<RowFilter, FilterError> {
    if input.is_null() {
        return Ok(RowFilter::always());
    }
    let obj = object(input, path)?;
    let mut conds = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let here = format!("{path}.{key}");
        match key.as_str() {
            "AND" | "OR" | "NOT" => {
                let items = list(v)
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| parse_where_at(table, item, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                conds.push(match key.as_str() {
                    "AND" => RowFilter::All(items),
                    "OR" => RowFilter::Any(items),
                    _ => RowFilter::None(items),
                });
            }
            _ => conds.push(parse_condition(table, key, v, &here)?),
        }
    }
    Ok(if conds.len() == 1 {
        conds.pop().unwrap_or_else(RowFilter::always)
    } else {
        RowFilter::All(conds)
    })
}

fn parse_condition(
    table: &Table,
    key: &str,
    v: &Value,
    path: &str,
) -> Result<RowFilter, FilterError> {
    let Some((column, col, suffix)) = split_key(table, key) else {
        return Err(FilterError::UnknownField {
            path: path.to_owned(),
            field: key.to_owned(),
            type_name: format!("{}WhereInput", table.gql_name),
        });
    };
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
        "_lt" | "_lte" | "_gt" | "_gte" => RowFilter::Cmp {
            column,
            op: match suffix {
                "_lt" => CmpOp::Lt,
                "_lte" => CmpOp::Lte,
                "_gt" => CmpOp::Gt,
                _ => CmpOp::Gte,
            },
            value: datum(col, v, path)?,
        },
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
pub fn parse_subscription_where(table: &Table, input: &Value) -> Result<EventFilter, FilterError> {
    let inner = parse_sub_at(table, input, "where")?;
    check_updated_fields(&inner, &[Op::Create, Op::Update, Op::Delete])?;
    Ok(EventFilter::All(vec![
        EventFilter::OpIn(vec![Op::Create, Op::Update, Op::Delete]),
        inner,
    ]))
}

fn parse_sub_at(table: &Table, input: &Value, path: &str) -> Result<EventFilter, FilterError> {
    if input.is_null() {
        return Ok(EventFilter::All(vec![]));
    }
    let obj = object(input, path)?;
    let mut conds = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let here = format!("{path}.{key}");
        let cond = match key.as_str() {
            "AND" | "OR" | "NOT" => {
                let items = list(v)
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| parse_sub_at(table, item, &format!("{here}[{i}]")))
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
            "node" => EventFilter::Node(parse_where_at(table, v, &here)?),
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

/// Prisma 1's rule: an `updatedFields_*` condition is an error wherever the operations that can
/// reach it include CREATED or DELETED. `ops` narrows through `AND` siblings' `mutation_in`.
fn check_updated_fields(f: &EventFilter, ops: &[Op]) -> Result<(), FilterError> {
    match f {
        EventFilter::All(items) => {
            let mut narrowed: Vec<Op> = ops.to_vec();
            for item in items {
                if let EventFilter::OpIn(allowed) = item {
                    narrowed.retain(|o| allowed.contains(o));
                }
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

/// Directus' `<table>_mutated(event:, where:)`.
pub fn parse_mutated(
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
        conds.push(EventFilter::Node(parse_where(table, w)?));
    }
    Ok(EventFilter::All(conds))
}
