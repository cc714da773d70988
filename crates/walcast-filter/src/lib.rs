//! The filter stage: Prisma-style `where` filters, parsed and validated against the catalog,
//! evaluated in memory on WAL rows.

pub mod ast;
pub mod eval;
pub mod parse;
pub mod sql;

pub use ast::{CmpOp, EventFilter, FieldsMatch, RowFilter, TextOp};
pub use parse::{parse_mutated, parse_subscription_where, parse_where, FilterError};
