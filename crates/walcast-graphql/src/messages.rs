//! `_logical_message`: messages written with `pg_logical_emit_message(transactional, prefix,
//! content)`, the outbox pattern's events, delivered like table changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use futures::future::{self, BoxFuture};
use futures::StreamExt;
use juniper::{
    meta::MetaType, ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor,
    FieldError, GraphQLType, GraphQLValue, GraphQLValueAsync, Registry, Value, ValuesStream,
};
use walcast_model::{Datum, Kind, LogicalMessage};

use crate::context::{Ctx, MessagePrefixes, MessageRequest};
use crate::scalars::{input_to_json, json_to_value};

/// The Subscription field. A leading `_` keeps it apart from the common table names; a table
/// that maps to this name keeps it (see `SchemaInfo::has_messages`).
pub const MESSAGE_FIELD: &str = "_logical_message";
/// The payload's type name.
pub const MESSAGE_TYPE: &str = "_LogicalMessage";

/// Adds `_logical_message(prefix, prefix_in, after)` to the Subscription root's fields.
pub fn field(registry: &mut Registry<S>) -> juniper::meta::Field<S> {
    registry
        .field::<MessageObj>(MESSAGE_FIELD, &())
        .argument(
            registry
                .arg::<Option<String>>("prefix", &())
                .description("Only messages with this prefix."),
        )
        .argument(
            registry
                .arg::<Option<Vec<String>>>("prefix_in", &())
                .description("Only messages with one of these prefixes."),
        )
        .argument(registry.arg::<Option<String>>("after", &()).description(
            "Not supported: messages are not retained, so there is nothing to replay.",
        ))
        .description(
            "Messages of pg_logical_emit_message: transactional ones once their transaction \
             commits, in commit order; non-transactional ones as soon as they are written. \
             Without a prefix filter: every prefix the role may read.",
        )
}

/// One message, as `_LogicalMessage { prefix content base64 transactional lsn commitTime }`.
pub struct MessageObj<'m>(pub &'m LogicalMessage);

impl GraphQLType<S> for MessageObj<'_> {
    fn name(_: &()) -> Option<ArcStr> {
        Some(ArcStr::from(MESSAGE_TYPE))
    }

    fn meta(info: &(), registry: &mut Registry<S>) -> MetaType<S> {
        let fields = [
            registry.field::<String>("prefix", &()),
            registry
                .field::<String>("content", &())
                .description("The content as text, or in base64 when it is not valid UTF-8."),
            registry
                .field::<bool>("base64", &())
                .description("True when `content` is base64 (the bytes are not valid UTF-8)."),
            registry.field::<bool>("transactional", &()),
            registry
                .field::<String>("lsn", &())
                .description("The message's WAL position, as Postgres prints it (0/16B3748)."),
            registry
                .field::<Option<String>>("commitTime", &())
                .description("The commit time of the transaction; null when non-transactional."),
        ];
        registry
            .build_object_type::<Self>(info, &fields)
            .description("A message written with pg_logical_emit_message.")
            .into_meta()
    }
}

impl GraphQLValue<S> for MessageObj<'_> {
    type Context = Ctx;
    type TypeInfo = ();

    fn type_name(&self, _: &()) -> Option<ArcStr> {
        Some(ArcStr::from(MESSAGE_TYPE))
    }

    fn concrete_type_name(&self, _: &Ctx, _: &()) -> String {
        MESSAGE_TYPE.to_owned()
    }
}

impl GraphQLValueAsync<S> for MessageObj<'_> {
    fn resolve_field_async<'a>(
        &'a self,
        _: &'a (),
        field: &'a str,
        _: &'a Arguments<S>,
        _: &'a Executor<Ctx, S>,
    ) -> BoxFuture<'a, ExecutionResult<S>> {
        let m = self.0;
        let value = match field {
            "prefix" => Ok(Value::scalar(m.prefix.clone())),
            "content" => Ok(Value::scalar(match std::str::from_utf8(&m.content) {
                Ok(text) => text.to_owned(),
                Err(_) => base64::engine::general_purpose::STANDARD.encode(&m.content),
            })),
            "base64" => Ok(Value::scalar(std::str::from_utf8(&m.content).is_err())),
            "transactional" => Ok(Value::scalar(m.transactional)),
            "lsn" => Ok(Value::scalar(m.lsn.to_string())),
            "commitTime" => Ok(match m.commit_time {
                Some(t) => json_to_value(&Datum::TimestampTz(t).to_json(Kind::TimestampTz)),
                None => Value::null(),
            }),
            other => Err(format!("unknown field {other:?} on {MESSAGE_TYPE}").into()),
        };
        Box::pin(future::ready(value))
    }
}

/// One message's response as the socket layer sends it, like a table event's: a field that
/// failed is null with its error beside the rest.
fn payload(
    response: &str,
    value: Result<Value<S>, juniper::ExecutionError<S>>,
    field_errors: &[juniper::ExecutionError<S>],
) -> String {
    let payload = match value {
        Ok(v) if field_errors.is_empty() => serde_json::json!({ "data": { response: v } }),
        Ok(v) => serde_json::json!({
            "data": { response: v },
            "errors": serde_json::to_value(field_errors).unwrap_or_else(|_| serde_json::json!([])),
        }),
        Err(e) => serde_json::json!({
            "data": { response: null },
            "errors": serde_json::to_value([e]).unwrap_or_else(|_| serde_json::json!([])),
        }),
    };
    payload.to_string()
}

/// The prefixes a subscription asks for: `prefix`, `prefix_in`, or neither (None).
fn requested_prefixes(args: &Arguments<S>) -> Result<Option<BTreeSet<String>>, FieldError<S>> {
    let arg = |name: &str| {
        args.get_input_value(name)
            .map(|v| input_to_json(&v.item))
            .filter(|v| !v.is_null())
    };
    let one = match arg("prefix") {
        None => None,
        Some(serde_json::Value::String(p)) => Some(p),
        Some(other) => {
            return Err(format!("argument \"prefix\": expected a String, found {other}").into())
        }
    };
    let many = match arg("prefix_in") {
        None => None,
        // A single value where a list is expected is a list of one, as GraphQL coerces it.
        Some(serde_json::Value::String(p)) => Some(vec![p]),
        Some(serde_json::Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|i| match i {
                    serde_json::Value::String(p) => Ok(p),
                    other => Err(FieldError::from(format!(
                        "argument \"prefix_in\": expected Strings, found {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(format!(
                "argument \"prefix_in\": expected a list of Strings, found {other}"
            )
            .into())
        }
    };
    match (one, many) {
        (None, None) => Ok(None),
        (Some(p), None) => Ok(Some(BTreeSet::from([p]))),
        (None, Some(list)) => Ok(Some(list.into_iter().collect())),
        (Some(_), Some(_)) => {
            Err("give either \"prefix\" or \"prefix_in\" to _logical_message, not both".into())
        }
    }
}

/// The stream of `_logical_message`: checks the arguments against the caller's grant, then
/// resolves each message with the operation's selection and hands the payload to the outbox.
pub async fn subscribe<'e>(
    args: &Arguments<'_, S>,
    executor: &Executor<'_, 'e, Ctx, S>,
) -> Result<Value<ValuesStream<'e, S>>, FieldError<S>> {
    if args
        .get_input_value("after")
        .is_some_and(|v| !v.item.is_null())
    {
        return Err(FieldError::from(
            "argument \"after\" is not supported on _logical_message: messages are not retained for replay; subscribe without it",
        ));
    }
    let prefixes = requested_prefixes(args)?;
    let ctx = executor.context();
    let granted = ctx.access.load().messages.clone().ok_or_else(|| {
        FieldError::from("this role may not read logical messages (no `logical_messages` grant)")
    })?;
    if let (Some(asked), MessagePrefixes::Only(allowed)) = (&prefixes, &granted) {
        let refused: Vec<&String> = asked.difference(allowed).collect();
        if !refused.is_empty() {
            return Err(format!(
                "this role may not read logical messages with prefix {}",
                refused
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into());
        }
    }
    let messages = ctx
        .events
        .subscribe_messages(MessageRequest {
            prefixes,
            connection: ctx.connection.clone(),
            access: ctx.access.clone(),
        })
        .map_err(|e| FieldError::from(e.to_string()))?;
    // The response key (alias or name) from the path juniper gives this field's errors.
    let response = executor
        .new_error(FieldError::from(String::new()))
        .path()
        .last()
        .cloned()
        .unwrap_or_else(|| MESSAGE_FIELD.to_owned());
    let response: Arc<str> = response.into();
    let outbox = ctx.outbox.clone();
    let owned = Arc::new(executor.as_owned_executor());
    let stream = messages.then(move |m: Arc<LogicalMessage>| {
        let owned = owned.clone();
        let outbox = outbox.clone();
        let response = response.clone();
        async move {
            let ex = owned.as_executor();
            let value = ex.resolve_async(&(), &MessageObj(&m)).await;
            let errors = ex.take_errors();
            let value = value.map_err(|e| ex.new_error(e));
            outbox.push(crate::shared::Payload::from(payload(
                &response, value, &errors,
            )));
            // The socket layer sends the outbox's payload; the value is not read.
            Ok(Value::null())
        }
    });
    Ok(Value::Scalar(stream.boxed()))
}
