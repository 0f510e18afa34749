//! What a pipeline run prints and writes: a summary per rate, `pipeline.json`, `pipeline.csv`,
//! and every final candle each client received (`finals.csv`).

use super::{PipelineSettings, RateResult};
use crate::client::Recording;
use anyhow::{Context as _, Result};

/// Every final candle each client received, one line each (`client,pair,source,start_us,
/// published_us,recv_us`), for looking into a latency figure.
pub(super) fn write_finals_csv(path: &std::path::Path, recordings: &[Recording]) {
    let mut out = String::from("client,pair,source,start_us,published_us,recv_us\n");
    for (i, rec) in recordings.iter().enumerate() {
        for c in rec.candles.iter().filter(|c| c.is_final) {
            let published = c.published_us.map(|p| p.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "{i},{},{},{},{published},{}\n",
                c.pair, c.source, c.start_us, c.recv_us
            ));
        }
    }
    if let Err(e) = std::fs::write(path, out) {
        println!("   cannot write {}: {e}", path.display());
    }
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.1}"))
}

pub(super) fn print_result(r: &RateResult) {
    println!(
        "   generated {:.0}/s, delivered {:.0}/s over {:.0} s: expected {} received {} lost {} excess {} missing finals {} → {}",
        r.generated_rate,
        r.delivered_rate,
        r.judged_seconds,
        r.loss.expected,
        r.loss.received,
        r.loss.lost,
        r.loss.excess,
        r.loss.missing_finals,
        if r.lossless { "LOSSLESS" } else { "LOSS" }
    );
    println!(
        "   final latency ms {}; live latency ms {}",
        r.final_latency_ms.brief(),
        r.live_latency_ms.brief()
    );
    println!(
        "   delivery after the service published (published_at) ms: finals {}; live {}",
        r.final_delivery_ms.brief(),
        r.live_delivery_ms.brief()
    );
    for p in &r.processes {
        println!(
            "   {:<28} cpu {:>6.1}%  rss {:>7.1} MiB  peak {:>7.1} MiB",
            p.name, p.cpu_percent, p.rss_mib, p.peak_rss_mib
        );
    }
    for (ex, l) in &r.loss_per_exchange {
        println!(
            "   {ex:<9} own candles: expected {} received {} lost {} excess {} missing finals {}",
            l.expected, l.received, l.lost, l.excess, l.missing_finals
        );
    }
    for w in &r.wrong_windows {
        println!("   wrong window: {w}");
    }
    for (name, h) in &r.service_histograms {
        println!(
            "   services' {name}: p50 <= {} ms, p99 <= {} ms (n={}, whole run)",
            fmt(h.p50_le_ms),
            fmt(h.p99_le_ms),
            h.count
        );
    }
    for (k, v) in r
        .counters
        .iter()
        .filter(|(k, v)| **v != 0.0 && !k.contains("_bucket"))
    {
        println!("   {k} = {v}");
    }
    for e in &r.client_errors {
        println!("   client error: {e}");
    }
}

pub(super) fn write_results(s: &PipelineSettings, results: &[RateResult]) -> Result<()> {
    let json = s.out.join("pipeline.json");
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let mut csv = String::from(
        "target_rate,generated_rate,delivered_rate,expected,received,lost,excess,missing_finals,lossless,final_p50_ms,final_p99_ms,final_p999_ms,final_max_ms,live_p50_ms,live_p99_ms,live_max_ms,cpu_total_percent\n",
    );
    let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.3}"));
    for r in results {
        let cpu: f64 = r.processes.iter().map(|p| p.cpu_percent).sum();
        csv.push_str(&format!(
            "{},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1}\n",
            r.target_rate,
            r.generated_rate,
            r.delivered_rate,
            r.loss.expected,
            r.loss.received,
            r.loss.lost,
            r.loss.excess,
            r.loss.missing_finals,
            r.lossless,
            o(r.final_latency_ms.p50),
            o(r.final_latency_ms.p99),
            o(r.final_latency_ms.p999),
            o(r.final_latency_ms.max),
            o(r.live_latency_ms.p50),
            o(r.live_latency_ms.p99),
            o(r.live_latency_ms.max),
            cpu
        ));
    }
    let path = s.out.join("pipeline.csv");
    std::fs::write(&path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "   results: {} and {}",
        json.display(),
        s.out.join("pipeline.csv").display()
    );
    Ok(())
}
