//! Which decoded trades the service takes, as pure rules (DESIGN.md "Hostile input"). Anything
//! the topic holds came from outside: a buggy producer, an attacker, a topic shared with another
//! deployment. A trade is applied only when
//!
//! 1. its record's key is its pair (`BTC-USDT`): the key decides the partition, and a pair's
//!    trades must all be in one partition, or a second engine would build a second series of it
//!    and race the real finals with its own;
//! 2. its pair is one this server serves (`--pairs`): any other pair would cost a series, Redis
//!    history and finals without end, and could never be subscribed to;
//! 3. its time lies in the plausible window around the wall clock ([`TimeBounds`]): a trade
//!    dated 1970 or 2100 would make a flat candle for every window in between, or hold its
//!    window (and the committed offset) open for ever.
//!
//! A misrouted record or an implausible time is an error of whoever produced it: dead-lettered
//! with the reason. A pair this server does not serve is not an error (another deployment may
//! share the topic): it is counted and skipped.

use candles_core::{Micros, Pair, TimeBounds, Trade, excerpt};

/// Why a decoded trade is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The metric label: `key_mismatch`, `unserved_pair` or `implausible_time`.
    pub reason: &'static str,
    /// What was wrong and what to do, for the dead-letter header and the log (bounded: every
    /// value from outside is an excerpt).
    pub detail: String,
    /// Whether the record goes to the dead-letter topic (or is only counted).
    pub dead_letter: bool,
}

/// Decides whether `trade`, read from a record with `key`, is applied (see the module docs).
pub fn admit(
    key: Option<&[u8]>,
    trade: &Trade,
    served: &[Pair],
    bounds: &TimeBounds,
    now: Micros,
) -> Result<(), Rejection> {
    let pair = trade.pair;
    if !key.is_some_and(|k| pair.is_written(k)) {
        let shown = key.map_or_else(|| "none".to_string(), candles_core::bounds::excerpt_bytes);
        return Err(Rejection {
            reason: "key_mismatch",
            detail: format!(
                "record key {shown} is not the trade's pair {pair}; producers must key each trade by its canonical pair so all of a pair's trades share one partition"
            ),
            dead_letter: true,
        });
    }
    if !served.contains(&pair) {
        return Err(Rejection {
            reason: "unserved_pair",
            detail: format!(
                "pair {} is not served here (--pairs / CANDLES_PAIRS)",
                excerpt(&pair.to_string())
            ),
            dead_letter: false,
        });
    }
    bounds.check(trade.time, now).map_err(|e| Rejection {
        reason: "implausible_time",
        detail: e.to_string(),
        dead_letter: true,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::{Exchange, Side};

    fn trade(pair: &str, time: Micros) -> Trade {
        Trade::new(
            Exchange::Kraken,
            Pair::parse(pair).unwrap(),
            1,
            "100",
            "1",
            Side::Buy,
            time,
        )
        .unwrap()
    }

    #[test]
    fn a_served_pair_keyed_by_itself_at_a_plausible_time_is_applied() {
        let now = Micros::now();
        let served = Pair::defaults();
        let t = trade("ETH-USDT", now);
        assert_eq!(
            admit(Some(b"ETH-USDT"), &t, &served, &TimeBounds::default(), now),
            Ok(())
        );
    }

    #[test]
    fn a_record_keyed_by_another_pair_or_unkeyed_is_dead_lettered() {
        let now = Micros::now();
        let served = Pair::defaults();
        let t = trade("ETH-USDT", now);
        for key in [Some(&b"BTC-USDT"[..]), Some(b"eth-usdt"), None] {
            let r = admit(key, &t, &served, &TimeBounds::default(), now).unwrap_err();
            assert_eq!(r.reason, "key_mismatch");
            assert!(r.dead_letter && r.detail.contains("ETH-USDT"), "{r:?}");
        }
        let huge = vec![b'x'; 100_000];
        let r = admit(Some(&huge), &t, &served, &TimeBounds::default(), now).unwrap_err();
        assert!(r.detail.len() < 400, "{}", r.detail);
    }

    #[test]
    fn an_unserved_pair_is_counted_not_dead_lettered() {
        let now = Micros::now();
        let t = trade("DOGE-USDT", now);
        let r = admit(
            Some(b"DOGE-USDT"),
            &t,
            &Pair::defaults(),
            &TimeBounds::default(),
            now,
        )
        .unwrap_err();
        assert_eq!(r.reason, "unserved_pair");
        assert!(!r.dead_letter);
    }

    #[test]
    fn trades_dated_1970_or_2100_are_dead_lettered_with_the_bound() {
        let now = Micros::now();
        for time in [Micros(0), Micros(4_102_444_800_000_000)] {
            let t = trade("BTC-USDT", time);
            let r = admit(
                Some(b"BTC-USDT"),
                &t,
                &Pair::defaults(),
                &TimeBounds::default(),
                now,
            )
            .unwrap_err();
            assert_eq!(r.reason, "implausible_time");
            assert!(r.dead_letter && r.detail.contains("--max-trade-"), "{r:?}");
        }
    }
}
