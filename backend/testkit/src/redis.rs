//! A `redis-server` on a free loopback port, without persistence; plain or TLS.

use crate::bins::find_binary;
use crate::net::{free_port, wait_for_port};
use crate::process::Proc;
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A redis-server on a free port, without persistence; plain, or TLS with a password
/// ([`Redis::start_tls`]).
pub struct Redis {
    proc: Option<Proc>,
    bin: Option<PathBuf>,
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
        Redis::start_binary(None)
    }

    /// [`Redis::start`] with the given `redis-server` (`None`: `$REDIS_SERVER_BIN`,
    /// `~/.cache/candles/bin` or `PATH`).
    pub fn start_binary(bin: Option<PathBuf>) -> Result<Redis> {
        let mut r = Redis {
            proc: None,
            bin,
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
            bin: None,
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

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// (Re)starts the server on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.proc = None;
        let bin = match &self.bin {
            Some(bin) => bin.clone(),
            None => find_binary("redis-server", "REDIS_SERVER_BIN", &[])?,
        };
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
    use std::net::TcpStream;

    #[test]
    fn redis_starts_and_listens() {
        let r = Redis::start().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", r.port())).is_ok());
    }
}
