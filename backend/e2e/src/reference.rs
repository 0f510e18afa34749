//! Binance's real XRPETH data (`testdata/reference-data/binance-xrpeth/`, see its README) as the
//! full-stack tests use it: the aggregate trades turned into Binance WebSocket `@trade` messages
//! for `exchange-sim --replay`, Binance's own klines read exactly (JSON number text parsed as
//! decimals), and the final candles a client received judged against those klines.

use crate::client::Got;
use anyhow::{Context as _, Result, bail, ensure};
use candles_core::{Decimal, Interval, Micros};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

/// The aggregate trades file (columns as Binance publishes them).
pub const TRADES_FILE: &str = "binance_XRPETH_aggTrades_2019-10-11_13.csv";

/// Binance's one-minute klines for the same time.
pub const KLINES_1M_FILE: &str = "binance_XRPETH_klines_1m_2019-10-11_13.json";

/// Binance's five-minute klines for the same time.
pub const KLINES_5M_FILE: &str = "binance_XRPETH_klines_5m_2019-10-11_13.json";

/// The CSV header the conversion expects.
const HEADER: &str = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match";

/// `testdata/reference-data/binance-xrpeth/` of the workspace.
pub fn data_dir() -> PathBuf {
    candles_testkit::bins::workspace_root().join("testdata/reference-data/binance-xrpeth")
}

/// Reads `name` from [`data_dir`]; the error says how to restore the data.
pub fn read(name: &str) -> Result<String> {
    let path = data_dir().join(name);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: the reference data is part of the repository; restore it with `git checkout testdata`",
            path.display()
        )
    })
}

/// The aggregate trades of `csv` as Binance WebSocket `@trade` events, one per line, in file
/// (trade id) order: `t` = the aggregate trade id (contiguous, so the connector sees no gap),
/// `p`/`q` verbatim, `T` = `E` = the trade time, `m` = is_buyer_maker. Also returns the last
/// trade's time.
pub fn trade_messages(csv: &str) -> Result<(String, Micros)> {
    let mut lines = csv.lines();
    ensure!(lines.next() == Some(HEADER), "unexpected CSV header");
    let mut out = String::new();
    let mut last = None;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        ensure!(f.len() == 8, "not 8 columns: {line}");
        let id: u64 = f[0]
            .parse()
            .with_context(|| format!("trade id in {line}"))?;
        let time: i64 = f[5].parse().with_context(|| format!("time in {line}"))?;
        if !matches!(f[6], "true" | "false") {
            bail!("is_buyer_maker {:?} in {line}", f[6]);
        }
        let (price, qty, maker) = (f[1], f[2], f[6]);
        writeln!(
            out,
            r#"{{"e":"trade","E":{time},"s":"XRPETH","t":{id},"p":"{price}","q":"{qty}","T":{time},"m":{maker},"M":true}}"#
        )?;
        last = Some(Micros::from_millis(time));
    }
    Ok((out, last.context("no trades")?))
}

/// An exact decimal from a number's text, plain (`0.00141342`) or scientific (`1e-05`).
fn exact(text: &str) -> Result<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .with_context(|| format!("not an exact decimal: {text:?}"))
}

/// One Binance kline: window start and open, high, low, close, volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kline {
    /// Window start.
    pub start: Micros,
    /// Open, high, low, close, base volume.
    pub ohlcv: [Decimal; 5],
}

/// The field names of [`Kline::ohlcv`].
const FIELDS: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// Parses a klines file: `[[open_time_ms, open, high, low, close, volume], ...]`, each number's
/// text read exactly (serde_json's `arbitrary_precision` keeps it as written).
pub fn klines(json: &str) -> Result<Vec<Kline>> {
    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(json)?;
    rows.into_iter()
        .map(|row| {
            ensure!(row.len() == 6, "not 6 fields: {row:?}");
            let text = |i: usize| match &row[i] {
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => bail!("not a number: {other}"),
            };
            let mut ohlcv = [Decimal::ZERO; 5];
            for (i, v) in ohlcv.iter_mut().enumerate() {
                *v = exact(&text(i + 1)?)?;
            }
            Ok(Kline {
                start: Micros::from_millis(text(0)?.parse()?),
                ohlcv,
            })
        })
        .collect()
}

/// A received candle as a kline (start and its five values parsed exactly).
fn as_kline(c: &candles_proto::v1::Candle) -> Result<Kline> {
    let start = c.start.as_ref().context("no start")?;
    let mut ohlcv = [Decimal::ZERO; 5];
    let texts = [&c.open, &c.high, &c.low, &c.close, &c.volume];
    for (v, text) in ohlcv.iter_mut().zip(texts) {
        *v = exact(text)?;
    }
    Ok(Kline {
        start: Micros(start.seconds * 1_000_000 + i64::from(start.nanos) / 1_000),
        ohlcv,
    })
}

/// What one client received for one source, against the klines.
#[derive(Debug, Default)]
pub struct SourceReport {
    /// Final candles equal to their kline.
    pub equal: usize,
    /// Klines whose window closed (event time) with no final candle received.
    pub missing: Vec<Micros>,
    /// Candles differing from their kline, or unreadable, or of a window with no kline.
    pub wrong: Vec<String>,
    /// The same window received more than once on one stream.
    pub duplicates: usize,
    /// Finals of windows still open at the end (not judged).
    pub open: usize,
}

/// Judges `finals` (one interval's, as one client received them) against `klines`, per source
/// in `sources`: every kline whose window ended at or before `closed_by` (the last trade's time
/// minus the grace: those windows are final under the event clock) must be received, equal in
/// open, high, low, close and volume; finals of later windows are counted, not judged.
pub fn judge(
    klines: &[Kline],
    interval: Interval,
    closed_by: Micros,
    finals: &[Got],
    sources: &[&str],
) -> BTreeMap<String, SourceReport> {
    let by_start: HashMap<i64, &Kline> = klines.iter().map(|k| (k.start.0, k)).collect();
    let mut reports = BTreeMap::new();
    for &source in sources {
        let mut r = SourceReport::default();
        let mut seen: HashMap<(u32, i64), usize> = HashMap::new();
        let mut got: HashMap<i64, Kline> = HashMap::new();
        for g in finals.iter().filter(|g| g.candle.source == source) {
            match as_kline(&g.candle) {
                Err(e) => r
                    .wrong
                    .push(format!("unreadable candle {:?}: {e:#}", g.candle)),
                Ok(k) => {
                    *seen.entry((g.stream, k.start.0)).or_default() += 1;
                    got.insert(k.start.0, k);
                }
            }
        }
        r.duplicates = seen.values().map(|n| n - 1).sum();
        for (start, k) in &got {
            if interval.window_end(Micros(*start)).0 > closed_by.0 {
                r.open += 1;
                continue;
            }
            match by_start.get(start) {
                None => r
                    .wrong
                    .push(format!("{start}: a final with no Binance kline")),
                Some(want) if *want == k => r.equal += 1,
                Some(want) => r.wrong.push(kline_diff(want, k)),
            }
        }
        r.missing = klines
            .iter()
            .filter(|k| interval.window_end(k.start).0 <= closed_by.0)
            .filter(|k| !got.contains_key(&k.start.0))
            .map(|k| k.start)
            .collect();
        reports.insert(source.to_string(), r);
    }
    reports
}

/// `START: field want X, got Y; ...` for the fields of two klines that differ.
fn kline_diff(want: &Kline, got: &Kline) -> String {
    let fields: Vec<String> = FIELDS
        .iter()
        .zip(want.ohlcv.iter().zip(&got.ohlcv))
        .filter(|(_, (w, g))| w != g)
        .map(|(name, (w, g))| format!("{name} want {w}, got {g}"))
        .collect();
    format!(
        "{} ({}): {}",
        want.start.0,
        want.start.to_rfc3339(),
        fields.join("; ")
    )
}

impl SourceReport {
    /// Nothing missing, wrong or duplicated, and at least one candle judged.
    pub fn is_clean(&self) -> bool {
        self.equal > 0 && self.missing.is_empty() && self.wrong.is_empty() && self.duplicates == 0
    }

    /// One line of counts, then up to 10 lines of each problem.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} equal to Binance's klines, {} missing, {} wrong, {} duplicated, {} open windows not judged",
            self.equal,
            self.missing.len(),
            self.wrong.len(),
            self.duplicates,
            self.open
        );
        for m in self.missing.iter().take(10) {
            let _ = write!(out, "\n    missing {} ({})", m.0, m.to_rfc3339());
        }
        for w in self.wrong.iter().take(10) {
            let _ = write!(out, "\n    wrong {w}");
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trades_become_binance_trade_events() {
        let csv = format!(
            "{HEADER}\n13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,true,true\n"
        );
        let (lines, last) = trade_messages(&csv).unwrap();
        assert_eq!(
            lines,
            "{\"e\":\"trade\",\"E\":1570752011620,\"s\":\"XRPETH\",\"t\":13519807,\"p\":\"0.00141342\",\"q\":\"23.00000000\",\"T\":1570752011620,\"m\":true,\"M\":true}\n"
        );
        assert_eq!(last, Micros::from_millis(1_570_752_011_620));
        assert!(trade_messages("a,b\n1,2").is_err());
    }

    #[test]
    fn kline_numbers_are_read_exactly() {
        let k = klines("[[1570752000000,0.00141342,0.00141557,1e-05,0.00141418,1482.0]]").unwrap();
        assert_eq!(k[0].start, Micros::from_millis(1_570_752_000_000));
        assert_eq!(k[0].ohlcv[0].to_string(), "0.00141342");
        assert_eq!(k[0].ohlcv[2].to_string(), "0.00001");
        assert_eq!(k[0].ohlcv[4], Decimal::from(1482));
        assert!(klines("[[1, \"0.1\", 1, 1, 1, 1]]").is_err());
    }

    /// A received final of `source` for the window starting at `start` s, on stream `stream`.
    fn got(source: &str, start: i64, close: &str, stream: u32) -> Got {
        let candle = candles_proto::v1::Candle {
            source: source.into(),
            start: Some(candles_proto::timestamp(Micros(start * 1_000_000))),
            open: "1".into(),
            high: "2".into(),
            low: "1".into(),
            close: close.into(),
            volume: "3.0".into(),
            r#final: true,
            ..Default::default()
        };
        Got {
            candle,
            historical: true,
            stream,
        }
    }

    #[test]
    fn judging_finds_missing_wrong_duplicated_and_open_windows() {
        let kline = |start: i64| Kline {
            start: Micros(start * 1_000_000),
            ohlcv: [1, 2, 1, 2, 3].map(Decimal::from),
        };
        let klines = [kline(0), kline(60), kline(120), kline(180)];
        let minute = Interval::parse("1m").unwrap();
        // Windows [0,60), [60,120) and [120,180) are closed; [180,240) is open.
        let closed_by = Micros(200 * 1_000_000);
        let finals = [
            got("binance", 0, "2", 0),
            got("binance", 0, "2", 0),
            got("binance", 60, "2.5", 0),
            got("binance", 180, "9", 0),
            got("composite", 0, "2.00", 0),
            got("composite", 60, "2", 0),
            got("composite", 60, "2", 1),
            got("composite", 120, "2", 1),
        ];
        let r = judge(
            &klines,
            minute,
            closed_by,
            &finals,
            &["binance", "composite"],
        );
        let b = &r["binance"];
        assert_eq!((b.equal, b.duplicates, b.open), (1, 1, 1));
        assert_eq!(b.missing, vec![Micros(120_000_000)]);
        assert_eq!(b.wrong.len(), 1);
        assert!(
            b.wrong[0].contains("close want 2, got 2.5"),
            "{:?}",
            b.wrong
        );
        assert!(!b.is_clean());
        let c = &r["composite"];
        assert!(c.is_clean(), "{}", c.describe());
        assert_eq!(
            c.equal, 3,
            "a new stream's history repeats windows: not duplicates"
        );
    }
}
