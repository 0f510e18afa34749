//! Where a record becomes a trade: decoded from its value, then checked by
//! [`crate::admission`]. Pure: the record is already read; the loop acts on the [`Verdict`].

use crate::admission::{self, Rejection};
use crate::config::ServiceConfig;
use candles_core::{Micros, Trade};
use candles_proto::v1;
use prost::Message as _;
use rdkafka::message::{Message as _, OwnedMessage};

/// What to do with one record.
#[derive(Debug)]
pub enum Verdict {
    /// A trade to apply.
    Apply(Trade),
    /// Not a valid `candles.v1.Trade`: dead-letter it with this reason.
    Undecodable(String),
    /// A valid trade that is not applied ([`Rejection::dead_letter`] says whether it is
    /// dead-lettered or only counted).
    Rejected(Rejection),
}

/// Decodes and admits the record `msg` at wall-clock `now`.
pub fn classify(msg: &OwnedMessage, config: &ServiceConfig, now: Micros) -> Verdict {
    let trade = match decode(msg) {
        Ok(t) => t,
        Err(reason) => return Verdict::Undecodable(reason),
    };
    match admission::admit(msg.key(), &trade, &config.pairs, &config.trade_times, now) {
        Ok(()) => Verdict::Apply(trade),
        Err(rejection) => Verdict::Rejected(rejection),
    }
}

/// Decodes a record into a trade, or says why it cannot be one (never echoing it whole).
pub fn decode(msg: &OwnedMessage) -> Result<Trade, String> {
    let value = msg
        .payload()
        .ok_or_else(|| "record has no value; expected a protobuf candles.v1.Trade".to_string())?;
    let wire = v1::Trade::decode(value).map_err(|e| {
        format!(
            "value is not a protobuf candles.v1.Trade ({} bytes): {e}",
            value.len()
        )
    })?;
    Trade::try_from(&wire).map_err(|e| format!("invalid candles.v1.Trade: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::{Exchange, Pair, Side};

    fn msg(key: &[u8], payload: Option<Vec<u8>>) -> OwnedMessage {
        OwnedMessage::new(
            payload,
            Some(key.to_vec()),
            "t".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            None,
        )
    }

    fn trade(pair: &str, time: Micros) -> Trade {
        Trade::new(
            Exchange::Kraken,
            Pair::parse(pair).unwrap(),
            1,
            "2",
            "3",
            Side::Sell,
            time,
        )
        .unwrap()
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        let msg = |payload| msg(b"BTC-USDT", payload);
        assert!(decode(&msg(None)).unwrap_err().contains("no value"));
        assert!(
            decode(&msg(Some(b"\xff\xff".to_vec())))
                .unwrap_err()
                .contains("not a protobuf candles.v1.Trade")
        );
        let mut wire = v1::Trade::from(&trade("ETH-USDT", Micros(5)));
        assert!(decode(&msg(Some(wire.encode_to_vec()))).is_ok());
        wire.exchange = "ftx".into();
        let e = decode(&msg(Some(wire.encode_to_vec()))).unwrap_err();
        assert!(e.contains("exchange") && e.contains("ftx"), "{e}");
    }

    #[test]
    fn a_record_is_applied_dead_lettered_or_skipped() {
        let config = ServiceConfig::default();
        let now = Micros::now();
        let value = |pair| Some(v1::Trade::from(&trade(pair, now)).encode_to_vec());
        let verdict = |key: &[u8], pair| classify(&msg(key, value(pair)), &config, now);
        assert!(matches!(
            verdict(b"BTC-USDT", "BTC-USDT"),
            Verdict::Apply(_)
        ));
        assert!(matches!(
            verdict(b"ETH-USDT", "BTC-USDT"),
            Verdict::Rejected(Rejection {
                dead_letter: true,
                ..
            })
        ));
        assert!(matches!(
            verdict(b"DOGE-USDT", "DOGE-USDT"),
            Verdict::Rejected(Rejection {
                dead_letter: false,
                ..
            })
        ));
        assert!(matches!(
            classify(&msg(b"BTC-USDT", None), &config, now),
            Verdict::Undecodable(_)
        ));
    }
}
