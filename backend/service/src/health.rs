//! Dependency state → standard gRPC health (`grpc.health.v1`).
//!
//! The service (both `""` and `candles.v1.CandleService`) is `SERVING` only while Kafka answers
//! metadata requests, Redis answers `PING` and the Redis subscriber is subscribed; otherwise
//! `NOT_SERVING`, so load balancers and orchestrators route around an instance that cannot
//! deliver candles.

use crate::metrics as m;
use crate::store::Store;
use candles_proto::v1::candle_service_server::CandleServiceServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Reachability of the service's dependencies, updated by the tasks that use them.
#[derive(Debug, Default)]
pub struct DependencyStatus {
    kafka: AtomicBool,
    redis: AtomicBool,
    subscriber: AtomicBool,
}

impl DependencyStatus {
    /// Kafka answered (or stopped answering) a metadata request.
    pub fn set_kafka(&self, up: bool) {
        self.kafka.store(up, Ordering::Relaxed);
    }

    /// Redis answered (or stopped answering) a `PING`.
    pub fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::Relaxed);
    }

    /// The Redis subscriber is (or is no longer) subscribed.
    pub fn set_subscriber(&self, up: bool) {
        self.subscriber.store(up, Ordering::Relaxed);
    }

    /// Kafka reachable.
    pub fn kafka(&self) -> bool {
        self.kafka.load(Ordering::Relaxed)
    }

    /// Redis reachable and subscribed.
    pub fn redis(&self) -> bool {
        self.redis.load(Ordering::Relaxed) && self.subscriber.load(Ordering::Relaxed)
    }

    /// Everything the service needs is reachable.
    pub fn serving(&self) -> bool {
        self.kafka() && self.redis()
    }
}

/// Pings Redis every 500 ms and keeps the health service in line with [`DependencyStatus`].
pub async fn monitor(
    status: Arc<DependencyStatus>,
    store: Store,
    reporter: HealthReporter,
    stop: CancellationToken,
) {
    let mut last: Option<bool> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let redis_up = matches!(
            tokio::time::timeout(Duration::from_secs(1), store.ping()).await,
            Ok(Ok(()))
        );
        status.set_redis(redis_up);
        metrics::gauge!(m::DEPENDENCY_UP, "dependency" => "redis")
            .set(f64::from(u8::from(status.redis())));
        metrics::gauge!(m::DEPENDENCY_UP, "dependency" => "kafka")
            .set(f64::from(u8::from(status.kafka())));
        let serving = status.serving();
        if last != Some(serving) {
            let state = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::info!(
                kafka = status.kafka(),
                redis = status.redis(),
                ?state,
                "health changed"
            );
            reporter.set_service_status("", state).await;
            if serving {
                reporter
                    .set_serving::<CandleServiceServer<crate::grpc::Candles>>()
                    .await;
            } else {
                reporter
                    .set_not_serving::<CandleServiceServer<crate::grpc::Candles>>()
                    .await;
            }
            last = Some(serving);
        }
    }
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
