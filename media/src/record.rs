//! Recording targets and retention: the decisions of a recording output,
//! with no I/O. The writing itself is in `output/recorder.rs`.
//!
//! A recording target is a path template of segmented MPEG-TS files,
//! written as an absolute path or a `file://` URL with options:
//!
//! `/data/rec/$stream/$datetime.ts?segment=60&max_age=7d&max_total=20G&min_free=2G`
//!
//! Variables that are not about time (`$stream`, `$device`, …) are filled in
//! when the push starts; the time variables (`$datetime`, `$date`, `$unix`,
//! …) and `$segment` are filled in per segment, at the segment's first
//! frame. Retention applies to the `.ts` files under the template's root
//! (the directory part before the first variable), oldest first.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::Error;

/// Variables a recording fills in per segment, not at push start.
pub const SEGMENT_VARIABLES: [&str; 14] = [
    "datetime", "date", "time", "unix", "year", "month", "day", "hour", "minute", "second", "wday",
    "yday", "week", "segment",
];

const DEFAULT_SEGMENT: Duration = Duration::from_secs(60);
const MAX_SEGMENT: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Delete recordings older than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
    /// Keep the recordings under the root to at most this many bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<u64>,
    /// Delete recordings while the file system has less free than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_bytes: Option<u64>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// A validated recording target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordTarget {
    /// The path template, with the per-segment variables still in it.
    pub template: String,
    /// Where retention looks: the directory before the first variable.
    pub root: PathBuf,
    #[serde(serialize_with = "secs")]
    pub segment: Duration,
    pub retention: Retention,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// `7d`, `12h`, `30m`, `90s` or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (num, unit) = split_unit(text);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

/// `500M`, `20G`, `1T`, `64K` (powers of 1024) or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let (num, unit) = split_unit(text);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(at)
}

impl RecordTarget {
    /// Whether `text` is meant as a recording (an absolute path or a
    /// `file://` URL).
    pub fn is_recording(text: &str) -> bool {
        text.starts_with('/') || text.starts_with("file://")
    }

    /// The target as shown: it holds no secrets.
    pub fn redacted(&self) -> String {
        let mut s = format!("{}?segment={}", self.template, self.segment.as_secs());
        let r = &self.retention;
        if let Some(a) = r.max_age_s {
            s.push_str(&format!("&max_age={a}"));
        }
        if let Some(t) = r.max_total_bytes {
            s.push_str(&format!("&max_total={t}"));
        }
        if let Some(f) = r.min_free_bytes {
            s.push_str(&format!("&min_free={f}"));
        }
        s
    }
}

impl TryFrom<&str> for RecordTarget {
    type Error = Error;

    fn try_from(text: &str) -> Result<Self, Error> {
        let bad = |m: String| Error::Target(m);
        let path_and_query = text.strip_prefix("file://").unwrap_or(text);
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| bad("the recording path is not UTF-8".into()))?
            .into_owned();
        if !path.starts_with('/') {
            return Err(bad(format!(
                "recording path '{path}' is not absolute (write /data/rec/$stream/$datetime.ts)"
            )));
        }
        if path.contains('\0') || path.split('/').any(|c| c == "..") {
            return Err(bad(format!(
                "recording path '{path}' may not contain '..' or NUL"
            )));
        }
        if !path.ends_with(".ts") {
            return Err(bad(format!(
                "recording path '{path}' must end in .ts (recordings are segmented MPEG-TS)"
            )));
        }
        let file_name = path.rsplit('/').next().unwrap_or_default();
        if file_name == ".ts" || file_name.is_empty() {
            return Err(bad(format!("recording path '{path}' has no file name")));
        }
        let mut segment = DEFAULT_SEGMENT;
        let mut retention = Retention::default();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key {
                // `split` is MistServer's name for the same thing.
                "segment" | "split" => segment = parse_duration(value)
                    .filter(|d| !d.is_zero() && *d <= MAX_SEGMENT)
                    .ok_or_else(|| {
                        bad(format!(
                            "segment '{value}' is not a duration from 1 s to 24 h (e.g. 60 or 10m)"
                        ))
                    })?,
                "max_age" => {
                    retention.max_age_s = Some(
                        parse_duration(value)
                            .filter(|d| !d.is_zero())
                            .ok_or_else(|| {
                                bad(format!(
                                    "max_age '{value}' is not a duration (e.g. 7d, 12h)"
                                ))
                            })?
                            .as_secs(),
                    )
                }
                "max_total" => {
                    retention.max_total_bytes =
                        Some(parse_size(value).filter(|n| *n > 0).ok_or_else(|| {
                            bad(format!(
                                "max_total '{value}' is not a size (e.g. 20G, 500M)"
                            ))
                        })?)
                }
                "min_free" => {
                    retention.min_free_bytes = Some(parse_size(value).ok_or_else(|| {
                        bad(format!("min_free '{value}' is not a size (e.g. 2G, 500M)"))
                    })?)
                }
                other => {
                    return Err(bad(format!(
                        "recording option '{other}' is unknown (known: segment, max_age, max_total, min_free)"
                    )));
                }
            }
        }
        let fixed = path.split('$').next().unwrap_or_default();
        let root = match fixed.rfind('/') {
            Some(0) | None => PathBuf::from("/"),
            Some(i) => PathBuf::from(&fixed[..i]),
        };
        if root == Path::new("/") && !retention.is_empty() {
            return Err(bad(
                "retention needs a recording directory below / (its files are deleted)".into(),
            ));
        }
        Ok(RecordTarget {
            template: path,
            root,
            segment,
            retention,
        })
    }
}

/// MPEG-TS packet size (ISO/IEC 13818-1, 2.4.3.2) and sync byte.
pub const TS_PACKET: usize = 188;
const TS_SYNC: u8 = 0x47;

/// Where the last unit (a PES packet or a PSI section) begins in `ts`: the
/// offset of the last packet with `payload_unit_start_indicator` set.
/// Everything before it is whole units, safe to write; the unit from there
/// on may still be growing. `ts` must start on a packet boundary; if it is
/// not packet-aligned MPEG-TS, the whole length (write it all).
pub fn last_unit_start(ts: &[u8]) -> usize {
    if !ts.len().is_multiple_of(TS_PACKET) {
        return ts.len();
    }
    let mut last = 0;
    for (i, packet) in ts.chunks_exact(TS_PACKET).enumerate() {
        if packet[0] != TS_SYNC {
            return ts.len();
        }
        if packet[1] & 0x40 != 0 {
            last = i * TS_PACKET;
        }
    }
    last
}

/// A recording file as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub size: u64,
}

/// Which files to delete, oldest first, so the recordings meet the policy:
/// older than `max_age`, then over `max_total`, then while the file system
/// has less than `min_free` (each deletion frees the file's size). `keep`
/// (the segment being written) is never deleted.
pub fn plan_deletions(
    files: &[FileInfo],
    retention: &Retention,
    now: SystemTime,
    free_bytes: Option<u64>,
    keep: Option<&Path>,
) -> Vec<PathBuf> {
    let mut sorted: Vec<&FileInfo> = files
        .iter()
        .filter(|f| Some(f.path.as_path()) != keep)
        .collect();
    sorted.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    let mut free = free_bytes;
    let mut out = Vec::new();
    for f in sorted {
        let too_old = retention.max_age_s.is_some_and(|max| {
            now.duration_since(f.modified)
                .is_ok_and(|age| age.as_secs() > max)
        });
        let too_much = retention.max_total_bytes.is_some_and(|max| total > max);
        let too_full =
            matches!((retention.min_free_bytes, free), (Some(min), Some(fr)) if fr < min);
        if !(too_old || too_much || too_full) {
            // Sorted oldest first: the ones after this are younger, and the
            // size rules are met already.
            break;
        }
        total = total.saturating_sub(f.size);
        free = free.map(|fr| fr + f.size);
        out.push(f.path.clone());
    }
    out
}

/// An I/O error of a recording as an operator can act on it.
pub fn explain_io(action: &str, path: &Path, e: &std::io::Error, free: Option<u64>) -> String {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::ENOSPC) => format!(
            "disk full {action} {p}{}",
            free.map(|f| format!(" ({} KiB free)", f / 1024))
                .unwrap_or_default()
        ),
        Some(libc::EROFS) => format!("read-only file system {action} {p}"),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("no permission {action} {p}"),
        Some(libc::EDQUOT) => format!("disk quota exceeded {action} {p}"),
        _ => format!("{action} {p}: {e}"),
    }
}

/// Free bytes for unprivileged writers on the file system that holds (or
/// will hold) `path`: its nearest existing ancestor's.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    path.ancestors().find_map(|p| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a valid buffer.
        let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        (r == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> RecordTarget {
        RecordTarget::try_from(s).unwrap()
    }

    fn err(s: &str) -> String {
        RecordTarget::try_from(s).unwrap_err().to_string()
    }

    #[test]
    fn parses_paths_and_options() {
        let r = t("/data/rec/${stream}/${datetime}.ts");
        assert_eq!(r.root, PathBuf::from("/data/rec"));
        assert_eq!(r.segment, Duration::from_secs(60));
        assert!(r.retention.is_empty());
        let r = t(
            "file:///data/rec/main-${datetime}.ts?segment=10m&max_age=7d&max_total=20G&min_free=500M",
        );
        assert_eq!(r.root, PathBuf::from("/data/rec"));
        assert_eq!(r.segment, Duration::from_secs(600));
        assert_eq!(r.retention.max_age_s, Some(7 * 86_400));
        assert_eq!(r.retention.max_total_bytes, Some(20 << 30));
        assert_eq!(r.retention.min_free_bytes, Some(500 << 20));
        assert_eq!(
            r.redacted(),
            "/data/rec/main-${datetime}.ts?segment=600&max_age=604800&max_total=21474836480&min_free=524288000"
        );
        assert_eq!(t("/rec/a.ts?split=5").segment, Duration::from_secs(5));
    }

    #[test]
    fn refusals_name_the_option_and_value() {
        assert!(err("data/x.ts").contains("not absolute"));
        assert!(err("/data/x.mp4").contains("must end in .ts"));
        assert!(err("/data/../etc/x.ts").contains("'..'"));
        assert!(err("/data/x.ts?segment=0").contains("segment '0'"));
        assert!(err("/data/x.ts?segment=2d").contains("segment '2d'"));
        assert!(err("/data/x.ts?max_total=lots").contains("max_total 'lots'"));
        assert!(err("/data/x.ts?max_age=3q").contains("max_age '3q'"));
        assert!(err("/data/x.ts?bogus=1").contains("option 'bogus' is unknown"));
        assert!(err("/$stream.ts?max_age=1d").contains("below /"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1X"), None);
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration(""), None);
    }

    fn file(name: &str, age_s: u64, size: u64, now: SystemTime) -> FileInfo {
        FileInfo {
            path: PathBuf::from(name),
            modified: now - Duration::from_secs(age_s),
            size,
        }
    }

    #[test]
    fn retention_deletes_oldest_first_and_never_the_open_segment() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let files = vec![
            file("c", 100, 10, now),
            file("a", 300, 10, now),
            file("b", 200, 10, now),
            file("open", 0, 10, now),
        ];
        let by_age = Retention {
            max_age_s: Some(150),
            ..Default::default()
        };
        assert_eq!(
            plan_deletions(&files, &by_age, now, None, Some(Path::new("open"))),
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        let by_total = Retention {
            max_total_bytes: Some(25),
            ..Default::default()
        };
        assert_eq!(
            plan_deletions(&files, &by_total, now, None, Some(Path::new("open"))),
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        let by_free = Retention {
            min_free_bytes: Some(100),
            ..Default::default()
        };
        assert_eq!(
            plan_deletions(&files, &by_free, now, Some(85), Some(Path::new("open"))),
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        // Nothing left to delete but the open segment: it stays.
        let all = Retention {
            max_total_bytes: Some(1),
            ..Default::default()
        };
        assert_eq!(
            plan_deletions(&files, &all, now, None, Some(Path::new("open"))).len(),
            3
        );
        assert!(plan_deletions(&files, &Retention::default(), now, Some(0), None).is_empty());
    }

    fn packet(pusi: bool, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; TS_PACKET];
        p[0] = TS_SYNC;
        p[1] = if pusi { 0x40 } else { 0x00 };
        p
    }

    #[test]
    fn whole_units_are_found_by_their_start_flags() {
        assert_eq!(last_unit_start(&[]), 0);
        let mut ts = packet(true, 1);
        ts.extend(packet(false, 1));
        assert_eq!(last_unit_start(&ts), 0);
        ts.extend(packet(true, 2));
        ts.extend(packet(false, 2));
        assert_eq!(last_unit_start(&ts), 2 * TS_PACKET);
        // Not aligned, or not TS: all of it.
        assert_eq!(last_unit_start(&ts[..100]), 100);
        let mut bad = ts.clone();
        bad[TS_PACKET] = 0;
        assert_eq!(last_unit_start(&bad), bad.len());
    }

    #[test]
    fn io_errors_say_what_happened() {
        let p = Path::new("/data/rec/a.ts");
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            explain_io("writing", p, &e, Some(2048)),
            "disk full writing /data/rec/a.ts (2 KiB free)"
        );
        let e = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(
            explain_io("creating", p, &e, None),
            "read-only file system creating /data/rec/a.ts"
        );
    }
}
