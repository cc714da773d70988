//! The filter stage: Prisma-style `where` filters, parsed and validated against the catalog,
//! evaluated in memory on WAL rows, compiled to SQL for relation conditions, and indexed so an
//! event visits only the subscriptions it may match.

pub mod ast;
pub mod batch;
pub mod eval;
pub mod index;
pub mod key;
pub mod mutation;
pub mod parse;
pub mod relation_sql;
pub mod relations;
pub mod select;
pub mod sql;

pub use ast::{CmpOp, EventFilter, FieldsMatch, Quantifier, RelationRef, RowFilter, TextOp};
pub use batch::{RelationBatch, RelationQuery};
pub use eval::Truth;
pub use index::SubscriptionIndex;
pub use parse::{
    parse_mutated, parse_mutated_in, parse_mutated_limited, parse_subscription_where,
    parse_subscription_where_in, parse_subscription_where_limited, parse_where, parse_where_in,
    parse_where_limited, FilterError, Limits,
};
pub use relation_sql::{relation_sql, CandidateQuery};
pub use relations::{relations, Relation, RelationKind};
