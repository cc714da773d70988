//! What resolvers fail with. Errors stay typed inside the crate and become GraphQL errors only
//! at the resolver edge ([`IntoFieldError`]), where the codes API.md promises go into
//! `extensions.code`.

use juniper::{graphql_value, DefaultScalarValue as S, FieldError, IntoFieldError};
use walcast_filter::FilterError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A mutation refused by the caller's row filter, or aimed at a row the caller cannot
    /// change. "Not found" and "not yours" read the same, so the answer never tells whether a
    /// row exists. Code `FORBIDDEN`.
    #[error("FORBIDDEN: {0}")]
    Forbidden(String),
    /// The database refused a statement or could not be reached.
    #[error("database: {0}")]
    Database(String),
    /// An argument value that is not what the argument takes.
    #[error("argument {name:?}: {message}")]
    Argument { name: &'static str, message: String },
    #[error("argument {name:?}: expected {expected}, found {found}")]
    ArgumentType {
        name: &'static str,
        expected: &'static str,
        found: serde_json::Value,
    },
    #[error("argument \"data\": expected an input object")]
    DataNotObject,
    #[error("argument \"data\": name at least one field to update")]
    NothingToUpdate,
    #[error("argument \"after\": {0:?} is not a cursor walcast issued")]
    NotACursor(String),
    /// A resume point from beyond the server's WAL position: a snapshot cursor from the future
    /// would replay the whole retention window.
    #[error("argument \"after\": cursor {cursor} is not one this server issued (it is ahead of the server's WAL position {position} or inconsistent)")]
    CursorNotIssued { cursor: String, position: String },
    #[error("unknown field {field:?} on {on}")]
    UnknownField { field: String, on: String },
    #[error("unknown column {column:?} on {on}")]
    UnknownColumn { column: String, on: String },
    /// An error inside a named argument, input field or relation field.
    #[error("{at}: {source}")]
    At { at: String, source: Box<Error> },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// A column value the event does not carry: null with this error, never a wrong value.
    #[error("{table}.{field}: no value in this event: an unchanged TOASTed value Postgres did not send (REPLICA IDENTITY FULL sends it), or a column the table no longer has")]
    MissingValue { table: String, field: String },
    #[error("the related table is gone")]
    RelatedTableGone,
    #[error("no single-column primary key")]
    NoSingleKey,
    #[error("the read transaction has ended")]
    TransactionEnded,
    #[error("argument \"after\" is not supported on _logical_message: messages are not retained for replay; subscribe without it")]
    MessagesNotRetained,
    #[error("give either \"prefix\" or \"prefix_in\" to _logical_message, not both")]
    PrefixAndPrefixIn,
    #[error("this role may not read logical messages (no `logical_messages` grant)")]
    NoMessageGrant,
    /// The refused prefixes, quoted and comma-separated.
    #[error("this role may not read logical messages with prefix {0}")]
    PrefixRefused(String),
    /// A broken invariant of this crate.
    #[error("{0}")]
    Internal(&'static str),
    /// juniper's own (argument conversion, nested resolution), passed on unchanged.
    #[error("{}", .0.message())]
    Field(FieldError<S>),
}

impl Error {
    /// Any error on the way to the database (a pool, an unreadable value).
    pub fn database(e: impl std::fmt::Display) -> Error {
        Error::Database(e.to_string())
    }

    /// A Postgres error with its server message (tokio-postgres' Display says only "db error").
    pub fn postgres(e: tokio_postgres::Error) -> Error {
        match e.as_db_error() {
            Some(db) => Error::Database(format!("{}: {}", db.code().code(), db.message())),
            None => Error::database(e),
        }
    }

    /// This error inside `at` (an argument, an input field, a relation field).
    pub fn at(self, at: impl Into<String>) -> Error {
        Error::At {
            at: at.into(),
            source: Box::new(self),
        }
    }

    /// The `extensions.code` clients see.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Error::Forbidden(_) => Some("FORBIDDEN"),
            _ => None,
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Error {
        Error::database(e)
    }
}

impl From<FieldError<S>> for Error {
    fn from(e: FieldError<S>) -> Error {
        Error::Field(e)
    }
}

impl IntoFieldError<S> for Error {
    fn into_field_error(self) -> FieldError<S> {
        match (self.code(), self) {
            (_, Error::Field(e)) => e,
            (Some(code), e) => FieldError::new(e.to_string(), graphql_value!({ "code": code })),
            (None, e) => FieldError::new(e.to_string(), graphql_value!(null)),
        }
    }
}

/// Why the event source refused a subscription.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubscribeError {
    #[error("CURSOR_EXPIRED: cursor {0} is older than the retention window; resubscribe without `after:` after reading the current state")]
    CursorExpired(String),
    #[error("too many subscriptions on this connection (limit {0})")]
    TooMany(usize),
    #[error("{0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forbidden_carries_a_code() {
        let e = Error::Forbidden("delete_posts_item: no row".into()).into_field_error();
        assert_eq!(e.message(), "FORBIDDEN: delete_posts_item: no row");
        assert_eq!(e.extensions(), &graphql_value!({ "code": "FORBIDDEN" }));
        let e = Error::NoMessageGrant.into_field_error();
        assert!(e.extensions().is_null());
    }

    #[test]
    fn messages_name_what_is_wrong() {
        let e = Error::UnknownField {
            field: "x".into(),
            on: "posts_input".into(),
        }
        .at("data");
        assert_eq!(e.to_string(), "data: unknown field \"x\" on posts_input");
        let e = Error::ArgumentType {
            name: "prefix",
            expected: "a String",
            found: serde_json::json!(3),
        };
        assert_eq!(
            e.to_string(),
            "argument \"prefix\": expected a String, found 3"
        );
    }

    #[test]
    fn juniper_errors_pass_unchanged() {
        let original = FieldError::new("bad", graphql_value!({ "x": 1 }));
        assert_eq!(Error::from(original.clone()).into_field_error(), original);
    }
}
