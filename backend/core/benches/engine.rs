//! Throughput of the candle engine on one core: trades per second for 3 pairs x 3 exchanges.
//!
//! The trades are generated up front (so parsing is not measured): realistic prices and
//! quantities with each exchange's usual number of decimals, trade times advancing with
//! small random gaps, each exchange with its own network delay so trades arrive out of
//! trade-time order, and the clock advanced as time passes (every 100 ms of arrival time),
//! exactly as the service drives the engine. Interval 5 s, grace 1.5 s; and the eight default
//! intervals (`1s,5s,1m,5m,15m,1h,4h,1d`) built by one engine (`*_8intervals`).
//!
//! Two measurements of the same work: `engine/*` is criterion's usual wall-clock time;
//! `engine_cpu/*` counts only the time the benchmark thread was on a CPU (Linux
//! `/proc/thread-self/schedstat`), which is the per-core figure on a shared, busy machine where
//! the thread also waits for a CPU. Both report trades per second ("elem/s").
//!
//! Run: `cargo bench -p candles-core --bench engine` (only the eight intervals:
//! `cargo bench -p candles-core --bench engine -- 8intervals`).
#![allow(missing_docs)] // `criterion_group!` generates an undocumented public function.

use candles_core::engine::{ClockMode, Engine, EngineConfig};
use candles_core::time::Duration;
use candles_core::{Candle, Decimal, Exchange, Interval, Intervals, Micros, Pair, Side, Trade};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

/// A tiny deterministic generator (xorshift64*), so every run measures the same trades.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pre-generated trades in arrival order.
fn trades(count: usize) -> Vec<Trade> {
    let pairs = [
        // (pair, price mantissa, price scale): 43381.54, 2291.37, 98.765
        (Pair::parse("BTC-USDT").expect("pair"), 4_338_154_i64, 2_u32),
        (Pair::parse("ETH-USDT").expect("pair"), 229_137_i64, 2),
        (Pair::parse("SOL-USDT").expect("pair"), 98_765_i64, 3),
    ];
    // Per exchange: quantity scale (Binance 8, Kraken 8, Coinbase 8 with fewer significant digits)
    // and network delay range in microseconds.
    let exchanges = [
        (Exchange::Binance, 8_u32, 5_000_u64),
        (Exchange::Kraken, 8, 40_000),
        (Exchange::Coinbase, 8, 20_000),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut prices: Vec<i64> = pairs.iter().map(|p| p.1).collect();
    let mut ids = [[1_000_000_u64; 3]; 3];
    let mut time = 1_700_000_000_000_000_i64; // 2023-11-14, in microseconds
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        // ~20,000 trades per second over all 9 series.
        time += rng.below(100) as i64;
        let p = rng.below(3) as usize;
        let e = rng.below(3) as usize;
        // A random walk of the price, a few ticks at a time.
        prices[p] = (prices[p] + rng.below(7) as i64 - 3).max(1);
        let (pair, _, price_scale) = pairs[p];
        let (exchange, qty_scale, max_delay) = exchanges[e];
        let price = Decimal::new(prices[p], price_scale);
        // Quantities from 0.00000001 to ~5, some round (Coinbase-like), some with all 8 digits.
        let raw = 1 + rng.below(500_000_000);
        let raw = if e == 2 {
            raw - raw % 10_000 + 10_000
        } else {
            raw
        };
        let quantity = Decimal::new(raw as i64, qty_scale);
        ids[p][e] += 1;
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let received = time + rng.below(max_delay) as i64;
        out.push(Trade {
            exchange,
            pair,
            id: ids[p][e],
            price,
            quantity,
            side,
            time: Micros(time),
            received: Micros(received),
            complete_since: None,
            after_unfilled_gap: false,
        });
    }
    out.sort_by_key(|t| t.received);
    out
}

/// Feeds every trade, advancing the clock every 100 ms of arrival time; returns the number of
/// final candles.
fn run(engine: &mut Engine, trades: &[Trade], out: &mut Vec<Candle>) -> usize {
    let mut finals = 0;
    let mut next_tick = trades.first().map_or(0, |t| t.received.0);
    for trade in trades {
        black_box(engine.apply(trade));
        if trade.received.0 >= next_tick {
            engine.advance(trade.received, out);
            finals += out.len();
            out.clear();
            next_tick = trade.received.0 + 100_000;
        }
    }
    engine.flush(out);
    finals += out.len();
    out.clear();
    finals
}

/// Time this thread has spent on a CPU, from Linux's scheduler statistics; `None` elsewhere.
fn thread_cpu_time() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// The measured set-ups: 5 s candles, 1.5 s grace, under each clock; and the eight default
/// intervals (`1s,5s,1m,5m,15m,1h,4h,1d`) in one engine on the wall clock.
fn configs() -> [(&'static str, EngineConfig, Intervals); 3] {
    let config = |clock| EngineConfig {
        interval: Interval::seconds(5),
        grace: Duration::from_millis(1_500),
        clock,
    };
    let five = Intervals::one(Interval::seconds(5));
    [
        ("wall_3pairs_3exchanges_5s", config(ClockMode::Wall), five),
        ("event_3pairs_3exchanges_5s", config(ClockMode::Event), five),
        (
            "wall_3pairs_3exchanges_8intervals",
            config(ClockMode::Wall),
            Intervals::default_set(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let trades = trades(N);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    for (name, config, intervals) in configs() {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let engine = Engine::with_intervals(config, intervals);
                    (engine, Vec::with_capacity(64))
                },
                |(engine, out)| black_box(run(engine, &trades, out)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    if thread_cpu_time().is_none() {
        eprintln!("engine_cpu: /proc/thread-self/schedstat is not readable here; skipped");
        return;
    }
    let mut group = c.benchmark_group("engine_cpu");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    for (name, config, intervals) in configs() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut on_cpu = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let mut engine = Engine::with_intervals(config, intervals);
                    let mut out = Vec::with_capacity(64);
                    let start = thread_cpu_time().unwrap_or_default();
                    black_box(run(&mut engine, &trades, &mut out));
                    on_cpu += thread_cpu_time().unwrap_or_default().saturating_sub(start);
                }
                on_cpu
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
