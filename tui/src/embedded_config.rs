//! What `--embedded` runs: pairs, exchanges with their URL overrides, interval and timing.
//!
//! Shared by [`crate::embedded`] (the engine) and [`crate::connectors`] (the exchange feeds), so
//! neither imports the other. Also the `EXCHANGE=URL` values of `--ws-url` / `--rest-url`.

use candles_core::time::Duration;
use candles_core::{Exchange, Interval, Pair};
use std::str::FromStr;

/// One exchange to connect to, with optional URL overrides (`None`: the real endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feed {
    /// The exchange.
    pub exchange: Exchange,
    /// WebSocket URL override.
    pub ws_url: Option<String>,
    /// REST base URL override.
    pub rest_url: Option<String>,
}

/// What the embedded pipeline runs.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Pairs to watch.
    pub pairs: Vec<Pair>,
    /// Exchanges, each with its URL overrides.
    pub feeds: Vec<Feed>,
    /// Candle interval.
    pub interval: Interval,
    /// Grace period after a window's end.
    pub grace: Duration,
    /// How often forming candles are sent.
    pub update_interval: Duration,
    /// Send forming candles at all.
    pub live: bool,
}

/// One `EXCHANGE=URL` value of `--ws-url` / `--rest-url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeUrl {
    /// The exchange the URL is for.
    pub exchange: Exchange,
    /// The URL.
    pub url: String,
}

impl FromStr for ExchangeUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<ExchangeUrl, String> {
        let expected = || {
            let names: Vec<&str> = Exchange::ALL.iter().map(|e| e.as_str()).collect();
            format!(
                "expected EXCHANGE=URL, e.g. binance=ws://127.0.0.1:9001 (exchanges: {})",
                names.join(", ")
            )
        };
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} has no '='; {}", expected()))?;
        let exchange = Exchange::from_str(name).map_err(|e| format!("{e}; {}", expected()))?;
        let url = url.trim();
        if url.is_empty() {
            return Err(format!("{s:?} has no URL after '='; {}", expected()));
        }
        Ok(ExchangeUrl {
            exchange,
            url: url.to_string(),
        })
    }
}

/// The URL given for `exchange`, if any (the last one wins when given twice).
pub fn url_for(urls: &[ExchangeUrl], exchange: Exchange) -> Option<String> {
    urls.iter()
        .rev()
        .find(|u| u.exchange == exchange)
        .map(|u| u.url.clone())
}

/// The feeds for `exchanges`, each with the overrides given for it.
pub fn feeds(exchanges: &[Exchange], ws: &[ExchangeUrl], rest: &[ExchangeUrl]) -> Vec<Feed> {
    exchanges
        .iter()
        .map(|&exchange| Feed {
            exchange,
            ws_url: url_for(ws, exchange),
            rest_url: url_for(rest, exchange),
        })
        .collect()
}

/// Where `--embedded` data comes from, for the title bar: the real exchanges, local simulators
/// (every override on this machine), or other URLs.
pub fn origin(feeds: &[Feed]) -> String {
    let urls: Vec<&String> = feeds
        .iter()
        .flat_map(|f| [&f.ws_url, &f.rest_url])
        .flatten()
        .collect();
    if urls.is_empty() {
        "embedded · real exchanges".into()
    } else if urls.iter().all(|u| is_local(u)) {
        "embedded · SIMULATED".into()
    } else {
        "embedded · custom URLs".into()
    }
}

/// The host (and port) of a URL: `api.binance.com` for `https://api.binance.com/api/v3?x`.
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    host.rsplit_once('@').map_or(host, |(_, h)| h)
}

/// Whether a URL points at this machine (`localhost`, `127.x`, `[::1]`).
fn is_local(url: &str) -> bool {
    let host = host(url);
    host.starts_with("localhost")
        || host.starts_with("127.")
        || host.starts_with("[::1]")
        || host.starts_with("0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_urls_parse_and_errors_name_the_form() {
        let u: ExchangeUrl = "Kraken=ws://127.0.0.1:9/x".parse().unwrap();
        assert_eq!(u.exchange, Exchange::Kraken);
        assert_eq!(u.url, "ws://127.0.0.1:9/x");
        let err = "ftx=ws://x".parse::<ExchangeUrl>().unwrap_err();
        assert!(
            err.contains("ftx") && err.contains("binance, kraken, coinbase"),
            "{err}"
        );
        let err = "ws://x".parse::<ExchangeUrl>().unwrap_err();
        assert!(err.contains("EXCHANGE=URL"), "{err}");
        assert!("binance=".parse::<ExchangeUrl>().is_err());
    }

    #[test]
    fn feeds_take_the_last_override_and_origin_says_where_data_comes_from() {
        let ws: Vec<ExchangeUrl> = ["binance=ws://a", "binance=ws://127.0.0.1:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let f = feeds(&[Exchange::Binance, Exchange::Kraken], &ws, &[]);
        assert_eq!(f[0].ws_url.as_deref(), Some("ws://127.0.0.1:1"));
        assert_eq!(f[1].ws_url, None);
        assert_eq!(origin(&f[1..]), "embedded · real exchanges");
        assert!(origin(&f[..1]).contains("SIMULATED"));
        let remote = feeds(
            &[Exchange::Kraken],
            &["kraken=wss://k.example".parse().unwrap()],
            &[],
        );
        assert_eq!(origin(&remote), "embedded · custom URLs");
        assert_eq!(
            host("https://u:p@api.binance.com:443/api/v3?x=1"),
            "api.binance.com:443"
        );
    }
}
