//! The broker side: TLS with a client certificate and a password, and a
//! broker that goes away and comes back.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

const DEV: &str = "broker-test";

struct TlsBroker {
    plain: u16,
    tls: u16,
    _proc: Proc,
}

fn tls_broker(dir: &Path) -> TlsBroker {
    make_certs(dir);
    let pw = dir.join("passwords");
    let ok = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["enc", "broker-secret-7"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (plain, tls) = (free_port(), free_port());
    let d = dir.display();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // The test runs as root and its files are private: keep
            // mosquitto from dropping to its own user.
            "user root\nper_listener_settings true\npersistence false\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n\
             cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\n",
            pw = pw.display()
        ),
    )
    .unwrap();
    TlsBroker {
        plain,
        tls,
        _proc: mosquitto(&conf, tls),
    }
}

fn tls_config(dir: &Path, tls: u16, password: &str) -> String {
    let d = dir.display();
    config(DEV, 1, &dir.join("data"), "").replace(
        "url = \"mqtt://127.0.0.1:1\"",
        &format!(
            "url = \"mqtts://127.0.0.1:{tls}\"\nusername = \"enc\"\npassword = \"{password}\"\n\
             ca_file = \"{d}/ca.pem\"\nclient_cert_file = \"{d}/client.pem\"\nclient_key_file = \"{d}/client.key\""
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate_and_password() {
    let _g = serial().await;
    let tmp = tempfile::tempdir().unwrap();
    let broker = tls_broker(tmp.path());
    let mut mqtt = Mqtt::connect(broker.plain, &format!("fieldcast/{DEV}/#")).await;

    // A wrong password: refused by the broker, retried, never logged.
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::copy(tmp.path().join(f), bad_dir.join(f)).unwrap();
    }
    let bad = Daemon::start_in(
        &bad_dir,
        &tls_config(&bad_dir, broker.tls, "not-the-password-3"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mqtt.last(&format!("fieldcast/{DEV}/status")), None);
    let log = bad.log_text();
    assert!(log.contains("MQTT connection failed"), "{log}");
    assert!(!log.contains("not-the-password-3"));
    drop(bad);

    let daemon = Daemon::start_in(
        tmp.path(),
        &tls_config(tmp.path(), broker.tls, "broker-secret-7"),
    );
    mqtt.wait_for("device online over TLS", Duration::from_secs(20), |m| {
        m.last(&format!("fieldcast/{DEV}/status")) == Some(json!("online"))
    })
    .await;
    let r = mqtt
        .request(&format!("fieldcast/{DEV}/cmd/state.get"), "")
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(!daemon.log_text().contains("broker-secret-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_is_survived() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    // The broker is away for a while, then back with no memory at all.
    rig.broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.broker.start_again();
    rig.mqtt = Mqtt::connect(rig.broker.port, &format!("fieldcast/{DEV}/#")).await;
    // Back online, its retained state republished, and it answers commands
    // (it subscribed again).
    let (status, state) = (rig.topic("status"), rig.topic("state"));
    rig.mqtt
        .wait_for("online again with state", Duration::from_secs(40), |m| {
            m.last(&status) == Some(json!("online")) && m.last(&state).is_some()
        })
        .await;
    rig.ok("push.list", "").await;
}

/// Two devices configured with the same id take each other's MQTT session
/// over and over; the daemon backs off and says what is likely wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_device_id_is_reported() {
    let _g = serial().await;
    let broker = Broker::start();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let one = Daemon::start_in(
        a.path(),
        &config(DEV, broker.port, &a.path().join("data"), ""),
    );
    let two = Daemon::start_in(
        b.path(),
        &config(DEV, broker.port, &b.path().join("data"), ""),
    );
    let hint = "same client id";
    wait_until("the duplicate id hint", Duration::from_secs(40), || {
        one.log_text().contains(hint) || two.log_text().contains(hint)
    });
    // Backing off, not flapping twice a second.
    let flaps = one.log_text().matches("MQTT connection failed").count()
        + two.log_text().matches("MQTT connection failed").count();
    assert!(flaps < 40, "{flaps} reconnects");
}

/// With the broker gone, the daemon still stops promptly on SIGTERM (it
/// never waits on the broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_promptly_while_the_broker_is_away() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    rig.broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    assert!(
        rig.stop("TERM"),
        "fieldcastd did not exit on SIGTERM without a broker"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
