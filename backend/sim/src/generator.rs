//! The synthetic trade source: a seeded random walk per pair ([`Walk`]), turned into trades at a
//! steady rate by the [`Generator`] and published to the [`Market`](crate::market::Market).

use crate::server::Shared;
use candles_core::{Decimal, Micros, Pair, Side, Trade};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::ToPrimitive;
use std::collections::HashMap;
use std::sync::Arc;

/// One pair's random walk.
struct Walker {
    pair: Pair,
    price: Decimal,
    /// Price tick (`0.01` for the USD-quoted majors).
    tick: Decimal,
    /// Decimals of the lot size (BTC trades in 0.00001).
    lot_dp: u32,
    /// The walk stays within [floor, ceiling] by reflecting.
    floor: Decimal,
    ceiling: Decimal,
    next_id: u64,
    last_time: Micros,
}

/// One taker order: its pair and the fills it produced (price, quantity, taker side).
pub(crate) struct Order {
    /// Index into the walk's pairs.
    pub pair: Pair,
    /// The fills; more than one is a burst (one order sweeping several price levels).
    pub fills: Vec<(Decimal, Decimal, Side)>,
}

/// The synthetic market: a seeded random walk per pair. The sequence of orders depends only on
/// the seed and the pairs, never on timing.
pub(crate) struct Walk {
    rng: StdRng,
    walkers: Vec<Walker>,
}

/// Realistic starting prices: (base, low, high, price decimals, lot decimals).
const PROFILES: &[(&str, i64, i64, u32, u32)] = &[
    ("BTC", 60_000, 100_000, 2, 5),
    ("ETH", 2_500, 3_500, 2, 4),
    ("SOL", 120, 180, 2, 3),
    ("BNB", 500, 700, 2, 3),
    ("XRP", 1, 3, 4, 1),
];

/// Seeds the pairs' starting prices, the same for every simulator.
const START_PRICE_SEED: u64 = 0x5EED_57A2;

impl Walk {
    /// A walk over `pairs` seeded with `seed`.
    pub fn new(seed: u64, pairs: &[Pair]) -> Walk {
        let mut rng = StdRng::seed_from_u64(seed);
        // Starting prices do not depend on the seed: simulators of different exchanges (each with
        // its own seed) quote a pair near the same price, as real exchanges do; only the walks differ.
        let mut start = StdRng::seed_from_u64(START_PRICE_SEED);
        let walkers = pairs
            .iter()
            .map(|&pair| {
                let (low, high, price_dp, lot_dp) = PROFILES
                    .iter()
                    .find(|p| p.0 == pair.base.as_str())
                    .map_or((10, 100, 3, 2), |p| (p.1, p.2, p.3, p.4));
                // A price with `price_dp` decimals, uniform in [low, high).
                let scale = 10i64.pow(price_dp);
                let units = start.random_range(low * scale..high * scale);
                let price = Decimal::new(units, price_dp);
                Walker {
                    pair,
                    price,
                    tick: Decimal::new(1, price_dp),
                    lot_dp,
                    floor: price / Decimal::TWO,
                    ceiling: price * Decimal::TWO,
                    next_id: rng.random_range(1_000_000..10_000_000),
                    last_time: Micros(0),
                }
            })
            .collect();
        Walk { rng, walkers }
    }

    /// The next taker order.
    pub fn next_order(&mut self) -> Order {
        let rng = &mut self.rng;
        let w_index = rng.random_range(0..self.walkers.len());
        let w = &mut self.walkers[w_index];
        // Most trades happen at the same price; otherwise the price moves up to ~0.5 bp.
        let max_ticks = (w.price * Decimal::new(5, 5) / w.tick)
            .trunc()
            .to_i64()
            .unwrap_or(1)
            .max(1);
        let ticks = if rng.random_bool(0.55) {
            0
        } else {
            rng.random_range(1..=max_ticks)
        };
        let up = rng.random_bool(0.5);
        let mut step = w.tick * Decimal::from(ticks);
        if !up {
            step = -step;
        }
        if w.price + step < w.floor || w.price + step > w.ceiling {
            step = -step;
        }
        w.price += step;
        let side = if step > Decimal::ZERO {
            Side::Buy
        } else if step < Decimal::ZERO {
            Side::Sell
        } else if rng.random_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        // Occasionally one order sweeps several levels in its direction.
        let fills = if rng.random_bool(0.03) {
            rng.random_range(3..=15)
        } else {
            1
        };
        let mut out = Vec::with_capacity(fills);
        for i in 0..fills {
            if i > 0 {
                let ticks = Decimal::from(rng.random_range(0i64..=2));
                let moved = match side {
                    Side::Sell => w.price - w.tick * ticks,
                    _ => w.price + w.tick * ticks,
                };
                if moved >= w.floor && moved <= w.ceiling {
                    w.price = moved;
                }
            }
            // Notional in USD: 1 to 100,000, mostly 10 to 1,000.
            let exponent = match rng.random_range(0..10) {
                0..=2 => 0,
                3..=6 => 1,
                7..=8 => 2,
                _ => 3,
            };
            let notional =
                Decimal::new(rng.random_range(100..1_000), 2) * Decimal::from(10i64.pow(exponent));
            let mut qty = (notional / w.price).round_dp(w.lot_dp);
            if qty <= Decimal::ZERO {
                qty = Decimal::new(1, w.lot_dp);
            }
            out.push((w.price, qty, side));
        }
        Order {
            pair: w.pair,
            fills: out,
        }
    }

    /// Assigns the next trade id of `pair` and its trade time, never earlier than the pair's
    /// previous one (see [`Stamp`]).
    pub fn stamp(&mut self, pair: Pair, now: Micros, how: Stamp) -> (u64, Micros) {
        let Some(w) = self.walkers.iter_mut().find(|w| w.pair == pair) else {
            return (0, now);
        };
        let id = w.next_id;
        w.next_id += 1;
        let first = w.last_time == Micros(0);
        w.last_time = match how {
            Stamp::Split if !first => w.last_time,
            Stamp::After => w.last_time.max(Micros(now.0.max(w.last_time.0 + 1))),
            _ => w.last_time.max(now),
        };
        (id, w.last_time)
    }

    /// Gives the id just assigned to `pair`'s trade back (a hidden trade takes none, so the
    /// ids that are sent stay contiguous).
    pub fn take_back_id(&mut self, pair: Pair) {
        if let Some(w) = self.walkers.iter_mut().find(|w| w.pair == pair) {
            w.next_id -= 1;
        }
    }
}

/// How a trade's time relates to the time of the pair's trade before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The wall clock (bursts and trades of one tick share a time).
    Wall,
    /// A split fill: exactly the time of the trade before.
    Split,
    /// Strictly later than the trade before.
    After,
}

/// Decides which trades are split fills ([`Generator::split_ratio`]) and which are kept off
/// the WebSocket ([`Generator::omit_split_trades`]).
struct Splits {
    rng: StdRng,
    ratio: f64,
    omit: bool,
    /// The wire time of each pair's last trade.
    last: HashMap<Pair, Micros>,
}

impl Splits {
    /// How to stamp the next trade.
    fn next_stamp(&mut self) -> Stamp {
        if self.ratio <= 0.0 {
            Stamp::Wall
        } else if self.rng.random_bool(self.ratio) {
            Stamp::Split
        } else {
            Stamp::After
        }
    }

    /// Whether `trade` (as on the wire) must be kept off the WebSocket: it shares its time with
    /// the pair's trade before it.
    fn omitted(&mut self, trade: &Trade) -> bool {
        let shares = self.last.insert(trade.pair, trade.time) == Some(trade.time);
        self.omit && shares
    }
}

/// The synthetic trade source: [`Walk`] orders at a steady average rate, stamped with the wall
/// clock, published every few milliseconds.
pub(crate) struct Generator {
    /// Trades per second, all pairs together.
    pub rate: f64,
    /// Stop after this many trades.
    pub max_trades: Option<u64>,
    /// The walk's seed.
    pub seed: u64,
    /// The pairs to trade.
    pub pairs: Vec<Pair>,
    /// Every this many trades, one is dated 1970 or 2100 (see
    /// [`crate::SimConfig::absurd_time_every`]).
    pub absurd_time_every: Option<u64>,
    /// The share of trades that are split fills (see [`crate::SimConfig::split_ratio`]).
    pub split_ratio: f64,
    /// Keep split fills off the WebSocket (see [`crate::SimConfig::omit_split_trades`]).
    pub omit_split_trades: bool,
    /// The share of trades hidden (see [`crate::SimConfig::hide_ratio`]).
    pub hide_ratio: f64,
    /// Hide only trades dated before this instant (see [`crate::SimConfig::hide_until`]).
    pub hide_until: Option<Micros>,
}

/// 1970-01-01T00:00:01Z, the old absurd trade time.
pub const TIME_1970: Micros = Micros(1_000_000);
/// 2100-01-01T00:00:00Z, the future absurd trade time.
pub const TIME_2100: Micros = Micros(4_102_444_800_000_000);

/// How often the generator publishes.
const GENERATOR_TICK: std::time::Duration = std::time::Duration::from_millis(5);

impl Generator {
    /// Generates until cancelled or `max_trades` is reached.
    pub async fn run(self, shared: Arc<Shared>, cancel: tokio_util::sync::CancellationToken) {
        let market = &shared.market;
        let mut walk = Walk::new(self.seed, &self.pairs);
        let mut splits = Splits {
            rng: StdRng::seed_from_u64(self.seed ^ 0x5157_F111),
            ratio: self.split_ratio,
            omit: self.omit_split_trades,
            last: HashMap::new(),
        };
        let mut hide_rng = StdRng::seed_from_u64(self.seed ^ 0x41DE);
        let mut ticker = tokio::time::interval(GENERATOR_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        let mut credit = 0.0f64;
        let mut produced = 0u64;
        loop {
            if self.max_trades.is_some_and(|max| produced >= max) {
                tracing::info!(trades = produced, "max trades reached: generation stops");
                market.set_done();
                return;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = tokio::time::Instant::now();
            // After a long pause (a suspended process), do not fire a huge burst.
            credit = (credit + self.rate * (now - last).as_secs_f64()).min(self.rate.max(1.0));
            last = now;
            let wall = Micros::now();
            let mut batch = Vec::new();
            while credit >= 1.0 && self.max_trades.is_none_or(|max| produced < max) {
                let order = walk.next_order();
                for (price, quantity, side) in order.fills {
                    if self.max_trades.is_some_and(|max| produced >= max) {
                        break;
                    }
                    let (id, mut time) = walk.stamp(order.pair, wall, splits.next_stamp());
                    // The n-th absurd trade: 1970, 2100, 1970 kept off the WebSocket, 2100
                    // kept off the WebSocket (so REST gap fill meets both), and again.
                    let absurd = self
                        .absurd_time_every
                        .filter(|n| *n > 0 && (produced + 1).is_multiple_of(*n))
                        .map(|n| (produced + 1) / n - 1);
                    if let Some(k) = absurd {
                        time = if k % 2 == 0 { TIME_1970 } else { TIME_2100 };
                    }
                    let trade = Trade {
                        exchange: market.exchange,
                        pair: order.pair,
                        id,
                        price,
                        quantity,
                        side,
                        time,
                        received: time,
                        complete_since: None,
                        after_unfilled_gap: false,
                    };
                    let trade = shared.venue.wire(trade);
                    produced += 1;
                    credit -= 1.0;
                    let hiding = self.hide_until.is_none_or(|until| time < until);
                    if self.hide_ratio > 0.0 && hiding && hide_rng.random_bool(self.hide_ratio) {
                        walk.take_back_id(order.pair);
                        market.hide(trade);
                        continue;
                    }
                    if absurd.is_some_and(|k| k % 4 >= 2) || splits.omitted(&trade) {
                        market.withhold(&trade);
                    }
                    batch.push(trade);
                }
            }
            market.publish(batch);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs() -> Vec<Pair> {
        Pair::defaults()
    }

    #[test]
    fn the_same_seed_gives_the_same_orders() {
        let mut a = Walk::new(7, &pairs());
        let mut b = Walk::new(7, &pairs());
        for _ in 0..1000 {
            let (x, y) = (a.next_order(), b.next_order());
            assert_eq!(x.pair, y.pair);
            assert_eq!(x.fills, y.fills);
        }
        let mut c = Walk::new(8, &pairs());
        let differs = (0..100).any(|_| a.next_order().fills != c.next_order().fills);
        assert!(differs);
    }

    #[test]
    fn every_seed_starts_a_pair_at_the_same_price() {
        let starts = |seed| -> Vec<Decimal> {
            Walk::new(seed, &pairs())
                .walkers
                .iter()
                .map(|w| w.price)
                .collect()
        };
        assert_eq!(starts(1), starts(2), "exchanges' simulators start together");
    }

    #[test]
    fn prices_are_realistic_and_exact() {
        let mut walk = Walk::new(1, &pairs());
        for _ in 0..5000 {
            let order = walk.next_order();
            for (price, qty, side) in order.fills {
                assert!(price > Decimal::ZERO && qty > Decimal::ZERO);
                assert!(price.scale() <= 2, "{price}");
                assert_ne!(side, Side::Unknown);
                match order.pair.base.as_str() {
                    "BTC" => {
                        assert!(price > Decimal::from(30_000) && price < Decimal::from(200_000))
                    }
                    "ETH" => assert!(price > Decimal::from(1_000) && price < Decimal::from(7_000)),
                    _ => assert!(price > Decimal::from(50) && price < Decimal::from(400)),
                }
            }
        }
    }

    #[test]
    fn ids_increase_per_pair_and_times_never_go_back() {
        let p = pairs();
        let mut walk = Walk::new(1, &p);
        let (id1, t1) = walk.stamp(p[0], Micros(100), Stamp::Wall);
        let (id2, t2) = walk.stamp(p[0], Micros(50), Stamp::Wall);
        assert_eq!(id2, id1 + 1);
        assert_eq!((t1, t2), (Micros(100), Micros(100)));
    }

    #[test]
    fn split_fills_share_the_time_before_them_and_others_move_on() {
        let p = pairs();
        let mut walk = Walk::new(1, &p);
        let (_, t1) = walk.stamp(p[0], Micros(100), Stamp::After);
        let (_, t2) = walk.stamp(p[0], Micros(100), Stamp::Split);
        let (_, t3) = walk.stamp(p[0], Micros(100), Stamp::After);
        let (_, t4) = walk.stamp(p[0], Micros(500), Stamp::After);
        assert_eq!(
            (t1, t2, t3, t4),
            (Micros(100), Micros(100), Micros(101), Micros(500))
        );
    }

    #[test]
    fn only_trades_sharing_the_previous_time_are_omitted() {
        let mut splits = Splits {
            rng: StdRng::seed_from_u64(1),
            ratio: 0.4,
            omit: true,
            last: HashMap::new(),
        };
        let pair = pairs()[0];
        let t = |time| {
            Trade::new(
                candles_core::Exchange::Kraken,
                pair,
                1,
                "1",
                "1",
                Side::Buy,
                Micros(time),
            )
            .unwrap()
        };
        let omitted: Vec<bool> = [5, 5, 5, 6, 6, 7].map(|x| splits.omitted(&t(x))).to_vec();
        assert_eq!(omitted, [false, true, true, false, true, false]);
        let share = (0..10_000)
            .filter(|_| splits.next_stamp() == Stamp::Split)
            .count();
        assert!((3_700..4_300).contains(&share), "{share}");
    }
}
