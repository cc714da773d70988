//! Directus requests as GraphQL documents over the caller's schema: the same resolvers, row
//! filters, hidden columns, grants and relation batching as any GraphQL client gets.

use std::sync::Arc;

use juniper::http::GraphQLResponse;
use serde_json::{json, Value};
use walcast_graphql::{Ctx, Schema, TableInfo};

use super::codec::{code, Action, Items, Query};
use super::fields::{numeric_key, Selection};
use super::filter::{self, key_text};
use crate::request::{errors_json, variables, Request};

/// A refusal for the client: a Directus error code and a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// The table a collection names, as the caller's schema shows it. A table the caller may not
/// read is refused like one that does not exist, as Directus does.
pub fn table(schema: &Schema, collection: &str) -> Result<Arc<TableInfo>, Refusal> {
    let info = &schema.query_info;
    info.table(collection)
        .or_else(|| {
            info.tables
                .iter()
                .find(|t| t.table.name == collection && t.table.schema == "public")
        })
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                code::FORBIDDEN,
                format!(
                    "collection {collection:?} does not exist or is not readable with this token"
                ),
            )
        })
}

/// A GraphQL document given as the collection: `subscription {…}`, `{…}`, `query {…}`.
pub fn is_document(collection: &str) -> bool {
    collection.contains('{')
}

/// The query's filter (and `item`) as a `WhereInput` value.
pub fn where_of(
    t: &TableInfo,
    query: &Query,
    item: Option<&Value>,
) -> Result<Option<Value>, Refusal> {
    let invalid = |e: filter::FilterError| Refusal::new(code::INVALID_QUERY, e.to_string());
    let mut parts = Vec::new();
    if let Some(f) = &query.filter {
        parts.push(filter::translate(t, f).map_err(invalid)?);
    }
    if let Some(key) = item {
        parts.push(filter::item_rule(t, key).map_err(invalid)?);
    }
    Ok(filter::combine(parts))
}

pub fn selection(t: &Arc<TableInfo>, query: &Query) -> Result<Selection, Refusal> {
    Selection::parse(t, &query.fields).map_err(|e| Refusal::new(code::INVALID_QUERY, e.to_string()))
}

/// Directus' `sort` (`-date_created`) as walcast's `orderBy` (`date_created_DESC`).
fn order_by(sort: &[String]) -> Value {
    Value::Array(
        sort.iter()
            .map(|s| match s.strip_prefix('-') {
                Some(name) => Value::String(format!("{name}_DESC")),
                None => Value::String(s.clone()),
            })
            .collect(),
    )
}

/// `limit` and `offset` as `first` and `skip`; `-1` is no limit.
fn paging(query: &Query) -> Result<(Value, Value), Refusal> {
    let to_i32 = |what: &str, n: i64| {
        i32::try_from(n)
            .map(Value::from)
            .map_err(|_| Refusal::new(code::INVALID_QUERY, format!("{what} is out of range")))
    };
    let first = match query.limit {
        None | Some(-1) => Value::Null,
        Some(n) if n < 0 => {
            return Err(Refusal::new(
                code::INVALID_QUERY,
                "limit must be -1 or more",
            ))
        }
        Some(n) => to_i32("limit", n)?,
    };
    let skip = match query.offset {
        None => Value::Null,
        Some(n) if n < 0 => {
            return Err(Refusal::new(
                code::INVALID_QUERY,
                "offset must be 0 or more",
            ))
        }
        Some(n) => to_i32("offset", n)?,
    };
    Ok((first, skip))
}

/// Variables without the null ones: a missing optional variable is null, and juniper's JSON
/// reading takes no null where it expects a scalar.
pub fn variables_without_nulls(vars: Value) -> Value {
    match vars {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// Runs a query or mutation document; its `data`, or the first error's message.
async fn execute(
    schema: &Schema,
    ctx: &Ctx,
    doc: &str,
    vars: Value,
    code: &'static str,
) -> Result<Value, Refusal> {
    let request = Request {
        query: doc.to_owned(),
        variables: Some(variables_without_nulls(vars)),
        operation_name: None,
    };
    let vars =
        variables(&request).map_err(|e| Refusal::new(code::INVALID_PAYLOAD, e.to_string()))?;
    let result = juniper::execute(doc, None, schema, &vars, ctx).await;
    ctx.reads.finish().await;
    let first_message = |errors: &Value| {
        errors
            .get(0)
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("request failed")
            .to_owned()
    };
    match result {
        Ok(result) => {
            let resp = serde_json::to_value(GraphQLResponse::from_result(Ok(result)))
                .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))?;
            if let Some(errors) = resp.get("errors").filter(|e| !e.is_null()) {
                return Err(Refusal::new(code, first_message(errors)));
            }
            Ok(resp.get("data").cloned().unwrap_or(Value::Null))
        }
        Err(e) => Err(Refusal::new(code, first_message(&errors_json(e)))),
    }
}

/// The items a query selects now, and the stream position they were read at (for a gapless
/// subscription after them).
pub async fn read(
    schema: &Schema,
    ctx: &Ctx,
    t: &TableInfo,
    sel: &Selection,
    query: &Query,
    filter: Option<Value>,
) -> Result<(Value, String), Refusal> {
    let (first, skip) = paging(query)?;
    let doc = format!(
        "query($where: {w}, $orderBy: [String!], $first: Int, $skip: Int) {{ r: {n}(where: $where, orderBy: $orderBy, first: $first, skip: $skip) {s} c: _cursor }}",
        w = t.where_input,
        n = t.name,
        s = sel.graphql(),
    );
    let vars =
        json!({"where": filter, "orderBy": order_by(&query.sort), "first": first, "skip": skip});
    let mut data = execute(schema, ctx, &doc, vars, code::INVALID_QUERY).await?;
    let cursor = data
        .get("c")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut rows = data
        .get_mut("r")
        .map(Value::take)
        .unwrap_or(Value::Array(vec![]));
    if let Value::Array(items) = &mut rows {
        items.iter_mut().for_each(|i| sel.shape(i));
    }
    Ok((rows, cursor))
}

/// The subscription document of a collection: its events with `key`, `event` and the
/// selection as `data`, under the alias `s`.
pub fn subscription_doc(t: &TableInfo, sel: &Selection) -> String {
    format!(
        "subscription($where: {w}, $event: String, $after: String) {{ s: {m}(event: $event, where: $where, after: $after) {{ key event data {s} }} }}",
        w = t.where_input,
        m = t.mutated,
        s = sel.graphql(),
    )
}

/// A key as Directus gives it: a number for integer keys, an object for composite ones.
pub fn directus_key(key: &Value, numeric: bool) -> Value {
    let mut key = key.clone();
    if numeric {
        numeric_key(&mut key);
    } else if let Some(obj) = key
        .as_str()
        .filter(|s| s.starts_with('{'))
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        key = obj;
    }
    key
}

/// Answers an `items` message: its `data`.
pub async fn items(
    schema: &Schema,
    ctx: &Ctx,
    mutations: bool,
    msg: &Items,
) -> Result<Value, Refusal> {
    let t = table(schema, &msg.collection)?;
    let sel = selection(&t, &msg.query)?;
    let id_field = super::fields::id_field(&t);
    let keyed = |what: &str| {
        id_field.clone().ok_or_else(|| {
            Refusal::new(
                code::INVALID_PAYLOAD,
                format!("{what} needs a table with a single-column primary key"),
            )
        })
    };
    let keys: Vec<Value> = match (&msg.id, &msg.ids) {
        (Some(id), _) => vec![id.clone()],
        (None, Some(ids)) => ids.clone(),
        (None, None) => vec![],
    };
    let single = msg.id.is_some();
    let write_refused = |verb: &str, granted: bool| -> Result<(), Refusal> {
        if !mutations {
            return Err(Refusal::new(
                code::FORBIDDEN,
                format!("writes are off on this server (WALCAST_MUTATIONS=false): cannot {verb}"),
            ));
        }
        if !granted {
            return Err(Refusal::new(
                code::FORBIDDEN,
                format!("this token may not {verb} items of {:?}", msg.collection),
            ));
        }
        Ok(())
    };
    match msg.action {
        Action::Read => {
            if single {
                keyed("reading by id")?;
                let doc = format!(
                    "query($id: ID!) {{ r: {}(id: $id) {} }}",
                    t.by_id,
                    sel.graphql()
                );
                let mut data = execute(
                    schema,
                    ctx,
                    &doc,
                    json!({"id": key_text(&keys[0])}),
                    code::INVALID_QUERY,
                )
                .await?;
                let mut item = data.get_mut("r").map(Value::take).unwrap_or(Value::Null);
                if item.is_null() {
                    return Err(Refusal::new(
                        code::FORBIDDEN,
                        "item does not exist or is not readable with this token",
                    ));
                }
                sel.shape(&mut item);
                return Ok(item);
            }
            let mut filter = where_of(&t, &msg.query, None)?;
            if msg.ids.is_some() {
                let (k, _) = keyed("reading by ids")?;
                let by_ids =
                    json!({ format!("{k}_in"): keys.iter().map(key_text).collect::<Vec<_>>() });
                filter = filter::combine(filter.into_iter().chain([by_ids]).collect());
            }
            let (rows, _) = read(schema, ctx, &t, &sel, &msg.query, filter).await?;
            Ok(rows)
        }
        Action::Create => {
            write_refused("create", t.grants.insert)?;
            let (list, many) = match &msg.data {
                Some(Value::Array(list)) => (list.clone(), true),
                Some(obj @ Value::Object(_)) => (vec![obj.clone()], false),
                _ => {
                    return Err(Refusal::new(
                        code::INVALID_PAYLOAD,
                        "create needs \"data\": an item or a list of items",
                    ))
                }
            };
            let calls = (0..list.len())
                .map(|i| {
                    format!(
                        "m{i}: create_{}_item(data: $d{i}) {}",
                        t.name,
                        sel.graphql()
                    )
                })
                .collect::<Vec<_>>();
            let params = (0..list.len())
                .map(|i| format!("$d{i}: {}!", t.input))
                .collect::<Vec<_>>();
            let mut vars = serde_json::Map::new();
            for (i, d) in list.into_iter().enumerate() {
                vars.insert(format!("d{i}"), d);
            }
            write(
                schema,
                ctx,
                &sel,
                &params,
                &calls,
                Value::Object(vars),
                many,
            )
            .await
        }
        Action::Update => {
            write_refused("update", t.grants.update)?;
            keyed("update")?;
            let Some(data) = msg.data.clone().filter(Value::is_object) else {
                return Err(Refusal::new(
                    code::INVALID_PAYLOAD,
                    "update needs \"data\": the fields to change",
                ));
            };
            if keys.is_empty() {
                return Err(Refusal::new(
                    code::INVALID_PAYLOAD,
                    "update needs \"id\" or \"ids\" (updates by query are not supported)",
                ));
            }
            let calls = (0..keys.len())
                .map(|i| {
                    format!(
                        "m{i}: update_{}_item(id: $i{i}, data: $d) {}",
                        t.name,
                        sel.graphql()
                    )
                })
                .collect::<Vec<_>>();
            let mut params = vec![format!("$d: {}!", t.input)];
            params.extend((0..keys.len()).map(|i| format!("$i{i}: ID!")));
            let mut vars = serde_json::Map::new();
            vars.insert("d".into(), data);
            for (i, k) in keys.iter().enumerate() {
                vars.insert(format!("i{i}"), key_text(k));
            }
            write(
                schema,
                ctx,
                &sel,
                &params,
                &calls,
                Value::Object(vars),
                !single,
            )
            .await
        }
        Action::Delete => {
            write_refused("delete", t.grants.delete)?;
            keyed("delete")?;
            if keys.is_empty() {
                return Err(Refusal::new(
                    code::INVALID_PAYLOAD,
                    "delete needs \"id\" or \"ids\" (deletes by query are not supported)",
                ));
            }
            let calls = (0..keys.len())
                .map(|i| format!("m{i}: delete_{}_item(id: $i{i}) {{ id }}", t.name))
                .collect::<Vec<_>>();
            let params = (0..keys.len())
                .map(|i| format!("$i{i}: ID!"))
                .collect::<Vec<_>>();
            let mut vars = serde_json::Map::new();
            for (i, k) in keys.iter().enumerate() {
                vars.insert(format!("i{i}"), key_text(k));
            }
            let doc = format!("mutation({}) {{ {} }}", params.join(", "), calls.join(" "));
            let data = execute(
                schema,
                ctx,
                &doc,
                Value::Object(vars),
                code::INVALID_PAYLOAD,
            )
            .await?;
            for (i, key) in keys.iter().enumerate() {
                if data.get(format!("m{i}")).is_none_or(Value::is_null) {
                    return Err(Refusal::new(
                        code::FORBIDDEN,
                        format!("item {key} does not exist or may not be deleted with this token"),
                    ));
                }
            }
            Ok(if single {
                keys[0].clone()
            } else {
                Value::Array(keys)
            })
        }
    }
}

async fn write(
    schema: &Schema,
    ctx: &Ctx,
    sel: &Selection,
    params: &[String],
    calls: &[String],
    vars: Value,
    many: bool,
) -> Result<Value, Refusal> {
    let doc = format!("mutation({}) {{ {} }}", params.join(", "), calls.join(" "));
    let mut data = execute(schema, ctx, &doc, vars, code::INVALID_PAYLOAD).await?;
    let mut out = Vec::with_capacity(calls.len());
    for i in 0..calls.len() {
        let mut item = data
            .get_mut(format!("m{i}"))
            .map(Value::take)
            .unwrap_or(Value::Null);
        if item.is_null() {
            return Err(Refusal::new(
                code::FORBIDDEN,
                "item does not exist or may not be written with this token",
            ));
        }
        sel.shape(&mut item);
        out.push(item);
    }
    Ok(if many {
        Value::Array(out)
    } else {
        out.pop().unwrap_or(Value::Null)
    })
}
