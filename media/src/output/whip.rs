//! A WHIP output (RFC 9725): the signalling in Rust, the media through
//! GStreamer's `webrtcbin`.
//!
//! One session: build the pipeline and start feeding it (webrtcbin needs
//! the caps of its tracks before it can write an offer), create the offer
//! and wait for ICE gathering to finish (no trickle: the offer carries the
//! candidates, as RFC 9725 §4.3.2 allows), POST it with the bearer token,
//! follow redirects, take the answer, the resource URL (`Location`) and
//! the ICE servers (`Link`), then watch the receiver's RTCP reports for
//! liveness. A stop DELETEs the resource (§4.3.3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use tracing::{debug, info, warn};
use url::Url;

use super::liveness::Verdict;
use super::{Feeder, SessionEnd, Task, next_command, pipeline};
use crate::pipeline_util::{change_state, error_reason, pending_error};
use crate::whip::{self, WhipLiveness, WhipLivenessConfig, WhipStats, WhipTarget};

/// How long ICE gathering may take before the offer goes with the
/// candidates found so far.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// The POST of the offer, redirects included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The DELETE at the end.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the tracks may take to give webrtcbin their caps.
const CAPS_TIMEOUT: Duration = Duration::from_secs(5);

fn http_client() -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        // RFC 9725 §4.3.1: a client follows redirects (307/308 re-POST
        // the offer; reqwest keeps method and body for them).
        .redirect(reqwest::redirect::Policy::limited(5))
        .timeout(POST_TIMEOUT);
    if let Some(pem) = crate::tls::extra_ca() {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// Runs a webrtcbin action that answers through a promise, off the
/// runtime (the promise is waited on).
async fn promise_action(
    webrtc: &gst::Element,
    signal: &'static str,
    arg: Option<gst_webrtc::WebRTCSessionDescription>,
) -> Result<Option<gst::Structure>, String> {
    let webrtc = webrtc.clone();
    tokio::task::spawn_blocking(move || {
        let promise = gst::Promise::new();
        match arg {
            Some(desc) => webrtc.emit_by_name::<()>(signal, &[&desc, &promise]),
            None => webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]),
        }
        match promise.wait() {
            gst::PromiseResult::Replied => Ok(promise.get_reply().map(|r| r.to_owned())),
            other => Err(format!("webrtcbin {signal}: {other:?}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// What the endpoint gave back.
struct Negotiated {
    answer: String,
    ice: Vec<String>,
}

/// The session's resource URL, once the endpoint has named it: shared with
/// the negotiation task so that whatever ends the session (a failure after
/// the 201, a stop while the answer is applied) can DELETE it.
type Resource = Arc<std::sync::Mutex<Option<Url>>>;

/// Offer, POST, answer. Runs as its own task while the session keeps
/// feeding frames.
async fn negotiate(
    webrtc: gst::Element,
    target: WhipTarget,
    client: reqwest::Client,
    resource_slot: Resource,
) -> Result<Negotiated, String> {
    let reply = promise_action(&webrtc, "create-offer", None)
        .await?
        .ok_or("webrtcbin gave no offer")?;
    let offer = reply
        .get::<gst_webrtc::WebRTCSessionDescription>("offer")
        .map_err(|_| {
            let why = reply
                .get::<gst::glib::Error>("error")
                .map(|e| e.to_string())
                .unwrap_or_else(|_| "no offer".into());
            format!("webrtcbin could not make an offer: {why}")
        })?;
    promise_action(&webrtc, "set-local-description", Some(offer)).await?;
    let gathered = Instant::now();
    while webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
        != gst_webrtc::WebRTCICEGatheringState::Complete
    {
        if gathered.elapsed() > GATHER_TIMEOUT {
            warn!("ICE gathering not complete after {GATHER_TIMEOUT:?}; sending what was found");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let local = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or("webrtcbin has no local description")?;
    let sdp = local
        .sdp()
        .as_text()
        .map_err(|e| format!("offer SDP: {e}"))?;
    if !sdp.contains("a=candidate:") {
        return Err("no ICE candidates were gathered (no usable network interface?)".into());
    }
    let shown = target.redacted();
    let mut req = client
        .post(target.endpoint.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(sdp);
    if let Some(t) = target.token() {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            "could not connect".to_string()
        } else {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        };
        target.scrub(&format!("posting the offer to {shown}: {why}"))
    })?;
    let status = resp.status();
    let final_url = resp.url().clone();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    if status.as_u16() != 201 {
        return Err(whip::explain_status(status.as_u16(), &body, &target));
    }
    let resource = headers
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        // A relative Location is relative to where the POST ended up.
        .and_then(|l| final_url.join(l).ok());
    match resource {
        Some(r) => *resource_slot.lock().expect("resource lock") = Some(r),
        None => {
            warn!(target = %shown, "the WHIP endpoint gave no Location: the session cannot be ended with DELETE")
        }
    }
    let links: Vec<&str> = headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ice = whip::ice_servers(&links)
        .iter()
        .filter_map(whip::IceServer::for_webrtcbin)
        .collect();
    let accepted = whip::accepted(&body);
    if !accepted.video {
        return Err(format!(
            "the WHIP endpoint {shown} refused our H.264 video (check the encoder profile it accepts)"
        ));
    }
    if !accepted.audio {
        warn!(target = %shown, "the WHIP endpoint refused the Opus audio; sending video only");
    }
    let msg = gst_sdp::SDPMessage::parse_buffer(body.as_bytes())
        .map_err(|_| format!("the answer of {shown} is not SDP"))?;
    let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
    promise_action(&webrtc, "set-remote-description", Some(answer)).await?;
    Ok(Negotiated { answer: body, ice })
}

/// Ends the session at the endpoint (best effort, bounded).
async fn delete(client: &reqwest::Client, resource: &Url, target: &WhipTarget) {
    let mut req = client.delete(resource.clone()).timeout(DELETE_TIMEOUT);
    if let Some(t) = target.token() {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => debug!("WHIP resource deleted"),
        Ok(r) => warn!(status = %r.status(), "the WHIP endpoint refused the DELETE"),
        Err(e) => {
            let why = target
                .scrub(&e.to_string())
                .replace(resource.as_str(), "<resource>");
            warn!(error = %why, "WHIP DELETE failed")
        }
    }
}

/// Reads the RTP session's view of our senders: what the receiver's
/// reports say it got, losses, round trip, feedback received.
fn read_stats(webrtc: &gst::Element) -> WhipStats {
    let mut s = WhipStats {
        ice_state: format!(
            "{:?}",
            webrtc.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state")
        )
        .to_lowercase(),
        connection_state: format!(
            "{:?}",
            webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state")
        )
        .to_lowercase(),
        ..Default::default()
    };
    let Some(rtpbin) = webrtc
        .downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name("rtpbin"))
    else {
        tracing::trace!("webrtcbin has no rtpbin");
        return s;
    };
    let Some(session) = rtpbin.emit_by_name::<Option<gst::glib::Object>>("get-session", &[&0u32])
    else {
        return s;
    };
    let stats = session.property::<gst::Structure>("stats");
    tracing::trace!(stats = %stats, "rtp session stats");
    let Ok(sources) = stats.get::<gst::glib::ValueArray>("source-stats") else {
        return s;
    };
    let mut rtt: Option<f64> = None;
    for v in sources.iter() {
        let Ok(src) = v.get::<gst::Structure>() else {
            continue;
        };
        if src.get::<bool>("internal").unwrap_or(false) {
            // Our own senders: what went out and the feedback they got.
            s.packets_sent += src.get::<u64>("packets-sent").unwrap_or(0);
            s.bytes_sent += src.get::<u64>("octets-sent").unwrap_or(0);
            s.nacks_received += u64::from(src.get::<u32>("recv-nack-count").unwrap_or(0));
            s.plis_received += u64::from(src.get::<u32>("recv-pli-count").unwrap_or(0));
            s.firs_received += u64::from(src.get::<u32>("recv-fir-count").unwrap_or(0));
        } else if src.get::<bool>("have-rb").unwrap_or(false) {
            // The receiver's source: its last report block about us.
            s.received_seq += u64::from(src.get::<u32>("rb-exthighestseq").unwrap_or(0));
            s.packets_lost += i64::from(src.get::<i32>("rb-packetslost").unwrap_or(0));
            // RFC 3550 §6.4.1: the round trip in units of 1/65536 s.
            let r = f64::from(src.get::<u32>("rb-round-trip").unwrap_or(0)) / 65536.0 * 1000.0;
            rtt = Some(rtt.map_or(r, |x: f64| x.max(r)));
        }
    }
    s.rtt_ms = rtt;
    s
}

pub(super) async fn session(task: &mut Task, target: &WhipTarget) -> SessionEnd {
    let id = task.spec.id.clone();
    let client = match http_client() {
        Ok(c) => c,
        Err(reason) => {
            return SessionEnd::Failed {
                reason,
                was_live: false,
            };
        }
    };
    // ICE servers: the target's, then those the endpoint named last time.
    let stun = target.stun.first().cloned().or_else(|| {
        task.learned_ice
            .iter()
            .find(|u| u.starts_with("stun"))
            .cloned()
    });
    let mut turn: Vec<String> = target.turn().to_vec();
    turn.extend(
        task.learned_ice
            .iter()
            .filter(|u| u.starts_with("turn"))
            .cloned(),
    );
    let weak = Arc::downgrade(&task.spec.stream);
    let on_pli = move || {
        if let Some(s) = weak.upgrade() {
            s.request_keyframe();
        }
    };
    let (built, webrtc) = match pipeline::build_whip(
        &id,
        stun.as_deref(),
        &turn,
        task.spec.stream.tracks(),
        on_pli,
    ) {
        Ok(b) => b,
        Err(e) => {
            return SessionEnd::not_started(e.to_string());
        }
    };
    let mut sub = task.spec.stream.subscribe(task.spec.queue_frames);
    let mut bus = built.pipeline.bus().expect("a pipeline has a bus").stream();
    let mut feeder = Feeder::new(&built, task.spec.max_pipeline_bytes);
    let resource: Resource = Arc::new(std::sync::Mutex::new(None));
    let mut negotiation: Option<tokio::task::JoinHandle<Result<Negotiated, String>>> = None;

    let end = 'session: {
        let mut timeline = match super::start(task, &built, &mut bus, &mut sub, &mut feeder).await {
            Ok(t) => t,
            Err(end) => break 'session end,
        };

        let started = Instant::now();
        let mut connected_once = false;
        let mut offered = false;
        let mut liveness = WhipLiveness::new(WhipLivenessConfig::default(), Instant::now());
        let mut was_live = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_observe = Instant::now();
        loop {
            tokio::select! {
                biased;
                i = next_command(&mut task.cmd) => {
                    if let Some(n) = negotiation.take() {
                        n.abort();
                    }
                    break 'session i.into();
                }
                msg = bus.next() => {
                    let Some(msg) = msg else { break 'session SessionEnd::Failed { reason: "pipeline bus closed".into(), was_live } };
                    match msg.view() {
                        gst::MessageView::Error(e) => {
                            let reason = target.scrub(&error_reason(e));
                            break 'session SessionEnd::Failed { reason, was_live };
                        }
                        gst::MessageView::Warning(w) => debug!(output = %id, warning = %w.error(), "output warning"),
                        _ => {}
                    }
                }
                n = async { negotiation.as_mut().expect("polled only when set").await }, if negotiation.is_some() => {
                    negotiation = None;
                    match n {
                        Ok(Ok(done)) => {
                            info!(output = %id, target = %target.redacted(), "WHIP session created");
                            debug!(output = %id, answer = %done.answer, "WHIP answer");
                            if !done.ice.is_empty() {
                                task.learned_ice = done.ice;
                            }
                            liveness = WhipLiveness::new(WhipLivenessConfig::default(), Instant::now());
                        }
                        Ok(Err(reason)) => break 'session SessionEnd::Failed { reason, was_live: false },
                        Err(e) => break 'session SessionEnd::not_started(format!("WHIP negotiation: {e}")),
                    }
                }
                frame = sub.rx.recv() => {
                    let Some(frame) = frame else {
                        break 'session SessionEnd::Failed { reason: "stream closed".into(), was_live };
                    };
                    let Some(frame) = timeline.place(frame, &mut feeder) else { continue };
                    if let Err(reason) = feeder.push(frame) {
                        let reason = pending_error(&mut bus).unwrap_or(reason);
                        break 'session SessionEnd::Failed { reason: target.scrub(&reason), was_live };
                    }
                }
                _ = tick.tick() => {
                    // Negotiate once webrtcbin knows every track's caps.
                    if !offered {
                        let ready = webrtc.sink_pads().iter().all(|p| p.current_caps().is_some());
                        if ready || started.elapsed() > CAPS_TIMEOUT {
                            if !ready {
                                break 'session SessionEnd::not_started("the tracks gave webrtcbin no caps (no frames from the encoder?)");
                            }
                            negotiation = Some(tokio::spawn(negotiate(webrtc.clone(), target.clone(), client.clone(), resource.clone())));
                            offered = true;
                        }
                    }
                    // Every tick until live (so it is seen at once), then
                    // once a second.
                    if was_live && last_observe.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    last_observe = Instant::now();
                    let stats = read_stats(&webrtc);
                    let connected = stats.connection_state == "connected";
                    if matches!(stats.connection_state.as_str(), "failed" | "closed") {
                        break 'session SessionEnd::Failed {
                            reason: format!("the WebRTC connection {} (ICE {})", stats.connection_state, stats.ice_state),
                            was_live,
                        };
                    }
                    if connected && !connected_once {
                        connected_once = true;
                        // What was sent before DTLS was up is gone: give
                        // the receiver a picture at once (it discards what
                        // comes before the keyframe by itself).
                        task.spec.stream.request_keyframe();
                    }
                    let verdict = if negotiation.is_some() {
                        Verdict::Connecting
                    } else {
                        liveness.observe(Instant::now(), connected, stats.received_seq, stats.packets_sent)
                    };
                    let now = (feeder.frames, feeder.bytes, feeder.dropped);
                    task.report(Some(now), &sub, |st| st.whip = Some(stats));
                    match verdict {
                        Verdict::Live => {
                            was_live = true;
                            task.go_live();
                        }
                        Verdict::Connecting | Verdict::Waiting => {}
                        Verdict::Failed(reason) => break 'session SessionEnd::Failed { reason, was_live },
                    }
                }
            }
        }
    };

    task.done_add(feeder.frames, feeder.bytes, feeder.dropped);
    task.done.dropped += sub.dropped.load(std::sync::atomic::Ordering::Relaxed);
    task.spec.stream.unsubscribe(sub.id);
    // Whatever ended the session: no negotiation left running on its own,
    // and no session left open at the endpoint.
    if let Some(n) = negotiation.take() {
        n.abort();
        let _ = n.await;
    }
    let open = resource.lock().expect("resource lock").take();
    if let Some(r) = open {
        delete(&client, &r, target).await;
    }
    if let Err(e) = change_state(&built.pipeline, gst::State::Null).await {
        warn!(output = %id, error = %e, "output pipeline did not stop cleanly");
    }
    if matches!(end, SessionEnd::Stopped(_)) {
        info!(output = %id, "WHIP session ended");
    }
    end
}
