//! Directus filter rules translated into walcast's filter language (`<table>WhereInput`), over
//! what the caller's schema shows. The result goes through the same parser, subscription index,
//! permissions and relation batching as a GraphQL `where:`; a rule walcast does not support is
//! refused by name.

use serde_json::{json, Value};
use walcast_filter::parse::operator_applies;
use walcast_graphql::TableInfo;
use walcast_model::Kind;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("filter: unknown field {0:?} (or not readable with this token)")]
    UnknownField(String),
    #[error("filter: operator {0} is not supported by walcast")]
    Unsupported(String),
    #[error("filter: operator {op} does not apply to field {field:?}")]
    NotApplicable { op: String, field: String },
    #[error("filter: {0}")]
    Shape(String),
    #[error("filter: dynamic variable {0} is not supported")]
    Dynamic(String),
    #[error("filter: nested too deeply")]
    TooDeep,
}

/// Deeper rules than this are refused before they reach the filter parser's own limit.
const MAX_DEPTH: usize = 24;

/// `filter` as a `<table>WhereInput` value for `t`.
pub fn translate(t: &TableInfo, filter: &Value) -> Result<Value, FilterError> {
    rules(t, filter, 0)
}

fn all(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        json!({ "AND": parts })
    }
}

fn rules(t: &TableInfo, filter: &Value, depth: usize) -> Result<Value, FilterError> {
    if depth > MAX_DEPTH {
        return Err(FilterError::TooDeep);
    }
    let Value::Object(o) = filter else {
        return Err(FilterError::Shape(format!(
            "expected an object of rules, found {filter}"
        )));
    };
    let mut parts = Vec::new();
    for (key, value) in o {
        match key.as_str() {
            "_and" | "_or" => {
                let Value::Array(list) = value else {
                    return Err(FilterError::Shape(format!("{key} takes a list of rules")));
                };
                let list = list
                    .iter()
                    .map(|r| rules(t, r, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push(json!({ if key == "_and" { "AND" } else { "OR" }: list }));
            }
            k if k.starts_with('_') => return Err(FilterError::Unsupported(k.to_owned())),
            field => parts.push(field_rule(t, field, value, depth)?),
        }
    }
    Ok(all(parts))
}

fn field_rule(
    t: &TableInfo,
    field: &str,
    value: &Value,
    depth: usize,
) -> Result<Value, FilterError> {
    let column = t.column(field).or_else(|| {
        t.columns.iter().find(|c| {
            t.table
                .columns
                .get(c.index)
                .is_some_and(|col| col.name == field)
        })
    });
    if let Some(c) = column {
        let col = t
            .table
            .columns
            .get(c.index)
            .ok_or_else(|| FilterError::UnknownField(field.to_owned()))?;
        if c.array {
            return Err(FilterError::NotApplicable {
                op: "filter".into(),
                field: field.to_owned(),
            });
        }
        let Value::Object(ops) = value else {
            return Err(FilterError::Shape(format!(
                "field {field:?} takes an object of operators such as {{\"_eq\": …}}"
            )));
        };
        let text = col.ty.kind == Kind::Text;
        let mut parts = Vec::new();
        for (op, arg) in ops {
            parts.push(operator(&c.name, col, text, op, arg)?);
        }
        return Ok(all(parts));
    }
    let Some(rel) = t.relation(field) else {
        return Err(FilterError::UnknownField(field.to_owned()));
    };
    let Some(target) = rel.target() else {
        return Err(FilterError::UnknownField(field.to_owned()));
    };
    let name = &rel.name;
    if rel.is_to_one() {
        return Ok(json!({ name.to_string(): rules(&target, value, depth + 1)? }));
    }
    // To-many: `_some` / `_none`, or rules that some related item must match (as Directus).
    let Value::Object(o) = value else {
        return Err(FilterError::Shape(format!(
            "relation {field:?} takes an object of rules"
        )));
    };
    let quantified = o.keys().any(|k| k == "_some" || k == "_none");
    if !quantified {
        return Ok(json!({ format!("{name}_some"): rules(&target, value, depth + 1)? }));
    }
    let mut parts = Vec::new();
    for (q, sub) in o {
        match q.as_str() {
            "_some" | "_none" => {
                parts.push(json!({ format!("{name}{q}"): rules(&target, sub, depth + 1)? }))
            }
            other => {
                return Err(FilterError::Shape(format!(
                    "relation {field:?}: {other:?} cannot stand beside _some or _none"
                )))
            }
        }
    }
    Ok(all(parts))
}

/// A literal value; Directus' dynamic variables (`$CURRENT_USER`, `$NOW`) are refused by name.
fn literal(v: &Value) -> Result<Value, FilterError> {
    match v {
        Value::String(s) if s.starts_with("$CURRENT_") || s.starts_with("$NOW") => {
            Err(FilterError::Dynamic(s.clone()))
        }
        Value::Object(_) => Err(FilterError::Shape(format!(
            "expected a value, found the object {v}"
        ))),
        Value::Array(items) => Ok(Value::Array(
            items.iter().map(literal).collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

fn truth(op: &str, v: &Value) -> Result<bool, FilterError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        _ => Err(FilterError::Shape(format!("{op} takes true or false"))),
    }
}

/// `_in` takes a list, or Directus' comma-separated text.
fn values(op: &str, v: &Value) -> Result<Value, FilterError> {
    match v {
        Value::Array(_) => literal(v),
        Value::String(s) => Ok(Value::Array(
            s.split(',').map(|p| Value::String(p.to_owned())).collect(),
        )),
        _ => Err(FilterError::Shape(format!("{op} takes a list"))),
    }
}

fn pair(op: &str, v: &Value) -> Result<(Value, Value), FilterError> {
    match values(op, v)? {
        Value::Array(mut two) if two.len() == 2 => {
            let hi = two.pop().unwrap_or(Value::Null);
            let lo = two.pop().unwrap_or(Value::Null);
            Ok((lo, hi))
        }
        _ => Err(FilterError::Shape(format!(
            "{op} takes a list of two values"
        ))),
    }
}

fn operator(
    name: &str,
    col: &walcast_model::Column,
    text: bool,
    op: &str,
    arg: &Value,
) -> Result<Value, FilterError> {
    let cond = |suffix: &str, v: Value| -> Result<Value, FilterError> {
        if !operator_applies(suffix, col) {
            return Err(FilterError::NotApplicable {
                op: op.to_owned(),
                field: name.to_owned(),
            });
        }
        Ok(json!({ format!("{name}{suffix}"): v }))
    };
    let or = |parts: Vec<Value>| json!({ "OR": parts });
    let and = |parts: Vec<Value>| json!({ "AND": parts });
    match op {
        "_eq" => cond("", literal(arg)?),
        "_neq" => cond("_not", literal(arg)?),
        "_lt" | "_lte" | "_gt" | "_gte" => cond(op, literal(arg)?),
        "_in" => cond("_in", values(op, arg)?),
        "_nin" => cond("_not_in", values(op, arg)?),
        "_null" => cond(if truth(op, arg)? { "" } else { "_not" }, Value::Null),
        "_nnull" => cond(if truth(op, arg)? { "_not" } else { "" }, Value::Null),
        "_contains" => cond("_contains", literal(arg)?),
        "_ncontains" => cond("_not_contains", literal(arg)?),
        "_starts_with" => cond("_starts_with", literal(arg)?),
        "_nstarts_with" => cond("_not_starts_with", literal(arg)?),
        "_ends_with" => cond("_ends_with", literal(arg)?),
        "_nends_with" => cond("_not_ends_with", literal(arg)?),
        "_between" => {
            let (lo, hi) = pair(op, arg)?;
            Ok(and(vec![cond("_gte", lo)?, cond("_lte", hi)?]))
        }
        "_nbetween" => {
            let (lo, hi) = pair(op, arg)?;
            Ok(or(vec![cond("_lt", lo)?, cond("_gt", hi)?]))
        }
        // Empty: null, or the empty string for text.
        "_empty" | "_nempty" => {
            let empty = truth(op, arg)? == (op == "_empty");
            match (empty, text) {
                (true, true) => Ok(or(vec![cond("", Value::Null)?, cond("", json!(""))?])),
                (true, false) => cond("", Value::Null),
                (false, true) => Ok(and(vec![
                    cond("_not", Value::Null)?,
                    cond("_not", json!(""))?,
                ])),
                (false, false) => cond("_not", Value::Null),
            }
        }
        other => Err(FilterError::Unsupported(other.to_owned())),
    }
}

/// Rules for one item: its primary key equal to `key`.
pub fn item_rule(t: &TableInfo, key: &Value) -> Result<Value, FilterError> {
    let Some(c) = t.id_column() else {
        return Err(FilterError::Shape(format!(
            "{} has no single-column primary key to pick an item by",
            t.name
        )));
    };
    Ok(json!({ c.name.to_string(): literal(&key_text(key))? }))
}

/// Keys go to the `ID` type as text.
pub fn key_text(key: &Value) -> Value {
    match key {
        Value::Number(n) => Value::String(n.to_string()),
        other => other.clone(),
    }
}

/// Combines rules into one (`AND`); none is no filter.
pub fn combine(parts: Vec<Value>) -> Option<Value> {
    match parts.len() {
        0 => None,
        _ => Some(all(parts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::directus::testing::blog;

    fn tr(filter: Value) -> Result<Value, FilterError> {
        let info = blog();
        let articles = info.table("articles").expect("articles").clone();
        translate(&articles, &filter)
    }

    #[test]
    fn comparison_rules() {
        assert_eq!(
            tr(json!({"status": {"_eq": "published"}})),
            Ok(json!({"status": "published"}))
        );
        assert_eq!(
            tr(json!({"status": {"_neq": "draft"}})),
            Ok(json!({"status_not": "draft"}))
        );
        assert_eq!(tr(json!({"id": {"_gte": 3}})), Ok(json!({"id_gte": 3})));
        assert_eq!(
            tr(json!({"id": {"_in": [1, 2]}})),
            Ok(json!({"id_in": [1, 2]}))
        );
        assert_eq!(
            tr(json!({"id": {"_nin": "1,2"}})),
            Ok(json!({"id_not_in": ["1", "2"]}))
        );
        assert_eq!(
            tr(json!({"author_id": {"_null": true}})),
            Ok(json!({"author_id": null}))
        );
        assert_eq!(
            tr(json!({"author_id": {"_nnull": true}})),
            Ok(json!({"author_id_not": null}))
        );
        assert_eq!(
            tr(json!({"title": {"_contains": "x"}})),
            Ok(json!({"title_contains": "x"}))
        );
        assert_eq!(
            tr(json!({"title": {"_ncontains": "x"}})),
            Ok(json!({"title_not_contains": "x"}))
        );
        assert_eq!(
            tr(json!({"title": {"_starts_with": "A"}})),
            Ok(json!({"title_starts_with": "A"}))
        );
        assert_eq!(
            tr(json!({"title": {"_ends_with": "z"}})),
            Ok(json!({"title_ends_with": "z"}))
        );
        assert_eq!(
            tr(json!({"id": {"_between": [2, 4]}})),
            Ok(json!({"AND": [{"id_gte": 2}, {"id_lte": 4}]}))
        );
        assert_eq!(
            tr(json!({"id": {"_nbetween": [2, 4]}})),
            Ok(json!({"OR": [{"id_lt": 2}, {"id_gt": 4}]}))
        );
        assert_eq!(
            tr(json!({"title": {"_empty": true}})),
            Ok(json!({"OR": [{"title": null}, {"title": ""}]}))
        );
        assert_eq!(
            tr(json!({"title": {"_nempty": true}})),
            Ok(json!({"AND": [{"title_not": null}, {"title_not": ""}]}))
        );
        assert_eq!(
            tr(json!({"author_id": {"_empty": true}})),
            Ok(json!({"author_id": null}))
        );
    }

    #[test]
    fn logical_and_relational_rules() {
        assert_eq!(
            tr(
                json!({"_or": [{"status": {"_eq": "a"}}, {"_and": [{"id": {"_gt": 1}}, {"id": {"_lt": 9}}]}]})
            ),
            Ok(json!({"OR": [{"status": "a"}, {"AND": [{"id_gt": 1}, {"id_lt": 9}]}]}))
        );
        assert_eq!(
            tr(json!({"status": {"_eq": "a"}, "id": {"_gt": 1}})),
            Ok(json!({"AND": [{"status": "a"}, {"id_gt": 1}]}))
        );
        assert_eq!(
            tr(json!({"author": {"name": {"_starts_with": "A"}}})),
            Ok(json!({"author": {"name_starts_with": "A"}}))
        );
        assert_eq!(
            tr(json!({"comments": {"_some": {"body": {"_contains": "thanks"}}}})),
            Ok(json!({"comments_some": {"body_contains": "thanks"}}))
        );
        assert_eq!(
            tr(json!({"comments": {"_none": {"body": {"_null": true}}}})),
            Ok(json!({"comments_none": {"body": null}}))
        );
        assert_eq!(
            tr(json!({"comments": {"body": {"_eq": "b"}}})),
            Ok(json!({"comments_some": {"body": "b"}}))
        );
    }

    #[test]
    fn unsupported_rules_are_refused_by_name() {
        assert_eq!(
            tr(json!({"title": {"_icontains": "x"}})),
            Err(FilterError::Unsupported("_icontains".into()))
        );
        assert_eq!(
            tr(json!({"title": {"_regex": "x"}})),
            Err(FilterError::Unsupported("_regex".into()))
        );
        assert_eq!(
            tr(json!({"_not": {}})),
            Err(FilterError::Unsupported("_not".into()))
        );
        assert_eq!(
            tr(json!({"secret": {"_eq": 1}})),
            Err(FilterError::UnknownField("secret".into()))
        );
        assert_eq!(
            tr(json!({"id": {"_contains": "1"}})),
            Err(FilterError::NotApplicable {
                op: "_contains".into(),
                field: "id".into()
            })
        );
        assert_eq!(
            tr(json!({"author_id": {"_eq": "$CURRENT_USER"}})),
            Err(FilterError::Dynamic("$CURRENT_USER".into()))
        );
        assert!(matches!(
            tr(json!({"title": "x"})),
            Err(FilterError::Shape(_))
        ));
        let mut deep = json!({"id": {"_eq": 1}});
        for _ in 0..40 {
            deep = json!({ "_and": [deep] });
        }
        assert_eq!(tr(deep), Err(FilterError::TooDeep));
    }
}
