//! `candles-loadgen`: measures the candles stack from the clients' side.
//!
//! - [`pipeline`]: the whole native stack at rising trade rates: loss, finalized and live
//!   latency, CPU and memory per process.
//! - [`fanout`]: one service and thousands of gRPC subscribers: memory per client, completeness
//!   and latency across subscribers.
//! - [`floor`]: Apache Kafka's own produce-to-consume latency with the stack's client settings.
//!
//! The stack itself is started and stopped by `candles_testkit::stack`; [`view`] is what the
//! measurements see of it (CPU and memory watches, the trades topic counted per window).
//!
//! The arithmetic ([`stats`], [`procstat`] parsing, [`truth`]) is pure and unit-tested; the rest
//! drives real processes. Benchmarks are measured, never asserted.
#![forbid(unsafe_code)]

pub mod client;
pub mod fanout;
pub mod floor;
pub mod pipeline;
pub mod procstat;
pub mod stats;
pub mod truth;
pub mod view;
