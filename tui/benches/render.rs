//! Rendering cost: one full dashboard frame with 3 pairs × 200 candles into a 200×60
//! TestBackend; and the same with the VWAP and moving-average overlays and the venue pane on
//! (each exchange's 200 candles too).
//!
//! Run: `cargo bench -p candles-tui --bench render`.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use candles_core::{Candle, Decimal, Exchange, Interval, Micros, Pair, Source};
use candles_tui::app::{App, Event, Link, LinkState};
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::hint::black_box;

fn series(pair: &str, base: f64, n: usize, seed: u64) -> Vec<Candle> {
    let pair = Pair::parse(pair).expect("pair");
    let mut state = seed;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as f64) / f64::from(1u32 << 31)
    };
    let dec = |x: f64| Decimal::from_f64_retain(x).unwrap_or_default().round_dp(2);
    let mut price = base;
    (0..n)
        .map(|i| {
            let open = price;
            let close = open * (1.0 + (rnd() - 0.5) * 0.004);
            price = close;
            Candle {
                pair,
                source: Source::Composite,
                interval: Interval::seconds(5),
                start: Micros(1_795_675_200_000_000 + i as i64 * 5_000_000),
                open: dec(open),
                high: dec(open.max(close) * (1.0 + rnd() * 0.0015)),
                low: dec(open.min(close) * (1.0 - rnd() * 0.0015)),
                close: dec(close),
                volume: dec(rnd() * 3.0),
                quote_volume: dec(rnd() * 3.0 * base),
                buy_volume: Decimal::ONE,
                sell_volume: Decimal::ONE,
                trades: 10,
                is_final: i + 1 < n,
                partial: false,
            }
        })
        .collect()
}

/// 3 pairs × 200 composite candles (and, with `venues`, each exchange's 200 too), live.
fn dashboard(venues: bool) -> App {
    let pairs = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];
    let mut app = App::new(
        pairs
            .iter()
            .map(|p| Pair::parse(p).expect("pair"))
            .collect(),
        Source::Composite,
        "bench",
    );
    let now = Micros(1_795_675_200_000_000 + 200 * 5_000_000);
    app.handle(Event::Conn(Link::Server, LinkState::Live), now);
    for (i, (p, base)) in pairs.iter().zip([97_000.0, 3_400.0, 240.0]).enumerate() {
        for candle in series(p, base, 200, i as u64 + 1) {
            app.handle(Event::Candle(candle), now);
            for (k, e) in Exchange::ALL.iter().enumerate().filter(|_| venues) {
                let mut v = candle;
                v.source = Source::Exchange(*e);
                v.close += Decimal::new(k as i64 - 1, 2);
                v.high = v.high.max(v.close);
                v.low = v.low.min(v.close);
                app.handle(Event::Candle(v), now);
            }
        }
    }
    // step 1: every one of the 200 candles per pair is on screen.
    app.step = 1;
    if venues {
        app.overlays.vwap = true;
        app.overlays.ma = true;
        app.venues = true;
    }
    app
}

fn bench_render(c: &mut Criterion) {
    let app = dashboard(false);
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    c.bench_function("frame_3_pairs_x_200_candles_200x60", |b| {
        b.iter(|| {
            terminal
                .draw(|f| candles_tui::ui::render(black_box(&app), f))
                .expect("draw");
        })
    });
    let app = dashboard(true);
    c.bench_function("frame_3_pairs_x_200_candles_200x60_overlays_venues", |b| {
        b.iter(|| {
            terminal
                .draw(|f| candles_tui::ui::render(black_box(&app), f))
                .expect("draw");
        })
    });
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
