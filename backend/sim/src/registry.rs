//! The simulator's exchanges: one line per exchange, its [`Venue`].

use crate::venue::Venue;
use candles_core::Exchange;

/// The venue for `exchange`.
pub(crate) fn venue(exchange: Exchange) -> Box<dyn Venue> {
    match exchange {
        Exchange::Binance => Box::new(crate::binance::Binance),
        Exchange::Kraken => Box::new(crate::kraken::Kraken),
        Exchange::Coinbase => Box::new(crate::coinbase::Coinbase),
    }
}
