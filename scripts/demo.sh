#!/usr/bin/env bash
# Live candles with no internet and no services: three local exchange simulators (Binance, Kraken,
# Coinbase protocols, synthetic trades, each from its own seed so the three differ) and the
# dashboard in --embedded mode pointed at them (--ws-url/--rest-url EXCHANGE=URL).
#   scripts/demo.sh                 # the dashboard
#   scripts/demo.sh --plain         # extra flags go to candles-tui
#   DEMO_RATE=30                    # trades per second per simulator
#   DEMO_SEED=1                     # the simulators' seeds are DEMO_SEED, DEMO_SEED+1, DEMO_SEED+2
#   DEMO_BIN_DIR=DIR                # use exchange-sim and candles-tui from DIR (no build)
# Stops the simulators when the dashboard exits or the script gets SIGTERM/SIGINT.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/candles-target}"
RATE="${DEMO_RATE:-30}"
SEED="${DEMO_SEED:-1}"
if [ -n "${DEMO_BIN_DIR:-}" ]; then
  BIN="$DEMO_BIN_DIR"
else
  echo "demo: building (release; the first build takes a few minutes)..." >&2
  cargo build --release --quiet -p exchange-sim -p candles-tui
  BIN="$CARGO_TARGET_DIR/release"
fi
RUN_DIR="$(mktemp -d /tmp/candles-demo.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
args=()
seed="$SEED"
for ex in binance kraken coinbase; do
  "$BIN/exchange-sim" --exchange "$ex" --synthetic --rate "$RATE" --seed "$seed" \
    >"$RUN_DIR/$ex.out" 2>"$RUN_DIR/$ex.log" &
  pids+=($!)
  seed=$((seed + 1))
  for _ in $(seq 100); do grep -q "listening on" "$RUN_DIR/$ex.out" 2>/dev/null && break; sleep 0.1; done
  line="$(head -n1 "$RUN_DIR/$ex.out")"
  ws="$(sed -n 's/.* ws=\([^ ]*\).*/\1/p' <<<"$line")"
  rest="$(sed -n 's/.* rest=\([^ ]*\).*/\1/p' <<<"$line")"
  [ -n "$ws" ] || { echo "demo: $ex simulator did not start (see $RUN_DIR/$ex.log)" >&2; exit 1; }
  args+=("--ws-url" "$ex=$ws" "--rest-url" "$ex=$rest")
done
echo "demo: simulators up (logs in $RUN_DIR); starting the dashboard" >&2
# In the background (with the terminal as its stdin: fd 3) so that a SIGTERM to this script runs
# the cleanup at once instead of after the dashboard exits.
exec 3<&0
"$BIN/candles-tui" --embedded "${args[@]}" --log-file "$RUN_DIR/tui.log" "$@" <&3 3<&- &
tui=$!
pids+=("$tui")
exec 3<&-
status=0
wait "$tui" || status=$?
exit "$status"
