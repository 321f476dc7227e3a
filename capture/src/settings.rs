//! What an input is, as the config file writes it. Parsing rejects unknown
//! keys; [`InputSpec::validate`] checks values against the board's limits and
//! names the field and value it refuses.

use serde::{Deserialize, Serialize};

pub use crate::audio::{AudioSource, AudioSpec};
use crate::board::BoardProfile;
use crate::error::Error;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The stream name outputs refer to.
    pub name: String,
    /// Only a template for wildcard streams (`name+suffix`, started over
    /// MQTT): `name` itself does not run. Device paths of a template may
    /// hold `$wildcard` (the suffix), e.g. `/dev/video$wildcard`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
    #[serde(default)]
    pub video: VideoSource,
    /// `[inputs.audio]`: source, channel selection, silence detection
    /// ([`crate::audio`]).
    #[serde(default)]
    pub audio: AudioSpec,
    #[serde(default)]
    pub encode: EncodeSettings,
    /// The video bitrate follows the leading SRT output's link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_bitrate: Option<AdaptiveBitrate>,
}

/// `[inputs.adaptive_bitrate]`: the encoder's bitrate moves between
/// `min_kbps` and `max_kbps` (the encode bitrate when left out) from what the
/// leading SRT output measures on its link.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveBitrate {
    pub min_kbps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kbps: Option<u32>,
    /// The push whose link decides; left out, the first running SRT push
    /// of the stream (by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<String>,
}

impl AdaptiveBitrate {
    /// The ceiling: `max_kbps`, else the bitrate the operator set.
    pub fn ceiling(&self, encode: &EncodeSettings) -> u32 {
        self.max_kbps.unwrap_or(encode.bitrate_kbps)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VideoSource {
    /// `videotestsrc` with a running clock burnt in, so a viewer sees at a
    /// glance that the picture is live and how late it is.
    TestPattern {
        #[serde(default = "default_pattern")]
        pattern: String,
        #[serde(default = "yes")]
        clock_overlay: bool,
    },
    /// A V4L2 capture device (UVC camera, HDMI-to-CSI bridge, vivid).
    /// `input` selects one of a multi-input device's inputs (its index, as
    /// discovery lists them: vivid's HDMI is 3); left out, the device's
    /// current input.
    V4l2 {
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<u32>,
    },
    /// A camera behind libcamera (`libcamerasrc`): the Raspberry Pi's CSI
    /// camera modules and other sensors behind an ISP. `camera` is
    /// libcamera's id of the camera; left out, the first one.
    Libcamera {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        camera: Option<String>,
    },
    /// A Blackmagic DeckLink SDI/HDMI input.
    Decklink {
        #[serde(default)]
        device_number: u32,
        #[serde(default = "default_decklink_mode")]
        mode: String,
        #[serde(default = "default_connection")]
        connection: String,
    },
}

fn default_pattern() -> String {
    "smpte".into()
}
fn yes() -> bool {
    true
}
fn default_decklink_mode() -> String {
    "auto".into()
}
fn default_connection() -> String {
    "sdi".into()
}

impl Default for VideoSource {
    fn default() -> Self {
        VideoSource::TestPattern {
            pattern: default_pattern(),
            clock_overlay: true,
        }
    }
}

/// Fields left out take the defaults (1280x720, 30 fps, 3000 kbit/s, …).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeSettings {
    pub width: u32,
    pub height: u32,
    /// Frames per second: `30`, `"25"` or `"30000/1001"`.
    pub framerate: Framerate,
    pub bitrate_kbps: u32,
    /// Keyframe interval in frames; a new output waits at most this long for
    /// a picture, so keep it near one or two seconds.
    pub gop_frames: u32,
    /// H.264 profile: baseline, main or high.
    pub profile: String,
    pub audio_bitrate_kbps: u32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            framerate: Framerate { num: 30, den: 1 },
            bitrate_kbps: 3000,
            gop_frames: 60,
            profile: "high".into(),
            audio_bitrate_kbps: 128,
        }
    }
}

/// A change to an input's encoding, as sent over MQTT: the fields given
/// replace the running settings, the others stay.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncodeChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framerate: Option<Framerate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gop_frames: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_bitrate_kbps: Option<u32>,
}

impl EncodeChange {
    pub fn is_empty(&self) -> bool {
        *self == EncodeChange::default()
    }

    /// `base` with this change applied.
    pub fn apply(&self, base: &EncodeSettings) -> EncodeSettings {
        EncodeSettings {
            width: self.width.unwrap_or(base.width),
            height: self.height.unwrap_or(base.height),
            framerate: self.framerate.unwrap_or(base.framerate),
            bitrate_kbps: self.bitrate_kbps.unwrap_or(base.bitrate_kbps),
            gop_frames: self.gop_frames.unwrap_or(base.gop_frames),
            profile: self.profile.clone().unwrap_or_else(|| base.profile.clone()),
            audio_bitrate_kbps: self.audio_bitrate_kbps.unwrap_or(base.audio_bitrate_kbps),
        }
    }

    /// This change followed by `newer` (the newer value wins per field).
    pub fn then(&self, newer: &EncodeChange) -> EncodeChange {
        EncodeChange {
            width: newer.width.or(self.width),
            height: newer.height.or(self.height),
            framerate: newer.framerate.or(self.framerate),
            bitrate_kbps: newer.bitrate_kbps.or(self.bitrate_kbps),
            gop_frames: newer.gop_frames.or(self.gop_frames),
            profile: newer.profile.clone().or_else(|| self.profile.clone()),
            audio_bitrate_kbps: newer.audio_bitrate_kbps.or(self.audio_bitrate_kbps),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framerate {
    pub num: u32,
    pub den: u32,
}

impl Framerate {
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

impl std::fmt::Display for Framerate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl TryFrom<&str> for Framerate {
    type Error = String;
    fn try_from(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a frame rate (write 30, 25 or 30000/1001)");
        let (num, den) = match s.split_once('/') {
            Some((n, d)) => (
                n.trim().parse().map_err(|_| bad())?,
                d.trim().parse().map_err(|_| bad())?,
            ),
            None => (s.trim().parse().map_err(|_| bad())?, 1),
        };
        if num == 0 || den == 0 {
            return Err(bad());
        }
        Ok(Framerate { num, den })
    }
}

impl<'de> Deserialize<'de> for Framerate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Framerate::try_from(n.to_string().as_str()),
            Raw::Text(t) => Framerate::try_from(t.as_str()),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Framerate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.den == 1 {
            s.serialize_u32(self.num)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

/// Stream names appear in topics, paths and URLs: keep them to a safe set.
pub fn check_name(field: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: field.into(),
            reason: format!(
                "'{name}' is not a valid name (1 to 64 of a-z, A-Z, 0-9, '-', '_', '.')"
            ),
        })
    }
}

impl InputSpec {
    pub fn has_audio(&self) -> bool {
        !self.audio.is_none()
    }

    /// The wildcard stream `stream` (`name+suffix`) of this input: the same
    /// settings under its own name, with `$wildcard` (the suffix),
    /// `$basename` and `$stream` in its device paths filled in.
    pub fn instance(&self, stream: &str) -> Result<InputSpec, Error> {
        let suffix = stream
            .strip_prefix(&self.name)
            .and_then(|s| s.strip_prefix('+'))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Invalid {
                field: "name".into(),
                reason: format!("'{stream}' is not a wildcard stream of {}", self.name),
            })?;
        check_name("name", suffix)?;
        let fill = |text: &str| {
            // Longest names first: `$stream` must not eat `$stre…`.
            text.replace("${wildcard}", suffix)
                .replace("$wildcard", suffix)
                .replace("${basename}", &self.name)
                .replace("$basename", &self.name)
                .replace("${stream}", stream)
                .replace("$stream", stream)
        };
        let mut out = self.clone();
        out.name = stream.to_string();
        out.template = false;
        match &mut out.video {
            VideoSource::V4l2 { device, .. } => *device = fill(device),
            VideoSource::TestPattern { pattern, .. } => *pattern = fill(pattern),
            VideoSource::Libcamera { camera } => {
                if let Some(c) = camera {
                    *c = fill(c);
                }
            }
            VideoSource::Decklink { .. } => {}
        }
        if let AudioSource::Alsa { device, .. } = &mut out.audio.source {
            *device = fill(device);
        }
        Ok(out)
    }

    /// Checks values against the board's limits. `at` is the field path of
    /// this input in the config (`inputs[0]`).
    pub fn validate(&self, at: &str, board: &BoardProfile) -> Result<(), Error> {
        let invalid = |field: &str, reason: String| Error::Invalid {
            field: format!("{at}.{field}"),
            reason,
        };
        // A wildcard stream (`name+suffix`) is two names joined.
        for part in self.name.splitn(2, '+') {
            check_name(&format!("{at}.name"), part).map_err(|_| {
                invalid(
                    "name",
                    format!(
                        "'{}' is not a valid name (1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'; a wildcard stream is name+suffix)",
                        self.name
                    ),
                )
            })?;
        }
        let e = &self.encode;
        let l = &board.limits;
        // Even sizes: 4:2:0 chroma halves both dimensions.
        for (field, value, max) in [
            ("encode.width", e.width, l.max_width),
            ("encode.height", e.height, l.max_height),
        ] {
            if value == 0 || value > max || !value.is_multiple_of(2) {
                return Err(invalid(
                    field,
                    format!(
                        "{value} is outside 2..={max} or odd (board {})",
                        board.board.name
                    ),
                ));
            }
        }
        if e.framerate.as_f64() > f64::from(l.max_fps) {
            return Err(invalid(
                "encode.framerate",
                format!("{} is above the board's {} fps", e.framerate, l.max_fps),
            ));
        }
        if !(100..=100_000).contains(&e.bitrate_kbps) {
            return Err(invalid(
                "encode.bitrate_kbps",
                format!("{} is outside 100..=100000", e.bitrate_kbps),
            ));
        }
        if let Some(abr) = &self.adaptive_bitrate {
            let max = abr.ceiling(e);
            if !(100..=100_000).contains(&abr.min_kbps) || abr.min_kbps > max {
                return Err(invalid(
                    "adaptive_bitrate.min_kbps",
                    format!(
                        "{} is outside 100..={max} (the ceiling: max_kbps or encode.bitrate_kbps)",
                        abr.min_kbps
                    ),
                ));
            }
            if !(100..=100_000).contains(&max) {
                return Err(invalid(
                    "adaptive_bitrate.max_kbps",
                    format!("{max} is outside 100..=100000"),
                ));
            }
            if let Some(lead) = &abr.lead {
                check_name(&format!("{at}.adaptive_bitrate.lead"), lead)?;
            }
            // The encoder starts at the operator's bitrate: inside the bounds.
            if e.bitrate_kbps < abr.min_kbps || e.bitrate_kbps > max {
                return Err(invalid(
                    "encode.bitrate_kbps",
                    format!(
                        "{} is outside adaptive_bitrate's {}..={max}",
                        e.bitrate_kbps, abr.min_kbps
                    ),
                ));
            }
        }
        if !(1..=1000).contains(&e.gop_frames) {
            return Err(invalid(
                "encode.gop_frames",
                format!("{} is outside 1..=1000", e.gop_frames),
            ));
        }
        if !matches!(
            e.profile.as_str(),
            "baseline" | "constrained-baseline" | "main" | "high"
        ) {
            return Err(invalid(
                "encode.profile",
                format!(
                    "'{}' is not one of baseline, constrained-baseline, main, high",
                    e.profile
                ),
            ));
        }
        if !(16..=512).contains(&e.audio_bitrate_kbps) {
            return Err(invalid(
                "encode.audio_bitrate_kbps",
                format!("{} is outside 16..=512", e.audio_bitrate_kbps),
            ));
        }
        match &self.video {
            VideoSource::V4l2 { device, .. } if !device.starts_with("/dev/") => {
                return Err(invalid(
                    "video.device",
                    format!("'{device}' is not a /dev path"),
                ));
            }
            VideoSource::Decklink { connection, .. }
                if !matches!(
                    connection.as_str(),
                    "auto" | "sdi" | "hdmi" | "optical-sdi" | "component" | "composite" | "svideo"
                ) =>
            {
                return Err(invalid(
                    "video.connection",
                    format!("'{connection}' is not a DeckLink connection (sdi, hdmi, auto, …)"),
                ));
            }
            // A template's `$wildcard` is checked in each instance.
            VideoSource::TestPattern { pattern, .. }
                if (!self.template || !pattern.contains('$'))
                    && !pattern
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                return Err(invalid(
                    "video.pattern",
                    format!("'{pattern}' is not a pattern name"),
                ));
            }
            _ => {}
        }
        self.audio.validate(at, &self.video)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcard_instances_fill_in_their_suffix() {
        let spec: InputSpec = toml::from_str(
            "name = \"cam\"\ntemplate = true\nvideo = { source = \"v4l2\", device = \"/dev/video$wildcard\" }\naudio = { source = \"alsa\", device = \"hw:${wildcard}\" }\n[encode]\nwidth = 640\n",
        )
        .unwrap();
        assert_eq!(
            spec.encode.height, 720,
            "left-out encode fields take defaults"
        );
        let i = spec.instance("cam+2").unwrap();
        assert_eq!(i.name, "cam+2");
        assert!(!i.template);
        assert_eq!(
            i.video,
            VideoSource::V4l2 {
                device: "/dev/video2".into(),
                input: None,
            }
        );
        assert_eq!(
            i.audio.source,
            AudioSource::Alsa {
                device: "hw:2".into(),
                channels: 2,
                rate: None,
            }
        );
        assert!(spec.instance("cam").is_err());
        assert!(spec.instance("cam+").is_err());
        assert!(spec.instance("camera+1").is_err());
        assert!(spec.instance("cam+a b").is_err());
    }

    use super::*;

    fn parse(text: &str) -> Result<InputSpec, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_a_test_pattern_with_tone() {
        let i = parse("name = \"main\"").unwrap();
        assert!(matches!(
            i.video,
            VideoSource::TestPattern {
                clock_overlay: true,
                ..
            }
        ));
        assert!(i.has_audio());
        i.validate(
            "inputs[0]",
            &BoardProfile::builtin("generic-x86-64").unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn adaptive_bitrate_bounds_are_checked() {
        let board = BoardProfile::builtin("generic-x86-64").unwrap();
        let check = |extra: &str| {
            parse(&format!(
                "name = \"m\"\n[encode]\nbitrate_kbps = 2000\n[adaptive_bitrate]\n{extra}"
            ))
            .unwrap()
            .validate("inputs[0]", &board)
            .map_err(|e| e.to_string())
        };
        check("min_kbps = 300\nlead = \"uplink\"").unwrap();
        let spec =
            parse("name = \"m\"\n[adaptive_bitrate]\nmin_kbps = 300\nmax_kbps = 5000").unwrap();
        let abr = spec.adaptive_bitrate.as_ref().unwrap();
        assert_eq!(abr.ceiling(&spec.encode), 5000);
        let e = check("min_kbps = 2500").unwrap_err();
        assert!(
            e.contains("inputs[0].adaptive_bitrate.min_kbps") && e.contains("2500"),
            "{e}"
        );
        let e = check("min_kbps = 300\nmax_kbps = 200000").unwrap_err();
        assert!(
            e.contains("adaptive_bitrate.max_kbps") && e.contains("200000"),
            "{e}"
        );
        let e = check("min_kbps = 300\nmax_kbps = 1500").unwrap_err();
        assert!(
            e.contains("encode.bitrate_kbps") && e.contains("2000") && e.contains("300..=1500"),
            "{e}"
        );
        let e = check("min_kbps = 300\nlead = \"a b\"").unwrap_err();
        assert!(e.contains("adaptive_bitrate.lead"), "{e}");
        let e = parse("name = \"m\"\n[adaptive_bitrate]\nmin_kbs = 3").unwrap_err();
        assert!(e.contains("min_kbs"), "{e}");
    }

    #[test]
    fn framerates() {
        assert_eq!(
            Framerate::try_from("30000/1001").unwrap(),
            Framerate {
                num: 30000,
                den: 1001
            }
        );
        assert_eq!(
            Framerate::try_from("25").unwrap(),
            Framerate { num: 25, den: 1 }
        );
        assert!(Framerate::try_from("0").is_err());
        assert!(Framerate::try_from("fast").unwrap_err().contains("'fast'"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e =
            parse("name = \"m\"\n[video]\nsource = \"v4l2\"\ndevice = \"/dev/video0\"\ndevcie = 1")
                .unwrap_err();
        assert!(e.contains("devcie"), "{e}");
        let e = parse("name = \"m\"\n[encode]\nwidht = 3").unwrap_err();
        assert!(e.contains("widht"), "{e}");
        let e = parse("name = \"m\"\n[video]\nsource = \"hdmi-magic\"").unwrap_err();
        assert!(e.contains("hdmi-magic"), "{e}");
    }

    #[test]
    fn limits_come_from_the_board() {
        let pi = BoardProfile::builtin("raspberrypi4-64").unwrap();
        let mut i = parse("name = \"m\"").unwrap();
        i.encode.width = 3840;
        i.encode.height = 2160;
        let e = i.validate("inputs[0]", &pi).unwrap_err().to_string();
        assert!(
            e.contains("inputs[0].encode.width") && e.contains("3840"),
            "{e}"
        );
        i.encode.width = 1280;
        i.encode.height = 720;
        i.encode.framerate = Framerate { num: 60, den: 1 };
        let e = i.validate("inputs[0]", &pi).unwrap_err().to_string();
        assert!(e.contains("encode.framerate") && e.contains("60/1"), "{e}");
        i.encode.framerate = Framerate { num: 30, den: 1 };
        i.name = "bad name".into();
        let e = i.validate("inputs[0]", &pi).unwrap_err().to_string();
        assert!(
            e.contains("inputs[0].name") && e.contains("'bad name'"),
            "{e}"
        );
    }
}
