//! Child processes that are killed when dropped (also when a test panics), with their stdout
//! and stderr appended to a log file.

use anyhow::{Context as _, Result, bail};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process. Dropping it kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
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

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log` (kept across restarts).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let mut file = open_log(log)?;
        writeln!(file, "==== e2e: starting {name}: {cmd:?}")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    /// Starts `cmd` and waits (up to `timeout`) for the first line it prints on stdout, which is
    /// returned; the rest of stdout and all of stderr go to `log`.
    pub fn spawn_read_first_line(
        name: &str,
        mut cmd: Command,
        log: &Path,
        timeout: Duration,
    ) -> Result<(Proc, String)> {
        let mut file = open_log(log)?;
        writeln!(file, "==== e2e: starting {name}: {cmd:?}")?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file.try_clone()?)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = writeln!(file, "{}", first.trim_end());
            let _ = tx.send(first);
            let mut rest = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&buf[..n]);
                let _ = file.write_all(&rest);
                rest.clear();
            }
        });
        let mut proc = Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        };
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout`. Returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit_status().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
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
