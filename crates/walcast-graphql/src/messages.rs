//! `_logical_message`: messages written with `pg_logical_emit_message(transactional, prefix,
//! content)`, the outbox pattern's events, delivered like table changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use futures::future::BoxFuture;
use futures::StreamExt;
use juniper::{
    meta::MetaType, ArcStr, Arguments, DefaultScalarValue as S, ExecutionResult, Executor,
    GraphQLType, GraphQLValueAsync, Registry, Value, ValuesStream,
};
use walcast_model::{Datum, Kind, LogicalMessage};

use crate::context::{Ctx, MessagePrefixes, MessageRequest};
use crate::error::Error;
pub use crate::info::{MESSAGE_FIELD, MESSAGE_TYPE};
use crate::payload::{resolve, response_key};
use crate::resolver::{impl_graphql_value, ready};
use crate::scalars::{input_to_json, json_to_value};

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

impl_graphql_value!(MessageObj<'_>, context = Ctx, info = ());

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
            other => Err(Error::UnknownField {
                field: other.to_owned(),
                on: MESSAGE_TYPE.to_owned(),
            }),
        };
        ready(value)
    }
}

/// The prefixes a subscription asks for: `prefix`, `prefix_in`, or neither (None).
fn requested_prefixes(args: &Arguments<S>) -> Result<Option<BTreeSet<String>>, Error> {
    let arg = |name: &str| {
        args.get_input_value(name)
            .map(|v| input_to_json(&v.item))
            .filter(|v| !v.is_null())
    };
    let one = match arg("prefix") {
        None => None,
        Some(serde_json::Value::String(p)) => Some(p),
        Some(found) => {
            return Err(Error::ArgumentType {
                name: "prefix",
                expected: "a String",
                found,
            })
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
                    found => Err(Error::ArgumentType {
                        name: "prefix_in",
                        expected: "Strings",
                        found,
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(found) => {
            return Err(Error::ArgumentType {
                name: "prefix_in",
                expected: "a list of Strings",
                found,
            })
        }
    };
    match (one, many) {
        (None, None) => Ok(None),
        (Some(p), None) => Ok(Some(BTreeSet::from([p]))),
        (None, Some(list)) => Ok(Some(list.into_iter().collect())),
        (Some(_), Some(_)) => Err(Error::PrefixAndPrefixIn),
    }
}

/// The stream of `_logical_message`: checks the arguments against the caller's grant, then
/// resolves each message with the operation's selection and hands the payload to the outbox.
pub async fn subscribe<'e>(
    args: &Arguments<'_, S>,
    executor: &Executor<'_, 'e, Ctx, S>,
) -> Result<Value<ValuesStream<'e, S>>, Error> {
    if args
        .get_input_value("after")
        .is_some_and(|v| !v.item.is_null())
    {
        return Err(Error::MessagesNotRetained);
    }
    let prefixes = requested_prefixes(args)?;
    let ctx = executor.context();
    let granted = ctx
        .access
        .load()
        .messages
        .clone()
        .ok_or(Error::NoMessageGrant)?;
    if let (Some(asked), MessagePrefixes::Only(allowed)) = (&prefixes, &granted) {
        let refused: Vec<&String> = asked.difference(allowed).collect();
        if !refused.is_empty() {
            return Err(Error::PrefixRefused(
                refused
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
    }
    let messages = ctx.events.subscribe_messages(MessageRequest {
        prefixes,
        connection: ctx.connection.clone(),
        access: ctx.access.clone(),
    })?;
    let response = response_key(executor, MESSAGE_FIELD);
    let outbox = ctx.outbox.clone();
    let owned = Arc::new(executor.as_owned_executor());
    let stream = messages.then(move |m: Arc<LogicalMessage>| {
        let owned = owned.clone();
        let outbox = outbox.clone();
        let response = response.clone();
        async move {
            outbox.push(resolve(&owned, &(), &MessageObj(&m), &response).await);
            // The socket layer sends the outbox's payload; the value is not read.
            Ok(Value::null())
        }
    });
    Ok(Value::Scalar(stream.boxed()))
}
