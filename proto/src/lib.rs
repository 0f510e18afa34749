//! The `candles.v1` wire contract, generated from `proto/candles/v1/candles.proto`, and the one
//! place where wire messages convert to and from the domain types of `candles-core`.
//!
//! Decimals travel as their exact text; times as `google.protobuf.Timestamp`.
#![forbid(unsafe_code)]

use candles_core::{Candle, Decimal, Exchange, Interval, Micros, Pair, Side, Source, Trade};
use std::str::FromStr;

/// Generated code for package `candles.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("candles.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("candles_descriptor");
}

pub mod verify;

/// Why a wire message could not become a domain value. The message names the field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value}: {reason}")]
pub struct DecodeError {
    /// The field that was wrong.
    pub field: &'static str,
    /// Its value, as [`candles_core::excerpt`] shows it (quoted, cut when long).
    pub value: String,
    /// What was wrong.
    pub reason: String,
}

fn bad(field: &'static str, value: impl ToString, reason: impl ToString) -> DecodeError {
    DecodeError {
        field,
        value: candles_core::excerpt(&value.to_string()),
        reason: reason.to_string(),
    }
}

/// A domain timestamp as a protobuf one.
pub fn timestamp(t: Micros) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_secs_nanos();
    prost_types::Timestamp { seconds, nanos }
}

/// A protobuf timestamp as microseconds (sub-microsecond digits are dropped).
pub fn micros(
    field: &'static str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Micros, DecodeError> {
    let t = t.ok_or_else(|| bad(field, "", "missing"))?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(bad(field, format!("{t:?}"), "nanos out of range"));
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1_000)))
        .map(Micros)
        .ok_or_else(|| bad(field, format!("{t:?}"), "out of range"))
}

/// A domain interval as a protobuf duration.
pub fn duration(i: Interval) -> prost_types::Duration {
    let us = i.micros();
    prost_types::Duration {
        seconds: us / 1_000_000,
        nanos: ((us % 1_000_000) * 1_000) as i32,
    }
}

/// A protobuf duration as an interval (sub-microsecond digits are dropped); missing or not
/// positive is an error naming the field `interval`.
pub fn interval_from(d: Option<&prost_types::Duration>) -> Result<Interval, DecodeError> {
    let d = d.ok_or_else(|| bad("interval", "", "missing"))?;
    let us = d
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(d.nanos / 1_000));
    Interval::from_micros(us).ok_or_else(|| bad("interval", format!("{d:?}"), "must be positive"))
}

fn decimal(field: &'static str, text: &str) -> Result<Decimal, DecodeError> {
    Decimal::from_str_exact(text).map_err(|e| bad(field, text, e))
}

impl From<&Trade> for v1::Trade {
    fn from(t: &Trade) -> Self {
        v1::Trade {
            exchange: t.exchange.as_str().to_string(),
            pair: t.pair.to_string(),
            trade_id: t.id,
            price: t.price.to_string(),
            quantity: t.quantity.to_string(),
            side: match t.side {
                Side::Buy => v1::Side::Buy,
                Side::Sell => v1::Side::Sell,
                Side::Unknown => v1::Side::Unspecified,
            } as i32,
            trade_time: Some(timestamp(t.time)),
            received_time: Some(timestamp(t.received)),
            complete_since: t.complete_since.map(timestamp),
            after_unfilled_gap: t.after_unfilled_gap,
        }
    }
}

impl TryFrom<&v1::Trade> for Trade {
    type Error = DecodeError;
    fn try_from(t: &v1::Trade) -> Result<Self, Self::Error> {
        let price = decimal("price", &t.price)?;
        let quantity = decimal("quantity", &t.quantity)?;
        if price <= Decimal::ZERO {
            return Err(bad("price", &t.price, "must be greater than zero"));
        }
        if quantity <= Decimal::ZERO {
            return Err(bad("quantity", &t.quantity, "must be greater than zero"));
        }
        Ok(Trade {
            exchange: Exchange::from_str(&t.exchange)
                .map_err(|e| bad("exchange", &t.exchange, e))?,
            pair: Pair::parse(&t.pair).map_err(|e| bad("pair", &t.pair, e))?,
            id: t.trade_id,
            price,
            quantity,
            side: match v1::Side::try_from(t.side) {
                Ok(v1::Side::Buy) => Side::Buy,
                Ok(v1::Side::Sell) => Side::Sell,
                Ok(v1::Side::Unspecified) => Side::Unknown,
                Err(_) => return Err(bad("side", t.side, "unknown enum value")),
            },
            time: micros("trade_time", t.trade_time.as_ref())?,
            received: micros("received_time", t.received_time.as_ref())?,
            complete_since: t
                .complete_since
                .as_ref()
                .map(|since| micros("complete_since", Some(since)))
                .transpose()?,
            after_unfilled_gap: t.after_unfilled_gap,
        })
    }
}

impl From<&Candle> for v1::Candle {
    fn from(c: &Candle) -> Self {
        v1::Candle {
            pair: c.pair.to_string(),
            source: c.source.as_str().to_string(),
            interval: Some(duration(c.interval)),
            start: Some(timestamp(c.start)),
            end: Some(timestamp(c.end())),
            open: c.open.normalize().to_string(),
            high: c.high.normalize().to_string(),
            low: c.low.normalize().to_string(),
            close: c.close.normalize().to_string(),
            volume: c.volume.normalize().to_string(),
            quote_volume: c.quote_volume.normalize().to_string(),
            trades: c.trades,
            vwap: c.vwap().map(|v| v.to_string()).unwrap_or_default(),
            buy_volume: c.buy_volume.normalize().to_string(),
            sell_volume: c.sell_volume.normalize().to_string(),
            r#final: c.is_final,
            published_at: None,
            partial: c.partial,
        }
    }
}

impl TryFrom<&v1::Candle> for Candle {
    type Error = DecodeError;
    fn try_from(c: &v1::Candle) -> Result<Self, Self::Error> {
        Ok(Candle {
            pair: Pair::parse(&c.pair).map_err(|e| bad("pair", &c.pair, e))?,
            source: Source::from_str(&c.source).map_err(|e| bad("source", &c.source, e))?,
            interval: interval_from(c.interval.as_ref())?,
            start: micros("start", c.start.as_ref())?,
            open: decimal("open", &c.open)?,
            high: decimal("high", &c.high)?,
            low: decimal("low", &c.low)?,
            close: decimal("close", &c.close)?,
            volume: decimal("volume", &c.volume)?,
            quote_volume: decimal("quote_volume", &c.quote_volume)?,
            buy_volume: decimal("buy_volume", &c.buy_volume)?,
            sell_volume: decimal("sell_volume", &c.sell_volume)?,
            trades: c.trades,
            is_final: c.r#final,
            partial: c.partial,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn trade_round_trips_exactly_through_protobuf_bytes() {
        let pair = Pair::parse("btcusdt").unwrap();
        let mut t = Trade::new(
            Exchange::Kraken,
            pair,
            42,
            "43381.54000000",
            "0.10820000",
            Side::Sell,
            Micros(1_706_602_794_681_123),
        )
        .unwrap();
        t.received = Micros(1_706_602_794_700_000);
        let bytes = v1::Trade::from(&t).encode_to_vec();
        let back = Trade::try_from(&v1::Trade::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.price.to_string(), "43381.54000000");
        // The stream marks travel too.
        t.complete_since = Some(Micros(1_706_602_760_000_000));
        t.after_unfilled_gap = true;
        let bytes = v1::Trade::from(&t).encode_to_vec();
        let back = Trade::try_from(&v1::Trade::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn bad_trades_name_the_field() {
        let mut wire = v1::Trade::from(
            &Trade::new(
                Exchange::Binance,
                Pair::parse("ETH-USDT").unwrap(),
                1,
                "1",
                "1",
                Side::Buy,
                Micros(0),
            )
            .unwrap(),
        );
        wire.price = "1.0e".into();
        assert!(
            Trade::try_from(&wire)
                .unwrap_err()
                .to_string()
                .contains("price")
        );
        wire.price = "1".into();
        wire.pair = "nonsense".into();
        assert!(
            Trade::try_from(&wire)
                .unwrap_err()
                .to_string()
                .contains("pair")
        );
        wire.pair = "ETH-USDT".into();
        wire.trade_time = None;
        assert!(
            Trade::try_from(&wire)
                .unwrap_err()
                .to_string()
                .contains("trade_time")
        );
    }

    #[test]
    fn candle_round_trips() {
        let pair = Pair::parse("SOL-USDT").unwrap();
        let mut c = Candle::flat(
            pair,
            Source::Exchange(Exchange::Coinbase),
            Interval::seconds(5),
            Micros(10_000_000),
            Decimal::from_str("101.5").unwrap(),
        );
        c.volume = Decimal::from_str("2").unwrap();
        c.quote_volume = Decimal::from_str("203").unwrap();
        let wire = v1::Candle::from(&c);
        assert_eq!(wire.vwap, "101.5");
        assert_eq!(Candle::try_from(&wire).unwrap(), c);
        c.partial = true;
        let wire = v1::Candle::from(&c);
        assert!(wire.partial);
        assert_eq!(Candle::try_from(&wire).unwrap(), c);
    }
}
