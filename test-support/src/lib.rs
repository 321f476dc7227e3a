//! What the test suites share: free ports, child processes killed when
//! dropped, a mosquitto broker of a test's own, and what a receiver's file
//! holds according to ffprobe and ffmpeg. Used by the appliance's tests
//! (`appliance/tests/support`) and the QEMU tests (`hil-tests`).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` (its standard output discarded) and waits up to
    /// `within` for it to accept TCP connections on 127.0.0.1:`port`.
    pub fn listening(cmd: &mut Command, name: &str, port: u16, within: Duration) -> Proc {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start ({e}); scripts/test.sh installs it"));
        let proc = Proc {
            child,
            name: name.into(),
        };
        wait_until(&format!("{name} to listen"), within, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        proc
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's mosquitto on its own loopback port.
pub struct Broker {
    pub port: u16,
    proc: Option<Proc>,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `mosquitto -c conf` and waits until it listens on `port`.
pub fn mosquitto(conf: &Path, port: u16) -> Proc {
    Proc::listening(
        Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stderr(Stdio::null()),
        "mosquitto",
        port,
        Duration::from_secs(10),
    )
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        Broker {
            port,
            proc: Some(mosquitto(&conf, port)),
            conf,
            _dir: dir,
        }
    }

    /// Kills the broker (it keeps nothing: no persistence).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Starts it again on the same port, with no memory of anything.
    pub fn start_again(&mut self) {
        self.proc = Some(mosquitto(&self.conf, self.port));
    }
}

/// What ffprobe finds in a file: its first video and audio streams.
#[derive(Debug)]
pub struct Probe {
    pub video_codec: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub audio_codec: Option<String>,
    pub audio_rate: Option<u64>,
    pub audio_channels: Option<u64>,
    pub duration: f64,
    pub first_video_keyframe: Option<bool>,
}

pub fn ffprobe(file: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(file)
        .output()
        .expect("ffprobe is installed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio");
    let first = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame",
            "-read_intervals",
            "%+#1",
            "-print_format",
            "json",
        ])
        .arg(file)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v["frames"][0]["key_frame"].as_i64())
        .map(|k| k == 1);
    Probe {
        video_codec: video.and_then(|s| s["codec_name"].as_str().map(String::from)),
        width: video.and_then(|s| s["width"].as_u64()),
        height: video.and_then(|s| s["height"].as_u64()),
        audio_codec: audio.and_then(|s| s["codec_name"].as_str().map(String::from)),
        audio_rate: audio.and_then(|s| s["sample_rate"].as_str()?.parse().ok()),
        audio_channels: audio.and_then(|s| s["channels"].as_u64()),
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        first_video_keyframe: first,
    }
}

/// What a full decode of the file complains about (continuity errors,
/// corrupt packets, undecodable frames); empty for a clean stream.
pub fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
