//! What `--embedded` runs: pairs, exchanges with their URL overrides, intervals and timing.
//!
//! Shared by [`crate::embedded`] (the engine) and [`crate::connectors`] (the exchange feeds), so
//! neither imports the other. Also the `EXCHANGE=URL` values of `--ws-url` / `--rest-url`.

use candles_core::time::Duration;
use candles_core::{Exchange, Interval, Intervals, Pair};
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
    /// The intervals the engine builds.
    pub intervals: Intervals,
    /// The interval shown first (one of `intervals`).
    pub interval: Interval,
    /// Grace period after a window's end.
    pub grace: Duration,
    /// How often forming candles are sent.
    pub update_interval: Duration,
    /// Send forming candles at all.
    pub live: bool,
    /// Verify each exchange's final 1-minute candles against the exchange's own.
    pub verify: bool,
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

/// The intervals `--embedded` builds and the one it shows first, from `--intervals` and
/// `--interval`: the given interval is added to the set when not in it (an error when it cannot
/// be, e.g. not a whole multiple of the finest); without one, 5s when built, else the finest (the
/// service's default subscription).
pub fn intervals(set: Intervals, shown: Option<Interval>) -> Result<(Intervals, Interval), String> {
    let Some(shown) = shown else {
        let five = Interval::seconds(5);
        let first = if set.contains(five) {
            five
        } else {
            set.finest()
        };
        return Ok((set, first));
    };
    if set.contains(shown) {
        return Ok((set, shown));
    }
    let mut list = set.as_slice().to_vec();
    list.push(shown);
    Intervals::new(&list)
        .map(|set| (set, shown))
        .map_err(|e| format!("--interval {shown} cannot be built with --intervals {set}: {e}"))
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
    fn the_shown_interval_is_5s_or_the_finest_and_a_given_one_joins_the_set() {
        let default = Intervals::default_set();
        assert_eq!(
            intervals(default, None),
            Ok((default, Interval::seconds(5)))
        );
        let minutes: Intervals = "1m,5m".parse().unwrap();
        assert_eq!(
            intervals(minutes, None),
            Ok((minutes, Interval::seconds(60)))
        );
        let (set, shown) =
            intervals(default, Some(Interval::from_micros(500_000).unwrap())).unwrap();
        assert_eq!((set.len(), set.finest(), shown), (9, shown, shown));
        let err = intervals(minutes, Some(Interval::seconds(7))).unwrap_err();
        assert!(
            err.contains("--interval 7s") && err.contains("1m,5m"),
            "{err}"
        );
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
