//! The scenarios of the benchmark.

pub mod cluster;
pub mod cluster_latency;
pub mod failover;
pub mod fanout;
pub mod ingest;
pub mod latency;
pub mod matching;
pub mod peers;
