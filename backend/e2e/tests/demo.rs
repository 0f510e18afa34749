//! `scripts/demo.sh` really starts: three simulators and `candles-tui --embedded` pointed at them
//! (the dashboard's `--ws-url`/`--rest-url EXCHANGE=URL` flags), so `--plain` prints finalized
//! composite candles; and a SIGTERM to the script stops everything it started.
//!
//! Runs the debug binaries (`DEMO_BIN_DIR`), not the script's own release build.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use candles_e2e::bins;
use candles_e2e::process::Proc;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The script under test; SIGTERM on drop (also on a failed assertion) so that it stops the
/// simulators and the dashboard it started (a `kill -9` would orphan them).
struct Demo(Proc);

impl Drop for Demo {
    fn drop(&mut self) {
        self.0.terminate(Duration::from_secs(10));
    }
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pids of the direct children of `pid`.
fn children(pid: u32) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn demo_plain_prints_composite_candles_and_sigterm_stops_everything() {
    bins::build(&["exchange-sim", "candles-tui"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(bins::workspace_root().join("scripts/demo.sh"))
        .args(["--plain", "--interval", "1s", "--grace", "200ms"])
        .env("DEMO_BIN_DIR", bins::dir().unwrap())
        .env("DEMO_RATE", "50");
    let (proc, line) = Proc::spawn_read_first_line(
        "demo.sh",
        cmd,
        &dir.path().join("demo.log"),
        Duration::from_secs(60),
    )
    .unwrap();
    let mut demo = Demo(proc);
    assert!(
        line.contains(" composite 1s O "),
        "a --plain line of a finalized composite candle: {line}"
    );
    let started = children(demo.0.pid());
    assert_eq!(
        started.len(),
        4,
        "three simulators and the dashboard: {started:?}"
    );

    let status = demo.0.terminate(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(143), "the script exits as terminated");
    let left: Vec<&String> = started.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "still running after the script: {left:?}");
}
