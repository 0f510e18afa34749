//! The judgement of one rate: loss against the simulators' trade logs per client, latencies,
//! and (with `--verify-kafka`) what the broker held against both ends; the services' own
//! latency histograms.

use super::{PipelineSettings, RateResult};
use crate::client::Recording;
use crate::procstat::ProcUsage;
use crate::stats::{self, LossReport, Summary, WindowKey};
use crate::truth;
use crate::view::TopicCounts;
use serde::Serialize;
use std::collections::BTreeMap;

/// Latency samples of every client, ms.
#[derive(Default)]
struct Samples {
    finals: Vec<f64>,
    live: Vec<f64>,
    final_delivery: Vec<f64>,
    live_delivery: Vec<f64>,
}

/// Trades per (series, window): the generated ones of each window.
fn expected_counts(times: &truth::SendTimes) -> BTreeMap<WindowKey, u64> {
    times
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect()
}

/// Whether `loss` is worse (more lost plus excess) than `than`, or `than` is none.
fn worse(loss: &LossReport, than: Option<&LossReport>) -> bool {
    than.is_none_or(|w| loss.lost + loss.excess > w.lost + w.excess)
}

/// The final trade count of every judged window one client received, adding its latency
/// samples (composite candles) to `samples`.
fn received_finals(
    rec: &Recording,
    s: &PipelineSettings,
    judged: &dyn Fn(&WindowKey) -> bool,
    times: &truth::SendTimes,
    samples: &mut Samples,
) -> BTreeMap<WindowKey, u64> {
    let mut received = BTreeMap::new();
    for c in &rec.candles {
        let composite = c.source == "composite";
        let series = if composite {
            c.pair.clone()
        } else {
            truth::exchange_series(&c.pair, &c.source)
        };
        let key = (series, c.start_us);
        if !judged(&key) {
            continue;
        }
        if composite && let Some(published) = c.published_us {
            let delivery = (c.recv_us - published) as f64 / 1000.0;
            match c.is_final {
                true => samples.final_delivery.push(delivery),
                false => samples.live_delivery.push(delivery),
            }
        }
        if c.is_final {
            received.insert(key, c.trades);
            if composite {
                let ms = (c.recv_us - (c.end_us + s.grace.1)) as f64 / 1000.0;
                samples.finals.push(ms);
            }
        } else if composite
            && let Some(sent) = times.get(&key)
            && let Some(us) = stats::live_latency_us(sent, c.trades, c.recv_us)
        {
            samples.live.push(us as f64 / 1000.0);
        }
    }
    received
}

/// Loss, latency and errors of one rate over the judged windows of `[t0, t1]`, at the worst
/// client. The caller fills in the run directory, load average, counters and Kafka accounting.
pub(super) fn analyze(
    s: &PipelineSettings,
    rate: f64,
    (t0, t1): (i64, i64),
    times: &truth::SendTimes,
    recordings: &[Recording],
    processes: Vec<ProcUsage>,
) -> RateResult {
    let iv = s.interval.1.micros();
    let (from, to) = stats::measured_range(s.interval.1, t0, t1);
    let judged = |k: &WindowKey| stats::in_measured_range(k.1, iv, from, to);
    let expected = expected_counts(times);
    let mut samples = Samples::default();
    let mut worst: Option<LossReport> = None;
    let (mut errors, mut wrong_windows) = (Vec::new(), Vec::new());
    let mut per_exchange: BTreeMap<String, LossReport> = BTreeMap::new();
    for rec in recordings {
        let received = received_finals(rec, s, &judged, times, &mut samples);
        for (key, want) in expected.iter().filter(|(k, _)| judged(k)) {
            let got = received.get(key);
            if got != Some(want) && wrong_windows.len() < 40 {
                wrong_windows.push(format!(
                    "{} {} expected {want} received {got:?}",
                    key.0, key.1
                ));
            }
        }
        for ex in &s.exchanges {
            let suffix = format!("/{ex}");
            let r = stats::account(&expected, &received, |k| {
                judged(k) && k.0.ends_with(&suffix)
            });
            if worse(&r, per_exchange.get(ex)) {
                per_exchange.insert(ex.clone(), r);
            }
        }
        let loss = stats::account(&expected, &received, |k| judged(k) && !k.0.contains('/'));
        if worse(&loss, worst.as_ref()) {
            worst = Some(loss);
        }
        errors.extend(rec.error.clone());
    }
    let loss = worst.unwrap_or_default();
    let secs = ((to - from).max(0) as f64) / 1e6;
    let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    RateResult {
        target_rate: rate,
        generated_rate: per_s(loss.expected),
        delivered_rate: per_s(loss.received.min(loss.expected)),
        judged_seconds: secs,
        lossless: loss.is_lossless() && !recordings.is_empty(),
        loss,
        loss_per_exchange: per_exchange,
        final_latency_ms: Summary::of(samples.finals),
        live_latency_ms: Summary::of(samples.live),
        final_delivery_ms: Summary::of(samples.final_delivery),
        live_delivery_ms: Summary::of(samples.live_delivery),
        processes,
        client_errors: errors,
        run_dir: String::new(),
        loadavg_at_start: String::new(),
        counters: BTreeMap::new(),
        service_histograms: BTreeMap::new(),
        wrong_windows,
        published_by_connectors: 0.0,
        records_in_kafka: None,
        kafka_vs_generated: None,
        client_vs_kafka: None,
        kafka_duplicates: None,
        kafka_window_gaps: Vec::new(),
        tail_vs_kafka: None,
    }
}

/// Adds the processes' counters (and the services' histograms from them) and what the
/// connectors published against what the broker holds.
pub(super) fn add_counters(
    r: &mut RateResult,
    counters: BTreeMap<String, f64>,
    records_in_kafka: Option<i64>,
) {
    r.published_by_connectors = counters
        .iter()
        .filter(|(k, _)| k.contains("connector_trades_published_total"))
        .map(|(_, v)| *v)
        .sum();
    r.records_in_kafka = records_in_kafka;
    println!(
        "   connectors published {} trades; the trades topic holds {:?} records",
        r.published_by_connectors, r.records_in_kafka
    );
    r.service_histograms = service_histograms(&counters);
    r.counters = counters;
}

/// With `--verify-kafka`: the broker's unique trades against the simulators' and the worst
/// client's (judged composite windows), every window where the topic lacks generated trades,
/// and what a consumer tailing the topic was handed.
pub(super) fn account_kafka(
    r: &mut RateResult,
    s: &PipelineSettings,
    (t0, t1): (i64, i64),
    times: &truth::SendTimes,
    recordings: &[Recording],
    topic: &TopicCounts,
    tail: Option<TopicCounts>,
) {
    let iv = s.interval.1.micros();
    let (from, to) = stats::measured_range(s.interval.1, t0, t1);
    let judged = |k: &WindowKey| stats::in_measured_range(k.1, iv, from, to) && !k.0.contains('/');
    let expected = expected_counts(times);
    let vs_gen = stats::account(&expected, &topic.unique, judged);
    let mut worst: Option<LossReport> = None;
    for rec in recordings {
        let finals: BTreeMap<WindowKey, u64> = rec
            .candles
            .iter()
            .filter(|c| c.is_final && c.source == "composite")
            .map(|c| ((c.pair.clone(), c.start_us), c.trades))
            .collect();
        let l = stats::account(&topic.unique, &finals, judged);
        if worse(&l, worst.as_ref()) {
            worst = Some(l);
        }
    }
    println!(
        "   judged windows: generated {} / in Kafka {} (missing {}) / in finals {:?}",
        vs_gen.expected,
        vs_gen.received,
        vs_gen.lost,
        worst.as_ref().map(|w| (w.received, w.lost, w.excess))
    );
    // Every window, judged or not: where (relative to T0) the broker lacks generated trades.
    let mut gaps = Vec::new();
    for (k, &want) in expected.iter().filter(|(k, _)| !k.0.contains('/')) {
        let have = topic.unique.get(k).copied().unwrap_or(0);
        if have != want {
            let at = (k.1 - t0) as f64 / 1e6;
            gaps.push(format!(
                "{} at T0{at:+.0}s: generated {want}, in Kafka {have}",
                k.0
            ));
        }
    }
    for g in gaps.iter().take(12) {
        println!("   topic window: {g}");
    }
    r.kafka_window_gaps = gaps;
    if let Some(tail) = &tail {
        let l = stats::account(&topic.unique, &tail.unique, judged);
        println!(
            "   tailing consumer, judged windows: in topic {} / handed to the tail {} (short {}, extra {})",
            l.expected, l.received, l.lost, l.excess
        );
        r.tail_vs_kafka = Some(l);
    }
    r.kafka_vs_generated = Some(vs_gen);
    r.client_vs_kafka = worst;
    r.kafka_duplicates = Some(topic.duplicates);
}

/// Metric name fragments worth reporting after a run.
pub(super) const COUNTERS: &[&str] = &[
    "late",
    "gap",
    "backfill",
    "reconnect",
    "lagged",
    "dropped",
    "dlq",
    "trades_consumed",
    "trades_generated",
    "trades_published",
    "consumer_lag",
    "already_published",
    "error",
    "fatal",
    "replaced",
    "offset_gaps",
    "_seconds_bucket",
];

/// The services' latency histograms summarized after a run (their buckets are in `counters`).
const SERVICE_HISTOGRAMS: &[&str] = &[
    "candles_service_watermark_query_seconds",
    "candles_service_finalize_delay_seconds",
    "candles_service_finalize_to_client_seconds",
];

/// p50 and p99 of one service histogram over every instance and the whole run (warm-up
/// included), as bucket upper bounds in ms.
#[derive(Clone, Debug, Serialize)]
pub struct BucketSummary {
    /// Samples.
    pub count: f64,
    /// The bucket edge at or under which half the samples fall, ms.
    pub p50_le_ms: Option<f64>,
    /// The same for 99 %, ms.
    pub p99_le_ms: Option<f64>,
}

/// Sums each of [`SERVICE_HISTOGRAMS`] over the service instances in `counters`.
pub(super) fn service_histograms(
    counters: &BTreeMap<String, f64>,
) -> BTreeMap<String, BucketSummary> {
    let mut out = BTreeMap::new();
    for name in SERVICE_HISTOGRAMS {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
        for (key, value) in counters {
            if let Some((_, rest)) = key.split_once(&prefix)
                && let Some(le) = rest.strip_suffix("\"}")
            {
                *buckets.entry(le.to_string()).or_default() += value;
            }
        }
        let buckets: Vec<(f64, f64)> = buckets
            .into_iter()
            .filter_map(|(le, n)| {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n))
            })
            .collect();
        let count = buckets.iter().map(|b| b.1).fold(0.0, f64::max);
        let ms = |q| stats::bucket_quantile(&buckets, q).map(|s| s * 1000.0);
        out.insert(
            name.trim_start_matches("candles_service_").to_string(),
            BucketSummary {
                count,
                p50_le_ms: ms(0.5),
                p99_le_ms: ms(0.99),
            },
        );
    }
    out
}
