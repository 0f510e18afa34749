//! The normalized trade: what every connector produces and the engine consumes.

use crate::market::{Exchange, Side};
use crate::pair::Pair;
use crate::time::Micros;
use rust_decimal::Decimal;

/// One trade, normalized. Price and quantity are exact decimals parsed from the exchange's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Where it happened.
    pub exchange: Exchange,
    /// Canonical pair.
    pub pair: Pair,
    /// The exchange's trade id: strictly increasing per exchange and pair, used for ordering
    /// ties and for gap detection.
    pub id: u64,
    /// Price in the quote asset.
    pub price: Decimal,
    /// Quantity in the base asset.
    pub quantity: Decimal,
    /// Taker side.
    pub side: Side,
    /// The exchange's trade time. Candles place trades by this, never by arrival.
    pub time: Micros,
    /// When the connector received it.
    pub received: Micros,
    /// Set on the first trade of a stream that starts cold (nothing of this exchange and pair
    /// published before it): the connector has every trade of the pair from this instant on, so
    /// a window of this exchange starting before it is partial. `None` on every other trade.
    pub complete_since: Option<Micros>,
    /// Trades just before this one are missing and could not be fetched (a gap REST could not
    /// fill): the window holding it is partial.
    pub after_unfilled_gap: bool,
}

/// A decimal field that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {input}: {reason}")]
pub struct DecimalError {
    /// Which field ("price", "quantity").
    pub field: &'static str,
    /// The text given, as [`crate::excerpt`] shows it (quoted, cut when long).
    pub input: String,
    /// What was wrong.
    pub reason: &'static str,
}

/// Parses an exchange's decimal text exactly (no floating point), e.g. `"43381.54000000"` or
/// `"1.5e-3"`; the value must be positive.
pub fn parse_positive_decimal(field: &'static str, text: &str) -> Result<Decimal, DecimalError> {
    let err = |reason| DecimalError {
        field,
        input: crate::excerpt(text),
        reason,
    };
    let value = Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| err("not an exact decimal number"))?;
    if value <= Decimal::ZERO {
        return Err(err("must be greater than zero"));
    }
    Ok(value)
}

impl Trade {
    /// A trade with `received == time` and no marks (not cold, no unfilled gap before it), for
    /// tests and replays.
    pub fn new(
        exchange: Exchange,
        pair: Pair,
        id: u64,
        price: &str,
        quantity: &str,
        side: Side,
        time: Micros,
    ) -> Result<Trade, DecimalError> {
        Ok(Trade {
            exchange,
            pair,
            id,
            price: parse_positive_decimal("price", price)?,
            quantity: parse_positive_decimal("quantity", quantity)?,
            side,
            time,
            received: time,
            complete_since: None,
            after_unfilled_gap: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_positive() {
        assert_eq!(
            parse_positive_decimal("price", "43381.54000000")
                .unwrap()
                .to_string(),
            "43381.54000000"
        );
        assert_eq!(
            parse_positive_decimal("price", "1.5e-3")
                .unwrap()
                .to_string(),
            "0.0015"
        );
        let sum = parse_positive_decimal("q", "0.1").unwrap()
            + parse_positive_decimal("q", "0.2").unwrap();
        assert_eq!(sum.to_string(), "0.3");
        for bad in ["", "abc", "0", "-1", "1.2.3", "NaN"] {
            let msg = parse_positive_decimal("price", bad)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("price") && msg.contains(&format!("{bad:?}")),
                "{msg}"
            );
        }
    }
}
