//! Child processes that are killed when dropped (also when a test panics), with their stdout
//! and stderr appended to a log file.
//!
//! Every child runs under a tiny `sh` watchdog that holds a pipe from this process: when this
//! process ends in any way (a test binary that returns with a broker in a `static`, a panic, a
//! `kill -9`), the pipe closes and the watchdog kills the child. So no broker, Redis or service
//! outlives the test run that started it. Signals ([`Proc::terminate`], [`Proc::kill`],
//! [`Proc::signal`]) go to the program itself, whose pid the watchdog prints first.

use anyhow::{Context as _, Result, bail};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process. Dropping it kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Proc {
    name: String,
    /// The watchdog (`sh`); it exits with the program's status.
    child: Child,
    /// The write end of the watchdog's lifeline; closed when this process ends.
    _lifeline: Option<ChildStdin>,
    /// The program's own pid.
    pid: u32,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

fn open_log(log: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log file {}", log.display()))
}

/// Starts the watchdog's own line on stdout, the one that carries the program's pid: the
/// program may print before it (its stdout is the same pipe when it is read by us).
const PID_MARKER: &str = "\u{1}candles-watchdog-pid ";

/// `cmd` under the watchdog: it starts the program (`"$@"`, stdin from /dev/null, stdout to
/// the watchdog's stdout when `stdout_to_us`, else to its stderr), prints the program's pid as
/// its first stdout line, kills the program with SIGKILL when the watchdog's stdin (a pipe from
/// this process) reaches end of file, and exits with the program's exit status. (The pipe is
/// kept on fd 4 because `sh` gives a background job /dev/null as its stdin.)
fn watched(cmd: &Command, stdout_to_us: bool) -> Command {
    let redirect = if stdout_to_us { "" } else { " >&2" };
    let script = format!(
        r#"exec 4<&0
"$@" </dev/null 4<&-{redirect} &
c=$!
echo "{PID_MARKER}$c"
(while read -r _ <&4; do :; done; kill -9 "$c" 2>/dev/null) &
w=$!
wait "$c"
s=$?
kill "$w" 2>/dev/null
exit "$s""#
    );
    let mut w = Command::new("sh");
    w.arg("-c").arg(script).arg("sh");
    w.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        w.current_dir(dir);
    }
    w
}

/// What [`start`] returns: the watchdog, its stdout after the pid line, the lines the program
/// printed before that line, and the program's pid.
type Started = (
    Child,
    BufReader<std::process::ChildStdout>,
    Vec<String>,
    u32,
);

/// Starts `cmd` under the watchdog.
fn start(name: &str, cmd: &Command, file: &File, stdout_to_us: bool) -> Result<Started> {
    let mut child = watched(cmd, stdout_to_us)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(file.try_clone()?)
        .spawn()
        .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
    let mut early = Vec::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            bail!("the watchdog of {name} ended before it printed the pid");
        }
        match line.trim_end().strip_prefix(PID_MARKER) {
            Some(pid) => {
                let pid = pid
                    .parse()
                    .with_context(|| format!("the watchdog of {name} printed {line:?}"))?;
                return Ok((child, stdout, early, pid));
            }
            None => early.push(line),
        }
    }
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log` (kept across restarts).
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Result<Proc> {
        let mut file = open_log(log)?;
        writeln!(file, "==== testkit: starting {name}: {cmd:?}")?;
        let (child, _stdout, _, pid) = start(name, &cmd, &file, false)?;
        Ok(Proc::watching(name, child, pid, log))
    }

    /// The [`Proc`] of a started watchdog `child` whose program is `pid`.
    fn watching(name: &str, mut child: Child, pid: u32, log: &Path) -> Proc {
        Proc {
            name: name.to_string(),
            _lifeline: child.stdin.take(),
            child,
            pid,
            log: log.to_path_buf(),
            exited: None,
        }
    }

    /// Starts `cmd` and waits (up to `timeout`) for the first line it prints on stdout, which is
    /// returned; the rest of stdout and all of stderr go to `log`.
    pub fn spawn_read_first_line(
        name: &str,
        cmd: Command,
        log: &Path,
        timeout: Duration,
    ) -> Result<(Proc, String)> {
        let mut file = open_log(log)?;
        writeln!(file, "==== testkit: starting {name}: {cmd:?}")?;
        let (child, mut reader, early, pid) = start(name, &cmd, &file, true)?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut early = early.into_iter();
            let first = early.next().unwrap_or_else(|| {
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                first
            });
            let _ = writeln!(file, "{}", first.trim_end());
            let _ = tx.send(first);
            for line in early {
                let _ = file.write_all(line.as_bytes());
            }
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = file.write_all(&buf[..n]);
            }
        });
        let mut proc = Proc::watching(name, child, pid, log);
        match rx.recv_timeout(timeout) {
            Ok(line) if !line.trim().is_empty() => Ok((proc, line.trim().to_string())),
            _ => {
                proc.kill();
                bail!(
                    "{name} printed no first line on stdout within {timeout:?}; its log:\n{}",
                    proc.log_tail(30)
                )
            }
        }
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The program's process id (not the watchdog's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Fails, naming the process and quoting its log, if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited unexpectedly ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            ),
        }
    }

    /// Waits until something accepts TCP connections on `addr`; fails, quoting the log, when the
    /// process exits first or nothing listens within `timeout`.
    pub fn wait_listening(&mut self, addr: std::net::SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if crate::net::wait_for_port(addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {timeout:?}; end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
        }
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `STOP`, `CONT`, ...) to the program.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} ({}) failed", self.pid, self.name);
        }
        Ok(())
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.signal("KILL");
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout`. Returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit_status().is_none() {
            let _ = self.signal("TERM");
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline && self.exit_status().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.kill();
        }
        self.exited
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file (at most its last 64 KiB are read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(cannot read {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn first_line_pid_signals_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello; echo to-log; sleep 60"]);
        let (mut p, line) =
            Proc::spawn_read_first_line("sh", cmd, &dir.path().join("log"), Duration::from_secs(5))
                .unwrap();
        assert_eq!(line, "hello");
        let pid = p.pid();
        assert!(alive(pid));
        assert!(p.check_running().is_ok());
        let status = p.terminate(Duration::from_secs(5)).unwrap();
        assert!(
            !status.success(),
            "SIGTERM ends sleep with a failure status"
        );
        assert!(!alive(pid));
        assert!(p.check_running().is_err());

        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let p = Proc::spawn("sleep", cmd, &dir.path().join("log2")).unwrap();
        let pid = p.pid();
        assert!(alive(pid));
        drop(p);
        assert!(!alive(pid));
    }

    #[test]
    fn the_child_dies_when_the_lifeline_closes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let mut p = Proc::spawn("sleep", cmd, &dir.path().join("log")).unwrap();
        let pid = p.pid();
        // What happens when the test process dies: its end of the pipe closes.
        drop(p._lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "the watchdog killed the child");
    }
}
