//! The one event loop: every [`Event`] (keys, resizes, candles, link states, ticks) arrives on
//! one channel, changes the [`App`], and the screen is redrawn. Generic over the ratatui
//! [`Backend`], so tests drive it with a `TestBackend`.

use crate::app::{Action, App, Event};
use candles_core::Micros;
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// At most this many queued events are applied before the screen is redrawn.
const MAX_BATCH: usize = 1_024;

/// Runs the dashboard until a key asks to quit, a fatal event arrives, or `events` closes.
/// `now` gives the time for each event (the wall clock in the binary, a fixed clock in tests).
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut mpsc::Receiver<Event>,
    now: impl Fn() -> Micros,
) -> std::io::Result<()> {
    terminal.draw(|f| crate::ui::render(app, f))?;
    while let Some(event) = events.recv().await {
        let mut quit = app.handle(event, now()) == Action::Quit;
        let mut applied = 1;
        while !quit && applied < MAX_BATCH {
            match events.try_recv() {
                Ok(event) => quit = app.handle(event, now()) == Action::Quit,
                Err(_) => break,
            }
            applied += 1;
        }
        if quit {
            break;
        }
        terminal.draw(|f| crate::ui::render(app, f))?;
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
