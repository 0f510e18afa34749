#!/usr/bin/env bash
# The docker-compose.yml topology, natively, without Docker: a thin wrapper over `candles-stack`
# (backend/testkit/src/bin/candles-stack.rs), which starts Apache Kafka (topics `trades`, 6
# partitions, and `trades.dlq`), redis-server, one exchange simulator per exchange (or the real
# exchanges with --real), the three connectors and N candles-service instances in one consumer
# group, all on free 127.0.0.1 ports. It prints where everything is, runs until Ctrl-C (or
# SIGTERM, or --duration), and stops every process it started.
#
#   scripts/stack.sh                     # 2 instances, simulated exchanges, 5s candles
#   scripts/stack.sh --instances 3 --interval 1s --rate 200
#   scripts/stack.sh --real              # the real exchanges (needs internet access)
#
# This script builds the binaries and checks what the stack needs; it installs nothing: when
# Kafka's jars, Java or redis-server are missing it says how to get them
# (scripts/install-test-deps.sh). Builds go to $CARGO_TARGET_DIR (default ~/.cache/candles-target).
# Every other option goes to candles-stack (`scripts/stack.sh --help` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release BUILD=1 ARGS=()
while (($#)); do
  case "$1" in
    --debug) PROFILE=debug; shift ;;
    --no-build) BUILD=0; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/candles-target}"
export RUST_LOG="${RUST_LOG:-info}"
BIN="$CARGO_TARGET_DIR/$PROFILE"

if ((BUILD)); then
  flag=(); [ "$PROFILE" = release ] && flag=(--release)
  echo "stack.sh: building ($PROFILE) into $CARGO_TARGET_DIR ..." >&2
  cargo build "${flag[@]}" --bins -p exchange-sim -p candles-connector -p candles-service -p candles-tui -p candles-testkit
fi
for b in exchange-sim candles-connector candles-service candles-stack; do
  [ -x "$BIN/$b" ] || { echo "stack.sh: $BIN/$b is missing: run without --no-build (or with --debug)" >&2; exit 1; }
done
case " ${ARGS[*]-} " in *" -h "*|*" --help "*) exec "$BIN/candles-stack" "${ARGS[@]}" ;; esac

# --- what it needs, and nothing installed silently ---------------------------------------------
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
KAFKA_LIBS="${CANDLES_KAFKA_LIBS:-$HOME/.cache/candles/kafka-$KAFKA_VERSION/libs}"
missing=()
[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || missing+=("Apache Kafka $KAFKA_VERSION (jars in $KAFKA_LIBS)")
command -v "${JAVA_HOME:+$JAVA_HOME/bin/}java" >/dev/null || missing+=("java (17 or newer)")
if [ -z "${REDIS_SERVER_BIN:-}" ] && [ ! -x "${CANDLES_BIN_DIR:-$HOME/.cache/candles/bin}/redis-server" ] \
  && ! command -v redis-server >/dev/null; then
  missing+=("redis-server")
fi
if ((${#missing[@]})); then
  echo "stack.sh: missing: ${missing[*]}." >&2
  echo "  Install them with scripts/install-test-deps.sh (redis-server and Java from apt, Kafka's jars from Maven Central)," >&2
  echo "  or point CANDLES_KAFKA_LIBS / JAVA_HOME / REDIS_SERVER_BIN at your own." >&2
  exit 1
fi

# candles-stack runs in a session of its own, so Ctrl-C reaches only this script, which turns it
# into one SIGTERM: candles-stack then stops its programs first, gracefully, then Redis and Kafka.
setsid "$BIN/candles-stack" "${ARGS[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid" || status=$?
done
exit "$status"
