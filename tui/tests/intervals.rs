//! Intervals against a scripted gRPC server that builds two (5s, 1m): `>` resubscribes with
//! the next one and the chart shows only its candles (history at once); an interval the server
//! does not build is the server's message, shown on the dashboard (which waits for another)
//! and exit 2 in line modes.
#![allow(clippy::unwrap_used)]

use candles_core::{Candle, Decimal, Interval, Micros, Pair, Source};
use candles_proto::v1::candle_service_server::{CandleService, CandleServiceServer};
use candles_proto::v1::{
    self, ListMarketsRequest, ListMarketsResponse, Market, SubscribeRequest, SubscribeResponse,
};
use candles_tui::app::{App, Event};
use candles_tui::client::{self, ClientConfig};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

mod common;

const SERVED: [Interval; 2] = [Interval::seconds(5), Interval::seconds(60)];

/// Builds 5s and 1m: three history candles of the interval asked for, then stays open.
/// Records the interval of each subscription (`None`: the default).
#[derive(Default)]
struct TwoIntervals {
    asked: Arc<Mutex<Vec<Option<Interval>>>>,
}

type Stream_ = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CandleService for TwoIntervals {
    type SubscribeStream = Stream_;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Stream_>, Status> {
        let req = request.into_inner();
        let asked = req
            .interval
            .as_ref()
            .map(|d| candles_proto::interval_from(Some(d)).unwrap());
        self.asked.lock().unwrap().push(asked);
        let interval = asked.unwrap_or(SERVED[0]);
        if !SERVED.contains(&interval) {
            return Err(Status::invalid_argument(format!(
                "interval {interval} is not built here; this server builds 5s, 1m"
            )));
        }
        let items: Vec<Result<SubscribeResponse, Status>> = (0..3)
            .map(|i| {
                let c = Candle::flat(
                    Pair::parse("BTC-USDT").unwrap(),
                    Source::Composite,
                    interval,
                    Micros(1_795_675_200_000_000 + i * interval.micros()),
                    Decimal::from(100 + i),
                );
                Ok(SubscribeResponse {
                    candle: Some(v1::Candle::from(&c)),
                    historical: true,
                    verification: None,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::chain(
            tokio_stream::iter(items),
            tokio_stream::pending(),
        ))))
    }

    async fn list_markets(
        &self,
        _: Request<ListMarketsRequest>,
    ) -> Result<Response<ListMarketsResponse>, Status> {
        Ok(Response::new(ListMarketsResponse {
            markets: vec![Market {
                pair: "BTC-USDT".into(),
                sources: vec!["composite".into()],
                listings: Vec::new(),
            }],
            interval: Some(candles_proto::duration(SERVED[0])),
            max_history: 100,
            intervals: SERVED.iter().map(|i| candles_proto::duration(*i)).collect(),
        }))
    }
}

type Asked = Arc<Mutex<Vec<Option<Interval>>>>;

async fn serve() -> (String, Asked, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TwoIntervals::default();
    let asked = server.asked.clone();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CandleServiceServer::new(server))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                token.cancelled_owned(),
            ),
    );
    (format!("http://{addr}"), asked, stop)
}

/// The screen's text, row by row.
fn screen_text(backend: &TestBackend) -> String {
    let buf = backend.buffer();
    let mut text = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

fn btc() -> Pair {
    Pair::parse("BTC-USDT").unwrap()
}

/// Applies events to `app` until `done` holds (10 s at most).
async fn until(app: &mut App, rx: &mut mpsc::Receiver<Event>, done: impl Fn(&App) -> bool) {
    while !done(app) {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("events keep coming")
            .unwrap();
        app.handle(e, Micros(0));
    }
}

fn candles_of(app: &App, interval: Interval) -> usize {
    app.series_for(btc())
        .filter(|s| s.interval() == Some(interval))
        .map_or(0, |s| s.candles.len())
}

#[tokio::test]
async fn greater_than_resubscribes_with_the_next_interval_and_the_chart_shows_its_candles() {
    let (url, asked, stop) = serve().await;
    let cfg = ClientConfig::new(url, vec![btc()]);
    let (tx, mut rx) = mpsc::channel(64);
    let (interval_tx, intervals) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(client::run_switchable(cfg, tx, shutdown.clone(), intervals));
    let mut app = App::new(vec![btc()], Source::Composite, "test");
    until(&mut app, &mut rx, |a| candles_of(a, SERVED[0]) == 3).await;
    assert_eq!(
        (app.interval, app.intervals.clone()),
        (Some(SERVED[0]), SERVED.to_vec())
    );

    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('>'))), Micros(0));
    assert_eq!(app.interval_switches, 1);
    assert!(app.series_for(btc()).is_none(), "no 5s candle stays");
    interval_tx.send_replace(app.interval);
    until(&mut app, &mut rx, |a| candles_of(a, SERVED[1]) == 3).await;
    assert_eq!(*asked.lock().unwrap(), [None, Some(SERVED[1])]);

    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| candles_tui::ui::render(&app, f)).unwrap();
    let screen = screen_text(terminal.backend());
    assert!(screen.contains("BTC-USDT · composite · 1m"), "{screen}");
    shutdown.cancel();
    assert!(task.await.unwrap().is_ok());
    stop.cancel();
}

#[tokio::test]
async fn an_interval_the_server_does_not_build_is_its_message_and_another_can_be_picked() {
    let (url, asked, stop) = serve().await;
    let mut cfg = ClientConfig::new(url, vec![btc()]);
    cfg.interval = Some(Interval::seconds(7));
    let (tx, mut rx) = mpsc::channel(64);
    let (interval_tx, intervals) = watch::channel(cfg.interval);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(client::run_switchable(cfg, tx, shutdown.clone(), intervals));
    let mut app = App::new(vec![btc()], Source::Composite, "test");
    app.interval = Some(Interval::seconds(7));
    until(&mut app, &mut rx, |a| a.refused.is_some()).await;
    let refused = app.refused.clone().unwrap();
    assert!(
        refused.contains("7s") && refused.contains("5s, 1m"),
        "{refused}"
    );
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| candles_tui::ui::render(&app, f)).unwrap();
    let screen = screen_text(terminal.backend());
    assert!(screen.contains("does not build that interval"), "{screen}");

    app.handle(Event::Key(KeyEvent::from(KeyCode::Char('>'))), Micros(0));
    interval_tx.send_replace(app.interval);
    until(&mut app, &mut rx, |a| candles_of(a, SERVED[0]) == 3).await;
    assert_eq!(app.refused, None);
    assert_eq!(
        *asked.lock().unwrap(),
        [Some(Interval::seconds(7)), Some(SERVED[0])]
    );
    shutdown.cancel();
    assert!(task.await.unwrap().is_ok());
    stop.cancel();
}

#[tokio::test]
async fn line_modes_exit_2_with_the_servers_message_for_an_interval_it_does_not_build() {
    let (url, _, stop) = serve().await;
    let logs = tempfile::tempdir().unwrap();
    for mode in ["--plain", "--json"] {
        let out = tokio::process::Command::new(common::BIN)
            .env("CANDLES_NO_CONFIG", "true")
            .args([
                mode,
                "--pairs",
                "btcusdt",
                "--interval",
                "7s",
                "--server",
                &url,
            ])
            .arg("--log-file")
            .arg(logs.path().join("tui.log"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mode}: {stderr}");
        assert!(stderr.contains("interval 7s is not built here"), "{stderr}");
    }
    // The one it builds prints its candles, the interval on each line.
    let mut child = tokio::process::Command::new(common::BIN)
        .env("CANDLES_NO_CONFIG", "true")
        .args([
            "--json",
            "--pairs",
            "btcusdt",
            "--interval",
            "1m",
            "--server",
            &url,
        ])
        .arg("--log-file")
        .arg(logs.path().join("tui.log"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = tokio::io::AsyncBufReadExt::lines(stdout);
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains(r#""interval":"1m""#), "{first}");
    child.kill().await.unwrap();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_real_dashboard_greater_than_resubscribes_and_the_interval_is_remembered() {
    let (url, asked, stop) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tui.json").display().to_string();
    let args = ["--server", &url, "--pairs", "btcusdt", "--config", &config];
    let tui = common::Tmux::start(&args, 80, 24, dir.path());
    tui.wait_for("5s candles", Duration::from_secs(15), |s| {
        s.contains("BTC-USDT · composite · 5s") && s.contains("trades")
    })
    .await;
    tui.keys(">");
    let screen = tui
        .wait_for("1m candles", Duration::from_secs(10), |s| {
            s.contains("BTC-USDT · composite · 1m") && s.contains("trades")
        })
        .await;
    assert!(!screen.contains("· 5s"), "{screen}");
    assert_eq!(*asked.lock().unwrap(), [None, Some(SERVED[1])]);
    tui.keys("q");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tui.alive() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(saved["interval"], "1m");
    stop.cancel();
}
