//! The sequencer's rules, against a scripted REST filler.

use super::*;
use candles_core::{Exchange, Side};

fn t(pair: &str, id: u64) -> Trade {
    Trade::new(
        Exchange::Binance,
        Pair::parse(pair).unwrap(),
        id,
        "1",
        "1",
        Side::Buy,
        Micros(id as i64),
    )
    .unwrap()
}

/// A fake REST: knows some trades, records the gaps asked for.
#[derive(Default)]
struct Rest {
    known: Vec<Trade>,
    asked: Vec<Gap>,
}

impl GapFiller for Rest {
    async fn fill(&mut self, gap: Gap) -> Vec<Trade> {
        self.asked.push(gap);
        // Deliberately unordered and overlapping, like a careless server.
        self.known.iter().rev().copied().collect()
    }
}

fn ids(a: &Admitted) -> Vec<u64> {
    a.publish.iter().map(|t| t.id).collect()
}

async fn admit(s: &mut Sequencer, rest: &mut Rest, list: &[u64], snapshot: bool) -> Admitted {
    s.admit(
        list.iter().map(|i| t("BTC-USDT", *i)).collect(),
        snapshot,
        rest,
    )
    .await
}

#[tokio::test]
async fn first_trade_is_the_reference_and_duplicates_are_dropped() {
    let (mut s, mut rest) = (Sequencer::new(), Rest::default());
    let a = admit(&mut s, &mut rest, &[100, 101, 101, 99, 102], false).await;
    assert_eq!(ids(&a), [100, 101, 102]);
    assert_eq!(a.duplicates, 2);
    assert!(rest.asked.is_empty(), "no history backfill on first start");
}

#[tokio::test]
async fn a_gap_is_filled_in_order_before_the_trade_that_revealed_it() {
    let mut s = Sequencer::new();
    let mut rest = Rest {
        known: (1..=20).map(|i| t("BTC-USDT", i)).collect(),
        ..Default::default()
    };
    admit(&mut s, &mut rest, &[5], false).await;
    let a = admit(&mut s, &mut rest, &[9, 10], false).await;
    assert_eq!(ids(&a), [6, 7, 8, 9, 10]);
    assert_eq!(rest.asked.len(), 1);
    assert_eq!((rest.asked[0].after_id, rest.asked[0].until_id), (5, 8));
    assert_eq!(rest.asked[0].after_time, Micros(5));
    assert_eq!(
        a.gaps,
        [GapReport {
            gap: rest.asked[0],
            filled: 3,
            unfilled: 0
        }]
    );
}

#[tokio::test]
async fn an_unfillable_gap_is_reported_and_the_stream_moves_on() {
    let mut s = Sequencer::new();
    let mut rest = Rest {
        known: vec![t("BTC-USDT", 7)],
        ..Default::default()
    };
    admit(&mut s, &mut rest, &[5], false).await;
    let a = admit(&mut s, &mut rest, &[10, 11], false).await;
    assert_eq!(ids(&a), [7, 10, 11]);
    assert_eq!((a.gaps[0].filled, a.gaps[0].unfilled), (1, 3));
    assert_eq!(
        s.last(Pair::parse("BTC-USDT").unwrap()).map(|l| l.0),
        Some(11)
    );
}

#[tokio::test]
async fn snapshots_anchor_on_first_sight_and_bridge_after_a_reconnect() {
    let mut s = Sequencer::new();
    let mut rest = Rest {
        known: (1..=100).map(|i| t("BTC-USDT", i)).collect(),
        ..Default::default()
    };
    // First subscription: the snapshot is history, it only sets the reference.
    let a = admit(&mut s, &mut rest, &[40, 41, 42], true).await;
    assert!(a.publish.is_empty());
    assert_eq!(ids(&admit(&mut s, &mut rest, &[43], false).await), [43]);
    // Reconnect: the snapshot overlaps what we have and reaches past it, with a hole before.
    let a = admit(&mut s, &mut rest, &[42, 43, 47, 48], true).await;
    assert_eq!(ids(&a), [44, 45, 46, 47, 48]);
    assert_eq!(a.duplicates, 2);
    // A last_match that is old news is a duplicate; a newer one is a missed trade.
    assert!(
        admit(&mut s, &mut rest, &[48], true)
            .await
            .publish
            .is_empty()
    );
    assert_eq!(ids(&admit(&mut s, &mut rest, &[49], true).await), [49]);
}

#[tokio::test]
async fn catch_up_fetches_what_happened_while_disconnected() {
    let mut s = Sequencer::new();
    let mut rest = Rest {
        known: (1..=30).map(|i| t("BTC-USDT", i)).collect(),
        ..Default::default()
    };
    assert!(
        s.catch_up(&mut rest).await.publish.is_empty(),
        "nothing to catch up on first start"
    );
    assert!(rest.asked.is_empty());
    admit(&mut s, &mut rest, &[25], false).await;
    let a = s.catch_up(&mut rest).await;
    assert_eq!(ids(&a), [26, 27, 28, 29, 30]);
    assert_eq!(rest.asked[0].until_id, u64::MAX);
    assert_eq!(
        (a.gaps[0].gap.until_id, a.gaps[0].filled, a.gaps[0].unfilled),
        (30, 5, 0)
    );
    // The live stream then repeats some of them: dropped.
    assert_eq!(
        ids(&admit(&mut s, &mut rest, &[29, 30, 31], false).await),
        [31]
    );
    // Nothing new: no report.
    rest.known.clear();
    assert!(s.catch_up(&mut rest).await.gaps.is_empty());
}

#[tokio::test]
async fn trades_made_after_start_but_before_the_first_seen_one_are_fetched() {
    let mut s = Sequencer::starting_at(Micros(40));
    let mut rest = Rest {
        known: (1..=60).map(|i| t("BTC-USDT", i)).collect(),
        ..Default::default()
    };
    // The first live trade is 45; 40..=44 were made after start (time = id here): owed.
    let a = admit(&mut s, &mut rest, &[45, 46], false).await;
    assert_eq!(ids(&a), [40, 41, 42, 43, 44, 45, 46]);
    assert_eq!(
        rest.asked[0].until_id, 45,
        "the first live trade is asked for too"
    );
    assert_eq!(rest.asked[0].after_time, Micros(40));
    assert_eq!((a.gaps[0].filled, a.gaps[0].unfilled), (5, 0));
    // A snapshot's trades from before the start only anchor; those made since are owed.
    let eth = |id| t("ETH-USDT", id);
    let a = s
        .admit(vec![eth(38), eth(39), eth(40), eth(41)], true, &mut rest)
        .await;
    assert_eq!(ids(&a), [40, 41]);
    assert_eq!(rest.asked.len(), 1, "anchored: no start-up fill needed");
}

/// The wall clock of the bounds tests: 10 000 s after the epoch (ids are times in µs).
fn clock() -> Micros {
    Micros(10_000_000_000)
}

/// A trade at `time`, `id`.
fn at(id: u64, time: i64) -> Trade {
    let mut x = t("BTC-USDT", id);
    x.time = Micros(time);
    x
}

#[tokio::test]
async fn implausible_times_are_refused_without_a_gap_or_a_refetch() {
    let bounds = TimeBounds {
        max_age: candles_core::time::Duration(1_000_000_000),
        max_lead: candles_core::time::Duration(1_000_000),
    };
    let now = clock().0;
    let far = 4_102_444_800_000_000; // 2100
    let mut s = Sequencer::new().with_time_bounds(bounds, clock);
    let mut rest = Rest {
        // REST knows 12 (dated 1970, i.e. far too old) and 13 (plausible).
        known: vec![at(12, 5), at(13, now)],
        ..Default::default()
    };
    let a = s
        .admit(
            vec![at(10, now), at(11, far), at(14, now)],
            false,
            &mut rest,
        )
        .await;
    // 11 refused on the WebSocket; 12 refused from REST; 13 filled; 14 published.
    assert_eq!(ids(&a), [10, 13, 14]);
    let refused: Vec<u64> = a.rejected.iter().map(|(t, _)| t.id).collect();
    assert_eq!(refused, [11, 12]);
    assert!(matches!(
        a.rejected[0].1,
        ImplausibleTime::TooFarAhead { .. }
    ));
    assert!(matches!(a.rejected[1].1, ImplausibleTime::TooOld { .. }));
    assert_eq!(rest.asked.len(), 1, "only 12..=13 was missing");
    assert_eq!((rest.asked[0].after_id, rest.asked[0].until_id), (11, 13));
    assert_eq!(
        rest.asked[0].after_time,
        Micros(now),
        "the refused trade's time is not used to page REST"
    );
    assert_eq!((a.gaps[0].filled, a.gaps[0].unfilled), (1, 0));
    // The next trade after a refused one is no gap, and nothing is fetched again.
    let a = s
        .admit(vec![at(15, far), at(16, now)], false, &mut rest)
        .await;
    assert_eq!(ids(&a), [16]);
    assert_eq!(rest.asked.len(), 1);
    // Without bounds, any time passes (the library default for tests and replays).
    let mut open = Sequencer::new();
    assert_eq!(
        ids(&open.admit(vec![at(1, far)], false, &mut rest).await),
        [1]
    );
}

#[tokio::test]
async fn pairs_are_independent() {
    let (mut s, mut rest) = (Sequencer::new(), Rest::default());
    let a = s
        .admit(
            vec![t("BTC-USDT", 5), t("ETH-USDT", 900), t("BTC-USDT", 6)],
            false,
            &mut rest,
        )
        .await;
    assert_eq!(ids(&a), [5, 900, 6]);
    assert!(rest.asked.is_empty());
}

#[tokio::test]
async fn heartbeat_ids_chase_missed_tail_trades_once() {
    let mut s = Sequencer::new();
    let mut rest = Rest {
        known: (1..=12).map(|i| t("BTC-USDT", i)).collect(),
        ..Default::default()
    };
    let btc = Pair::parse("BTC-USDT").unwrap();
    // Unknown pair: nothing to compare with.
    assert!(
        s.admit_latest(&[(btc, 12)], &mut rest)
            .await
            .publish
            .is_empty()
    );
    admit(&mut s, &mut rest, &[10], false).await;
    let a = s.admit_latest(&[(btc, 10)], &mut rest).await;
    assert!(a.publish.is_empty() && rest.asked.is_empty());
    let a = s.admit_latest(&[(btc, 14)], &mut rest).await;
    assert_eq!(ids(&a), [11, 12]);
    assert_eq!(
        a.gaps[0].unfilled, 0,
        "best effort: the live trades may still come"
    );
    // The same announcement is not chased again; the live trades still get through.
    assert!(
        s.admit_latest(&[(btc, 14)], &mut rest)
            .await
            .gaps
            .is_empty()
    );
    assert_eq!(
        ids(&admit(&mut s, &mut rest, &[12, 13, 14], false).await),
        [13, 14]
    );
}

/// The stream marks of the published trades: (id, complete_since, after_unfilled_gap) of each
/// marked one.
fn marks(a: &Admitted) -> Vec<(u64, Option<i64>, bool)> {
    a.publish
        .iter()
        .filter(|t| t.complete_since.is_some() || t.after_unfilled_gap)
        .map(|t| (t.id, t.complete_since.map(|m| m.0), t.after_unfilled_gap))
        .collect()
}

#[tokio::test]
async fn the_first_trade_of_a_cold_pair_is_marked_and_a_resumed_pair_is_not() {
    // No start: complete from just after the first trade (its window is partial).
    let (mut s, mut rest) = (Sequencer::new(), Rest::default());
    let a = admit(&mut s, &mut rest, &[100, 101], false).await;
    assert_eq!(marks(&a), [(100, Some(101), false)]);
    assert!(marks(&admit(&mut s, &mut rest, &[102], false).await).is_empty());
    // A pair resumed after a restart is not a cold start.
    let btc = Pair::parse("BTC-USDT").unwrap();
    let resume = HashMap::from([(btc, (99, Micros(99)))]);
    let mut s = Sequencer::starting_at(Micros(60)).resuming(&resume);
    let a = admit(&mut s, &mut rest, &[100, 101], false).await;
    assert_eq!(ids(&a), [100, 101]);
    assert!(marks(&a).is_empty(), "{a:?}");
}

#[tokio::test]
async fn a_cold_start_fetches_the_minute_s_earlier_trades_and_is_complete_from_its_start() {
    // The start (the minute's start, in the session) is 40; time = id. The fill reaches a
    // trade before 40, so every trade since 40 is published and the first says so.
    let mut s = Sequencer::starting_at(Micros(40));
    let mut rest = Rest {
        known: (1..=60).map(|i| t("BTC-USDT", i)).collect(),
        ..Default::default()
    };
    let a = admit(&mut s, &mut rest, &[45, 46], false).await;
    assert_eq!(ids(&a), [40, 41, 42, 43, 44, 45, 46]);
    assert_eq!(marks(&a), [(40, Some(40), false)]);
    // A time-paged exchange (Kraken) answers only trades since the start: the first id it
    // did not serve was made before the start, so the stream is complete from the start too.
    let mut s = Sequencer::starting_at(Micros(40));
    rest.known = (40..=60).map(|i| t("BTC-USDT", i)).collect();
    let a = admit(&mut s, &mut rest, &[45], false).await;
    assert_eq!(marks(&a), [(40, Some(40), false)]);
    // The exchange's first trade ever is the first live one: REST answers with it alone.
    let mut s = Sequencer::starting_at(Micros(40));
    rest.known = vec![t("BTC-USDT", 45), t("BTC-USDT", 46)];
    let a = admit(&mut s, &mut rest, &[45], false).await;
    assert_eq!(ids(&a), [45]);
    assert_eq!(marks(&a), [(45, Some(40), false)]);
    // The look-back (HEAD_LOOKBACK ids) does not reach the start: complete from just after
    // the first trade fetched.
    let lookback = HEAD_LOOKBACK as i64;
    let mut s = Sequencer::starting_at(Micros(40));
    rest.known = (1..=3_000).map(|i| t("BTC-USDT", i)).collect();
    let a = admit(&mut s, &mut rest, &[2_500], false).await;
    let first = 2_500 - lookback + 1;
    assert_eq!(a.publish[0].id as i64, first);
    assert_eq!(marks(&a), [(first as u64, Some(first + 1), false)]);
    // REST has nothing (it failed): complete from just after the live trade.
    let mut s = Sequencer::starting_at(Micros(40));
    rest.known.clear();
    let a = admit(&mut s, &mut rest, &[45, 46], false).await;
    assert_eq!(marks(&a), [(45, Some(46), false)]);
    // Trades all older than the start (a replay): complete from just after the first one.
    let mut s = Sequencer::starting_at(Micros(4_000));
    rest.known = (1..=60).map(|i| t("BTC-USDT", i)).collect();
    let a = admit(&mut s, &mut rest, &[50, 51], false).await;
    assert_eq!(ids(&a), [50, 51]);
    assert_eq!(marks(&a), [(50, Some(51), false)]);
    rest.known.clear();
    // A snapshot anchored before the start: complete from the start.
    let mut s = Sequencer::starting_at(Micros(40));
    let a = admit(&mut s, &mut rest, &[38, 39, 40, 41], true).await;
    assert_eq!(marks(&a), [(40, Some(40), false)]);
}

#[tokio::test]
async fn the_trade_after_an_unfillable_gap_is_marked() {
    let mut s = Sequencer::new();
    let mut rest = Rest {
        known: vec![t("BTC-USDT", 7)],
        ..Default::default()
    };
    admit(&mut s, &mut rest, &[5], false).await;
    // 6 is missing before 7, and 8 and 9 before 10: both trades after a hole are marked.
    let a = admit(&mut s, &mut rest, &[10, 11], false).await;
    assert_eq!(ids(&a), [7, 10, 11]);
    assert_eq!(marks(&a), [(7, None, true), (10, None, true)]);
    // A gap filled completely marks nothing.
    rest.known = (12..=20).map(|i| t("BTC-USDT", i)).collect();
    let a = admit(&mut s, &mut rest, &[15], false).await;
    assert_eq!(ids(&a), [12, 13, 14, 15]);
    assert!(marks(&a).is_empty(), "{a:?}");
    // The revealing trade refused for its time passes the mark to the next published one.
    let mut s = Sequencer::new().with_time_bounds(TimeBounds::default(), clock);
    let (mut rest, pair) = (Rest::default(), Pair::parse("BTC-USDT").unwrap());
    let now = clock().0;
    s.admit(vec![at(5, now)], false, &mut rest).await;
    let far = 4_102_444_800_000_000; // 2100
    let a = s
        .admit(vec![at(9, far), at(10, now)], false, &mut rest)
        .await;
    assert_eq!((ids(&a), marks(&a)), (vec![10], vec![(10, None, true)]));
    assert_eq!(s.last(pair).map(|l| l.0), Some(10));
}
