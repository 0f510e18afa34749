//! Faults on demand: dropped messages, garbage messages, stalls and forced disconnects, and
//! hostile input (trade frames of pairs the client did not subscribe to, one huge garbage
//! frame per connection; trades dated 1970 or 2100 are made by the generator, see
//! [`crate::SimConfig::absurd_time_every`]).
//!
//! Each connection gets its own [`Faults`] with an RNG seeded from the simulator's seed and the
//! connection number, so a run with the same seed and the same connection order injects the
//! same faults.

use crate::venue::{Session, Venue};
use candles_core::{Decimal, Micros, Pair, Side, Trade};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::time::Instant;

/// The fault settings of a simulator (copied from its config).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct FaultConfig {
    /// Close each connection this long after it opened.
    pub disconnect_every: Option<Duration>,
    /// Probability that a trade message is not sent.
    pub drop_ratio: f64,
    /// Length of the one stall per connection.
    pub stall: Option<Duration>,
    /// How long after the first subscription the stall starts.
    pub stall_after: Duration,
    /// Probability of a garbage message before each trade message.
    pub malformed_ratio: f64,
    /// After every this many trade messages, a trade message of a pair not subscribed to.
    pub unsubscribed_every: Option<u64>,
    /// Once per connection, after its first trade message, a garbage frame of this many bytes.
    pub huge_frame: Option<usize>,
}

/// The pairs an unsubscribed-pair frame may name (the first one the client did not subscribe
/// to is used).
const FOREIGN_PAIRS: [&str; 3] = ["XRP-USDT", "BNB-USDT", "DOGE-USDT"];

/// Where a connection is in its (single) stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    /// No stall configured, or not subscribed yet.
    Idle,
    /// Will go silent at this instant.
    Pending(Instant),
    /// Silent until this instant.
    Active(Instant),
    /// Happened already.
    Over,
}

/// One connection's fault state.
pub(crate) struct Faults {
    config: FaultConfig,
    rng: StdRng,
    /// The stall state.
    pub stall: Stall,
    /// When the connection will be closed, if ever.
    pub disconnect_at: Option<Instant>,
    /// Trade messages sent so far (for `unsubscribed_every`).
    trade_messages: u64,
    /// Whether the huge frame was sent on this connection.
    huge_sent: bool,
}

impl Faults {
    /// Fault state for connection number `conn` opened at `opened`.
    pub fn new(config: FaultConfig, seed: u64, conn: u64, opened: Instant) -> Faults {
        let seed = seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
        Faults {
            config,
            rng: StdRng::seed_from_u64(seed),
            stall: Stall::Idle,
            disconnect_at: config.disconnect_every.map(|d| opened + d),
            trade_messages: 0,
            huge_sent: false,
        }
    }

    /// Hostile frames to send after the trade message `message`: a trade of a pair the session
    /// did not subscribe to (every `unsubscribed_every` messages; not part of the ground
    /// truth), and once per connection a huge garbage frame (plus, where the venue's corrupt
    /// form has a `"NaN…` price, `message`'s own shape with a price of that size).
    pub fn hostile_after(
        &mut self,
        venue: &dyn Venue,
        session: &Session,
        message: &str,
    ) -> Vec<String> {
        self.trade_messages += 1;
        let mut out = Vec::new();
        if let Some(n) = self.config.unsubscribed_every.filter(|n| *n > 0)
            && self.trade_messages.is_multiple_of(n)
            && let Some(pair) = FOREIGN_PAIRS
                .iter()
                .filter_map(|p| Pair::parse(p).ok())
                .find(|p| !session.subs.contains_key(p))
        {
            let trade = Trade {
                exchange: venue.exchange(),
                pair,
                id: 900_000_000 + self.trade_messages,
                price: Decimal::new(15, 1),
                quantity: Decimal::new(2, 0),
                side: Side::Buy,
                time: Micros::now(),
                received: Micros::now(),
                complete_since: None,
                after_unfilled_gap: false,
            };
            metrics::counter!("sim_unsubscribed_sent_total").increment(1);
            out.extend(venue.encode(&[venue.wire(trade)], session));
        }
        if let Some(size) = self.config.huge_frame.filter(|_| !self.huge_sent) {
            self.huge_sent = true;
            metrics::counter!("sim_huge_frames_sent_total").increment(1);
            let mut junk = String::with_capacity(size);
            junk.push_str("exchange-sim huge garbage ");
            while junk.len() < size {
                junk.push(char::from(b'a' + (junk.len() % 26) as u8));
            }
            let corrupt = venue.corrupt(message);
            if corrupt.contains("\"NaN") {
                out.push(corrupt.replacen("\"NaN", &format!("\"NaN{junk}"), 1));
            }
            out.push(junk);
        }
        out
    }

    /// Called when the connection subscribes: arms the stall (once).
    pub fn on_subscribed(&mut self, now: Instant) {
        if self.stall == Stall::Idle && self.config.stall.is_some() {
            self.stall = Stall::Pending(now + self.config.stall_after);
        }
    }

    /// Advances the stall state to `now`; returns whether the connection is silent.
    pub fn silent(&mut self, now: Instant) -> bool {
        loop {
            match self.stall {
                Stall::Pending(at) if now >= at => {
                    let length = self.config.stall.unwrap_or_default();
                    tracing::info!(?length, "simulated stall: the connection goes silent");
                    metrics::counter!("sim_stalls_total").increment(1);
                    self.stall = Stall::Active(at + length);
                }
                Stall::Active(until) if now >= until => {
                    tracing::info!("simulated stall over: the connection resumes");
                    self.stall = Stall::Over;
                }
                Stall::Active(_) => return true,
                _ => return false,
            }
        }
    }

    /// The next instant at which the stall state changes, if any.
    pub fn next_stall_change(&self) -> Option<Instant> {
        match self.stall {
            Stall::Pending(at) | Stall::Active(at) => Some(at),
            Stall::Idle | Stall::Over => None,
        }
    }

    /// Whether to drop the next trade message.
    pub fn drop_next(&mut self) -> bool {
        self.config.drop_ratio > 0.0 && self.rng.random_bool(self.config.drop_ratio.min(1.0))
    }

    /// A garbage message to send before `message`, if the dice say so.
    pub fn garbage(&mut self, venue: &dyn Venue, message: &str) -> Option<String> {
        if self.config.malformed_ratio <= 0.0
            || !self.rng.random_bool(self.config.malformed_ratio.min(1.0))
        {
            return None;
        }
        metrics::counter!("sim_malformed_sent_total").increment(1);
        Some(match self.rng.random_range(0..4) {
            // Cut off mid-message: not JSON.
            0 => {
                let mut cut = message.len() / 2;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message[..cut].to_string()
            }
            1 => "exchange-sim: this is not JSON".to_string(),
            // JSON of an unknown shape.
            2 => format!(
                r#"{{"sim_unexpected":{},"note":"exchange-sim garbage"}}"#,
                self.rng.random::<u32>()
            ),
            // The right shape with an invalid price.
            _ => venue.corrupt(message),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_happens_once_after_subscribing() {
        let t0 = Instant::now();
        let config = FaultConfig {
            stall: Some(Duration::from_secs(3)),
            stall_after: Duration::from_secs(1),
            ..Default::default()
        };
        let mut f = Faults::new(config, 1, 1, t0);
        assert!(!f.silent(t0 + Duration::from_secs(5)));
        f.on_subscribed(t0);
        assert!(!f.silent(t0 + Duration::from_millis(500)));
        assert!(f.silent(t0 + Duration::from_millis(1500)));
        assert!(f.silent(t0 + Duration::from_millis(3900)));
        assert!(!f.silent(t0 + Duration::from_millis(4100)));
        f.on_subscribed(t0 + Duration::from_secs(5));
        assert!(!f.silent(t0 + Duration::from_secs(7)));
    }

    #[test]
    fn ratios_are_roughly_respected() {
        let config = FaultConfig {
            drop_ratio: 0.2,
            ..Default::default()
        };
        let mut f = Faults::new(config, 1, 1, Instant::now());
        let drops = (0..10_000).filter(|_| f.drop_next()).count();
        assert!((1_500..2_500).contains(&drops), "{drops}");
        let mut none = Faults::new(FaultConfig::default(), 1, 1, Instant::now());
        assert!(!(0..1000).any(|_| none.drop_next()));
    }
}
