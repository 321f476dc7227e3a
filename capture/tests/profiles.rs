//! Every board profile, checked against what its vendor documents: the
//! encoder element and property names, the units the settings reach them
//! in, H.265, limits, inputs, the memory path and the software fallback.
//! Where the elements exist on this machine (x264enc, openh264enc,
//! decklinkvideosrc) GStreamer itself parses the pipeline and brings it to
//! READY; vendor elements that do not exist here are checked as text
//! against the names and units cited in each `board-configs/*.toml`.

use fieldcast_capture::board::{Codec, InputKind, IoMode};
use fieldcast_capture::describe::{
    audio_encoder_properties, pipeline, video_branch, video_encoded_caps_for, video_encoder_for,
};
use fieldcast_capture::{BoardProfile, InputSpec};
use gst::prelude::*;

fn input(extra: &str) -> InputSpec {
    toml::from_str(&format!("name = \"main\"\n{extra}")).unwrap()
}

/// 2500 kbit/s, a two-second GOP at 25 fps, baseline: numbers that show
/// their unit (2500 vs 2500000) and a profile that is not the default.
fn probe() -> InputSpec {
    input(
        "[video]\nsource = \"test-pattern\"\nclock_overlay = false\n\
         [audio]\nsource = \"none\"\n\
         [encode]\nwidth = 1280\nheight = 720\nframerate = 25\nbitrate_kbps = 2500\ngop_frames = 50\nprofile = \"baseline\"",
    )
}

struct Expected {
    board: &'static str,
    machine: &'static str,
    /// A layer the MACHINE or its encoder plugin comes from.
    layer: &'static str,
    hardware: bool,
    h264: &'static str,
    h264_caps: &'static str,
    h265: Option<(&'static str, &'static str)>,
    limits: (u32, u32, u32),
    h265_limits: Option<(u32, u32, u32)>,
    inputs: &'static [InputKind],
    dmabuf: bool,
    fallback: &'static str,
}

const X264: &str =
    "x264enc speed-preset=veryfast bframes=0 tune=zerolatency pass=cbr bitrate=2500 key-int-max=50";

/// What each vendor documents, as the encoder settings of [`probe`] must
/// come out (sources cited in each board file).
const EXPECTED: &[Expected] = &[
    Expected {
        board: "generic-x86-64",
        machine: "genericx86-64",
        layer: "meta-yocto-bsp",
        hardware: false,
        // x264enc: `bitrate` in kbit/s, `key-int-max` in frames, pass=cbr.
        h264: X264,
        h264_caps: "video/x-h264,profile=baseline",
        h265: None,
        limits: (3840, 2160, 60),
        h265_limits: None,
        inputs: &[InputKind::Uvc, InputKind::Decklink, InputKind::V4l2],
        dmabuf: false,
        fallback: "x264enc",
    },
    Expected {
        board: "raspberrypi4-64",
        machine: "raspberrypi4-64",
        layer: "meta-raspberrypi",
        hardware: true,
        // V4L2 controls in extra-controls: video_bitrate in bit/s,
        // h264_i_frame_period in frames, video_bitrate_mode 1 = CBR.
        h264: "v4l2h264enc extra-controls=\"controls,repeat_sequence_header=1,video_bitrate_mode=1,video_bitrate=2500000,h264_i_frame_period=50\"",
        h264_caps: "video/x-h264,profile=baseline,level=(string)4",
        h265: None,
        limits: (1920, 1080, 30),
        h265_limits: None,
        inputs: &[
            InputKind::CsiLibcamera,
            InputKind::HdmiCsiBridge,
            InputKind::Uvc,
        ],
        dmabuf: true,
        fallback: "x264enc",
    },
    Expected {
        board: "raspberrypi5",
        machine: "raspberrypi5",
        layer: "meta-raspberrypi",
        // BCM2712 has no video encoder: x264 is the board's encoder.
        hardware: false,
        h264: X264,
        h264_caps: "video/x-h264,profile=baseline",
        h265: None,
        limits: (1920, 1080, 30),
        h265_limits: None,
        inputs: &[
            InputKind::CsiLibcamera,
            InputKind::HdmiCsiBridge,
            InputKind::Uvc,
        ],
        dmabuf: false,
        fallback: "x264enc",
    },
    Expected {
        board: "imx8mp-lpddr4-evk",
        machine: "imx8mp-lpddr4-evk",
        layer: "meta-freescale",
        hardware: true,
        // vpuenc_h264: `bitrate` in kbps, `gop-size` in frames, `profile`
        // 9 Baseline / 10 Main / 11 High (VC8000E).
        h264: "vpuenc_h264 profile=9 bitrate=2500 gop-size=50",
        h264_caps: "video/x-h264",
        // vpuenc_hevc: `profile` 0 = Main.
        h265: Some((
            "vpuenc_hevc profile=0 bitrate=2500 gop-size=50",
            "video/x-h265",
        )),
        limits: (1920, 1080, 60),
        h265_limits: Some((1920, 1080, 60)),
        inputs: &[InputKind::CsiV4l2, InputKind::Uvc],
        dmabuf: true,
        fallback: "x264enc",
    },
    Expected {
        board: "rockchip-rk3588-evb",
        machine: "rockchip-rk3588-evb",
        layer: "meta-rockchip",
        hardware: true,
        // mpph264enc: `bps` in bit/s, `gop` in frames, `rc-mode` cbr,
        // `profile` by nick, `level` 52 = 5.2.
        h264: "mpph264enc header-mode=each-idr rc-mode=cbr profile=baseline level=52 bps=2500000 gop=50",
        h264_caps: "video/x-h264",
        h265: Some((
            "mpph265enc header-mode=each-idr rc-mode=cbr bps=2500000 gop=50",
            "video/x-h265,profile=main",
        )),
        limits: (3840, 2160, 60),
        h265_limits: Some((3840, 2160, 60)),
        inputs: &[InputKind::HdmiRx, InputKind::CsiV4l2, InputKind::Uvc],
        dmabuf: true,
        fallback: "x264enc",
    },
    Expected {
        board: "jetson-agx-orin-devkit",
        machine: "jetson-agx-orin-devkit",
        layer: "meta-tegra",
        hardware: true,
        // nvv4l2h264enc: `bitrate` in bit/s, GOP to `iframeinterval` and
        // `idrinterval`, `control-rate` 1 = constant_bitrate, `profile`
        // 0 Baseline, `preset-level` 1 = UltraFast.
        h264: "nvv4l2h264enc insert-sps-pps=true maxperf-enable=true num-B-Frames=0 preset-level=1 control-rate=1 profile=0 bitrate=2500000 iframeinterval=50 idrinterval=50",
        h264_caps: "video/x-h264",
        h265: Some((
            "nvv4l2h265enc insert-sps-pps=true maxperf-enable=true preset-level=1 control-rate=1 profile=0 bitrate=2500000 iframeinterval=50 idrinterval=50",
            "video/x-h265",
        )),
        limits: (3840, 2160, 60),
        h265_limits: Some((3840, 2160, 60)),
        inputs: &[
            InputKind::CsiArgus,
            InputKind::HdmiCsiBridge,
            InputKind::Uvc,
        ],
        dmabuf: true,
        fallback: "x264enc",
    },
    Expected {
        board: "jetson-orin-nano-devkit",
        machine: "jetson-orin-nano-devkit",
        layer: "meta-tegra",
        // "The NVIDIA Jetson Orin Nano does not have the NVENC engine."
        hardware: false,
        h264: X264,
        h264_caps: "video/x-h264,profile=baseline",
        h265: None,
        limits: (1920, 1080, 30),
        h265_limits: None,
        inputs: &[InputKind::CsiArgus, InputKind::Uvc],
        dmabuf: false,
        fallback: "x264enc",
    },
    Expected {
        board: "zynqmp-ev-generic",
        machine: "zynqmp-ev-generic",
        layer: "meta-xilinx-multimedia",
        hardware: true,
        // omxh264enc (VCU): `target-bitrate` in Kbps, `gop-length` and
        // `periodicity-idr` in frames, control-rate constant; profile and
        // level through the caps.
        h264: "omxh264enc gop-mode=basic b-frames=0 control-rate=constant target-bitrate=2500 gop-length=50 periodicity-idr=50",
        h264_caps: "video/x-h264,profile=baseline,level=(string)5.2",
        h265: Some((
            "omxh265enc gop-mode=basic b-frames=0 control-rate=constant target-bitrate=2500 gop-length=50 periodicity-idr=50",
            "video/x-h265,profile=main,level=(string)5.1",
        )),
        limits: (3840, 2160, 60),
        h265_limits: Some((3840, 2160, 60)),
        inputs: &[
            InputKind::HdmiRx,
            InputKind::CsiV4l2,
            InputKind::V4l2,
            InputKind::Uvc,
        ],
        dmabuf: true,
        fallback: "x264enc",
    },
    Expected {
        board: "qemux86-64",
        machine: "qemux86-64",
        layer: "meta",
        hardware: false,
        h264: X264,
        h264_caps: "video/x-h264,profile=baseline",
        h265: None,
        limits: (1920, 1080, 30),
        h265_limits: None,
        inputs: &[InputKind::V4l2, InputKind::Uvc],
        dmabuf: false,
        fallback: "x264enc",
    },
    Expected {
        board: "qemuarm64",
        machine: "qemuarm64",
        layer: "meta-multimedia",
        hardware: false,
        // openh264enc: `bitrate` in bit/s, `gop-size` in frames,
        // rate-control "bitrate".
        h264: "openh264enc complexity=low usage-type=camera enable-frame-skip=false rate-control=bitrate bitrate=2500000 gop-size=50",
        h264_caps: "video/x-h264,profile=baseline",
        h265: None,
        limits: (1280, 720, 30),
        h265_limits: None,
        inputs: &[InputKind::V4l2, InputKind::Uvc],
        dmabuf: false,
        fallback: "openh264enc",
    },
];

#[test]
fn every_built_in_board_has_an_expectation() {
    let mut names: Vec<&str> = EXPECTED.iter().map(|e| e.board).collect();
    names.sort_unstable();
    let mut builtin = BoardProfile::builtin_names();
    builtin.sort_unstable();
    assert_eq!(names, builtin);
}

#[test]
fn profiles_say_what_their_vendors_document() {
    let i = probe();
    for x in EXPECTED {
        let b = BoardProfile::builtin(x.board).unwrap();
        let at = x.board;
        assert_eq!(b.board.yocto_machine, x.machine, "{at}");
        assert!(
            b.board.layers.iter().any(|l| l == x.layer),
            "{at}: {:?}",
            b.board.layers
        );
        assert!(!b.board.sources.is_empty(), "{at}");
        assert_eq!(b.hardware_encoder(), x.hardware, "{at}");
        assert_eq!(
            video_encoder_for(Codec::H264, &i, &b).as_deref(),
            Some(x.h264),
            "{at}"
        );
        assert_eq!(
            video_encoded_caps_for(Codec::H264, &i, &b).as_deref(),
            Some(x.h264_caps),
            "{at}"
        );
        assert_eq!(
            video_encoder_for(Codec::H265, &i, &b).as_deref(),
            x.h265.map(|h| h.0),
            "{at}"
        );
        assert_eq!(
            video_encoded_caps_for(Codec::H265, &i, &b).as_deref(),
            x.h265.map(|h| h.1),
            "{at}"
        );
        let l = b.limits_for(Codec::H264).unwrap();
        assert_eq!((l.max_width, l.max_height, l.max_fps), x.limits, "{at}");
        assert_eq!(
            b.limits_for(Codec::H265)
                .map(|l| (l.max_width, l.max_height, l.max_fps)),
            x.h265_limits,
            "{at}"
        );
        let kinds: Vec<InputKind> = b.inputs.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, x.inputs, "{at}");
        assert_eq!(b.memory.dmabuf, x.dmabuf, "{at}");
        assert_eq!(b.software_fallback.encoder.element, x.fallback, "{at}");
    }
}

#[test]
fn every_pipeline_is_built_with_the_board_encoder_named_venc() {
    let v4l2 =
        input("[video]\nsource = \"v4l2\"\ndevice = \"/dev/video0\"\n[audio]\nsource = \"none\"");
    for name in BoardProfile::builtin_names() {
        let b = BoardProfile::builtin(name).unwrap();
        for i in [probe(), v4l2.clone()] {
            let p = pipeline(&i, &b);
            let enc = format!("! {} ", b.video_encoder.element);
            assert!(p.contains(&enc), "{name}: {p}");
            assert!(p.contains(" name=venc ! video/x-h264"), "{name}: {p}");
            assert!(
                p.ends_with(
                    "! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=video sync=false max-buffers=64 enable-last-sample=false"
                ),
                "{name}: {p}"
            );
            // The running pipeline is H.264 only.
            assert!(!p.contains("h265"), "{name}: {p}");
        }
        let p = video_branch(&v4l2, &b);
        match b.memory.io_mode {
            Some(IoMode::Dmabuf) => assert!(
                p.starts_with("v4l2src device=/dev/video0 io-mode=dmabuf ! "),
                "{name}: {p}"
            ),
            None => assert!(
                p.starts_with("v4l2src device=/dev/video0 ! "),
                "{name}: {p}"
            ),
            Some(other) => panic!("{name}: unexpected io_mode {other:?}"),
        }
    }
}

#[test]
fn vendor_inputs_name_their_source_elements() {
    let rk = BoardProfile::builtin("rockchip-rk3588-evb").unwrap();
    let hdmi = rk
        .inputs
        .iter()
        .find(|i| i.kind == InputKind::HdmiRx)
        .unwrap();
    assert_eq!(hdmi.driver, ["rk_hdmirx", "snps_hdmirx"]);
    assert_eq!(hdmi.kind.source_element(), "v4l2src");
    assert_eq!(hdmi.kind.config_source(), Some("v4l2"));
    let pi = BoardProfile::builtin("raspberrypi4-64").unwrap();
    assert_eq!(pi.inputs[0].kind.source_element(), "libcamerasrc");
    assert_eq!(pi.inputs[0].kind.config_source(), Some("libcamera"));
    let jetson = BoardProfile::builtin("jetson-agx-orin-devkit").unwrap();
    assert_eq!(jetson.inputs[0].kind.source_element(), "nvarguscamerasrc");
    assert_eq!(jetson.inputs[0].kind.config_source(), None);
    let generic = BoardProfile::builtin("generic-x86-64").unwrap();
    let decklink = generic
        .inputs
        .iter()
        .find(|i| i.kind == InputKind::Decklink)
        .unwrap();
    assert_eq!(decklink.kind.config_source(), Some("decklink"));
}

/// Brings a launch description to READY and back; the error names what
/// failed.
fn ready(description: &str) -> Result<(), String> {
    let p = gst::parse::launch(description).map_err(|e| format!("parse: {e}"))?;
    let r = p.set_state(gst::State::Ready);
    p.set_state(gst::State::Null).unwrap();
    r.map(|_| ()).map_err(|e| format!("READY: {e}"))
}

#[test]
fn software_pipelines_reach_ready_in_gstreamer() {
    gst::init().unwrap();
    // Every board that encodes in software here, and every hardware
    // board's fallback: what the daemon runs when the vendor element is
    // missing (as it is on this machine).
    for name in BoardProfile::builtin_names() {
        let b = BoardProfile::builtin(name).unwrap();
        let runs_here = if b.hardware_encoder() {
            assert!(
                b.check_video_encoder().is_err(),
                "{name}: its vendor encoder should not exist on this machine"
            );
            b.with_software_encoder()
        } else {
            b.clone()
        };
        assert_eq!(runs_here.check_video_encoder(), Ok(()), "{name}");
        let d = pipeline(&probe(), &runs_here);
        assert_eq!(ready(&d), Ok(()), "{name}: {d}");
    }
}

#[test]
fn software_encoders_take_the_documented_units() {
    gst::init().unwrap();
    // GStreamer reads the values back in the element's own units.
    let generic = BoardProfile::builtin("generic-x86-64").unwrap();
    let p = gst::parse::launch(&pipeline(&probe(), &generic))
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    let venc = p.by_name("venc").unwrap();
    assert_eq!(venc.factory().unwrap().name(), "x264enc");
    assert_eq!(venc.property::<u32>("bitrate"), 2500); // kbit/s
    assert_eq!(venc.property::<u32>("key-int-max"), 50);
    assert_eq!(venc.property::<u32>("bframes"), 0);

    let arm = BoardProfile::builtin("qemuarm64").unwrap();
    let p = gst::parse::launch(&pipeline(&probe(), &arm))
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
    let venc = p.by_name("venc").unwrap();
    assert_eq!(venc.factory().unwrap().name(), "openh264enc");
    assert_eq!(venc.property::<u32>("bitrate"), 2_500_000); // bit/s
    assert_eq!(venc.property::<u32>("gop-size"), 50);
    let rc = venc.property_value("rate-control");
    let rc = glib_enum_nick(&rc);
    assert_eq!(rc, "bitrate");
    p.set_state(gst::State::Ready).unwrap();
    p.set_state(gst::State::Null).unwrap();
}

fn glib_enum_nick(v: &gst::glib::Value) -> String {
    gst::glib::EnumValue::from_value(v)
        .map(|(_, e)| e.nick().to_string())
        .unwrap_or_default()
}

#[test]
fn openh264_fallback_encodes_in_the_negotiated_profile() {
    gst::init().unwrap();
    // Beyond READY: a few frames through the qemuarm64 encoder settings
    // and the caps the pipeline asks for, so the profile negotiation is
    // known to work with openh264enc.
    let arm = BoardProfile::builtin("qemuarm64").unwrap();
    let i = input(
        "[video]\nsource = \"test-pattern\"\nclock_overlay = false\n[audio]\nsource = \"none\"\n[encode]\nwidth = 320\nheight = 180",
    );
    let d = pipeline(&i, &arm).replace(
        "videotestsrc is-live=true",
        "videotestsrc is-live=false num-buffers=10",
    );
    let p = gst::parse::launch(&d)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = p
        .by_name("video")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(10))
        .expect("an encoded frame");
    let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(caps.name(), "video/x-h264");
    // OpenH264 sets the constraint flags of a High stream that uses no
    // High-only tools beyond what it needs; h264parse reads them from the
    // SPS as "constrained-high", which every High decoder takes.
    let profile = caps.get::<&str>("profile").unwrap();
    assert!(["high", "constrained-high"].contains(&profile), "{profile}");
}

/// Blackmagic's driver library, which decklinkvideosrc loads at run time
/// (libDeckLinkAPI.so, from Desktop Video).
fn decklink_driver_installed() -> bool {
    [
        "/usr/lib/libDeckLinkAPI.so",
        "/usr/lib64/libDeckLinkAPI.so",
        "/usr/lib/x86_64-linux-gnu/libDeckLinkAPI.so",
        "/usr/lib/aarch64-linux-gnu/libDeckLinkAPI.so",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn a_decklink_input_parses_and_fails_to_open_without_the_driver() {
    gst::init().unwrap();
    if gst::ElementFactory::find("decklinkvideosrc").is_none() {
        eprintln!("decklinkvideosrc (gstreamer1.0-plugins-bad) is not installed; skipping");
        return;
    }
    let generic = BoardProfile::builtin("generic-x86-64").unwrap();
    let i = input(
        "[video]\nsource = \"decklink\"\ndevice_number = 0\nmode = \"1080p25\"\nconnection = \"sdi\"\n[audio]\nsource = \"none\"\n[encode]\nwidth = 1920\nheight = 1080\nframerate = 25",
    );
    let d = pipeline(&i, &generic);
    assert!(d.starts_with(
        "decklinkvideosrc device-number=0 mode=1080p25 connection=sdi drop-no-signal-frames=true name=vsrc ! queue"
    ));
    // The description is valid: every element and property value parses.
    let p = gst::parse::launch(&d).unwrap();
    let r = p.set_state(gst::State::Ready);
    let bus_errors: Vec<String> = p
        .bus()
        .unwrap()
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .collect();
    p.set_state(gst::State::Null).unwrap();
    // The source alone, as the description sets it up.
    let src = gst::ElementFactory::make("decklinkvideosrc")
        .property_from_str("device-number", "0")
        .property_from_str("mode", "1080p25")
        .property_from_str("connection", "sdi")
        .build()
        .unwrap();
    let alone = src.set_state(gst::State::Ready);
    src.set_state(gst::State::Null).unwrap();
    // The rest of the pipeline, behind a source that opens anywhere.
    let rest = d.replacen(
        "decklinkvideosrc device-number=0 mode=1080p25 connection=sdi drop-no-signal-frames=true name=vsrc",
        "videotestsrc is-live=true ! video/x-raw,width=1920,height=1080,framerate=25/1",
        1,
    );
    assert_eq!(ready(&rest), Ok(()), "{rest}");
    if decklink_driver_installed() {
        // With the driver, READY also needs a card at device-number 0;
        // either outcome is the machine's, not the pipeline's.
        eprintln!("libDeckLinkAPI.so is installed: READY gave {r:?}, the source alone {alone:?}");
    } else {
        // Without Blackmagic's driver, decklinkvideosrc cannot acquire an
        // input when it opens (NULL -> READY; GStreamer logs "no driver"),
        // so the pipeline stays in NULL. It posts no error message: the
        // failed state change is all there is to see.
        assert!(r.is_err(), "READY without the DeckLink driver: {r:?}");
        assert_eq!(bus_errors, Vec::<String>::new());
        assert!(alone.is_err(), "the source alone: {alone:?}");
    }
}

/// Every board's AAC encoder that exists here (avenc_aac, voaacenc) takes
/// the bitrate in its own unit and encodes real AAC at 48 kHz stereo.
#[test]
fn audio_encoders_take_the_documented_units_and_encode_aac() {
    gst::init().unwrap();
    let spec = input("[encode]\naudio_bitrate_kbps = 96");
    let mut seen = std::collections::BTreeSet::new();
    for name in BoardProfile::builtin_names() {
        let b = BoardProfile::builtin(name).unwrap();
        let element = b.audio_encoder.element.clone();
        if gst::ElementFactory::find(&element).is_none() {
            println!("{name}: {element} is not installed here");
            continue;
        }
        let props: Vec<String> = audio_encoder_properties(&spec, &b)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let p = gst::parse::launch(&format!(
            "audiotestsrc num-buffers=150 ! audioconvert ! audio/x-raw,rate=48000,channels=2 \
             ! {element} name=aenc {} ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw \
             ! appsink name=out sync=false",
            props.join(" ")
        ))
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap();
        let aenc = p.by_name("aenc").unwrap();
        let bitrate = aenc.property_value("bitrate");
        let bitrate = bitrate
            .get::<i32>()
            .map(i64::from)
            .or_else(|_| bitrate.get::<i64>())
            .unwrap();
        assert_eq!(bitrate, 96_000, "{name}: {element} bitrate in bit/s");
        let out = p
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let (mut frames, mut caps) = (0, None);
        while let Ok(s) = out.pull_sample() {
            caps = s.caps().map(|c| c.to_owned());
            frames += 1;
        }
        p.set_state(gst::State::Null).unwrap();
        let caps = caps.unwrap_or_else(|| panic!("{name}: {element} gave no AAC"));
        let s = caps.structure(0).unwrap();
        assert_eq!(s.get::<i32>("rate").unwrap(), 48_000, "{name}");
        assert_eq!(s.get::<i32>("channels").unwrap(), 2, "{name}");
        // 150 x 1024 samples in, one AAC frame per 1024 samples out.
        assert!((148..=151).contains(&frames), "{name}: {frames} AAC frames");
        seen.insert(element);
    }
    // Both encoders the profiles name are installed by install-deps.
    assert!(
        seen.contains("avenc_aac") && seen.contains("voaacenc"),
        "{seen:?}"
    );
}
