//! Apache Kafka for tests: one broker in KRaft combined mode (broker + controller in one JVM) on
//! free loopback ports, with its data on disk so that a restart (SIGTERM or `kill -9`) keeps
//! topics, records and committed offsets.
//!
//! The broker is the Apache Kafka release from Maven Central (`org.apache.kafka:kafka_2.13`,
//! [`KAFKA_VERSION`]), which `scripts/install-test-deps.sh` copies with its dependencies into
//! [`libs_dir`] once per machine. It runs as `java -cp 'LIBS/*' kafka.Kafka server.properties`.
//! Kafka 4 has no ZooKeeper: a storage directory must be formatted before the first start. The
//! format (`kafka.tools.StorageTool format`, a JVM start of ~4 s) is done once per machine into a
//! template (`meta.properties` and `bootstrap.checkpoint`), and every new broker copies it.
//!
//! [`Kafka::shared`] is one broker per test process, for the many tests that only need a topic of
//! their own; a test that stops, kills or freezes the broker starts its own with [`Kafka::start`].

use crate::net::{free_port, wait_for_port};
use crate::process::Proc;
use anyhow::{Context as _, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::RDKafkaErrorCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Apache Kafka version the tests, benchmarks and the native stack run; `docker-compose.yml`
/// names the same version of the `apache/kafka` image (checked by `backend/e2e/tests/compose.rs`),
/// and `scripts/kafka/pom.xml` fetches it.
pub const KAFKA_VERSION: &str = "4.1.1";

/// Where the broker's jars are: `$CANDLES_KAFKA_LIBS`, else
/// `~/.cache/candles/kafka-VERSION/libs` (what `scripts/install-test-deps.sh` fills).
pub fn libs_dir() -> PathBuf {
    std::env::var_os("CANDLES_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| kafka_home().join("libs"))
}

fn kafka_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(format!(".cache/candles/kafka-{KAFKA_VERSION}"))
}

/// `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` from `PATH`.
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// The class path of the broker, with a clear error when the jars are missing.
fn class_path() -> Result<String> {
    let libs = libs_dir();
    let jar = libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    if !jar.is_file() {
        bail!(
            "Apache Kafka {KAFKA_VERSION} was not found ({} is missing; $CANDLES_KAFKA_LIBS \
             overrides the directory): run scripts/install-test-deps.sh, which fetches it from \
             Maven Central once per machine",
            jar.display()
        );
    }
    Ok(format!("{}/*", libs.display()))
}

/// The broker's `server.properties`: one node that is both broker and controller, plaintext on
/// loopback, everything replicated once, no initial rebalance delay (a test's consumers join
/// at once), session timeouts from 1 s (Kafka's default minimum is 6 s; failover tests use 3 s),
/// and the topics' data in `data`.
fn properties(port: u16, controller_port: u16, data: &Path) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
",
        data.display()
    )
}

const LOG4J: &str = "status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${env:CANDLES_KAFKA_LOG:-WARN}
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = ${env:CANDLES_KAFKA_LOG:-WARN}
";

/// The formatted storage every new broker starts from (formatted once per machine, or per
/// process when the cache cannot be written).
fn template() -> Result<PathBuf> {
    static TEMPLATE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| make_template().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn make_template() -> Result<PathBuf> {
    let dir = std::env::var_os("CANDLES_KAFKA_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| kafka_home().join("formatted"));
    if dir.join("meta.properties").is_file() && dir.join("bootstrap.checkpoint").is_file() {
        return Ok(dir);
    }
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let config = scratch.path().join("server.properties");
    std::fs::write(&config, properties(1, 2, &data))?;
    let out = Command::new(java())
        .arg("-cp")
        .arg(class_path()?)
        .args(["kafka.tools.StorageTool", "format", "--ignore-formatted"])
        .args(["--cluster-id", "Y2FuZGxlcy10ZXN0cy0xMQ"])
        .arg("--config")
        .arg(&config)
        .output()
        .with_context(|| format!("running {} (Java 17 or newer is needed)", java().display()))?;
    if !out.status.success() {
        bail!(
            "formatting Kafka storage failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Publish the template atomically: build it beside, then rename.
    let parent = dir.parent().context("template dir has no parent")?;
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::tempdir_in(parent)?;
    for f in ["meta.properties", "bootstrap.checkpoint"] {
        std::fs::copy(data.join(f), staging.path().join(f))?;
    }
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another process published it first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(dir)
}

/// One Apache Kafka broker (KRaft, combined broker + controller) on free loopback ports. Killed
/// when dropped; its data directory is removed with it unless it was given by the caller.
pub struct Kafka {
    proc: Option<Proc>,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    _owned_dir: Option<tempfile::TempDir>,
}

impl Kafka {
    /// Starts a broker of its own in a fresh temporary directory and waits until it answers.
    pub fn start() -> Result<Kafka> {
        let tmp = tempfile::Builder::new()
            .prefix("candles-kafka-")
            .tempdir()?;
        let mut k = Kafka::start_in(tmp.path())?;
        k._owned_dir = Some(tmp);
        Ok(k)
    }

    /// Starts a broker whose data, config and log (`kafka.log`) live in `dir` (created if
    /// needed, formatted unless it already holds a broker's data), and waits until it answers.
    pub fn start_in(dir: &Path) -> Result<Kafka> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        if !data.join("meta.properties").is_file() {
            let template = template()?;
            for f in ["meta.properties", "bootstrap.checkpoint"] {
                std::fs::copy(template.join(f), data.join(f))
                    .with_context(|| format!("copying the formatted Kafka storage {f}"))?;
            }
        }
        let mut k = Kafka {
            proc: None,
            port: free_port(),
            controller_port: free_port(),
            dir: dir.to_path_buf(),
            _owned_dir: None,
        };
        k.restart()?;
        Ok(k)
    }

    /// The broker of this test process, started on first use and shared by every test of it
    /// (each with topics and groups of its own). Never stop, kill or freeze it: start your own.
    pub fn shared() -> &'static Kafka {
        static SHARED: OnceLock<Kafka> = OnceLock::new();
        SHARED.get_or_init(|| {
            Kafka::start().unwrap_or_else(|e| panic!("cannot start the shared Kafka broker: {e:#}"))
        })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers` / `--brokers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port of the broker listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's pid (for `kill -STOP` and the like), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The directory of its data, config and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the broker (SIGKILL). Its data stays on disk.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Stops the broker with SIGTERM (a controlled shutdown; SIGKILL after 30 s).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(30));
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the broker process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        self.proc
            .as_ref()
            .context("the broker is not running")?
            .signal(signal)
    }

    /// Fails, quoting the broker's log, if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.check_running(),
            None => Ok(()),
        }
    }

    /// (Re)starts the broker on the same ports with the same data, and waits until it answers
    /// a metadata request (up to 60 s). The broker's log level is `$CANDLES_KAFKA_LOG` (default
    /// `WARN`), its heap `$CANDLES_KAFKA_HEAP` (default `512m`).
    ///
    /// While the broker was down, a client reconnecting to its port from the same ephemeral
    /// range can end up connected to itself (TCP simultaneous open) and hold the port for a
    /// moment: a start that fails with "Address already in use" is tried again, up to 5 times.
    pub fn restart(&mut self) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.start_once() {
                Err(e) if attempt < 5 && format!("{e:#}").contains("Address already in use") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                result => return result,
            }
        }
    }

    fn start_once(&mut self) -> Result<()> {
        self.proc = None;
        let config = self.dir.join("server.properties");
        std::fs::write(
            &config,
            properties(self.port, self.controller_port, &self.dir.join("data")),
        )?;
        let log4j = self.dir.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J)?;
        let heap = std::env::var("CANDLES_KAFKA_HEAP").unwrap_or_else(|_| "512m".into());
        let mut cmd = Command::new(java());
        cmd.arg(format!("-Xmx{heap}"))
            .arg(format!("-Xms{heap}"))
            .args([
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg("-cp")
            .arg(class_path()?)
            .arg("kafka.Kafka")
            .arg(&config);
        self.proc = Some(Proc::spawn("kafka", cmd, &self.dir.join("kafka.log"))?);
        let timeout = Duration::from_secs(60);
        wait_for_port(([127, 0, 0, 1], self.port).into(), timeout)
            .with_context(|| self.failure("did not open its port"))?;
        self.wait_ready(timeout)
    }

    fn failure(&self, what: &str) -> String {
        let tail = self
            .proc
            .as_ref()
            .map(|p| p.log_tail(30))
            .unwrap_or_default();
        format!(
            "Kafka on {} {what}; end of {}:\n{tail}",
            self.brokers(),
            self.dir.join("kafka.log").display()
        )
    }

    /// Waits until the broker answers a metadata request listing itself.
    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let consumer: BaseConsumer = self.client().create()?;
        let deadline = Instant::now() + timeout;
        let result = loop {
            if let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(2))
                && !md.brokers().is_empty()
            {
                break Ok(());
            }
            if let Err(e) = self.check_running() {
                break Err(e);
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!(
                    self.failure("did not answer metadata requests")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop_detached(consumer);
        result
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers())
            .set("log_level", "3");
        c
    }

    /// Creates `name` with `partitions` partitions (replicated once) and waits until every
    /// partition has a leader. An existing topic is an error.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        self.create_topic_with(name, partitions, &[])
    }

    /// [`Kafka::create_topic`] with topic configs, e.g. `("max.message.bytes", "2000")`.
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client().create()?;
        let mut topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = loop {
            let r = futures::executor::block_on(admin.create_topics([&topic], &opts));
            match r.as_ref().map(|v| v.first().cloned()) {
                Ok(Some(Ok(_))) => break Ok(()),
                Ok(Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))) => {
                    break Err(anyhow::anyhow!("topic {name} already exists"));
                }
                other if Instant::now() > deadline => {
                    break Err(anyhow::anyhow!("creating topic {name} failed: {other:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        drop_detached(admin);
        result?;
        self.wait_for_leaders(name, partitions)
    }

    fn wait_for_leaders(&self, name: &str, partitions: u32) -> Result<()> {
        let consumer: BaseConsumer = self.client().create()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let result = loop {
            let ready = consumer
                .fetch_metadata(Some(name), Duration::from_secs(2))
                .ok()
                .and_then(|md| {
                    md.topics().first().map(|t| {
                        t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!(
                    "topic {name}: not every one of its {partitions} partitions had a leader within 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop_detached(consumer);
        result
    }
}

/// Drops an rdkafka client on a thread nobody joins: `rd_kafka_destroy` can hang (PITFALLS).
pub(crate) fn drop_detached<T: Send + 'static>(client: T) {
    std::thread::spawn(move || drop(client));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_starts_creates_topics_and_keeps_them_across_a_kill() {
        let mut k = Kafka::start().unwrap();
        k.create_topic("testkit-topic", 3).unwrap();
        assert!(k.create_topic("testkit-topic", 3).is_err());
        k.kill();
        k.restart().unwrap();
        // The topic survived: creating it again is refused.
        let err = k.create_topic("testkit-topic", 3).unwrap_err();
        assert!(format!("{err}").contains("already exists"), "{err}");
    }
}
