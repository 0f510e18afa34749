//! candles-service: Kafka `trades` → candle engine → Redis (publish-once, history, Pub/Sub) → gRPC.
//!
//! Any number of instances share one Kafka consumer group. Kafka partitions (keyed by pair) decide
//! which instance aggregates which pair; every instance subscribes to Redis and serves every
//! candle to its own gRPC clients (DESIGN.md "Scaling and failure").
//!
//! Every instance builds every interval of [`ServiceConfig::intervals`] (`--intervals`, default
//! `1s,5s,1m,5m,15m,1h,4h,1d`) in one engine per partition; Redis keeps each interval under its
//! own keys and channels, and a client subscribes to one interval at a time.
//!
//! # Library API
//! The binary is a thin shell over [`run`]; tests and other programs (the TUI's tests) start the
//! service in-process the same way:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use candles_service::{ServiceConfig, serve};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = ServiceConfig {
//!     brokers: "127.0.0.1:9092".into(),
//!     redis_url: "redis://127.0.0.1:6379/".into(),
//!     ..ServiceConfig::default()
//! };
//! // Bind first (port 0 picks a free port), so the address is known before the service runs.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?; // connect gRPC clients to http://{addr}
//! let shutdown = CancellationToken::new();
//! let service = tokio::spawn(serve(config, listener, shutdown.clone()));
//! // ... later: stop consuming, publish what is final, commit, return.
//! shutdown.cancel();
//! service.await??;
//! # Ok(()) }
//! ```
//!
//! [`run`] does the same, binding [`ServiceConfig::listen`] itself.
//!
//! # Shutdown
//! One [`CancellationToken`] (a child of the caller's: a fatal error inside stops the service
//! without cancelling the caller's) and one [`TaskTracker`] hold every task: the Kafka consumer
//! and its probe and watermark queries, the Redis subscriber, the health monitor, each gRPC
//! client's task and each connection's idle watch. In order:
//! 1. The token is cancelled: by the caller, by the consumer when it cannot start or fails, or
//!    when the gRPC server fails.
//! 2. Every task sees it at once. The gRPC server stops accepting; client tasks end, and with
//!    them their streams; the server drains its connections (bounded: 3 s). The consumer stops
//!    consuming, finalizes nothing new, publishes the finals it holds, commits (within about
//!    4 s) and drops its Kafka clients on a detached thread. The subscriber, the probe and the
//!    idle watches return; the health monitor reports `NOT_SERVING` and returns.
//! 3. [`serve`] waits for the consumer's result, closes the tracker and waits for the rest
//!    (bounded: 2 s), then returns the first error.
//!
//! # Modules
//! - [`config`]: [`ServiceConfig`], every knob with its default.
//! - [`admission`]: which decoded trades are applied (key = pair, served pair, plausible time).
//! - [`consumer`]: the Kafka side: partitions, one engine per partition, offsets, dead letters.
//! - [`store`]: Redis: publish-once of final candles (a Lua script), live updates, history,
//!   under keys per interval.
//! - [`hub`]: one Redis subscriber per instance, fanned out to its gRPC clients.
//! - [`grpc`]: the `candles.v1.CandleService` implementation.
//! - [`status`]: the dependency state the tasks share (set by the ones that see it, read by
//!   health).
//! - [`health`]: dependency state → standard gRPC health.
//! - [`metrics`]: metric names.
//! - [`ratelimit`]: rate-limited logging of lines fed from outside.
//! - [`redis_input`]: what is accepted back from Redis (candles are validated; Redis is an input).
#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
pub mod consumer;
pub mod grpc;
pub mod health;
pub mod hub;
pub mod metrics;
pub mod ratelimit;
pub mod redis_input;
pub mod status;
pub mod store;
pub mod verdicts;

pub use config::{ServiceConfig, TlsFiles};

use anyhow::Context as _;
use candles_proto::v1::candle_service_server::CandleServiceServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

/// How long the gRPC server may drain its connections after shutdown.
const DRAIN: Duration = Duration::from_secs(3);

/// How long the remaining tasks may take to stop once the server and the consumer are done.
const STOP_TASKS: Duration = Duration::from_secs(2);

/// Runs the service until `shutdown` is cancelled, listening for gRPC on [`ServiceConfig::listen`].
///
/// See [`serve`].
pub async fn run(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen for gRPC on {} (--listen / CANDLES_LISTEN); is the port free?",
            config.listen
        )
    })?;
    serve(config, listener, shutdown).await
}

/// Runs the service on an already bound listener until `shutdown` is cancelled.
///
/// Starts the Kafka consumer, the Redis subscriber, the health monitor and the gRPC server. On
/// shutdown it stops consuming, finalizes nothing new, publishes what is already final, commits
/// the offsets behind it and returns, within a few seconds (see "Shutdown" in the crate docs).
/// Neither Kafka nor Redis needs to be up when it starts: health reports `NOT_SERVING` until
/// both are reachable.
pub async fn serve(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let shutdown = shutdown.child_token();
    let tracker = TaskTracker::new();
    let addr = listener
        .local_addr()
        .context("reading the gRPC listener's address")?;
    let tls = match &config.tls {
        Some(files) => Some(files.load().await?),
        None => None,
    };
    metrics::describe();

    let status = Arc::new(status::DependencyStatus::default());
    let store = connect_store(&config)?;
    let hub = hub::Hub::new(config.hub_capacity);
    tracker.spawn(hub::run_subscriber(
        config.redis_url.clone(),
        store.clone(),
        hub.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    let (health_reporter, health_service) = health_not_serving().await;
    let consumer = tracker.spawn(run_consumer(
        config.clone(),
        store.clone(),
        status.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(health::monitor(
        status,
        store.clone(),
        health_reporter,
        shutdown.clone(),
    ));

    let candles = grpc::Candles::new(&config, store, hub, tracker.clone(), shutdown.clone());
    let routes = routes(&config, candles, health_service)?;
    let builder = server_builder(&config.grpc, tls)?;
    tracing::info!(%addr, tls = config.tls.is_some(), auth = config.auth_token.is_some(), max_connections = config.grpc.max_connections, max_streams = config.grpc.max_streams_per_connection, "serving gRPC");
    let incoming =
        grpc::limits::incoming(listener, &config.grpc, tracker.clone(), shutdown.clone());
    let server = builder.serve_with_incoming_shutdown(
        grpc::limits::Counted::new(routes),
        incoming,
        shutdown.clone().cancelled_owned(),
    );
    // The server can stall on clients that never read; bound the drain after shutdown.
    let served = tokio::select! {
        r = server => r.context("gRPC server failed"),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("gRPC clients did not disconnect within {DRAIN:?} of shutdown; closing anyway");
            Ok(())
        }
    };
    if served.is_err() {
        shutdown.cancel();
    }
    let consumed = consumer.await.context("Kafka consumer task panicked")?;
    tracker.close();
    if tokio::time::timeout(STOP_TASKS, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within {STOP_TASKS:?} of shutdown");
    }
    served?;
    consumed
}

/// The health service, `NOT_SERVING` until the monitor finds every dependency up.
async fn health_not_serving() -> (HealthReporter, HealthServer<impl Health>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_not_serving::<CandleServiceServer<grpc::Candles>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    (reporter, service)
}

/// The Kafka consumer until `shutdown`; cancels `shutdown` when it fails.
async fn run_consumer(
    config: ServiceConfig,
    store: store::Store,
    status: Arc<status::DependencyStatus>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let result = consumer::run(config, store, status, tracker, shutdown.clone()).await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "the Kafka consumer failed; shutting down");
        shutdown.cancel();
    }
    result
}

/// The Redis store of `config` (connections are made lazily: Redis need not be up yet).
fn connect_store(config: &ServiceConfig) -> anyhow::Result<store::Store> {
    let redis_prefix = config
        .redis_prefix
        .clone()
        .unwrap_or_else(|| redis_input::default_prefix(&config.redis_url));
    let check = redis_input::RedisCheck::for_intervals(
        config.intervals(),
        config.pairs.clone(),
        config.trade_times,
    );
    store::Store::connect_with(&config.redis_url, &redis_prefix, config.history_max, check).map_err(
        |e| {
            anyhow::anyhow!(
                "invalid Redis URL {:?} (--redis / CANDLES_REDIS): {}",
                redis_input::redact(&config.redis_url),
                redis_input::redact(&e.to_string())
            )
        },
    )
}

/// Every gRPC service the server answers: health, reflection (v1 and v1alpha), and the candle
/// service behind the bearer-token check; no request over the configured size.
fn routes(
    config: &ServiceConfig,
    candles: grpc::Candles,
    health: HealthServer<impl Health>,
) -> anyhow::Result<tonic::service::Routes> {
    let max_request = config.grpc.max_request_bytes;
    let candles = CandleServiceServer::new(candles).max_decoding_message_size(max_request);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(candles_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection (v1)")?
        .max_decoding_message_size(max_request);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(candles_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection (v1alpha)")?
        .max_decoding_message_size(max_request);
    let health = health.max_decoding_message_size(max_request);
    let token = config.auth_token.as_deref().map(grpc::Token::new);
    Ok(tonic::service::Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            candles,
            move |req| grpc::check_token(token.as_ref(), req),
        ))
        .prepare())
}

/// The HTTP/2 server under `limits` (DESIGN.md "Hostile clients and limits"), with TLS when a
/// certificate chain and key are given.
fn server_builder(
    limits: &config::GrpcLimits,
    tls: Option<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<Server> {
    let mut builder = Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .initial_stream_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window)
        .http2_keepalive_interval(limits.http2_keepalive_interval)
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .http2_max_header_list_size(16 * 1024);
    if let Some(age) = limits.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some((cert, key)) = tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .context("configuring TLS")?;
    }
    Ok(builder)
}
