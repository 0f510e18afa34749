//! The per-trade path allocates nothing after warm-up.
//!
//! A counting global allocator (per thread, so the test harness's own threads do not count)
//! wraps the system allocator. After every series of 3 pairs x 3 exchanges has opened windows,
//! applying trades, advancing the clock (finalizing windows, flat candles included, into a
//! reused `Vec`) and taking live updates must not allocate at all, in both clock modes, with one
//! interval and with the eight default intervals (`1s,5s,1m,5m,15m,1h,4h,1d`).
#![allow(unsafe_code)] // A `GlobalAlloc` impl is unsafe by definition; this one only counts and forwards.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure with its message.

use candles_core::engine::{ClockMode, Engine, EngineConfig, Outcome};
use candles_core::time::Duration;
use candles_core::{Candle, Decimal, Exchange, Interval, Intervals, Micros, Pair, Side, Trade};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator, which allocated `ptr`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator, which allocated `ptr`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Trades of 3 pairs x 3 exchanges in arrival order: ~2,000 per second of trade time, each
/// arriving up to 1 s late, prices and quantities with varied decimals, and a 12 s silence in the
/// middle so that flat candles are finalized too.
fn trades(count: usize) -> Vec<Trade> {
    let pairs = ["BTC-USDT", "ETH-USDT", "SOL-USDT"].map(|p| Pair::parse(p).unwrap());
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut time = 1_700_000_000_000_000_i64;
    let mut ids = [0_u64; 9];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        time += next(1_000) as i64;
        if i == count / 2 {
            time += 12_000_000;
        }
        let (p, e) = (next(3) as usize, next(3) as usize);
        ids[p * 3 + e] += 1;
        let price = Decimal::new(1_000_000 + next(10_000) as i64, 2 + next(3) as u32);
        let quantity = Decimal::new(1 + next(100_000_000) as i64, next(9) as u32);
        let side = [Side::Buy, Side::Sell, Side::Unknown][next(3) as usize];
        let received = Micros(time + next(1_000_000) as i64);
        out.push(Trade {
            exchange: Exchange::ALL[e],
            pair: pairs[p],
            id: ids[p * 3 + e],
            price,
            quantity,
            side,
            time: Micros(time),
            received,
            complete_since: None,
            after_unfilled_gap: false,
        });
    }
    out.sort_by_key(|t| t.received);
    out
}

/// Feeds `trades`, advancing the clock every 100 ms of arrival time and taking live updates every
/// 250 ms, into reused buffers; returns how many final candles came out.
fn feed(
    engine: &mut Engine,
    trades: &[Trade],
    finals: &mut Vec<Candle>,
    updates: &mut Vec<Candle>,
) -> usize {
    let mut emitted = 0;
    let (mut next_tick, mut next_update) = (i64::MIN, i64::MIN);
    for t in trades {
        assert_eq!(engine.apply(t), Outcome::Applied);
        if t.received.0 >= next_tick {
            engine.advance(t.received, finals);
            emitted += finals.len();
            finals.clear();
            next_tick = t.received.0 + 100_000;
        }
        if t.received.0 >= next_update {
            engine.take_updates(updates);
            updates.clear();
            next_update = t.received.0 + 250_000;
        }
    }
    emitted
}

#[test]
fn applying_and_finalizing_allocates_nothing_after_warm_up() {
    let trades = trades(60_000);
    // Warm-up: the first 10,000 trades (~5 s of trade time, a full window and more) open every
    // series and grow every buffer to its working size.
    let (warm, measured) = trades.split_at(10_000);
    let sets = [
        Intervals::one(Interval::seconds(5)),
        Intervals::default_set(),
    ];
    for (clock, intervals) in [ClockMode::Wall, ClockMode::Event]
        .into_iter()
        .flat_map(|clock| sets.map(|set| (clock, set)))
    {
        let config = EngineConfig {
            interval: Interval::seconds(5),
            grace: Duration::from_millis(1_500),
            clock,
        };
        let mut engine = Engine::with_intervals(config, intervals);
        let mut finals = Vec::with_capacity(1_024);
        let mut updates = Vec::with_capacity(1_024);
        feed(&mut engine, warm, &mut finals, &mut updates);
        let before = allocations();
        let emitted = feed(&mut engine, measured, &mut finals, &mut updates);
        let allocated = allocations() - before;
        assert!(
            emitted >= 12 * 4,
            "{clock:?} {intervals}: the measured part finalized windows, flat ones included: {emitted}"
        );
        assert_eq!(
            allocated,
            0,
            "{clock:?} {intervals}: allocations while applying {} trades",
            measured.len()
        );
        // Sanity check of the counter itself.
        let before = allocations();
        drop(std::hint::black_box(vec![0_u8; 16]));
        assert_eq!(allocations() - before, 1);
    }
}
