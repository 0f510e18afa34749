//! Each exchange's own 1-minute candles, computed exactly (decimals) from ALL of the
//! simulator's trades — also those kept off the WebSocket (`--omit-split-trades`,
//! `--drop-ratio`) and those hidden from it (`--hide-ratio`) — in that exchange's format:
//!
//! - Binance `GET /api/v3/klines?symbol=&interval=1m&startTime=&endTime=&limit=`: rows
//!   `[open time, "o", "h", "l", "c", "volume", close time, "quote volume", trades,
//!   "taker buy base", "taker buy quote", "0"]`, oldest first, 8-decimal text; the current
//!   minute is included (not final).
//! - Kraken `GET /0/public/OHLC?pair=&interval=1&since=`: `{"error":[],"result":{KEY:[[time,
//!   "o","h","l","c","vwap","volume",count],…],"last":T}}`, oldest first; the newest row is the
//!   current minute (not final; a flat row at the last close when it has no trade yet), `last`
//!   the time of the newest final row. VWAP is rounded (half away from zero) to the pair's
//!   price decimals, volume written with 8 decimals.
//! - Coinbase `GET /products/{id}/candles?granularity=60&start=&end=`: `[[time, low, high, open,
//!   close, volume],…]` as JSON numbers, newest first, at most 300.
//!
//! Minutes without a trade have no row (except Kraken's current minute), as Coinbase does; the
//! real Binance and Kraken write flat rows for them, which the verifier does not need.

use crate::market::Market;
use candles_core::{Decimal, Micros, Pair, Side, Trade};
use rust_decimal::RoundingStrategy;

/// One minute in microseconds.
const MINUTE: i64 = 60_000_000;

/// One minute's candle, exact.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Minute {
    /// Window start.
    pub start: Micros,
    /// First trade's price (by time, then id).
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last trade's price.
    pub close: Decimal,
    /// Σ quantity.
    pub volume: Decimal,
    /// Σ price × quantity.
    pub quote_volume: Decimal,
    /// Σ quantity of taker buys.
    pub buy_volume: Decimal,
    /// Σ price × quantity of taker buys.
    pub buy_quote: Decimal,
    /// Number of trades.
    pub trades: u64,
    /// The most decimals among its prices.
    pub price_dp: u32,
}

/// The candles of the minutes that have trades, oldest first (`trades` sorted by time, then id).
pub(crate) fn minutes(trades: &[Trade]) -> Vec<Minute> {
    let mut out: Vec<Minute> = Vec::new();
    for t in trades {
        let start = Micros(t.time.0.div_euclid(MINUTE) * MINUTE);
        let quote = t.price * t.quantity;
        let buy = t.side == Side::Buy;
        match out.last_mut() {
            Some(m) if m.start == start => {
                m.high = m.high.max(t.price);
                m.low = m.low.min(t.price);
                m.close = t.price;
                m.volume += t.quantity;
                m.quote_volume += quote;
                if buy {
                    m.buy_volume += t.quantity;
                    m.buy_quote += quote;
                }
                m.trades += 1;
                m.price_dp = m.price_dp.max(t.price.scale());
            }
            _ => out.push(Minute {
                start,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: t.quantity,
                quote_volume: quote,
                buy_volume: if buy { t.quantity } else { Decimal::ZERO },
                buy_quote: if buy { quote } else { Decimal::ZERO },
                trades: 1,
                price_dp: t.price.scale(),
            }),
        }
    }
    out
}

/// The pair's candles whose start is in `[from, to]`.
fn candles(market: &Market, pair: Pair, from: Micros, to: Micros) -> Vec<Minute> {
    let trades = market.candle_trades(pair, from, Micros(to.0.saturating_add(MINUTE)));
    minutes(&trades)
}

/// `d` written with exactly `dp` decimals (rounded half away from zero).
fn fixed(d: Decimal, dp: u32) -> Decimal {
    let mut d = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(dp);
    d
}

/// A required or optional integer query parameter.
fn int_param(request: &crate::http::Request, name: &str) -> Result<Option<i64>, String> {
    match request.param(name) {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("Invalid parameter '{name}'.")),
    }
}

/// Binance klines body for `pair`; `Err` is the message of Binance's 400 answer.
pub(crate) fn binance(
    request: &crate::http::Request,
    pair: Pair,
    market: &Market,
) -> Result<String, String> {
    if request.param("interval").as_deref() != Some("1m") {
        return Err("Invalid interval.".to_string());
    }
    let limit = int_param(request, "limit")?.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Err("Invalid parameter 'limit'.".to_string());
    }
    let start = int_param(request, "startTime")?.map(Micros::from_millis);
    let end = int_param(request, "endTime")?.map(Micros::from_millis);
    let all = candles(
        market,
        pair,
        start.unwrap_or(Micros(i64::MIN / 2)),
        end.unwrap_or(Micros(i64::MAX / 2)),
    );
    let limit = limit as usize;
    // From `startTime` on: the first `limit`; otherwise the newest `limit`.
    let page = if start.is_some() {
        &all[..all.len().min(limit)]
    } else {
        &all[all.len().saturating_sub(limit)..]
    };
    let rows: Vec<String> = page
        .iter()
        .map(|m| {
            let open_ms = m.start.as_millis();
            format!(
                r#"[{open_ms},"{}","{}","{}","{}","{}",{},"{}",{},"{}","{}","0"]"#,
                fixed(m.open, 8),
                fixed(m.high, 8),
                fixed(m.low, 8),
                fixed(m.close, 8),
                fixed(m.volume, 8),
                open_ms + 59_999,
                fixed(m.quote_volume, 8),
                m.trades,
                fixed(m.buy_volume, 8),
                fixed(m.buy_quote, 8),
            )
        })
        .collect();
    Ok(format!("[{}]", rows.join(",")))
}

/// Kraken OHLC `result` for `pair` under `key` (its REST name); `Err` is Kraken's error text.
pub(crate) fn kraken(
    request: &crate::http::Request,
    pair: Pair,
    key: &str,
    market: &Market,
) -> Result<String, String> {
    if request.param("interval").is_some_and(|i| i != "1") {
        return Err("EGeneral:Invalid arguments:interval".to_string());
    }
    let since = int_param(request, "since")
        .map_err(|_| "EGeneral:Invalid arguments:since".to_string())?
        .unwrap_or(0);
    let now = Micros::now();
    let current = Micros(now.0.div_euclid(MINUTE) * MINUTE);
    let from = Micros(since.saturating_mul(1_000_000).saturating_add(1));
    let mut rows: Vec<Minute> = candles(market, pair, from, current);
    rows.retain(|m| m.start <= current);
    if rows.last().is_none_or(|m| m.start < current) {
        let close = rows.last().map(|m| m.close).or_else(|| {
            market
                .candle_trades(pair, Micros(0), current)
                .last()
                .map(|t| t.price)
        });
        rows.extend(close.map(|c| flat(current, c)));
    }
    let last = rows
        .len()
        .checked_sub(2)
        .map_or(since, |i| rows[i].start.0 / 1_000_000);
    let text: Vec<String> = rows
        .iter()
        .map(|m| {
            let vwap = if m.volume.is_zero() {
                Decimal::ZERO
            } else {
                fixed(m.quote_volume / m.volume, m.price_dp)
            };
            format!(
                r#"[{},"{}","{}","{}","{}","{}","{}",{}]"#,
                m.start.0 / 1_000_000,
                m.open,
                m.high,
                m.low,
                m.close,
                vwap,
                fixed(m.volume, 8),
                m.trades
            )
        })
        .collect();
    Ok(format!(
        r#"{{"error":[],"result":{{"{key}":[{}],"last":{last}}}}}"#,
        text.join(",")
    ))
}

/// A minute without trades: flat at `close`.
fn flat(start: Micros, close: Decimal) -> Minute {
    Minute {
        start,
        open: close,
        high: close,
        low: close,
        close,
        volume: Decimal::ZERO,
        quote_volume: Decimal::ZERO,
        buy_volume: Decimal::ZERO,
        buy_quote: Decimal::ZERO,
        trades: 0,
        price_dp: close.scale(),
    }
}

/// A Coinbase time parameter: unix seconds or RFC 3339.
fn coinbase_time(text: &str) -> Option<Micros> {
    text.parse::<i64>()
        .ok()
        .map(|s| Micros(s * 1_000_000))
        .or_else(|| Micros::parse_rfc3339(text).ok())
}

/// Coinbase candles body for `pair`; `Err` is the message of Coinbase's 400 answer.
pub(crate) fn coinbase(
    request: &crate::http::Request,
    pair: Pair,
    market: &Market,
) -> Result<String, String> {
    if request.param("granularity").as_deref() != Some("60") {
        return Err("Unsupported granularity".to_string());
    }
    let time = |name: &str| match request.param(name) {
        None => Ok(None),
        Some(text) => coinbase_time(&text)
            .map(Some)
            .ok_or_else(|| format!("Invalid {name}")),
    };
    let end = time("end")?.unwrap_or_else(Micros::now);
    let start = time("start")?.unwrap_or(Micros(end.0 - 300 * MINUTE));
    if start > end {
        return Err("start must be before end".to_string());
    }
    let all = candles(market, pair, start, end);
    let rows: Vec<String> = all
        .iter()
        .rev()
        .take(300)
        .map(|m| {
            format!(
                "[{},{},{},{},{},{}]",
                m.start.0 / 1_000_000,
                m.low,
                m.high,
                m.open,
                m.close,
                m.volume.normalize()
            )
        })
        .collect();
    Ok(format!("[{}]", rows.join(",")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::Exchange;

    fn trade(id: u64, secs: i64, price: &str, qty: &str, side: Side) -> Trade {
        let pair = Pair::parse("BTC-USDT").unwrap();
        let time = Micros(secs * 1_000_000);
        Trade::new(Exchange::Binance, pair, id, price, qty, side, time).unwrap()
    }

    #[test]
    fn minutes_are_exact_and_split_at_minute_boundaries() {
        let trades = [
            trade(1, 60, "10.5", "1", Side::Buy),
            trade(2, 70, "12", "0.5", Side::Sell),
            trade(3, 119, "9.25", "2", Side::Buy),
            trade(4, 120, "11", "1", Side::Sell),
        ];
        let m = minutes(&trades);
        assert_eq!(m.len(), 2);
        let first = &m[0];
        assert_eq!(first.start, Micros(60_000_000));
        assert_eq!(
            [first.open, first.high, first.low, first.close],
            ["10.5", "12", "9.25", "9.25"].map(|s| s.parse::<Decimal>().unwrap())
        );
        assert_eq!(first.volume.to_string(), "3.5");
        assert_eq!(first.quote_volume.to_string(), "35.00");
        assert_eq!(first.buy_volume.to_string(), "3");
        assert_eq!(first.buy_quote.to_string(), "29.00");
        assert_eq!((first.trades, first.price_dp), (3, 2));
        assert_eq!((m[1].start, m[1].trades), (Micros(120_000_000), 1));
    }

    #[test]
    fn fixed_decimals_round_half_away_from_zero() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(fixed(d("1.25"), 1).to_string(), "1.3");
        assert_eq!(fixed(d("2"), 8).to_string(), "2.00000000");
    }
}
