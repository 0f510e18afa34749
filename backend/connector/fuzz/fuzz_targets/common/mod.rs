//! What every parser target checks: no panic on any input, and every trade it accepts is
//! well-formed (positive exact decimals, the right exchange) and survives the wire format.

use candles_connector::exchange::{Frame, Gap, Venue};
use candles_core::{Decimal, Micros, Pair, Trade};

fn check(venue: &dyn Venue, t: &Trade) {
    assert_eq!(t.exchange, venue.exchange());
    assert!(t.price > Decimal::ZERO && t.quantity > Decimal::ZERO, "{t:?}");
    let wire = candles_proto::v1::Trade::from(t);
    let back = Trade::try_from(&wire).expect("an accepted trade must survive the wire");
    assert_eq!(&back, t);
}

/// Feeds `data` to every parser of `venue`.
pub fn run(venue: &dyn Venue, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match venue.parse_frame(text, Micros(1)) {
        Ok(Frame::Trades(ts) | Frame::Snapshot(ts)) => ts.iter().for_each(|t| check(venue, t)),
        _ => {}
    }
    let pair = Pair::parse("BTC-USDT").expect("a valid pair");
    for until_id in [5, u64::MAX] {
        let gap = Gap { pair, after_id: 1, after_time: Micros(0), until_id };
        let _ = venue.backfill_url("http://h", &gap, Some(text));
        if let Ok(page) = venue.parse_backfill(text, &gap, Micros(1)) {
            page.trades.iter().for_each(|t| check(venue, t));
        }
    }
    let _ = venue.parse_listing(200, text, &[pair]);
    let _ = venue.parse_listing(400, text, &[pair, pair]);
}
