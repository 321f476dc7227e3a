//! Runs one input's capture pipeline: builds it, feeds its encoded frames
//! into the stream, watches it, and rebuilds it with backoff when it fails.
//! A missing or busy device, or caps that cannot be negotiated, put the input
//! in an error state with the device and the reason; they never take the
//! daemon down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldcast_media::backoff::Backoff;
use fieldcast_media::pipeline_util::{change_state, error_reason, pending_error};
use fieldcast_media::{EncodedFrame, Stream, Track, unix_now};
use futures::StreamExt;
use gst::prelude::*;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::audio::{AudioLevels, AudioMeter, AudioStatus, Change, Levels};
use crate::board::BoardProfile;
use crate::describe;
use crate::discover::{self, SignalEvent, SignalState, SignalWatch};
use crate::settings::{EncodeSettings, InputSpec, VideoSource};
use crate::v4l2;

/// With frames flowing, this long without one is a lost input.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A source may take this long to deliver its first frame (DeckLink and
/// some UVC cameras are slow to lock).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(15);
/// A DeckLink card without a signal this long is an input without one.
const DECKLINK_NO_SIGNAL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InputState {
    Starting,
    Running,
    /// Failed; retried at `retry_at` (unix seconds).
    Error {
        reason: String,
        retry_at: f64,
    },
    Stopped,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: InputState,
    pub since: f64,
    pub source: String,
    pub encoder: String,
    pub width: u32,
    pub height: u32,
    pub framerate: String,
    pub bitrate_kbps: u32,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// The slate goes out in place of the source (it has no picture):
    /// outputs stay connected.
    pub slate: bool,
    /// Whether the audio is silent; absent for an input without audio.
    /// (Its levels change ten times a second: telemetry, not state, shows
    /// them, through [`InputHandle::audio_levels`].)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioStatus>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InputEvent {
    InputLive {
        input: String,
    },
    InputLost {
        input: String,
        reason: String,
    },
    /// An HDMI/SDI source switched format: the capture was rebuilt for the
    /// new timings (`timings`, e.g. `1920x1080p50`).
    InputTimingChanged {
        input: String,
        timings: String,
    },
    /// The board's encoder cannot be used here (missing element or
    /// property): the input encodes in software instead.
    EncoderFallback {
        input: String,
        wanted: String,
        using: String,
        reason: String,
    },
    /// Every stream channel below `silence_threshold_dbfs` for
    /// `silence_after_s`: `channels` are the selected source channels,
    /// `rms_dbfs` the last level of each stream channel.
    AudioSilence {
        input: String,
        channels: Vec<u32>,
        rms_dbfs: Vec<f64>,
        threshold_dbfs: f64,
        silent_for_s: f64,
    },
    /// Sound at or above the threshold again after `silent_s` of silence.
    AudioRestored {
        input: String,
        channels: Vec<u32>,
        rms_dbfs: Vec<f64>,
        silent_s: f64,
    },
}

/// How a change of encoding took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HowApplied {
    /// Set on the running encoder: no gap in the stream.
    Live,
    /// The capture pipeline was rebuilt with the new settings (a new size,
    /// rate or profile, or a property the encoder cannot change while it
    /// runs). Outputs stay connected and go on at the new encoder's first
    /// keyframe.
    Restarted,
    /// The input is not running (it failed and waits to retry): the
    /// settings take effect when it starts.
    NextStart,
    /// The capture pipeline could not run with the new settings (`error`
    /// says why); it keeps trying them until told otherwise.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Applied {
    pub how: HowApplied,
    /// The settings that changed.
    pub changed: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A reply owed once a rebuilt pipeline shows whether it runs.
type Owed = Option<(oneshot::Sender<Applied>, Vec<&'static str>)>;

enum InputCommand {
    Reconfigure {
        encode: EncodeSettings,
        reply: oneshot::Sender<Applied>,
    },
}

pub struct InputHandle {
    stop: Option<oneshot::Sender<()>>,
    cmd: mpsc::Sender<InputCommand>,
    status: watch::Receiver<InputStatus>,
    levels: watch::Receiver<Option<AudioLevels>>,
    task: JoinHandle<()>,
}

impl InputHandle {
    pub fn status(&self) -> InputStatus {
        self.status.borrow().clone()
    }

    /// The audio's latest levels; `None` without audio or while the
    /// pipeline is not running.
    pub fn audio_levels(&self) -> Option<AudioLevels> {
        self.levels.borrow().clone()
    }

    /// Changes the encoding to `encode` (validated by the caller): live
    /// where the encoder allows it, else by rebuilding the pipeline.
    pub async fn reconfigure(&self, encode: EncodeSettings) -> Result<Applied, String> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(InputCommand::Reconfigure { encode, reply })
            .await
            .map_err(|_| "the input has stopped".to_string())?;
        rx.await.map_err(|_| "the input has stopped".to_string())
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

fn source_label(spec: &InputSpec) -> String {
    match &spec.video {
        VideoSource::TestPattern { pattern, .. } => format!("test-pattern ({pattern})"),
        VideoSource::V4l2 {
            device,
            input: None,
        } => format!("v4l2 {device}"),
        VideoSource::V4l2 {
            device,
            input: Some(i),
        } => format!("v4l2 {device} input {i}"),
        VideoSource::Libcamera { camera: Some(c) } => format!("libcamera {c}"),
        VideoSource::Libcamera { camera: None } => "libcamera (first camera)".into(),
        VideoSource::Decklink {
            device_number,
            connection,
            ..
        } => format!("decklink {device_number} ({connection})"),
    }
}

/// Starts the input. Frames go to `stream`; operator-facing news to `events`.
pub fn spawn(
    spec: InputSpec,
    board: BoardProfile,
    stream: Arc<Stream>,
    events: mpsc::UnboundedSender<InputEvent>,
) -> InputHandle {
    let status = InputStatus {
        name: spec.name.clone(),
        state: InputState::Starting,
        since: unix_now(),
        source: source_label(&spec),
        encoder: board.video_encoder.element.clone(),
        width: spec.encode.width,
        height: spec.encode.height,
        framerate: spec.encode.framerate.to_string(),
        bitrate_kbps: spec.encode.bitrate_kbps,
        restarts: 0,
        last_error: None,
        slate: false,
        audio: spec.has_audio().then(|| AudioStatus {
            source: spec.audio.source.label(),
            select: spec.audio.select.clone(),
            silent: false,
            since: unix_now(),
        }),
    };
    let (status_tx, status_rx) = watch::channel(status);
    let (levels_tx, levels_rx) = watch::channel(None);
    let audio = spec.has_audio().then(|| AudioWatch {
        meter: AudioMeter::new(&spec.audio, std::time::Instant::now()),
        levels: levels_tx,
        select: spec.audio.select.clone(),
        threshold_dbfs: spec.audio.silence_threshold_dbfs,
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let task = tokio::spawn(run(
        spec, board, stream, status_tx, events, stop_rx, cmd_rx, audio,
    ));
    InputHandle {
        stop: Some(stop_tx),
        cmd: cmd_tx,
        status: status_rx,
        levels: levels_rx,
        task,
    }
}

/// An input's audio meter and where what it finds goes: levels to the
/// handle (telemetry), silence to the status (state) and to events. Kept
/// across pipeline restarts, so silence is reported once, not once per
/// restart.
struct AudioWatch {
    meter: AudioMeter,
    levels: watch::Sender<Option<AudioLevels>>,
    select: Vec<u32>,
    threshold_dbfs: f64,
}

impl AudioWatch {
    /// An element message from the capture pipeline: the `level` meter's
    /// report (`name=alevel`), other messages ignored.
    fn message(
        &mut self,
        m: &gst::message::Element,
        input: &str,
        status: &watch::Sender<InputStatus>,
        events: &mpsc::UnboundedSender<InputEvent>,
    ) {
        let from_meter = m.src().is_some_and(|s| s.name() == "alevel");
        let Some(levels) = m
            .structure()
            .filter(|_| from_meter)
            .and_then(Levels::from_structure)
        else {
            return;
        };
        let now = std::time::Instant::now();
        let change = self.meter.level(now, levels);
        self.levels.send_replace(self.meter.levels());
        if let Some(c) = change {
            self.report(c, now, input, status, events);
        }
    }

    /// Time passing: reports that stopped coming count as quiet.
    fn poll(
        &mut self,
        input: &str,
        status: &watch::Sender<InputStatus>,
        events: &mpsc::UnboundedSender<InputEvent>,
    ) {
        let now = std::time::Instant::now();
        if let Some(c) = self.meter.poll(now) {
            self.levels.send_replace(self.meter.levels());
            self.report(c, now, input, status, events);
        }
    }

    fn report(
        &self,
        change: Change,
        now: std::time::Instant,
        input: &str,
        status: &watch::Sender<InputStatus>,
        events: &mpsc::UnboundedSender<InputEvent>,
    ) {
        let rms_dbfs = self.meter.rms_dbfs();
        let tenths = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        // The state first, then the event: whoever hears of it finds the
        // state that says so.
        let event = match change {
            Change::Silent { since } => {
                let quiet = now.saturating_duration_since(since);
                warn!(
                    input,
                    ?rms_dbfs,
                    quiet_s = quiet.as_secs_f64(),
                    "audio silent"
                );
                status.send_modify(|s| {
                    if let Some(a) = &mut s.audio {
                        a.silent = true;
                        a.since = unix_now() - quiet.as_secs_f64();
                    }
                });
                InputEvent::AudioSilence {
                    input: input.to_string(),
                    channels: self.select.clone(),
                    rms_dbfs,
                    threshold_dbfs: self.threshold_dbfs,
                    silent_for_s: tenths(quiet),
                }
            }
            Change::Restored { silent_for } => {
                info!(
                    input,
                    ?rms_dbfs,
                    silent_s = silent_for.as_secs_f64(),
                    "audio back"
                );
                status.send_modify(|s| {
                    if let Some(a) = &mut s.audio {
                        a.silent = false;
                        a.since = unix_now();
                    }
                });
                InputEvent::AudioRestored {
                    input: input.to_string(),
                    channels: self.select.clone(),
                    rms_dbfs,
                    silent_s: tenths(silent_for),
                }
            }
        };
        let _ = events.send(event);
    }

    /// The pipeline stopped: no levels until the next one reports.
    fn stopped(&mut self) {
        self.meter.stopped();
        self.levels.send_replace(None);
    }
}

fn set_state(status: &watch::Sender<InputStatus>, state: InputState) {
    status.send_if_modified(|s| {
        if s.state == state {
            return false;
        }
        s.state = state;
        s.since = unix_now();
        true
    });
}

/// What changed between two encodings, by field name.
fn changed(old: &EncodeSettings, new: &EncodeSettings) -> Vec<&'static str> {
    let mut c = Vec::new();
    if old.width != new.width {
        c.push("width");
    }
    if old.height != new.height {
        c.push("height");
    }
    if old.framerate != new.framerate {
        c.push("framerate");
    }
    if old.bitrate_kbps != new.bitrate_kbps {
        c.push("bitrate_kbps");
    }
    if old.gop_frames != new.gop_frames {
        c.push("gop_frames");
    }
    if old.profile != new.profile {
        c.push("profile");
    }
    if old.audio_bitrate_kbps != new.audio_bitrate_kbps {
        c.push("audio_bitrate_kbps");
    }
    c
}

fn show_encoding(status: &watch::Sender<InputStatus>, e: &EncodeSettings) {
    status.send_modify(|s| {
        s.width = e.width;
        s.height = e.height;
        s.framerate = e.framerate.to_string();
        s.bitrate_kbps = e.bitrate_kbps;
    });
}

/// Applies a change to the running encoders if every changed setting is a
/// property GStreamer lets change in PLAYING (x264enc's `bitrate` is;
/// its `key-int-max` is not). Sets nothing and returns `false` otherwise.
fn apply_live(
    pipeline: &gst::Pipeline,
    spec: &InputSpec,
    board: &BoardProfile,
    new: &EncodeSettings,
    what: &[&str],
) -> bool {
    let mut next = spec.clone();
    next.encode = new.clone();
    let mut sets: Vec<(gst::Element, String, String)> = Vec::new();
    for field in what {
        let (element, old_props, new_props) = match *field {
            "bitrate_kbps" | "gop_frames" => (
                "venc",
                describe::video_encoder_properties(spec, board),
                describe::video_encoder_properties(&next, board),
            ),
            "audio_bitrate_kbps" => (
                "aenc",
                describe::audio_encoder_properties(spec, board),
                describe::audio_encoder_properties(&next, board),
            ),
            _ => return false,
        };
        let Some(e) = pipeline.by_name(element) else {
            return false;
        };
        for (k, v) in &new_props {
            if old_props.iter().any(|(ok, ov)| ok == k && ov == v) {
                continue;
            }
            let mutable = e
                .find_property(k)
                .is_some_and(|p| p.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING));
            if !mutable {
                return false;
            }
            sets.push((e.clone(), k.clone(), v.clone()));
        }
    }
    for (e, k, v) in sets {
        e.set_property_from_str(&k, &v);
    }
    true
}

#[allow(clippy::too_many_arguments)]
async fn run(
    spec: InputSpec,
    board: BoardProfile,
    stream: Arc<Stream>,
    status: watch::Sender<InputStatus>,
    events: mpsc::UnboundedSender<InputEvent>,
    mut stop: oneshot::Receiver<()>,
    mut cmd: mpsc::Receiver<InputCommand>,
    mut audio: Option<AudioWatch>,
) {
    let mut spec = spec;
    let mut owed: Owed = None;
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        factor: 2.0,
    };
    let mut attempt = 0u32;
    let mut epoch = 0u64;
    let gate: Gate = Arc::new(Mutex::new(false));
    let mut no_signal = false;
    let mut quiet = false;
    // The loss operators were told of: the same reason again (a source
    // retried every second while it has no signal) is not news.
    let mut announced: Option<String> = None;
    let mut slate: Option<Slate> = None;
    loop {
        epoch += 1;
        attempt += 1;
        if !quiet {
            set_state(&status, InputState::Starting);
        }
        let outcome = session(
            &mut spec,
            &board,
            &stream,
            &status,
            &events,
            epoch,
            Feeds {
                gate: &gate,
                slate: &mut slate,
            },
            &mut stop,
            &mut cmd,
            &mut owed,
            &mut audio,
        )
        .await;
        if matches!(status.borrow().state, InputState::Running) {
            announced = None;
        }
        let reason = match outcome {
            Outcome::Stopped => {
                if let Some(s) = slate.take() {
                    s.stop().await;
                }
                status.send_modify(|s| s.slate = false);
                set_state(&status, InputState::Stopped);
                return;
            }
            Outcome::Reconfigured => {
                info!(input = %spec.name, "capture pipeline rebuilt with new settings");
                attempt = 0;
                continue;
            }
            Outcome::Renegotiate { timings } => {
                info!(input = %spec.name, %timings, "source timings changed; capture rebuilt");
                let _ = events.send(InputEvent::InputTimingChanged {
                    input: spec.name.clone(),
                    timings,
                });
                attempt = 0;
                continue;
            }
            Outcome::NoSignal { reason } => {
                // A signal comes back without warning: look again soon,
                // whatever the backoff says.
                attempt = 1;
                no_signal = true;
                if let Some((reply, changed)) = owed.take() {
                    let _ = reply.send(Applied {
                        how: HowApplied::NextStart,
                        changed,
                        error: None,
                    });
                }
                format!("no signal: {reason}")
            }
            Outcome::Failed { reason, ran } => {
                if ran {
                    attempt = 1;
                }
                if let Some((reply, changed)) = owed.take() {
                    let _ = reply.send(Applied {
                        how: HowApplied::Failed,
                        changed,
                        error: Some(reason.clone()),
                    });
                }
                reason
            }
        };
        let signal_lost = std::mem::take(&mut no_signal);
        let delay = if signal_lost {
            Duration::from_secs(1)
        } else {
            backoff.delay_random(attempt)
        };
        let reason = format!("{}: {reason}", source_label(&spec));
        // Still no signal, as last time: a quiet retry (no new state, no
        // restart counted) rather than a state change every second.
        quiet = signal_lost && announced.as_ref() == Some(&reason);
        if !quiet {
            warn!(input = %spec.name, %reason, retry_in = ?delay, "input failed");
            // The state first, then the event: whoever hears of the loss
            // must find the state that says so.
            status.send_modify(|s| {
                s.restarts += 1;
                s.last_error = Some(reason.clone());
            });
            set_state(
                &status,
                InputState::Error {
                    reason: reason.clone(),
                    retry_at: unix_now() + delay.as_secs_f64(),
                },
            );
        }
        if announced.as_ref() != Some(&reason) {
            announced = Some(reason.clone());
            let _ = events.send(InputEvent::InputLost {
                input: spec.name.clone(),
                reason,
            });
        }
        // A slate whose gate the capture closed (it took over, then failed
        // before it was seen running) sends nothing: a new one starts.
        if slate.is_some()
            && !*open(&gate)
            && let Some(s) = slate.take()
        {
            s.stop().await;
        }
        if let Some(s) = &slate {
            // The capture's requester went with its session.
            install_keyframe_requester(&s.pipeline, &stream);
        }
        if slate.is_none() {
            epoch += 1;
            let caption = format!("NO SIGNAL - {} ({})", spec.name, source_label(&spec));
            match start_slate(&spec, &board, &stream, epoch, &gate, &caption).await {
                Ok(s) => {
                    info!(input = %spec.name, "slate on: outputs stay connected");
                    slate = Some(s);
                    status.send_modify(|s| s.slate = true);
                }
                Err(e) => warn!(input = %spec.name, error = %e, "the slate could not start"),
            }
        }
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => break,
                _ = &mut stop => {
                    if let Some(s) = slate.take() {
                        s.stop().await;
                    }
                    status.send_modify(|s| s.slate = false);
                    set_state(&status, InputState::Stopped);
                    return;
                }
                Some(InputCommand::Reconfigure { encode, reply }) = cmd.recv() => {
                    let what = changed(&spec.encode, &encode);
                    spec.encode = encode;
                    show_encoding(&status, &spec.encode);
                    let _ = reply.send(Applied { how: HowApplied::NextStart, changed: what, error: None });
                }
            }
        }
    }
}

enum Outcome {
    Stopped,
    Failed {
        reason: String,
        ran: bool,
    },
    /// Rebuilt for new settings: not a failure.
    Reconfigured,
    /// The source has no signal (HDMI/SDI receiver, or a device that says
    /// so): retried often, since a signal comes back without warning.
    NoSignal {
        reason: String,
    },
    /// The source's timings changed: rebuilt for them at once.
    Renegotiate {
        timings: String,
    },
}

/// Why a V4L2 source cannot start.
enum Unprepared {
    NoSignal(String),
    /// Not a signal matter: a wrong input index, say.
    Failed(String),
}

/// A V4L2 source's signal, read before its pipeline starts: no signal fails
/// at once (not after waiting for a first frame), and an HDMI/SDI receiver
/// is set to the timings it detects (`VIDIOC_S_DV_TIMINGS`: GStreamer
/// 1.22's v4l2src leaves that to the application). A device that cannot be
/// opened is left to v4l2src, whose error names it.
fn prepare_v4l2(device: &str, input: Option<u32>) -> Result<Option<String>, Unprepared> {
    let Ok(dev) = v4l2::Device::open(device) else {
        return Ok(None);
    };
    if let Some(i) = input {
        let names: Vec<String> = dev
            .inputs()
            .unwrap_or_default()
            .iter()
            .map(|x| format!("{} {}", x.index, x.name))
            .collect();
        dev.set_input(i).map_err(|e| {
            Unprepared::Failed(format!(
                "selecting input {i}: {e} (inputs: {})",
                names.join(", ")
            ))
        })?;
    }
    match discover::read_signal(&dev).0 {
        SignalState::Lost { reason } => Err(Unprepared::NoSignal(reason.describe().to_string())),
        SignalState::Locked {
            timings: Some(_), ..
        } => match dev.lock_to_detected_timings() {
            Ok(t) => Ok(Some(t.label())),
            Err(e) => {
                warn!(device, error = ?e, "could not set the detected DV timings");
                Ok(None)
            }
        },
        SignalState::Locked { .. } => Ok(None),
    }
}

/// Frames of the slate go out while this is open; the capture closes it
/// with its first frame, so frames of the two never interleave.
type Gate = Arc<Mutex<bool>>;

/// What a session shares with the slate.
struct Feeds<'a> {
    gate: &'a Gate,
    slate: &'a mut Option<Slate>,
}

/// The slate's pipeline ([`describe::slate`]), running while the input is
/// lost.
struct Slate {
    pipeline: gst::Pipeline,
}

impl Slate {
    async fn stop(self) {
        if let Err(e) = change_state(&self.pipeline, gst::State::Null).await {
            warn!(error = %e, "the slate did not stop cleanly");
        }
    }
}

async fn start_slate(
    spec: &InputSpec,
    board: &BoardProfile,
    stream: &Arc<Stream>,
    epoch: u64,
    gate: &Gate,
    caption: &str,
) -> Result<Slate, String> {
    let board = match board.check_video_encoder() {
        Ok(()) => board.clone(),
        Err(_) => board.with_software_encoder(),
    };
    let caption = gst::ElementFactory::find("textoverlay")
        .is_some()
        .then_some(caption);
    let d = describe::slate(spec, &board, caption);
    let pipeline = tokio::task::spawn_blocking(move || gst::parse::launch(&d))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("building the slate: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the slate is not a pipeline".to_string())?;
    // Nobody reads the slate's bus: its level meter stays quiet and the bus
    // drops what is posted, so nothing piles up over a long loss.
    if let Some(level) = pipeline.by_name("alevel") {
        level.set_property("post-messages", false);
    }
    if let Some(bus) = pipeline.bus() {
        bus.set_flushing(true);
    }
    let clock = gst::SystemClock::obtain();
    pipeline.use_clock(Some(&clock));
    pipeline.set_start_time(gst::ClockTime::NONE);
    let base_time = clock.time();
    pipeline.set_base_time(base_time);
    *open(gate) = true;
    let mut sinks = vec![("video", Track::Video)];
    if spec.has_audio() {
        sinks.push(("audio", Track::Audio));
    }
    for (name, track) in sinks {
        connect_sink(
            &pipeline,
            name,
            track,
            stream,
            epoch,
            base_time,
            Source::Slate(gate.clone()),
        )?;
    }
    install_keyframe_requester(&pipeline, stream);
    if let Err(e) = change_state(&pipeline, gst::State::Playing).await {
        let _ = change_state(&pipeline, gst::State::Null).await;
        return Err(e);
    }
    Ok(Slate { pipeline })
}

/// Whose frames an appsink carries.
enum Source {
    /// The capture, counting the video frames it publishes.
    Capture(Gate, Arc<AtomicU64>),
    Slate(Gate),
}

/// The gate's lock; a panic elsewhere leaves the flag readable.
fn open(gate: &Gate) -> std::sync::MutexGuard<'_, bool> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

fn connect_sink(
    pipeline: &gst::Pipeline,
    name: &str,
    track: Track,
    stream: &Arc<Stream>,
    epoch: u64,
    base_time: gst::ClockTime,
    source: Source,
) -> Result<(), String> {
    let sink = pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| format!("pipeline has no appsink '{name}'"))?;
    let stream = stream.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(mut buffer), Some(caps)) = (sample.buffer_owned(), sample.caps_owned())
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // Encoders timestamp in their own segment (x264enc shifts by
                // 1000 h so DTS never goes negative). Outputs get running
                // time, the one timeline every pipeline on this clock shares.
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                drop(sample);
                if let Some(segment) = segment {
                    let pts = buffer.pts().and_then(|t| segment.to_running_time(t));
                    let dts = buffer
                        .dts()
                        .and_then(|t| segment.to_running_time(t))
                        .or(pts);
                    // Only the buffer's metadata is written: the frame data
                    // stays where the encoder put it.
                    let b = buffer.make_mut();
                    b.set_pts(pts);
                    b.set_dts(dts);
                }
                let frame = EncodedFrame::new(track, buffer, caps, epoch, base_time);
                match &source {
                    Source::Capture(gate, published) => {
                        // While the slate is on, the capture takes over at
                        // its first video keyframe; what comes before (its
                        // first audio, say) is dropped, so the stream never
                        // has the capture's audio beside the slate's picture.
                        let mut slate_open = open(gate);
                        if *slate_open {
                            if !(track == Track::Video && frame.keyframe) {
                                return Ok(gst::FlowSuccess::Ok);
                            }
                            *slate_open = false;
                        }
                        if track == Track::Video {
                            published.fetch_add(1, Ordering::Relaxed);
                        }
                        stream.publish(frame);
                    }
                    Source::Slate(gate) => {
                        if *open(gate) {
                            stream.publish(frame);
                        }
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Lets outputs ask this pipeline's encoder for a keyframe: a
/// force-key-unit event (GstVideo's "GstForceKeyUnit", with all headers)
/// sent upstream from the video appsink reaches the encoder through
/// h264parse. Both x264enc and the V4L2 encoders (GstVideoEncoder) honour it.
fn install_keyframe_requester(pipeline: &gst::Pipeline, stream: &Arc<Stream>) {
    let Some(pad) = pipeline.by_name("video").and_then(|s| s.static_pad("sink")) else {
        return;
    };
    let pad = pad.downgrade();
    stream.set_keyframe_requester(Some(Box::new(move || {
        let Some(pad) = pad.upgrade() else { return };
        let event = gst::event::CustomUpstream::new(
            gst::Structure::builder("GstForceKeyUnit")
                .field("all-headers", true)
                .field("count", 0u32)
                .build(),
        );
        pad.push_event(event);
    })));
}

#[allow(clippy::too_many_arguments)]
async fn session(
    spec_mut: &mut InputSpec,
    board: &BoardProfile,
    stream: &Arc<Stream>,
    status: &watch::Sender<InputStatus>,
    events: &mpsc::UnboundedSender<InputEvent>,
    epoch: u64,
    feeds: Feeds<'_>,
    stop: &mut oneshot::Receiver<()>,
    cmd: &mut mpsc::Receiver<InputCommand>,
    owed: &mut Owed,
    audio: &mut Option<AudioWatch>,
) -> Outcome {
    let failed = |reason: String| Outcome::Failed { reason, ran: false };
    // The board's encoder is checked, not assumed: a missing element (a
    // V4L2 encoder registers only when its device exists) or a property the
    // installed version lacks puts the input on the software encoder, and
    // says so, instead of leaving it dark.
    let checked;
    let board = match board.check_video_encoder() {
        Ok(()) => board,
        Err(reason) => {
            let software = board.with_software_encoder();
            if software.check_video_encoder().is_err() {
                return failed(format!(
                    "{reason} (board {}'s encoder), and no software encoder to fall back to",
                    board.board.name
                ));
            }
            let using = software.video_encoder.element.clone();
            if status.borrow().encoder != using {
                warn!(input = %spec_mut.name, wanted = %board.video_encoder.element, %using, %reason, "falling back to the software encoder");
                status.send_modify(|s| s.encoder = using.clone());
                let _ = events.send(InputEvent::EncoderFallback {
                    input: spec_mut.name.clone(),
                    wanted: board.video_encoder.element.clone(),
                    using,
                    reason,
                });
            }
            checked = software;
            &checked
        }
    };
    // The running clock is a nicety of the test pattern: a lean image
    // without the pango plugin still gets its picture.
    let mut spec = spec_mut.clone();
    if let VideoSource::TestPattern { clock_overlay, .. } = &mut spec.video
        && *clock_overlay
        && gst::ElementFactory::find("clockoverlay").is_none()
    {
        warn!(input = %spec.name, "clockoverlay (GStreamer pango plugin) is missing; test pattern without clock");
        *clock_overlay = false;
    }
    let spec = &mut spec;
    for element in describe::required_elements(spec, board) {
        if gst::ElementFactory::find(&element).is_none() {
            let hint = if element == board.video_encoder.element {
                format!(
                    " (board {}'s encoder; is the encoder device present?)",
                    board.board.name
                )
            } else {
                String::new()
            };
            return failed(format!(
                "GStreamer element '{element}' is not available{hint}"
            ));
        }
    }
    // HDMI/SDI receivers and cameras that report their signal: checked
    // first, then watched while the pipeline runs.
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
    let mut _watch: Option<SignalWatch> = None;
    // The timings the receiver was set to: a report of the same timings
    // (a receiver re-reading its input) is not a change.
    let mut locked_timings: Option<String> = None;
    if let VideoSource::V4l2 { device, input } = &spec.video {
        let d = device.clone();
        let input = *input;
        let tx = sig_tx.clone();
        // Opening the device and its ioctls block: off the runtime.
        let prepared = tokio::task::spawn_blocking(move || {
            let prepared = prepare_v4l2(&d, input)?;
            let watch = SignalWatch::start(&d, Duration::from_secs(1), move |e| {
                let _ = tx.send(e);
            });
            Ok::<_, Unprepared>((prepared, watch))
        })
        .await;
        match prepared {
            Ok(Err(Unprepared::NoSignal(reason))) => return Outcome::NoSignal { reason },
            Ok(Err(Unprepared::Failed(reason))) => return failed(reason),
            Ok(Ok((timings, watch))) => {
                if let Some(t) = &timings {
                    info!(input = %spec.name, timings = %t, "DV timings set");
                }
                locked_timings = timings;
                match watch {
                    Ok(w) => {
                        // Lost between the check and the watch's start.
                        if let SignalState::Lost { reason } = w.state() {
                            return Outcome::NoSignal {
                                reason: reason.describe().to_string(),
                            };
                        }
                        _watch = Some(w);
                    }
                    Err(e) => warn!(input = %spec.name, error = %e, "signal watch not started"),
                }
            }
            Err(e) => warn!(input = %spec.name, error = %e, "preparing the V4L2 source"),
        }
    }
    drop(sig_tx);
    let description = describe::pipeline(spec, board);
    // Building loads plugins and may probe devices (DeckLink): off the
    // runtime's workers.
    let d = description.clone();
    let built = tokio::task::spawn_blocking(move || gst::parse::launch(&d))
        .await
        .unwrap_or_else(|e| {
            Err(gst::glib::Error::new(
                gst::CoreError::Failed,
                &e.to_string(),
            ))
        });
    let pipeline = match built {
        Ok(p) => match p.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(_) => return failed("capture description is not a pipeline".into()),
        },
        Err(e) => return failed(format!("building the capture pipeline: {e}")),
    };
    // One clock for capture and every output: the system clock, with a base
    // time chosen here, so encoder timestamps are running times that every
    // output pipeline can use unchanged (and audio and video share it).
    let clock = gst::SystemClock::obtain();
    pipeline.use_clock(Some(&clock));
    pipeline.set_start_time(gst::ClockTime::NONE);
    let base_time = clock.time();
    pipeline.set_base_time(base_time);
    let published = Arc::new(AtomicU64::new(0));
    let mut sinks = vec![("video", Track::Video)];
    if spec.has_audio() {
        sinks.push(("audio", Track::Audio));
    }
    for (name, track) in sinks {
        let source = Source::Capture(feeds.gate.clone(), published.clone());
        if let Err(e) = connect_sink(&pipeline, name, track, stream, epoch, base_time, source) {
            return failed(e);
        }
    }
    install_keyframe_requester(&pipeline, stream);
    let mut bus = pipeline.bus().expect("a pipeline has a bus").stream();

    let outcome = 'run: {
        if let Err(e) = change_state(&pipeline, gst::State::Playing).await {
            break 'run failed(pending_error(&mut bus).unwrap_or(e));
        }
        info!(input = %spec.name, pipeline = %description, "capture pipeline playing");
        if let Some(a) = audio.as_mut() {
            a.meter.resume(std::time::Instant::now());
        }
        let started = tokio::time::Instant::now();
        // The capture's own frames (the slate's go to the same stream).
        let mut frames = 0;
        let decklink = matches!(spec.video, VideoSource::Decklink { .. })
            .then(|| pipeline.by_name("vsrc"))
            .flatten()
            .filter(|e| e.find_property("signal").is_some());
        let mut no_signal_since: Option<tokio::time::Instant> = None;
        let mut last_frame_at: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut *stop => break 'run Outcome::Stopped,
                Some(InputCommand::Reconfigure { encode, reply }) = cmd.recv() => {
                    let what = changed(&spec.encode, &encode);
                    if apply_live(&pipeline, spec, board, &encode, &what) {
                        info!(input = %spec.name, changed = ?what, "encoder changed live");
                        spec.encode = encode.clone();
                        spec_mut.encode = encode;
                        show_encoding(status, &spec.encode);
                        let _ = reply.send(Applied { how: HowApplied::Live, changed: what, error: None });
                    } else {
                        spec_mut.encode = encode;
                        show_encoding(status, &spec_mut.encode);
                        // Answered once the rebuilt pipeline runs (or
                        // fails): the caller learns whether it worked.
                        *owed = Some((reply, what));
                        break 'run Outcome::Reconfigured;
                    }
                }
                Some(e) = sig_rx.recv() => match e {
                    SignalEvent::Lost { reason } => {
                        break 'run Outcome::NoSignal { reason: reason.describe().to_string() };
                    }
                    // A new format (a source switch shows as lost and then
                    // restored with new timings): rebuilt for it.
                    SignalEvent::Changed { timings } | SignalEvent::Restored { timings } => {
                        // Only a new format (size, scan, rate) is worth a
                        // rebuild; a flicker of the same one, or timings
                        // the receiver could not read, are not.
                        if let Some(label) = timings.map(|t| t.label())
                            && locked_timings.as_ref() != Some(&label)
                        {
                            break 'run Outcome::Renegotiate { timings: label };
                        }
                    }
                },
                msg = bus.next() => {
                    let ran = last_frame_at.is_some();
                    let Some(msg) = msg else { break 'run Outcome::Failed { reason: "bus closed".into(), ran } };
                    match msg.view() {
                        gst::MessageView::Error(e) => break 'run Outcome::Failed { reason: error_reason(e), ran },
                        gst::MessageView::Eos(_) => break 'run Outcome::Failed { reason: "source ended".into(), ran },
                        gst::MessageView::Element(m) => {
                            if let Some(a) = audio.as_mut() {
                                a.message(m, &spec.name, status, events);
                            }
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    if let Some(a) = audio.as_mut() {
                        a.poll(&spec.name, status, events);
                    }
                    let now = tokio::time::Instant::now();
                    // A DeckLink card says whether it sees a signal; its
                    // no-signal frames are dropped, so this is the news.
                    if let Some(src) = &decklink {
                        if src.property::<bool>("signal") {
                            no_signal_since = None;
                        } else if now - *no_signal_since.get_or_insert(now) >= DECKLINK_NO_SIGNAL {
                            break 'run Outcome::NoSignal {
                                reason: "the DeckLink card sees no input signal".into(),
                            };
                        }
                    }
                    // Video only: audio from another device may go on while the
                    // picture is gone.
                    let n = published.load(Ordering::Relaxed);
                    if n > frames {
                        frames = n;
                        if last_frame_at.is_none() {
                            if let Some(s) = feeds.slate.take() {
                                info!(input = %spec.name, "slate off: the source is back");
                                s.stop().await;
                                status.send_modify(|s| s.slate = false);
                            }
                            if let Some((reply, changed)) = owed.take() {
                                let _ = reply.send(Applied { how: HowApplied::Restarted, changed, error: None });
                            }
                            info!(input = %spec.name, "input live");
                            set_state(status, InputState::Running);
                            let _ = events.send(InputEvent::InputLive { input: spec.name.clone() });
                        }
                        last_frame_at = Some(now);
                    }
                    match last_frame_at {
                        Some(t) if now - t > FRAME_TIMEOUT => break 'run Outcome::Failed {
                            reason: format!("no frames for {} s", FRAME_TIMEOUT.as_secs()),
                            ran: true,
                        },
                        None if now - started > FIRST_FRAME_TIMEOUT => break 'run failed(format!(
                            "no frames within {} s of starting", FIRST_FRAME_TIMEOUT.as_secs()
                        )),
                        _ => {}
                    }
                }
            }
        }
    };
    stream.set_keyframe_requester(None);
    if let Some(a) = audio.as_mut() {
        a.stopped();
    }
    if let Err(e) = change_state(&pipeline, gst::State::Null).await {
        warn!(input = %spec.name, error = %e, "capture pipeline did not stop cleanly");
    }
    outcome
}
