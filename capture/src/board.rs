//! Board profiles: what a board is (Yocto `MACHINE` and layers), where its
//! video comes from, which encoder elements it has for H.264 and H.265 and
//! how their properties map, the memory path that spares copies, its
//! limits, and the software encoder it falls back to. One TOML file per
//! board in `board-configs/`, each citing the vendor documentation or plugin
//! source its facts come from.
//!
//! Units differ between encoders (`x264enc` takes kbit/s as a property,
//! `v4l2h264enc` bit/s as a V4L2 control inside `extra-controls`,
//! `vpuenc_h264` kbit/s, `mpph264enc` bit/s); the file says which, so the
//! rest of the code speaks kbit/s only.

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
    (
        "raspberrypi5",
        include_str!("../../board-configs/raspberrypi5.toml"),
    ),
    (
        "imx8mp-lpddr4-evk",
        include_str!("../../board-configs/imx8mp-lpddr4-evk.toml"),
    ),
    (
        "rockchip-rk3588-evb",
        include_str!("../../board-configs/rockchip-rk3588-evb.toml"),
    ),
    (
        "jetson-agx-orin-devkit",
        include_str!("../../board-configs/jetson-agx-orin-devkit.toml"),
    ),
    (
        "jetson-orin-nano-devkit",
        include_str!("../../board-configs/jetson-orin-nano-devkit.toml"),
    ),
    (
        "zynqmp-ev-generic",
        include_str!("../../board-configs/zynqmp-ev-generic.toml"),
    ),
    (
        "qemux86-64",
        include_str!("../../board-configs/qemux86-64.toml"),
    ),
    (
        "qemuarm64",
        include_str!("../../board-configs/qemuarm64.toml"),
    ),
];

/// The software encoders a board can fall back to, each described once
/// (`board-configs/software/`) so every board maps them the same way.
const SOFTWARE: &[(&str, &str)] = &[
    (
        "x264enc",
        include_str!("../../board-configs/software/x264enc.toml"),
    ),
    (
        "openh264enc",
        include_str!("../../board-configs/software/openh264enc.toml"),
    ),
];

/// A video codec a board may encode in hardware. The running pipeline is
/// H.264 (the media core carries H.264 today); H.265 is described so a
/// board's second encoder is known and tested before it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    /// The caps name of the encoded stream.
    pub fn caps_name(self) -> &'static str {
        match self {
            Codec::H264 => "video/x-h264",
            Codec::H265 => "video/x-h265",
        }
    }

    /// Levels the codec defines (H.264 Annex A, H.265 Annex A), as caps
    /// write them.
    fn levels(self) -> &'static [&'static str] {
        match self {
            Codec::H264 => &[
                "1", "1b", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "3.1", "3.2", "4", "4.1",
                "4.2", "5", "5.1", "5.2", "6", "6.1", "6.2",
            ],
            Codec::H265 => &[
                "1", "2", "2.1", "3", "3.1", "4", "4.1", "5", "5.1", "5.2", "6", "6.1", "6.2",
            ],
        }
    }

    /// The profile names the config may ask for, which a `profile` mapping
    /// must translate. H.265 is always Main (8-bit 4:2:0).
    pub fn profiles(self) -> &'static [&'static str] {
        match self {
            Codec::H264 => &["baseline", "main", "high"],
            Codec::H265 => &["main"],
        }
    }
}

/// A validated board profile. Built from the file by [`BoardProfile::parse`];
/// `video_encoder` is always the H.264 encoder the board runs: its hardware
/// encoder, or the software fallback where it has none.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "RawProfile")]
pub struct BoardProfile {
    pub board: BoardInfo,
    pub limits: Limits,
    pub inputs: Vec<BoardInput>,
    pub video_encoder: VideoEncoder,
    /// The hardware H.265 encoder; `None` where the board has none.
    pub video_encoder_h265: Option<VideoEncoder>,
    pub memory: Memory,
    pub software_fallback: SoftwareFallback,
    pub audio_encoder: AudioEncoder,
}

/// The file as written. `[video_encoder]` is absent on a board without a
/// hardware H.264 encoder (`hardware_encoder = false`), which then runs its
/// software fallback.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    board: BoardInfo,
    limits: Limits,
    inputs: Vec<BoardInput>,
    video_encoder: Option<VideoEncoder>,
    video_encoder_h265: Option<VideoEncoder>,
    memory: Memory,
    software_fallback: RawFallback,
    audio_encoder: AudioEncoder,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    encoder: String,
    notes: Option<String>,
}

/// A file in `board-configs/software/`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoftwareFile {
    video_encoder: VideoEncoder,
}

impl TryFrom<RawProfile> for BoardProfile {
    type Error = String;
    fn try_from(raw: RawProfile) -> Result<Self, String> {
        let software = software_encoder(&raw.software_fallback.encoder)?;
        let video_encoder = match (raw.board.hardware_encoder, raw.video_encoder) {
            (true, Some(v)) => v,
            (true, None) => {
                return Err(
                    "board.hardware_encoder is true but there is no [video_encoder]".into(),
                );
            }
            (false, None) => software.clone(),
            (false, Some(v)) => {
                return Err(format!(
                    "board.hardware_encoder is false but [video_encoder] names '{}'; a board without a hardware H.264 encoder runs its software_fallback",
                    v.element
                ));
            }
        };
        Ok(BoardProfile {
            board: raw.board,
            limits: raw.limits,
            inputs: raw.inputs,
            video_encoder,
            video_encoder_h265: raw.video_encoder_h265,
            memory: raw.memory,
            software_fallback: SoftwareFallback {
                encoder: software,
                notes: raw.software_fallback.notes,
            },
            audio_encoder: raw.audio_encoder,
        })
    }
}

/// A software encoder by element name, as `board-configs/software/` sets it
/// up.
fn software_encoder(name: &str) -> Result<VideoEncoder, String> {
    let names: Vec<&str> = SOFTWARE.iter().map(|(n, _)| *n).collect();
    let (_, text) = SOFTWARE.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        format!(
            "software_fallback.encoder: '{name}' is not one of {}",
            names.join(", ")
        )
    })?;
    let file: SoftwareFile = toml::from_str(text)
        .map_err(|e| format!("board-configs/software/{name}.toml: {}", e.message()))?;
    validate_encoder(
        &format!("software/{name}"),
        &file.video_encoder,
        Codec::H264,
    )?;
    Ok(file.video_encoder)
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardInfo {
    pub name: String,
    pub description: String,
    /// The Yocto `MACHINE` the image is built for.
    pub yocto_machine: String,
    /// The layers that `MACHINE` and the encoder's plugin need, beyond
    /// what every image has.
    pub layers: Vec<String>,
    /// Where the facts in the file come from: vendor documentation and the
    /// GStreamer plugin sources.
    pub sources: Vec<String>,
    /// Whether the board has a hardware H.264 encoder at all.
    pub hardware_encoder: bool,
}

/// Limits of the H.264 encoder in use (read by the config validation), and
/// of the H.265 one where the board has it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_fps: u32,
    pub h265: Option<CodecLimits>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CodecLimits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_fps: u32,
}

/// One way video comes into the board.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardInput {
    pub kind: InputKind,
    /// A fixed device path, where the board has one.
    pub device: Option<String>,
    /// Discovery rule: V4L2 driver names (`VIDIOC_QUERYCAP` `driver`) that
    /// identify the device; any one matches.
    #[serde(default)]
    pub driver: Vec<String>,
    /// Discovery rule: a substring of the V4L2 card name.
    pub card: Option<String>,
    pub notes: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// USB Video Class camera or capture stick.
    Uvc,
    /// CSI-2 camera through libcamera (Raspberry Pi).
    CsiLibcamera,
    /// CSI-2 camera through NVIDIA's libargus (Jetson).
    CsiArgus,
    /// CSI-2 camera as a plain V4L2 capture device.
    CsiV4l2,
    /// An HDMI-to-CSI-2 bridge chip (TC358743) on the CSI receiver.
    HdmiCsiBridge,
    /// An HDMI receiver built into the SoC (RK3588 hdmirx).
    HdmiRx,
    /// A Blackmagic DeckLink SDI/HDMI card.
    Decklink,
    /// Any other V4L2 capture device (`vivid`, a PL capture pipeline).
    V4l2,
}

impl InputKind {
    /// The GStreamer source element for this kind of input.
    pub fn source_element(self) -> &'static str {
        match self {
            InputKind::CsiLibcamera => "libcamerasrc",
            InputKind::CsiArgus => "nvarguscamerasrc",
            InputKind::Decklink => "decklinkvideosrc",
            InputKind::Uvc
            | InputKind::CsiV4l2
            | InputKind::HdmiCsiBridge
            | InputKind::HdmiRx
            | InputKind::V4l2 => "v4l2src",
        }
    }

    /// The `[inputs.video] source` that runs this input today, if any:
    /// Argus inputs are described but the daemon has no source for them
    /// yet.
    pub fn config_source(self) -> Option<&'static str> {
        match self.source_element() {
            "v4l2src" => Some("v4l2"),
            "decklinkvideosrc" => Some("decklink"),
            "libcamerasrc" => Some("libcamera"),
            _ => None,
        }
    }

    /// The name the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Uvc => "uvc",
            InputKind::CsiLibcamera => "csi-libcamera",
            InputKind::CsiArgus => "csi-argus",
            InputKind::CsiV4l2 => "csi-v4l2",
            InputKind::HdmiCsiBridge => "hdmi-csi-bridge",
            InputKind::HdmiRx => "hdmi-rx",
            InputKind::Decklink => "decklink",
            InputKind::V4l2 => "v4l2",
        }
    }

    fn is_v4l2(self) -> bool {
        self.source_element() == "v4l2src"
    }
}

/// How frames travel from capture to the encoder.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Whether capture buffers can reach the encoder as dmabufs, without a
    /// CPU copy.
    pub dmabuf: bool,
    /// `io-mode` of `v4l2src` for V4L2 inputs.
    pub io_mode: Option<IoMode>,
    /// An element that converts and scales into the encoder's memory,
    /// replacing `videoconvert ! videoscale` (Jetson: `nvvidconv`).
    pub convert: Option<String>,
    /// The caps feature of raw frames into the encoder
    /// (`memory:NVMM`); needs `convert`.
    pub caps_feature: Option<String>,
    pub notes: Option<String>,
}

impl Memory {
    /// Plain system memory: `videoconvert ! videoscale`, default `io-mode`.
    pub fn system() -> Memory {
        Memory::default()
    }
}

/// `v4l2src io-mode` values (gst-plugins-good `GstV4l2IOMode`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IoMode {
    Auto,
    Rw,
    Mmap,
    Userptr,
    Dmabuf,
    DmabufImport,
}

impl IoMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Rw => "rw",
            IoMode::Mmap => "mmap",
            IoMode::Userptr => "userptr",
            IoMode::Dmabuf => "dmabuf",
            IoMode::DmabufImport => "dmabuf-import",
        }
    }
}

/// What runs when the board has no hardware encoder, or its encoder is
/// missing at run time.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftwareFallback {
    pub encoder: VideoEncoder,
    pub notes: Option<String>,
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
    /// More properties that take the same value (Jetson's GOP is both
    /// `iframeinterval` and `idrinterval`).
    #[serde(default)]
    pub also: Vec<String>,
    /// The element's value for each of our names: profile names, `cbr`.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
}

impl Mapping {
    /// A bitrate in the unit this mapping takes (a mapping without a unit
    /// takes kbit/s; validation requires one for bitrates).
    pub fn bitrate(&self, kbps: u32) -> u64 {
        self.unit.unwrap_or(Unit::KbitPerSecond).from_kbps(kbps)
    }

    /// Every property this mapping sets.
    pub fn properties(&self) -> impl Iterator<Item = &String> {
        self.property.iter().chain(self.also.iter())
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
    /// The level asked of the encoder: through its output caps, or through
    /// `level_mapping` where the element takes it as a property.
    pub level: Option<String>,
    /// The property holding V4L2 controls (`extra-controls`), for encoders
    /// configured that way.
    pub controls_property: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    /// Properties that keep latency low (no B-frames, no lookahead, fast
    /// preset), apart from the others so the file shows which they are.
    #[serde(default)]
    pub low_latency: BTreeMap<String, Value>,
    #[serde(default)]
    pub controls: BTreeMap<String, Value>,
    pub bitrate: Mapping,
    pub gop: Mapping,
    /// Rate control; its `values` name the element's constant-bitrate mode
    /// (`cbr`), what a live link wants.
    pub rate_control: Option<Mapping>,
    /// Where the profile goes; absent, it is asked through the caps.
    pub profile: Option<Mapping>,
    /// Where `level` goes when the element takes it as a property.
    pub level_mapping: Option<Mapping>,
}

impl VideoEncoder {
    /// The mappings this encoder has, by field name.
    pub fn mappings(&self) -> Vec<(&'static str, &Mapping)> {
        let mut m = vec![("bitrate", &self.bitrate), ("gop", &self.gop)];
        for (name, o) in [
            ("rate_control", &self.rate_control),
            ("profile", &self.profile),
            ("level_mapping", &self.level_mapping),
        ] {
            if let Some(o) = o {
                m.push((name, o));
            }
        }
        m
    }
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

    /// Whether the board encodes H.264 in hardware.
    pub fn hardware_encoder(&self) -> bool {
        self.board.hardware_encoder
    }

    /// The board's encoder for `codec`: H.264 is always there (in software
    /// if need be), H.265 only where the board has it in hardware.
    pub fn encoder_for(&self, codec: Codec) -> Option<&VideoEncoder> {
        match codec {
            Codec::H264 => Some(&self.video_encoder),
            Codec::H265 => self.video_encoder_h265.as_ref(),
        }
    }

    /// The limits of the board's encoder for `codec`.
    pub fn limits_for(&self, codec: Codec) -> Option<CodecLimits> {
        match codec {
            Codec::H264 => Some(CodecLimits {
                max_width: self.limits.max_width,
                max_height: self.limits.max_height,
                max_fps: self.limits.max_fps,
            }),
            Codec::H265 => self.limits.h265,
        }
    }

    /// Checks the video encoder against this machine's GStreamer: the
    /// element exists and has every property the profile sets or maps
    /// (the controls property included), and the memory path's converter
    /// exists. The error names what is missing.
    pub fn check_video_encoder(&self) -> Result<(), String> {
        let v = &self.video_encoder;
        let Some(factory) = gst::ElementFactory::find(&v.element) else {
            return Err(format!(
                "GStreamer element '{}' is not available",
                v.element
            ));
        };
        if let Some(convert) = &self.memory.convert
            && gst::ElementFactory::find(convert).is_none()
        {
            return Err(format!(
                "GStreamer element '{convert}' (the memory path into '{}') is not available",
                v.element
            ));
        }
        let element = factory
            .create()
            .build()
            .map_err(|e| format!("creating '{}': {e}", v.element))?;
        let mapped: Vec<String> = v
            .mappings()
            .into_iter()
            .flat_map(|(_, m)| m.properties().cloned().collect::<Vec<_>>())
            .collect();
        let wanted = v
            .properties
            .keys()
            .chain(v.low_latency.keys())
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

    /// This profile with its software fallback in place of the board's own
    /// encoder, on plain system memory: what runs when the hardware encoder
    /// (or its memory path) is missing.
    pub fn with_software_encoder(&self) -> BoardProfile {
        BoardProfile {
            video_encoder: self.software_fallback.encoder.clone(),
            memory: Memory::system(),
            ..self.clone()
        }
    }

    fn validate(&self) -> Result<(), Error> {
        self.check().map_err(|reason| Error::Board {
            name: self.board.name.clone(),
            reason,
        })
    }

    fn check(&self) -> Result<(), String> {
        let b = &self.board;
        if b.name.is_empty()
            || !b
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!("board.name: '{}' is not a-z, 0-9 and '-'", b.name));
        }
        if b.yocto_machine.trim().is_empty() {
            return Err("board.yocto_machine is empty".into());
        }
        if b.layers.is_empty() {
            return Err("board.layers is empty: name the layers the MACHINE needs".into());
        }
        for layer in &b.layers {
            if !layer.starts_with("meta") || layer.contains(char::is_whitespace) {
                return Err(format!(
                    "board.layers: '{layer}' is not a layer name (meta, meta-…)"
                ));
            }
        }
        if b.sources.is_empty() {
            return Err("board.sources is empty: cite where the facts come from".into());
        }
        for s in &b.sources {
            if !s.starts_with("https://") || s.contains(char::is_whitespace) {
                return Err(format!("board.sources: '{s}' is not an https:// URL"));
            }
        }
        check_limits(
            "limits",
            CodecLimits {
                max_width: self.limits.max_width,
                max_height: self.limits.max_height,
                max_fps: self.limits.max_fps,
            },
        )?;
        match (&self.video_encoder_h265, &self.limits.h265) {
            (Some(_), Some(l)) => check_limits("limits.h265", *l)?,
            (None, None) => {}
            (Some(v), None) => {
                return Err(format!(
                    "video_encoder_h265 names '{}' but limits.h265 is missing",
                    v.element
                ));
            }
            (None, Some(_)) => {
                return Err("limits.h265 is set but there is no [video_encoder_h265]".into());
            }
        }
        if !b.hardware_encoder && self.video_encoder_h265.is_some() {
            return Err("board.hardware_encoder is false but [video_encoder_h265] is set".into());
        }
        validate_encoder("video_encoder", &self.video_encoder, Codec::H264)?;
        if let Some(v) = &self.video_encoder_h265 {
            validate_encoder("video_encoder_h265", v, Codec::H265)?;
        }
        if self.inputs.is_empty() {
            return Err("inputs is empty: say where the board's video comes from".into());
        }
        for (i, input) in self.inputs.iter().enumerate() {
            check_input(&format!("inputs[{i}]"), input)?;
        }
        check_memory(&self.memory)?;
        if !b.hardware_encoder && self.memory.dmabuf {
            return Err(
                "memory.dmabuf is true on a board without a hardware encoder: the software encoder reads system memory".into(),
            );
        }
        check_mapping("audio_encoder.bitrate", &self.audio_encoder.bitrate, false)?;
        if self.audio_encoder.bitrate.unit.is_none() {
            return Err("audio_encoder.bitrate needs a unit (bit/s or kbit/s)".into());
        }
        Ok(())
    }
}

fn check_limits(at: &str, l: CodecLimits) -> Result<(), String> {
    // Even sizes: 4:2:0 chroma halves both dimensions.
    for (field, value) in [("max_width", l.max_width), ("max_height", l.max_height)] {
        if value < 16 || !value.is_multiple_of(2) {
            return Err(format!("{at}.{field}: {value} is below 16 or odd"));
        }
    }
    if !(1..=240).contains(&l.max_fps) {
        return Err(format!("{at}.max_fps: {} is outside 1..=240", l.max_fps));
    }
    Ok(())
}

fn check_input(at: &str, input: &BoardInput) -> Result<(), String> {
    let kind = input.kind;
    if kind.is_v4l2() {
        if input.device.is_none() && input.driver.is_empty() && input.card.is_none() {
            return Err(format!(
                "{at}: a '{}' input ({}) needs a device, a driver or a card to find it by",
                kind.as_str(),
                kind.source_element()
            ));
        }
    } else if !input.driver.is_empty() || input.card.is_some() {
        return Err(format!(
            "{at}: driver and card match V4L2 devices; a '{}' input is found by {}",
            kind.as_str(),
            kind.source_element()
        ));
    }
    if let Some(d) = &input.device
        && !d.starts_with("/dev/")
    {
        return Err(format!("{at}.device: '{d}' is not under /dev/"));
    }
    if input.driver.iter().any(|d| d.trim().is_empty()) {
        return Err(format!("{at}.driver: an empty driver name"));
    }
    Ok(())
}

fn check_memory(m: &Memory) -> Result<(), String> {
    if let Some(mode @ (IoMode::Dmabuf | IoMode::DmabufImport)) = m.io_mode
        && !m.dmabuf
    {
        return Err(format!(
            "memory.io_mode: '{}' needs memory.dmabuf = true",
            mode.as_str()
        ));
    }
    if let Some(f) = &m.caps_feature {
        if m.convert.is_none() {
            return Err(format!(
                "memory.caps_feature: '{f}' needs memory.convert, the element that produces it"
            ));
        }
        if !f.starts_with("memory:") || f.len() <= "memory:".len() {
            return Err(format!(
                "memory.caps_feature: '{f}' is not a memory caps feature (memory:…)"
            ));
        }
    }
    if let Some(c) = &m.convert
        && (c.is_empty() || c.contains(|ch: char| ch.is_whitespace() || ch == '!'))
    {
        return Err(format!("memory.convert: '{c}' is not an element name"));
    }
    Ok(())
}

/// Raw formats an encoder may be fed (GStreamer video format names).
const RAW_FORMATS: &[&str] = &["I420", "NV12", "YV12", "NV16", "YUY2", "UYVY", "P010_10LE"];

fn check_mapping(at: &str, m: &Mapping, controls: bool) -> Result<(), String> {
    match (&m.property, &m.control) {
        (Some(_), None) => {}
        (None, Some(_)) if controls => {}
        (None, Some(_)) => {
            return Err(format!(
                "{at} maps to a control but the encoder has no controls_property"
            ));
        }
        _ => return Err(format!("{at} needs exactly one of 'property' or 'control'")),
    }
    if !m.also.is_empty() && m.property.is_none() {
        return Err(format!(
            "{at}.also names properties, but the mapping is a control"
        ));
    }
    for p in m.properties().chain(m.control.iter()) {
        if p.is_empty() || p.contains(char::is_whitespace) {
            return Err(format!("{at}: '{p}' is not a property or control name"));
        }
    }
    Ok(())
}

fn validate_encoder(at: &str, v: &VideoEncoder, codec: Codec) -> Result<(), String> {
    if v.element.is_empty() || v.element.contains(char::is_whitespace) {
        return Err(format!(
            "{at}.element: '{}' is not an element name",
            v.element
        ));
    }
    if !RAW_FORMATS.contains(&v.raw_format.as_str()) {
        return Err(format!(
            "{at}.raw_format: '{}' is not one of {}",
            v.raw_format,
            RAW_FORMATS.join(", ")
        ));
    }
    let has_controls = v.controls_property.is_some();
    for (name, m) in v.mappings() {
        check_mapping(&format!("{at}.{name}"), m, has_controls)?;
    }
    if v.bitrate.unit.is_none() {
        return Err(format!("{at}.bitrate needs a unit (bit/s or kbit/s)"));
    }
    for (name, m) in v.mappings() {
        if name != "bitrate" && m.unit.is_some() {
            return Err(format!("{at}.{name}.unit: only bitrates have a unit"));
        }
        if matches!(name, "bitrate" | "gop") && !m.values.is_empty() {
            return Err(format!(
                "{at}.{name}.values: a number passes through, it has no values"
            ));
        }
    }
    if let Some(rc) = &v.rate_control
        && !rc.values.contains_key("cbr")
    {
        return Err(format!(
            "{at}.rate_control.values has no 'cbr': the element's constant-bitrate mode"
        ));
    }
    if let Some(p) = &v.profile {
        for name in codec.profiles() {
            if !p.values.contains_key(*name) {
                return Err(format!("{at}.profile.values has no '{name}'"));
            }
        }
    }
    if let Some(level) = &v.level
        && !codec.levels().contains(&level.as_str())
    {
        return Err(format!(
            "{at}.level: '{level}' is not a {codec:?} level ({})",
            codec.levels().join(", ")
        ));
    }
    if let Some(lm) = &v.level_mapping {
        let Some(level) = &v.level else {
            return Err(format!("{at}.level_mapping is set but {at}.level is not"));
        };
        if !lm.values.contains_key(level) {
            return Err(format!("{at}.level_mapping.values has no '{level}'"));
        }
    }
    if !v.controls.is_empty() && !has_controls {
        return Err(format!("{at}.controls is set but controls_property is not"));
    }
    // A property set twice would leave the pipeline text ambiguous.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let fixed = v
        .properties
        .keys()
        .map(|k| (k.as_str(), "properties"))
        .chain(v.low_latency.keys().map(|k| (k.as_str(), "low_latency")));
    let mapped = v
        .mappings()
        .into_iter()
        .flat_map(|(name, m)| m.properties().map(move |p| (p.as_str(), name)));
    for (prop, from) in fixed.chain(mapped).chain(
        v.controls_property
            .iter()
            .map(|p| (p.as_str(), "controls_property")),
    ) {
        if let Some(first) = seen.insert(prop, from) {
            return Err(format!(
                "{at}: property '{prop}' is set by both {first} and {from}"
            ));
        }
    }
    Ok(())
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
                assert_eq!(
                    path.file_stem().unwrap().to_str().unwrap(),
                    p.board.name,
                    "a board file is named after its board"
                );
                n += 1;
            }
        }
        assert_eq!(n, BoardProfile::builtin_names().len());
    }

    #[test]
    fn every_software_encoder_file_parses_and_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../board-configs/software");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let v = software_encoder(&name).unwrap();
            assert_eq!(v.element, name);
            n += 1;
        }
        assert_eq!(n, SOFTWARE.len());
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
    fn a_missing_memory_converter_is_a_reason_to_fall_back() {
        gst::init().unwrap();
        // The generic profile's x264enc with Jetson's converter in front:
        // x264enc exists here, nvvidconv does not.
        let mut p = BoardProfile::builtin("generic-x86-64").unwrap();
        p.memory = BoardProfile::builtin("jetson-agx-orin-devkit")
            .unwrap()
            .memory;
        let e = p.check_video_encoder().unwrap_err();
        assert!(
            e.contains("'nvvidconv'") && e.contains("memory path"),
            "{e}"
        );
        let sw = p.with_software_encoder();
        assert_eq!(sw.memory, Memory::system());
        assert_eq!(sw.check_video_encoder(), Ok(()));
    }

    #[test]
    fn the_software_fallback_is_the_one_the_board_declares() {
        gst::init().unwrap();
        for name in BoardProfile::builtin_names() {
            let p = BoardProfile::builtin(name).unwrap();
            let sw = p.with_software_encoder();
            assert_eq!(sw.video_encoder, p.software_fallback.encoder, "{name}");
            assert_eq!(sw.memory, Memory::system(), "{name}");
            assert!(
                ["x264enc", "openh264enc"].contains(&sw.video_encoder.element.as_str()),
                "{name}"
            );
            // Both software encoders are installed here: every fallback
            // must pass the same check the daemon runs before using it.
            assert_eq!(sw.check_video_encoder(), Ok(()), "{name}");
        }
        let arm = BoardProfile::builtin("qemuarm64").unwrap();
        assert_eq!(arm.video_encoder.element, "openh264enc");
    }

    #[test]
    fn boards_without_a_hardware_encoder_run_their_fallback() {
        for name in [
            "generic-x86-64",
            "raspberrypi5",
            "jetson-orin-nano-devkit",
            "qemux86-64",
            "qemuarm64",
        ] {
            let p = BoardProfile::builtin(name).unwrap();
            assert!(!p.hardware_encoder(), "{name}");
            assert_eq!(p.video_encoder, p.software_fallback.encoder, "{name}");
            assert!(p.encoder_for(Codec::H265).is_none(), "{name}");
            assert!(!p.memory.dmabuf, "{name}");
        }
        for name in [
            "raspberrypi4-64",
            "imx8mp-lpddr4-evk",
            "rockchip-rk3588-evb",
            "jetson-agx-orin-devkit",
            "zynqmp-ev-generic",
        ] {
            let p = BoardProfile::builtin(name).unwrap();
            assert!(p.hardware_encoder(), "{name}");
            assert_ne!(p.video_encoder, p.software_fallback.encoder, "{name}");
        }
    }

    fn bad(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "the fixture has no {from:?}");
        BoardProfile::parse("t", &text.replace(from, to))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_keys_and_bad_mappings_are_named() {
        let generic = include_str!("../../board-configs/generic-x86-64.toml");
        let e = bad(generic, "[limits]", "[limits]\nmax_widht = 3");
        assert!(e.contains("max_widht"), "{e}");
        let pi = include_str!("../../board-configs/raspberrypi4-64.toml");
        let e = bad(pi, "control = \"h264_i_frame_period\"", "");
        assert!(e.contains("video_encoder.gop"), "{e}");
        let e = bad(
            pi,
            "control = \"h264_i_frame_period\"",
            "control = \"h264_i_frame_period\"\nproperty = \"x\"",
        );
        assert!(
            e.contains("video_encoder.gop") && e.contains("exactly one"),
            "{e}"
        );
        let e = BoardProfile::builtin("nope").unwrap_err().to_string();
        assert!(e.contains("'nope'") && e.contains("generic-x86-64"), "{e}");
    }

    #[test]
    fn new_fields_are_validated_by_name_and_value() {
        let pi = include_str!("../../board-configs/raspberrypi4-64.toml");
        let rk = include_str!("../../board-configs/rockchip-rk3588-evb.toml");
        let generic = include_str!("../../board-configs/generic-x86-64.toml");
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                pi,
                "layers = [\"meta\", ",
                "layers = [\"poky\", ",
                &["board.layers", "'poky'"],
            ),
            (
                generic,
                "encoder = \"x264enc\"",
                "encoder = \"x265enc\"",
                &["software_fallback.encoder", "'x265enc'", "openh264enc"],
            ),
            (
                pi,
                "hardware_encoder = true",
                "hardware_encoder = false",
                &["board.hardware_encoder", "'v4l2h264enc'"],
            ),
            (
                generic,
                "hardware_encoder = false",
                "hardware_encoder = true",
                &["board.hardware_encoder", "[video_encoder]"],
            ),
            (
                pi,
                "raw_format = \"I420\"",
                "raw_format = \"RGBQ\"",
                &["video_encoder.raw_format", "'RGBQ'"],
            ),
            (
                pi,
                "level = \"4\"",
                "level = \"4.7\"",
                &["video_encoder.level", "'4.7'"],
            ),
            (
                rk,
                "cbr = \"cbr\"",
                "vbr = \"vbr\"",
                &["video_encoder.rate_control", "'cbr'"],
            ),
            (
                rk,
                "baseline = \"baseline\", ",
                "",
                &["video_encoder.profile.values", "'baseline'"],
            ),
            (
                rk,
                "io_mode = \"dmabuf\"",
                "io_mode = \"dmabuff\"",
                &["dmabuff"],
            ),
            (
                rk,
                "dmabuf = true",
                "dmabuf = false",
                &["memory.io_mode", "'dmabuf'"],
            ),
            (rk, "[limits.h265]", "[limits.h266]", &["h266"]),
            (rk, "kind = \"hdmi-rx\"", "kind = \"hdmi-in\"", &["hdmi-in"]),
            (
                pi,
                "driver = [\"uvcvideo\"]",
                "driver = []",
                &["inputs[", "'uvc' input (v4l2src) needs"],
            ),
            (
                pi,
                "sources = [",
                "sources = [\"http://example.com\", ",
                &["board.sources", "'http://example.com'"],
            ),
        ];
        for (text, from, to, wanted) in cases {
            let e = bad(text, from, to);
            for w in *wanted {
                assert!(e.contains(w), "{from} -> {to}: {e}");
            }
        }
    }

    #[test]
    fn a_board_without_h265_limits_for_its_h265_encoder_is_refused() {
        let rk = include_str!("../../board-configs/rockchip-rk3588-evb.toml");
        let start = rk.find("[limits.h265]").unwrap();
        let end = start + rk[start..].find("\n\n").unwrap();
        let text = format!("{}{}", &rk[..start], &rk[end..]);
        let e = BoardProfile::parse("t", &text).unwrap_err().to_string();
        assert!(
            e.contains("limits.h265 is missing") && e.contains("mpph265enc"),
            "{e}"
        );
    }

    #[test]
    fn input_kinds_read_as_written_and_find_their_devices() {
        use InputKind::*;
        for kind in [
            Uvc,
            CsiLibcamera,
            CsiArgus,
            CsiV4l2,
            HdmiCsiBridge,
            HdmiRx,
            Decklink,
            V4l2,
        ] {
            let i: BoardInput = toml::from_str(&format!("kind = \"{}\"", kind.as_str())).unwrap();
            assert_eq!(i.kind, kind);
        }
        let i: BoardInput = toml::from_str("kind = \"decklink\"\ndriver = [\"uvcvideo\"]").unwrap();
        let e = check_input("inputs[1]", &i).unwrap_err();
        assert!(e.contains("inputs[1]") && e.contains("'decklink'"), "{e}");
        let i: BoardInput = toml::from_str("kind = \"uvc\"\ndevice = \"video0\"").unwrap();
        let e = check_input("inputs[0]", &i).unwrap_err();
        assert!(
            e.contains("inputs[0].device") && e.contains("'video0'"),
            "{e}"
        );
    }

    #[test]
    fn memory_path_rules() {
        let mut m = Memory {
            dmabuf: true,
            caps_feature: Some("memory:NVMM".into()),
            ..Memory::default()
        };
        assert!(check_memory(&m).unwrap_err().contains("memory.convert"));
        m.convert = Some("nvvidconv".into());
        assert_eq!(check_memory(&m), Ok(()));
        m.caps_feature = Some("NVMM".into());
        assert!(check_memory(&m).unwrap_err().contains("'NVMM'"));
        let m = Memory {
            io_mode: Some(IoMode::DmabufImport),
            ..Memory::default()
        };
        assert!(check_memory(&m).unwrap_err().contains("memory.dmabuf"));
    }
}
