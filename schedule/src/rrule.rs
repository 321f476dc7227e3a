//! The RRULE value of RFC 5545 3.3.10, parsed and checked: what a rule says,
//! not yet tied to a start time (that is [`crate::expand`]).

use std::fmt;

use crate::calendar::{DAY, days_from_civil, days_in_month};
use crate::text::{self, When, digits};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Freq {
    Secondly,
    Minutely,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Freq {
    fn name(self) -> &'static str {
        match self {
            Freq::Secondly => "SECONDLY",
            Freq::Minutely => "MINUTELY",
            Freq::Hourly => "HOURLY",
            Freq::Daily => "DAILY",
            Freq::Weekly => "WEEKLY",
            Freq::Monthly => "MONTHLY",
            Freq::Yearly => "YEARLY",
        }
    }
}

/// The bound of an UNTIL part, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Until {
    /// A date: the rule runs through that whole day (RFC 5545 3.3.10: UNTIL
    /// bounds the recurrence "in an inclusive manner").
    Date(i64),
    /// A local or floating date-time, naive seconds (in the zone of DTSTART).
    Local(i64),
    /// A UTC date-time, unix seconds.
    Utc(i64),
}

/// One BYDAY entry: an optional ordinal (`-1`, `2`; 0 when absent) and a
/// weekday, 0 = Monday.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DayNum {
    pub nth: i8,
    pub weekday: u8,
}

/// A parsed RRULE. Empty `by_*` lists mean the part is absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub freq: Freq,
    pub interval: u32,
    pub count: Option<u32>,
    pub until: Option<Until>,
    pub by_second: Vec<u8>,
    pub by_minute: Vec<u8>,
    pub by_hour: Vec<u8>,
    pub by_day: Vec<DayNum>,
    pub by_monthday: Vec<i8>,
    pub by_yearday: Vec<i16>,
    pub by_weekno: Vec<i8>,
    pub by_month: Vec<u8>,
    pub by_setpos: Vec<i16>,
    pub wkst: u8,
}

/// COUNT is capped so that turning it into an end (done once, when the
/// schedule is compiled) stays quick.
pub(crate) const MAX_COUNT: u32 = 100_000;

const WEEKDAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

fn weekday_name(w: u8) -> &'static str {
    WEEKDAYS[usize::from(w % 7)]
}

impl Rule {
    /// Parses an RRULE value, with or without a leading `RRULE:`. UNTIL may
    /// be written as in iCalendar (`20261231T235959Z`, `20261231`) or as a
    /// schedule date-time (`2026-12-31T23:59:59Z`, `2026-12-31`).
    pub(crate) fn parse(s: &str) -> Result<Rule, String> {
        let body = s.trim();
        let body = match body.get(..6) {
            Some(p) if p.eq_ignore_ascii_case("RRULE:") => &body[6..],
            _ => body,
        };
        let mut freq = None;
        let mut rule = Rule {
            freq: Freq::Daily,
            interval: 1,
            count: None,
            until: None,
            by_second: vec![],
            by_minute: vec![],
            by_hour: vec![],
            by_day: vec![],
            by_monthday: vec![],
            by_yearday: vec![],
            by_weekno: vec![],
            by_month: vec![],
            by_setpos: vec![],
            wkst: 0,
        };
        let mut seen: Vec<String> = vec![];
        for part in body.split(';') {
            if part.trim().is_empty() {
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("\"{part}\" is not a NAME=VALUE part"))?;
            let key = key.trim().to_ascii_uppercase();
            let value = value.trim();
            if seen.contains(&key) {
                return Err(format!("{key} appears twice"));
            }
            seen.push(key.clone());
            let bad = |why: &str| format!("{key}={value}: {why}");
            match key.as_str() {
                "FREQ" => {
                    freq = Some(match value.to_ascii_uppercase().as_str() {
                        "SECONDLY" => Freq::Secondly,
                        "MINUTELY" => Freq::Minutely,
                        "HOURLY" => Freq::Hourly,
                        "DAILY" => Freq::Daily,
                        "WEEKLY" => Freq::Weekly,
                        "MONTHLY" => Freq::Monthly,
                        "YEARLY" => Freq::Yearly,
                        _ => return Err(bad("unknown frequency (SECONDLY … YEARLY)")),
                    })
                }
                "INTERVAL" => {
                    rule.interval = digits::<u32>(value)
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| bad("expected a whole number 1..=10000"))?
                }
                "COUNT" => {
                    rule.count = Some(
                        digits::<u32>(value)
                            .filter(|n| (1..=MAX_COUNT).contains(n))
                            .ok_or_else(|| {
                                bad(&format!("expected a whole number 1..={MAX_COUNT}"))
                            })?,
                    )
                }
                "UNTIL" => {
                    rule.until = Some(parse_until(value).ok_or_else(|| {
                        bad("expected a date or date-time like 20261231T235959Z or 2026-12-31")
                    })?)
                }
                "BYSECOND" => rule.by_second = list(value, 0, 60, false).map_err(|w| bad(&w))?,
                "BYMINUTE" => rule.by_minute = list(value, 0, 59, false).map_err(|w| bad(&w))?,
                "BYHOUR" => rule.by_hour = list(value, 0, 23, false).map_err(|w| bad(&w))?,
                "BYMONTHDAY" => rule.by_monthday = list(value, 1, 31, true).map_err(|w| bad(&w))?,
                "BYYEARDAY" => rule.by_yearday = list(value, 1, 366, true).map_err(|w| bad(&w))?,
                "BYWEEKNO" => rule.by_weekno = list(value, 1, 53, true).map_err(|w| bad(&w))?,
                "BYMONTH" => rule.by_month = list(value, 1, 12, false).map_err(|w| bad(&w))?,
                "BYSETPOS" => rule.by_setpos = list(value, 1, 366, true).map_err(|w| bad(&w))?,
                "BYDAY" => {
                    for item in value.split(',') {
                        rule.by_day.push(parse_daynum(item.trim()).ok_or_else(|| {
                            bad(&format!(
                                "\"{item}\" is not a weekday (MO … SU, optionally with an ordinal like 1MO or -1FR)"
                            ))
                        })?);
                    }
                }
                "WKST" => {
                    rule.wkst =
                        parse_weekday(value).ok_or_else(|| bad("expected a weekday MO … SU"))?
                }
                _ => {
                    return Err(format!(
                        "unknown part \"{key}\" (RFC 5545 3.3.10 knows FREQ, INTERVAL, COUNT, UNTIL, BYSECOND, BYMINUTE, BYHOUR, BYDAY, BYMONTHDAY, BYYEARDAY, BYWEEKNO, BYMONTH, BYSETPOS, WKST)"
                    ));
                }
            }
        }
        rule.freq = freq.ok_or("FREQ is missing (RFC 5545 3.3.10 requires it)")?;
        rule.check()?;
        Ok(rule)
    }

    /// The combinations RFC 5545 3.3.10 rules out (the "N/A" cells of its
    /// table, and the MUST NOTs around it).
    fn check(&self) -> Result<(), String> {
        let f = self.freq;
        if self.count.is_some() && self.until.is_some() {
            return Err("COUNT and UNTIL both given; RFC 5545 3.3.10 allows one".into());
        }
        if !self.by_weekno.is_empty() && f != Freq::Yearly {
            return Err(format!(
                "BYWEEKNO only works with FREQ=YEARLY (this rule is FREQ={})",
                f.name()
            ));
        }
        if !self.by_yearday.is_empty() && matches!(f, Freq::Daily | Freq::Weekly | Freq::Monthly) {
            return Err(format!(
                "BYYEARDAY does not work with FREQ={} (RFC 5545 3.3.10)",
                f.name()
            ));
        }
        if !self.by_monthday.is_empty() && f == Freq::Weekly {
            return Err("BYMONTHDAY does not work with FREQ=WEEKLY (RFC 5545 3.3.10)".into());
        }
        if let Some(d) = self.by_day.iter().find(|d| d.nth != 0) {
            let shown = format!("{}{}", d.nth, weekday_name(d.weekday));
            if !matches!(f, Freq::Monthly | Freq::Yearly) {
                return Err(format!(
                    "BYDAY {shown}: an ordinal weekday needs FREQ=MONTHLY or FREQ=YEARLY (this rule is FREQ={})",
                    f.name()
                ));
            }
            if f == Freq::Yearly && !self.by_weekno.is_empty() {
                return Err(format!(
                    "BYDAY {shown}: an ordinal weekday cannot be combined with BYWEEKNO (RFC 5545 3.3.10)"
                ));
            }
        }
        if !self.by_setpos.is_empty()
            && self.by_second.is_empty()
            && self.by_minute.is_empty()
            && self.by_hour.is_empty()
            && self.by_day.is_empty()
            && self.by_monthday.is_empty()
            && self.by_yearday.is_empty()
            && self.by_weekno.is_empty()
            && self.by_month.is_empty()
        {
            return Err("BYSETPOS needs another BY… part to pick from (RFC 5545 3.3.10)".into());
        }
        Ok(())
    }
}

impl fmt::Display for Freq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A comma list of integers in `lo..=hi`, or in `-hi..=-lo` too when
/// `signed`; sorted, duplicates dropped.
fn list<T>(value: &str, lo: i32, hi: i32, signed: bool) -> Result<Vec<T>, String>
where
    T: TryFrom<i32> + Ord + Copy,
{
    let mut out = vec![];
    for item in value.split(',') {
        let item = item.trim();
        let (neg, body) = match item.as_bytes().first() {
            Some(b'-') if signed => (true, &item[1..]),
            Some(b'+') if signed => (false, &item[1..]),
            _ => (false, item),
        };
        let n: i32 = digits(body)
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                if signed {
                    format!("\"{item}\" is not in {lo}..={hi} or -{hi}..=-{lo}")
                } else {
                    format!("\"{item}\" is not in {lo}..={hi}")
                }
            })?;
        let n = if neg { -n } else { n };
        out.push(T::try_from(n).map_err(|_| format!("\"{item}\" is out of range"))?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn parse_weekday(s: &str) -> Option<u8> {
    let s = s.to_ascii_uppercase();
    WEEKDAYS.iter().position(|w| *w == s).map(|p| p as u8)
}

fn parse_daynum(s: &str) -> Option<DayNum> {
    if s.len() < 2 || !s.is_char_boundary(s.len() - 2) {
        return None;
    }
    let (num, day) = s.split_at(s.len() - 2);
    let weekday = parse_weekday(day)?;
    let nth = if num.is_empty() {
        0
    } else {
        let (neg, body) = match num.as_bytes()[0] {
            b'-' => (true, &num[1..]),
            b'+' => (false, &num[1..]),
            _ => (false, num),
        };
        let n: i8 = digits(body).filter(|n| (1..=53).contains(n))?;
        if neg { -n } else { n }
    };
    Some(DayNum { nth, weekday })
}

/// `20261231`, `20261231T235959`, `20261231T235959Z`, or the schedule forms
/// `2026-12-31`, `2026-12-31T23:59:59[Z|+01:00]`.
pub(crate) fn parse_until(s: &str) -> Option<Until> {
    if let Some(day) = text::parse_date(s) {
        return Some(Until::Date(day));
    }
    if let Ok(w) = text::parse_datetime(s) {
        return Some(match w {
            When::Local(n) => Until::Local(n),
            When::Absolute { unix, .. } => Until::Utc(unix),
        });
    }
    match parse_ical_datetime(s)? {
        IcalTime::Date(d) => Some(Until::Date(d)),
        IcalTime::Local(n) => Some(Until::Local(n)),
        IcalTime::Utc(u) => Some(Until::Utc(u)),
    }
}

/// An iCalendar DATE or DATE-TIME value (RFC 5545 3.3.4, 3.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IcalTime {
    Date(i64),
    /// Floating or TZID-relative: naive seconds.
    Local(i64),
    /// Form #2, with `Z`: unix seconds.
    Utc(i64),
}

pub(crate) fn parse_ical_datetime(s: &str) -> Option<IcalTime> {
    if !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    let date = |s: &str| -> Option<i64> {
        let y: i32 = digits(s.get(0..4)?)?;
        let m: u8 = digits(s.get(4..6)?)?;
        let d: u8 = digits(s.get(6..8)?)?;
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(days_from_civil(y, m, d))
    };
    match b.len() {
        8 => Some(IcalTime::Date(date(s)?)),
        15 | 16 if matches!(b[8], b'T' | b't') => {
            let day = date(&s[..8])?;
            let h: i64 = digits(&s[9..11])?;
            let m: i64 = digits(&s[11..13])?;
            // RFC 5545 3.3.12 allows second 60 for a leap second; there is no
            // such instant in unix time, so it is read as :59.
            let sec: i64 = digits::<i64>(&s[13..15])?.min(59);
            if h > 23 || m > 59 {
                return None;
            }
            let naive = day * DAY + h * 3600 + m * 60 + sec;
            match b.get(15) {
                None => Some(IcalTime::Local(naive)),
                Some(b'Z' | b'z') => Some(IcalTime::Utc(naive)),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_weekday_rule_with_or_without_prefix() {
        let r = Rule::parse("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR").unwrap();
        assert_eq!(r.freq, Freq::Weekly);
        assert_eq!(r.interval, 1);
        assert_eq!(r.by_day.len(), 5);
        assert_eq!(
            Rule::parse("RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR").unwrap(),
            r
        );
        assert_eq!(
            Rule::parse("rrule:freq=weekly;byday=mo,tu,we,th,fr").unwrap(),
            r
        );
    }

    #[test]
    fn parses_every_part() {
        let r = Rule::parse(
            "FREQ=YEARLY;INTERVAL=2;UNTIL=20301231T235959Z;BYMONTH=1,3;BYMONTHDAY=-1,1;BYYEARDAY=100;\
             BYDAY=-1FR,2MO,SU;BYHOUR=18,9;BYMINUTE=30;BYSECOND=0;BYSETPOS=-1;WKST=SU",
        )
        .unwrap();
        assert_eq!(r.interval, 2);
        assert_eq!(
            r.until,
            Some(Until::Utc(days_from_civil(2030, 12, 31) * DAY + 86_399))
        );
        assert_eq!(r.by_month, vec![1, 3]);
        assert_eq!(r.by_monthday, vec![-1, 1]);
        assert_eq!(r.by_hour, vec![9, 18]);
        assert_eq!(
            r.by_day,
            vec![
                DayNum {
                    nth: -1,
                    weekday: 4
                },
                DayNum { nth: 2, weekday: 0 },
                DayNum { nth: 0, weekday: 6 }
            ]
        );
        assert_eq!(r.by_setpos, vec![-1]);
        assert_eq!(r.wkst, 6);
        assert_eq!(
            Rule::parse("FREQ=DAILY;UNTIL=2026-12-31").unwrap().until,
            Some(Until::Date(days_from_civil(2026, 12, 31)))
        );
        assert_eq!(
            Rule::parse("FREQ=DAILY;UNTIL=2026-12-31T18:00")
                .unwrap()
                .until,
            Some(Until::Local(
                days_from_civil(2026, 12, 31) * DAY + 18 * 3600
            ))
        );
    }

    #[test]
    fn rejects_what_rfc5545_rules_out() {
        for (rule, needle) in [
            ("BYDAY=MO", "FREQ is missing"),
            ("FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY: unknown frequency"),
            ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears twice"),
            ("FREQ=DAILY;COUNT=3;UNTIL=20260101", "COUNT and UNTIL"),
            ("FREQ=DAILY;COUNT=0", "COUNT=0"),
            ("FREQ=DAILY;INTERVAL=-2", "INTERVAL=-2"),
            ("FREQ=DAILY;BYHOUR=24", "\"24\" is not in 0..=23"),
            ("FREQ=MONTHLY;BYMONTHDAY=0", "\"0\""),
            ("FREQ=WEEKLY;BYDAY=XX", "\"XX\" is not a weekday"),
            ("FREQ=WEEKLY;BYDAY=1MO", "needs FREQ=MONTHLY or FREQ=YEARLY"),
            (
                "FREQ=MONTHLY;BYWEEKNO=1",
                "BYWEEKNO only works with FREQ=YEARLY",
            ),
            (
                "FREQ=DAILY;BYYEARDAY=1",
                "BYYEARDAY does not work with FREQ=DAILY",
            ),
            (
                "FREQ=WEEKLY;BYMONTHDAY=1",
                "BYMONTHDAY does not work with FREQ=WEEKLY",
            ),
            (
                "FREQ=YEARLY;BYWEEKNO=1;BYDAY=1MO",
                "cannot be combined with BYWEEKNO",
            ),
            ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs another"),
            ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL=tomorrow"),
            ("FREQ=DAILY;X-NAME=1", "unknown part \"X-NAME\""),
            ("FREQ=DAILY;BYDAY", "\"BYDAY\" is not a NAME=VALUE part"),
        ] {
            let e = Rule::parse(rule).unwrap_err();
            assert!(e.contains(needle), "{rule}: {e}");
        }
    }

    #[test]
    fn ical_times() {
        let day = days_from_civil(1997, 9, 2);
        assert_eq!(parse_ical_datetime("19970902"), Some(IcalTime::Date(day)));
        assert_eq!(
            parse_ical_datetime("19970902T090000"),
            Some(IcalTime::Local(day * DAY + 9 * 3600))
        );
        assert_eq!(
            parse_ical_datetime("19970902T090000Z"),
            Some(IcalTime::Utc(day * DAY + 9 * 3600))
        );
        assert_eq!(parse_ical_datetime("19970230T090000"), None);
        assert_eq!(parse_ical_datetime("19970902T250000"), None);
        assert_eq!(parse_ical_datetime("1997-09-02"), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(
            s in "\\PC{0,40}",
            parts in proptest::collection::vec(
                "(FREQ|INTERVAL|COUNT|UNTIL|BYDAY|BYMONTHDAY|BYSETPOS|WKST|BYHOUR)=[-+0-9A-Z,T]{0,12}",
                0..6,
            ),
        ) {
            let _ = Rule::parse(&s);
            let _ = parse_ical_datetime(&s);
            let _ = parse_until(&s);
            let _ = Rule::parse(&parts.join(";"));
        }
    }
}
