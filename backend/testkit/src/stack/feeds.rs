//! The stack's feeds: one `exchange-sim` (`--synthetic`, or `--replay` of a recording; none when
//! the config says `real`) and one `candles-connector` per exchange, their faults, and the
//! simulators' trade logs.

use super::{Connector, Sim, Stack, TOPIC};
use crate::net::free_port;
use crate::process::Proc;
use crate::trade_log;
use anyhow::{Context as _, Result, bail};
use candles_core::{Exchange, Trade};
use std::time::{Duration, Instant};

/// A REST pace far above any test's need, for simulators without `--rest-limit`.
const GENEROUS_REST_RATE: &str = "1000,1000";

/// `--rest-rate` for `exchange`'s connector: generous when it asks a simulator (`simulated`)
/// that runs without `--rest-limit`; none (the exchange's default pace) against a limited
/// simulator, the real exchange, or when the test's connector flags set it.
fn rest_rate(config: &super::StackConfig, exchange: Exchange, simulated: bool) -> Vec<String> {
    let has = |args: &[String], flag: &str| args.iter().any(|a| a == flag);
    let limited = has(&config.sim_args, "--rest-limit")
        || config
            .sim_args_of
            .iter()
            .any(|(of, args)| *of == exchange && has(args, "--rest-limit"));
    if simulated && !limited && !has(&config.connector_args, "--rest-rate") {
        vec!["--rest-rate".into(), GENEROUS_REST_RATE.into()]
    } else {
        Vec::new()
    }
}

impl Stack {
    /// Starts one simulator (unless `real`) and one connector per exchange, and waits until
    /// every connector serves metrics (it is up and producing).
    pub fn start_feeds(&mut self) -> Result<()> {
        for (k, exchange) in self.config.exchanges.clone().into_iter().enumerate() {
            if !self.config.real {
                let sim = self.start_sim(exchange, k as u64)?;
                self.sims.push(sim);
            }
            self.connectors.push(Connector {
                exchange,
                proc: None,
                metrics_port: free_port(),
            });
            self.start_connector(exchange)?;
        }
        Ok(())
    }

    /// Starts the simulator of `exchange` (the `k`-th) and reads its addresses.
    fn start_sim(&self, exchange: Exchange, k: u64) -> Result<Sim> {
        let c = &self.config;
        let metrics_port = free_port();
        let mut cmd = self.command("exchange-sim");
        cmd.args(["--exchange", exchange.as_str(), "--listen", "127.0.0.1:0"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--pairs", &c.pairs, "--seed", &(c.seed + k).to_string()])
            .args(&c.sim_args)
            .args(
                c.sim_args_of
                    .iter()
                    .filter(|(of, _)| *of == exchange)
                    .flat_map(|(_, args)| args),
            );
        match &c.replay {
            Some(file) => cmd.arg("--replay").arg(file).args(["--speed", "max"]),
            None => cmd.args(["--synthetic", "--rate", &c.rate.to_string()]),
        };
        if c.max_trades > 0 {
            cmd.args(["--max-trades", &c.max_trades.to_string()]);
        }
        let trade_log = c
            .trade_logs
            .then(|| self.dir.join(format!("trades-{exchange}.jsonl")));
        if let Some(path) = &trade_log {
            cmd.arg("--trade-log").arg(path);
        }
        let (proc, line) = Proc::spawn_read_first_line(
            &format!("exchange-sim-{exchange}"),
            cmd,
            &self.dir.join(format!("sim-{exchange}.log")),
            Duration::from_secs(10),
        )?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
                .with_context(|| format!("exchange-sim's first line has no `{name}`: {line:?}"))
        };
        Ok(Sim {
            exchange,
            ws_url: field("ws=")?,
            rest_url: field("rest=")?,
            proc: Some(proc),
            trade_log,
            metrics_port,
        })
    }

    /// The simulators.
    pub fn sims(&self) -> &[Sim] {
        &self.sims
    }

    /// The connectors (exchange, metrics port).
    pub fn connectors(&self) -> &[Connector] {
        &self.connectors
    }

    /// (Re)starts the connector of `exchange` and waits until it serves metrics.
    pub fn start_connector(&mut self, exchange: Exchange) -> Result<()> {
        let urls = match self.sims.iter().find(|s| s.exchange == exchange) {
            Some(sim) => vec![
                "--ws-url".to_string(),
                sim.ws_url.clone(),
                "--rest-url".into(),
                sim.rest_url.clone(),
            ],
            None if self.config.real => Vec::new(),
            None => bail!("no simulator for {exchange}"),
        };
        let mut cmd = self.command("candles-connector");
        let c = self
            .connectors
            .iter_mut()
            .find(|c| c.exchange == exchange)
            .context("no such connector")?;
        c.proc = None;
        cmd.args([
            "--exchange",
            exchange.as_str(),
            "--pairs",
            &self.config.pairs,
        ])
        .args(["--brokers", &self.broker.brokers(), "--topic", TOPIC])
        .args(["--redis", &self.redis.url()])
        .args(&urls)
        .args(["--metrics-addr", &format!("127.0.0.1:{}", c.metrics_port)])
        .args(rest_rate(&self.config, exchange, !urls.is_empty()))
        .args(&self.config.connector_args);
        let mut proc = Proc::spawn(
            &format!("candles-connector-{exchange}"),
            cmd,
            &self.dir.join(format!("connector-{exchange}.log")),
        )?;
        proc.wait_listening(
            ([127, 0, 0, 1], c.metrics_port).into(),
            Duration::from_secs(20),
        )?;
        c.proc = Some(proc);
        Ok(())
    }

    /// `kill -9` of the connector of `exchange`.
    pub fn kill_connector(&mut self, exchange: Exchange) {
        if let Some(c) = self.connectors.iter_mut().find(|c| c.exchange == exchange) {
            c.proc = None;
        }
    }

    /// Stops the connector of `exchange` with SIGTERM (it flushes what it holds to Kafka),
    /// `kill -9` after 10 s.
    pub fn stop_connector(&mut self, exchange: Exchange) {
        if let Some(c) = self.connectors.iter_mut().find(|c| c.exchange == exchange)
            && let Some(mut p) = c.proc.take()
        {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// Stops the simulators (SIGTERM), so their trade logs are complete.
    pub fn stop_sims(&mut self) {
        for s in &mut self.sims {
            if let Some(mut p) = s.proc.take() {
                p.terminate(Duration::from_secs(3));
            }
        }
    }

    /// Waits until every simulator has logged `max_trades` trades.
    pub fn wait_sims_done(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let counts: Vec<usize> = self
                .sims
                .iter()
                .map(|s| s.trade_log.as_deref().map_or(0, trade_log::count_lines))
                .collect();
            if counts.iter().all(|&n| n as u64 >= self.config.max_trades) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the simulators did not generate {} trades each within {timeout:?}: {counts:?}",
                    self.config.max_trades
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every trade the simulators generated (their trade logs).
    pub fn generated_trades(&self) -> Result<Vec<Trade>> {
        let mut all = Vec::new();
        for path in self.sims.iter().filter_map(|s| s.trade_log.as_deref()) {
            all.extend(trade_log::read_trades(path)?);
        }
        Ok(all)
    }
}
