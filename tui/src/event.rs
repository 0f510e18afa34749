//! The one event loop: every [`Event`] (keys, resizes, candles, link states, ticks) arrives on
//! one channel, changes the [`App`], and the screen is redrawn. Generic over the ratatui
//! [`Backend`], so tests drive it with a `TestBackend`.

use crate::app::{Action, App, Event};
use candles_core::Micros;
use crossterm::event::{MouseButton, MouseEventKind};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::layout::Rect;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
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
    after_key: &mut impl FnMut(&App),
) -> (bool, bool) {
    let mut urgent = false;
    for _ in 0..MAX_BATCH {
        match events.try_recv() {
            Ok(event) => {
                urgent |= matches!(event, Event::Key(_) | Event::Resize(..) | Event::Click(..));
                if apply(app, event, now(), after_key) == Action::Quit {
                    return (true, urgent);
                }
            }
            Err(_) => break,
        }
    }
    (false, urgent)
}

/// Applies one event; after a key, calls `after_key` (e.g. to save the settings it changed).
/// A click inspects the candle under it (found from the layout [`crate::ui`] draws).
fn apply(app: &mut App, event: Event, now: Micros, after_key: &mut impl FnMut(&App)) -> Action {
    if let Event::Click(x, y) = event {
        let (w, h) = app.screen;
        if let Some((index, start)) = crate::ui::candle_at(app, Rect::new(0, 0, w, h), x, y) {
            app.inspect_at(index, start);
        }
        return Action::None;
    }
    let key = matches!(event, Event::Key(_));
    let action = app.handle(event, now);
    if key {
        after_key(app);
    }
    action
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
    run_with(terminal, app, events, now, |_| {}).await
}

/// [`run`], calling `after_key` with the state after each key.
pub async fn run_with<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut mpsc::Receiver<Event>,
    now: impl Fn() -> Micros,
    mut after_key: impl FnMut(&App),
) -> std::io::Result<()> {
    let size = terminal.size()?;
    app.screen = (size.width, size.height);
    terminal.draw(|f| crate::ui::render(app, f))?;
    let mut last_draw = Instant::now();
    while let Some(event) = events.recv().await {
        let mut urgent = matches!(event, Event::Key(_) | Event::Resize(..) | Event::Click(..));
        if apply(app, event, now(), &mut after_key) == Action::Quit {
            break;
        }
        let (quit, more_urgent) = drain(app, events, &now, &mut after_key);
        if quit {
            break;
        }
        urgent |= more_urgent;
        let next_frame = last_draw + MIN_FRAME;
        if !urgent && Instant::now() < next_frame {
            // Let data accumulate until the next frame is due, then apply it all.
            tokio::time::sleep_until(next_frame).await;
            if drain(app, events, &now, &mut after_key).0 {
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
            Some(Ok(crossterm::event::Event::Mouse(m)))
                if m.kind == MouseEventKind::Down(MouseButton::Left) =>
            {
                Event::Click(m.column, m.row)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Candle, Decimal, Interval, Pair, Source};
    use crossterm::event::{KeyCode, KeyEvent};
    use ratatui::backend::{ClearType, TestBackend, WindowSize};
    use ratatui::buffer::Cell;
    use ratatui::layout::{Position, Size};

    /// A TestBackend that counts frames.
    struct Counting(TestBackend, usize);

    impl Backend for Counting {
        fn draw<'a, I: Iterator<Item = (u16, u16, &'a Cell)>>(
            &mut self,
            content: I,
        ) -> std::io::Result<()> {
            self.0.draw(content)
        }
        fn hide_cursor(&mut self) -> std::io::Result<()> {
            self.0.hide_cursor()
        }
        fn show_cursor(&mut self) -> std::io::Result<()> {
            self.0.show_cursor()
        }
        fn get_cursor_position(&mut self) -> std::io::Result<Position> {
            self.0.get_cursor_position()
        }
        fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> std::io::Result<()> {
            self.0.set_cursor_position(position)
        }
        fn clear(&mut self) -> std::io::Result<()> {
            self.0.clear()
        }
        fn clear_region(&mut self, clear_type: ClearType) -> std::io::Result<()> {
            self.0.clear_region(clear_type)
        }
        fn size(&self) -> std::io::Result<Size> {
            self.0.size()
        }
        fn window_size(&mut self) -> std::io::Result<WindowSize> {
            self.0.window_size()
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.1 += 1;
            self.0.flush()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_candles_is_drawn_at_most_every_frame_but_keys_at_once() {
        let pair = Pair::defaults()[0];
        let mut app = App::new(vec![pair], Source::Composite, "test");
        let mut terminal = Terminal::new(Counting(TestBackend::new(80, 24), 0)).unwrap();
        let (tx, mut rx) = mpsc::channel(4_096);
        let producer = tokio::spawn(async move {
            // 200 forming updates, one every millisecond: 200 ms of data.
            for i in 0..200 {
                let mut c = Candle::flat(
                    pair,
                    Source::Composite,
                    Interval::seconds(5),
                    Micros(0),
                    Decimal::from(100 + i),
                );
                c.is_final = false;
                tx.send(Event::Candle(c)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tx.send(Event::Key(KeyEvent::from(KeyCode::Char('?'))))
                .await
                .unwrap();
        });
        run(&mut terminal, &mut app, &mut rx, || Micros(0))
            .await
            .unwrap();
        producer.await.unwrap();
        let frames = terminal.backend().1;
        // The first frame, about one per 50 ms of data, and the key's: far fewer than 200.
        assert!((3..=8).contains(&frames), "{frames} frames");
        assert!(app.help);
        assert_eq!(
            app.series_for(pair).unwrap().candles[&Micros(0)].close,
            Decimal::from(299)
        );
    }
}
