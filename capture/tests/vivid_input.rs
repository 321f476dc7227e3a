//! HDMI signal handling of a real capture input, on vivid's HDMI input
//! (docs.kernel.org/admin-guide/media/vivid.rst): its "DV Timings Signal
//! Mode" control takes the signal away and gives it back, and with it set
//! to "Selected DV Timings" its "DV Timings" menu picks the format the
//! "source" sends. Runs where a vivid
//! device exists (the QEMU image loads the module); elsewhere each test
//! says it was skipped and why.

use std::time::Duration;

use fieldcast_capture::input::InputEvent;
use fieldcast_capture::v4l2::Device;
use fieldcast_capture::{BoardProfile, InputSpec, InputState};
use fieldcast_media::{Stream, Track};
use tokio::sync::mpsc::UnboundedReceiver;

#[path = "support/vivid.rs"]
mod vivid;
use vivid::{SIGNAL_MODE, vivid_hdmi};

const TIMINGS: &str = "DV Timings";

async fn next_event(events: &mut UnboundedReceiver<InputEvent>, name: &str) -> String {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {name} within 20 s"))
            .unwrap();
        let text = serde_json::to_string(&e).unwrap();
        if text.contains(&format!("\"event\":\"{name}\"")) {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vivid_hdmi_loss_slate_return_and_a_new_format() {
    gst::init().unwrap();
    let Some((path, hdmi)) = vivid_hdmi() else {
        return;
    };
    let path = path.display().to_string();
    let control = Device::open(&path).unwrap();
    control.set_input(hdmi).unwrap();
    control
        .set_control_by_name(SIGNAL_MODE, "Current DV Timings")
        .unwrap();
    let spec: InputSpec = toml::from_str(&format!(
        "name = \"hdmi\"\n[video]\nsource = \"v4l2\"\ndevice = \"{path}\"\ninput = {hdmi}\n\
         [audio]\nsource = \"none\"\n[encode]\nwidth = 640\nheight = 360\nframerate = 30\n\
         bitrate_kbps = 600\ngop_frames = 30\n"
    ))
    .unwrap();
    spec.validate("inputs[0]", &BoardProfile::builtin("qemux86-64").unwrap())
        .unwrap();
    let stream = Stream::new("hdmi", &[Track::Video]);
    let mut sub = stream.subscribe(4096);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let input = fieldcast_capture::input::spawn(
        spec,
        BoardProfile::builtin("qemux86-64").unwrap(),
        stream.clone(),
        tx,
    );
    next_event(&mut events, "input_live").await;

    // No signal: lost with the receiver's reason, the slate in its place.
    control
        .set_control_by_name(SIGNAL_MODE, "No Signal")
        .unwrap();
    let lost = next_event(&mut events, "input_lost").await;
    assert!(lost.contains("no signal"), "{lost}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = input.status();
    assert!(st.slate, "{st:?}");
    assert!(matches!(st.state, InputState::Error { .. }), "{st:?}");
    while sub.rx.try_recv().is_ok() {}
    let f = tokio::time::timeout(Duration::from_secs(5), sub.rx.recv())
        .await
        .expect("slate frames while the signal is gone")
        .unwrap();
    assert_eq!(f.track, Track::Video);

    // Back: live again, the slate off.
    control
        .set_control_by_name(SIGNAL_MODE, "Current DV Timings")
        .unwrap();
    next_event(&mut events, "input_live").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = input.status();
    assert!(!st.slate && st.state == InputState::Running, "{st:?}");

    // Another format from the source: the capture is rebuilt for it.
    let menu = control
        .find_control(TIMINGS)
        .expect("vivid's DV Timings control");
    let items = control.menu_items(&menu).unwrap();
    let now = control.control(menu.id).unwrap();
    let (_, other) = items
        .iter()
        .find(|(v, name)| *v != now && name.contains("1280x720"))
        .or_else(|| items.iter().find(|(v, _)| *v != now))
        .expect("another DV timing to pick")
        .clone();
    // "Selected DV Timings": the source sends what the menu says, no
    // longer what the receiver was set to.
    control.set_control_by_name(TIMINGS, &other).unwrap();
    control
        .set_control_by_name(SIGNAL_MODE, "Selected DV Timings")
        .unwrap();
    let changed = next_event(&mut events, "input_timing_changed").await;
    assert!(changed.contains("\"timings\""), "{changed}");
    next_event(&mut events, "input_live").await;
    input.stop().await;
}
