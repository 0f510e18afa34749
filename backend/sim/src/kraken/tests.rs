//! Kraken's protocol: sample lines, asset pairs, REST trades.
#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn asset_pairs_use_krakens_own_keys_and_names() {
    let key = |p: &str| pair_key(Pair::parse(p).unwrap());
    assert_eq!(key("BTC-JPY"), "XXBTZJPY");
    assert_eq!(key("BTC-USD"), "XXBTZUSD");
    assert_eq!(key("ETH-BTC"), "XETHXXBT");
    assert_eq!(key("DOGE-USD"), "XDGUSD");
    assert_eq!(key("BTC-USDT"), "XBTUSDT");
    assert_eq!(v1_name(Pair::parse("DOGE-USDT").unwrap()), "XDG/USDT");
}

#[test]
fn the_sample_snapshot_parses_exactly() {
    let line = r#"{"channel":"trade","type":"snapshot","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,"timestamp":"2023-09-25T07:49:36.925603Z"}]}"#;
    let parsed = Kraken.parse_line(line);
    assert_eq!(parsed.pair.unwrap().to_string(), "MATIC-USD");
    assert_eq!(parsed.trades.len(), 2);
    assert_eq!(parsed.trades[1].quantity.to_string(), "1136.19677815");
    assert_eq!(parsed.trades[0].time, Micros(1_695_628_116_925_533));
    assert_eq!(
        Kraken.parse_line(r#"{"channel":"heartbeat"}"#),
        Parsed::default()
    );
}

#[test]
fn updates_round_trip_and_numbers_are_exact() {
    let pair = Pair::parse("BTC-USDT").unwrap();
    let t = Kraken.wire(
        Trade::new(
            Exchange::Kraken,
            pair,
            9,
            "97000.10",
            "0.00120000",
            Side::Sell,
            Micros(1_700_000_000_000_001),
        )
        .unwrap(),
    );
    let msg = &Kraken.encode(&[t, t], &Session::default())[0];
    assert!(msg.contains(r#""price":97000.1,"qty":0.0012,"#), "{msg}");
    assert!(
        msg.contains(r#""timestamp":"2023-11-14T22:13:20.000001Z""#),
        "{msg}"
    );
    assert_eq!(Kraken.parse_line(msg).trades, vec![t, t]);
    assert!(Kraken.parse_line(&Kraken.corrupt(msg)).trades.len() < 2);
}

#[test]
fn since_accepts_nanoseconds_and_seconds() {
    assert_eq!(
        parse_since("1700000000123456789"),
        Some(1_700_000_000_123_456_789)
    );
    assert_eq!(parse_since("1700000000"), Some(1_700_000_000_000_000_000));
    assert_eq!(parse_since("1700000000.5"), Some(1_700_000_000_500_000_000));
    assert_eq!(parse_since("0"), Some(0));
    assert_eq!(parse_since("x"), None);
    assert_eq!(
        float_seconds(Micros(1_700_000_000_000_001)),
        "1700000000.000001"
    );
}
