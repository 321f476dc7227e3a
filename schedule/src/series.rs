//! One recurring window (a configured window or a calendar event): its
//! start, length, rules, extra dates and exceptions, and the intervals it
//! yields in a range.

use jiff::tz::TimeZone;

use crate::Interval;
use crate::calendar::{DAY, split, to_instant};
use crate::expand::Recurrence;

/// How long each occurrence lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Length {
    /// Exact seconds: a `duration`, a date-time `stop`, an .ics DTEND on a
    /// date-time event ("the same exact duration", RFC 5545 3.8.5.3), or
    /// DURATION in hours, minutes, seconds.
    Exact(i64),
    /// RFC 5545 3.3.6: days and weeks are nominal (the same wall-clock
    /// time that many days later, 23 or 25 hours across a DST change), then
    /// `secs` exact seconds. All-day events, and DURATION with days.
    Nominal { days: i64, secs: i64 },
    /// Until the wall clock next shows this second of the day (a `stop`
    /// written `HH:MM`).
    WallClock(i64),
}

impl Length {
    /// The end of an occurrence starting at `unix`, which the wall clock
    /// reads as `naive` (for a start moved out of a DST gap, the time as
    /// written). `None` when the window is empty that day: a wall-clock
    /// stop that fell in the same DST gap as the start.
    pub(crate) fn end(self, tz: &TimeZone, unix: i64, naive: i64) -> Option<i64> {
        let end = match self {
            Length::Exact(s) => unix + s,
            Length::Nominal { days, secs } => to_instant(tz, naive + days * DAY)? + secs,
            Length::WallClock(tod) => {
                let (day, start_tod) = split(naive);
                let day = if tod > start_tod { day } else { day + 1 };
                to_instant(tz, day * DAY + tod)?
            }
        };
        (end > unix).then_some(end)
    }

    /// An upper bound of the length of any occurrence, for searches that
    /// must find windows that started before the range. A nominal day is
    /// taken as two, for zones that skipped a whole day (Samoa, 2011).
    pub(crate) fn max_seconds(self) -> i64 {
        match self {
            Length::Exact(s) => s,
            Length::Nominal { days, secs } => (days + 1) * DAY + secs,
            Length::WallClock(_) => 2 * DAY,
        }
    }
}

/// Starts to leave out (EXDATE): instants, and whole wall-clock days.
#[derive(Clone, Debug, Default)]
pub(crate) struct Exceptions {
    pub instants: Vec<i64>,
    pub days: Vec<i64>,
}

impl Exceptions {
    pub(crate) fn finish(&mut self) {
        self.instants.sort_unstable();
        self.instants.dedup();
        self.days.sort_unstable();
        self.days.dedup();
    }

    fn excludes(&self, unix: i64, naive: i64) -> bool {
        self.instants.binary_search(&unix).is_ok()
            || (!self.days.is_empty() && self.days.binary_search(&split(naive).0).is_ok())
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub tz: TimeZone,
    pub length: Length,
    /// Windows given one by one (DTSTART, RDATE), exceptions applied,
    /// sorted by start.
    pub fixed: Vec<Interval>,
    pub rules: Vec<Recurrence>,
    pub except: Exceptions,
    /// Longest window of this series, seconds.
    pub max_len: i64,
}

impl Series {
    pub(crate) fn new(tz: TimeZone, length: Length) -> Self {
        Series {
            tz,
            length,
            fixed: vec![],
            rules: vec![],
            except: Exceptions::default(),
            max_len: length.max_seconds(),
        }
    }

    /// Adds one occurrence starting at `unix` (wall clock `naive`) with the
    /// series' length, unless an exception names it.
    pub(crate) fn add_fixed(&mut self, unix: i64, naive: i64) {
        if self.except.excludes(unix, naive) {
            return;
        }
        if let Some(end) = self.length.end(&self.tz, unix, naive) {
            self.add_fixed_interval(Interval { start: unix, end });
        }
    }

    pub(crate) fn excludes(&self, unix: i64, naive: i64) -> bool {
        self.except.excludes(unix, naive)
    }

    pub(crate) fn add_fixed_interval(&mut self, iv: Interval) {
        if iv.end > iv.start {
            self.max_len = self.max_len.max(iv.end - iv.start);
            self.fixed.push(iv);
        }
    }

    pub(crate) fn finish(&mut self) {
        self.fixed.sort_unstable_by_key(|iv| (iv.start, iv.end));
        self.fixed.dedup();
    }

    /// Whether this series can never yield a window.
    pub(crate) fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.rules.is_empty()
    }

    /// Appends every window of the series that overlaps or touches
    /// `lo..=hi`: start <= hi and end >= lo.
    pub(crate) fn collect(&self, lo: i64, hi: i64, out: &mut Vec<Interval>) {
        let from = lo.saturating_sub(self.max_len);
        let first = self.fixed.partition_point(|iv| iv.start < from);
        out.extend(
            self.fixed[first..]
                .iter()
                .take_while(|iv| iv.start <= hi)
                .filter(|iv| iv.end >= lo),
        );
        for rule in &self.rules {
            rule.each(from, hi, &mut |unix, naive| {
                if self.except.excludes(unix, naive) {
                    return;
                }
                if let Some(end) = self.length.end(rule.tz(), unix, naive)
                    && end >= lo
                {
                    out.push(Interval { start: unix, end });
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::days_from_civil;

    fn ams() -> TimeZone {
        jiff::tz::TimeZoneDatabase::bundled()
            .get("Europe/Amsterdam")
            .unwrap()
    }

    fn at(y: i32, m: u8, d: u8, h: i64, mi: i64) -> i64 {
        days_from_civil(y, m, d) * DAY + h * 3600 + mi * 60
    }

    #[test]
    fn nominal_days_keep_the_wall_clock_exact_seconds_do_not() {
        let tz = ams();
        // Saturday 2026-03-28 12:00 CET (11:00Z); the next night skips an hour.
        let start = at(2026, 3, 28, 11, 0);
        let naive = at(2026, 3, 28, 12, 0);
        let day = Length::Nominal { days: 1, secs: 0 };
        assert_eq!(day.end(&tz, start, naive), Some(start + 23 * 3600));
        assert_eq!(Length::Exact(DAY).end(&tz, start, naive), Some(start + DAY));
    }

    #[test]
    fn wall_clock_stop_crosses_midnight_and_dst() {
        let tz = ams();
        // 22:00 CEST on Saturday 2026-10-24 (20:00Z) to 06:00 CET on Sunday
        // (05:00Z): nine hours, as the clocks go back at 03:00.
        let stop = Length::WallClock(6 * 3600);
        let start = at(2026, 10, 24, 20, 0);
        assert_eq!(
            stop.end(&tz, start, at(2026, 10, 24, 22, 0)),
            Some(at(2026, 10, 25, 5, 0))
        );
        // 02:30 to 03:00 on 2026-03-29 does not exist: 02:30 becomes 03:30
        // (01:30Z), 03:00 is 01:00Z, so that day has no window.
        let stop = Length::WallClock(3 * 3600);
        assert_eq!(
            stop.end(&tz, at(2026, 3, 29, 1, 30), at(2026, 3, 29, 2, 30)),
            None
        );
    }

    #[test]
    fn exceptions_by_instant_and_by_day() {
        let tz = TimeZone::UTC;
        let mut s = Series::new(tz, Length::Exact(3600));
        s.except.instants.push(at(2026, 1, 1, 18, 0));
        s.except.days.push(days_from_civil(2026, 1, 3));
        s.except.finish();
        for d in 1..=4 {
            s.add_fixed(at(2026, 1, d, 18, 0), at(2026, 1, d, 18, 0));
        }
        s.finish();
        let starts: Vec<i64> = s.fixed.iter().map(|iv| iv.start).collect();
        assert_eq!(starts, [at(2026, 1, 2, 18, 0), at(2026, 1, 4, 18, 0)]);
        let mut out = vec![];
        s.collect(at(2026, 1, 2, 19, 0), at(2026, 1, 4, 0, 0), &mut out);
        assert_eq!(out.len(), 1, "touching windows count: {out:?}");
    }
}
