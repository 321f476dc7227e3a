//! What differs between output protocols once a session runs: how the
//! pipeline is built, how its counters say whether the destination is
//! live, how a failure is worded and how the end is drained. The session
//! loop in `mod.rs` is the same for all of them.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::liveness::{Liveness, LivenessConfig, Verdict};
use super::pipeline::{self, Built};
use super::{OutputStatus, Target};
use crate::error::Error;
use crate::rtmp::{RtmpLiveness, RtmpLivenessConfig, RtmpStats, RtmpTarget};
use crate::srt::{SrtMode, SrtTarget};
use crate::srt_sock::{SrtSender, SrtSenderConfig};
use crate::stream::Stream;

/// An SRT connection made before the pipeline exists: libsrt's socket(s),
/// and what the pipeline's appsink reports back.
#[derive(Clone)]
pub struct SrtConn {
    pub sender: Arc<SrtSender>,
    pub failure: Arc<Mutex<Option<String>>>,
    pub congested: Arc<AtomicBool>,
}

/// Connects an SRT target (a caller waits up to libsrt's connect timeout;
/// a listener returns once bound). Blocking: run off the runtime.
pub fn connect_srt(target: &SrtTarget, stream: &Arc<Stream>) -> Result<SrtConn, String> {
    let cfg = SrtSenderConfig::from_target(target).map_err(|e| e.to_string())?;
    // A caller of a listener should see a picture at once, not at the end
    // of the GOP: ask the encoder for a keyframe (the feeder holds back
    // until it comes).
    let weak = Arc::downgrade(stream);
    let on_caller = move |peer: std::net::SocketAddr| {
        tracing::info!(%peer, "SRT caller connected");
        if let Some(stream) = weak.upgrade() {
            stream.request_keyframe();
        }
    };
    let sender = SrtSender::start(cfg, on_caller).map_err(|e| e.to_string())?;
    Ok(SrtConn {
        sender: Arc::new(sender),
        failure: Arc::new(Mutex::new(None)),
        congested: Arc::new(AtomicBool::new(false)),
    })
}

/// Builds the output pipeline of a target.
pub fn build(
    output: &str,
    target: &Target,
    stream: &Arc<Stream>,
    srt: Option<&SrtConn>,
) -> Result<Built, Error> {
    match (target, srt) {
        (Target::Srt(_), Some(c)) => pipeline::build_srt(
            output,
            c.sender.clone(),
            c.failure.clone(),
            c.congested.clone(),
            stream.tracks(),
        ),
        (Target::Rtmp(t), _) => pipeline::build_rtmp(output, t, stream.tracks()),
        _ => Err(Error::Pipeline {
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
        conn: SrtConn,
    },
    Rtmp {
        target: &'a RtmpTarget,
        liveness: RtmpLiveness,
    },
}

impl<'a> Link<'a> {
    pub fn new(
        target: &'a Target,
        srt: &LivenessConfig,
        conn: Option<SrtConn>,
        now: Instant,
    ) -> Self {
        match (target, conn) {
            (Target::Srt(target), Some(conn)) => Link::Srt {
                target,
                liveness: Liveness::new(srt.clone(), now),
                conn,
            },
            (Target::Rtmp(target), _) => Link::Rtmp {
                target,
                liveness: RtmpLiveness::new(RtmpLivenessConfig::default(), now),
            },
            _ => unreachable!("SRT has its connection; recordings and WHIP run their own sessions"),
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
            // libsrt's own error, kept by the appsink, says what happened.
            Link::Srt { conn, .. } => {
                let _ = (since_start, acked);
                conn.failure
                    .lock()
                    .expect("failure lock")
                    .clone()
                    .unwrap_or_else(|| raw.to_string())
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
        match self {
            Link::Srt {
                target,
                liveness,
                conn,
            } => {
                let s = conn.sender.stats();
                let listener = target.mode == SrtMode::Listener;
                let v = liveness.observe(now, s.acks_received, s.packets_sent, s.peers, listener);
                status.srt = Some(s);
                v
            }
            Link::Rtmp { liveness, .. } => {
                let stats = built.sink.property::<Option<gst::Structure>>("stats");
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
    /// muxer flushed has been delivered. libsrt drops what is still queued
    /// when the socket closes, so wait until the receiver has acknowledged
    /// it and had its latency to play it out. `rtmp2sink` writes
    /// synchronously and sends its stop commands on EOS: nothing to wait
    /// for.
    pub async fn drain(&self, _built: &Built) {
        if let Link::Srt { conn, .. } = self {
            let sender = conn.sender.clone();
            let _ = tokio::task::spawn_blocking(move || sender.flush(Duration::from_secs(3))).await;
        }
    }
}
