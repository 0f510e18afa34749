//! The Kafka-protocol broker (Tansu) of a test stack, with in-memory storage or with S3 storage
//! on a local S3 emulator (moto), so that a broker restart keeps topics, records and committed
//! offsets.

use crate::process::Proc;
use anyhow::{Context as _, Result, bail};
use candles_testkit::{find_binary, free_port, wait_for_port};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the broker keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `memory://`: fast; lost when the broker stops.
    Memory,
    /// `s3://` on a local moto server: survives a broker restart.
    S3,
}

/// A Tansu broker on a fixed free port, restartable on the same port.
pub struct Broker {
    tansu: Option<Proc>,
    moto: Option<Proc>,
    moto_port: u16,
    port: u16,
    storage: Storage,
    dir: PathBuf,
}

impl Broker {
    /// Starts the broker (and, for [`Storage::S3`], a moto S3 server with a `tansu` bucket).
    pub fn start(storage: Storage, dir: &Path) -> Result<Broker> {
        let mut b = Broker {
            tansu: None,
            moto: None,
            moto_port: 0,
            port: free_port(),
            storage,
            dir: dir.to_path_buf(),
        };
        if storage == Storage::S3 {
            b.start_moto()?;
        }
        b.restart()?;
        Ok(b)
    }

    fn start_moto(&mut self) -> Result<()> {
        let venv = candles_testkit::bin_dir().join("../moto-venv/bin");
        let bin = find_binary("moto_server", "MOTO_SERVER_BIN", &[venv])?;
        self.moto_port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &self.moto_port.to_string()]);
        self.moto = Some(Proc::spawn("moto_server", cmd, &self.dir.join("moto.log"))?);
        wait_for_port(
            ([127, 0, 0, 1], self.moto_port).into(),
            Duration::from_secs(20),
        )
        .context("moto_server did not start")?;
        // Create the bucket: a bare S3 `PUT /tansu` (moto accepts unsigned requests).
        let mut s = TcpStream::connect(("127.0.0.1", self.moto_port))?;
        write!(
            s,
            "PUT /tansu HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.moto_port
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!(
                "creating the S3 bucket on moto failed: {}",
                answer.lines().next().unwrap_or("")
            );
        }
        Ok(())
    }

    fn tansu_bin() -> Result<PathBuf> {
        find_binary("tansu", "TANSU_BIN", &[])
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

    /// (Re)starts the broker on the same port and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.tansu = None;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(Self::tansu_bin()?);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .env("RUST_LOG", "warn");
        match self.storage {
            Storage::Memory => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
            Storage::S3 => {
                cmd.args(["--storage-engine", "s3://tansu/"])
                    .env("AWS_ACCESS_KEY_ID", "e2e")
                    .env("AWS_SECRET_ACCESS_KEY", "e2e")
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env(
                        "AWS_ENDPOINT",
                        format!("http://127.0.0.1:{}", self.moto_port),
                    )
                    .env("AWS_ALLOW_HTTP", "true");
            }
        }
        self.tansu = Some(Proc::spawn("tansu", cmd, &self.dir.join("tansu.log"))?);
        wait_for_port(([127, 0, 0, 1], self.port).into(), Duration::from_secs(10))
            .context("tansu did not start")
    }

    /// Creates a topic with Tansu's own CLI.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        candles_testkit::create_tansu_topic(&Self::tansu_bin()?, self.port, name, partitions)
    }

    /// Fails if the broker or moto died.
    pub fn check_running(&mut self) -> Result<()> {
        for p in self.tansu.iter_mut().chain(self.moto.iter_mut()) {
            p.check_running()?;
        }
        Ok(())
    }
}
