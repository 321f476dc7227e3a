//! Schedule-level tests: fixed instants (never the wall clock), DST edges
//! in Europe/Amsterdam and America/New_York, merging, the horizon, every
//! validation error, and a property test of `next_change` against
//! `active_at` and against an independent expansion.

use super::*;

fn ts(s: &str) -> i64 {
    s.parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .as_second()
}

fn iv(a: &str, b: &str) -> Interval {
    Interval {
        start: ts(a),
        end: ts(b),
    }
}

fn def(json: &str) -> ScheduleDef {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn compile(json: &str) -> Schedule {
    Schedule::compile(&def(json), None).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn compile_err(json: &str) -> ScheduleError {
    match Schedule::compile(&def(json), None) {
        Ok(s) => panic!("{json} compiled: {s:?}"),
        Err(e) => e,
    }
}

/// One window in zone `tz`, written as JSON fields of a window.
fn one(tz: &str, window: &str) -> Schedule {
    compile(&format!(
        r#"{{"timezone":"{tz}","windows":[{{{window}}}]}}"#
    ))
}

const WEEKDAY_EVENINGS: &str =
    r#""start":"2026-01-05T18:00","stop":"20:00","rrule":"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR""#;

#[test]
fn weekday_evenings_in_amsterdam_follow_dst() {
    let s = one("Europe/Amsterdam", WEEKDAY_EVENINGS);
    // Winter (+01:00): 18:00 is 17:00Z.
    let winter = iv("2026-01-05T17:00:00Z", "2026-01-05T19:00:00Z");
    assert_eq!(s.active_at(ts("2026-01-05T17:00:00Z")), Some(winter));
    assert_eq!(s.active_at(ts("2026-01-05T18:59:59Z")), Some(winter));
    assert_eq!(s.active_at(ts("2026-01-05T16:59:59Z")), None);
    assert_eq!(s.active_at(ts("2026-01-05T19:00:00Z")), None);
    assert_eq!(s.active_at(ts("2026-01-10T17:30:00Z")), None, "Saturday");
    // Summer (+02:00): 18:00 is 16:00Z.
    assert_eq!(
        s.active_at(ts("2026-06-01T16:00:00Z")),
        Some(iv("2026-06-01T16:00:00Z", "2026-06-01T18:00:00Z"))
    );
    // Spring forward on Sunday 2026-03-29: Friday before at 17:00Z,
    // Monday after at 16:00Z.
    assert_eq!(
        s.next_windows(ts("2026-03-27T12:00:00Z"), 2),
        [
            iv("2026-03-27T17:00:00Z", "2026-03-27T19:00:00Z"),
            iv("2026-03-30T16:00:00Z", "2026-03-30T18:00:00Z")
        ]
    );
    // Fall back on Sunday 2026-10-25: Friday before at 16:00Z, Monday
    // after at 17:00Z.
    assert_eq!(
        s.next_windows(ts("2026-10-23T12:00:00Z"), 2),
        [
            iv("2026-10-23T16:00:00Z", "2026-10-23T18:00:00Z"),
            iv("2026-10-26T17:00:00Z", "2026-10-26T19:00:00Z")
        ]
    );
}

#[test]
fn weekday_evenings_in_new_york_follow_dst() {
    let s = one("America/New_York", WEEKDAY_EVENINGS);
    // Clocks go forward on Sunday 2026-03-08 and back on Sunday 2026-11-01.
    assert_eq!(
        s.next_windows(ts("2026-03-06T12:00:00Z"), 2),
        [
            iv("2026-03-06T23:00:00Z", "2026-03-07T01:00:00Z"),
            iv("2026-03-09T22:00:00Z", "2026-03-10T00:00:00Z")
        ]
    );
    assert_eq!(
        s.next_windows(ts("2026-10-30T12:00:00Z"), 2),
        [
            iv("2026-10-30T22:00:00Z", "2026-10-31T00:00:00Z"),
            iv("2026-11-02T23:00:00Z", "2026-11-03T01:00:00Z")
        ]
    );
}

#[test]
fn a_start_in_the_spring_gap_moves_later_and_in_the_autumn_fold_means_the_first() {
    // Europe/Amsterdam skips 02:00-03:00 on 2026-03-29 and repeats it on
    // 2026-10-25. RFC 5545 3.3.5: 02:30 on the 29th is read at +01:00
    // (01:30Z, shown as 03:30); 02:30 on the 25th is the first one (+02:00).
    let s = one(
        "Europe/Amsterdam",
        r#""start":"2026-03-28T02:30","duration":"1h","rrule":"FREQ=DAILY""#,
    );
    assert_eq!(
        s.next_windows(ts("2026-03-28T00:00:00Z"), 3),
        [
            iv("2026-03-28T01:30:00Z", "2026-03-28T02:30:00Z"),
            iv("2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z"),
            iv("2026-03-30T00:30:00Z", "2026-03-30T01:30:00Z")
        ]
    );
    assert_eq!(
        s.active_at(ts("2026-10-25T00:30:00Z")),
        Some(iv("2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"))
    );
    assert_eq!(s.active_at(ts("2026-10-25T01:30:00Z")), None);
    assert_eq!(
        s.next_windows(ts("2026-10-25T12:00:00Z"), 1),
        [iv("2026-10-26T01:30:00Z", "2026-10-26T02:30:00Z")]
    );

    // America/New_York skips 02:00-03:00 on 2026-03-08 and repeats 01:00-02:00
    // on 2026-11-01.
    let s = one(
        "America/New_York",
        r#""start":"2026-03-07T02:30","duration":"30m","rrule":"FREQ=DAILY""#,
    );
    let starts: Vec<i64> = s
        .next_windows(ts("2026-03-07T00:00:00Z"), 3)
        .iter()
        .map(|w| w.start)
        .collect();
    assert_eq!(
        starts,
        [
            ts("2026-03-07T07:30:00Z"),
            ts("2026-03-08T07:30:00Z"),
            ts("2026-03-09T06:30:00Z")
        ]
    );
    let s = one(
        "America/New_York",
        r#""start":"2026-10-31T01:30","duration":"30m","rrule":"FREQ=DAILY""#,
    );
    let starts: Vec<i64> = s
        .next_windows(ts("2026-10-31T00:00:00Z"), 3)
        .iter()
        .map(|w| w.start)
        .collect();
    assert_eq!(
        starts,
        [
            ts("2026-10-31T05:30:00Z"),
            ts("2026-11-01T05:30:00Z"),
            ts("2026-11-02T06:30:00Z")
        ]
    );
}

#[test]
fn windows_crossing_midnight() {
    // A wall-clock stop ends at 06:00 local, nine hours on the night the
    // clocks go back; a duration is the same eight hours every night.
    let by_stop = one(
        "Europe/Amsterdam",
        r#""start":"2026-10-23T22:00","stop":"06:00","rrule":"FREQ=DAILY""#,
    );
    assert_eq!(
        by_stop.next_windows(ts("2026-10-24T12:00:00Z"), 2),
        [
            iv("2026-10-24T20:00:00Z", "2026-10-25T05:00:00Z"),
            iv("2026-10-25T21:00:00Z", "2026-10-26T05:00:00Z")
        ]
    );
    let by_duration = one(
        "Europe/Amsterdam",
        r#""start":"2026-10-23T22:00","duration":"8h","rrule":"FREQ=DAILY""#,
    );
    assert_eq!(
        by_duration.active_at(ts("2026-10-25T03:00:00Z")),
        Some(iv("2026-10-24T20:00:00Z", "2026-10-25T04:00:00Z"))
    );
    // One night, by date-times.
    let once = one(
        "Europe/Amsterdam",
        r#""start":"2026-10-24T22:00","stop":"2026-10-25T06:00""#,
    );
    assert_eq!(
        once.next_windows(ts("2026-10-24T00:00:00Z"), 5),
        [iv("2026-10-24T20:00:00Z", "2026-10-25T05:00:00Z")]
    );
}

#[test]
fn absolute_windows_with_z_and_offset() {
    let z = one(
        "Europe/Amsterdam",
        r#""start":"2026-11-25T17:00:00Z","duration":"1h""#,
    );
    let off = one(
        "Europe/Amsterdam",
        r#""start":"2026-11-25T18:00+01:00","stop":"2026-11-25T19:00+01:00""#,
    );
    let w = iv("2026-11-25T17:00:00Z", "2026-11-25T18:00:00Z");
    assert_eq!(z.active_at(w.start), Some(w));
    assert_eq!(off.active_at(w.start), Some(w));
    assert_eq!(
        w.describe(&z),
        json!({
            "start": "2026-11-25T18:00:00+01:00",
            "end": "2026-11-25T19:00:00+01:00",
            "start_unix": w.start,
            "end_unix": w.end,
            "duration_s": 3600
        })
    );
    // Recurring from an absolute start keeps that UTC offset: 17:00Z in
    // summer too.
    let daily = one(
        "Europe/Amsterdam",
        r#""start":"2026-03-27T17:00:00Z","duration":"1h","rrule":"FREQ=DAILY""#,
    );
    assert_eq!(
        daily.next_windows(ts("2026-03-30T00:00:00Z"), 1),
        [iv("2026-03-30T17:00:00Z", "2026-03-30T18:00:00Z")]
    );
    let d = daily.next_windows(ts("2026-03-30T00:00:00Z"), 1)[0].describe(&daily);
    assert_eq!(d["start"], "2026-03-30T19:00:00+02:00");
}

#[test]
fn exdates_skip_occurrences_by_start_or_by_day() {
    let s = one(
        "Europe/Amsterdam",
        r#""start":"2026-01-05T18:00","duration":"2h","rrule":"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
           "exdates":["2026-01-07T18:00","2026-01-09","2026-01-12T17:00:00Z"]"#,
    );
    let days: Vec<String> = s
        .next_windows(ts("2026-01-05T12:00:00Z"), 4)
        .iter()
        .map(|w| s.rfc3339(w.start)[..10].to_string())
        .collect();
    assert_eq!(
        days,
        ["2026-01-05", "2026-01-06", "2026-01-08", "2026-01-13"]
    );
    assert_eq!(s.active_at(ts("2026-01-07T17:30:00Z")), None);
}

#[test]
fn count_and_until_end_a_rule() {
    let days = |s: &Schedule| -> Vec<String> {
        s.next_windows(ts("2025-12-31T00:00:00Z"), 10)
            .iter()
            .map(|w| s.rfc3339(w.start)[..10].to_string())
            .collect()
    };
    let count = one(
        "UTC",
        r#""start":"2026-01-01T18:00","duration":"1h","rrule":"FREQ=DAILY;COUNT=3""#,
    );
    assert_eq!(days(&count), ["2026-01-01", "2026-01-02", "2026-01-03"]);
    assert_eq!(
        count.next_change(ts("2026-01-03T18:30:00Z")),
        Some(ts("2026-01-03T19:00:00Z"))
    );
    assert_eq!(count.next_change(ts("2026-01-03T19:00:00Z")), None);
    // UNTIL as a date includes that whole day; as a UTC time, that instant.
    let until_day = one(
        "UTC",
        r#""start":"2026-01-01T18:00","duration":"1h","rrule":"FREQ=DAILY;UNTIL=2026-01-03""#,
    );
    assert_eq!(days(&until_day), ["2026-01-01", "2026-01-02", "2026-01-03"]);
    let until_t = one(
        "UTC",
        r#""start":"2026-01-01T18:00","duration":"1h","rrule":"FREQ=DAILY;UNTIL=20260102T180000Z""#,
    );
    assert_eq!(days(&until_t), ["2026-01-01", "2026-01-02"]);
    // COUNT counts occurrences that an EXDATE removes (RFC 5545 3.8.5.3).
    let both = one(
        "UTC",
        r#""start":"2026-01-01T18:00","duration":"1h","rrule":"FREQ=DAILY;COUNT=3","exdates":["2026-01-02"]"#,
    );
    assert_eq!(days(&both), ["2026-01-01", "2026-01-03"]);
}

#[test]
fn next_windows_merges_and_orders() {
    let s = compile(
        r#"{"timezone":"UTC","windows":[
            {"start":"2026-05-01T15:00","stop":"2026-05-01T16:00"},
            {"start":"2026-05-01T11:00","stop":"2026-05-01T13:00"},
            {"start":"2026-05-01T10:00","duration":"2h"},
            {"start":"2026-05-01T13:00","duration":"1h"}
        ]}"#,
    );
    let morning = iv("2026-05-01T10:00:00Z", "2026-05-01T14:00:00Z");
    let afternoon = iv("2026-05-01T15:00:00Z", "2026-05-01T16:00:00Z");
    assert_eq!(
        s.next_windows(ts("2026-05-01T09:00:00Z"), 5),
        [morning, afternoon]
    );
    assert_eq!(
        s.next_windows(ts("2026-05-01T12:30:00Z"), 5),
        [morning, afternoon]
    );
    assert_eq!(s.next_windows(ts("2026-05-01T14:00:00Z"), 5), [afternoon]);
    assert_eq!(s.next_windows(ts("2026-05-01T09:00:00Z"), 1), [morning]);
    assert_eq!(s.next_windows(ts("2026-05-01T09:00:00Z"), 0), []);
    assert_eq!(s.next_windows(ts("2026-05-01T16:00:00Z"), 5), []);
    assert_eq!(s.active_at(ts("2026-05-01T13:00:00Z")), Some(morning));
}

#[test]
fn next_change_lands_on_each_edge() {
    let s = compile(
        r#"{"timezone":"UTC","windows":[
            {"start":"2026-05-01T10:00","duration":"2h"},
            {"start":"2026-05-01T12:00","duration":"2h"},
            {"start":"2026-05-01T15:00","duration":"1h"}
        ]}"#,
    );
    let mut t = ts("2026-05-01T00:00:00Z");
    let mut edges = vec![];
    while let Some(c) = s.next_change(t) {
        assert!(c > t);
        edges.push(s.rfc3339(c)[11..16].to_string());
        t = c;
    }
    assert_eq!(edges, ["10:00", "14:00", "15:00", "16:00"]);
    assert_eq!(
        s.next_change(ts("2026-05-01T10:00:00Z")),
        Some(ts("2026-05-01T14:00:00Z"))
    );
}

#[test]
fn an_endless_window_is_cut_at_the_horizon() {
    // 24-hour windows every day touch: one window that never closes.
    let s = one(
        "UTC",
        r#""start":"2020-01-01T00:00","duration":"24h","rrule":"FREQ=DAILY""#,
    );
    let t = ts("2026-06-15T12:34:56Z");
    assert_eq!(
        s.active_at(t),
        Some(Interval {
            start: t - HORIZON_S,
            end: t + HORIZON_S
        })
    );
    assert_eq!(s.next_change(t), None);
    assert_eq!(s.active_at(t + 1).unwrap().start, t + 1 - HORIZON_S);
    // Weekdays only: Monday 00:00 to Saturday 00:00.
    let s = one(
        "Europe/Amsterdam",
        r#""start":"2026-01-05T00:00","stop":"00:00","rrule":"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR""#,
    );
    assert_eq!(
        s.active_at(ts("2026-01-07T12:00:00Z")),
        Some(iv("2026-01-04T23:00:00Z", "2026-01-09T23:00:00Z"))
    );
}

#[test]
fn an_old_start_does_not_slow_a_query() {
    // Daily since 1990, asked about 2040: the expansion jumps to the period.
    let s = one(
        "Europe/Amsterdam",
        r#""start":"1990-01-01T18:00","duration":"1h","rrule":"FREQ=DAILY""#,
    );
    let t = ts("2040-07-01T16:30:00Z");
    assert_eq!(
        s.active_at(t),
        Some(iv("2040-07-01T16:00:00Z", "2040-07-01T17:00:00Z"))
    );
    let started = std::time::Instant::now();
    for i in 0..2000 {
        let _ = s.active_at(t + i * 250);
        let _ = s.next_change(t + i * 250);
    }
    // Mostly cache hits; generous even for a debug build on a slow machine.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn extreme_times_do_not_panic() {
    let s = one("Europe/Amsterdam", WEEKDAY_EVENINGS);
    for t in [
        i64::MIN,
        i64::MIN + 1,
        -62_135_596_800,
        0,
        253_402_300_799,
        i64::MAX - 1,
        i64::MAX,
    ] {
        assert_eq!(s.active_at(t), None, "{t}");
        let _ = s.next_change(t);
        let _ = s.next_windows(t, 3);
    }
}

#[test]
fn an_empty_schedule_is_never_active() {
    let s = compile(r#"{}"#);
    assert!(s.is_empty());
    assert_eq!(s.timezone(), "UTC");
    assert_eq!(s.active_at(0), None);
    assert_eq!(s.next_change(0), None);
    assert_eq!(s.next_windows(0, 3), []);
}

#[test]
fn validation_errors_name_the_field_and_quote_the_value() {
    let w = |window: &str| {
        format!(
            r#"{{"timezone":"Europe/Amsterdam","windows":[{{"start":"2026-01-05T18:00","duration":"1h"}},{{{window}}}]}}"#
        )
    };
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (
            r#"{"timezone":"Mars/Olympus"}"#.into(),
            "schedule.timezone",
            vec!["\"Mars/Olympus\""],
        ),
        (
            w(r#""start":"2026-01-05T18:00","duration":"1h","rrule":"FREQ=FORTNIGHTLY""#),
            "schedule.windows[1].rrule",
            vec!["\"FREQ=FORTNIGHTLY\"", "unknown frequency"],
        ),
        (
            w(r#""start":"2026-01-05T18:00","duration":"1h","rrule":"FREQ=DAILY;BYHOUR=25""#),
            "schedule.windows[1].rrule",
            vec!["\"FREQ=DAILY;BYHOUR=25\"", "\"25\""],
        ),
        (
            w(r#""start":"2026-01-05T20:00","stop":"2026-01-05T18:00","rrule":"FREQ=DAILY""#),
            "schedule.windows[1].stop",
            vec!["\"2026-01-05T18:00\"", "\"2026-01-05T20:00\"", "HH:MM"],
        ),
        (
            w(r#""start":"2026-01-05T18:00","stop":"20:00","duration":"2h""#),
            "schedule.windows[1].stop",
            vec!["\"20:00\"", "\"2h\"", "exactly one"],
        ),
        (
            w(r#""start":"2026-01-05T18:00""#),
            "schedule.windows[1]",
            vec!["\"2026-01-05T18:00\"", "stop or a duration"],
        ),
        (
            w(r#""start":"2026-01-05 six pm","duration":"1h""#),
            "schedule.windows[1].start",
            vec!["\"2026-01-05 six pm\""],
        ),
        (
            w(r#""start":"2026-01-05T18:00","stop":"25:00""#),
            "schedule.windows[1].stop",
            vec!["\"25:00\"", "wall-clock"],
        ),
        (
            w(r#""start":"2026-01-05T18:00","duration":"2 hours""#),
            "schedule.windows[1].duration",
            vec!["\"2 hours\""],
        ),
        (
            w(
                r#""start":"2026-01-05T18:00","duration":"1h","rrule":"FREQ=DAILY","exdates":["2026-01-06","Jan 7"]"#,
            ),
            "schedule.windows[1].exdates[1]",
            vec!["\"Jan 7\""],
        ),
        (
            w(r#""start":"2026-11-25T18:00","duration":"1h","rrule":"FREQ=WEEKLY;BYDAY=SA""#),
            "schedule.windows[1].start",
            vec![
                "\"2026-11-25T18:00\"",
                "Wednesday",
                "\"FREQ=WEEKLY;BYDAY=SA\"",
            ],
        ),
        (
            w(
                r#""start":"2026-11-25T18:00","duration":"1h","rrule":"FREQ=DAILY;UNTIL=2026-11-01""#,
            ),
            "schedule.windows[1].rrule",
            vec!["UNTIL is before start", "\"2026-11-25T18:00\""],
        ),
        (
            r#"{"ics_refresh_s":5}"#.into(),
            "schedule.ics_refresh_s",
            vec!["5 is outside 10..=86400"],
        ),
        (
            r#"{"ics":"ftp://example.org/cal.ics"}"#.into(),
            "schedule.ics",
            vec!["\"ftp://example.org/cal.ics\""],
        ),
    ];
    for (json, field, needles) in cases {
        let e = compile_err(&json);
        assert_eq!(e.field, field, "{json}: {e}");
        for n in needles {
            assert!(e.message.contains(n), "{json}: {e} lacks {n}");
        }
        assert!(e.to_string().starts_with(&format!("{field}: ")));
    }
}

#[test]
fn answers_do_not_depend_on_what_was_asked_before() {
    let s = one("Europe/Amsterdam", WEEKDAY_EVENINGS);
    let t0 = ts("2026-03-25T00:00:00Z");
    let times: Vec<i64> = (0..400).map(|i| t0 + i * 1931).collect();
    let forward: Vec<_> = times
        .iter()
        .map(|&t| (s.active_at(t), s.next_change(t)))
        .collect();
    let fresh = s.clone();
    let backward: Vec<_> = times
        .iter()
        .rev()
        .map(|&t| (fresh.active_at(t), fresh.next_change(t)))
        .collect();
    assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
}

mod ics {
    use super::*;

    fn with_ics(tz: &str, text: &str) -> Result<Schedule, ScheduleError> {
        let d = def(&format!(
            r#"{{"timezone":"{tz}","ics":"/var/lib/fieldcast/cal.ics"}}"#
        ));
        Schedule::compile(&d, Some(&text.replace('\n', "\r\n")))
    }

    const CALENDAR: &str = "BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Fieldcast//test//EN
BEGIN:VTIMEZONE
TZID:Europe/Amsterdam
BEGIN:STANDARD
DTSTART:19701025T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:evening@example.org
SUMMARY:Evening show\\, with a summary long enough that a producer folds
  it onto a second line
DTSTART;TZID=Europe/Amsterdam:20260323T180000
DTEND;TZID=Europe/Amsterdam:20260323T200000
RRULE:FREQ=WEEKLY;BYDAY=MO,WE;
 COUNT=6
EXDATE;TZID=Europe/Amsterdam:20260325T180000
BEGIN:VALARM
ACTION:DISPLAY
TRIGGER:-PT15M
DTSTART:20000101T000000
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:holiday@example.org
DTSTART;VALUE=DATE:20260405
SUMMARY:All day
END:VEVENT
BEGIN:VEVENT
UID:utc@example.org
DTSTART:20260410T120000Z
DURATION:PT30M
X-UNKNOWN;FOO=bar:whatever
END:VEVENT
BEGIN:VEVENT
UID:gone@example.org
STATUS:CANCELLED
DTSTART:20260411T120000Z
DURATION:PT30M
END:VEVENT
BEGIN:VEVENT
UID:floating@example.org
DTSTART:20260412T090000
DTEND:20260412T100000
END:VEVENT
BEGIN:VEVENT
UID:reminder@example.org
DTSTART:20260413T090000Z
END:VEVENT
BEGIN:VTODO
DTSTART:20260414T090000Z
END:VTODO
END:VCALENDAR
";

    #[test]
    fn imports_tzid_rrule_exdate_all_day_utc_floating_and_folded_lines() {
        // Floating and all-day times are in the schedule's zone, London
        // (+01:00 from 2026-03-29); the weekly event is in Amsterdam.
        let s = with_ics("Europe/London", CALENDAR).unwrap();
        assert_eq!(
            s.next_windows(ts("2026-03-20T00:00:00Z"), 20),
            [
                // MO,WE from Monday 23 March, six counted, the 25th excluded.
                iv("2026-03-23T17:00:00Z", "2026-03-23T19:00:00Z"),
                iv("2026-03-30T16:00:00Z", "2026-03-30T18:00:00Z"),
                iv("2026-04-01T16:00:00Z", "2026-04-01T18:00:00Z"),
                // All day 5 April, London.
                iv("2026-04-04T23:00:00Z", "2026-04-05T23:00:00Z"),
                iv("2026-04-06T16:00:00Z", "2026-04-06T18:00:00Z"),
                iv("2026-04-08T16:00:00Z", "2026-04-08T18:00:00Z"),
                iv("2026-04-10T12:00:00Z", "2026-04-10T12:30:00Z"),
                // Floating 09:00 London.
                iv("2026-04-12T08:00:00Z", "2026-04-12T09:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_moved_and_a_cancelled_instance_replace_theirs() {
        let text = "BEGIN:VCALENDAR
BEGIN:VEVENT
UID:w
DTSTART:20260105T180000Z
DURATION:PT1H
RRULE:FREQ=DAILY;COUNT=5
END:VEVENT
BEGIN:VEVENT
UID:w
RECURRENCE-ID:20260106T180000Z
DTSTART:20260106T200000Z
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
UID:w
RECURRENCE-ID:20260107T180000Z
STATUS:CANCELLED
DTSTART:20260107T180000Z
END:VEVENT
END:VCALENDAR
";
        let s = with_ics("UTC", text).unwrap();
        let starts: Vec<String> = s
            .next_windows(ts("2026-01-01T00:00:00Z"), 10)
            .iter()
            .map(|w| s.rfc3339(w.start))
            .collect();
        assert_eq!(
            starts,
            [
                "2026-01-05T18:00:00+00:00",
                "2026-01-06T20:00:00+00:00",
                "2026-01-08T18:00:00+00:00",
                "2026-01-09T18:00:00+00:00"
            ]
        );
    }

    #[test]
    fn an_unsynchronised_dtstart_is_the_first_instance() {
        // RFC 5545 3.8.5.3, "every Friday the 13th": DTSTART is not one, and
        // an EXDATE removes it.
        let text = "BEGIN:VCALENDAR
BEGIN:VEVENT
DTSTART;TZID=America/New_York:19970902T090000
DURATION:PT1H
EXDATE;TZID=America/New_York:19970902T090000
RRULE:FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13
END:VEVENT
BEGIN:VEVENT
DTSTART;TZID=America/New_York:19970903T090000
DURATION:PT1H
RRULE:FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;COUNT=2
END:VEVENT
END:VCALENDAR
";
        let s = with_ics("UTC", text).unwrap();
        let starts: Vec<i64> = s
            .next_windows(ts("1997-09-01T00:00:00Z"), 4)
            .iter()
            .map(|w| w.start)
            .collect();
        assert_eq!(
            starts,
            [
                // The second event's DTSTART counts as one of its two.
                ts("1997-09-03T13:00:00Z"),
                ts("1998-02-13T14:00:00Z"),
                ts("1998-03-13T14:00:00Z"),
                ts("1998-11-13T14:00:00Z"),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, needle) in [
            (
                "<html><body>Not found</body></html>",
                "not an iCalendar file: line 1 is not BEGIN:VCALENDAR",
            ),
            ("", "not an iCalendar file: it is empty"),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;TZID=W. Europe Standard Time:20260101T100000\nDURATION:PT1H\nEND:VEVENT\nEND:VCALENDAR",
                "line 3: DTSTART TZID \"W. Europe Standard Time\" is not an IANA time zone name",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nDURATION:PT1H\nRRULE:FREQ=SOMETIMES\nEND:VEVENT\nEND:VCALENDAR",
                "line 5: RRULE \"FREQ=SOMETIMES\"",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nDTEND:20260101T090000Z\nEND:VEVENT\nEND:VCALENDAR",
                "line 4: DTEND \"20260101T090000Z\" is before DTSTART",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026-01-01\nEND:VEVENT\nEND:VCALENDAR",
                "line 3: DTSTART \"2026-01-01\" is not a DATE",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDURATION:PT1H\nEND:VEVENT\nEND:VCALENDAR",
                "line 2: VEVENT without DTSTART",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nDURATION:PT1H\nEND:VCALENDAR",
                "line 5: END:VCALENDAR does not close BEGIN:VEVENT (line 2)",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nDURATION:PT1H\nEND:VEVENT",
                "BEGIN:VCALENDAR (line 1) is never closed",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nDTEND:20260101T110000Z\nDURATION:PT1H\nEND:VEVENT\nEND:VCALENDAR",
                "line 4: DTEND and DURATION both given",
            ),
        ] {
            let e = with_ics("UTC", text).unwrap_err();
            assert_eq!(e.field, "schedule.ics");
            assert!(e.message.contains(needle), "{text}\n=> {e}");
        }
    }
}

mod properties {
    //! `next_change` agrees with `active_at`, `active_at` agrees with an
    //! expansion written independently (with jiff's calendar arithmetic),
    //! and cached answers equal fresh ones.

    use super::*;
    use jiff::civil::{Date, DateTime};
    use jiff::{Span, ToSpan};
    use proptest::prelude::*;

    const ZONES: [&str; 5] = [
        "UTC",
        "Europe/Amsterdam",
        "America/New_York",
        "Australia/Lord_Howe", // DST of 30 minutes
        "America/Santiago",    // clocks change at midnight
    ];

    /// Rules the generated starts are always an occurrence of.
    const RULES: [&str; 9] = [
        "",
        "FREQ=DAILY",
        "FREQ=DAILY;INTERVAL=3",
        "FREQ=WEEKLY",
        "FREQ=WEEKLY;INTERVAL=2;UNTIL=2028-06-01",
        "FREQ=MONTHLY",
        "FREQ=DAILY;COUNT=5",
        "FREQ=YEARLY",
        "FREQ=HOURLY;INTERVAL=7",
    ];

    #[derive(Clone, Debug)]
    struct Gen {
        start: DateTime,
        /// Exact seconds, or a wall-clock stop (seconds of the day).
        len: Result<i64, i64>,
        rule: usize,
    }

    fn gen_window() -> impl Strategy<Value = Gen> {
        (
            0i64..(3 * 365),
            0i64..(24 * 4),
            prop_oneof![
                (60i64..(3 * 86_400)).prop_map(Ok),
                (0i64..96).prop_map(|q| Err(q * 900))
            ],
            0usize..RULES.len(),
        )
            .prop_map(|(day, quarter, len, rule)| Gen {
                start: Date::constant(2025, 1, 1)
                    .checked_add(day.days())
                    .unwrap()
                    .at((quarter / 4) as i8, (quarter % 4 * 15) as i8, 0, 0),
                len,
                rule,
            })
    }

    fn to_json(zone: &str, ws: &[Gen]) -> String {
        let windows: Vec<serde_json::Value> = ws
            .iter()
            .map(|g| {
                let mut w = json!({ "start": g.start.strftime("%Y-%m-%dT%H:%M").to_string() });
                match g.len {
                    Ok(s) => w["duration"] = json!(s.to_string()),
                    Err(tod) => {
                        w["stop"] = json!(format!("{:02}:{:02}", tod / 3600, tod / 60 % 60))
                    }
                }
                if !RULES[g.rule].is_empty() {
                    w["rrule"] = json!(RULES[g.rule]);
                }
                w
            })
            .collect();
        json!({ "timezone": zone, "windows": windows }).to_string()
    }

    fn unix(tz: &TimeZone, dt: DateTime) -> i64 {
        tz.to_ambiguous_timestamp(dt)
            .compatible()
            .unwrap()
            .as_second()
    }

    /// Whether `g` has a window holding `t`, by walking its occurrences
    /// one by one from the start.
    fn oracle(tz: &TimeZone, g: &Gen, t: i64) -> bool {
        let end_of = |start_dt: DateTime, start: i64| -> Option<i64> {
            let end = match g.len {
                Ok(s) => start + s,
                Err(tod) => {
                    let time = jiff::civil::Time::MIN.checked_add(tod.seconds()).unwrap();
                    let day = if time > start_dt.time() {
                        start_dt.date()
                    } else {
                        start_dt.date().tomorrow().unwrap()
                    };
                    unix(tz, day.to_datetime(time))
                }
            };
            (end > start).then_some(end)
        };
        let holds =
            |dt: DateTime, start: i64| end_of(dt, start).is_some_and(|e| start <= t && t < e);
        let first = unix(tz, g.start);
        if RULES[g.rule] == "FREQ=HOURLY;INTERVAL=7" {
            return (0..)
                .map(|k| first + k * 7 * 3600)
                .take_while(|&s| s <= t)
                .any(|s| holds(tz.to_datetime(Timestamp::from_second(s).unwrap()), s));
        }
        for k in 0i64.. {
            let step: Span = match RULES[g.rule] {
                "" if k > 0 => return false,
                "" => 0.days(),
                "FREQ=DAILY" => k.days(),
                "FREQ=DAILY;INTERVAL=3" => (3 * k).days(),
                "FREQ=WEEKLY" => k.weeks(),
                "FREQ=WEEKLY;INTERVAL=2;UNTIL=2028-06-01" => (2 * k).weeks(),
                "FREQ=MONTHLY" => k.months(),
                "FREQ=DAILY;COUNT=5" if k >= 5 => return false,
                "FREQ=DAILY;COUNT=5" => k.days(),
                "FREQ=YEARLY" => k.years(),
                r => unreachable!("{r}"),
            };
            let dt = g.start.checked_add(step).unwrap();
            // Months and years without that day are skipped (RFC 5545
            // 3.3.10); jiff would clamp to the month's last day instead.
            if matches!(RULES[g.rule], "FREQ=MONTHLY" | "FREQ=YEARLY") && dt.day() != g.start.day()
            {
                continue;
            }
            if RULES[g.rule].contains("UNTIL") && dt.date() > Date::constant(2028, 6, 1) {
                return false;
            }
            let s = unix(tz, dt);
            if s > t {
                return false;
            }
            if holds(dt, s) {
                return true;
            }
        }
        false
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn next_change_agrees_with_active_at(
            zone in 0usize..ZONES.len(),
            windows in prop::collection::vec(gen_window(), 1..4),
            at in 0i64..(4 * 365 * 86_400),
            probes in prop::collection::vec(0.0f64..1.0, 12),
        ) {
            let zone = ZONES[zone];
            // Hourly rules keep DTSTART's minute on the wall clock, which a
            // 30-minute DST change moves; the oracle steps exact hours.
            prop_assume!(!(zone == "Australia/Lord_Howe" && windows.iter().any(|g| RULES[g.rule].contains("HOURLY"))));
            let s = compile(&to_json(zone, &windows));
            let tz = tzdb().get(zone).unwrap();
            let t = ts("2024-07-01T00:00:00Z") + at;
            let on = |x: i64| s.active_at(x).is_some();
            let now = s.active_at(t);

            if let Some(w) = now {
                prop_assert!(w.contains(t));
                prop_assert_eq!(s.next_windows(t, 1), vec![w]);
            }
            prop_assert_eq!(now.is_some(), windows.iter().any(|g| oracle(&tz, g, t)), "t={}", t);

            let change = s.next_change(t);
            let span_end = change.unwrap_or(t + HORIZON_S);
            if let Some(c) = change {
                prop_assert!(c > t && c < t + HORIZON_S);
                prop_assert_eq!(on(c - 1), now.is_some());
                prop_assert_ne!(on(c), on(c - 1));
            }
            for p in &probes {
                let x = t + ((span_end - 1 - t) as f64 * p) as i64;
                prop_assert_eq!(on(x), now.is_some(), "x={} t={} change={:?}", x, t, change);
                // The cache warmed by other times answers as a fresh one.
                let fresh = s.clone();
                prop_assert_eq!(s.active_at(x), fresh.active_at(x));
                prop_assert_eq!(s.next_change(x), fresh.next_change(x));
            }

            let ws = s.next_windows(t, 6);
            for pair in ws.windows(2) {
                prop_assert!(pair[0].end < pair[1].start, "{:?}", ws);
            }
            for w in &ws {
                prop_assert!(w.end > t && w.start < w.end);
                prop_assert!(on(w.start) && !on(w.end) || w.end == t + HORIZON_S);
            }

            // A fresh clone, asked in another order, answers alike.
            let fresh = s.clone();
            prop_assert_eq!(fresh.next_change(t), change);
            prop_assert_eq!(fresh.active_at(t), now);
            prop_assert_eq!(fresh.next_windows(t, 6), ws);
        }
    }
}
