//! The verifier: our final 1-minute candles of one exchange, checked against that exchange's
//! own candles from its public REST API, at the exchange's pace (the connector's shared
//! [`Pacer`](crate::pacer::Pacer), with gap fill and the listing check).
//!
//! Feed it our final per-exchange 1m candles ([`Verifier::check`]); it waits until the exchange
//! has settled the minute ([`Settings`]), asks [`RestClient::exchange_candle`], re-asks after
//! doubling waits while the exchange has no final candle yet or does not answer, and yields one
//! verdict per candle on the receiver [`Verifier::spawn`] returns: a
//! `candles_proto::v1::Verification` (`match`, `mismatch` naming every field with ours and
//! theirs, `unavailable` with the reason after the patience, `partial` when our candle is known
//! incomplete), the pair's running tally included. Every verdict is counted in
//! `connector_verifications_total{exchange,pair,outcome}`; a mismatch is logged at WARN with
//! every field.
//!
//! No Kafka, no Redis here: the connector binary feeds it from the services' Redis Pub/Sub and
//! reports the verdicts (`relay`); `candles-tui --embedded` feeds it from its
//! in-process engine.
//!
//! - [`schedule`] (*pure*): when a check is due, when to give up, the bounded queue.
//! - [`judge`] (*pure*): the verdict from an answer, the tally, the wire form.
//! - `relay` (feature `kafka`): the connector binary's feed from Redis and its reports.

pub mod judge;
#[cfg(feature = "kafka")]
pub mod relay;
pub mod schedule;

pub use judge::{Outcome, Tally};
pub use schedule::Settings;

use crate::ConnectorConfig;
use crate::rest::RestClient;
use crate::telemetry::{VERIFICATIONS, VERIFICATIONS_DROPPED};
use candles_core::verify::MINUTE;
use candles_core::{Candle, Exchange, Micros, Pair, Source};
use candles_proto::v1;
use judge::Step;
use schedule::{Check, Pending};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Verdicts buffered for a slow reader before the verifier waits for it.
const VERDICT_BUFFER: usize = 256;

/// What the feeding side and the checking task share.
#[derive(Debug)]
struct State {
    pending: Pending,
    tallies: HashMap<Pair, Tally>,
}

#[derive(Debug)]
struct Shared {
    exchange: Exchange,
    pairs: Vec<Pair>,
    settings: Settings,
    state: Mutex<State>,
    fed: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The feeding end of one exchange's verifier (clones feed the same one).
#[derive(Debug, Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
}

impl Verifier {
    /// Starts verifying `config`'s exchange and pairs, asking `config`'s REST API
    /// ([`ConnectorConfig::rest_url`]) through its pace, until `shutdown`. Returns the feeding end
    /// and the verdicts, in the order they are reached.
    pub fn spawn(
        config: &ConnectorConfig,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Verifier, mpsc::Receiver<v1::Verification>)> {
        let rest = RestClient::new(config)?;
        let shared = Arc::new(Shared {
            exchange: config.exchange,
            pairs: config.pairs.clone(),
            settings,
            state: Mutex::new(State {
                pending: Pending::new(settings.max_pending),
                tallies: HashMap::new(),
            }),
            fed: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(VERDICT_BUFFER);
        let task = Task {
            shared: shared.clone(),
            rest,
            rest_url: config.rest_url(),
            out: tx,
        };
        tokio::spawn(async move {
            tokio::select! {
                () = task.run() => {}
                () = shutdown.cancelled() => {}
            }
        });
        Ok((Verifier { shared }, rx))
    }

    /// Queues our candle for checking; `partial`: its trades are known to be incomplete. Only a
    /// final 1-minute candle of this verifier's exchange and one of its pairs is taken (`true`);
    /// anything else is ignored (`false`), as is a minute already waiting.
    pub fn check(&self, candle: &Candle, partial: bool) -> bool {
        let s = &self.shared;
        if candle.source != Source::Exchange(s.exchange)
            || candle.interval != MINUTE
            || !candle.is_final
            || !s.pairs.contains(&candle.pair)
        {
            return false;
        }
        let (queued, dropped) = s
            .state()
            .pending
            .push(Check::new(*candle, partial, &s.settings));
        if let Some(old) = dropped {
            metrics::counter!(VERIFICATIONS_DROPPED, "exchange" => s.exchange.as_str())
                .increment(1);
            tracing::warn!(exchange = %s.exchange, pair = %old.candle.pair, minute = %old.candle.start.to_rfc3339(),
                "too many candles waiting to be verified: the oldest is not checked");
        }
        s.fed.notify_one();
        queued
    }

    /// Starts `pair`'s tally from `tally` (e.g. the latest verdict stored before a restart).
    pub fn seed(&self, pair: Pair, tally: Tally) {
        self.shared.state().tallies.insert(pair, tally);
    }

    /// `pair`'s tally so far.
    pub fn tally(&self, pair: Pair) -> Tally {
        self.shared
            .state()
            .tallies
            .get(&pair)
            .copied()
            .unwrap_or_default()
    }

    /// Candles not checked because too many were waiting.
    pub fn dropped(&self) -> u64 {
        self.shared.state().pending.dropped()
    }

    /// Candles waiting for their check.
    pub fn pending(&self) -> usize {
        self.shared.state().pending.len()
    }
}

/// The checking loop: one ask at a time, the earliest due first.
struct Task {
    shared: Arc<Shared>,
    rest: RestClient,
    rest_url: String,
    out: mpsc::Sender<v1::Verification>,
}

impl Task {
    async fn run(self) {
        loop {
            let due = self.shared.state().pending.take_due(Micros::now());
            let Some(check) = due else {
                self.idle().await;
                continue;
            };
            let (pair, start) = (check.candle.pair, check.candle.start);
            let answer = self.rest.exchange_candle(&self.rest_url, pair, start).await;
            match judge::step(check, answer, Micros::now()) {
                Step::Again(check) => self.shared.state().pending.put_back(check),
                Step::Done(candle, outcome) => self.report(&candle, &outcome).await,
            }
        }
    }

    /// Sleeps until the next check is due or a candle is fed.
    async fn idle(&self) {
        let next = self.shared.state().pending.next_due();
        let wait = next.map_or(Duration::from_secs(3600), |due| {
            Duration::from_micros(u64::try_from(due.0 - Micros::now().0).unwrap_or(0))
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.shared.fed.notified() => {}
        }
    }

    /// Counts, logs and hands on one verdict.
    async fn report(&self, candle: &Candle, outcome: &Outcome) {
        let exchange = self.shared.exchange;
        let tally = {
            let mut state = self.shared.state();
            let tally = state.tallies.entry(candle.pair).or_default();
            tally.record(outcome);
            *tally
        };
        metrics::counter!(VERIFICATIONS, "exchange" => exchange.as_str(),
            "pair" => candle.pair.to_string(), "outcome" => outcome.name())
        .increment(1);
        let minute = candle.start.to_rfc3339();
        match outcome {
            Outcome::Mismatch(diffs) => tracing::warn!(%exchange, pair = %candle.pair, %minute,
                diffs = %judge::describe(diffs), "our candle differs from the exchange's"),
            Outcome::Unavailable(reason) => tracing::info!(%exchange, pair = %candle.pair, %minute,
                %reason, "candle not verified: the exchange's is unavailable"),
            Outcome::Partial(reason) => {
                tracing::info!(%exchange, pair = %candle.pair, %minute, %reason, "partial candle checked")
            }
            Outcome::Match => {
                tracing::debug!(%exchange, pair = %candle.pair, %minute, "candle verified")
            }
        }
        // A reader that went away only loses the wire copy; counting and logging go on.
        let _ = self
            .out
            .send(judge::wire(candle, outcome, tally, Micros::now()))
            .await;
    }
}
