//! WHIP (RFC 9725) end to end against a third-party WebRTC stack: an aiortc
//! receiver that records what it gets. H.264 and Opus arrive and decode, a
//! PLI from the receiver brings a keyframe long before the GOP would, a
//! redirect is followed, the session is DELETEd at the end, and refusals
//! are told apart without showing the token.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const DEV: &str = "whip-test";

fn push(id: &str, target: &str) -> String {
    format!(r#"{{"id":"{id}","stream":"main","target":"{target}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_push_reaches_an_aiortc_receiver() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    // A ten-second GOP: a keyframe soon after a PLI can only be its answer.
    rig.ok("encoder.set", r#"{"input":"main","gop_frames":300}"#)
        .await;
    rig.wait_stream_live("main").await;
    let mut peer = WhipPeer::start(
        rig.tmp.path(),
        &[
            "--token",
            "t0ken-xyz",
            "--redirect",
            "--pli-after",
            "4",
            // 2 % of video packets lost on the way in: NACKs must bring
            // them back.
            "--drop-video-every",
            "50",
        ],
    );
    let target = format!("{}?auth=t0ken-xyz", peer.url("cam"));
    rig.ok("push.add", &push("web", &target)).await;
    rig.wait_push("web", "live").await;
    let live_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let web = rig.listed("web").await;
    let stats = &web["whip"];
    assert_eq!(stats["connection_state"], "connected", "{web}");
    assert!(stats["packets_sent"].as_u64().unwrap() > 100, "{web}");
    assert!(stats["rtt_ms"].as_f64().is_some(), "{web}");
    assert!(stats["plis_received"].as_u64().unwrap() >= 1, "{web}");
    assert!(stats["nacks_received"].as_u64().unwrap() >= 1, "{web}");
    assert_eq!(
        web["target"],
        format!("http://127.0.0.1:{}/whip/***?auth=***", peer.port)
    );

    rig.ok("push.stop", r#"{"id":"web"}"#).await;
    let streamed = live_at.elapsed().as_secs_f64();
    wait_until("the DELETE", Duration::from_secs(5), || {
        peer.status()["deletes"] == 1
    });
    peer.finish();
    let status = peer.status();
    assert_eq!(status["redirects"], 1, "{status}");
    assert_eq!(status["auth_failures"], 0, "{status}");
    assert_eq!(status["offer_has_nack"], true, "{status}");
    assert_eq!(status["offer_has_pli"], true, "{status}");
    // Every packet the receiver lost came back as a retransmission.
    let lost = status["rtp_packets_dropped"].as_u64().unwrap_or(0);
    let rtx = status["rtp_packets_rtx"].as_u64().unwrap_or(0);
    assert!(lost >= 10, "{status}");
    assert!(rtx >= lost, "{lost} lost, {rtx} retransmitted: {status}");
    let delays: Vec<f64> = status["pli_keyframe_delays_s"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(!delays.is_empty(), "no PLI answered: {status}");
    assert!(delays[0] < 1.0, "keyframe {:.2} s after the PLI", delays[0]);

    let p = ffprobe(&peer.out);
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("opus"), "{p:?}");
    assert_eq!((p.width, p.height), (Some(640), Some(360)), "{p:?}");
    assert_eq!(p.first_video_keyframe, Some(true), "{p:?}");
    // It started on a keyframe once DTLS came up, and counted as live at
    // the receiver's first report after that (RTCP every second or so).
    assert!(
        p.duration >= streamed - 2.0 && p.duration <= streamed + 4.0,
        "received {:.2} s of {streamed:.2} s",
        p.duration
    );
    let errors = decode_errors(&peer.out);
    assert!(errors.trim().is_empty(), "decode errors:\n{errors}");
    assert!(!rig.mqtt.published().contains("t0ken-xyz"));
    assert!(!rig.daemon.log_text().contains("t0ken-xyz"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refusals_are_explained() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let peer = WhipPeer::start(rig.tmp.path(), &["--token", "right-one"]);
    rig.ok(
        "push.add",
        &push("web", &format!("{}?auth=wrong-one", peer.url("cam"))),
    )
    .await;
    rig.wait_push("web", "backoff").await;
    let reason = rig.push("web").unwrap()["reason"].to_string();
    assert!(reason.contains("refused the token (HTTP 401)"), "{reason}");
    assert!(!reason.contains("wrong-one"), "{reason}");
    rig.ok("push.remove", r#"{"id":"web"}"#).await;

    let closed = free_port();
    rig.ok(
        "push.add",
        &push("gone", &format!("http://127.0.0.1:{closed}/whip/x")),
    )
    .await;
    rig.wait_push("gone", "backoff").await;
    let reason = rig.push("gone").unwrap()["reason"].to_string();
    assert!(reason.contains("could not connect"), "{reason}");
    assert!(peer.status()["auth_failures"].as_u64() >= Some(1));
}
