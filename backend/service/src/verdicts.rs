//! Verdicts on our candles, relayed to the clients that asked for them.
//!
//! The connectors check our final per-exchange 1-minute candles against each exchange's own and
//! report the verdicts through Redis (`candles-reports`): each new one on a Pub/Sub channel, the
//! latest (and the latest mismatch) per pair and source in keys. This instance's Redis
//! subscriber passes each published verdict through [`HubVerdict::decode`] into the hub; a client
//! that subscribed with `verifications` first gets the stored ones ([`crate::store::Store::verdicts`]),
//! then the new ones ([`VerdictFilter`] drops what it already sent).
//!
//! Redis is an input: a verdict read from it is bounded in size, must name a served pair and an
//! exchange, the 1-minute interval, a known outcome and at most one diff per field with decimal
//! values; anything else is counted (`candles_redis_rejected_total{reason="verification"}`) and
//! skipped.

use crate::redis_input::RedisCheck;
use candles_core::verify::{Field, MINUTE};
use candles_core::{Micros, Pair, Source};
use candles_proto::v1;
use std::collections::HashMap;
use std::str::FromStr as _;

/// Longest `reason` text relayed (longer ones are cut, on a character boundary).
pub const MAX_REASON: usize = 300;
/// Most diffs in one verdict (one per field an exchange publishes).
const MAX_DIFFS: usize = Field::ALL.len();

/// A verdict as it came from Redis: the message to send and what clients filter on.
#[derive(Debug, Clone, PartialEq)]
pub struct HubVerdict {
    /// Canonical pair.
    pub pair: Pair,
    /// The exchange whose candle was checked.
    pub source: Source,
    /// The checked window's start.
    pub start: Micros,
    /// When the verdict was reached.
    pub checked_at: Micros,
    /// The message clients receive.
    pub wire: v1::Verification,
}

impl HubVerdict {
    /// Decodes and checks a published or stored verdict for a server serving `served`'s pairs.
    pub fn decode(bytes: &[u8], served: &RedisCheck) -> Result<HubVerdict, &'static str> {
        let wire = candles_reports::decode_verification(bytes).ok_or("not a verification")?;
        HubVerdict::check(wire, served)
    }

    /// Checks a decoded verdict (see the module docs); the reason when it is refused.
    pub fn check(
        mut wire: v1::Verification,
        served: &RedisCheck,
    ) -> Result<HubVerdict, &'static str> {
        let pair = Pair::parse(&wire.pair).map_err(|_| "unknown pair")?;
        if !served.serves(pair) {
            return Err("pair not served");
        }
        let source = Source::from_str(&wire.source).map_err(|_| "unknown source")?;
        if source == Source::Composite {
            return Err("composite is not verified");
        }
        let interval =
            candles_proto::interval_from(wire.interval.as_ref()).map_err(|_| "bad interval")?;
        if interval != MINUTE {
            return Err("not a 1-minute verdict");
        }
        let start = candles_proto::micros("start", wire.start.as_ref()).map_err(|_| "no start")?;
        let checked_at =
            candles_proto::micros("checked_at", wire.checked_at.as_ref()).unwrap_or(start);
        if !(1..=4).contains(&wire.outcome) {
            return Err("unknown outcome");
        }
        if wire.diffs.len() > MAX_DIFFS || wire.diffs.iter().any(|d| !plausible(d)) {
            return Err("bad diff");
        }
        if wire.reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !wire.reason.is_char_boundary(cut) {
                cut -= 1;
            }
            wire.reason.truncate(cut);
        }
        Ok(HubVerdict {
            pair,
            source,
            start,
            checked_at,
            wire,
        })
    }
}

/// A diff names a field an exchange publishes and holds two decimals.
fn plausible(d: &v1::FieldDiff) -> bool {
    let decimal = |s: &str| s.len() <= 64 && rust_decimal::Decimal::from_str(s).is_ok();
    let known = Field::ALL.iter().any(|f| f.name() == d.field);
    known && decimal(&d.ours) && decimal(&d.theirs)
}

/// Which verdicts one client gets: those of its pairs (every exchange), each once.
#[derive(Debug)]
pub struct VerdictFilter {
    pairs: Vec<Pair>,
    /// The last verdict sent per pair and source: (window start, checked at).
    last: HashMap<(Pair, Source), (Micros, Micros)>,
}

impl VerdictFilter {
    /// A filter for verdicts on `pairs`; nothing sent yet.
    pub fn new(pairs: &[Pair]) -> VerdictFilter {
        VerdictFilter {
            pairs: pairs.to_vec(),
            last: HashMap::new(),
        }
    }

    /// Whether to send `v`: one of the client's pairs, and later than the last one sent for its
    /// series (a verdict read at subscription and published again live goes out once).
    pub fn accept(&mut self, v: &HubVerdict) -> bool {
        if !self.pairs.contains(&v.pair) {
            return false;
        }
        let at = (v.start, v.checked_at);
        match self.last.get(&(v.pair, v.source)) {
            Some(&last) if at <= last => false,
            _ => {
                self.last.insert((v.pair, v.source), at);
                true
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use prost::Message as _;

    const T: i64 = 1_795_675_200_000_000;

    fn verdict(pair: &str, source: &str, start: i64, checked: i64) -> v1::Verification {
        v1::Verification {
            pair: pair.into(),
            source: source.into(),
            interval: Some(candles_proto::duration(MINUTE)),
            start: Some(candles_proto::timestamp(Micros(start))),
            outcome: v1::Outcome::Mismatch as i32,
            diffs: vec![v1::FieldDiff {
                field: "volume".into(),
                ours: "1.5".into(),
                theirs: "1.75".into(),
            }],
            checked_at: Some(candles_proto::timestamp(Micros(checked))),
            ..Default::default()
        }
    }

    fn served() -> RedisCheck {
        RedisCheck::new(
            MINUTE,
            vec![Pair::parse("BTC-USDT").unwrap()],
            candles_core::TimeBounds::default(),
        )
    }

    #[test]
    fn a_plausible_verdict_passes() {
        let v = verdict("BTC-USDT", "kraken", T, T + 90_000_000);
        let hv = HubVerdict::decode(&v.encode_to_vec(), &served()).unwrap();
        assert_eq!(hv.source.as_str(), "kraken");
        assert_eq!(hv.start, Micros(T));
        assert_eq!(hv.wire, v);
    }

    #[test]
    fn implausible_verdicts_are_refused_with_their_reason() {
        let cases: Vec<(v1::Verification, &str)> = vec![
            (verdict("ETH-USDT", "kraken", T, T), "pair not served"),
            (
                verdict("BTC-USDT", "composite", T, T),
                "composite is not verified",
            ),
            (verdict("BTC-USDT", "bitfinex", T, T), "unknown source"),
            (
                v1::Verification {
                    interval: Some(candles_proto::duration(candles_core::Interval::seconds(5))),
                    ..verdict("BTC-USDT", "kraken", T, T)
                },
                "not a 1-minute verdict",
            ),
            (
                v1::Verification {
                    outcome: 9,
                    ..verdict("BTC-USDT", "kraken", T, T)
                },
                "unknown outcome",
            ),
            (
                v1::Verification {
                    diffs: vec![v1::FieldDiff {
                        field: "volume".into(),
                        ours: "<script>".into(),
                        theirs: "1".into(),
                    }],
                    ..verdict("BTC-USDT", "kraken", T, T)
                },
                "bad diff",
            ),
        ];
        for (v, reason) in cases {
            assert_eq!(
                HubVerdict::decode(&v.encode_to_vec(), &served()).unwrap_err(),
                reason
            );
        }
        assert_eq!(
            HubVerdict::decode(b"\xff\xff\xff", &served()).unwrap_err(),
            "not a verification"
        );
    }

    #[test]
    fn a_long_reason_is_cut() {
        let v = v1::Verification {
            reason: "é".repeat(400),
            outcome: v1::Outcome::Unavailable as i32,
            diffs: Vec::new(),
            ..verdict("BTC-USDT", "coinbase", T, T)
        };
        let hv = HubVerdict::decode(&v.encode_to_vec(), &served()).unwrap();
        assert!(hv.wire.reason.len() <= MAX_REASON);
    }

    #[test]
    fn the_filter_sends_each_verdict_once_and_only_the_clients_pairs() {
        let mut f = VerdictFilter::new(&[Pair::parse("BTC-USDT").unwrap()]);
        let check = |v| HubVerdict::check(v, &served()).unwrap();
        let first = check(verdict("BTC-USDT", "kraken", T, T + 1));
        assert!(f.accept(&first));
        assert!(!f.accept(&first), "the same verdict twice");
        assert!(
            f.accept(&check(verdict("BTC-USDT", "binance", T, T + 1))),
            "another source"
        );
        assert!(f.accept(&check(verdict("BTC-USDT", "kraken", T + 60_000_000, T + 2))));
        assert!(
            !f.accept(&check(verdict("BTC-USDT", "kraken", T, T + 3))),
            "an older window"
        );
        let mut other = VerdictFilter::new(&[Pair::parse("ETH-USDT").unwrap()]);
        assert!(!other.accept(&first));
    }
}
