//! Kafka client settings shared by `candles-connector` and `candles-service`: the stack's own
//! client settings ([`clients`]: the trade producer and the group consumer), and client properties
//! from the user (`--kafka-property key=value`, repeatable, or
//! `CANDLES_KAFKA_PROPERTIES=k=v,k=v`), passed to librdkafka as they are, after the connector's
//! own settings: the way to reach a managed or secured cluster (`security.protocol=SASL_SSL`,
//! `sasl.mechanisms=PLAIN`, `sasl.username=…`, `sasl.password=…`, `ssl.ca.location=…`).
//!
//! In the connector the same properties go to the producer and to the consumers that read the
//! topic back; in the service to the group consumer, the dead-letter producer and the watermark
//! client; so a secured broker works for all of them.
//!
//! Secrets never reach a log line or an error: the value of any key that contains `password`,
//! `secret` or `sasl.oauthbearer` (case-insensitive) is shown as `<redacted>`, and librdkafka's
//! own error texts are scrubbed of those values ([`KafkaProperties::redact`]).

#![forbid(unsafe_code)]

pub mod clients;

use rdkafka::ClientConfig;
use std::fmt;

/// Parts of a key that mark its value as a secret.
const SECRET_MARKERS: [&str; 3] = ["password", "secret", "sasl.oauthbearer"];

/// What a secret value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Whether the value of `key` is a secret (never printed).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| key.contains(m))
}

/// A `--kafka-property` that is not `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// No `=` (or an empty key).
    #[error(
        "--kafka-property {shown}: expected key=value (e.g. security.protocol=SASL_SSL); several are given as repeated flags or comma-separated in CANDLES_KAFKA_PROPERTIES"
    )]
    Syntax {
        /// The input as it may be shown (hidden when it mentions a secret key).
        shown: String,
    },
    /// A key with characters librdkafka keys never have.
    #[error(
        "--kafka-property {shown}: the key {key:?} is not a Kafka client property name (letters, digits, '.', '_', '-')"
    )]
    Key {
        /// The input as it may be shown.
        shown: String,
        /// The key (cut when long).
        key: String,
    },
}

/// The `--kafka-property` flag, for a program's command line (`#[command(flatten)]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaPropertyArgs {
    /// A Kafka client property key=value for every Kafka client of this program (e.g.
    /// security.protocol=SASL_SSL); repeatable, or comma-separated in the environment variable.
    /// Values of keys naming a password or secret are never logged.
    #[arg(
        long = "kafka-property",
        env = "CANDLES_KAFKA_PROPERTIES",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        hide_env_values = true
    )]
    pub kafka_properties: Vec<String>,
}

impl KafkaPropertyArgs {
    /// The properties given ([`KafkaProperties::parse_entries`]).
    pub fn parse(&self) -> Result<KafkaProperties, PropertyError> {
        KafkaProperties::parse_entries(&self.kafka_properties)
    }
}

/// Client properties, in the order given; later ones win.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(Vec<(String, String)>);

impl KafkaProperties {
    /// No extra properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one `key=value` (surrounding spaces trimmed; the value may contain `=`).
    pub fn parse_one(text: &str) -> Result<(String, String), PropertyError> {
        let shown = || {
            if is_secret(text) {
                "(an entry naming a secret key; not shown)".to_string()
            } else {
                candles_core::excerpt(text)
            }
        };
        let Some((key, value)) = text.split_once('=') else {
            return Err(PropertyError::Syntax { shown: shown() });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(PropertyError::Syntax { shown: shown() });
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            let key_shown: String = key.chars().take(48).collect();
            return Err(PropertyError::Key {
                shown: if is_secret(key) {
                    "(an entry naming a secret key; not shown)".to_string()
                } else {
                    candles_core::excerpt(text)
                },
                key: key_shown,
            });
        }
        Ok((key.to_string(), value.trim().to_string()))
    }

    /// Parses a comma-separated list of `key=value` (empty entries are skipped). Values cannot
    /// contain commas in this form; repeat `--kafka-property` for such values.
    pub fn parse_list(text: &str) -> Result<Self, PropertyError> {
        let mut out = KafkaProperties::new();
        for entry in text.split(',').filter(|e| !e.trim().is_empty()) {
            let (k, v) = Self::parse_one(entry)?;
            out.0.push((k, v));
        }
        Ok(out)
    }

    /// Parses `--kafka-property` entries, one `key=value` each (what clap collected). Not a clap
    /// value parser: clap's own error would echo the raw entry, which may hold a secret.
    pub fn parse_entries(entries: &[String]) -> Result<Self, PropertyError> {
        let mut out = KafkaProperties::new();
        for entry in entries {
            let (k, v) = Self::parse_one(entry)?;
            out.0.push((k, v));
        }
        Ok(out)
    }

    /// Adds one property (after the others).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The properties as `(key, value)` pairs (values in clear: do not log them).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets every property on `config` (after what is already there, so they win).
    pub fn apply(&self, config: &mut ClientConfig) {
        for (k, v) in self.iter() {
            config.set(k, v);
        }
    }

    /// `text` with every secret value replaced by [`REDACTED`] (for librdkafka's error texts,
    /// which may quote a value).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in self.iter() {
            if is_secret(k) && !v.is_empty() {
                out = out.replace(v, REDACTED);
            }
        }
        out
    }
}

impl fmt::Display for KafkaProperties {
    /// `k=v,k=<redacted>`: safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let v = if is_secret(k) { REDACTED } else { v };
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KafkaProperties {
    /// Like `Display`: secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KafkaProperties({self})")
    }
}

/// Creates a librdkafka client from `config`; an error names the failing property (librdkafka's
/// text) with secret values scrubbed.
pub fn create<T: rdkafka::config::FromClientConfig>(
    config: &ClientConfig,
    properties: &KafkaProperties,
    what: &str,
) -> anyhow::Result<T> {
    config.create().map_err(|e| {
        anyhow::anyhow!(
            "creating {what}: {} (check --kafka-property / CANDLES_KAFKA_PROPERTIES)",
            properties.redact(&e.to_string())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_lists_parse_and_bad_syntax_names_the_input() {
        let p = KafkaProperties::parse_list(
            "security.protocol=SASL_SSL, sasl.mechanisms=PLAIN,sasl.password=a=b",
        )
        .unwrap();
        let got: Vec<(&str, &str)> = p.iter().collect();
        assert_eq!(
            got,
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.password", "a=b")
            ]
        );
        let e = KafkaProperties::parse_one("client.id")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"client.id\"") && e.contains("key=value"),
            "{e}"
        );
        let e = KafkaProperties::parse_one("=x").unwrap_err().to_string();
        assert!(e.contains("\"=x\""), "{e}");
        let e = KafkaProperties::parse_one("a b=c").unwrap_err().to_string();
        assert!(e.contains("\"a b\""), "{e}");
    }

    #[test]
    fn secrets_are_never_shown() {
        let p = KafkaProperties::parse_list(
            "sasl.username=me,sasl.password=hunter2,ssl.key.password=k3y,sasl.oauthbearer.client.secret=s3cr3t",
        )
        .unwrap();
        let shown = format!("{p} {p:?}");
        for secret in ["hunter2", "k3y", "s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("sasl.username=me"), "{shown}");
        assert_eq!(
            p.redact("Invalid value \"hunter2\" for sasl.password"),
            "Invalid value \"<redacted>\" for sasl.password"
        );
        // A malformed entry about a secret key is not echoed.
        let e = KafkaProperties::parse_one("sasl.password:hunter2")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn librdkafka_names_a_bad_property_and_accepts_a_good_one() {
        let mut p = KafkaProperties::new();
        p.push("client.id", "candles-test");
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", "127.0.0.1:1");
        p.apply(&mut cfg);
        let ok: anyhow::Result<rdkafka::producer::BaseProducer> = create(&cfg, &p, "a producer");
        assert!(ok.is_ok());
        p.push("acks", "sometimes");
        p.apply(&mut cfg);
        let err = create::<rdkafka::producer::BaseProducer>(&cfg, &p, "a producer")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("acks") && err.contains("sometimes"), "{err}");
    }
}
