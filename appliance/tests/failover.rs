//! Outputs with backup destinations: active-backup moves to the backup when
//! the primary is down and back when it returns, without a gap on the
//! backup while it checks; active-active sends to both and stays live when
//! one goes.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const DEV: &str = "failover-test";

fn events_named(rig: &Rig, name: &str) -> Vec<Value> {
    rig.mqtt
        .events(&rig.topic("events"))
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

/// Primary: RTMP to a port where nothing listens yet. Backup: SRT to
/// srt-live-transmit. After two refusals the push is live on the backup;
/// once nginx comes up on the primary's port it is tried (while the backup
/// carries on) and the push returns to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_backup_fails_over_and_returns_to_the_primary() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let rtmp_port = free_port();
    let srt_port = free_port();
    let backup_file = rig.path("backup.ts");
    let mut backup = srt_receiver(srt_port, Some("backup-secret-1"), &backup_file);
    let push = format!(
        r#"{{"id":"main-out","stream":"main","target":"rtmp://127.0.0.1:{rtmp_port}/live/primary",
            "backups":["srt://127.0.0.1:{srt_port}?mode=caller&passphrase=backup-secret-1"],
            "redundancy":{{"mode":"active-backup","after_failures":2,"primary_retry_s":5}}}}"#
    );
    // One line: the test client's record of its own commands is per line.
    rig.ok("push.add", &push.replace('\n', "")).await;
    rig.mqtt
        .wait_for("live on the backup", Duration::from_secs(30), |m| {
            m.push_state(DEV, "main-out")
                .is_some_and(|p| p["state"] == "live" && p["destination"] == 1)
        })
        .await;
    let p = rig.push("main-out").unwrap();
    assert_eq!(p["destinations"][0]["role"], "standby", "{p}");
    assert_eq!(p["destinations"][1]["role"], "active", "{p}");
    assert!(
        p["destinations"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the connection"),
        "{p}"
    );
    assert!(!p.to_string().contains("backup-secret-1"), "{p}");
    let over = events_named(&rig, "output_failover");
    assert_eq!(over.len(), 1, "{over:?}");
    assert!(
        over[0]["reason"]
            .as_str()
            .unwrap()
            .contains("2 failed attempts"),
        "{over:?}"
    );

    // The primary comes up: the push goes back to it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nginx = Nginx::start_on(rig.tmp.path(), rtmp_port, "");
    rig.mqtt
        .wait_for("back on the primary", Duration::from_secs(30), |m| {
            m.push_state(DEV, "main-out")
                .is_some_and(|p| p["state"] == "live" && p["destination"] == 0)
        })
        .await;
    let back = events_named(&rig, "output_failover");
    assert_eq!(back.len(), 2, "{back:?}");
    assert_eq!(back[1]["reason"], "the primary is back");
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.ok("push.stop", r#"{"id":"main-out"}"#).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    backup.signal("INT");
    backup.wait_exit(Duration::from_secs(5));

    let b = ffprobe(&backup_file);
    assert_eq!(b.video_codec.as_deref(), Some("h264"), "{b:?}");
    assert!(b.duration >= 3.0, "the backup carried {:.1} s", b.duration);
    let errors = decode_errors(&backup_file);
    assert!(errors.trim().is_empty(), "backup decode errors:\n{errors}");
    wait_until(
        "nginx to close its recording",
        Duration::from_secs(10),
        || nginx.error_log().contains("deleteStream"),
    );
    let primary = ffprobe(&nginx.recording("primary"));
    assert_eq!(primary.video_codec.as_deref(), Some("h264"), "{primary:?}");
    assert_eq!(primary.first_video_keyframe, Some(true), "{primary:?}");
    assert!(primary.duration >= 2.5, "{primary:?}");
    let history = rig.history("main-out").await;
    assert_eq!(
        history.iter().filter(|(w, _)| w == "failover").count(),
        2,
        "{history:?}"
    );
    let published = rig.mqtt.published();
    let leak: Vec<&str> = published
        .lines()
        .filter(|l| l.contains("backup-secret-1"))
        .collect();
    assert!(leak.is_empty(), "{leak:?}");
}

/// Two SRT receivers fed at once; one goes away, the push stays live on
/// the other and says which destination is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_sends_to_both_and_survives_one() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let (pa, pb) = (free_port(), free_port());
    let (fa, fb) = (rig.path("a.ts"), rig.path("b.ts"));
    let mut ra = srt_receiver(pa, None, &fa);
    let mut rb = srt_receiver(pb, None, &fb);
    let push = format!(
        r#"{{"id":"dual","stream":"main","target":"srt://127.0.0.1:{pa}?mode=caller",
            "backups":["srt://127.0.0.1:{pb}?mode=caller"],
            "redundancy":{{"mode":"active-active"}}}}"#
    );
    // One line: the test client's record of its own commands is per line.
    rig.ok("push.add", &push.replace('\n', "")).await;
    rig.mqtt
        .wait_for("both destinations live", Duration::from_secs(30), |m| {
            m.push_state(DEV, "dual").is_some_and(|p| {
                p["state"] == "live"
                    && p["destinations"][0]["state"] == "live"
                    && p["destinations"][1]["state"] == "live"
            })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rb.signal("KILL");
    rb.wait_exit(Duration::from_secs(5));
    rig.mqtt
        .wait_for("destination 1 down", Duration::from_secs(20), |m| {
            m.push_state(DEV, "dual")
                .is_some_and(|p| p["destinations"][1]["state"] != "live")
        })
        .await;
    let p = rig.push("dual").unwrap();
    assert_eq!(p["state"], "live", "{p}");
    assert_eq!(p["destinations"][0]["state"], "live", "{p}");
    let down = events_named(&rig, "destination_down");
    assert!(down.iter().any(|e| e["destination"] == 1), "{down:?}");
    assert!(events_named(&rig, "output_disconnected").is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.ok("push.stop", r#"{"id":"dual"}"#).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    ra.signal("INT");
    ra.wait_exit(Duration::from_secs(5));
    for f in [&fa, &fb] {
        let p = ffprobe(f);
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{f:?}: {p:?}");
        assert!(p.duration >= 2.5, "{f:?}: {p:?}");
    }
    let errors = decode_errors(&fa);
    assert!(errors.trim().is_empty(), "decode errors:\n{errors}");
}
