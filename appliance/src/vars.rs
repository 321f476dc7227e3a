//! Variables: built-in ones (device, stream, date and time parts, uptime,
//! board, input status), static ones, and ones refreshed at an interval from
//! a command's output or a URL's body; and `$name` / `${name}` substitution
//! in targets, paths and rules.
//!
//! Substitution is pure. The refreshing sources run in their own tasks
//! ([`spawn_source`]) and report to the controller, which owns the values:
//! a source that fails keeps its last value and raises an event.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{ConfigError, field_at};

/// Names the daemon fills in itself; none can be defined by a user.
pub const BUILTINS: &[&str] = &[
    "device",
    "board",
    "stream",
    "basename",
    "wildcard",
    "pluswildcard",
    "push",
    "input_status",
    "uptime",
    "unix",
    "datetime",
    "date",
    "time",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "wday",
    "yday",
    "week",
];

/// Most bytes a source's value may have; longer output is an error, not a
/// silently truncated value.
pub const MAX_VALUE: usize = 64 * 1024;

/// A user variable, from the config file (`[[variables]]`) or `var.set`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VarDef {
    pub name: String,
    /// A static value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A program and its arguments, run without a shell; its standard
    /// output (trailing newline removed) is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// An http(s) URL; the body of a 2xx answer is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seconds between refreshes of a command or URL.
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// How long a command or a request may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// The value is a secret (a stream key used as `streamid=$key`): shown
    /// as `***` by `var.list` and `config.export`, like a passphrase.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

fn default_interval() -> u64 {
    60
}
fn default_timeout() -> u64 {
    5000
}

/// Where a variable's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Static(String),
    Command(Vec<String>),
    Url(String),
}

impl VarDef {
    pub fn source(&self) -> Source {
        match (&self.value, &self.command, &self.url) {
            (_, Some(c), _) => Source::Command(c.clone()),
            (_, _, Some(u)) => Source::Url(u.clone()),
            (v, _, _) => Source::Static(v.clone().unwrap_or_default()),
        }
    }

    /// `at` is the field path (`variables[2]`, or empty for a command).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let field = |f: &str| field_at(at, f);
        check_var_name(&field("name"), &self.name)?;
        if BUILTINS.contains(&self.name.as_str()) {
            return Err(ConfigError::new(
                field("name"),
                format!("'{}' is a built-in variable", self.name),
            ));
        }
        let sources = [
            self.value.is_some(),
            self.command.is_some(),
            self.url.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            return Err(ConfigError::new(
                field("value"),
                format!(
                    "variable '{}' needs exactly one of value, command, url",
                    self.name
                ),
            ));
        }
        if let Some(cmd) = &self.command
            && cmd.first().is_none_or(|p| p.is_empty())
        {
            return Err(ConfigError::new(
                field("command"),
                "must name a program: [\"/path/to/program\", \"arg\", …]",
            ));
        }
        if let Some(u) = &self.url {
            check_http_url(&field("url"), u)?;
        }
        if self.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
            return Err(ConfigError::new(
                field("value"),
                format!("is longer than {MAX_VALUE} bytes"),
            ));
        }
        if !(1..=86_400).contains(&self.interval_s) {
            return Err(ConfigError::new(
                field("interval_s"),
                format!("{} is outside 1..=86400", self.interval_s),
            ));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                field("timeout_ms"),
                format!("{} is outside 100..=60000", self.timeout_ms),
            ));
        }
        Ok(())
    }
}

pub fn check_var_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "'{}' is not a variable name (a letter or '_', then letters, digits, '_'; at most 64)",
                name.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// An http(s) URL, quoted in errors without its user information or query
/// (either may hold a token).
pub fn check_http_url(field: &str, text: &str) -> Result<url::Url, ConfigError> {
    let shown = shown_url(text);
    let u = url::Url::parse(text)
        .map_err(|e| ConfigError::new(field, format!("'{shown}' is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            field,
            format!("'{shown}' must be an http:// or https:// URL"),
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(field, format!("'{shown}' has no host")));
    }
    Ok(u)
}

/// A URL as it may be shown: no user information, no query.
pub fn shown_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let had_query = u.query().is_some();
            u.set_query(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => text
            .split(['?', '@'])
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Replaces `$name` and `${name}` with the values `lookup` gives; `$$` is a
/// literal `$`. A `$` not followed by a name is kept as it is. A name that
/// `lookup` does not know is an error naming it: a target must not be
/// dialled with a hole in it.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UnsetVariable> {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            // Copy up to the next `$` in one go (keeps UTF-8 intact).
            let next = text[i..].find('$').map_or(text.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let rest = &text[i + 1..];
        if rest.starts_with('$') {
            out.push('$');
            i += 2;
            continue;
        }
        let (name, used) = if let Some(inner) = rest.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&rest[..len], len)
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if used == 0 || !valid {
            out.push('$');
            i += 1;
            continue;
        }
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None => return Err(UnsetVariable(name.to_string())),
        }
        i += 1 + used;
    }
    Ok(out)
}

/// [`substitute`] for a target URL: values filled into the query (after
/// the first `?`) have `%` and `&` percent-encoded, so a stream key holding
/// an `&` stays one option's value instead of cutting the query in two
/// (the target parser decodes it back, as libsrt does).
pub fn substitute_target(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UnsetVariable> {
    let Some((head, query)) = text.split_once('?') else {
        return substitute(text, lookup);
    };
    let encoded = |name: &str| lookup(name).map(|v| v.replace('%', "%25").replace('&', "%26"));
    Ok(format!(
        "{}?{}",
        substitute(head, lookup)?,
        substitute(query, &encoded)?
    ))
}

/// Fills in a push's target when it starts. A recording keeps its
/// per-segment variables (`$datetime`, `$segment`, …) as `${name}`: they
/// are filled in at each segment's first frame.
pub fn substitute_push_target(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UnsetVariable> {
    if !fieldcast_media::record::RecordTarget::is_recording(text) {
        return substitute_target(text, lookup);
    }
    let keep = |name: &str| {
        if fieldcast_media::record::SEGMENT_VARIABLES.contains(&name) {
            Some(format!("${{{name}}}"))
        } else {
            lookup(name)
        }
    };
    substitute(text, &keep)
}

/// Names one segment of a recording: the time variables at `at` in `tz`
/// and `$segment` (its number, from 1).
pub fn segment_name(
    template: &str,
    at: std::time::SystemTime,
    index: u64,
    tz: &jiff::tz::TimeZone,
) -> Result<String, String> {
    let now = jiff::Timestamp::try_from(at).map_err(|e| e.to_string())?;
    let clock = time_builtins(now, tz);
    let look = |name: &str| {
        if name == "segment" {
            Some(index.to_string())
        } else {
            clock.get(name).cloned()
        }
    };
    substitute(template, &look).map_err(|e| e.to_string())
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("variable ${0} is not set")]
pub struct UnsetVariable(pub String);

/// The value of one variable as `var.list` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VarValue {
    pub value: Option<String>,
    /// `builtin`, `static`, `command` or `url`.
    pub source: &'static str,
    /// Unix seconds of the last successful refresh (sourced variables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<f64>,
    /// Why the last refresh failed, while it keeps failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The stream-independent built-ins at one instant, in the device's zone.
pub fn time_builtins(
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> BTreeMap<&'static str, String> {
    let z = now.to_zoned(tz.clone());
    let mut m = BTreeMap::new();
    m.insert("unix", now.as_second().to_string());
    m.insert("datetime", z.strftime("%Y.%m.%d.%H.%M.%S").to_string());
    m.insert("date", z.strftime("%Y-%m-%d").to_string());
    m.insert("time", z.strftime("%H:%M:%S").to_string());
    m.insert("year", z.strftime("%Y").to_string());
    m.insert("month", z.strftime("%m").to_string());
    m.insert("day", z.strftime("%d").to_string());
    m.insert("hour", z.strftime("%H").to_string());
    m.insert("minute", z.strftime("%M").to_string());
    m.insert("second", z.strftime("%S").to_string());
    // ISO weekday: 1 = Monday … 7 = Sunday.
    m.insert("wday", z.weekday().to_monday_one_offset().to_string());
    m.insert("yday", z.day_of_year().to_string());
    m.insert("week", z.date().iso_week_date().week().to_string());
    m
}

/// The parts of a stream name (`name+suffix` wildcard streams) as
/// MistServer names them: `basename` is `name`, `wildcard` is `suffix`,
/// `pluswildcard` is `+suffix` (empty for a plain stream).
pub fn stream_parts(stream: &str) -> [(&'static str, String); 4] {
    let (base, wild) = stream.split_once('+').unwrap_or((stream, ""));
    [
        ("stream", stream.to_string()),
        ("basename", base.to_string()),
        ("wildcard", wild.to_string()),
        (
            "pluswildcard",
            if wild.is_empty() {
                String::new()
            } else {
                format!("+{wild}")
            },
        ),
    ]
}

/// What a source task reports.
#[derive(Debug)]
pub struct Refreshed {
    pub name: String,
    /// The definition it ran, so a report from a replaced source is ignored.
    pub def: VarDef,
    pub result: Result<String, String>,
}

/// Runs a command or URL variable: once at once, then every `interval_s`.
/// The task ends when the receiver is gone or it is aborted.
pub fn spawn_source(
    def: VarDef,
    http: reqwest::Client,
    tx: mpsc::UnboundedSender<Refreshed>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(def.interval_s));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let timeout = Duration::from_millis(def.timeout_ms);
            let result = match def.source() {
                Source::Command(argv) => run_command(&argv, None, timeout).await,
                Source::Url(u) => fetch_url(&http, &u, timeout, MAX_VALUE).await,
                Source::Static(_) => return,
            };
            let msg = Refreshed {
                name: def.name.clone(),
                def: def.clone(),
                result,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    })
}

/// Runs a program without a shell, with `input` on its standard input, and
/// returns its standard output (trailing line break removed). Killed when
/// `timeout` passes. A non-zero exit is an error carrying the first line of
/// its standard error.
pub async fn run_command(
    argv: &[String],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let program = &argv[0];
    let mut child = tokio::process::Command::new(program)
        .args(&argv[1..])
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let stdin = child.stdin.take();
    let input = input.map(<[u8]>::to_vec);
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        // Write and read at once: a program that answers before reading all
        // of a large input must not deadlock against us.
        let write = async {
            if let (Some(mut w), Some(data)) = (stdin, input) {
                let _ = w.write_all(&data).await;
            }
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            let _ = (&mut stdout)
                .take(MAX_VALUE as u64 + 1)
                .read_to_end(&mut out)
                .await;
        };
        let read_err = async {
            let _ = (&mut stderr).take(4096).read_to_end(&mut err).await;
        };
        tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{program}: no answer within {} ms", timeout.as_millis()))?;
    let status = status.map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        let first = String::from_utf8_lossy(&err)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(format!(
            "{program} exited with {status}{}",
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        ));
    }
    value_of(out, program, MAX_VALUE)
}

/// GETs a URL and returns the body of a 2xx answer, of at most `max`
/// bytes: the body is read as it comes and refused once it is longer, so a
/// wrong URL (a video, an endless stream) cannot fill the memory.
pub async fn fetch_url(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    max: usize,
) -> Result<String, String> {
    let shown = shown_url(url);
    let resp = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", reqwest_reason(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{shown}: HTTP {status}"));
    }
    let body = read_capped(resp, max, &shown).await?;
    value_of(body, &shown, max)
}

/// The body of a response, refused past `max` bytes.
pub async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
    shown: &str,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("{shown}: answer is longer than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{shown}: {}", reqwest_reason(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("{shown}: answer is longer than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost cause of a request error, without the URL (which may
/// carry a token in its query).
pub fn reqwest_reason(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect ({inner})")
    } else {
        inner.to_string()
    }
}

fn value_of(bytes: Vec<u8>, what: &str, max: usize) -> Result<String, String> {
    if bytes.len() > max {
        return Err(format!("{what}: answer is longer than {max} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{what}: answer is not UTF-8"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "stream" => Some("main".into()),
            "device" => Some("enc-01".into()),
            "empty" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitution() {
        let s = |t: &str| substitute(t, &vars);
        assert_eq!(
            s("srt://h:1?streamid=$stream").unwrap(),
            "srt://h:1?streamid=main"
        );
        assert_eq!(
            s("/rec/${device}_${stream}.ts").unwrap(),
            "/rec/enc-01_main.ts"
        );
        assert_eq!(s("a$$b").unwrap(), "a$b");
        assert_eq!(s("cost $5 and $").unwrap(), "cost $5 and $");
        assert_eq!(s("${unclosed").unwrap(), "${unclosed");
        assert_eq!(s("x${empty}y").unwrap(), "xy");
        assert_eq!(s("ünï$stream→").unwrap(), "ünïmain→");
        assert_eq!(s("$nope/x"), Err(UnsetVariable("nope".into())));
        assert_eq!(
            s("${nope}").unwrap_err().to_string(),
            "variable $nope is not set"
        );
    }

    #[test]
    fn a_recording_keeps_its_segment_variables_until_each_segment() {
        let look = |n: &str| match n {
            "stream" => Some("main".to_string()),
            "datetime" => Some("NOW".to_string()),
            _ => None,
        };
        let t = substitute_push_target("/rec/$stream/$datetime-${segment}.ts?segment=10", &look)
            .unwrap();
        assert_eq!(t, "/rec/main/${datetime}-${segment}.ts?segment=10");
        let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
        let name = segment_name("/rec/main/${datetime}-${segment}.ts", at, 3, &tz).unwrap();
        assert_eq!(name, "/rec/main/2026.09.21.16.13.20-3.ts");
    }

    #[test]
    fn values_in_a_target_query_stay_one_value() {
        let look = |n: &str| match n {
            "host" => Some("ingest.example".to_string()),
            "key" => Some("a&b%c".to_string()),
            _ => None,
        };
        let t = substitute_target("srt://$host:9000?streamid=$key&latency=200", &look).unwrap();
        assert_eq!(
            t,
            "srt://ingest.example:9000?streamid=a%26b%25c&latency=200"
        );
        let parsed = fieldcast_media::output::Target::parse(&t).unwrap();
        let fieldcast_media::output::Target::Srt(srt) = parsed else {
            panic!("an SRT target")
        };
        assert_eq!(srt.streamid.as_deref(), Some("a&b%c"));
        assert_eq!(
            substitute_target("srt://$host:1", &look).unwrap(),
            "srt://ingest.example:1"
        );
    }

    #[test]
    fn definitions_are_checked() {
        let d = |json: &str| {
            serde_json::from_str::<VarDef>(json)
                .unwrap()
                .validate("variables[0]")
        };
        assert!(d(r#"{"name":"mode","value":"on"}"#).is_ok());
        assert!(d(r#"{"name":"onair","command":["/bin/cat","/tmp/x"],"interval_s":2}"#).is_ok());
        let e = d(r#"{"name":"stream","value":"x"}"#).unwrap_err();
        assert_eq!(e.field, "variables[0].name");
        let e = d(r#"{"name":"9x","value":"x"}"#).unwrap_err();
        assert!(e.message.contains("'9x'"), "{e}");
        let e = d(r#"{"name":"a","value":"x","url":"http://h/"}"#).unwrap_err();
        assert!(e.message.contains("exactly one"), "{e}");
        let e = d(r#"{"name":"a","url":"ftp://user:pw@h/x?token=s3cret"}"#).unwrap_err();
        assert_eq!(e.field, "variables[0].url");
        assert!(
            !e.message.contains("s3cret") && !e.message.contains("pw"),
            "{e}"
        );
        let e = d(r#"{"name":"a","command":[]}"#).unwrap_err();
        assert_eq!(e.field, "variables[0].command");
        let e = d(r#"{"name":"a","url":"http://h/","interval_s":0}"#).unwrap_err();
        assert_eq!(e.field, "variables[0].interval_s");
    }

    #[test]
    fn time_parts_follow_the_zone() {
        let t: jiff::Timestamp = "2026-03-29T00:30:00Z".parse().unwrap();
        let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
        let m = time_builtins(t, &tz);
        assert_eq!(m["hour"], "01");
        assert_eq!(m["datetime"], "2026.03.29.01.30.00");
        assert_eq!(m["wday"], "7");
        // After the spring change (02:00 → 03:00 local at 01:00 UTC).
        let m = time_builtins("2026-03-29T01:30:00Z".parse().unwrap(), &tz);
        assert_eq!(m["hour"], "03");
        assert_eq!(m["week"], "13");
    }

    #[test]
    fn stream_name_parts() {
        let p = stream_parts("cam+north");
        assert_eq!(p[1].1, "cam");
        assert_eq!(p[2].1, "north");
        assert_eq!(p[3].1, "+north");
        assert_eq!(stream_parts("main")[3].1, "");
    }

    #[tokio::test]
    async fn commands_run_without_a_shell() {
        let t = Duration::from_secs(5);
        let v = run_command(&["/bin/echo".into(), "a;b $HOME".into()], None, t)
            .await
            .unwrap();
        assert_eq!(v, "a;b $HOME");
        let v = run_command(&["/bin/cat".into()], Some(b"in\n"), t)
            .await
            .unwrap();
        assert_eq!(v, "in");
        let e = run_command(
            &[
                "/bin/sh".into(),
                "-c".into(),
                "echo boom >&2; exit 3".into(),
            ],
            None,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("boom"), "{e}");
        let e = run_command(
            &["/bin/sleep".into(), "5".into()],
            None,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(e.contains("no answer within 200 ms"), "{e}");
        let e = run_command(&["/nonexistent/x".into()], None, t)
            .await
            .unwrap_err();
        assert!(e.contains("/nonexistent/x"), "{e}");
    }
}
