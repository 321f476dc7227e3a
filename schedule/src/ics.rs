//! Import of an iCalendar text (RFC 5545): the VEVENTs of a calendar as
//! [`Series`], for the subset a broadcast schedule needs.
//!
//! Read: line unfolding (3.1), DTSTART, DTEND, DURATION, RRULE, RDATE,
//! EXDATE, RECURRENCE-ID (a moved or cancelled instance replaces the one of
//! its series), STATUS (CANCELLED events are skipped), TZID parameters (an
//! IANA name; VTIMEZONE blocks are ignored), VALUE=DATE all-day events, UTC
//! times, and floating times, which are read in the schedule's zone. Other
//! components (VTODO, VALARM, …) and unknown properties are ignored. Errors
//! name the line of the calendar.

use jiff::tz::TimeZone;

use crate::Interval;
use crate::calendar::{DAY, to_instant};
use crate::error::ScheduleError;
use crate::expand::Recurrence;
use crate::rrule::{IcalTime, Rule, parse_ical_datetime};
use crate::series::{Length, Series};
use crate::text::digits;

const FIELD: &str = "schedule.ics";

/// One content line after unfolding: `NAME;PARAM=V:VALUE`.
#[derive(Clone, Debug)]
struct Prop {
    line: usize,
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Prop {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn err(&self, msg: impl std::fmt::Display) -> ScheduleError {
        ScheduleError::new(FIELD, format!("line {}: {} {msg}", self.line, self.name))
    }
}

#[derive(Debug, Default)]
struct Event {
    line: usize,
    uid: Option<String>,
    dtstart: Option<Prop>,
    dtend: Option<Prop>,
    duration: Option<Prop>,
    rrules: Vec<Prop>,
    rdates: Vec<Prop>,
    exdates: Vec<Prop>,
    recurrence_id: Option<Prop>,
    cancelled: bool,
}

/// A DATE or DATE-TIME placed in a zone.
#[derive(Clone, Debug)]
enum At {
    /// A whole day, in the schedule's zone.
    Date(i64),
    /// Wall-clock time in a zone (TZID, or floating: the schedule's zone).
    Local(TimeZone, i64),
    /// UTC.
    Utc(i64),
}

impl At {
    /// The zone the value recurs in, its wall-clock reading and instant.
    fn place(&self, default_tz: &TimeZone) -> Option<(TimeZone, i64, i64)> {
        match self {
            At::Date(d) => {
                let naive = d * DAY;
                Some((default_tz.clone(), naive, to_instant(default_tz, naive)?))
            }
            At::Local(tz, naive) => Some((tz.clone(), *naive, to_instant(tz, *naive)?)),
            At::Utc(u) => Some((TimeZone::UTC, *u, *u)),
        }
    }
}

/// The VEVENTs of `text` as series; times without a zone are read in
/// `default_tz`.
pub(crate) fn parse(text: &str, default_tz: &TimeZone) -> Result<Vec<Series>, ScheduleError> {
    let events = read_events(text)?;
    // RECURRENCE-ID: the instance it names is replaced by this event (or
    // dropped, if this event is cancelled). RFC 5545 3.8.4.4.
    let mut replaced: Vec<(String, At)> = vec![];
    for ev in &events {
        if let (Some(uid), Some(rid)) = (&ev.uid, &ev.recurrence_id) {
            replaced.push((uid.clone(), time(rid, &rid.value, default_tz)?));
        }
    }
    let mut out = vec![];
    for ev in &events {
        if ev.cancelled {
            continue;
        }
        let overrides = match (&ev.uid, &ev.recurrence_id) {
            (Some(uid), None) => replaced
                .iter()
                .filter(|(u, _)| u == uid)
                .map(|(_, at)| at)
                .collect(),
            _ => vec![],
        };
        if let Some(s) = event_series(ev, &overrides, default_tz)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Unfolds the text (RFC 5545 3.1: a line break followed by one space or
/// tab continues the line) and collects the VEVENTs.
fn read_events(text: &str) -> Result<Vec<Event>, ScheduleError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<(usize, String)> = vec![];
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some((_, cur))) => cur.push_str(rest),
            _ if raw.trim().is_empty() => {}
            _ => lines.push((i + 1, raw.to_string())),
        }
    }
    // A server error page or a redirect's body is the usual wrong text.
    match lines.first() {
        Some((_, first)) if first.trim().eq_ignore_ascii_case("BEGIN:VCALENDAR") => {}
        // Its text is not quoted: whatever was read instead of a calendar
        // (a file named by mistake, an error page) may hold anything.
        Some((no, _)) => {
            return Err(ScheduleError::new(
                FIELD,
                format!("not an iCalendar file: line {no} is not BEGIN:VCALENDAR"),
            ));
        }
        None => {
            return Err(ScheduleError::new(
                FIELD,
                "not an iCalendar file: it is empty",
            ));
        }
    }
    let mut stack: Vec<(String, usize)> = vec![];
    let mut events = vec![];
    let mut ev: Option<Event> = None;
    for (no, l) in &lines {
        let p = content_line(*no, l)?;
        match p.name.as_str() {
            "BEGIN" => {
                let what = p.value.trim().to_ascii_uppercase();
                if stack.is_empty() && what != "VCALENDAR" {
                    return Err(ScheduleError::new(
                        FIELD,
                        format!("line {no}: BEGIN:{what} outside BEGIN:VCALENDAR"),
                    ));
                }
                if what == "VEVENT" && stack.len() == 1 {
                    ev = Some(Event {
                        line: *no,
                        ..Event::default()
                    });
                }
                stack.push((what, *no));
            }
            "END" => {
                let what = p.value.trim().to_ascii_uppercase();
                match stack.pop() {
                    Some((open, _)) if open == what => {}
                    Some((open, at)) => {
                        return Err(ScheduleError::new(
                            FIELD,
                            format!(
                                "line {no}: END:{what} does not close BEGIN:{open} (line {at})"
                            ),
                        ));
                    }
                    None => {
                        return Err(ScheduleError::new(
                            FIELD,
                            format!("line {no}: END:{what} without BEGIN"),
                        ));
                    }
                }
                if what == "VEVENT"
                    && stack.len() == 1
                    && let Some(e) = ev.take()
                {
                    events.push(e);
                }
            }
            _ if stack.is_empty() => {
                return Err(ScheduleError::new(
                    FIELD,
                    format!("line {no}: {} outside BEGIN:VCALENDAR", p.name),
                ));
            }
            // Properties of the event itself, not of a VALARM inside it.
            _ if stack.len() == 2 && stack[1].0 == "VEVENT" => {
                if let Some(e) = ev.as_mut() {
                    add_prop(e, p)?;
                }
            }
            _ => {}
        }
    }
    if let Some((open, at)) = stack.pop() {
        return Err(ScheduleError::new(
            FIELD,
            format!("BEGIN:{open} (line {at}) is never closed"),
        ));
    }
    Ok(events)
}

fn add_prop(e: &mut Event, p: Prop) -> Result<(), ScheduleError> {
    let once = |slot: &mut Option<Prop>, p: Prop| {
        if slot.is_some() {
            return Err(p.err("appears twice in one VEVENT"));
        }
        *slot = Some(p);
        Ok(())
    };
    match p.name.as_str() {
        "UID" => e.uid = Some(p.value),
        "DTSTART" => once(&mut e.dtstart, p)?,
        "DTEND" => once(&mut e.dtend, p)?,
        "DURATION" => once(&mut e.duration, p)?,
        "RECURRENCE-ID" => once(&mut e.recurrence_id, p)?,
        "RRULE" => e.rrules.push(p),
        "RDATE" => e.rdates.push(p),
        "EXDATE" => e.exdates.push(p),
        "STATUS" => e.cancelled = p.value.trim().eq_ignore_ascii_case("CANCELLED"),
        _ => {}
    }
    Ok(())
}

/// Splits a content line (RFC 5545 3.1): name, parameters (values may be
/// quoted), and the value after the first unquoted colon.
fn content_line(no: usize, l: &str) -> Result<Prop, ScheduleError> {
    let bad = |why: &str| {
        let shown: String = l.chars().take(60).collect();
        ScheduleError::new(FIELD, format!("line {no}: \"{shown}\" {why}"))
    };
    let name_end = l.find([';', ':']).ok_or_else(|| bad("is not NAME:VALUE"))?;
    let name = l[..name_end].trim().to_ascii_uppercase();
    if name.is_empty() {
        return Err(bad("has no property name"));
    }
    let mut params = vec![];
    let mut rest = &l[name_end..];
    while let Some(r) = rest.strip_prefix(';') {
        let eq = r
            .find('=')
            .ok_or_else(|| bad("has a parameter without ="))?;
        let pname = r[..eq].trim().to_ascii_uppercase();
        let mut r = &r[eq + 1..];
        let mut values = vec![];
        loop {
            if let Some(q) = r.strip_prefix('"') {
                let close = q.find('"').ok_or_else(|| bad("has an unclosed quote"))?;
                values.push(q[..close].to_string());
                r = &q[close + 1..];
            } else {
                let end = r.find([',', ';', ':']).unwrap_or(r.len());
                values.push(r[..end].to_string());
                r = &r[end..];
            }
            match r.strip_prefix(',') {
                Some(more) => r = more,
                None => break,
            }
        }
        params.push((pname, values.join(",")));
        rest = r;
    }
    let value = rest
        .strip_prefix(':')
        .ok_or_else(|| bad("is not NAME:VALUE"))?;
    Ok(Prop {
        line: no,
        name,
        params,
        value: value.to_string(),
    })
}

/// An IANA zone for a TZID. Some producers prefix the name with a path
/// ("/mozilla.org/20050126_1/Europe/Amsterdam"); the longest suffix that
/// names a zone is taken.
fn zone(tzid: &str) -> Option<TimeZone> {
    let db = crate::schedule::tzdb();
    let tzid = tzid.trim();
    if let Ok(tz) = db.get(tzid) {
        return Some(tz);
    }
    tzid.match_indices('/')
        .find_map(|(i, _)| db.get(&tzid[i + 1..]).ok())
}

/// One DATE or DATE-TIME value of `p` (RFC 5545 3.3.4, 3.3.5), with its
/// VALUE and TZID parameters.
fn time(p: &Prop, value: &str, default_tz: &TimeZone) -> Result<At, ScheduleError> {
    let value = value.trim();
    let t = parse_ical_datetime(value).ok_or_else(|| {
        p.err(format!(
            "\"{value}\" is not a DATE (20261225) or DATE-TIME (20261225T180000[Z])"
        ))
    })?;
    if p.param("VALUE")
        .is_some_and(|v| v.eq_ignore_ascii_case("DATE"))
        && !matches!(t, IcalTime::Date(_))
    {
        return Err(p.err(format!("\"{value}\" is not a DATE though VALUE=DATE")));
    }
    Ok(match t {
        IcalTime::Date(d) => At::Date(d),
        IcalTime::Utc(u) => At::Utc(u),
        IcalTime::Local(n) => match p.param("TZID") {
            None => At::Local(default_tz.clone(), n),
            Some(id) => At::Local(
                zone(id)
                    .ok_or_else(|| p.err(format!("TZID \"{id}\" is not an IANA time zone name")))?,
                n,
            ),
        },
    })
}

/// DURATION (RFC 5545 3.3.6): `P1W`, `P2D`, `PT1H30M`, `P1DT12H`. Returns
/// (nominal days, exact seconds); a leading `-` is refused.
fn duration(p: &Prop) -> Result<(i64, i64), ScheduleError> {
    let v = p.value.trim();
    let bad = || {
        p.err(format!(
            "\"{v}\" is not a positive duration like PT2H, P1D or P1DT30M"
        ))
    };
    let body = v.strip_prefix('+').unwrap_or(v);
    let body = body.strip_prefix(['P', 'p']).ok_or_else(bad)?;
    let (mut days, mut secs) = (0i64, 0i64);
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in body.chars() {
        match c.to_ascii_uppercase() {
            d if d.is_ascii_digit() => num.push(d),
            'T' if !in_time && num.is_empty() => in_time = true,
            unit => {
                let n: i64 = digits(&num).ok_or_else(bad)?;
                num.clear();
                any = true;
                match (in_time, unit) {
                    (false, 'W') => days += n.checked_mul(7).ok_or_else(bad)?,
                    (false, 'D') => days += n,
                    (true, 'H') => secs += n.checked_mul(3600).ok_or_else(bad)?,
                    (true, 'M') => secs += n.checked_mul(60).ok_or_else(bad)?,
                    (true, 'S') => secs += n,
                    _ => return Err(bad()),
                }
            }
        }
    }
    if !num.is_empty() || !any || days > 3660 || secs > 3660 * DAY {
        return Err(bad());
    }
    Ok((days, secs))
}

/// The series of one event; `None` for an event with no length (a
/// date-time DTSTART and neither DTEND nor DURATION is an instant, RFC 5545
/// 3.6.1, and makes no window).
fn event_series(
    ev: &Event,
    replaced: &[&At],
    default_tz: &TimeZone,
) -> Result<Option<Series>, ScheduleError> {
    let Some(dtstart) = &ev.dtstart else {
        return Err(ScheduleError::new(
            FIELD,
            format!("line {}: VEVENT without DTSTART", ev.line),
        ));
    };
    let start = time(dtstart, &dtstart.value, default_tz)?;
    let out_of_range = |p: &Prop| p.err("is outside the years 0001..9999");
    let (tz, naive, unix) = start
        .place(default_tz)
        .ok_or_else(|| out_of_range(dtstart))?;
    let length = match (&ev.dtend, &ev.duration) {
        (Some(end), Some(_)) => {
            return Err(end.err("and DURATION both given; RFC 5545 3.6.1 allows one"));
        }
        (Some(end), None) => {
            let e = time(end, &end.value, default_tz)?;
            let len = match (&start, &e) {
                (At::Date(s), At::Date(e)) => (e - s) * DAY,
                _ => e.place(default_tz).ok_or_else(|| out_of_range(end))?.2 - unix,
            };
            if len < 0 {
                return Err(end.err(format!("\"{}\" is before DTSTART", end.value.trim())));
            }
            match (&start, &e) {
                (At::Date(s), At::Date(e)) => Length::Nominal {
                    days: e - s,
                    secs: 0,
                },
                // "the same exact duration" for every instance, RFC 5545 3.8.5.3
                _ => Length::Exact(len),
            }
        }
        (None, Some(d)) => match duration(d)? {
            (0, secs) => Length::Exact(secs),
            (days, secs) => Length::Nominal { days, secs },
        },
        // RFC 5545 3.6.1: an all-day event without an end lasts that day.
        (None, None) if matches!(start, At::Date(_)) => Length::Nominal { days: 1, secs: 0 },
        (None, None) => return Ok(None),
    };
    if length == Length::Exact(0) || length == (Length::Nominal { days: 0, secs: 0 }) {
        return Ok(None);
    }
    // A search for the windows around a time reaches back by the longest
    // window of a rule; keeping that short keeps every query bounded.
    if !ev.rrules.is_empty() && length.max_seconds() > 367 * DAY {
        return Err(ScheduleError::new(
            FIELD,
            format!(
                "line {}: a recurring event longer than 366 days is not supported",
                ev.line
            ),
        ));
    }
    let mut series = Series::new(tz.clone(), length);
    for at in replaced.iter().copied().chain(
        ev.exdates
            .iter()
            .map(|p| {
                p.value
                    .split(',')
                    .map(|v| time(p, v, default_tz))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .flatten(),
    ) {
        match at {
            At::Date(d) => series.except.days.push(*d),
            other => {
                if let Some((_, _, u)) = other.place(default_tz) {
                    series.except.instants.push(u);
                }
            }
        }
    }
    series.except.finish();
    // RFC 5545 3.8.5.3: DTSTART is the first instance of the set, whether
    // or not the rule yields it.
    series.add_fixed(unix, naive);
    for p in &ev.rdates {
        for v in p.value.split(',') {
            rdate(&mut series, p, v, default_tz)?;
        }
    }
    for p in &ev.rrules {
        let rule =
            Rule::parse(&p.value).map_err(|e| p.err(format!("\"{}\": {e}", p.value.trim())))?;
        let mut rec = Recurrence::new(&rule, tz.clone(), naive, unix);
        if let Some(count) = rule.count {
            // DTSTART counts as the first instance (RFC 5545 3.8.5.3); when
            // the rule does not yield it, the rule has one fewer.
            let own = if rec.yields_dtstart() {
                count
            } else {
                count - 1
            };
            if own == 0 {
                continue;
            }
            if let Some(b) = rec.count_bound(own) {
                rec.set_bound(b);
            }
        }
        series.rules.push(rec);
    }
    series.finish();
    Ok((!series.is_empty()).then_some(series))
}

/// One RDATE value: a DATE, a DATE-TIME (an extra start), or a PERIOD
/// (`start/end` or `start/duration`, RFC 5545 3.3.9) with its own end.
fn rdate(
    series: &mut Series,
    p: &Prop,
    v: &str,
    default_tz: &TimeZone,
) -> Result<(), ScheduleError> {
    let out_of_range = || p.err("is outside the years 0001..9999");
    let Some((a, b)) = v.split_once('/') else {
        let (_, naive, unix) = time(p, v, default_tz)?
            .place(default_tz)
            .ok_or_else(out_of_range)?;
        series.add_fixed(unix, naive);
        return Ok(());
    };
    let (tz, naive, unix) = time(p, a, default_tz)?
        .place(default_tz)
        .ok_or_else(out_of_range)?;
    let end = if b.trim_start_matches('+').starts_with(['P', 'p']) {
        let d = Prop {
            value: b.to_string(),
            ..p.clone()
        };
        let (days, secs) = duration(&d)?;
        to_instant(&tz, naive + days * DAY).ok_or_else(out_of_range)? + secs
    } else {
        time(p, b, default_tz)?
            .place(default_tz)
            .ok_or_else(out_of_range)?
            .2
    };
    if !series.excludes(unix, naive) {
        series.add_fixed_interval(Interval { start: unix, end });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lines_with_quoted_parameters() {
        let p = content_line(
            3,
            r#"DTSTART;TZID="America/New_York";X-A=a,"b;c":19970902T090000"#,
        )
        .unwrap();
        assert_eq!(p.name, "DTSTART");
        assert_eq!(p.param("TZID"), Some("America/New_York"));
        assert_eq!(p.param("X-A"), Some("a,b;c"));
        assert_eq!(p.value, "19970902T090000");
        let p = content_line(4, "DESCRIPTION:a: b").unwrap();
        assert_eq!(p.value, "a: b");
        let e = content_line(7, "GARBAGE").unwrap_err();
        assert_eq!(e.field, "schedule.ics");
        assert!(e.message.starts_with("line 7: \"GARBAGE\""), "{e}");
    }

    #[test]
    fn durations() {
        let d = |v: &str| {
            duration(&Prop {
                line: 1,
                name: "DURATION".into(),
                params: vec![],
                value: v.into(),
            })
        };
        assert_eq!(d("PT2H").unwrap(), (0, 7200));
        assert_eq!(d("PT1H30M").unwrap(), (0, 5400));
        assert_eq!(d("P1D").unwrap(), (1, 0));
        assert_eq!(d("P1W").unwrap(), (7, 0));
        assert_eq!(d("P1DT12H").unwrap(), (1, 43_200));
        assert_eq!(d("PT45S").unwrap(), (0, 45));
        for v in ["-PT1H", "P", "PT", "1H", "PT1D", "P1H", "P1.5D"] {
            let e = d(v).unwrap_err();
            assert!(e.message.contains(&format!("\"{v}\"")), "{e}");
        }
    }

    #[test]
    fn tzid_with_a_vendor_prefix() {
        assert!(zone("/mozilla.org/20050126_1/Europe/Amsterdam").is_some());
        assert!(zone("America/Argentina/Buenos_Aires").is_some());
        assert!(zone("W. Europe Standard Time").is_none());
    }

    proptest::proptest! {
        /// Line soup from calendar fragments: the parser errs or yields a
        /// schedule that answers, and never panics.
        #[test]
        fn parse_never_panics(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("BEGIN:VCALENDAR".to_string()),
                    proptest::strategy::Just("END:VCALENDAR".to_string()),
                    proptest::strategy::Just("BEGIN:VEVENT".to_string()),
                    proptest::strategy::Just("END:VEVENT".to_string()),
                    proptest::strategy::Just("UID:a".to_string()),
                    "(DTSTART|DTEND|EXDATE|RDATE|RECURRENCE-ID)(;TZID=Europe/Paris|;VALUE=DATE)?:[0-9]{8}(T[0-9]{6}Z?)?(/P[0-9]D|/PT[0-9]H)?",
                    "DURATION:[-+]?P[0-9WDTHMS]{0,6}",
                    "RRULE:FREQ=(DAILY|WEEKLY|MONTHLY|HOURLY);(COUNT=[0-9]|INTERVAL=[0-9]|BYDAY=[-1-3]?(MO|FR))",
                    "STATUS:(CANCELLED|CONFIRMED)",
                    " [A-Z0-9:;=]{0,10}",
                    "\\PC{0,20}",
                ],
                0..24,
            ),
            crlf in proptest::bool::ANY,
            at in 0i64..2_000_000_000,
        ) {
            let mut text = String::from("BEGIN:VCALENDAR\n");
            text.push_str(&lines.join(if crlf { "\r\n" } else { "\n" }));
            if !crlf {
                text.push_str("\nEND:VCALENDAR");
            }
            let def = crate::ScheduleDef::default();
            if let Ok(s) = crate::Schedule::compile(&def, Some(&text)) {
                let _ = s.active_at(at);
                let _ = s.next_change(at);
                let _ = s.next_windows(at, 3);
            }
        }
    }
}
