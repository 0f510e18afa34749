//! Dependency state → standard gRPC health (`grpc.health.v1`).
//!
//! The service (both `""` and `candles.v1.CandleService`) is `SERVING` only while Kafka answers
//! metadata requests, Redis answers `PING`, the Redis subscriber is subscribed and the consume
//! loop is alive (it went round within [`crate::status::LOOP_STALL`]: a loop stuck on one record delivers
//! nothing however reachable Kafka is); otherwise `NOT_SERVING`, so load balancers and
//! orchestrators route around an instance that cannot deliver candles.

use crate::metrics as m;
use crate::status::DependencyStatus;
use crate::store::Store;
use candles_proto::v1::candle_service_server::SERVICE_NAME;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

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
                consume_loop = status.consume_loop_alive(candles_core::Micros::now()),
                ?state,
                "health changed"
            );
            reporter.set_service_status("", state).await;
            reporter.set_service_status(SERVICE_NAME, state).await;
            last = Some(serving);
        }
    }
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
