//! Discovery and the signal watch against the real machine: GStreamer's
//! device monitor and whatever `/dev/video*` nodes exist. On a build
//! machine there are none and the kernel cannot load vivid, so the vivid
//! tests skip with a message; the QEMU HIL tests boot a kernel with vivid
//! and run them for real.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use fieldcast_capture::discover::{
    self, LossReason, SignalEvent, SignalState, SignalWatch, describe_node,
};
use fieldcast_capture::v4l2::{self, Device, V4l2Error};

// ---------------------------------------------------------------------------
// A fake GStreamer device provider, so the device-monitor half runs against
// real GstDevice objects on a machine without capture hardware: two devices,
// and a start() that can be made to hang.
// ---------------------------------------------------------------------------

mod fake {
    use gst::glib;
    use gst::prelude::*;
    use gst::subclass::prelude::*;
    use std::str::FromStr;
    use std::sync::LazyLock;
    use std::sync::atomic::Ordering;

    /// How long the fake provider's start() and probe() take.
    pub static DELAY_MS: super::AtomicU64 = super::AtomicU64::new(0);

    mod imp {
        use super::*;

        #[derive(Default)]
        pub struct FakeDevice;

        #[glib::object_subclass]
        impl ObjectSubclass for FakeDevice {
            const NAME: &'static str = "FcFakeDevice";
            type Type = super::FakeDevice;
            type ParentType = gst::Device;
        }
        impl ObjectImpl for FakeDevice {}
        impl GstObjectImpl for FakeDevice {}
        impl DeviceImpl for FakeDevice {}

        #[derive(Default)]
        pub struct FakeProvider;

        #[glib::object_subclass]
        impl ObjectSubclass for FakeProvider {
            const NAME: &'static str = "FcFakeDeviceProvider";
            type Type = super::FakeProvider;
            type ParentType = gst::DeviceProvider;
        }
        impl ObjectImpl for FakeProvider {}
        impl GstObjectImpl for FakeProvider {}
        impl DeviceProviderImpl for FakeProvider {
            fn metadata() -> Option<&'static gst::subclass::DeviceProviderMetadata> {
                static META: LazyLock<gst::subclass::DeviceProviderMetadata> =
                    LazyLock::new(|| {
                        gst::subclass::DeviceProviderMetadata::new(
                            "Fieldcast fake devices",
                            "Source/Audio/Video",
                            "Test devices for discovery",
                            "Fieldcast",
                        )
                    });
                Some(&META)
            }

            fn probe(&self) -> Vec<gst::Device> {
                delay();
                devices()
            }

            fn start(&self) -> Result<(), gst::LoggableError> {
                delay();
                for d in devices() {
                    self.obj().device_add(&d);
                }
                Ok(())
            }
        }
    }

    glib::wrapper! {
        pub struct FakeDevice(ObjectSubclass<imp::FakeDevice>) @extends gst::Device, gst::Object;
    }
    glib::wrapper! {
        pub struct FakeProvider(ObjectSubclass<imp::FakeProvider>)
            @extends gst::DeviceProvider, gst::Object;
    }

    fn delay() {
        let ms = DELAY_MS.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    fn device(name: &str, class: &str, caps: &str) -> gst::Device {
        let props = gst::Structure::builder("properties")
            .field("fake.serial", 7i32)
            .field("fake.label", "bench")
            .build();
        glib::Object::builder::<FakeDevice>()
            .property("display-name", name)
            .property("device-class", class)
            .property("caps", gst::Caps::from_str(caps).unwrap())
            .property("properties", props)
            .build()
            .upcast()
    }

    fn devices() -> Vec<gst::Device> {
        vec![
            device(
                "Fake HDMI grabber",
                "Video/Source",
                "video/x-raw, format=YUY2, width=1920, height=1080, framerate=60/1; \
                 video/x-raw, format=YUY2, width=1280, height=720, framerate={ 60/1, 30/1 }",
            ),
            device(
                "Fake line in",
                "Audio/Source",
                "audio/x-raw, format=S16LE, layout=interleaved, rate=48000, channels=2",
            ),
            // Not a source: the filters must leave it out.
            device("Fake speaker", "Audio/Sink", "audio/x-raw"),
        ]
    }

    pub fn register() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            gst::init().unwrap();
            gst::DeviceProvider::register(
                None,
                "fcfakedeviceprovider",
                gst::Rank::PRIMARY,
                FakeProvider::static_type(),
            )
            .unwrap();
        });
    }
}

/// Discovery state (the fake provider's delay, the busy guards) is
/// process-wide: one discovery test at a time.
static DISCOVERY: Mutex<()> = Mutex::new(());

fn discovery_lock() -> std::sync::MutexGuard<'static, ()> {
    fake::register();
    DISCOVERY.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn monitor_devices_are_summarised_with_their_properties() {
    let _one = discovery_lock();
    let report = discover::discover();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let names: Vec<&str> = report.devices.iter().map(|d| d.name.as_str()).collect();
    assert!(
        !names.contains(&"Fake speaker"),
        "a sink got through: {names:?}"
    );
    let video = report
        .devices
        .iter()
        .find(|d| d.name == "Fake HDMI grabber")
        .unwrap_or_else(|| panic!("not listed: {names:?}"));
    assert_eq!(video.class, "Video/Source");
    assert_eq!(video.api, "FcFakeDevice");
    assert_eq!(video.caps.len(), 1, "{:#?}", video.caps);
    assert_eq!(video.caps[0].formats, ["YUY2"]);
    assert_eq!(video.caps[0].sizes[1].size, "1280x720");
    assert_eq!(video.caps[0].sizes[1].framerates, ["60/1", "30/1"]);
    assert_eq!(video.properties["fake.serial"], "7");
    assert_eq!(video.properties["fake.label"], "bench");
    let audio = report
        .devices
        .iter()
        .find(|d| d.name == "Fake line in")
        .unwrap();
    assert_eq!(audio.caps[0].rates, ["48000"]);
    // Neither is V4L2, ALSA or DeckLink: no config to suggest.
    assert!(report.hints.iter().all(|h| !h.label.contains("Fake")));
}

#[test]
fn a_hanging_device_provider_costs_the_timeout_not_the_daemon() {
    let _one = discovery_lock();
    fake::DELAY_MS.store(3000, Ordering::SeqCst);
    let started = Instant::now();
    let report = discover::discover_with(&discover::DiscoverOptions {
        timeout: Duration::from_millis(500),
    });
    let took = started.elapsed();
    fake::DELAY_MS.store(0, Ordering::SeqCst);
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("device monitor") && e.contains("within 0.5 s")),
        "{:?}",
        report.errors
    );
    // Asked again while the stuck provider still holds its thread: no
    // second thread, a clear word instead.
    let again = discover::discover_with(&discover::DiscoverOptions {
        timeout: Duration::from_millis(500),
    });
    assert!(
        again
            .errors
            .iter()
            .any(|e| e.contains("previous discovery")),
        "{:?}",
        again.errors
    );
    // Once it returns, discovery works again.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let r = discover::discover();
        if r.errors.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "still failing: {:?}", r.errors);
    }
}

#[test]
fn discovery_is_bounded_and_reports_well_formed_json() {
    let _one = discovery_lock();
    let started = Instant::now();
    let report = discover::discover();
    let took = started.elapsed();
    // The default budget is 5 s per half, run side by side.
    assert!(took < Duration::from_secs(8), "discovery took {took:?}");

    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "at", "took_ms", "v4l2", "devices", "decklink", "hints", "errors",
    ] {
        assert!(json.get(key).is_some(), "no '{key}' in {json:#}");
    }
    assert!(json["at"].as_f64().unwrap() > 1.6e9);
    assert!(json["took_ms"].is_u64());
    for key in ["v4l2", "devices", "hints", "errors"] {
        assert!(json[key].is_array(), "'{key}' is not an array: {json:#}");
    }
    let dl = &json["decklink"];
    assert!(dl["gstreamer_plugin"].is_boolean(), "{dl:#}");
    assert!(dl["kernel_devices"].is_array(), "{dl:#}");
    assert!(!dl["note"].as_str().unwrap().is_empty(), "{dl:#}");

    let nodes = v4l2::video_nodes();
    assert_eq!(report.v4l2.len(), nodes.len());
    if nodes.is_empty() {
        // This machine: no V4L2 node, so none reported, no V4L2 hint.
        assert!(json["v4l2"].as_array().unwrap().is_empty());
        assert!(
            report.hints.iter().all(|h| !h.toml.contains("\"v4l2\"")),
            "{:#?}",
            report.hints
        );
    }
    for node in json["v4l2"].as_array().unwrap() {
        for key in [
            "path",
            "driver",
            "card",
            "bus_info",
            "version",
            "kind",
            "capabilities",
            "current_input",
            "inputs",
            "formats",
            "error",
        ] {
            assert!(node.get(key).is_some(), "no '{key}' in {node:#}");
        }
    }
    for device in json["devices"].as_array().unwrap() {
        for key in ["name", "class", "api", "path", "caps", "properties"] {
            assert!(device.get(key).is_some(), "no '{key}' in {device:#}");
        }
    }
    // Without Blackmagic's library the report says so instead of an
    // unexplained empty list.
    if report.decklink.gstreamer_plugin && report.decklink.driver_library.is_none() {
        assert!(
            report.decklink.note.contains("not installed"),
            "{}",
            report.decklink.note
        );
    }
    eprintln!(
        "discovery took {} ms: {} V4L2 nodes, {} monitor devices, errors {:?}; decklink: {}",
        report.took_ms,
        report.v4l2.len(),
        report.devices.len(),
        report.errors,
        report.decklink.note
    );
}

#[test]
fn discovery_can_be_asked_again() {
    let _one = discovery_lock();
    // On request over MQTT, repeatedly: the busy guards must clear.
    for _ in 0..2 {
        let r = discover::discover_with(&discover::DiscoverOptions {
            timeout: Duration::from_secs(5),
        });
        assert!(
            !r.errors.iter().any(|e| e.contains("previous discovery")),
            "{:?}",
            r.errors
        );
    }
}

#[test]
fn a_node_that_is_not_v4l2_is_reported_not_fatal() {
    let node = describe_node(std::path::Path::new("/dev/null"));
    assert_eq!(node.path, "/dev/null");
    let e = node.error.unwrap();
    assert!(e.contains("not a V4L2 device"), "{e}");
}

#[test]
fn a_watch_on_a_missing_or_foreign_node_fails_with_its_path() {
    let e = SignalWatch::start("/dev/video-none", Duration::from_secs(1), |_| {})
        .err()
        .unwrap();
    assert!(matches!(e, V4l2Error::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("/dev/video-none"), "{e}");
    let e = SignalWatch::start("/dev/null", Duration::from_secs(1), |_| {})
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("/dev/null: not a V4L2 device"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// vivid (docs.kernel.org/admin-guide/media/vivid.rst). Its default instance
// has four inputs: webcam, TV, S-Video, HDMI. The HDMI input's "DV Timings
// Signal Mode" menu control (vivid-ctrls.c, VIVID_CID_DV_TIMINGS_SIGNAL_MODE)
// makes QUERY_DV_TIMINGS answer ENOLINK ("No Signal"), ENOLCK ("No Lock") or
// ERANGE ("Out of Range"), and sends V4L2_EVENT_SOURCE_CHANGE on each change.
// ---------------------------------------------------------------------------

/// vivid is one device shared by these tests: one at a time.
static VIVID: Mutex<()> = Mutex::new(());

#[path = "support/vivid.rs"]
mod vivid;
use vivid::{SIGNAL_MODE, vivid_hdmi};

#[test]
fn vivid_hdmi_input_is_discovered_with_its_timings() {
    let _one = VIVID.lock().unwrap_or_else(|p| p.into_inner());
    let Some((path, hdmi)) = vivid_hdmi() else {
        return;
    };
    let dev = Device::open(&path).unwrap();
    dev.set_input(hdmi).unwrap();
    dev.set_control_by_name(SIGNAL_MODE, "Current DV Timings")
        .unwrap();

    let node = describe_node(&path);
    assert_eq!(node.driver, "vivid");
    assert_eq!(node.current_input, Some(hdmi));
    assert!(!node.formats.is_empty(), "{node:#?}");
    let input = node.inputs.iter().find(|i| i.index == hdmi).unwrap();
    assert!(input.current);
    assert!(input.capabilities.contains(&"dv-timings".to_string()));
    let dv = input.dv.as_ref().expect("DV report for the HDMI input");
    let detected = dv.detected.expect("vivid detects its current timings");
    assert!(detected.width > 0 && detected.fps() > 0.0, "{detected:?}");
    assert!(matches!(
        input.signal,
        Some(SignalState::Locked { timings: Some(_) })
    ));

    dev.set_control_by_name(SIGNAL_MODE, "No Signal").unwrap();
    let node = describe_node(&path);
    let input = node.inputs.iter().find(|i| i.index == hdmi).unwrap();
    assert_eq!(
        input.dv.as_ref().unwrap().detect_error.as_deref(),
        Some("no signal")
    );
    assert!(
        input
            .status
            .as_ref()
            .unwrap()
            .contains(&"no signal".to_string()),
        "{input:#?}"
    );
    dev.set_control_by_name(SIGNAL_MODE, "Current DV Timings")
        .unwrap();
    let report = discover::discover();
    assert!(
        report
            .hints
            .iter()
            .any(|h| h.toml.contains(&*path.to_string_lossy())),
        "{:#?}",
        report.hints
    );
}

#[test]
fn vivid_signal_loss_and_return_reach_the_watch() {
    let _one = VIVID.lock().unwrap_or_else(|p| p.into_inner());
    let Some((path, hdmi)) = vivid_hdmi() else {
        return;
    };
    let control = Device::open(&path).unwrap();
    control.set_input(hdmi).unwrap();
    control
        .set_control_by_name(SIGNAL_MODE, "Current DV Timings")
        .unwrap();

    let (tx, rx) = mpsc::channel();
    // A long interval: the changes must arrive by source-change event, not
    // by the periodic reading.
    let watch = SignalWatch::start(&path, Duration::from_secs(30), move |ev| {
        let _ = tx.send(ev);
    })
    .unwrap();
    assert!(
        matches!(watch.state(), SignalState::Locked { timings: Some(_) }),
        "{:?}",
        watch.state()
    );
    let next = || {
        rx.recv_timeout(Duration::from_secs(3))
            .expect("an event within 3 s")
    };

    for (mode, reason) in [
        ("No Signal", LossReason::NoSignal),
        ("No Lock", LossReason::NoLock),
        ("Out of Range", LossReason::OutOfRange),
    ] {
        control.set_control_by_name(SIGNAL_MODE, mode).unwrap();
        assert_eq!(next(), SignalEvent::Lost { reason }, "after '{mode}'");
        assert_eq!(watch.state(), SignalState::Lost { reason });
    }
    control
        .set_control_by_name(SIGNAL_MODE, "Current DV Timings")
        .unwrap();
    match next() {
        SignalEvent::Restored { timings: Some(t) } => assert!(t.width > 0, "{t:?}"),
        other => panic!("expected Restored with timings, got {other:?}"),
    }
    let stopping = Instant::now();
    drop(watch);
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "drop must not wait for the interval"
    );
}

#[test]
fn vivid_controls_by_name_name_the_choices() {
    let _one = VIVID.lock().unwrap_or_else(|p| p.into_inner());
    let Some((path, hdmi)) = vivid_hdmi() else {
        return;
    };
    let dev = Device::open(&path).unwrap();
    dev.set_input(hdmi).unwrap();
    let ctrl = dev.find_control(SIGNAL_MODE).unwrap();
    let items: Vec<String> = dev
        .menu_items(&ctrl)
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    for want in ["Current DV Timings", "No Signal", "No Lock", "Out of Range"] {
        assert!(items.iter().any(|i| i == want), "{items:?}");
    }
    let e = dev
        .set_control_by_name(SIGNAL_MODE, "Snow")
        .unwrap_err()
        .to_string();
    assert!(e.contains("'Snow'") && e.contains("No Signal"), "{e}");
    let e = dev
        .set_control_by_name("No Such Control", "1")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("No Such Control") && e.contains(SIGNAL_MODE),
        "{e}"
    );
}
