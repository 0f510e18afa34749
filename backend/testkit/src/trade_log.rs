//! The simulator's trade log (`exchange-sim --trade-log FILE`): one JSON object per generated
//! trade, `{"exchange","pair","id","price","quantity","side","time_us"}`, where `time_us` is the
//! wall-clock time the simulator stamped just before sending it. The ground truth of the
//! full-stack tests and of the load generator.

use anyhow::{Context as _, Result};
use candles_core::{Exchange, Micros, Pair, Side, Trade};
use std::io::BufRead as _;
use std::path::Path;

/// One line of a trade log.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Entry {
    /// The simulated exchange.
    pub exchange: Exchange,
    /// The canonical pair.
    pub pair: Pair,
    /// The trade id.
    pub id: u64,
    /// Price, as the simulator wrote it.
    pub price: String,
    /// Quantity, as the simulator wrote it.
    pub quantity: String,
    /// Taker side.
    pub side: Side,
    /// Trade time = send time, µs since the Unix epoch.
    pub time_us: i64,
}

impl Entry {
    /// The trade, with its receive time set to its trade time.
    pub fn trade(&self) -> Result<Trade> {
        let mut t = Trade::new(
            self.exchange,
            self.pair,
            self.id,
            &self.price,
            &self.quantity,
            self.side,
            Micros(self.time_us),
        )?;
        t.received = t.time;
        Ok(t)
    }
}

/// Calls `visit` with every entry of the log at `path`, in file order. A last line without its
/// newline that does not parse (a simulator killed mid-write) is skipped; any other bad line is
/// an error naming the file and line. Returns how many entries it read.
pub fn for_each(path: &Path, mut visit: impl FnMut(Entry)) -> Result<u64> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open trade log {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let (mut n, mut number) = (0u64, 0u64);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(n);
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line.trim_end()) {
            Ok(e) => {
                visit(e);
                n += 1;
            }
            Err(_) if !line.ends_with('\n') => return Ok(n),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{}:{number}: not a trade log line: {line}", path.display())
                });
            }
        }
    }
}

/// Every trade of the log at `path` (see [`for_each`]).
pub fn read_trades(path: &Path) -> Result<Vec<Trade>> {
    let mut out = Vec::new();
    let mut bad = None;
    for_each(path, |e| match e.trade() {
        Ok(t) => out.push(t),
        Err(err) => {
            bad.get_or_insert_with(|| format!("{}: bad trade {e:?}: {err:#}", path.display()));
        }
    })?;
    match bad {
        Some(msg) => anyhow::bail!(msg),
        None => Ok(out),
    }
}

/// The number of complete lines of a file (0 when it cannot be read).
pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"exchange":"binance","pair":"BTC-USDT","id":1,"price":"1.5","quantity":"2","side":"buy","time_us":1500000}"#,
                "\n",
                r#"{"exchange":"kraken","pair":"ETH-USDT","id":2,"price":"1","quantity":"1","side":"sell","time_us":1200000}"#,
                "\n",
                r#"{"exchange":"binance","pair":"ETH"#
            ),
        )
        .unwrap();
        let trades = read_trades(&path).unwrap();
        assert_eq!(trades.len(), 2);
        assert_eq!(trades[0].exchange, Exchange::Binance);
        assert_eq!(trades[1].time, Micros(1_200_000));
        assert_eq!(count_lines(&path), 2);
        std::fs::write(&path, "not json\n{}\n").unwrap();
        assert!(read_trades(&path).is_err());
    }
}
