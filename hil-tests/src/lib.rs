//! The hardware-in-the-loop harness: boots the firmware's QEMU image
//! (`image/build-qemu.sh --test`) under `qemu-system-x86_64`, provisions its
//! data partition as an installer would (the device's config), networks it
//! to this machine by QEMU's user-mode networking (the guest reaches the
//! host's loopback services at 10.0.2.2), and always powers it off.
//!
//! Tests talk to the device only as an operator would: MQTT through a
//! broker on the host, SRT to a receiver on the host. The serial console
//! (root, in the test image only) is the test-only control channel: the
//! journal after a failure, vivid's controls.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use fieldcast_test_support::{Broker, decode_errors, ffprobe, free_port};

/// What the harness boots: a disk image (GPT with partitions named `boot`,
/// `rootA`, `rootB`, `data`), the kernel QEMU starts directly, its initrd
/// if it needs one, and anything more for the kernel command line.
#[derive(Clone, Debug)]
pub struct Image {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
}

/// The environment the harness reads (`hil-tests/run` sets it from its
/// options): a firmware built elsewhere, e.g. by Yocto for `qemux86-64`.
pub const ENV_DISK: &str = "FIELDCAST_HIL_DISK";
pub const ENV_KERNEL: &str = "FIELDCAST_HIL_KERNEL";
pub const ENV_INITRD: &str = "FIELDCAST_HIL_INITRD";
pub const ENV_APPEND: &str = "FIELDCAST_HIL_APPEND";
/// A directory holding `disk.img`, `vmlinuz` and `initrd.img`, as
/// `image/build-qemu.sh` writes them.
pub const ENV_IMAGE_DIR: &str = "FIELDCAST_HIL_IMAGE";

impl Image {
    /// The image `image/build-qemu.sh` writes into `dir`.
    pub fn in_dir(dir: &Path) -> Image {
        Image {
            disk: dir.join("disk.img"),
            kernel: dir.join("vmlinuz"),
            initrd: Some(dir.join("initrd.img")),
            append: String::new(),
        }
    }

    /// The image named by the environment (see [`ENV_DISK`] and the
    /// rest), `None` when it names none; an error names the variable and
    /// the path that is wrong.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Image>, String> {
        let file = |name: &str| -> Result<Option<PathBuf>, String> {
            match var(name).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) if Path::new(&v).is_file() => Ok(Some(PathBuf::from(v))),
                Some(v) => Err(format!("{name}: '{v}' is not a file")),
            }
        };
        let image = match (file(ENV_DISK)?, file(ENV_KERNEL)?) {
            (Some(disk), Some(kernel)) => Image {
                disk,
                kernel,
                initrd: file(ENV_INITRD)?,
                append: var(ENV_APPEND).unwrap_or_default(),
            },
            (None, None) => match var(ENV_IMAGE_DIR).filter(|v| !v.is_empty()) {
                None => {
                    if let Some(i) = var(ENV_INITRD).filter(|v| !v.is_empty()) {
                        return Err(format!(
                            "{ENV_INITRD}: '{i}' given without {ENV_DISK} and {ENV_KERNEL}"
                        ));
                    }
                    return Ok(None);
                }
                Some(dir) => {
                    let image = Image::in_dir(Path::new(&dir));
                    for f in [&image.disk, &image.kernel]
                        .into_iter()
                        .chain(image.initrd.as_ref())
                    {
                        if !f.is_file() {
                            return Err(format!(
                                "{ENV_IMAGE_DIR}: '{dir}' has no {}",
                                f.file_name().unwrap().to_string_lossy()
                            ));
                        }
                    }
                    image
                }
            },
            (Some(_), None) => return Err(format!("{ENV_DISK} needs {ENV_KERNEL} too")),
            (None, Some(_)) => return Err(format!("{ENV_KERNEL} needs {ENV_DISK} too")),
        };
        for part in ["boot", "rootA", "rootB", "data"] {
            if try_partition_offset(&image.disk, part).is_none() {
                return Err(format!(
                    "{}: '{}' has no GPT partition named '{part}' (the firmware's layout is boot, rootA, rootB, data)",
                    if var(ENV_DISK).is_some() {
                        ENV_DISK
                    } else {
                        ENV_IMAGE_DIR
                    },
                    image.disk.display()
                ));
            }
        }
        Ok(Some(image))
    }

    /// The image under test: the one the environment names, else the test
    /// image built from this checkout (once per run, and cached across
    /// runs while its inputs are unchanged).
    pub fn test_image() -> &'static Image {
        static IMAGE: OnceLock<Image> = OnceLock::new();
        IMAGE.get_or_init(|| {
            match Image::from_env(|k| std::env::var(k).ok()) {
                Ok(Some(image)) => {
                    println!(
                        "image under test: {} (kernel {})",
                        image.disk.display(),
                        image.kernel.display()
                    );
                    return image;
                }
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let started = Instant::now();
            let out = Command::new(root.join("image/build-qemu.sh"))
                .arg("--test")
                .current_dir(&root)
                .stderr(Stdio::inherit())
                .output()
                .expect("image/build-qemu.sh runs");
            assert!(out.status.success(), "building the test image failed");
            let dir = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("the image directory")
                .to_string();
            println!(
                "test image {dir} ready in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Image::in_dir(Path::new(&dir))
        })
    }
}

/// Prints, when a test ends (passed or failed), how long it took with its
/// guest: the per-test timings of the HIL report.
pub struct Timed {
    name: &'static str,
    started: Instant,
}

impl Timed {
    pub fn start(name: &'static str) -> Timed {
        Timed {
            name,
            started: Instant::now(),
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        println!(
            "hil: {} {} in {:.1} s",
            self.name,
            if std::thread::panicking() {
                "failed"
            } else {
                "passed"
            },
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Byte offset of partition `name` in a GPT disk image, `None` when the
/// disk has no partition of that name (or no partition table).
fn try_partition_offset(disk: &Path, name: &str) -> Option<u64> {
    let out = Command::new("sfdisk")
        .arg("-J")
        .arg(disk)
        .output()
        .expect("sfdisk (fdisk) is installed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    v["partitiontable"]["partitions"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["start"].as_u64())
        .map(|s| s * sector)
}

/// Byte offset of partition `name` in a GPT disk image.
fn partition_offset(disk: &Path, name: &str) -> u64 {
    try_partition_offset(disk, name)
        .unwrap_or_else(|| panic!("no partition {name} in {}", disk.display()))
}

/// Runs debugfs commands on the ext4 file system at `offset` in `disk`
/// (writing files into an image without mounting it).
fn debugfs(disk: &Path, offset: u64, requests: &[String]) {
    let target = format!("{}?offset={offset}", disk.display());
    for r in requests {
        let out = Command::new("debugfs")
            .args(["-w", "-R", r, &target])
            .output()
            .expect("debugfs (e2fsprogs) is installed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.lines().skip(1).any(|l| !l.trim().is_empty()),
            "debugfs {r}: {err}"
        );
    }
}

pub struct Guest {
    qemu: Option<Child>,
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    console_sock: PathBuf,
    pub console_log: PathBuf,
    pub booted_at: Instant,
}

impl Guest {
    /// A fresh copy of the test image with `config` as the device's config
    /// on its data partition, booted.
    pub fn boot(image: &Image, config: &str) -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let ok = Command::new("cp")
            .args(["--sparse=always"])
            .arg(&image.disk)
            .arg(&disk)
            .status()
            .unwrap();
        assert!(ok.success(), "copying the image");
        let cfg = dir.path().join("fieldcast.toml");
        std::fs::write(&cfg, config).unwrap();
        let data = partition_offset(&disk, "data");
        debugfs(
            &disk,
            data,
            &[
                "mkdir /fieldcast".into(),
                format!("write {} /fieldcast/fieldcast.toml", cfg.display()),
            ],
        );
        let mut g = Guest {
            qemu: None,
            console_sock: dir.path().join("console.sock"),
            console_log: dir.path().join("console.log"),
            dir,
            disk,
            booted_at: Instant::now(),
        };
        g.start(image);
        g
    }

    /// Powers the guest on (again, after [`Guest::power_cut`]).
    pub fn start(&mut self, image: &Image) {
        let accel = std::env::var("FIELDCAST_HIL_ACCEL").unwrap_or_else(|_| "tcg".into());
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", &accel, "-cpu", "max", "-m", "1024", "-smp", "2"])
            .args(["-nographic", "-no-reboot", "-monitor", "none"])
            .arg("-kernel")
            .arg(&image.kernel)
            .args(
                image
                    .initrd
                    .iter()
                    .flat_map(|i| [std::ffi::OsStr::new("-initrd"), i.as_os_str()]),
            )
            .arg("-append")
            .arg(
                format!(
                    "root=PARTLABEL=rootA ro console=ttyS0 systemd.hostname=fieldcast-hil panic=-1 {}",
                    image.append
                )
                .trim_end(),
            )
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", self.disk.display()))
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,id=s0,path={},server=on,wait=off,logfile={},logappend=on",
                self.console_sock.display(),
                self.console_log.display()
            ))
            .args(["-serial", "chardev:s0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 is installed (qemu-system-x86)");
        self.qemu = Some(child);
        self.booted_at = Instant::now();
    }

    /// Pulls the plug: QEMU killed, nothing flushed.
    pub fn power_cut(&mut self) {
        if let Some(mut q) = self.qemu.take() {
            let _ = q.kill();
            let _ = q.wait();
        }
    }

    /// What the serial console printed so far.
    pub fn console(&self) -> String {
        std::fs::read(&self.console_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Runs `cmd` in the guest's root shell on the serial console (the
    /// test image's control channel) and returns its output.
    pub fn shell(&self, cmd: &str, timeout: Duration) -> Option<String> {
        let mut s = UnixStream::connect(&self.console_sock).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("FC{}x{n}", std::process::id());
        // Markers printed by the shell, not echoed verbatim, so the echo of
        // the command line does not match.
        let line = format!("\necho {tag}'<'; {cmd}; echo {tag}'>'\n");
        s.write_all(line.as_bytes()).ok()?;
        let (start, end) = (format!("{tag}<"), format!("{tag}>"));
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            let text = String::from_utf8_lossy(&out);
            if let (Some(a), Some(b)) = (text.rfind(&start), text.rfind(&end))
                && a < b
            {
                return Some(text[a + start.len()..b].trim().to_string());
            }
        }
        None
    }

    /// The guest's journal of this boot, through the control channel.
    pub fn journal(&self) -> String {
        self.shell(
            "journalctl -b --no-pager -n 200 -o short-monotonic",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| "(the console did not answer)".into())
    }

    /// On failure: what the console printed and what the journal says.
    pub fn diagnose(&self) -> String {
        let console = self.console();
        let tail: Vec<&str> = console.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- serial console (last 60 lines) ---\n{}\n--- journal ---\n{}",
            tail.join("\n"),
            self.journal()
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.power_cut();
    }
}

/// Waits until `topic` (retained or live) carries `payload`, and returns
/// when that was.
pub async fn wait_for_message(
    port: u16,
    topic: &str,
    payload: &str,
    timeout: Duration,
) -> Option<Instant> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new(format!("hil-{}", free_port()), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = AsyncClient::new(o, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.ok()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, el.poll()).await.ok()?;
        match ev {
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic && p.payload == payload => {
                return Some(Instant::now());
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `srt-live-transmit` listening on `port`, writing what arrives to `out`.
pub struct SrtReceiver {
    child: Child,
    pub out: PathBuf,
    stopped: bool,
}

impl SrtReceiver {
    pub fn start(port: u16, out: &Path) -> SrtReceiver {
        let file = std::fs::File::create(out).unwrap();
        let child = Command::new("srt-live-transmit")
            .args(["-q", &format!("srt://:{port}?mode=listener"), "file://con"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit is installed (srt-tools)");
        SrtReceiver {
            child,
            out: out.to_path_buf(),
            stopped: false,
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    pub fn stop(&mut self) {
        if !std::mem::replace(&mut self.stopped, true) {
            terminate(&mut self.child);
        }
    }
}

/// SIGTERM (so srt-live-transmit flushes its file), then reap.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for SrtReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A device config for the guest: its broker and SRT receiver are on this
/// machine (10.0.2.2 from inside QEMU's user network), its input a small
/// test pattern (the guest encodes under emulation).
pub fn device_config(device: &str, broker_port: u16, extra: &str) -> String {
    format!(
        r#"[device]
id = "{device}"
board = "qemux86-64"
data_dir = "/data/fieldcast"

[mqtt]
url = "mqtt://10.0.2.2:{broker_port}"
keep_alive_s = 5
telemetry_interval_s = 2

[[inputs]]
name = "main"
[inputs.video]
source = "test-pattern"
clock_overlay = false
[inputs.audio]
source = "none"
[inputs.encode]
width = 320
height = 180
framerate = 15
bitrate_kbps = 300
gop_frames = 15

{extra}
"#
    )
}

/// An MQTT 5 client on the host's broker: sends a device a command with a
/// response topic and waits for its reply; records what the device
/// publishes.
pub struct Operator {
    client: rumqttc::v5::AsyncClient,
    replies: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    reply_topic: String,
    device: String,
}

impl Operator {
    pub async fn connect(port: u16, device: &str) -> Operator {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions, mqttbytes::v5::Packet};
        let id = format!("hil-op-{}", free_port());
        let mut o = MqttOptions::new(id.clone(), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10));
        // The device's state and discovery reports run to tens of KiB.
        o.set_max_packet_size(Some(4 << 20));
        let (client, mut el) = AsyncClient::new(o, 64);
        let reply_topic = format!("hil/{id}/reply");
        let (tx, replies) = tokio::sync::mpsc::unbounded_channel();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, rt) = (seen.clone(), reply_topic.clone());
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let body = String::from_utf8_lossy(&p.payload).into_owned();
                        if topic == rt {
                            let _ = tx.send(serde_json::from_str(&body).unwrap_or_default());
                        } else {
                            s.lock().unwrap().push((topic, body));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        client
            .subscribe(format!("fieldcast/{device}/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(reply_topic.clone(), QoS::AtLeastOnce)
            .await
            .unwrap();
        Operator {
            client,
            replies,
            seen,
            reply_topic,
            device: device.to_string(),
        }
    }

    /// Sends `command` with `payload` and waits for the device's answer.
    pub async fn request(&mut self, command: &str, payload: &str) -> serde_json::Value {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::PublishProperties;
        let props = PublishProperties {
            response_topic: Some(self.reply_topic.clone()),
            correlation_data: Some(format!("{}", free_port()).into_bytes().into()),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                format!("fieldcast/{}/cmd/{command}", self.device),
                QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
                props,
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.replies.recv())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command} within 60 s"))
            .unwrap()
    }

    /// Payloads the device published on `leaf` (`status`, `events`, …).
    pub fn seen(&self, leaf: &str) -> Vec<String> {
        let topic = format!("fieldcast/{}/{leaf}", self.device);
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == topic)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The last JSON the device published on `leaf`.
    pub fn last(&self, leaf: &str) -> Option<serde_json::Value> {
        self.seen(leaf)
            .last()
            .and_then(|b| serde_json::from_str(b).ok())
    }

    /// Push `id` as the last state shows it.
    pub fn push(&self, id: &str) -> Option<serde_json::Value> {
        self.last("state")?["outputs"]
            .as_array()?
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
    }

    /// Events named `name` the device published.
    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        self.seen("events")
            .iter()
            .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Waits until `f` holds of what was seen.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Operator) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Waits until the device published `payload` on `leaf` more than
    /// `after` times.
    pub async fn wait_seen(
        &self,
        leaf: &str,
        payload: &str,
        after: usize,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.seen(leaf).iter().filter(|p| *p == payload).count() > after {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

#[cfg(test)]
mod image_tests {
    use super::*;
    use std::collections::HashMap;

    /// A sparse GPT disk with the firmware's partitions (or `parts`).
    fn disk(dir: &Path, parts: &[&str]) -> PathBuf {
        let d = dir.join("disk.img");
        std::fs::File::create(&d)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let mut table = String::from("label: gpt\n");
        for p in parts {
            table.push_str(&format!("size=8MiB, name={p}\n"));
        }
        let mut c = Command::new("sfdisk")
            .arg("-q")
            .arg(&d)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(table.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
        d
    }

    fn from(vars: &[(&str, &Path)]) -> Result<Option<Image>, String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.display().to_string()))
            .collect();
        Image::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn an_image_from_elsewhere_is_named_by_its_files() {
        let t = tempfile::tempdir().unwrap();
        let d = disk(t.path(), &["boot", "rootA", "rootB", "data"]);
        let k = t.path().join("bzImage");
        std::fs::write(&k, b"kernel").unwrap();
        assert!(from(&[]).unwrap().is_none());

        let i = from(&[(ENV_DISK, &d), (ENV_KERNEL, &k)]).unwrap().unwrap();
        assert_eq!((i.disk, i.kernel, i.initrd), (d.clone(), k.clone(), None));

        let missing = t.path().join("nope");
        let e = from(&[(ENV_DISK, &d), (ENV_KERNEL, &missing)]).unwrap_err();
        assert_eq!(
            e,
            format!("{ENV_KERNEL}: '{}' is not a file", missing.display())
        );
        let e = from(&[(ENV_DISK, &d)]).unwrap_err();
        assert_eq!(e, format!("{ENV_DISK} needs {ENV_KERNEL} too"));
        let e = from(&[(ENV_INITRD, &k)]).unwrap_err();
        assert!(e.starts_with(ENV_INITRD), "{e}");

        // The harness provisions the data partition and the kernel mounts
        // rootA: a disk without the firmware's layout is refused up front.
        let t2 = tempfile::tempdir().unwrap();
        let other = disk(t2.path(), &["boot", "root"]);
        let e = from(&[(ENV_DISK, &other), (ENV_KERNEL, &k)]).unwrap_err();
        assert!(e.contains("no GPT partition named 'rootA'"), "{e}");
    }

    #[test]
    fn an_image_directory_needs_all_three_files() {
        let t = tempfile::tempdir().unwrap();
        disk(t.path(), &["boot", "rootA", "rootB", "data"]);
        std::fs::write(t.path().join("vmlinuz"), b"kernel").unwrap();
        let e = from(&[(ENV_IMAGE_DIR, t.path())]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{ENV_IMAGE_DIR}: '{}' has no initrd.img",
                t.path().display()
            )
        );
        std::fs::write(t.path().join("initrd.img"), b"initrd").unwrap();
        let i = from(&[(ENV_IMAGE_DIR, t.path())]).unwrap().unwrap();
        assert_eq!(i.initrd, Some(t.path().join("initrd.img")));
    }
}
