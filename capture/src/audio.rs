//! An input's audio: what `[inputs.audio]` asks for (the source, which of
//! its channels become the stream's left and right, when quiet counts as
//! silence), and what the capture pipeline's `level` element reports, turned
//! into levels for telemetry and silence for state and events.
//!
//! Pure: the channel mapping is tested as numbers, the `level` message as a
//! structure, the meter and the silence state machine with the time they are
//! given. `input` feeds them from the bus and publishes what they decide.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::settings::VideoSource;

/// The stream's sample rate: what the AAC encoder gets, whatever the
/// device delivers.
pub const STREAM_RATE: u32 = 48_000;
/// How often the `level` element reports (ns in the pipeline).
pub const LEVEL_INTERVAL: Duration = Duration::from_millis(100);
/// `peak_hold_dbfs` is the highest peak over this window.
pub const PEAK_HOLD: Duration = Duration::from_secs(3);
/// Levels below this read as this: `level` says -700 dB for digital
/// silence, which no meter shows and JSON readers need not see.
pub const FLOOR_DBFS: f64 = -100.0;

pub const DEFAULT_SILENCE_THRESHOLD_DBFS: f64 = -60.0;
pub const DEFAULT_SILENCE_AFTER_S: f64 = 10.0;
/// The line-up tone of broadcast: 1 kHz at 0.1 of full scale, -20 dBFS.
pub const DEFAULT_TONE_HZ: f64 = 1000.0;
pub const DEFAULT_TONE_VOLUME: f64 = 0.1;
/// What an ALSA or DeckLink source delivers unless told otherwise.
pub const DEFAULT_CHANNELS: u32 = 2;

/// `[inputs.audio]`, validated field by field when parsed (unknown keys and
/// keys of another source are refused by name) and against the rest of the
/// input by [`AudioSpec::validate`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawAudio", into = "RawAudio")]
pub struct AudioSpec {
    pub source: AudioSource,
    /// Channels of the source, counted from 1 in the order the device
    /// delivers them, that become the stream's left and right. One channel
    /// is mono, on both sides.
    pub select: Vec<u32>,
    /// All stream channels below this RMS level (dBFS) count as quiet.
    pub silence_threshold_dbfs: f64,
    /// Quiet this long is silence: an `audio_silence` event.
    pub silence_after_s: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AudioSource {
    /// `audiotestsrc`: a sine on both channels, `volume` of full scale.
    TestTone {
        frequency_hz: f64,
        volume: f64,
    },
    /// An ALSA capture device: a sound card, a USB interface, or the
    /// embedded audio of an HDMI or SDI receiver that the board exposes as
    /// an ALSA card (RK3588's hdmirx, a TC358743 bridge over I2S).
    Alsa {
        device: String,
        /// How many channels the device delivers (8 for HDMI 7.1 or
        /// SDI groups 1-2).
        channels: u32,
        /// The device's rate; left out, 48 kHz if the device has it.
        rate: Option<u32>,
    },
    /// The embedded audio of a DeckLink input (same device as the video):
    /// 2, 8 or 16 SDI channels.
    Decklink {
        channels: u32,
    },
    None,
}

impl Default for AudioSpec {
    fn default() -> Self {
        AudioSpec {
            source: AudioSource::TestTone {
                frequency_hz: DEFAULT_TONE_HZ,
                volume: DEFAULT_TONE_VOLUME,
            },
            select: vec![1, 2],
            silence_threshold_dbfs: DEFAULT_SILENCE_THRESHOLD_DBFS,
            silence_after_s: DEFAULT_SILENCE_AFTER_S,
        }
    }
}

/// The config's shape: every key any source has, checked per source when
/// turned into an [`AudioSpec`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frequency_hz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channels: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    select: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    silence_threshold_dbfs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    silence_after_s: Option<f64>,
}

impl TryFrom<RawAudio> for AudioSpec {
    type Error = String;

    fn try_from(raw: RawAudio) -> Result<Self, String> {
        let source = raw.source.as_str();
        let given = [
            ("frequency_hz", raw.frequency_hz.is_some()),
            ("volume", raw.volume.is_some()),
            ("device", raw.device.is_some()),
            ("channels", raw.channels.is_some()),
            ("rate", raw.rate.is_some()),
            ("select", raw.select.is_some()),
            (
                "silence_threshold_dbfs",
                raw.silence_threshold_dbfs.is_some(),
            ),
            ("silence_after_s", raw.silence_after_s.is_some()),
        ];
        let own: &[&str] = match source {
            "test-tone" => &["frequency_hz", "volume"],
            "alsa" => &["device", "channels", "rate"],
            "decklink" => &["channels"],
            "none" => &[],
            other => {
                return Err(format!(
                    "audio source '{other}' is not one of test-tone, alsa, decklink, none"
                ));
            }
        };
        let common = ["select", "silence_threshold_dbfs", "silence_after_s"];
        for (key, set) in given {
            let allowed = own.contains(&key) || (source != "none" && common.contains(&key));
            if set && !allowed {
                return Err(format!("'{key}' is not a setting of {source} audio"));
            }
        }
        let source = match source {
            "test-tone" => AudioSource::TestTone {
                frequency_hz: raw.frequency_hz.unwrap_or(DEFAULT_TONE_HZ),
                volume: raw.volume.unwrap_or(DEFAULT_TONE_VOLUME),
            },
            "alsa" => AudioSource::Alsa {
                device: raw
                    .device
                    .ok_or("alsa audio needs 'device' (e.g. \"hw:1,0\")")?,
                channels: raw.channels.unwrap_or(DEFAULT_CHANNELS),
                rate: raw.rate,
            },
            "decklink" => AudioSource::Decklink {
                channels: raw.channels.unwrap_or(DEFAULT_CHANNELS),
            },
            _ => AudioSource::None,
        };
        let select = raw.select.unwrap_or_else(|| default_select(&source));
        Ok(AudioSpec {
            source,
            select,
            silence_threshold_dbfs: raw
                .silence_threshold_dbfs
                .unwrap_or(DEFAULT_SILENCE_THRESHOLD_DBFS),
            silence_after_s: raw.silence_after_s.unwrap_or(DEFAULT_SILENCE_AFTER_S),
        })
    }
}

impl From<&AudioSource> for RawAudio {
    fn from(source: &AudioSource) -> RawAudio {
        let mut raw = RawAudio::default();
        match source {
            AudioSource::TestTone {
                frequency_hz,
                volume,
            } => {
                raw.source = "test-tone".into();
                raw.frequency_hz = (*frequency_hz != DEFAULT_TONE_HZ).then_some(*frequency_hz);
                raw.volume = (*volume != DEFAULT_TONE_VOLUME).then_some(*volume);
            }
            AudioSource::Alsa {
                device,
                channels,
                rate,
            } => {
                raw.source = "alsa".into();
                raw.device = Some(device.clone());
                raw.channels = (*channels != DEFAULT_CHANNELS).then_some(*channels);
                raw.rate = *rate;
            }
            AudioSource::Decklink { channels } => {
                raw.source = "decklink".into();
                raw.channels = (*channels != DEFAULT_CHANNELS).then_some(*channels);
            }
            AudioSource::None => raw.source = "none".into(),
        }
        raw
    }
}

impl From<AudioSpec> for RawAudio {
    fn from(a: AudioSpec) -> RawAudio {
        let mut raw = RawAudio::from(&a.source);
        if !a.is_none() {
            raw.select = (a.select != default_select(&a.source)).then_some(a.select);
            raw.silence_threshold_dbfs = (a.silence_threshold_dbfs
                != DEFAULT_SILENCE_THRESHOLD_DBFS)
                .then_some(a.silence_threshold_dbfs);
            raw.silence_after_s =
                (a.silence_after_s != DEFAULT_SILENCE_AFTER_S).then_some(a.silence_after_s);
        }
        raw
    }
}

/// The first two channels, or the only one.
fn default_select(source: &AudioSource) -> Vec<u32> {
    if source.channels() == 1 {
        vec![1]
    } else {
        vec![1, 2]
    }
}

/// A source alone serializes as the config writes it (`source = "alsa",
/// device = "hw:1", channels = 8`, defaults left out): an
/// `[inputs.audio]` table whose selection and silence settings are the
/// defaults.
impl Serialize for AudioSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawAudio::from(self).serialize(s)
    }
}

/// The channel counts alsasrc (GStreamer 1.22, `gst_alsa_detect_channels`)
/// can negotiate: it offers layouts for 1, 2, 3, 4, 6 and 8 channels and
/// unpositioned ones from 9 up, so a 5- or 7-channel device cannot open.
fn alsasrc_opens(channels: u32) -> bool {
    matches!(channels, 1..=4 | 6 | 8 | 9..=64)
}

impl AudioSource {
    /// How many channels the source delivers.
    pub fn channels(&self) -> u32 {
        match self {
            AudioSource::TestTone { .. } => 2,
            AudioSource::Alsa { channels, .. } | AudioSource::Decklink { channels } => *channels,
            AudioSource::None => 0,
        }
    }

    /// Where the source's channel `channel` (from 1, in the device's order)
    /// sits in the buffers the source element pushes.
    ///
    /// alsasrc gives 6 and 8 channels ALSA's default positions (FL FR RL RR
    /// FC LFE SL SR, `alsa_position` in gstalsa.c) and its ring buffer
    /// reorders them into GStreamer's order (FL FR FC LFE RL RR SL SR), so
    /// the device's third channel arrives fifth. Fewer channels keep their
    /// order, and from 9 up alsasrc leaves them unpositioned. (A driver
    /// that reports a channel map of its own through the ALSA chmap API
    /// is reordered by that map instead; see docs/mqtt.md.)
    pub fn buffer_index(&self, channel: u32) -> usize {
        let i = channel.saturating_sub(1) as usize;
        match self {
            AudioSource::Alsa {
                channels: 6 | 8, ..
            } => {
                const FROM_ALSA_ORDER: [usize; 8] = [0, 1, 4, 5, 2, 3, 6, 7];
                FROM_ALSA_ORDER.get(i).copied().unwrap_or(i)
            }
            _ => i,
        }
    }

    /// A name for logs and status: `alsa hw:1,0 (8 ch)`.
    pub fn label(&self) -> String {
        match self {
            AudioSource::TestTone { frequency_hz, .. } => format!("test-tone ({frequency_hz} Hz)"),
            AudioSource::Alsa {
                device, channels, ..
            } => format!("alsa {device} ({channels} ch)"),
            AudioSource::Decklink { channels } => format!("decklink ({channels} ch)"),
            AudioSource::None => "none".into(),
        }
    }
}

impl AudioSpec {
    pub fn is_none(&self) -> bool {
        matches!(self.source, AudioSource::None)
    }

    /// The `audioconvert mix-matrix` (one row per stream channel, one
    /// column per source channel) that puts the selected channels on left
    /// and right; `None` when the source's first two channels already are.
    pub fn mix_matrix(&self) -> Option<Vec<Vec<f32>>> {
        let inputs = self.source.channels() as usize;
        if inputs == 0 {
            return None;
        }
        let left = self.select.first().copied().unwrap_or(1);
        let right = self.select.get(1).copied().unwrap_or(left);
        let rows: Vec<Vec<f32>> = [left, right]
            .iter()
            .map(|&ch| {
                let at = self.source.buffer_index(ch);
                (0..inputs)
                    .map(|i| if i == at { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let identity = inputs == 2 && rows == [vec![1.0, 0.0], vec![0.0, 1.0]];
        (!identity).then_some(rows)
    }

    /// Checks values; `at` is the input's field path (`inputs[0]`).
    pub fn validate(&self, at: &str, video: &VideoSource) -> Result<(), Error> {
        let invalid = |field: &str, reason: String| Error::Invalid {
            field: format!("{at}.audio.{field}"),
            reason,
        };
        match &self.source {
            AudioSource::None => return Ok(()),
            AudioSource::TestTone {
                frequency_hz,
                volume,
            } => {
                // Below Nyquist of the 48 kHz stream, with room to spare.
                if !(1.0..=20_000.0).contains(frequency_hz) {
                    return Err(invalid(
                        "frequency_hz",
                        format!("{frequency_hz} is outside 1..=20000"),
                    ));
                }
                if !(0.0..=1.0).contains(volume) {
                    return Err(invalid(
                        "volume",
                        format!("{volume} is outside 0..=1 (0.1 is -20 dBFS, 0 is silence)"),
                    ));
                }
            }
            AudioSource::Alsa {
                device,
                channels,
                rate,
            } => {
                if device.is_empty() || device.contains(char::is_whitespace) {
                    return Err(invalid(
                        "device",
                        format!("'{device}' is not an ALSA device name"),
                    ));
                }
                if !alsasrc_opens(*channels) {
                    return Err(invalid(
                        "channels",
                        format!(
                            "{channels} is not a channel count GStreamer's alsasrc can open (1, 2, 3, 4, 6, 8, or 9 to 64)"
                        ),
                    ));
                }
                if let Some(r) = rate
                    && !(8_000..=192_000).contains(r)
                {
                    return Err(invalid("rate", format!("{r} is outside 8000..=192000")));
                }
            }
            AudioSource::Decklink { channels } => {
                if !matches!(video, VideoSource::Decklink { .. }) {
                    return Err(invalid(
                        "source",
                        "'decklink' audio needs a decklink video source".into(),
                    ));
                }
                if !matches!(channels, 2 | 8 | 16) {
                    return Err(invalid(
                        "channels",
                        format!("{channels} is not a DeckLink channel count (2, 8 or 16)"),
                    ));
                }
            }
        }
        let delivered = self.source.channels();
        if self.select.is_empty() || self.select.len() > 2 {
            return Err(invalid(
                "select",
                format!(
                    "{:?} must name one channel (mono) or two (left, right)",
                    self.select
                ),
            ));
        }
        if let Some(bad) = self.select.iter().find(|&&c| c == 0 || c > delivered) {
            return Err(invalid(
                "select",
                format!(
                    "channel {bad} is not one of the {delivered} the source delivers (channels count from 1)"
                ),
            ));
        }
        if !(-100.0..=0.0).contains(&self.silence_threshold_dbfs) {
            return Err(invalid(
                "silence_threshold_dbfs",
                format!("{} is outside -100..=0", self.silence_threshold_dbfs),
            ));
        }
        if !(0.5..=86_400.0).contains(&self.silence_after_s) {
            return Err(invalid(
                "silence_after_s",
                format!("{} is outside 0.5..=86400", self.silence_after_s),
            ));
        }
        Ok(())
    }
}

/// dB rounded to 0.1 and held at [`FLOOR_DBFS`].
fn shown_db(v: f64) -> f64 {
    if v.is_nan() {
        return FLOOR_DBFS;
    }
    (v.max(FLOOR_DBFS) * 10.0).round() / 10.0
}

/// One report of the `level` element: per stream channel, in dBFS.
#[derive(Clone, Debug, PartialEq)]
pub struct Levels {
    pub peak_dbfs: Vec<f64>,
    pub rms_dbfs: Vec<f64>,
}

impl Levels {
    /// Reads a `level` element message: a structure named `level` whose
    /// `rms` and `peak` hold one gdouble in dB per channel, 0 dB being full
    /// scale (GStreamer's level docs). The element posts them as a
    /// GValueArray (1.22); the same text parsed back (`gst-launch -m`
    /// output) is a GstValueArray, so both are read. Other element
    /// messages are `None`.
    pub fn from_structure(s: &gst::StructureRef) -> Option<Levels> {
        if s.name() != "level" {
            return None;
        }
        let read = |field: &str| -> Option<Vec<f64>> {
            let db = |v: &gst::glib::Value| v.get::<f64>().ok().map(shown_db);
            if let Ok(values) = s.get::<gst::glib::ValueArray>(field) {
                values.iter().map(db).collect()
            } else {
                s.get::<gst::Array>(field)
                    .ok()?
                    .iter()
                    .map(|v| db(v))
                    .collect()
            }
        };
        let peak_dbfs = read("peak")?;
        let rms_dbfs = read("rms")?;
        (!peak_dbfs.is_empty() && peak_dbfs.len() == rms_dbfs.len()).then_some(Levels {
            peak_dbfs,
            rms_dbfs,
        })
    }

    /// The loudest channel's RMS: silence is every channel below the
    /// threshold.
    pub fn loudest_rms(&self) -> f64 {
        self.rms_dbfs.iter().copied().fold(FLOOR_DBFS, f64::max)
    }
}

/// What the silence detector decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    /// Quiet since `since`, now long enough to be silence.
    Silent { since: Instant },
    /// Sound again after `silent_for` of silence.
    Restored { silent_for: Duration },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Silence {
    Sound { last_sound: Instant },
    Silent { since: Instant },
}

/// Silence is every channel below the threshold for `after`. Missing
/// reports count as quiet (audio that stopped flowing is silent too). Sound
/// at or above the threshold ends it at once.
#[derive(Clone, Debug)]
pub struct SilenceDetector {
    threshold_dbfs: f64,
    after: Duration,
    state: Silence,
}

impl SilenceDetector {
    pub fn new(threshold_dbfs: f64, after: Duration, now: Instant) -> Self {
        SilenceDetector {
            threshold_dbfs,
            after,
            state: Silence::Sound { last_sound: now },
        }
    }

    /// A report whose loudest channel is at `loudest_dbfs`.
    pub fn observe(&mut self, now: Instant, loudest_dbfs: f64) -> Option<Change> {
        if loudest_dbfs < self.threshold_dbfs {
            return self.poll(now);
        }
        let was = self.state;
        self.state = Silence::Sound { last_sound: now };
        match was {
            Silence::Silent { since } => Some(Change::Restored {
                silent_for: now.saturating_duration_since(since),
            }),
            Silence::Sound { .. } => None,
        }
    }

    /// Time passing: quiet since the last sound turns into silence.
    pub fn poll(&mut self, now: Instant) -> Option<Change> {
        match self.state {
            Silence::Sound { last_sound }
                if now.saturating_duration_since(last_sound) >= self.after =>
            {
                self.state = Silence::Silent { since: last_sound };
                Some(Change::Silent { since: last_sound })
            }
            _ => None,
        }
    }

    /// A new pipeline starts: sound gets a full `after` before it can be
    /// called silence (the time the input was down is not quiet audio).
    /// Silence stays silence until sound is heard.
    pub fn resume(&mut self, now: Instant) {
        if let Silence::Sound { last_sound } = &mut self.state {
            *last_sound = now;
        }
    }

    pub fn is_silent(&self) -> bool {
        matches!(self.state, Silence::Silent { .. })
    }
}

/// An input's levels as telemetry shows them, per stream channel (left,
/// right).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AudioLevels {
    pub peak_dbfs: Vec<f64>,
    pub rms_dbfs: Vec<f64>,
    /// The highest peak over the last [`PEAK_HOLD`].
    pub peak_hold_dbfs: Vec<f64>,
    pub silent: bool,
}

/// The `level` reports of one input: the latest, a peak hold, and the
/// silence detector.
#[derive(Clone, Debug)]
pub struct AudioMeter {
    detector: SilenceDetector,
    latest: Option<Levels>,
    peaks: VecDeque<(Instant, Vec<f64>)>,
}

impl AudioMeter {
    pub fn new(spec: &AudioSpec, now: Instant) -> Self {
        AudioMeter {
            detector: SilenceDetector::new(
                spec.silence_threshold_dbfs,
                Duration::from_secs_f64(spec.silence_after_s),
                now,
            ),
            latest: None,
            peaks: VecDeque::new(),
        }
    }

    pub fn level(&mut self, now: Instant, levels: Levels) -> Option<Change> {
        while self
            .peaks
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > PEAK_HOLD)
        {
            self.peaks.pop_front();
        }
        self.peaks.push_back((now, levels.peak_dbfs.clone()));
        let change = self.detector.observe(now, levels.loudest_rms());
        self.latest = Some(levels);
        change
    }

    pub fn poll(&mut self, now: Instant) -> Option<Change> {
        self.detector.poll(now)
    }

    /// A new pipeline: no levels until it reports.
    pub fn resume(&mut self, now: Instant) {
        self.latest = None;
        self.peaks.clear();
        self.detector.resume(now);
    }

    /// The pipeline stopped: its levels are gone.
    pub fn stopped(&mut self) {
        self.latest = None;
        self.peaks.clear();
    }

    pub fn is_silent(&self) -> bool {
        self.detector.is_silent()
    }

    /// The latest RMS per stream channel ([`FLOOR_DBFS`] before any).
    pub fn rms_dbfs(&self) -> Vec<f64> {
        self.latest
            .as_ref()
            .map_or_else(|| vec![FLOOR_DBFS; 2], |l| l.rms_dbfs.clone())
    }

    pub fn levels(&self) -> Option<AudioLevels> {
        let latest = self.latest.as_ref()?;
        let mut hold = latest.peak_dbfs.clone();
        for (_, peaks) in &self.peaks {
            for (h, p) in hold.iter_mut().zip(peaks) {
                *h = h.max(*p);
            }
        }
        Some(AudioLevels {
            peak_dbfs: latest.peak_dbfs.clone(),
            rms_dbfs: latest.rms_dbfs.clone(),
            peak_hold_dbfs: hold,
            silent: self.is_silent(),
        })
    }
}

/// An input's audio in the retained state: changes only when silence
/// starts or ends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AudioStatus {
    pub source: String,
    pub select: Vec<u32>,
    pub silent: bool,
    /// When the audio became silent, or sound again (unix seconds).
    pub since: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AudioSpec, String> {
        #[derive(Deserialize)]
        struct W {
            audio: AudioSpec,
        }
        toml::from_str::<W>(&format!("[audio]\n{text}"))
            .map(|w| w.audio)
            .map_err(|e| e.to_string())
    }

    fn check(text: &str) -> Result<AudioSpec, String> {
        let a = parse(text)?;
        a.validate("inputs[0]", &VideoSource::default())
            .map_err(|e| e.to_string())?;
        Ok(a)
    }

    #[test]
    fn defaults_per_source() {
        let a = check("source = \"alsa\"\ndevice = \"hw:1\"").unwrap();
        assert_eq!(
            a.source,
            AudioSource::Alsa {
                device: "hw:1".into(),
                channels: 2,
                rate: None
            }
        );
        assert_eq!(a.select, [1, 2]);
        assert_eq!(a.silence_threshold_dbfs, -60.0);
        assert_eq!(a.silence_after_s, 10.0);
        assert_eq!(a.mix_matrix(), None, "the first two of two: no matrix");
        let mono = check("source = \"alsa\"\ndevice = \"hw:1\"\nchannels = 1").unwrap();
        assert_eq!(mono.select, [1]);
        assert_eq!(mono.mix_matrix(), Some(vec![vec![1.0], vec![1.0]]));
        assert_eq!(
            AudioSpec::default(),
            check("source = \"test-tone\"").unwrap()
        );
        assert!(check("source = \"none\"").unwrap().is_none());
    }

    #[test]
    fn keys_of_another_source_are_named() {
        let e = parse("source = \"test-tone\"\ndevice = \"hw:0\"").unwrap_err();
        assert!(
            e.contains("'device' is not a setting of test-tone audio"),
            "{e}"
        );
        let e = parse("source = \"none\"\nselect = [1]").unwrap_err();
        assert!(e.contains("'select' is not a setting of none audio"), "{e}");
        let e = parse("source = \"alsa\"").unwrap_err();
        assert!(e.contains("needs 'device'"), "{e}");
        let e = parse("source = \"hdmi\"").unwrap_err();
        assert!(e.contains("'hdmi'"), "{e}");
        let e = parse("source = \"alsa\"\ndevice = \"hw:0\"\nchanels = 8").unwrap_err();
        assert!(e.contains("chanels"), "{e}");
    }

    #[test]
    fn validation_names_field_and_value() {
        let e = check("source = \"alsa\"\ndevice = \"hw:1\"\nchannels = 8\nselect = [3, 9]")
            .unwrap_err();
        assert!(
            e.contains("inputs[0].audio.select") && e.contains("channel 9") && e.contains("8"),
            "{e}"
        );
        let e = check("source = \"alsa\"\ndevice = \"hw:1\"\nselect = [0]").unwrap_err();
        assert!(e.contains("audio.select") && e.contains("channel 0"), "{e}");
        let e = check("source = \"alsa\"\ndevice = \"hw:1\"\nselect = [1, 2, 1]").unwrap_err();
        assert!(e.contains("audio.select") && e.contains("[1, 2, 1]"), "{e}");
        let e = check("source = \"alsa\"\ndevice = \"hw:1\"\nselect = []").unwrap_err();
        assert!(e.contains("audio.select"), "{e}");
        let e = check("source = \"alsa\"\ndevice = \"hw:1\"\nchannels = 5").unwrap_err();
        assert!(
            e.contains("audio.channels") && e.contains("5 is not"),
            "{e}"
        );
        let e = check("source = \"alsa\"\ndevice = \"hw 1\"").unwrap_err();
        assert!(e.contains("audio.device") && e.contains("'hw 1'"), "{e}");
        let e = check("source = \"alsa\"\ndevice = \"hw:1\"\nrate = 1000").unwrap_err();
        assert!(e.contains("audio.rate") && e.contains("1000"), "{e}");
        let e = check("source = \"test-tone\"\nvolume = 2.0").unwrap_err();
        assert!(e.contains("audio.volume") && e.contains('2'), "{e}");
        let e = check("source = \"test-tone\"\nfrequency_hz = 30000.0").unwrap_err();
        assert!(
            e.contains("audio.frequency_hz") && e.contains("30000"),
            "{e}"
        );
        let e = check("source = \"test-tone\"\nsilence_threshold_dbfs = 6.0").unwrap_err();
        assert!(
            e.contains("audio.silence_threshold_dbfs") && e.contains('6'),
            "{e}"
        );
        let e = check("source = \"test-tone\"\nsilence_after_s = 0.1").unwrap_err();
        assert!(
            e.contains("audio.silence_after_s") && e.contains("0.1"),
            "{e}"
        );
        let e = check("source = \"test-tone\"\nselect = [3]").unwrap_err();
        assert!(e.contains("channel 3 is not one of the 2"), "{e}");
        // DeckLink audio comes with DeckLink video, in its channel counts.
        let e = check("source = \"decklink\"").unwrap_err();
        assert!(e.contains("audio.source"), "{e}");
        let deck = VideoSource::Decklink {
            device_number: 0,
            mode: "auto".into(),
            connection: "sdi".into(),
        };
        let a = parse("source = \"decklink\"\nchannels = 16\nselect = [15, 16]").unwrap();
        a.validate("inputs[0]", &deck).unwrap();
        let a = parse("source = \"decklink\"\nchannels = 4").unwrap();
        let e = a.validate("inputs[0]", &deck).unwrap_err().to_string();
        assert!(e.contains("audio.channels") && e.contains('4'), "{e}");
    }

    #[test]
    fn selection_follows_alsasrc_channel_order() {
        let a =
            check("source = \"alsa\"\ndevice = \"hw:1\"\nchannels = 8\nselect = [3, 4]").unwrap();
        // ALSA's third and fourth of eight (rear left and right) arrive
        // fifth and sixth in GStreamer's order.
        let m = a.mix_matrix().unwrap();
        assert_eq!(m[0], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(m[1], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        // Centre (5th) lands third; side channels keep their place.
        let a =
            check("source = \"alsa\"\ndevice = \"hw:1\"\nchannels = 8\nselect = [5, 7]").unwrap();
        let m = a.mix_matrix().unwrap();
        assert_eq!(m[0][2], 1.0);
        assert_eq!(m[1][6], 1.0);
        // Unpositioned (16) and DeckLink channels keep the device's order.
        let a = check("source = \"alsa\"\ndevice = \"hw:1\"\nchannels = 16\nselect = [3]").unwrap();
        let m = a.mix_matrix().unwrap();
        assert_eq!((m[0][2], m[1][2]), (1.0, 1.0), "mono on both sides");
        let deck = AudioSource::Decklink { channels: 8 };
        assert_eq!(deck.buffer_index(3), 2);
        // Swapped stereo needs a matrix too.
        let a = check("source = \"test-tone\"\nselect = [2, 1]").unwrap();
        assert_eq!(a.mix_matrix(), Some(vec![vec![0.0, 1.0], vec![1.0, 0.0]]));
    }

    #[test]
    fn round_trips_through_serde() {
        for text in [
            "source = \"alsa\"\ndevice = \"hw:2,0\"\nchannels = 8\nrate = 48000\nselect = [3, 4]\nsilence_threshold_dbfs = -50.0\nsilence_after_s = 5.0",
            "source = \"test-tone\"\nvolume = 0.0",
            "source = \"none\"",
        ] {
            let a = parse(text).unwrap();
            let back: AudioSpec =
                serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
            assert_eq!(a, back);
        }
        let none = serde_json::to_value(parse("source = \"none\"").unwrap()).unwrap();
        assert_eq!(none, serde_json::json!({"source": "none"}));
        // Defaults are left out, as a hint for the config would write it.
        let alsa = AudioSource::Alsa {
            device: "hw:1".into(),
            channels: 2,
            rate: None,
        };
        assert_eq!(
            serde_json::to_value(&alsa).unwrap(),
            serde_json::json!({"source": "alsa", "device": "hw:1"})
        );
        assert_eq!(
            serde_json::to_value(AudioSpec::default()).unwrap(),
            serde_json::json!({"source": "test-tone"})
        );
    }

    /// A `level` message as `gst-launch-1.0 -m` prints it.
    fn level_structure(rms: &[f64], peak: &[f64]) -> gst::Structure {
        let arr = |v: &[f64]| {
            let items: Vec<String> = v.iter().map(|x| format!("(double){x}")).collect();
            format!("(GValueArray)< {} >", items.join(", "))
        };
        format!(
            "level, endtime=(guint64)100000000, rms={}, peak={}, decay={}",
            arr(rms),
            arr(peak),
            arr(peak)
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn level_messages_are_read() {
        gst::init().unwrap();
        let s = level_structure(&[-23.0171, -699.99], &[-19.8653, -349.99]);
        let l = Levels::from_structure(&s).unwrap();
        assert_eq!(l.rms_dbfs, [-23.0, -100.0], "rounded, held at the floor");
        assert_eq!(l.peak_dbfs, [-19.9, -100.0]);
        assert_eq!(l.loudest_rms(), -23.0);
        let built = gst::Structure::builder("level")
            .field("rms", gst::Array::new([-3.01f64, -3.02]))
            .field("peak", gst::Array::new([0.0f64, -0.04]))
            .build();
        let l = Levels::from_structure(&built).unwrap();
        assert_eq!(
            (l.rms_dbfs, l.peak_dbfs),
            (vec![-3.0, -3.0], vec![0.0, -0.0])
        );
        let other = gst::Structure::builder("GstForceKeyUnit").build();
        assert_eq!(Levels::from_structure(&other), None);
        let broken = gst::Structure::builder("level")
            .field("rms", 1.0f64)
            .build();
        assert_eq!(Levels::from_structure(&broken), None);
    }

    #[test]
    fn silence_after_quiet_long_enough_and_back_on_sound() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut d = SilenceDetector::new(-60.0, Duration::from_secs(10), t0);
        assert_eq!(d.observe(at(0.1), -20.0), None);
        // Quiet from 1 s: not silence at 10.9 s, silence at 11 s, once.
        assert_eq!(d.observe(at(1.0), -20.0), None);
        assert_eq!(d.observe(at(5.0), -75.0), None);
        assert_eq!(d.observe(at(10.9), -61.0), None);
        assert_eq!(
            d.observe(at(11.0), -80.0),
            Some(Change::Silent { since: at(1.0) })
        );
        assert!(d.is_silent());
        assert_eq!(d.observe(at(12.0), -80.0), None);
        assert_eq!(d.poll(at(30.0)), None);
        // Exactly at the threshold is sound.
        assert_eq!(
            d.observe(at(31.0), -60.0),
            Some(Change::Restored {
                silent_for: Duration::from_secs(30)
            })
        );
        assert_eq!(d.observe(at(31.1), -20.0), None);
        // Reports that stop count as quiet.
        assert_eq!(d.poll(at(41.0)), None);
        assert_eq!(d.poll(at(41.1)), Some(Change::Silent { since: at(31.1) }));
    }

    #[test]
    fn a_new_pipeline_gets_a_grace_period_but_silence_stays() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut d = SilenceDetector::new(-60.0, Duration::from_secs(10), t0);
        // Down from 2 s to 20 s (no reports), back at 20 s: not silent
        // before 30 s.
        d.resume(at(20));
        assert_eq!(d.poll(at(29)), None);
        assert!(matches!(d.poll(at(30)), Some(Change::Silent { .. })));
        d.resume(at(40));
        assert!(d.is_silent(), "a restart does not end silence");
        assert!(matches!(
            d.observe(at(41), -30.0),
            Some(Change::Restored { .. })
        ));
    }

    #[test]
    fn meter_holds_peaks_for_a_while() {
        let spec = AudioSpec::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = AudioMeter::new(&spec, t0);
        assert_eq!(m.levels(), None);
        let lv = |p: f64| Levels {
            peak_dbfs: vec![p, p - 1.0],
            rms_dbfs: vec![p - 3.0, p - 4.0],
        };
        m.level(at(100), lv(-6.0));
        m.level(at(200), lv(-20.0));
        let l = m.levels().unwrap();
        assert_eq!(l.peak_dbfs, [-20.0, -21.0]);
        assert_eq!(l.rms_dbfs, [-23.0, -24.0]);
        assert_eq!(l.peak_hold_dbfs, [-6.0, -7.0]);
        assert!(!l.silent);
        m.level(at(3_200), lv(-20.0));
        assert_eq!(m.levels().unwrap().peak_hold_dbfs, [-20.0, -21.0]);
        m.stopped();
        assert_eq!(m.levels(), None);
        assert_eq!(m.rms_dbfs(), [FLOOR_DBFS, FLOOR_DBFS]);
    }
}
