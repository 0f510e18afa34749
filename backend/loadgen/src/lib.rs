//! `candles-loadgen`: measures the candles stack from the clients' side.
//!
//! - [`pipeline`]: the whole native stack at rising trade rates: loss, finalized and live
//!   latency, CPU and memory per process.
//! - [`fanout`]: one service and thousands of gRPC subscribers: memory per client, completeness
//!   and latency across subscribers.
//!
//! The arithmetic ([`stats`], [`procstat`] parsing, [`truth`]) is pure and unit-tested; the rest
//! drives real processes. Benchmarks are measured, never asserted.
#![forbid(unsafe_code)]

pub mod client;
pub mod fanout;
pub mod pipeline;
pub mod procstat;
pub mod stack;
pub mod stats;
pub mod truth;
