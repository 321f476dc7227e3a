//! One buffer per stream: the current GOP and the outputs subscribed to it.
//!
//! The capture thread calls [`Stream::publish`] for every encoded frame. It
//! never blocks: each subscriber has a bounded channel, and a subscriber whose
//! channel is full stops receiving until the next video keyframe (so what it
//! does get is always decodable) and counts what it missed. A slow output
//! therefore costs the encoder and the other outputs nothing.
//!
//! The lock is a `std::sync::Mutex`: it is held for a few pointer moves per
//! frame and never across an `.await`, which is what the async mutex is for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::frame::{EncodedFrame, Track};

/// The GOP kept for a late joiner is bounded in bytes, in case keyframes
/// stop coming or a long GOP at a high bitrate would eat a small board's
/// memory. Past it, the cache is dropped and late joiners wait for the next
/// keyframe instead.
const MAX_GOP_BYTES: usize = 32 * 1024 * 1024;

/// Counters of a stream, for state and telemetry.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StreamStats {
    pub frames: u64,
    /// Video frames only: what tells whether the picture is still coming.
    pub video_frames: u64,
    pub bytes: u64,
    pub keyframes: u64,
    pub subscribers: usize,
    pub gop_frames: usize,
    /// Seconds since the last frame, if any has arrived.
    pub idle_s: Option<f64>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<EncodedFrame>,
    /// Dropping until the next video keyframe.
    resync: bool,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Inner {
    gop: VecDeque<EncodedFrame>,
    gop_bytes: usize,
    epoch: Option<u64>,
    subscribers: Vec<Subscriber>,
    next_id: u64,
    frames: u64,
    video_frames: u64,
    bytes: u64,
    keyframes: u64,
    last_frame: Option<Instant>,
}

/// A named stream fed by one encode.
pub struct Stream {
    name: String,
    tracks: Vec<Track>,
    inner: Mutex<Inner>,
    keyframes: Mutex<KeyframeRequests>,
}

/// Asks the encoder for a keyframe: installed by the capture pipeline
/// feeding the stream, called by outputs that need one now.
pub type KeyframeRequester = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct KeyframeRequests {
    requester: Option<KeyframeRequester>,
    last: Option<Instant>,
}

/// Keyframes cost bitrate: however many viewers arrive at once, the encoder
/// is asked at most this often.
const KEYFRAME_REQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// What an output gets when it joins a stream: the frames of the current GOP
/// (starting at its keyframe) and a channel for everything after them, with no
/// gap or overlap between the two.
pub struct Subscription {
    pub id: u64,
    pub backlog: Vec<EncodedFrame>,
    pub rx: mpsc::Receiver<EncodedFrame>,
    /// Frames this subscriber lost because it fell behind.
    pub dropped: Arc<AtomicU64>,
}

impl Stream {
    /// A stream carrying `tracks` (fixed by the input's configuration, so an
    /// output can build its muxer before the first frame arrives).
    pub fn new(name: impl Into<String>, tracks: &[Track]) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            tracks: tracks.to_vec(),
            inner: Mutex::new(Inner::default()),
            keyframes: Mutex::new(KeyframeRequests::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; carry on
        // with it rather than take the whole media path down.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands one frame to the GOP cache and to every subscriber. Called from
    /// the capture thread; never blocks.
    pub fn publish(&self, frame: EncodedFrame) {
        let mut inner = self.lock();
        inner.frames += 1;
        if frame.track == Track::Video {
            inner.video_frames += 1;
        }
        inner.bytes += frame.size() as u64;
        inner.last_frame = Some(Instant::now());

        if inner.epoch != Some(frame.epoch) {
            // The capture pipeline was rebuilt: old frames belong to another
            // timeline and must not be replayed to a new output.
            inner.epoch = Some(frame.epoch);
            inner.gop.clear();
            inner.gop_bytes = 0;
        }
        if frame.starts_gop() {
            inner.keyframes += 1;
            inner.gop.clear();
            inner.gop_bytes = frame.size();
            inner.gop.push_back(frame.clone());
        } else if !inner.gop.is_empty() {
            if inner.gop_bytes + frame.size() > MAX_GOP_BYTES {
                inner.gop.clear();
                inner.gop_bytes = 0;
            } else {
                inner.gop_bytes += frame.size();
                inner.gop.push_back(frame.clone());
            }
        }

        inner.subscribers.retain_mut(|sub| {
            if sub.resync {
                if !frame.starts_gop() {
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                    return !sub.tx.is_closed();
                }
                sub.resync = false;
            }
            match sub.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.resync = true;
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Joins the stream. `capacity` bounds how far the subscriber may fall
    /// behind before it is resynchronised on a keyframe.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let backlog: Vec<EncodedFrame> = inner.gop.iter().cloned().collect();
        inner.subscribers.push(Subscriber {
            id,
            tx,
            // With no GOP cached yet the subscriber waits for the first
            // keyframe, so its first frame is always a keyframe.
            resync: backlog.is_empty(),
            dropped: dropped.clone(),
        });
        Subscription {
            id,
            backlog,
            rx,
            dropped,
        }
    }

    /// Leaves the stream (dropping the receiver does the same, lazily).
    pub fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.retain(|s| s.id != id);
    }

    /// Installs (or, with `None`, removes) what asks the encoder for a
    /// keyframe.
    pub fn set_keyframe_requester(&self, requester: Option<KeyframeRequester>) {
        let mut k = self.keyframes.lock().unwrap_or_else(|e| e.into_inner());
        k.requester = requester;
    }

    /// Asks the encoder for a keyframe (with its parameter sets), for a
    /// viewer that just arrived and should not wait for the GOP to end.
    /// Rate-limited; returns whether a request went out.
    pub fn request_keyframe(&self) -> bool {
        let mut k = self.keyframes.lock().unwrap_or_else(|e| e.into_inner());
        if k.last
            .is_some_and(|t| t.elapsed() < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        let Some(request) = &k.requester else {
            return false;
        };
        request();
        k.last = Some(Instant::now());
        true
    }

    pub fn stats(&self) -> StreamStats {
        let inner = self.lock();
        StreamStats {
            frames: inner.frames,
            video_frames: inner.video_frames,
            bytes: inner.bytes,
            keyframes: inner.keyframes,
            subscribers: inner.subscribers.len(),
            gop_frames: inner.gop.len(),
            idle_s: inner.last_frame.map(|t| t.elapsed().as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(track: Track, key: bool, epoch: u64) -> EncodedFrame {
        let mut b = gst::Buffer::from_slice(vec![0u8; 100]);
        if !key {
            b.get_mut().unwrap().set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        EncodedFrame::new(
            track,
            b,
            gst::Caps::new_empty_simple("video/x-h264"),
            epoch,
            gst::ClockTime::ZERO,
        )
    }

    #[test]
    fn late_joiner_starts_on_the_cached_keyframe() {
        gst::init().unwrap();
        let s = Stream::new("main", &[Track::Video, Track::Audio]);
        s.publish(frame(Track::Video, false, 0)); // before any keyframe: not cached
        s.publish(frame(Track::Video, true, 0));
        s.publish(frame(Track::Audio, true, 0));
        s.publish(frame(Track::Video, false, 0));
        let sub = s.subscribe(8);
        assert_eq!(sub.backlog.len(), 3);
        assert!(sub.backlog[0].starts_gop());
    }

    #[test]
    fn joiner_without_gop_waits_for_keyframe() {
        gst::init().unwrap();
        let s = Stream::new("main", &[Track::Video, Track::Audio]);
        let mut sub = s.subscribe(8);
        s.publish(frame(Track::Video, false, 0));
        s.publish(frame(Track::Audio, true, 0));
        s.publish(frame(Track::Video, true, 0));
        let first = sub.rx.try_recv().unwrap();
        assert!(first.starts_gop());
        assert!(sub.rx.try_recv().is_err());
    }

    #[test]
    fn slow_subscriber_drops_to_next_keyframe_without_blocking_others() {
        gst::init().unwrap();
        let s = Stream::new("main", &[Track::Video, Track::Audio]);
        s.publish(frame(Track::Video, true, 0));
        let mut slow = s.subscribe(2);
        let mut fast = s.subscribe(64);
        for _ in 0..5 {
            s.publish(frame(Track::Video, false, 0));
        }
        // slow: 2 delivered, 3 dropped; fast: all 5.
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 3);
        let mut n = 0;
        while fast.rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 5);
        // Drain the slow one: the next frames it sees start at a keyframe.
        while slow.rx.try_recv().is_ok() {}
        s.publish(frame(Track::Video, false, 0));
        s.publish(frame(Track::Video, true, 0));
        s.publish(frame(Track::Video, false, 0));
        assert!(slow.rx.try_recv().unwrap().starts_gop());
        assert!(!slow.rx.try_recv().unwrap().starts_gop());
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn keyframe_requests_are_rate_limited() {
        use std::sync::atomic::AtomicUsize;
        let s = Stream::new("main", &[Track::Video]);
        assert!(!s.request_keyframe(), "no encoder yet");
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        s.set_keyframe_requester(Some(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })));
        assert!(s.request_keyframe());
        assert!(!s.request_keyframe());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        s.set_keyframe_requester(None);
        assert!(!s.request_keyframe());
    }

    #[test]
    fn gop_cache_is_bounded_in_bytes() {
        gst::init().unwrap();
        let s = Stream::new("main", &[Track::Video]);
        let big = |key: bool| {
            let mut b = gst::Buffer::with_size(MAX_GOP_BYTES / 3 + 1).unwrap();
            if !key {
                b.get_mut().unwrap().set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            EncodedFrame::new(
                Track::Video,
                b,
                gst::Caps::new_empty_simple("video/x-h264"),
                0,
                gst::ClockTime::ZERO,
            )
        };
        s.publish(big(true));
        s.publish(big(false));
        assert_eq!(s.stats().gop_frames, 2);
        s.publish(big(false));
        // Over the bound: dropped, and nothing cached until the next keyframe.
        assert_eq!(s.stats().gop_frames, 0);
        s.publish(big(false));
        assert_eq!(s.stats().gop_frames, 0);
        s.publish(big(true));
        assert_eq!(s.stats().gop_frames, 1);
        assert_eq!(s.stats().video_frames, 5);
    }

    #[test]
    fn new_epoch_forgets_the_old_gop_and_closed_subscribers_go() {
        gst::init().unwrap();
        let s = Stream::new("main", &[Track::Video, Track::Audio]);
        s.publish(frame(Track::Video, true, 0));
        s.publish(frame(Track::Video, false, 0));
        s.publish(frame(Track::Video, false, 1));
        assert_eq!(s.subscribe(4).backlog.len(), 0);
        let sub = s.subscribe(4);
        drop(sub);
        s.publish(frame(Track::Video, true, 1));
        // The two dropped subscriptions above are gone after a publish.
        assert_eq!(s.stats().subscribers, 0);
    }
}
