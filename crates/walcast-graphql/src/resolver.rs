//! What every hand-written juniper type shares: its `GraphQLValue` naming, and the edge where a
//! resolver's result becomes juniper's (errors converted, sync results boxed).

use std::future::Future;

use futures::future::{self, BoxFuture};
use juniper::{DefaultScalarValue as S, ExecutionResult, FieldError, IntoFieldError, Value};

use crate::error::Error;

/// `impl GraphQLValue` for a type named by its `GraphQLType::name`: `type_name` and
/// `concrete_type_name` from it. Further items (a sync `resolve_field`) follow the `;`.
macro_rules! impl_graphql_value {
    ($ty:ty, context = $ctx:ty, info = $info:ty $(; $($item:tt)*)?) => {
        impl juniper::GraphQLValue<juniper::DefaultScalarValue> for $ty {
            type Context = $ctx;
            type TypeInfo = $info;

            fn type_name(&self, info: &$info) -> Option<juniper::ArcStr> {
                <Self as juniper::GraphQLType<juniper::DefaultScalarValue>>::name(info)
            }

            fn concrete_type_name(&self, _: &$ctx, info: &$info) -> String {
                self.type_name(info)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            }

            $($($item)*)?
        }
    };
}
pub(crate) use impl_graphql_value;

/// A result known at once, as the future an async resolver returns.
pub fn ready<'a>(r: Result<Value<S>, Error>) -> BoxFuture<'a, ExecutionResult<S>> {
    Box::pin(future::ready(r.map_err(IntoFieldError::into_field_error)))
}

/// An async resolver's result, its error converted for juniper here and nowhere before.
pub fn edge<'a, T>(
    f: impl Future<Output = Result<T, Error>> + Send + 'a,
) -> BoxFuture<'a, Result<T, FieldError<S>>> {
    Box::pin(async move { f.await.map_err(IntoFieldError::into_field_error) })
}
