//! Test harness: real peers on loopback. Each test gets its own ports, data
//! directory and broker; heavy tests take [`serial`] so two encodes never
//! share the two cores.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::Value;
use tokio::sync::mpsc;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use fieldcast_test_support::{
    Broker, Probe, Proc, decode_errors, ffprobe, free_port, mosquitto, wait_until,
};

// Each #[tokio::test] has its own runtime; tokio's mutex works across them
// and, unlike std's, may be held over the test's awaits.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Heavy tests run one at a time within a test binary.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The usual setup: a broker, a daemon on the test config (plus `extra`)
/// in its own directory, and a client that saw it come online.
pub struct Rig {
    pub dev: &'static str,
    pub mqtt: Mqtt,
    pub daemon: Daemon,
    pub broker: Broker,
    pub tmp: tempfile::TempDir,
}

impl Rig {
    pub async fn start(dev: &'static str, extra: &str) -> Rig {
        Rig::start_with(dev, |cfg| format!("{cfg}{extra}")).await
    }

    /// Like [`Rig::start`], with the test config passed through `edit`.
    pub async fn start_with(dev: &'static str, edit: impl FnOnce(String) -> String) -> Rig {
        let broker = Broker::start();
        let tmp = tempfile::tempdir().unwrap();
        let cfg = edit(config(dev, broker.port, &tmp.path().join("data"), ""));
        let daemon = Daemon::start_in(tmp.path(), &cfg);
        let mqtt = Mqtt::device(broker.port, dev).await;
        Rig {
            dev,
            mqtt,
            daemon,
            broker,
            tmp,
        }
    }

    /// The config the daemon runs on.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.daemon.config).unwrap()
    }

    /// Ends the daemon with `signal` (`TERM` as systemd does, `KILL` for a
    /// power cut). Returns whether it exited.
    pub fn stop(&mut self, signal: &str) -> bool {
        self.daemon.proc.signal(signal);
        self.daemon
            .proc
            .wait_exit(Duration::from_secs(15))
            .is_some()
    }

    /// Starts a new daemon in the same directory on `config_text`.
    pub fn start_again(&mut self, config_text: &str) {
        self.daemon = Daemon::start_in(self.tmp.path(), config_text);
    }

    /// [`Rig::stop`], then [`Rig::start_again`].
    pub fn restart(&mut self, signal: &str, config_text: &str) -> bool {
        let exited = self.stop(signal);
        self.start_again(config_text);
        exited
    }

    /// What the daemon saved (`data/pushes.json`).
    pub fn saved(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("data/pushes.json")).unwrap()).unwrap()
    }

    /// Waits for the retained status to say `status`.
    pub async fn wait_status(&self, status: &str) {
        let topic = self.topic("status");
        self.mqtt
            .wait_for(&format!("status {status}"), Duration::from_secs(20), |m| {
                m.last(&topic) == Some(Value::String(status.into()))
            })
            .await;
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn topic(&self, leaf: &str) -> String {
        format!("fieldcast/{}/{leaf}", self.dev)
    }

    /// Sends a command and returns the whole reply.
    pub async fn cmd(&mut self, cmd: &str, payload: &str) -> Value {
        let t = self.topic(&format!("cmd/{cmd}"));
        self.mqtt.request(&t, payload).await
    }

    /// Sends a command that must succeed.
    pub async fn ok(&mut self, cmd: &str, payload: &str) -> Value {
        let r = self.cmd(cmd, payload).await;
        assert_eq!(r["ok"], true, "{cmd} {payload}: {r}");
        r
    }

    pub async fn wait_push(&self, id: &str, state: &str) -> Duration {
        self.mqtt
            .wait_push_state(self.dev, id, state, Duration::from_secs(30))
            .await
    }

    /// Push `id` as `push.list` gives it (with its counters and the
    /// protocol's statistics).
    pub async fn listed(&mut self, id: &str) -> Value {
        let list = self.ok("push.list", "").await;
        list["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("push {id} not in push.list: {list}"))
    }

    /// Input `name` as the last retained state shows it.
    pub fn input(&self, name: &str) -> Value {
        let state = self
            .mqtt
            .last(&self.topic("state"))
            .expect("a retained state");
        state["inputs"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no input {name} in {state}"))
    }

    pub fn push(&self, id: &str) -> Option<Value> {
        self.mqtt.push_state(self.dev, id)
    }

    /// Waits until listener push `id` listens for a caller.
    pub async fn wait_listening(&self, id: &str) {
        self.mqtt
            .wait_for(
                &format!("push {id} to listen"),
                Duration::from_secs(30),
                |m| {
                    m.push_state(self.dev, id)
                        .is_some_and(|p| p["state"] == "waiting" && p["reason"] == "for a caller")
                },
            )
            .await;
    }

    /// Waits until the retained state says stream `name` is live.
    pub async fn wait_stream_live(&self, name: &str) {
        let topic = self.topic("state");
        self.mqtt
            .wait_for(
                &format!("stream {name} live"),
                Duration::from_secs(30),
                |m| {
                    m.last(&topic)
                        .is_some_and(|s| s["streams"][name]["live"] == true)
                },
            )
            .await;
    }

    /// `(what, detail)` of push `id`'s history, oldest first.
    pub async fn history(&mut self, id: &str) -> Vec<(String, String)> {
        let r = self
            .ok("push.history", &format!(r#"{{"id":"{id}","limit":1000}}"#))
            .await;
        r["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["what"].as_str().unwrap_or_default().to_string(),
                    e["detail"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Waits until push `id`'s history has `n` entries `what`.
    pub async fn wait_history(&mut self, id: &str, what: &str, n: usize) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let h = self.history(id).await;
            if h.iter().filter(|e| e.0 == what).count() >= n {
                return;
            }
            assert!(Instant::now() < end, "push {id}: no {n} x {what} in {h:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The daemon under test, with a config written from a template.
pub struct Daemon {
    pub proc: Proc,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// A template input for wildcard streams, small and cheap: `cam+ball`
/// shows videotestsrc's "ball" pattern (the suffix fills `$wildcard`).
pub const CAM_TEMPLATE: &str = r#"
[[inputs]]
name = "cam"
template = true
video = { source = "test-pattern", pattern = "$wildcard", clock_overlay = false }
audio = { source = "none" }
encode = { width = 320, height = 180, framerate = 15, bitrate_kbps = 300, gop_frames = 15 }
"#;

/// A small, cheap input for tests: 640x360 at 30 fps, 1 s GOP.
pub fn config(device: &str, broker_port: u16, data_dir: &Path, extra: &str) -> String {
    format!(
        r#"
[device]
id = "{device}"
data_dir = "{data}"

[mqtt]
url = "mqtt://127.0.0.1:{broker_port}"
keep_alive_s = 5
telemetry_interval_s = 1

[[inputs]]
name = "main"
[inputs.encode]
width = 640
height = 360
framerate = 30
bitrate_kbps = 800
gop_frames = 30
profile = "high"
audio_bitrate_kbps = 96

{extra}
"#,
        data = data_dir.display()
    )
}

impl Daemon {
    /// Starts `fieldcastd` on `config_text` in `dir` (kept between restarts
    /// of the same device).
    pub fn start_in(dir: &Path, config_text: &str) -> Daemon {
        Daemon::start_in_env(dir, config_text, &[])
    }

    /// [`Daemon::start_in`] with `env` added to the daemon's environment
    /// (e.g. `ALSA_CONFIG_PATH` for a test sound card).
    pub fn start_in_env(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> Daemon {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("fieldcast.toml");
        std::fs::write(&config, config_text).unwrap();
        let log = dir.join(format!(
            "fieldcastd-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fieldcastd"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon {
            proc: Proc {
                child,
                name: "fieldcastd".into(),
            },
            dir: dir.to_path_buf(),
            config,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("fieldcastd-")
            {
                let mut f = std::fs::File::open(entry.path()).unwrap();
                f.read_to_string(&mut s).unwrap();
            }
        }
        s
    }

    /// Stops the daemon as systemd would (SIGTERM), waiting for it.
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        self.proc.signal("TERM");
        self.proc.wait_exit(Duration::from_secs(15))
    }
}

/// An SRT receiver: `srt-live-transmit` listening, writing what it gets to a
/// file.
pub fn srt_receiver(port: u16, passphrase: Option<&str>, out: &Path) -> Proc {
    srt_receiver_in(None, port, passphrase, out)
}

/// [`srt_receiver`] inside network namespace `netns` (or here).
pub fn srt_receiver_in(
    netns: Option<&str>,
    port: u16,
    passphrase: Option<&str>,
    out: &Path,
) -> Proc {
    let mut url = format!("srt://:{port}?mode=listener");
    if let Some(p) = passphrase {
        url.push_str(&format!("&passphrase={p}"));
    }
    let file = std::fs::File::create(out).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "srt-live-transmit"]);
            c
        }
        None => Command::new("srt-live-transmit"),
    };
    let child = cmd
        .args(["-q", &url, "file://con"])
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit is installed (srt-tools)");
    // It binds at once; give it a moment so the first call is not refused.
    std::thread::sleep(Duration::from_millis(300));
    Proc {
        child,
        name: "srt-live-transmit".into(),
    }
}

/// `ffmpeg` calling our SRT listener and recording `seconds` of it.
pub fn ffmpeg_caller(port: u16, seconds: u32, out: &Path) -> Proc {
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(format!("srt://127.0.0.1:{port}?mode=caller"))
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "mpegts"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed");
    Proc {
        child,
        name: "ffmpeg".into(),
    }
}

/// An MQTT 5 client that records every message under the device's topics
/// and sends commands with a response topic and correlation data.
pub struct Mqtt {
    pub client: AsyncClient,
    pub seen: Arc<Mutex<Vec<(String, Bytes, bool)>>>,
    replies: mpsc::UnboundedReceiver<(Option<Bytes>, Value)>,
    reply_topic: String,
    next: u64,
}

impl Mqtt {
    pub async fn connect(port: u16, watch: &str) -> Mqtt {
        let id = format!("test-{}-{}", std::process::id(), free_port());
        let mut o = MqttOptions::new(id.clone(), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(Some(1 << 20));
        let (client, mut el) = AsyncClient::new(o, 64);
        let reply_topic = format!("test/{id}/reply");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, replies) = mpsc::unbounded_channel();
        let s = seen.clone();
        let rt = reply_topic.clone();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if topic == rt {
                            let corr = p.properties.and_then(|pp| pp.correlation_data);
                            let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                            let _ = tx.send((corr, v));
                        } else {
                            s.lock().unwrap().push((topic, p.payload, p.retain));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        ready.recv().await;
        client.subscribe(watch, QoS::AtLeastOnce).await.unwrap();
        client
            .subscribe(reply_topic.clone(), QoS::AtLeastOnce)
            .await
            .unwrap();
        ready.recv().await;
        ready.recv().await;
        Mqtt {
            client,
            seen,
            replies,
            reply_topic,
            next: 0,
        }
    }

    /// Watches the device's topics and waits until it is online: it
    /// subscribes to its commands before it says so, so requests sent after
    /// this are never lost.
    pub async fn device(port: u16, device: &str) -> Mqtt {
        let m = Mqtt::connect(port, &format!("fieldcast/{device}/#")).await;
        let status = format!("fieldcast/{device}/status");
        m.wait_for("the device to be online", Duration::from_secs(30), |m| {
            m.last(&status) == Some(Value::String("online".into()))
        })
        .await;
        m
    }

    /// Publishes a request with our response topic and a new correlation
    /// id, which it returns.
    async fn publish_request(&mut self, topic: &str, payload: &str) -> Bytes {
        self.next += 1;
        let corr = Bytes::from(format!("req-{}", self.next));
        let props = PublishProperties {
            response_topic: Some(self.reply_topic.clone()),
            correlation_data: Some(corr.clone()),
            ..Default::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_string(), props)
            .await
            .unwrap();
        corr
    }

    /// Sends `payload` to `topic` and waits for the reply with our
    /// correlation data.
    pub async fn request(&mut self, topic: &str, payload: &str) -> Value {
        let corr = self.publish_request(topic, payload).await;
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = tokio::time::timeout_at(end, self.replies.recv())
                .await
                .unwrap_or_else(|_| panic!("no reply to {topic} {payload}"))
                .unwrap();
            if r.0.as_ref() == Some(&corr) {
                return r.1;
            }
        }
    }

    /// Sends `payload` to `topic` (a group topic) and collects every reply
    /// with our correlation data for `wait`.
    pub async fn request_all(&mut self, topic: &str, payload: &str, wait: Duration) -> Vec<Value> {
        let corr = self.publish_request(topic, payload).await;
        let end = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while let Ok(Some(r)) = tokio::time::timeout_at(end, self.replies.recv()).await {
            if r.0.as_ref() == Some(&corr) {
                out.push(r.1);
            }
        }
        out
    }

    /// Every message the device published (our own requests left out), one
    /// per line: what a secret must never appear in.
    pub fn published(&self) -> String {
        self.all_payloads()
            .lines()
            .filter(|l| !l.contains("/cmd/"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last message seen on `topic`.
    pub fn last(&self, topic: &str) -> Option<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _, _)| t == topic)
            .map(|(_, p, _)| {
                serde_json::from_slice(p)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(p).into_owned()))
            })
    }

    pub fn all_payloads(&self) -> String {
        let seen = self.seen.lock().unwrap();
        let mut s = String::new();
        for (t, p, _) in seen.iter() {
            s.push_str(t);
            s.push(' ');
            s.push_str(&String::from_utf8_lossy(p));
            s.push('\n');
        }
        s
    }

    pub fn events(&self, topic: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == topic)
            .filter_map(|(_, p, _)| serde_json::from_slice(p).ok())
            .collect()
    }

    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Mqtt) -> bool,
    ) -> Duration {
        let start = tokio::time::Instant::now();
        while start.elapsed() < timeout {
            if f(self) {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }

    /// Waits until the push `id` in the retained state has `state`.
    pub async fn wait_push_state(
        &self,
        device: &str,
        id: &str,
        state: &str,
        timeout: Duration,
    ) -> Duration {
        let topic = format!("fieldcast/{device}/state");
        self.wait_for(&format!("push {id} to be {state}"), timeout, |m| {
            m.last(&topic).is_some_and(|s| {
                s["outputs"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|p| p["id"] == id && p["state"] == state))
            })
        })
        .await
    }

    pub fn push_state(&self, device: &str, id: &str) -> Option<Value> {
        let topic = format!("fieldcast/{device}/state");
        self.last(&topic).and_then(|s| {
            s["outputs"]
                .as_array()
                .and_then(|o| o.iter().find(|p| p["id"] == id).cloned())
        })
    }
}

/// A small HTTP server on loopback standing in for an operator's web
/// service (a token server, a calendar, a webhook): it records every request
/// and answers with what `answer(method, path, body)` gives (status, body,
/// delay).
pub struct HttpHook {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<(String, String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

type Answer = dyn Fn(&str, &str, &str) -> (u16, String, Duration) + Send + Sync;

impl HttpHook {
    pub async fn start(
        answer: impl Fn(&str, &str, &str) -> (u16, String, Duration) + Send + Sync + 'static,
    ) -> HttpHook {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let answer: Arc<Answer> = Arc::new(answer);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (seen, answer) = (seen.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then as much body as Content-Length says.
                    let (head_end, len) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut first = head.lines().next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_string();
                    let path = first.next().unwrap_or("").to_string();
                    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                    seen.lock()
                        .unwrap()
                        .push((method.clone(), path.clone(), body.clone()));
                    let (status, reply, delay) = answer(&method, &path, &body);
                    tokio::time::sleep(delay).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        HttpHook {
            port,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed")
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
pub fn make_certs(dir: &Path) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=fieldcast test CA",
            days[0],
            days[1],
        ],
    );
    for (name, extra) in [
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "subjectAltName=DNS:broker-test"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), format!("{extra}\n")).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
                days[0],
                days[1],
            ],
        );
    }
}

/// nginx with the RTMP module, on loopback: application `live` takes
/// publishes and records each one to `dir/rec/<key>.flv`, and acknowledges
/// every 64 KiB (`ack_window`), so acknowledgement-based liveness reacts in
/// about a second. Anything in `extra` goes into the `live` application
/// (`on_publish` and so on).
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    pub rec: PathBuf,
    pub dir: PathBuf,
}

impl Nginx {
    pub fn start(dir: &Path, extra: &str) -> Nginx {
        Nginx::start_on(dir, free_port(), extra)
    }

    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Nginx {
        let dir = dir.join(format!("nginx-{port}"));
        let rec = dir.join("rec");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::create_dir_all(&rec).unwrap();
        let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
        assert!(
            Path::new(module).exists(),
            "libnginx-mod-rtmp is installed (scripts/install-deps.sh)"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/logs/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        ack_window 65536;
        application live {{
            live on;
            record all;
            record_path {rec};
            record_unique off;
            {extra}
        }}
    }}
}}
"#,
                dir = dir.display(),
                rec = rec.display(),
            ),
        )
        .unwrap();
        let proc = Proc::listening(
            Command::new("nginx")
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(&dir)
                .stderr(Stdio::null()),
            "nginx",
            port,
            Duration::from_secs(10),
        );
        Nginx {
            proc,
            port,
            rec,
            dir,
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// The recording nginx made of stream `key`.
    pub fn recording(&self, key: &str) -> PathBuf {
        self.rec.join(format!("{key}.flv"))
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

/// stunnel terminating TLS on `port` (certificate `cert`, key `key`) and
/// passing the plain stream to `127.0.0.1:to`: an RTMPS front for nginx, as
/// RTMPS ingest is commonly built.
pub fn tls_front(dir: &Path, port: u16, to: u16, cert: &Path, key: &Path) -> Proc {
    let conf = dir.join(format!("stunnel-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\nsyslog = no\ndebug = 3\noutput = {dir}/stunnel-{port}.log\n\
             [rtmps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{to}\ncert = {cert}\nkey = {key}\n",
            dir = dir.display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    Proc::listening(
        Command::new("stunnel4").arg(&conf).stderr(Stdio::null()),
        "stunnel",
        port,
        Duration::from_secs(10),
    )
}

/// The Python of the test peers' venv (`scripts/install-test-peers.sh`).
pub fn peers_python() -> PathBuf {
    let venv = std::env::var("FIELDCAST_PEERS_VENV")
        .unwrap_or_else(|_| "/opt/fieldcast-test-peers/venv".into());
    let py = PathBuf::from(venv).join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-test-peers.sh",
        py.display()
    );
    py
}

/// A WHIP receiver built on aiortc (`tests/peers/whip_server.py`): takes
/// the offer, answers, records what arrives to Matroska without
/// transcoding, and keeps a JSON status next to it.
pub struct WhipPeer {
    pub proc: Proc,
    pub port: u16,
    pub out: PathBuf,
}

impl WhipPeer {
    pub fn start(dir: &Path, args: &[&str]) -> WhipPeer {
        let port = free_port();
        let out = dir.join(format!("whip-{port}.mkv"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/whip_server.py");
        let log = std::fs::File::create(dir.join(format!("whip-{port}.log"))).unwrap();
        let proc = Proc::listening(
            Command::new(peers_python())
                .arg(script)
                .args(["--port", &port.to_string()])
                .arg("--out")
                .arg(&out)
                .args(args)
                .stderr(log),
            "whip_server",
            port,
            Duration::from_secs(20),
        );
        WhipPeer { proc, port, out }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/whip/{name}", self.port)
    }

    /// The peer's status file.
    pub fn status(&self) -> Value {
        let mut p = self.out.clone().into_os_string();
        p.push(".json");
        std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.out.with_extension("log")).unwrap_or_default()
    }

    /// Ends the peer (SIGTERM), which finalizes its recording.
    pub fn finish(&mut self) {
        self.proc.signal("TERM");
        self.proc.wait_exit(Duration::from_secs(10));
    }
}
