//! Runs one input's capture pipeline: builds it, feeds its encoded frames
//! into the stream, watches it, and rebuilds it with backoff when it fails.
//! A missing or busy device, or caps that cannot be negotiated, put the input
//! in an error state with the device and the reason; they never take the
//! daemon down.

use std::sync::Arc;
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

use crate::board::BoardProfile;
use crate::describe;
use crate::settings::{EncodeSettings, InputSpec, VideoSource};

/// With frames flowing, this long without one is a lost input.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A source may take this long to deliver its first frame (DeckLink and
/// some UVC cameras are slow to lock).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// The board's encoder cannot be used here (missing element or
    /// property): the input encodes in software instead.
    EncoderFallback {
        input: String,
        wanted: String,
        using: String,
        reason: String,
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
    task: JoinHandle<()>,
}

impl InputHandle {
    pub fn status(&self) -> InputStatus {
        self.status.borrow().clone()
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
        VideoSource::V4l2 { device } => format!("v4l2 {device}"),
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
    };
    let (status_tx, status_rx) = watch::channel(status);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let task = tokio::spawn(run(spec, board, stream, status_tx, events, stop_rx, cmd_rx));
    InputHandle {
        stop: Some(stop_tx),
        cmd: cmd_tx,
        status: status_rx,
        task,
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

async fn run(
    spec: InputSpec,
    board: BoardProfile,
    stream: Arc<Stream>,
    status: watch::Sender<InputStatus>,
    events: mpsc::UnboundedSender<InputEvent>,
    mut stop: oneshot::Receiver<()>,
    mut cmd: mpsc::Receiver<InputCommand>,
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
    loop {
        epoch += 1;
        attempt += 1;
        set_state(&status, InputState::Starting);
        let outcome = session(
            &mut spec, &board, &stream, &status, &events, epoch, &mut stop, &mut cmd, &mut owed,
        )
        .await;
        let reason = match outcome {
            Outcome::Stopped => {
                set_state(&status, InputState::Stopped);
                return;
            }
            Outcome::Reconfigured => {
                info!(input = %spec.name, "capture pipeline rebuilt with new settings");
                attempt = 0;
                continue;
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
        let delay = backoff.delay_random(attempt);
        let reason = format!("{}: {reason}", source_label(&spec));
        warn!(input = %spec.name, %reason, retry_in = ?delay, "input failed");
        // The state first, then the event: whoever hears of the loss must
        // find the state that says so.
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
        let _ = events.send(InputEvent::InputLost {
            input: spec.name.clone(),
            reason,
        });
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => break,
                _ = &mut stop => {
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
}

fn connect_sink(
    pipeline: &gst::Pipeline,
    name: &str,
    track: Track,
    stream: &Arc<Stream>,
    epoch: u64,
    base_time: gst::ClockTime,
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
                stream.publish(EncodedFrame::new(track, buffer, caps, epoch, base_time));
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
    stop: &mut oneshot::Receiver<()>,
    cmd: &mut mpsc::Receiver<InputCommand>,
    owed: &mut Owed,
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
    let mut sinks = vec![("video", Track::Video)];
    if spec.has_audio() {
        sinks.push(("audio", Track::Audio));
    }
    for (name, track) in sinks {
        if let Err(e) = connect_sink(&pipeline, name, track, stream, epoch, base_time) {
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
        let started = tokio::time::Instant::now();
        let mut frames = stream.stats().video_frames;
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
                msg = bus.next() => {
                    let ran = last_frame_at.is_some();
                    let Some(msg) = msg else { break 'run Outcome::Failed { reason: "bus closed".into(), ran } };
                    match msg.view() {
                        gst::MessageView::Error(e) => break 'run Outcome::Failed { reason: error_reason(e), ran },
                        gst::MessageView::Eos(_) => break 'run Outcome::Failed { reason: "source ended".into(), ran },
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let now = tokio::time::Instant::now();
                    // Video only: audio from another device may go on while the
                    // picture is gone.
                    let n = stream.stats().video_frames;
                    if n > frames {
                        frames = n;
                        if last_frame_at.is_none() {
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
    if let Err(e) = change_state(&pipeline, gst::State::Null).await {
        warn!(input = %spec.name, error = %e, "capture pipeline did not stop cleanly");
    }
    outcome
}
