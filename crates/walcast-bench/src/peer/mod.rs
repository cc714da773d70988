//! The peer server of `walcast-bench peers`: PostGraphile 4 with live queries from
//! `@graphile/subscriptions-lds`, installed by the bench (Debian's wal2json, npm packages into a
//! cache folder) and run against the bench's database.

pub mod install;
pub mod postgraphile;
