//! A `redis-server` on a free loopback port, plain or TLS, with the same append-only
//! persistence as docker-compose.yml ([`PERSISTENCE`]): its data dir (a temp dir, or one given
//! to [`Redis::start_in`]) is kept across [`Redis::restart`], so the candle history survives a
//! SIGTERM ([`Redis::stop`]) and a `kill -9` ([`Redis::kill`]) of the server.

use crate::bins::find_binary;
use crate::net::{free_port, wait_for_port};
use crate::process::Proc;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The persistence flags of every Redis of the project (docker-compose.yml has the same): an
/// append-only file, written to the kernel before each reply and fsynced every second; no RDB
/// snapshots. So a SIGTERM (the final fsync at shutdown) or a `kill -9` of the server loses
/// nothing it acknowledged (unless a stalled disk makes Redis postpone its writes, by at most
/// 2 s); a crash of the machine itself may lose the last second.
pub const PERSISTENCE: [&str; 6] = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
];

/// How long a start may take (listening, then loading the append-only file).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Redis::stop`] waits for a SIGTERM to end the server before `kill -9`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A redis-server on a free port with [`PERSISTENCE`]; plain, or TLS with a password
/// ([`Redis::start_tls`]).
pub struct Redis {
    proc: Option<Proc>,
    bin: Option<PathBuf>,
    port: u16,
    tls: Option<Tls>,
    /// The data dir (the append-only file), the log and the TLS files.
    dir: PathBuf,
    /// Deletes `dir` on drop when it is a temp dir of its own.
    _temp: Option<tempfile::TempDir>,
}

/// The TLS set-up of a [`Redis::start_tls`] server.
struct Tls {
    password: String,
}

impl Redis {
    /// Starts redis-server (data in a temp dir) and waits until it accepts connections.
    pub fn start() -> Result<Redis> {
        Redis::start_binary(None)
    }

    /// [`Redis::start`] with the given `redis-server` (`None`: `$REDIS_SERVER_BIN`,
    /// `~/.cache/candles/bin` or `PATH`).
    pub fn start_binary(bin: Option<PathBuf>) -> Result<Redis> {
        let temp = tempfile::tempdir()?;
        Redis::start_with(temp.path().to_path_buf(), Some(temp), bin, None)
    }

    /// Starts redis-server with its data, log and append-only file in `dir` (created; kept
    /// after drop), e.g. in a stack's run directory.
    pub fn start_in(dir: &Path, bin: Option<PathBuf>) -> Result<Redis> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Redis::start_with(dir.to_path_buf(), None, bin, None)
    }

    /// Starts redis-server accepting only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// made for it ([`Redis::ca_file`]; [`crate::certs::make`]), and `password`.
    pub fn start_tls(password: &str) -> Result<Redis> {
        let temp = tempfile::tempdir()?;
        crate::certs::make(temp.path())?;
        let tls = Tls {
            password: password.to_string(),
        };
        Redis::start_with(temp.path().to_path_buf(), Some(temp), None, Some(tls))
    }

    fn start_with(
        dir: PathBuf,
        temp: Option<tempfile::TempDir>,
        bin: Option<PathBuf>,
        tls: Option<Tls>,
    ) -> Result<Redis> {
        let mut r = Redis {
            proc: None,
            bin,
            port: free_port(),
            tls,
            dir,
            _temp: temp,
        };
        r.restart()?;
        Ok(r)
    }

    /// `redis://127.0.0.1:PORT/`, or `rediss://:PASSWORD@127.0.0.1:PORT/` for a TLS server.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}/", self.port),
            Some(tls) => format!("rediss://:{}@127.0.0.1:{}/", tls.password, self.port),
        }
    }

    /// The PEM file of the CA that signed a TLS server's certificate (for `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    /// Its data dir: the append-only file, its log (and a TLS server's certificates).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Fails, quoting its log, if the server has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.check_running(),
            None => Ok(()),
        }
    }

    /// Kills the server (SIGKILL). What it acknowledged is in the append-only file already.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Stops the server with SIGTERM (it fsyncs the append-only file and exits), `kill -9`
    /// after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(STOP_GRACE);
        }
    }

    /// (Re)starts the server on the same port, with the same data dir (so with the data it had).
    pub fn restart(&mut self) -> Result<()> {
        self.proc = None;
        let bin = match &self.bin {
            Some(bin) => bin.clone(),
            None => find_binary("redis-server", "REDIS_SERVER_BIN", &[])?,
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(PERSISTENCE)
            .arg("--dir")
            .arg(&self.dir);
        if let Some(tls) = &self.tls {
            let file = |name: &str| self.dir.join(name);
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"))
                .args(["--tls-auth-clients", "no", "--requirepass", &tls.password]);
        }
        let log = self.dir.join("redis.log");
        let ready_before = ready_lines(&log);
        self.proc = Some(Proc::spawn("redis-server", cmd, &log)?);
        wait_for_port(([127, 0, 0, 1], self.port).into(), START_TIMEOUT)?;
        // It accepts connections while it loads the append-only file, answering `-LOADING`
        // until it logs that it is ready.
        let deadline = Instant::now() + START_TIMEOUT;
        while ready_lines(&log) <= ready_before {
            self.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not get ready within {START_TIMEOUT:?}; its log:\n{}",
                    crate::process::log_tail(&log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// How many times the server logged `Ready to accept connections` in `log` (kept across
/// restarts), i.e. finished loading its data.
fn ready_lines(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |text| {
        text.matches("Ready to accept connections").count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    /// Sends one inline command and returns the first line of the reply.
    fn command(r: &Redis, line: &str) -> String {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut conn = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
        conn.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reader = BufReader::new(conn);
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        if reply.starts_with('$') && reply.trim() != "$-1" {
            reply.clear();
            reader.read_line(&mut reply).unwrap();
        }
        reply.trim().to_string()
    }

    #[test]
    fn redis_starts_and_listens() {
        let r = Redis::start().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", r.port())).is_ok());
    }

    #[test]
    fn what_redis_acknowledged_survives_sigterm_and_kill9() {
        let mut r = Redis::start().unwrap();
        assert_eq!(command(&r, "SET before-sigterm 1"), "+OK");
        r.stop();
        r.restart().unwrap();
        assert_eq!(command(&r, "GET before-sigterm"), "1");
        assert_eq!(command(&r, "SET before-kill9 2"), "+OK");
        r.kill();
        r.restart().unwrap();
        assert_eq!(command(&r, "GET before-sigterm"), "1");
        assert_eq!(command(&r, "GET before-kill9"), "2");
    }
}
