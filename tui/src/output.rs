//! `--plain` and `--json`: one line per finalized candle on stdout, no escape codes, and the
//! verdicts on the exchanges' 1-minute candles ([`crate::verification`]).
//!
//! - plain: `2026-11-26T06:40:05Z BTC-USDT composite 5s O 97000.1 H 97010 L 96990.5 C 97005 V 1.2345 n 42`;
//!   a mismatch: `2026-11-26T10:31:00Z BTC-USDT kraken 1m mismatch close ours 1.5 theirs 1.6 (verified 57/58)`
//! - json: one object per line, fields named as in the proto, decimals as strings, times RFC 3339
//!   UTC; a verdict is `{"type":"verification", ...}` (every outcome).
//!
//! Each finalized candle identity is printed once, even when a reconnect refills history: per
//! series only candles newer than the last printed one are written; each verdict once too. A
//! closed pipe (`| head -3`) ends the program quietly with success.

use crate::app::{Event, Link, LinkState};
use crate::verification::{self, Verification};
use candles_core::{Candle, CandleId, Exchange, Micros, Pair, Source};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use tokio::sync::mpsc;

/// The line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable.
    Plain,
    /// One JSON object per line.
    Json,
}

/// One human-readable line (no newline); ` partial` at the end when the candle's trades are
/// known to be incomplete.
pub fn plain_line(c: &Candle) -> String {
    format!(
        "{} {} {} {} O {} H {} L {} C {} V {} n {}{}",
        c.start.to_rfc3339_short(),
        c.pair,
        c.source,
        c.interval,
        c.open.normalize(),
        c.high.normalize(),
        c.low.normalize(),
        c.close.normalize(),
        c.volume.normalize(),
        c.trades,
        if c.partial { " partial" } else { "" }
    )
}

/// One JSON object (no newline), fields named as in the proto; decimals as strings;
/// `"partial": true` only on a candle whose trades are known to be incomplete (other lines are
/// as before).
pub fn json_line(c: &Candle) -> String {
    let wire = candles_proto::v1::Candle::from(c);
    let mut value = serde_json::json!({
        "pair": wire.pair,
        "source": wire.source,
        "interval": c.interval.to_string(),
        "start": c.start.to_rfc3339_short(),
        "end": c.end().to_rfc3339_short(),
        "open": wire.open,
        "high": wire.high,
        "low": wire.low,
        "close": wire.close,
        "volume": wire.volume,
        "quote_volume": wire.quote_volume,
        "trades": wire.trades,
        "vwap": wire.vwap,
        "buy_volume": wire.buy_volume,
        "sell_volume": wire.sell_volume,
        "final": wire.r#final,
    });
    if wire.partial {
        value["partial"] = serde_json::Value::Bool(true);
    }
    value.to_string()
}

/// How printing ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The stream ended (or the reader closed the pipe): exit 0.
    Done,
    /// A fatal error: print it and exit non-zero.
    Failed(String),
    /// The server does not build the interval asked for (its message): a usage error, exit 2.
    Refused(String),
}

/// What `--plain` / `--json` print, and the hint shown with the first problem.
#[derive(Clone, Debug)]
pub struct LineOutput<'a> {
    /// The line format.
    pub format: Format,
    /// The pairs to print.
    pub pairs: &'a [Pair],
    /// The sources to print.
    pub sources: &'a [Source],
    /// What to check when a link is down, with the log file (said once, with the first problem).
    pub hint: String,
}

/// What has been said on stderr, so each problem and notice is said once per change.
#[derive(Default)]
struct Said {
    problems: HashMap<Link, String>,
    notices: Vec<String>,
    pairs: Vec<Pair>,
    hint: bool,
}

impl LineOutput<'_> {
    /// Prints finalized candles of the sources from `events` to `out` until the stream ends, a
    /// fatal event arrives, or the pipe closes. Problems (why a link is down, once per change),
    /// notices and pairs the server does not have go to `err`.
    pub async fn print(
        &self,
        events: &mut mpsc::Receiver<Event>,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> io::Result<Outcome> {
        let mut printed: HashMap<(Pair, Source), CandleId> = HashMap::new();
        let mut verdicts: HashMap<(Pair, Exchange), BTreeSet<Micros>> = HashMap::new();
        let mut said = Said::default();
        while let Some(event) = events.recv().await {
            let line = match event {
                Event::Candle(c)
                    if c.is_final
                        && self.pairs.contains(&c.pair)
                        && self.sources.contains(&c.source) =>
                {
                    first_time(&mut printed, &c).then(|| match self.format {
                        Format::Plain => plain_line(&c),
                        Format::Json => json_line(&c),
                    })
                }
                Event::Verified(v) if self.shows(&v) && first_verdict(&mut verdicts, &v) => {
                    match self.format {
                        Format::Plain => verification::plain_line(&v),
                        Format::Json => Some(verification::json_line(&v)),
                    }
                }
                Event::Fatal(message) => return Ok(Outcome::Failed(message)),
                Event::Refused(message) => return Ok(Outcome::Refused(message)),
                other => {
                    self.tell(other, &mut said, err);
                    None
                }
            };
            let Some(line) = line else { continue };
            match writeln!(out, "{line}").and_then(|_| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Outcome::Done),
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Done)
    }

    /// Whether a verdict is printed: its pair is, and its exchange is among the sources (every
    /// exchange when the composite is, as it is made of theirs).
    fn shows(&self, v: &Verification) -> bool {
        self.pairs.contains(&v.pair)
            && (self.sources.contains(&Source::Composite)
                || self.sources.contains(&Source::Exchange(v.exchange)))
    }

    /// Says on `err` what the user should know about `event`, once per change.
    fn tell(&self, event: Event, said: &mut Said, err: &mut impl Write) {
        let mut lines = Vec::new();
        match event {
            Event::Markets(known) if !known.is_empty() => {
                let names: Vec<String> = known.iter().map(Pair::to_string).collect();
                for pair in self.pairs {
                    if !known.contains(pair) && !said.pairs.contains(pair) {
                        said.pairs.push(*pair);
                        lines.push(format!(
                            "the server has no candles for {pair} (it has {}); waiting for them",
                            names.join(", ")
                        ));
                    }
                }
            }
            Event::Problem(link, reason) if said.problems.get(&link) != Some(&reason) => {
                lines.push(format!("{}: {reason}; retrying", link.name()));
                if !said.hint {
                    said.hint = true;
                    lines.push(self.hint.clone());
                }
                said.problems.insert(link, reason);
            }
            Event::Conn(link, state) => {
                log_state(link, state);
                if state == LinkState::Live && said.problems.remove(&link).is_some() {
                    lines.push(format!("{}: live again", link.name()));
                }
            }
            Event::Notice(text) if !said.notices.contains(&text) => {
                lines.push(text.clone());
                said.notices.push(text);
            }
            Event::BadData(reason) => {
                tracing::warn!(%reason, "skipped a candle that failed to decode")
            }
            _ => {}
        }
        for line in lines {
            let _ = writeln!(err, "candles-tui: {line}");
        }
    }
}

/// Whether `c` is newer than the last candle printed for its series (and records it if so).
fn first_time(printed: &mut HashMap<(Pair, Source), CandleId>, c: &Candle) -> bool {
    let id = c.id();
    if printed
        .get(&(c.pair, c.source))
        .is_some_and(|last| last.interval == id.interval && last.start >= id.start)
    {
        return false;
    }
    printed.insert((c.pair, c.source), id);
    true
}

/// Whether the verdict on `v`'s window was not printed yet (and records it if so): a replay
/// after a reconnect prints nothing again.
fn first_verdict(seen: &mut HashMap<(Pair, Exchange), BTreeSet<Micros>>, v: &Verification) -> bool {
    let starts = seen.entry((v.pair, v.exchange)).or_default();
    let new = starts.insert(v.start);
    while starts.len() > verification::RECENT {
        starts.pop_first();
    }
    new
}

fn log_state(link: Link, state: LinkState) {
    tracing::info!(link = link.name(), ?state, "link state");
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Decimal, Interval, Micros};
    use std::str::FromStr;

    fn sample() -> Candle {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        Candle {
            pair: Pair::parse("btcusdt").unwrap(),
            source: Source::Composite,
            interval: Interval::seconds(5),
            start: Micros(1_795_674_005_000_000),
            open: d("97000.10"),
            high: d("97010"),
            low: d("96990.5"),
            close: d("97005.00"),
            volume: d("1.2345"),
            quote_volume: d("119750.0"),
            buy_volume: d("1"),
            sell_volume: d("0.2345"),
            trades: 42,
            is_final: true,
            partial: false,
        }
    }

    fn lines(format: Format, pairs: &[Pair]) -> LineOutput<'_> {
        LineOutput {
            format,
            pairs,
            sources: &[Source::Composite],
            hint: "log: /tmp/x.log".into(),
        }
    }

    #[tokio::test]
    async fn problems_and_notices_go_to_stderr_once_per_change() {
        let (tx, mut rx) = mpsc::channel(16);
        let refused = || Event::Problem(Link::Server, "cannot connect: Connection refused".into());
        let retry = Event::Conn(
            Link::Server,
            LinkState::Reconnecting {
                in_ms: 500,
                attempt: 1,
            },
        );
        for e in [
            refused(),
            retry.clone(),
            refused(),
            retry,
            Event::Notice("--history 999 is more than the server keeps".into()),
            Event::Notice("--history 999 is more than the server keeps".into()),
            Event::Problem(Link::Server, "cannot connect: dns error".into()),
            Event::Conn(Link::Server, LinkState::Live),
            refused(),
        ] {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        let pair = Pair::parse("btcusdt").unwrap();
        let mut err = Vec::new();
        lines(Format::Plain, &[pair])
            .print(&mut rx, &mut Vec::new(), &mut err)
            .await
            .unwrap();
        let err = String::from_utf8(err).unwrap();
        assert_eq!(
            err.lines().collect::<Vec<_>>(),
            [
                "candles-tui: server: cannot connect: Connection refused; retrying",
                "candles-tui: log: /tmp/x.log",
                "candles-tui: --history 999 is more than the server keeps",
                "candles-tui: server: cannot connect: dns error; retrying",
                "candles-tui: server: live again",
                "candles-tui: server: cannot connect: Connection refused; retrying",
            ]
        );
    }

    #[test]
    fn plain_line_is_human_readable() {
        assert_eq!(
            plain_line(&sample()),
            "2026-11-26T06:20:05Z BTC-USDT composite 5s O 97000.1 H 97010 L 96990.5 C 97005 V 1.2345 n 42"
        );
    }

    #[test]
    fn json_line_uses_proto_names_and_string_decimals() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&sample())).unwrap();
        assert_eq!(v["pair"], "BTC-USDT");
        assert_eq!(v["source"], "composite");
        assert_eq!(v["interval"], "5s");
        assert_eq!(v["start"], "2026-11-26T06:20:05Z");
        assert_eq!(v["end"], "2026-11-26T06:20:10Z");
        assert_eq!(v["open"], "97000.1");
        assert_eq!(v["volume"], "1.2345");
        assert_eq!(v["trades"], 42);
        assert_eq!(v["final"], true);
        assert!(v["vwap"].is_string());
        assert_eq!(v.as_object().unwrap().len(), 16);
    }

    #[test]
    fn a_partial_candle_says_so_in_both_formats() {
        let c = Candle {
            partial: true,
            ..sample()
        };
        assert!(
            plain_line(&c).ends_with(" n 42 partial"),
            "{}",
            plain_line(&c)
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&c)).unwrap();
        assert_eq!(v["partial"], true);
        assert_eq!(v.as_object().unwrap().len(), 17);
    }

    fn verdict(exchange: Exchange, minute: i64, outcome: verification::Outcome) -> Verification {
        let diffs = vec![verification::Diff {
            field: "volume".into(),
            ours: "2".into(),
            theirs: "3".into(),
        }];
        Verification {
            pair: Pair::parse("btcusdt").unwrap(),
            exchange,
            interval: Interval::seconds(60),
            start: Micros(1_795_674_000_000_000 + minute * 60_000_000),
            outcome,
            diffs: if outcome == verification::Outcome::Mismatch {
                diffs
            } else {
                Vec::new()
            },
            reason: String::new(),
            tally: verification::Tally::default(),
            checked_at: Micros(1_795_674_000_000_000 + (minute + 1) * 60_000_000),
        }
    }

    #[tokio::test]
    async fn verdicts_are_printed_once_json_each_plain_the_mismatches() {
        use verification::Outcome::{Match, Mismatch};
        let events = || {
            let m = verdict(Exchange::Kraken, 1, Mismatch);
            [
                Event::Verified(verdict(Exchange::Binance, 0, Match)),
                Event::Verified(m.clone()),
                // A replay after a reconnect, and another pair.
                Event::Verified(m),
                Event::Verified(Verification {
                    pair: Pair::parse("ethusdt").unwrap(),
                    ..verdict(Exchange::Kraken, 2, Mismatch)
                }),
            ]
        };
        let pair = Pair::parse("btcusdt").unwrap();
        let run = |format, sources: Vec<Source>| async move {
            let (tx, mut rx) = mpsc::channel(16);
            for e in events() {
                tx.send(e).await.unwrap();
            }
            drop(tx);
            let mut out = Vec::new();
            let pairs = [pair];
            let lines = LineOutput {
                sources: &sources,
                ..lines(format, &pairs)
            };
            lines
                .print(&mut rx, &mut out, &mut io::sink())
                .await
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let json = run(Format::Json, vec![Source::Composite]).await;
        let outcomes: Vec<String> = json
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| format!("{} {} {}", v["type"], v["source"], v["outcome"]))
            .collect();
        assert_eq!(
            outcomes,
            [
                r#""verification" "binance" "match""#,
                r#""verification" "kraken" "mismatch""#
            ]
        );
        let plain = run(Format::Plain, vec![Source::Composite]).await;
        assert_eq!(
            plain,
            "2026-11-26T06:21:00Z BTC-USDT kraken 1m mismatch volume ours 2 theirs 3 (verified 0/0)\n"
        );
        let binance_only = run(Format::Json, vec![Source::Exchange(Exchange::Binance)]).await;
        assert_eq!(binance_only.lines().count(), 1, "{binance_only}");
    }

    #[tokio::test]
    async fn prints_each_final_once_and_stops_on_broken_pipe() {
        let (tx, mut rx) = mpsc::channel(16);
        let c = sample();
        let mut forming = c;
        forming.is_final = false;
        for e in [Event::Candle(forming), Event::Candle(c), Event::Candle(c)] {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        let outcome = lines(Format::Plain, &[c.pair])
            .print(&mut rx, &mut out, &mut io::sink())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);

        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(Event::Candle(c)).await.unwrap();
        let outcome = lines(Format::Json, &[c.pair])
            .print(&mut rx, &mut Closed, &mut io::sink())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Done);
    }
}
