//! The whole backend as real processes on loopback ports: Apache Kafka (topics `trades` and
//! `trades.dlq`), redis-server (append-only persistence in the run directory's `redis/`), one
//! `exchange-sim` (or the real exchange) and one `candles-connector` per exchange, and N `candles-service` instances in one consumer group.
//! Every process is killed when the [`Stack`] is dropped, also when a test panics; logs go to
//! the run directory.
//!
//! The faults the tests inject: `kill -9`, SIGTERM and restart of any service instance or
//! connector, an instance joining ([`Stack::add_service`]), Redis and broker restarts. The
//! full-stack tests (`backend/e2e`), the load generator (`backend/loadgen`) and `candles-stack`
//! (`scripts/stack.sh`) all start the topology here.
//!
//! - this module: the configuration, the broker, Redis and the service instances;
//! - `feeds`: simulators and connectors, and the simulators' trade logs;
//! - `observe`: what is running, metrics, the topic's contents.

mod feeds;
mod observe;

use crate::bins;
use crate::kafka::Kafka;
use crate::net::free_port;
use crate::process::Proc;
use crate::redis::Redis;
use anyhow::{Context as _, Result};
use candles_core::Exchange;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The pairs every simulator lists and every connector streams by default.
pub const PAIRS: &str = "btcusdt,ethusdt,solusdt";

/// The topic of trades.
pub const TOPIC: &str = "trades";

/// How to build the stack.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// A short name, used for the run directory.
    pub name: String,
    /// The directory of the workspace's binaries; `None`: [`bins::dir`], built first by
    /// [`bins::ensure_built`].
    pub bin_dir: Option<PathBuf>,
    /// Logs and trade logs go here (created if needed).
    pub run_dir: PathBuf,
    /// The `redis-server` binary; `None`: `$REDIS_SERVER_BIN`, `~/.cache/candles/bin` or `PATH`.
    pub redis_bin: Option<PathBuf>,
    /// candles-service instances.
    pub instances: usize,
    /// Synthetic trades per second per simulator.
    pub rate: f64,
    /// Exchanges: one simulator (unless [`StackConfig::real`]) and one connector each.
    pub exchanges: Vec<Exchange>,
    /// Connect to the real exchanges instead of simulators.
    pub real: bool,
    /// Pairs, comma-separated.
    pub pairs: String,
    /// Trades each simulator generates before it stops (0: no end).
    pub max_trades: u64,
    /// Extra flags for every simulator (faults).
    pub sim_args: Vec<String>,
    /// Extra flags for one exchange's simulator, after [`StackConfig::sim_args`].
    pub sim_args_of: Vec<(Exchange, Vec<String>)>,
    /// A recording the simulators replay as fast as their connectors take it (`--replay FILE
    /// --speed max`: one exchange message per line) instead of generating trades (`None`).
    pub replay: Option<PathBuf>,
    /// Seed of the first simulator (the others use seed + 1, + 2).
    pub seed: u64,
    /// Whether the simulators write trade logs (the ground truth).
    pub trade_logs: bool,
    /// Extra flags for every connector.
    pub connector_args: Vec<String>,
    /// `--interval` of the service (unless [`StackConfig::intervals`] is set).
    pub interval: String,
    /// `--intervals` of the service (every one built and served); `None`: `--interval` only.
    pub intervals: Option<String>,
    /// `--clock` of the service: `wall` (live) or `event` (trade time, for replays).
    pub clock: String,
    /// Extra flags for every service instance (e.g. `--max-trade-age` for an old recording).
    pub service_args: Vec<String>,
    /// `--grace` of the service (`None`: the service's default).
    pub grace: Option<String>,
    /// `--update-interval` of the service.
    pub update_interval: String,
    /// Kafka topic partitions.
    pub partitions: u32,
    /// Consumer group of the services.
    pub group: String,
    /// `RUST_LOG` of every program.
    pub log_level: String,
}

impl StackConfig {
    /// Defaults for a test named `name`: run directory `$TMPDIR/candles-e2e/NAME-STAMP`,
    /// 2 instances, 3 simulators at 60 trades/s for 900 trades each with trade logs, 1 s
    /// candles, 2 s grace (500 ms lets trades go late on a loaded 2-core machine: the first
    /// produce of a new connector alone can take a second), 6 partitions, no faults, log level
    /// `$CANDLES_E2E_LOG` (default `info`).
    pub fn new(name: &str) -> StackConfig {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        StackConfig {
            name: name.to_string(),
            run_dir: std::env::temp_dir()
                .join("candles-e2e")
                .join(format!("{name}-{stamp}")),
            bin_dir: None,
            redis_bin: None,
            instances: 2,
            exchanges: Exchange::ALL.to_vec(),
            real: false,
            pairs: PAIRS.into(),
            rate: 60.0,
            max_trades: 900,
            seed: 7,
            trade_logs: true,
            interval: "1s".into(),
            intervals: None,
            clock: "wall".into(),
            service_args: Vec::new(),
            grace: Some("2s".into()),
            update_interval: "250ms".into(),
            sim_args: Vec::new(),
            sim_args_of: Vec::new(),
            replay: None,
            connector_args: Vec::new(),
            partitions: 6,
            group: format!("candles-e2e-{stamp}"),
            log_level: std::env::var("CANDLES_E2E_LOG").unwrap_or_else(|_| "info".into()),
        }
    }
}

/// One simulator.
pub struct Sim {
    /// Its exchange.
    pub exchange: Exchange,
    proc: Option<Proc>,
    /// `--ws-url` for its connector.
    pub ws_url: String,
    /// `--rest-url` for its connector.
    pub rest_url: String,
    /// Every generated trade, one JSON object per line (when the config asks for trade logs).
    pub trade_log: Option<PathBuf>,
    /// Its metrics port.
    pub metrics_port: u16,
}

/// One candles-service instance.
pub struct Service {
    proc: Option<Proc>,
    /// Its gRPC port.
    pub grpc_port: u16,
    /// Its metrics port.
    pub metrics_port: u16,
}

/// One connector.
pub struct Connector {
    /// Its exchange.
    pub exchange: Exchange,
    proc: Option<Proc>,
    /// Its metrics port.
    pub metrics_port: u16,
}

/// A running stack. See the module docs.
pub struct Stack {
    /// The configuration it was built with.
    pub config: StackConfig,
    /// Logs and trade logs.
    pub dir: PathBuf,
    /// Consumer group of the services.
    pub group: String,
    bin_dir: PathBuf,
    // Drop order = field order: clients of the broker and Redis first.
    connectors: Vec<Connector>,
    services: Vec<Service>,
    sims: Vec<Sim>,
    redis: Redis,
    broker: Kafka,
}

impl Stack {
    /// Finds (and for tests builds) the binaries, starts the broker (topics `trades` and
    /// `trades.dlq`), Redis and the service instances, and waits until each instance serves
    /// gRPC. Simulators and connectors start with [`Stack::start_feeds`], so clients can
    /// subscribe first.
    pub fn start(config: StackConfig) -> Result<Stack> {
        let bin_dir = match &config.bin_dir {
            Some(dir) => dir.clone(),
            None => {
                bins::ensure_built()?;
                bins::dir()?
            }
        };
        for name in bins::PACKAGES {
            bins::in_dir(&bin_dir, name)?;
        }
        let dir = config.run_dir.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let broker = Kafka::start_in(&dir.join("kafka"))?;
        broker.create_topic(TOPIC, config.partitions)?;
        broker.create_topic(&format!("{TOPIC}.dlq"), 1)?;
        let redis = Redis::start_in(&dir.join("redis"), config.redis_bin.clone())?;
        let mut stack = Stack {
            group: config.group.clone(),
            config,
            dir,
            bin_dir,
            connectors: Vec::new(),
            services: Vec::new(),
            sims: Vec::new(),
            redis,
            broker,
        };
        for _ in 0..stack.config.instances {
            stack.services.push(Service {
                proc: None,
                grpc_port: free_port(),
                metrics_port: free_port(),
            });
        }
        for i in 0..stack.config.instances {
            stack.spawn_service(i)?;
        }
        for i in 0..stack.config.instances {
            stack.wait_service(i)?;
        }
        Ok(stack)
    }

    /// A command for the workspace binary `name`, with the configured log level.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(name));
        cmd.env("RUST_LOG", &self.config.log_level);
        cmd
    }

    /// `http://127.0.0.1:PORT` of every service instance, in instance order.
    pub fn grpc_urls(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|s| format!("http://127.0.0.1:{}", s.grpc_port))
            .collect()
    }

    /// `http://127.0.0.1:PORT` of the instances that are running.
    pub fn running_grpc_urls(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.proc.is_some())
            .map(|s| format!("http://127.0.0.1:{}", s.grpc_port))
            .collect()
    }

    /// The directory of the workspace's binaries the stack runs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The service instances (ports).
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The broker's address.
    pub fn brokers(&self) -> String {
        self.broker.brokers()
    }

    /// Redis's URL.
    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// Redis's data dir (its append-only file and log).
    pub fn redis_dir(&self) -> &Path {
        self.redis.data_dir()
    }

    /// Starts service instance `i` on its ports (killing it first if it runs).
    fn spawn_service(&mut self, i: usize) -> Result<()> {
        self.services[i].proc = None;
        let c = &self.config;
        let s = &self.services[i];
        let mut cmd = self.command("candles-service");
        cmd.args(["--brokers", &self.broker.brokers(), "--topic", TOPIC])
            .args(["--group", &self.group, "--redis", &self.redis.url()])
            .args(["--listen", &format!("127.0.0.1:{}", s.grpc_port)])
            .args(["--clock", &c.clock, "--pairs", &c.pairs])
            .args(["--update-interval", &c.update_interval])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", s.metrics_port)]);
        match &c.intervals {
            Some(intervals) => cmd.args(["--intervals", intervals]),
            None => cmd.args(["--interval", &c.interval]),
        };
        if let Some(grace) = &c.grace {
            cmd.args(["--grace", grace]);
        }
        cmd.args(&c.service_args);
        let proc = Proc::spawn(
            &format!("candles-service-{i}"),
            cmd,
            &self.dir.join(format!("service-{i}.log")),
        )?;
        self.services[i].proc = Some(proc);
        Ok(())
    }

    /// Waits until service instance `i` serves gRPC.
    fn wait_service(&mut self, i: usize) -> Result<()> {
        let s = &mut self.services[i];
        let port = s.grpc_port;
        let proc = s.proc.as_mut().context("the instance is not running")?;
        proc.wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(30))
    }

    /// (Re)starts service instance `i` on its ports and waits until it serves gRPC.
    pub fn start_service(&mut self, i: usize) -> Result<()> {
        self.spawn_service(i)?;
        self.wait_service(i)
    }

    /// Starts one more service instance in the group (a rebalance hands it partitions) and
    /// returns its index.
    pub fn add_service(&mut self) -> Result<usize> {
        self.services.push(Service {
            proc: None,
            grpc_port: free_port(),
            metrics_port: free_port(),
        });
        let i = self.services.len() - 1;
        self.start_service(i)?;
        Ok(i)
    }

    /// Stops service instance `i` with SIGTERM (it publishes what is final, commits and leaves
    /// the group: a rebalance hands its partitions to the others), `kill -9` after 10 s.
    pub fn stop_service(&mut self, i: usize) {
        if let Some(mut p) = self.services[i].proc.take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// `kill -9` of service instance `i`.
    pub fn kill_service(&mut self, i: usize) {
        if let Some(mut p) = self.services[i].proc.take() {
            p.kill();
        }
    }

    /// Stops redis-server (`kill -9`, or SIGTERM when `graceful`), waits `down`, starts it again
    /// on the same port with its data (append-only file in the run directory's `redis/`).
    pub fn restart_redis(&mut self, down: Duration, graceful: bool) -> Result<()> {
        if graceful {
            self.redis.stop();
        } else {
            self.redis.kill();
        }
        std::thread::sleep(down);
        self.redis.restart()
    }

    /// Stops the broker (`kill -9`, or SIGTERM when `graceful`), waits `down`, starts it again
    /// on the same port.
    pub fn restart_broker(&mut self, down: Duration, graceful: bool) -> Result<()> {
        if graceful {
            self.broker.stop();
        } else {
            self.broker.kill();
        }
        std::thread::sleep(down);
        self.broker.restart()
    }

    /// Stops everything in order with SIGTERM (connectors, simulators and services first, so
    /// they publish what is final and commit; then Redis and the broker), `kill -9` after 10 s.
    pub fn shutdown(mut self) {
        let grace = Duration::from_secs(10);
        let programs = self
            .connectors
            .iter_mut()
            .filter_map(|c| c.proc.take())
            .chain(self.sims.iter_mut().filter_map(|s| s.proc.take()))
            .chain(self.services.iter_mut().filter_map(|s| s.proc.take()));
        for mut p in programs {
            p.terminate(grace);
        }
        self.redis.stop();
        self.broker.stop();
    }

    /// Where the logs are.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// The pairs streamed by default.
    pub fn pairs() -> Vec<candles_core::Pair> {
        candles_core::Pair::defaults()
    }
}
