//! Compares the final candles a client received with the expected ones, and explains every
//! difference readably.

use crate::client::Got;
use candles_core::Candle;
use candles_proto::v1;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Identity of a candle on the wire: (pair, source, window start in µs).
pub type Key = (String, String, i64);

fn key(c: &v1::Candle) -> Key {
    let start = c
        .start
        .as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
        .unwrap_or(i64::MIN);
    (c.pair.clone(), c.source.clone(), start)
}

fn show_key(k: &Key) -> String {
    let secs = k.2.div_euclid(1_000_000);
    let t = time_of_day(secs);
    format!(
        "{} {} {} ({}.{:06})",
        k.0,
        k.1,
        t,
        secs,
        k.2.rem_euclid(1_000_000)
    )
}

fn time_of_day(secs: i64) -> String {
    let s = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The fields of two candles that differ, as `field: want X, got Y`.
pub fn field_diff(want: &v1::Candle, got: &v1::Candle) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: want {a}, got {b}"));
        }
    };
    cmp(
        "interval",
        format!("{:?}", want.interval),
        format!("{:?}", got.interval),
    );
    cmp("end", format!("{:?}", want.end), format!("{:?}", got.end));
    cmp("open", want.open.clone(), got.open.clone());
    cmp("high", want.high.clone(), got.high.clone());
    cmp("low", want.low.clone(), got.low.clone());
    cmp("close", want.close.clone(), got.close.clone());
    cmp("volume", want.volume.clone(), got.volume.clone());
    cmp(
        "quote_volume",
        want.quote_volume.clone(),
        got.quote_volume.clone(),
    );
    cmp("trades", want.trades.to_string(), got.trades.to_string());
    cmp("vwap", want.vwap.clone(), got.vwap.clone());
    cmp(
        "buy_volume",
        want.buy_volume.clone(),
        got.buy_volume.clone(),
    );
    cmp(
        "sell_volume",
        want.sell_volume.clone(),
        got.sell_volume.clone(),
    );
    cmp("final", want.r#final.to_string(), got.r#final.to_string());
    out
}

/// Everything wrong with what one client received.
#[derive(Debug, Default)]
pub struct Report {
    /// The client's name.
    pub client: String,
    /// Expected candles (windows up to the last trade's window).
    pub expected: usize,
    /// Distinct final candles received (any window).
    pub received: usize,
    /// Continuation candles received after the last trade's window (all checked flat).
    pub after_end: usize,
    /// Expected and never received.
    pub missing: Vec<Key>,
    /// Received with values other than expected: (key, differing fields).
    pub wrong: Vec<(Key, Vec<String>)>,
    /// Received twice (key, how many times), not counting history re-sent after a reconnect
    /// that equals what was received before.
    pub duplicates: Vec<(Key, usize)>,
    /// Received for a window/series that should have no candle.
    pub unexpected: Vec<(Key, v1::Candle)>,
}

impl Report {
    /// No difference at all.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.wrong.is_empty()
            && self.duplicates.is_empty()
            && self.unexpected.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "client {}: expected {}, received {} distinct finals (+{} flat after the last trade); {} missing, {} wrong, {} duplicated, {} unexpected",
            self.client,
            self.expected,
            self.received,
            self.after_end,
            self.missing.len(),
            self.wrong.len(),
            self.duplicates.len(),
            self.unexpected.len()
        )?;
        if !self.missing.is_empty() {
            let mut by_series: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
            for k in &self.missing {
                by_series
                    .entry((k.0.clone(), k.1.clone()))
                    .or_default()
                    .push(k.2);
            }
            for ((p, s), starts) in by_series {
                let shown: Vec<String> = starts
                    .iter()
                    .take(8)
                    .map(|t| time_of_day(t.div_euclid(1_000_000)))
                    .collect();
                writeln!(
                    f,
                    "  missing {p} {s}: {} windows starting {}{}",
                    starts.len(),
                    shown.join(" "),
                    if starts.len() > 8 { " …" } else { "" }
                )?;
            }
        }
        for (k, diffs) in self.wrong.iter().take(12) {
            writeln!(f, "  wrong {}: {}", show_key(k), diffs.join("; "))?;
        }
        if self.wrong.len() > 12 {
            writeln!(f, "  … and {} more wrong", self.wrong.len() - 12)?;
        }
        for (k, n) in self.duplicates.iter().take(12) {
            writeln!(f, "  duplicate {}: received {n} times", show_key(k))?;
        }
        for (k, c) in self.unexpected.iter().take(12) {
            writeln!(
                f,
                "  unexpected {}: o={} h={} l={} c={} v={} n={}",
                show_key(k),
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.trades
            )?;
        }
        Ok(())
    }
}

/// The expected candles in wire form, and per series the close of its last expected candle
/// and the last expected window start.
pub struct Expected {
    by_key: BTreeMap<Key, v1::Candle>,
    last_close: HashMap<(String, String), String>,
    last_start: i64,
}

impl Expected {
    /// From the ground-truth candles (all final).
    pub fn new(candles: &[Candle]) -> Expected {
        let mut by_key = BTreeMap::new();
        let mut last_close = HashMap::new();
        let mut last_start = i64::MIN;
        for c in candles {
            let wire = v1::Candle::from(c);
            let k = key(&wire);
            last_start = last_start.max(k.2);
            by_key.insert(k, wire);
        }
        for (k, c) in &by_key {
            if k.2 == last_start {
                last_close.insert((k.0.clone(), k.1.clone()), c.close.clone());
            }
        }
        Expected {
            by_key,
            last_close,
            last_start,
        }
    }

    /// How many expected candles.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// No expected candle at all.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// How many expected candles `got` does not contain yet.
    pub fn missing_in(&self, got: &[Got]) -> usize {
        let have: std::collections::HashSet<Key> = got.iter().map(|g| key(&g.candle)).collect();
        self.by_key.keys().filter(|k| !have.contains(*k)).count()
    }

    /// Compares what a client received with the expected candles.
    pub fn compare(&self, client: &str, got: &[Got]) -> Report {
        let mut report = Report {
            client: client.to_string(),
            expected: self.by_key.len(),
            ..Report::default()
        };
        // key -> (first value, live receipts, streams it arrived on, total receipts)
        let mut seen: BTreeMap<Key, (v1::Candle, usize)> = BTreeMap::new();
        let mut dup_count: BTreeMap<Key, usize> = BTreeMap::new();
        let mut streams_of: HashMap<Key, Vec<u32>> = HashMap::new();
        for g in got {
            let k = key(&g.candle);
            let earlier_streams = streams_of.entry(k.clone()).or_default();
            match seen.get(&k) {
                None => {
                    seen.insert(k.clone(), (g.candle.clone(), 1));
                }
                Some((first, _)) => {
                    // History re-sent on a new stream after a reconnect is fine when identical.
                    let refill =
                        g.historical && !earlier_streams.contains(&g.stream) && *first == g.candle;
                    if !refill {
                        *dup_count.entry(k.clone()).or_insert(1) += 1;
                    }
                    if *first != g.candle {
                        report.wrong.push((
                            k.clone(),
                            field_diff(first, &g.candle)
                                .into_iter()
                                .map(|d| format!("two different finals: {d}"))
                                .collect(),
                        ));
                    }
                }
            }
            earlier_streams.push(g.stream);
        }
        report.duplicates = dup_count.into_iter().collect();
        report.received = seen.len();
        for (k, (c, _)) in &seen {
            match self.by_key.get(k) {
                Some(want) => {
                    let diffs = field_diff(want, c);
                    if !diffs.is_empty() {
                        report.wrong.push((k.clone(), diffs));
                    }
                }
                None if k.2 > self.last_start => {
                    match self.last_close.get(&(k.0.clone(), k.1.clone())) {
                        Some(close) if is_flat_at(c, close) => report.after_end += 1,
                        _ => report.unexpected.push((k.clone(), c.clone())),
                    }
                }
                None => report.unexpected.push((k.clone(), c.clone())),
            }
        }
        report.missing = self
            .by_key
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        report
    }
}

fn is_flat_at(c: &v1::Candle, close: &str) -> bool {
    let zero = |s: &str| s == "0";
    c.open == close
        && c.high == close
        && c.low == close
        && c.close == close
        && zero(&c.volume)
        && zero(&c.quote_volume)
        && zero(&c.buy_volume)
        && zero(&c.sell_volume)
        && c.trades == 0
        && c.vwap.is_empty()
        && c.r#final
}

/// A multi-line summary of several reports (only the first lines of each).
pub fn summarize(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = write!(out, "{r}");
    }
    out
}
