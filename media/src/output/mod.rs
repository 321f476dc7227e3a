//! Outputs: each one a task that owns a small GStreamer pipeline of its own.
//!
//! The task subscribes to its stream, feeds the frames into its `appsrc`s and
//! decides, from what the protocol reports back, whether the destination is
//! live. When the pipeline fails it is torn down and rebuilt after a bounded,
//! jittered backoff; the encoder and the other outputs never notice. The
//! decisions (what state an output is in, when it counts as stalled) are made
//! by [`liveness::Liveness`], which is pure and tested without sockets.
//!
//! The caller holds an [`OutputHandle`]: a bounded command channel in and a
//! `watch` of the latest status out. Stopping cancels the task and waits for
//! its pipeline to reach NULL.

pub mod group;
mod link;
pub mod liveness;
mod pipeline;
pub mod recorder;
mod whip;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::frame::{EncodedFrame, Track};
use crate::pipeline_util::{change_state, error_reason, pending_error};
use crate::record::RecordTarget;
use crate::rtmp::{RtmpStats, RtmpTarget};
use crate::srt::SrtTarget;
use crate::srt_sock::SrtSocketStats;
use crate::stream::Stream;
use crate::unix_now;
use crate::whip::{WhipStats, WhipTarget};
pub use group::{DestinationStatus, Redundancy};
use link::Link;
use liveness::{LivenessConfig, Verdict};
pub use pipeline::Built;
pub use recorder::{RecordStats, SegmentNamer};

/// Where an output sends its stream.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum Target {
    Srt(SrtTarget),
    Rtmp(RtmpTarget),
    /// Segmented MPEG-TS files on local storage.
    Record(RecordTarget),
    /// WebRTC to a WHIP endpoint.
    Whip(WhipTarget),
}

impl Target {
    /// Parses a target URL. Error messages never quote the query string,
    /// where secrets live.
    pub fn parse(text: &str) -> Result<Self, crate::Error> {
        if RecordTarget::is_recording(text) {
            return Ok(Target::Record(RecordTarget::try_from(text)?));
        }
        let scheme = text.split("://").next().unwrap_or("");
        match scheme {
            "srt" => Ok(Target::Srt(SrtTarget::try_from(text)?)),
            "rtmp" | "rtmps" => Ok(Target::Rtmp(RtmpTarget::try_from(text)?)),
            "http" | "https" | "whip+http" | "whip+https" => {
                Ok(Target::Whip(WhipTarget::try_from(text)?))
            }
            _ if !text.contains("://") => Err(crate::Error::Target(
                "is neither a URL nor an absolute path (expected srt://host:port?…, rtmp://host/app/key or /path/$datetime.ts)".into(),
            )),
            other => Err(crate::Error::Target(format!(
                "protocol '{other}' is not supported (supported: srt, rtmp, rtmps, https (WHIP), file)"
            ))),
        }
    }

    /// The target as it may be shown in state, events and logs.
    pub fn redacted(&self) -> String {
        match self {
            Target::Srt(t) => t.redacted(),
            Target::Rtmp(t) => t.redacted(),
            Target::Record(t) => t.redacted(),
            Target::Whip(t) => t.redacted(),
        }
    }

    /// `text` with anything of this target's secrets that GStreamer or a
    /// server may have quoted replaced by `***`. SRT secrets never reach
    /// GStreamer and libsrt's messages never quote them.
    pub fn scrub(&self, text: &str) -> String {
        match self {
            Target::Rtmp(t) => t.scrub(text),
            Target::Whip(t) => t.scrub(text),
            Target::Srt(_) | Target::Record(_) => text.to_string(),
        }
    }

    /// Whether the output dials out (and so should dial again when the
    /// network under it changes). A listener waits to be called.
    pub fn dials(&self) -> bool {
        match self {
            Target::Srt(t) => t.mode != crate::srt::SrtMode::Listener,
            Target::Rtmp(_) => true,
            Target::Record(_) => false,
            Target::Whip(_) => true,
        }
    }
}

/// Everything an output task needs; validated before it gets here.
#[derive(Clone)]
pub struct OutputSpec {
    pub id: String,
    pub stream: Arc<Stream>,
    pub target: Target,
    pub backoff: Backoff,
    pub liveness: LivenessConfig,
    /// Frames the output may fall behind before it drops to the next keyframe.
    pub queue_frames: usize,
    /// Bytes queued inside the output's own pipeline (a sink blocked on the
    /// network) before it drops to the next keyframe.
    pub max_pipeline_bytes: u64,
    /// Reconnect after a failure (auto and scheduled pushes). A one-shot
    /// push does not: its first failure ends it in [`OutputState::Failed`].
    pub retry: bool,
    /// Names a recording's segments (fills in the time variables in the
    /// device's time zone); without it only `${segment}` and `${unix}`.
    pub namer: Option<SegmentNamer>,
    /// Backup destinations, in order, and how they are used.
    pub backups: Vec<Target>,
    pub redundancy: Redundancy,
}

impl OutputSpec {
    pub fn new(id: impl Into<String>, stream: Arc<Stream>, target: Target) -> Self {
        Self {
            id: id.into(),
            stream,
            target,
            backoff: Backoff::default(),
            liveness: LivenessConfig::default(),
            queue_frames: 512,
            max_pipeline_bytes: 16 * 1024 * 1024,
            retry: true,
            namer: None,
            backups: Vec::new(),
            redundancy: Redundancy::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OutputState {
    /// Building the pipeline or waiting for the peer's first acknowledgement.
    Connecting,
    /// A listener with no caller connected: healthy, nobody watching.
    Waiting,
    /// The peer acknowledges what we send.
    Live,
    /// Failed; the next attempt is at `retry_at` (unix seconds).
    Backoff {
        retry_at: f64,
        reason: String,
    },
    /// Failed and not retried (a one-shot push); the task has ended.
    Failed {
        reason: String,
    },
    Stopped,
}

impl OutputState {
    /// The state's name, as state and telemetry show it.
    pub fn name(&self) -> &'static str {
        match self {
            OutputState::Connecting => "connecting",
            OutputState::Waiting => "waiting",
            OutputState::Live => "live",
            OutputState::Backoff { .. } => "backoff",
            OutputState::Failed { .. } => "failed",
            OutputState::Stopped => "stopped",
        }
    }
}

/// The latest status of one output, as state and telemetry report it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputStatus {
    #[serde(flatten)]
    pub state: OutputState,
    /// Unix seconds of the last state change.
    pub since: f64,
    pub attempts: u32,
    pub reconnects: u32,
    pub last_error: Option<String>,
    /// Since the output started, across reconnects: frames and encoded
    /// bytes sent into the output, and frames it skipped to catch up.
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub frames_dropped: u64,
    /// Encoded bitrate going into the output over the last few seconds.
    pub bitrate_kbps: u64,
    pub srt: Option<SrtSocketStats>,
    pub rtmp: Option<RtmpStats>,
    pub recording: Option<RecordStats>,
    pub whip: Option<WhipStats>,
    /// With backup destinations: the one in use (0 is the primary), and
    /// each destination's role and state.
    pub destination: Option<usize>,
    pub destinations: Vec<DestinationStatus>,
}

impl Default for OutputStatus {
    fn default() -> Self {
        Self {
            state: OutputState::Connecting,
            since: unix_now(),
            attempts: 0,
            reconnects: 0,
            last_error: None,
            frames_sent: 0,
            bytes_sent: 0,
            frames_dropped: 0,
            bitrate_kbps: 0,
            srt: None,
            rtmp: None,
            recording: None,
            whip: None,
            destination: None,
            destinations: Vec::new(),
        }
    }
}

/// Something worth telling an operator, in the order it happened.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OutputEvent {
    OutputLive {
        id: String,
    },
    OutputDisconnected {
        id: String,
        reason: String,
        retry_in_s: f64,
    },
    OutputStopped {
        id: String,
    },
    /// A one-shot output failed and will not retry.
    OutputFailed {
        id: String,
        reason: String,
    },
    /// An output with backups moved to another destination.
    OutputFailover {
        id: String,
        from: String,
        to: String,
        reason: String,
    },
    /// One destination of an output with backups failed an attempt.
    DestinationDown {
        id: String,
        destination: usize,
        target: String,
        reason: String,
    },
    /// A recording closed a segment file.
    RecordingSegment {
        id: String,
        file: String,
        bytes: u64,
        duration_s: f64,
    },
}

enum Command {
    Stop(oneshot::Sender<()>),
    /// Drop the connection and dial again at once, without backoff: the
    /// network under it changed (a new route or address after a WAN
    /// switch), and the old socket may be bound to a path that is gone.
    Reconnect(String),
}

/// The caller's side of a running output.
pub struct OutputHandle {
    id: String,
    cmd: mpsc::Sender<Command>,
    status: watch::Receiver<OutputStatus>,
    task: JoinHandle<()>,
}

impl OutputHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn status(&self) -> OutputStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<OutputStatus> {
        self.status.clone()
    }

    /// Asks the output to drop its connection and dial again at once,
    /// without backoff (the network under it changed). Never waits: a full
    /// command queue already holds a stop or a reconnect.
    pub fn reconnect(&self, reason: impl Into<String>) {
        let _ = self.cmd.try_send(Command::Reconnect(reason.into()));
    }

    /// True once the task has ended by itself (a one-shot output failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the output and waits until its pipeline is down.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

/// Starts an output task. `events` receives what operators should hear about.
pub fn spawn(spec: OutputSpec, events: mpsc::UnboundedSender<OutputEvent>) -> OutputHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    let (status_tx, status_rx) = watch::channel(OutputStatus::default());
    let id = spec.id.clone();
    let task = if spec.backups.is_empty() {
        tokio::spawn(run(spec, cmd_rx, status_tx, events))
    } else {
        tokio::spawn(group::run(spec, cmd_rx, status_tx, events))
    };
    OutputHandle {
        id,
        cmd: cmd_tx,
        status: status_rx,
        task,
    }
}

impl SessionEnd {
    /// A failure before anything reached the destination (no backoff
    /// reset: the link was never live).
    fn not_started(reason: impl Into<String>) -> Self {
        SessionEnd::Failed {
            reason: reason.into(),
            was_live: false,
        }
    }
}

/// How one connection attempt ended.
enum SessionEnd {
    /// Stopped by its handle (or the handle was dropped: `None`).
    Stopped(Option<oneshot::Sender<()>>),
    Failed {
        reason: String,
        was_live: bool,
    },
    /// Asked to reconnect at once (the network changed).
    Reconnect(String),
}

struct Task {
    spec: OutputSpec,
    cmd: mpsc::Receiver<Command>,
    status: watch::Sender<OutputStatus>,
    events: mpsc::UnboundedSender<OutputEvent>,
    /// Counters of the sessions before the current one, so the reported
    /// ones only ever grow.
    done: Counters,
    /// ICE servers a WHIP endpoint named in its `Link` headers, used for
    /// the next attempts.
    learned_ice: Vec<String>,
    rate: std::sync::Mutex<RateMeter>,
}

/// A bitrate over a sliding window of (time, cumulative bytes) samples.
/// Measured where the bytes are counted, so a reader polling at its own
/// pace never sees the zero that differencing two unsynchronised
/// one-second ticks can give.
#[derive(Default)]
pub(crate) struct RateMeter {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(3);

    pub(crate) fn kbps(&mut self, now: Instant, bytes: u64) -> u64 {
        self.samples.push_back((now, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now - *t > Self::WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        let (t0, b0) = *self.samples.front().expect("just pushed");
        let dt = (now - t0).as_secs_f64();
        if dt < 0.5 {
            return 0;
        }
        (bytes.saturating_sub(b0) as f64 * 8.0 / 1000.0 / dt).round() as u64
    }
}

#[derive(Clone, Copy, Default)]
struct Counters {
    frames: u64,
    bytes: u64,
    dropped: u64,
}

impl Task {
    fn set_state(&self, state: OutputState) {
        self.status.send_if_modified(|s| {
            if s.state == state {
                return false;
            }
            s.state = state;
            s.since = unix_now();
            true
        });
    }

    fn event(&self, e: OutputEvent) {
        let _ = self.events.send(e);
    }

    /// Live, and the event about it if that is news (the state first:
    /// whoever hears the event finds it).
    fn go_live(&self) {
        let news = !matches!(self.status.borrow().state, OutputState::Live);
        self.set_state(OutputState::Live);
        if news {
            info!(output = %self.spec.id, "output live");
            self.event(OutputEvent::OutputLive {
                id: self.spec.id.clone(),
            });
        }
    }

    /// Adds a finished part's counters (a recording's closed segment).
    fn done_add(&mut self, frames: u64, bytes: u64, dropped: u64) {
        self.done.frames += frames;
        self.done.bytes += bytes;
        self.done.dropped += dropped;
    }

    /// Publishes the counters: the finished parts plus `current` (frames,
    /// bytes, dropped of the part running now) and what the subscription
    /// dropped, and whatever `extra` sets.
    fn report(
        &self,
        current: Option<(u64, u64, u64)>,
        sub: &crate::stream::Subscription,
        extra: impl FnOnce(&mut OutputStatus),
    ) {
        let (f, b, d) = current.unwrap_or_default();
        let dropped = self.done.dropped + d + sub.dropped.load(Ordering::Relaxed);
        let kbps = self
            .rate
            .lock()
            .expect("rate lock")
            .kbps(Instant::now(), self.done.bytes + b);
        self.status.send_modify(|s| {
            s.bitrate_kbps = kbps;
            s.frames_sent = self.done.frames + f;
            s.bytes_sent = self.done.bytes + b;
            s.frames_dropped = dropped;
            extra(s);
        });
    }

    fn stopped(&self, done: Option<oneshot::Sender<()>>) {
        self.set_state(OutputState::Stopped);
        self.event(OutputEvent::OutputStopped {
            id: self.spec.id.clone(),
        });
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// What a command asks of a running session.
enum Interrupt {
    Stop(Option<oneshot::Sender<()>>),
    Reconnect(String),
}

/// Waits for the next command; a dropped handle counts as a stop, so an
/// output can never outlive whoever owns it.
async fn next_command(cmd: &mut mpsc::Receiver<Command>) -> Interrupt {
    match cmd.recv().await {
        Some(Command::Stop(done)) => Interrupt::Stop(Some(done)),
        Some(Command::Reconnect(why)) => Interrupt::Reconnect(why),
        None => Interrupt::Stop(None),
    }
}

impl From<Interrupt> for SessionEnd {
    fn from(i: Interrupt) -> Self {
        match i {
            Interrupt::Stop(done) => SessionEnd::Stopped(done),
            Interrupt::Reconnect(why) => SessionEnd::Reconnect(why),
        }
    }
}

async fn run(
    spec: OutputSpec,
    cmd: mpsc::Receiver<Command>,
    status: watch::Sender<OutputStatus>,
    events: mpsc::UnboundedSender<OutputEvent>,
) {
    let mut task = Task {
        spec,
        cmd,
        status,
        events,
        done: Counters::default(),
        learned_ice: Vec::new(),
        rate: Default::default(),
    };
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        task.status.send_modify(|s| s.attempts += 1);
        task.set_state(OutputState::Connecting);
        let end = match task.spec.target.clone() {
            Target::Record(t) => recorder::session(&mut task, &t).await,
            Target::Whip(t) => whip::session(&mut task, &t).await,
            _ => session(&mut task).await,
        };
        // Every reason, whichever path produced it, is shown: scrubbed.
        let end = match end {
            SessionEnd::Failed { reason, was_live } => SessionEnd::Failed {
                reason: task.spec.target.scrub(&reason),
                was_live,
            },
            other => other,
        };
        match end {
            SessionEnd::Stopped(done) => return task.stopped(done),
            SessionEnd::Reconnect(why) => {
                info!(output = %task.spec.id, reason = %why, "reconnecting at once");
                task.status.send_modify(|s| {
                    s.last_error = Some(why.clone());
                    s.reconnects += 1;
                });
                task.event(OutputEvent::OutputDisconnected {
                    id: task.spec.id.clone(),
                    reason: why,
                    retry_in_s: 0.0,
                });
                attempt = 0;
            }
            SessionEnd::Failed { reason, .. } if !task.spec.retry => {
                warn!(output = %task.spec.id, %reason, "output failed; not retried");
                task.status
                    .send_modify(|s| s.last_error = Some(reason.clone()));
                task.set_state(OutputState::Failed {
                    reason: reason.clone(),
                });
                task.event(OutputEvent::OutputFailed {
                    id: task.spec.id.clone(),
                    reason,
                });
                return;
            }
            SessionEnd::Failed { reason, was_live } => {
                if was_live {
                    // A link that carried video is a new incident, not the
                    // next step of an old one: start the backoff afresh.
                    attempt = 1;
                }
                let delay = task.spec.backoff.delay_random(attempt);
                warn!(output = %task.spec.id, %reason, retry_in = ?delay, "output failed");
                task.status.send_modify(|s| {
                    s.last_error = Some(reason.clone());
                    s.reconnects += 1;
                });
                task.set_state(OutputState::Backoff {
                    retry_at: unix_now() + delay.as_secs_f64(),
                    reason: reason.clone(),
                });
                task.event(OutputEvent::OutputDisconnected {
                    id: task.spec.id.clone(),
                    reason,
                    retry_in_s: delay.as_secs_f64(),
                });
                // A network change during the wait means the next attempt
                // has a new path to try: go at once, from the first step.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    i = next_command(&mut task.cmd) => match i {
                        Interrupt::Stop(done) => return task.stopped(done),
                        Interrupt::Reconnect(why) => {
                            info!(output = %task.spec.id, reason = %why, "retrying at once");
                            attempt = 0;
                        }
                    },
                }
            }
        }
    }
}

/// One connection attempt, from building the pipeline to its end.
async fn session(task: &mut Task) -> SessionEnd {
    let id = task.spec.id.clone();
    // SRT connects before the pipeline exists (libsrt directly): a caller
    // waits for the handshake here, with its precise refusal if any.
    let srt = match &task.spec.target {
        Target::Srt(t) => {
            let (t, stream) = (t.clone(), task.spec.stream.clone());
            let mut connecting =
                tokio::task::spawn_blocking(move || link::connect_srt(&t, &stream));
            let r = tokio::select! {
                r = &mut connecting => r,
                i = next_command(&mut task.cmd) => {
                    // A handshake cannot be cancelled; its socket closes
                    // when the result is dropped.
                    let _ = connecting.await;
                    return i.into();
                }
            };
            match r {
                Ok(Ok(c)) => Some(c),
                Ok(Err(reason)) => {
                    return SessionEnd::Failed {
                        reason,
                        was_live: false,
                    };
                }
                Err(e) => {
                    return SessionEnd::not_started(format!("connecting: {e}"));
                }
            }
        }
        _ => None,
    };
    let built = match link::build(&id, &task.spec.target, &task.spec.stream, srt.as_ref()) {
        Ok(b) => b,
        Err(e) => {
            return SessionEnd::not_started(e.to_string());
        }
    };
    let mut sub = task.spec.stream.subscribe(task.spec.queue_frames);
    let mut bus = built.pipeline.bus().expect("a pipeline has a bus").stream();
    let mut feeder = Feeder::new(&built, task.spec.max_pipeline_bytes);

    // Frames that arrive while the sink connects wait in the subscription.
    let end = 'session: {
        let mut timeline = match start(task, &built, &mut bus, &mut sub, &mut feeder).await {
            Ok(t) => t,
            Err(end) => break 'session end,
        };
        info!(output = %id, target = %task.spec.target.redacted(), "output pipeline playing");

        let playing_since = Instant::now();
        let mut link = Link::new(
            &task.spec.target,
            &task.spec.liveness,
            srt.clone(),
            Instant::now(),
        );
        let mut was_live = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                // Stop first: an operator's stop must not wait behind frames.
                biased;
                i = next_command(&mut task.cmd) => {
                    if matches!(i, Interrupt::Stop(_)) {
                        finish(&built, &mut bus).await;
                        link.drain(&built).await;
                    }
                    break 'session i.into();
                }
                msg = bus.next() => {
                    let Some(msg) = msg else { break 'session SessionEnd::Failed { reason: "pipeline bus closed".into(), was_live } };
                    match msg.view() {
                        gst::MessageView::Error(e) => {
                            let reason = link.explain(&error_reason(e), playing_since.elapsed(), was_live || link.acked());
                            break 'session SessionEnd::Failed { reason, was_live };
                        }
                        gst::MessageView::Eos(_) => {
                            break 'session SessionEnd::Failed { reason: "output pipeline ended".into(), was_live };
                        }
                        gst::MessageView::Warning(w) => {
                            debug!(output = %id, warning = %w.error(), "output warning");
                        }
                        _ => {}
                    }
                }
                frame = sub.rx.recv() => {
                    let Some(frame) = frame else {
                        break 'session SessionEnd::Failed { reason: "stream closed".into(), was_live };
                    };
                    let Some(frame) = timeline.place(frame, &mut feeder) else { continue };
                    if let Err(reason) = feeder.push(frame) {
                        let raw = pending_error(&mut bus).unwrap_or(reason);
                        let reason = link.explain(&raw, playing_since.elapsed(), was_live || link.acked());
                        break 'session SessionEnd::Failed { reason, was_live };
                    }
                }
                _ = tick.tick() => {
                    let mut status = task.status.borrow().clone();
                    let verdict = link.observe(&built, Instant::now(), feeder.queued(), &mut status);
                    let now = task.done.plus(&feeder, &sub);
                    let kbps = task.rate.lock().expect("rate lock").kbps(Instant::now(), now.bytes);
                    task.status.send_modify(|s| {
                        s.srt = status.srt.take();
                        s.rtmp = status.rtmp.take();
                        s.bitrate_kbps = kbps;
                        s.frames_sent = now.frames;
                        s.bytes_sent = now.bytes;
                        s.frames_dropped = now.dropped;
                    });
                    match verdict {
                        Verdict::Live => {
                            let news = !matches!(task.status.borrow().state, OutputState::Live);
                            was_live = true;
                            // The state first: whoever hears the event finds it.
                            task.set_state(OutputState::Live);
                            if news {
                                info!(output = %id, "output live");
                                task.event(OutputEvent::OutputLive { id: id.clone() });
                            }
                        }
                        Verdict::Connecting => task.set_state(OutputState::Connecting),
                        Verdict::Waiting => task.set_state(OutputState::Waiting),
                        Verdict::Failed(reason) => break 'session SessionEnd::Failed { reason, was_live },
                    }
                }
            }
        }
    };

    task.done = task.done.plus(&feeder, &sub);
    task.status.send_modify(|s| {
        s.frames_sent = task.done.frames;
        s.bytes_sent = task.done.bytes;
        s.frames_dropped = task.done.dropped;
    });
    task.spec.stream.unsubscribe(sub.id);
    if let Err(e) = change_state(&built.pipeline, gst::State::Null).await {
        warn!(output = %id, error = %e, "output pipeline did not stop cleanly");
    }
    // The last reference to an SRT listener joins its accept thread when
    // dropped: let that happen off the runtime's workers.
    drop(feeder);
    let _ = tokio::task::spawn_blocking(move || drop((built, srt))).await;
    end
}

/// The timeline an output pipeline runs on: the capture's base time when
/// it started, and how far later frames of a rebuilt capture are moved.
struct Timeline {
    epoch: u64,
    base_time: gst::ClockTime,
    shift: gst::ClockTime,
    /// Where the last frame placed of each track (video, audio) ends.
    last_end: [Option<gst::ClockTime>; 2],
    /// The tracks whose first frame since an epoch change is still to come.
    check: [bool; 2],
}

impl Timeline {
    fn new(epoch: u64, base_time: gst::ClockTime) -> Timeline {
        Timeline {
            epoch,
            base_time,
            shift: gst::ClockTime::ZERO,
            last_end: [None; 2],
            check: [false; 2],
        }
    }

    /// Puts a frame on this timeline, or `None` for a late frame of an
    /// older capture pipeline. A rebuilt capture (new settings, or after a
    /// failure) has a new base time; both run on the system clock, so its
    /// running times are this pipeline's plus the difference of the base
    /// times: the connection stays, and the new encoder's first keyframe
    /// (with its parameter sets, and new caps for a new size) follows on.
    ///
    /// Two pipelines may overlap in time (the slate runs until the
    /// capture's first keyframe, which was captured a little earlier): when
    /// the first frame of a track after the change would start before the
    /// last one of that track ended, the whole timeline moves on to just
    /// after it, so decode times never go back or collide (muxers and
    /// receivers refuse that) and audio and video keep one offset. Only at
    /// a change: a live source's timestamp jitter never moves it.
    fn place(&mut self, frame: EncodedFrame, feeder: &mut Feeder) -> Option<EncodedFrame> {
        if frame.epoch != self.epoch {
            if frame.base_time < self.base_time + self.shift {
                return None;
            }
            self.epoch = frame.epoch;
            self.shift = frame.base_time - self.base_time;
            self.check = [true; 2];
            feeder.resync = true;
            debug!("input restarted; going on at its first keyframe");
        }
        let track = match frame.track {
            crate::Track::Video => 0,
            crate::Track::Audio => 1,
        };
        if std::mem::take(&mut self.check[track])
            && let (Some(dts), Some(end)) = (frame.dts(), self.last_end[track])
            && dts + self.shift < end
        {
            self.shift += end - (dts + self.shift);
        }
        let frame = frame.shifted(self.shift);
        if let Some(dts) = frame.dts() {
            let duration = frame
                .buffer
                .duration()
                .unwrap_or(gst::ClockTime::from_mseconds(1));
            self.last_end[track] = Some(dts + duration);
        }
        Some(frame)
    }
}

/// Starts a session's pipeline on the capture's timeline and feeds it the
/// cached GOP: waits for the first frame (its epoch and base time tell the
/// timeline), sets the clock, goes to PLAYING (waiting out a stop that
/// comes meanwhile: two state changes racing could leave the pipeline
/// PLAYING after NULL), and pushes the backlog.
async fn start(
    task: &mut Task,
    built: &Built,
    bus: &mut gst::bus::BusStream,
    sub: &mut crate::stream::Subscription,
    feeder: &mut Feeder,
) -> Result<Timeline, SessionEnd> {
    let first = match sub.backlog.first() {
        Some(f) => f.clone(),
        None => tokio::select! {
            f = sub.rx.recv() => f.ok_or(SessionEnd::not_started("stream closed"))?,
            i = next_command(&mut task.cmd) => return Err(i.into()),
        },
    };
    built.pipeline.use_clock(Some(&gst::SystemClock::obtain()));
    built.pipeline.set_start_time(gst::ClockTime::NONE);
    built.pipeline.set_base_time(first.base_time);
    let p = built.pipeline.clone();
    let mut starting =
        tokio::task::spawn_blocking(move || p.set_state(gst::State::Playing).map(|_| ()));
    let started = tokio::select! {
        r = &mut starting => r,
        i = next_command(&mut task.cmd) => {
            let _ = starting.await;
            return Err(i.into());
        }
    };
    if !matches!(started, Ok(Ok(()))) {
        let reason =
            pending_error(bus).unwrap_or_else(|| "the output pipeline refused to start".into());
        return Err(SessionEnd::Failed {
            reason,
            was_live: false,
        });
    }
    let mut timeline = Timeline::new(first.epoch, first.base_time);
    let backlog = std::mem::take(&mut sub.backlog);
    let pending = if backlog.is_empty() {
        vec![first]
    } else {
        backlog
    };
    for f in pending {
        if f.epoch != timeline.epoch {
            continue;
        }
        let Some(f) = timeline.place(f, feeder) else {
            continue;
        };
        if let Err(reason) = feeder.push(f) {
            return Err(SessionEnd::not_started(
                pending_error(bus).unwrap_or(reason),
            ));
        }
    }
    Ok(timeline)
}

impl Counters {
    /// These counters plus what the current session did so far.
    fn plus(&self, feeder: &Feeder, sub: &crate::stream::Subscription) -> Counters {
        Counters {
            frames: self.frames + feeder.frames,
            bytes: self.bytes + feeder.bytes,
            dropped: self.dropped + feeder.dropped + sub.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Ends an output gracefully: end-of-stream through the pipeline makes the
/// muxer flush what it holds (with `alignment=7` up to six TS packets, the
/// tail of the last frame), so the receiver's last frame is whole, and
/// makes `rtmp2sink` send its stop commands. Bounded: a sink stuck on a
/// dead peer does not hold up a stop.
async fn finish(built: &Built, bus: &mut gst::bus::BusStream) {
    for src in [&built.video, &built.audio].into_iter().flatten() {
        let _ = src.end_of_stream();
    }
    let eos = async {
        while let Some(msg) = bus.next().await {
            if matches!(
                msg.view(),
                gst::MessageView::Eos(_) | gst::MessageView::Error(_)
            ) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), eos).await;
}

/// Pushes frames into the output's `appsrc`s, dropping to the next keyframe
/// when the pipeline itself backs up.
struct Feeder {
    listener_peers: Option<pipeline::Peers>,
    /// Set by an SRT sink whose send buffer was full: what it could not
    /// take is gone, so go on at the next keyframe.
    congested: Option<Arc<std::sync::atomic::AtomicBool>>,
    video: Option<gst_app::AppSrc>,
    audio: Option<gst_app::AppSrc>,
    max_bytes: u64,
    resync: bool,
    frames: u64,
    /// Encoded bytes handed to the pipeline (before muxing).
    bytes: u64,
    dropped: u64,
}

impl Feeder {
    fn new(built: &Built, max_bytes: u64) -> Self {
        Self {
            listener_peers: built.listener_peers.clone(),
            congested: built.congested.clone(),
            video: built.video.clone(),
            audio: built.audio.clone(),
            max_bytes,
            resync: false,
            frames: 0,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Bytes waiting in the `appsrc`s for the pipeline to take them.
    fn queued(&self) -> u64 {
        self.video.as_ref().map_or(0, |s| s.current_level_bytes())
            + self.audio.as_ref().map_or(0, |s| s.current_level_bytes())
    }

    fn push(&mut self, frame: EncodedFrame) -> Result<(), String> {
        let src = match frame.track {
            Track::Video => self.video.as_ref(),
            Track::Audio => self.audio.as_ref(),
        };
        let Some(src) = src else { return Ok(()) };
        if self.listener_peers.as_ref().is_some_and(|p| p() == 0) {
            // A listener nobody called: hold back, and start the next caller
            // on a keyframe (with its parameter sets) instead of mid-GOP.
            // Frames nobody could receive are not counted as dropped.
            self.resync = true;
            return Ok(());
        }
        let queued = self.queued();
        if queued > self.max_bytes
            || self
                .congested
                .as_ref()
                .is_some_and(|c| c.swap(false, Ordering::SeqCst))
        {
            self.resync = true;
        }
        if self.resync {
            if frame.starts_gop() && queued <= self.max_bytes / 2 {
                self.resync = false;
            } else {
                self.dropped += 1;
                return Ok(());
            }
        }
        // A sample carries the caps with the buffer: appsrc renegotiates by
        // itself when they change (a new resolution), and neither is copied.
        let sample = gst::Sample::builder()
            .buffer(&frame.buffer)
            .caps(&frame.caps)
            .build();
        src.push_sample(&sample)
            .map_err(|e| format!("output pipeline refused data ({e:?})"))?;
        self.frames += 1;
        self.bytes += frame.size() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_a_sliding_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        assert_eq!(m.kbps(t0, 0), 0);
        // 125 kB/s = 1000 kbit/s, sampled unevenly.
        assert_eq!(m.kbps(t0 + Duration::from_millis(1000), 125_000), 1000);
        assert_eq!(m.kbps(t0 + Duration::from_millis(1900), 237_500), 1000);
        assert_eq!(m.kbps(t0 + Duration::from_millis(5000), 625_000), 1000);
        // Stopped sending: falls to zero once the window has passed.
        assert_eq!(m.kbps(t0 + Duration::from_millis(9000), 625_000), 0);
    }
}
