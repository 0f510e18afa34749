//! The whole backend as real processes on loopback ports: Apache Kafka, redis-server, one
//! `exchange-sim` and one `candles-connector` per exchange, and N `candles-service` instances
//! in one consumer group. Every process is killed when the [`Stack`] is dropped, also when a
//! test panics. Logs go to a run directory that is kept when the test fails.

use crate::bins;
use crate::process::Proc;
use anyhow::{Context as _, Result, bail};
use candles_core::{Exchange, Pair, Trade};
use candles_testkit::Kafka;
use candles_testkit::{Redis, free_port, wait_for_port};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How to build the stack.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// A short name, used for the run directory.
    pub name: String,
    /// candles-service instances.
    pub instances: usize,
    /// Synthetic trades per second per simulator.
    pub rate: u32,
    /// Trades each simulator generates before it stops.
    pub max_trades: u64,
    /// Seed of the first simulator (the others use seed + 1, + 2).
    pub seed: u64,
    /// `--interval` of the service.
    pub interval: String,
    /// `--grace` of the service.
    pub grace: String,
    /// Extra flags for every simulator (faults).
    pub sim_args: Vec<String>,
    /// Extra flags for every connector.
    pub connector_args: Vec<String>,
    /// Kafka topic partitions.
    pub partitions: u32,
}

impl StackConfig {
    /// Defaults for a test named `name`: 2 instances, 60 trades/s for 900 trades, 1 s candles,
    /// 2 s grace (500 ms lets trades go late on a loaded 2-core machine: the first produce of a
    /// new connector alone can take a second), no faults.
    pub fn new(name: &str) -> StackConfig {
        StackConfig {
            name: name.to_string(),
            instances: 2,
            rate: 60,
            max_trades: 900,
            seed: 7,
            interval: "1s".into(),
            grace: "2s".into(),
            sim_args: Vec::new(),
            connector_args: Vec::new(),
            partitions: 6,
        }
    }
}

/// The pairs every simulator lists and every connector streams.
pub const PAIRS: &str = "btcusdt,ethusdt,solusdt";

/// The topic of trades.
pub const TOPIC: &str = "trades";

/// One simulator.
pub struct Sim {
    /// Its exchange.
    pub exchange: Exchange,
    proc: Proc,
    /// `--ws-url` for its connector.
    pub ws_url: String,
    /// `--rest-url` for its connector.
    pub rest_url: String,
    /// Every generated trade, one JSON object per line.
    pub trade_log: PathBuf,
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
    // Drop order = field order: clients of the broker and Redis first.
    connectors: Vec<Connector>,
    services: Vec<Service>,
    sims: Vec<Sim>,
    redis: Redis,
    broker: Kafka,
}

fn wait_healthy(proc: &mut Proc, addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_running()?;
        if wait_for_port(addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on {addr} within {timeout:?}; its log:\n{}",
                proc.name(),
                proc.log_tail(30)
            );
        }
    }
}

impl Stack {
    /// Builds the binaries if needed, starts the broker (topics `trades` and `trades.dlq`),
    /// Redis and the service instances, and waits until each instance serves gRPC. Simulators
    /// and connectors start with [`Stack::start_feeds`], so clients can subscribe first.
    pub fn start(config: StackConfig) -> Result<Stack> {
        bins::ensure_built()?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let dir = std::env::temp_dir()
            .join("candles-e2e")
            .join(format!("{}-{stamp}", config.name));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let broker = Kafka::start_in(&dir.join("kafka"))?;
        broker.create_topic(TOPIC, config.partitions)?;
        broker.create_topic(&format!("{TOPIC}.dlq"), 1)?;
        let redis = Redis::start()?;
        let mut stack = Stack {
            group: format!("candles-e2e-{stamp}"),
            config,
            dir,
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
            stack.start_service(i)?;
        }
        Ok(stack)
    }

    /// `http://127.0.0.1:PORT` of every service instance, in instance order.
    pub fn grpc_urls(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|s| format!("http://127.0.0.1:{}", s.grpc_port))
            .collect()
    }

    /// The broker's address.
    pub fn brokers(&self) -> String {
        self.broker.brokers()
    }

    /// (Re)starts service instance `i` on its ports and waits until it serves gRPC.
    pub fn start_service(&mut self, i: usize) -> Result<()> {
        let brokers = self.broker.brokers();
        let redis = self.redis.url();
        let c = &self.config;
        let s = &mut self.services[i];
        s.proc = None;
        let mut cmd = Command::new(bins::bin("candles-service")?);
        cmd.args([
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
            "--group",
            &self.group,
            "--redis",
            &redis,
        ])
        .args(["--listen", &format!("127.0.0.1:{}", s.grpc_port)])
        .args([
            "--interval",
            &c.interval,
            "--grace",
            &c.grace,
            "--clock",
            "wall",
            "--update-interval",
            "250ms",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", s.metrics_port)])
        .env(
            "RUST_LOG",
            std::env::var("CANDLES_E2E_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut proc = Proc::spawn(
            &format!("candles-service-{i}"),
            cmd,
            &self.dir.join(format!("service-{i}.log")),
        )?;
        wait_healthy(
            &mut proc,
            ([127, 0, 0, 1], s.grpc_port).into(),
            Duration::from_secs(20),
        )?;
        s.proc = Some(proc);
        Ok(())
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

    /// Starts one simulator and one connector per exchange, and waits until every connector
    /// serves metrics.
    pub fn start_feeds(&mut self) -> Result<()> {
        for (k, exchange) in Exchange::ALL.into_iter().enumerate() {
            let c = &self.config;
            let trade_log = self.dir.join(format!("trades-{exchange}.jsonl"));
            let mut cmd = Command::new(bins::bin("exchange-sim")?);
            cmd.args([
                "--exchange",
                exchange.as_str(),
                "--listen",
                "127.0.0.1:0",
                "--synthetic",
            ])
            .args(["--pairs", PAIRS])
            .args([
                "--rate",
                &c.rate.to_string(),
                "--max-trades",
                &c.max_trades.to_string(),
            ])
            .args(["--seed", &(c.seed + k as u64).to_string()])
            .arg("--trade-log")
            .arg(&trade_log)
            .args(&c.sim_args)
            .env("RUST_LOG", "info");
            let (proc, line) = Proc::spawn_read_first_line(
                &format!("exchange-sim-{exchange}"),
                cmd,
                &self.dir.join(format!("sim-{exchange}.log")),
                Duration::from_secs(10),
            )?;
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(str::to_string)
                    .with_context(|| format!("exchange-sim's first line has no `{name}`: {line:?}"))
            };
            let (ws_url, rest_url) = (field("ws=")?, field("rest=")?);
            self.sims.push(Sim {
                exchange,
                proc,
                ws_url,
                rest_url,
                trade_log,
            });
            self.connectors.push(Connector {
                exchange,
                proc: None,
                metrics_port: free_port(),
            });
            self.start_connector(exchange)?;
        }
        Ok(())
    }

    fn sim(&self, exchange: Exchange) -> Result<&Sim> {
        self.sims
            .iter()
            .find(|s| s.exchange == exchange)
            .with_context(|| format!("no simulator for {exchange}"))
    }

    /// (Re)starts the connector of `exchange` and waits until it serves metrics.
    pub fn start_connector(&mut self, exchange: Exchange) -> Result<()> {
        let sim = self.sim(exchange)?;
        let (ws, rest) = (sim.ws_url.clone(), sim.rest_url.clone());
        let brokers = self.broker.brokers();
        let dir = self.dir.clone();
        let extra = self.config.connector_args.clone();
        let c = self
            .connectors
            .iter_mut()
            .find(|c| c.exchange == exchange)
            .context("no such connector")?;
        c.proc = None;
        let mut cmd = Command::new(bins::bin("candles-connector")?);
        cmd.args([
            "--exchange",
            exchange.as_str(),
            "--pairs",
            PAIRS,
            "--brokers",
            &brokers,
            "--topic",
            TOPIC,
        ])
        .args(["--ws-url", &ws, "--rest-url", &rest])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", c.metrics_port)])
        .args(&extra)
        .env("RUST_LOG", "info");
        let mut proc = Proc::spawn(
            &format!("candles-connector-{exchange}"),
            cmd,
            &dir.join(format!("connector-{exchange}.log")),
        )?;
        wait_healthy(
            &mut proc,
            ([127, 0, 0, 1], c.metrics_port).into(),
            Duration::from_secs(20),
        )?;
        c.proc = Some(proc);
        Ok(())
    }

    /// `kill -9` of the connector of `exchange`.
    pub fn kill_connector(&mut self, exchange: Exchange) {
        if let Some(c) = self.connectors.iter_mut().find(|c| c.exchange == exchange) {
            c.proc = None;
        }
    }

    /// Kills redis-server, waits `down`, starts it again on the same port (empty: no persistence).
    pub fn restart_redis(&mut self, down: Duration) -> Result<()> {
        self.redis.kill();
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

    /// Fails, naming the process and quoting its log, if any process that should run has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.broker.check_running()?;
        for p in self.services.iter_mut().filter_map(|s| s.proc.as_mut()) {
            p.check_running()?;
        }
        for p in self.connectors.iter_mut().filter_map(|c| c.proc.as_mut()) {
            p.check_running()?;
        }
        for s in &mut self.sims {
            s.proc.check_running()?;
        }
        Ok(())
    }

    /// Waits until every simulator has logged `max_trades` trades.
    pub fn wait_sims_done(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let counts: Vec<usize> = self
                .sims
                .iter()
                .map(|s| count_lines(&s.trade_log))
                .collect();
            if counts.iter().all(|&n| n as u64 >= self.config.max_trades) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the simulators did not generate {} trades each within {timeout:?}: {counts:?}",
                    self.config.max_trades
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every trade the simulators generated (their trade logs).
    pub fn generated_trades(&self) -> Result<Vec<Trade>> {
        let mut all = Vec::new();
        for s in &self.sims {
            all.extend(crate::truth::read_trade_log(&s.trade_log)?);
        }
        Ok(all)
    }

    /// The records of the trades topic: all of them within `budget`, or fewer when `enough`
    /// says so.
    pub fn kafka_records(
        &self,
        budget: Duration,
        enough: &dyn Fn(&[crate::kafka::Record]) -> bool,
    ) -> Result<crate::kafka::Read> {
        crate::kafka::read_topic(
            &self.broker.brokers(),
            TOPIC,
            self.config.partitions as i32,
            budget,
            enough,
        )
    }

    /// `http://127.0.0.1:PORT` of the instances that are running.
    pub fn running_grpc_urls(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.proc.is_some())
            .map(|s| format!("http://127.0.0.1:{}", s.grpc_port))
            .collect()
    }

    /// Waits (up to `timeout`) until every service instance's log says it got partitions.
    pub fn wait_assigned(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let all = self
                .services
                .iter()
                .filter_map(|s| s.proc.as_ref())
                .all(|p| {
                    std::fs::read_to_string(p.log_path())
                        .is_ok_and(|t| t.contains("partitions assigned"))
                });
            if all {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Prometheus counters of the running services and connectors whose names contain one of
    /// `names`, summed per metric name and label set: `name{labels} value` lines.
    pub fn counters(&self, names: &[&str]) -> Vec<String> {
        let ports = self
            .services
            .iter()
            .filter(|s| s.proc.is_some())
            .map(|s| s.metrics_port)
            .chain(
                self.connectors
                    .iter()
                    .filter(|c| c.proc.is_some())
                    .map(|c| c.metrics_port),
            );
        let mut sums: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        for port in ports {
            for line in candles_testkit::scrape_metrics(port).lines() {
                let Some((metric, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                if line.starts_with('#') || !names.iter().any(|n| metric.contains(n)) {
                    continue;
                }
                *sums.entry(metric.to_string()).or_default() += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        sums.into_iter().map(|(m, v)| format!("{m} {v}")).collect()
    }

    /// Where the logs are.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// The pairs streamed.
    pub fn pairs() -> Vec<Pair> {
        Pair::defaults()
    }
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}
