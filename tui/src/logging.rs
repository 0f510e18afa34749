//! File logging: where the log goes and setting it up. Logs never go to the screen, so the
//! path is shown wherever a problem is (status line, stderr in line modes).
//!
//! `--log-file PATH` writes exactly `PATH`; without it, a daily file
//! `~/.cache/candles/logs/candles-tui.log.YYYY-MM-DD` (7 kept), or under the temp dir when the
//! home is unusable.

use anyhow::Context;
use std::path::{Path, PathBuf};
use tracing_appender::rolling::{Builder, Rotation};

/// The default log file's name (the date is appended daily).
pub const DEFAULT_NAME: &str = "candles-tui.log";

/// Where logs go: a directory and a file name, rotated daily (default) or not (`--log-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    /// The directory.
    pub dir: PathBuf,
    /// The file name (with rotation, the prefix before `.YYYY-MM-DD`).
    pub name: String,
    /// Daily rotation, 7 files kept.
    pub daily: bool,
}

impl LogTarget {
    /// The target for a `--log-file` value, or the default under `home` (`$HOME`).
    pub fn new(log_file: Option<&Path>, home: Option<&Path>) -> LogTarget {
        match log_file {
            Some(path) => LogTarget {
                dir: path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
                name: path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| DEFAULT_NAME.into()),
                daily: false,
            },
            None => LogTarget {
                dir: match home {
                    Some(home) if !home.as_os_str().is_empty() => home.join(".cache/candles/logs"),
                    _ => std::env::temp_dir().join("candles-logs"),
                },
                name: DEFAULT_NAME.into(),
                daily: true,
            },
        }
    }

    /// The file written today, for messages (`dir/candles-tui.log.2026-12-07` or `dir/x.log`).
    pub fn display(&self) -> String {
        let file = self.dir.join(&self.name);
        if self.daily {
            let today = time::OffsetDateTime::now_utc().date();
            format!("{}.{today}", file.display())
        } else {
            file.display().to_string()
        }
    }
}

/// Starts file logging with filter `filter`; returns the guard that must live until exit and
/// the target actually used (the default falls back to the temp dir when unusable).
pub fn init(
    log_file: Option<&Path>,
    filter: &str,
) -> anyhow::Result<(tracing_appender::non_blocking::WorkerGuard, LogTarget)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut target = LogTarget::new(log_file, home.as_deref());
    if let Err(e) = std::fs::create_dir_all(&target.dir) {
        if !target.daily {
            return Err(e).with_context(|| {
                format!(
                    "creating the log directory {} (--log-file)",
                    target.dir.display()
                )
            });
        }
        // The default place is unusable (e.g. a read-only home): fall back to the temp dir.
        target = LogTarget::new(None, None);
        std::fs::create_dir_all(&target.dir)
            .with_context(|| format!("creating the log directory {}", target.dir.display()))?;
    }
    let rotation = if target.daily {
        Rotation::DAILY
    } else {
        Rotation::NEVER
    };
    let mut builder = Builder::new()
        .rotation(rotation)
        .filename_prefix(&target.name);
    if target.daily {
        builder = builder.max_log_files(7);
    }
    let appender = builder
        .build(&target.dir)
        .with_context(|| format!("opening the log file {} (set --log-file)", target.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    candles_runtime::init_logs_to(candles_runtime::LogFormat::Text, filter, writer)
        .context("--log")?;
    Ok((guard, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_file_is_written_as_named_and_the_default_rotates() {
        let t = LogTarget::new(Some(Path::new("x.log")), None);
        assert_eq!(
            t,
            LogTarget {
                dir: PathBuf::from("."),
                name: "x.log".into(),
                daily: false
            }
        );
        assert_eq!(t.display(), "./x.log");
        let t = LogTarget::new(None, Some(Path::new("/home/u")));
        assert_eq!(t.dir, PathBuf::from("/home/u/.cache/candles/logs"));
        assert!(t.daily);
        assert!(
            t.display()
                .starts_with("/home/u/.cache/candles/logs/candles-tui.log.20"),
            "{}",
            t.display()
        );
    }
}
