//! RTMP and RTMPS end to end against nginx with the RTMP module: what a real
//! ingest server receives, records and plays back, and what the daemon says
//! when the server refuses, hangs or shows a certificate it cannot check.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const DEV: &str = "rtmp-test";

fn push(id: &str, target: &str) -> String {
    format!(r#"{{"id":"{id}","stream":"main","target":"{target}"}}"#)
}

/// The reason of push `id`'s state, once it says `backoff`.
async fn backoff_reason(rig: &Rig, id: &str) -> String {
    rig.wait_push(id, "backoff").await;
    rig.push(id).unwrap()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A publish to nginx: H.264 + AAC at the configured size that a player
/// pulling from nginx sees, nginx's recording the right length and clean,
/// acknowledgements counted, and the stream key nowhere in what the device
/// says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_push_reaches_nginx_and_plays_back() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let nginx = Nginx::start(rig.tmp.path(), "");
    let key = "k3y-5ecret";
    rig.ok("push.add", &push("ingest", &nginx.url(key))).await;
    rig.wait_push("ingest", "live").await;
    let live_at = Instant::now();

    // A player pulling the stream back from the server.
    let pulled = ffprobe(Path::new(&nginx.url(key)));
    assert_eq!(pulled.video_codec.as_deref(), Some("h264"), "{pulled:?}");
    assert_eq!(pulled.audio_codec.as_deref(), Some("aac"), "{pulled:?}");
    assert_eq!((pulled.width, pulled.height), (Some(640), Some(360)));

    tokio::time::sleep(Duration::from_secs(6)).await;
    let state = rig.listed("ingest").await;
    let stats = &state["rtmp"];
    assert!(stats["bytes_acked"].as_u64().unwrap() > 100_000, "{state}");
    assert_eq!(stats["ack_window"], 65536, "{state}");
    assert_eq!(stats["chunk_size"], 4096, "{state}");
    assert!(
        stats["unacked_bytes"].as_u64().unwrap() < 3 * 65536,
        "{state}"
    );
    assert_eq!(
        state["target"],
        format!("rtmp://127.0.0.1:{}/live/***", nginx.port)
    );
    let telemetry = rig
        .mqtt
        .last(&rig.topic("telemetry"))
        .expect("telemetry came");
    assert!(
        telemetry["outputs"]["ingest"]["rtmp"]["bytes_acked"].as_u64() > Some(0),
        "{telemetry}"
    );

    rig.ok("push.stop", r#"{"id":"ingest"}"#).await;
    let streamed = live_at.elapsed().as_secs_f64();
    // nginx closes its recording when the stream is deleted.
    let rec = nginx.recording(key);
    wait_until(
        "nginx to close its recording",
        Duration::from_secs(10),
        || nginx.error_log().contains("deleteStream"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = ffprobe(&rec);
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert_eq!((p.width, p.height), (Some(640), Some(360)), "{p:?}");
    assert_eq!(p.first_video_keyframe, Some(true), "{p:?}");
    // It started on the cached GOP (up to 1 s before it went live) and went
    // live within a stats tick.
    assert!(
        p.duration >= streamed - 1.0 && p.duration <= streamed + 2.5,
        "nginx recorded {:.2} s of {streamed:.2} s",
        p.duration
    );
    let errors = decode_errors(&rec);
    assert!(errors.trim().is_empty(), "decode errors:\n{errors}");

    assert!(!rig.mqtt.published().contains(key), "the key was published");
    assert!(!rig.daemon.log_text().contains(key), "the key was logged");
}

/// A server that refuses the application, and one that hangs: the first is
/// named for what it refused, the second is caught by the missing
/// acknowledgements, and the push comes back once the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_hung_servers_are_told_apart() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let nginx = Nginx::start(rig.tmp.path(), "");
    let key = "anoth3r-secret";

    let wrong_app = format!("rtmp://127.0.0.1:{}/nope/{key}", nginx.port);
    rig.ok("push.add", &push("wrong", &wrong_app)).await;
    let reason = backoff_reason(&rig, "wrong").await;
    assert!(
        reason.contains("refused the application 'nope'"),
        "{reason}"
    );
    rig.ok("push.remove", r#"{"id":"wrong"}"#).await;

    let closed = free_port();
    rig.ok(
        "push.add",
        &push("closed", &format!("rtmp://127.0.0.1:{closed}/live/{key}")),
    )
    .await;
    let reason = backoff_reason(&rig, "closed").await;
    assert!(
        reason.starts_with(&format!("127.0.0.1:{closed} refused the connection")),
        "{reason}"
    );
    rig.ok("push.remove", r#"{"id":"closed"}"#).await;

    rig.ok("push.add", &push("hang", &nginx.url(key))).await;
    rig.wait_push("hang", "live").await;
    nginx.proc.signal("STOP");
    let stopped = Instant::now();
    let reason = backoff_reason(&rig, "hang").await;
    let noticed = stopped.elapsed();
    nginx.proc.signal("CONT");
    assert!(reason.starts_with("stalled"), "{reason}");
    assert!(noticed < Duration::from_secs(15), "took {noticed:?}");
    rig.wait_push("hang", "live").await;

    assert!(!rig.mqtt.published().contains(key), "the key was published");
    assert!(!rig.daemon.log_text().contains(key), "the key was logged");
}

/// RTMPS through a TLS front with a certificate from a private CA: refused
/// with a clear reason until `[tls] ca_file` names that CA, then live, and
/// what nginx recorded decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_needs_a_trusted_certificate_and_then_delivers() {
    let _g = serial().await;
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let tls_port = free_port();
    let output = |port: u16| {
        format!(
            "\n[[outputs]]\nid = \"secure\"\nstream = \"main\"\ntarget = \"rtmps://127.0.0.1:{port}/live/s3cure\"\n"
        )
    };
    let mut rig = Rig::start(DEV, &output(tls_port)).await;
    let nginx = Nginx::start(rig.tmp.path(), "");
    let _front = tls_front(
        rig.tmp.path(),
        tls_port,
        nginx.port,
        &certs.path().join("server.pem"),
        &certs.path().join("server.key"),
    );

    let reason = backoff_reason(&rig, "secure").await;
    assert!(
        reason.contains("TLS certificate was not accepted"),
        "{reason}"
    );

    let with_ca = format!(
        "{}\n[tls]\nca_file = \"{}\"\n",
        rig.config_text(),
        certs.path().join("ca.pem").display()
    );
    assert!(rig.restart("TERM", &with_ca));
    rig.wait_status("online").await;
    rig.wait_push("secure", "live").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    rig.ok("push.stop", r#"{"id":"secure"}"#).await;
    wait_until(
        "nginx to close its recording",
        Duration::from_secs(10),
        || nginx.error_log().contains("deleteStream"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = nginx.recording("s3cure");
    let p = ffprobe(&rec);
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.duration >= 3.0, "{p:?}");
    let errors = decode_errors(&rec);
    assert!(errors.trim().is_empty(), "decode errors:\n{errors}");
}
