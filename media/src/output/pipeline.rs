//! The small pipeline an output owns: `appsrc`s → muxer → protocol sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gst::prelude::*;

use crate::error::Error;
use crate::frame::Track;
use crate::srt::{SrtMode, SrtTarget};

pub struct Built {
    pub pipeline: gst::Pipeline,
    /// Callers connected to a listener, kept by srtsink's `caller-added` and
    /// `caller-removed` signals; `None` for callers and rendezvous.
    pub listener_peers: Option<Arc<AtomicUsize>>,
    pub video: Option<gst_app::AppSrc>,
    pub audio: Option<gst_app::AppSrc>,
    pub sink: gst::Element,
}

fn make(output: &str, factory: &str, name: &str) -> Result<gst::Element, Error> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| {
            if gst::ElementFactory::find(factory).is_none() {
                Error::MissingElement {
                    element: factory.into(),
                }
            } else {
                Error::Pipeline {
                    output: output.into(),
                    reason: format!("could not create {factory}"),
                }
            }
        })
}

fn appsrc(name: &str) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .format(gst::Format::Time)
        .is_live(true)
        // Timestamps are the encoder's, valid on the shared clock.
        .do_timestamp(false)
        // Never block the feeding task; the feeder watches the level itself
        // and drops to the next keyframe when the sink backs up.
        .block(false)
        .max_bytes(0)
        .stream_type(gst_app::AppStreamType::Stream)
        .build()
}

/// `appsrc(video) ! mpegtsmux ! srtsink` (+ `appsrc(audio) ! mux`).
/// `on_caller` runs (on libsrt's thread) when a caller connects to a
/// listener.
pub fn build_srt(
    output: &str,
    target: &SrtTarget,
    tracks: &[Track],
    on_caller: impl Fn() + Send + Sync + 'static,
) -> Result<Built, Error> {
    let pipeline = gst::Pipeline::with_name(&format!("output-{output}"));
    let mux = make(output, "mpegtsmux", "mux")?;
    // Seven 188-byte TS packets per buffer: exactly one SRT payload
    // (1316 bytes, the SRT live-mode payload size).
    mux.set_property("alignment", 7i32);
    let sink = make(output, "srtsink", "sink")?;
    sink.set_property("uri", target.sink_uri());
    sink.set_property_from_str("mode", target.mode.gst_nick());
    let mut listener_peers = None;
    match target.mode {
        SrtMode::Listener => {
            // srtsink binds a listener to `localaddress`/`localport`, not to
            // the URI's address (with a host in the URI it binds port 0).
            let bind = if target.host.is_empty() {
                "0.0.0.0"
            } else {
                target.host.as_str()
            };
            sink.set_property("localaddress", bind);
            sink.set_property("localport", u32::from(target.port));
            let peers = Arc::new(AtomicUsize::new(0));
            let p = peers.clone();
            sink.connect("caller-added", false, move |_| {
                p.fetch_add(1, Ordering::SeqCst);
                on_caller();
                None
            });
            let p = peers.clone();
            sink.connect("caller-removed", false, move |_| {
                let _ = p.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                None
            });
            listener_peers = Some(peers);
        }
        SrtMode::Rendezvous => {
            // Both ends of a rendezvous use the same port (libsrt's
            // convention, and what its tools do), from the adapter's address
            // if given.
            let bind = target
                .adapter
                .map_or_else(|| "0.0.0.0".to_string(), |a| a.to_string());
            sink.set_property("localaddress", bind);
            sink.set_property("localport", u32::from(target.port));
        }
        SrtMode::Caller => {
            if let Some(a) = target.adapter {
                sink.set_property("localaddress", a.to_string());
                // Any free port: a caller's source port does not matter.
                sink.set_property("localport", 0u32);
            }
        }
    }
    // Reconnects are ours (bounded backoff with jitter, resuming on a
    // keyframe); GStreamer's own loop would hide failures from liveness.
    sink.set_property("auto-reconnect", false);
    // A listener with no caller drops data instead of stalling the pipeline.
    sink.set_property("wait-for-connection", false);
    // The encoder paces the stream already; waiting on the clock again here
    // would only add latency when a GOP backlog is sent to a new output.
    sink.set_property("sync", false);
    sink.set_property("async", false);
    if let Some(l) = target.latency_ms {
        sink.set_property("latency", i32::try_from(l).unwrap_or(i32::MAX));
    }
    if let Some(id) = &target.streamid {
        sink.set_property("streamid", id);
    }
    if let Some(p) = target.passphrase() {
        sink.set_property("passphrase", p);
        sink.set_property_from_str("pbkeylen", &target.pbkeylen.unwrap_or(16).to_string());
    }
    pipeline
        .add_many([&mux, &sink])
        .and_then(|_| mux.link(&sink))
        .map_err(|e| Error::Pipeline {
            output: output.into(),
            reason: e.to_string(),
        })?;

    let mut video = None;
    let mut audio = None;
    for track in tracks {
        let name = match track {
            Track::Video => "video",
            Track::Audio => "audio",
        };
        let src = appsrc(name);
        pipeline.add(&src).map_err(|e| Error::Pipeline {
            output: output.into(),
            reason: e.to_string(),
        })?;
        // Request the muxer pad by hand: the caps are not known until the
        // first frame, so link-time pad matching cannot pick it.
        let pad = mux
            .request_pad_simple("sink_%d")
            .ok_or_else(|| Error::Pipeline {
                output: output.into(),
                reason: "mpegtsmux gave no sink pad".into(),
            })?;
        src.static_pad("src")
            .expect("appsrc has a src pad")
            .link(&pad)
            .map_err(|e| Error::Pipeline {
                output: output.into(),
                reason: format!("linking {name}: {e:?}"),
            })?;
        match track {
            Track::Video => video = Some(src),
            Track::Audio => audio = Some(src),
        }
    }
    Ok(Built {
        pipeline,
        listener_peers,
        video,
        audio,
        sink,
    })
}
