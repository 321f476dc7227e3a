//! What differs between output protocols once a session runs: how the
//! pipeline is built, how its counters say whether the destination is
//! live, how a failure is worded and how the end is drained. The session
//! loop in `mod.rs` is the same for all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::liveness::{Liveness, LivenessConfig, Verdict};
use super::pipeline::{self, Built};
use super::{OutputStatus, Target};
use crate::error::Error;
use crate::rtmp::{RtmpLiveness, RtmpLivenessConfig, RtmpStats, RtmpTarget};
use crate::srt::{SrtMode, SrtStats, SrtTarget};
use crate::stream::Stream;

/// Builds the output pipeline of a target.
pub fn build(output: &str, target: &Target, stream: &Arc<Stream>) -> Result<Built, Error> {
    match target {
        Target::Srt(t) => {
            // A caller of a listener should see a picture at once, not at
            // the end of the GOP: ask the encoder for a keyframe (the
            // feeder holds back until it comes).
            let weak = Arc::downgrade(stream);
            let on_caller = move || {
                if let Some(stream) = weak.upgrade() {
                    stream.request_keyframe();
                }
            };
            pipeline::build_srt(output, t, stream.tracks(), on_caller)
        }
        Target::Rtmp(t) => pipeline::build_rtmp(output, t, stream.tracks()),
        Target::Record(_) | Target::Whip(_) => Err(Error::Pipeline {
            output: output.into(),
            reason: "runs its own session".into(),
        }),
    }
}

/// The running side of one session: the protocol's liveness and counters.
pub enum Link<'a> {
    Srt {
        target: &'a SrtTarget,
        liveness: Liveness,
    },
    Rtmp {
        target: &'a RtmpTarget,
        liveness: RtmpLiveness,
    },
}

impl<'a> Link<'a> {
    pub fn new(target: &'a Target, srt: &LivenessConfig, now: Instant) -> Self {
        match target {
            Target::Srt(target) => Link::Srt {
                target,
                liveness: Liveness::new(srt.clone(), now),
            },
            Target::Rtmp(target) => Link::Rtmp {
                target,
                liveness: RtmpLiveness::new(RtmpLivenessConfig::default(), now),
            },
            Target::Record(_) | Target::Whip(_) => {
                unreachable!("recordings and WHIP run their own sessions")
            }
        }
    }

    /// Whether the peer has acknowledged anything on this connection.
    pub fn acked(&self) -> bool {
        match self {
            Link::Srt { liveness, .. } => liveness.acked(),
            Link::Rtmp { liveness, .. } => liveness.acked(),
        }
    }

    /// A pipeline error as an operator can act on it; never quotes a secret.
    pub fn explain(&self, raw: &str, since_start: Duration, acked: bool) -> String {
        match self {
            Link::Srt { target, .. } => {
                crate::srt::explain_failure(raw, target, since_start, acked)
            }
            Link::Rtmp { target, .. } => crate::rtmp::explain_failure(raw, target),
        }
    }

    /// Reads the sink's counters into `status` and decides the state.
    /// `queued` is what waits in front of the sink, in bytes.
    pub fn observe(
        &mut self,
        built: &Built,
        now: Instant,
        queued: u64,
        status: &mut OutputStatus,
    ) -> Verdict {
        let stats = built.sink.property::<Option<gst::Structure>>("stats");
        match self {
            Link::Srt { target, liveness } => {
                let s = stats
                    .map(|s| SrtStats::from_structure(&s))
                    .unwrap_or_default();
                let listener = target.mode == SrtMode::Listener;
                let v = liveness.observe(now, s.acks_received, s.packets_sent, s.peers, listener);
                status.srt = Some(s);
                v
            }
            Link::Rtmp { liveness, .. } => {
                let mut s = stats
                    .map(|s| RtmpStats::from_structure(&s))
                    .unwrap_or_default();
                let v = liveness.observe(now, &mut s, queued);
                status.rtmp = Some(s);
                v
            }
        }
    }

    /// After end-of-stream went through: wait (bounded) until what the
    /// muxer flushed has left. libsrt paces what it sends and drops what is
    /// still queued when the socket closes (live mode lingers 0 s), so wait
    /// until its sent count stops moving. `rtmp2sink` writes synchronously
    /// and sends its stop commands on EOS: nothing to wait for.
    pub async fn drain(&self, built: &Built) {
        if !matches!(self, Link::Srt { .. }) {
            return;
        }
        let sent = || {
            built
                .sink
                .property::<Option<gst::Structure>>("stats")
                .map(|s| SrtStats::from_structure(&s).packets_sent)
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = sent();
        let mut steady = 0;
        while steady < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = sent();
            steady = if now == last { steady + 1 } else { 0 };
            last = now;
        }
    }
}
