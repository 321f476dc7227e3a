//! The capture pipeline as a `gst-launch` description, built from the input
//! and the board profile. Pure: tested as text, and the same text is what
//! `gst-launch-1.0` would take, so an engineer can paste it on a board.

use crate::audio::{LEVEL_INTERVAL, STREAM_RATE};
use crate::board::{BoardProfile, Codec, Mapping, Value, VideoEncoder};
use crate::settings::{AudioSource, InputSpec, VideoSource};

/// Quotes a value for the launch syntax when it needs it.
fn quote(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:+".contains(c))
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The video encoder element with its fixed and mapped settings: the
/// board's H.264 encoder, which the running pipeline uses.
pub fn video_encoder(input: &InputSpec, board: &BoardProfile) -> String {
    element(
        &board.video_encoder.element,
        video_encoder_properties(input, board),
    )
}

/// The video encoder's properties: the board's fixed and low-latency ones,
/// rate control, profile and level where the element takes them as
/// properties, the mapped bitrate and GOP, and the controls property (V4L2
/// encoders) holding the mapped controls.
pub fn video_encoder_properties(input: &InputSpec, board: &BoardProfile) -> Vec<(String, String)> {
    encoder_properties(&board.video_encoder, Codec::H264, input)
}

/// The board's encoder for `codec` with its settings, or `None` where the
/// board has no encoder for it (H.265 without a hardware encoder). The
/// running pipeline is H.264; H.265 is described and tested as text until
/// the media core carries it.
pub fn video_encoder_for(codec: Codec, input: &InputSpec, board: &BoardProfile) -> Option<String> {
    let enc = board.encoder_for(codec)?;
    let props = video_encoder_properties_for(codec, input, board)?;
    Some(element(&enc.element, props))
}

/// [`video_encoder_properties`] for either codec.
pub fn video_encoder_properties_for(
    codec: Codec,
    input: &InputSpec,
    board: &BoardProfile,
) -> Option<Vec<(String, String)>> {
    Some(encoder_properties(board.encoder_for(codec)?, codec, input))
}

/// The profile name asked for: the input's for H.264; H.265 is Main.
fn profile_name(codec: Codec, input: &InputSpec) -> &str {
    match codec {
        Codec::H264 => &input.encode.profile,
        Codec::H265 => "main",
    }
}

fn encoder_properties(
    enc: &VideoEncoder,
    codec: Codec,
    input: &InputSpec,
) -> Vec<(String, String)> {
    let e = &input.encode;
    let fixed = enc.properties.iter().chain(enc.low_latency.iter());
    let mut props: Vec<(String, String)> = fixed.map(|(k, v)| (k.clone(), v.to_string())).collect();
    let mut controls: Vec<(String, String)> = enc
        .controls
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Bool(b) => i32::from(*b).to_string(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let mut put = |m: &Mapping, value: String| match (&m.property, &m.control) {
        (Some(p), _) => {
            props.push((p.clone(), value.clone()));
            props.extend(m.also.iter().map(|a| (a.clone(), value.clone())));
        }
        (None, Some(c)) => controls.push((c.clone(), value)),
        (None, None) => {}
    };
    // Constant bitrate: a live link has a fixed budget, and a rate that
    // swells on motion is what makes an SRT or RTMP push fall behind.
    if let Some(rc) = &enc.rate_control
        && let Some(v) = rc.values.get("cbr")
    {
        put(rc, v.to_string());
    }
    if let Some(p) = &enc.profile
        && let Some(v) = p.values.get(profile_name(codec, input))
    {
        put(p, v.to_string());
    }
    if let (Some(lm), Some(level)) = (&enc.level_mapping, &enc.level)
        && let Some(v) = lm.values.get(level)
    {
        put(lm, v.to_string());
    }
    put(
        &enc.bitrate,
        enc.bitrate.bitrate(e.bitrate_kbps).to_string(),
    );
    put(&enc.gop, e.gop_frames.to_string());
    if let (Some(cp), false) = (&enc.controls_property, controls.is_empty()) {
        let body: Vec<String> = controls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        props.push((cp.clone(), format!("controls,{}", body.join(","))));
    }
    props
}

/// The audio encoder's properties: the board's fixed ones and the mapped
/// bitrate.
pub fn audio_encoder_properties(input: &InputSpec, board: &BoardProfile) -> Vec<(String, String)> {
    let enc = &board.audio_encoder;
    let mut props: Vec<(String, String)> = enc
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    if let Some(p) = &enc.bitrate.property {
        let bitrate = enc.bitrate.bitrate(input.encode.audio_bitrate_kbps);
        props.push((p.clone(), bitrate.to_string()));
    }
    props
}

/// An element with its properties, in launch syntax.
fn element(name: &str, props: impl IntoIterator<Item = (String, String)>) -> String {
    let mut s = name.to_string();
    for (k, v) in props {
        s.push_str(&format!(" {k}={}", quote(&v)));
    }
    s
}

/// Caps after the H.264 encoder: the profile (and level) the stream must
/// have, for encoders that take them from the caps.
pub fn video_encoded_caps(input: &InputSpec, board: &BoardProfile) -> String {
    encoded_caps(&board.video_encoder, Codec::H264, input)
}

/// [`video_encoded_caps`] for either codec; `None` where the board has no
/// encoder for it.
pub fn video_encoded_caps_for(
    codec: Codec,
    input: &InputSpec,
    board: &BoardProfile,
) -> Option<String> {
    Some(encoded_caps(board.encoder_for(codec)?, codec, input))
}

fn encoded_caps(enc: &VideoEncoder, codec: Codec, input: &InputSpec) -> String {
    let mut caps = codec.caps_name().to_string();
    // An element that takes the profile (or level) as a property gets it
    // there only: the same value in two places could disagree.
    if enc.profile.is_none() {
        caps.push_str(&format!(",profile={}", profile_name(codec, input)));
    }
    if let (Some(level), None) = (&enc.level, &enc.level_mapping) {
        caps.push_str(&format!(",level=(string){level}"));
    }
    caps
}

fn video_source(input: &InputSpec, board: &BoardProfile) -> String {
    let e = &input.encode;
    match &input.video {
        VideoSource::TestPattern {
            pattern,
            clock_overlay,
        } => {
            // Produce the configured size directly: scaling a test pattern
            // is wasted work.
            let mut s = format!(
                "videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={},height={},framerate={}",
                e.width, e.height, e.framerate
            );
            if *clock_overlay {
                s.push_str(
                    " ! clockoverlay time-format=\"%H:%M:%S\" halignment=right valignment=bottom shaded-background=true font-desc=\"Sans 24\"",
                );
            }
            s
        }
        // The input is selected before the pipeline starts (VIDIOC_S_INPUT:
        // v4l2src has no property for it).
        VideoSource::V4l2 { device, .. } => {
            let mut s = format!("v4l2src device={}", quote(device));
            // Exported capture buffers let an encoder that imports dmabuf
            // read the frame where the capture DMA wrote it.
            if let Some(mode) = board.memory.io_mode {
                s.push_str(&format!(" io-mode={}", mode.as_str()));
            }
            s
        }
        VideoSource::Libcamera { camera } => match camera {
            Some(c) => format!("libcamerasrc camera-name={}", quote(c)),
            None => "libcamerasrc".into(),
        },
        VideoSource::Decklink {
            device_number,
            mode,
            connection,
        } => format!(
            // Frames the card marks as having no signal are dropped: the
            // input task watches `signal` and sends the slate instead.
            "decklinkvideosrc device-number={device_number} mode={} connection={} drop-no-signal-frames=true name=vsrc",
            quote(mode),
            quote(connection)
        ),
    }
}

/// From raw frames to the encoder's input: `videoconvert ! videoscale` on
/// system memory, or the board's converter into the encoder's memory
/// (Jetson: `nvvidconv` into NVMM), which scales and converts in hardware.
fn video_convert(input: &InputSpec, board: &BoardProfile) -> String {
    let e = &input.encode;
    let fmt = &board.video_encoder.raw_format;
    match &board.memory.convert {
        None => format!(
            "videoconvert ! videoscale ! videorate \
             ! video/x-raw,format={fmt},width={w},height={h},framerate={fr},pixel-aspect-ratio=1/1",
            w = e.width,
            h = e.height,
            fr = e.framerate,
        ),
        Some(convert) => {
            // The rate is fixed on system memory, before the converter:
            // videorate cannot read the converter's memory, and the
            // converter keeps the rate it is given.
            let feature = board
                .memory
                .caps_feature
                .as_ref()
                .map(|f| format!("({f})"))
                .unwrap_or_default();
            format!(
                "videorate ! video/x-raw,framerate={fr} ! {convert} \
                 ! video/x-raw{feature},format={fmt},width={w},height={h}",
                w = e.width,
                h = e.height,
                fr = e.framerate,
            )
        }
    }
}

/// The video branch, from source to `appsink name=video`. The appsinks
/// keep no `last-sample`: the frame we publish is then the only reference
/// to its buffer, so writing its running-time timestamps copies nothing.
pub fn video_branch(input: &InputSpec, board: &BoardProfile) -> String {
    format!(
        "{src} ! queue max-size-buffers=3 leaky=downstream ! {convert} \
         ! {enc} name=venc ! {caps} ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! appsink name=video sync=false max-buffers=64 enable-last-sample=false",
        src = video_source(input, board),
        convert = video_convert(input, board),
        enc = video_encoder(input, board),
        caps = video_encoded_caps(input, board),
    )
}

/// Rates tried in this order when the config leaves an ALSA device's rate
/// out: the stream's own first, so most devices need no resampling.
const ALSA_RATES: &str = "(int){48000,44100,96000,32000,88200,16000,8000}";

/// How far audio timestamps may wander from what the sample count says
/// before `audiorate` drops samples or inserts silence: under a video frame
/// at 30 fps (one at 50), well above the scheduling jitter of a timestamp
/// taken from the clock as the buffer is read.
pub const AUDIO_ALIGN_TOLERANCE_NS: u64 = 20_000_000;

/// The audio source element(s), up to the first queue.
fn audio_source(input: &InputSpec) -> Option<String> {
    let a = &input.audio;
    Some(match &a.source {
        AudioSource::None => return None,
        AudioSource::TestTone {
            frequency_hz,
            volume,
        } => format!(
            "audiotestsrc is-live=true wave=sine freq={frequency_hz} volume={volume} \
             ! audio/x-raw,rate={STREAM_RATE},channels=2"
        ),
        // One clock for audio and video. The capture pipeline runs on the
        // system clock (CLOCK_MONOTONIC), the clock V4L2 and DeckLink
        // timestamp their frames on. A sound card has a crystal of its own
        // that drifts from it by tens of ppm, so a timeline that counts
        // samples (alsasrc's default `skew`, which only resyncs once the
        // drift exceeds its whole 200 ms buffer) walks away from the video
        // by a frame every ten minutes or so. Here alsasrc provides no clock
        // (the pipeline never runs on the card's), ignores the driver's
        // timestamps (whether a driver fills them in, and on which clock,
        // varies between HDMI bridges and I2S codecs) and stamps each
        // buffer with the pipeline clock as it is read (`re-timestamp`,
        // GstAudioBaseSrc): audio time is wall time, like video time.
        // `audiorate` below then makes the sample count agree with those
        // timestamps.
        AudioSource::Alsa {
            device,
            channels,
            rate,
        } => {
            let rate = rate.map_or_else(|| ALSA_RATES.to_string(), |r| r.to_string());
            format!(
                "alsasrc device={} provide-clock=false use-driver-timestamps=false slave-method=re-timestamp \
                 ! audio/x-raw,channels={channels},rate={rate}",
                quote(device)
            )
        }
        // decklinkaudiosrc stamps audio with the capture time of the video
        // frame it came with, on the pipeline clock.
        AudioSource::Decklink { channels } => match &input.video {
            VideoSource::Decklink { device_number, .. } => {
                format!("decklinkaudiosrc device-number={device_number} channels={channels}")
            }
            _ => return None,
        },
    })
}

/// `audioconvert`, with the mix matrix that puts the selected channels on
/// left and right when they are not simply the first two.
fn channel_selection(input: &InputSpec) -> String {
    match input.audio.mix_matrix() {
        None => "audioconvert".into(),
        Some(rows) => {
            let rows: Vec<String> = rows
                .iter()
                .map(|r| {
                    let cells: Vec<String> = r.iter().map(|v| format!("(float){v}")).collect();
                    format!("<{}>", cells.join(","))
                })
                .collect();
            element(
                "audioconvert",
                [("mix-matrix".to_string(), format!("<{}>", rows.join(",")))],
            )
        }
    }
}

/// The audio branch, from source to `appsink name=audio`, or `None`:
/// source, the selected channels as stereo at 48 kHz, a `level` meter
/// (`name=alevel`, one report per 100 ms) and the AAC encoder. `audiorate`
/// keeps the sample count on the timestamps (dropping or inserting a few
/// milliseconds when a card's crystal or a leaky queue has moved them
/// apart by more than [`AUDIO_ALIGN_TOLERANCE_NS`]), so a player that plays
/// samples back to back stays in step with the video.
pub fn audio_branch(input: &InputSpec, board: &BoardProfile) -> Option<String> {
    let src = audio_source(input)?;
    let encoder = format!(
        "{} name=aenc",
        element(
            &board.audio_encoder.element,
            audio_encoder_properties(input, board)
        )
    );
    Some(format!(
        "{src} ! queue max-size-time=200000000 leaky=downstream \
         ! audiorate tolerance={AUDIO_ALIGN_TOLERANCE_NS} skip-to-first=true ! {select} ! audioresample \
         ! audio/x-raw,rate={STREAM_RATE},channels=2 ! level name=alevel interval={level} ! {encoder} ! aacparse \
         ! audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=audio sync=false max-buffers=64 enable-last-sample=false",
        select = channel_selection(input),
        level = LEVEL_INTERVAL.as_nanos(),
    ))
}

/// The whole capture pipeline.
pub fn pipeline(input: &InputSpec, board: &BoardProfile) -> String {
    let mut s = video_branch(input, board);
    if let Some(a) = audio_branch(input, board) {
        s.push_str("  ");
        s.push_str(&a);
    }
    s
}

/// Elements a description needs, to check before building it.
pub fn required_elements(input: &InputSpec, board: &BoardProfile) -> Vec<String> {
    pipeline(input, board)
        .split('!')
        .flat_map(|seg| seg.split("  "))
        .filter_map(|seg| seg.split_whitespace().next().map(str::to_string))
        .filter(|w| !w.contains('/') && !w.contains('='))
        .collect()
}

/// `branch` with its source (everything before the first queue) replaced.
fn with_source(branch: &str, src: &str) -> String {
    match branch.find(" ! queue") {
        Some(i) => format!("{src}{}", &branch[i..]),
        None => branch.to_string(),
    }
}

/// The slate: what outputs get while the input has no picture. Black with
/// `caption` written on it (when GStreamer's pango plugin is present) and
/// silence, through the same encoder at the same settings, so receivers
/// and ingest servers keep their session and see why.
pub fn slate(input: &InputSpec, board: &BoardProfile, caption: Option<&str>) -> String {
    let e = &input.encode;
    let mut src = format!(
        "videotestsrc is-live=true pattern=black ! video/x-raw,width={},height={},framerate={}",
        e.width, e.height, e.framerate
    );
    if let Some(text) = caption {
        src.push_str(&format!(
            " ! textoverlay text={} valignment=center halignment=center font-desc=\"Sans 24\"",
            quote(text)
        ));
    }
    let mut s = with_source(&video_branch(input, board), &src);
    if let Some(audio) = audio_branch(input, board) {
        s.push_str("  ");
        s.push_str(&with_source(
            &audio,
            "audiotestsrc is-live=true wave=silence",
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: &str) -> InputSpec {
        toml::from_str(&format!("name = \"main\"\n{extra}")).unwrap()
    }

    #[test]
    fn x264_takes_kbps_as_a_property() {
        let b = BoardProfile::builtin("generic-x86-64").unwrap();
        let enc = video_encoder(&input(""), &b);
        assert_eq!(
            enc,
            "x264enc speed-preset=veryfast bframes=0 tune=zerolatency pass=cbr bitrate=3000 key-int-max=60"
        );
    }

    #[test]
    fn v4l2_encoder_takes_bps_as_a_control() {
        let b = BoardProfile::builtin("raspberrypi4-64").unwrap();
        let enc = video_encoder(&input(""), &b);
        assert_eq!(
            enc,
            "v4l2h264enc extra-controls=\"controls,repeat_sequence_header=1,video_bitrate_mode=1,video_bitrate=3000000,h264_i_frame_period=60\""
        );
        assert_eq!(
            video_encoded_caps(&input(""), &b),
            "video/x-h264,profile=high,level=(string)4"
        );
    }

    #[test]
    fn the_memory_path_shapes_the_video_branch() {
        let v4l2 = input(
            "[video]\nsource = \"v4l2\"\ndevice = \"/dev/video0\"\n[audio]\nsource = \"none\"",
        );
        // A dmabuf board exports the capture buffers.
        let rk = BoardProfile::builtin("rockchip-rk3588-evb").unwrap();
        let p = video_branch(&v4l2, &rk);
        assert!(
            p.starts_with("v4l2src device=/dev/video0 io-mode=dmabuf ! queue"),
            "{p}"
        );
        assert!(
            p.contains("videoconvert ! videoscale ! videorate ! video/x-raw,format=NV12,"),
            "{p}"
        );
        // Only V4L2 sources have an io-mode.
        let p = video_branch(&input(""), &rk);
        assert!(!p.contains("io-mode"), "{p}");
        // Jetson: nvvidconv into NVMM replaces videoconvert and videoscale,
        // for every source.
        let jetson = BoardProfile::builtin("jetson-agx-orin-devkit").unwrap();
        for i in [input(""), v4l2.clone()] {
            let p = video_branch(&i, &jetson);
            assert!(
                p.contains("! queue max-size-buffers=3 leaky=downstream ! videorate ! video/x-raw,framerate=30/1 ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12,width=1280,height=720 ! nvv4l2h264enc "),
                "{p}"
            );
            assert!(!p.contains("videoconvert"), "{p}");
            assert!(
                p.contains(" name=venc ! video/x-h264 ! h264parse config-interval=-1"),
                "{p}"
            );
        }
        assert!(!video_branch(&v4l2, &jetson).contains("io-mode"));
        // The software fallback runs on system memory again.
        let p = video_branch(&v4l2, &jetson.with_software_encoder());
        assert!(p.starts_with("v4l2src device=/dev/video0 ! queue"), "{p}");
        assert!(
            p.contains("videoconvert ! videoscale ! videorate ! video/x-raw,format=I420,"),
            "{p}"
        );
        assert!(p.contains("! x264enc ") && !p.contains("nvvidconv"), "{p}");
        // System-memory boards are unchanged.
        let generic = BoardProfile::builtin("generic-x86-64").unwrap();
        assert!(video_branch(&v4l2, &generic).starts_with("v4l2src device=/dev/video0 ! queue"));
    }

    #[test]
    fn h265_is_described_but_not_run() {
        let i = input("");
        let rk = BoardProfile::builtin("rockchip-rk3588-evb").unwrap();
        assert_eq!(
            video_encoder_for(Codec::H265, &i, &rk).unwrap(),
            "mpph265enc header-mode=each-idr rc-mode=cbr bps=3000000 gop=60"
        );
        assert_eq!(
            video_encoded_caps_for(Codec::H265, &i, &rk).unwrap(),
            "video/x-h265,profile=main"
        );
        assert_eq!(
            video_encoder_for(Codec::H264, &i, &rk).unwrap(),
            video_encoder(&i, &rk)
        );
        assert!(!pipeline(&i, &rk).contains("h265"));
        let pi = BoardProfile::builtin("raspberrypi4-64").unwrap();
        assert_eq!(video_encoder_for(Codec::H265, &i, &pi), None);
        assert_eq!(video_encoded_caps_for(Codec::H265, &i, &pi), None);
    }

    #[test]
    fn raw_format_is_pinned_and_output_is_access_units() {
        let b = BoardProfile::builtin("generic-x86-64").unwrap();
        let p = pipeline(&input(""), &b);
        assert!(p.contains("video/x-raw,format=I420,width=1280,height=720,framerate=30/1"));
        assert!(p.contains("h264parse config-interval=-1"));
        assert!(p.contains("alignment=au ! appsink name=video"));
        assert!(p.contains("avenc_aac bitrate=128000"));
        assert!(p.contains("appsink name=audio"));
    }

    #[test]
    fn sources() {
        let b = BoardProfile::builtin("generic-x86-64").unwrap();
        let p = pipeline(
            &input(
                "[video]\nsource = \"v4l2\"\ndevice = \"/dev/video3\"\n[audio]\nsource = \"none\"",
            ),
            &b,
        );
        assert!(p.starts_with("v4l2src device=/dev/video3 ! "));
        assert!(!p.contains("appsink name=audio"));
        let p = pipeline(
            &input(
                "[video]\nsource = \"decklink\"\ndevice_number = 1\n[audio]\nsource = \"decklink\"",
            ),
            &b,
        );
        assert!(p.starts_with("decklinkvideosrc device-number=1 mode=auto connection=sdi"));
        assert!(p.contains("decklinkaudiosrc device-number=1"));
        let p = pipeline(
            &input("[audio]\nsource = \"alsa\"\ndevice = \"hw:1,0\""),
            &b,
        );
        assert!(p.contains("alsasrc device=\"hw:1,0\""), "{p}");
    }

    #[test]
    fn audio_selection_clock_and_meter() {
        gst::init().unwrap();
        let b = BoardProfile::builtin("generic-x86-64").unwrap();
        let i = input(
            "[audio]\nsource = \"alsa\"\ndevice = \"hw:2,0\"\nchannels = 8\nrate = 48000\nselect = [3, 4]",
        );
        let a = audio_branch(&i, &b).unwrap();
        assert!(
            a.starts_with(
                "alsasrc device=\"hw:2,0\" provide-clock=false use-driver-timestamps=false slave-method=re-timestamp ! audio/x-raw,channels=8,rate=48000 ! queue"
            ),
            "{a}"
        );
        assert!(
            a.contains("! audiorate tolerance=20000000 skip-to-first=true ! audioconvert mix-matrix=\"<<(float)0,(float)0,(float)0,(float)0,(float)1,(float)0,(float)0,(float)0>,<(float)0,(float)0,(float)0,(float)0,(float)0,(float)1,(float)0,(float)0>>\" ! audioresample"),
            "{a}"
        );
        assert!(
            a.contains("! audio/x-raw,rate=48000,channels=2 ! level name=alevel interval=100000000 ! avenc_aac"),
            "{a}"
        );
        // Left out, the rate is 48 kHz when the device has it.
        let i = input("[audio]\nsource = \"alsa\"\ndevice = \"hw:1\"\nselect = [2]");
        let a = audio_branch(&i, &b).unwrap();
        assert!(
            a.contains("! audio/x-raw,channels=2,rate=(int){48000,44100,96000,32000,88200,16000,8000} ! queue"),
            "{a}"
        );
        assert!(
            a.contains("mix-matrix=\"<<(float)0,(float)1>,<(float)0,(float)1>>\""),
            "{a}"
        );
        // The parser takes every form (alsasrc only opens the device when
        // the pipeline starts).
        let p = gst::parse::launch(&pipeline(&i, &b)).unwrap();
        drop(p);
        // The test tone's level and a plain stereo pass need no matrix.
        let a = audio_branch(&input("[audio]\nsource = \"test-tone\"\nvolume = 0.0"), &b).unwrap();
        assert!(
            a.starts_with("audiotestsrc is-live=true wave=sine freq=1000 volume=0 ! audio/x-raw,rate=48000,channels=2 ! queue"),
            "{a}"
        );
        assert!(a.contains("! audioconvert ! audioresample"), "{a}");
        let d = input(
            "[video]\nsource = \"decklink\"\ndevice_number = 1\n[audio]\nsource = \"decklink\"\nchannels = 16\nselect = [9, 10]",
        );
        let a = audio_branch(&d, &b).unwrap();
        assert!(
            a.starts_with("decklinkaudiosrc device-number=1 channels=16 ! queue"),
            "{a}"
        );
        assert!(
            a.contains("(float)1,(float)0,(float)0,(float)0,(float)0,(float)0,(float)0>"),
            "{a}"
        );
        assert_eq!(audio_branch(&input("[audio]\nsource = \"none\""), &b), None);
    }

    #[test]
    fn required_elements_lists_factories() {
        let b = BoardProfile::builtin("raspberrypi4-64").unwrap();
        let els = required_elements(&input(""), &b);
        assert!(els.contains(&"v4l2h264enc".to_string()));
        assert!(els.contains(&"videotestsrc".to_string()));
        assert!(els.contains(&"appsink".to_string()));
        assert!(!els.iter().any(|e| e.starts_with("video/")));
    }

    #[test]
    fn the_slate_is_black_and_silent_through_the_same_encoder() {
        gst::init().unwrap();
        let b = BoardProfile::builtin("generic-x86-64").unwrap();
        let i = input(
            "[video]\nsource = \"v4l2\"\ndevice = \"/dev/video0\"\n[encode]\nwidth = 640\nheight = 360",
        );
        let s = slate(&i, &b, Some("NO SIGNAL: v4l2 /dev/video0"));
        assert!(
            s.starts_with("videotestsrc is-live=true pattern=black ! video/x-raw,width=640,height=360,framerate=30/1 ! textoverlay text=\"NO SIGNAL: v4l2 /dev/video0\""),
            "{s}"
        );
        assert!(!s.contains("v4l2src"), "{s}");
        assert!(s.contains("x264enc") && s.contains("name=venc"), "{s}");
        assert!(
            s.contains("audiotestsrc is-live=true wave=silence ! queue"),
            "{s}"
        );
        assert!(s.contains("appsink name=video") && s.contains("appsink name=audio"));
        let p = gst::parse::launch(&slate(&i, &b, None)).unwrap();
        use gst::prelude::*;
        p.set_state(gst::State::Ready).unwrap();
        p.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn generic_pipeline_parses_in_gstreamer() {
        gst::init().unwrap();
        let b = BoardProfile::builtin("generic-x86-64").unwrap();
        let mut i = input("");
        if gst::ElementFactory::find("clockoverlay").is_none() {
            i.video = VideoSource::TestPattern {
                pattern: "smpte".into(),
                clock_overlay: false,
            };
        }
        let p = gst::parse::launch(&pipeline(&i, &b)).unwrap();
        use gst::prelude::*;
        p.set_state(gst::State::Ready).unwrap();
        p.set_state(gst::State::Null).unwrap();
    }
}
