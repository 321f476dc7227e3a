//! What the daemon must remember across restarts and power cuts: pushes
//! added over MQTT and which pushes an operator stopped.
//!
//! Writes are atomic: the new content goes to a temporary file in the same
//! directory, is fsynced, renamed over the old file (rename(2) is atomic on
//! POSIX file systems), and the directory is fsynced so the rename itself is
//! durable. A power cut at any point leaves either the old file or the new
//! one, never a mix. The file holds secrets (target passphrases), so it is
//! created readable by the daemon's user only.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fieldcast_capture::settings::EncodeChange;
use serde::{Deserialize, Serialize};

use crate::push::PushDef;
use crate::triggers::HandlerDef;
use crate::vars::VarDef;

const FILE: &str = "pushes.json";
const VERSION: u32 = 2;

/// Unknown fields are ignored here (not refused, as everywhere else): after
/// an update is rolled back, the older daemon must still read what the
/// newer one wrote, or it would set every push aside.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Persisted {
    pub version: u32,
    /// Pushes added over MQTT, in the order they were added.
    pub pushes: Vec<PushDef>,
    /// Pushes (of either origin) an operator started or stopped: `false`
    /// stays stopped after a restart until started again, whatever the
    /// push's `enabled` says. A one-shot push that ended is `false`.
    pub running: BTreeMap<String, bool>,
    /// Variables set over MQTT (they take the place of a config variable of
    /// the same name).
    #[serde(default)]
    pub variables: Vec<VarDef>,
    /// Trigger handlers set over MQTT (in addition to the config's).
    #[serde(default)]
    pub triggers: Vec<HandlerDef>,
    /// Wildcard streams (`name+suffix`) started over MQTT.
    #[serde(default)]
    pub streams: Vec<String>,
    /// Encoder settings changed over MQTT (`encoder.set`), per input, on
    /// top of the config's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encoders: BTreeMap<String, EncodeChange>,
    /// Entries this version could not read (a newer version's kinds of
    /// trigger or push), written back unchanged so nothing is lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<serde_json::Value>,
}

/// Reads the file entry by entry, so that what a newer version wrote (after
/// an update is rolled back) costs only what this version cannot know: an
/// unknown field of an entry is dropped (and named), an entry that still
/// cannot be read is kept aside in `kept`, and the rest is used.
fn read_lenient(text: &[u8]) -> Result<(Persisted, Vec<String>), serde_json::Error> {
    use serde::de::DeserializeOwned;
    use serde_json::Value;
    let v: Value = serde_json::from_slice(text)?;
    if !v.is_object() {
        // Let serde say what is wrong with it.
        serde_json::from_value::<Persisted>(v)?;
        unreachable!("a non-object is not a Persisted");
    }
    let mut notes = Vec::new();
    let mut kept: Vec<Value> = v["kept"].as_array().cloned().unwrap_or_default();
    fn list<T: DeserializeOwned>(
        v: &Value,
        key: &str,
        notes: &mut Vec<String>,
        kept: &mut Vec<Value>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (i, item) in v[key].as_array().into_iter().flatten().enumerate() {
            let mut item = item.clone();
            let mut dropped = Vec::new();
            loop {
                match serde_json::from_value::<T>(item.clone()) {
                    Ok(t) => {
                        if !dropped.is_empty() {
                            notes.push(format!("{key}[{i}]: ignored {}", dropped.join(", ")));
                        }
                        out.push(t);
                        break;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let unknown = msg
                            .strip_prefix("unknown field `")
                            .and_then(|r| r.split('`').next())
                            .map(str::to_string);
                        let removed = match (unknown, item.as_object_mut()) {
                            (Some(f), Some(obj)) => obj.remove(&f).map(|_| f),
                            _ => None,
                        };
                        match removed {
                            Some(f) => dropped.push(f),
                            None => {
                                notes.push(format!("{key}[{i}] set aside ({msg})"));
                                kept.push(serde_json::json!({"in": key, "entry": v[key][i]}));
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }
    let pushes = list(&v, "pushes", &mut notes, &mut kept);
    let variables = list(&v, "variables", &mut notes, &mut kept);
    let triggers = list(&v, "triggers", &mut notes, &mut kept);
    let running = serde_json::from_value(v["running"].clone()).unwrap_or_default();
    let streams = serde_json::from_value(v["streams"].clone()).unwrap_or_default();
    let mut encoders = BTreeMap::new();
    for (name, change) in v["encoders"].as_object().into_iter().flatten() {
        match serde_json::from_value::<EncodeChange>(change.clone()) {
            Ok(c) => {
                encoders.insert(name.clone(), c);
            }
            Err(e) => notes.push(format!("encoders.{name} ignored ({e})")),
        }
    }
    Ok((
        Persisted {
            version: VERSION,
            pushes,
            running,
            variables,
            triggers,
            streams,
            encoders,
            kept,
        },
        notes,
    ))
}

/// What an operator manages over MQTT, as `config.export` gives it and
/// `config.import` takes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    #[serde(default)]
    pub pushes: Vec<PushDef>,
    #[serde(default)]
    pub variables: Vec<VarDef>,
    #[serde(default)]
    pub triggers: Vec<HandlerDef>,
    #[serde(default)]
    pub running: BTreeMap<String, bool>,
    #[serde(default)]
    pub streams: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encoders: BTreeMap<String, EncodeChange>,
}

impl Persisted {
    pub fn layer(&self) -> Layer {
        Layer {
            pushes: self.pushes.clone(),
            variables: self.variables.clone(),
            triggers: self.triggers.clone(),
            running: self.running.clone(),
            streams: self.streams.clone(),
            encoders: self.encoders.clone(),
        }
    }

    pub fn from_layer(l: Layer) -> Persisted {
        Persisted {
            version: VERSION,
            pushes: l.pushes,
            running: l.running,
            variables: l.variables,
            triggers: l.triggers,
            streams: l.streams,
            encoders: l.encoders,
            kept: Vec::new(),
        }
    }

    /// This state with push `id` forgotten: its definition and its
    /// started/stopped mark.
    pub fn without(&self, id: &str) -> Persisted {
        let mut next = self.clone();
        next.pushes.retain(|d| d.id != id);
        let instances = format!("{id}@");
        next.running
            .retain(|k, _| k != id && !k.starts_with(&instances));
        next
    }
}

#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StoreError {
    pub path: String,
    pub reason: String,
}

impl Store {
    /// Opens the store in `dir`, creating the directory. A file that cannot
    /// be parsed is moved aside (never deleted) and reported in the second
    /// value, and the daemon starts from the config file alone.
    pub fn open(dir: &Path) -> Result<(Store, Persisted, Option<String>), StoreError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| StoreError {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            // A new directory is only durable once its parent's entry is.
            if let Some(parent) = dir.parent() {
                let _ = File::open(parent).and_then(|d| d.sync_all());
            }
        }
        let store = Store {
            dir: dir.to_path_buf(),
        };
        let path = store.path();
        // A temporary file left by a cut mid-write is the unfinished new
        // version; the old file is intact.
        let _ = fs::remove_file(store.tmp_path());
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((
                    store,
                    Persisted {
                        version: VERSION,
                        ..Persisted::default()
                    },
                    None,
                ));
            }
            Err(e) => {
                return Err(StoreError {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        match read_lenient(&text) {
            Ok((p, notes)) => {
                let warning = (!notes.is_empty()).then(|| {
                    format!(
                        "{}: read with care (written by another version?): {}",
                        path.display(),
                        notes.join("; ")
                    )
                });
                Ok((store, p, warning))
            }
            Err(e) => {
                let aside = dir.join(format!(
                    "{FILE}.unreadable-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ));
                let _ = fs::rename(&path, &aside);
                Ok((
                    store,
                    Persisted {
                        version: VERSION,
                        ..Persisted::default()
                    },
                    Some(format!(
                        "{} could not be read ({e}); kept as {}",
                        path.display(),
                        aside.display()
                    )),
                ))
            }
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    fn tmp_path(&self) -> PathBuf {
        self.dir.join(format!(".{FILE}.tmp"))
    }

    pub fn save(&self, p: &Persisted) -> Result<(), StoreError> {
        let err = |path: &Path, e: std::io::Error| StoreError {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let tmp = self.tmp_path();
        let mut body = serde_json::to_vec_pretty(p).expect("store serializes");
        body.push(b'\n');
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| err(&tmp, e))?;
            f.write_all(&body).map_err(|e| err(&tmp, e))?;
            f.sync_all().map_err(|e| err(&tmp, e))?;
        }
        let path = self.path();
        fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        // From here the new content is what a reader sees: a failing
        // directory fsync must not be reported as "nothing changed".
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "saved, but the directory could not be synced");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: &str) -> PushDef {
        PushDef {
            id: id.into(),
            stream: "main".into(),
            target: "srt://h:1?passphrase=0123456789abc".into(),
            kind: Default::default(),
            enabled: true,
            schedule: None,
            rules: vec![],
            inhibit: vec![],
            backups: vec![],
            redundancy: None,
        }
    }

    #[test]
    fn round_trip_and_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut p, warn) = Store::open(dir.path()).unwrap();
        assert!(warn.is_none() && p.pushes.is_empty());
        p.pushes.push(def("a"));
        p.running.insert("a".into(), false);
        store.save(&p).unwrap();
        let (_, back, _) = Store::open(dir.path()).unwrap();
        assert_eq!(back, p);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn reads_what_the_first_version_wrote_and_what_a_newer_one_adds() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE),
            br#"{"version":1,"pushes":[{"id":"a","stream":"main","target":"srt://h:1","enabled":true}],"running":{"a":false},"from_the_future":1}"#,
        )
        .unwrap();
        let (_, p, warn) = Store::open(dir.path()).unwrap();
        assert!(warn.is_none());
        assert_eq!(p.pushes[0].id, "a");
        assert!(!p.running["a"]);
    }

    #[test]
    fn what_a_newer_version_wrote_is_used_as_far_as_it_can_be_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE),
            br#"{"version":9,"pushes":[
                {"id":"a","stream":"main","target":"srt://h:1","kind":"auto","fec":"2d"},
                {"id":"b","stream":"main","target":"srt://h:2","kind":"teleport"}],
              "running":{"a":false},
              "triggers":[{"on":"push_end","url":"http://h/"},{"on":"moon_rise","url":"http://h/"}]}"#,
        )
        .unwrap();
        let (store, p, warn) = Store::open(dir.path()).unwrap();
        let warn = warn.unwrap();
        assert!(warn.contains("pushes[0]: ignored fec"), "{warn}");
        assert!(warn.contains("pushes[1] set aside"), "{warn}");
        assert_eq!(p.pushes.len(), 1);
        assert!(!p.running["a"], "the operator's stop survives");
        assert_eq!(p.triggers.len(), 1);
        assert_eq!(p.kept.len(), 2);
        // Saved again, the entries it could not read are still there.
        store.save(&p).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(
            text.contains("teleport") && text.contains("moon_rise"),
            "{text}"
        );
    }

    #[test]
    fn a_cut_mid_write_keeps_the_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut p, _) = Store::open(dir.path()).unwrap();
        p.pushes.push(def("a"));
        store.save(&p).unwrap();
        // The new version was half written when the power went.
        fs::write(store.tmp_path(), b"{\"version\":1,\"pushes\":[{\"id\":").unwrap();
        let (_, back, warn) = Store::open(dir.path()).unwrap();
        assert!(warn.is_none());
        assert_eq!(back.pushes, vec![def("a")]);
        assert!(!store.tmp_path().exists());
    }

    #[test]
    fn unreadable_file_is_kept_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"garbage").unwrap();
        let (_, p, warn) = Store::open(dir.path()).unwrap();
        assert!(p.pushes.is_empty());
        assert!(warn.unwrap().contains("kept as"));
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("unreadable"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(fs::read(kept[0].path()).unwrap(), b"garbage");
    }
}
