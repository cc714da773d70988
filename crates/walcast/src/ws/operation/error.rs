//! Why an operation ends without results, and the end of its connection.

use juniper::GraphQLError;
use serde_json::{json, Value};

use crate::request::{errors_json, VariablesError};

/// The connection's session or writer is gone: nobody is left to send to.
#[derive(Debug, thiserror::Error)]
#[error("the connection is gone")]
pub struct Disconnected;

/// Why an operation ends with an error message instead of results.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Variables(#[from] VariablesError),
    /// The document does not parse, validate or fit the cost limit, or it failed as a whole.
    #[error("{0}")]
    Request(GraphQLError),
    /// Errors before any stream exists (a bad filter, an expired cursor), as the response
    /// lists them.
    #[error("the subscription failed before it started: {0}")]
    Fields(Value),
    #[error("subscription has no fields")]
    NoFields,
}

impl From<GraphQLError> for OperationError {
    fn from(e: GraphQLError) -> Self {
        OperationError::Request(e)
    }
}

impl OperationError {
    /// The `errors` list the client is sent.
    pub fn errors(self) -> Value {
        match self {
            OperationError::Request(e) => errors_json(e),
            OperationError::Fields(errors) => errors,
            e @ (OperationError::Variables(_) | OperationError::NoFields) => {
                json!([{ "message": e.to_string() }])
            }
        }
    }
}
