//! The gRPC API against a real service (in-process) on real Apache Kafka + Redis: history then live with
//! no gap or duplicate, slow clients, dead letters, bad requests, health, reflection, auth.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use candles_core::{Micros, Pair, Source};
use candles_proto::v1::{self, ListMarketsRequest, SubscribeRequest};
use common::*;
use std::time::{Duration, Instant};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_without_gap_or_duplicate() {
    let t0 = Instant::now();
    let deps = Deps::start(3);
    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let btc = pairs[0];
    let watcher = Collected::subscribe(
        &mut service.client().await,
        request(&pairs, all_sources(), 0, false),
    )
    .await;
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(8),
        Duration::from_millis(15),
        None,
        11,
    ));
    // Wait until at least 4 composite BTC finals exist, then join with history = 3.
    let deadline = Instant::now() + Duration::from_secs(25);
    while watcher
        .finals()
        .iter()
        .filter(|c| c.pair == "BTC-USDT" && c.source == "composite")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "no candles");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = Collected::subscribe(
        &mut service.client().await,
        request(&[btc], vec![], 3, true),
    )
    .await;
    let trades = producing.await.unwrap();
    let expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.pair == btc && c.source == Source::Composite)
        .collect();
    let last_expected = expected.last().unwrap().start.0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !late.finals().iter().any(|c| start_of(c) >= last_expected) {
        assert!(
            Instant::now() < deadline,
            "the late client never got the last window"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = late.responses();
    let historical: Vec<_> = got
        .iter()
        .take_while(|r| r.historical)
        .map(|r| r.candle.clone().unwrap())
        .collect();
    assert_eq!(historical.len(), 3, "history = 3 gives 3 candles first");
    assert!(historical.iter().all(|c| c.r#final));
    assert!(
        got[3..].iter().all(|r| !r.historical),
        "history comes first, then only live"
    );
    let finals: Vec<_> = got
        .iter()
        .filter_map(|r| r.candle.clone())
        .filter(|c| c.r#final)
        .collect();
    let starts: Vec<i64> = finals.iter().map(start_of).collect();
    for w in starts.windows(2) {
        assert_eq!(
            w[1] - w[0],
            INTERVAL.micros(),
            "consecutive finals, no gap and no duplicate: {starts:?}"
        );
    }
    let live_updates = got
        .iter()
        .filter(|r| r.candle.as_ref().is_some_and(|c| !c.r#final))
        .count();
    assert!(live_updates > 0, "live updates were asked for");
    // Every final in the reference span equals the reference.
    let span: Vec<_> = expected
        .iter()
        .filter(|c| c.start.0 >= starts[0])
        .copied()
        .collect();
    check_exact(&finals, &span).unwrap();
    println!(
        "history {:?} then {} live finals and {live_updates} live updates, exact; {:?}",
        &starts[..3],
        finals.len() - 3,
        t0.elapsed()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_and_others_are_not_slowed() {
    let deps = Deps::start(3);
    let mut config = deps.config();
    config.client_queue = 64;
    config.update_interval = Duration::from_millis(20);
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    // The slow client: a small HTTP/2 window and it reads nothing.
    let slow_channel = tonic::transport::Endpoint::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .initial_stream_window_size(Some(8 * 1024))
        .initial_connection_window_size(Some(8 * 1024))
        .connect()
        .await
        .unwrap();
    let mut slow = v1::candle_service_client::CandleServiceClient::new(slow_channel)
        .subscribe(request(&pairs, all_sources(), 0, true))
        .await
        .unwrap()
        .into_inner();
    let fast = Collected::subscribe(
        &mut service.client().await,
        request(&pairs, all_sources(), 0, true),
    )
    .await;
    let trades = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(6),
        Duration::from_millis(5),
        None,
        5,
    )
    .await;
    let expected = reference(&trades);
    assert!(
        fast.wait_for(&expected, Duration::from_secs(20)).await,
        "{:?}",
        check_exact(&fast.finals(), &expected)
    );
    check_exact(&fast.finals(), &expected).unwrap();
    assert!(
        fast.ended.lock().unwrap().is_none(),
        "the fast client is still subscribed"
    );
    // Latency of the fast client: receipt − (window end + grace), over the finals it got.
    let mut lat: Vec<f64> = fast
        .items
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, r)| {
            let c = r.candle.as_ref()?;
            c.r#final.then(|| {
                let due = candles_proto::micros("end", c.end.as_ref()).unwrap().0 + GRACE_MS * 1000;
                let received = Micros::now().0 - at.elapsed().as_micros() as i64;
                (received - due) as f64 / 1000.0
            })
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    // The slow client now reads: what was buffered, then RESOURCE_EXHAUSTED.
    let mut read = 0usize;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.message())
            .await
            .expect("the slow stream ends")
        {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("the slow stream ended without a status after {read} messages"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("client too slow"),
        "{}",
        status.message()
    );
    println!(
        "{} trades; fast client exact, final latency p50 {:.0} ms, max {:.0} ms; slow client got {read} buffered messages then {:?}",
        trades.len(),
        lat[lat.len() / 2],
        lat[lat.len() - 1],
        status.message()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_topic_and_the_service_carries_on() {
    let deps = Deps::start(1);
    let config = deps.config();
    let dlq = config.dlq_topic.clone();
    deps.kafka().create_topic(&dlq, 1).unwrap();
    let service = InProcess::start(config).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let watcher = Collected::subscribe(
        &mut service.client().await,
        request(&pairs, vec![], 0, false),
    )
    .await;
    let producer = producer(&deps.kafka().brokers());
    // Garbage bytes, then a well-formed protobuf with an invalid price.
    let garbage = rdkafka::producer::FutureRecord::to(&deps.topic)
        .key("BTC-USDT")
        .payload(&b"\xff\xff not a protobuf"[..]);
    producer
        .send(garbage, Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let mut bad = v1::Trade::from(&TradeGen::new(1).trade(
        candles_core::Exchange::Kraken,
        pairs[0],
        Micros::now(),
    ));
    bad.price = "12,5".into();
    let bad = prost::Message::encode_to_vec(&bad);
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&deps.topic)
                .key("BTC-USDT")
                .payload(&bad),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let trades = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(3),
        Duration::from_millis(20),
        None,
        3,
    )
    .await;
    let expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == Source::Composite)
        .collect();
    assert!(
        watcher.wait_for(&expected, Duration::from_secs(20)).await,
        "the service carried on after bad records"
    );
    check_exact(&watcher.finals(), &expected).unwrap();

    let letters = dead_letters(&deps.kafka().brokers(), &dlq, 2).await;
    let mut errors = Vec::new();
    for letter in letters {
        assert_eq!(
            letter.key.as_deref(),
            Some(&b"BTC-USDT"[..]),
            "the original key"
        );
        errors.push((letter.value, letter.headers["error"].clone()));
    }
    assert_eq!(
        errors[0].0, b"\xff\xff not a protobuf",
        "the original value"
    );
    assert!(
        errors[0].1.contains("not a protobuf candles.v1.Trade"),
        "{}",
        errors[0].1
    );
    assert_eq!(errors[1].0, bad);
    assert!(
        errors[1].1.contains("price") && errors[1].1.contains("12,5"),
        "{}",
        errors[1].1
    );
    println!(
        "DLQ reasons: {:?}",
        errors.iter().map(|e| &e.1).collect::<Vec<_>>()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_health_reflection_auth_and_a_redis_restart() {
    let mut deps = Deps::start(1);
    let mut config = deps.config();
    config.history_max = 50;
    let service = InProcess::start(config.clone()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let mut client = service.client().await;

    // INVALID_ARGUMENT, naming the bad input.
    let cases: Vec<(SubscribeRequest, &str)> = vec![
        (
            SubscribeRequest {
                pairs: vec![],
                ..Default::default()
            },
            "pairs is required",
        ),
        (
            SubscribeRequest {
                pairs: vec!["BTC-USDT".into(), "dogecoin".into()],
                ..Default::default()
            },
            "\"dogecoin\"",
        ),
        (
            SubscribeRequest {
                pairs: vec!["xrp_usdt".into()],
                ..Default::default()
            },
            "unknown pair \"xrp_usdt\" (XRP-USDT): this server serves BTC-USDT, ETH-USDT, SOL-USDT",
        ),
        (
            SubscribeRequest {
                pairs: vec!["btcusdt".into()],
                sources: vec!["ftx".into()],
                ..Default::default()
            },
            "\"ftx\"",
        ),
        (
            SubscribeRequest {
                pairs: vec!["btcusdt".into()],
                history: 51,
                ..Default::default()
            },
            "at most 50",
        ),
    ];
    for (req, needle) in cases {
        let status = client
            .subscribe(req.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{req:?} accepted"));
        assert_eq!(status.code(), Code::InvalidArgument, "{req:?}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{req:?}: {:?} lacks {needle:?}",
            status.message()
        );
    }

    // An interval the server does not build: named, with the ones it builds; ListMarkets says
    // which those are.
    let hour = candles_core::Interval::seconds(3600);
    let status = client
        .subscribe(SubscribeRequest {
            pairs: vec!["btcusdt".into()],
            interval: Some(candles_proto::duration(hour)),
            ..Default::default()
        })
        .await
        .expect_err("an unserved interval was accepted");
    assert_eq!(status.code(), Code::InvalidArgument);
    let needle = format!("interval 1h is not built by this server: it builds {INTERVAL}");
    assert!(status.message().contains(&needle), "{:?}", status.message());
    let markets = client
        .list_markets(ListMarketsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(markets.intervals, vec![candles_proto::duration(INTERVAL)]);
    assert_eq!(markets.interval, Some(candles_proto::duration(INTERVAL)));

    // Reflection, v1 and v1alpha.
    let services_v1 = reflection_v1(service.addr).await;
    assert!(
        services_v1.contains(&"candles.v1.CandleService".to_string()),
        "{services_v1:?}"
    );
    assert!(
        services_v1.contains(&"grpc.health.v1.Health".to_string()),
        "{services_v1:?}"
    );
    let services_v1alpha = reflection_v1alpha(service.addr).await;
    assert!(
        services_v1alpha.contains(&"candles.v1.CandleService".to_string()),
        "{services_v1alpha:?}"
    );

    // Candles flow; then Redis dies: NOT_SERVING; Redis is back: SERVING and candles flow again
    // to the same client stream.
    let btc = Pair::parse("btcusdt").unwrap();
    let watcher = Collected::subscribe(&mut client, request(&[btc], vec![], 0, false)).await;
    let producing = tokio::spawn(produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        vec![btc],
        Duration::from_secs(12),
        Duration::from_millis(25),
        None,
        9,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while watcher.finals().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no candles before the Redis restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deps.redis.kill();
    let killed = Instant::now();
    wait_health(service.addr, false, Duration::from_secs(5)).await;
    println!("NOT_SERVING {:?} after Redis died", killed.elapsed());
    let markets = client.list_markets(ListMarketsRequest {}).await;
    assert_eq!(markets.unwrap_err().code(), Code::Unavailable);
    tokio::time::sleep(Duration::from_secs(1)).await;
    deps.redis.restart().unwrap();
    wait_health(service.addr, true, Duration::from_secs(10)).await;
    println!("SERVING {:?} after Redis came back", killed.elapsed());
    let trades = producing.await.unwrap();
    // Redis was killed (it keeps an append-only file); candles after the restart arrive exactly, on the
    // same stream, and finals held while Redis was down are published once it is back.
    let expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == Source::Composite)
        .collect();
    assert!(
        watcher.wait_for(&expected, Duration::from_secs(15)).await,
        "{:?}",
        check_exact(&watcher.finals(), &expected)
    );
    check_exact(&watcher.finals(), &expected).unwrap();
    assert!(
        watcher.ended.lock().unwrap().is_none(),
        "the client stream survived the Redis restart"
    );

    let markets = client
        .list_markets(ListMarketsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(markets.max_history, 50);
    assert_eq!(markets.interval, Some(candles_proto::duration(INTERVAL)));
    assert_eq!(markets.markets.len(), 1);
    assert_eq!(markets.markets[0].pair, "BTC-USDT");
    assert_eq!(
        markets.markets[0].sources,
        ["composite", "binance", "kraken", "coinbase"]
    );
    service.stop().await;

    // Bearer token.
    config.auth_token = Some("s3cret".into());
    config.group = unique("auth");
    let secured = InProcess::start(config).await;
    let mut client = secured.client().await;
    let status = client
        .list_markets(ListMarketsRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(ListMarketsRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    client.list_markets(req).await.unwrap();
    secured.stop().await;
}

async fn wait_health(addr: std::net::SocketAddr, serving: bool, timeout: Duration) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    let want = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    } as i32;
    let deadline = Instant::now() + timeout;
    loop {
        for service in ["", "candles.v1.CandleService"] {
            let s = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if s == want && service == "candles.v1.CandleService" {
                return;
            }
            if s != want {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "health did not become {want} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reflection_v1(addr: std::net::SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    match stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        MessageResponse::ListServicesResponse(r) => r.service.into_iter().map(|s| s.name).collect(),
        other => panic!("{other:?}"),
    }
}

async fn reflection_v1alpha(addr: std::net::SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    match stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        MessageResponse::ListServicesResponse(r) => r.service.into_iter().map(|s| s.name).collect(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_bearer_token() {
    let deps = Deps::start(1);
    let dir = tempfile::tempdir().unwrap();
    let candles_testkit::certs::Certificates { ca, cert, key } =
        candles_testkit::certs::make(dir.path()).unwrap();
    let mut config = deps.config();
    config.tls = Some(candles_service::TlsFiles { cert, key });
    config.auth_token = Some("t0ken".into());
    let service = InProcess::start(config).await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(ca).unwrap(),
        ))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", service.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = v1::candle_service_client::CandleServiceClient::new(channel);
    assert_eq!(
        client
            .list_markets(ListMarketsRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut req = tonic::Request::new(ListMarketsRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer t0ken".parse().unwrap());
    let markets = client.list_markets(req).await.unwrap().into_inner();
    assert_eq!(markets.interval, Some(candles_proto::duration(INTERVAL)));
    // Plaintext is refused on a TLS port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", service.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let r = v1::candle_service_client::CandleServiceClient::new(plain)
            .list_markets(ListMarketsRequest {})
            .await;
        assert!(r.is_err(), "plaintext call succeeded on a TLS port");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_broker_is_reported_and_survived() {
    // The broker freezes (SIGSTOP) for 3 s: the service reports NOT_SERVING, keeps its clients,
    // and once the broker answers again it carries on exactly. (Broker restarts are tested over
    // the full stack in backend/e2e.)
    let deps = Deps::with_own_broker(2);
    let service = InProcess::start(deps.config()).await;
    wait_serving(service.addr, Duration::from_secs(15)).await;
    let pairs = pairs();
    let watcher = Collected::subscribe(
        &mut service.client().await,
        request(&pairs, vec![], 0, false),
    )
    .await;
    let before = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(2),
        Duration::from_millis(20),
        None,
        20,
    )
    .await;
    deps.kafka().signal("STOP").unwrap();
    let frozen = Instant::now();
    let mut reported = false;
    while frozen.elapsed() < Duration::from_secs(3) {
        reported |= wait_health_once(service.addr).await == Some(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    deps.kafka().signal("CONT").unwrap();
    assert!(reported, "NOT_SERVING while the broker was frozen");
    wait_health(service.addr, true, Duration::from_secs(10)).await;
    let after = produce_live(
        deps.kafka().brokers(),
        deps.topic.clone(),
        pairs.clone(),
        Duration::from_secs(2),
        Duration::from_millis(20),
        None,
        21,
    )
    .await;
    let mut trades = before;
    trades.extend(after);
    let expected: Vec<_> = reference(&trades)
        .into_iter()
        .filter(|c| c.source == Source::Composite)
        .collect();
    let ok = watcher.wait_for(&expected, Duration::from_secs(20)).await;
    assert!(ok, "{:?}", check_exact(&watcher.finals(), &expected));
    check_exact(&watcher.finals(), &expected).unwrap();
    assert!(
        watcher.ended.lock().unwrap().is_none(),
        "the client stream survived"
    );
    println!(
        "{} trades around a 3 s broker freeze → {} composite candles, exact",
        trades.len(),
        expected.len()
    );
    service.stop().await;
}

/// One health check with a short deadline: `Some(serving)`, or `None` if it did not answer.
async fn wait_health_once(addr: std::net::SocketAddr) -> Option<bool> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    let r = tokio::time::timeout(
        Duration::from_secs(1),
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .ok()?
    .ok()?;
    Some(r.into_inner().status == ServingStatus::Serving as i32)
}
