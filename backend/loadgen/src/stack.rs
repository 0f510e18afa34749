//! The native stack as child processes: Apache Kafka, redis-server, candles-service instances, and one
//! `exchange-sim --synthetic` plus one `candles-connector` per exchange. Every child is killed
//! when the [`Stack`] is dropped; stdout and stderr go to log files in the run directory.

use crate::procstat::Watch;
use anyhow::{Context as _, Result, bail};
use candles_testkit::free_port;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `exchange-sim`.
    pub sim: PathBuf,
    /// `candles-connector`.
    pub connector: PathBuf,
    /// `candles-service`.
    pub service: PathBuf,
    /// `redis-server`.
    pub redis: PathBuf,
}

impl Binaries {
    /// Our binaries from `dir` (e.g. `$CARGO_TARGET_DIR/release`) unless given;
    /// redis-server from the given paths, `~/.cache/candles/bin` or `PATH`.
    pub fn locate(dir: &Path, redis: Option<PathBuf>) -> Result<Binaries> {
        let ours = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!(
                    "{} is missing: build it with `cargo build --release -p exchange-sim -p candles-connector -p candles-service`, or pass --bin-dir",
                    p.display()
                )
            }
        };
        let external = |name: &str, given: Option<PathBuf>| -> Result<PathBuf> {
            if let Some(p) = given {
                return Ok(p);
            }
            let cached = candles_testkit::bin_dir().join(name);
            if cached.is_file() {
                return Ok(cached);
            }
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!("`{name}` not found; run scripts/install-test-deps.sh or pass its path")
                })
        };
        Ok(Binaries {
            sim: ours("exchange-sim")?,
            connector: ours("candles-connector")?,
            service: ours("candles-service")?,
            redis: external("redis-server", redis)?,
        })
    }
}

/// How to build the stack.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Exchanges to simulate (one simulator and one connector each).
    pub exchanges: Vec<String>,
    /// Synthetic trades per second of each simulator.
    pub rate_per_sim: f64,
    /// Pairs, comma-separated.
    pub pairs: String,
    /// candles-service instances.
    pub instances: usize,
    /// `--interval`.
    pub interval: String,
    /// `--grace`.
    pub grace: String,
    /// `--update-interval`.
    pub update_interval: String,
    /// Partitions of the `trades` topic.
    pub partitions: u32,
    /// Whether simulators write trade logs (ground truth for loss and live latency).
    pub trade_logs: bool,
    /// Logs and trade logs go here.
    pub run_dir: PathBuf,
}

/// A child process, killed on drop.
pub struct Proc {
    /// Display name.
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path, stdout_piped: bool) -> Result<Proc> {
        let mut file = open_log(log)?;
        writeln!(file, "==== loadgen: starting {name}: {cmd:?}")?;
        let out = if stdout_piped {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, quoting its log, when it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_log(log: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log file {}", log.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_listening(proc: &mut Proc, addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on {addr} within {timeout:?}; end of its log:\n{}",
                proc.name,
                tail(&proc.log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the `trades` topic holds.
#[derive(Clone, Debug)]
pub struct TopicCounts {
    /// Records read.
    pub records: u64,
    /// Records whose (exchange, pair, id) was already read.
    pub duplicates: u64,
    /// Records that are not a `candles.v1.Trade`.
    pub undecodable: u64,
    /// Unique trades per (series, window start).
    pub unique: std::collections::BTreeMap<crate::stats::WindowKey, u64>,
    /// Whether every partition was read up to its high watermark.
    pub complete: bool,
}

impl Default for TopicCounts {
    fn default() -> Self {
        TopicCounts {
            records: 0,
            duplicates: 0,
            undecodable: 0,
            unique: Default::default(),
            complete: true,
        }
    }
}

/// One simulator's trade log.
#[derive(Clone, Debug)]
pub struct TradeLog {
    /// Exchange name.
    pub exchange: String,
    /// File (one JSON object per trade).
    pub path: PathBuf,
}

/// A running stack (see the module docs).
pub struct Stack {
    /// The options it was started with.
    pub options: StackOptions,
    /// gRPC ports of the service instances.
    pub grpc_ports: Vec<u16>,
    /// Trade logs of the simulators (empty until [`Stack::start_feeds`]).
    pub trade_logs: Vec<TradeLog>,
    bins: Binaries,
    brokers: String,
    /// (process name, Prometheus port) of every process that serves metrics.
    metrics: Vec<(String, u16)>,
    // Drop order = field order: feeds, then services, then Redis and the broker.
    connectors: Vec<Proc>,
    sims: Vec<Proc>,
    services: Vec<Proc>,
    redis: Proc,
    kafka: candles_testkit::Kafka,
}

impl Stack {
    /// Starts Kafka (topics `trades`, `trades.dlq`), redis-server and the service instances, and
    /// waits until each instance listens for gRPC.
    pub fn start(options: StackOptions, bins: Binaries) -> Result<Stack> {
        std::fs::create_dir_all(&options.run_dir)
            .with_context(|| format!("cannot create {}", options.run_dir.display()))?;
        let dir = options.run_dir.clone();
        let kafka = candles_testkit::Kafka::start_in(&dir.join("kafka"))?;
        let brokers = kafka.brokers();
        for (topic, partitions) in [("trades", options.partitions), ("trades.dlq", 1)] {
            kafka.create_topic(topic, partitions)?;
        }
        let redis_port = free_port();
        let mut cmd = Command::new(&bins.redis);
        cmd.args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir);
        let mut redis = Proc::spawn("redis-server", cmd, &dir.join("redis.log"), false)?;
        wait_listening(
            &mut redis,
            ([127, 0, 0, 1], redis_port).into(),
            Duration::from_secs(10),
        )?;
        let redis_url = format!("redis://127.0.0.1:{redis_port}/");
        let mut services = Vec::new();
        let mut grpc_ports = Vec::new();
        let mut metrics = Vec::new();
        for i in 0..options.instances {
            let port = free_port();
            let metrics_port = free_port();
            metrics.push((format!("candles-service-{i}"), metrics_port));
            let mut cmd = Command::new(&bins.service);
            cmd.args(["--brokers", &brokers, "--topic", "trades"])
                .args(["--group", "candles-loadgen", "--redis", &redis_url])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--interval", &options.interval, "--grace", &options.grace])
                .args(["--update-interval", &options.update_interval])
                .args(["--clock", "wall"])
                .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
                .env("RUST_LOG", "warn");
            let p = Proc::spawn(
                &format!("candles-service-{i}"),
                cmd,
                &dir.join(format!("service-{i}.log")),
                false,
            )?;
            services.push(p);
            grpc_ports.push(port);
        }
        for (p, &port) in services.iter_mut().zip(&grpc_ports) {
            wait_listening(p, ([127, 0, 0, 1], port).into(), Duration::from_secs(30))?;
        }
        Ok(Stack {
            options,
            grpc_ports,
            trade_logs: Vec::new(),
            bins,
            brokers,
            metrics,
            connectors: Vec::new(),
            sims: Vec::new(),
            services,
            redis,
            kafka,
        })
    }

    /// Starts one simulator and one connector per exchange; waits until each connector serves
    /// its metrics (it is up and producing).
    pub fn start_feeds(&mut self) -> Result<()> {
        let o = self.options.clone();
        for (k, exchange) in o.exchanges.iter().enumerate() {
            let log = o.run_dir.join(format!("sim-{exchange}.log"));
            let trade_log = o.run_dir.join(format!("trades-{exchange}.jsonl"));
            let sim_metrics = free_port();
            self.metrics
                .push((format!("exchange-sim-{exchange}"), sim_metrics));
            let mut cmd = Command::new(&self.bins.sim);
            cmd.args(["--exchange", exchange, "--listen", "127.0.0.1:0"])
                .args(["--metrics-addr", &format!("127.0.0.1:{sim_metrics}")])
                .args(["--synthetic", "--rate", &o.rate_per_sim.to_string()])
                .args(["--pairs", &o.pairs, "--seed", &(k + 1).to_string()])
                .env("RUST_LOG", "warn");
            if o.trade_logs {
                cmd.arg("--trade-log").arg(&trade_log);
            }
            let mut sim = Proc::spawn(&format!("exchange-sim-{exchange}"), cmd, &log, true)?;
            let line = first_line(&mut sim, &log, Duration::from_secs(10))?;
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(str::to_string)
                    .with_context(|| format!("exchange-sim's first line has no `{name}`: {line:?}"))
            };
            let (ws, rest) = (field("ws=")?, field("rest=")?);
            self.sims.push(sim);
            if o.trade_logs {
                self.trade_logs.push(TradeLog {
                    exchange: exchange.clone(),
                    path: trade_log,
                });
            }
            let metrics_port = free_port();
            self.metrics
                .push((format!("candles-connector-{exchange}"), metrics_port));
            let mut cmd = Command::new(&self.bins.connector);
            cmd.args(["--exchange", exchange, "--pairs", &o.pairs])
                .args(["--brokers", &self.brokers, "--topic", "trades"])
                .args(["--ws-url", &ws, "--rest-url", &rest])
                .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
                .env("RUST_LOG", "warn");
            let mut conn = Proc::spawn(
                &format!("candles-connector-{exchange}"),
                cmd,
                &o.run_dir.join(format!("connector-{exchange}.log")),
                false,
            )?;
            wait_listening(
                &mut conn,
                ([127, 0, 0, 1], metrics_port).into(),
                Duration::from_secs(20),
            )?;
            self.connectors.push(conn);
        }
        Ok(())
    }

    /// Stops the simulators (SIGTERM), so their trade logs are complete.
    pub fn stop_sims(&mut self) {
        for s in &mut self.sims {
            s.terminate(Duration::from_secs(3));
        }
    }

    /// Fails, naming the process and quoting its log, if any process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.kafka.check_running()?;
        self.redis.check_running()?;
        for p in self
            .services
            .iter_mut()
            .chain(self.sims.iter_mut())
            .chain(self.connectors.iter_mut())
        {
            p.check_running()?;
        }
        Ok(())
    }

    /// A watch per process (for CPU and memory).
    pub fn watches(&self) -> Vec<Watch> {
        let kafka = self.kafka.pid().map(|pid| Watch::new("kafka", pid));
        kafka
            .into_iter()
            .chain(
                [&self.redis]
                    .into_iter()
                    .chain(&self.services)
                    .chain(&self.sims)
                    .chain(&self.connectors)
                    .map(|p| Watch::new(&p.name, p.pid())),
            )
            .collect()
    }

    /// Counters and gauges of every process whose metric name contains one of `names`:
    /// `process metric{labels}` → value.
    pub fn counters(&self, names: &[&str]) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        for (proc, port) in &self.metrics {
            for line in candles_testkit::scrape_metrics(*port).lines() {
                if line.starts_with('#') {
                    continue;
                }
                let Some((metric, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                if names.iter().any(|n| metric.contains(n)) {
                    out.insert(
                        format!("{proc} {metric}"),
                        value.parse().unwrap_or(f64::NAN),
                    );
                }
            }
        }
        out
    }

    /// Σ high watermarks of the `trades` topic's partitions: the records the broker holds (the
    /// producers are idempotent, so with the feeds stopped this equals the trades acknowledged).
    pub fn trades_in_kafka(&self) -> Result<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "candles-loadgen-watermarks")
            .create()
            .context("creating a Kafka client for watermark queries")?;
        let mut sum = 0;
        let mut result = Ok(());
        for p in 0..self.options.partitions as i32 {
            match consumer.fetch_watermarks("trades", p, Duration::from_secs(5)) {
                Ok((low, high)) => sum += high - low,
                Err(e) => {
                    result = Err(anyhow::anyhow!("watermarks of trades/{p}: {e}"));
                    break;
                }
            }
        }
        // Dropping an rdkafka client can hang (PITFALLS.md); this one is never subscribed, but a
        // measurement tool must not hang: let it go without destroying it.
        std::mem::forget(consumer);
        result.map(|()| sum)
    }

    /// Reads the whole `trades` topic (up to the high watermarks taken first, within `budget`)
    /// and counts its records per (series, window of `interval_us`), for composite series
    /// (`PAIR`) and exchange series (`PAIR/exchange`): unique trades (exchange, pair, id) and
    /// duplicate records.
    pub fn read_trades_topic(&self, interval_us: i64, budget: Duration) -> Result<TopicCounts> {
        use prost::Message as _;
        use rdkafka::Offset;
        use rdkafka::TopicPartitionList;
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        use rdkafka::message::Message as _;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "candles-loadgen-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "52428800")
            .create()
            .context("creating a Kafka client to read the trades topic")?;
        let parts = self.options.partitions as i32;
        let mut high = Vec::new();
        let mut list = TopicPartitionList::new();
        for p in 0..parts {
            let (_, h) = consumer
                .fetch_watermarks("trades", p, Duration::from_secs(5))
                .with_context(|| format!("watermarks of trades/{p}"))?;
            high.push(h);
            list.add_partition_offset("trades", p, Offset::Beginning)?;
        }
        consumer
            .assign(&list)
            .context("assigning the trades partitions")?;
        let mut next = vec![0i64; parts as usize];
        let mut seen = std::collections::HashSet::new();
        let mut out = TopicCounts::default();
        let deadline = Instant::now() + budget;
        while next.iter().zip(&high).any(|(n, h)| n < h) {
            if Instant::now() > deadline {
                out.complete = false;
                break;
            }
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let Ok(msg) = msg else { continue };
            let p = msg.partition() as usize;
            if p < next.len() {
                next[p] = next[p].max(msg.offset() + 1);
            }
            out.records += 1;
            let Some(t) = msg
                .payload()
                .and_then(|v| candles_proto::v1::Trade::decode(v).ok())
            else {
                out.undecodable += 1;
                continue;
            };
            if !seen.insert((t.exchange.clone(), t.pair.clone(), t.trade_id)) {
                out.duplicates += 1;
                continue;
            }
            let time = t
                .trade_time
                .map_or(0, |ts| ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000);
            let start = time.div_euclid(interval_us) * interval_us;
            *out.unique
                .entry((crate::truth::exchange_series(&t.pair, &t.exchange), start))
                .or_default() += 1;
            *out.unique.entry((t.pair, start)).or_default() += 1;
        }
        out.complete &= next.iter().zip(&high).all(|(n, h)| n >= h);
        std::mem::forget(consumer); // see trades_in_kafka
        Ok(out)
    }

    /// Starts a plain consumer (manual assignment of every partition from the beginning, no
    /// group) that tails the `trades` topic on its own thread until `stop` is set, counting
    /// records per composite (pair, window of `interval_us`). Compared with a full read
    /// afterwards, it tells whether a consumer at the tail is ever handed fewer records than the
    /// topic ends up holding.
    pub fn tail_trades_topic(
        &self,
        interval_us: i64,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<std::thread::JoinHandle<TopicCounts>> {
        use prost::Message as _;
        use rdkafka::Offset;
        use rdkafka::TopicPartitionList;
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        use rdkafka::message::Message as _;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "candles-loadgen-tail")
            .set("enable.auto.commit", "false")
            .create()
            .context("creating a Kafka client to tail the trades topic")?;
        let mut list = TopicPartitionList::new();
        for p in 0..self.options.partitions as i32 {
            list.add_partition_offset("trades", p, Offset::Beginning)?;
        }
        consumer
            .assign(&list)
            .context("assigning the trades partitions")?;
        Ok(std::thread::spawn(move || {
            let mut out = TopicCounts::default();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                out.records += 1;
                let Some(t) = msg
                    .payload()
                    .and_then(|v| candles_proto::v1::Trade::decode(v).ok())
                else {
                    out.undecodable += 1;
                    continue;
                };
                let time = t
                    .trade_time
                    .map_or(0, |ts| ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000);
                let start = time.div_euclid(interval_us) * interval_us;
                *out.unique.entry((t.pair, start)).or_default() += 1;
            }
            std::mem::forget(consumer); // see trades_in_kafka
            out
        }))
    }

    /// Process id of service instance `i`.
    pub fn service_pid(&self, i: usize) -> Option<u32> {
        self.services.get(i).map(Proc::pid)
    }
}

/// Reads the first stdout line of `proc` (then copies the rest of its stdout to `log`).
fn first_line(proc: &mut Proc, log: &Path, timeout: Duration) -> Result<String> {
    let stdout = proc.child.stdout.take().context("no stdout pipe")?;
    let mut file = open_log(log)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = file.write_all(&buf[..n]);
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(line) if !line.trim().is_empty() => Ok(line.trim().to_string()),
        _ => bail!(
            "{} printed no address line within {timeout:?}; end of its log:\n{}",
            proc.name,
            tail(log, 30)
        ),
    }
}
