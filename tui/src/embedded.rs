//! `--embedded`: the whole pipeline in this process, with no Kafka, Redis or gRPC.
//!
//! One connector per exchange sends normalized trades into a channel; a [`candles_core::Engine`]
//! on the wall clock turns them into candles. Their timing is the service's, from the same
//! pure parts of `candles-core`: finals leave when a window's end plus grace passes
//! ([`Finality`]), and (with live updates) the forming candles at most once per
//! `update_interval`, the first change after a quiet interval at once ([`Throttle`]). Each
//! connector's connection state becomes an [`Event::Conn`] for that exchange.

use crate::app::Event;
use crate::embedded_config::EmbeddedConfig;
use candles_core::finality::Finality;
use candles_core::throttle::Throttle;
use candles_core::time::Duration;
use candles_core::{Candle, ClockMode, Engine, EngineConfig, Micros, Outcome, Trade};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shortest live-update interval: a floor so that a zero `--update-interval` does not send
/// a round per trade.
const MIN_UPDATE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

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

/// Feeds trades into an engine; sends finalized candles to `tx` at each window's end plus grace
/// and, if `live`, forming ones at most once per `every`, until `shutdown` or the trade channel
/// closes.
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
    let mut finality = Finality::new(config, Micros::now());
    let mut throttle = Throttle::new(every.to_std().max(MIN_UPDATE_INTERVAL));
    loop {
        let live_due = throttle.due().filter(|_| live);
        let live_sleep = async move {
            match live_due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            trade = trades.recv() => match trade {
                Some(t) => match engine.apply(&t) {
                    Outcome::Applied => {
                        throttle.changed(Instant::now());
                    }
                    Outcome::Late => metrics::counter!("tui_late_trades_total").increment(1),
                },
                None => return,
            },
            // `None` from `reached`: the timer woke a little early; the next turn sleeps the rest.
            _ = tokio::time::sleep(finality.wait(Micros::now())) => {
                take_finals(&mut engine, &mut finality, Micros::now(), &mut out);
            }
            _ = live_sleep => {
                throttle.sent(Instant::now());
                engine.take_updates(&mut out);
            }
        }
        for candle in out.drain(..) {
            if tx.send(Event::Candle(candle)).await.is_err() {
                return;
            }
        }
    }
}

/// The finals the clock reading `now` releases into `out`: none before `finality`'s due instant
/// (a timer that woke early), else every window whose end plus grace is at or before `now`.
fn take_finals(engine: &mut Engine, finality: &mut Finality, now: Micros, out: &mut Vec<Candle>) {
    if finality.reached(now).is_some() {
        engine.advance(now, out);
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

    #[test]
    fn finals_leave_at_their_window_end_plus_the_grace_and_not_before() {
        let config = EngineConfig {
            interval: Interval::seconds(5),
            grace: Duration::from_millis(1_500),
            clock: ClockMode::Wall,
        };
        let mut engine = Engine::new(config);
        let mut finality = Finality::new(config, Micros::from_millis(2_000));
        let trade = Trade::new(
            Exchange::Binance,
            Pair::defaults()[0],
            1,
            "100.5",
            "2",
            Side::Buy,
            Micros::from_millis(1_000),
        )
        .unwrap();
        assert_eq!(engine.apply(&trade), Outcome::Applied);
        let mut out = Vec::new();
        for ms in [2_000, 5_000, 6_000, 6_499] {
            take_finals(
                &mut engine,
                &mut finality,
                Micros::from_millis(ms),
                &mut out,
            );
            assert!(
                out.is_empty(),
                "a final left at {ms} ms, before 5 s + 1.5 s"
            );
        }
        take_finals(
            &mut engine,
            &mut finality,
            Micros::from_millis(6_500),
            &mut out,
        );
        assert!(!out.is_empty(), "due at the window end plus the grace");
        assert!(
            out.iter()
                .all(|c| c.is_final && c.end().plus(config.grace) <= Micros::from_millis(6_500))
        );
        out.clear();
        take_finals(
            &mut engine,
            &mut finality,
            Micros::from_millis(11_499),
            &mut out,
        );
        assert!(
            out.is_empty(),
            "the flat candle of [5 s, 10 s) waits for 11.5 s"
        );
        take_finals(
            &mut engine,
            &mut finality,
            Micros::from_millis(11_500),
            &mut out,
        );
        assert!(!out.is_empty() && out.iter().all(|c| c.trades == 0));
    }
}
