//! The domain of the candles system and its candle engine.
//!
//! Everything here is pure: no I/O, no async runtime, no clock of its own. Time comes in as
//! arguments ([`time::Micros`]), which is what lets the same engine run live (wall clock) and
//! replay a recorded day at full speed (event time) with identical results.
//!
//! - [`pair`]: canonical pairs (`BTC-USDT`) and parsing of every accepted spelling.
//! - [`market`]: exchanges, candle sources and taker sides.
//! - [`trade`]: the normalized trade, with exact decimal price and quantity.
//! - [`time`]: microsecond timestamps, intervals (`500ms`, `5s`, `1m`) and window alignment.
//! - [`candle`]: the OHLC candle and its identity.
//! - [`symbols`]: each exchange's names for a pair.
//! - [`intervals`]: the set of intervals one engine builds (`1s,5s,1m,...`), finest first.
//! - [`engine`]: trades in, candles out, for every interval of the set.
//! - [`finality`]: when windows become final (end plus grace): the instant a loop sleeps until.
//! - [`throttle`]: live updates at most once per update interval (leading and trailing edge).
//! - [`retry`]: the doubling delay of every retry loop against a dependency.
//! - [`verify`]: the verdict on a final 1-minute candle against the exchange's own candle.
//! - [`bounds`]: what is accepted from outside (short excerpts of untrusted text, plausible trade
//!   times).
#![forbid(unsafe_code)]

pub mod bounds;
pub mod candle;
pub mod engine;
pub mod finality;
pub mod intervals;
pub mod market;
pub mod pair;
pub mod retry;
pub mod symbols;
pub mod throttle;
pub mod time;
pub mod trade;
pub mod verify;

pub use bounds::{TimeBounds, excerpt};
pub use candle::{Candle, CandleId};
pub use engine::{ClockMode, Engine, EngineConfig, Outcome};
pub use intervals::{Intervals, IntervalsError};
pub use market::{Exchange, Side, Source};
pub use pair::Pair;
pub use rust_decimal::Decimal;
pub use time::{Interval, Micros};
pub use trade::Trade;
