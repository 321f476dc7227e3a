//! The string forms a schedule is written in (config and MQTT): date-times
//! local or absolute, dates, wall-clock times and durations. Errors are the
//! message part only; the caller names the field.

use crate::calendar::{DAY, days_from_civil, days_in_month};

/// A parsed `start`, `stop` or `exdates` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum When {
    /// Wall-clock time in the schedule's zone, as naive seconds.
    Local(i64),
    /// An instant written with `Z` or a UTC offset, and that offset.
    Absolute { unix: i64, offset_s: i32 },
}

const DATETIME_FORMS: &str = "expected a local time like 2026-11-25T18:00 or 2026-11-25T18:00:00, or one with Z or an offset like +01:00";

/// `2026-11-25T18:00`, `2026-11-25T18:00:00`, either followed by `Z` or an
/// offset (`+01:00`, `+0100`, `+01`).
pub(crate) fn parse_datetime(s: &str) -> Result<When, String> {
    let bad = || format!("\"{s}\" is not a date-time: {DATETIME_FORMS}");
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() < 16 || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let day = parse_date(&s[..10]).ok_or_else(bad)?;
    // HH:MM, then optional :SS, then the zone designator.
    let rest = &s[11..];
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    if clock.contains('.') || clock.contains(',') {
        return Err(format!(
            "\"{s}\" has fractions of a second; windows are whole seconds"
        ));
    }
    let tod = parse_clock(clock).ok_or_else(bad)?;
    let naive = day * DAY + tod;
    match zone {
        None => Ok(When::Local(naive)),
        Some(z) => {
            let offset_s = parse_offset(z).ok_or_else(bad)?;
            Ok(When::Absolute {
                unix: naive - i64::from(offset_s),
                offset_s,
            })
        }
    }
}

/// `2026-12-25`: the day number.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = digits(&s[0..4])?;
    let m: u8 = digits(&s[5..7])?;
    let d: u8 = digits(&s[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `HH:MM` or `HH:MM:SS` (hours 0..=23): seconds since midnight. This is
/// also the form of a wall-clock `stop`.
pub(crate) fn parse_clock(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let h: i64 = digits(parts.next()?)?;
    let m: i64 = digits(parts.next()?)?;
    let sec: i64 = match parts.next() {
        Some(p) => digits(p)?,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(h * 3600 + m * 60 + sec)
}

/// `Z`, `+01:00`, `-0500`, `+05`: seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    if s.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &s[1..];
    let (h, m) = match body.len() {
        2 => (body, "00"),
        4 => (&body[..2], &body[2..]),
        5 if body.as_bytes()[2] == b':' => (&body[..2], &body[3..]),
        _ => return None,
    };
    let h: i32 = digits(h)?;
    let m: i32 = digits(m)?;
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// `2h`, `90m`, `1h30m`, `45s`, `1h30m15s` or a plain number of seconds.
/// Always an exact length: an hour is 3600 s even across a DST change.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "\"{s}\" is not a duration: expected e.g. \"2h\", \"90m\", \"1h30m\", \"45s\" or a number of seconds"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    let total = if s.bytes().all(|c| c.is_ascii_digit()) {
        digits::<i64>(s).ok_or_else(bad)?
    } else {
        let mut total: i64 = 0;
        let mut num = String::new();
        let mut last_unit = 0u8; // h=3, m=2, s=1: units must come in that order
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let (rank, mult) = match c {
                'h' => (3, 3600),
                'm' => (2, 60),
                's' => (1, 1),
                _ => return Err(bad()),
            };
            if num.is_empty() || (last_unit != 0 && rank >= last_unit) {
                return Err(bad());
            }
            let n: i64 = digits(&num).ok_or_else(bad)?;
            total = n
                .checked_mul(mult)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            num.clear();
            last_unit = rank;
        }
        if !num.is_empty() {
            return Err(bad());
        }
        total
    };
    if total <= 0 {
        return Err(format!(
            "\"{s}\" is not a duration: it must be longer than zero"
        ));
    }
    // A window longer than a year is a mistake, and keeping lengths small
    // keeps every search bound small (see `Schedule`).
    if total > 366 * DAY {
        return Err(format!(
            "\"{s}\" is longer than the longest window (366 days)"
        ));
    }
    Ok(total)
}

/// All ASCII digits, parsed; `None` otherwise (no sign, no spaces).
pub(crate) fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(y: i32, m: u8, d: u8, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, m, d) * DAY + h * 3600 + mi * 60 + s
    }

    #[test]
    fn local_and_absolute_datetimes() {
        assert_eq!(
            parse_datetime("2026-11-25T18:00"),
            Ok(When::Local(naive(2026, 11, 25, 18, 0, 0)))
        );
        assert_eq!(
            parse_datetime("2026-11-25T18:00:30"),
            Ok(When::Local(naive(2026, 11, 25, 18, 0, 30)))
        );
        assert_eq!(
            parse_datetime("2026-11-25T17:00:00Z"),
            Ok(When::Absolute {
                unix: naive(2026, 11, 25, 17, 0, 0),
                offset_s: 0
            })
        );
        assert_eq!(
            parse_datetime("2026-11-25T18:00+01:00"),
            Ok(When::Absolute {
                unix: naive(2026, 11, 25, 17, 0, 0),
                offset_s: 3600
            })
        );
        assert_eq!(
            parse_datetime("2026-11-25T12:00:00-0500"),
            Ok(When::Absolute {
                unix: naive(2026, 11, 25, 17, 0, 0),
                offset_s: -18000
            })
        );
    }

    #[test]
    fn bad_datetimes_quote_the_value() {
        for s in [
            "",
            "2026-11-25",
            "2026-13-01T18:00",
            "2026-02-29T18:00",
            "2026-11-25T24:00",
            "2026-11-25T18:60",
            "2026-11-25T18:00+25:00",
            "25-11-2026T18:00",
            "tomorrow at six",
        ] {
            let e = parse_datetime(s).unwrap_err();
            assert!(e.contains(&format!("\"{s}\"")), "{e}");
        }
        assert!(
            parse_datetime("2026-11-25T18:00:00.5")
                .unwrap_err()
                .contains("fractions")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1h30m15s"), Ok(5415));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("5400"), Ok(5400));
        for s in [
            "", "0", "0h", "2d", "h", "30m1h", "1h1h", "-5", "1.5h", "2 h",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(&format!("\"{s}\"")), "{e}");
        }
        assert!(parse_duration("9000h").unwrap_err().contains("366 days"));
    }

    #[test]
    fn clocks_and_dates() {
        assert_eq!(parse_clock("06:00"), Some(6 * 3600));
        assert_eq!(parse_clock("23:59:59"), Some(86_399));
        assert_eq!(parse_clock("24:00"), None);
        assert_eq!(parse_clock("6"), None);
        assert_eq!(
            parse_date("2026-12-25"),
            Some(days_from_civil(2026, 12, 25))
        );
        assert_eq!(parse_date("2026-12-32"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,30}", t in "[0-9T:+Zz.hms -]{0,26}") {
            for x in [&s, &t] {
                let _ = parse_datetime(x);
                let _ = parse_duration(x);
                let _ = parse_clock(x);
                let _ = parse_date(x);
            }
        }
    }
}
