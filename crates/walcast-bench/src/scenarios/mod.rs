//! The scenarios of the benchmark.

pub mod cluster;
pub mod fanout;
pub mod ingest;
pub mod latency;
pub mod matching;
