#!/usr/bin/env bash
# The project's test command (README "Test"): installs what the tests need if it is missing
# (redis-server, tmux, docker-compose from apt; a Java 17 runtime; Apache Kafka's broker jars from
# Maven Central, fetched once per machine into ~/.cache/candles), then runs every test of the
# workspace. Builds go to $CARGO_TARGET_DIR (default ~/.cache/candles-target) so they are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/candles-target}"
./scripts/install-test-deps.sh
cargo test --workspace --locked "$@"
