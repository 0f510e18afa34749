//! Ground truth: the candles computed independently from the simulators' trade logs, and the
//! check of what reached Kafka against what the simulators generated.

use candles_core::time::Duration;
use candles_core::{
    Candle, ClockMode, Engine, EngineConfig, Exchange, Interval, Micros, Pair, Side, Trade,
};
use candles_testkit::topic::Record;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

/// The final candles of `trades` (any order), computed with the candle engine in event mode and
/// flushed: every window from each series' first trade to the last trade's window.
pub fn expected_candles(trades: &[Trade], interval: Interval) -> Vec<Candle> {
    let mut engine = Engine::new(EngineConfig {
        interval,
        grace: Duration(0),
        clock: ClockMode::Event,
    });
    let mut sorted = trades.to_vec();
    sorted.sort_by_key(|t| (t.time, t.exchange, t.id));
    for t in &sorted {
        engine.apply(t);
    }
    let mut out = Vec::new();
    engine.flush(&mut out);
    out
}

/// The same candles recomputed naively (no engine): every trade grouped by series and window.
/// A cross-check of the engine used as ground truth, not a second implementation to trust more.
pub fn naive_candles(trades: &[Trade], interval: Interval) -> Vec<Candle> {
    use candles_core::Source;
    let mut by_series: BTreeMap<(Pair, Source), BTreeMap<Micros, Vec<&Trade>>> = BTreeMap::new();
    for t in trades {
        let start = interval.window_start(t.time);
        for source in [Source::Composite, Source::Exchange(t.exchange)] {
            by_series
                .entry((t.pair, source))
                .or_default()
                .entry(start)
                .or_default()
                .push(t);
        }
    }
    let Some(last) = trades.iter().map(|t| interval.window_start(t.time)).max() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ((pair, source), windows) in by_series {
        let Some(first) = windows.keys().next().copied() else {
            continue;
        };
        let mut close = Decimal::ZERO;
        let mut start = first;
        while start <= last {
            let candle = match windows.get(&start) {
                None => Candle::flat(pair, source, interval, start, close),
                Some(ts) => {
                    let mut ts = ts.clone();
                    ts.sort_by_key(|t| (t.time, t.exchange, t.id));
                    let mut c = Candle::flat(pair, source, interval, start, ts[0].price);
                    c.close = ts[ts.len() - 1].price;
                    c.high = ts.iter().map(|t| t.price).max().unwrap_or_default();
                    c.low = ts.iter().map(|t| t.price).min().unwrap_or_default();
                    for t in &ts {
                        c.volume += t.quantity;
                        c.quote_volume += t.price * t.quantity;
                        match t.side {
                            Side::Buy => c.buy_volume += t.quantity,
                            Side::Sell => c.sell_volume += t.quantity,
                            Side::Unknown => {}
                        }
                    }
                    c.trades = ts.len() as u64;
                    c
                }
            };
            close = candle.close;
            out.push(candle);
            start = interval.window_end(start);
        }
    }
    out.sort_by_key(|c| (c.start, c.pair, c.source));
    out
}

/// What reached Kafka compared with what the simulators generated.
#[derive(Debug, Default)]
pub struct KafkaReport {
    /// Per exchange and pair, the first trade id in Kafka: the connector's reference point
    /// (a connector does not backfill history from before its first trade).
    pub first_ids: HashMap<(Exchange, Pair), u64>,
    /// Generated trades at or after the reference point that are not in Kafka.
    pub missing: Vec<Trade>,
    /// Trades in Kafka more than once (exchange, pair, id, times).
    pub duplicates: Vec<(Exchange, Pair, u64, usize)>,
    /// Trades in Kafka that differ from the generated trade with the same id.
    pub different: Vec<(Trade, Trade)>,
    /// Records that are not trades, or keyed wrongly.
    pub bad_records: Vec<String>,
    /// Records read.
    pub records: usize,
    /// Whether the whole topic was read (otherwise `missing` only means "not read").
    pub complete: bool,
}

impl KafkaReport {
    /// Whether Kafka holds exactly the generated trades from each reference point on.
    pub fn is_clean(&self) -> bool {
        self.complete
            && self.missing.is_empty()
            && self.duplicates.is_empty()
            && self.different.is_empty()
            && self.bad_records.is_empty()
    }
}

impl std::fmt::Display for KafkaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.complete {
            writeln!(
                f,
                "Kafka: only {} records could be read in time: the check of Kafka's contents is incomplete",
                self.records
            )?;
            return Ok(());
        }
        writeln!(
            f,
            "Kafka: {} records; {} generated trades missing, {} duplicated, {} different, {} bad records",
            self.records,
            self.missing.len(),
            self.duplicates.len(),
            self.different.len(),
            self.bad_records.len()
        )?;
        let mut missing_by: BTreeMap<(Exchange, Pair), Vec<u64>> = BTreeMap::new();
        for t in &self.missing {
            missing_by
                .entry((t.exchange, t.pair))
                .or_default()
                .push(t.id);
        }
        for ((e, p), ids) in &missing_by {
            writeln!(
                f,
                "  missing {e} {p}: {} trades, ids {}",
                ids.len(),
                id_ranges(ids)
            )?;
        }
        for (e, p, id, n) in self.duplicates.iter().take(10) {
            writeln!(f, "  duplicate {e} {p} id {id}: {n} times")?;
        }
        for (want, got) in self.different.iter().take(10) {
            writeln!(
                f,
                "  different {} {} id {}: generated {want:?}, in Kafka {got:?}",
                want.exchange, want.pair, want.id
            )?;
        }
        for b in self.bad_records.iter().take(10) {
            writeln!(f, "  bad record: {b}")?;
        }
        Ok(())
    }
}

/// `1-5, 9, 12-13`.
pub fn id_ranges(ids: &[u64]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        if i == j {
            let _ = write!(out, "{}", ids[i]);
        } else {
            let _ = write!(out, "{}-{}", ids[i], ids[j]);
        }
        i = j + 1;
    }
    out
}

/// Compares the records of the trades topic with the generated trades. Returns the report and
/// the generated trades from each exchange/pair's reference point on (the ground truth the
/// candles must match).
pub fn check_kafka(
    generated: &[Trade],
    records: &[Record],
    complete: bool,
) -> (KafkaReport, Vec<Trade>) {
    let mut report = KafkaReport {
        records: records.len(),
        complete,
        ..KafkaReport::default()
    };
    let mut seen: HashMap<(Exchange, Pair, u64), (Trade, usize)> = HashMap::new();
    for r in records {
        match &r.trade {
            Err(e) => report
                .bad_records
                .push(format!("{}/{}: {e}", r.partition, r.offset)),
            Ok(t) => {
                if r.key != t.pair.to_string() {
                    report.bad_records.push(format!(
                        "{}/{}: key {:?} but pair {}",
                        r.partition, r.offset, r.key, t.pair
                    ));
                }
                let first = report.first_ids.entry((t.exchange, t.pair)).or_insert(t.id);
                *first = (*first).min(t.id);
                seen.entry((t.exchange, t.pair, t.id)).or_insert((*t, 0)).1 += 1;
            }
        }
    }
    let mut dups: Vec<_> = seen
        .iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|((e, p, id), (_, n))| (*e, *p, *id, *n))
        .collect();
    dups.sort();
    report.duplicates = dups;
    let mut truth = Vec::new();
    let generated_ids: HashSet<(Exchange, Pair, u64)> = generated
        .iter()
        .map(|t| (t.exchange, t.pair, t.id))
        .collect();
    for t in generated {
        let Some(&first) = report.first_ids.get(&(t.exchange, t.pair)) else {
            report.missing.push(*t);
            continue;
        };
        if t.id < first {
            continue;
        }
        truth.push(*t);
        match seen.get(&(t.exchange, t.pair, t.id)) {
            None => report.missing.push(*t),
            Some((k, _)) => {
                let same = k.price == t.price
                    && k.quantity == t.quantity
                    && k.side == t.side
                    && k.time == t.time;
                if !same {
                    report.different.push((*t, *k));
                }
            }
        }
    }
    for ((e, p, id), _) in seen.iter().filter(|(k, _)| !generated_ids.contains(k)) {
        report.bad_records.push(format!(
            "{e} {p} id {id} is in Kafka but was never generated"
        ));
    }
    (report, truth)
}
