//! Expansion of an RRULE from its DTSTART (RFC 5545 3.3.10, 3.8.5.3): which
//! instants a rule yields inside a range, found without walking from DTSTART.
//!
//! A rule recurs in *periods* (years, months, weeks, days, or runs of
//! hours, minutes, seconds) stepped by INTERVAL from the period of DTSTART.
//! Which starts a period yields depends only on that period, so a search
//! jumps straight to the period holding the range and expands from there:
//! the cost of a query is the number of periods it spans, whatever the age
//! of DTSTART. Only COUNT depends on what came before; it is turned into an
//! end bound once, when the schedule is compiled ([`Recurrence::count_bound`]).
//!
//! Daily and coarser rules expand in wall-clock (naive) time and are then
//! placed in the zone (RFC 5545 3.3.5, see [`to_instant`]), so a weekly
//! 18:00 is at 18:00 in summer and in winter. Hourly and finer rules step in
//! real time from DTSTART, so "every 3 hours" stays 3 hours apart across a
//! DST change; their BYHOUR/BYMINUTE/BYDAY parts are read on the wall clock.

use jiff::tz::TimeZone;

use crate::calendar::{
    DAY, MAX_DAY, MAX_INSTANT, civil_from_days, days_from_civil, days_in_month, days_in_year,
    split, to_instant, to_naive, week_number, week_start, weekday,
};
use crate::rrule::{DayNum, Freq, Rule, Until};

/// Where a rule stops, in the form best compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    /// Starts at or before this unix time.
    Unix(i64),
    /// Starts at or before this wall-clock time (naive seconds).
    Naive(i64),
    /// Starts on or before this day (wall clock).
    Day(i64),
}

impl Bound {
    fn admits(self, unix: i64, naive: i64) -> bool {
        match self {
            Bound::Unix(u) => unix <= u,
            Bound::Naive(n) => naive <= n,
            Bound::Day(d) => split(naive).0 <= d,
        }
    }
}

/// A rule tied to its DTSTART and zone, with the defaults RFC 5545 3.3.10
/// takes from DTSTART filled in ("FREQ=YEARLY;BYMONTH=1" recurs on the day
/// and at the time of DTSTART).
#[derive(Clone, Debug)]
pub(crate) struct Recurrence {
    freq: Freq,
    interval: i64,
    wkst: u8,
    /// Bit m set: month m allowed; 0 = every month.
    months: u16,
    weeknos: Vec<i8>,
    yeardays: Vec<i16>,
    monthdays: Vec<i8>,
    /// Bit w set: weekday w (0 = Monday) allowed by a plain BYDAY entry.
    plain_days: u8,
    nth_days: Vec<DayNum>,
    /// Ordinal weekdays count within the month (MONTHLY, or YEARLY with
    /// BYMONTH), else within the year.
    nth_in_month: bool,
    /// Daily and coarser: the times of day each matching day yields, sorted.
    tods: Vec<i64>,
    /// Hourly and finer: BYHOUR as a limit (empty: any hour).
    hours: Vec<u8>,
    /// Hourly: minutes to expand to. Minutely, secondly: BYMINUTE as a limit.
    minutes: Vec<u8>,
    /// Hourly, minutely: seconds to expand to. Secondly: BYSECOND as a limit.
    seconds: Vec<u8>,
    setpos: Vec<i16>,
    tz: TimeZone,
    dtstart_naive: i64,
    dtstart_unix: i64,
    /// Origin of the period count: year, month index (y*12+m-1), week
    /// start day, or day of DTSTART; for hourly and finer the unix time of
    /// the first period.
    origin: i64,
    bound: Option<Bound>,
}

impl Recurrence {
    /// `dtstart_naive` is DTSTART on the wall clock of `tz`, `dtstart_unix`
    /// the same instant (differing from a plain conversion when DTSTART
    /// itself fell in a DST gap).
    pub(crate) fn new(rule: &Rule, tz: TimeZone, dtstart_naive: i64, dtstart_unix: i64) -> Self {
        let (day, tod) = split(dtstart_naive);
        let (y, m, d) = civil_from_days(day);
        let (h, mi, s) = ((tod / 3600) as u8, (tod / 60 % 60) as u8, (tod % 60) as u8);

        let mut months = rule.by_month.iter().fold(0u16, |acc, &m| acc | 1 << m);
        let mut monthdays = rule.by_monthday.clone();
        let mut plain_days = 0u8;
        let mut nth_days = vec![];
        for dn in &rule.by_day {
            if dn.nth == 0 {
                plain_days |= 1 << dn.weekday;
            } else {
                nth_days.push(*dn);
            }
        }
        // RFC 5545 3.3.10: what the rule leaves open comes from DTSTART.
        let open = rule.by_weekno.is_empty()
            && rule.by_yearday.is_empty()
            && rule.by_monthday.is_empty()
            && rule.by_day.is_empty();
        if open {
            match rule.freq {
                Freq::Yearly => {
                    if months == 0 {
                        months = 1 << m;
                    }
                    monthdays = vec![d as i8];
                }
                Freq::Monthly => monthdays = vec![d as i8],
                Freq::Weekly => plain_days = 1 << weekday(day),
                _ => {}
            }
        }
        let or = |v: &Vec<u8>, dflt: u8| if v.is_empty() { vec![dflt] } else { v.clone() };
        let (mut tods, hours, minutes, seconds) = match rule.freq {
            Freq::Secondly => (
                vec![],
                rule.by_hour.clone(),
                rule.by_minute.clone(),
                rule.by_second.clone(),
            ),
            Freq::Minutely => (
                vec![],
                rule.by_hour.clone(),
                rule.by_minute.clone(),
                or(&rule.by_second, s),
            ),
            Freq::Hourly => (
                vec![],
                rule.by_hour.clone(),
                or(&rule.by_minute, mi),
                or(&rule.by_second, s),
            ),
            _ => {
                let mut tods = vec![];
                for &hh in &or(&rule.by_hour, h) {
                    for &mm in &or(&rule.by_minute, mi) {
                        // Second 60 (a leap second) names no wall-clock
                        // time here; such instances are invalid and
                        // ignored (RFC 5545 3.8.5.3).
                        for &ss in or(&rule.by_second, s).iter().filter(|&&ss| ss < 60) {
                            tods.push(i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss));
                        }
                    }
                }
                (tods, vec![], vec![], vec![])
            }
        };
        tods.sort_unstable();
        let interval = i64::from(rule.interval);
        let origin = match rule.freq {
            Freq::Yearly => i64::from(y),
            Freq::Monthly => i64::from(y) * 12 + i64::from(m) - 1,
            Freq::Weekly => week_start(day, rule.wkst),
            Freq::Daily => day,
            Freq::Hourly => dtstart_unix - i64::from(mi) * 60 - i64::from(s),
            Freq::Minutely => dtstart_unix - i64::from(s),
            Freq::Secondly => dtstart_unix,
        };
        let sub_daily = rule.freq < Freq::Daily;
        let bound = rule.until.map(|u| match u {
            Until::Date(d) => Bound::Day(d),
            Until::Utc(u) => Bound::Unix(u),
            // A local UNTIL is in the zone of DTSTART (RFC 5545 3.3.10).
            Until::Local(n) if sub_daily => Bound::Unix(to_instant(&tz, n).unwrap_or(n)),
            Until::Local(n) => Bound::Naive(n),
        });
        Recurrence {
            freq: rule.freq,
            interval,
            wkst: rule.wkst,
            months,
            weeknos: rule.by_weekno.clone(),
            yeardays: rule.by_yearday.clone(),
            monthdays,
            plain_days,
            nth_days,
            nth_in_month: rule.freq == Freq::Monthly
                || (rule.freq == Freq::Yearly && !rule.by_month.is_empty()),
            tods,
            hours,
            minutes,
            seconds,
            setpos: rule.by_setpos.clone(),
            tz,
            dtstart_naive,
            dtstart_unix,
            origin,
            bound,
        }
    }

    pub(crate) fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// Whether the bound of the rule (UNTIL) lies before DTSTART.
    pub(crate) fn ends_before_start(&self) -> bool {
        self.bound
            .is_some_and(|b| !b.admits(self.dtstart_unix, self.dtstart_naive))
    }

    /// Whether the rule itself yields DTSTART: RFC 5545 3.8.5.3 leaves the
    /// set undefined when it does not ("SHOULD be synchronized").
    pub(crate) fn yields_dtstart(&self) -> bool {
        let mut found = false;
        self.walk(self.dtstart_unix, self.dtstart_unix, false, &mut |u, _| {
            found |= u == self.dtstart_unix
        });
        found
    }

    /// COUNT as an end bound: the `n`th start of the rule from DTSTART on.
    /// `None` when the rule has fewer than `n` starts before year 9999
    /// (then it needs no bound). Runs once per compile; cost grows with the
    /// number of periods up to the `n`th start.
    pub(crate) fn count_bound(&self, n: u32) -> Option<Bound> {
        let mut seen: u32 = 0;
        let mut lo = self.dtstart_unix;
        let mut chunk = 32 * DAY;
        let mut starts: Vec<(i64, i64)> = vec![];
        while lo <= MAX_INSTANT {
            let hi = lo.saturating_add(chunk - 1).min(MAX_INSTANT);
            starts.clear();
            self.walk(lo, hi, true, &mut |u, nv| starts.push((u, nv)));
            if self.freq >= Freq::Daily {
                starts.sort_unstable_by_key(|&(_, nv)| nv);
            } else {
                starts.sort_unstable();
            }
            starts.dedup();
            if let Some(&(u, nv)) = starts.get((n - seen) as usize - 1) {
                return Some(if self.freq >= Freq::Daily {
                    Bound::Naive(nv)
                } else {
                    Bound::Unix(u)
                });
            }
            seen += starts.len() as u32;
            lo = hi + 1;
            chunk = (chunk * 2).min(3660 * DAY);
        }
        None
    }

    /// Replaces the end of the rule (COUNT turned into a bound).
    pub(crate) fn set_bound(&mut self, b: Bound) {
        self.bound = Some(b);
    }

    /// Calls `f(unix, naive)` for every start of the rule at or after
    /// DTSTART with unix time in `lo..=hi`, period by period.
    pub(crate) fn each(&self, lo: i64, hi: i64, f: &mut dyn FnMut(i64, i64)) {
        self.walk(lo, hi, true, f)
    }

    fn walk(&self, lo: i64, hi: i64, bounded: bool, f: &mut dyn FnMut(i64, i64)) {
        if lo > hi {
            return;
        }
        let bound = if bounded { self.bound } else { None };
        if self.freq >= Freq::Daily {
            self.walk_days(lo, hi, bound, f)
        } else {
            self.walk_clock(lo, hi, bound, f)
        }
    }

    /// Daily and coarser: periods of whole days, expanded on the wall clock.
    fn walk_days(&self, lo: i64, hi: i64, bound: Option<Bound>, f: &mut dyn FnMut(i64, i64)) {
        // A day of margin on both sides: wall clock and unix time differ by
        // the UTC offset, and a start moved out of a DST gap moves later.
        let from_day = split(to_naive(&self.tz, lo)).0 - 1;
        let mut to_day = (split(to_naive(&self.tz, hi)).0 + 1).min(MAX_DAY);
        match bound {
            Some(Bound::Unix(u)) => to_day = to_day.min(split(to_naive(&self.tz, u)).0 + 1),
            Some(Bound::Naive(n)) => to_day = to_day.min(split(n).0),
            Some(Bound::Day(d)) => to_day = to_day.min(d),
            None => {}
        }
        let i = self.interval;
        let mut k = match self.freq {
            Freq::Yearly => (i64::from(civil_from_days(from_day).0) - self.origin).div_euclid(i),
            Freq::Monthly => {
                let (y, m, _) = civil_from_days(from_day);
                (i64::from(y) * 12 + i64::from(m) - 1 - self.origin).div_euclid(i)
            }
            Freq::Weekly => ((week_start(from_day, self.wkst) - self.origin) / 7).div_euclid(i),
            _ => (from_day - self.origin).div_euclid(i),
        }
        .max(0);
        let mut days: Vec<i64> = vec![];
        let mut cands: Vec<i64> = vec![];
        loop {
            days.clear();
            let start = match self.freq {
                Freq::Yearly => {
                    let y = self.origin + k * i;
                    if y > 9999 {
                        break;
                    }
                    let y = y as i32;
                    for m in 1..=12u8 {
                        if self.months != 0 && self.months & (1 << m) == 0 {
                            continue;
                        }
                        let first = days_from_civil(y, m, 1);
                        for d in 0..i64::from(days_in_month(y, m)) {
                            days.push(first + d);
                        }
                    }
                    days_from_civil(y, 1, 1)
                }
                Freq::Monthly => {
                    let mi = self.origin + k * i;
                    let (y, m) = (mi.div_euclid(12), (mi.rem_euclid(12) + 1) as u8);
                    if y > 9999 {
                        break;
                    }
                    let first = days_from_civil(y as i32, m, 1);
                    for d in 0..i64::from(days_in_month(y as i32, m)) {
                        days.push(first + d);
                    }
                    first
                }
                Freq::Weekly => {
                    let first = self.origin + 7 * k * i;
                    days.extend(first..first + 7);
                    first
                }
                _ => {
                    let day = self.origin + k * i;
                    days.push(day);
                    day
                }
            };
            if start > to_day {
                break;
            }
            days.retain(|&d| self.day_matches(d));
            cands.clear();
            for &d in &days {
                cands.extend(self.tods.iter().map(|t| d * DAY + t));
            }
            select_setpos(&mut cands, &self.setpos);
            for &naive in &cands {
                if naive < self.dtstart_naive {
                    continue;
                }
                let Some(unix) = to_instant(&self.tz, naive) else {
                    continue;
                };
                if bound.is_some_and(|b| !b.admits(unix, naive)) || unix < lo || unix > hi {
                    continue;
                }
                f(unix, naive);
            }
            k += 1;
        }
    }

    /// Hourly and finer: periods step in unix time from the first one; the
    /// parts are read on the wall clock. Periods on days, hours or minutes
    /// that a limiting part rules out are skipped whole.
    fn walk_clock(&self, lo: i64, hi: i64, bound: Option<Bound>, f: &mut dyn FnMut(i64, i64)) {
        let unit = match self.freq {
            Freq::Hourly => 3600,
            Freq::Minutely => 60,
            _ => 1,
        };
        let step = self.interval * unit;
        let next_k = |k: i64, at: i64| (k + 1).max((at - self.origin + step - 1).div_euclid(step));
        let mut k = ((lo - unit - self.origin).div_euclid(step)).max(0);
        let mut cands: Vec<i64> = vec![];
        loop {
            let p = self.origin + k * step;
            if p > hi || p > MAX_INSTANT {
                break;
            }
            let naive = to_naive(&self.tz, p);
            match bound {
                Some(Bound::Unix(u)) if p > u => break,
                Some(Bound::Naive(n)) if naive > n => break,
                Some(Bound::Day(d)) if split(naive).0 > d => break,
                _ => {}
            }
            let (day, tod) = split(naive);
            let (h, m, s) = (tod / 3600, tod / 60 % 60, tod % 60);
            if !self.day_matches(day) {
                match to_instant(&self.tz, (day + 1) * DAY) {
                    Some(next) => k = next_k(k, next),
                    None => break,
                }
                continue;
            }
            if !self.hours.is_empty() && !self.hours.contains(&(h as u8)) {
                k = next_k(k, p - m * 60 - s + 3600);
                continue;
            }
            if self.freq <= Freq::Minutely
                && !self.minutes.is_empty()
                && !self.minutes.contains(&(m as u8))
            {
                k = next_k(k, p - s + 60);
                continue;
            }
            if self.freq == Freq::Secondly
                && !self.seconds.is_empty()
                && !self.seconds.contains(&(s as u8))
            {
                k += 1;
                continue;
            }
            cands.clear();
            match self.freq {
                Freq::Hourly => {
                    let base = p - m * 60 - s;
                    for &mm in &self.minutes {
                        for &ss in self.seconds.iter().filter(|&&ss| ss < 60) {
                            cands.push(base + i64::from(mm) * 60 + i64::from(ss));
                        }
                    }
                }
                Freq::Minutely => {
                    let base = p - s;
                    cands.extend(
                        self.seconds
                            .iter()
                            .filter(|&&ss| ss < 60)
                            .map(|&ss| base + i64::from(ss)),
                    );
                }
                _ => cands.push(p),
            }
            select_setpos(&mut cands, &self.setpos);
            for &unix in &cands {
                if unix < self.dtstart_unix || unix < lo || unix > hi {
                    continue;
                }
                let naive = to_naive(&self.tz, unix);
                if bound.is_some_and(|b| !b.admits(unix, naive)) {
                    continue;
                }
                f(unix, naive);
            }
            k += 1;
        }
    }

    /// The day-level parts (BYMONTH, BYWEEKNO, BYYEARDAY, BYMONTHDAY,
    /// BYDAY) as filters on one day. For the coarser frequencies the period
    /// supplies every day of the year, month or week, so filtering it is the
    /// "expand" of RFC 5545 3.3.10's table; for the finer ones it is "limit".
    fn day_matches(&self, day: i64) -> bool {
        let (y, m, d) = civil_from_days(day);
        if self.months != 0 && self.months & (1 << m) == 0 {
            return false;
        }
        let dim = i64::from(days_in_month(y, m));
        let doy = day - days_from_civil(y, 1, 1) + 1;
        let ylen = days_in_year(y);
        if !self.weeknos.is_empty() {
            let (wn, weeks) = week_number(day, self.wkst);
            if !self
                .weeknos
                .iter()
                .any(|&w| i64::from(w) == wn || i64::from(w) == wn - weeks - 1)
            {
                return false;
            }
        }
        if !self.yeardays.is_empty()
            && !self
                .yeardays
                .iter()
                .any(|&n| i64::from(n) == doy || i64::from(n) == doy - ylen - 1)
        {
            return false;
        }
        let d = i64::from(d);
        if !self.monthdays.is_empty()
            && !self
                .monthdays
                .iter()
                .any(|&n| i64::from(n) == d || i64::from(n) == d - dim - 1)
        {
            return false;
        }
        if self.plain_days == 0 && self.nth_days.is_empty() {
            return true;
        }
        let wd = weekday(day);
        if self.plain_days & (1 << wd) != 0 {
            return true;
        }
        let (pos, len) = if self.nth_in_month {
            (d, dim)
        } else {
            (doy, ylen)
        };
        let first = (pos - 1) / 7 + 1;
        let last = -((len - pos) / 7 + 1);
        self.nth_days
            .iter()
            .any(|n| n.weekday == wd && (i64::from(n.nth) == first || i64::from(n.nth) == last))
    }
}

/// BYSETPOS: keep only the listed positions (1-based, negative from the
/// end) of a period's sorted candidates.
fn select_setpos(cands: &mut Vec<i64>, setpos: &[i16]) {
    if setpos.is_empty() || cands.is_empty() {
        return;
    }
    let len = cands.len() as i64;
    let mut kept: Vec<i64> = setpos
        .iter()
        .filter_map(|&p| {
            let p = i64::from(p);
            let idx = if p > 0 { p - 1 } else { len + p };
            (0..len).contains(&idx).then(|| cands[idx as usize])
        })
        .collect();
    kept.sort_unstable();
    kept.dedup();
    *cands = kept;
}

#[cfg(test)]
mod tests {
    //! The examples of RFC 5545 3.8.5.3, in America/New_York as written
    //! there, plus DST behaviour of our own.

    use super::*;
    use crate::calendar::DAY;

    fn tz(name: &str) -> TimeZone {
        jiff::tz::TimeZoneDatabase::bundled().get(name).unwrap()
    }

    fn naive_of(s: &str) -> i64 {
        match crate::rrule::parse_ical_datetime(s).unwrap() {
            crate::rrule::IcalTime::Local(n) => n,
            other => panic!("{other:?}"),
        }
    }

    fn show(tz: &TimeZone, unix: i64) -> String {
        let ts = jiff::Timestamp::from_second(unix).unwrap();
        ts.display_with_offset(tz.to_offset(ts)).to_string()
    }

    /// The first `n` starts of `rule` from `dtstart` (wall clock in `zone`),
    /// shown as RFC 3339 in the zone; with COUNT applied as the schedule
    /// does.
    fn starts(zone: &str, dtstart: &str, rule: &str, n: usize) -> Vec<String> {
        let tz = tz(zone);
        let rule = Rule::parse(rule).unwrap();
        let naive = naive_of(dtstart);
        let unix = to_instant(&tz, naive).unwrap();
        let mut rec = Recurrence::new(&rule, tz.clone(), naive, unix);
        if let Some(c) = rule.count
            && let Some(b) = rec.count_bound(c)
        {
            rec.set_bound(b);
        }
        let mut out = vec![];
        rec.each(unix, unix + 40 * 366 * DAY, &mut |u, _| out.push(u));
        out.sort_unstable();
        out.dedup();
        out.truncate(n);
        out.iter().map(|&u| show(&tz, u)).collect()
    }

    fn dates(v: &[String]) -> Vec<&str> {
        v.iter().map(|s| &s[..10]).collect()
    }

    const NY: &str = "America/New_York";

    #[test]
    fn daily_for_ten_occurrences() {
        let v = starts(NY, "19970902T090000", "FREQ=DAILY;COUNT=10", 99);
        assert_eq!(v.len(), 10);
        assert_eq!(v[0], "1997-09-02T09:00:00-04:00");
        assert_eq!(v[9], "1997-09-11T09:00:00-04:00");
    }

    #[test]
    fn weekly_keeps_local_time_across_the_dst_change() {
        let v = starts(NY, "19970902T090000", "FREQ=WEEKLY;COUNT=10", 99);
        assert_eq!(v.len(), 10);
        // 1997-10-26 the clocks went back: 09:00 EDT, then 09:00 EST.
        assert_eq!(v[7], "1997-10-21T09:00:00-04:00");
        assert_eq!(v[8], "1997-10-28T09:00:00-05:00");
        assert_eq!(v[9], "1997-11-04T09:00:00-05:00");
    }

    #[test]
    fn every_other_week_until_with_wkst_sunday() {
        let v = starts(
            NY,
            "19970901T090000",
            "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR",
            99,
        );
        assert_eq!(
            dates(&v),
            [
                "1997-09-01",
                "1997-09-03",
                "1997-09-05",
                "1997-09-15",
                "1997-09-17",
                "1997-09-19",
                "1997-09-29",
                "1997-10-01",
                "1997-10-03",
                "1997-10-13",
                "1997-10-15",
                "1997-10-17",
                "1997-10-27",
                "1997-10-29",
                "1997-10-31",
                "1997-11-10",
                "1997-11-12",
                "1997-11-14",
                "1997-11-24",
                "1997-11-26",
                "1997-11-28",
                "1997-12-08",
                "1997-12-10",
                "1997-12-12",
                "1997-12-22"
            ]
        );
    }

    #[test]
    fn wkst_changes_which_days_pair_up() {
        let mo = starts(
            NY,
            "19970805T090000",
            "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
            99,
        );
        assert_eq!(
            dates(&mo),
            ["1997-08-05", "1997-08-10", "1997-08-19", "1997-08-24"]
        );
        let su = starts(
            NY,
            "19970805T090000",
            "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
            99,
        );
        assert_eq!(
            dates(&su),
            ["1997-08-05", "1997-08-17", "1997-08-19", "1997-08-31"]
        );
    }

    #[test]
    fn monthly_ordinal_weekdays() {
        let v = starts(NY, "19970905T090000", "FREQ=MONTHLY;COUNT=10;BYDAY=1FR", 99);
        assert_eq!(
            dates(&v),
            [
                "1997-09-05",
                "1997-10-03",
                "1997-11-07",
                "1997-12-05",
                "1998-01-02",
                "1998-02-06",
                "1998-03-06",
                "1998-04-03",
                "1998-05-01",
                "1998-06-05"
            ]
        );
        let v = starts(NY, "19970922T090000", "FREQ=MONTHLY;COUNT=6;BYDAY=-2MO", 99);
        assert_eq!(
            dates(&v),
            [
                "1997-09-22",
                "1997-10-20",
                "1997-11-17",
                "1997-12-22",
                "1998-01-19",
                "1998-02-16"
            ]
        );
    }

    #[test]
    fn setpos_picks_within_the_period() {
        let v = starts(
            NY,
            "19970904T090000",
            "FREQ=MONTHLY;COUNT=3;BYDAY=TU,WE,TH;BYSETPOS=3",
            99,
        );
        assert_eq!(dates(&v), ["1997-09-04", "1997-10-07", "1997-11-06"]);
        let v = starts(
            NY,
            "19970929T090000",
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            6,
        );
        assert_eq!(
            dates(&v),
            [
                "1997-09-30",
                "1997-10-31",
                "1997-11-28",
                "1997-12-31",
                "1998-01-30",
                "1998-02-27"
            ]
        );
    }

    #[test]
    fn invalid_dates_are_skipped() {
        let v = starts(
            NY,
            "20070115T090000",
            "FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5",
            99,
        );
        assert_eq!(
            dates(&v),
            [
                "2007-01-15",
                "2007-01-30",
                "2007-02-15",
                "2007-03-15",
                "2007-03-30"
            ]
        );
    }

    #[test]
    fn yearly_rules() {
        let v = starts(
            NY,
            "19970610T090000",
            "FREQ=YEARLY;COUNT=10;BYMONTH=6,7",
            99,
        );
        assert_eq!(v.len(), 10);
        assert_eq!(
            dates(&v)[..4],
            ["1997-06-10", "1997-07-10", "1998-06-10", "1998-07-10"]
        );
        assert_eq!(dates(&v)[9], "2001-07-10");
        let v = starts(NY, "19970512T090000", "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO", 3);
        assert_eq!(dates(&v), ["1997-05-12", "1998-05-11", "1999-05-17"]);
        let v = starts(NY, "19970519T090000", "FREQ=YEARLY;BYDAY=20MO", 3);
        assert_eq!(dates(&v), ["1997-05-19", "1998-05-18", "1999-05-17"]);
        let v = starts(NY, "19970313T090000", "FREQ=YEARLY;BYMONTH=3;BYDAY=TH", 11);
        assert_eq!(
            dates(&v),
            [
                "1997-03-13",
                "1997-03-20",
                "1997-03-27",
                "1998-03-05",
                "1998-03-12",
                "1998-03-19",
                "1998-03-26",
                "1999-03-04",
                "1999-03-11",
                "1999-03-18",
                "1999-03-25"
            ]
        );
        // US presidential election day.
        let v = starts(
            NY,
            "19961105T090000",
            "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
            3,
        );
        assert_eq!(dates(&v), ["1996-11-05", "2000-11-07", "2004-11-02"]);
    }

    #[test]
    fn first_saturday_after_first_sunday() {
        let v = starts(
            NY,
            "19970913T090000",
            "FREQ=MONTHLY;BYDAY=SA;BYMONTHDAY=7,8,9,10,11,12,13",
            10,
        );
        assert_eq!(
            dates(&v),
            [
                "1997-09-13",
                "1997-10-11",
                "1997-11-08",
                "1997-12-13",
                "1998-01-10",
                "1998-02-07",
                "1998-03-07",
                "1998-04-11",
                "1998-05-09",
                "1998-06-13"
            ]
        );
    }

    #[test]
    fn hourly_and_minutely() {
        let v = starts(
            NY,
            "19970902T090000",
            "FREQ=HOURLY;INTERVAL=3;UNTIL=19970902T210000Z",
            99,
        );
        assert_eq!(
            v,
            [
                "1997-09-02T09:00:00-04:00",
                "1997-09-02T12:00:00-04:00",
                "1997-09-02T15:00:00-04:00"
            ]
        );
        let v = starts(
            NY,
            "19970902T090000",
            "FREQ=MINUTELY;INTERVAL=15;COUNT=6",
            99,
        );
        let times: Vec<&str> = v.iter().map(|s| &s[11..16]).collect();
        assert_eq!(
            times,
            ["09:00", "09:15", "09:30", "09:45", "10:00", "10:15"]
        );
        // Every 20 minutes from 9:00 to 16:40, limited by BYHOUR.
        let v = starts(
            NY,
            "19970902T090000",
            "FREQ=MINUTELY;INTERVAL=20;BYHOUR=9,10,11,12,13,14,15,16",
            30,
        );
        assert_eq!(v.len(), 30);
        assert_eq!(v[23], "1997-09-02T16:40:00-04:00");
        assert_eq!(v[24], "1997-09-03T09:00:00-04:00");
    }

    #[test]
    fn hourly_steps_real_hours_across_dst() {
        // Every 2 hours from 2026-03-28 23:00 in Amsterdam; the night of
        // the 29th skips 02:00-03:00, so the wall clock jumps 01:00 -> 04:00.
        let v = starts(
            "Europe/Amsterdam",
            "20260328T230000",
            "FREQ=HOURLY;INTERVAL=2;COUNT=4",
            99,
        );
        assert_eq!(
            v,
            [
                "2026-03-28T23:00:00+01:00",
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T04:00:00+02:00",
                "2026-03-29T06:00:00+02:00"
            ]
        );
    }

    #[test]
    fn daily_start_in_a_dst_gap_moves_per_rfc5545_3_3_5() {
        let v = starts("Europe/Amsterdam", "20260327T023000", "FREQ=DAILY", 4);
        assert_eq!(
            v,
            [
                "2026-03-27T02:30:00+01:00",
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
        let v = starts(NY, "20261030T013000", "FREQ=DAILY", 4);
        // 2026-11-01 01:30 happens twice in New York: the first (EDT).
        assert_eq!(v[2], "2026-11-01T01:30:00-04:00");
        assert_eq!(v[3], "2026-11-02T01:30:00-05:00");
    }

    #[test]
    fn a_range_far_from_dtstart_is_found_by_jumping() {
        let tz = tz("Europe/Amsterdam");
        let rule = Rule::parse("FREQ=DAILY").unwrap();
        let naive = naive_of("20000101T180000");
        let rec = Recurrence::new(&rule, tz.clone(), naive, to_instant(&tz, naive).unwrap());
        let lo = to_instant(&tz, naive_of("20400601T000000")).unwrap();
        let mut out = vec![];
        rec.each(lo, lo + DAY, &mut |u, _| out.push(show(&tz, u)));
        assert_eq!(out, ["2040-06-01T18:00:00+02:00"]);
    }

    #[test]
    fn dtstart_sync_and_until_checks() {
        let tz = tz("UTC");
        let wed = naive_of("20261125T180000");
        let sat_rule = Rule::parse("FREQ=WEEKLY;BYDAY=SA").unwrap();
        assert!(!Recurrence::new(&sat_rule, tz.clone(), wed, wed).yields_dtstart());
        let wed_rule = Rule::parse("FREQ=WEEKLY;BYDAY=WE").unwrap();
        assert!(Recurrence::new(&wed_rule, tz.clone(), wed, wed).yields_dtstart());
        let early = Rule::parse("FREQ=DAILY;UNTIL=20261124T000000Z").unwrap();
        assert!(Recurrence::new(&early, tz.clone(), wed, wed).ends_before_start());
    }

    #[test]
    fn impossible_rules_end_quietly() {
        let tz = tz("UTC");
        let rule = Rule::parse("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30;COUNT=2").unwrap();
        let n = naive_of("20260101T000000");
        let rec = Recurrence::new(&rule, tz, n, n);
        assert_eq!(rec.count_bound(2), None);
    }
}
