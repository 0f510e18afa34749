//! Unit tests of [`super`] (kept apart so `app.rs` reads as the code it is).

use super::*;
use candles_core::Decimal;

fn key(c: char) -> Event {
    Event::Key(KeyEvent::from(KeyCode::Char(c)))
}

fn candle(pair: Pair, start: i64, close: i64, is_final: bool) -> Candle {
    let mut c = Candle::flat(
        pair,
        Source::Composite,
        Interval::seconds(5),
        Micros(start * 5_000_000),
        Decimal::from(close),
    );
    c.is_final = is_final;
    c
}

#[test]
fn keys_switch_pair_source_zoom_and_step() {
    let pairs = Pair::defaults();
    let mut app = App::new(pairs.clone(), Source::Composite, "test");
    app.handle(Event::Key(KeyEvent::from(KeyCode::Tab)), Micros(0));
    assert_eq!(app.selected, 1);
    app.handle(Event::Key(KeyEvent::from(KeyCode::Left)), Micros(0));
    app.handle(Event::Key(KeyEvent::from(KeyCode::Left)), Micros(0));
    assert_eq!(app.selected, 2);
    app.handle(key('1'), Micros(0));
    assert_eq!(app.selected, 0);
    app.handle(key('9'), Micros(0));
    assert_eq!(app.selected, 0, "no ninth pair");
    for expected in ["binance", "kraken", "coinbase", "composite"] {
        app.handle(key('s'), Micros(0));
        assert_eq!(app.source.as_str(), expected);
    }
    app.handle(Event::Key(KeyEvent::from(KeyCode::Enter)), Micros(0));
    assert!(app.zoomed);
    app.handle(key('z'), Micros(0));
    assert!(!app.zoomed);
    for _ in 0..20 {
        app.handle(key('+'), Micros(0));
    }
    assert_eq!(app.step, MAX_STEP);
    for _ in 0..20 {
        app.handle(key('-'), Micros(0));
    }
    assert_eq!(app.step, MIN_STEP);
    app.handle(key('?'), Micros(0));
    assert!(app.help);
    assert_eq!(
        app.handle(Event::Key(KeyEvent::from(KeyCode::Esc)), Micros(0)),
        Action::None
    );
    assert!(!app.help);
    assert_eq!(app.handle(key('q'), Micros(0)), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle(Event::Key(ctrl_c), Micros(0)), Action::Quit);
}

#[test]
fn refill_does_not_duplicate_and_forming_never_overwrites_final() {
    let pair = Pair::defaults()[0];
    let mut app = App::new(vec![pair], Source::Composite, "test");
    for i in 0..5 {
        app.handle(Event::Candle(candle(pair, i, 100 + i, true)), Micros(0));
    }
    app.handle(Event::Candle(candle(pair, 5, 200, false)), Micros(0));
    // A reconnect refills history: the same finals again, plus a stale forming one.
    for i in 0..5 {
        app.handle(Event::Candle(candle(pair, i, 100 + i, true)), Micros(0));
    }
    app.handle(Event::Candle(candle(pair, 4, 999, false)), Micros(0));
    let s = app.series_for(pair).unwrap();
    assert_eq!(s.candles.len(), 6);
    assert_eq!(s.candles[&Micros(20_000_000)].close, Decimal::from(104));
    app.handle(Event::Candle(candle(pair, 5, 201, true)), Micros(0));
    assert_eq!(
        app.series_for(pair).unwrap().candles[&Micros(25_000_000)].close,
        Decimal::from(201)
    );
}

#[test]
fn pause_freezes_the_view_but_keeps_collecting() {
    let pair = Pair::defaults()[0];
    let mut app = App::new(vec![pair], Source::Composite, "test");
    app.handle(Event::Candle(candle(pair, 0, 1, true)), Micros(0));
    app.handle(key('p'), Micros(0));
    app.handle(Event::Candle(candle(pair, 1, 2, true)), Micros(0));
    assert_eq!(app.series_for(pair).unwrap().candles.len(), 1);
    app.handle(key('p'), Micros(0));
    assert_eq!(app.series_for(pair).unwrap().candles.len(), 2);
}

#[test]
fn stale_after_two_intervals_without_candles() {
    let pair = Pair::defaults()[0];
    let mut app = App::new(vec![pair], Source::Composite, "test");
    app.handle(Event::Conn(Link::Server, LinkState::Live), Micros(0));
    app.handle(Event::Candle(candle(pair, 0, 1, true)), Micros(1_000_000));
    assert_eq!(app.state_for(pair).unwrap().0, LinkState::Live);
    app.handle(Event::Tick, Micros(11_000_000));
    assert_eq!(app.state_for(pair).unwrap().0, LinkState::Live);
    app.handle(Event::Tick, Micros(11_000_001));
    assert_eq!(app.state_for(pair).unwrap().0, LinkState::Stale);
}

#[test]
fn a_live_source_without_trades_is_stale_although_flat_candles_arrive() {
    let pair = Pair::defaults()[0];
    let mut app = App::new(vec![pair], Source::Composite, "test");
    app.handle(Event::Conn(Link::Server, LinkState::Live), Micros(0));
    let mut traded = candle(pair, 0, 1, true);
    traded.trades = 3;
    app.handle(Event::Candle(traded), Micros(5_000_000));
    // Flat (no-trade) candles keep arriving every interval, so nothing is late...
    for i in 1..=4 {
        let now = Micros((i + 1) * 5_000_000);
        app.handle(Event::Candle(candle(pair, i, 1, true)), now);
        assert_eq!(app.quiet_for(pair).is_some(), i > 3, "window {i}");
    }
    // ...but the last trade was in the window that ended at 5 s: 20 s ago.
    assert_eq!(app.quiet_for(pair), Some(20_000_000));
    assert_eq!(app.state_for(pair).unwrap().0, LinkState::Stale);
    let mut again = candle(pair, 5, 2, false);
    again.trades = 1;
    app.handle(Event::Candle(again), Micros(26_000_000));
    assert_eq!(app.state_for(pair).unwrap().0, LinkState::Live);
}

#[test]
fn inspect_moves_a_cursor_over_the_candles_and_esc_leaves() {
    let pair = Pair::defaults()[0];
    let mut app = App::new(vec![pair], Source::Composite, "test");
    app.handle(key('i'), Micros(0));
    assert_eq!(app.inspect, None, "nothing to inspect yet");
    for i in 0..5 {
        app.handle(Event::Candle(candle(pair, i, 100 + i, true)), Micros(0));
    }
    app.handle(key('i'), Micros(0));
    assert_eq!(app.inspected().unwrap().close, Decimal::from(104));
    for k in [KeyCode::Left, KeyCode::Char('h'), KeyCode::Left] {
        app.handle(Event::Key(KeyEvent::from(k)), Micros(0));
    }
    assert_eq!(app.inspected().unwrap().close, Decimal::from(101));
    assert_eq!(app.selected, 0, "arrows move the cursor, not the pair");
    app.handle(key('l'), Micros(0));
    assert_eq!(app.inspected().unwrap().close, Decimal::from(102));
    for _ in 0..9 {
        app.handle(Event::Key(KeyEvent::from(KeyCode::Left)), Micros(0));
    }
    assert_eq!(
        app.inspected().unwrap().close,
        Decimal::from(100),
        "stops at the oldest"
    );
    // New candles keep arriving; the cursor stays on its candle.
    app.handle(Event::Candle(candle(pair, 5, 105, false)), Micros(0));
    assert_eq!(app.inspected().unwrap().close, Decimal::from(100));
    assert_eq!(
        app.handle(Event::Key(KeyEvent::from(KeyCode::Esc)), Micros(0)),
        Action::None
    );
    assert_eq!(app.inspect, None);
}

#[test]
fn overlay_and_venue_keys_toggle_and_brackets_step_the_period() {
    let mut app = App::new(Pair::defaults(), Source::Composite, "test");
    for c in ['v', 'm', 'd'] {
        app.handle(key(c), Micros(0));
    }
    assert!(app.overlays.vwap && app.overlays.ma && app.venues);
    app.handle(key('['), Micros(0));
    assert_eq!(app.overlays.ma_period, 10);
    app.handle(key('m'), Micros(0));
    app.handle(key(']'), Micros(0));
    assert_eq!(app.overlays.ma_period, 20);
    assert!(app.overlays.ma, "changing the period shows the average");
    for c in ['v', 'd'] {
        app.handle(key(c), Micros(0));
    }
    assert!(!app.overlays.vwap && !app.venues);
}

#[test]
fn intervals_step_through_the_served_list_and_stop_at_either_end() {
    let (s5, m1, h1) = (
        Interval::seconds(5),
        Interval::seconds(60),
        Interval::seconds(3_600),
    );
    let served = [s5, m1, h1];
    assert_eq!(next_interval(&served, Some(s5), 1), Some(m1));
    assert_eq!(next_interval(&served, Some(h1), 1), Some(h1));
    assert_eq!(next_interval(&served, Some(m1), -1), Some(s5));
    assert_eq!(next_interval(&served, Some(s5), -1), Some(s5));
    assert_eq!(
        next_interval(&served, Some(Interval::seconds(7)), 1),
        Some(s5)
    );
    assert_eq!(next_interval(&[], Some(s5), 1), None);
}

#[test]
fn switching_interval_empties_the_chart_and_drops_old_candles_in_flight() {
    let pair = Pair::defaults()[0];
    let mut app = App::new(vec![pair], Source::Composite, "test");
    let (s5, m1) = (Interval::seconds(5), Interval::seconds(60));
    app.handle(Event::Intervals(vec![s5, m1], s5), Micros(0));
    assert_eq!(app.interval, Some(s5), "the server's default");
    app.handle(Event::Candle(candle(pair, 0, 1, true)), Micros(0));
    app.handle(key('>'), Micros(0));
    assert_eq!(app.interval, Some(m1));
    assert!(app.series_for(pair).is_none(), "no 5s candle left");
    app.handle(Event::Candle(candle(pair, 1, 2, true)), Micros(0));
    assert!(
        app.series_for(pair).is_none(),
        "a 5s candle in flight is dropped"
    );
    let mut minute = candle(pair, 0, 3, true);
    minute.interval = m1;
    app.handle(Event::Candle(minute), Micros(0));
    assert_eq!(app.series_for(pair).unwrap().interval(), Some(m1));
    app.handle(key('>'), Micros(0));
    assert_eq!(app.series_for(pair).unwrap().candles.len(), 1, "at the end");
    app.handle(key('<'), Micros(0));
    assert_eq!(app.interval, Some(s5));
    app.embedded = true;
    app.handle(key('>'), Micros(1));
    assert_eq!(app.interval, Some(m1), "embedded switches like a server");
    assert_eq!(app.interval_switches, 3);
}

#[test]
fn a_refused_interval_is_kept_until_another_is_chosen() {
    let mut app = App::new(Pair::defaults(), Source::Composite, "test");
    app.interval = Some(Interval::seconds(7));
    app.handle(
        Event::Intervals(vec![Interval::seconds(5)], Interval::seconds(5)),
        Micros(0),
    );
    assert_eq!(
        app.interval,
        Some(Interval::seconds(7)),
        "asked for, not replaced"
    );
    app.handle(Event::Refused("7s is not built".into()), Micros(0));
    assert!(app.refused.is_some());
    app.handle(key('>'), Micros(0));
    assert_eq!(
        (app.interval, app.refused.clone()),
        (Some(Interval::seconds(5)), None)
    );
}

#[test]
fn bad_data_is_counted_and_fatal_quits() {
    let mut app = App::new(Pair::defaults(), Source::Composite, "test");
    app.handle(Event::BadData("open: invalid".into()), Micros(0));
    assert_eq!(app.bad_data, 1);
    assert_eq!(
        app.handle(Event::Fatal("unknown pair".into()), Micros(0)),
        Action::Quit
    );
}
