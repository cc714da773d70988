//! The text a subscription stream hands the socket layer for each item: resolved with the
//! operation's selection and serialised once, as the GraphQL response of that item.

use std::sync::Arc;

use juniper::{
    DefaultScalarValue as S, ExecutionError, Executor, FieldError, GraphQLValueAsync,
    OwnedExecutor, Value,
};

use crate::context::Ctx;
use crate::shared::Payload;

/// The response key (alias or name) of the field being resolved, from the path juniper gives
/// its errors; `field` when there is none.
pub fn response_key(executor: &Executor<'_, '_, Ctx, S>, field: &str) -> Arc<str> {
    executor
        .new_error(FieldError::from(String::new()))
        .path()
        .last()
        .cloned()
        .unwrap_or_else(|| field.to_owned())
        .into()
}

/// One stream item's response under key `response`. The stream's one executor resolves items
/// one at a time; the errors are taken after each.
pub async fn resolve<T>(
    owned: &OwnedExecutor<'_, Ctx, S>,
    info: &T::TypeInfo,
    item: &T,
    response: &str,
) -> Payload
where
    T: GraphQLValueAsync<S, Context = Ctx> + Sync + ?Sized,
    T::TypeInfo: Sync,
{
    let ex = owned.as_executor();
    let value = ex.resolve_async(info, item).await;
    let errors = ex.take_errors();
    let value = value.map_err(|e| ex.new_error(e));
    Payload::from(response_text(response, value, &errors))
}

/// The response as the socket layer sends it: a field that failed is null with its error beside
/// the rest; an item that failed as a whole is null with its error.
fn response_text(
    response: &str,
    value: Result<Value<S>, ExecutionError<S>>,
    field_errors: &[ExecutionError<S>],
) -> String {
    let errors_of = |errors: &[ExecutionError<S>]| -> Vec<serde_json::Value> {
        errors
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect()
    };
    let payload = match value {
        // Every event takes this path: written straight out, with no `serde_json::Value` tree
        // in between (the same bytes; `payload_written_directly_is_the_same_text` holds it).
        Ok(v) if field_errors.is_empty() => {
            if let Some(text) = data_payload(response, &v) {
                return text;
            }
            serde_json::json!({ "data": { response: v } })
        }
        Ok(v) => serde_json::json!({ "data": { response: v }, "errors": errors_of(field_errors) }),
        Err(e) => serde_json::json!({
            "data": { response: null },
            "errors": serde_json::to_value([e]).unwrap_or_else(|_| serde_json::json!([])),
        }),
    };
    payload.to_string()
}

/// `{"data":{response:value}}`, serialised without an intermediate JSON tree.
fn data_payload(response: &str, value: &Value<S>) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"data\":{");
    serde_json::to_writer(&mut out, response).ok()?;
    out.push(b':');
    serde_json::to_writer(&mut out, value).ok()?;
    out.extend_from_slice(b"}}");
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use juniper::graphql_value;

    #[test]
    fn payload_written_directly_is_the_same_text() {
        let values: Vec<Value<S>> = vec![
            graphql_value!(null),
            graphql_value!({
                "key": "{\"id\":\"7\"}",
                "event": "CREATED",
                "data": {
                    "id": 7,
                    "text": "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀",
                    "ratio": 0.1,
                    "big": 1e300,
                    "negative_zero": -0.0,
                    "flag": true,
                    "list": [1, "two", null, [3.5], {"nested": false}],
                    "empty": {},
                    "none": [],
                },
            }),
        ];
        for v in values {
            for response in ["messages_mutated", "alias \"quoted\""] {
                let tree = serde_json::json!({ "data": { response: v.clone() } }).to_string();
                assert_eq!(data_payload(response, &v).as_deref(), Some(tree.as_str()));
            }
        }
    }
}
