//! Render tests: the dashboard drawn into ratatui's `TestBackend`, compared with committed insta
//! snapshots (characters only), and colours asserted on specific cells.
#![allow(clippy::unwrap_used)]

use candles_core::{Candle, Decimal, Exchange, Interval, Micros, Pair, Source};
use candles_tui::app::{App, Event, Link, LinkState};
use candles_tui::chart::{DOWN, UP};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

/// 2026-11-26T06:40:00Z
const T0: i64 = 1_795_675_200_000_000;
const FIVE_S: i64 = 5_000_000;

fn d(x: f64, dp: u32) -> Decimal {
    Decimal::from_f64_retain(x).unwrap().round_dp(dp)
}

/// A deterministic random walk of `n` candles around `base`, the last one forming.
fn walk(pair: &str, base: f64, n: usize, seed: u64) -> Vec<Candle> {
    let pair = Pair::parse(pair).unwrap();
    let mut state = seed;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as f64) / f64::from(1u32 << 31)
    };
    let mut price = base;
    (0..n)
        .map(|i| {
            let open = price;
            let close = open * (1.0 + (rnd() - 0.5) * 0.004);
            let high = open.max(close) * (1.0 + rnd() * 0.0015);
            let low = open.min(close) * (1.0 - rnd() * 0.0015);
            price = close;
            Candle {
                pair,
                source: Source::Composite,
                interval: Interval::seconds(5),
                start: Micros(T0 + i as i64 * FIVE_S),
                open: d(open, 2),
                high: d(high, 2),
                low: d(low, 2),
                close: d(close, 2),
                volume: d(rnd() * 3.0 + 0.1, 4),
                quote_volume: d((rnd() * 3.0 + 0.1) * base, 2),
                buy_volume: Decimal::ONE,
                sell_volume: Decimal::ONE,
                trades: (rnd() * 50.0) as u64 + 1,
                is_final: i + 1 < n,
            }
        })
        .collect()
}

fn now_after(candles: usize) -> Micros {
    Micros(T0 + candles as i64 * FIVE_S - 1_000_000)
}

fn app_with(pairs: &[&str], series: Vec<Vec<Candle>>) -> App {
    let pairs: Vec<Pair> = pairs.iter().map(|p| Pair::parse(p).unwrap()).collect();
    let mut app = App::new(pairs, Source::Composite, "http://127.0.0.1:8080");
    let now = now_after(series.iter().map(Vec::len).max().unwrap_or(0));
    app.handle(Event::Conn(Link::Server, LinkState::Live), now);
    for c in series.into_iter().flatten() {
        app.handle(Event::Candle(c), now);
    }
    app
}

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| candles_tui::ui::render(app, f)).unwrap();
    terminal
}

fn text(buf: &Buffer) -> String {
    let area = buf.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn three_pairs() -> App {
    app_with(
        &["btcusdt", "ethusdt", "solusdt"],
        vec![
            walk("btcusdt", 97_000.0, 80, 1),
            walk("ethusdt", 3_400.0, 80, 2),
            walk("solusdt", 240.0, 80, 3),
        ],
    )
}

#[test]
fn dashboard_with_fixed_candles() {
    let t = draw(&three_pairs(), 120, 45);
    let screen = text(t.backend().buffer());
    assert!(
        screen.contains("BTC-USDT") && screen.contains("ETH-USDT") && screen.contains("SOL-USDT")
    );
    assert!(screen.contains("live"));
    assert!(screen.contains("forming"));
    insta::assert_snapshot!(screen);
}

#[test]
fn help_overlay() {
    let mut app = three_pairs();
    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('?'))), app.now);
    let screen = text(draw(&app, 100, 30).backend().buffer());
    assert!(screen.contains("help"));
    insta::assert_snapshot!(screen);
}

#[test]
fn tiny_terminal_says_so() {
    let screen = text(draw(&three_pairs(), 30, 8).backend().buffer());
    assert!(screen.contains("too small"));
    insta::assert_snapshot!(screen);
}

#[test]
fn empty_chart_waits() {
    let mut app = app_with(&["btcusdt"], vec![]);
    app.handle(Event::Conn(Link::Server, LinkState::Connecting), Micros(T0));
    let screen = text(draw(&app, 80, 20).backend().buffer());
    assert!(screen.contains("waiting for BTC-USDT composite candles"));
    assert!(screen.contains("connecting"));
    insta::assert_snapshot!(screen);
}

#[test]
fn flat_series_is_drawn_in_the_middle() {
    let mut candles = walk("btcusdt", 100.0, 30, 4);
    for c in &mut candles {
        let p = Decimal::from(100);
        (c.open, c.high, c.low, c.close) = (p, p, p, p);
    }
    let app = app_with(&["btcusdt"], vec![candles]);
    let screen = text(draw(&app, 80, 20).backend().buffer());
    assert!(screen.contains("100"));
    insta::assert_snapshot!(screen);
}

#[test]
fn one_candle() {
    let app = app_with(&["btcusdt"], vec![walk("btcusdt", 97_000.0, 1, 5)]);
    insta::assert_snapshot!(text(draw(&app, 80, 20).backend().buffer()));
}

#[test]
fn reconnecting_counts_down_and_bad_data_is_shown() {
    let mut app = three_pairs();
    let now = app.now;
    app.handle(
        Event::Conn(
            Link::Server,
            LinkState::Reconnecting {
                in_ms: 4_000,
                attempt: 3,
            },
        ),
        now,
    );
    app.handle(Event::BadData("invalid open \"x\"".into()), now);
    app.handle(Event::Tick, Micros(now.0 + 1_500_000));
    let screen = text(draw(&app, 100, 30).backend().buffer());
    assert!(screen.contains("reconnecting in 3s"), "{screen}");
    assert!(screen.contains("bad candles skipped: 1"), "{screen}");
}

#[test]
fn embedded_links_show_per_exchange_states() {
    let mut app = three_pairs();
    let now = app.now;
    app.links.clear();
    app.handle(
        Event::Conn(Link::Exchange(Exchange::Binance), LinkState::Live),
        now,
    );
    app.handle(
        Event::Conn(
            Link::Exchange(Exchange::Kraken),
            LinkState::Reconnecting {
                in_ms: 2_000,
                attempt: 1,
            },
        ),
        now,
    );
    app.handle(
        Event::Conn(Link::Exchange(Exchange::Coinbase), LinkState::Connecting),
        now,
    );
    let screen = text(draw(&app, 140, 30).backend().buffer());
    assert!(screen.contains("binance ● live"), "{screen}");
    assert!(screen.contains("kraken ● reconnecting in 2s"), "{screen}");
    assert!(screen.contains("coinbase ● connecting"), "{screen}");
}

/// The cells of the column at `x` whose glyph is a candle body.
fn body_colours(buf: &Buffer, x: u16) -> Vec<Color> {
    (0..buf.area.height)
        .map(|y| &buf[(x, y)])
        .filter(|c| matches!(c.symbol(), "┃" | "╻" | "╹" | "╽" | "╿"))
        .map(|c| c.fg)
        .collect()
}

#[test]
fn up_bodies_are_green_and_down_bodies_red() {
    let mut candles = walk("btcusdt", 100.0, 2, 6);
    let n = |x: i64| Decimal::from(x);
    (
        candles[0].open,
        candles[0].high,
        candles[0].low,
        candles[0].close,
    ) = (n(100), n(112), n(98), n(110));
    (
        candles[1].open,
        candles[1].high,
        candles[1].low,
        candles[1].close,
    ) = (n(110), n(111), n(90), n(92));
    candles[1].is_final = true;
    let mut app = app_with(&["btcusdt"], vec![candles]);
    app.step = 1;
    let t = draw(&app, 60, 20);
    let buf = t.backend().buffer();
    // The two candles are the two columns left of the price axis.
    let columns: Vec<u16> = (0..60)
        .filter(|x| !body_colours(buf, *x).is_empty())
        .collect();
    assert_eq!(columns.len(), 2, "{}", text(buf));
    let up = body_colours(buf, columns[0]);
    let down = body_colours(buf, columns[1]);
    assert!(up.len() >= 2 && up.iter().all(|c| *c == UP), "{up:?}");
    assert!(
        down.len() >= 2 && down.iter().all(|c| *c == DOWN),
        "{down:?}"
    );
    assert_eq!(UP, Color::Green);
    assert_eq!(DOWN, Color::Red);
}

#[test]
fn keys_through_the_event_loop_zoom_and_switch_source() {
    let mut app = three_pairs();
    let now = app.now;
    // Binance candles for ETH so that switching source shows something.
    let mut eth_binance = walk("ethusdt", 3_300.0, 40, 9);
    for c in &mut eth_binance {
        c.source = Source::Exchange(Exchange::Binance);
        app.handle(Event::Candle(*c), now);
    }
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for key in [KeyCode::Tab, KeyCode::Enter, KeyCode::Char('s')] {
            tx.send(Event::Key(KeyEvent::from(key))).await.unwrap();
        }
        drop(tx);
        candles_tui::event::run(&mut terminal, &mut app, &mut rx, move || now)
            .await
            .unwrap();
    });
    let screen = text(terminal.backend().buffer());
    assert!(app.zoomed && app.selected == 1);
    assert!(screen.contains("ETH-USDT · binance · 5s"), "{screen}");
    assert!(
        !screen.contains("SOL-USDT · "),
        "other pairs are hidden when zoomed"
    );
    insta::assert_snapshot!(screen);

    // A resize is survived: the same state in a smaller terminal.
    terminal.backend_mut().resize(50, 14);
    terminal.draw(|f| candles_tui::ui::render(&app, f)).unwrap();
    insta::assert_snapshot!("zoomed_small", text(terminal.backend().buffer()));
}

#[test]
fn a_pair_the_server_does_not_know_is_named() {
    let mut app = app_with(
        &["btcusdt", "xrpusdt"],
        vec![walk("btcusdt", 97_000.0, 10, 1)],
    );
    app.handle(
        Event::Markets(vec![
            Pair::parse("BTC-USDT").unwrap(),
            Pair::parse("ETH-USDT").unwrap(),
        ]),
        app.now,
    );
    let screen = text(draw(&app, 100, 30).backend().buffer());
    assert!(
        screen.contains("the server has no candles for XRP-USDT; it has BTC-USDT, ETH-USDT"),
        "{screen}"
    );
}
