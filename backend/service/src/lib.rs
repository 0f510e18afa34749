//! candles-service: Kafka `trades` → candle engine → Redis (publish-once, history, Pub/Sub) → gRPC.
//!
//! Any number of instances share one Kafka consumer group. Kafka partitions (keyed by pair) decide
//! which instance aggregates which pair; every instance subscribes to Redis and serves every
//! candle to its own gRPC clients (DESIGN.md "Scaling and failure").
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
//! # Modules
//! - [`config`]: [`ServiceConfig`], every knob with its default.
//! - [`admission`]: which decoded trades are applied (key = pair, served pair, plausible time).
//! - [`consumer`]: the Kafka side: partitions, one engine per partition, offsets, dead letters.
//! - [`store`]: Redis: publish-once of final candles (a Lua script), live updates, history.
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

pub use config::{ServiceConfig, TlsFiles};

use anyhow::Context as _;
use candles_proto::v1::candle_service_server::CandleServiceServer;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Identity, Server, ServerTlsConfig};

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
/// the offsets behind it and returns, within a few seconds. Neither Kafka nor Redis needs to be
/// up when it starts: health reports `NOT_SERVING` until both are reachable.
pub async fn serve(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    // Our own token: a fatal error inside stops everything without cancelling the caller's.
    let shutdown = shutdown.child_token();
    let addr = listener
        .local_addr()
        .context("reading the gRPC listener's address")?;
    let tls = match &config.tls {
        Some(files) => Some(files.load().await?),
        None => None,
    };
    metrics::describe();

    let status = Arc::new(status::DependencyStatus::default());
    let redis_prefix = config
        .redis_prefix
        .clone()
        .unwrap_or_else(|| redis_input::default_prefix(&config.redis_url));
    let check = redis_input::RedisCheck::new(
        config.engine.interval,
        config.pairs.clone(),
        config.trade_times,
    );
    let store =
        store::Store::connect_with(&config.redis_url, &redis_prefix, config.history_max, check)
            .map_err(|e| {
                anyhow::anyhow!(
                    "invalid Redis URL {:?} (--redis / CANDLES_REDIS): {}",
                    redis_input::redact(&config.redis_url),
                    redis_input::redact(&e.to_string())
                )
            })?;
    let hub = hub::Hub::new(config.hub_capacity);
    let tracker = TaskTracker::new();
    // Tasks stop on this token; cancelled after the gRPC server and the consumer are done.
    let internal = CancellationToken::new();

    tracker.spawn(hub::run_subscriber(
        config.redis_url.clone(),
        store.keys().clone(),
        store.clone(),
        hub.clone(),
        status.clone(),
        internal.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_not_serving::<CandleServiceServer<grpc::Candles>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;

    let consumer_task = {
        let config = config.clone();
        let store = store.clone();
        let status = status.clone();
        let shutdown = shutdown.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            let result = consumer::run(config, store, status, tracker, shutdown.clone()).await;
            if let Err(e) = &result {
                tracing::error!(error = %format!("{e:#}"), "the Kafka consumer failed; shutting down");
                shutdown.cancel();
            }
            result
        })
    };

    tracker.spawn(health::monitor(
        status.clone(),
        store.clone(),
        health_reporter,
        internal.clone(),
    ));

    let limits = &config.grpc;
    let max_request = limits.max_request_bytes;
    let candles = CandleServiceServer::new(grpc::Candles::new(
        &config,
        store.clone(),
        hub,
        tracker.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(max_request);
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
    let health_service = health_service.max_decoding_message_size(max_request);

    // DESIGN.md "Hostile clients and limits".
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
    let token = config.auth_token.as_deref().map(grpc::Token::new);
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            candles,
            move |req| grpc::check_token(token.as_ref(), req),
        ))
        .prepare();
    tracing::info!(%addr, tls = config.tls.is_some(), auth = config.auth_token.is_some(), max_connections = limits.max_connections, max_streams = limits.max_streams_per_connection, "serving gRPC");
    let incoming = grpc::limits::incoming(listener, limits, tracker.clone(), shutdown.clone());
    // Client streams end on the same token; the server then drains within its own timeout.
    let server = builder.serve_with_incoming_shutdown(
        grpc::limits::Counted::new(routes),
        incoming,
        shutdown.clone().cancelled_owned(),
    );

    // The server can stall on clients that never read; bound the drain after shutdown.
    let served = tokio::select! {
        r = server => r.context("gRPC server failed"),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(std::time::Duration::from_secs(3)).await } => {
            tracing::warn!("gRPC clients did not disconnect within 3s of shutdown; closing anyway");
            Ok(())
        }
    };
    if served.is_err() {
        shutdown.cancel();
    }
    let consumed = consumer_task
        .await
        .context("Kafka consumer task panicked")?;
    internal.cancel();
    tracker.close();
    if tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 2s of shutdown");
    }
    served?;
    consumed
}
