//! The compiled schedule and its questions: is a window open at `t`, which
//! windows come next, when does that change.
//!
//! Windows of all series are merged where they overlap or touch, so the
//! answers describe when a push is on, not how the config spelled it. Every
//! answer is taken from a *view* of at most [`HORIZON_S`] either side of the
//! asked time: a window reaching further is cut there, and an edge further
//! ahead is not reported. That keeps each answer a pure function of `t` and
//! the cost of a query bounded whatever the rules (a window of 24 hours
//! every day never ends). `active_at` and `next_change` are called several
//! times a second per push, so the current stretch of constant state is
//! kept and reused until `t` leaves it (see [`Segment`]).

use std::sync::{Mutex, OnceLock, PoisonError};

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone, TimeZoneDatabase};
use serde_json::json;

use crate::calendar::{DAY, MAX_INSTANT, MIN_INSTANT, split, to_instant, weekday};
use crate::def::{ICS_REFRESH_RANGE, ScheduleDef, WindowDef};
use crate::error::ScheduleError;
use crate::expand::Recurrence;
use crate::ics;
use crate::rrule::Rule;
use crate::series::{Length, Series};
use crate::text::{self, When};

/// How far from the asked time answers look: two years, so a yearly event
/// shows up in a preview and the search stays bounded.
pub const HORIZON_S: i64 = 732 * DAY;

/// How long a cached answer that was cut at the horizon stays good: the
/// view is built reaching this much past the horizon.
const SLACK_S: i64 = DAY;

/// The time zone database: the copy compiled into the binary, so that no
/// file is read and every board answers alike.
pub(crate) fn tzdb() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// A window: from `start` (inclusive) to `end` (exclusive), unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub start: i64,
    pub end: i64,
}

impl Interval {
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }

    pub fn duration_s(&self) -> i64 {
        self.end - self.start
    }

    /// For a schedule preview: both ends as RFC 3339 with the UTC offset of
    /// the schedule's zone at that instant, and as unix seconds.
    ///
    /// `{"start": "2026-11-25T18:00:00+01:00", "end": "…", "start_unix": …,
    /// "end_unix": …, "duration_s": 7200}`
    pub fn describe(&self, schedule: &Schedule) -> serde_json::Value {
        json!({
            "start": schedule.rfc3339(self.start),
            "end": schedule.rfc3339(self.end),
            "start_unix": self.start,
            "end_unix": self.end,
            "duration_s": self.duration_s(),
        })
    }
}

/// A checked schedule, ready to answer. Cheap to query from several
/// threads; clones start with an empty cache.
pub struct Schedule {
    tz: TimeZone,
    tz_name: String,
    series: Vec<Series>,
    /// The stretch around the last asked time. A `std` mutex: it is held
    /// only for a lookup or a short computation, never across an `.await`.
    cache: Mutex<Option<Segment>>,
}

impl Clone for Schedule {
    fn clone(&self) -> Self {
        Schedule {
            tz: self.tz.clone(),
            tz_name: self.tz_name.clone(),
            series: self.series.clone(),
            cache: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("timezone", &self.tz_name)
            .field("series", &self.series.len())
            .finish_non_exhaustive()
    }
}

impl Schedule {
    /// Checks `def` and builds the schedule. `ics` is the text of the
    /// calendar named by `def.ics`, when the daemon has it: without it the
    /// calendar contributes no windows yet; given, its events are added to
    /// the windows (even if `def.ics` is unset). Errors name the field
    /// (`schedule.timezone`, `schedule.windows[1].rrule`, `schedule.ics`
    /// with the line of the calendar) and quote the bad value.
    pub fn compile(def: &ScheduleDef, ics: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = tzdb().get(&def.timezone).map_err(|_| {
            ScheduleError::new(
                "schedule.timezone",
                format!(
                    "\"{}\" is not an IANA time zone name (like \"Europe/Amsterdam\" or \"UTC\")",
                    def.timezone
                ),
            )
        })?;
        if !ICS_REFRESH_RANGE.contains(&def.ics_refresh_s) {
            return Err(ScheduleError::new(
                "schedule.ics_refresh_s",
                format!(
                    "{} is outside {}..={} seconds",
                    def.ics_refresh_s,
                    ICS_REFRESH_RANGE.start(),
                    ICS_REFRESH_RANGE.end()
                ),
            ));
        }
        def.ics_source()?;
        let mut series = vec![];
        for (i, w) in def.windows.iter().enumerate() {
            series.push(window(i, w, &tz)?);
        }
        if let Some(text) = ics {
            series.extend(ics::parse(text, &tz)?);
        }
        series.retain(|s| !s.is_empty());
        Ok(Schedule {
            tz,
            tz_name: def.timezone.clone(),
            series,
            cache: Mutex::new(None),
        })
    }

    /// The zone name the schedule was compiled with.
    pub fn timezone(&self) -> &str {
        &self.tz_name
    }

    /// Whether no window can ever open (no windows, or none survived).
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The window holding unix time `t` (start inclusive, end exclusive),
    /// if any; overlapping and touching windows are one.
    pub fn active_at(&self, t: i64) -> Option<Interval> {
        self.with_segment(t, |s| s.view(t).active)
    }

    /// The next instant after `t` at which [`Schedule::active_at`] changes
    /// between `Some` and `None` (a window opens or closes); `None` if that
    /// does not happen within [`HORIZON_S`].
    pub fn next_change(&self, t: i64) -> Option<i64> {
        self.with_segment(t, |s| s.view(t).next_change)
    }

    /// The next `n` windows that end after `t` (the one holding `t` first),
    /// sorted by start, overlapping and touching windows merged, within
    /// [`HORIZON_S`] of `t`.
    pub fn next_windows(&self, t: i64, n: usize) -> Vec<Interval> {
        if n == 0 {
            return vec![];
        }
        let Some(first) = self.with_segment(t, |s| s.view(t).first) else {
            return vec![];
        };
        let mut out = vec![first];
        let far = t.saturating_add(HORIZON_S);
        if n == 1 || first.end >= far {
            return out;
        }
        // `first.end` is a real edge: nothing overlaps or touches it, so
        // every later window starts after it.
        let after = first.end;
        let mut reach = 8 * DAY;
        loop {
            let hi = after.saturating_add(reach).min(far);
            let complete: Vec<Interval> = merge(self.raw_in(after, hi))
                .into_iter()
                .filter(|b| b.start > after && b.start < far)
                .take_while(|b| b.end <= hi || hi == far)
                .map(|b| Interval {
                    start: b.start,
                    end: b.end.min(far),
                })
                .collect();
            if complete.len() >= n - 1 || hi == far {
                out.extend(complete.into_iter().take(n - 1));
                return out;
            }
            reach = reach.saturating_mul(4);
        }
    }

    fn rfc3339(&self, unix: i64) -> String {
        match Timestamp::from_second(unix) {
            Ok(ts) => ts.display_with_offset(self.tz.to_offset(ts)).to_string(),
            Err(_) => unix.to_string(),
        }
    }

    /// Runs `f` on the segment holding `t`, from the cache when it holds.
    fn with_segment<R>(&self, t: i64, f: impl FnOnce(&Segment) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(seg) = cache.as_ref()
            && seg.holds(t)
        {
            return f(seg);
        }
        let seg = self.segment_at(t);
        let r = f(&seg);
        *cache = Some(seg);
        r
    }

    /// Every window of every series that overlaps or touches `lo..=hi`,
    /// sorted by start.
    fn raw_in(&self, lo: i64, hi: i64) -> Vec<Interval> {
        // Outside the years 0001..9999 there are no windows.
        let (lo, hi) = (lo.max(MIN_INSTANT), hi.min(MAX_INSTANT));
        let mut out = vec![];
        if lo > hi {
            return out;
        }
        for s in &self.series {
            s.collect(lo, hi, &mut out);
        }
        out.sort_unstable_by_key(|iv| (iv.start, iv.end));
        out
    }

    /// Finds the merged window holding `t0`, or the first one after it,
    /// widening the searched range (4× each round) until the window's ends
    /// are known or the horizon is reached.
    ///
    /// With the windows overlapping or touching `lo..=hi` merged, a merged
    /// window's start is exact if it is `>= lo` (anything reaching it from
    /// before would overlap the range) and its end is exact if `<= hi`.
    fn segment_at(&self, t0: i64) -> Segment {
        let max_back = HORIZON_S;
        let max_fwd = HORIZON_S + SLACK_S;
        // Start small: dense rules (every few minutes) stay cheap, sparse
        // ones cost a few more rounds.
        let (mut back, mut fwd) = (3600, 3600);
        loop {
            let lo = t0.saturating_sub(back);
            let hi = t0.saturating_add(fwd);
            let blocks = merge(self.raw_in(lo, hi));
            let Some(b) = blocks.into_iter().find(|b| b.end > t0) else {
                if fwd < max_fwd {
                    fwd = (fwd * 4).min(max_fwd);
                    continue;
                }
                return Segment {
                    from: t0,
                    until: t0.saturating_add(SLACK_S + 1),
                    active: false,
                    window: None,
                };
            };
            let active = b.start <= t0;
            let start_exact = b.start >= lo;
            if active && !start_exact && back < max_back {
                back = (back * 4).min(max_back);
                continue;
            }
            let end_exact = b.end <= hi;
            if !end_exact && fwd < max_fwd {
                fwd = (fwd * 4).min(max_fwd);
                continue;
            }
            // An end not found is beyond t0 + HORIZON + SLACK; answers
            // cut it at t + HORIZON, right while t + HORIZON <= b.end.
            let cut_until = if end_exact {
                i64::MAX
            } else {
                b.end - HORIZON_S + 1
            };
            let until = if active { b.end } else { b.start }.min(cut_until);
            return Segment {
                from: t0,
                until,
                active,
                window: Some(Known {
                    start: if start_exact { b.start } else { i64::MIN },
                    end: b.end,
                    end_exact,
                }),
            };
        }
    }
}

/// A stretch `from..until` of time over which `active_at` stays the same,
/// with the window holding it (or, when inactive, the next window) as far
/// as it is known. Answers for any `t` in the stretch are what a fresh
/// search from `t` would give.
#[derive(Clone, Debug)]
struct Segment {
    from: i64,
    until: i64,
    active: bool,
    window: Option<Known>,
}

#[derive(Clone, Copy, Debug)]
struct Known {
    /// `i64::MIN`: before `from - HORIZON`.
    start: i64,
    /// Exact, or else a lower bound beyond `from + HORIZON + SLACK`.
    end: i64,
    end_exact: bool,
}

struct View {
    active: Option<Interval>,
    next_change: Option<i64>,
    first: Option<Interval>,
}

impl Segment {
    fn holds(&self, t: i64) -> bool {
        self.from <= t && t < self.until
    }

    fn view(&self, t: i64) -> View {
        let near = t.saturating_sub(HORIZON_S);
        let far = t.saturating_add(HORIZON_S);
        let none = View {
            active: None,
            next_change: None,
            first: None,
        };
        let Some(k) = self.window else {
            return none;
        };
        let end = k.end.min(far);
        let real_end = (k.end_exact && k.end < far).then_some(k.end);
        if self.active {
            let iv = Interval {
                start: k.start.max(near),
                end,
            };
            View {
                active: Some(iv),
                next_change: real_end,
                first: Some(iv),
            }
        } else if k.start < far {
            View {
                active: None,
                next_change: Some(k.start),
                first: Some(Interval {
                    start: k.start,
                    end,
                }),
            }
        } else {
            none
        }
    }
}

/// Sorted windows merged where they overlap or touch.
fn merge(sorted: Vec<Interval>) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::with_capacity(sorted.len());
    for iv in sorted {
        match out.last_mut() {
            Some(last) if iv.start <= last.end => last.end = last.end.max(iv.end),
            _ => out.push(iv),
        }
    }
    out
}

/// One configured window as a series.
fn window(i: usize, w: &WindowDef, tz: &TimeZone) -> Result<Series, ScheduleError> {
    let field = |k: &str| format!("schedule.windows[{i}].{k}");
    let start =
        text::parse_datetime(&w.start).map_err(|m| ScheduleError::new(field("start"), m))?;
    let outside = |k: &str, v: &str| {
        ScheduleError::new(field(k), format!("\"{v}\" is outside the years 0001..9999"))
    };
    let (stz, naive, unix) = match start {
        When::Local(n) => (
            tz.clone(),
            n,
            to_instant(tz, n).ok_or_else(|| outside("start", &w.start))?,
        ),
        When::Absolute { unix, offset_s } => {
            // An absolute start recurs at that UTC offset (RFC 5545 3.3.5
            // form #2 recurs in UTC); use a local start to follow DST.
            let off = Offset::from_seconds(offset_s)
                .map_err(|e| ScheduleError::new(field("start"), e.to_string()))?;
            (TimeZone::fixed(off), unix + i64::from(offset_s), unix)
        }
    };
    let length = match (&w.stop, &w.duration) {
        (Some(s), Some(d)) => {
            return Err(ScheduleError::new(
                field("stop"),
                format!("both stop \"{s}\" and duration \"{d}\" are set; give exactly one"),
            ));
        }
        (None, None) => {
            return Err(ScheduleError::new(
                format!("schedule.windows[{i}]"),
                format!(
                    "the window starting \"{}\" needs a stop or a duration",
                    w.start
                ),
            ));
        }
        (None, Some(d)) => Length::Exact(
            text::parse_duration(d).map_err(|m| ScheduleError::new(field("duration"), m))?,
        ),
        (Some(s), None) => match text::parse_clock(s) {
            Some(tod) => Length::WallClock(tod),
            None => {
                let stop = text::parse_datetime(s).map_err(|m| {
                    ScheduleError::new(
                        field("stop"),
                        format!("{m}, or a wall-clock time like 20:00"),
                    )
                })?;
                let stop = match stop {
                    When::Local(n) => to_instant(tz, n).ok_or_else(|| outside("stop", s))?,
                    When::Absolute { unix, .. } => unix,
                };
                let len = stop - unix;
                if len <= 0 {
                    let hint = if w.rrule.is_some() {
                        "; for a window crossing midnight write stop as \"HH:MM\" or give a duration"
                    } else {
                        ""
                    };
                    return Err(ScheduleError::new(
                        field("stop"),
                        format!("\"{s}\" is not after start \"{}\"{hint}", w.start),
                    ));
                }
                if len > 366 * DAY {
                    return Err(ScheduleError::new(
                        field("stop"),
                        format!("\"{s}\" is more than 366 days after start \"{}\"", w.start),
                    ));
                }
                Length::Exact(len)
            }
        },
    };
    let mut series = Series::new(stz.clone(), length);
    for (j, x) in w.exdates.iter().enumerate() {
        let f = field(&format!("exdates[{j}]"));
        if let Some(day) = text::parse_date(x) {
            series.except.days.push(day);
            continue;
        }
        let at = text::parse_datetime(x)
            .map_err(|m| ScheduleError::new(&f, format!("{m}, or a date like 2026-12-25")))?;
        series.except.instants.push(match at {
            When::Local(n) => to_instant(tz, n)
                .ok_or_else(|| ScheduleError::new(&f, format!("\"{x}\" is out of range")))?,
            When::Absolute { unix, .. } => unix,
        });
    }
    series.except.finish();
    match &w.rrule {
        None => series.add_fixed(unix, naive),
        Some(r) => {
            let rule = Rule::parse(r)
                .map_err(|m| ScheduleError::new(field("rrule"), format!("\"{r}\": {m}")))?;
            let mut rec = Recurrence::new(&rule, stz, naive, unix);
            if rec.ends_before_start() {
                return Err(ScheduleError::new(
                    field("rrule"),
                    format!("\"{r}\": UNTIL is before start \"{}\"", w.start),
                ));
            }
            // RFC 5545 3.8.5.3 leaves a set whose DTSTART the rule does not
            // yield undefined (calendars differ); a config says what it means.
            if !rec.yields_dtstart() {
                return Err(ScheduleError::new(
                    field("start"),
                    format!(
                        "\"{}\" (a {}) is not an occurrence of rrule \"{r}\"; start must be the first occurrence",
                        w.start,
                        WEEKDAY_NAMES[usize::from(weekday(split(naive).0))]
                    ),
                ));
            }
            if let Some(count) = rule.count
                && let Some(b) = rec.count_bound(count)
            {
                rec.set_bound(b);
            }
            series.rules.push(rec);
        }
    }
    series.finish();
    Ok(series)
}

const WEEKDAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

#[cfg(test)]
mod tests;
