//! The capture pipeline for real: GStreamer encodes a small test pattern
//! and tone, and the frames that reach the stream are checked.

use std::time::Duration;

use fieldcast_capture::{BoardProfile, InputSpec, InputState};
use fieldcast_media::{Stream, Track};

fn small_input() -> InputSpec {
    let mut spec: InputSpec = toml::from_str("name = \"main\"").unwrap();
    spec.encode.width = 320;
    spec.encode.height = 180;
    spec.encode.gop_frames = 10;
    spec.encode.bitrate_kbps = 400;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_pattern_becomes_h264_and_aac_access_units_on_running_time() {
    gst::init().unwrap();
    let stream = Stream::new("main", &[Track::Video, Track::Audio]);
    let mut sub = stream.subscribe(1024);
    let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let input = fieldcast_capture::input::spawn(
        small_input(),
        BoardProfile::builtin("generic-x86-64").unwrap(),
        stream.clone(),
        tx,
    );
    let mut video = Vec::new();
    let mut audio = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while video.len() < 45 {
        let f = tokio::time::timeout_at(end, sub.rx.recv())
            .await
            .expect("frames within 20 s")
            .unwrap();
        match f.track {
            Track::Video => video.push(f),
            Track::Audio => audio.push(f),
        }
    }
    assert_eq!(input.status().state, InputState::Running);
    input.stop().await;

    // The first frame an output sees is a keyframe, then one every GOP.
    assert!(video[0].starts_gop());
    let keys: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.starts_gop())
        .map(|(i, _)| i)
        .collect();
    assert!(keys.len() >= 4, "keyframes at {keys:?}");
    for w in keys.windows(2) {
        assert_eq!(w[1] - w[0], 10, "GOP of 10 frames: {keys:?}");
    }
    let caps = video[0].caps.structure(0).unwrap();
    assert_eq!(caps.name(), "video/x-h264");
    assert_eq!(caps.get::<&str>("stream-format").unwrap(), "byte-stream");
    assert_eq!(caps.get::<&str>("alignment").unwrap(), "au");
    assert_eq!(caps.get::<&str>("profile").unwrap(), "high");
    assert_eq!(caps.get::<i32>("width").unwrap(), 320);
    // Timestamps are running time on the shared clock (not the encoder's
    // own segment, which x264enc shifts by 1000 h), rising by one frame.
    let pts: Vec<u64> = video.iter().map(|f| f.pts().unwrap().nseconds()).collect();
    assert!(pts[0] < 60_000_000_000, "first PTS {} ns", pts[0]);
    for w in pts.windows(2) {
        let d = w[1] - w[0];
        assert!((33_000_000..=34_000_000).contains(&d), "PTS step {d} ns");
    }
    assert!(video.iter().all(|f| f.dts().is_some()));
    assert!(!audio.is_empty());
    let a = audio[0].caps.structure(0).unwrap();
    assert_eq!(a.name(), "audio/mpeg");
    assert_eq!(a.get::<i32>("mpegversion").unwrap(), 4);
    assert_eq!(a.get::<&str>("stream-format").unwrap(), "raw");
    assert!(a.has_field("codec_data"));
}

/// A board whose encoder element is not on this machine (the Pi's
/// v4l2h264enc, registered only where the encoder device exists): the
/// input encodes with x264 instead, says so in an event, and reports the
/// encoder it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_hardware_encoder_falls_back_to_software() {
    gst::init().unwrap();
    if gst::ElementFactory::find("v4l2h264enc").is_some() {
        eprintln!("skipped: this machine has a V4L2 H.264 encoder");
        return;
    }
    let stream = Stream::new("main", &[Track::Video, Track::Audio]);
    let mut sub = stream.subscribe(1024);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let input = fieldcast_capture::input::spawn(
        small_input(),
        BoardProfile::builtin("raspberrypi4-64").unwrap(),
        stream,
        tx,
    );
    let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    let text = serde_json::to_string(&e).unwrap();
    assert!(
        text.contains("encoder_fallback")
            && text.contains("\"wanted\":\"v4l2h264enc\"")
            && text.contains("\"using\":\"x264enc\"")
            && text.contains("'v4l2h264enc' is not available"),
        "{text}"
    );
    // It encodes: frames arrive and the state says which encoder.
    let frame = tokio::time::timeout(Duration::from_secs(10), sub.rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame.track, Track::Video);
    let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(serde_json::to_string(&e).unwrap().contains("input_live"));
    assert_eq!(input.status().encoder, "x264enc");
    assert_eq!(input.status().state, InputState::Running);
    input.stop().await;
}

/// An output that needs a picture now asks for a keyframe: the encoder
/// gives one within a few frames instead of at the end of its GOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_on_request() {
    gst::init().unwrap();
    let mut spec = small_input();
    spec.encode.gop_frames = 300; // 10 s
    let stream = Stream::new("main", &[Track::Video, Track::Audio]);
    let mut sub = stream.subscribe(1024);
    let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let input = fieldcast_capture::input::spawn(
        spec,
        BoardProfile::builtin("generic-x86-64").unwrap(),
        stream.clone(),
        tx,
    );
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut next_video = async || loop {
        let f = tokio::time::timeout_at(end, sub.rx.recv())
            .await
            .expect("frames within 20 s")
            .unwrap();
        if f.track == Track::Video {
            return f;
        }
    };
    assert!(next_video().await.starts_gop());
    for _ in 0..20 {
        assert!(
            !next_video().await.starts_gop(),
            "a keyframe nobody asked for"
        );
    }
    assert!(stream.request_keyframe());
    let mut waited = 0;
    loop {
        waited += 1;
        if next_video().await.starts_gop() {
            break;
        }
        assert!(waited < 10, "no keyframe within 10 frames of the request");
    }
    println!("keyframe {waited} frames after the request");
    input.stop().await;
}

/// A CSI camera through libcamera (`source = "libcamera"`): this machine has
/// libcamera but no camera, so the input is lost with libcamera's own
/// reason, and the slate (black, the configured size, from the same
/// encoder, keyframe first) reaches the stream in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libcamera_input_without_a_camera_is_lost_and_the_slate_goes_out() {
    gst::init().unwrap();
    if gst::ElementFactory::find("libcamerasrc").is_none() {
        panic!("libcamerasrc is missing: scripts/install-deps.sh installs gstreamer1.0-libcamera");
    }
    let mut spec = small_input();
    spec.video =
        toml::from_str("source = \"libcamera\"\ncamera = \"/base/soc/i2c0mux/i2c@1/imx708@1a\"")
            .unwrap();
    let stream = Stream::new("main", &[Track::Video, Track::Audio]);
    let mut sub = stream.subscribe(1024);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let input = fieldcast_capture::input::spawn(
        spec,
        BoardProfile::builtin("raspberrypi5").unwrap(),
        stream,
        tx,
    );
    let lost = loop {
        let e = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .expect("an input_lost event")
            .unwrap();
        let text = serde_json::to_string(&e).unwrap();
        if text.contains("input_lost") {
            break text;
        }
    };
    assert!(
        lost.contains("libcamera /base/soc/i2c0mux/i2c@1/imx708@1a")
            && lost.contains("Could not find a camera named"),
        "{lost}"
    );
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let f = sub.rx.recv().await.unwrap();
            if f.track == Track::Video {
                return f;
            }
        }
    })
    .await
    .expect("slate frames");
    assert!(frame.keyframe);
    let caps = frame.caps.structure(0).unwrap();
    assert_eq!(caps.get::<i32>("width").unwrap(), 320);
    assert_eq!(caps.get::<i32>("height").unwrap(), 180);
    let status = input.status();
    assert!(status.slate, "{status:?}");
    assert!(
        matches!(status.state, InputState::Error { .. }),
        "{status:?}"
    );
    input.stop().await;
}
