//! Shared test support: real Apache Kafka + redis-server, an in-process or child-process service, a
//! trade producer that writes exactly what connectors write, gRPC stream collectors, and the
//! reference candles computed independently by a fresh event-time engine.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use candles_core::time::Duration as CoreDuration;
use candles_core::{
    Candle, ClockMode, Engine, EngineConfig, Exchange, Interval, Micros, Pair, Side, Source, Trade,
};
use candles_proto::v1::candle_service_client::CandleServiceClient;
use candles_proto::v1::{self, SubscribeRequest, SubscribeResponse};
use candles_service::ServiceConfig;
use candles_testkit::{Kafka, Redis};
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const INTERVAL: Interval = Interval::seconds(1);
pub const GRACE_MS: i64 = 400;

pub fn pairs() -> Vec<Pair> {
    ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
        .iter()
        .map(|p| Pair::parse(p).unwrap())
        .collect()
}

/// A unique name per test run (topics, groups).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Real Apache Kafka and Redis, plus a fresh topic. The broker is the test process's shared
/// one unless the test asked for its own ([`Deps::with_own_broker`]) to stop or freeze it.
pub struct Deps {
    own_kafka: Option<Kafka>,
    pub redis: Redis,
    pub topic: String,
    pub group: String,
}

impl Deps {
    pub fn start(partitions: u32) -> Deps {
        Deps::with(None, partitions)
    }

    /// Like [`Deps::start`], on a broker of the test's own.
    pub fn with_own_broker(partitions: u32) -> Deps {
        let kafka = Kafka::start().expect("Kafka must be installed (scripts/install-test-deps.sh)");
        Deps::with(Some(kafka), partitions)
    }

    fn with(own_kafka: Option<Kafka>, partitions: u32) -> Deps {
        init_tracing();
        let redis =
            Redis::start().expect("redis-server must be installed (scripts/install-test-deps.sh)");
        let deps = Deps {
            own_kafka,
            redis,
            topic: unique("trades"),
            group: unique("candles"),
        };
        deps.kafka().create_topic(&deps.topic, partitions).unwrap();
        deps
    }

    /// The broker.
    pub fn kafka(&self) -> &Kafka {
        self.own_kafka.as_ref().unwrap_or_else(|| Kafka::shared())
    }

    pub fn config(&self) -> ServiceConfig {
        ServiceConfig {
            brokers: self.kafka().brokers(),
            topic: self.topic.clone(),
            group: self.group.clone(),
            dlq_topic: format!("{}.dlq", self.topic),
            redis_url: self.redis.url(),
            listen: "127.0.0.1:0".parse().unwrap(),
            engine: EngineConfig {
                interval: INTERVAL,
                grace: CoreDuration::from_millis(GRACE_MS),
                clock: ClockMode::Wall,
            },
            update_interval: Duration::from_millis(100),
            history_max: 100,
            ..ServiceConfig::default()
        }
    }
}

/// A service running in this process.
pub struct InProcess {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub async fn start(config: ServiceConfig) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(candles_service::serve(config, listener, shutdown.clone()));
        InProcess {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn client(&self) -> CandleServiceClient<Channel> {
        connect(self.addr).await
    }

    pub async fn stop(self) -> Duration {
        let t = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("service stops within 10s")
            .unwrap()
            .unwrap();
        t.elapsed()
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn connect(addr: SocketAddr) -> CandleServiceClient<Channel> {
    CandleServiceClient::new(channel(addr).await)
}

/// Waits until the standard health check says SERVING.
pub async fn wait_serving(addr: SocketAddr, timeout: Duration) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    let deadline = Instant::now() + timeout;
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} not SERVING within {timeout:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn all_sources() -> Vec<String> {
    Source::ALL.iter().map(|s| s.to_string()).collect()
}

pub fn request(pairs: &[Pair], sources: Vec<String>, history: u32, live: bool) -> SubscribeRequest {
    SubscribeRequest {
        pairs: pairs.iter().map(|p| p.to_string()).collect(),
        sources,
        history,
        live_updates: live,
        interval: None,
        verifications: false,
    }
}

/// What one client stream delivered, filled by a background task.
#[derive(Clone, Default)]
pub struct Collected {
    pub items: Arc<Mutex<Vec<(Instant, SubscribeResponse)>>>,
    pub ended: Arc<Mutex<Option<Result<(), tonic::Status>>>>,
}

impl Collected {
    pub async fn subscribe(
        client: &mut CandleServiceClient<Channel>,
        req: SubscribeRequest,
    ) -> Collected {
        let mut stream = client.subscribe(req).await.expect("subscribe").into_inner();
        let c = Collected::default();
        let out = c.clone();
        tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(m)) => out.items.lock().unwrap().push((Instant::now(), m)),
                    Ok(None) => {
                        *out.ended.lock().unwrap() = Some(Ok(()));
                        return;
                    }
                    Err(s) => {
                        *out.ended.lock().unwrap() = Some(Err(s));
                        return;
                    }
                }
            }
        });
        c
    }

    pub fn responses(&self) -> Vec<SubscribeResponse> {
        self.items
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn finals(&self) -> Vec<v1::Candle> {
        self.responses()
            .into_iter()
            .filter_map(|r| r.candle)
            .filter(|c| c.r#final)
            .collect()
    }

    /// Waits until every expected identity has arrived (or the timeout passes).
    pub async fn wait_for(&self, expected: &[Candle], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let have: std::collections::HashSet<_> = self.finals().iter().map(id_of).collect();
            if expected
                .iter()
                .all(|c| have.contains(&(c.pair.to_string(), c.source.to_string(), c.start.0)))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn start_of(c: &v1::Candle) -> i64 {
    candles_proto::micros("start", c.start.as_ref()).unwrap().0
}

pub fn id_of(c: &v1::Candle) -> (String, String, i64) {
    (c.pair.clone(), c.source.clone(), start_of(c))
}

/// Every expected final arrived exactly once with exactly the expected values; no other final in
/// the span of the expected windows; no series ever repeats or goes back.
pub fn check_exact(received: &[v1::Candle], expected: &[Candle]) -> Result<(), String> {
    let mut by_series: BTreeMap<(String, String), Vec<&v1::Candle>> = BTreeMap::new();
    for c in received {
        by_series
            .entry((c.pair.clone(), c.source.clone()))
            .or_default()
            .push(c);
    }
    for (series, candles) in &by_series {
        for w in candles.windows(2) {
            if start_of(w[1]) <= start_of(w[0]) {
                return Err(format!(
                    "{series:?}: final {} after {} (duplicate or out of order)",
                    start_of(w[1]),
                    start_of(w[0])
                ));
            }
        }
    }
    let mut span: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let want: HashMap<(String, String, i64), v1::Candle> = expected
        .iter()
        .map(|c| {
            let w = v1::Candle::from(c);
            let key = (w.pair.clone(), w.source.clone());
            let e = span.entry(key).or_insert((c.start.0, c.start.0));
            e.0 = e.0.min(c.start.0);
            e.1 = e.1.max(c.start.0);
            (id_of(&w), w)
        })
        .collect();
    for (id, w) in &want {
        let got: Vec<_> = received.iter().filter(|c| &id_of(c) == id).collect();
        match got.as_slice() {
            [one] if one.published_at.is_none() => {
                return Err(format!("{id:?}: published without published_at: {one:?}"));
            }
            [one]
                if candles_proto::micros("published_at", one.published_at.as_ref())
                    .ok()
                    .zip(candles_proto::micros("end", one.end.as_ref()).ok())
                    .is_none_or(|(published, end)| published < end) =>
            {
                return Err(format!(
                    "{id:?}: a final published before its window ended: {one:?}"
                ));
            }
            [one]
                if v1::Candle {
                    published_at: None,
                    ..(*one).clone()
                } == *w => {}
            [one] => return Err(format!("{id:?}: got {one:?}, expected {w:?}")),
            [] => return Err(format!("{id:?}: missing (expected {w:?})")),
            many => return Err(format!("{id:?}: received {} times", many.len())),
        }
    }
    for c in received {
        let id = id_of(c);
        if let Some(&(lo, hi)) = span.get(&(id.0.clone(), id.1.clone()))
            && id.2 >= lo
            && id.2 <= hi
            && !want.contains_key(&id)
        {
            return Err(format!("{id:?}: unexpected final {c:?}"));
        }
    }
    Ok(())
}

/// The reference: a fresh engine in event mode fed the same trades, then flushed.
pub fn reference(trades: &[Trade]) -> Vec<Candle> {
    reference_of(INTERVAL, trades)
}

/// [`reference`] for candles of `interval` (a fresh engine building that interval alone).
pub fn reference_of(interval: Interval, trades: &[Trade]) -> Vec<Candle> {
    let mut engine = Engine::new(EngineConfig {
        interval,
        grace: CoreDuration::from_millis(GRACE_MS),
        clock: ClockMode::Event,
    });
    let mut out = Vec::new();
    for t in trades {
        engine.apply(t);
        engine.advance(Micros(0), &mut out);
    }
    engine.flush(&mut out);
    out
}

/// Deterministic pseudo-random trades: random walks per pair, ids increasing per exchange/pair.
pub struct TradeGen {
    state: u64,
    ids: HashMap<(Exchange, Pair), u64>,
    cents: HashMap<Pair, i64>,
}

impl TradeGen {
    pub fn new(seed: u64) -> TradeGen {
        TradeGen {
            state: seed | 1,
            ids: HashMap::new(),
            cents: HashMap::new(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    pub fn trade(&mut self, exchange: Exchange, pair: Pair, time: Micros) -> Trade {
        let base = match pair.to_string().as_str() {
            "BTC-USDT" => 5_000_000,
            "ETH-USDT" => 300_000,
            _ => 15_000,
        };
        let step = (self.next_u64() % 201) as i64 - 100;
        let cents = self.cents.entry(pair).or_insert(base);
        *cents = (*cents + step * *cents / 100_000).max(100);
        let price = format!("{}.{:02}", *cents / 100, *cents % 100);
        let qty = format!("0.{:03}", 1 + self.next_u64() % 999);
        let side = if self.next_u64().is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let id = self.ids.entry((exchange, pair)).or_insert(1000);
        *id += 1;
        let mut t = Trade::new(exchange, pair, *id, &price, &qty, side, time).unwrap();
        t.received = Micros::now();
        t
    }

    pub fn random_trade(&mut self, pairs: &[Pair], time: Micros) -> Trade {
        let pair = pairs[(self.next_u64() % pairs.len() as u64) as usize];
        let exchange = Exchange::ALL[(self.next_u64() % 3) as usize];
        self.trade(exchange, pair, time)
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

/// Produces one trade exactly as connectors do: key = canonical pair, value = prost Trade.
/// `partition` overrides the key's partition (tests that must know who owns a pair).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    trade: &Trade,
    partition: Option<i32>,
) {
    let key = trade.pair.to_string();
    let value = v1::Trade::from(trade).encode_to_vec();
    produce_raw(producer, topic, &key, &value, partition).await;
}

/// Produces one record as it is (any key, any bytes): what a buggy or hostile producer writes.
pub async fn produce_raw(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
    partition: Option<i32>,
) {
    let mut record = FutureRecord::to(topic).key(key).payload(value);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Produces live trades (trade time = now) for `duration`, one every `every`, over `pairs` × all
/// exchanges; returns what it produced, in order.
pub async fn produce_live(
    brokers: String,
    topic: String,
    pairs: Vec<Pair>,
    duration: Duration,
    every: Duration,
    partition_of: Option<fn(usize) -> i32>,
    seed: u64,
) -> Vec<Trade> {
    let producer = producer(&brokers);
    let mut gen_ = TradeGen::new(seed);
    let mut out = Vec::new();
    let end = Instant::now() + duration;
    let mut tick = tokio::time::interval(every);
    while Instant::now() < end {
        tick.tick().await;
        let t = gen_.random_trade(&pairs, Micros::now());
        let partition = partition_of.map(|f| f(pairs.iter().position(|p| *p == t.pair).unwrap()));
        produce(&producer, &topic, &t, partition).await;
        out.push(t);
    }
    out
}

/// Child-process instance of the real binary.
pub struct Child {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub log: std::path::PathBuf,
}

impl Child {
    pub fn spawn(config: &ServiceConfig, name: &str, dir: &std::path::Path) -> Child {
        Child::spawn_with_env(config, name, dir, &[])
    }

    /// Like [`Child::spawn`], with extra environment variables.
    pub fn spawn_with_env(
        config: &ServiceConfig,
        name: &str,
        dir: &std::path::Path,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Child {
        let port = candles_testkit::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_candles-service"))
            .args([
                "--brokers",
                &config.brokers,
                "--topic",
                &config.topic,
                "--group",
                &config.group,
            ])
            .args([
                "--dlq-topic",
                &config.dlq_topic,
                "--redis",
                &config.redis_url,
            ])
            .args(["--listen", &addr.to_string()])
            .args([
                "--interval",
                &config.engine.interval.to_string(),
                "--grace",
                &config.engine.grace.to_string(),
            ])
            .args([
                "--update-interval",
                &format!("{}ms", config.update_interval.as_millis()),
            ])
            .args(["--history-max", &config.history_max.to_string()])
            .args([
                "--session-timeout",
                &format!("{}ms", config.session_timeout.as_millis()),
            ])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Child { child, addr, log }
    }

    /// The partitions of the last assignment this instance logged.
    pub fn assigned(&self) -> Option<Vec<i32>> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let mut last = None;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let fields = &v["fields"];
            match fields["message"].as_str() {
                Some("partitions assigned") => {
                    let list = fields["partitions"].as_str().unwrap_or("[]");
                    let parts: Vec<i32> = list
                        .trim_matches(|c| c == '[' || c == ']')
                        .split(',')
                        .filter_map(|s| s.trim().parse().ok())
                        .collect();
                    last = Some(parts);
                }
                Some("partitions revoked") => last = Some(Vec::new()),
                _ => {}
            }
        }
        last
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One dead letter: its key, value, and headers.
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads `n` records of the dead-letter topic (partition 0) from the beginning.
pub async fn dead_letters(brokers: &str, dlq: &str, n: usize) -> Vec<DeadLetter> {
    let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("dlq-reader"))
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(dlq, 0, rdkafka::Offset::Beginning)
        .unwrap();
    rdkafka::consumer::Consumer::assign(&consumer, &tpl).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{n} records in the DLQ; got {}", out.len()))
            .unwrap();
        let headers = rdkafka::Message::headers(&m)
            .map(|h| {
                rdkafka::message::Headers::iter(h)
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            key: rdkafka::Message::key(&m).map(<[u8]>::to_vec),
            value: rdkafka::Message::payload(&m).unwrap_or_default().to_vec(),
            headers,
        });
    }
    // Dropping a StreamConsumer can hang (PITFALLS): leave it behind.
    rdkafka::consumer::Consumer::unsubscribe(&consumer);
    std::mem::forget(consumer);
    out
}

/// A BTC trade (any exchange) now at `price`: the marker a test waits for.
pub fn marker(price: &str) -> candles_core::Trade {
    let mut t = TradeGen::new(7).trade(Exchange::Kraken, pairs()[0], Micros::now());
    t.price = price.parse().unwrap();
    t
}

/// Produces [`marker`]`(price)` as connectors do.
pub async fn send_marker(producer: &FutureProducer, topic: &str, price: &str) {
    produce(producer, topic, &marker(price), None).await;
}

/// Waits until a BTC composite candle (live or final) closes at `price`: the service consumed
/// the marker trade, so everything before it in its partition too. Returns how long it took.
pub async fn wait_marker(watcher: &Collected, price: &str, timeout: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < timeout {
        let seen = watcher
            .responses()
            .iter()
            .filter_map(|r| r.candle.as_ref())
            .any(|c| c.pair == "BTC-USDT" && c.source == "composite" && c.close == price);
        if seen {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A live stream of BTC composite candles.
pub async fn live_watcher(service: &InProcess) -> Collected {
    Collected::subscribe(
        &mut service.client().await,
        request(&pairs()[..1], vec!["composite".into()], 0, true),
    )
    .await
}
