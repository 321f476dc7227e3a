//! Board profiles: which encoder element a board has and how its properties
//! map. Units differ between encoders (`x264enc` takes kbit/s as a property,
//! `v4l2h264enc` bit/s as a V4L2 control inside `extra-controls`); the file
//! says which, so the rest of the code speaks kbit/s only.

use std::collections::BTreeMap;
use std::path::Path;

use gst::prelude::*;

use serde::Deserialize;

use crate::error::Error;

/// Profiles compiled into the daemon, so a board works without files on
/// disk. `board_file` in the config loads any other.
const BUILTIN: &[(&str, &str)] = &[
    (
        "generic-x86-64",
        include_str!("../../board-configs/generic-x86-64.toml"),
    ),
    (
        "raspberrypi4-64",
        include_str!("../../board-configs/raspberrypi4-64.toml"),
    ),
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    pub board: BoardInfo,
    pub limits: Limits,
    pub video_encoder: VideoEncoder,
    pub audio_encoder: AudioEncoder,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardInfo {
    pub name: String,
    pub description: String,
    pub yocto_machine: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_fps: u32,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Unit {
    #[serde(rename = "bit/s")]
    BitPerSecond,
    #[serde(rename = "kbit/s")]
    KbitPerSecond,
}

impl Unit {
    pub fn from_kbps(self, kbps: u32) -> u64 {
        match self {
            Unit::BitPerSecond => u64::from(kbps) * 1000,
            Unit::KbitPerSecond => u64::from(kbps),
        }
    }
}

/// Where one setting goes: an element property, or a V4L2 control inside
/// the element's controls structure.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub property: Option<String>,
    pub control: Option<String>,
    pub unit: Option<Unit>,
}

impl Mapping {
    /// A bitrate in the unit this mapping takes (a mapping without a unit
    /// takes kbit/s; validation requires one for bitrates).
    pub fn bitrate(&self, kbps: u32) -> u64 {
        self.unit.unwrap_or(Unit::KbitPerSecond).from_kbps(kbps)
    }
}

/// A property value as written in a board file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Text(t) => write!(f, "{t}"),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VideoEncoder {
    pub element: String,
    /// Raw format pinned in front of the encoder (`I420`, `NV12`).
    pub raw_format: String,
    /// H.264 level asked of the encoder through its output caps.
    pub level: Option<String>,
    /// The property holding V4L2 controls (`extra-controls`), for encoders
    /// configured that way.
    pub controls_property: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    #[serde(default)]
    pub controls: BTreeMap<String, Value>,
    pub bitrate: Mapping,
    pub gop: Mapping,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioEncoder {
    pub element: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    pub bitrate: Mapping,
}

impl BoardProfile {
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// A profile compiled into the daemon.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::UnknownBoard(name.into(), Self::builtin_names().join(", ")))?;
        Self::parse(name, text)
    }

    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::BoardFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, Error> {
        let p: BoardProfile = toml::from_str(text).map_err(|e| Error::Board {
            name: name.into(),
            reason: e.message().to_string(),
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the video encoder against this machine's GStreamer: the
    /// element exists and has every property the profile sets or maps
    /// (the controls property included). The error names what is missing.
    pub fn check_video_encoder(&self) -> Result<(), String> {
        let v = &self.video_encoder;
        let Some(factory) = gst::ElementFactory::find(&v.element) else {
            return Err(format!(
                "GStreamer element '{}' is not available",
                v.element
            ));
        };
        let element = factory
            .create()
            .build()
            .map_err(|e| format!("creating '{}': {e}", v.element))?;
        let mapped = [&v.bitrate, &v.gop]
            .into_iter()
            .filter_map(|m| m.property.clone());
        let wanted = v
            .properties
            .keys()
            .cloned()
            .chain(mapped)
            .chain(v.controls_property.clone());
        for prop in wanted {
            if element.find_property(&prop).is_none() {
                return Err(format!("'{}' has no property '{prop}'", v.element));
            }
        }
        Ok(())
    }

    /// This profile with the software encoder (x264, as the generic
    /// profile sets it up) in place of the board's own: what runs when the
    /// hardware encoder is missing.
    pub fn with_software_encoder(&self) -> BoardProfile {
        let generic =
            BoardProfile::builtin("generic-x86-64").expect("the generic profile is built in");
        BoardProfile {
            video_encoder: generic.video_encoder,
            ..self.clone()
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let err = |reason: String| Error::Board {
            name: self.board.name.clone(),
            reason,
        };
        let check = |what: &str, m: &Mapping, controls: bool| -> Result<(), Error> {
            match (&m.property, &m.control) {
                (Some(_), None) => Ok(()),
                (None, Some(_)) if controls => Ok(()),
                (None, Some(_)) => Err(err(format!(
                    "{what} maps to a control but the encoder has no controls_property"
                ))),
                _ => Err(err(format!(
                    "{what} needs exactly one of 'property' or 'control'"
                ))),
            }
        };
        let v = &self.video_encoder;
        let has_controls = v.controls_property.is_some();
        check("video_encoder.bitrate", &v.bitrate, has_controls)?;
        check("video_encoder.gop", &v.gop, has_controls)?;
        check("audio_encoder.bitrate", &self.audio_encoder.bitrate, false)?;
        if v.bitrate.unit.is_none() {
            return Err(err(
                "video_encoder.bitrate needs a unit (bit/s or kbit/s)".into()
            ));
        }
        if self.audio_encoder.bitrate.unit.is_none() {
            return Err(err(
                "audio_encoder.bitrate needs a unit (bit/s or kbit/s)".into()
            ));
        }
        if !v.controls.is_empty() && !has_controls {
            return Err(err(
                "video_encoder.controls is set but controls_property is not".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_parses() {
        for name in BoardProfile::builtin_names() {
            let p = BoardProfile::builtin(name).unwrap();
            assert_eq!(p.board.name, name);
        }
    }

    #[test]
    fn every_file_in_board_configs_parses_and_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../board-configs");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let p = BoardProfile::from_file(&path).unwrap();
                assert_eq!(p, BoardProfile::builtin(&p.board.name).unwrap());
                n += 1;
            }
        }
        assert_eq!(n, BoardProfile::builtin_names().len());
    }

    #[test]
    fn units_differ_between_encoders() {
        let x264 = BoardProfile::builtin("generic-x86-64").unwrap();
        assert_eq!(
            x264.video_encoder.bitrate.unit.unwrap().from_kbps(2500),
            2500
        );
        let pi = BoardProfile::builtin("raspberrypi4-64").unwrap();
        assert_eq!(
            pi.video_encoder.bitrate.unit.unwrap().from_kbps(2500),
            2_500_000
        );
        assert_eq!(
            pi.video_encoder.bitrate.control.as_deref(),
            Some("video_bitrate")
        );
    }

    #[test]
    fn encoders_are_checked_against_gstreamer() {
        gst::init().unwrap();
        let generic = BoardProfile::builtin("generic-x86-64").unwrap();
        assert_eq!(generic.check_video_encoder(), Ok(()));
        let mut wrong = generic.clone();
        wrong.video_encoder.gop.property = Some("key-int-maxx".into());
        assert_eq!(
            wrong.check_video_encoder(),
            Err("'x264enc' has no property 'key-int-maxx'".into())
        );
        let mut missing = generic.clone();
        missing.video_encoder.element = "nosuchenc".into();
        assert!(
            missing
                .check_video_encoder()
                .unwrap_err()
                .contains("'nosuchenc' is not available")
        );
        let sw = missing.with_software_encoder();
        assert_eq!(sw.video_encoder.element, "x264enc");
        assert_eq!(sw.board.name, "generic-x86-64");
        let pi = BoardProfile::builtin("raspberrypi4-64")
            .unwrap()
            .with_software_encoder();
        assert_eq!(
            (pi.board.name.as_str(), pi.limits.max_fps),
            ("raspberrypi4-64", 30)
        );
    }

    #[test]
    fn unknown_keys_and_bad_mappings_are_named() {
        let good = include_str!("../../board-configs/generic-x86-64.toml");
        let bad = good.replace("[limits]", "[limits]\nmax_widht = 3");
        let e = BoardProfile::parse("t", &bad).unwrap_err().to_string();
        assert!(e.contains("max_widht"), "{e}");
        let bad = good.replace("property = \"key-int-max\"", "control = \"x\"");
        let e = BoardProfile::parse("t", &bad).unwrap_err().to_string();
        assert!(e.contains("video_encoder.gop"), "{e}");
        let e = BoardProfile::builtin("nope").unwrap_err().to_string();
        assert!(e.contains("'nope'") && e.contains("generic-x86-64"), "{e}");
    }
}
