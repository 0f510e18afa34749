//! The one event loop: every [`Event`] (keys, resizes, candles, link states, ticks) arrives on
//! one channel, changes the [`App`], and the screen is redrawn. Generic over the ratatui
//! [`Backend`], so tests drive it with a `TestBackend`.

use crate::app::{Action, App, Event};
use candles_core::Micros;
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// At most this many queued events are applied before the screen is redrawn.
const MAX_BATCH: usize = 1_024;

/// Data-driven redraws happen at most this often (keys and resizes redraw at once): a busy
/// stream of forming candles costs at most 20 frames a second.
pub const MIN_FRAME: Duration = Duration::from_millis(50);

/// Applies queued events without waiting; returns (quit, any key or resize seen).
fn drain(
    app: &mut App,
    events: &mut mpsc::Receiver<Event>,
    now: &impl Fn() -> Micros,
) -> (bool, bool) {
    let mut urgent = false;
    for _ in 0..MAX_BATCH {
        match events.try_recv() {
            Ok(event) => {
                urgent |= matches!(event, Event::Key(_) | Event::Resize(..));
                if app.handle(event, now()) == Action::Quit {
                    return (true, urgent);
                }
            }
            Err(_) => break,
        }
    }
    (false, urgent)
}

/// Runs the dashboard until a key asks to quit, a fatal event arrives, or `events` closes.
/// `now` gives the time for each event (the wall clock in the binary, a fixed clock in tests).
/// Every applied event is on screen before the next wait.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut mpsc::Receiver<Event>,
    now: impl Fn() -> Micros,
) -> std::io::Result<()> {
    terminal.draw(|f| crate::ui::render(app, f))?;
    let mut last_draw = Instant::now();
    while let Some(event) = events.recv().await {
        let mut urgent = matches!(event, Event::Key(_) | Event::Resize(..));
        if app.handle(event, now()) == Action::Quit {
            break;
        }
        let (quit, more_urgent) = drain(app, events, &now);
        if quit {
            break;
        }
        urgent |= more_urgent;
        let next_frame = last_draw + MIN_FRAME;
        if !urgent && Instant::now() < next_frame {
            // Let data accumulate until the next frame is due, then apply it all.
            tokio::time::sleep_until(next_frame.into()).await;
            if drain(app, events, &now).0 {
                break;
            }
        }
        terminal.draw(|f| crate::ui::render(app, f))?;
        last_draw = Instant::now();
    }
    Ok(())
}

/// Forwards terminal input (keys, resizes) from crossterm into `tx` until `shutdown`.
pub async fn forward_terminal_events(tx: mpsc::Sender<Event>, shutdown: CancellationToken) {
    let mut stream = crossterm::event::EventStream::new();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        let event = match next {
            Some(Ok(crossterm::event::Event::Key(key))) => Event::Key(key),
            Some(Ok(crossterm::event::Event::Resize(w, h))) => Event::Resize(w, h),
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading terminal input failed");
                return;
            }
            None => return,
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Sends [`Event::Tick`] every `every` until `shutdown` (drives "stale" and countdowns; the
/// only periodic wake-up of an idle dashboard).
pub async fn tick(tx: mpsc::Sender<Event>, every: Duration, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if tx.send(Event::Tick).await.is_err() {
            return;
        }
    }
}
