//! The binary's user-facing contract: `--help` documents both subcommands with their env vars,
//! and missing binaries give an error that says how to build them (no processes are started).

use std::process::Command;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_candles-loadgen"))
}

#[test]
fn help_lists_subcommands_and_env_vars() {
    let out = loadgen().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["pipeline", "fanout", "--metrics-addr", "LOADGEN_BIN_DIR"] {
        assert!(text.contains(want), "--help lacks {want}:\n{text}");
    }
    let out = loadgen()
        .args(["pipeline", "--help"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["--rates", "LOADGEN_RATES", "--duration", "--instances"] {
        assert!(text.contains(want), "pipeline --help lacks {want}:\n{text}");
    }
}

#[test]
fn missing_binaries_are_named_with_the_build_command() {
    let dir = std::env::temp_dir().join(format!("loadgen-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = loadgen()
        .args(["--bin-dir"])
        .arg(&dir)
        .args(["pipeline", "--rates", "10", "--duration", "1s"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exchange-sim") && err.contains("cargo build --release"),
        "unhelpful error:\n{err}"
    );
    let _ = std::fs::remove_dir(&dir);
}
