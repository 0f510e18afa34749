//! Fuzzes every kraken parser: WebSocket frames, REST trade pages, listing answers.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::run(candles_connector::exchange::venue(candles_core::Exchange::Kraken), data);
});
