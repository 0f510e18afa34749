//! The shared market: every trade the simulator has produced, and the bus that fans them out.
//!
//! Trades are produced independently of connections (by [`Walk`] for synthetic markets, or by
//! the replay task) and published through [`Market::publish`], which appends them to the ground
//! truth and broadcasts them to every connection task in one step under one lock. A connection
//! that subscribes reads the market's last trade id under the same lock
//! ([`Market::subscribe_point`]), so it can tell which broadcast trades it has already seen in a
//! snapshot and which are new, without duplicates or holes.

use candles_core::{Decimal, Exchange, Micros, Pair, Side, Trade};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::ToPrimitive;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast};

/// How many events the bus holds for the slowest connection before it starts losing them.
pub(crate) const BUS_CAPACITY: usize = 16_384;

/// One step of the market, as seen by every connection.
#[derive(Debug)]
pub(crate) enum Event {
    /// New trades (possibly of several pairs), oldest first.
    Trades(Vec<Trade>),
    /// A verbatim line from a replay file, with the pair it is about (if any) and the trades
    /// parsed from it (possibly none).
    Raw {
        /// The pair the line is about; `None` goes to every subscribed connection.
        pair: Option<Pair>,
        /// The message text, exactly as in the file.
        line: String,
        /// The trades it carries.
        trades: Vec<Trade>,
    },
}

/// All trades so far.
#[derive(Default)]
struct Store {
    /// In publication order.
    all: Vec<Trade>,
    /// Per pair, sorted by trade id.
    by_pair: HashMap<Pair, Vec<Trade>>,
}

impl Store {
    /// Adds a trade unless the same (pair, id) is already known; returns whether it was new.
    fn insert(&mut self, trade: Trade) -> bool {
        let list = self.by_pair.entry(trade.pair).or_default();
        match list.last() {
            None => list.push(trade),
            Some(last) if last.id < trade.id => list.push(trade),
            Some(_) => match list.binary_search_by_key(&trade.id, |t| t.id) {
                Ok(_) => return false,
                Err(pos) => list.insert(pos, trade),
            },
        }
        self.all.push(trade);
        true
    }
}

/// The shared market of one simulated exchange.
pub(crate) struct Market {
    /// Which exchange this is.
    pub exchange: Exchange,
    /// The listed pairs (anything else is unknown to REST and WebSocket).
    pub listed: Vec<Pair>,
    store: Mutex<Store>,
    bus: broadcast::Sender<Arc<Event>>,
    generated: AtomicU64,
    done: AtomicBool,
    /// Set once the first connection subscribed to something (replay waits for it).
    first_subscriber: Notify,
    has_subscriber: AtomicBool,
    trade_log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    /// Connections accepted so far.
    pub connections: AtomicU64,
    /// Trades never sent on the WebSocket (only REST serves them), by pair and id.
    withheld: Mutex<std::collections::HashSet<(Pair, u64)>>,
}

impl Market {
    /// A market with no trades yet.
    pub fn new(exchange: Exchange, listed: Vec<Pair>, trade_log: Option<std::fs::File>) -> Market {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Market {
            exchange,
            listed,
            store: Mutex::new(Store::default()),
            bus,
            generated: AtomicU64::new(0),
            done: AtomicBool::new(false),
            first_subscriber: Notify::new(),
            has_subscriber: AtomicBool::new(false),
            trade_log: trade_log.map(|f| Mutex::new(std::io::BufWriter::new(f))),
            connections: AtomicU64::new(0),
            withheld: Mutex::default(),
        }
    }

    /// Keeps `trade` off the WebSocket: only REST serves it (call before publishing it).
    pub fn withhold(&self, trade: &Trade) {
        self.withheld
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((trade.pair, trade.id));
    }

    /// Whether `trade` is kept off the WebSocket.
    pub fn is_withheld(&self, trade: &Trade) -> bool {
        let set = self.withheld.lock().unwrap_or_else(|e| e.into_inner());
        !set.is_empty() && set.contains(&(trade.pair, trade.id))
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the store consistent (appends only), so a
        // poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `pair` is listed.
    pub fn is_listed(&self, pair: Pair) -> bool {
        self.listed.contains(&pair)
    }

    /// A receiver of every event published from now on.
    pub fn listen(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus.subscribe()
    }

    /// Events not yet received by the slowest connection.
    pub fn backlog(&self) -> usize {
        self.bus.len()
    }

    /// Records `trades` as ground truth and sends them to every connection.
    pub fn publish(&self, trades: Vec<Trade>) {
        if trades.is_empty() {
            return;
        }
        let mut store = self.store();
        for t in &trades {
            store.insert(*t);
        }
        self.log_trades(&trades);
        self.generated
            .fetch_add(trades.len() as u64, Ordering::Relaxed);
        metrics::counter!("sim_trades_generated_total").increment(trades.len() as u64);
        // No receivers is fine: nobody is connected.
        let _ = self.bus.send(Arc::new(Event::Trades(trades)));
        drop(store);
    }

    /// Records the (new) trades of a replayed line and sends the line to every connection.
    pub fn publish_raw(&self, pair: Option<Pair>, line: String, trades: Vec<Trade>) {
        let mut store = self.store();
        let new: Vec<Trade> = trades
            .iter()
            .copied()
            .filter(|t| store.insert(*t))
            .collect();
        self.log_trades(&new);
        self.generated
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        metrics::counter!("sim_trades_generated_total").increment(new.len() as u64);
        let _ = self.bus.send(Arc::new(Event::Raw { pair, line, trades }));
        drop(store);
    }

    fn log_trades(&self, trades: &[Trade]) {
        let Some(log) = &self.trade_log else { return };
        let mut out = log.lock().unwrap_or_else(|e| e.into_inner());
        for t in trades {
            let line = serde_json::json!({
                "exchange": t.exchange.as_str(),
                "pair": t.pair.to_string(),
                "id": t.id,
                "price": t.price.to_string(),
                "quantity": t.quantity.to_string(),
                "side": t.side.as_str(),
                "time_us": t.time.0,
            });
            if let Err(e) = writeln!(out, "{line}") {
                tracing::warn!(error = %e, "cannot append to the trade log");
            }
        }
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "cannot flush the trade log");
        }
    }

    /// Ground truth: every trade so far in publication order.
    pub fn trades(&self) -> Vec<Trade> {
        self.store().all.clone()
    }

    /// How many trades have been published.
    pub fn generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    /// Marks generation as finished.
    pub fn set_done(&self) {
        self.done.store(true, Ordering::Relaxed);
    }

    /// Whether generation has finished.
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// The last `n` trades of `pair` (oldest first) and the pair's last trade id, read
    /// atomically with respect to [`Market::publish`]. A connection that subscribes now has seen
    /// every trade up to that id (through the snapshot, or not at all) and must send only newer
    /// ones from the bus.
    pub fn subscribe_point(&self, pair: Pair, n: usize) -> (Vec<Trade>, u64) {
        let store = self.store();
        let list = store.by_pair.get(&pair).map(Vec::as_slice).unwrap_or(&[]);
        let recent = list[list.len().saturating_sub(n)..].to_vec();
        (recent, list.last().map_or(0, |t| t.id))
    }

    /// Runs `f` on the pair's trades (sorted by id) under the lock; for REST queries.
    pub fn with_pair<R>(&self, pair: Pair, f: impl FnOnce(&[Trade]) -> R) -> R {
        let store = self.store();
        f(store.by_pair.get(&pair).map(Vec::as_slice).unwrap_or(&[]))
    }

    /// Called when a connection subscribes to anything.
    pub fn note_subscriber(&self) {
        if !self.has_subscriber.swap(true, Ordering::Relaxed) {
            self.first_subscriber.notify_waiters();
            self.first_subscriber.notify_one();
        }
    }

    /// Waits until some connection has subscribed.
    pub async fn wait_for_subscriber(&self) {
        loop {
            let notified = self.first_subscriber.notified();
            if self.has_subscriber.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }
}

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

impl Walk {
    /// A walk over `pairs` seeded with `seed`.
    pub fn new(seed: u64, pairs: &[Pair]) -> Walk {
        let mut rng = StdRng::seed_from_u64(seed);
        let walkers = pairs
            .iter()
            .map(|&pair| {
                let (low, high, price_dp, lot_dp) = PROFILES
                    .iter()
                    .find(|p| p.0 == pair.base.as_str())
                    .map_or((10, 100, 3, 2), |p| (p.1, p.2, p.3, p.4));
                // A price with `price_dp` decimals, uniform in [low, high).
                let scale = 10i64.pow(price_dp);
                let units = rng.random_range(low * scale..high * scale);
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

    /// Assigns the next trade id of `pair` and a trade time no earlier than its previous one.
    pub fn stamp(&mut self, pair: Pair, now: Micros) -> (u64, Micros) {
        let Some(w) = self.walkers.iter_mut().find(|w| w.pair == pair) else {
            return (0, now);
        };
        let id = w.next_id;
        w.next_id += 1;
        w.last_time = w.last_time.max(now);
        (id, w.last_time)
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
}

/// 1970-01-01T00:00:01Z, the old absurd trade time.
pub const TIME_1970: Micros = Micros(1_000_000);
/// 2100-01-01T00:00:00Z, the future absurd trade time.
pub const TIME_2100: Micros = Micros(4_102_444_800_000_000);

/// How often the generator publishes.
const GENERATOR_TICK: std::time::Duration = std::time::Duration::from_millis(5);

impl Generator {
    /// Generates until cancelled or `max_trades` is reached.
    pub async fn run(
        self,
        shared: Arc<crate::server::Shared>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let market = &shared.market;
        let mut walk = Walk::new(self.seed, &self.pairs);
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
                    let (id, mut time) = walk.stamp(order.pair, wall);
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
                    };
                    let trade = shared.venue.wire(trade);
                    if absurd.is_some_and(|k| k % 4 >= 2) {
                        market.withhold(&trade);
                    }
                    batch.push(trade);
                    produced += 1;
                    credit -= 1.0;
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
        let (id1, t1) = walk.stamp(p[0], Micros(100));
        let (id2, t2) = walk.stamp(p[0], Micros(50));
        assert_eq!(id2, id1 + 1);
        assert_eq!((t1, t2), (Micros(100), Micros(100)));
    }

    #[test]
    fn the_store_keeps_ids_sorted_and_ignores_duplicates() {
        let pair = pairs()[0];
        let t =
            |id| Trade::new(Exchange::Binance, pair, id, "1", "1", Side::Buy, Micros(0)).unwrap();
        let mut store = Store::default();
        assert!(store.insert(t(5)));
        assert!(store.insert(t(3)));
        assert!(!store.insert(t(5)));
        assert!(store.insert(t(9)));
        let ids: Vec<u64> = store.by_pair[&pair].iter().map(|t| t.id).collect();
        assert_eq!(ids, [3, 5, 9]);
        assert_eq!(store.all.len(), 3);
    }
}
