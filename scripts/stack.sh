#!/usr/bin/env bash
# The docker-compose.yml topology, natively, without Docker: Apache Kafka (the tests' broker,
# started by `candles-broker` from backend/testkit) with topics `trades` (6 partitions) and `trades.dlq`, redis-server, one exchange simulator per exchange
# (or the real exchanges with --real), the three connectors and N candles-service instances in one
# consumer group, all on free 127.0.0.1 ports. Prints where everything is, then runs until Ctrl-C
# (or SIGTERM, or --duration), and stops every process it started.
#
#   scripts/stack.sh                     # 2 instances, simulated exchanges, 5s candles
#   scripts/stack.sh --instances 3 --interval 1s --rate 200
#   scripts/stack.sh --real              # the real exchanges (needs internet access)
#
# It installs nothing: when Kafka's jars or redis-server are missing it says how to get them
# (scripts/install-test-deps.sh). Builds go to $CARGO_TARGET_DIR (default ~/.cache/candles-target).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/stack.sh [options]
  --instances N      candles-service instances (default 2)
  --real             connect to the real exchanges instead of local simulators
  --interval D       candle interval (default 5s, as in docker-compose.yml)
  --grace D          finalization grace (default: the service's own)
  --rate N           synthetic trades per second per simulator (default 20)
  --pairs LIST       pairs (default btcusdt,ethusdt,solusdt)
  --duration SECS    stop by itself after SECS seconds (default: run until Ctrl-C)
  --run-dir DIR      where logs go (default: a new /tmp/candles-stack.XXXXXX)
  --debug            use debug builds (faster to build, slower to run)
  --no-build         use the binaries already built
  -h, --help         this help
Environment: CARGO_TARGET_DIR, CANDLES_KAFKA_LIBS, JAVA_HOME, REDIS_SERVER_BIN, RUST_LOG (default info).
EOF
}

INSTANCES=2 REAL=0 INTERVAL=5s GRACE="" RATE=20 PAIRS=btcusdt,ethusdt,solusdt DURATION="" RUN_DIR="" PROFILE=release BUILD=1
while (($#)); do
  case "$1" in
    --instances) INSTANCES="$2"; shift 2 ;;
    --real) REAL=1; shift ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --grace) GRACE="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --pairs) PAIRS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --run-dir) RUN_DIR="$2"; shift 2 ;;
    --debug) PROFILE=debug; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "stack.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$INSTANCES" =~ ^[1-9][0-9]*$ ]] || { echo "stack.sh: --instances must be a positive number, got '$INSTANCES'" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/candles-target}"
export RUST_LOG="${RUST_LOG:-info}"
BIN="$CARGO_TARGET_DIR/$PROFILE"

# --- what it needs, and nothing installed silently ---------------------------------------------
find_bin() { # name env-var: prints the path or nothing
  local name="$1" env="$2"
  if [ -n "${!env:-}" ]; then if [ -x "${!env}" ]; then echo "${!env}"; fi; return 0; fi
  if [ -x "${CANDLES_BIN_DIR:-$HOME/.cache/candles/bin}/$name" ]; then echo "${CANDLES_BIN_DIR:-$HOME/.cache/candles/bin}/$name"; return; fi
  command -v "$name" || true
}
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
KAFKA_LIBS="${CANDLES_KAFKA_LIBS:-$HOME/.cache/candles/kafka-$KAFKA_VERSION/libs}"
REDIS_SERVER="$(find_bin redis-server REDIS_SERVER_BIN)"
missing=()
[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || missing+=("Apache Kafka $KAFKA_VERSION (jars in $KAFKA_LIBS)")
command -v "${JAVA_HOME:+$JAVA_HOME/bin/}java" >/dev/null || missing+=("java (17 or newer)")
[ -n "$REDIS_SERVER" ] || missing+=("redis-server")
if ((${#missing[@]})); then
  echo "stack.sh: missing: ${missing[*]}." >&2
  echo "  Install them with scripts/install-test-deps.sh (redis-server and Java from apt, Kafka's jars from Maven Central)," >&2
  echo "  or point CANDLES_KAFKA_LIBS / JAVA_HOME / REDIS_SERVER_BIN at your own." >&2
  exit 1
fi

if ((BUILD)); then
  flag=(); [ "$PROFILE" = release ] && flag=(--release)
  echo "stack.sh: building ($PROFILE) into $CARGO_TARGET_DIR ..."
  cargo build "${flag[@]}" --bins -p exchange-sim -p candles-connector -p candles-service -p candles-tui -p candles-testkit
fi
for b in exchange-sim candles-connector candles-service candles-broker; do
  [ -x "$BIN/$b" ] || { echo "stack.sh: $BIN/$b is missing: run without --no-build" >&2; exit 1; }
done

RUN_DIR="${RUN_DIR:-$(mktemp -d /tmp/candles-stack.XXXXXX)}"
mkdir -p "$RUN_DIR"

# --- process bookkeeping and clean shutdown ------------------------------------------------------
PIDS=() NAMES=()
STOPPING=0
stop_all() {
  ((STOPPING)) && return
  STOPPING=1
  trap - INT TERM
  echo
  echo "stack.sh: stopping ${#PIDS[@]} processes ..."
  local i stage
  # Programs first (services, connectors, simulators), then Redis and the broker they need to
  # shut down cleanly (publish what is final, commit offsets).
  for stage in programs infrastructure; do
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      case "${NAMES[$i]}" in kafka|redis-server) [ "$stage" = infrastructure ] || continue ;; *) [ "$stage" = programs ] || continue ;; esac
      kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    done
    for _ in $(seq 1 100); do                    # up to 10 s for graceful exits
      local alive=0
      for ((i = 0; i < ${#PIDS[@]}; i++)); do
        case "${NAMES[$i]}" in kafka|redis-server) [ "$stage" = infrastructure ] || continue ;; *) [ "$stage" = programs ] || continue ;; esac
        kill -0 "${PIDS[$i]}" 2>/dev/null && alive=1
      done
      ((alive)) || break
      sleep 0.1
    done
  done
  for i in "${!PIDS[@]}"; do
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "stack.sh: ${NAMES[$i]} did not stop within 10 s: kill -9"
      kill -KILL "${PIDS[$i]}" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  echo "stack.sh: stopped. Logs kept in $RUN_DIR"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

start() { # name logfile command...
  local name="$1" log="$2"; shift 2
  echo "== $(date -u +%FT%TZ) starting $name: $*" >>"$log"
  "$@" >>"$log" 2>&1 &
  PIDS+=($!) NAMES+=("$name")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_port() { # name port pid log [seconds]
  local name="$1" port="$2" pid="$3" log="$4" secs="${5:-30}"
  for _ in $(seq 1 $((secs * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "stack.sh: $name exited during start-up; end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "stack.sh: $name did not listen on 127.0.0.1:$port within ${secs}s; end of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

# --- broker and topics ---------------------------------------------------------------------------
out="$RUN_DIR/kafka.out"
: >"$out"
echo "== $(date -u +%FT%TZ) starting kafka (candles-broker)" >>"$RUN_DIR/kafka.log"
"$BIN/candles-broker" "$RUN_DIR" trades:6 trades.dlq:1 >"$out" 2>>"$RUN_DIR/kafka.log" &
PIDS+=($!) NAMES+=("kafka")
for _ in $(seq 1 900); do
  [ -s "$out" ] && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "stack.sh: the broker exited during start-up; end of $RUN_DIR/kafka.log:" >&2; tail -n 20 "$RUN_DIR/kafka.log" >&2; exit 1; }
  sleep 0.1
done
BROKERS="$(sed -n 's/^brokers=//p' "$out" | head -n 1)"
[ -n "$BROKERS" ] || { echo "stack.sh: the broker did not start within 90 s; see $RUN_DIR/kafka.log and $RUN_DIR/kafka/kafka/kafka.log" >&2; exit 1; }

# --- redis ---------------------------------------------------------------------------------------
REDIS_PORT="$(free_port)"
start redis-server "$RUN_DIR/redis.log" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 \
  --save "" --appendonly no --dir "$RUN_DIR"
wait_port redis-server "$REDIS_PORT" "${PIDS[-1]}" "$RUN_DIR/redis.log"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

# --- exchanges (simulated unless --real) and connectors ------------------------------------------
declare -A WS REST
EXCHANGES=(binance kraken coinbase)
if ((!REAL)); then
  for ex in "${EXCHANGES[@]}"; do
    out="$RUN_DIR/sim-$ex.out"
    : >"$out"
    echo "== $(date -u +%FT%TZ) starting exchange-sim-$ex" >>"$RUN_DIR/sim-$ex.log"
    "$BIN/exchange-sim" --exchange "$ex" --listen 127.0.0.1:0 --synthetic --rate "$RATE" --pairs "$PAIRS" \
      >"$out" 2>>"$RUN_DIR/sim-$ex.log" &
    PIDS+=($!) NAMES+=("exchange-sim-$ex")
    for _ in $(seq 1 100); do [ -s "$out" ] && break; sleep 0.1; done
    line="$(head -n 1 "$out")"
    WS[$ex]="$(tr ' ' '\n' <<<"$line" | sed -n 's/^ws=//p')"
    REST[$ex]="$(tr ' ' '\n' <<<"$line" | sed -n 's/^rest=//p')"
    if [ -z "${WS[$ex]}" ] || [ -z "${REST[$ex]}" ]; then
      echo "stack.sh: exchange-sim $ex did not print its address (got: '$line'); see $RUN_DIR/sim-$ex.log" >&2
      exit 1
    fi
  done
fi

declare -A CONN_METRICS
for ex in "${EXCHANGES[@]}"; do
  port="$(free_port)"
  CONN_METRICS[$ex]="$port"
  args=(--exchange "$ex" --pairs "$PAIRS" --brokers "$BROKERS" --topic trades --metrics-addr "127.0.0.1:$port")
  ((REAL)) || args+=(--ws-url "${WS[$ex]}" --rest-url "${REST[$ex]}")
  start "connector-$ex" "$RUN_DIR/connector-$ex.log" "$BIN/candles-connector" "${args[@]}"
  wait_port "connector-$ex" "$port" "${PIDS[-1]}" "$RUN_DIR/connector-$ex.log"
done

# --- candles-service instances -------------------------------------------------------------------
GRPC=() SVC_METRICS=()
for ((i = 0; i < INSTANCES; i++)); do
  g="$(free_port)" m="$(free_port)"
  GRPC+=("$g") SVC_METRICS+=("$m")
  args=(--brokers "$BROKERS" --topic trades --group candles-service --redis "$REDIS_URL"
        --listen "127.0.0.1:$g" --interval "$INTERVAL" --metrics-addr "127.0.0.1:$m")
  [ -n "$GRACE" ] && args+=(--grace "$GRACE")
  start "candles-service-$i" "$RUN_DIR/service-$i.log" "$BIN/candles-service" "${args[@]}"
done
for ((i = 0; i < INSTANCES; i++)); do
  wait_port "candles-service-$i" "${GRPC[$i]}" "${PIDS[$((${#PIDS[@]} - INSTANCES + i))]}" "$RUN_DIR/service-$i.log"
done

# --- where everything is -------------------------------------------------------------------------
cat <<EOF

The candles backend is up (run dir $RUN_DIR).
  Apache Kafka      $BROKERS            topics: trades (6 partitions), trades.dlq
  Redis             $REDIS_URL
EOF
for ex in "${EXCHANGES[@]}"; do
  if ((REAL)); then src="real $ex"; else src="exchange-sim ${WS[$ex]} (REST ${REST[$ex]})"; fi
  printf '  connector %-8s metrics http://127.0.0.1:%s/metrics   <- %s\n' "$ex" "${CONN_METRICS[$ex]}" "$src"
done
for ((i = 0; i < INSTANCES; i++)); do
  printf '  candles-service-%d gRPC http://127.0.0.1:%s   metrics http://127.0.0.1:%s/metrics\n' "$i" "${GRPC[$i]}" "${SVC_METRICS[$i]}"
done
cat <<EOF
  logs              $RUN_DIR/*.log

Attach the dashboard:  $BIN/candles-tui --server http://127.0.0.1:${GRPC[0]}
Plain output:          $BIN/candles-tui --server http://127.0.0.1:${GRPC[0]} --plain
Stop: Ctrl-C (or kill -TERM $$).
EOF

# --- run until told to stop ----------------------------------------------------------------------
declare -A REPORTED
started=$SECONDS
while :; do
  if [ -n "$DURATION" ] && ((SECONDS - started >= DURATION)); then
    echo "stack.sh: --duration $DURATION s reached"
    break
  fi
  for i in "${!PIDS[@]}"; do
    if [ -z "${REPORTED[$i]:-}" ] && ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      REPORTED[$i]=1
      echo "stack.sh: ${NAMES[$i]} exited; see $RUN_DIR (its log)" >&2
    fi
  done
  sleep 1 &
  wait $! || true
done
