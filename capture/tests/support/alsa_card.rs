//! A sound card for tests on machines with no sound hardware and no kernel
//! modules (no snd-dummy, no snd-aloop): alsa-lib's own userspace plugins,
//! fed in real time by a thread of the test.
//!
//! The PCM is a `file` plugin (alsa-lib's pcm_file.c) over the `null`
//! plugin, whose `infile` is a FIFO; a `plug` in front fixes the "card's"
//! format so the test knows what to write. The `null` plugin alone delivers
//! zeros as fast as they are read, so pacing comes from the FIFO: a capture
//! read blocks until the writer has produced the next period.
//!
//! alsa-lib 1.2.8 reads `infile` with one `read()` per period and fills what
//! a short read left with the null plugin's zeros, so every `read()` must
//! find a whole period waiting. The writer therefore writes exactly one
//! period per `write()` (alsasrc's 10 ms, `latency-time`, at 48 kHz: 480
//! frames), at most PIPE_BUF bytes (4096, which makes the write atomic,
//! POSIX `write()`), and non-blocking: when the reader has not kept up and
//! the pipe is full the period is lost, as a real card overruns. 8 channels
//! of 480 frames fit in 4096 bytes as 8-bit samples; up to 4 channels are
//! written as 16-bit.
//!
//! The writer paces itself on CLOCK_MONOTONIC at 48 kHz times
//! `1 + skew_ppm / 1e6`: a card whose crystal runs off, which is what makes
//! audio drift from video over hours.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The PCM name alsasrc opens (`device = "fieldcast_test_card"`).
pub const DEVICE: &str = "fieldcast_test_card";
pub const RATE: u32 = 48_000;
/// alsasrc reads one period of `latency-time` (10 ms by default) at a time.
pub const PERIOD_FRAMES: usize = 480;
/// Linux and POSIX: writes of at most this many bytes to a pipe are atomic.
const PIPE_BUF: usize = 4096;
/// The tone: 1 kHz at 0.1 of full scale, -20 dBFS peak (-23 dBFS RMS).
pub const TONE_HZ: f64 = 1000.0;
pub const TONE_AMPLITUDE: f64 = 0.1;

/// What the card has done, for the test to check it was real.
#[derive(Default)]
pub struct CardStats {
    /// Frames produced since the first reader opened the card.
    pub frames: AtomicU64,
    /// Periods lost because the reader had not taken the previous ones.
    pub overruns: AtomicU64,
    /// Times a reader opened the card.
    pub opens: AtomicU64,
}

pub struct VirtualCard {
    pub dir: PathBuf,
    pub channels: u32,
    pub skew_ppm: f64,
    /// The channel (from 1) carrying the tone, or none: digital silence.
    tone: Arc<Mutex<Option<u32>>>,
    pub stats: Arc<CardStats>,
    /// When the first reader opened the card.
    pub started: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

/// The alsa-lib configuration path that adds the card to the system's
/// configuration: the value of ALSA_CONFIG_PATH for a process that should
/// see it.
pub fn config_path(dir: &Path) -> String {
    format!(
        "/usr/share/alsa/alsa.conf:{}",
        dir.join("asound.conf").display()
    )
}

impl VirtualCard {
    /// Writes the card's ALSA configuration and FIFO into `dir` and starts
    /// its writer, which waits for a reader. The tone starts on `tone`.
    pub fn new(dir: &Path, channels: u32, skew_ppm: f64, tone: Option<u32>) -> VirtualCard {
        assert!((1..=8).contains(&channels), "the card has 1 to 8 channels");
        std::fs::create_dir_all(dir).unwrap();
        let fifo = dir.join("card.fifo");
        let _ = std::fs::remove_file(&fifo);
        let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(ok.success(), "mkfifo {}", fifo.display());
        let format = if bytes_per_sample(channels) == 1 {
            "S8"
        } else {
            "S16_LE"
        };
        std::fs::write(
            dir.join("asound.conf"),
            format!(
                r#"# Fieldcast's test sound card (capture/tests/support/alsa_card.rs).
pcm.{DEVICE} {{
    type plug
    slave {{
        pcm "{DEVICE}_raw"
        format {format}
        rate {RATE}
        channels {channels}
    }}
}}
pcm.{DEVICE}_raw {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{fifo}"
    format "raw"
}}
"#,
                fifo = fifo.display()
            ),
        )
        .unwrap();
        let mut card = VirtualCard {
            dir: dir.to_path_buf(),
            channels,
            skew_ppm,
            tone: Arc::new(Mutex::new(tone)),
            stats: Arc::new(CardStats::default()),
            started: Arc::new(Mutex::new(None)),
            stop: Arc::new(AtomicBool::new(false)),
            writer: None,
        };
        let (tone, stats, started, stop) = (
            card.tone.clone(),
            card.stats.clone(),
            card.started.clone(),
            card.stop.clone(),
        );
        card.writer = Some(std::thread::spawn(move || {
            write_loop(&fifo, channels, skew_ppm, tone, stats, started, stop)
        }));
        card
    }

    /// Puts the tone on `channel` (from 1), or silences the card.
    pub fn set_tone(&self, channel: Option<u32>) {
        *self.tone.lock().unwrap() = channel;
    }

    pub fn config_path(&self) -> String {
        config_path(&self.dir)
    }

    /// Frames per second the card has produced since it was first opened.
    pub fn measured_rate(&self) -> Option<f64> {
        let started = (*self.started.lock().unwrap())?;
        let secs = started.elapsed().as_secs_f64();
        (secs > 1.0).then(|| self.stats.frames.load(Ordering::Relaxed) as f64 / secs)
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn bytes_per_sample(channels: u32) -> usize {
    if PERIOD_FRAMES * channels as usize * 2 <= PIPE_BUF {
        2
    } else {
        1
    }
}

fn write_loop(
    fifo: &Path,
    channels: u32,
    skew_ppm: f64,
    tone: Arc<Mutex<Option<u32>>>,
    stats: Arc<CardStats>,
    started: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
) {
    let width = bytes_per_sample(channels);
    let period_bytes = PERIOD_FRAMES * channels as usize * width;
    assert!(period_bytes <= PIPE_BUF);
    let rate = f64::from(RATE) * (1.0 + skew_ppm / 1e6);
    // Phase of the tone in frames; the card keeps running (and its clock
    // keeps its pace) across readers.
    let mut frame: u64 = 0;
    let mut t0: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        // Opening a FIFO for writing without blocking fails (ENXIO) until
        // someone has it open for reading.
        let mut out = match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => f,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
        };
        stats.opens.fetch_add(1, Ordering::Relaxed);
        let start = *t0.get_or_insert_with(|| {
            let now = Instant::now();
            *started.lock().unwrap() = Some(now);
            now
        });
        let mut chunk = vec![0u8; period_bytes];
        while !stop.load(Ordering::Relaxed) {
            let on = *tone.lock().unwrap();
            fill(&mut chunk, channels, width, frame, on);
            match out.write(&chunk) {
                Ok(n) => assert_eq!(
                    n,
                    chunk.len(),
                    "a write to a pipe of PIPE_BUF or less is whole"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    stats.overruns.fetch_add(1, Ordering::Relaxed);
                }
                // The reader closed the card; wait for the next one.
                Err(_) => break,
            }
            frame += PERIOD_FRAMES as u64;
            stats
                .frames
                .fetch_add(PERIOD_FRAMES as u64, Ordering::Relaxed);
            let due = start + Duration::from_secs_f64(frame as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// One period of interleaved samples: the tone on channel `on` (from 1),
/// digital silence elsewhere.
fn fill(chunk: &mut [u8], channels: u32, width: usize, first: u64, on: Option<u32>) {
    chunk.fill(0);
    let Some(on) = on else { return };
    let c = (on - 1) as usize;
    for i in 0..PERIOD_FRAMES {
        let t = (first + i as u64) as f64 / f64::from(RATE);
        let v = TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin();
        let at = (i * channels as usize + c) * width;
        if width == 1 {
            chunk[at] = ((v * 127.0).round() as i8) as u8;
        } else {
            chunk[at..at + 2].copy_from_slice(&((v * 32767.0).round() as i16).to_le_bytes());
        }
    }
}
