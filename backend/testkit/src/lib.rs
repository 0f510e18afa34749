//! Test support: real services on free loopback ports, started and stopped by the tests, and
//! the one harness that starts and stops the whole native topology.
//!
//! - [`process::Proc`]: a child process with a log file (first-line read, terminate, `kill -9`,
//!   restart), killed on drop and when this process dies.
//! - [`bins`]: finding (and building) the workspace's binaries and external ones.
//! - [`Kafka`]: Apache Kafka (KRaft, broker + controller) from Maven Central's jars
//!   (see `scripts/install-test-deps.sh`), data on disk; [`Kafka::shared`] is one per process.
//! - [`Redis`]: a `redis-server` with append-only persistence in its own data dir (kept across
//!   restarts); [`certs`]: throwaway TLS certificates.
//! - [`stack`]: the whole topology (simulators or the real exchanges, connectors, N service
//!   instances) and the faults tests inject; `candles-stack` runs it from the command line.
//! - [`topic`]: reading a topic back; [`trade_log`]: the simulator's trade log.
//!
//! Each is killed when dropped. When a binary is missing the start fails with a message that
//! says how to install it; tests never skip silently (CI sets `CI=true` and must see every test run).
#![forbid(unsafe_code)]

pub mod bins;
pub mod certs;
pub mod kafka;
pub mod net;
pub mod process;
pub mod redis;
pub mod stack;
pub mod topic;
pub mod trade_log;

pub use bins::{bin_dir, find_binary};
pub use kafka::{KAFKA_VERSION, Kafka};
pub use net::{free_port, scrape_metrics, wait_for_port};
pub use redis::Redis;
