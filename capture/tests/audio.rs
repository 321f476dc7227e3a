//! Audio for real: the capture pipeline with a test tone, and with ALSA
//! capture from a real-time virtual sound card (`support/alsa_card.rs`):
//! channel selection, levels, silence and its end, and audio and video on
//! one clock over a long run with a card whose crystal runs fast.
//!
//! alsa-lib finds the virtual card through ALSA_CONFIG_PATH, which it reads
//! from the environment; a test cannot change the environment while other
//! threads run (Rust 2024 makes `set_var` unsafe for that reason). So each
//! ALSA test runs itself again in a child process of this test binary, with
//! the variable set there ([`card_or_rerun`]).

#[path = "support/alsa_card.rs"]
mod alsa_card;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alsa_card::VirtualCard;
use fieldcast_capture::audio::AudioLevels;
use fieldcast_capture::input::InputEvent;
use fieldcast_capture::settings::VideoSource;
use fieldcast_capture::{BoardProfile, InputSpec, InputState};
use fieldcast_media::{Stream, Track};
use tokio::sync::mpsc::UnboundedReceiver;

/// Set in the child process: where its card lives.
const CARD_DIR: &str = "FIELDCAST_TEST_CARD_DIR";

/// Encodes here run one at a time: the machine has two cores, and the
/// drift test measures timing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn input(audio: &str) -> InputSpec {
    let mut spec: InputSpec =
        toml::from_str(&format!("name = \"main\"\n[audio]\n{audio}")).unwrap();
    spec.video = VideoSource::TestPattern {
        pattern: "smpte".into(),
        clock_overlay: false,
    };
    spec.encode.width = 320;
    spec.encode.height = 180;
    spec.encode.gop_frames = 30;
    spec.encode.bitrate_kbps = 300;
    spec
}

/// `[audio]` for the virtual card.
fn alsa(channels: u32, select: &str, extra: &str) -> String {
    format!(
        "source = \"alsa\"\ndevice = \"{}\"\nchannels = {channels}\nrate = 48000\nselect = {select}\n{extra}",
        alsa_card::DEVICE
    )
}

/// In the parent: runs `test` again in a child process with the card's
/// ALSA configuration in its environment, checks it passed, and returns
/// `None`. In that child: the card, running, with the tone on `tone`.
fn card_or_rerun(
    test: &str,
    channels: u32,
    skew_ppm: f64,
    tone: Option<u32>,
) -> Option<VirtualCard> {
    if let Ok(dir) = std::env::var(CARD_DIR) {
        return Some(VirtualCard::new(Path::new(&dir), channels, skew_ppm, tone));
    }
    let dir = std::env::temp_dir().join(format!("fieldcast-card-{}-{test}", std::process::id()));
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CARD_DIR, &dir)
        .env("ALSA_CONFIG_PATH", alsa_card::config_path(&dir))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{test} failed in its child process:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its child process:\n{stdout}"
    );
    None
}

fn has_alsasrc() -> bool {
    gst::init().unwrap();
    if gst::ElementFactory::find("alsasrc").is_none() {
        eprintln!("skipped: GStreamer's alsasrc is missing (gstreamer1.0-alsa)");
        return false;
    }
    true
}

struct Running {
    input: fieldcast_capture::InputHandle,
    events: UnboundedReceiver<InputEvent>,
    stream: std::sync::Arc<Stream>,
}

fn start(spec: InputSpec) -> Running {
    gst::init().unwrap();
    let stream = Stream::new("main", &[Track::Video, Track::Audio]);
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let input = fieldcast_capture::input::spawn(
        spec,
        BoardProfile::builtin("generic-x86-64").unwrap(),
        stream.clone(),
        tx,
    );
    Running {
        input,
        events,
        stream,
    }
}

/// The next event `pick` takes, within `within`.
async fn event<T>(
    events: &mut UnboundedReceiver<InputEvent>,
    within: Duration,
    mut pick: impl FnMut(&InputEvent) -> Option<T>,
) -> T {
    let end = tokio::time::Instant::now() + within;
    loop {
        let e = tokio::time::timeout_at(end, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no such event within {within:?}"))
            .expect("the input is running");
        if let InputEvent::InputLost { reason, .. } = &e {
            panic!("input lost: {reason}");
        }
        if let Some(t) = pick(&e) {
            return t;
        }
    }
}

/// Levels once they have settled (a second of reports).
async fn levels(r: &Running) -> AudioLevels {
    let end = Instant::now() + Duration::from_secs(15);
    while r.input.audio_levels().is_none() {
        assert!(
            Instant::now() < end,
            "no audio levels: {:?}",
            r.input.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    r.input.audio_levels().expect("levels while running")
}

fn near(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} dBFS, expected {want} ± {tolerance}"
    );
}

/// The default line-up tone reads -20 dBFS peak and, a sine's RMS being
/// 3 dB under its peak, -23 dBFS RMS; a silent tone (volume 0) becomes an
/// `audio_silence` event after `silence_after_s`, and the state says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tone_levels_and_silence() {
    let _g = SERIAL.lock().await;
    let r = start(input("source = \"test-tone\""));
    let l = levels(&r).await;
    println!("test tone: {l:?}");
    for ch in 0..2 {
        near("peak", l.peak_dbfs[ch], -20.0, 0.3);
        near("rms", l.rms_dbfs[ch], -23.0, 0.3);
        assert!(l.peak_hold_dbfs[ch] >= l.peak_dbfs[ch]);
    }
    assert!(!l.silent);
    let a = r
        .input
        .status()
        .audio
        .expect("an input with audio has audio status");
    assert!(!a.silent);
    assert_eq!(a.select, [1, 2]);
    assert_eq!(r.input.status().state, InputState::Running);
    r.input.stop().await;

    let spec = input("source = \"test-tone\"\nvolume = 0.0\nsilence_after_s = 1.0");
    let mut r = start(spec);
    let started = Instant::now();
    let (channels, rms, threshold, quiet) =
        event(&mut r.events, Duration::from_secs(20), |e| match e {
            InputEvent::AudioSilence {
                channels,
                rms_dbfs,
                threshold_dbfs,
                silent_for_s,
                ..
            } => Some((
                channels.clone(),
                rms_dbfs.clone(),
                *threshold_dbfs,
                *silent_for_s,
            )),
            _ => None,
        })
        .await;
    println!("silence after {:?}: {rms:?} {quiet}", started.elapsed());
    assert_eq!(channels, [1, 2]);
    assert_eq!(rms, [-100.0, -100.0], "digital silence reads as the floor");
    assert_eq!(threshold, -60.0);
    assert!((1.0..2.0).contains(&quiet), "{quiet}");
    let a = r.input.status().audio.unwrap();
    assert!(a.silent);
    assert!(r.input.audio_levels().unwrap().silent);
    // It is said once, not every tick.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(e) = r.events.try_recv() {
        assert!(
            !matches!(e, InputEvent::AudioSilence { .. }),
            "twice: {e:?}"
        );
    }
    r.input.stop().await;

    let none = start(input("source = \"none\""));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(none.input.status().audio.is_none());
    assert!(none.input.audio_levels().is_none());
    none.input.stop().await;
}

/// ALSA capture from an 8-channel card whose third channel carries the
/// tone: `select = [3, 4]` puts it on the left (alsasrc's own reordering of
/// 8 channels undone), `select = [3]` on both sides; the card going quiet
/// is `audio_silence`, the tone coming back on channel 4 is
/// `audio_restored`, and it is then on the right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alsa_channel_selection_levels_and_silence() {
    let _g = SERIAL.lock().await;
    let Some(card) = card_or_rerun("alsa_channel_selection_levels_and_silence", 8, 0.0, Some(3))
    else {
        return;
    };
    if !has_alsasrc() {
        return;
    }
    let spec = |select: &str| input(&alsa(8, select, "silence_after_s = 1.0"));
    let mut r = start(spec("[3, 4]"));
    let l = levels(&r).await;
    println!("select [3, 4], tone on 3: {l:?}");
    // 8-bit samples on the card: a quantization step is 1/128.
    near("left peak", l.peak_dbfs[0], -20.0, 0.5);
    near("left rms", l.rms_dbfs[0], -23.0, 0.5);
    assert_eq!(
        (l.peak_dbfs[1], l.rms_dbfs[1]),
        (-100.0, -100.0),
        "right: {l:?}"
    );
    // It arrives in real time.
    let rate = card.measured_rate().unwrap();
    println!("the card produces {rate:.0} frames/s");
    assert!((47_000.0..49_000.0).contains(&rate), "{rate}");
    // AAC frames of 1024 samples at 48 kHz: 46.9 a second.
    let audio_frames = |r: &Running| {
        let s = r.stream.stats();
        s.frames - s.video_frames
    };
    let (n, t) = (audio_frames(&r), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_s = (audio_frames(&r) - n) as f64 / t.elapsed().as_secs_f64();
    println!("{per_s:.1} AAC frames/s");
    assert!((42.0..52.0).contains(&per_s), "{per_s} AAC frames/s");

    card.set_tone(None);
    let quiet = event(&mut r.events, Duration::from_secs(10), |e| match e {
        InputEvent::AudioSilence { silent_for_s, .. } => Some(*silent_for_s),
        _ => None,
    })
    .await;
    assert!(r.input.status().audio.unwrap().silent);
    card.set_tone(Some(4));
    let (channels, rms, silent) = event(&mut r.events, Duration::from_secs(10), |e| match e {
        InputEvent::AudioRestored {
            channels,
            rms_dbfs,
            silent_s,
            ..
        } => Some((channels.clone(), rms_dbfs.clone(), *silent_s)),
        _ => None,
    })
    .await;
    println!("silent after {quiet} s of quiet; restored after {silent} s: {rms:?}");
    assert_eq!(channels, [3, 4]);
    // The first report with the tone may hold only part of it.
    assert!((-60.0..=-22.0).contains(&rms[1]), "{rms:?}");
    assert!(!r.input.status().audio.unwrap().silent);
    let l = levels(&r).await;
    assert_eq!(l.peak_dbfs[0], -100.0, "{l:?}");
    near("right peak", l.peak_dbfs[1], -20.0, 0.5);
    r.input.stop().await;

    card.set_tone(Some(3));
    let r = start(spec("[3]"));
    let l = levels(&r).await;
    println!("select [3]: {l:?}");
    for ch in 0..2 {
        near("mono peak", l.peak_dbfs[ch], -20.0, 0.5);
    }
    assert_eq!(r.input.status().state, InputState::Running);
    r.input.stop().await;
    let overruns = card
        .stats
        .overruns
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "card: {} opens, {overruns} periods overrun",
        card.stats.opens.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// One encoded frame as the stream got it.
struct Seen {
    at: Instant,
    pts_ns: i128,
}

/// Mean of `f` over the items whose arrival lies in `[from, to)`.
fn mean_over<T>(items: &[(Instant, T)], from: Instant, to: Instant, f: impl Fn(&T) -> f64) -> f64 {
    let v: Vec<f64> = items
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, t)| f(t))
        .collect();
    assert!(!v.is_empty(), "no frames in the window");
    v.iter().sum::<f64>() / v.len() as f64
}

/// Audio and video on one clock over a long run: a test pattern and ALSA
/// audio from a card whose crystal runs fast (+1000 ppm by default, ten
/// times a poor crystal, so a minute shows what hours would), through
/// x264 and the AAC encoder. From the encoded frames as the stream gets
/// them, with their arrival time:
///
/// - `content`: the audio the receiver plays (AAC frames × 1024 samples)
///   against the video's PTS: a player that plays samples back to back
///   drifts by this much;
/// - `timestamps`: audio PTS against video PTS: what a player that follows
///   timestamps sees;
/// - `audio PTS vs samples`: how far the audio timestamps strayed from the
///   sample count (a gap or overlap in the stream);
/// - `video PTS vs wall clock`.
///
/// Each is the change between the first and the last five seconds (after
/// a settling time), and each must stay within one video frame.
/// `FIELDCAST_DRIFT_SECS` sets the length (default 60; run it for hours
/// with `benches/av_drift.sh`), `FIELDCAST_DRIFT_PPM` the card's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_and_video_do_not_drift_apart() {
    let _g = SERIAL.lock().await;
    let secs: u64 = std::env::var("FIELDCAST_DRIFT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .max(25);
    let ppm: f64 = std::env::var("FIELDCAST_DRIFT_PPM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000.0);
    let Some(card) = card_or_rerun("audio_and_video_do_not_drift_apart", 2, ppm, Some(1)) else {
        return;
    };
    if !has_alsasrc() {
        return;
    }
    let spec = input(&alsa(2, "[1, 2]", ""));
    let frame_ns = 1e9 / spec.encode.framerate.as_f64();
    let r = start(spec);
    let mut sub = r.stream.subscribe(4096);
    let mut video: Vec<(Instant, Seen)> = Vec::new();
    let mut audio: Vec<(Instant, Seen)> = Vec::new();
    let began = Instant::now();
    let end = began + Duration::from_secs(secs);
    let mut next_report = began + Duration::from_secs(10);
    while Instant::now() < end {
        let f = tokio::time::timeout(Duration::from_secs(5), sub.rx.recv())
            .await
            .expect("frames keep coming")
            .expect("the stream is open");
        let at = Instant::now();
        let seen = Seen {
            at,
            pts_ns: f.pts().map_or(-1, |t| t.nseconds() as i128),
        };
        match f.track {
            Track::Video => video.push((at, seen)),
            Track::Audio => audio.push((at, seen)),
        }
        if at >= next_report {
            println!(
                "{:>5.0} s: {} video, {} audio frames; card at {:.0} frames/s",
                (at - began).as_secs_f64(),
                video.len(),
                audio.len(),
                card.measured_rate().unwrap_or(0.0)
            );
            next_report += Duration::from_secs(10);
        }
    }
    assert_eq!(r.input.status().state, InputState::Running);
    let status = r.input.status();
    r.input.stop().await;
    assert!(video.iter().chain(&audio).all(|(_, s)| s.pts_ns >= 0));
    let card_rate = card.measured_rate().unwrap();

    // For each audio frame: the latest video frame that had arrived with
    // it, and what each measure says at that moment.
    struct Point {
        content: f64,
        timestamps: f64,
        stray: f64,
        wall: f64,
    }
    let (a0, v0) = (audio[0].1.pts_ns, video[0].1.pts_ns);
    let t0 = video[0].0;
    let per_frame_ns = 1024.0 * 1e9 / 48_000.0;
    let mut points: Vec<(Instant, Point)> = Vec::new();
    let mut vi = 0;
    for (j, (at, a)) in audio.iter().enumerate() {
        while vi + 1 < video.len() && video[vi + 1].0 <= *at {
            vi += 1;
        }
        let v = &video[vi].1;
        let video_ns = (v.pts_ns - v0) as f64;
        let audio_ns = (a.pts_ns - a0) as f64;
        let content_ns = j as f64 * per_frame_ns;
        points.push((
            *at,
            Point {
                content: content_ns - video_ns,
                timestamps: audio_ns - video_ns,
                stray: audio_ns - content_ns,
                wall: video_ns - (v.at - t0).as_secs_f64() * 1e9,
            },
        ));
    }
    let window = Duration::from_secs(5);
    let settle = began + Duration::from_secs(8);
    let last = audio.last().unwrap().0 - window;
    let drift = |f: &dyn Fn(&Point) -> f64| {
        (mean_over(&points, last, last + window, f)
            - mean_over(&points, settle, settle + window, f))
            / 1e6
    };
    let content = drift(&|p| p.content);
    let timestamps = drift(&|p| p.timestamps);
    let stray = drift(&|p| p.stray);
    let wall = drift(&|p| p.wall);
    let span = (last - settle).as_secs_f64();
    let frame_ms = frame_ns / 1e6;
    println!(
        "A/V drift over {span:.0} s, the card at {card_rate:.1} frames/s ({ppm:+} ppm asked):\n\
         \x20 content (samples played vs video PTS): {content:+.2} ms\n\
         \x20 timestamps (audio PTS vs video PTS):   {timestamps:+.2} ms\n\
         \x20 audio PTS vs sample count:             {stray:+.2} ms\n\
         \x20 video PTS vs wall clock:               {wall:+.2} ms\n\
         \x20 (uncorrected, the card would have drifted {:+.1} ms; one frame is {frame_ms:.1} ms)\n\
         {} video and {} audio frames; {:?}",
        span * ppm / 1e3,
        video.len(),
        audio.len(),
        status.audio
    );
    for (what, ms) in [
        ("content", content),
        ("timestamps", timestamps),
        ("audio PTS vs sample count", stray),
        ("video PTS vs wall clock", wall),
    ] {
        assert!(
            ms.abs() < frame_ms,
            "{what} drifted {ms:+.2} ms over {span:.0} s, more than a frame ({frame_ms:.1} ms)"
        );
    }
}
