//! Human output: tables and lines from the contract's JSON documents.
//! Pure (time zone passed in), and lenient: a field missing or of another
//! type shows as `-`, so a newer or older device still reads well.

use jiff::Timestamp;
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::tz::{Offset, TimeZone};
use serde_json::Value;

/// Local time with the UTC offset: `2025-11-26 18:00:00 +01:00`.
pub const WITH_OFFSET: &str = "%Y-%m-%d %H:%M:%S %:z";
/// Local time to the millisecond, for streams of lines.
pub const PRECISE: &str = "%Y-%m-%d %H:%M:%S%.3f";
/// Local time to the second.
pub const PLAIN: &str = "%Y-%m-%d %H:%M:%S";

/// Unix seconds as local time in `fmt`; what cannot be a time is shown as
/// given.
pub fn time(unix: f64, tz: &TimeZone, fmt: &str) -> String {
    if !unix.is_finite() {
        return unix.to_string();
    }
    match Timestamp::from_millisecond((unix * 1000.0).round() as i64) {
        Ok(t) => t.to_zoned(tz.clone()).strftime(fmt).to_string(),
        Err(_) => unix.to_string(),
    }
}

/// A time field: unix seconds, or an RFC 3339 string.
fn time_value(v: &Value, tz: &TimeZone, fmt: &str) -> Option<String> {
    match v {
        Value::Number(n) => n.as_f64().map(|s| time(s, tz, fmt)),
        Value::String(s) => s
            .parse::<Timestamp>()
            .ok()
            .map(|t| t.to_zoned(tz.clone()).strftime(fmt).to_string()),
        _ => None,
    }
}

/// An RFC 3339 time in its own offset: schedule windows come in the
/// schedule's local time, which is what the operator planned in.
fn in_own_offset(v: &Value, fmt: &str) -> Option<String> {
    let text = v.as_str()?;
    let t: Timestamp = text.parse().ok()?;
    let offset = match Pieces::parse(text).ok()?.offset()? {
        PiecesOffset::Zulu => Offset::UTC,
        PiecesOffset::Numeric(n) => n.offset(),
        _ => return None,
    };
    Some(
        t.to_zoned(TimeZone::fixed(offset))
            .strftime(fmt)
            .to_string(),
    )
}

fn unix_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .parse::<Timestamp>()
            .ok()
            .map(|t| t.as_millisecond() as f64 / 1000.0),
        _ => None,
    }
}

/// `45s`, `12m05s`, `1h30m`, `2d4h`.
pub fn span(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m, sec) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, sec) => format!("{m}m{sec:02}s"),
        (0, h, 0, 0) => format!("{h}h"),
        (0, h, m, 0) => format!("{h}h{m:02}m"),
        (0, h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
        (d, 0, 0, _) => format!("{d}d"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

/// A bit rate in kbit/s, whole: `3120 kbps`.
pub fn kbps(v: &Value) -> String {
    match v.as_f64() {
        Some(k) => format!("{k:.0} kbps"),
        None => "- kbps".into(),
    }
}

/// `980 B`, `1.2 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A JSON value in a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// Columns padded to their widest cell, two spaces apart; the last one
/// is not padded (no trailing blanks).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// What `devices` knows of one device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Device {
    pub id: String,
    /// The retained status payload (`online`, `offline`).
    pub status: Option<String>,
    /// The retained state document.
    pub state: Option<Value>,
}

fn count(list: &Value, pred: impl Fn(&Value) -> bool) -> Option<(usize, usize)> {
    let a = list.as_array()?;
    Some((a.iter().filter(|x| pred(x)).count(), a.len()))
}

/// The fleet table of `devices`. The counts of an offline device are
/// what it last said, so they are not shown.
pub fn devices(list: &[Device]) -> String {
    if list.is_empty() {
        return "no devices".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let online = d.status.as_deref() != Some("offline");
            let s = d.state.as_ref().unwrap_or(&Value::Null);
            let frac = |c: Option<(usize, usize)>| match c {
                Some((n, of)) if online => format!("{n}/{of}"),
                _ => "-".into(),
            };
            vec![
                d.id.clone(),
                d.status.clone().unwrap_or_else(|| "?".into()),
                text(s, "board").to_string(),
                frac(count(&s["inputs"], |i| i["state"] == "running")),
                frac(count(&s["outputs"], |o| o["state"] == "live")),
                match s["healthy"].as_bool() {
                    Some(h) if online => if h { "yes" } else { "no" }.into(),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    table(
        &[
            "DEVICE",
            "STATUS",
            "BOARD",
            "INPUTS LIVE",
            "PUSHES LIVE",
            "HEALTHY",
        ],
        &rows,
    )
}

/// Why an input or push is not well, and when it is tried again.
fn detail(v: &Value, tz: &TimeZone) -> String {
    let mut parts = Vec::new();
    if let Some(r) = v["reason"].as_str() {
        parts.push(r.to_string());
    } else if let Some(e) = v["last_error"].as_str() {
        parts.push(format!("last error: {e}"));
    }
    if let Some(t) = time_value(&v["retry_at"], tz, "%H:%M:%S") {
        parts.push(format!("retry at {t}"));
    }
    if let Some(n) = v["reconnects"].as_u64().filter(|n| *n > 0) {
        parts.push(format!("{n} reconnects"));
    }
    parts.join("; ")
}

/// The state document of `state`, for people.
pub fn state(s: &Value, status: Option<&str>, tz: &TimeZone) -> String {
    let offline = status == Some("offline");
    let mut head = vec![text(s, "device").to_string()];
    head.push(status.unwrap_or("status unknown").to_string());
    match s["healthy"].as_bool() {
        Some(true) if !offline => head.push("healthy".into()),
        Some(false) if !offline => head.push("unhealthy".into()),
        _ => {}
    }
    for key in ["board", "encoder", "version"] {
        if let Some(v) = s[key].as_str() {
            head.push(format!("{key} {v}"));
        }
    }
    let mut out = vec![head.join("  ")];
    if offline {
        out.push("(offline: this is the last state it published)".into());
    }

    let inputs = s["inputs"].as_array().cloned().unwrap_or_default();
    out.push(String::new());
    if inputs.is_empty() {
        out.push("no inputs".into());
    } else {
        let rows: Vec<Vec<String>> = inputs
            .iter()
            .map(|i| {
                let format = match (i["width"].as_u64(), i["height"].as_u64()) {
                    (Some(w), Some(h)) => {
                        let mut f = format!("{w}x{h}");
                        if let Some(r) = i["framerate"].as_str() {
                            f.push_str(&format!(" {r}"));
                        }
                        if let Some(b) = i["bitrate_kbps"].as_u64() {
                            f.push_str(&format!(" {b} kbps"));
                        }
                        f
                    }
                    _ => "-".into(),
                };
                vec![
                    text(i, "name").to_string(),
                    text(i, "state").to_string(),
                    format,
                    text(i, "source").to_string(),
                    detail(i, tz),
                ]
            })
            .collect();
        out.push(table(
            &["INPUT", "STATE", "FORMAT", "SOURCE", "DETAIL"],
            &rows,
        ));
    }

    out.push(String::new());
    out.push(pushes(&s["outputs"], tz));
    out.join("\n")
}

/// A table of pushes, from the state's `outputs` or `push.list`.
pub fn pushes(list: &Value, tz: &TimeZone) -> String {
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no pushes".into();
    }
    let kinds = list.iter().any(|p| p.get("kind").is_some());
    let sent = list.iter().any(|p| p.get("bytes_sent").is_some());
    let mut headers = vec!["PUSH", "STATE"];
    if kinds {
        headers.push("KIND");
    }
    headers.extend(["STREAM", "TARGET", "ORIGIN"]);
    if sent {
        headers.push("SENT");
    }
    headers.push("DETAIL");
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let mut row = vec![text(p, "id").to_string(), text(p, "state").to_string()];
            if kinds {
                row.push(cell(&p["kind"]));
            }
            row.extend([
                text(p, "stream").to_string(),
                text(p, "target").to_string(),
                text(p, "origin").to_string(),
            ]);
            if sent {
                row.push(p["bytes_sent"].as_u64().map_or("-".into(), bytes));
            }
            row.push(detail(p, tz));
            row
        })
        .collect();
    table(&headers, &rows)
}

/// One line for what push.add/update/start/stop/remove did.
pub fn push_change(command: &str, args: &Value, result: &Value) -> String {
    let push = &result["push"];
    let id = push["id"]
        .as_str()
        .or(args["id"].as_str())
        .unwrap_or("push");
    let state = push["state"].as_str();
    let changed = result["changed"].as_bool().unwrap_or(true);
    let verb = match (command, changed) {
        ("push.add", true) => "added",
        ("push.add", false) => "already there with this definition; nothing changed",
        ("push.update", true) => "updated",
        ("push.update", false) => "unchanged",
        ("push.start", true) => "started",
        ("push.start", false) => "already running",
        ("push.stop", true) => "stopped",
        ("push.stop", false) => "already stopped",
        ("push.remove", _) => "removed",
        (_, true) => "changed",
        (_, false) => "unchanged",
    };
    let mut line = format!("{id}: {verb}");
    // The state says more than the verb only while it is not `stopped`.
    if let Some(s) = state.filter(|s| *s != "stopped" && command != "push.remove") {
        line.push_str(&format!(" ({s})"));
    }
    if matches!(command, "push.add" | "push.update")
        && changed
        && let (Some(stream), Some(target)) = (push["stream"].as_str(), push["target"].as_str())
    {
        line.push_str(&format!(": {stream} -> {target}"));
    }
    line
}

/// The windows of `schedule.preview`: `result` is a list of windows, or an
/// object holding one in `windows` (with `active`: whether one is open
/// now); a window has `start` and `end` (RFC 3339, shown in their own
/// offset, or unix seconds, shown in local time) and maybe `duration_s`,
/// or is a `[start, end]` pair.
pub fn windows(result: &Value, tz: &TimeZone) -> String {
    let list = result
        .as_array()
        .or_else(|| result["windows"].as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = if list.is_empty() {
        "no upcoming window".to_string()
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|w| {
                let (start, end) = match w {
                    Value::Array(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
                    _ => (&w["start"], &w["end"]),
                };
                let show = |v: &Value| {
                    in_own_offset(v, WITH_OFFSET)
                        .or_else(|| time_value(v, tz, WITH_OFFSET))
                        .unwrap_or_else(|| cell(v))
                };
                let duration = match (w["duration_s"].as_f64(), unix_of(start), unix_of(end)) {
                    (Some(d), _, _) => span(d),
                    (None, Some(a), Some(b)) => span(b - a),
                    (None, Some(_), None) if end.is_null() => "open".into(),
                    _ => "-".into(),
                };
                vec![show(start), show(end), duration]
            })
            .collect();
        table(&["START", "END", "DURATION"], &rows)
    };
    match result["active"].as_bool() {
        Some(true) => out.push_str("\nnow: inside a window"),
        Some(false) => out.push_str("\nnow: outside every window"),
        None => {}
    }
    out
}

/// One line for what var.set/var.remove did.
pub fn var_change(command: &str, args: &Value, result: &Value) -> String {
    let name = args["name"].as_str().unwrap_or("variable");
    let changed = result["changed"].as_bool().unwrap_or(true);
    match (command, changed) {
        ("var.remove", true) => format!("{name}: removed"),
        ("var.remove", false) => format!("{name}: was not set"),
        (_, false) => format!("{name}: unchanged"),
        _ => match &result["variable"]["value"] {
            Value::String(v) => format!("{name}: set to {v}"),
            _ => format!("{name}: set"),
        },
    }
}

/// `push.history`: one line per entry, oldest first.
pub fn history(result: &Value, tz: &TimeZone) -> String {
    let Some(list) = result.as_array() else {
        return generic(result, tz);
    };
    if list.is_empty() {
        return "no history".into();
    }
    if !list.iter().all(|e| e.get("what").is_some()) {
        return generic(result, tz);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                time_value(&e["ts"], tz, PLAIN).unwrap_or_else(|| cell(&e["ts"])),
                cell(&e["push"]),
                cell(&e["what"]),
                if e["detail"].is_null() {
                    String::new()
                } else {
                    cell(&e["detail"])
                },
            ]
        })
        .collect();
    table(&["TIME", "PUSH", "WHAT", "DETAIL"], &rows)
}

/// `var.list`: the user variables, the streams, then the built-in ones.
pub fn vars(result: &Value, tz: &TimeZone) -> String {
    let Some(vars) = result["variables"].as_object() else {
        return generic(result, tz);
    };
    let mut out = Vec::new();
    if vars.is_empty() {
        out.push("no variables".to_string());
    } else {
        let rows: Vec<Vec<String>> = vars
            .iter()
            .map(|(name, v)| {
                let value = if v.is_object() { &v["value"] } else { v };
                vec![
                    name.clone(),
                    cell(value),
                    cell(&v["source"]),
                    cell(&v["origin"]),
                    v["error"].as_str().unwrap_or("").to_string(),
                ]
            })
            .collect();
        out.push(table(
            &["VARIABLE", "VALUE", "SOURCE", "ORIGIN", "ERROR"],
            &rows,
        ));
    }
    if let Some(streams) = result["streams"].as_object().filter(|s| !s.is_empty()) {
        let rows: Vec<Vec<String>> = streams
            .iter()
            .map(|(name, st)| {
                vec![
                    name.clone(),
                    cell(&st["input_status"]),
                    match st["live"].as_bool() {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "-".into(),
                    },
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(&["STREAM", "INPUT", "LIVE"], &rows));
    }
    if let Some(builtin) = result["builtin"].as_object().filter(|b| !b.is_empty()) {
        let rows: Vec<Vec<String>> = builtin
            .iter()
            .map(|(name, v)| vec![name.clone(), cell(v)])
            .collect();
        out.push(String::new());
        out.push(table(&["BUILT-IN", "VALUE"], &rows));
    }
    out.join("\n")
}

/// Any other result: `ok` for nothing, `key: value` lines for a flat
/// object, a table for a list of objects, indented JSON otherwise. Fields
/// that hold times (`ts`, `since`, `at`, `start`, `end`, `retry_at`) are
/// shown as local times.
/// `stream.list`: one row per stream.
pub fn streams(result: &Value) -> String {
    let Some(list) = result.as_array() else {
        return result.to_string();
    };
    let yes_no = |v: &Value| match v.as_bool() {
        Some(true) => "yes".to_string(),
        Some(false) => "no".to_string(),
        None => "-".to_string(),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                cell(&s["name"]),
                if s["template"] == true {
                    "template".into()
                } else if s["wildcard"].is_string() {
                    format!("wildcard of {}", cell(&s["base"]))
                } else {
                    "input".into()
                },
                yes_no(&s["running"]),
                yes_no(&s["live"]),
            ]
        })
        .collect();
    table(&["STREAM", "KIND", "RUNNING", "LIVE"], &rows)
}

/// `stream.start` / `stream.stop`: what happened to the stream.
pub fn stream_change(command: &str, result: &Value) -> String {
    let name = result["stream"].as_str().unwrap_or("?");
    match (command, result["changed"].as_bool()) {
        (_, Some(false)) => format!("{name}: unchanged"),
        ("stream.start", _) => format!("{name}: started"),
        _ => format!("{name}: stopped"),
    }
}

pub fn generic(v: &Value, tz: &TimeZone) -> String {
    let scalar = |v: &Value| !v.is_object() && !v.is_array();
    let show = |key: &str, v: &Value| {
        let timed = matches!(
            key,
            "ts" | "since" | "at" | "start" | "end" | "retry_at" | "time"
        );
        timed
            .then(|| time_value(v, tz, PLAIN))
            .flatten()
            .unwrap_or_else(|| cell(v))
    };
    match v {
        Value::Null => "ok".into(),
        Value::Object(o) if o.is_empty() => "ok".into(),
        // Flat objects, where a list of plain values reads as one line
        // (`config.import`: `added  a, b`).
        Value::Object(o)
            if o.values()
                .all(|v| scalar(v) || v.as_array().is_some_and(|a| a.iter().all(scalar))) =>
        {
            let width = o.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            o.iter()
                .map(|(k, v)| {
                    let shown = match v.as_array() {
                        Some(a) if a.is_empty() => "-".to_string(),
                        Some(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
                        None => show(k, v),
                    };
                    format!("{k:width$}  {shown}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) if a.iter().all(Value::is_object) => {
            let mut keys: Vec<&str> = Vec::new();
            for item in a {
                for k in item.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !keys.contains(&k.as_str()) {
                        keys.push(k);
                    }
                }
            }
            // Without serde_json's `preserve_order` the keys come sorted;
            // what names a row goes first.
            const FIRST: [&str; 4] = ["id", "name", "trigger", "push"];
            keys.sort_by_key(|k| FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()));
            let headers: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let rows: Vec<Vec<String>> = a
                .iter()
                .map(|item| keys.iter().map(|k| show(k, &item[*k])).collect())
                .collect();
            table(&headers, &rows)
        }
        Value::Array(a) if a.iter().all(scalar) => {
            a.iter().map(cell).collect::<Vec<_>>().join("\n")
        }
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tz() -> TimeZone {
        TimeZone::fixed(jiff::tz::offset(1))
    }

    #[test]
    fn times_and_spans() {
        // 2026-01-01 00:00:00 UTC
        assert_eq!(
            time(1_767_225_600.25, &tz(), WITH_OFFSET),
            "2026-01-01 01:00:00 +01:00"
        );
        assert_eq!(
            time(1_767_225_600.25, &tz(), PRECISE),
            "2026-01-01 01:00:00.250"
        );
        assert_eq!(span(45.0), "45s");
        assert_eq!(span(725.0), "12m05s");
        assert_eq!(span(5400.0), "1h30m");
        assert_eq!(span(3600.0), "1h");
        assert_eq!(span(90_000.0), "1d1h");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_240_784), "1.2 MB");
    }

    #[test]
    fn tables_align_and_have_no_trailing_blanks() {
        let t = table(
            &["A", "BEE", "C"],
            &[
                vec!["long-one".into(), "x".into(), "".into()],
                vec!["s".into(), "yy".into(), "z".into()],
            ],
        );
        assert_eq!(t, "A         BEE  C\nlong-one  x\ns         yy   z");
    }

    fn sample_state() -> Value {
        json!({
            "device": "enc-07", "version": "0.1.0", "board": "generic-x86-64",
            "encoder": "x264enc", "healthy": false,
            "inputs": [{"name": "main", "state": "running", "since": 1.0,
                        "source": "test-pattern (smpte)", "width": 640, "height": 360,
                        "framerate": "30/1", "bitrate_kbps": 800}],
            "outputs": [
                {"id": "program", "stream": "main", "target": "srt://0.0.0.0:9000?mode=listener",
                 "origin": "config", "running": true, "state": "live", "reconnects": 0},
                {"id": "backup", "stream": "main", "target": "srt://h:1?streamid=***",
                 "origin": "mqtt", "running": true, "state": "backoff",
                 "reason": "connection refused", "retry_at": 1_767_225_600.0, "reconnects": 2}
            ]
        })
    }

    #[test]
    fn fleet_table() {
        let t = devices(&[
            Device {
                id: "enc-07".into(),
                status: Some("online".into()),
                state: Some(sample_state()),
            },
            Device {
                id: "enc-08".into(),
                status: Some("offline".into()),
                state: Some(sample_state()),
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("DEVICE  STATUS   BOARD"), "{t}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["enc-07", "online", "generic-x86-64", "1/1", "1/2", "no"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["enc-08", "offline", "generic-x86-64", "-", "-", "-"]
        );
        assert_eq!(devices(&[]), "no devices");
    }

    #[test]
    fn state_for_people() {
        let t = state(&sample_state(), Some("online"), &tz());
        assert!(
            t.starts_with("enc-07  online  unhealthy  board generic-x86-64"),
            "{t}"
        );
        assert!(t.contains("640x360 30/1 800 kbps"), "{t}");
        let backup = t.lines().find(|l| l.starts_with("backup")).unwrap();
        assert!(backup.contains("backoff"), "{backup}");
        assert!(backup.contains("srt://h:1?streamid=***"), "{backup}");
        assert!(
            backup.contains("connection refused; retry at 01:00:00; 2 reconnects"),
            "{backup}"
        );
        let t = state(&json!({"device": "x"}), Some("offline"), &tz());
        assert!(t.contains("last state") && t.contains("no pushes"), "{t}");
    }

    #[test]
    fn push_changes() {
        let r = json!({"changed": true, "push": {"id": "b", "state": "connecting",
                       "stream": "main", "target": "srt://:9001?mode=listener"}});
        assert_eq!(
            push_change("push.add", &json!({}), &r),
            "b: added (connecting): main -> srt://:9001?mode=listener"
        );
        let r = json!({"changed": false, "push": {"id": "b", "state": "stopped"}});
        assert_eq!(
            push_change("push.stop", &json!({}), &r),
            "b: already stopped"
        );
        let r = json!({"changed": true, "push": {"id": "b", "state": "connecting"}});
        assert_eq!(
            push_change("push.start", &json!({}), &r),
            "b: started (connecting)"
        );
        assert_eq!(
            push_change(
                "push.remove",
                &json!({"id": "b"}),
                &json!({"changed": true})
            ),
            "b: removed"
        );
    }

    #[test]
    fn schedule_windows_in_the_schedules_own_offset() {
        let t = windows(
            &json!({"id": "evening", "active": false, "windows": [
                {"start": "2026-03-06T23:00:00-05:00", "end": "2026-03-07T01:00:00-05:00",
                 "start_unix": 1_772_856_000, "end_unix": 1_772_863_200, "duration_s": 7200}]}),
            &tz(),
        );
        assert_eq!(
            t,
            "START                       END                         DURATION\n\
             2026-03-06 23:00:00 -05:00  2026-03-07 01:00:00 -05:00  2h\n\
             now: outside every window"
        );
    }

    #[test]
    fn var_changes() {
        let args = json!({"name": "mode", "value": "on-air"});
        let r = json!({"changed": true, "variable": {"source": "static", "value": "on-air"}});
        assert_eq!(var_change("var.set", &args, &r), "mode: set to on-air");
        let list = serde_json::json!([
            {"name": "cam", "base": "cam", "wildcard": null, "template": true, "running": false, "live": false},
            {"name": "cam+2", "base": "cam", "wildcard": "2", "template": false, "running": true, "live": true}
        ]);
        let t = streams(&list);
        assert!(
            t.contains("cam+2") && t.contains("wildcard of cam") && t.contains("template"),
            "{t}"
        );
        assert_eq!(
            stream_change(
                "stream.start",
                &serde_json::json!({"changed": true, "stream": "cam+2"})
            ),
            "cam+2: started"
        );
        let r = json!({"changed": false});
        assert_eq!(var_change("var.set", &args, &r), "mode: unchanged");
        let r = json!({"changed": true});
        assert_eq!(var_change("var.remove", &args, &r), "mode: removed");
    }

    #[test]
    fn history_and_vars() {
        let t = history(
            &json!([{"seq": 3, "ts": 1_767_225_600.0, "push": "backup", "what": "start", "detail": "srt://h:1"},
                    {"seq": 9, "ts": 1_767_225_660.0, "push": "backup", "what": "live", "detail": null}]),
            &tz(),
        );
        assert_eq!(
            t,
            "TIME                 PUSH    WHAT   DETAIL\n\
             2026-01-01 01:00:00  backup  start  srt://h:1\n\
             2026-01-01 01:01:00  backup  live"
        );
        assert_eq!(history(&json!([]), &tz()), "no history");
        let t = vars(
            &json!({"variables": {
                        "mode": {"value": "on-air", "source": "static", "origin": "mqtt"},
                        "slot": {"value": null, "source": "url", "error": "refused", "origin": "mqtt"}},
                    "builtin": {"device": "enc-07"},
                    "streams": {"main": {"input_status": "running", "live": true}}}),
            &tz(),
        );
        assert_eq!(
            t,
            "VARIABLE  VALUE   SOURCE  ORIGIN  ERROR\n\
             mode      on-air  static  mqtt\n\
             slot      -       url     mqtt    refused\n\
             \n\
             STREAM  INPUT    LIVE\n\
             main    running  yes\n\
             \n\
             BUILT-IN  VALUE\n\
             device    enc-07"
        );
    }

    #[test]
    fn schedule_windows() {
        let t = windows(
            &json!({"windows": [{"start": 1_767_225_600, "end": 1_767_231_000},
                                 {"start": "2026-01-02T00:00:00Z", "end": null}]}),
            &tz(),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].starts_with("2026-01-01 01:00:00 +01:00  2026-01-01 02:30:00 +01:00  1h30m"),
            "{t}"
        );
        // Unix seconds in local time; RFC 3339 in its own offset.
        assert!(
            lines[2].starts_with("2026-01-02 00:00:00 +00:00") && lines[2].ends_with("open"),
            "{t}"
        );
        assert_eq!(windows(&json!([]), &tz()), "no upcoming window");
    }

    #[test]
    fn generic_results() {
        assert_eq!(generic(&Value::Null, &tz()), "ok");
        assert_eq!(
            generic(
                &json!({"changed": true, "added": ["a", "b"], "removed": []}),
                &tz()
            ),
            "added    a, b\nchanged  true\nremoved  -"
        );
        assert_eq!(
            generic(&json!({"name": "mode", "value": "live"}), &tz()),
            "name   mode\nvalue  live"
        );
        let t = generic(
            &json!([{"id": "b", "event": "started", "ts": 1_767_225_600},
                    {"id": "b", "event": "stopped", "reason": "operator"}]),
            &tz(),
        );
        assert_eq!(
            t,
            "ID  EVENT    TS                   REASON\n\
             b   started  2026-01-01 01:00:00  -\n\
             b   stopped  -                    operator"
        );
    }
}
