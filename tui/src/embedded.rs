//! `--embedded`: the whole pipeline in this process, with no Kafka, Redis or gRPC.
//!
//! One connector per exchange sends normalized trades into a channel; a [`candles_core::Engine`]
//! on the wall clock turns them into candles of every interval of `--intervals` (the service's
//! default set); only the shown interval's go to the dashboard, and a switch (`<` / `>`, on the
//! `selected` watch) refills it from the finals kept in memory ([`crate::embedded_history`]). Their timing is the service's, from the same
//! pure parts of `candles-core`: finals leave when a window's end plus grace passes
//! ([`Finality`]), and (with live updates) the forming candles at most once per
//! `update_interval`, the first change after a quiet interval at once ([`Throttle`]). Each
//! connector's connection state becomes an [`Event::Conn`] for that exchange. The finals of each
//! exchange's 1-minute candles are verified ([`crate::embedded_verify`]).

use crate::app::Event;
use crate::embedded_config::EmbeddedConfig;
use crate::embedded_history::{Outlet, switch_notice};
use crate::embedded_verify::Verifiers;
use candles_core::finality::Finality;
use candles_core::throttle::Throttle;
use candles_core::time::Duration;
use candles_core::{Candle, ClockMode, Engine, EngineConfig, Interval, Micros, Outcome, Trade};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shortest live-update interval: a floor so that a zero `--update-interval` does not send
/// a round per trade.
const MIN_UPDATE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Starts the connectors and the engine; events go to `tx` until `shutdown`. `selected` says
/// which interval to show (`None` and unchanged values are ignored).
pub fn start(
    cfg: EmbeddedConfig,
    selected: watch::Receiver<Option<Interval>>,
    tx: mpsc::Sender<Event>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (trades_tx, trades_rx) = mpsc::channel::<Trade>(16_384);
    let connectors = crate::connectors::configs(&cfg);
    crate::connectors::spawn(
        &connectors,
        trades_tx,
        tx.clone(),
        tracker,
        shutdown.clone(),
    )?;
    let config = EngineConfig {
        interval: cfg.interval,
        grace: cfg.grace,
        clock: ClockMode::Wall,
    };
    let engine = Engine::with_intervals(config, cfg.intervals);
    let outlet = Outlet::new(cfg.interval);
    let live = cfg.live.then_some(cfg.update_interval);
    let verify = match cfg.verify {
        true => Verifiers::start(&connectors, cfg.intervals, tx.clone(), tracker, &shutdown)?,
        false => Verifiers::default(),
    };
    let feeds = Feeds {
        trades: trades_rx,
        selected,
        verify,
    };
    tracker.spawn(drive_engine(engine, outlet, feeds, tx, live, shutdown));
    Ok(())
}

/// What the engine task reads: trades, and the interval to show.
pub struct Feeds {
    /// Normalized trades from the connectors.
    pub trades: mpsc::Receiver<Trade>,
    /// The interval the dashboard shows (`<` / `>` change it).
    pub selected: watch::Receiver<Option<Interval>>,
    /// Where the final per-exchange 1-minute candles are checked (none: not verified).
    pub verify: Verifiers,
}

/// Feeds trades into `engine`; sends the shown interval's finalized candles to `tx` at each
/// window's end plus grace and, with `live` (how often), forming ones at most that often, until
/// `shutdown` or the trade channel closes. First sends the intervals built and the shown one.
pub async fn drive_engine(
    mut engine: Engine,
    mut outlet: Outlet,
    mut feeds: Feeds,
    tx: mpsc::Sender<Event>,
    live: Option<Duration>,
    shutdown: CancellationToken,
) {
    let built = engine.intervals().as_slice().to_vec();
    if tx
        .send(Event::Intervals(built, outlet.shown()))
        .await
        .is_err()
    {
        return;
    }
    let mut out = Vec::new();
    let mut finality = Finality::new(*engine.config(), Micros::now());
    let every = live
        .unwrap_or(Duration(0))
        .to_std()
        .max(MIN_UPDATE_INTERVAL);
    let mut throttle = Throttle::new(every);
    let mut watching = true;
    loop {
        let live_due = throttle.due().filter(|_| live.is_some());
        let live_sleep = async move {
            match live_due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut notice = None;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            trade = feeds.trades.recv() => match trade {
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
                feeds.verify.check(&out);
            }
            _ = live_sleep => {
                throttle.sent(Instant::now());
                engine.take_updates(&mut out);
            }
            changed = feeds.selected.changed(), if watching => match changed {
                Ok(()) => notice = switch(&engine, &mut outlet, &mut feeds.selected, &mut out),
                // The dashboard is gone (or a line mode): the shown interval stays.
                Err(_) => watching = false,
            },
        }
        if notice.is_none() {
            outlet.route(&mut out);
        }
        if !send(&tx, &mut out, notice).await {
            return;
        }
    }
}

/// The interval on `selected`, if it is another than the shown one: shows it, puts its finals
/// kept and forming candles in `out` and returns the notice to show.
fn switch(
    engine: &Engine,
    outlet: &mut Outlet,
    selected: &mut watch::Receiver<Option<Interval>>,
    out: &mut Vec<Candle>,
) -> Option<String> {
    let to = (*selected.borrow_and_update()).filter(|to| *to != outlet.shown())?;
    let mut forming = Vec::new();
    engine.snapshot(&mut forming);
    outlet.switch(to, &forming, out);
    Some(switch_notice(to, outlet.held(to)))
}

/// Sends the candles of `out`, then `notice`; `false` when the dashboard is gone.
async fn send(tx: &mpsc::Sender<Event>, out: &mut Vec<Candle>, notice: Option<String>) -> bool {
    for candle in out.drain(..) {
        if tx.send(Event::Candle(candle)).await.is_err() {
            return false;
        }
    }
    match notice {
        Some(text) => tx.send(Event::Notice(text)).await.is_ok(),
        None => true,
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
    use candles_core::{Exchange, Intervals, Pair, Side};

    /// An engine task building 200 ms and 400 ms, showing 200 ms, with live updates.
    fn spawn_driver(
        trades: mpsc::Receiver<Trade>,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
    ) -> (tokio::task::JoinHandle<()>, watch::Sender<Option<Interval>>) {
        let fine = Interval::from_micros(200_000).unwrap();
        let config = EngineConfig {
            interval: fine,
            grace: Duration(0),
            clock: ClockMode::Wall,
        };
        let set = Intervals::new(&[fine, Interval::from_micros(400_000).unwrap()]).unwrap();
        let (selected_tx, selected) = watch::channel(None);
        let feeds = Feeds {
            trades,
            selected,
            verify: Verifiers::default(),
        };
        let task = tokio::spawn(drive_engine(
            Engine::with_intervals(config, set),
            Outlet::new(fine),
            feeds,
            events,
            Some(Duration::from_millis(20)),
            shutdown,
        ));
        (task, selected_tx)
    }

    fn trade() -> Trade {
        let pair = Pair::defaults()[0];
        Trade::new(
            Exchange::Binance,
            pair,
            1,
            "100.5",
            "2",
            Side::Buy,
            Micros::now(),
        )
        .unwrap()
    }

    async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
        tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn trades_become_forming_then_final_candles() {
        let (ttx, trx) = mpsc::channel(16);
        let (etx, mut erx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let (task, _selected) = spawn_driver(trx, etx, shutdown.clone());
        let Event::Intervals(built, shown) = next(&mut erx).await else {
            panic!("the intervals built come first")
        };
        assert_eq!((built.len(), shown.micros()), (2, 200_000));
        ttx.send(trade()).await.unwrap();
        let mut saw_forming = false;
        let final_candle = loop {
            let Event::Candle(c) = next(&mut erx).await else {
                panic!()
            };
            assert_eq!(c.interval, shown, "only the shown interval");
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

    #[tokio::test]
    async fn a_switch_sends_the_finals_kept_of_the_new_interval_then_only_its_candles() {
        let (ttx, trx) = mpsc::channel(16);
        let (etx, mut erx) = mpsc::channel(256);
        let shutdown = CancellationToken::new();
        let (task, selected) = spawn_driver(trx, etx, shutdown.clone());
        let coarse = Interval::from_micros(400_000).unwrap();
        ttx.send(trade()).await.unwrap();
        // Wait until the trade's 400 ms window is final (kept, not sent: 200 ms is shown).
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        selected.send_replace(Some(coarse));
        let mut finals = Vec::new();
        let notice = loop {
            match next(&mut erx).await {
                Event::Notice(text) => break text,
                Event::Candle(c) if c.interval == coarse && c.is_final => finals.push(c),
                _ => {}
            }
        };
        assert!(notice.contains("400ms"), "{notice}");
        assert_eq!(
            finals
                .iter()
                .find(|c| c.trades == 1)
                .map(|c| c.close.to_string()),
            Some("100.5".to_string()),
            "the final with the trade, from what was kept: {finals:?}"
        );
        for _ in 0..3 {
            let Event::Candle(c) = next(&mut erx).await else {
                panic!()
            };
            assert_eq!(c.interval, coarse, "only the new interval after the switch");
        }
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
