//! The firmware booted under QEMU and driven from outside, as an operator
//! would: over MQTT and SRT on this machine's loopback (10.0.2.2 from the
//! guest). Each test boots its own copy of the image and powers it off.
//! Timings are printed, not asserted beyond generous bounds: emulation
//! speed depends on the host.

use std::time::{Duration, Instant};

use hil_tests::*;

/// One guest at a time: each takes both cores while it boots.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_to_mqtt_online_and_streams_srt_to_the_host() {
    let _one = SERIAL.lock().await;
    let image = Image::test_image();
    let _timed = Timed::start("boots_to_mqtt_online_and_streams_srt_to_the_host");
    let broker = Broker::start();
    let srt_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = SrtReceiver::start(srt_port, &dir.path().join("boot.ts"));
    // With sound: the image's AAC encoder (voaacenc) runs in the guest.
    let config = device_config("hil-boot", broker.port, &uplink(srt_port)).replace(
        "[inputs.audio]\nsource = \"none\"",
        "[inputs.audio]\nsource = \"test-tone\"",
    );
    assert!(config.contains("test-tone"));
    let guest = Guest::boot(image, &config);
    let online = wait_for_message(
        broker.port,
        "fieldcast/hil-boot/status",
        "online",
        Duration::from_secs(240),
    )
    .await;
    let Some(online) = online else {
        panic!("the device never came online\n{}", guest.diagnose());
    };
    println!(
        "boot to MQTT online: {:.1} s",
        (online - guest.booted_at).as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.received() == 0 {
        assert!(
            Instant::now() < deadline,
            "no SRT packet at the host receiver\n{}",
            guest.diagnose()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "boot to first SRT packet at the host: {:.1} s",
        guest.booted_at.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    // The operator ends the push, so the receiver's file ends where the
    // stream does, not in the middle of a packet.
    let mut op = Operator::connect(broker.port, "hil-boot").await;
    let r = op.request("push.stop", r#"{"id":"uplink"}"#).await;
    assert_eq!(r["ok"], true, "{r}");
    drained(&receiver).await;
    receiver.stop();
    let p = ffprobe(&receiver.out);
    assert_eq!(
        p.video_codec.as_deref(),
        Some("h264"),
        "{}",
        guest.diagnose()
    );
    assert_eq!((p.width, p.height), (Some(320), Some(180)));
    assert!(p.duration > 4.0, "{} s", p.duration);
    assert!(
        p.audio_codec.is_some(),
        "no audio at the receiver\n{}",
        guest.diagnose()
    );
    assert_eq!(
        (p.audio_codec.as_deref(), p.audio_rate, p.audio_channels),
        (Some("aac"), Some(48_000), Some(2))
    );
    assert_eq!(p.first_video_keyframe, Some(true), "{p:?}");
    let errors = decode_errors(&receiver.out);
    assert!(errors.is_empty(), "decode errors: {errors}");
    drop(guest);
}

/// Boots a guest on `config` and waits until the device is online.
async fn boot_online(
    device: &'static str,
    image: &'static Image,
    broker: &Broker,
    config: &str,
) -> (Guest, Operator) {
    let guest = Guest::boot(image, config);
    let op = Operator::connect(broker.port, device).await;
    assert!(
        op.wait_seen("status", "online", 0, Duration::from_secs(240))
            .await,
        "the device never came online\n{}",
        guest.diagnose()
    );
    (guest, op)
}

/// The `[[outputs]]` of one SRT push to a receiver on the host.
fn uplink(receiver_port: u16) -> String {
    format!(
        "[[outputs]]\nid = \"uplink\"\nstream = \"main\"\ntarget = \"srt://10.0.2.2:{receiver_port}?mode=caller&latency=500\"\n"
    )
}

/// Boots a guest with one SRT push to a receiver on the host and waits
/// until the device is online.
async fn booted_and_streaming(
    device: &'static str,
    image: &'static Image,
    broker: &Broker,
    receiver_port: u16,
) -> (Guest, Operator) {
    let config = device_config(device, broker.port, &uplink(receiver_port));
    boot_online(device, image, broker, &config).await
}

/// Waits until nothing more reaches `receiver` (what libsrt held back for
/// its latency has arrived) for two seconds, at most 20 s.
async fn drained(receiver: &SrtReceiver) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (receiver.received(), Instant::now());
    while Instant::now() < deadline && last.1.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = receiver.received();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

async fn wait_bytes(receiver: &SrtReceiver, more_than: u64, guest: &Guest, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.received() <= more_than {
        assert!(Instant::now() < deadline, "{what}\n{}", guest.diagnose());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_is_restarted_by_systemd_and_resumes_its_push() {
    let _one = SERIAL.lock().await;
    let image = Image::test_image();
    let _timed = Timed::start("a_killed_daemon_is_restarted_by_systemd_and_resumes_its_push");
    let broker = Broker::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let receiver = SrtReceiver::start(port, &dir.path().join("kill.ts"));
    let (guest, op) = booted_and_streaming("hil-kill", image, &broker, port).await;
    wait_bytes(&receiver, 0, &guest, "no SRT before the kill").await;

    // A crash, through the test image's control channel.
    let out = guest
        .shell(
            "systemctl kill -s KILL fieldcastd.service && echo killed",
            Duration::from_secs(30),
        )
        .unwrap_or_default();
    assert!(out.contains("killed"), "{out}\n{}", guest.diagnose());
    let killed_at = Instant::now();
    // It comes back: a second `online`. (The broker may or may not publish
    // the last will first: systemd restarts the daemon within seconds and
    // its new session takes over the old one's client id.)
    assert!(
        op.wait_seen("status", "online", 1, Duration::from_secs(120))
            .await,
        "not restarted\n{}",
        guest.diagnose()
    );
    println!(
        "SIGKILL to online again: {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
    let restarts = guest
        .shell(
            "systemctl show --no-pager -p NRestarts --value fieldcastd.service | cat",
            Duration::from_secs(30),
        )
        .unwrap_or_default();
    assert_eq!(
        restarts.lines().last().map(str::trim),
        Some("1"),
        "NRestarts: '{restarts}'\n{}",
        guest.diagnose()
    );
    // The push resumes: the receiver (a listener that kept running) gets
    // more.
    let before = receiver.received();
    wait_bytes(
        &receiver,
        before + 20_000,
        &guest,
        "the push did not resume",
    )
    .await;
    println!(
        "SIGKILL to the push streaming again: {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_after_a_confirmed_change_keeps_it() {
    let _one = SERIAL.lock().await;
    let image = Image::test_image();
    let _timed = Timed::start("a_power_cut_after_a_confirmed_change_keeps_it");
    let broker = Broker::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = SrtReceiver::start(port, &dir.path().join("power.ts"));
    let config = device_config("hil-power", broker.port, "");
    let (mut guest, mut op) = boot_online("hil-power", image, &broker, &config).await;
    let r = op
        .request(
            "push.add",
            &format!(
                r#"{{"id":"kept","stream":"main","target":"srt://10.0.2.2:{port}?mode=caller&latency=500"}}"#
            ),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // The power goes the moment the change is confirmed.
    guest.power_cut();
    guest.start(image);
    assert!(
        op.wait_seen("status", "online", 1, Duration::from_secs(240))
            .await,
        "no boot after the power cut\n{}",
        guest.diagnose()
    );
    let list = op.request("push.list", "").await;
    assert!(
        list["result"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["id"] == "kept")),
        "{list}"
    );
    wait_bytes(&receiver, 0, &guest, "the kept push did not run").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    receiver.stop();
    let p = ffprobe(&receiver.out);
    assert_eq!(
        (p.video_codec.as_deref(), p.width, p.height),
        (Some("h264"), Some(320), Some(180))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_partition_stops_recording_not_streaming() {
    let _one = SERIAL.lock().await;
    let image = Image::test_image();
    let _timed = Timed::start("a_full_data_partition_stops_recording_not_streaming");
    let broker = Broker::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let receiver = SrtReceiver::start(port, &dir.path().join("full.ts"));
    let (guest, mut op) = booted_and_streaming("hil-full", image, &broker, port).await;
    wait_bytes(&receiver, 0, &guest, "no SRT before filling the disk").await;
    // A recording beside the SRT push, saved while there is room.
    let r = op
        .request(
            "push.add",
            r#"{"id":"rec","stream":"main","target":"/data/fieldcast/recordings/$stream/$datetime.ts?segment=10"}"#,
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        op.wait_until(Duration::from_secs(60), |o| o
            .push("rec")
            .is_some_and(|p| p["state"] == "live"))
            .await,
        "the recording did not start: {:?}\n{}",
        op.push("rec"),
        guest.diagnose()
    );
    // The test image's control channel fills /data, the blocks ext4 keeps
    // back for root too, so nothing is left for the daemon.
    let out = guest
        .shell(
            "fallocate -l $(( $(stat -f -c '%a*%S' /data) - 4194304 )) /data/fill; \
             dd if=/dev/zero of=/data/fill2 bs=64k 2>/dev/null; sync; df -k /data | tail -1",
            Duration::from_secs(120),
        )
        .unwrap_or_default();
    println!("/data after filling: {out}");
    assert!(
        op.wait_until(Duration::from_secs(90), |o| o
            .push("rec")
            .and_then(|p| p["reason"].as_str().map(|r| r.starts_with("disk full")))
            .unwrap_or(false))
            .await,
        "no disk-full error: {:?}\n{}",
        op.push("rec"),
        guest.diagnose()
    );
    println!("recording: {}", op.push("rec").unwrap()["reason"]);
    // Streaming goes on.
    assert_eq!(op.push("uplink").unwrap()["state"], "live");
    let before = receiver.received();
    wait_bytes(
        &receiver,
        before + 20_000,
        &guest,
        "SRT stopped with the disk full",
    )
    .await;
}

/// Sets vivid control `control` (v4l2-ctl's name) of `dev` to the menu item
/// named `item`, through the test image's control channel.
fn vivid_set(guest: &Guest, dev: &str, control: &str, item: &str) {
    let list = guest
        .shell(&format!("v4l2-ctl -d {dev} -L"), Duration::from_secs(30))
        .unwrap_or_default();
    // `-L` prints the control's line, then its menu items as `N: Name`.
    let mut in_control = false;
    let mut index = None;
    for line in list.lines() {
        let t = line.trim();
        if t.starts_with(control) {
            in_control = true;
            continue;
        }
        if in_control {
            match t.split_once(": ") {
                Some((n, name)) if n.chars().all(|c| c.is_ascii_digit()) => {
                    if name.trim() == item || name.contains(item) {
                        index = Some(n.to_string());
                        break;
                    }
                }
                _ => in_control = false,
            }
        }
    }
    let index = index.unwrap_or_else(|| panic!("no '{item}' in {control}:\n{list}"));
    let out = guest
        .shell(
            &format!("v4l2-ctl -d {dev} -c {control}={index} && echo set"),
            Duration::from_secs(30),
        )
        .unwrap_or_default();
    assert!(out.contains("set"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vivid_hdmi_is_captured_lost_restored_and_renegotiated() {
    let _one = SERIAL.lock().await;
    let image = Image::test_image();
    let _timed = Timed::start("vivid_hdmi_is_captured_lost_restored_and_renegotiated");
    let broker = Broker::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = SrtReceiver::start(port, &dir.path().join("hdmi.ts"));
    // vivid's first instance: /dev/video0 is its capture node, input 3 its
    // HDMI input (the test checks both through discovery).
    let config = device_config("hil-hdmi", broker.port, &uplink(port)).replace(
        "[inputs.video]\nsource = \"test-pattern\"\nclock_overlay = false",
        "[inputs.video]\nsource = \"v4l2\"\ndevice = \"/dev/video0\"\ninput = 3",
    );
    let (guest, mut op) = boot_online("hil-hdmi", image, &broker, &config).await;
    // Discovery at boot may still be scanning vivid's nodes (slow under
    // emulation): asked again until the node is described.
    let mut node = serde_json::Value::Null;
    for _ in 0..5 {
        let found = op.request("devices.discover", "{}").await;
        node = found["result"]["v4l2"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["path"] == "/dev/video0"))
            .cloned()
            .unwrap_or_else(|| panic!("no /dev/video0 in {found}"));
        if node["driver"] != "" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(node["driver"], "vivid", "{node}");
    assert!(
        node["inputs"][3]["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "dv-timings")),
        "{node}"
    );
    wait_bytes(&receiver, 0, &guest, "no SRT from the HDMI input").await;
    println!(
        "boot to HDMI on SRT: {:.1} s",
        guest.booted_at.elapsed().as_secs_f64()
    );

    // The cable out: input lost, the slate, the push stays.
    vivid_set(&guest, "/dev/video0", "dv_timings_signal_mode", "No Signal");
    assert!(
        op.wait_until(Duration::from_secs(60), |o| !o
            .events("input_lost")
            .is_empty())
            .await,
        "no input_lost\n{}",
        guest.diagnose()
    );
    let lost = &op.events("input_lost")[0];
    assert!(
        lost["reason"].as_str().unwrap_or("").contains("no signal"),
        "{lost}"
    );
    let before = receiver.received();
    wait_bytes(
        &receiver,
        before + 10_000,
        &guest,
        "the slate did not reach the receiver",
    )
    .await;
    assert_eq!(op.push("uplink").unwrap()["state"], "live");

    // Back.
    vivid_set(
        &guest,
        "/dev/video0",
        "dv_timings_signal_mode",
        "Current DV Timings",
    );
    assert!(
        op.wait_until(Duration::from_secs(60), |o| !o
            .events("input_restored")
            .is_empty())
            .await,
        "no input_restored\n{}",
        guest.diagnose()
    );

    // Another format: the capture follows it.
    vivid_set(&guest, "/dev/video0", "dv_timings", "640x480");
    vivid_set(
        &guest,
        "/dev/video0",
        "dv_timings_signal_mode",
        "Selected DV Timings",
    );
    assert!(
        op.wait_until(Duration::from_secs(90), |o| !o
            .events("input_timing_changed")
            .is_empty())
            .await,
        "no input_timing_changed\n{}",
        guest.diagnose()
    );
    println!("timing change: {}", op.events("input_timing_changed")[0]);
    let before = receiver.received();
    wait_bytes(
        &receiver,
        before + 10_000,
        &guest,
        "nothing after the new format",
    )
    .await;
    assert!(op.events("output_disconnected").is_empty());
    receiver.stop();
    let p = ffprobe(&receiver.out);
    assert_eq!(
        (p.video_codec.as_deref(), p.width, p.height),
        (Some("h264"), Some(320), Some(180))
    );
}
