#!/usr/bin/env bash
# The project's test command (README "Test"): installs what the tests need if it is missing
# (redis-server, tmux, docker-compose from apt; a Java 17 runtime; Apache Kafka's broker jars from
# Maven Central, fetched once per machine into ~/.cache/candles), builds every test of the
# workspace once, then runs the test binaries three at a time, slowest first
# (scripts/run_tests.py; CANDLES_TEST_JOBS=N changes how many). Arguments go to every test
# binary (e.g. a test name filter). Builds go to $CARGO_TARGET_DIR (default
# ~/.cache/candles-target) so they are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/candles-target}"
./scripts/install-test-deps.sh
echo "== building every test (cargo test --workspace --locked --no-run)"
cargo test --workspace --locked --no-run
python3 scripts/run_tests.py "$@"
