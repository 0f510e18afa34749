//! The dashboard's state and how events change it. No terminal in here: rendering
//! ([`crate::ui`]) is a pure function of an [`App`], and the event loop ([`crate::event`]) feeds it.

use crate::overlay::{MA_RANGE, Overlays, next_period};
use crate::verification::{Verification, Verified};
use candles_core::{Candle, Exchange, Interval, Micros, Pair, Source};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::{BTreeMap, HashMap};

/// One thing that happened: everything that changes the dashboard arrives as one of these.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal was resized to (columns, rows).
    Resize(u16, u16),
    /// The left mouse button was pressed at (column, row): inspect the candle there.
    Click(u16, u16),
    /// A candle arrived: final or an in-progress (forming) update.
    Candle(Candle),
    /// A link (the server, or one exchange in embedded mode) changed state.
    Conn(Link, LinkState),
    /// A verdict on one exchange's 1-minute candle (from the server or the embedded verifier).
    Verified(Verification),
    /// A candle arrived that could not be decoded (counted and skipped); the reason.
    BadData(String),
    /// The pairs the server has candles for (its `ListMarkets`), to name pairs it does not know.
    Markets(Vec<Pair>),
    /// The data source failed for good (e.g. the server does not know a pair); the message.
    Fatal(String),
    /// Why a link is not live (DNS, refused, TLS, ...): the latest reason, until it is live again.
    Problem(Link, String),
    /// The intervals the server builds (finest first) and its default one.
    Intervals(Vec<Interval>, Interval),
    /// The server does not build the interval asked for: its message (shown until another
    /// interval is chosen).
    Refused(String),
    /// Something the user should know that is not an error (e.g. `--history` was capped).
    Notice(String),
    /// Time passed (drives "stale" and reconnect countdowns).
    Tick,
}

/// Where candles come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// The candles-service gRPC stream.
    Server,
    /// One exchange's connector (embedded mode).
    Exchange(Exchange),
}

impl Link {
    /// `server` or the exchange's name.
    pub fn name(self) -> &'static str {
        match self {
            Link::Server => "server",
            Link::Exchange(e) => e.as_str(),
        }
    }
}

/// The state of a link: the connectors' own type, which the gRPC client reports too (connecting,
/// live, stale, reconnecting in N ms, stopped).
pub use candles_connector::ConnState as LinkState;

/// What a key asks the loop to do beyond changing state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more.
    None,
    /// Leave the program.
    Quit,
}

/// How many finalized candles per series are kept (older ones are dropped).
pub const MAX_CANDLES: usize = 2_000;
/// Columns per candle: bounds for `+`/`-`.
pub const MIN_STEP: u16 = 1;
/// See [`MIN_STEP`].
pub const MAX_STEP: u16 = 8;

/// The candles of one pair and source, keyed by window start: a candle's identity within the
/// series, so a refill after a reconnect replaces rather than duplicates.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Candles by window start, oldest first.
    pub candles: BTreeMap<Micros, Candle>,
    /// When the last candle for this series arrived (wall clock), for "stale".
    pub last_seen: Option<Micros>,
}

impl Series {
    /// Inserts or replaces a candle; a forming update never overwrites a final candle.
    /// Returns whether anything changed.
    pub fn upsert(&mut self, candle: Candle) -> bool {
        if self
            .candles
            .values()
            .next()
            .is_some_and(|first| first.interval != candle.interval)
        {
            // The server now builds another interval (e.g. restarted with other flags).
            self.candles.clear();
        }
        match self.candles.get(&candle.start) {
            Some(old) if old.is_final && !candle.is_final => return false,
            Some(old) if *old == candle => return false,
            _ => {}
        }
        self.candles.insert(candle.start, candle);
        while self.candles.len() > MAX_CANDLES {
            self.candles.pop_first();
        }
        true
    }

    /// The interval of this series, once a candle arrived.
    pub fn interval(&self) -> Option<Interval> {
        self.candles.values().next_back().map(|c| c.interval)
    }
}

/// The dashboard's state.
#[derive(Clone, Debug)]
pub struct App {
    /// The pairs on screen, in tab order.
    pub pairs: Vec<Pair>,
    /// Index of the selected pair.
    pub selected: usize,
    /// Which source is drawn.
    pub source: Source,
    /// Only the selected pair is shown.
    pub zoomed: bool,
    /// Columns per candle (`+` widens, showing fewer candles; `-` narrows, showing more).
    pub step: u16,
    /// The help overlay is shown.
    pub help: bool,
    /// A frozen copy of the series while paused (data keeps arriving into `series`).
    pub paused: Option<HashMap<(Pair, Source), Series>>,
    /// Every series received, by pair and source.
    pub series: HashMap<(Pair, Source), Series>,
    /// Each link's state and when it was reported.
    pub links: BTreeMap<Link, (LinkState, Micros)>,
    /// The current time (set by ticks; injected in tests).
    pub now: Micros,
    /// Candles that failed to decode (skipped).
    pub bad_data: u64,
    /// The last decode failure, shown in the status bar.
    pub last_bad: Option<String>,
    /// What the dashboard is connected to, for the title bar (`http://127.0.0.1:8080`, `embedded`).
    pub origin: String,
    /// A fatal error to show before quitting.
    pub fatal: Option<String>,
    /// The pairs the server reported having candles for, once known.
    pub known: Option<Vec<Pair>>,
    /// Why each link that is not live is down (the latest reason), shown on the status line.
    pub problems: BTreeMap<Link, String>,
    /// The latest notice and when it came (shown for [`NOTICE_FOR`]).
    pub notice: Option<(String, Micros)>,
    /// What to look at or try when a link is down (the log file, `scripts/demo.sh`, ...).
    pub hint: Option<String>,
    /// Inspect mode: the window start of the candle under the cursor (in the selected pair's
    /// series; the newest when that start is not in it).
    pub inspect: Option<Micros>,
    /// Which overlays (VWAP, moving average) are drawn over the candles.
    pub overlays: Overlays,
    /// The venue pane: each exchange's close against the composite, in basis points.
    pub venues: bool,
    /// The terminal's size (columns, rows), to find what a mouse click is on.
    pub screen: (u16, u16),
    /// The candle interval shown (and subscribed to); `None` until known (the server's
    /// default). Candles of another interval are dropped.
    pub interval: Option<Interval>,
    /// The intervals `<` / `>` cycle through (the server's list; empty until it sent it).
    pub intervals: Vec<Interval>,
    /// The data comes from the embedded engine (its interval is not remembered between runs).
    pub embedded: bool,
    /// Why the server refused the interval asked for (its message), until another is chosen.
    pub refused: Option<String>,
    /// How many times `<` / `>` switched the interval (the loop resubscribes when it grows).
    pub interval_switches: u64,
    /// The verdicts on each exchange's 1-minute candles, by pair and exchange.
    pub verified: HashMap<(Pair, Exchange), Verified>,
}

/// Intervals without a single trade after which a live source's panel says `stale`.
pub const QUIET_INTERVALS: i64 = 3;

/// How long a notice stays on the status line, microseconds.
pub const NOTICE_FOR: i64 = 30_000_000;

impl App {
    /// A dashboard for `pairs`, drawing `source`, fed from `origin`.
    pub fn new(pairs: Vec<Pair>, source: Source, origin: impl Into<String>) -> App {
        App {
            pairs,
            selected: 0,
            source,
            zoomed: false,
            step: 2,
            help: false,
            paused: None,
            series: HashMap::new(),
            links: BTreeMap::new(),
            now: Micros(0),
            bad_data: 0,
            last_bad: None,
            origin: origin.into(),
            fatal: None,
            known: None,
            problems: BTreeMap::new(),
            notice: None,
            hint: None,
            inspect: None,
            overlays: Overlays::default(),
            venues: false,
            screen: (0, 0),
            interval: None,
            intervals: Vec::new(),
            embedded: false,
            refused: None,
            interval_switches: 0,
            verified: HashMap::new(),
        }
    }

    /// The series drawn: the frozen copy while paused, else the live data.
    pub fn view(&self) -> &HashMap<(Pair, Source), Series> {
        self.paused.as_ref().unwrap_or(&self.series)
    }

    /// The series of `pair` for the current source, if any candle arrived.
    pub fn series_for(&self, pair: Pair) -> Option<&Series> {
        self.view().get(&(pair, self.source))
    }

    /// The selected pair.
    pub fn selected_pair(&self) -> Option<Pair> {
        self.pairs.get(self.selected).copied()
    }

    /// Applies one event at time `now`; returns what the loop should do.
    pub fn handle(&mut self, event: Event, now: Micros) -> Action {
        self.now = now;
        match event {
            Event::Key(key) => return self.on_key(key),
            Event::Candle(candle) => self.on_candle(candle, now),
            Event::Conn(link, state) => {
                if state == LinkState::Live {
                    self.problems.remove(&link);
                }
                self.links.insert(link, (state, now));
            }
            Event::Problem(link, reason) => {
                self.problems.insert(link, reason);
            }
            Event::Notice(text) => self.notice = Some((text, now)),
            Event::Verified(v) if self.pairs.contains(&v.pair) => {
                self.verified
                    .entry((v.pair, v.exchange))
                    .or_default()
                    .record(v);
            }
            Event::BadData(reason) => {
                self.bad_data += 1;
                self.last_bad = Some(reason);
            }
            Event::Fatal(message) => {
                self.fatal = Some(message);
                return Action::Quit;
            }
            Event::Markets(pairs) => self.known = Some(pairs),
            Event::Intervals(served, default) => {
                self.interval.get_or_insert(default);
                self.intervals = served;
            }
            Event::Refused(message) => self.refused = Some(message),
            Event::Resize(w, h) => self.screen = (w, h),
            Event::Click(..) | Event::Tick | Event::Verified(_) => {}
        }
        Action::None
    }

    fn on_candle(&mut self, candle: Candle, now: Micros) {
        if !self.pairs.contains(&candle.pair) || self.interval.is_some_and(|i| i != candle.interval)
        {
            // Not shown, or of the interval shown before a switch (still in flight).
            return;
        }
        let series = self.series.entry((candle.pair, candle.source)).or_default();
        series.last_seen = Some(now);
        series.upsert(candle);
    }

    /// Applies a key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if self.inspect.is_some() && !self.help {
            match key.code {
                KeyCode::Left | KeyCode::Char('h') => return self.move_cursor(-1),
                KeyCode::Right | KeyCode::Char('l') => return self.move_cursor(1),
                KeyCode::Esc | KeyCode::Char('i') => {
                    self.inspect = None;
                    return Action::None;
                }
                _ => {}
            }
        }
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Esc => return Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = !self.help,
            KeyCode::Tab | KeyCode::Right => self.move_selection(1),
            KeyCode::BackTab | KeyCode::Left => self.move_selection(-1),
            KeyCode::Char(c @ '1'..='9') => {
                let i = (c as usize) - ('1' as usize);
                if i < self.pairs.len() {
                    self.selected = i;
                }
            }
            KeyCode::Enter | KeyCode::Char('z') => self.zoomed = !self.zoomed,
            KeyCode::Char('i') => self.inspect = self.inspected().map(|c| c.start),
            KeyCode::Char('v') => self.overlays.vwap = !self.overlays.vwap,
            KeyCode::Char('m') => self.overlays.ma = !self.overlays.ma,
            KeyCode::Char(c @ ('[' | ']')) => {
                let by = if c == '[' { -1 } else { 1 };
                let period = next_period(self.overlays.ma_period, by);
                self.overlays.ma_period = period.clamp(*MA_RANGE.start(), *MA_RANGE.end());
                self.overlays.ma = true;
            }
            KeyCode::Char('d') => self.venues = !self.venues,
            KeyCode::Char(c @ ('<' | '>')) => self.switch_interval(if c == '<' { -1 } else { 1 }),
            KeyCode::Char('s') => self.source = next_source(self.source, 1),
            KeyCode::Char('S') => self.source = next_source(self.source, -1),
            KeyCode::Char('+') | KeyCode::Char('=') => self.step = (self.step + 1).min(MAX_STEP),
            KeyCode::Char('-') | KeyCode::Char('_') => {
                self.step = self.step.saturating_sub(1).max(MIN_STEP)
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                self.paused = match self.paused.take() {
                    Some(_) => None,
                    None => Some(self.series.clone()),
                };
            }
            _ => {}
        }
        Action::None
    }

    /// The candle under the inspect cursor: in the selected pair's drawn series, the one
    /// starting at [`App::inspect`], else the newest. `None` outside inspect mode only when
    /// there is no candle (it also serves to enter inspect mode).
    pub fn inspected(&self) -> Option<&Candle> {
        let series = self.series_for(self.selected_pair()?)?;
        self.inspect
            .and_then(|start| series.candles.get(&start))
            .or_else(|| series.candles.values().next_back())
    }

    /// Selects pair `index` and puts the inspect cursor on its candle starting at `start`
    /// (a mouse click on that candle).
    pub fn inspect_at(&mut self, index: usize, start: Micros) {
        if index < self.pairs.len() {
            self.selected = index;
            self.inspect = Some(start);
            self.help = false;
        }
    }

    /// Moves the inspect cursor `by` candles (negative: older), stopping at either end.
    fn move_cursor(&mut self, by: isize) -> Action {
        let Some(pair) = self.selected_pair() else {
            return Action::None;
        };
        let (Some(current), Some(series)) =
            (self.inspected().map(|c| c.start), self.series_for(pair))
        else {
            return Action::None;
        };
        let next = if by < 0 {
            series.candles.range(..current).next_back()
        } else {
            series.candles.range(current..).nth(1)
        };
        if let Some((start, _)) = next {
            self.inspect = Some(*start);
        }
        Action::None
    }

    /// `<` / `>`: the next coarser (`by > 0`) or finer interval the server (or the embedded
    /// engine) builds, its chart emptied until the history of the new interval arrives (no
    /// candle of the old one stays).
    fn switch_interval(&mut self, by: isize) {
        let Some(next) = next_interval(&self.intervals, self.interval, by) else {
            let notice = "the server has not said which intervals it builds yet".to_string();
            self.notice = Some((notice, self.now));
            return;
        };
        if Some(next) == self.interval && self.refused.is_none() {
            return;
        }
        self.interval = Some(next);
        self.interval_switches += 1;
        self.refused = None;
        self.series.clear();
        self.paused = None;
        self.inspect = None;
        self.notice = Some((format!("interval {next}: loading its history"), self.now));
    }

    fn move_selection(&mut self, by: isize) {
        let n = self.pairs.len() as isize;
        if n > 0 {
            self.selected = ((self.selected as isize + by).rem_euclid(n)) as usize;
        }
    }

    /// The state to show for `pair`'s current series: the link's state, or `Stale` when the
    /// link is live but the series got no candle for more than two intervals.
    pub fn state_for(&self, pair: Pair) -> Option<(LinkState, Micros)> {
        let link_state = match self.source {
            Source::Exchange(e) if self.links.contains_key(&Link::Exchange(e)) => {
                self.links.get(&Link::Exchange(e)).copied()
            }
            _ => self.best_link(),
        };
        let (state, since) = link_state?;
        if state == LinkState::Live && (self.is_stale(pair) || self.quiet_for(pair).is_some()) {
            return Some((LinkState::Stale, since));
        }
        Some((state, since))
    }

    /// The best state over all links (the composite is live when any exchange is).
    pub fn best_link(&self) -> Option<(LinkState, Micros)> {
        fn rank(s: LinkState) -> u8 {
            match s {
                LinkState::Live => 0,
                LinkState::Stale => 1,
                LinkState::Connecting => 2,
                LinkState::Reconnecting { .. } => 3,
                LinkState::Stopped => 4,
            }
        }
        self.links.values().copied().min_by_key(|(s, _)| rank(*s))
    }

    /// No candle for `pair`'s current series for more than two intervals.
    pub fn is_stale(&self, pair: Pair) -> bool {
        let Some(series) = self.series.get(&(pair, self.source)) else {
            return false;
        };
        match (series.last_seen, series.interval()) {
            (Some(seen), Some(interval)) => {
                self.now.0.saturating_sub(seen.0) > 2 * interval.micros()
            }
            _ => false,
        }
    }
}

impl App {
    /// How long (µs) `pair`'s current series has had no trade, when that is more than
    /// [`QUIET_INTERVALS`] intervals: candles keep arriving (flat ones) but nothing trades.
    /// Measured from the end of the last candle with a trade (or the first candle's start).
    pub fn quiet_for(&self, pair: Pair) -> Option<i64> {
        let series = self.series.get(&(pair, self.source))?;
        let interval = series.interval()?.micros();
        let since = match series.candles.values().rev().find(|c| c.trades > 0) {
            Some(traded) => traded.end(),
            None => *series.candles.keys().next()?,
        };
        let quiet = self.now.0.saturating_sub(since.0);
        (quiet > QUIET_INTERVALS * interval).then_some(quiet)
    }

    /// The notice to show at this time, if one came less than [`NOTICE_FOR`] ago.
    pub fn current_notice(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, at)| self.now.0.saturating_sub(at.0) < NOTICE_FOR)
            .map(|(text, _)| text.as_str())
    }

    /// Whether the server said it has no candles for `pair` (it listed others).
    pub fn unknown_to_server(&self, pair: Pair) -> bool {
        self.known
            .as_ref()
            .is_some_and(|k| !k.is_empty() && !k.contains(&pair))
    }
}

/// The interval `by` steps from `current` in `served` (finest first), stopping at either end;
/// from an interval not in the list (or none), the first. `None` when the list is empty.
pub fn next_interval(
    served: &[Interval],
    current: Option<Interval>,
    by: isize,
) -> Option<Interval> {
    let Some(at) = current.and_then(|c| served.iter().position(|s| *s == c)) else {
        return served.first().copied();
    };
    let to = (at as isize + by).clamp(0, served.len() as isize - 1);
    served.get(to as usize).copied()
}

/// The next source in the cycle composite → binance → kraken → coinbase (or back with `by < 0`).
pub fn next_source(current: Source, by: isize) -> Source {
    let all = Source::ALL;
    let at = all.iter().position(|s| *s == current).unwrap_or(0) as isize;
    all[((at + by).rem_euclid(all.len() as isize)) as usize]
}

#[cfg(test)]
mod tests;
