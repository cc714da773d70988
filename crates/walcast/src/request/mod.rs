//! A GraphQL request, and what every transport (HTTP POST, the sockets) does with it before it
//! runs: its variables read, its document parsed, validated and weighed, its refusal in the
//! shape of a response's `errors`.

use juniper::http::GraphQLResponse;
use juniper::{DefaultScalarValue, GraphQLError, InputValue, ValidatedOperation};
use serde_json::{json, Value};
use walcast_graphql::{hints, Ctx, MutationRoot, QueryRoot, Schema, SubscriptionRoot};

mod message;

pub use message::Request;

/// Variables that are not a GraphQL input value.
#[derive(Debug, thiserror::Error)]
#[error("variables: {0}")]
pub struct VariablesError(#[from] serde_json::Error);

/// The `errors` list of a request-level error.
pub fn errors_json(e: GraphQLError) -> Value {
    let resp: GraphQLResponse<DefaultScalarValue> = GraphQLResponse::from_result(Err(e));
    serde_json::to_value(&resp)
        .ok()
        .and_then(|v| v.get("errors").cloned())
        .unwrap_or_else(|| json!([{"message": "invalid request"}]))
}

pub fn variables(req: &Request) -> Result<juniper::Variables<DefaultScalarValue>, VariablesError> {
    let Some(v) = &req.variables else {
        return Ok(Default::default());
    };
    let input: InputValue<DefaultScalarValue> = serde_json::from_value(v.clone())?;
    Ok(input
        .to_object_value()
        .map(|o| {
            o.into_iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default())
}

/// Parses and validates the operation, then weighs it (`WALCAST_MAX_OPERATION_COST`): an
/// operation over the limit is refused before anything runs.
pub fn validate<'a>(
    schema: &'a Schema,
    req: &'a Request,
    vars: &juniper::Variables<DefaultScalarValue>,
    ctx: &Ctx,
) -> Result<ValidatedOperation<'a, QueryRoot, MutationRoot, SubscriptionRoot>, GraphQLError> {
    let name = req.operation_name.as_deref();
    let op = ValidatedOperation::new(&req.query, name, schema).map_err(hints::explain)?;
    walcast_graphql::cost::check(
        schema,
        &req.query,
        name,
        vars,
        ctx.limits.max_operation_cost,
    )?;
    Ok(op)
}
