//! Throwaway TLS certificates for tests: a CA and a server certificate it signed, for
//! `localhost` and 127.0.0.1, made with the `openssl` command (`$OPENSSL_BIN`, or on `PATH`).

use crate::bins::find_binary;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PEM files [`make`] wrote.
#[derive(Clone, Debug)]
pub struct Certificates {
    /// The CA's certificate (what a client trusts).
    pub ca: PathBuf,
    /// The server's certificate, signed by the CA.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`: an EC (P-256) CA, and a server
/// certificate for DNS `localhost` and IP 127.0.0.1 signed by it, valid for two days.
pub fn make(dir: &Path) -> Result<Certificates> {
    let openssl = find_binary("openssl", "OPENSSL_BIN", &[])?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )?;
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
            &["-subj", "/CN=candles test CA", "-days", "2"],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
            &["-subj", "/CN=localhost"],
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
            "-days",
            "2",
        ],
    ];
    for args in &steps {
        let out = Command::new(&openssl)
            .args(args)
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
    Ok(Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}
