//! walcast-bench: benchmarks of walcast against the Postgres walsender, and a
//! graphql-transport-ws load generator usable against any server.
//!
//! The binary's scenarios (`ingest`, `latency`, `fanout`, `matching`, `cluster`) are described in
//! `docs/benchmarks.md`; the load generator is [`client::Load`].

pub mod bench;
pub mod client;
pub mod db;
pub mod follower;
pub mod frames;
pub mod http;
pub mod peer;
pub mod perf;
pub mod proxy;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod walcast;
