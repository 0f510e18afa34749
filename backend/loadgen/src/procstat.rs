//! CPU time and memory of a process from `/proc/<pid>/stat` and `/proc/<pid>/status` (Linux).

use serde::Serialize;
use std::time::Instant;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size since start, KiB (`VmHWM`).
    pub hwm_kib: u64,
}

/// utime + stime (clock ticks) from the text of `/proc/<pid>/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state(3) ppid(4) ... utime(14) stime(15) → indices 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The value in KiB of a `Name:   1234 kB` line of `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Reads a process's counters; `None` when it has exited or `/proc` is unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_ticks: parse_stat_cpu_ticks(&stat)?,
        rss_kib: parse_status_kib(&status, "VmRSS").unwrap_or(0),
        hwm_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that fails, the Linux default).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A process watched over a measurement interval.
#[derive(Clone, Debug)]
pub struct Watch {
    /// Display name.
    pub name: String,
    /// Process id.
    pub pid: u32,
    start: Option<(Instant, ProcSample)>,
}

/// CPU and memory of one process over the measured interval.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcUsage {
    /// Display name.
    pub name: String,
    /// Average CPU over the interval, in percent of one core.
    pub cpu_percent: f64,
    /// Resident set size at the end of the interval, MiB.
    pub rss_mib: f64,
    /// Peak resident set size since the process started, MiB.
    pub peak_rss_mib: f64,
}

impl Watch {
    /// Starts watching `pid`.
    pub fn new(name: &str, pid: u32) -> Watch {
        Watch {
            name: name.to_string(),
            pid,
            start: None,
        }
    }

    /// Marks the start of the measured interval.
    pub fn begin(&mut self) {
        self.start = sample(self.pid).map(|s| (Instant::now(), s));
    }

    /// The usage since [`Watch::begin`] (zeros when the process could not be read).
    pub fn end(&self, ticks_per_second: u64) -> ProcUsage {
        let mut u = ProcUsage {
            name: self.name.clone(),
            ..ProcUsage::default()
        };
        let (Some((t0, s0)), Some(s1)) = (self.start, sample(self.pid)) else {
            return u;
        };
        let secs = t0.elapsed().as_secs_f64();
        if secs > 0.0 {
            let cpu = s1.cpu_ticks.saturating_sub(s0.cpu_ticks) as f64 / ticks_per_second as f64;
            u.cpu_percent = 100.0 * cpu / secs;
        }
        u.rss_mib = s1.rss_kib as f64 / 1024.0;
        u.peak_rss_mib = s1.hwm_kib as f64 / 1024.0;
        u
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (candles (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_values() {
        let status = "Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}
