//! `--embedded` verifies too: one [`Verifier`] per exchange (the connector's verifier core, its
//! REST client and pace) is fed the engine's final per-exchange 1-minute candles, and each
//! verdict reaches the dashboard and the line modes as [`Event::Verified`], exactly as a
//! server's do. The engine builds 1m among its default intervals; with `--intervals` lacking
//! it nothing is verified (a notice says so).

use crate::app::Event;
use crate::verification::Verification;
use candles_connector::ConnectorConfig;
use candles_connector::verify::{Settings, Verifier};
use candles_core::verify::MINUTE;
use candles_core::{Candle, Intervals};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The feeding ends of every exchange's verifier.
#[derive(Clone, Debug, Default)]
pub struct Verifiers(Vec<Verifier>);

impl Verifiers {
    /// Starts a verifier per connector configuration (the connectors' own: the same REST pace);
    /// verdicts go to `events` until `shutdown`. None when the engine does not build 1m
    /// (`intervals`).
    pub fn start(
        connectors: &[ConnectorConfig],
        intervals: Intervals,
        events: mpsc::Sender<Event>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Verifiers> {
        if !intervals.contains(MINUTE) {
            let notice = "--intervals has no 1m: the exchanges' 1-minute candles are not verified";
            let _ = events.try_send(Event::Notice(notice.to_string()));
            return Ok(Verifiers::default());
        }
        let mut verifiers = Vec::new();
        for config in connectors {
            let settings = Settings::for_exchange(config.exchange);
            let (verifier, verdicts) = Verifier::spawn(config, settings, shutdown.clone())?;
            tracker.spawn(forward(verdicts, events.clone()));
            verifiers.push(verifier);
        }
        Ok(Verifiers(verifiers))
    }

    /// Hands each final 1-minute candle of an exchange in `finals` to that exchange's
    /// verifier (each takes only its own; everything else is ignored).
    pub fn check(&self, finals: &[Candle]) {
        for candle in finals {
            for verifier in &self.0 {
                if verifier.check(candle, candle.partial) {
                    break;
                }
            }
        }
    }
}

/// Sends each verdict on as an event until either side closes.
async fn forward(
    mut verdicts: mpsc::Receiver<candles_proto::v1::Verification>,
    events: mpsc::Sender<Event>,
) {
    while let Some(wire) = verdicts.recv().await {
        let event = match Verification::try_from(&wire) {
            Ok(v) => Event::Verified(v),
            Err(e) => Event::BadData(e),
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Exchange, Interval, Pair};

    #[tokio::test]
    async fn without_1m_built_nothing_is_verified_and_a_notice_says_so() {
        let five = Interval::seconds(5);
        let mut config = ConnectorConfig::new(Exchange::Binance, Pair::defaults());
        config.rest_url = Some("http://127.0.0.1:9".into());
        let configs = [config];
        let (tx, mut rx) = mpsc::channel(4);
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let only_5s = Intervals::new(&[five]).unwrap();
        let verifiers = Verifiers::start(&configs, only_5s, tx.clone(), &tracker, &shutdown);
        assert!(verifiers.unwrap().0.is_empty());
        match rx.try_recv() {
            Ok(Event::Notice(text)) => assert!(text.contains("no 1m"), "{text}"),
            other => panic!("{other:?}"),
        }
        let with_1m = Intervals::new(&[five, MINUTE]).unwrap();
        let verifiers = Verifiers::start(&configs, with_1m, tx, &tracker, &shutdown).unwrap();
        assert_eq!(verifiers.0.len(), 1, "one per exchange");
        shutdown.cancel();
    }
}
