//! Hostile and broken gRPC clients against the real service (in-process) on real Kafka and
//! Redis: clients that never read, too many streams on one connection, a connection flood,
//! idle connections, huge requests, tokens (DESIGN.md "Hostile clients and limits").
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_proto::v1::{ListMarketsRequest, SubscribeRequest};
use common::*;
use prost::Message as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

/// Resident memory of this process (the service runs in it), in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    // HPACK literal header field without indexing, new name, no Huffman (lengths < 127).
    block.push(0);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// A raw HTTP/2 client that opens `streams` Subscribe calls with the largest flow-control
/// windows HTTP/2 allows, then never reads its socket: the attack of issue 17 finding 5.
async fn never_reading_client(addr: std::net::SocketAddr, streams: u32) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 2^31-1.
    let mut settings = Vec::new();
    settings.extend_from_slice(&[0, 2, 0, 0, 0, 0]);
    settings.extend_from_slice(&[0, 4, 0x7f, 0xff, 0xff, 0xff]);
    out.extend(frame(4, 0, 0, &settings));
    out.extend(frame(8, 0, 0, &(0x7fff_ffffu32 - 65_535).to_be_bytes()));
    let req = request(&pairs(), all_sources(), 0, true).encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(req.len() as u32).to_be_bytes());
    body.extend_from_slice(&req);
    for i in 0..streams {
        let id = 1 + 2 * i;
        let mut block = Vec::new();
        literal(&mut block, ":method", "POST");
        literal(&mut block, ":scheme", "http");
        literal(&mut block, ":path", "/candles.v1.CandleService/Subscribe");
        literal(&mut block, ":authority", "localhost");
        literal(&mut block, "content-type", "application/grpc");
        literal(&mut block, "te", "trailers");
        out.extend(frame(1, 0x4, id, &block));
        out.extend(frame(0, 0x1, id, &body));
    }
    s.write_all(&out).await.unwrap();
    s
}

/// Whether the server closed `s` (EOF or reset once what it sent is drained) within `within`.
async fn closed_by_server(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

struct Attack {
    before: f64,
    peak: f64,
    after: f64,
    closed: usize,
    connections: usize,
}

/// `connections` never-reading clients with `streams` calls each while trades flow; memory
/// sampled for `observe`, then each socket is checked for having been closed by the server.
async fn attack(
    config: candles_service::ServiceConfig,
    deps: &Deps,
    connections: usize,
    streams: u32,
    observe: Duration,
) -> Attack {
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs(),
        observe + Duration::from_secs(4),
        Duration::from_millis(2),
        None,
        7,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_mb();
    let mut sockets = Vec::new();
    for _ in 0..connections {
        sockets.push(never_reading_client(service.addr, streams).await);
    }
    let mut peak = before;
    let end = Instant::now() + observe;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_mb());
    }
    let after = rss_mb();
    // One deadline for all sockets: a connection cut at the end of the observation may take a
    // moment longer to drain on a loaded machine (three test binaries run at once; 10 s once
    // left 2 of 8 sockets still draining when three full-stack tests ran beside it).
    let mut closed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for s in &mut sockets {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        if closed_by_server(s, within.max(Duration::from_millis(100))).await {
            closed += 1;
        }
    }
    // The server still serves a normal client.
    let mut client = service.client().await;
    tokio::time::timeout(
        Duration::from_secs(5),
        client.list_markets(ListMarketsRequest {}),
    )
    .await
    .expect("the server answers a normal client after the attack")
    .unwrap();
    producing.abort();
    drop(sockets);
    service.stop().await;
    Attack {
        before,
        peak,
        after,
        closed,
        connections,
    }
}

fn attack_config(deps: &Deps) -> candles_service::ServiceConfig {
    let mut config = deps.config();
    config.update_interval = Duration::from_millis(20);
    config.client_queue = 64;
    config.grpc.http2_keepalive_interval = Some(Duration::from_secs(1));
    config.grpc.http2_keepalive_timeout = Duration::from_secs(1);
    config.grpc.slow_client_grace = Duration::from_secs(1);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_are_disconnected_and_their_memory_freed() {
    let deps = Deps::start(3);
    // 20 s: on a loaded machine a connection can take longer than 12 s to be found slow and cut.
    let a = attack(attack_config(&deps), &deps, 8, 64, Duration::from_secs(20)).await;
    println!(
        "never-reading clients, limits on: {} connections x 64 streams: RSS before {:.0} MB, peak {:.0} MB, after {:.0} MB; {}/{} closed by the server",
        a.connections, a.before, a.peak, a.after, a.closed, a.connections
    );
    assert_eq!(
        a.closed, a.connections,
        "every never-reading client is disconnected"
    );
    assert!(
        a.after - a.before < 200.0,
        "memory returns near its level before: {:.0} → {:.0} MB",
        a.before,
        a.after
    );
    assert!(a.peak - a.before < 400.0, "peak {:.0} MB", a.peak);
}

/// The control: the same attack with the limits switched off holds every connection open (and
/// its memory, the "limits off" figures in DESIGN.md), so it is the limits that cut them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_limits_never_reading_clients_are_held_open() {
    let deps = Deps::start(3);
    let mut config = attack_config(&deps);
    config.grpc.max_streams_per_connection = u32::MAX;
    config.grpc.http2_keepalive_interval = None;
    config.grpc.idle_timeout = None;
    config.grpc.slow_client_grace = Duration::from_secs(3600);
    let a = attack(config, &deps, 8, 64, Duration::from_secs(12)).await;
    println!(
        "never-reading clients, limits off: {} connections x 64 streams: RSS before {:.0} MB, peak {:.0} MB, after {:.0} MB; {}/{} closed by the server",
        a.connections, a.before, a.peak, a.after, a.closed, a.connections
    );
    assert_eq!(
        a.closed, 0,
        "without the limits nothing cuts a never-reading client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_per_connection_limit_wait_and_other_clients_are_served() {
    let deps = Deps::start(3);
    let mut config = deps.config();
    config.grpc.max_streams_per_connection = 4;
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let mut one = service.client().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(
            one.subscribe(request(&pairs(), vec![], 0, true))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let fifth = tokio::time::timeout(
        Duration::from_secs(2),
        one.subscribe(request(&pairs(), vec![], 0, true)),
    )
    .await;
    assert!(
        fifth.is_err(),
        "a fifth stream on a connection limited to 4 must wait: {:?}",
        fifth.map(|r| r.map(|_| ()))
    );
    let t = Instant::now();
    let mut other = service.client().await;
    other.list_markets(ListMarketsRequest {}).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "another client is served at once"
    );
    // A slot frees up: the waiting call goes through.
    drop(open.pop());
    tokio::time::timeout(
        Duration::from_secs(5),
        one.subscribe(request(&pairs(), vec![], 0, true)),
    )
    .await
    .expect("a freed slot is used")
    .unwrap();
    service.stop().await;
}

async fn health_ok(addr: std::net::SocketAddr) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once_and_service_resumes() {
    let deps = Deps::start(3);
    let mut config = deps.config();
    config.grpc.max_connections = 8;
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    // The cap's connections; the health check above has closed its own by now or soon.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = tokio::net::TcpStream::connect(service.addr).await.unwrap();
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(5), health_ok(service.addr)).await;
    let took = t.elapsed();
    println!("a connection beyond the cap: {refused:?} after {took:?}");
    assert!(
        matches!(refused, Ok(Err(_))),
        "beyond the cap a connection fails (not hangs, not served): {refused:?}"
    );
    assert!(took < Duration::from_secs(2), "refused promptly: {took:?}");
    // Closing a raw socket that never finished HTTP/2 frees its slot.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match health_ok(service.addr).await {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no recovery after the flood: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let deps = Deps::start(3);
    let mut config = deps.config();
    config.grpc.idle_timeout = Some(Duration::from_secs(1));
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let busy = Collected::subscribe(
        &mut service.client().await,
        request(&pairs(), vec![], 0, true),
    )
    .await;
    let mut idle = tokio::net::TcpStream::connect(service.addr).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    idle.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    let t = Instant::now();
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(5)).await,
        "an idle connection is closed after the idle timeout"
    );
    let took = t.elapsed();
    println!("idle connection closed after {took:?}");
    assert!(
        took >= Duration::from_millis(800),
        "not before the timeout: {took:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        busy.ended.lock().unwrap().is_none(),
        "a connection with an open stream is not idle: {:?}",
        busy.ended.lock().unwrap()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_requests_get_short_errors() {
    let deps = Deps::start(3);
    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let mut client = service.client().await;
    for (what, pair) in [
        ("4 MB", "x".repeat(4_000_000)),
        ("60 KB", "\u{1}".repeat(60_000)),
        ("60 KB pair-like", format!("{}-USDT", "B".repeat(60_000))),
        // Parses (the spaces are trimmed) but is not served: the echo of the input is cut too.
        ("60 KB unserved", format!("dogeusdt{}", " ".repeat(60_000))),
    ] {
        let e = client
            .subscribe(SubscribeRequest {
                pairs: vec![pair],
                sources: vec![],
                history: 0,
                live_updates: false,
                interval: None,
                verifications: false,
            })
            .await
            .expect_err("refused");
        println!(
            "{what}: {:?} {} bytes: {}",
            e.code(),
            e.message().len(),
            e.message()
        );
        assert!(
            matches!(
                e.code(),
                Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
            ),
            "{what}: {:?}",
            e.code()
        );
        assert!(
            e.message().len() < 1024,
            "{what}: a {} byte message",
            e.message().len()
        );
    }
    let e = client
        .subscribe(SubscribeRequest {
            pairs: vec!["btcusdt".into()],
            sources: vec!["s".repeat(60_000)],
            history: 0,
            live_updates: false,
            interval: None,
            verifications: false,
        })
        .await
        .expect_err("refused");
    assert!(
        e.message().len() < 1024,
        "source: a {} byte message",
        e.message().len()
    );
    // The service is fine afterwards.
    client.list_markets(ListMarketsRequest {}).await.unwrap();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_any_case_wrong_length_refused_health_open() {
    let deps = Deps::start(3);
    let mut config = deps.config();
    config.auth_token = Some("s3cret-token".into());
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    health_ok(service.addr)
        .await
        .expect("health needs no token");
    let mut client = service.client().await;
    let call = |auth: Option<&str>| {
        let mut r = tonic::Request::new(ListMarketsRequest {});
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    };
    for ok in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER s3cret-token",
    ] {
        client
            .list_markets(call(Some(ok)))
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        None,
        Some("Bearer s3cret"),
        Some("bearer s3cret-token-and-more"),
        Some("Basic s3cret-token"),
    ] {
        let e = client.list_markets(call(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
    }
    service.stop().await;
}
