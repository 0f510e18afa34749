//! Remembered settings: the pairs, source, candle interval, overlays (VWAP, moving average and its period),
//! venue pane, zoom and candle width, saved as JSON in the user's config directory when they
//! change and at exit, and restored at start. Flags (and their environment variables) win over
//! the file; a file that cannot be read is reported and otherwise ignored (and not written
//! over), never fatal.
//!
//! Where: `--config PATH` / `CANDLES_CONFIG`, else `$XDG_CONFIG_HOME/candles/tui.json`, else
//! `~/.config/candles/tui.json`; `--no-config` / `CANDLES_NO_CONFIG` neither reads nor writes.

use crate::app::App;
use crate::overlay::{MA_RANGE, Overlays};
use candles_core::{Interval, Pair, Source};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What is remembered. Every field is optional in the file: what is missing keeps its default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The pairs, in tab order (`BTC-USDT`).
    pub pairs: Option<Vec<String>>,
    /// The source drawn (`composite`, `binance`, ...).
    pub source: Option<String>,
    /// The candle interval shown (`5s`, `1m`, ...), against a server.
    pub interval: Option<String>,
    /// The VWAP line is on.
    pub vwap: Option<bool>,
    /// The moving average is on.
    pub ma: Option<bool>,
    /// The moving average's period.
    pub ma_period: Option<usize>,
    /// The venue pane is on.
    pub venues: Option<bool>,
    /// Only the selected pair is shown.
    pub zoomed: Option<bool>,
    /// Columns per candle.
    pub step: Option<u16>,
}

/// The settings file to use: `explicit` (`--config`), else the user's config directory from
/// `xdg` (`$XDG_CONFIG_HOME`) or `home` (`$HOME`); `None` when there is none.
pub fn path(explicit: Option<&Path>, xdg: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let dir = match (
        xdg.filter(|x| !x.is_empty()),
        home.filter(|h| !h.is_empty()),
    ) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(home).join(".config"),
        (None, None) => return None,
    };
    Some(dir.join("candles").join("tui.json"))
}

/// Parses the file's text; the error says what is wrong with it.
pub fn parse(text: &str) -> Result<Settings, String> {
    let s: Settings = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(pairs) = &s.pairs {
        for p in pairs {
            Pair::parse(p).map_err(|e| format!("pairs: {e}"))?;
        }
    }
    if let Some(source) = &s.source {
        source
            .parse::<Source>()
            .map_err(|e| format!("source: {e}"))?;
    }
    if let Some(interval) = &s.interval {
        Interval::parse(interval).map_err(|e| format!("interval: {e}"))?;
    }
    if let Some(period) = s.ma_period
        && !MA_RANGE.contains(&period)
    {
        return Err(format!(
            "ma_period {period} is not in {}..={}",
            MA_RANGE.start(),
            MA_RANGE.end()
        ));
    }
    Ok(s)
}

/// Reads the settings at `path`: `Ok(None)` when there is no file; an error naming the file
/// and what is wrong with it when it cannot be used.
pub fn load(path: &Path) -> Result<Option<Settings>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read settings {}: {e}", path.display())),
    };
    parse(&text).map(Some).map_err(|e| {
        format!(
            "ignoring settings {}: {e} (left as is: fix or delete it)",
            path.display()
        )
    })
}

/// Writes `settings` to `path` (creating its directory), through a temporary file so a crash
/// never leaves half a file.
pub fn save(path: &Path, settings: &Settings) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(settings).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

impl Settings {
    /// The settings shown by `app`.
    pub fn of(app: &App) -> Settings {
        Settings {
            pairs: Some(app.pairs.iter().map(Pair::to_string).collect()),
            source: Some(app.source.to_string()),
            interval: app
                .interval
                .filter(|_| !app.embedded)
                .map(|i| i.to_string()),
            vwap: Some(app.overlays.vwap),
            ma: Some(app.overlays.ma),
            ma_period: Some(app.overlays.ma_period),
            venues: Some(app.venues),
            zoomed: Some(app.zoomed),
            step: Some(app.step),
        }
    }

    /// The remembered pairs (already checked by [`parse`]).
    pub fn pairs(&self) -> Option<Vec<Pair>> {
        let pairs = self.pairs.as_ref()?;
        pairs.iter().map(|p| Pair::parse(p).ok()).collect()
    }

    /// The remembered source (already checked by [`parse`]).
    pub fn source(&self) -> Option<Source> {
        self.source.as_ref()?.parse().ok()
    }

    /// These settings, with `before`'s interval where they have none (`--embedded` does not
    /// forget the interval chosen against a server).
    pub fn keeping(mut self, before: &Settings) -> Settings {
        if self.interval.is_none() {
            self.interval.clone_from(&before.interval);
        }
        self
    }

    /// The remembered interval (already checked by [`parse`]).
    pub fn interval(&self) -> Option<Interval> {
        Interval::parse(self.interval.as_ref()?).ok()
    }

    /// Applies what the dashboard alone uses (overlays, venue pane, zoom, width) to `app`; the
    /// period only when `--ma` was not given.
    pub fn apply_view(&self, app: &mut App, ma_given: bool) {
        let o: &mut Overlays = &mut app.overlays;
        o.vwap = self.vwap.unwrap_or(o.vwap);
        o.ma = self.ma.unwrap_or(o.ma);
        if !ma_given {
            o.ma_period = self.ma_period.unwrap_or(o.ma_period);
        }
        app.venues = self.venues.unwrap_or(app.venues);
        app.zoomed = self.zoomed.unwrap_or(app.zoomed);
        if let Some(step) = self.step {
            app.step = step.clamp(crate::app::MIN_STEP, crate::app::MAX_STEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_found_in_the_users_config_directory() {
        let explicit = Path::new("/tmp/x.json");
        assert_eq!(path(Some(explicit), Some("/x"), None).unwrap(), explicit);
        assert_eq!(
            path(None, Some("/xdg"), Some("/home/u")).unwrap(),
            Path::new("/xdg/candles/tui.json")
        );
        assert_eq!(
            path(None, Some(""), Some("/home/u")).unwrap(),
            Path::new("/home/u/.config/candles/tui.json")
        );
        assert_eq!(path(None, None, None), None);
    }

    #[test]
    fn settings_round_trip_and_a_broken_file_says_what_is_wrong() {
        let mut app = App::new(
            vec![Pair::parse("ethusdt").unwrap()],
            Source::Composite,
            "t",
        );
        app.overlays.ma = true;
        app.overlays.ma_period = 50;
        app.step = 4;
        let saved = Settings::of(&app);
        let back = parse(&serde_json::to_string(&saved).unwrap()).unwrap();
        assert_eq!(back, saved);
        let mut fresh = App::new(Pair::defaults(), Source::Composite, "t");
        back.apply_view(&mut fresh, false);
        assert_eq!((fresh.overlays, fresh.step), (app.overlays, 4));
        assert_eq!(back.pairs().unwrap(), app.pairs);
        app.interval = Some(candles_core::Interval::seconds(60));
        let saved = parse(&serde_json::to_string(&Settings::of(&app)).unwrap()).unwrap();
        assert_eq!(saved.interval(), app.interval);
        app.embedded = true;
        let kept = Settings::of(&app).keeping(&saved);
        assert_eq!(kept.interval(), app.interval, "embedded keeps the server's");
        assert!(
            parse(r#"{"interval": "0s"}"#)
                .unwrap_err()
                .contains("interval")
        );
        assert!(parse("{").is_err());
        assert!(
            parse(r#"{"source": "ftx"}"#)
                .unwrap_err()
                .contains("source")
        );
        assert!(
            parse(r#"{"pairs": ["nope"]}"#)
                .unwrap_err()
                .contains("pairs")
        );
        assert!(
            parse(r#"{"ma_period": 0}"#)
                .unwrap_err()
                .contains("ma_period")
        );
        assert!(
            parse(r#"{"colour": 1}"#).is_err(),
            "unknown fields are named"
        );
        assert_eq!(parse("{}").unwrap(), Settings::default());
    }

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("candles").join("tui.json");
        assert_eq!(load(&file), Ok(None));
        let s = Settings {
            vwap: Some(true),
            ..Settings::default()
        };
        save(&file, &s).unwrap();
        assert_eq!(load(&file), Ok(Some(s)));
        std::fs::write(&file, "not json").unwrap();
        let err = load(&file).unwrap_err();
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}
