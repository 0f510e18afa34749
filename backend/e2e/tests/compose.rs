//! Checks docker-compose.yml against the real binaries, without Docker: every service built from
//! the project's image (`candles:latest`) runs its `command` with its compose `environment`, and
//! must get past flag and environment parsing (clap exits with code 2 and prints its usage
//! hints on a usage error). The
//! binaries have no `--check-config` flag, so each is started and killed after a short while.
//! Also runs `docker-compose config -q`, which validates the file itself.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candles_e2e::bins;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COMPOSE: &str = "docker-compose.yml";
const IMAGE: &str = "candles:latest";

/// (service, command, environment) of every service that runs the project's image.
fn candles_services() -> Vec<(String, Vec<String>, BTreeMap<String, String>)> {
    let path = bins::workspace_root().join(COMPOSE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{COMPOSE} is not valid YAML: {e}"));
    doc.apply_merge().expect("YAML merge keys (<<) resolve");
    let services = doc
        .get("services")
        .and_then(Value::as_mapping)
        .expect("a `services` mapping");
    let mut out = Vec::new();
    for (name, svc) in services {
        let mut svc = svc.clone();
        svc.apply_merge().expect("merge keys resolve");
        let name = name
            .as_str()
            .expect("service names are strings")
            .to_string();
        if svc.get("image").and_then(Value::as_str) != Some(IMAGE) {
            continue;
        }
        let command: Vec<String> = match svc.get("command") {
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| scalar(v).unwrap_or_else(|| panic!("{name}: non-scalar command item")))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            other => panic!("{name}: expected a command, found {other:?}"),
        };
        let mut env = BTreeMap::new();
        match svc.get("environment") {
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let k = k.as_str().expect("env names are strings").to_string();
                    env.insert(k, scalar(v).unwrap_or_default());
                }
            }
            Some(Value::Sequence(items)) => {
                for item in items {
                    let s = scalar(item).unwrap_or_default();
                    let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                    env.insert(k.to_string(), v.to_string());
                }
            }
            None => {}
            Some(other) => panic!("{name}: unexpected environment {other:?}"),
        }
        out.push((name, command, env));
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[test]
fn compose_file_lists_the_backend_services() {
    let services = candles_services();
    let names: Vec<&str> = services.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "connector-binance",
        "connector-kraken",
        "connector-coinbase",
        "candles-service",
    ] {
        assert!(
            names.contains(&want),
            "{COMPOSE} has no `{want}` service running {IMAGE}: {names:?}"
        );
    }
    // Every program the compose file runs is one the Dockerfile puts in the image.
    let dockerfile =
        std::fs::read_to_string(bins::workspace_root().join("Dockerfile")).expect("Dockerfile");
    for (name, command, _) in &services {
        assert!(
            dockerfile.contains(&format!("target/release/{}", command[0])),
            "{name} runs `{}`, which the Dockerfile does not copy into the image",
            command[0]
        );
    }
}

#[test]
fn every_compose_command_parses_with_its_environment() {
    bins::ensure_built().unwrap_or_else(|e| panic!("{e:#}"));
    let services = candles_services();
    assert!(!services.is_empty(), "no service of {COMPOSE} runs {IMAGE}");
    let mut failures = Vec::new();
    for (name, command, env) in services {
        let bin = bins::bin(&command[0]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let mut cmd = Command::new(&bin);
        cmd.args(&command[1..])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", bin.display()));
        // Parsing takes milliseconds; anything still running after this got past it.
        let deadline = Instant::now() + Duration::from_millis(1_500);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        if status.is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        match status {
            // clap: exit 2 and its usage hints. (Exit 2 alone is not enough: the connector also
            // exits 2 when the exchange's REST API cannot be reached for the pair check.)
            Some(s) if s.code() == Some(2) && (stderr.contains("Usage:") || stderr.contains("try '--help'")) => failures.push(format!(
                "{name}: `{}` with environment {env:?} is rejected by the argument parser (exit 2):\n{stderr}",
                command.join(" ")
            )),
            Some(s) => eprintln!("{name}: exited early ({s}) but not with a usage error; stderr:\n{stderr}"),
            None => eprintln!("{name}: still running after parsing; killed"),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn docker_compose_validates_the_file() {
    let root = bins::workspace_root();
    let out = Command::new("docker-compose")
        .current_dir(&root)
        .args(["-f", COMPOSE, "config", "-q"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker-compose ({e}): install it with scripts/install-test-deps.sh (Debian package docker-compose)"));
    assert!(
        out.status.success(),
        "docker-compose -f {COMPOSE} config -q failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compose runs the Apache Kafka version the tests, benchmarks and the native stack run: the
/// `apache/kafka` image tag equals `candles_testkit::KAFKA_VERSION`, and so does the version
/// `scripts/kafka/pom.xml` fetches from Maven Central.
#[test]
fn compose_and_the_tests_run_the_same_kafka_version() {
    let root = bins::workspace_root();
    let compose = std::fs::read_to_string(root.join(COMPOSE)).unwrap();
    let tags: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: apache/kafka:"))
        .collect();
    assert!(!tags.is_empty(), "{COMPOSE} runs no apache/kafka image");
    for tag in &tags {
        assert_eq!(
            *tag,
            candles_testkit::KAFKA_VERSION,
            "{COMPOSE}: apache/kafka:{tag}, the tests run {}",
            candles_testkit::KAFKA_VERSION
        );
    }
    let pom = std::fs::read_to_string(root.join("scripts/kafka/pom.xml")).unwrap();
    let wanted = format!(
        "<kafka.version>{}</kafka.version>",
        candles_testkit::KAFKA_VERSION
    );
    assert!(
        pom.contains(&wanted),
        "scripts/kafka/pom.xml does not fetch Kafka {}",
        candles_testkit::KAFKA_VERSION
    );
}

/// Compose's Redis keeps the candle history the way the tests' and the native stack's Redis do
/// (whose restarts `full_stack`'s `redis_restart_loses_nothing` checks): its command has
/// `candles_testkit::redis::PERSISTENCE`, and its data dir `/data` is a named volume.
#[test]
fn compose_redis_persists_history_like_the_tests() {
    let path = bins::workspace_root().join(COMPOSE);
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let redis = &doc["services"]["redis"];
    let command: Vec<String> = redis["command"]
        .as_sequence()
        .expect("the redis service has a command list")
        .iter()
        .filter_map(scalar)
        .collect();
    let persistence = candles_testkit::redis::PERSISTENCE.map(String::from);
    assert!(
        command.windows(persistence.len()).any(|w| w == persistence),
        "{COMPOSE}: redis runs {command:?}, without {persistence:?}"
    );
    let volumes: Vec<String> = redis["volumes"]
        .as_sequence()
        .expect("the redis service has volumes")
        .iter()
        .filter_map(scalar)
        .collect();
    let volume = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/data"))
        .unwrap_or_else(|| panic!("{COMPOSE}: no volume on redis's /data: {volumes:?}"));
    assert!(
        doc["volumes"].get(volume).is_some(),
        "{COMPOSE}: redis's volume {volume} is not a named volume"
    );
}
