//! Validation of a `Subscribe` request: which pairs, sources and how much history, or an
//! `INVALID_ARGUMENT` naming the bad input and what is accepted.

use candles_core::{Interval, Pair, Source};
use candles_proto::v1::SubscribeRequest;
use std::str::FromStr;
use tonic::Status;

/// Most pairs one subscription may name.
pub const MAX_PAIRS: usize = 256;

/// A validated subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Pairs, canonical, without duplicates.
    pub pairs: Vec<Pair>,
    /// Sources, without duplicates.
    pub sources: Vec<Source>,
    /// Finalized candles per series to send first.
    pub history: usize,
    /// Whether in-progress candles are wanted.
    pub live_updates: bool,
    /// Whether the verdicts on the pairs' candles are wanted.
    pub verifications: bool,
}

/// Checks a request; the error names the bad input and what is accepted.
pub fn validate(
    req: &SubscribeRequest,
    history_max: usize,
    served: &[Pair],
) -> Result<Subscription, Status> {
    if req.pairs.iter().all(|p| p.trim().is_empty()) {
        return Err(Status::invalid_argument(
            "pairs is required: name at least one pair, e.g. BTC-USDT",
        ));
    }
    if req.pairs.len() > MAX_PAIRS {
        return Err(Status::invalid_argument(format!(
            "too many pairs ({}): at most {MAX_PAIRS} per subscription",
            req.pairs.len()
        )));
    }
    let mut pairs = Vec::new();
    for p in req.pairs.iter().filter(|p| !p.trim().is_empty()) {
        let pair = Pair::parse(p).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !served.contains(&pair) {
            let list: Vec<String> = served.iter().map(Pair::to_string).collect();
            return Err(Status::invalid_argument(format!(
                "unknown pair {} ({pair}): this server serves {}; ask for one of those (or start the server with --pairs)",
                candles_core::excerpt(p),
                list.join(", ")
            )));
        }
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    let mut sources = Vec::new();
    for s in &req.sources {
        let source = Source::from_str(s).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    if sources.is_empty() {
        sources.push(Source::Composite);
    }
    let history = req.history as usize;
    if history > history_max {
        return Err(Status::invalid_argument(format!(
            "history {history} is more than this server keeps ({history_max} candles per pair and source); ask for at most {history_max}"
        )));
    }
    Ok(Subscription {
        pairs,
        sources,
        history,
        live_updates: req.live_updates,
        verifications: req.verifications,
    })
}

/// The interval a subscription asks for: `default` when it names none, else one of `served`;
/// anything else is `INVALID_ARGUMENT` naming it and the served ones.
pub fn validate_interval(
    requested: Option<&prost_types::Duration>,
    served: &[Interval],
    default: Interval,
) -> Result<Interval, Status> {
    let Some(d) = requested else {
        return Ok(default);
    };
    let list = || {
        served
            .iter()
            .map(Interval::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let interval = candles_proto::interval_from(Some(d)).map_err(|e| {
        Status::invalid_argument(format!(
            "{e}; this server builds {}; ask for one of those",
            list()
        ))
    })?;
    if !served.contains(&interval) {
        return Err(Status::invalid_argument(format!(
            "interval {interval} is not built by this server: it builds {}; ask for one of those",
            list()
        )));
    }
    Ok(interval)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn served() -> Vec<Pair> {
        Pair::defaults()
    }

    fn req(pairs: &[&str], sources: &[&str], history: u32) -> SubscribeRequest {
        SubscribeRequest {
            pairs: pairs.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            history,
            live_updates: false,
            interval: None,
            verifications: false,
        }
    }

    #[test]
    fn an_interval_is_the_default_when_unset_and_must_be_served() {
        let five = Interval::parse("5s").unwrap();
        let minute = Interval::parse("1m").unwrap();
        let served = [five, minute];
        assert_eq!(validate_interval(None, &served, five).unwrap(), five);
        let d = candles_proto::duration(minute);
        assert_eq!(validate_interval(Some(&d), &served, five).unwrap(), minute);
        let hour = candles_proto::duration(Interval::parse("1h").unwrap());
        let e = validate_interval(Some(&hour), &served, five).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("interval 1h") && e.message().contains("5s, 1m"),
            "{}",
            e.message()
        );
        let negative = prost_types::Duration {
            seconds: -5,
            nanos: 0,
        };
        let e = validate_interval(Some(&negative), &served, five).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("interval"), "{}", e.message());
    }

    #[test]
    fn validation_names_the_bad_input() {
        let ok = validate(
            &req(&["btcusdt", "BTC-USDT", "eth/usdt"], &[], 5),
            10,
            &served(),
        )
        .unwrap();
        assert_eq!(ok.pairs.len(), 2);
        assert_eq!(ok.sources, vec![Source::Composite]);
        let e = validate(&req(&[], &[], 0), 10, &served()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("pairs"), "{}", e.message());
        let e = validate(&req(&["dogeusdt"], &[], 0), 10, &served()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("\"dogeusdt\"")
                && e.message().contains("BTC-USDT, ETH-USDT, SOL-USDT"),
            "{}",
            e.message()
        );
        let e = validate(&req(&["nonsense!"], &[], 0), 10, &served()).unwrap_err();
        assert!(e.message().contains("\"nonsense!\""), "{}", e.message());
        let e = validate(&req(&["btcusdt"], &["ftx"], 0), 10, &served()).unwrap_err();
        assert!(
            e.message().contains("\"ftx\"") && e.message().contains("composite"),
            "{}",
            e.message()
        );
        let e = validate(&req(&["btcusdt"], &[], 11), 10, &served()).unwrap_err();
        assert!(
            e.message().contains("11") && e.message().contains("10"),
            "{}",
            e.message()
        );
    }
}
