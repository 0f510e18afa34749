//! The shared market: every trade the simulator has produced, and the bus that fans them out.
//!
//! Trades are produced independently of connections (by the generator for synthetic markets, or
//! by the replay task) and published through [`Market::publish`], which appends them to the ground
//! truth and broadcasts them to every connection task in one step under one lock. A connection
//! that subscribes reads the market's last trade id under the same lock
//! ([`Market::subscribe_point`]), so it can tell which broadcast trades it has already seen in a
//! snapshot and which are new, without duplicates or holes.

use candles_core::{Exchange, Micros, Pair, Trade};
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
    /// Listed pairs in a trading halt: their listing says so and they have no trades.
    pub halted: Vec<Pair>,
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
    /// REST requests answered so far (rate-limit answers included).
    pub rest_requests: AtomicU64,
    /// Trades never sent on the WebSocket (only REST serves them), by pair and id.
    withheld: Mutex<std::collections::HashSet<(Pair, u64)>>,
    /// Trades hidden from the WebSocket and the trade lists (`--hide-ratio`): only the
    /// exchange's candles count them.
    hidden: Mutex<Vec<Trade>>,
}

impl Market {
    /// A market with no trades yet.
    pub fn new(exchange: Exchange, listed: Vec<Pair>, trade_log: Option<std::fs::File>) -> Market {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Market {
            exchange,
            listed,
            halted: Vec::new(),
            store: Mutex::new(Store::default()),
            bus,
            generated: AtomicU64::new(0),
            done: AtomicBool::new(false),
            first_subscriber: Notify::new(),
            has_subscriber: AtomicBool::new(false),
            trade_log: trade_log.map(|f| Mutex::new(std::io::BufWriter::new(f))),
            connections: AtomicU64::new(0),
            rest_requests: AtomicU64::new(0),
            withheld: Mutex::default(),
            hidden: Mutex::default(),
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

    /// Records a trade that is never sent nor listed (it took no trade id), but that the
    /// exchange's candles count.
    pub fn hide(&self, trade: Trade) {
        metrics::counter!("sim_hidden_trades_total").increment(1);
        self.hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(trade);
    }

    /// Every hidden trade so far.
    pub fn hidden(&self) -> Vec<Trade> {
        self.hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every trade of `pair` with a time in `[from, to)`, hidden ones included, sorted by time
    /// (then id): what the exchange's candles are made of.
    pub fn candle_trades(&self, pair: Pair, from: Micros, to: Micros) -> Vec<Trade> {
        let within = |t: &&Trade| t.pair == pair && t.time >= from && t.time < to;
        // A hidden trade gave its id back to the next trade, which came after it: hidden
        // first, and a stable sort keeps that order for equal (time, id).
        let mut out: Vec<Trade> = {
            let hidden = self.hidden.lock().unwrap_or_else(|e| e.into_inner());
            hidden.iter().filter(within).copied().collect()
        };
        self.with_pair(pair, |list| out.extend(list.iter().filter(within).copied()));
        out.sort_by_key(|t| (t.time, t.id));
        out
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

    /// Whether `pair` is listed in a trading halt.
    pub fn is_halted(&self, pair: Pair) -> bool {
        self.halted.contains(&pair)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::{Micros, Side};

    #[test]
    fn the_store_keeps_ids_sorted_and_ignores_duplicates() {
        let pair = Pair::defaults()[0];
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
