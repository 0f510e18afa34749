//! Unit tests of the client: backoff, URL checks, interval refusals, a bad URL.

use super::*;

#[test]
fn backoff_doubles_up_to_the_cap() {
    let (min, max) = (Duration::from_millis(500), Duration::from_secs(30));
    let mut backoff = Doubling::new(min, max);
    let delays: Vec<u128> = (1..=9).map(|_| backoff.next_delay().as_millis()).collect();
    assert_eq!(
        delays,
        [
            500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000
        ]
    );
    for _ in 0..100 {
        backoff.next_delay();
    }
    assert_eq!(backoff.next_delay(), max);
    backoff.reset();
    assert_eq!(backoff.next_delay(), min);
}

#[test]
fn urls_are_checked() {
    let mut cfg = ClientConfig::new("127.0.0.1:8080", Pair::defaults());
    let err = endpoint(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("127.0.0.1:8080") && err.contains("http://"),
        "{err}"
    );
    cfg.server = "http://127.0.0.1:8080".into();
    assert!(endpoint(&cfg).is_ok());
    for bad in [
        "not-a-url",
        "http://",
        "https:///x",
        "http://exa mple:1",
        "",
    ] {
        let err = check_server(bad).unwrap_err();
        assert!(
            err.contains(&format!("{bad:?}")) && err.contains("http://HOST:PORT"),
            "{err}"
        );
    }
    assert!(check_server("https://candles.example:443").is_ok());
}

#[test]
fn an_older_server_that_lists_no_intervals_cannot_give_another() {
    let (s5, m1) = (Interval::seconds(5), Interval::seconds(60));
    let old = Served {
        intervals: vec![s5],
        listed: false,
    };
    let message = old.unlisted_refusal(Some(m1), "http://x:1").unwrap();
    assert!(
        message.contains("only 5s") && message.contains("1m"),
        "{message}"
    );
    assert_eq!(old.unlisted_refusal(Some(s5), "http://x:1"), None);
    assert_eq!(old.unlisted_refusal(None, "http://x:1"), None);
    let new = Served {
        listed: true,
        ..old
    };
    assert_eq!(
        new.unlisted_refusal(Some(m1), "http://x:1"),
        None,
        "it answers itself"
    );
    let status = tonic::Status::invalid_argument("interval 1m is not built");
    assert!(refused_interval(Some(m1), &[s5], &status));
    assert!(!refused_interval(None, &[s5], &status));
    assert!(
        !refused_interval(Some(s5), &[s5], &status),
        "another problem"
    );
}

#[tokio::test]
async fn a_bad_url_is_a_fatal_event_not_only_a_log_line() {
    let (tx, mut rx) = mpsc::channel(8);
    let cfg = ClientConfig::new("not-a-url", Pair::defaults());
    assert!(run(cfg, tx, CancellationToken::new()).await.is_err());
    match rx.recv().await {
        Some(Event::Fatal(message)) => assert!(message.contains("not-a-url"), "{message}"),
        other => panic!("{other:?}"),
    }
}
