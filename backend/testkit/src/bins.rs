//! The workspace's own binaries (`exchange-sim`, `candles-connector`, `candles-service`): where
//! they are, and building them when a test needs them.
//!
//! By default they are next to the running executable (a test's `target/<profile>/deps/..`, or
//! `candles-loadgen` and `candles-stack` in `target/<profile>`), built with the same cargo,
//! profile and target directory as the running test, so `cargo test -p candles-e2e` works on its
//! own. Set `CANDLES_E2E_NO_BUILD=1` to use whatever is already built (scripts/test.sh builds
//! everything first), or `CANDLES_E2E_BIN_DIR=DIR` to use the binaries in DIR (no build).

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages whose binaries the full-stack tests drive.
pub const PACKAGES: &[&str] = &[
    "exchange-sim",
    "candles-connector",
    "candles-service",
    "candles-tui",
];

/// The workspace root (two levels above the testkit crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cargo profile directory the running test executable was built into, e.g.
/// `$CARGO_TARGET_DIR/debug` (the test itself is in its `deps/`).
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running test executable")?;
    let parent = exe
        .parent()
        .context("the test executable has no parent directory")?;
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent()
    } else {
        Some(parent)
    };
    dir.map(Path::to_path_buf)
        .with_context(|| format!("cannot find the target directory of {}", exe.display()))
}

/// Where the workspace's binaries are: `$CANDLES_E2E_BIN_DIR`, else [`profile_dir`].
pub fn dir() -> Result<PathBuf> {
    match std::env::var_os("CANDLES_E2E_BIN_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => profile_dir(),
    }
}

/// The path of one of the workspace's binaries in [`dir`].
pub fn bin(name: &str) -> Result<PathBuf> {
    in_dir(&dir()?, name)
}

/// The path of `name` in `dir`; when it is missing, the error names the cargo command that
/// builds it (`--release` unless it is a `debug` directory).
pub fn in_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        let release = if dir.ends_with("debug") {
            ""
        } else {
            " --release"
        };
        bail!(
            "{} is missing: build it with `cargo build{release} --bins -p exchange-sim -p candles-connector -p candles-service` (the tests do this themselves unless CANDLES_E2E_NO_BUILD is set; candles-loadgen takes --bin-dir)",
            path.display()
        );
    }
    Ok(path)
}

/// Builds [`PACKAGES`] once per test process (cargo is a no-op when they are fresh).
pub fn ensure_built() -> Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build(PACKAGES).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `cargo build --bins -p <each package>` into the test's own target directory and profile.
pub fn build(packages: &[&str]) -> Result<()> {
    if std::env::var_os("CANDLES_E2E_NO_BUILD").is_some()
        || std::env::var_os("CANDLES_E2E_BIN_DIR").is_some()
    {
        return Ok(());
    }
    let profile_dir = profile_dir()?;
    let target_dir = profile_dir
        .parent()
        .context("the profile directory has no parent")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO")));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--bins", "--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", cargo.display()))?;
    if !out.status.success() {
        bail!(
            "building {} failed ({}):\n{}",
            packages.join(", "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
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
