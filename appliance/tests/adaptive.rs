//! Adaptive bitrate on a synthetic link: the SRT receiver sits in a network
//! namespace behind a veth pair whose host side a token bucket (`tc tbf`)
//! throttles. The encoder's bitrate must step down when the link cannot
//! carry the stream and back up once it can, following the configured lead
//! push while a second SRT push on an open link does not decide.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const DEV: &str = "abr-test";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tc(args: &[&str]) {
    let out = Command::new("tc")
        .args(args)
        .output()
        .expect("iproute2 (tc)");
    assert!(
        out.status.success(),
        "tc {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to this one by a veth pair: `host_if` here
/// (10.77.N.1), the peer inside (10.77.N.2). Removed on drop.
struct Netns {
    name: String,
    host_if: String,
    peer_ip: String,
}

impl Netns {
    fn new() -> Netns {
        let n = std::process::id() % 250 + 1;
        let name = format!("fcabr{n}");
        let host_if = format!("fcabr{n}h");
        let ns_if = format!("fcabr{n}n");
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            peer_ip: format!("10.77.{n}.2"),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("10.77.{n}.1/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("10.77.{n}.2/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// Limits what leaves towards the namespace to `rate` (tc syntax).
    fn throttle(&self, rate: &str) {
        tc(&[
            "qdisc",
            "replace",
            "dev",
            &self.host_if,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "16kb",
            "latency",
            "60ms",
        ]);
    }

    fn open(&self) {
        tc(&["qdisc", "del", "dev", &self.host_if, "root"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The namespace's end of the pair goes with it, and takes ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn abr(rig: &Rig) -> Value {
    rig.mqtt
        .last(&rig.topic("telemetry"))
        .map(|t| t["adaptive_bitrate"]["main"].clone())
        .unwrap_or(Value::Null)
}

fn adapted(rig: &Rig) -> Vec<Value> {
    rig.mqtt
        .events(&rig.topic("events"))
        .into_iter()
        .filter(|e| e["event"] == "bitrate_adapted")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrate_follows_the_lead_link_down_and_back_up() {
    let _g = serial().await;
    let net = Netns::new();
    // Noise uses every bit the encoder is given, so the stream's rate is
    // the encoder's bitrate.
    let mut rig = Rig::start_with(DEV, |cfg| {
        cfg.replace("bitrate_kbps = 800", "bitrate_kbps = 1500")
            + "[inputs.video]\nsource = \"test-pattern\"\npattern = \"snow\"\nclock_overlay = false\n\
               [inputs.adaptive_bitrate]\nmin_kbps = 250\nlead = \"uplink\"\n"
    })
    .await;
    let (up_port, local_port) = (free_port(), free_port());
    let up_file = rig.path("uplink.ts");
    let local_file = rig.path("local.ts");
    let mut up_rx = srt_receiver_in(Some(&net.name), up_port, None, &up_file);
    let mut local_rx = srt_receiver(local_port, None, &local_file);
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"uplink","stream":"main","target":"srt://{}:{up_port}?mode=caller&latency=500"}}"#,
            net.peer_ip
        ),
    )
    .await;
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"local","stream":"main","target":"srt://127.0.0.1:{local_port}?mode=caller"}}"#
        ),
    )
    .await;
    rig.wait_push("uplink", "live").await;
    rig.wait_push("local", "live").await;

    // An open link: the ceiling holds, the lead is the configured push.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let a = abr(&rig);
    assert_eq!(a["lead"], "uplink", "{a}");
    assert_eq!(a["bitrate_kbps"], 1500, "{a}");
    assert_eq!(a["state"], "steady", "{a}");
    assert!(adapted(&rig).is_empty(), "{:?}", adapted(&rig));

    // The uplink narrows to 700 kbit/s: down, fast.
    net.throttle("700kbit");
    let took = rig
        .mqtt
        .wait_for("the bitrate to step down", Duration::from_secs(30), |_| {
            abr(&rig)["bitrate_kbps"].as_u64().is_some_and(|k| k <= 600)
        })
        .await;
    println!("stepped down to <= 600 kbit/s {took:?} after the link narrowed");
    let downs = adapted(&rig);
    assert!(!downs.is_empty());
    for d in &downs {
        assert_eq!(d["lead"], "uplink", "{d}");
        assert!(d["to_kbps"].as_u64() < d["from_kbps"].as_u64(), "{d}");
        assert!(!d["reason"].as_str().unwrap_or("").is_empty(), "{d}");
    }
    println!("decisions down: {downs:?}");
    let a = abr(&rig);
    assert_eq!(a["last_decision"]["to_kbps"], a["bitrate_kbps"], "{a}");
    // The encoder runs at it: the input reports it.
    let input = rig.input("main");
    assert!(input["bitrate_kbps"].as_u64().unwrap() <= 600, "{input}");
    // Settled below the link's rate, it stays down while the link is narrow.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let low = abr(&rig)["bitrate_kbps"].as_u64().unwrap();
    assert!(low <= 650, "{}", abr(&rig));

    // Open again: back up in steps, slowly.
    net.open();
    let before_up = adapted(&rig).len();
    rig.mqtt
        .wait_for("two steps up", Duration::from_secs(45), |_| {
            adapted(&rig)[before_up..]
                .iter()
                .filter(|d| d["to_kbps"].as_u64() > d["from_kbps"].as_u64())
                .count()
                >= 2
        })
        .await;
    let ups: Vec<Value> = adapted(&rig)[before_up..].to_vec();
    println!("decisions up: {ups:?}");
    assert!(
        ups.iter()
            .all(|d| d["to_kbps"].as_u64() > d["from_kbps"].as_u64()),
        "only steps up once the link is open: {ups:?}"
    );
    let a = abr(&rig);
    assert!(a["bitrate_kbps"].as_u64().unwrap() > low, "{a}");
    assert!(
        a["last_decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("clear"),
        "{a}"
    );

    // Both pushes stayed connected throughout.
    for id in ["uplink", "local"] {
        let p = rig.listed(id).await;
        assert_eq!(p["state"], "live", "{p}");
        assert_eq!(p["reconnects"], 0, "{p}");
    }
    rig.ok("push.stop", r#"{"id":"uplink"}"#).await;
    rig.ok("push.stop", r#"{"id":"local"}"#).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    up_rx.signal("TERM");
    local_rx.signal("TERM");
    up_rx.wait_exit(Duration::from_secs(5));
    local_rx.wait_exit(Duration::from_secs(5));
    for file in [&up_file, &local_file] {
        let p = ffprobe(file);
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{file:?}");
        assert_eq!((p.width, p.height), (Some(640), Some(360)), "{file:?}");
        assert!(p.duration > 20.0, "{file:?}: {}", p.duration);
    }
}
