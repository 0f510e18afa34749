//! Test support: real services on free loopback ports, started and stopped by the tests.
//!
//! - [`Kafka`]: Apache Kafka (KRaft, broker + controller) from Maven Central's jars
//!   (see `scripts/install-test-deps.sh`), data on disk; [`Kafka::shared`] is one per process.
//! - [`Redis`]: a `redis-server` with no persistence.
//! - [`process::Proc`]: a child process with a log file, killed on drop and when this process
//!   dies.
//!
//! Each is killed when dropped. When a binary is missing the start fails with a message that
//! says how to install it; tests never skip silently (CI sets `CI=true` and must see every test run).
#![forbid(unsafe_code)]

pub mod kafka;
pub mod process;

pub use kafka::{KAFKA_VERSION, Kafka};

use anyhow::{Result, bail};
use process::Proc;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released for the service to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listened on {addr} within {timeout:?}")
}

/// The Prometheus text a process serves at `GET http://127.0.0.1:{port}/metrics` (empty on any
/// error: a process that is gone has no metrics).
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return String::new();
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// Where the test services' binaries are looked for: `$CANDLES_BIN_DIR`, else `~/.cache/candles/bin`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("CANDLES_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/candles/bin")
        })
}

/// Finds a service binary: `$env` if set, else the first of `extra_dirs`, [`bin_dir`] and `PATH`
/// that has it. The error says where it looked and how to install it.
pub fn find_binary(name: &str, env: &str, extra_dirs: &[PathBuf]) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let local = [bin_dir()];
    let dirs = extra_dirs.iter().chain(&local);
    for dir in dirs.clone().cloned().chain(std::env::split_paths(&path)) {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    let looked: Vec<String> = dirs.map(|d| d.display().to_string()).collect();
    bail!(
        "`{name}` was not found (looked at ${env}, {}, and PATH); run scripts/install-test-deps.sh to install it",
        looked.join(", ")
    )
}

/// A redis-server on a free port, without persistence; plain, or TLS with a password
/// ([`Redis::start_tls`]).
pub struct Redis {
    proc: Option<Proc>,
    port: u16,
    tls: Option<Tls>,
    _dir: tempfile::TempDir,
}

/// The TLS set-up of a [`Redis::start_tls`] server.
struct Tls {
    password: String,
}

impl Redis {
    /// Starts redis-server and waits until it accepts connections.
    pub fn start() -> Result<Redis> {
        let mut r = Redis {
            proc: None,
            port: free_port(),
            tls: None,
            _dir: tempfile::tempdir()?,
        };
        r.restart()?;
        Ok(r)
    }

    /// Starts redis-server accepting only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// made for it ([`Redis::ca_file`]; made with the `openssl` command), and `password`.
    pub fn start_tls(password: &str) -> Result<Redis> {
        let dir = tempfile::tempdir()?;
        make_certificates(dir.path())?;
        let mut r = Redis {
            proc: None,
            port: free_port(),
            tls: Some(Tls {
                password: password.to_string(),
            }),
            _dir: dir,
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
        self._dir.path().join("ca.pem")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// (Re)starts the server on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.proc = None;
        let bin = find_binary("redis-server", "REDIS_SERVER_BIN", &[])?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(self._dir.path());
        if let Some(tls) = &self.tls {
            let file = |name: &str| self._dir.path().join(name);
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("server.pem"))
                .arg("--tls-key-file")
                .arg(file("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(file("ca.pem"))
                .args(["--tls-auth-clients", "no", "--requirepass", &tls.password]);
        }
        self.proc = Some(Proc::spawn(
            "redis-server",
            cmd,
            &self._dir.path().join("redis.log"),
        )?);
        wait_for_port(([127, 0, 0, 1], self.port).into(), Duration::from_secs(10))
    }
}

/// Writes `ca.pem`, `server.pem` and `server.key` (a certificate for IP 127.0.0.1 signed by
/// the CA) into `dir` with the `openssl` command.
fn make_certificates(dir: &std::path::Path) -> Result<()> {
    let openssl = find_binary("openssl", "OPENSSL_BIN", &[])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "san.ext",
        ],
    ];
    for (i, args) in steps.iter().enumerate() {
        let subject: &[&str] = match i {
            0 => &["-subj", "/CN=candles test CA", "-days", "2"],
            1 => &["-subj", "/CN=127.0.0.1"],
            _ => &["-days", "2"],
        };
        let out = Command::new(&openssl)
            .args(args)
            .args(subject)
            .current_dir(dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_starts_and_listens() {
        let r = Redis::start().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", r.port())).is_ok());
    }
}
