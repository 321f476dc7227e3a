//! A recording output: segmented MPEG-TS on local storage.
//!
//! Each segment has a small pipeline of its own (`appsrc`s → `mpegtsmux` →
//! `appsink`), so every file starts with its own PAT/PMT and a keyframe and
//! plays alone. A segment is cut at the first video keyframe past the
//! configured duration. Bytes are written by this module, not by
//! `filesink`, so that durability is ours: the file is created with
//! `O_EXCL` and its directory entry synced at once, every muxer buffer is
//! one `write` (a killed daemon leaves a file that ends on a packet
//! boundary), and the data is synced at least once a second, so a power
//! cut loses at most the last second of the open segment and never what
//! was closed. MPEG-TS needs no index, so a cut file plays up to the cut.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use gst::prelude::*;
use serde::Serialize;
use tracing::{info, warn};

use super::{Feeder, Interrupt, OutputEvent, SessionEnd, Task, next_command, pipeline};
use crate::frame::{EncodedFrame, Track};
use crate::pipeline_util::change_state;
use crate::pipeline_util::{error_reason, pending_error};
use crate::record::{self, FileInfo, RecordTarget};

/// Fills in a segment's file name: the template with its per-segment
/// variables, the wall-clock time of the segment's start and its number
/// (from 1, per push).
pub type SegmentNamer = Arc<dyn Fn(&str, SystemTime, u64) -> Result<String, String> + Send + Sync>;

/// How often retention looks at the disk besides at each new segment.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// How often written data is forced to the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What a recording reports, in state and telemetry.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RecordStats {
    /// The file being written.
    pub file: Option<String>,
    pub file_bytes: u64,
    /// Segments closed since the push started.
    pub segments: u64,
    /// Bytes written to disk since the push started (the open segment
    /// included).
    pub bytes_written: u64,
    /// Files retention deleted since the push started.
    pub files_deleted: u64,
    /// Free space on the recording's file system.
    pub free_bytes: Option<u64>,
}

/// The file side of one segment, shared with the `appsink` callback (a
/// GStreamer streaming thread) and, at the end, the blocking close. A
/// `std` mutex: only those two take it, never the async side, which reads
/// [`Progress`] instead (a sync can take seconds on an SD card).
struct Writer {
    file: File,
    path: PathBuf,
    bytes: u64,
    last_sync: Instant,
    error: Option<String>,
    progress: Arc<Progress>,
    /// The unit (PES packet) still growing: held back until the next one
    /// starts, so the file only ever ends on a whole frame.
    pending: Vec<u8>,
}

/// What the async side may read of a segment while it is written.
#[derive(Default)]
struct Progress {
    bytes: std::sync::atomic::AtomicU64,
    /// Held for a clone or a store only.
    error: Mutex<Option<String>>,
}

impl Writer {
    fn new(file: File, path: PathBuf, progress: Arc<Progress>) -> Self {
        Writer {
            file,
            path,
            bytes: 0,
            last_sync: Instant::now(),
            error: None,
            progress,
            pending: Vec::with_capacity(256 * 1024),
        }
    }

    /// Takes what the muxer produced and writes the whole units in it.
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.pending.extend_from_slice(data);
        let whole = record::last_unit_start(&self.pending);
        if whole == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(whole);
        let done = std::mem::replace(&mut self.pending, rest);
        self.write(&done)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let r = self.file.write_all(data).and_then(|_| {
            if self.last_sync.elapsed() >= SYNC_EVERY {
                self.last_sync = Instant::now();
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => {
                self.bytes += data.len() as u64;
                self.progress
                    .bytes
                    .store(self.bytes, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // A write cut short (the disk filled up in the middle of
                // it) would leave half a frame at the end: cut the file
                // back to the last whole buffer, which frees the space too.
                let _ = self.file.set_len(self.bytes);
                let free = self.path.parent().and_then(record::free_bytes);
                let reason = record::explain_io("writing", &self.path, &e, free);
                self.error = Some(reason.clone());
                *self.progress.error.lock().expect("progress lock") = Some(reason.clone());
                Err(reason)
            }
        }
    }

    fn close(&mut self) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        // After end-of-stream the last unit is whole.
        let last = std::mem::take(&mut self.pending);
        if !last.is_empty() {
            self.write(&last)?;
        }
        self.file
            .sync_all()
            .map_err(|e| record::explain_io("closing", &self.path, &e, None))
    }
}

/// Creates a segment file that did not exist (a name taken, say two
/// segments in one second with `$datetime`, gets `-1`, `-2`, …), and makes
/// its directory entry durable.
fn create(path: &Path) -> Result<(File, PathBuf), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| {
        record::explain_io("creating the directory", dir, &e, record::free_bytes(dir))
    })?;
    let stem = path.with_extension("");
    for n in 0..100 {
        let candidate = if n == 0 {
            path.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}.ts", stem.display()))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&candidate)
        {
            Ok(f) => {
                // The new name must survive a power cut too.
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
                return Ok((f, candidate));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(record::explain_io(
                    "creating",
                    &candidate,
                    &e,
                    record::free_bytes(dir),
                ));
            }
        }
    }
    Err(format!(
        "creating {}: 100 files of that name exist",
        path.display()
    ))
}

/// One open segment.
struct Segment {
    built: pipeline::Built,
    bus: gst::bus::BusStream,
    writer: Arc<Mutex<Writer>>,
    path: PathBuf,
    progress: Arc<Progress>,
    feeder: Feeder,
    /// Running time of its first video keyframe.
    start_pts: Option<gst::ClockTime>,
    /// End of the last video frame written (its PTS plus duration).
    end_pts: Option<gst::ClockTime>,
    opened: Instant,
}

impl Segment {
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn bytes(&self) -> u64 {
        self.progress
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn error(&self) -> Option<String> {
        self.progress.error.lock().expect("progress lock").clone()
    }

    /// Ends the segment: end-of-stream through the muxer (its last
    /// packets), then the file synced and closed.
    async fn close(mut self) -> (PathBuf, u64, Duration, Result<(), String>) {
        for src in [&self.built.video, &self.built.audio].into_iter().flatten() {
            let _ = src.end_of_stream();
        }
        let eos = async {
            while let Some(msg) = self.bus.next().await {
                if matches!(
                    msg.view(),
                    gst::MessageView::Eos(_) | gst::MessageView::Error(_)
                ) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), eos).await;
        let _ = change_state(&self.built.pipeline, gst::State::Null).await;
        let writer = self.writer.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().expect("writer lock");
            w.close().map(|_| (w.path.clone(), w.bytes))
        })
        .await
        .unwrap_or_else(|e| Err(format!("closing the segment: {e}")));
        // The media's length, not the wall clock (which would include the
        // wait for end-of-stream and the sync).
        let took = match (self.start_pts, self.end_pts) {
            (Some(a), Some(b)) if b > a => Duration::from_nanos((b - a).nseconds()),
            _ => self.opened.elapsed(),
        };
        let (path, bytes, result) = match closed {
            Ok((path, bytes)) => (path, bytes, Ok(())),
            Err(e) => (self.path(), self.bytes(), Err(e)),
        };
        if bytes == 0 {
            // Nothing went in (the disk was full from the start, say): no
            // empty files left behind by retries.
            let _ = std::fs::remove_file(&path);
        }
        (path, bytes, took, result)
    }
}

/// Builds `appsrc`s → `mpegtsmux` → `appsink` writing into `writer`.
fn build_segment(
    output: &str,
    tracks: &[Track],
    writer: Arc<Mutex<Writer>>,
) -> Result<pipeline::Built, crate::Error> {
    let built = pipeline::build_ts_to_appsink(output, tracks)?;
    let sink = built
        .sink
        .clone()
        .dynamic_cast::<gst_app::AppSink>()
        .expect("the sink is an appsink");
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut w = writer.lock().expect("writer lock");
                match w.push(&map) {
                    Ok(()) => Ok(gst::FlowSuccess::Ok),
                    Err(_) => Err(gst::FlowError::Error),
                }
            })
            .build(),
    );
    Ok(built)
}

/// The files retention manages: `.ts` files under the root.
fn scan(root: &Path) -> Vec<FileInfo> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let path = e.path();
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() && path.extension().is_some_and(|x| x == "ts") {
                out.push(FileInfo {
                    path,
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    size: meta.len(),
                });
            }
        }
    }
    out
}

/// Applies the retention policy (blocking I/O: run off the runtime).
/// Returns the files deleted and the free space after.
fn retain(target: &RecordTarget, keep: Option<&Path>) -> (Vec<PathBuf>, Option<u64>) {
    let free = record::free_bytes(&target.root);
    if target.retention.is_empty() {
        return (Vec::new(), free);
    }
    let files = scan(&target.root);
    let plan = record::plan_deletions(&files, &target.retention, SystemTime::now(), free, keep);
    let mut deleted = Vec::new();
    for p in plan {
        match std::fs::remove_file(&p) {
            Ok(()) => deleted.push(p),
            Err(e) => warn!(file = %p.display(), error = %e, "retention could not delete"),
        }
    }
    (deleted, record::free_bytes(&target.root))
}

struct Recording<'a> {
    target: &'a RecordTarget,
    namer: Option<SegmentNamer>,
    index: u64,
    stats: RecordStats,
    /// Bytes of the segments closed so far.
    closed_bytes: u64,
    last_retention: Instant,
}

impl Recording<'_> {
    fn name(&self, at: SystemTime) -> Result<PathBuf, String> {
        let name = match &self.namer {
            Some(n) => n(&self.target.template, at, self.index)?,
            None => self
                .target
                .template
                .replace("${segment}", &self.index.to_string())
                .replace(
                    "${unix}",
                    &at.duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                        .to_string(),
                ),
        };
        let path = PathBuf::from(&name);
        // A variable must not walk out of the recording's root.
        if !path.is_absolute()
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            || !path.starts_with(&self.target.root)
        {
            return Err(format!(
                "segment name '{name}' is outside {}",
                self.target.root.display()
            ));
        }
        Ok(path)
    }

    async fn retention(&mut self, task: &Task, keep: Option<PathBuf>) {
        let target = self.target.clone();
        let (deleted, free) = tokio::task::spawn_blocking(move || retain(&target, keep.as_deref()))
            .await
            .unwrap_or_default();
        for p in &deleted {
            info!(output = %task.spec.id, file = %p.display(), "retention deleted a recording");
        }
        self.stats.files_deleted += deleted.len() as u64;
        self.stats.free_bytes = free;
        self.last_retention = Instant::now();
    }

    /// Opens the next segment (its file named for now) and feeds it the
    /// keyframe that starts it.
    async fn open(&mut self, task: &Task, first: &EncodedFrame) -> Result<Segment, String> {
        self.index += 1;
        let path = self.name(SystemTime::now())?;
        self.retention(task, None).await;
        let (file, path) = tokio::task::spawn_blocking(move || create(&path))
            .await
            .map_err(|e| format!("creating the segment: {e}"))??;
        let progress = Arc::new(Progress::default());
        let writer = Arc::new(Mutex::new(Writer::new(
            file,
            path.clone(),
            progress.clone(),
        )));
        let built = build_segment(&task.spec.id, task.spec.stream.tracks(), writer.clone())
            .map_err(|e| e.to_string())?;
        let mut bus = built.pipeline.bus().expect("a pipeline has a bus").stream();
        built.pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        built.pipeline.set_start_time(gst::ClockTime::NONE);
        built.pipeline.set_base_time(first.base_time);
        if change_state(&built.pipeline, gst::State::Playing)
            .await
            .is_err()
        {
            let _ = change_state(&built.pipeline, gst::State::Null).await;
            return Err(pending_error(&mut bus)
                .unwrap_or_else(|| "the recording pipeline refused to start".into()));
        }
        info!(output = %task.spec.id, file = %path.display(), "recording segment opened");
        self.stats.file = Some(path.display().to_string());
        self.stats.file_bytes = 0;
        let feeder = Feeder::new(&built, task.spec.max_pipeline_bytes);
        Ok(Segment {
            built,
            bus,
            writer,
            path: path.clone(),
            progress,
            feeder,
            start_pts: None,
            end_pts: None,
            opened: Instant::now(),
        })
    }

    /// Closes a segment and tells whoever listens.
    async fn close(&mut self, task: &mut Task, seg: Segment) -> Result<(), String> {
        let feeder_frames = seg.feeder.frames;
        let feeder_bytes = seg.feeder.bytes;
        let feeder_dropped = seg.feeder.dropped;
        let (path, bytes, took, result) = seg.close().await;
        self.closed_bytes += bytes;
        self.stats.bytes_written = self.closed_bytes;
        self.stats.file = None;
        self.stats.file_bytes = 0;
        task.done_add(feeder_frames, feeder_bytes, feeder_dropped);
        if bytes > 0 {
            self.stats.segments += 1;
            let _ = task.events.send(OutputEvent::RecordingSegment {
                id: task.spec.id.clone(),
                file: path.display().to_string(),
                bytes,
                duration_s: took.as_secs_f64(),
            });
        }
        result
    }
}

/// One recording session: segments one after the other until stopped or
/// failed. Returns like a network session.
pub(super) async fn session(task: &mut Task, target: &RecordTarget) -> SessionEnd {
    let mut rec = Recording {
        target,
        namer: task.spec.namer.clone(),
        index: 0,
        stats: RecordStats::default(),
        closed_bytes: 0,
        last_retention: Instant::now(),
    };
    let mut sub = task.spec.stream.subscribe(task.spec.queue_frames);
    let end = 'session: {
        // The first frame of the backlog is a keyframe (the stream keeps
        // the GOP from one); otherwise wait for the next keyframe.
        let mut pending: std::collections::VecDeque<EncodedFrame> =
            std::mem::take(&mut sub.backlog).into();
        let mut seg: Option<Segment> = None;
        let mut epoch = None;
        let mut base: Option<gst::ClockTime> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let frame = if let Some(f) = pending.pop_front() {
                Some(f)
            } else {
                tokio::select! {
                    biased;
                    i = next_command(&mut task.cmd) => match i {
                        // A recording has no connection to renew.
                        Interrupt::Reconnect(_) => None,
                        Interrupt::Stop(done) => {
                            if let Some(s) = seg.take() {
                                let _ = rec.close(task, s).await;
                            }
                            break 'session SessionEnd::Stopped(done);
                        }
                    },
                    msg = async {
                        match seg.as_mut() {
                            Some(s) => s.bus.next().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if let Some(msg) = msg
                            && let gst::MessageView::Error(e) = msg.view()
                        {
                            let reason = seg
                                .as_ref()
                                .and_then(Segment::error)
                                .unwrap_or_else(|| error_reason(e));
                            if let Some(s) = seg.take() {
                                let _ = rec.close(task, s).await;
                            }
                            break 'session SessionEnd::Failed { reason, was_live: rec.stats.segments > 0 };
                        }
                        None
                    }
                    f = sub.rx.recv() => match f {
                        Some(f) => Some(f),
                        None => break 'session SessionEnd::not_started("stream closed"),
                    },
                    _ = tick.tick() => {
                        if let Some(s) = seg.as_ref() {
                            if let Some(reason) = s.error() {
                                let s = seg.take().expect("present");
                                let _ = rec.close(task, s).await;
                                break 'session SessionEnd::Failed { reason, was_live: true };
                            }
                            rec.stats.file_bytes = s.bytes();
                            rec.stats.bytes_written = rec.closed_bytes + rec.stats.file_bytes;
                            if s.bytes() > 0 {
                                task.go_live();
                            }
                        }
                        if rec.last_retention.elapsed() >= RETENTION_EVERY {
                            let keep = seg.as_ref().map(Segment::path);
                            rec.retention(task, keep).await;
                        }
                        let stats = rec.stats.clone();
                        let now = seg.as_ref().map(|s| (s.feeder.frames, s.feeder.bytes, s.feeder.dropped));
                        task.report(now, &sub, |st| st.recording = Some(stats));
                        None
                    }
                }
            };
            let Some(frame) = frame else { continue };
            if base.is_some_and(|b| frame.base_time < b) {
                continue; // a late frame of an older capture pipeline
            }
            base = Some(frame.base_time);
            if *epoch.get_or_insert(frame.epoch) != frame.epoch {
                // The capture pipeline was rebuilt (new settings, or after
                // a failure): a new segment starts at its first keyframe,
                // on its timeline.
                epoch = Some(frame.epoch);
                if let Some(s) = seg.take()
                    && let Err(reason) = rec.close(task, s).await
                {
                    break 'session SessionEnd::Failed {
                        reason,
                        was_live: true,
                    };
                }
            }
            let cut = match (&seg, frame.track) {
                (None, _) => frame.starts_gop(),
                (Some(s), Track::Video) if frame.keyframe => {
                    match (s.start_pts, frame.buffer.pts()) {
                        (Some(start), Some(pts)) => {
                            pts.saturating_sub(start)
                                >= gst::ClockTime::from_nseconds(target.segment.as_nanos() as u64)
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if cut {
                if let Some(s) = seg.take()
                    && let Err(reason) = rec.close(task, s).await
                {
                    break 'session SessionEnd::Failed {
                        reason,
                        was_live: true,
                    };
                }
                match rec.open(task, &frame).await {
                    Ok(s) => seg = Some(s),
                    Err(reason) => {
                        break 'session SessionEnd::Failed {
                            reason,
                            was_live: rec.stats.segments > 0,
                        };
                    }
                }
            }
            let Some(s) = seg.as_mut() else {
                // Before the first keyframe: nothing decodable to write.
                continue;
            };
            if frame.track == Track::Video
                && let Some(pts) = frame.buffer.pts()
            {
                let end = pts + frame.buffer.duration().unwrap_or(gst::ClockTime::ZERO);
                s.end_pts = Some(s.end_pts.map_or(end, |e| e.max(end)));
            }
            if frame.track == Track::Video && s.start_pts.is_none() {
                s.start_pts = frame.buffer.pts();
            }
            if let Err(reason) = s.feeder.push(frame) {
                let reason = s.error().unwrap_or(reason);
                let s = seg.take().expect("present");
                let _ = rec.close(task, s).await;
                break 'session SessionEnd::Failed {
                    reason,
                    was_live: true,
                };
            }
        }
    };
    task.spec.stream.unsubscribe(sub.id);
    task.done.dropped += sub.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let stats = rec.stats.clone();
    task.status.send_modify(|st| {
        st.frames_sent = task.done.frames;
        st.bytes_sent = task.done.bytes;
        st.frames_dropped = task.done.dropped;
        st.recording = Some(stats);
    });
    end
}
