#!/usr/bin/env python3
"""Latency against load, from `candles-loadgen pipeline` results. Not part of the build.

    python3 -m venv /tmp/plotvenv && /tmp/plotvenv/bin/pip install matplotlib
    /tmp/plotvenv/bin/python backend/loadgen/plot.py backend/loadgen/results/pipeline.json assets/latency.png \
        [LABEL=EXTRA.json ...]

The first file is drawn as lines; each LABEL=EXTRA.json (other runs of the same command, e.g. on a
busier machine) as unconnected hollow markers of the same colours.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    src = sys.argv[1] if len(sys.argv) > 1 else "backend/loadgen/results/pipeline.json"
    dst = sys.argv[2] if len(sys.argv) > 2 else "assets/latency.png"
    rows = json.load(open(src))
    x = [r["target_rate"] for r in rows]

    def series(kind, q):
        return [r[kind][q] for r in rows]

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    style = {
        ("final_latency_ms", "p50"): ("final candle p50", "tab:blue", "-"),
        ("final_latency_ms", "p99"): ("final candle p99", "tab:blue", "--"),
        ("final_latency_ms", "p999"): ("final candle p99.9", "tab:blue", ":"),
        ("live_latency_ms", "p50"): ("live update p50", "tab:orange", "-"),
        ("live_latency_ms", "p99"): ("live update p99", "tab:orange", "--"),
    }
    for (kind, q), (label, color, ls) in style.items():
        pts = [(a, b) for a, b in zip(x, series(kind, q)) if b is not None and b > 0]
        if pts:
            ax.plot(*zip(*pts), ls, marker="o", color=color, label=label)
    markers = ["s", "^", "D", "v"]
    for i, extra in enumerate(sys.argv[3:]):
        label, path = extra.split("=", 1)
        more = json.load(open(path))
        for (kind, q), (_, color, _) in style.items():
            if q == "p999":
                continue
            pts = [(r["target_rate"], r[kind][q]) for r in more if r[kind][q]]
            if pts:
                ax.plot(*zip(*pts), markers[i % len(markers)], color=color, mfc="none", ms=8)
        ax.plot([], [], markers[i % len(markers)], color="grey", mfc="none", label=label)
        for r in more:
            if not r["lossless"]:
                ax.axvspan(r["target_rate"] / 1.08, r["target_rate"] * 1.08, color="red", alpha=0.06)
    ax.axhline(10, color="tab:blue", lw=0.8, alpha=0.5)
    ax.text(x[0], 10 * 1.08, "target: final p99 ≤ 10 ms", color="tab:blue", fontsize=8)
    ax.axhline(50, color="tab:orange", lw=0.8, alpha=0.5)
    ax.text(x[0], 50 * 1.08, "target: live p99 ≤ 50 ms", color="tab:orange", fontsize=8)
    for r in rows:
        if not r["lossless"]:
            ax.axvspan(r["target_rate"] / 1.15, r["target_rate"] * 1.15, color="red", alpha=0.12)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, trades/s (all simulators together; red band = trades lost)")
    ax.set_ylabel("latency at the gRPC client, ms")
    ax.set_title("candles stack on 2 shared cores: client-side latency against load")
    labels = []
    for r in rows:
        labels.append(f"{int(r['target_rate']):,}\n(got {r['generated_rate']:,.0f})")
    extra_x = sorted({r["target_rate"] for e in sys.argv[3:] for r in json.load(open(e.split("=", 1)[1]))} - set(x))
    ax.set_xticks(x + extra_x)
    ax.set_xticklabels(labels + [f"{int(v) // 1000}k" for v in extra_x], fontsize=8)
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
