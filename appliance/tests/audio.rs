//! Audio over MQTT, end to end through the daemon: levels in telemetry,
//! silence as `audio_silence` / `audio_restored` events and in the state.
//! One input is a test tone at volume 0; the other captures through ALSA
//! from a real-time virtual sound card (capture/tests/support/alsa_card.rs)
//! that starts silent and then plays the tone on its left channel.

mod support;

#[path = "../../capture/tests/support/alsa_card.rs"]
mod alsa_card;

use std::path::Path;
use std::time::Duration;

use alsa_card::VirtualCard;
use serde_json::Value;
use support::*;

const DEV: &str = "audio-test";

/// The daemon with the virtual card's ALSA configuration in its
/// environment (alsa-lib reads ALSA_CONFIG_PATH at open).
fn daemon_with_card(dir: &Path, config_text: &str, card: &VirtualCard) -> Daemon {
    Daemon::start_in_env(
        dir,
        config_text,
        &[("ALSA_CONFIG_PATH", card.config_path().as_str())],
    )
}

fn event_of(rig: &Rig, name: &str, input: &str) -> Option<Value> {
    rig.mqtt
        .events(&rig.topic("events"))
        .into_iter()
        .find(|e| e["event"] == name && e["input"] == input)
}

async fn wait_event(rig: &Rig, name: &str, input: &str) -> Value {
    rig.mqtt
        .wait_for(
            &format!("{name} of {input}"),
            Duration::from_secs(30),
            |_| event_of(rig, name, input).is_some(),
        )
        .await;
    event_of(rig, name, input).unwrap()
}

fn input_audio(rig: &Rig, input: &str) -> Value {
    let state = rig.mqtt.last(&rig.topic("state")).unwrap();
    state["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == input)
        .map(|i| i["audio"].clone())
        .unwrap_or(Value::Null)
}

/// The latest telemetry that has levels for `input`.
fn levels(rig: &Rig, input: &str) -> Option<Value> {
    rig.mqtt
        .events(&rig.topic("telemetry"))
        .into_iter()
        .rev()
        .find_map(|t| {
            let a = &t["inputs"][input]["audio"];
            (!a.is_null()).then(|| a.clone())
        })
}

fn near(what: &str, v: &Value, want: f64, tolerance: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} dBFS, expected {want} ± {tolerance}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_levels_over_mqtt() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let card = VirtualCard::new(&tmp.path().join("card"), 2, 0.0, None);
    // `main` (the test config's input) gets a silent tone; `desk` captures
    // from the card.
    let extra = format!(
        r#"
[inputs.audio]
source = "test-tone"
volume = 0.0
silence_after_s = 2.0

[[inputs]]
name = "desk"
[inputs.video]
source = "test-pattern"
clock_overlay = false
[inputs.audio]
source = "alsa"
device = "{}"
channels = 2
rate = 48000
select = [1, 2]
silence_threshold_dbfs = -50.0
silence_after_s = 2.0
[inputs.encode]
width = 320
height = 180
framerate = 15
bitrate_kbps = 300
gop_frames = 15
"#,
        alsa_card::DEVICE
    );
    let cfg = config(DEV, broker.port, &tmp.path().join("data"), &extra);
    let daemon = daemon_with_card(tmp.path(), &cfg, &card);
    let mqtt = Mqtt::device(broker.port, DEV).await;
    let rig = Rig {
        dev: DEV,
        mqtt,
        daemon,
        broker,
        tmp,
    };
    rig.wait_stream_live("desk").await;

    // Silence, from both: the event names the channels and their levels,
    // the state says since when.
    let e = wait_event(&rig, "audio_silence", "main").await;
    println!("{e}");
    assert_eq!(e["channels"], serde_json::json!([1, 2]));
    assert_eq!(e["rms_dbfs"], serde_json::json!([-100.0, -100.0]));
    assert_eq!(e["threshold_dbfs"], -60.0);
    assert!(e["silent_for_s"].as_f64().unwrap() >= 2.0, "{e}");
    assert_eq!(e["device"], DEV);
    let e = wait_event(&rig, "audio_silence", "desk").await;
    assert_eq!(e["threshold_dbfs"], -50.0);
    rig.mqtt
        .wait_for(
            "the state to say both are silent",
            Duration::from_secs(10),
            |_| {
                input_audio(&rig, "main")["silent"] == true
                    && input_audio(&rig, "desk")["silent"] == true
            },
        )
        .await;
    let a = input_audio(&rig, "desk");
    println!("state of desk's audio: {a}");
    assert_eq!(a["source"], "alsa fieldcast_test_card (2 ch)");
    assert_eq!(a["select"], serde_json::json!([1, 2]));
    assert!(a["since"].as_f64().unwrap() > 1.7e9);
    rig.mqtt
        .wait_for(
            "main's silence in telemetry",
            Duration::from_secs(10),
            |_| levels(&rig, "main").is_some_and(|l| l["silent"] == true),
        )
        .await;
    let l = levels(&rig, "main").unwrap();
    assert_eq!(l["peak_dbfs"], serde_json::json!([-100.0, -100.0]), "{l}");
    assert_eq!(l["rms_dbfs"], serde_json::json!([-100.0, -100.0]), "{l}");

    // The card plays the tone on its left channel: sound again.
    card.set_tone(Some(1));
    let e = wait_event(&rig, "audio_restored", "desk").await;
    println!("{e}");
    // The first report with the tone may hold only part of it: at or above
    // the threshold, at most the tone's -23 dBFS RMS.
    let rms = e["rms_dbfs"][0].as_f64().unwrap();
    assert!((-50.0..=-22.5).contains(&rms), "{e}");
    assert!(e["silent_s"].as_f64().unwrap() >= 2.0, "{e}");
    rig.mqtt
        .wait_for("desk's tone in telemetry", Duration::from_secs(10), |_| {
            levels(&rig, "desk").is_some_and(|l| l["peak_dbfs"][0].as_f64() > Some(-21.0))
        })
        .await;
    let l = levels(&rig, "desk").unwrap();
    println!("telemetry of desk's audio: {l}");
    near("left peak", &l["peak_dbfs"][0], -20.0, 0.3);
    near("left rms", &l["rms_dbfs"][0], -23.0, 0.3);
    near("left peak hold", &l["peak_hold_dbfs"][0], -20.0, 0.3);
    assert_eq!(l["peak_dbfs"][1], -100.0);
    assert_eq!(l["silent"], false);
    assert_eq!(input_audio(&rig, "desk")["silent"], false);
    // main stays silent, and was said to be once.
    assert_eq!(input_audio(&rig, "main")["silent"], true);
    let silences = rig
        .mqtt
        .events(&rig.topic("events"))
        .into_iter()
        .filter(|e| e["event"] == "audio_silence" && e["input"] == "main")
        .count();
    assert_eq!(silences, 1);
    assert!(event_of(&rig, "audio_restored", "main").is_none());
    assert!(
        event_of(&rig, "input_lost", "desk").is_none(),
        "{}",
        rig.daemon.log_text()
    );
}
