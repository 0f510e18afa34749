//! Looking at a running stack: which processes run, their metrics, the consumer group's
//! assignment, and what the trades topic holds.

use super::{Stack, TOPIC};
use crate::topic;
use anyhow::Result;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl Stack {
    /// Fails, naming the process and quoting its log, if any process that should run has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.broker.check_running()?;
        self.redis.check_running()?;
        for p in self.services.iter_mut().filter_map(|s| s.proc.as_mut()) {
            p.check_running()?;
        }
        for p in self.connectors.iter_mut().filter_map(|c| c.proc.as_mut()) {
            p.check_running()?;
        }
        for p in self.sims.iter_mut().filter_map(|s| s.proc.as_mut()) {
            p.check_running()?;
        }
        Ok(())
    }

    /// (name, pid) of every running process: `kafka`, `redis-server`, the services, the
    /// simulators and the connectors.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let programs = self
            .services
            .iter()
            .filter_map(|s| s.proc.as_ref())
            .chain(self.sims.iter().filter_map(|s| s.proc.as_ref()))
            .chain(self.connectors.iter().filter_map(|c| c.proc.as_ref()))
            .map(|p| (p.name().to_string(), p.pid()));
        let infra = [
            ("kafka", self.broker.pid()),
            ("redis-server", self.redis.pid()),
        ];
        infra
            .into_iter()
            .filter_map(|(name, pid)| Some((name.to_string(), pid?)))
            .chain(programs)
            .collect()
    }

    /// Process id of service instance `i`, while it runs.
    pub fn service_pid(&self, i: usize) -> Option<u32> {
        self.services.get(i)?.proc.as_ref().map(|p| p.pid())
    }

    /// (process name, metrics port) of every running process that serves metrics.
    fn metrics_ports(&self) -> Vec<(String, u16)> {
        let services = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.proc.is_some());
        let sims = self.sims.iter().filter(|s| s.proc.is_some());
        let connectors = self.connectors.iter().filter(|c| c.proc.is_some());
        services
            .map(|(i, s)| (format!("candles-service-{i}"), s.metrics_port))
            .chain(sims.map(|s| (format!("exchange-sim-{}", s.exchange), s.metrics_port)))
            .chain(
                connectors.map(|c| (format!("candles-connector-{}", c.exchange), c.metrics_port)),
            )
            .collect()
    }

    /// Counters and gauges of every running process whose metric name contains one of
    /// `names`: `process metric{labels}` → value.
    pub fn counters_by_process(&self, names: &[&str]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (proc, port) in self.metrics_ports() {
            for line in crate::net::scrape_metrics(port).lines() {
                let Some((metric, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                if !line.starts_with('#') && names.iter().any(|n| metric.contains(n)) {
                    out.insert(
                        format!("{proc} {metric}"),
                        value.parse().unwrap_or(f64::NAN),
                    );
                }
            }
        }
        out
    }

    /// Prometheus counters of the running services and connectors whose names contain one of
    /// `names`, summed per metric name and label set: `name{labels} value` lines.
    pub fn counters(&self, names: &[&str]) -> Vec<String> {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (key, value) in self.counters_by_process(names) {
            let Some((proc, metric)) = key.split_once(' ') else {
                continue;
            };
            if !proc.starts_with("exchange-sim") {
                *sums.entry(metric.to_string()).or_default() +=
                    if value.is_nan() { 0.0 } else { value };
            }
        }
        sums.into_iter().map(|(m, v)| format!("{m} {v}")).collect()
    }

    /// Waits (up to `timeout`) until every service instance's log says it got partitions.
    pub fn wait_assigned(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let all = self
                .services
                .iter()
                .filter_map(|s| s.proc.as_ref())
                .all(|p| {
                    std::fs::read_to_string(p.log_path())
                        .is_ok_and(|t| t.contains("partitions assigned"))
                });
            if all {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The records of the trades topic: all of them within `budget`, or fewer when `enough`
    /// says so.
    pub fn kafka_records(
        &self,
        budget: Duration,
        enough: &dyn Fn(&[topic::Record]) -> bool,
    ) -> Result<topic::Read> {
        let partitions = self.config.partitions as i32;
        topic::read_until(&self.brokers(), TOPIC, partitions, budget, enough)
    }

    /// Σ (high − low watermark) of the trades topic: the records the broker holds.
    pub fn records_in_kafka(&self) -> Result<i64> {
        topic::records_in(&self.brokers(), TOPIC, self.config.partitions as i32)
    }
}
