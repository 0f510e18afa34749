//! Unit tests of [`super`] (kept apart so `cli.rs` reads as the code it is).

use super::*;

#[test]
fn flags_parse_and_errors_name_the_input() {
    let cli = Cli::try_parse_from([
        "candles-tui",
        "--pairs",
        "btcusdt,eth/usdt,BTC_USDT",
        "--source",
        "kraken,composite",
    ])
    .unwrap()
    .normalized();
    assert_eq!(
        cli.pairs.iter().map(Pair::to_string).collect::<Vec<_>>(),
        ["BTC-USDT", "ETH-USDT"]
    );
    assert_eq!(
        cli.source,
        [Source::Exchange(Exchange::Kraken), Source::Composite]
    );
    assert!(cli.live);
    assert_eq!(cli.exchanges, Exchange::ALL);
    assert_eq!(cli.history, 120);
    assert_eq!(cli.interval, None, "the server's default");
    let cli = Cli::try_parse_from([
        "candles-tui",
        "--live",
        "false",
        "--embedded",
        "--exchanges",
        "kraken",
    ])
    .unwrap();
    assert!(!cli.live && cli.embedded);
    assert_eq!(cli.exchanges, [Exchange::Kraken]);
    let err = Cli::try_parse_from(["candles-tui", "--pairs", "btc"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"btc\""), "{err}");
    let err = Cli::try_parse_from(["candles-tui", "--source", "ftx"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ftx") && err.contains("composite"), "{err}");
    assert!(Cli::try_parse_from(["candles-tui", "--plain", "--json"]).is_err());
}

#[test]
fn per_exchange_urls_are_one_repeatable_flag() {
    let cli = Cli::try_parse_with_ignored([
        "candles-tui",
        "--embedded",
        "--ws-url",
        "binance=ws://127.0.0.1:1",
        "--ws-url",
        "kraken=ws://127.0.0.1:2,coinbase=ws://127.0.0.1:3",
        "--rest-url",
        "coinbase=http://127.0.0.1:4",
    ])
    .unwrap();
    let feeds = cli.embedded_config().unwrap().feeds;
    assert_eq!(feeds.len(), 3);
    assert_eq!(feeds[1].ws_url.as_deref(), Some("ws://127.0.0.1:2"));
    assert_eq!(feeds[2].rest_url.as_deref(), Some("http://127.0.0.1:4"));
    assert_eq!(feeds[0].rest_url, None);
    assert!(cli.origin().contains("SIMULATED"), "{}", cli.origin());
    let err = Cli::try_parse_with_ignored(["candles-tui", "--ws-url", "ftx=ws://x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ftx") && err.contains("EXCHANGE=URL"), "{err}");
}

#[test]
fn a_bad_server_is_a_usage_error_naming_the_value_and_the_form() {
    for bad in ["127.0.0.1:8080", "not-a-url"] {
        let err = Cli::try_parse_with_ignored(["candles-tui", "--server", bad]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains(bad) && text.contains("http://HOST:PORT"),
            "{text}"
        );
    }
}

#[test]
fn flags_the_mode_does_not_use_are_named() {
    let args = ["candles-tui", "--exchanges", "kraken", "--grace", "1s"];
    let cli = Cli::try_parse_with_ignored(args).unwrap();
    let notices = cli.notices();
    assert_eq!(notices.len(), 1);
    assert!(
        notices[0].contains("--exchanges, --grace") && notices[0].contains("--embedded"),
        "{notices:?}"
    );
    let cli = Cli::try_parse_with_ignored(["candles-tui", "--embedded", "--history", "5"]).unwrap();
    assert!(
        cli.notices()[0].contains("--history"),
        "{:?}",
        cli.notices()
    );
    let cli = Cli::try_parse_with_ignored(["candles-tui", "--embedded"]).unwrap();
    assert!(cli.notices().is_empty());
    let cli = Cli::try_parse_with_ignored(["candles-tui", "--interval", "1m"]).unwrap();
    assert!(cli.notices().is_empty(), "a server serves intervals too");
    assert_eq!(cli.interval, Some(Interval::seconds(60)));
}
