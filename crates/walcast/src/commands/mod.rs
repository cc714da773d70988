//! The subcommands.

pub mod check;
pub mod demo;
pub mod schema;
pub mod serve;
pub mod tail;
