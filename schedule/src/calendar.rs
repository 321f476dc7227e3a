//! Calendar arithmetic on plain integers (proleptic Gregorian), and the one
//! bridge between wall-clock time and instants in a time zone.
//!
//! Recurrence works in *naive* seconds: seconds since 1970-01-01T00:00 of a
//! wall clock, with no zone attached. RFC 5545 3.3.10 expands rules in local
//! time (a weekly 18:00 stays at 18:00 across DST), so the expansion adds days
//! to naive values and only [`to_instant`] turns one into unix time.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

pub(crate) const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`). `m` is 1..=12, `d` 1..=31.
pub(crate) fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number from [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
pub(crate) fn weekday(day: i64) -> u8 {
    (day + 3).rem_euclid(7) as u8
}

pub(crate) fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 31,
    }
}

pub(crate) fn days_in_year(y: i32) -> i64 {
    if is_leap(y) { 366 } else { 365 }
}

/// The first day of the week holding `day`, weeks starting on `wkst`.
pub(crate) fn week_start(day: i64, wkst: u8) -> i64 {
    day - i64::from((weekday(day) + 7 - wkst) % 7)
}

/// First day of week 1 of year `y`: RFC 5545 3.3.10 (BYWEEKNO) follows
/// ISO 8601, week 1 is the first week with at least four days in the year,
/// which is the week holding January 4th, weeks starting on WKST.
fn week1_start(y: i32, wkst: u8) -> i64 {
    week_start(days_from_civil(y, 1, 4), wkst)
}

/// The week number of `day` and the number of weeks in its week-numbering
/// year (which for the first and last days of a year may be the year before
/// or after).
pub(crate) fn week_number(day: i64, wkst: u8) -> (i64, i64) {
    let (y, _, _) = civil_from_days(day);
    let mut wy = y;
    if day < week1_start(y, wkst) {
        wy = y - 1;
    } else if day >= week1_start(y + 1, wkst) {
        wy = y + 1;
    }
    let first = week1_start(wy, wkst);
    let weeks = (week1_start(wy + 1, wkst) - first) / 7;
    ((day - first) / 7 + 1, weeks)
}

/// Splits naive seconds into (day number, second of the day).
pub(crate) fn split(naive: i64) -> (i64, i64) {
    (naive.div_euclid(DAY), naive.rem_euclid(DAY))
}

/// The unix time at which a wall clock in `tz` shows `naive`.
///
/// RFC 5545 3.3.5: a local time that occurs twice (clocks going back) means
/// its first occurrence; one that does not occur (clocks going forward) is
/// read with the UTC offset from before the gap, so 02:30 on a night that
/// skips 02:00–03:00 becomes 03:30. This is jiff's "compatible"
/// disambiguation. `None` only outside the years jiff represents
/// (-9999..=9999).
pub(crate) fn to_instant(tz: &TimeZone, naive: i64) -> Option<i64> {
    let (day, sec) = split(naive);
    let (y, m, d) = civil_from_days(day);
    let y = i16::try_from(y).ok()?;
    let dt = DateTime::new(
        y,
        m as i8,
        d as i8,
        (sec / 3600) as i8,
        (sec / 60 % 60) as i8,
        (sec % 60) as i8,
        0,
    )
    .ok()?;
    let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
    Some(ts.as_second())
}

/// What a wall clock in `tz` shows at unix time `t`, as naive seconds.
/// Instants outside jiff's range are clamped to it.
pub(crate) fn to_naive(tz: &TimeZone, t: i64) -> i64 {
    let ts =
        Timestamp::from_second(t.clamp(MIN_INSTANT, MAX_INSTANT)).unwrap_or(Timestamp::UNIX_EPOCH);
    let dt = tz.to_datetime(ts);
    days_from_civil(i32::from(dt.year()), dt.month() as u8, dt.day() as u8) * DAY
        + i64::from(dt.hour()) * 3600
        + i64::from(dt.minute()) * 60
        + i64::from(dt.second())
}

/// Unix time of 0001-01-02T00:00Z and 9999-12-30T00:00Z: instants far
/// enough inside jiff's range that any offset keeps them representable.
pub(crate) const MIN_INSTANT: i64 = -62_135_510_400;
pub(crate) const MAX_INSTANT: i64 = 253_402_128_000;

/// Largest day number the expansion looks at (9999-12-30).
pub(crate) const MAX_DAY: i64 = MAX_INSTANT / DAY;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-800_000, -1, 0, 1, 59, 365, 11_016, 20_000, 2_900_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{z} -> {y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn range_limits_are_the_dates_they_claim() {
        assert_eq!(MIN_INSTANT, days_from_civil(1, 1, 2) * DAY);
        assert_eq!(MAX_INSTANT, days_from_civil(9999, 12, 30) * DAY);
        assert_eq!(MAX_DAY, days_from_civil(9999, 12, 30));
    }

    #[test]
    fn weekdays_and_month_lengths() {
        // 2026-11-25 is a Wednesday, 2026-01-05 a Monday.
        assert_eq!(weekday(days_from_civil(2026, 11, 25)), 2);
        assert_eq!(weekday(days_from_civil(2026, 1, 5)), 0);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_year(2026), 365);
        // Week starting Sunday holding Wednesday 2026-11-25 starts on the 22nd.
        assert_eq!(
            week_start(days_from_civil(2026, 11, 25), 6),
            days_from_civil(2026, 11, 22)
        );
    }

    #[test]
    fn iso_week_numbers() {
        // 2026-01-01 (Thursday) is in week 1 of 2026; 2027-01-01 (Friday) is
        // in week 53 of 2026, which has 53 weeks.
        assert_eq!(week_number(days_from_civil(2026, 1, 1), 0), (1, 53));
        assert_eq!(week_number(days_from_civil(2027, 1, 1), 0), (53, 53));
        assert_eq!(week_number(days_from_civil(2027, 1, 4), 0), (1, 52));
        // 2024-12-30 (Monday) is in week 1 of 2025.
        assert_eq!(week_number(days_from_civil(2024, 12, 30), 0).0, 1);
        // 1997-05-12, the RFC's "Monday of week number 20".
        assert_eq!(week_number(days_from_civil(1997, 5, 12), 0).0, 20);
    }

    #[test]
    fn wall_clock_to_unix_time_follows_rfc5545_3_3_5() {
        let ams = jiff::tz::TimeZoneDatabase::bundled()
            .get("Europe/Amsterdam")
            .unwrap();
        let at = |y, m, d, h: i64, mi: i64| days_from_civil(y, m, d) * DAY + h * 3600 + mi * 60;
        // 2026-03-29 02:30 does not exist: read with the offset before the
        // gap (+01:00), 01:30Z, which the clock shows as 03:30.
        let t = to_instant(&ams, at(2026, 3, 29, 2, 30)).unwrap();
        assert_eq!(t, at(2026, 3, 29, 1, 30));
        assert_eq!(to_naive(&ams, t), at(2026, 3, 29, 3, 30));
        // 2026-10-25 02:30 occurs twice: the first (+02:00), 00:30Z.
        assert_eq!(
            to_instant(&ams, at(2026, 10, 25, 2, 30)).unwrap(),
            at(2026, 10, 25, 0, 30)
        );
    }
}
