//! What differs between exchanges, behind one small trait, plus the per-connection state and
//! helpers the three implementations share.
//!
//! The connection loop (`server`) is the same for every exchange: it asks the [`Venue`] how to
//! greet, how to answer a client message, how to encode trades and heartbeats, and how to answer
//! REST requests. Adding an exchange means adding one module with one `impl Venue` and its line
//! in `registry.rs`.

use crate::http::{Request, Response};
use crate::market::Market;
use crate::ratelimit::Rule;
use candles_core::{Exchange, Pair, Trade};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One connection's subscriptions and protocol state.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// A number unique among this simulator's connections.
    pub id: u64,
    /// Subscribed pairs → the last trade id this connection has accounted for (sent, dropped,
    /// or covered by a snapshot). Only newer trades are sent.
    pub subs: BTreeMap<Pair, u64>,
    /// Binance: wrap events as combined-stream messages (`/stream`).
    pub combined: bool,
    /// Coinbase: products subscribed on the `heartbeat` channel.
    pub heartbeats: BTreeSet<Pair>,
    /// Whether the client ever subscribed successfully (starts heartbeats and the stall timer).
    pub subscribed: bool,
}

impl Session {
    /// Subscribes to `pair` and returns its last `snapshot` trades (oldest first): the
    /// connection then receives only trades newer than those.
    pub fn subscribe(&mut self, pair: Pair, market: &Market, snapshot: usize) -> Vec<Trade> {
        let (recent, last_id) = market.subscribe_point(pair, snapshot);
        // Re-subscribing keeps the position: the client already has everything up to it.
        let entry = self.subs.entry(pair).or_insert(last_id);
        *entry = (*entry).max(last_id);
        self.subscribed = true;
        market.note_subscriber();
        recent
    }

    /// The trades among `trades` that this connection must send: subscribed pairs, newer than
    /// what it has accounted for. Marks them as accounted for.
    pub fn take_new(&mut self, trades: &[Trade]) -> Vec<Trade> {
        let mut out = Vec::new();
        for t in trades {
            if let Some(last) = self.subs.get_mut(&t.pair)
                && t.id > *last
            {
                *last = t.id;
                out.push(*t);
            }
        }
        out
    }

    /// Whether a replayed line about `pair` goes to this connection.
    pub fn wants_line(&self, pair: Option<Pair>) -> bool {
        match pair {
            Some(p) => self.subs.contains_key(&p),
            None => self.subscribed,
        }
    }
}

/// A replay-file line, understood.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parsed {
    /// The pair the line is about, if it names one.
    pub pair: Option<Pair>,
    /// The trades it carries (in the line's order).
    pub trades: Vec<Trade>,
}

/// One exchange's protocol.
pub(crate) trait Venue: Send + Sync + 'static {
    /// Which exchange.
    fn exchange(&self) -> Exchange;

    /// The path of the WebSocket endpoint, as the real exchange has it (`/ws` for Binance).
    fn ws_path(&self) -> &'static str;

    /// A new WebSocket connection to `path` (query without `?`): its initial session, or
    /// `None` if the path is not this exchange's (answered with 404).
    fn open(&self, path: &str, query: &str, market: &Market) -> Option<Session>;

    /// Messages sent right after the handshake.
    fn greeting(&self, _session: &Session) -> Vec<String> {
        Vec::new()
    }

    /// Answers one text message from the client (acks, snapshots, errors, pongs).
    fn on_text(&self, text: &str, session: &mut Session, market: &Market) -> Vec<String>;

    /// Encodes new trades (already filtered for this session, oldest first) as messages.
    fn encode(&self, trades: &[Trade], session: &Session) -> Vec<String>;

    /// The messages of one heartbeat tick.
    fn heartbeats(&self, _session: &Session, _market: &Market) -> Vec<String> {
        Vec::new()
    }

    /// Whether the server sends WebSocket ping frames (Binance).
    fn sends_pings(&self) -> bool {
        false
    }

    /// Whether a connection that has not subscribed within the subscribe timeout is closed
    /// (Coinbase).
    fn requires_early_subscribe(&self) -> bool {
        false
    }

    /// A copy of a trade message that is well-formed JSON with the right shape but an invalid
    /// price, for the malformed-message fault.
    fn corrupt(&self, message: &str) -> String;

    /// Answers a REST request.
    fn rest(&self, request: &Request, market: &Market) -> Response;

    /// The exchange's published public REST limit, applied with `--rest-limit`.
    fn rest_limit(&self) -> Rule;

    /// The weight of one REST request to `path` (Binance weighs its endpoints; the others
    /// count requests).
    fn rest_cost(&self, _path: &str) -> f64 {
        1.0
    }

    /// The exchange's own answer to a request over its limit; `banned` when the client came
    /// back before the wait it was told.
    fn rate_limited(&self, retry_after: Duration, banned: bool) -> Response;

    /// Understands one line of a replay file (for routing and ground truth).
    fn parse_line(&self, line: &str) -> Parsed;

    /// The trade as the wire carries it: time precision and decimal text of this exchange, so
    /// that ground truth equals what a client parses.
    fn wire(&self, trade: Trade) -> Trade;
}

/// A deterministic UUID-shaped id (for Coinbase order ids) from some numbers.
pub(crate) fn pseudo_uuid(parts: &[u64]) -> String {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        for p in parts {
            h = splitmix(h ^ p);
        }
        h = splitmix(h);
        h
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A JSON string literal (quoted and escaped).
pub(crate) fn json_str(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_uuids_are_stable_and_uuid_shaped() {
        let a = pseudo_uuid(&[1, 2, 3]);
        assert_eq!(a, pseudo_uuid(&[1, 2, 3]));
        assert_ne!(a, pseudo_uuid(&[1, 2, 4]));
        let lens: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "{a}");
    }
}
