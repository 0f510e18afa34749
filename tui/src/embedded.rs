//! `--embedded`: the whole pipeline in this process, with no Kafka, Redis or gRPC.
//!
//! One connector per exchange sends normalized trades into a channel; a [`candles_core::Engine`]
//! on the wall clock turns them into candles: finals when a window's end plus grace passes, and
//! (with live updates) the forming candle at most every `update_interval`. Each connector's
//! connection state becomes an [`Event::Conn`] for that exchange.

use crate::app::Event;
use crate::embedded_config::EmbeddedConfig;
use candles_core::time::Duration;
use candles_core::{ClockMode, Engine, EngineConfig, Micros, Outcome, Trade};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts the connectors and the engine; events go to `tx` until `shutdown`.
pub fn start(
    cfg: EmbeddedConfig,
    tx: mpsc::Sender<Event>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (trades_tx, trades_rx) = mpsc::channel::<Trade>(16_384);
    crate::connectors::spawn(&cfg, trades_tx, tx.clone(), tracker, shutdown.clone())?;
    let engine = EngineConfig {
        interval: cfg.interval,
        grace: cfg.grace,
        clock: ClockMode::Wall,
    };
    tracker.spawn(drive_engine(
        engine,
        trades_rx,
        tx,
        cfg.live,
        cfg.update_interval,
        shutdown,
    ));
    Ok(())
}

/// Feeds trades into an engine; sends finalized candles (and, if `live`, forming ones) to `tx`
/// every `every`, until `shutdown` or the trade channel closes.
pub async fn drive_engine(
    config: EngineConfig,
    mut trades: mpsc::Receiver<Trade>,
    tx: mpsc::Sender<Event>,
    live: bool,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut engine = Engine::new(config);
    let mut out = Vec::new();
    let mut ticker =
        tokio::time::interval(every.to_std().max(std::time::Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            trade = trades.recv() => match trade {
                Some(t) => {
                    if engine.apply(&t) == Outcome::Late {
                        metrics::counter!("tui_late_trades_total").increment(1);
                    }
                }
                None => return,
            },
            _ = ticker.tick() => {
                out.clear();
                engine.advance(Micros::now(), &mut out);
                if live {
                    engine.take_updates(&mut out);
                }
                for candle in out.drain(..) {
                    if tx.send(Event::Candle(candle)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Exchange, Interval, Pair, Side};

    #[tokio::test]
    async fn trades_become_forming_then_final_candles() {
        let (ttx, trx) = mpsc::channel(16);
        let (etx, mut erx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let config = EngineConfig {
            interval: Interval::from_micros(200_000).unwrap(),
            grace: Duration(0),
            clock: ClockMode::Wall,
        };
        let task = tokio::spawn(drive_engine(
            config,
            trx,
            etx,
            true,
            Duration::from_millis(20),
            shutdown.clone(),
        ));
        let pair = Pair::defaults()[0];
        let t = Trade::new(
            Exchange::Binance,
            pair,
            1,
            "100.5",
            "2",
            Side::Buy,
            Micros::now(),
        )
        .unwrap();
        ttx.send(t).await.unwrap();
        let mut saw_forming = false;
        let final_candle = loop {
            let Some(Event::Candle(c)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), erx.recv())
                    .await
                    .unwrap()
            else {
                panic!()
            };
            if c.is_final {
                break c;
            }
            saw_forming = true;
        };
        assert!(saw_forming);
        assert_eq!(final_candle.close.to_string(), "100.5");
        shutdown.cancel();
        task.await.unwrap();
    }
}
