//! Ground truth from the simulators' trade logs (`candles_testkit::trade_log`): the send times
//! (`time_us`, stamped by the simulator just before sending) of every (series, window).

use crate::stats::WindowKey;
use anyhow::Result;
use candles_core::{Interval, Micros};
use candles_testkit::trade_log;
use std::collections::BTreeMap;
use std::path::Path;

/// Send times of the generated trades of every (series, window), ascending. The series is the
/// pair (`BTC-USDT`: the composite of all exchanges) or [`exchange_series`] (one exchange).
pub type SendTimes = BTreeMap<WindowKey, Vec<i64>>;

/// Adds the trades of the log at `path` to `out`, placed in windows of `interval`.
/// Returns how many trades it read.
pub fn read_trade_log(path: &Path, interval: Interval, out: &mut SendTimes) -> Result<u64> {
    trade_log::for_each(path, |t| {
        let start = interval.window_start(Micros(t.time_us)).0;
        let pair = t.pair.to_string();
        out.entry((exchange_series(&pair, t.exchange.as_str()), start))
            .or_default()
            .push(t.time_us);
        out.entry((pair, start)).or_default().push(t.time_us);
    })
}

/// The series key of one exchange's candles of `pair`: `PAIR/exchange`.
pub fn exchange_series(pair: &str, exchange: &str) -> String {
    format!("{pair}/{exchange}")
}

/// Sorts every window's send times (call once after reading all logs).
pub fn finish(times: &mut SendTimes) {
    for v in times.values_mut() {
        v.sort_unstable();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trades_are_placed_in_windows() {
        let dir = std::env::temp_dir().join(format!("loadgen-truth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl"); // the last line is torn: a killed simulator
        let line = |pair: &str, id: u32, time_us: u32| {
            format!(
                r#"{{"exchange":"binance","pair":"{pair}","id":{id},"price":"1","quantity":"1","side":"buy","time_us":{time_us}}}"#
            )
        };
        let text = [
            line("BTC-USDT", 1, 1_500_000),
            line("BTC-USDT", 2, 1_200_000),
            line("ETH-USDT", 1, 2_000_000),
            r#"{"exchange":"binance","pair":"ETH"#.to_string(),
        ];
        std::fs::write(&path, text.join("\n")).unwrap();
        let mut times = SendTimes::new();
        assert_eq!(
            read_trade_log(&path, Interval::seconds(1), &mut times).unwrap(),
            3
        );
        finish(&mut times);
        assert_eq!(
            times[&("BTC-USDT".to_string(), 1_000_000)],
            vec![1_200_000, 1_500_000]
        );
        assert_eq!(times[&("ETH-USDT".to_string(), 2_000_000)], vec![2_000_000]);
        assert_eq!(
            times[&("BTC-USDT/binance".to_string(), 1_000_000)],
            vec![1_200_000, 1_500_000]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
