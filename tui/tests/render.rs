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
                partial: false,
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

/// The rows of `screen` as strings.
fn rows(screen: &str) -> Vec<&str> {
    screen.lines().collect()
}

/// Three exchanges, one of them down, as `--embedded` shows them.
fn embedded_links(app: &mut App) {
    let now = app.now;
    app.links.clear();
    app.origin = "embedded · SIMULATED".into();
    for (exchange, state) in [
        (Exchange::Binance, LinkState::Live),
        (
            Exchange::Kraken,
            LinkState::Reconnecting {
                in_ms: 30_000,
                attempt: 6,
            },
        ),
        (Exchange::Coinbase, LinkState::Connecting),
    ] {
        app.handle(Event::Conn(Link::Exchange(exchange), state), now);
    }
}

#[test]
fn at_80x24_the_title_keeps_source_and_paused_and_a_hidden_pair_is_named() {
    let mut app = three_pairs();
    embedded_links(&mut app);
    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('p'))), app.now);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    let lines = rows(&screen);
    assert!(lines[0].contains("composite"), "{screen}");
    assert!(lines[0].trim_end().ends_with("PAUSED"), "{screen}");
    assert!(
        lines[0].contains("kraken") || lines[0].contains("kra"),
        "{screen}"
    );
    assert!(lines[1].contains("+1 not shown"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn at_80x24_the_help_overlay_has_every_line_whole_and_nothing_shows_through() {
    let mut app = three_pairs();
    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('?'))), app.now);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    let lines = rows(&screen);
    let top = lines.iter().position(|l| l.contains('╔')).unwrap();
    let bottom = lines.iter().position(|l| l.contains('╚')).unwrap();
    let inside: Vec<String> = lines[top + 1..bottom]
        .iter()
        .map(|l| {
            let from = l.find('║').unwrap() + '║'.len_utf8();
            let to = l.rfind('║').unwrap();
            l[from..to].trim().to_string()
        })
        .collect();
    for expected in [
        "Tab / → / ←  next / previous pair",
        "s / S  next / previous source (composite, each exchange)",
        "q / Esc / Ctrl-C  quit",
        "times are window starts, UTC · stale: nothing new for 2 intervals",
    ] {
        assert!(
            inside.iter().any(|l| l == expected),
            "{expected:?}\n{screen}"
        );
    }
    // Every row inside the box is a help line or blank: no chart digits.
    assert_eq!(inside.len(), candles_tui::ui::HELP.len() + 3, "{screen}");
    assert_eq!(
        inside.iter().filter(|l| l.is_empty()).count(),
        1,
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn a_link_that_is_down_says_why_and_where_the_log_is() {
    let mut app = three_pairs();
    let now = app.now;
    app.hint = Some("is candles-service running? · log: /tmp/logs/tui.log".into());
    app.handle(
        Event::Problem(
            Link::Server,
            "cannot connect: tcp connect error: Connection refused (os error 111)".into(),
        ),
        now,
    );
    app.handle(
        Event::Conn(
            Link::Server,
            LinkState::Reconnecting {
                in_ms: 1_000,
                attempt: 2,
            },
        ),
        now,
    );
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        screen.contains("⚠ server: cannot connect: tcp connect error: Connection refused"),
        "{screen}"
    );
    assert!(screen.contains("log: /tmp/logs/tui.log"), "{screen}");
    // Live again: the reason goes.
    app.handle(Event::Conn(Link::Server, LinkState::Live), now);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        !screen.contains("refused") && !screen.contains("log:"),
        "{screen}"
    );
}

/// ETH candles at 2-decimal precision falling by 1 a window, the last close 2921.04.
fn eth_candles() -> Vec<Candle> {
    let mut candles = walk("ethusdt", 2_950.0, 40, 7);
    let d = |x: f64| Decimal::from_f64_retain(x).unwrap().round_dp(2);
    for (i, c) in candles.iter_mut().enumerate() {
        let open = 2_960.25 - i as f64;
        (c.open, c.close) = (d(open), d(open - 0.75));
        (c.high, c.low) = (d(open + 0.3), d(open - 1.05));
    }
    candles.last_mut().unwrap().close = Decimal::from_str_exact("2921.04").unwrap();
    candles
}

#[test]
fn prices_have_the_pairs_precision_ticks_are_round_and_colours_agree() {
    let app = app_with(&["ethusdt"], vec![eth_candles()]);
    let t = draw(&app, 80, 24);
    let buf = t.backend().buffer();
    let screen = text(buf);
    let lines = rows(&screen);
    let head = lines
        .iter()
        .find(|l| l.contains('▼') || l.contains('▲'))
        .unwrap();
    assert!(head.contains("2921.04  ▼"), "{screen}");
    // The tag on the axis is the same price, not rounded.
    let tag_y = (0..buf.area.height)
        .find(|y| (0..buf.area.width).any(|x| buf[(x, *y)].symbol() == "◀"))
        .unwrap();
    assert!(lines[usize::from(tag_y)].contains("2921.04"), "{screen}");
    // Labels: round steps, written with the pair's two decimals.
    let labels: Vec<f64> = lines
        .iter()
        .filter_map(|l| l.split_once('┤'))
        .map(|(_, label)| label.trim().trim_end_matches('│').trim())
        .map(|label| {
            assert!(
                label.split_once('.').is_some_and(|(_, d)| d.len() == 2),
                "{label}"
            );
            label.parse::<f64>().unwrap()
        })
        .collect();
    assert!(labels.len() >= 2, "{screen}");
    assert!(
        labels.iter().all(|l| (l / 5.0).fract() == 0.0),
        "{labels:?}"
    );
    // The volume scale names its unit.
    assert!(screen.contains("ETH"), "{screen}");
    // The header's price and change, and the tag, are one colour: the range fell.
    let tag_x = (0..buf.area.width)
        .find(|x| buf[(*x, tag_y)].symbol() == "◀")
        .unwrap();
    assert_eq!(buf[(tag_x + 1, tag_y)].bg, DOWN);
    let head_y = lines.iter().position(|l| l.contains('▼')).unwrap() as u16;
    let price_x = (0..buf.area.width)
        .find(|x| buf[(*x, head_y)].symbol() == "2")
        .unwrap();
    assert_eq!(buf[(price_x, head_y)].fg, DOWN);
}

#[test]
fn wider_steps_widen_the_candles_not_only_the_gaps() {
    let mut app = app_with(&["btcusdt"], vec![walk("btcusdt", 97_000.0, 10, 3)]);
    app.step = 5;
    let buf = draw(&app, 80, 24).backend().buffer().clone();
    let row_with_body = (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .filter(|x| matches!(buf[(*x, y)].symbol(), "█" | "▀" | "▄"))
                .count()
        })
        .max()
        .unwrap();
    assert!(row_with_body >= 8, "bodies 4 columns wide:\n{}", text(&buf));
}

#[test]
fn a_live_source_that_trades_nothing_says_so() {
    let mut candles = walk("btcusdt", 97_000.0, 20, 2);
    for c in candles.iter_mut().skip(10) {
        c.trades = 0;
    }
    let app = app_with(&["btcusdt"], vec![candles]);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("stale: no trades for 49s"), "{screen}");
}

#[test]
fn inspect_reads_out_the_candle_under_the_cursor() {
    let mut app = three_pairs();
    let btc = walk("btcusdt", 97_000.0, 80, 1);
    for key in [
        KeyCode::Char('i'),
        KeyCode::Left,
        KeyCode::Char('h'),
        KeyCode::Left,
    ] {
        app.handle(Event::Key(KeyEvent::from(key)), app.now);
    }
    let c = btc[btc.len() - 4];
    assert_eq!(app.inspected(), Some(&c));
    let t = draw(&app, 100, 30);
    let buf = t.backend().buffer();
    let screen = text(buf);
    assert!(
        screen.contains("◆ 2026-11-26T06:46:20Z – 2026-11-26T06:46:25Z  composite  final"),
        "{screen}"
    );
    let ohlc = format!(
        "O {:.2}  H {:.2}  L {:.2}  C {:.2}",
        c.open, c.high, c.low, c.close
    );
    assert!(screen.contains(&ohlc), "{ohlc}\n{screen}");
    assert!(
        screen.contains(&format!("V {} BTC", c.volume.normalize())),
        "{screen}"
    );
    assert!(screen.contains(&format!("trades {}", c.trades)), "{screen}");
    assert!(
        !screen.contains("ETH-USDT ·"),
        "only the inspected pair is shown"
    );
    // The cursor's column is highlighted, four candles from the newest.
    let cursor_cells = (0..buf.area.width)
        .flat_map(|x| (0..buf.area.height).map(move |y| (x, y)))
        .filter(|(x, y)| buf[(*x, *y)].bg == candles_tui::chart::CURSOR)
        .count();
    assert!(cursor_cells >= 10, "{cursor_cells}");
    insta::assert_snapshot!(screen);
    // Esc leaves inspect mode; the dashboard is back.
    app.handle(Event::Key(KeyEvent::from(KeyCode::Esc)), app.now);
    assert!(text(draw(&app, 100, 30).backend().buffer()).contains("ETH-USDT ·"));
}

#[test]
fn inspecting_past_the_left_edge_scrolls_back_through_history() {
    let mut app = three_pairs();
    let btc = walk("btcusdt", 97_000.0, 80, 1);
    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('i'))), app.now);
    for _ in 0..60 {
        app.handle(Event::Key(KeyEvent::from(KeyCode::Left)), app.now);
    }
    assert_eq!(app.inspected(), Some(&btc[19]));
    let t = draw(&app, 100, 30);
    let buf = t.backend().buffer();
    let cursor_cells = (0..buf.area.width)
        .flat_map(|x| (0..buf.area.height).map(move |y| (x, y)))
        .filter(|(x, y)| buf[(*x, *y)].bg == candles_tui::chart::CURSOR)
        .count();
    assert!(
        cursor_cells >= 10,
        "the cursor is on screen:\n{}",
        text(buf)
    );
}

/// Cells of `buf` whose foreground is `colour` and whose symbol is a braille pattern.
fn braille_cells(buf: &Buffer, colour: Color) -> usize {
    buf.content()
        .iter()
        .filter(|c| {
            c.fg == colour
                && c.symbol()
                    .chars()
                    .all(|ch| ('\u{2801}'..='\u{28ff}').contains(&ch))
        })
        .count()
}

#[test]
fn vwap_and_moving_average_are_drawn_over_the_candles_with_a_legend() {
    use candles_tui::overlay::{MA_COLOUR, VWAP_COLOUR};
    let mut btc = walk("btcusdt", 97_000.0, 80, 1);
    for c in &mut btc {
        // Quote volume at the candle's typical price, so the VWAP is among the candles.
        c.quote_volume = (c.volume * (c.high + c.low + c.close) / Decimal::from(3)).round_dp(2);
    }
    let mut app = app_with(&["btcusdt"], vec![btc]);
    let before = draw(&app, 100, 30);
    assert_eq!(braille_cells(before.backend().buffer(), VWAP_COLOUR), 0);
    for key in ['v', 'm', ']'] {
        app.handle(Event::Key(KeyEvent::from(KeyCode::Char(key))), app.now);
    }
    assert_eq!(app.overlays.ma_period, 50);
    let t = draw(&app, 100, 30);
    let buf = t.backend().buffer();
    let screen = text(buf);
    assert!(screen.contains("VWAP 9"), "{screen}");
    assert!(screen.contains("MA50 9"), "{screen}");
    assert!(braille_cells(buf, VWAP_COLOUR) >= 10, "{screen}");
    assert!(braille_cells(buf, MA_COLOUR) >= 10, "{screen}");
    // The legend is in the line's colour.
    let row = screen.lines().position(|l| l.contains("MA50")).unwrap() as u16;
    let legend_x = (0..buf.area.width)
        .find(|x| buf[(*x, row)].symbol() == "M" && buf[(*x + 1, row)].symbol() == "A")
        .unwrap();
    assert_eq!(buf[(legend_x, row)].fg, MA_COLOUR);
    insta::assert_snapshot!(screen);
    // Off again.
    for key in ['v', 'm'] {
        app.handle(Event::Key(KeyEvent::from(KeyCode::Char(key))), app.now);
    }
    assert_eq!(
        braille_cells(draw(&app, 100, 30).backend().buffer(), MA_COLOUR),
        0
    );
}

/// `base` as seen by `exchange`: the same candles, closes moved by `bp` basis points.
fn venue(base: &[Candle], exchange: Exchange, bp: i64) -> Vec<Candle> {
    base.iter()
        .map(|c| {
            let mut v = *c;
            v.source = Source::Exchange(exchange);
            v.close = (c.close * (Decimal::from(10_000 + bp)) / Decimal::from(10_000)).round_dp(2);
            v.high = v.high.max(v.close);
            v.low = v.low.min(v.close);
            v
        })
        .collect()
}

#[test]
fn the_venue_pane_shows_each_exchange_against_the_composite_and_names_the_widest() {
    let btc = walk("btcusdt", 97_000.0, 60, 1);
    let mut series = vec![btc.clone()];
    series.push(venue(&btc, Exchange::Binance, 2));
    series.push(venue(&btc, Exchange::Kraken, -15));
    series.push(venue(&btc, Exchange::Coinbase, 5));
    let mut app = app_with(&["btcusdt"], series);
    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('d'))), app.now);
    let t = draw(&app, 100, 30);
    let buf = t.backend().buffer();
    let screen = text(buf);
    assert!(screen.contains("widest: kraken -15.0bp at"), "{screen}");
    for name in ["binance", "kraken", "coinbase"] {
        assert!(
            screen.lines().any(|l| l.contains(&format!("│{name} "))),
            "{name}\n{screen}"
        );
    }
    let kraken_row = screen.lines().position(|l| l.contains("│kraken ")).unwrap() as u16;
    let binance_row = screen
        .lines()
        .position(|l| l.contains("│binance "))
        .unwrap() as u16;
    // Bars under the candles: kraken (below the composite) red and full, binance green.
    let full = (0..buf.area.width)
        .filter(|x| buf[(*x, kraken_row)].symbol() == "█")
        .count();
    assert!(full >= 20, "{screen}");
    assert!(
        (0..buf.area.width)
            .any(|x| buf[(x, kraken_row)].symbol() == "█" && buf[(x, kraken_row)].fg == DOWN)
    );
    assert!(
        (0..buf.area.width)
            .any(|x| buf[(x, binance_row)].fg == UP && buf[(x, binance_row)].symbol() != " ")
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn at_80x24_every_key_works() {
    let btc = walk("btcusdt", 97_000.0, 80, 1);
    let mut series = vec![
        btc.clone(),
        walk("ethusdt", 3_400.0, 80, 2),
        walk("solusdt", 240.0, 80, 3),
    ];
    series.push(venue(&btc, Exchange::Binance, 2));
    series.push(venue(&btc, Exchange::Kraken, -15));
    let mut app = app_with(&["btcusdt", "ethusdt", "solusdt"], series);
    let key = |app: &mut App, c: char| {
        let now = app.now;
        app.handle(Event::Key(KeyEvent::from(KeyCode::Char(c))), now);
    };
    for c in ['v', 'm', 'd'] {
        key(&mut app, c);
    }
    let t = draw(&app, 80, 24);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("+2 not shown"), "{screen}");
    assert!(screen.contains("widest: kraken -15.0bp"), "{screen}");
    assert!(
        screen.contains("VWAP") && screen.contains("MA20"),
        "{screen}"
    );
    assert!(rows(&screen)[0].contains("composite"), "{screen}");
    insta::assert_snapshot!(screen);
    // Every key in the help changes something or is drawn, at 80×24 too.
    for c in [
        '[', ']', 'd', 'z', 'i', 'p', '+', '-', 's', 'S', '2', '>', '<',
    ] {
        key(&mut app, c);
        let screen = text(draw(&app, 80, 24).backend().buffer());
        assert!(!screen.contains("too small"), "{c}\n{screen}");
    }
    assert_eq!(app.overlays.ma_period, 20);
    key(&mut app, '?');
    let screen = text(draw(&app, 80, 24).backend().buffer());
    for (k, what) in candles_tui::ui::HELP {
        assert!(screen.contains(&format!("{k}  {what}")), "{k}\n{screen}");
    }
}

#[test]
fn a_mouse_click_on_a_candle_inspects_it() {
    let mut app = three_pairs();
    let now = app.now;
    let before = draw(&app, 100, 30);
    let screen = text(before.backend().buffer());
    // A click in the second panel's candles, ten columns in.
    let eth_row = rows(&screen)
        .iter()
        .position(|l| l.contains("2 ETH-USDT · composite"))
        .unwrap() as u16;
    let (x, y) = (11, eth_row + 6);
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tx.send(Event::Click(x, y)).await.unwrap();
        drop(tx);
        candles_tui::event::run(&mut terminal, &mut app, &mut rx, move || now)
            .await
            .unwrap();
    });
    let buf = terminal.backend().buffer();
    let screen = text(buf);
    assert_eq!(app.selected, 1, "the clicked panel's pair");
    let eth = walk("ethusdt", 3_400.0, 80, 2);
    let inspected = app.inspected().unwrap();
    assert!(inspected.start < eth[eth.len() - 10].start, "an old candle");
    assert!(screen.contains("◆ 2026-11-26T06:4"), "{screen}");
    // The highlighted candle is the one in the clicked column.
    let highlighted: Vec<u16> = (0..buf.area.width)
        .filter(|x| buf[(*x, 20)].bg == candles_tui::chart::CURSOR)
        .collect();
    assert!(
        highlighted.contains(&x) || highlighted.contains(&(x - 1)),
        "{highlighted:?}\n{screen}"
    );
    // Outside the candles (the title bar) a click does nothing.
    let selected = app.selected;
    app.inspect = None;
    let (w, h) = app.screen;
    assert_eq!(
        candles_tui::ui::candle_at(&app, ratatui::layout::Rect::new(0, 0, w, h), 5, 0),
        None
    );
    assert_eq!(app.selected, selected);
}

/// A verdict on `exchange`'s `pair` candle at 06:40 + `minute`, with the given tally.
fn verdict(
    pair: &str,
    exchange: Exchange,
    minute: i64,
    mismatch: bool,
    tally: (u64, u64, u64),
) -> candles_tui::verification::Verification {
    use candles_tui::verification::{Diff, Outcome, Tally, Verification};
    let (matched, mismatched, partial) = tally;
    let diffs = [("close", "97000.5", "97000.25"), ("trades", "41", "42")]
        .into_iter()
        .filter(|_| mismatch)
        .map(|(field, ours, theirs)| Diff {
            field: field.into(),
            ours: ours.into(),
            theirs: theirs.into(),
        })
        .collect();
    Verification {
        pair: Pair::parse(pair).unwrap(),
        exchange,
        interval: Interval::seconds(60),
        start: Micros(T0 + minute * 60_000_000),
        outcome: if mismatch {
            Outcome::Mismatch
        } else {
            Outcome::Match
        },
        diffs,
        reason: String::new(),
        tally: Tally {
            matched,
            mismatched,
            unavailable: 0,
            partial,
        },
        checked_at: Micros(T0 + (minute + 1) * 60_000_000),
    }
}

#[test]
fn at_80x24_each_panel_shows_its_verification_badge_and_partial_candles_are_dim() {
    let mut btc = walk("btcusdt", 97_000.0, 80, 1);
    btc[70].partial = true;
    let mut app = app_with(
        &["btcusdt", "ethusdt", "solusdt"],
        vec![
            btc,
            walk("ethusdt", 3_400.0, 80, 2),
            walk("solusdt", 240.0, 80, 3),
        ],
    );
    let now = app.now;
    for v in [
        verdict("btcusdt", Exchange::Binance, 1, false, (58, 0, 0)),
        verdict("btcusdt", Exchange::Kraken, 3, true, (56, 1, 1)),
        verdict("ethusdt", Exchange::Binance, 1, false, (12, 0, 0)),
    ] {
        app.handle(Event::Verified(v), now);
    }
    let t = draw(&app, 80, 24);
    let screen = text(t.backend().buffer());
    let lines = rows(&screen);
    // The composite: each exchange's tally and the newest mismatch, on the panel's bottom border.
    let btc_bottom = lines
        .iter()
        .find(|l| l.contains("binance ✓58/58"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(
        btc_bottom.contains("kraken ✓56/58 1p") && btc_bottom.contains("✗ kraken 06:43 close"),
        "{screen}"
    );
    assert!(screen.contains("binance ✓12/12"), "{screen}");
    assert!(
        screen.contains("◌ 1 partial"),
        "the BTC header counts it\n{screen}"
    );
    // Kraken's own: its tally and the mismatch in red, naming the field and both values.
    for _ in 0..2 {
        app.handle(Event::Key(KeyEvent::from(KeyCode::Char('s'))), now);
    }
    let t = draw(&app, 80, 24);
    let buf = t.backend().buffer();
    let screen = text(buf);
    let y = rows(&screen)
        .iter()
        .position(|l| l.contains("✗ 06:43 close ours 97000.5 theirs 97000.25 +1"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(
        rows(&screen)[y].contains("✓ 56/58 verified · 1 partial"),
        "{screen}"
    );
    let x = (0..80)
        .find(|x| buf[(*x, y as u16)].symbol() == "✗")
        .unwrap();
    assert_eq!(buf[(x, y as u16)].fg, Color::Red);
    assert!(
        !screen.contains("✓12/12"),
        "ETH's kraken has no verdicts: no badge\n{screen}"
    );
}

#[test]
fn a_partial_candle_is_drawn_dim_and_its_readout_says_partial() {
    use ratatui::style::Modifier;
    let mut btc = walk("btcusdt", 97_000.0, 20, 1);
    btc[18].partial = true;
    let mut app = app_with(&["btcusdt"], vec![btc]);
    let t = draw(&app, 80, 24);
    let buf = t.backend().buffer();
    let dim_bodies = (0..80u16)
        .flat_map(|x| (0..24u16).map(move |y| (x, y)))
        .filter(|(x, y)| {
            let cell = &buf[(*x, *y)];
            cell.modifier.contains(Modifier::DIM) && [UP, DOWN].contains(&cell.fg)
        })
        .count();
    assert!(dim_bodies > 0, "the partial candle is dim");
    let now = app.now;
    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('i'))), now);
    app.handle(Event::Key(KeyEvent::from(KeyCode::Left)), now);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("final · partial"), "{screen}");
}

#[test]
fn inspecting_a_verified_minute_reads_out_its_verdict() {
    let minutes: Vec<Candle> = walk("btcusdt", 97_000.0, 10, 4)
        .into_iter()
        .enumerate()
        .map(|(i, c)| Candle {
            source: Source::Exchange(Exchange::Kraken),
            interval: Interval::seconds(60),
            start: Micros(T0 + i as i64 * 60_000_000),
            is_final: true,
            ..c
        })
        .collect();
    let mut app = app_with(&["btcusdt"], vec![minutes]);
    let now = app.now;
    app.handle(
        Event::Verified(verdict("btcusdt", Exchange::Kraken, 8, true, (7, 1, 0))),
        now,
    );
    app.handle(
        Event::Verified(verdict("btcusdt", Exchange::Kraken, 9, false, (8, 1, 0))),
        now,
    );
    for key in [
        KeyCode::Char('s'),
        KeyCode::Char('s'),
        KeyCode::Char('i'),
        KeyCode::Left,
    ] {
        app.handle(Event::Key(KeyEvent::from(key)), now);
    }
    let t = draw(&app, 80, 24);
    let buf = t.backend().buffer();
    let screen = text(buf);
    let y = rows(&screen)
        .iter()
        .position(|l| l.contains("✗ kraken's differs: close ours 97000.5 theirs 97000.25"))
        .unwrap_or_else(|| panic!("{screen}"));
    let x = (0..80)
        .find(|x| buf[(*x, y as u16)].symbol() == "✗")
        .unwrap();
    assert_eq!(buf[(x, y as u16)].fg, Color::Red);
    app.handle(Event::Key(KeyEvent::from(KeyCode::Right)), now);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        screen.contains("✓ equal to kraken's own candle"),
        "{screen}"
    );
}
