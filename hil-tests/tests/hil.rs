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
    let broker = Broker::start();
    let srt_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = SrtReceiver::start(srt_port, &dir.path().join("boot.ts"));
    let config = device_config(
        "hil-boot",
        broker.port,
        &format!(
            "[[outputs]]\nid = \"uplink\"\nstream = \"main\"\ntarget = \"srt://10.0.2.2:{srt_port}?mode=caller&latency=500\"\n"
        ),
    );
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
    receiver.stop();
    let (codec, w, h, duration) = probe(&receiver.out);
    assert_eq!(codec.as_deref(), Some("h264"), "{}", guest.diagnose());
    assert_eq!((w, h), (Some(320), Some(180)));
    assert!(duration > 4.0, "{duration} s");
    drop(guest);
}
