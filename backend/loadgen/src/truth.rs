//! Ground truth from the simulators' trade logs (`exchange-sim --trade-log`): one JSON object per
//! generated trade, with `exchange`, `pair` and `time_us` (the wall-clock time the simulator stamped when it
//! generated the trade, just before sending it).

use crate::stats::WindowKey;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;

#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    exchange: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pair: std::borrow::Cow<'a, str>,
    time_us: i64,
}

/// Send times of the generated trades of every (series, window), ascending. The series is the
/// pair (`BTC-USDT`: the composite of all exchanges) or [`exchange_series`] (one exchange).
pub type SendTimes = BTreeMap<WindowKey, Vec<i64>>;

/// Adds the trades of the log at `path` to `out`, placed in windows of `interval_us`.
/// Returns how many trades it read.
pub fn read_trade_log(path: &Path, interval_us: i64, out: &mut SendTimes) -> Result<u64> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open trade log {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let Ok(t) = serde_json::from_str::<Line<'_>>(line.trim_end()) else {
            continue; // a torn last line of a killed simulator
        };
        let start = t.time_us.div_euclid(interval_us) * interval_us;
        out.entry((exchange_series(&t.pair, &t.exchange), start))
            .or_default()
            .push(t.time_us);
        out.entry((t.pair.into_owned(), start))
            .or_default()
            .push(t.time_us);
        n += 1;
    }
    Ok(n)
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
        let path = dir.join("t.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"exchange":"binance","pair":"BTC-USDT","id":1,"price":"1","quantity":"1","side":"buy","time_us":1500000}"#,
                "\n",
                r#"{"exchange":"binance","pair":"BTC-USDT","id":2,"price":"1","quantity":"1","side":"buy","time_us":1200000}"#,
                "\n",
                r#"{"exchange":"binance","pair":"ETH-USDT","id":1,"price":"1","quantity":"1","side":"buy","time_us":2000000}"#,
                "\n",
                r#"{"exchange":"binance","pair":"ETH"#
            ),
        )
        .unwrap();
        let mut times = SendTimes::new();
        assert_eq!(read_trade_log(&path, 1_000_000, &mut times).unwrap(), 3);
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
