//! End-to-end test support: real Apache Kafka + redis-server, candles-service in this process, a trade
//! producer writing to Kafka exactly what connectors write, and the real `candles-tui` binary
//! driven in tmux (a real terminal) or with piped stdout.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use candles_core::time::Duration as CoreDuration;
use candles_core::{ClockMode, EngineConfig, Exchange, Interval, Micros, Pair, Side, Trade};
use candles_service::ServiceConfig;
use candles_testkit::{Kafka, Redis};
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_candles-tui");

/// A unique name per test (topics, groups, tmux sockets).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The test process's Kafka broker, a Redis of its own and a fresh topic. Fails (never skips)
/// when they are not installed.
pub struct Deps {
    pub kafka: &'static Kafka,
    pub redis: Redis,
    pub topic: String,
}

impl Deps {
    pub fn start() -> Deps {
        let kafka = Kafka::shared();
        let redis = Redis::start()
            .expect("redis-server must be installed: run scripts/install-test-deps.sh");
        let topic = unique("trades");
        kafka.create_topic(&topic, 2).unwrap();
        Deps {
            kafka,
            redis,
            topic,
        }
    }

    /// A service config: 1 s candles, short grace, fast live updates, fresh consumer group.
    pub fn config(&self) -> ServiceConfig {
        ServiceConfig {
            brokers: self.kafka.brokers(),
            topic: self.topic.clone(),
            group: unique("tui"),
            dlq_topic: format!("{}.dlq", self.topic),
            redis_url: self.redis.url(),
            listen: "127.0.0.1:0".parse().unwrap(),
            engine: EngineConfig {
                interval: Interval::seconds(1),
                grace: CoreDuration::from_millis(300),
                clock: ClockMode::Wall,
            },
            update_interval: Duration::from_millis(100),
            history_max: 100,
            ..ServiceConfig::default()
        }
    }
}

/// candles-service running in this process on a fixed address.
pub struct Service {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// Starts on `addr` (`127.0.0.1:0` for a free port; the same address again after a stop).
    pub async fn start(config: ServiceConfig, addr: SocketAddr) -> Service {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => panic!("cannot bind {addr}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(candles_service::serve(config, listener, shutdown.clone()));
        Service {
            addr,
            shutdown,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// Produces one trade per pair every `every` to Kafka (key = pair, value = candles.v1.Trade),
/// at prices `base ± 0.5`, until the token is cancelled.
pub fn produce(
    brokers: String,
    topic: String,
    pairs: Vec<(Pair, &'static str)>,
    every: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("message.timeout.ms", "10000")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let mut id = 0u64;
        while !stop.is_cancelled() {
            for (pair, base) in &pairs {
                id += 1;
                let price = if id.is_multiple_of(2) {
                    format!("{base}.5")
                } else {
                    format!("{base}.25")
                };
                let side = if id.is_multiple_of(3) {
                    Side::Sell
                } else {
                    Side::Buy
                };
                let mut t = Trade::new(
                    Exchange::Binance,
                    *pair,
                    id,
                    &price,
                    "0.125",
                    side,
                    Micros::now(),
                )
                .unwrap();
                t.received = Micros::now();
                let bytes = candles_proto::v1::Trade::from(&t).encode_to_vec();
                let key = pair.to_string();
                let _ = producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&bytes),
                        Duration::from_secs(5),
                    )
                    .await;
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// Reads lines from a child's stdout on a thread (so a test can time out).
pub fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("candles-tui did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--embedded` flags pointing each connector at its simulator.
pub fn url_flags(sims: &[exchange_sim::SimHandle]) -> Vec<String> {
    let mut args = vec!["--embedded".to_string()];
    for (sim, exchange) in sims.iter().zip(Exchange::ALL) {
        args.push("--ws-url".into());
        args.push(format!("{exchange}={}", sim.ws_url()));
        args.push("--rest-url".into());
        args.push(format!("{exchange}={}", sim.rest_url()));
    }
    args
}

/// The real binary in a detached tmux session of `width`×`height`; killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(args: &[&str], width: u16, height: u16, log_dir: &std::path::Path) -> Tmux {
        let socket = unique("tui");
        let mut cmd = vec![BIN.to_string()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        cmd.push("--log-file".into());
        cmd.push(log_dir.join("tui.log").display().to_string());
        if !args.contains(&"--config") {
            // Never the user's own settings file.
            cmd.push("--no-config".into());
        }
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg("-e")
            .arg("TERM=xterm-256color")
            .arg(cmd.join(" "))
            .env("TERM", "xterm-256color")
            .stdout(Stdio::null())
            .status()
            .expect("tmux must be installed: run scripts/install-test-deps.sh");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    /// The pane's text (no escape codes), or `None` once the session is gone.
    pub fn screen(&self) -> Option<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pane's text with its colours (SGR escape codes), or `None` once the session is gone.
    pub fn styled_screen(&self) -> Option<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-e", "-p"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn keys(&self, keys: &str) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", keys])
            .status();
    }

    pub fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until `pred` holds for the screen; panics with the last screen after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen().unwrap_or_default();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what} within {timeout:?}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}
