#!/usr/bin/env bash
# Live candles with no internet and no services: three local exchange simulators (Binance, Kraken,
# Coinbase protocols, synthetic trades) and the dashboard in --embedded mode pointed at them.
#   scripts/demo.sh                 # the dashboard
#   scripts/demo.sh --plain         # extra flags go to candles-tui
# Stops the simulators when the dashboard exits.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/candles-target}"
RATE="${DEMO_RATE:-30}"
echo "demo: building (release; the first build takes a few minutes)..." >&2
cargo build --release --quiet -p exchange-sim -p candles-tui
BIN="$CARGO_TARGET_DIR/release"
RUN_DIR="$(mktemp -d /tmp/candles-demo.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
args=()
for ex in binance kraken coinbase; do
  "$BIN/exchange-sim" --exchange "$ex" --synthetic --rate "$RATE" >"$RUN_DIR/$ex.out" 2>"$RUN_DIR/$ex.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$RUN_DIR/$ex.out" 2>/dev/null && break; sleep 0.1; done
  line="$(head -n1 "$RUN_DIR/$ex.out")"
  ws="$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' <<<"$line")"
  rest="$(sed -n 's/.* rest=\([^ ]*\).*/\1/p' <<<"$line")"
  [ -n "$ws" ] || { echo "demo: $ex simulator did not start (see $RUN_DIR/$ex.log)" >&2; exit 1; }
  args+=("--$ex-ws-url" "$ws" "--$ex-rest-url" "$rest")
done
echo "demo: simulators up (logs in $RUN_DIR); starting the dashboard" >&2
"$BIN/candles-tui" --embedded "${args[@]}" --log-file "$RUN_DIR/tui.log" "$@"
