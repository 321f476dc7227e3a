//! Discovery and signal watching: what capture devices this box has (for
//! the state report, so an operator picks an input without logging in), and
//! a watch on one V4L2 input's signal (no signal, no lock, timing change).
//!
//! - [`discover`] combines GStreamer's device monitor (V4L2, ALSA,
//!   PulseAudio and DeckLink device providers: names, classes, caps) with
//!   direct V4L2 queries of every `/dev/video*` node (driver, inputs and
//!   their status, formats and sizes, DV timings), which GStreamer 1.22 does
//!   not expose. It never hangs the caller: both halves run on threads of
//!   their own under a deadline, and a device that fails or does not answer
//!   becomes a line of text in the report.
//! - [`config_hints`] turns a report into config snippets to copy (pure).
//! - [`SignalWatch`] follows one node's current input on a thread of its
//!   own and calls back with [`SignalEvent`]s; [`classify`] and
//!   [`SignalTracker`] are its pure decision parts.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde::Serialize;
use tracing::{debug, warn};

use crate::settings::{AudioSource, VideoSource};
use crate::v4l2::{
    self, BufType, Device, DvQueryError, DvTimings, FrameSize, V4L2_IN_ST_NO_CARRIER,
    V4L2_IN_ST_NO_EQU, V4L2_IN_ST_NO_H_LOCK, V4L2_IN_ST_NO_POWER, V4L2_IN_ST_NO_SIGNAL,
    V4L2_IN_ST_NO_STD_LOCK, V4L2_IN_ST_NO_SYNC, V4L2_IN_ST_NO_V_LOCK, V4l2Error,
};

// ---------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------

/// Everything discovery found. Field names are part of the MQTT state
/// contract: add, don't rename.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Unix seconds when discovery started.
    pub at: f64,
    pub took_ms: u64,
    /// Every `/dev/video*` node, in numeric order.
    pub v4l2: Vec<V4l2Node>,
    /// What GStreamer's device monitor lists as video and audio sources.
    pub devices: Vec<MonitorDevice>,
    pub decklink: DecklinkFacts,
    /// Config snippets for the inputs found ([`config_hints`]).
    pub hints: Vec<ConfigHint>,
    /// What went wrong as a whole (a part that timed out, GStreamer that
    /// would not start); per-device errors sit with the device.
    pub errors: Vec<String>,
}

/// One `/dev/video*` node as V4L2 describes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct V4l2Node {
    pub path: String,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// Driver version, "6.1.0".
    pub version: String,
    /// "capture", "capture-mplane", "m2m" (a codec: not an input),
    /// "output", "metadata", "other"; empty when the node could not be
    /// opened.
    pub kind: String,
    pub capabilities: Vec<String>,
    pub current_input: Option<u32>,
    pub inputs: Vec<InputReport>,
    pub formats: Vec<FormatReport>,
    /// Why the node, or part of it, could not be read.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    pub index: u32,
    pub name: String,
    /// "camera", "tuner", "touch".
    #[serde(rename = "type")]
    pub type_: String,
    pub current: bool,
    /// "dv-timings" for HDMI/SDI receivers, "std" for analog TV.
    pub capabilities: Vec<String>,
    /// Status words ("no signal", "no power", …); the kernel reports
    /// status for the current input only, so `None` for the others.
    pub status: Option<Vec<String>>,
    /// The signal as [`SignalWatch`] would see it; current input only.
    pub signal: Option<SignalState>,
    /// DV timings; current input with "dv-timings" only.
    pub dv: Option<DvReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DvReport {
    /// What the receiver is set to (`VIDIOC_G_DV_TIMINGS`).
    pub configured: Option<DvTimings>,
    /// What the source sends (`VIDIOC_QUERY_DV_TIMINGS`).
    pub detected: Option<DvTimings>,
    /// Why nothing was detected: "no signal", "no lock (unstable signal)",
    /// "signal out of range", or the ioctl error.
    pub detect_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FormatReport {
    pub buffer_type: BufType,
    /// "YUYV", "MJPG", "NV12".
    pub fourcc: String,
    pub description: String,
    pub compressed: bool,
    /// Converted in software by the driver or libv4l.
    pub emulated: bool,
    pub sizes: Vec<SizeReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeReport {
    /// "1920x1080", or "16-3840/2x16-2160/2" for a stepwise range, or
    /// "any" when only frame rates are known.
    pub size: String,
    /// "30/1", "30000/1001", "1/1-60/1" for a range.
    pub framerates: Vec<String>,
}

/// One device from GStreamer's device monitor.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorDevice {
    pub name: String,
    /// "Video/Source", "Audio/Source", "Video/Source/Hardware" (DeckLink).
    pub class: String,
    /// "v4l2", "alsa", "pulse", "decklink", "pipewire", or the GType name.
    pub api: String,
    /// The V4L2 node, for V4L2 (and PipeWire camera) devices.
    pub path: Option<String>,
    /// The ALSA name to put in `audio.device` ("hw:1,0").
    pub alsa_device: Option<String>,
    /// The DeckLink `device_number`.
    pub decklink_device_number: Option<u32>,
    pub caps: Vec<CapsEntry>,
    /// The provider's properties, as text.
    pub properties: BTreeMap<String, String>,
}

/// A summary of caps: one entry per media type and format set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapsEntry {
    /// "video/x-raw", "image/jpeg", "audio/x-raw".
    pub media_type: String,
    pub formats: Vec<String>,
    /// Video: sizes with their frame rates.
    pub sizes: Vec<SizeReport>,
    /// Audio: sample rates ("48000", "1-2147483647").
    pub rates: Vec<String>,
    pub channels: Vec<String>,
}

/// What can be said about DeckLink support without a card.
#[derive(Clone, Debug, Serialize)]
pub struct DecklinkFacts {
    /// GStreamer's decklink plugin (gst-plugins-bad) is installed.
    pub gstreamer_plugin: bool,
    /// Where Blackmagic's driver library (`libDeckLinkAPI.so`, from
    /// Desktop Video) was found; the plugin loads it at run time.
    pub driver_library: Option<String>,
    /// `/dev/blackmagic/*` nodes (the Desktop Video kernel driver's).
    pub kernel_devices: Vec<String>,
    /// How many DeckLink capture devices the monitor listed.
    pub devices: usize,
    /// One sentence for the operator.
    pub note: String,
}

/// A config snippet for one device. `video`/`audio` are the config's own
/// types, so a hint always parses as config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigHint {
    /// What the device is, and its signal where known.
    pub label: String,
    pub video: Option<VideoSource>,
    pub audio: Option<AudioSource>,
    /// The same as TOML lines for an `[[inputs]]` table:
    /// `video = { source = "v4l2", device = "/dev/video0" }`.
    pub toml: String,
}

// ---------------------------------------------------------------------------
// Discovery.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    /// How long each half (device monitor, V4L2 nodes) may take.
    pub timeout: Duration,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            timeout: Duration::from_secs(5),
        }
    }
}

/// Discovers with the default options. Blocks for at most about five
/// seconds; from async code call it in `spawn_blocking`.
pub fn discover() -> Report {
    discover_with(&DiscoverOptions::default())
}

// A driver stuck in an ioctl, or a device provider stuck in start(), keeps
// its thread. These flags stop a second request from stacking another
// thread behind it: that request reports the stuck one instead.
static MONITOR_BUSY: AtomicBool = AtomicBool::new(false);
static NODES_BUSY: AtomicBool = AtomicBool::new(false);

/// Clears a busy flag when the thread holding it ends, however it ends.
struct BusyGuard(&'static AtomicBool);
impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

pub fn discover_with(options: &DiscoverOptions) -> Report {
    let started = Instant::now();
    let at = fieldcast_media::unix_now();
    let deadline = started + options.timeout;
    let mut errors = Vec::new();

    // Both halves at once: the budget is the timeout, not twice it.
    let monitor_rx = spawn_guarded(&MONITOR_BUSY, "fc-discover-gst", monitor_devices);
    let nodes = v4l2::video_nodes();
    let (node_tx, node_rx) = mpsc::channel();
    let scan_list = nodes.clone();
    let nodes_started = spawn_guarded(&NODES_BUSY, "fc-discover-v4l2", move || {
        for path in scan_list {
            if node_tx.send(describe_node(&path)).is_err() {
                break;
            }
        }
    });

    let mut found: BTreeMap<String, V4l2Node> = BTreeMap::new();
    if nodes_started.is_none() {
        errors.push(
            "V4L2 nodes: a previous discovery is still waiting on a driver; not scanned again"
                .into(),
        );
    } else {
        while found.len() < nodes.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match node_rx.recv_timeout(left) {
                Ok(node) => {
                    found.insert(node.path.clone(), node);
                }
                Err(_) => break,
            }
        }
    }
    let v4l2_nodes: Vec<V4l2Node> = nodes
        .iter()
        .map(|p| {
            let path = p.display().to_string();
            found.remove(&path).unwrap_or_else(|| V4l2Node {
                error: Some(if nodes_started.is_some() {
                    format!(
                        "did not answer within {} s (the driver is stuck in an ioctl)",
                        options.timeout.as_secs_f32()
                    )
                } else {
                    "not scanned: a previous scan is still stuck".into()
                }),
                path,
                ..V4l2Node::default()
            })
        })
        .collect();

    let devices = match monitor_rx {
        None => {
            errors.push(
                "device monitor: a previous discovery is still waiting on it; not started again"
                    .into(),
            );
            Vec::new()
        }
        Some(rx) => {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(devices)) => devices,
                Ok(Err(e)) => {
                    errors.push(format!("device monitor: {e}"));
                    Vec::new()
                }
                Err(_) => {
                    errors.push(format!(
                        "device monitor: no answer within {} s (a device provider is stuck)",
                        options.timeout.as_secs_f32()
                    ));
                    Vec::new()
                }
            }
        }
    };

    let decklink = decklink_facts(&devices);
    let mut report = Report {
        at,
        took_ms: 0,
        v4l2: v4l2_nodes,
        devices,
        decklink,
        hints: Vec::new(),
        errors,
    };
    report.hints = config_hints(&report);
    report.took_ms = started.elapsed().as_millis() as u64;
    report
}

/// Runs `f` on a named thread unless the previous one of its kind is still
/// running; the receiver gets its result.
fn spawn_guarded<T: Send + 'static>(
    busy: &'static AtomicBool,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<mpsc::Receiver<T>> {
    if busy.swap(true, Ordering::SeqCst) {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _guard = BusyGuard(busy);
            let _ = tx.send(f());
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            busy.store(false, Ordering::SeqCst);
            warn!("discovery: cannot start a thread: {e}");
            None
        }
    }
}

/// Everything V4L2 says about one node. Errors become `error` text.
pub fn describe_node(path: &Path) -> V4l2Node {
    let mut node = V4l2Node {
        path: path.display().to_string(),
        ..V4l2Node::default()
    };
    let dev = match Device::open(path) {
        Ok(d) => d,
        Err(e) => {
            node.error = Some(e.to_string());
            return node;
        }
    };
    let cap = dev.capability().clone();
    node.driver = cap.driver.clone();
    node.card = cap.card.clone();
    node.bus_info = cap.bus_info.clone();
    node.version = cap.version_string();
    node.kind = cap.kind().into();
    node.capabilities = cap.words();
    let Some(buf_type) = cap.capture_buf_type() else {
        // Encoders, metadata and output nodes are listed so the operator
        // sees every node, but they are not inputs.
        return node;
    };
    let mut errors = Vec::new();
    node.current_input = dev.current_input().ok();
    match dev.inputs() {
        Ok(inputs) => {
            // Without G_INPUT a single input is the current one.
            let current = node.current_input.or(if inputs.len() == 1 {
                Some(inputs[0].index)
            } else {
                None
            });
            node.inputs = inputs
                .into_iter()
                .map(|input| describe_input(&dev, input, current))
                .collect();
        }
        Err(e) => errors.push(e.to_string()),
    }
    match dev.formats(buf_type) {
        Ok(formats) => {
            for f in formats {
                let sizes = match dev.frame_sizes(f.pixelformat) {
                    Ok(sizes) => sizes
                        .into_iter()
                        .take(64)
                        .map(|size| {
                            let framerates = match size {
                                FrameSize::Discrete { width, height } => dev
                                    .frame_intervals(f.pixelformat, width, height)
                                    .map(|ivs| ivs.iter().map(|i| i.as_rate_string()).collect())
                                    .unwrap_or_default(),
                                FrameSize::Stepwise { .. } => Vec::new(),
                            };
                            SizeReport {
                                size: size.to_string(),
                                framerates,
                            }
                        })
                        .collect(),
                    Err(e) => {
                        errors.push(e.to_string());
                        Vec::new()
                    }
                };
                node.formats.push(FormatReport {
                    buffer_type: f.buf_type,
                    fourcc: f.fourcc(),
                    description: f.description.clone(),
                    compressed: f.flags & v4l2::V4L2_FMT_FLAG_COMPRESSED != 0,
                    emulated: f.flags & v4l2::V4L2_FMT_FLAG_EMULATED != 0,
                    sizes,
                });
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    if !errors.is_empty() {
        node.error = Some(errors.join("; "));
    }
    node
}

fn describe_input(dev: &Device, input: v4l2::Input, current: Option<u32>) -> InputReport {
    let is_current = current == Some(input.index);
    let mut report = InputReport {
        index: input.index,
        name: input.name.clone(),
        type_: input.type_word().into(),
        current: is_current,
        capabilities: v4l2::input_capability_words(input.capabilities),
        status: None,
        signal: None,
        dv: None,
    };
    if !is_current {
        return report;
    }
    report.status = Some(v4l2::input_status_words(input.status));
    if input.has_dv_timings() {
        let query = dev.query_dv_timings();
        let (detected, detect_error) = match &query {
            Ok(t) => (Some(*t), None),
            Err(e) => (None, Some(e.to_string())),
        };
        report.dv = Some(DvReport {
            configured: dev.dv_timings().ok(),
            detected,
            detect_error,
        });
        report.signal = Some(classify(input.status, Some(query)));
    } else {
        report.signal = Some(classify(input.status, None));
    }
    report
}

/// GStreamer's device monitor, started and stopped once.
fn monitor_devices() -> Result<Vec<MonitorDevice>, String> {
    gst::init().map_err(|e| format!("GStreamer would not initialise: {e}"))?;
    let monitor = gst::DeviceMonitor::new();
    // PulseAudio's provider hides ALSA's (and PipeWire's hides V4L2's):
    // the config names ALSA devices (`hw:1,0`), so show them all.
    monitor.set_show_all_devices(true);
    // A filter matches when the device's class has every word of it, in any
    // order (gst_device_has_classesv): "Video/Source" covers v4l2's
    // "Video/Source" and DeckLink's "Video/Source/Hardware"; "Audio/Source"
    // covers alsa, pulse and DeckLink's "Audio/Source/Hardware".
    monitor.add_filter(Some("Video/Source"), None);
    monitor.add_filter(Some("Audio/Source"), None);
    // start() fails when no provider starts; devices() then still probes
    // the providers once, which is all a snapshot needs.
    let started = monitor.start().is_ok();
    let devices: Vec<MonitorDevice> = monitor.devices().iter().map(monitor_device).collect();
    if started {
        monitor.stop();
    }
    let mut devices = devices;
    devices.sort_by(|a, b| (&a.class, &a.name).cmp(&(&b.class, &b.name)));
    Ok(devices)
}

fn monitor_device(d: &gst::Device) -> MonitorDevice {
    let type_name = d.type_().name().to_string();
    let api = match type_name.as_str() {
        "GstV4l2Device" => "v4l2",
        "GstAlsaDevice" => "alsa",
        "GstPulseDevice" => "pulse",
        "GstDecklinkDevice" => "decklink",
        "GstPipeWireDevice" => "pipewire",
        other => other,
    }
    .to_string();
    let props = d.properties();
    let prop_str = |key: &str| {
        props
            .as_ref()
            .and_then(|p| p.get::<String>(key).ok())
            .filter(|s| !s.is_empty())
    };
    let path = if api == "v4l2" || api == "pipewire" {
        prop_str("device.path")
            .or_else(|| prop_str("api.v4l2.path"))
            .or_else(|| {
                prop_str("object.path").and_then(|p| p.strip_prefix("v4l2:").map(String::from))
            })
    } else {
        None
    };
    // The ALSA device's name lives in an object property, not in the
    // properties structure (alsadeviceprovider.c: "internal-name").
    let alsa_device = if api == "alsa"
        && d.find_property("internal-name")
            .is_some_and(|p| p.value_type() == String::static_type())
    {
        d.property::<Option<String>>("internal-name")
    } else {
        None
    };
    let decklink_device_number = if api == "decklink" {
        props
            .as_ref()
            .and_then(|p| p.get::<u32>("device-number").ok())
    } else {
        None
    };
    let properties = props
        .as_ref()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), value_text(v)))
                .collect()
        })
        .unwrap_or_default();
    MonitorDevice {
        name: d.display_name().to_string(),
        class: d.device_class().to_string(),
        api,
        path,
        alsa_device,
        decklink_device_number,
        caps: d.caps().map(|c| summarize_caps(&c)).unwrap_or_default(),
        properties,
    }
}

fn value_text(v: &gst::glib::Value) -> String {
    if let Ok(s) = v.get::<String>() {
        return s;
    }
    v.serialize()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| format!("<{}>", v.type_().name()))
}

/// Caps as an operator reads them: per media type and format, the sizes
/// with their frame rates (video) or the rates and channels (audio).
/// Structures with the same media type and formats are merged.
pub fn summarize_caps(caps: &gst::CapsRef) -> Vec<CapsEntry> {
    let mut out: Vec<CapsEntry> = Vec::new();
    for s in caps.iter() {
        let media_type = s.name().to_string();
        let formats = field_strings(s, "format");
        let widths = field_strings(s, "width");
        let heights = field_strings(s, "height");
        let framerates = field_strings(s, "framerate");
        let mut sizes: Vec<String> = widths
            .iter()
            .flat_map(|w| heights.iter().map(move |h| format!("{w}x{h}")))
            .collect();
        if sizes.is_empty() && !framerates.is_empty() {
            sizes.push("any".into());
        }
        let i = match out
            .iter()
            .position(|e| e.media_type == media_type && e.formats == formats)
        {
            Some(i) => i,
            None => {
                out.push(CapsEntry {
                    media_type,
                    formats,
                    sizes: Vec::new(),
                    rates: Vec::new(),
                    channels: Vec::new(),
                });
                out.len() - 1
            }
        };
        let entry = &mut out[i];
        for size in sizes {
            match entry.sizes.iter_mut().find(|m| m.size == size) {
                Some(m) => push_unique(&mut m.framerates, framerates.clone()),
                None => entry.sizes.push(SizeReport {
                    size,
                    framerates: framerates.clone(),
                }),
            }
        }
        push_unique(&mut entry.rates, field_strings(s, "rate"));
        push_unique(&mut entry.channels, field_strings(s, "channels"));
    }
    out
}

fn push_unique(into: &mut Vec<String>, items: Vec<String>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

fn field_strings(s: &gst::StructureRef, field: &str) -> Vec<String> {
    match s.value(field) {
        Ok(v) => value_strings(v),
        Err(_) => Vec::new(),
    }
}

/// A caps value as text items: lists flattened, ranges as "min-max".
fn value_strings(v: &gst::glib::Value) -> Vec<String> {
    let frac = |f: gst::Fraction| format!("{}/{}", f.numer(), f.denom());
    if let Ok(s) = v.get::<String>() {
        vec![s]
    } else if let Ok(n) = v.get::<i32>() {
        vec![n.to_string()]
    } else if let Ok(f) = v.get::<gst::Fraction>() {
        vec![frac(f)]
    } else if let Ok(r) = v.get::<gst::IntRange<i32>>() {
        vec![if r.step() > 1 {
            format!("{}-{}/{}", r.min(), r.max(), r.step())
        } else {
            format!("{}-{}", r.min(), r.max())
        }]
    } else if let Ok(r) = v.get::<gst::FractionRange>() {
        vec![format!("{}-{}", frac(r.min()), frac(r.max()))]
    } else if let Ok(l) = v.get::<gst::List>() {
        l.iter().flat_map(|v| value_strings(v)).collect()
    } else if let Ok(a) = v.get::<gst::Array>() {
        a.iter().flat_map(|v| value_strings(v)).collect()
    } else {
        vec![value_text(v)]
    }
}

/// Facts about DeckLink support: the plugin, Blackmagic's library, the
/// kernel driver's nodes. The plugin loads `libDeckLinkAPI.so` with
/// `dlopen` and lists nothing when it is missing, so without these facts
/// "no DeckLink devices" would not say why.
fn decklink_facts(devices: &[MonitorDevice]) -> DecklinkFacts {
    let gstreamer_plugin =
        gst::init().is_ok() && gst::DeviceProviderFactory::find("decklinkdeviceprovider").is_some();
    let arch_dir = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    let mut dirs: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    dirs.extend(
        [
            arch_dir.as_str(),
            "/usr/lib",
            "/usr/lib64",
            "/usr/local/lib",
            "/lib",
        ]
        .iter()
        .map(|d| d.to_string()),
    );
    let driver_library = dirs
        .iter()
        .map(|d| Path::new(d).join("libDeckLinkAPI.so"))
        .find(|p| p.exists())
        .map(|p| p.display().to_string());
    let mut kernel_devices: Vec<String> = std::fs::read_dir("/dev/blackmagic")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    kernel_devices.sort();
    let count = devices
        .iter()
        .filter(|d| d.api == "decklink" && d.class.starts_with("Video"))
        .count();
    let note = if !gstreamer_plugin {
        "GStreamer's decklink plugin (gst-plugins-bad) is not installed: DeckLink cards cannot be used".to_string()
    } else if count > 0 {
        format!("{count} DeckLink capture device(s)")
    } else if driver_library.is_none() {
        "DeckLink driver library not installed (libDeckLinkAPI.so, from Blackmagic Desktop Video): no DeckLink card can be seen".to_string()
    } else if kernel_devices.is_empty() {
        "libDeckLinkAPI.so is installed but there is no /dev/blackmagic: the Desktop Video kernel driver is not loaded, or no card is fitted".to_string()
    } else {
        "the DeckLink driver is loaded but GStreamer lists no DeckLink capture device".to_string()
    };
    DecklinkFacts {
        gstreamer_plugin,
        driver_library,
        kernel_devices,
        devices: count,
        note,
    }
}

/// Config snippets for the capture inputs in a report: V4L2 capture nodes,
/// DeckLink cards (video with embedded audio), ALSA capture devices. Pure.
pub fn config_hints(report: &Report) -> Vec<ConfigHint> {
    let mut hints = Vec::new();
    for node in &report.v4l2 {
        if !matches!(node.kind.as_str(), "capture" | "capture-mplane") {
            continue;
        }
        let mut label = format!("{} ({})", node.card, node.path);
        if let Some(input) = node.inputs.iter().find(|i| i.current) {
            label.push_str(&format!(", input {}", input.name));
            if let Some(signal) = &input.signal {
                label.push_str(&format!(": {}", signal.describe()));
            }
        }
        hints.push(hint(
            label,
            Some(VideoSource::V4l2 {
                device: node.path.clone(),
                // A multi-input device: the input it is on now.
                input: (node.inputs.len() > 1)
                    .then(|| node.inputs.iter().find(|i| i.current).map(|i| i.index))
                    .flatten(),
            }),
            None,
        ));
    }
    for d in &report.devices {
        match d.api.as_str() {
            // A V4L2 device the node scan missed (it timed out).
            "v4l2" => {
                if let Some(path) = &d.path
                    && !report
                        .v4l2
                        .iter()
                        .any(|n| &n.path == path && n.error.is_none())
                {
                    hints.push(hint(
                        format!("{} ({path})", d.name),
                        Some(VideoSource::V4l2 {
                            device: path.clone(),
                            input: None,
                        }),
                        None,
                    ));
                }
            }
            "decklink" if d.class.starts_with("Video") => {
                hints.push(hint(
                    d.name.clone(),
                    Some(VideoSource::Decklink {
                        device_number: d.decklink_device_number.unwrap_or(0),
                        mode: "auto".into(),
                        connection: "auto".into(),
                    }),
                    Some(AudioSource::Decklink { channels: 2 }),
                ));
            }
            "alsa" if d.class.starts_with("Audio/Source") => {
                if let Some(dev) = &d.alsa_device {
                    hints.push(hint(
                        format!("{} ({dev})", d.name),
                        None,
                        Some(AudioSource::Alsa {
                            device: dev.clone(),
                            channels: 2,
                            rate: None,
                        }),
                    ));
                }
            }
            _ => {}
        }
    }
    hints
}

fn hint(label: String, video: Option<VideoSource>, audio: Option<AudioSource>) -> ConfigHint {
    let line = |key: &str, v: Option<toml::Value>| {
        v.map(|v| format!("{key} = {}\n", inline_table(&v)))
            .unwrap_or_default()
    };
    let toml = line(
        "video",
        video.as_ref().and_then(|v| toml::Value::try_from(v).ok()),
    ) + &line(
        "audio",
        audio.as_ref().and_then(|a| toml::Value::try_from(a).ok()),
    );
    ConfigHint {
        label,
        video,
        audio,
        toml,
    }
}

/// `{ source = "v4l2", device = "/dev/video0" }`: the tag first, as the
/// docs write it (toml's own order is alphabetical).
fn inline_table(v: &toml::Value) -> String {
    let toml::Value::Table(t) = v else {
        return v.to_string();
    };
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort_by_key(|k| k.as_str() != "source");
    let fields: Vec<String> = keys.iter().map(|k| format!("{k} = {}", t[*k])).collect();
    format!("{{ {} }}", fields.join(", "))
}

// ---------------------------------------------------------------------------
// Signal: state, classification, transitions (pure).
// ---------------------------------------------------------------------------

/// An input's signal.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SignalState {
    /// A signal is there (and locked, where the device can tell).
    /// `timings`: what an HDMI/SDI receiver detects; `None` on inputs
    /// without DV timings (UVC cameras), whose status bits are all we have.
    Locked {
        timings: Option<DvTimings>,
    },
    Lost {
        reason: LossReason,
    },
}

impl SignalState {
    /// "1920x1080p60", "locked", "no signal".
    pub fn describe(&self) -> String {
        match self {
            SignalState::Locked { timings: Some(t) } => t.label(),
            SignalState::Locked { timings: None } => "signal".into(),
            SignalState::Lost { reason } => reason.describe().into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// `V4L2_IN_ST_NO_POWER`: on HDMI receivers, no +5 V (cable out or the
    /// source off).
    NoPower,
    /// `ENOLINK` from QUERY_DV_TIMINGS, or `V4L2_IN_ST_NO_SIGNAL`.
    NoSignal,
    /// `ENOLCK` (unstable), or no horizontal/vertical/standard lock.
    NoLock,
    /// No sync, equalizer or carrier lock (analog and SDI front ends).
    NoSync,
    /// `ERANGE`: timings the hardware cannot take.
    OutOfRange,
    /// The node went away (USB unplug); the watch reopens it when it is
    /// back.
    Disconnected,
}

impl LossReason {
    pub fn describe(self) -> &'static str {
        match self {
            LossReason::NoPower => "no power (cable out or source off)",
            LossReason::NoSignal => "no signal",
            LossReason::NoLock => "no lock (unstable signal)",
            LossReason::NoSync => "no sync",
            LossReason::OutOfRange => "signal out of range",
            LossReason::Disconnected => "device disconnected",
        }
    }
}

/// A change of an input's signal.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SignalEvent {
    /// The signal went, or the reason it is missing changed.
    Lost { reason: LossReason },
    /// The source switched format without a gap the watch saw. The capture
    /// pipeline must restart (after `VIDIOC_S_DV_TIMINGS`; see
    /// [`Device::lock_to_detected_timings`]).
    Changed { timings: Option<DvTimings> },
    /// The signal is back, possibly in another format than before.
    Restored { timings: Option<DvTimings> },
}

/// The signal from one reading of an input: its status bits and, for
/// inputs with DV timings, what `VIDIOC_QUERY_DV_TIMINGS` said. Pure.
///
/// No power wins (it says why: the cable); then the DV query, which is
/// exact where it exists; then the status bits.
pub fn classify(status: u32, dv: Option<Result<DvTimings, DvQueryError>>) -> SignalState {
    let lost = |reason| SignalState::Lost { reason };
    if status & V4L2_IN_ST_NO_POWER != 0 {
        return lost(LossReason::NoPower);
    }
    match dv {
        Some(Ok(t)) => return SignalState::Locked { timings: Some(t) },
        Some(Err(DvQueryError::NoSignal)) => return lost(LossReason::NoSignal),
        Some(Err(DvQueryError::NoLock)) => return lost(LossReason::NoLock),
        Some(Err(DvQueryError::OutOfRange)) => return lost(LossReason::OutOfRange),
        Some(Err(DvQueryError::Failed(e))) if e.is_gone() => {
            return lost(LossReason::Disconnected);
        }
        Some(Err(_)) | None => {}
    }
    if status & V4L2_IN_ST_NO_SIGNAL != 0 {
        lost(LossReason::NoSignal)
    } else if status & (V4L2_IN_ST_NO_H_LOCK | V4L2_IN_ST_NO_V_LOCK | V4L2_IN_ST_NO_STD_LOCK) != 0 {
        lost(LossReason::NoLock)
    } else if status & (V4L2_IN_ST_NO_SYNC | V4L2_IN_ST_NO_EQU | V4L2_IN_ST_NO_CARRIER) != 0 {
        lost(LossReason::NoSync)
    } else {
        SignalState::Locked { timings: None }
    }
}

/// Turns successive readings into events. Pure: feed it states, get the
/// event to deliver, if any.
#[derive(Clone, Debug)]
pub struct SignalTracker {
    state: SignalState,
}

impl SignalTracker {
    pub fn new(initial: SignalState) -> Self {
        SignalTracker { state: initial }
    }

    pub fn state(&self) -> &SignalState {
        &self.state
    }

    pub fn observe(&mut self, next: SignalState) -> Option<SignalEvent> {
        use SignalState::{Locked, Lost};
        let event = match (&self.state, &next) {
            (Locked { timings: a }, Locked { timings: b }) if a != b => {
                Some(SignalEvent::Changed { timings: *b })
            }
            (Lost { .. }, Locked { timings }) => Some(SignalEvent::Restored { timings: *timings }),
            (Locked { .. }, Lost { reason }) => Some(SignalEvent::Lost { reason: *reason }),
            (Lost { reason: a }, Lost { reason: b }) if a != b => {
                Some(SignalEvent::Lost { reason: *b })
            }
            _ => None,
        };
        self.state = next;
        event
    }
}

/// Reads the signal of `dev`'s current input (`VIDIOC_G_INPUT`,
/// `VIDIOC_ENUMINPUT`, and `VIDIOC_QUERY_DV_TIMINGS` where the input has DV
/// timings). Also returns the current input's index, when known.
pub fn read_signal(dev: &Device) -> (SignalState, Option<u32>) {
    let gone = (
        SignalState::Lost {
            reason: LossReason::Disconnected,
        },
        None,
    );
    let current = match dev.current_input() {
        Ok(i) => Some(i),
        Err(e) if e.is_gone() => return gone,
        Err(_) => None,
    };
    let input = match dev.input(current.unwrap_or(0)) {
        Ok(i) => i,
        Err(e) if e.is_gone() => return gone,
        Err(_) => None,
    };
    let status = input.as_ref().map(|i| i.status).unwrap_or(0);
    let dv = match &input {
        Some(i) if i.has_dv_timings() => Some(dev.query_dv_timings()),
        Some(_) => None,
        // No input information: ask for timings anyway; a node without
        // them says so (ENOTTY/ENODATA).
        None => match dev.query_dv_timings() {
            Err(DvQueryError::Unsupported) => None,
            other => Some(other),
        },
    };
    (classify(status, dv), current.or(input.map(|i| i.index)))
}

// ---------------------------------------------------------------------------
// Signal: the watch (the shell around the pure parts).
// ---------------------------------------------------------------------------

/// Follows the signal of a V4L2 node's current input on a thread of its
/// own, and calls `on_event` for every [`SignalEvent`].
///
/// It wakes on `V4L2_EVENT_SOURCE_CHANGE` (HDMI receivers send it the
/// moment a source comes, goes or switches format) and in any case every
/// `poll_interval`, since not every driver sends events (UVC cameras never
/// do: for them only status bits change). It opens its own file handle, so
/// it runs beside a GStreamer pipeline streaming from the same node. When
/// the node disappears (USB) it reports [`LossReason::Disconnected`] and
/// reopens the path every interval.
///
/// The callback runs on the watch thread: keep it short, e.g. send into a
/// channel (`tokio::sync::mpsc::UnboundedSender::send` works from any
/// thread). Dropping the watch stops the thread and waits for it; that
/// returns within one callback's time.
///
/// ```no_run
/// use std::time::Duration;
/// use fieldcast_capture::discover::SignalWatch;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let watch = SignalWatch::start("/dev/video0", Duration::from_secs(1), move |ev| {
///     let _ = tx.send(ev);
/// })?;
/// println!("now: {}", watch.state().describe());
/// # Ok::<(), fieldcast_capture::v4l2::V4l2Error>(())
/// ```
pub struct SignalWatch {
    path: PathBuf,
    state: Arc<Mutex<SignalState>>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl SignalWatch {
    /// Opens `path`, reads the signal once (available at once from
    /// [`SignalWatch::state`]; events are changes from it), and starts the
    /// thread. Fails only when the node cannot be opened as V4L2 at all.
    pub fn start<F>(
        path: impl AsRef<Path>,
        poll_interval: Duration,
        on_event: F,
    ) -> Result<SignalWatch, V4l2Error>
    where
        F: FnMut(SignalEvent) + Send + 'static,
    {
        let path = path.as_ref().to_path_buf();
        let dev = Device::open(&path)?;
        let (wake_rx, wake_tx) = pipe().map_err(|source| V4l2Error::Ioctl {
            path: path.display().to_string(),
            ioctl: "pipe",
            source,
        })?;
        let placeholder = SignalState::Lost {
            reason: LossReason::Disconnected,
        };
        let shared = Arc::new(Mutex::new(placeholder.clone()));
        let mut watcher = Watcher {
            path: path.clone(),
            device: None,
            subscribed: None,
            events_usable: false,
            tracker: SignalTracker::new(placeholder),
            shared: shared.clone(),
            on_event: Box::new(on_event),
            interval: poll_interval.max(Duration::from_millis(10)),
            wake: wake_rx,
        };
        // Subscribe before the first reading, so a change between the two
        // is an event rather than lost until the next interval.
        let input = dev.current_input().ok();
        watcher.attach(dev, input);
        let state = match &watcher.device {
            Some(dev) => read_signal(dev).0,
            None => watcher.tracker.state().clone(),
        };
        watcher.tracker = SignalTracker::new(state.clone());
        watcher.publish(&state);
        let thread = std::thread::Builder::new()
            .name("fc-signal-watch".into())
            .spawn(move || watcher.run())
            .map_err(|source| V4l2Error::Ioctl {
                path: path.display().to_string(),
                ioctl: "thread spawn",
                source,
            })?;
        Ok(SignalWatch {
            path,
            state: shared,
            wake: wake_tx,
            thread: Some(thread),
        })
    }

    /// The signal as last read.
    pub fn state(&self) -> SignalState {
        // No await under this lock, and the holder only copies a value: a
        // std mutex is right. A poisoned lock still holds the last value.
        match self.state.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        let byte = 1u8;
        // SAFETY: writing one byte from a live local to our pipe's write end.
        // A full pipe (impossible: one byte is ever written) or a closed read
        // end (the thread is gone already) both leave nothing to wake.
        unsafe {
            libc::write(self.wake.as_raw_fd(), std::ptr::addr_of!(byte).cast(), 1);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Watcher {
    path: PathBuf,
    device: Option<Device>,
    /// The input whose source changes we are subscribed to.
    subscribed: Option<u32>,
    /// Whether polling the node for `POLLPRI` works (subscribed, and the
    /// node did not answer `POLLERR`).
    events_usable: bool,
    tracker: SignalTracker,
    shared: Arc<Mutex<SignalState>>,
    on_event: Box<dyn FnMut(SignalEvent) + Send>,
    interval: Duration,
    wake: OwnedFd,
}

impl Watcher {
    /// Takes an opened node and subscribes to its input's source changes.
    fn attach(&mut self, dev: Device, input: Option<u32>) {
        self.subscribed = None;
        self.events_usable = false;
        self.device = Some(dev);
        self.follow_input(input);
    }

    /// (Re)subscribes when the current input is not the subscribed one.
    fn follow_input(&mut self, input: Option<u32>) {
        let Some(dev) = &self.device else { return };
        let want = input.unwrap_or(0);
        if self.subscribed == Some(want) {
            return;
        }
        if let Some(old) = self.subscribed.take() {
            let _ = dev.unsubscribe_source_change(old);
        }
        match dev.subscribe_source_change(want) {
            Ok(()) => {
                self.subscribed = Some(want);
                self.events_usable = true;
            }
            Err(e) => {
                // Most UVC cameras: no source-change events; the interval
                // reading is all there is.
                debug!("{e}; following the signal by polling only");
                self.events_usable = false;
            }
        }
    }

    fn publish(&self, state: &SignalState) {
        match self.shared.lock() {
            Ok(mut s) => *s = state.clone(),
            Err(p) => *p.into_inner() = state.clone(),
        }
    }

    fn run(mut self) {
        loop {
            let mut fds = vec![libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let (Some(dev), true) = (&self.device, self.events_usable) {
                fds.push(libc::pollfd {
                    fd: dev.as_raw_fd(),
                    events: libc::POLLPRI,
                    revents: 0,
                });
            }
            if let Err(e) = v4l2::poll_fds(&mut fds, self.interval) {
                warn!("{}: poll: {e}", self.path.display());
                std::thread::sleep(self.interval);
            }
            if fds[0].revents != 0 {
                return;
            }
            if let (Some(dev), Some(pfd)) = (&self.device, fds.get(1)) {
                if pfd.revents & libc::POLLPRI != 0 {
                    // Drain: what matters is the state after them, which
                    // the reading below gets.
                    for _ in 0..64 {
                        match dev.dequeue_event() {
                            Ok(Some(ev)) => debug!("{}: event {ev:?}", self.path.display()),
                            Ok(None) | Err(_) => break,
                        }
                    }
                } else if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    // The node was unregistered, or its driver answers
                    // POLLERR to event polling: either way polling it would
                    // spin. The reading below tells which.
                    self.events_usable = false;
                }
            }
            if self.device.is_none() {
                match Device::open(&self.path) {
                    Ok(dev) => {
                        let input = dev.current_input().ok();
                        self.attach(dev, input);
                    }
                    Err(e) => debug!("{e}; retrying"),
                }
            }
            let (next, input) = match &self.device {
                Some(dev) => read_signal(dev),
                None => (
                    SignalState::Lost {
                        reason: LossReason::Disconnected,
                    },
                    None,
                ),
            };
            if next
                == (SignalState::Lost {
                    reason: LossReason::Disconnected,
                })
            {
                self.device = None;
                self.subscribed = None;
            } else {
                self.follow_input(input);
            }
            self.publish(&next);
            if let Some(ev) = self.tracker.observe(next) {
                (self.on_event)(ev);
            }
        }
    }
}

/// A close-on-exec, non-blocking pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn classification() {
        let lost = |reason| SignalState::Lost { reason };
        assert_eq!(
            classify(0, Some(Ok(crate::v4l2::cea_1080p60()))),
            SignalState::Locked {
                timings: Some(crate::v4l2::cea_1080p60())
            }
        );
        assert_eq!(
            classify(0, Some(Err(DvQueryError::NoSignal))),
            lost(LossReason::NoSignal)
        );
        assert_eq!(
            classify(0, Some(Err(DvQueryError::NoLock))),
            lost(LossReason::NoLock)
        );
        assert_eq!(
            classify(0, Some(Err(DvQueryError::OutOfRange))),
            lost(LossReason::OutOfRange)
        );
        // No power says more than "no signal".
        assert_eq!(
            classify(
                V4L2_IN_ST_NO_POWER | V4L2_IN_ST_NO_SIGNAL,
                Some(Err(DvQueryError::NoSignal))
            ),
            lost(LossReason::NoPower)
        );
        // Without DV timings (UVC, analog), status bits decide.
        assert_eq!(classify(0, None), SignalState::Locked { timings: None });
        assert_eq!(
            classify(V4L2_IN_ST_NO_SIGNAL, None),
            lost(LossReason::NoSignal)
        );
        assert_eq!(
            classify(V4L2_IN_ST_NO_H_LOCK, None),
            lost(LossReason::NoLock)
        );
        assert_eq!(classify(V4L2_IN_ST_NO_SYNC, None), lost(LossReason::NoSync));
        // Colour loss is not signal loss.
        assert_eq!(
            classify(v4l2::V4L2_IN_ST_NO_COLOR, None),
            SignalState::Locked { timings: None }
        );
        assert_eq!(
            classify(V4L2_IN_ST_NO_SIGNAL, Some(Err(DvQueryError::Unsupported))),
            lost(LossReason::NoSignal)
        );
        let gone = DvQueryError::Failed(V4l2Error::Ioctl {
            path: "/dev/video0".into(),
            ioctl: "VIDIOC_QUERY_DV_TIMINGS",
            source: io::Error::from_raw_os_error(libc::ENODEV),
        });
        assert_eq!(classify(0, Some(Err(gone))), lost(LossReason::Disconnected));
    }

    #[test]
    fn transitions() {
        let locked = |t| SignalState::Locked { timings: t };
        let lost = |reason| SignalState::Lost { reason };
        let p50 = DvTimings {
            pixelclock: 123_750_000,
            ..crate::v4l2::cea_1080p60()
        };
        let mut t = SignalTracker::new(locked(Some(crate::v4l2::cea_1080p60())));
        assert_eq!(t.observe(locked(Some(crate::v4l2::cea_1080p60()))), None);
        assert_eq!(
            t.observe(lost(LossReason::NoSignal)),
            Some(SignalEvent::Lost {
                reason: LossReason::NoSignal
            })
        );
        assert_eq!(t.observe(lost(LossReason::NoSignal)), None);
        assert_eq!(
            t.observe(lost(LossReason::NoLock)),
            Some(SignalEvent::Lost {
                reason: LossReason::NoLock
            })
        );
        assert_eq!(
            t.observe(locked(Some(p50))),
            Some(SignalEvent::Restored { timings: Some(p50) })
        );
        assert_eq!(
            t.observe(locked(Some(crate::v4l2::cea_1080p60()))),
            Some(SignalEvent::Changed {
                timings: Some(crate::v4l2::cea_1080p60())
            })
        );
        assert_eq!(t.state(), &locked(Some(crate::v4l2::cea_1080p60())));
        // A UVC camera: nothing to change but its presence.
        let mut t = SignalTracker::new(locked(None));
        assert_eq!(t.observe(locked(None)), None);
        assert_eq!(
            t.observe(lost(LossReason::Disconnected)),
            Some(SignalEvent::Lost {
                reason: LossReason::Disconnected
            })
        );
        assert_eq!(
            t.observe(locked(None)),
            Some(SignalEvent::Restored { timings: None })
        );
    }

    #[test]
    fn caps_summaries_group_sizes_and_rates() {
        gst::init().unwrap();
        let caps = gst::Caps::from_str(
            "video/x-raw, format=YUY2, width=1920, height=1080, framerate=5/1; \
             video/x-raw, format=YUY2, width=1280, height=720, framerate={ 10/1, 5/1 }; \
             video/x-raw, format=YUY2, width=1920, height=1080, framerate=(fraction)1/1; \
             image/jpeg, width=1920, height=1080, framerate=[ 1/1, 30/1 ]; \
             video/x-raw, format={ NV12, I420 }, width=[ 16, 3840 ], height=[ 16, 2160 ]",
        )
        .unwrap();
        let s = summarize_caps(&caps);
        assert_eq!(s.len(), 3, "{s:#?}");
        assert_eq!(s[0].media_type, "video/x-raw");
        assert_eq!(s[0].formats, ["YUY2"]);
        assert_eq!(
            s[0].sizes,
            [
                SizeReport {
                    size: "1920x1080".into(),
                    framerates: vec!["5/1".into(), "1/1".into()]
                },
                SizeReport {
                    size: "1280x720".into(),
                    framerates: vec!["10/1".into(), "5/1".into()]
                },
            ]
        );
        assert_eq!(s[1].media_type, "image/jpeg");
        assert!(s[1].formats.is_empty());
        assert_eq!(s[1].sizes[0].framerates, ["1/1-30/1"]);
        assert_eq!(s[2].formats, ["NV12", "I420"]);
        assert_eq!(s[2].sizes[0].size, "16-3840x16-2160");
        assert!(s[2].sizes[0].framerates.is_empty());

        let audio = gst::Caps::from_str(
            "audio/x-raw, format={ S16LE, S32LE }, layout=interleaved, rate=48000, channels={ 2, 8, 16 }; \
             audio/x-raw, format={ S16LE, S32LE }, layout=interleaved, rate=[ 8000, 192000 ], channels=2",
        )
        .unwrap();
        let a = summarize_caps(&audio);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].rates, ["48000", "8000-192000"]);
        assert_eq!(a[0].channels, ["2", "8", "16"]);
        assert!(a[0].sizes.is_empty());
    }

    fn node(path: &str, kind: &str) -> V4l2Node {
        V4l2Node {
            path: path.into(),
            driver: "tc358743".into(),
            card: "HDMI to CSI".into(),
            kind: kind.into(),
            ..V4l2Node::default()
        }
    }

    fn empty_report() -> Report {
        Report {
            at: 0.0,
            took_ms: 0,
            v4l2: Vec::new(),
            devices: Vec::new(),
            decklink: DecklinkFacts {
                gstreamer_plugin: true,
                driver_library: None,
                kernel_devices: Vec::new(),
                devices: 0,
                note: String::new(),
            },
            hints: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn monitor(api: &str, class: &str, name: &str) -> MonitorDevice {
        MonitorDevice {
            name: name.into(),
            class: class.into(),
            api: api.into(),
            path: None,
            alsa_device: None,
            decklink_device_number: None,
            caps: Vec::new(),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn hints_are_config_that_parses() {
        let mut r = empty_report();
        let mut hdmi = node("/dev/video0", "capture");
        hdmi.inputs.push(InputReport {
            index: 0,
            name: "HDMI".into(),
            type_: "camera".into(),
            current: true,
            capabilities: vec!["dv-timings".into()],
            status: Some(vec![]),
            signal: Some(SignalState::Locked {
                timings: Some(crate::v4l2::cea_1080p60()),
            }),
            dv: None,
        });
        r.v4l2.push(hdmi);
        r.v4l2.push(node("/dev/video1", "metadata"));
        r.v4l2.push(node("/dev/video11", "m2m"));
        let mut dl = monitor(
            "decklink",
            "Video/Source/Hardware",
            "DeckLink Mini Recorder (Video Capture)",
        );
        dl.decklink_device_number = Some(1);
        r.devices.push(dl);
        r.devices.push(monitor(
            "decklink",
            "Audio/Source/Hardware",
            "DeckLink Mini Recorder (Audio Capture)",
        ));
        let mut alsa = monitor("alsa", "Audio/Source", "USB Audio");
        alsa.alsa_device = Some("hw:1,0".into());
        r.devices.push(alsa);
        r.devices
            .push(monitor("pulse", "Audio/Source", "Monitor of Speakers"));

        let hints = config_hints(&r);
        assert_eq!(hints.len(), 3, "{hints:#?}");
        assert_eq!(
            hints[0].label,
            "HDMI to CSI (/dev/video0), input HDMI: 1920x1080p60"
        );
        assert_eq!(
            hints[0].toml,
            "video = { source = \"v4l2\", device = \"/dev/video0\" }\n"
        );
        assert_eq!(
            hints[1].video,
            Some(VideoSource::Decklink {
                device_number: 1,
                mode: "auto".into(),
                connection: "auto".into()
            })
        );
        assert_eq!(hints[1].audio, Some(AudioSource::Decklink { channels: 2 }));
        assert_eq!(
            hints[2].toml,
            "audio = { source = \"alsa\", device = \"hw:1,0\" }\n"
        );
        // Each hint is an input the config accepts.
        let board = crate::BoardProfile::builtin("generic-x86-64").unwrap();
        for h in &hints {
            let spec: crate::InputSpec =
                toml::from_str(&format!("name = \"x\"\n{}", h.toml)).unwrap();
            spec.validate("inputs[0]", &board).unwrap();
        }
    }
}
