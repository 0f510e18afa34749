//! The load generator's view of the native stack (`candles_testkit::stack`, which starts and
//! stops it): the stack's configuration for a run, a CPU and memory watch per process, and the
//! trades topic counted per (series, window).

use crate::procstat::Watch;
use crate::stats::WindowKey;
use crate::truth;
use anyhow::{Context as _, Result};
use candles_core::{Exchange, Interval};
use candles_testkit::stack::{Stack, StackConfig, TOPIC};
use candles_testkit::{bins, topic};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Where the programs are: the workspace's binaries (release builds, normally) and redis-server.
#[derive(Clone, Debug)]
pub struct Programs {
    /// Directory of `exchange-sim`, `candles-connector` and `candles-service`.
    pub bin_dir: PathBuf,
    /// `redis-server` (`None`: `~/.cache/candles/bin` or `PATH`).
    pub redis_bin: Option<PathBuf>,
}

impl Programs {
    /// Checks that the workspace's binaries are in `bin_dir`; the error names the build command.
    pub fn locate(bin_dir: PathBuf, redis_bin: Option<PathBuf>) -> Result<Programs> {
        for name in bins::PACKAGES {
            bins::in_dir(&bin_dir, name)?;
        }
        Ok(Programs { bin_dir, redis_bin })
    }

    /// A stack configuration for one run: logs in `run_dir`, one simulator and connector per
    /// exchange, endless synthetic trades (seeds 1, 2, 3), consumer group `candles-loadgen`,
    /// log level `warn`. The caller sets the rate, instances and service flags.
    pub fn config(
        &self,
        run_dir: &Path,
        exchanges: &[String],
        pairs: &[String],
    ) -> Result<StackConfig> {
        let mut c = StackConfig::new("loadgen");
        c.run_dir = run_dir.to_path_buf();
        c.bin_dir = Some(self.bin_dir.clone());
        c.redis_bin = self.redis_bin.clone();
        c.exchanges = exchanges
            .iter()
            .map(|e| {
                e.parse::<Exchange>()
                    .with_context(|| format!("--exchanges {e}"))
            })
            .collect::<Result<_>>()?;
        c.pairs = pairs.join(",");
        c.max_trades = 0;
        c.seed = 1;
        c.group = "candles-loadgen".into();
        c.log_level = "warn".into();
        Ok(c)
    }
}

/// Waits (up to 60 s, checking that every process runs) until `done` says so; the error names
/// `what` was awaited and where the logs are.
pub fn wait_until(stack: &mut Stack, what: &str, done: impl Fn() -> bool) -> Result<()> {
    let waited = std::time::Instant::now();
    while !done() {
        stack.check_running()?;
        if waited.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("no {what} within 60 s; logs in {}", stack.dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A watch per running process of the stack (for CPU and memory).
pub fn watches(stack: &Stack) -> Vec<Watch> {
    stack
        .processes()
        .iter()
        .map(|(name, pid)| Watch::new(name, *pid))
        .collect()
}

/// What the `trades` topic holds.
#[derive(Clone, Debug)]
pub struct TopicCounts {
    /// Records read.
    pub records: u64,
    /// Records whose (exchange, pair, id) was already read.
    pub duplicates: u64,
    /// Records that are not a valid `candles.v1.Trade`.
    pub undecodable: u64,
    /// Unique trades per (series, window start).
    pub unique: BTreeMap<WindowKey, u64>,
    /// Whether every partition was read up to its high watermark.
    pub complete: bool,
    /// Count per exchange series too (not only the composite).
    per_exchange: bool,
    /// Window length.
    interval: Interval,
    seen: HashSet<(Exchange, String, u64)>,
}

impl TopicCounts {
    /// Empty counts over windows of `interval`; `per_exchange`: also count each exchange's
    /// series, and count duplicates.
    pub fn new(interval: Interval, per_exchange: bool) -> TopicCounts {
        TopicCounts {
            records: 0,
            duplicates: 0,
            undecodable: 0,
            unique: BTreeMap::new(),
            complete: true,
            per_exchange,
            interval,
            seen: HashSet::new(),
        }
    }

    /// Counts one record.
    pub fn add(&mut self, record: &topic::Record) {
        self.records += 1;
        let Ok(t) = &record.trade else {
            self.undecodable += 1;
            return;
        };
        let pair = t.pair.to_string();
        let start = self.interval.window_start(t.time).0;
        if self.per_exchange {
            if !self.seen.insert((t.exchange, pair.clone(), t.id)) {
                self.duplicates += 1;
                return;
            }
            let series = truth::exchange_series(&pair, t.exchange.as_str());
            *self.unique.entry((series, start)).or_default() += 1;
        }
        *self.unique.entry((pair, start)).or_default() += 1;
    }
}

/// Reads the whole `trades` topic (up to the high watermarks taken first, within `budget`)
/// and counts its records per (series, window of `interval`), for composite series (`PAIR`)
/// and exchange series (`PAIR/exchange`): unique trades (exchange, pair, id) and duplicates.
pub fn read_trades_topic(
    stack: &Stack,
    interval: Interval,
    budget: Duration,
) -> Result<TopicCounts> {
    let mut counts = TopicCounts::new(interval, true);
    let partitions = stack.config.partitions as i32;
    counts.complete = topic::read(&stack.brokers(), TOPIC, partitions, budget, |r| {
        counts.add(&r);
        true
    })?;
    Ok(counts)
}

/// Starts a plain consumer (every partition from the beginning, no group) that tails the
/// `trades` topic on its own thread until `stop` is set, counting records per composite (pair,
/// window of `interval`). Compared with a full read afterwards, it tells whether a consumer at
/// the tail is ever handed fewer records than the topic ends up holding.
pub fn tail_trades_topic(
    stack: &Stack,
    interval: Interval,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<TopicCounts>> {
    let counts = TopicCounts::new(interval, false);
    let partitions = stack.config.partitions as i32;
    topic::tail(&stack.brokers(), TOPIC, partitions, stop, counts, |c, r| {
        c.add(&r)
    })
}
