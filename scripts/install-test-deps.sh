#!/usr/bin/env bash
# Installs what the tests need, if it is missing: python3 (scripts/run_tests.py runs the test
# binaries), redis-server and openssl (Debian; openssl makes the TLS tests' certificates), tmux for the terminal
# end-to-end tests, docker-compose (validates docker-compose.yml without an engine), Java 17+ and
# Maven (Debian, when the machine has none), and Apache Kafka's broker: its jars from Maven
# Central (scripts/kafka/pom.xml, `mvn dependency:copy-dependencies`), once per machine, into
# ~/.cache/candles/kafka-VERSION/libs (~45 MB, ~40 s on a fresh machine).
# Idempotent: does nothing for what is already there. Prints what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
KAFKA_LIBS="${CANDLES_KAFKA_LIBS:-$HOME/.cache/candles/kafka-$KAFKA_VERSION/libs}"

apt_missing=()
command -v python3 >/dev/null || apt_missing+=(python3)
command -v redis-server >/dev/null || apt_missing+=(redis-server)
command -v openssl >/dev/null || apt_missing+=(openssl)
command -v tmux >/dev/null || apt_missing+=(tmux)
command -v docker-compose >/dev/null || apt_missing+=(docker-compose)
if [ -z "${JAVA_HOME:-}" ] && ! command -v java >/dev/null; then apt_missing+=(openjdk-17-jre-headless); fi
command -v mvn >/dev/null || [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || apt_missing+=(maven)
if ((${#apt_missing[@]})); then
  echo "install-test-deps: installing ${apt_missing[*]} with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if [ ! -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  echo "install-test-deps: fetching Apache Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13 and its dependencies) from Maven Central into $KAFKA_LIBS"
  started=$(date +%s)
  staging="$KAFKA_LIBS.partial"
  rm -rf "$staging"
  # Without -q Maven prints one line per artifact it downloads: the progress.
  mvn -B -ntp -f scripts/kafka/pom.xml dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$staging" \
    | grep --line-buffered -E 'Downloaded|Copying|BUILD|ERROR' | sed -u 's/^/install-test-deps:   /' || true
  [ -f "$staging/kafka_2.13-$KAFKA_VERSION.jar" ] || { echo "install-test-deps: fetching Kafka failed (see the Maven output above)" >&2; exit 1; }
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  rm -rf "$KAFKA_LIBS"
  mv "$staging" "$KAFKA_LIBS"
  echo "install-test-deps: Kafka $KAFKA_VERSION ready in $(( $(date +%s) - started )) s ($(ls "$KAFKA_LIBS" | wc -l) jars)"
fi
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
echo "install-test-deps: redis-server $(redis-server --version | awk '{print $3}'), $("$JAVA" -version 2>&1 | head -1), Apache Kafka $KAFKA_VERSION in $KAFKA_LIBS"
