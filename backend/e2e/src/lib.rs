//! Full-stack tests: the real binaries (`exchange-sim`, `candles-connector`,
//! `candles-service`) with a real Apache Kafka broker and redis-server, started as
//! processes on loopback ports by the harness of `candles-testkit`, and what judges them.
//!
//! Started and stopped by `candles-testkit` (re-exported here): [`bins`] (locating and building
//! the workspace's binaries), [`process`] (child processes killed on drop, with log files),
//! [`stack`] (the whole topology and the faults tests inject), [`topic`] (reading the trades
//! topic back); the broker is `candles_testkit::Kafka`, data on disk, so it survives a restart.
//! Judging, in this crate:
//! - [`truth`]: expected candles from the simulators' trade logs; Kafka vs generated trades.
//! - [`client`]: gRPC clients that record every candle, reconnecting like a dashboard.
//! - [`compare`]: received vs expected, with a readable diff.
//! - [`reference`]: Binance's real XRPETH trades as replayable messages, and its klines judging
//!   what clients received.
//!
//! Run: `cargo test -p candles-e2e` (builds the binaries it drives first; needs Apache Kafka's
//! jars, `redis-server` and `docker-compose`: see scripts/install-test-deps.sh).
//! `CANDLES_E2E_BIN_DIR=DIR` tests the binaries in DIR instead; `CANDLES_E2E_LOG=debug` raises the
//! services' log level, `CANDLES_KAFKA_LOG=INFO` the broker's (default `WARN`). Each run's logs and trade logs are under `$TMPDIR/candles-e2e/`
//! (deleted when the scenario passes).
#![forbid(unsafe_code)]

pub mod client;
pub mod compare;
pub mod reference;
pub mod truth;

pub use candles_testkit::{bins, process, stack, topic};
