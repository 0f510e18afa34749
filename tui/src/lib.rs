//! candles-tui: the client of the candles system.
//!
//! - A live candlestick dashboard (ratatui + crossterm): [`app`] holds the state (no terminal),
//!   [`ui`] renders it as a pure function (each pair's [`panel`], link
//!   [`labels`]), [`event`] runs the one loop over one event enum.
//!   [`inspect`] is the readout of the candle under the cursor; [`overlay`] the VWAP and
//!   moving-average lines; [`venues`] each exchange against the composite; [`settings`] what
//!   is remembered between runs.
//!   The chart is our own widget ([`chart`]) over a pure, tested price scale ([`scale`]).
//! - Verdicts on each exchange's 1-minute candles against the exchange's own ([`verification`]),
//!   shown as a badge on each panel ([`badge`]).
//! - `--plain` / `--json`: one line per finalized candle and per verdict ([`output`]).
//! - Data from candles-service over gRPC ([`client`]), or `--embedded`: connectors and a candle
//!   engine inside this process ([`embedded`], [`connectors`], both configured by
//!   [`embedded_config`]; [`embedded_history`] keeps its finals for interval switches;
//!   [`embedded_verify`] checks its exchanges' 1-minute candles).
//! - [`logging`]: the log file (never the screen; its path is shown with any problem).
//! - [`cli`]: flags (each with a `CANDLES_*` environment variable); [`modes`] runs what they chose.
#![forbid(unsafe_code)]

pub mod app;
pub mod badge;
pub mod chart;
pub mod cli;
pub mod client;
pub mod connectors;
pub mod embedded;
pub mod embedded_config;
pub mod embedded_history;
pub mod embedded_verify;
pub mod event;
pub mod inspect;
pub mod labels;
pub mod logging;
pub mod modes;
pub mod output;
pub mod overlay;
pub mod panel;
pub mod scale;
pub mod settings;
pub mod ui;
pub mod venues;
pub mod verification;

pub use app::{App, Event, Link, LinkState};
