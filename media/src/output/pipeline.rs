//! The small pipeline an output owns: `appsrc`s → muxer → protocol sink.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;

use crate::error::Error;
use crate::frame::Track;
use crate::rtmp::RtmpTarget;

/// How many callers a listener has now.
pub type Peers = Arc<dyn Fn() -> usize + Send + Sync>;

pub struct Built {
    pub pipeline: gst::Pipeline,
    /// Callers connected to an SRT listener; `None` for everything else.
    pub listener_peers: Option<Peers>,
    /// Set when an SRT send buffer was full.
    pub congested: Option<Arc<std::sync::atomic::AtomicBool>>,
    pub video: Option<gst_app::AppSrc>,
    pub audio: Option<gst_app::AppSrc>,
    pub sink: gst::Element,
}

impl Built {
    /// A pipeline with no SRT connection behind its sink.
    fn plain(
        pipeline: gst::Pipeline,
        video: Option<gst_app::AppSrc>,
        audio: Option<gst_app::AppSrc>,
        sink: gst::Element,
    ) -> Self {
        Built {
            pipeline,
            listener_peers: None,
            congested: None,
            video,
            audio,
            sink,
        }
    }
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

/// The `appsink` at the end of a pipeline whose bytes Rust takes (to
/// libsrt, to a file): as fast as the muxer gives them, never on the clock,
/// holding no sample.
fn data_appsink() -> gst_app::AppSink {
    gst_app::AppSink::builder()
        .name("sink")
        .sync(false)
        .async_(false)
        .enable_last_sample(false)
        .max_buffers(0)
        .build()
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

/// `appsrc(video) ! mpegtsmux ! appsink` (+ `appsrc(audio) ! mux`), the
/// appsink handing each 1316-byte chunk (seven TS packets: one SRT live
/// payload) to libsrt through `sender`. A send error is kept in `failure`
/// and stops the pipeline; a full send buffer sets `congested` (the feeder
/// then drops to the next keyframe, so what goes out stays decodable).
pub fn build_srt(
    output: &str,
    sender: Arc<crate::srt_sock::SrtSender>,
    failure: Arc<std::sync::Mutex<Option<String>>>,
    congested: Arc<std::sync::atomic::AtomicBool>,
    tracks: &[Track],
) -> Result<Built, Error> {
    let pipeline = gst::Pipeline::with_name(&format!("output-{output}"));
    let mux = make(output, "mpegtsmux", "mux")?;
    // Seven 188-byte TS packets per buffer: exactly one SRT payload
    // (1316 bytes, the SRT live-mode payload size).
    mux.set_property("alignment", 7i32);
    let appsink = data_appsink();
    let s = sender.clone();
    let congested_flag = congested.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                match s.send(&map) {
                    // Only when nobody took the chunk: dropping to the next
                    // keyframe for one slow caller of a listener would
                    // freeze the healthy ones (libsrt's own too-late drop
                    // handles the slow one).
                    Ok(crate::srt_sock::SendOutcome::BufferFull { missed, peers })
                        if missed >= peers =>
                    {
                        congested.store(true, Ordering::SeqCst);
                        Ok(gst::FlowSuccess::Ok)
                    }
                    Ok(_) => Ok(gst::FlowSuccess::Ok),
                    Err(e) => {
                        *failure.lock().expect("failure lock") = Some(e.to_string());
                        Err(gst::FlowError::Error)
                    }
                }
            })
            .build(),
    );
    let sink: gst::Element = appsink.upcast();
    pipeline
        .add_many([&mux, &sink])
        .and_then(|_| mux.link(&sink))
        .map_err(|e| pipeline_error(output, e))?;
    let (video, audio) = attach_tracks(output, &pipeline, tracks, |track, _| {
        // Request the muxer pad by hand: the caps are not known until the
        // first frame, so link-time pad matching cannot pick it.
        let pad = mux
            .request_pad_simple("sink_%d")
            .ok_or_else(|| Error::Pipeline {
                output: output.into(),
                reason: format!("mpegtsmux gave no sink pad for {track:?}"),
            })?;
        Ok(pad)
    })?;
    let peers: Option<Peers> = sender.is_listener().then(|| {
        let s = sender.clone();
        Arc::new(move || s.callers()) as Peers
    });
    Ok(Built {
        pipeline,
        listener_peers: peers,
        congested: Some(congested_flag),
        video,
        audio,
        sink,
    })
}

/// `appsrc`s → `mpegtsmux` → `appsink`: a recording segment's pipeline.
/// The appsink's callbacks (set by the caller) write what comes out.
pub fn build_ts_to_appsink(output: &str, tracks: &[Track]) -> Result<Built, Error> {
    let pipeline = gst::Pipeline::with_name(&format!("record-{output}"));
    let mux = make(output, "mpegtsmux", "mux")?;
    let sink: gst::Element = data_appsink().upcast();
    pipeline
        .add_many([&mux, &sink])
        .and_then(|_| mux.link(&sink))
        .map_err(|e| pipeline_error(output, e))?;
    let (video, audio) = attach_tracks(output, &pipeline, tracks, |track, _| {
        mux.request_pad_simple("sink_%d").ok_or_else(|| {
            pipeline_error(output, format!("mpegtsmux gave no sink pad for {track:?}"))
        })
    })?;
    Ok(Built::plain(pipeline, video, audio, sink))
}

/// The AAC decoders WHIP's audio can go through, in order of preference:
/// FFmpeg's, then faad (plugins-bad), which a firmware built without FFmpeg
/// has.
pub const AAC_DECODERS: [&str; 2] = ["avdec_aac", "faad"];

/// The first of [`AAC_DECODERS`] that `available` says is installed.
pub fn aac_decoder(available: impl Fn(&str) -> bool) -> Result<&'static str, Error> {
    AAC_DECODERS
        .iter()
        .copied()
        .find(|f| available(f))
        .ok_or_else(|| Error::MissingElement {
            element: AAC_DECODERS.join("' or '"),
        })
}

fn installed(factory: &str) -> bool {
    gst::ElementFactory::find(factory).is_some()
}

/// `appsrc(video) ! h264parse ! rtph264pay ! webrtcbin` and `appsrc(audio)
/// ! aacparse ! avdec_aac (or faad) ! opusenc ! rtpopuspay ! webrtcbin`: H.264 as it
/// left the encoder, and the AAC decoded and encoded again as Opus, the
/// audio codec WebRTC peers are required to have (RFC 7874 §3). Each
/// track is a send-only transceiver; video asks for NACK retransmission.
/// `on_keyframe_request` runs when the peer asks for a keyframe (PLI or
/// FIR, which webrtcbin turns into a force-key-unit event upstream).
pub fn build_whip(
    output: &str,
    stun: Option<&str>,
    turn: &[String],
    tracks: &[Track],
    on_keyframe_request: impl Fn() + Send + Sync + 'static,
) -> Result<(Built, gst::Element), Error> {
    let pipeline = gst::Pipeline::with_name(&format!("output-{output}"));
    let webrtc = make(output, "webrtcbin", "webrtc")?;
    // One transport for everything (RFC 9725 §4.2: WHIP clients use
    // BUNDLE and rtcp-mux).
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    if let Some(s) = stun {
        webrtc.set_property("stun-server", s);
    }
    for t in turn {
        let _: bool = webrtc.emit_by_name("add-turn-server", &[t]);
    }
    pipeline
        .add(&webrtc)
        .map_err(|e| pipeline_error(output, e))?;
    let elements = |names: &[(&str, &str)]| -> Result<Vec<gst::Element>, Error> {
        names
            .iter()
            .map(|(factory, name)| make(output, factory, name))
            .collect()
    };
    let (video, audio) = attach_tracks(output, &pipeline, tracks, |track, pipeline| {
        let (chain, caps) = match track {
            Track::Video => {
                let chain = elements(&[
                    ("h264parse", "video-parse"),
                    ("rtph264pay", "video-pay"),
                    ("capsfilter", "video-rtp"),
                ])?;
                // Parameter sets before every IDR, so a receiver can start
                // at any keyframe (a PLI's answer included).
                chain[1].set_property("config-interval", -1i32);
                chain[1].set_property("pt", 96u32);
                chain[1].set_property_from_str("aggregate-mode", "zero-latency");
                (
                    chain,
                    "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000",
                )
            }
            Track::Audio => {
                let chain = elements(&[
                    ("aacparse", "audio-parse"),
                    (aac_decoder(installed)?, "audio-dec"),
                    ("audioconvert", "audio-convert"),
                    ("audioresample", "audio-resample"),
                    ("opusenc", "audio-enc"),
                    ("rtpopuspay", "audio-pay"),
                    ("capsfilter", "audio-rtp"),
                ])?;
                chain[4].set_property("bitrate", 96_000i32);
                chain[5].set_property("pt", 111u32);
                (
                    chain,
                    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000",
                )
            }
        };
        let caps: gst::Caps = caps.parse().expect("valid caps");
        chain.last().expect("a chain").set_property("caps", &caps);
        pipeline
            .add_many(&chain)
            .and_then(|_| gst::Element::link_many(&chain))
            .map_err(|e| pipeline_error(output, e))?;
        let sink = webrtc
            .request_pad_simple("sink_%u")
            .ok_or_else(|| pipeline_error(output, "webrtcbin gave no sink pad"))?;
        chain
            .last()
            .expect("a chain")
            .static_pad("src")
            .expect("capsfilter has a src pad")
            .link(&sink)
            .map_err(|e| pipeline_error(output, format!("linking to webrtcbin: {e:?}")))?;
        if let Some(t) = sink.property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver") {
            t.set_property(
                "direction",
                gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
            );
            if track == Track::Video {
                t.set_property("do-nack", true);
            }
        }
        Ok(chain[0]
            .static_pad("sink")
            .expect("parsers have a sink pad"))
    })?;
    if let Some(v) = &video {
        let ask = std::sync::Arc::new(on_keyframe_request);
        v.static_pad("src")
            .expect("appsrc has a src pad")
            .add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data
                    && e.structure().is_some_and(|s| s.name() == "GstForceKeyUnit")
                {
                    ask();
                }
                gst::PadProbeReturn::Ok
            });
    }
    Ok((
        Built {
            pipeline,
            listener_peers: None,
            congested: None,
            video,
            audio,
            sink: webrtc.clone(),
        },
        webrtc,
    ))
}

fn pipeline_error(output: &str, reason: impl ToString) -> Error {
    Error::Pipeline {
        output: output.into(),
        reason: reason.to_string(),
    }
}

/// Adds one `appsrc` per track and links it to the pad `sink_for` gives
/// (after adding any elements it needs to the pipeline).
fn attach_tracks(
    output: &str,
    pipeline: &gst::Pipeline,
    tracks: &[Track],
    mut sink_for: impl FnMut(Track, &gst::Pipeline) -> Result<gst::Pad, Error>,
) -> Result<(Option<gst_app::AppSrc>, Option<gst_app::AppSrc>), Error> {
    let mut video = None;
    let mut audio = None;
    for &track in tracks {
        let name = match track {
            Track::Video => "video",
            Track::Audio => "audio",
        };
        let src = appsrc(name);
        pipeline.add(&src).map_err(|e| pipeline_error(output, e))?;
        let pad = sink_for(track, pipeline)?;
        src.static_pad("src")
            .expect("appsrc has a src pad")
            .link(&pad)
            .map_err(|e| pipeline_error(output, format!("linking {name}: {e:?}")))?;
        match track {
            Track::Video => video = Some(src),
            Track::Audio => audio = Some(src),
        }
    }
    Ok((video, audio))
}

/// `parser ! capsfilter` in front of a muxer pad, returning the parser's
/// sink pad (where the `appsrc` links).
fn parse_into(
    output: &str,
    pipeline: &gst::Pipeline,
    parser: &str,
    caps: &str,
    name: &str,
    pad: &gst::Pad,
) -> Result<gst::Pad, Error> {
    let parse = make(output, parser, &format!("{name}-parse"))?;
    let filter = make(output, "capsfilter", &format!("{name}-caps"))?;
    let caps: gst::Caps = caps
        .parse()
        .map_err(|_| pipeline_error(output, format!("bad caps {caps}")))?;
    filter.set_property("caps", &caps);
    pipeline
        .add_many([&parse, &filter])
        .and_then(|_| parse.link(&filter))
        .map_err(|e| pipeline_error(output, e))?;
    filter
        .static_pad("src")
        .expect("capsfilter has a src pad")
        .link(pad)
        .map_err(|e| pipeline_error(output, format!("linking {name} to the muxer: {e:?}")))?;
    Ok(parse.static_pad("sink").expect("parsers have a sink pad"))
}

/// `appsrc(video) ! h264parse ! flvmux ! rtmp2sink` (+ `appsrc(audio) !
/// aacparse ! mux`). FLV carries H.264 as AVC (length-prefixed NAL units,
/// the parameter sets in the sequence header) and AAC raw with its
/// AudioSpecificConfig: the parsers convert from the encoder's byte-stream
/// and ADTS without touching the frame data's timing.
pub fn build_rtmp(output: &str, target: &RtmpTarget, tracks: &[Track]) -> Result<Built, Error> {
    let pipeline = gst::Pipeline::with_name(&format!("output-{output}"));
    let mux = make(output, "flvmux", "mux")?;
    // No seeking back to fill in the duration: this is a live stream.
    mux.set_property("streamable", true);
    // FLV needs its tags in timestamp order across tracks (flvmux clamps a
    // late audio tag to the last video tag's time, which players read as a
    // jump). With live sources, the aggregator only waits this long for a
    // track that has no data yet before it sends the other alone. Audio and
    // video leave the encoders a little apart, and a new output gets the
    // cached GOP all at once with running times up to a GOP in the past, so
    // the wait must cover a GOP. It only delays anything while one track
    // has stopped.
    mux.set_property("latency", gst::ClockTime::from_seconds(3).nseconds());
    let sink = make(output, "rtmp2sink", "sink")?;
    sink.set_property("host", &target.host);
    sink.set_property("port", i32::from(target.port));
    sink.set_property("application", &target.app);
    // The key goes only into a property, never into a location string that
    // GStreamer might log.
    sink.set_property("stream", target.key());
    sink.set_property_from_str("scheme", target.scheme());
    if let Some(u) = &target.username {
        sink.set_property("username", u);
    }
    if let Some(p) = target.password() {
        sink.set_property("password", p);
    }
    // Bigger chunks than RTMP's 128-byte default: fewer chunk headers
    // (about 0.7 % of the stream at 128), and every server takes them.
    sink.set_property("chunk-size", 4096u32);
    // The encoder paces the stream; the GOP a new output starts with goes
    // out at once instead of waiting on the clock.
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline
        .add_many([&mux, &sink])
        .and_then(|_| mux.link(&sink))
        .map_err(|e| pipeline_error(output, e))?;
    let (video, audio) = attach_tracks(output, &pipeline, tracks, |track, pipeline| {
        let (template, parser, caps, name) = match track {
            Track::Video => (
                "video",
                "h264parse",
                "video/x-h264,stream-format=avc,alignment=au",
                "video",
            ),
            Track::Audio => (
                "audio",
                "aacparse",
                "audio/mpeg,mpegversion=4,stream-format=raw",
                "audio",
            ),
        };
        let pad = mux
            .request_pad_simple(template)
            .ok_or_else(|| pipeline_error(output, format!("flvmux gave no {template} pad")))?;
        parse_into(output, pipeline, parser, caps, name, &pad)
    })?;
    Ok(Built::plain(pipeline, video, audio, sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property set here has the type the element wants (GStreamer
    /// panics on a mismatch), and the pipeline goes to READY.
    #[test]
    fn pipelines_build_and_reach_ready() {
        gst::init().unwrap();
        let tracks = [Track::Video, Track::Audio];
        let rtmp = RtmpTarget::try_from("rtmps://user:pw@127.0.0.1:1/live/key").unwrap();
        let b = build_rtmp("t", &rtmp, &tracks).unwrap();
        assert_eq!(b.sink.property::<i32>("port"), 1);
        assert_eq!(b.sink.property::<String>("stream"), "key");
        b.pipeline.set_state(gst::State::Ready).unwrap();
        b.pipeline.set_state(gst::State::Null).unwrap();
        let mut ts = build_ts_to_appsink("t", &tracks).unwrap();
        ts.pipeline.set_state(gst::State::Null).unwrap();
        ts.video = None;
    }

    #[test]
    fn the_aac_decoder_is_the_first_installed() {
        assert_eq!(aac_decoder(|_| true).unwrap(), "avdec_aac");
        assert_eq!(aac_decoder(|f| f == "faad").unwrap(), "faad");
        let err = aac_decoder(|_| false).unwrap_err().to_string();
        assert!(err.contains("'avdec_aac' or 'faad'"), "{err}");
    }

    /// Both decoders take the capture's AAC (raw, with codec_data, as
    /// voaacenc and avenc_aac give it after aacparse) and the Opus
    /// encoder gets 48 kHz from them: real frames, to the end.
    #[test]
    fn both_aac_decoders_feed_the_opus_encoder() {
        gst::init().unwrap();
        for decoder in AAC_DECODERS {
            if !installed(decoder) {
                println!("skipped {decoder}: not installed here");
                continue;
            }
            let p = gst::parse::launch(&format!(
                "audiotestsrc num-buffers=100 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 \
                 ! voaacenc bitrate=128000 ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw \
                 ! {decoder} ! audioconvert ! audioresample ! opusenc ! appsink name=out sync=false"
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            let out = p
                .by_name("out")
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap();
            p.set_state(gst::State::Playing).unwrap();
            let mut opus = 0;
            let mut caps = None;
            while let Ok(s) = out.pull_sample() {
                caps = s.caps().map(|c| c.to_owned());
                opus += 1;
            }
            p.set_state(gst::State::Null).unwrap();
            let caps = caps.expect("opus caps");
            assert_eq!(
                caps.structure(0).unwrap().name(),
                "audio/x-opus",
                "{decoder}"
            );
            // 100 buffers of 20 ms: 2 s of audio, 20 ms Opus frames.
            assert!(opus >= 95, "{decoder}: {opus} Opus frames");
        }
    }
}
