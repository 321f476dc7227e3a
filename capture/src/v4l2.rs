//! The V4L2 kernel interface we need beyond GStreamer: device identity,
//! inputs and their signal status, formats and sizes, DV timings (HDMI/SDI
//! receivers), source-change events, and controls. Direct ioctls on
//! `#[repr(C)]` mirrors of `linux/videodev2.h`; every call returns Rust types
//! and every error names the device, the ioctl and the errno text.
//!
//! Why not a crate: the `v4l` crate has no multi-planar support, which
//! Rockchip's HDMI receiver (`rk_hdmirx`) needs, and we use a dozen ioctls
//! that change only when the kernel's UAPI does (never incompatibly).
//!
//! Layouts are those of the 64-bit Linux ABIs we ship (x86-64 and aarch64,
//! which share the generic `_IOC` encoding); the tests compile a C program
//! against the installed kernel headers and compare every size, offset and
//! ioctl number.
//!
//! References: the V4L2 UAPI documentation ("Video for Linux API",
//! docs.kernel.org/userspace-api/media/v4l/), sections named per ioctl
//! below as `vidioc-*.rst`.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

// ---------------------------------------------------------------------------
// ioctl numbers: asm-generic/ioctl.h, used by x86-64 and arm64.
// ---------------------------------------------------------------------------

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    // A size that does not fit the 14-bit field is a bug in a struct
    // mirror; fail the build rather than issue a wrong request.
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
const fn ior<T>(nr: u8) -> u32 {
    ioc(IOC_READ, b'V', nr, size_of::<T>())
}
const fn iow<T>(nr: u8) -> u32 {
    ioc(IOC_WRITE, b'V', nr, size_of::<T>())
}
const fn iowr<T>(nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, b'V', nr, size_of::<T>())
}

pub const VIDIOC_QUERYCAP: u32 = ior::<RawCapability>(0);
pub const VIDIOC_ENUM_FMT: u32 = iowr::<RawFmtDesc>(2);
pub const VIDIOC_ENUMINPUT: u32 = iowr::<RawInput>(26);
pub const VIDIOC_G_CTRL: u32 = iowr::<RawControl>(27);
pub const VIDIOC_S_CTRL: u32 = iowr::<RawControl>(28);
pub const VIDIOC_QUERYCTRL: u32 = iowr::<RawQueryCtrl>(36);
pub const VIDIOC_QUERYMENU: u32 = iowr::<RawQueryMenu>(37);
pub const VIDIOC_G_INPUT: u32 = ior::<libc::c_int>(38);
pub const VIDIOC_S_INPUT: u32 = iowr::<libc::c_int>(39);
pub const VIDIOC_ENUM_FRAMESIZES: u32 = iowr::<RawFrmSizeEnum>(74);
pub const VIDIOC_ENUM_FRAMEINTERVALS: u32 = iowr::<RawFrmIvalEnum>(75);
pub const VIDIOC_S_DV_TIMINGS: u32 = iowr::<RawDvTimings>(87);
pub const VIDIOC_G_DV_TIMINGS: u32 = iowr::<RawDvTimings>(88);
pub const VIDIOC_DQEVENT: u32 = ior::<RawEvent>(89);
pub const VIDIOC_SUBSCRIBE_EVENT: u32 = iow::<RawEventSubscription>(90);
pub const VIDIOC_UNSUBSCRIBE_EVENT: u32 = iow::<RawEventSubscription>(91);
pub const VIDIOC_QUERY_DV_TIMINGS: u32 = ior::<RawDvTimings>(99);

// ---------------------------------------------------------------------------
// Constants from videodev2.h.
// ---------------------------------------------------------------------------

pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const V4L2_CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
pub const V4L2_CAP_VIDEO_OVERLAY: u32 = 0x0000_0004;
pub const V4L2_CAP_VBI_CAPTURE: u32 = 0x0000_0010;
pub const V4L2_CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
pub const V4L2_CAP_VIDEO_OUTPUT_MPLANE: u32 = 0x0000_2000;
pub const V4L2_CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
pub const V4L2_CAP_VIDEO_M2M: u32 = 0x0000_8000;
pub const V4L2_CAP_TUNER: u32 = 0x0001_0000;
pub const V4L2_CAP_AUDIO: u32 = 0x0002_0000;
pub const V4L2_CAP_RADIO: u32 = 0x0004_0000;
pub const V4L2_CAP_SDR_CAPTURE: u32 = 0x0010_0000;
pub const V4L2_CAP_EXT_PIX_FORMAT: u32 = 0x0020_0000;
pub const V4L2_CAP_META_CAPTURE: u32 = 0x0080_0000;
pub const V4L2_CAP_READWRITE: u32 = 0x0100_0000;
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
pub const V4L2_CAP_META_OUTPUT: u32 = 0x0800_0000;
pub const V4L2_CAP_TOUCH: u32 = 0x1000_0000;
pub const V4L2_CAP_IO_MC: u32 = 0x2000_0000;
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;

pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;

pub const V4L2_INPUT_TYPE_TUNER: u32 = 1;
pub const V4L2_INPUT_TYPE_CAMERA: u32 = 2;
pub const V4L2_INPUT_TYPE_TOUCH: u32 = 3;

pub const V4L2_IN_ST_NO_POWER: u32 = 0x0000_0001;
pub const V4L2_IN_ST_NO_SIGNAL: u32 = 0x0000_0002;
pub const V4L2_IN_ST_NO_COLOR: u32 = 0x0000_0004;
pub const V4L2_IN_ST_HFLIP: u32 = 0x0000_0010;
pub const V4L2_IN_ST_VFLIP: u32 = 0x0000_0020;
pub const V4L2_IN_ST_NO_H_LOCK: u32 = 0x0000_0100;
pub const V4L2_IN_ST_COLOR_KILL: u32 = 0x0000_0200;
pub const V4L2_IN_ST_NO_V_LOCK: u32 = 0x0000_0400;
pub const V4L2_IN_ST_NO_STD_LOCK: u32 = 0x0000_0800;
pub const V4L2_IN_ST_NO_SYNC: u32 = 0x0001_0000;
pub const V4L2_IN_ST_NO_EQU: u32 = 0x0002_0000;
pub const V4L2_IN_ST_NO_CARRIER: u32 = 0x0004_0000;
pub const V4L2_IN_ST_MACROVISION: u32 = 0x0100_0000;
pub const V4L2_IN_ST_NO_ACCESS: u32 = 0x0200_0000;
pub const V4L2_IN_ST_VTR: u32 = 0x0400_0000;

pub const V4L2_IN_CAP_DV_TIMINGS: u32 = 0x0000_0002;
pub const V4L2_IN_CAP_STD: u32 = 0x0000_0004;
pub const V4L2_IN_CAP_NATIVE_SIZE: u32 = 0x0000_0008;

pub const V4L2_FMT_FLAG_COMPRESSED: u32 = 0x0001;
pub const V4L2_FMT_FLAG_EMULATED: u32 = 0x0002;

pub const V4L2_FRMSIZE_TYPE_DISCRETE: u32 = 1;
pub const V4L2_FRMSIZE_TYPE_CONTINUOUS: u32 = 2;
pub const V4L2_FRMSIZE_TYPE_STEPWISE: u32 = 3;
pub const V4L2_FRMIVAL_TYPE_DISCRETE: u32 = 1;
pub const V4L2_FRMIVAL_TYPE_CONTINUOUS: u32 = 2;
pub const V4L2_FRMIVAL_TYPE_STEPWISE: u32 = 3;

pub const V4L2_DV_BT_656_1120: u32 = 0;
pub const V4L2_DV_INTERLACED: u32 = 1;

pub const V4L2_EVENT_EOS: u32 = 2;
pub const V4L2_EVENT_SOURCE_CHANGE: u32 = 5;
pub const V4L2_EVENT_SRC_CH_RESOLUTION: u32 = 1 << 0;
pub const V4L2_EVENT_SUB_FL_SEND_INITIAL: u32 = 1 << 0;

pub const V4L2_CTRL_TYPE_INTEGER: u32 = 1;
pub const V4L2_CTRL_TYPE_BOOLEAN: u32 = 2;
pub const V4L2_CTRL_TYPE_MENU: u32 = 3;
pub const V4L2_CTRL_TYPE_BUTTON: u32 = 4;
pub const V4L2_CTRL_TYPE_CTRL_CLASS: u32 = 6;
pub const V4L2_CTRL_TYPE_INTEGER_MENU: u32 = 9;
pub const V4L2_CTRL_FLAG_DISABLED: u32 = 0x0001;
pub const V4L2_CTRL_FLAG_NEXT_CTRL: u32 = 0x8000_0000;

// ---------------------------------------------------------------------------
// Struct mirrors. Field names follow the header so a reader can diff them.
// ---------------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawCapability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawInput {
    pub index: u32,
    pub name: [u8; 32],
    pub type_: u32,
    pub audioset: u32,
    pub tuner: u32,
    pub std: u64,
    pub status: u32,
    pub capabilities: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawFmtDesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

/// `union { v4l2_frmsize_discrete; v4l2_frmsize_stepwise }`: six u32s, read
/// as (width, height) when discrete, as (min_w, max_w, step_w, min_h, max_h,
/// step_h) otherwise.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawFrmSizeEnum {
    pub index: u32,
    pub pixel_format: u32,
    pub type_: u32,
    pub size: [u32; 6],
    pub reserved: [u32; 2],
}

/// `union { v4l2_fract discrete; v4l2_frmival_stepwise }`: three fractions
/// (numerator, denominator), the first alone when discrete.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawFrmIvalEnum {
    pub index: u32,
    pub pixel_format: u32,
    pub width: u32,
    pub height: u32,
    pub type_: u32,
    pub interval: [u32; 6],
    pub reserved: [u32; 2],
}

/// `struct v4l2_bt_timings`, packed in the header.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct RawBtTimings {
    pub width: u32,
    pub height: u32,
    pub interlaced: u32,
    pub polarities: u32,
    pub pixelclock: u64,
    pub hfrontporch: u32,
    pub hsync: u32,
    pub hbackporch: u32,
    pub vfrontporch: u32,
    pub vsync: u32,
    pub vbackporch: u32,
    pub il_vfrontporch: u32,
    pub il_vsync: u32,
    pub il_vbackporch: u32,
    pub standards: u32,
    pub flags: u32,
    pub picture_aspect: [u32; 2],
    pub cea861_vic: u8,
    pub hdmi_vic: u8,
    pub reserved: [u8; 46],
}

/// `struct v4l2_dv_timings`, packed: the union of `bt` (124 bytes) and
/// `reserved[32]` (128 bytes) is 128 bytes, hence the tail.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct RawDvTimings {
    pub type_: u32,
    pub bt: RawBtTimings,
    pub union_tail: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawEventSubscription {
    pub type_: u32,
    pub id: u32,
    pub flags: u32,
    pub reserved: [u32; 5],
}

/// `struct v4l2_event`. The payload union holds an `__s64` (in
/// `v4l2_event_ctrl`), so it is 8-aligned: `[u64; 8]` keeps that.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawEvent {
    pub type_: u32,
    pub u: [u64; 8],
    pub pending: u32,
    pub sequence: u32,
    pub timestamp: libc::timespec,
    pub id: u32,
    pub reserved: [u32; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawQueryCtrl {
    pub id: u32,
    pub type_: u32,
    pub name: [u8; 32],
    pub minimum: i32,
    pub maximum: i32,
    pub step: i32,
    pub default_value: i32,
    pub flags: u32,
    pub reserved: [u32; 2],
}

/// `struct v4l2_querymenu`, packed; the union is `name[32]` or an `__s64`
/// value (integer menus).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct RawQueryMenu {
    pub id: u32,
    pub index: u32,
    pub name: [u8; 32],
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawControl {
    pub id: u32,
    pub value: i32,
}

/// All-zero is a valid value of every mirror above (plain integers and
/// arrays), and the kernel expects reserved fields zeroed.
fn zeroed<T: Copy>() -> T {
    // SAFETY: only instantiated with the integer-only repr(C) mirrors above
    // (and libc::timespec inside RawEvent), for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// One error type for this module; each names the device path.
#[derive(Debug, Error)]
pub enum V4l2Error {
    #[error("{path}: cannot open: {source}")]
    Open { path: String, source: io::Error },
    #[error("{path}: not a V4L2 device (VIDIOC_QUERYCAP: {source})")]
    NotV4l2 { path: String, source: io::Error },
    #[error("{path}: {ioctl}: {source}")]
    Ioctl {
        path: String,
        ioctl: &'static str,
        source: io::Error,
    },
    #[error("{path}: no control named '{name}' (controls: {available})")]
    NoSuchControl {
        path: String,
        name: String,
        available: String,
    },
    #[error("{path}: control '{control}' has no value '{value}' (values: {available})")]
    BadControlValue {
        path: String,
        control: String,
        value: String,
        available: String,
    },
}

impl V4l2Error {
    /// The errno behind the error, if it came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            V4l2Error::Open { source, .. }
            | V4l2Error::NotV4l2 { source, .. }
            | V4l2Error::Ioctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The device went away (USB unplug): `ENODEV`, as the V4L2 core
    /// returns once a node is unregistered.
    pub fn is_gone(&self) -> bool {
        matches!(self.errno(), Some(libc::ENODEV) | Some(libc::ENOENT))
    }
}

/// Why `VIDIOC_QUERY_DV_TIMINGS` found no timings (vidioc-query-dv-timings.rst,
/// "Return Value").
#[derive(Debug, Error)]
pub enum DvQueryError {
    /// `ENOLINK`: no timings could be detected because no signal was found.
    #[error("no signal")]
    NoSignal,
    /// `ENOLCK`: the signal was unstable and the hardware could not lock on.
    #[error("no lock (unstable signal)")]
    NoLock,
    /// `ERANGE`: timings were found but are out of the hardware's range.
    #[error("signal out of range")]
    OutOfRange,
    /// `ENODATA`/`ENOTTY`: this input or device has no DV timings.
    #[error("no DV timings on this input")]
    Unsupported,
    #[error(transparent)]
    Failed(V4l2Error),
}

// ---------------------------------------------------------------------------
// Safe types.
// ---------------------------------------------------------------------------

/// What `VIDIOC_QUERYCAP` says about a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// `KERNEL_VERSION(a, b, c)` of the driver.
    pub version: u32,
    /// Capabilities of the physical device as a whole.
    pub capabilities: u32,
    /// Capabilities of this node (vidioc-querycap.rst): the ones to act on.
    pub device_caps: u32,
}

impl Capability {
    fn from_raw(raw: &RawCapability) -> Capability {
        let device_caps = if raw.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
            raw.device_caps
        } else {
            // Drivers before Linux 3.3 did not fill device_caps.
            raw.capabilities
        };
        Capability {
            driver: c_string(&raw.driver),
            card: c_string(&raw.card),
            bus_info: c_string(&raw.bus_info),
            version: raw.version,
            capabilities: raw.capabilities,
            device_caps,
        }
    }

    /// "6.1.0".
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            self.version >> 16,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }

    /// The capture buffer type of this node, preferring single-planar when
    /// a driver offers both; `None` for nodes that capture no video
    /// (encoders, metadata, outputs).
    pub fn capture_buf_type(&self) -> Option<BufType> {
        if self.device_caps & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE) != 0 {
            None
        } else if self.device_caps & V4L2_CAP_VIDEO_CAPTURE != 0 {
            Some(BufType::VideoCapture)
        } else if self.device_caps & V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            Some(BufType::VideoCaptureMplane)
        } else {
            None
        }
    }

    pub fn is_streaming(&self) -> bool {
        self.device_caps & V4L2_CAP_STREAMING != 0
    }

    /// A word for what the node is: "capture", "capture-mplane", "m2m"
    /// (a codec or converter, like the board's encoder), "output",
    /// "metadata" or "other".
    pub fn kind(&self) -> &'static str {
        let c = self.device_caps;
        if c & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE) != 0 {
            "m2m"
        } else if c & V4L2_CAP_VIDEO_CAPTURE != 0 {
            "capture"
        } else if c & V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            "capture-mplane"
        } else if c & (V4L2_CAP_VIDEO_OUTPUT | V4L2_CAP_VIDEO_OUTPUT_MPLANE) != 0 {
            "output"
        } else if c & (V4L2_CAP_META_CAPTURE | V4L2_CAP_META_OUTPUT) != 0 {
            "metadata"
        } else {
            "other"
        }
    }

    /// The node's capability bits as words.
    pub fn words(&self) -> Vec<String> {
        bits_to_words(self.device_caps & !V4L2_CAP_DEVICE_CAPS, CAP_WORDS)
    }
}

const CAP_WORDS: &[(u32, &str)] = &[
    (V4L2_CAP_VIDEO_CAPTURE, "video-capture"),
    (V4L2_CAP_VIDEO_OUTPUT, "video-output"),
    (V4L2_CAP_VIDEO_OVERLAY, "video-overlay"),
    (V4L2_CAP_VBI_CAPTURE, "vbi-capture"),
    (V4L2_CAP_VIDEO_CAPTURE_MPLANE, "video-capture-mplane"),
    (V4L2_CAP_VIDEO_OUTPUT_MPLANE, "video-output-mplane"),
    (V4L2_CAP_VIDEO_M2M_MPLANE, "video-m2m-mplane"),
    (V4L2_CAP_VIDEO_M2M, "video-m2m"),
    (V4L2_CAP_TUNER, "tuner"),
    (V4L2_CAP_AUDIO, "audio"),
    (V4L2_CAP_RADIO, "radio"),
    (V4L2_CAP_SDR_CAPTURE, "sdr-capture"),
    (V4L2_CAP_EXT_PIX_FORMAT, "ext-pix-format"),
    (V4L2_CAP_META_CAPTURE, "meta-capture"),
    (V4L2_CAP_READWRITE, "readwrite"),
    (V4L2_CAP_STREAMING, "streaming"),
    (V4L2_CAP_META_OUTPUT, "meta-output"),
    (V4L2_CAP_TOUCH, "touch"),
    (V4L2_CAP_IO_MC, "io-mc"),
];

/// `VIDIOC_ENUMINPUT` status bits as words an operator reads in the state
/// report (vidioc-enuminput.rst, "Input Status Flags"). Unknown bits come
/// out as hex.
pub fn input_status_words(status: u32) -> Vec<String> {
    bits_to_words(status, STATUS_WORDS)
}

const STATUS_WORDS: &[(u32, &str)] = &[
    (V4L2_IN_ST_NO_POWER, "no power"),
    (V4L2_IN_ST_NO_SIGNAL, "no signal"),
    (V4L2_IN_ST_NO_COLOR, "no color"),
    (V4L2_IN_ST_HFLIP, "flipped horizontally"),
    (V4L2_IN_ST_VFLIP, "flipped vertically"),
    (V4L2_IN_ST_NO_H_LOCK, "no horizontal lock"),
    (V4L2_IN_ST_COLOR_KILL, "color killer active"),
    (V4L2_IN_ST_NO_V_LOCK, "no vertical lock"),
    (V4L2_IN_ST_NO_STD_LOCK, "no standard lock"),
    (V4L2_IN_ST_NO_SYNC, "no sync"),
    (V4L2_IN_ST_NO_EQU, "no equalizer lock"),
    (V4L2_IN_ST_NO_CARRIER, "no carrier"),
    (V4L2_IN_ST_MACROVISION, "macrovision"),
    (V4L2_IN_ST_NO_ACCESS, "no access"),
    (V4L2_IN_ST_VTR, "vtr time constant"),
];

/// `VIDIOC_ENUMINPUT` capability bits as words.
pub fn input_capability_words(caps: u32) -> Vec<String> {
    bits_to_words(
        caps,
        &[
            (V4L2_IN_CAP_DV_TIMINGS, "dv-timings"),
            (V4L2_IN_CAP_STD, "std"),
            (V4L2_IN_CAP_NATIVE_SIZE, "native-size"),
        ],
    )
}

fn bits_to_words(bits: u32, table: &[(u32, &str)]) -> Vec<String> {
    let mut out: Vec<String> = table
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, w)| (*w).to_string())
        .collect();
    let known = table.iter().fold(0, |acc, (bit, _)| acc | bit);
    let unknown = bits & !known;
    if unknown != 0 {
        out.push(format!("{unknown:#x}"));
    }
    out
}

/// One input of a node (`VIDIOC_ENUMINPUT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub index: u32,
    pub name: String,
    /// `V4L2_INPUT_TYPE_*`.
    pub type_: u32,
    /// `V4L2_IN_ST_*`; only meaningful for the current input
    /// (vidioc-enuminput.rst).
    pub status: u32,
    /// `V4L2_IN_CAP_*`.
    pub capabilities: u32,
}

impl Input {
    pub fn has_dv_timings(&self) -> bool {
        self.capabilities & V4L2_IN_CAP_DV_TIMINGS != 0
    }

    pub fn type_word(&self) -> &'static str {
        match self.type_ {
            V4L2_INPUT_TYPE_TUNER => "tuner",
            V4L2_INPUT_TYPE_CAMERA => "camera",
            V4L2_INPUT_TYPE_TOUCH => "touch",
            _ => "unknown",
        }
    }
}

/// The two capture buffer types a node can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BufType {
    VideoCapture,
    VideoCaptureMplane,
}

impl BufType {
    pub fn raw(self) -> u32 {
        match self {
            BufType::VideoCapture => V4L2_BUF_TYPE_VIDEO_CAPTURE,
            BufType::VideoCaptureMplane => V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        }
    }
}

/// One pixel format (`VIDIOC_ENUM_FMT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatDesc {
    pub buf_type: BufType,
    pub pixelformat: u32,
    pub description: String,
    pub flags: u32,
}

impl FormatDesc {
    pub fn fourcc(&self) -> String {
        fourcc_string(self.pixelformat)
    }
}

/// A FourCC as text: "YUYV", "MJPG", "NV12"; big-endian variants get "-BE".
pub fn fourcc_string(code: u32) -> String {
    let bytes = (code & 0x7fff_ffff).to_le_bytes();
    let mut s: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    s.truncate(s.trim_end().len());
    if code & 0x8000_0000 != 0 {
        s.push_str("-BE");
    }
    s
}

/// `v4l2_fourcc('Y','U','Y','V')`.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// Sizes a format offers (`VIDIOC_ENUM_FRAMESIZES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSize {
    Discrete {
        width: u32,
        height: u32,
    },
    /// Continuous is stepwise with steps of 1.
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
    },
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameSize::Discrete { width, height } => write!(f, "{width}x{height}"),
            FrameSize::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => write!(
                f,
                "{min_width}-{max_width}/{step_width}x{min_height}-{max_height}/{step_height}"
            ),
        }
    }
}

/// A frame interval in seconds, as a fraction (`v4l2_fract`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    /// The frame rate of this interval, reduced: 1/30 s is "30/1",
    /// 1001/30000 s is "30000/1001" (the form the config's `framerate`
    /// takes).
    pub fn as_rate_string(self) -> String {
        if self.numerator == 0 {
            return "0/0".into();
        }
        let g = gcd(u64::from(self.numerator), u64::from(self.denominator)).max(1);
        format!(
            "{}/{}",
            u64::from(self.denominator) / g,
            u64::from(self.numerator) / g
        )
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Intervals offered for one size (`VIDIOC_ENUM_FRAMEINTERVALS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameInterval {
    Discrete(Fraction),
    Stepwise {
        min: Fraction,
        max: Fraction,
        step: Fraction,
    },
}

impl FrameInterval {
    /// As frame rates: "30/1", or "1/1-60/1" for a range (slowest to
    /// fastest).
    pub fn as_rate_string(&self) -> String {
        match self {
            FrameInterval::Discrete(f) => f.as_rate_string(),
            FrameInterval::Stepwise { min, max, .. } => {
                format!("{}-{}", max.as_rate_string(), min.as_rate_string())
            }
        }
    }
}

/// BT.656/1120 DV timings (`struct v4l2_bt_timings`), the detected or
/// configured format of an HDMI/SDI input. All of the kernel's fields are
/// kept so the value can be handed back to `VIDIOC_S_DV_TIMINGS` unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DvTimings {
    pub width: u32,
    pub height: u32,
    pub interlaced: bool,
    pub polarities: u32,
    /// Hz.
    pub pixelclock: u64,
    pub hfrontporch: u32,
    pub hsync: u32,
    pub hbackporch: u32,
    pub vfrontporch: u32,
    pub vsync: u32,
    pub vbackporch: u32,
    pub il_vfrontporch: u32,
    pub il_vsync: u32,
    pub il_vbackporch: u32,
    pub standards: u32,
    pub flags: u32,
    pub picture_aspect: (u32, u32),
    pub cea861_vic: u8,
    pub hdmi_vic: u8,
}

impl DvTimings {
    fn from_raw(raw: &RawDvTimings) -> DvTimings {
        let bt = raw.bt;
        DvTimings {
            width: bt.width,
            height: bt.height,
            interlaced: bt.interlaced == V4L2_DV_INTERLACED,
            polarities: bt.polarities,
            pixelclock: bt.pixelclock,
            hfrontporch: bt.hfrontporch,
            hsync: bt.hsync,
            hbackporch: bt.hbackporch,
            vfrontporch: bt.vfrontporch,
            vsync: bt.vsync,
            vbackporch: bt.vbackporch,
            il_vfrontporch: bt.il_vfrontporch,
            il_vsync: bt.il_vsync,
            il_vbackporch: bt.il_vbackporch,
            standards: bt.standards,
            flags: bt.flags,
            picture_aspect: (bt.picture_aspect[0], bt.picture_aspect[1]),
            cea861_vic: bt.cea861_vic,
            hdmi_vic: bt.hdmi_vic,
        }
    }

    fn to_raw(self) -> RawDvTimings {
        let mut raw: RawDvTimings = zeroed();
        raw.type_ = V4L2_DV_BT_656_1120;
        raw.bt = RawBtTimings {
            width: self.width,
            height: self.height,
            interlaced: u32::from(self.interlaced),
            polarities: self.polarities,
            pixelclock: self.pixelclock,
            hfrontporch: self.hfrontporch,
            hsync: self.hsync,
            hbackporch: self.hbackporch,
            vfrontporch: self.vfrontporch,
            vsync: self.vsync,
            vbackporch: self.vbackporch,
            il_vfrontporch: self.il_vfrontporch,
            il_vsync: self.il_vsync,
            il_vbackporch: self.il_vbackporch,
            standards: self.standards,
            flags: self.flags,
            picture_aspect: [self.picture_aspect.0, self.picture_aspect.1],
            cea861_vic: self.cea861_vic,
            hdmi_vic: self.hdmi_vic,
            reserved: [0; 46],
        };
        raw
    }

    /// Width including horizontal blanking (`V4L2_DV_BT_FRAME_WIDTH`).
    pub fn total_width(&self) -> u64 {
        u64::from(self.width)
            + u64::from(self.hfrontporch)
            + u64::from(self.hsync)
            + u64::from(self.hbackporch)
    }

    /// Height of the whole frame including vertical blanking of both
    /// fields when interlaced (`V4L2_DV_BT_FRAME_HEIGHT`).
    pub fn total_height(&self) -> u64 {
        let il = if self.interlaced {
            u64::from(self.il_vfrontporch)
                + u64::from(self.il_vsync)
                + u64::from(self.il_vbackporch)
        } else {
            0
        };
        u64::from(self.height)
            + u64::from(self.vfrontporch)
            + u64::from(self.vsync)
            + u64::from(self.vbackporch)
            + il
    }

    /// Frames per second: pixelclock / (total width × total height). For
    /// interlaced timings that is the frame rate, half the field rate
    /// (1080i50 gives 25). Zero when the driver reports no blanking.
    pub fn fps(&self) -> f64 {
        let total = self.total_width() * self.total_height();
        if total == 0 {
            return 0.0;
        }
        self.pixelclock as f64 / total as f64
    }

    /// "1920x1080p60", "1920x1080i25" (frame rate), to two decimals when
    /// fractional ("1920x1080p59.94").
    pub fn label(&self) -> String {
        let fps = (self.fps() * 100.0).round() / 100.0;
        format!(
            "{}x{}{}{}",
            self.width,
            self.height,
            if self.interlaced { 'i' } else { 'p' },
            fps
        )
    }
}

/// The report form: what an operator needs, not the porches.
impl Serialize for DvTimings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out {
            width: u32,
            height: u32,
            interlaced: bool,
            fps: f64,
            pixelclock: u64,
            total_width: u64,
            total_height: u64,
        }
        Out {
            width: self.width,
            height: self.height,
            interlaced: self.interlaced,
            fps: (self.fps() * 1000.0).round() / 1000.0,
            pixelclock: self.pixelclock,
            total_width: self.total_width(),
            total_height: self.total_height(),
        }
        .serialize(s)
    }
}

/// A dequeued event (`VIDIOC_DQEVENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For source-change events, the input index.
    pub id: u32,
    pub sequence: u32,
    /// Events still queued after this one.
    pub pending: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `V4L2_EVENT_SOURCE_CHANGE` with its `changes` bits
    /// (`V4L2_EVENT_SRC_CH_RESOLUTION`).
    SourceChange {
        changes: u32,
    },
    Eos,
    Other(u32),
}

/// A control (`VIDIOC_QUERYCTRL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlInfo {
    pub id: u32,
    /// `V4L2_CTRL_TYPE_*`.
    pub type_: u32,
    pub name: String,
    pub minimum: i32,
    pub maximum: i32,
    pub step: i32,
    pub default_value: i32,
    pub flags: u32,
}

impl ControlInfo {
    pub fn is_menu(&self) -> bool {
        matches!(
            self.type_,
            V4L2_CTRL_TYPE_MENU | V4L2_CTRL_TYPE_INTEGER_MENU
        )
    }
}

// ---------------------------------------------------------------------------
// The device.
// ---------------------------------------------------------------------------

/// An open V4L2 node. Opened non-blocking, so no ioctl here waits on the
/// hardware queue; several may be open on one node while GStreamer streams
/// from it (queries and events are per file handle).
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    path: PathBuf,
    cap: Capability,
}

impl Device {
    /// Opens `path` read-write, non-blocking, and checks with
    /// `VIDIOC_QUERYCAP` that it is a V4L2 node.
    pub fn open(path: impl AsRef<Path>) -> Result<Device, V4l2Error> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let c_path =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| V4l2Error::Open {
                path: shown.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
            })?;
        // SAFETY: c_path is a valid NUL-terminated string.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(V4l2Error::Open {
                path: shown,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut raw: RawCapability = zeroed();
        if let Err(source) = ioctl_raw(fd.as_raw_fd(), VIDIOC_QUERYCAP, &mut raw) {
            // ENOTTY is the kernel's "this file does not do that ioctl":
            // /dev/null, a tty, a regular file. Anything else is reported as
            // such too, with the errno, since the node did not answer as a
            // V4L2 device would.
            return Err(V4l2Error::NotV4l2 {
                path: shown,
                source,
            });
        }
        Ok(Device {
            fd,
            path: path.to_path_buf(),
            cap: Capability::from_raw(&raw),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The capabilities read at open.
    pub fn capability(&self) -> &Capability {
        &self.cap
    }

    fn err(&self, ioctl: &'static str, source: io::Error) -> V4l2Error {
        V4l2Error::Ioctl {
            path: self.path.display().to_string(),
            ioctl,
            source,
        }
    }

    fn ioctl<T>(&self, name: &'static str, request: u32, arg: &mut T) -> Result<(), V4l2Error> {
        ioctl_raw(self.fd.as_raw_fd(), request, arg).map_err(|e| self.err(name, e))
    }

    /// One input by index; `Ok(None)` past the last (`EINVAL`).
    pub fn input(&self, index: u32) -> Result<Option<Input>, V4l2Error> {
        let mut raw: RawInput = zeroed();
        raw.index = index;
        match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_ENUMINPUT, &mut raw) {
            Ok(()) => Ok(Some(Input {
                index: raw.index,
                name: c_string(&raw.name),
                type_: raw.type_,
                status: raw.status,
                capabilities: raw.capabilities,
            })),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(self.err("VIDIOC_ENUMINPUT", e)),
        }
    }

    /// All inputs (at most 64, a bound against a looping driver).
    pub fn inputs(&self) -> Result<Vec<Input>, V4l2Error> {
        let mut out = Vec::new();
        for index in 0..64 {
            match self.input(index)? {
                Some(i) => out.push(i),
                None => break,
            }
        }
        Ok(out)
    }

    /// The selected input (`VIDIOC_G_INPUT`).
    pub fn current_input(&self) -> Result<u32, V4l2Error> {
        let mut index: libc::c_int = 0;
        self.ioctl("VIDIOC_G_INPUT", VIDIOC_G_INPUT, &mut index)?;
        Ok(index as u32)
    }

    /// Selects an input (`VIDIOC_S_INPUT`); `EBUSY` while streaming.
    pub fn set_input(&self, index: u32) -> Result<(), V4l2Error> {
        let mut i = index as libc::c_int;
        self.ioctl("VIDIOC_S_INPUT", VIDIOC_S_INPUT, &mut i)
    }

    /// Pixel formats for `buf_type` (at most 128).
    pub fn formats(&self, buf_type: BufType) -> Result<Vec<FormatDesc>, V4l2Error> {
        let mut out = Vec::new();
        for index in 0..128 {
            let mut raw: RawFmtDesc = zeroed();
            raw.index = index;
            raw.type_ = buf_type.raw();
            match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_ENUM_FMT, &mut raw) {
                Ok(()) => out.push(FormatDesc {
                    buf_type,
                    pixelformat: raw.pixelformat,
                    description: c_string(&raw.description),
                    flags: raw.flags,
                }),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(self.err("VIDIOC_ENUM_FMT", e)),
            }
        }
        Ok(out)
    }

    /// Frame sizes of a format (at most 256). Empty when the driver does
    /// not enumerate sizes (`ENOTTY`), as HDMI receivers whose size follows
    /// the DV timings do.
    pub fn frame_sizes(&self, pixelformat: u32) -> Result<Vec<FrameSize>, V4l2Error> {
        let mut out = Vec::new();
        for index in 0..256 {
            let mut raw: RawFrmSizeEnum = zeroed();
            raw.index = index;
            raw.pixel_format = pixelformat;
            match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_ENUM_FRAMESIZES, &mut raw) {
                Ok(()) => {
                    let s = raw.size;
                    match raw.type_ {
                        V4L2_FRMSIZE_TYPE_DISCRETE => out.push(FrameSize::Discrete {
                            width: s[0],
                            height: s[1],
                        }),
                        V4L2_FRMSIZE_TYPE_CONTINUOUS | V4L2_FRMSIZE_TYPE_STEPWISE => {
                            out.push(FrameSize::Stepwise {
                                min_width: s[0],
                                max_width: s[1],
                                step_width: s[2],
                                min_height: s[3],
                                max_height: s[4],
                                step_height: s[5],
                            });
                            // Only index 0 is valid for these types.
                            break;
                        }
                        _ => break,
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => break,
                Err(e) => return Err(self.err("VIDIOC_ENUM_FRAMESIZES", e)),
            }
        }
        Ok(out)
    }

    /// Frame intervals for a format at a size (at most 64).
    pub fn frame_intervals(
        &self,
        pixelformat: u32,
        width: u32,
        height: u32,
    ) -> Result<Vec<FrameInterval>, V4l2Error> {
        let mut out = Vec::new();
        for index in 0..64 {
            let mut raw: RawFrmIvalEnum = zeroed();
            raw.index = index;
            raw.pixel_format = pixelformat;
            raw.width = width;
            raw.height = height;
            match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_ENUM_FRAMEINTERVALS, &mut raw) {
                Ok(()) => {
                    let v = raw.interval;
                    let frac = |i: usize| Fraction {
                        numerator: v[i],
                        denominator: v[i + 1],
                    };
                    match raw.type_ {
                        V4L2_FRMIVAL_TYPE_DISCRETE => out.push(FrameInterval::Discrete(frac(0))),
                        V4L2_FRMIVAL_TYPE_CONTINUOUS | V4L2_FRMIVAL_TYPE_STEPWISE => {
                            out.push(FrameInterval::Stepwise {
                                min: frac(0),
                                max: frac(2),
                                step: frac(4),
                            });
                            break;
                        }
                        _ => break,
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => break,
                Err(e) => return Err(self.err("VIDIOC_ENUM_FRAMEINTERVALS", e)),
            }
        }
        Ok(out)
    }

    /// The timings the receiver is configured for (`VIDIOC_G_DV_TIMINGS`),
    /// which need not be what the source sends.
    pub fn dv_timings(&self) -> Result<DvTimings, V4l2Error> {
        let mut raw: RawDvTimings = zeroed();
        self.ioctl("VIDIOC_G_DV_TIMINGS", VIDIOC_G_DV_TIMINGS, &mut raw)?;
        Ok(DvTimings::from_raw(&raw))
    }

    /// The timings the receiver detects on the current input
    /// (`VIDIOC_QUERY_DV_TIMINGS`); the errors that mean "no usable signal"
    /// are typed.
    pub fn query_dv_timings(&self) -> Result<DvTimings, DvQueryError> {
        let mut raw: RawDvTimings = zeroed();
        match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_QUERY_DV_TIMINGS, &mut raw) {
            Ok(()) => Ok(DvTimings::from_raw(&raw)),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::ENOLINK) => DvQueryError::NoSignal,
                Some(libc::ENOLCK) => DvQueryError::NoLock,
                Some(libc::ERANGE) => DvQueryError::OutOfRange,
                Some(libc::ENODATA | libc::ENOTTY) => DvQueryError::Unsupported,
                _ => DvQueryError::Failed(self.err("VIDIOC_QUERY_DV_TIMINGS", e)),
            }),
        }
    }

    /// Configures the receiver for `timings` (`VIDIOC_S_DV_TIMINGS`);
    /// `EBUSY` while buffers are allocated, so call it before streaming.
    pub fn set_dv_timings(&self, timings: &DvTimings) -> Result<(), V4l2Error> {
        let mut raw = timings.to_raw();
        self.ioctl("VIDIOC_S_DV_TIMINGS", VIDIOC_S_DV_TIMINGS, &mut raw)
    }

    /// Queries the source's timings and configures the receiver for them,
    /// the sequence the V4L2 docs prescribe after a source change
    /// (dev-capture.rst / vidioc-query-dv-timings.rst). Returns the timings.
    pub fn lock_to_detected_timings(&self) -> Result<DvTimings, DvQueryError> {
        let t = self.query_dv_timings()?;
        self.set_dv_timings(&t).map_err(DvQueryError::Failed)?;
        Ok(t)
    }

    /// Subscribes to `V4L2_EVENT_SOURCE_CHANGE` for `input` (the event's
    /// `id` is the input index, vidioc-dqevent.rst).
    pub fn subscribe_source_change(&self, input: u32) -> Result<(), V4l2Error> {
        self.subscribe(V4L2_EVENT_SOURCE_CHANGE, input, 0)
    }

    pub fn unsubscribe_source_change(&self, input: u32) -> Result<(), V4l2Error> {
        let mut sub: RawEventSubscription = zeroed();
        sub.type_ = V4L2_EVENT_SOURCE_CHANGE;
        sub.id = input;
        self.ioctl(
            "VIDIOC_UNSUBSCRIBE_EVENT",
            VIDIOC_UNSUBSCRIBE_EVENT,
            &mut sub,
        )
    }

    /// Subscribes to an event type (`V4L2_EVENT_*`). `V4L2_EVENT_EOS` is
    /// for decoders and the last buffer of a stream; a capture input's
    /// signal is followed with [`Device::subscribe_source_change`].
    pub fn subscribe(&self, type_: u32, id: u32, flags: u32) -> Result<(), V4l2Error> {
        let mut sub: RawEventSubscription = zeroed();
        sub.type_ = type_;
        sub.id = id;
        sub.flags = flags;
        self.ioctl("VIDIOC_SUBSCRIBE_EVENT", VIDIOC_SUBSCRIBE_EVENT, &mut sub)
    }

    /// The next queued event, or `None` (`ENOENT`: queue empty).
    pub fn dequeue_event(&self) -> Result<Option<Event>, V4l2Error> {
        let mut raw: RawEvent = zeroed();
        match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_DQEVENT, &mut raw) {
            Ok(()) => {
                let kind = match raw.type_ {
                    V4L2_EVENT_SOURCE_CHANGE => EventKind::SourceChange {
                        // `struct v4l2_event_src_change { __u32 changes; }`
                        // sits at the start of the union.
                        changes: raw.u[0].to_ne_bytes()[..4]
                            .try_into()
                            .map(u32::from_ne_bytes)
                            .unwrap_or(0),
                    },
                    V4L2_EVENT_EOS => EventKind::Eos,
                    other => EventKind::Other(other),
                };
                Ok(Some(Event {
                    kind,
                    id: raw.id,
                    sequence: raw.sequence,
                    pending: raw.pending,
                }))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.err("VIDIOC_DQEVENT", e)),
        }
    }

    /// Waits up to `timeout` for an event (`poll` for `POLLPRI`, the V4L2
    /// event signal: vidioc-dqevent.rst). `Ok(true)` when one is queued.
    /// Blocks the calling thread: call it from a thread of its own.
    pub fn wait_event(&self, timeout: Duration) -> Result<bool, V4l2Error> {
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        }];
        let n = poll_fds(&mut fds, timeout).map_err(|e| self.err("poll", e))?;
        if n == 0 {
            return Ok(false);
        }
        if fds[0].revents & libc::POLLPRI != 0 {
            return Ok(true);
        }
        // POLLERR/POLLHUP without POLLPRI: the node was unregistered.
        Err(self.err(
            "poll",
            io::Error::from_raw_os_error(if fds[0].revents & libc::POLLNVAL != 0 {
                libc::EBADF
            } else {
                libc::ENODEV
            }),
        ))
    }

    // -- controls: used by discovery's callers and, above all, by the QEMU
    // tests, which drive vivid's "DV Timings Signal Mode" through them.

    /// All controls, in driver order (`VIDIOC_QUERYCTRL` with
    /// `V4L2_CTRL_FLAG_NEXT_CTRL`), without the class headings.
    pub fn controls(&self) -> Result<Vec<ControlInfo>, V4l2Error> {
        let mut out = Vec::new();
        let mut id = V4L2_CTRL_FLAG_NEXT_CTRL;
        for _ in 0..1024 {
            let mut raw: RawQueryCtrl = zeroed();
            raw.id = id;
            match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_QUERYCTRL, &mut raw) {
                Ok(()) => {
                    if raw.type_ != V4L2_CTRL_TYPE_CTRL_CLASS {
                        out.push(ControlInfo {
                            id: raw.id,
                            type_: raw.type_,
                            name: c_string(&raw.name),
                            minimum: raw.minimum,
                            maximum: raw.maximum,
                            step: raw.step,
                            default_value: raw.default_value,
                            flags: raw.flags,
                        });
                    }
                    id = raw.id | V4L2_CTRL_FLAG_NEXT_CTRL;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(self.err("VIDIOC_QUERYCTRL", e)),
            }
        }
        Ok(out)
    }

    /// The control named `name` (case-insensitive), or an error listing the
    /// names there are.
    pub fn find_control(&self, name: &str) -> Result<ControlInfo, V4l2Error> {
        let all = self.controls()?;
        match all.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            Some(c) => Ok(c.clone()),
            None => Err(V4l2Error::NoSuchControl {
                path: self.path.display().to_string(),
                name: name.to_string(),
                available: all
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The items of a menu control as (value, name); integer menus give the
    /// number as the name. Items the driver skips (`EINVAL`) are left out.
    pub fn menu_items(&self, control: &ControlInfo) -> Result<Vec<(i32, String)>, V4l2Error> {
        let mut out = Vec::new();
        if !control.is_menu() || control.maximum < control.minimum {
            return Ok(out);
        }
        for index in control.minimum..=control.maximum.min(control.minimum.saturating_add(255)) {
            let mut raw: RawQueryMenu = zeroed();
            raw.id = control.id;
            raw.index = index as u32;
            match ioctl_raw(self.fd.as_raw_fd(), VIDIOC_QUERYMENU, &mut raw) {
                Ok(()) => {
                    let name = if control.type_ == V4L2_CTRL_TYPE_INTEGER_MENU {
                        let bytes: [u8; 8] = raw.name[..8].try_into().unwrap_or([0; 8]);
                        i64::from_ne_bytes(bytes).to_string()
                    } else {
                        c_string(&raw.name)
                    };
                    out.push((index, name));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(self.err("VIDIOC_QUERYMENU", e)),
            }
        }
        Ok(out)
    }

    /// A control's value (`VIDIOC_G_CTRL`).
    pub fn control(&self, id: u32) -> Result<i32, V4l2Error> {
        let mut raw = RawControl { id, value: 0 };
        self.ioctl("VIDIOC_G_CTRL", VIDIOC_G_CTRL, &mut raw)?;
        Ok(raw.value)
    }

    /// Sets a control (`VIDIOC_S_CTRL`; works for 32-bit controls of any
    /// class, vidioc-g-ctrl.rst).
    pub fn set_control(&self, id: u32, value: i32) -> Result<(), V4l2Error> {
        let mut raw = RawControl { id, value };
        self.ioctl("VIDIOC_S_CTRL", VIDIOC_S_CTRL, &mut raw)
    }

    /// Sets a control by name to a value given as text: a menu item's name
    /// (case-insensitive), or a number, or true/false. Returns the number
    /// set. `set_control_by_name("DV Timings Signal Mode", "No Signal")`.
    pub fn set_control_by_name(&self, name: &str, value: &str) -> Result<i32, V4l2Error> {
        let control = self.find_control(name)?;
        let bad = |available: String| V4l2Error::BadControlValue {
            path: self.path.display().to_string(),
            control: control.name.clone(),
            value: value.to_string(),
            available,
        };
        let number = if control.is_menu() {
            let items = self.menu_items(&control)?;
            match items.iter().find(|(_, n)| n.eq_ignore_ascii_case(value)) {
                Some((v, _)) => *v,
                None => match value.parse::<i32>() {
                    Ok(v) if items.iter().any(|(i, _)| *i == v) => v,
                    _ => {
                        return Err(bad(items
                            .iter()
                            .map(|(_, n)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")));
                    }
                },
            }
        } else {
            match value {
                "true" | "on" | "yes" => 1,
                "false" | "off" | "no" => 0,
                v => v.parse::<i32>().map_err(|_| {
                    bad(format!(
                        "a number in {}..={}",
                        control.minimum, control.maximum
                    ))
                })?,
            }
        };
        self.set_control(control.id, number)?;
        Ok(number)
    }
}

impl AsRawFd for Device {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `ioctl(fd, request, arg)`, retried on `EINTR`.
fn ioctl_raw<T>(fd: RawFd, request: u32, arg: &mut T) -> Result<(), io::Error> {
    loop {
        // SAFETY: `arg` points to a live, writable value of the type whose
        // size is encoded in `request` (each request is built from the
        // same mirror type it is used with in this module).
        let r = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `poll(2)` on `fds`, retried on `EINTR` (with the full timeout again,
/// which only makes a wait longer by a signal's worth). Returns how many
/// descriptors have events.
pub(crate) fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> Result<usize, io::Error> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: fds is a valid slice of pollfd for its whole length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A NUL-padded byte field as text (lossy: drivers write ASCII).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

/// The `/dev/video*` nodes present, in numeric order.
pub fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// CEA-861 VIC 16 (1920x1080p60, 148.5 MHz, 2200x1125 total), for tests.
#[cfg(test)]
pub(crate) fn cea_1080p60() -> DvTimings {
    // CEA-861 VIC 16: 1920x1080p60, 148.5 MHz, 2200x1125 total.
    DvTimings {
        width: 1920,
        height: 1080,
        interlaced: false,
        polarities: 3,
        pixelclock: 148_500_000,
        hfrontporch: 88,
        hsync: 44,
        hbackporch: 148,
        vfrontporch: 4,
        vsync: 5,
        vbackporch: 36,
        il_vfrontporch: 0,
        il_vsync: 0,
        il_vbackporch: 0,
        standards: 1,
        flags: 0,
        picture_aspect: (0, 0),
        cea861_vic: 16,
        hdmi_vic: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::mem::offset_of;
    use std::process::Command;

    /// What the C compiler says about the installed videodev2.h.
    fn c_layout() -> Option<BTreeMap<String, u64>> {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        if Command::new(&cc).arg("--version").output().is_err() {
            eprintln!("skipped: no C compiler ('{cc}') to read linux/videodev2.h with");
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("fieldcast-v4l2-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layout.c");
        let exe = dir.join("layout");
        let mut c = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include <sys/time.h>\n#include <linux/videodev2.h>\n\
             #define S(t) printf(\"sizeof %s %zu\\n\", #t, sizeof(struct t));\n\
             #define O(t, f) printf(\"offsetof %s.%s %zu\\n\", #t, #f, offsetof(struct t, f));\n\
             #define V(n) printf(\"value %s %llu\\n\", #n, (unsigned long long)(n));\n\
             int main(void) {\n",
        );
        for (_, key, _) in rust_layout() {
            let (kind, name) = key.split_once(' ').unwrap();
            let line = match kind {
                "sizeof" => format!("S({name})\n"),
                "offsetof" => {
                    let (t, f) = name.split_once('.').unwrap();
                    format!("O({t}, {f})\n")
                }
                _ => format!("V({name})\n"),
            };
            c.push_str(&line);
        }
        c.push_str("return 0; }\n");
        std::fs::write(&src, c).unwrap();
        let out = Command::new(&cc)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "compiling against linux/videodev2.h failed (is linux-libc-dev installed?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&exe).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8(out.stdout).unwrap();
        Some(
            text.lines()
                .map(|l| {
                    let (k, v) = l.rsplit_once(' ').unwrap();
                    (k.to_string(), v.parse().unwrap())
                })
                .collect(),
        )
    }

    /// (rust value, key as the C program prints it, label)
    fn rust_layout() -> Vec<(u64, String, &'static str)> {
        macro_rules! size {
            ($rust:ty, $c:literal) => {
                (size_of::<$rust>() as u64, format!("sizeof {}", $c), $c)
            };
        }
        macro_rules! off {
            ($rust:ty, $rf:ident, $c:literal, $cf:literal) => {
                (
                    offset_of!($rust, $rf) as u64,
                    format!("offsetof {}.{}", $c, $cf),
                    $c,
                )
            };
        }
        macro_rules! val {
            ($v:expr, $c:literal) => {
                ($v as u64, format!("value {}", $c), $c)
            };
        }
        vec![
            size!(RawCapability, "v4l2_capability"),
            off!(RawCapability, card, "v4l2_capability", "card"),
            off!(RawCapability, bus_info, "v4l2_capability", "bus_info"),
            off!(RawCapability, version, "v4l2_capability", "version"),
            off!(
                RawCapability,
                capabilities,
                "v4l2_capability",
                "capabilities"
            ),
            off!(RawCapability, device_caps, "v4l2_capability", "device_caps"),
            size!(RawInput, "v4l2_input"),
            off!(RawInput, name, "v4l2_input", "name"),
            off!(RawInput, type_, "v4l2_input", "type"),
            off!(RawInput, tuner, "v4l2_input", "tuner"),
            off!(RawInput, std, "v4l2_input", "std"),
            off!(RawInput, status, "v4l2_input", "status"),
            off!(RawInput, capabilities, "v4l2_input", "capabilities"),
            size!(RawFmtDesc, "v4l2_fmtdesc"),
            off!(RawFmtDesc, type_, "v4l2_fmtdesc", "type"),
            off!(RawFmtDesc, flags, "v4l2_fmtdesc", "flags"),
            off!(RawFmtDesc, description, "v4l2_fmtdesc", "description"),
            off!(RawFmtDesc, pixelformat, "v4l2_fmtdesc", "pixelformat"),
            off!(RawFmtDesc, mbus_code, "v4l2_fmtdesc", "mbus_code"),
            size!(RawFrmSizeEnum, "v4l2_frmsizeenum"),
            off!(RawFrmSizeEnum, type_, "v4l2_frmsizeenum", "type"),
            off!(RawFrmSizeEnum, size, "v4l2_frmsizeenum", "discrete"),
            off!(RawFrmSizeEnum, size, "v4l2_frmsizeenum", "stepwise"),
            off!(RawFrmSizeEnum, reserved, "v4l2_frmsizeenum", "reserved"),
            size!(RawFrmIvalEnum, "v4l2_frmivalenum"),
            off!(RawFrmIvalEnum, width, "v4l2_frmivalenum", "width"),
            off!(RawFrmIvalEnum, type_, "v4l2_frmivalenum", "type"),
            off!(RawFrmIvalEnum, interval, "v4l2_frmivalenum", "discrete"),
            off!(RawFrmIvalEnum, interval, "v4l2_frmivalenum", "stepwise"),
            off!(RawFrmIvalEnum, reserved, "v4l2_frmivalenum", "reserved"),
            size!(RawBtTimings, "v4l2_bt_timings"),
            off!(RawBtTimings, interlaced, "v4l2_bt_timings", "interlaced"),
            off!(RawBtTimings, pixelclock, "v4l2_bt_timings", "pixelclock"),
            off!(RawBtTimings, hfrontporch, "v4l2_bt_timings", "hfrontporch"),
            off!(RawBtTimings, vbackporch, "v4l2_bt_timings", "vbackporch"),
            off!(
                RawBtTimings,
                il_vbackporch,
                "v4l2_bt_timings",
                "il_vbackporch"
            ),
            off!(RawBtTimings, standards, "v4l2_bt_timings", "standards"),
            off!(RawBtTimings, flags, "v4l2_bt_timings", "flags"),
            off!(
                RawBtTimings,
                picture_aspect,
                "v4l2_bt_timings",
                "picture_aspect"
            ),
            off!(RawBtTimings, cea861_vic, "v4l2_bt_timings", "cea861_vic"),
            off!(RawBtTimings, hdmi_vic, "v4l2_bt_timings", "hdmi_vic"),
            off!(RawBtTimings, reserved, "v4l2_bt_timings", "reserved"),
            size!(RawDvTimings, "v4l2_dv_timings"),
            off!(RawDvTimings, bt, "v4l2_dv_timings", "bt"),
            size!(RawEventSubscription, "v4l2_event_subscription"),
            off!(RawEventSubscription, id, "v4l2_event_subscription", "id"),
            off!(
                RawEventSubscription,
                flags,
                "v4l2_event_subscription",
                "flags"
            ),
            size!(RawEvent, "v4l2_event"),
            off!(RawEvent, u, "v4l2_event", "u"),
            off!(RawEvent, pending, "v4l2_event", "pending"),
            off!(RawEvent, sequence, "v4l2_event", "sequence"),
            off!(RawEvent, timestamp, "v4l2_event", "timestamp"),
            off!(RawEvent, id, "v4l2_event", "id"),
            off!(RawEvent, reserved, "v4l2_event", "reserved"),
            size!(RawQueryCtrl, "v4l2_queryctrl"),
            off!(RawQueryCtrl, name, "v4l2_queryctrl", "name"),
            off!(RawQueryCtrl, minimum, "v4l2_queryctrl", "minimum"),
            off!(
                RawQueryCtrl,
                default_value,
                "v4l2_queryctrl",
                "default_value"
            ),
            off!(RawQueryCtrl, flags, "v4l2_queryctrl", "flags"),
            size!(RawQueryMenu, "v4l2_querymenu"),
            off!(RawQueryMenu, name, "v4l2_querymenu", "name"),
            off!(RawQueryMenu, name, "v4l2_querymenu", "value"),
            off!(RawQueryMenu, reserved, "v4l2_querymenu", "reserved"),
            size!(RawControl, "v4l2_control"),
            off!(RawControl, value, "v4l2_control", "value"),
            val!(VIDIOC_QUERYCAP, "VIDIOC_QUERYCAP"),
            val!(VIDIOC_ENUM_FMT, "VIDIOC_ENUM_FMT"),
            val!(VIDIOC_ENUMINPUT, "VIDIOC_ENUMINPUT"),
            val!(VIDIOC_G_CTRL, "VIDIOC_G_CTRL"),
            val!(VIDIOC_S_CTRL, "VIDIOC_S_CTRL"),
            val!(VIDIOC_QUERYCTRL, "VIDIOC_QUERYCTRL"),
            val!(VIDIOC_QUERYMENU, "VIDIOC_QUERYMENU"),
            val!(VIDIOC_G_INPUT, "VIDIOC_G_INPUT"),
            val!(VIDIOC_S_INPUT, "VIDIOC_S_INPUT"),
            val!(VIDIOC_ENUM_FRAMESIZES, "VIDIOC_ENUM_FRAMESIZES"),
            val!(VIDIOC_ENUM_FRAMEINTERVALS, "VIDIOC_ENUM_FRAMEINTERVALS"),
            val!(VIDIOC_S_DV_TIMINGS, "VIDIOC_S_DV_TIMINGS"),
            val!(VIDIOC_G_DV_TIMINGS, "VIDIOC_G_DV_TIMINGS"),
            val!(VIDIOC_DQEVENT, "VIDIOC_DQEVENT"),
            val!(VIDIOC_SUBSCRIBE_EVENT, "VIDIOC_SUBSCRIBE_EVENT"),
            val!(VIDIOC_UNSUBSCRIBE_EVENT, "VIDIOC_UNSUBSCRIBE_EVENT"),
            val!(VIDIOC_QUERY_DV_TIMINGS, "VIDIOC_QUERY_DV_TIMINGS"),
            val!(V4L2_CAP_VIDEO_CAPTURE, "V4L2_CAP_VIDEO_CAPTURE"),
            val!(
                V4L2_CAP_VIDEO_CAPTURE_MPLANE,
                "V4L2_CAP_VIDEO_CAPTURE_MPLANE"
            ),
            val!(V4L2_CAP_VIDEO_M2M, "V4L2_CAP_VIDEO_M2M"),
            val!(V4L2_CAP_VIDEO_M2M_MPLANE, "V4L2_CAP_VIDEO_M2M_MPLANE"),
            val!(V4L2_CAP_META_CAPTURE, "V4L2_CAP_META_CAPTURE"),
            val!(V4L2_CAP_STREAMING, "V4L2_CAP_STREAMING"),
            val!(V4L2_CAP_IO_MC, "V4L2_CAP_IO_MC"),
            val!(V4L2_CAP_DEVICE_CAPS, "V4L2_CAP_DEVICE_CAPS"),
            val!(V4L2_BUF_TYPE_VIDEO_CAPTURE, "V4L2_BUF_TYPE_VIDEO_CAPTURE"),
            val!(
                V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
                "V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE"
            ),
            val!(V4L2_IN_ST_NO_POWER, "V4L2_IN_ST_NO_POWER"),
            val!(V4L2_IN_ST_NO_SIGNAL, "V4L2_IN_ST_NO_SIGNAL"),
            val!(V4L2_IN_ST_NO_COLOR, "V4L2_IN_ST_NO_COLOR"),
            val!(V4L2_IN_ST_NO_H_LOCK, "V4L2_IN_ST_NO_H_LOCK"),
            val!(V4L2_IN_ST_NO_V_LOCK, "V4L2_IN_ST_NO_V_LOCK"),
            val!(V4L2_IN_ST_NO_STD_LOCK, "V4L2_IN_ST_NO_STD_LOCK"),
            val!(V4L2_IN_ST_NO_SYNC, "V4L2_IN_ST_NO_SYNC"),
            val!(V4L2_IN_ST_NO_EQU, "V4L2_IN_ST_NO_EQU"),
            val!(V4L2_IN_ST_NO_CARRIER, "V4L2_IN_ST_NO_CARRIER"),
            val!(V4L2_IN_CAP_DV_TIMINGS, "V4L2_IN_CAP_DV_TIMINGS"),
            val!(V4L2_IN_CAP_STD, "V4L2_IN_CAP_STD"),
            val!(V4L2_EVENT_EOS, "V4L2_EVENT_EOS"),
            val!(V4L2_EVENT_SOURCE_CHANGE, "V4L2_EVENT_SOURCE_CHANGE"),
            val!(V4L2_EVENT_SRC_CH_RESOLUTION, "V4L2_EVENT_SRC_CH_RESOLUTION"),
            val!(V4L2_CTRL_FLAG_NEXT_CTRL, "V4L2_CTRL_FLAG_NEXT_CTRL"),
            val!(V4L2_CTRL_TYPE_MENU, "V4L2_CTRL_TYPE_MENU"),
            val!(V4L2_CTRL_TYPE_INTEGER_MENU, "V4L2_CTRL_TYPE_INTEGER_MENU"),
            val!(V4L2_CTRL_TYPE_CTRL_CLASS, "V4L2_CTRL_TYPE_CTRL_CLASS"),
            val!(V4L2_DV_INTERLACED, "V4L2_DV_INTERLACED"),
            val!(V4L2_FRMSIZE_TYPE_STEPWISE, "V4L2_FRMSIZE_TYPE_STEPWISE"),
            val!(V4L2_FRMIVAL_TYPE_CONTINUOUS, "V4L2_FRMIVAL_TYPE_CONTINUOUS"),
        ]
    }

    #[test]
    fn layouts_and_ioctl_numbers_match_the_kernel_headers() {
        let Some(c) = c_layout() else { return };
        let mut wrong = Vec::new();
        for (rust, key, _) in rust_layout() {
            match c.get(&key) {
                Some(&cv) if cv == rust => {}
                Some(&cv) => wrong.push(format!("{key}: C {cv:#x}, Rust {rust:#x}")),
                None => wrong.push(format!("{key}: not printed by the C program")),
            }
        }
        assert!(wrong.is_empty(), "layout mismatches:\n{}", wrong.join("\n"));
        eprintln!(
            "{} sizes, offsets and constants agree with linux/videodev2.h",
            c.len()
        );
    }

    #[test]
    fn a_missing_device_is_named() {
        let e = Device::open("/dev/video-fieldcast-none").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/dev/video-fieldcast-none"), "{text}");
        assert!(text.contains("No such file"), "{text}");
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn a_char_device_that_is_not_v4l2_says_so() {
        let e = Device::open("/dev/null").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, V4l2Error::NotV4l2 { .. }), "{e:?}");
        assert!(text.contains("/dev/null: not a V4L2 device"), "{text}");
        assert!(text.contains("VIDIOC_QUERYCAP"), "{text}");
    }

    #[test]
    fn status_bits_read_as_words() {
        assert!(input_status_words(0).is_empty());
        assert_eq!(
            input_status_words(V4L2_IN_ST_NO_POWER | V4L2_IN_ST_NO_SIGNAL),
            ["no power", "no signal"]
        );
        assert_eq!(
            input_status_words(V4L2_IN_ST_NO_H_LOCK | 0x8000_0000),
            ["no horizontal lock", "0x80000000"]
        );
        assert_eq!(input_capability_words(0x2), ["dv-timings"]);
    }

    #[test]
    fn fourcc_text() {
        assert_eq!(fourcc_string(fourcc(b"YUYV")), "YUYV");
        assert_eq!(fourcc_string(fourcc(b"Y16 ")), "Y16");
        assert_eq!(fourcc_string(fourcc(b"RGBR") | 0x8000_0000), "RGBR-BE");
    }

    #[test]
    fn fps_is_pixelclock_over_the_total_frame() {
        let p60 = cea_1080p60();
        assert_eq!((p60.total_width(), p60.total_height()), (2200, 1125));
        assert!((p60.fps() - 60.0).abs() < 1e-9);
        assert_eq!(p60.label(), "1920x1080p60");
        // 59.94: the same raster at 148.5 MHz / 1.001.
        let p5994 = DvTimings {
            pixelclock: 148_351_648,
            ..p60
        };
        assert_eq!(p5994.label(), "1920x1080p59.94");
        // 1080i25 (VIC 20): 74.25 MHz, 2640 wide, 1125 lines over two
        // fields (540+2+5+15 and 540+2+5+16).
        let i25 = DvTimings {
            interlaced: true,
            pixelclock: 74_250_000,
            hfrontporch: 528,
            vfrontporch: 2,
            vsync: 5,
            vbackporch: 15,
            il_vfrontporch: 2,
            il_vsync: 5,
            il_vbackporch: 16,
            cea861_vic: 20,
            ..p60
        };
        assert_eq!(i25.total_height(), 1125);
        assert!((i25.fps() - 25.0).abs() < 1e-9);
        assert_eq!(i25.label(), "1920x1080i25");
        let zero = DvTimings {
            hfrontporch: 0,
            hsync: 0,
            hbackporch: 0,
            width: 0,
            ..p60
        };
        assert_eq!(zero.fps(), 0.0);
    }

    #[test]
    fn timings_survive_the_raw_round_trip() {
        let t = cea_1080p60();
        assert_eq!(DvTimings::from_raw(&t.to_raw()), t);
        let raw = t.to_raw();
        let pc = raw.bt.pixelclock;
        assert_eq!(pc, 148_500_000);
    }

    #[test]
    fn frame_rates_from_intervals() {
        let f = |numerator, denominator| Fraction {
            numerator,
            denominator,
        };
        assert_eq!(f(1, 30).as_rate_string(), "30/1");
        assert_eq!(f(1001, 30000).as_rate_string(), "30000/1001");
        assert_eq!(f(2, 50).as_rate_string(), "25/1");
        assert_eq!(
            FrameInterval::Stepwise {
                min: f(1, 60),
                max: f(1, 1),
                step: f(1, 60)
            }
            .as_rate_string(),
            "1/1-60/1"
        );
    }

    #[test]
    fn node_kinds() {
        let cap = |device_caps| Capability {
            driver: "x".into(),
            card: "x".into(),
            bus_info: "x".into(),
            version: 0x060100,
            capabilities: device_caps | V4L2_CAP_DEVICE_CAPS,
            device_caps,
        };
        let uvc = cap(V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING | V4L2_CAP_EXT_PIX_FORMAT);
        assert_eq!(uvc.kind(), "capture");
        assert_eq!(uvc.capture_buf_type(), Some(BufType::VideoCapture));
        assert_eq!(uvc.version_string(), "6.1.0");
        assert_eq!(
            uvc.words(),
            ["video-capture", "ext-pix-format", "streaming"]
        );
        let hdmirx = cap(V4L2_CAP_VIDEO_CAPTURE_MPLANE | V4L2_CAP_STREAMING);
        assert_eq!(hdmirx.kind(), "capture-mplane");
        assert_eq!(hdmirx.capture_buf_type(), Some(BufType::VideoCaptureMplane));
        let encoder = cap(V4L2_CAP_VIDEO_M2M_MPLANE | V4L2_CAP_STREAMING);
        assert_eq!(encoder.kind(), "m2m");
        assert_eq!(encoder.capture_buf_type(), None);
        assert_eq!(cap(V4L2_CAP_META_CAPTURE).kind(), "metadata");
    }
}
