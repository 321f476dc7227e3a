//! The capture pipeline as a `gst-launch` description, built from the input
//! and the board profile. Pure: tested as text, and the same text is what
//! `gst-launch-1.0` would take, so an engineer can paste it on a board.

use crate::board::{BoardProfile, Mapping, Value};
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

/// The video encoder element with its fixed and mapped settings.
pub fn video_encoder(input: &InputSpec, board: &BoardProfile) -> String {
    element(
        &board.video_encoder.element,
        video_encoder_properties(input, board),
    )
}

/// The video encoder's properties: the board's fixed ones, the mapped
/// bitrate and GOP, and the controls property (V4L2 encoders) holding the
/// mapped controls.
pub fn video_encoder_properties(input: &InputSpec, board: &BoardProfile) -> Vec<(String, String)> {
    let enc = &board.video_encoder;
    let e = &input.encode;
    let mut props: Vec<(String, String)> = enc
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
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
        (Some(p), _) => props.push((p.clone(), value)),
        (None, Some(c)) => controls.push((c.clone(), value)),
        (None, None) => {}
    };
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

/// Caps after the encoder: the profile (and level) the stream must have.
pub fn video_encoded_caps(input: &InputSpec, board: &BoardProfile) -> String {
    let mut caps = format!("video/x-h264,profile={}", input.encode.profile);
    if let Some(level) = &board.video_encoder.level {
        caps.push_str(&format!(",level=(string){level}"));
    }
    caps
}

fn video_source(input: &InputSpec) -> String {
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
        VideoSource::V4l2 { device } => format!("v4l2src device={}", quote(device)),
        VideoSource::Decklink {
            device_number,
            mode,
            connection,
        } => format!(
            "decklinkvideosrc device-number={device_number} mode={} connection={}",
            quote(mode),
            quote(connection)
        ),
    }
}

/// The video branch, from source to `appsink name=video`. The appsinks
/// keep no `last-sample`: the frame we publish is then the only reference
/// to its buffer, so writing its running-time timestamps copies nothing.
pub fn video_branch(input: &InputSpec, board: &BoardProfile) -> String {
    let e = &input.encode;
    format!(
        "{src} ! queue max-size-buffers=3 leaky=downstream ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,format={fmt},width={w},height={h},framerate={fr},pixel-aspect-ratio=1/1 \
         ! {enc} name=venc ! {caps} ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! appsink name=video sync=false max-buffers=64 enable-last-sample=false",
        src = video_source(input),
        fmt = board.video_encoder.raw_format,
        w = e.width,
        h = e.height,
        fr = e.framerate,
        enc = video_encoder(input, board),
        caps = video_encoded_caps(input, board),
    )
}

/// The audio branch, from source to `appsink name=audio`, or `None`.
pub fn audio_branch(input: &InputSpec, board: &BoardProfile) -> Option<String> {
    let src = match &input.audio {
        AudioSource::None => return None,
        AudioSource::TestTone { frequency_hz } => {
            // volume 0.1 = -20 dBFS, the usual line-up level.
            format!("audiotestsrc is-live=true wave=sine freq={frequency_hz} volume=0.1")
        }
        AudioSource::Alsa { device } => format!("alsasrc device={}", quote(device)),
        AudioSource::Decklink => match &input.video {
            VideoSource::Decklink { device_number, .. } => {
                format!("decklinkaudiosrc device-number={device_number}")
            }
            _ => return None,
        },
    };
    let encoder = format!(
        "{} name=aenc",
        element(
            &board.audio_encoder.element,
            audio_encoder_properties(input, board)
        )
    );
    Some(format!(
        "{src} ! queue max-size-time=200000000 leaky=downstream ! audioconvert ! audioresample \
         ! audio/x-raw,rate=48000,channels=2 ! {encoder} ! aacparse \
         ! audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=audio sync=false max-buffers=64 enable-last-sample=false"
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
            "x264enc bframes=0 speed-preset=veryfast tune=zerolatency bitrate=3000 key-int-max=60"
        );
    }

    #[test]
    fn v4l2_encoder_takes_bps_as_a_control() {
        let b = BoardProfile::builtin("raspberrypi4-64").unwrap();
        let enc = video_encoder(&input(""), &b);
        assert_eq!(
            enc,
            "v4l2h264enc extra-controls=\"controls,repeat_sequence_header=1,video_bitrate=3000000,h264_i_frame_period=60\""
        );
        assert_eq!(
            video_encoded_caps(&input(""), &b),
            "video/x-h264,profile=high,level=(string)4"
        );
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
    fn required_elements_lists_factories() {
        let b = BoardProfile::builtin("raspberrypi4-64").unwrap();
        let els = required_elements(&input(""), &b);
        assert!(els.contains(&"v4l2h264enc".to_string()));
        assert!(els.contains(&"videotestsrc".to_string()));
        assert!(els.contains(&"appsink".to_string()));
        assert!(!els.iter().any(|e| e.starts_with("video/")));
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
