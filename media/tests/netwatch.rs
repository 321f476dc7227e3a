//! The network watcher against the real kernel: a private network namespace
//! per test, changed with iproute2's `ip`, so the host is never touched.
//!
//! unshare(CLONE_NEWNET) moves only the calling thread into the new
//! namespace (unshare(2)); the watcher's socket is bound where it is created
//! and the `ip` children inherit the namespace of the thread that spawns
//! them. So one thread owns the namespace, and everything that must happen
//! inside it is sent to that thread to run.

use std::process::Command;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fieldcast_media::netwatch::{self, NetChange};
use tokio::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in a fresh network namespace, running closures on request.
struct Netns {
    jobs: Option<std_mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Netns {
    /// Err carries the reason to skip (no privilege, no netns support).
    fn new() -> Result<Self, String> {
        let (jobs, job_rx) = std_mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: plain syscall; affects only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let _ = ready_tx.send(Err(std::io::Error::last_os_error()));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            // Runs until the sender is dropped; the namespace goes with the
            // thread and the last socket in it.
            for job in job_rx {
                job();
            }
        });
        match ready_rx.recv().expect("netns thread died") {
            Ok(()) => Ok(Self {
                jobs: Some(jobs),
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(match e.raw_os_error() {
                    Some(libc::EPERM) => {
                        format!("unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN, run as root ({e})")
                    }
                    Some(libc::EINVAL) => {
                        format!("kernel without network namespaces (CONFIG_NET_NS) ({e})")
                    }
                    _ => panic!("unshare(CLONE_NEWNET): {e}"),
                })
            }
        }
    }

    /// Runs `f` on the namespace's thread and returns its result.
    fn call<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std_mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .expect("netns open")
            .send(job)
            .expect("netns thread alive");
        rx.recv().expect("netns job finished")
    }

    /// Runs `ip ARGS…` inside the namespace; Err holds its stderr.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.call(move || {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("running ip (iproute2): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Receives every change that arrives until the watcher has been quiet for
/// `quiet`, waiting at most `first` for the first one.
fn collect(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<NetChange>,
    first: Duration,
    quiet: Duration,
) -> Vec<NetChange> {
    let mut got = Vec::new();
    let mut wait = first;
    while let Ok(Some(change)) = rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await })
    {
        got.push(change);
        wait = quiet;
    }
    got
}

/// Adds a virtual link with no peer and carrier as soon as it is up. The
/// dummy driver is the obvious choice; kernels built without it
/// (CONFIG_DUMMY) get ifb, which behaves the same here.
fn add_virtual_link(ns: &Netns, name: &str) {
    if let Err(dummy) = ns.ip(&["link", "add", name, "type", "dummy"]) {
        ns.ip(&["link", "add", name, "type", "ifb"])
            .unwrap_or_else(|ifb| panic!("no virtual link type: {dummy}; {ifb}"));
    }
}

fn kinds(changes: &[NetChange]) -> Vec<&'static str> {
    let mut k: Vec<_> = changes.iter().flat_map(|c| c.kinds.clone()).collect();
    k.sort();
    k.dedup();
    k
}

#[test]
fn netwatch_reports_real_link_address_and_route_changes_coalesced() {
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(reason) => {
            eprintln!("skipping netwatch integration test: {reason}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // Wider than the daemon's 300 ms so that four `ip` runs on a loaded
    // two-core builder still fall into one burst.
    // An uplink that exists before the watcher starts: learned from the
    // initial dump, so what the kernel says about it later is compared with
    // its real state rather than reported as new.
    add_virtual_link(&ns, "fcd1");
    ns.ip(&["link", "set", "fcd1", "up"]).unwrap();
    ns.ip(&["addr", "add", "10.78.0.1/24", "dev", "fcd1"])
        .unwrap();

    // Wider than the daemon's 300 ms so that four `ip` runs on a loaded
    // two-core builder still fall into one burst.
    let (mut rx, watch) = ns
        .call(|| netwatch::spawn(Duration::from_millis(500)))
        .expect("starting the watcher in the namespace");

    // Nothing happens, nothing is reported: the initial dumps of the
    // namespace's links and addresses are state, not change.
    let idle = collect(&rt, &mut rx, Duration::from_secs(1), Duration::ZERO);
    assert_eq!(idle, vec![], "reported without any change");

    // An uplink appears, comes up, gets an address and the default route:
    // the shape of a WAN switch.
    let started = Instant::now();
    add_virtual_link(&ns, "fcd0");
    ns.ip(&["link", "set", "fcd0", "up"]).unwrap();
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "fcd0"])
        .unwrap();
    ns.ip(&["route", "add", "default", "via", "10.77.0.254"])
        .unwrap();
    let changes = collect(&rt, &mut rx, Duration::from_secs(5), Duration::from_secs(2));
    assert!(!changes.is_empty(), "no change reported within 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        kinds(&changes),
        ["address", "link", "route"],
        "{changes:#?}"
    );
    // Those commands make about a dozen netlink messages (link twice,
    // addresses and routes for IPv4 and IPv6); they must arrive as one
    // change, or two if the builder stalled between commands.
    assert!(changes.len() <= 2, "not coalesced: {changes:#?}");
    assert!(
        changes.iter().any(|c| c.kinds.len() >= 2),
        "not coalesced: {changes:#?}"
    );
    let summary: String = changes.iter().map(|c| c.summary.as_str()).collect();
    for expected in [
        "link fcd0 up",
        "address 10.77.0.1/24 added on fcd0",
        "default route via 10.77.0.254 dev fcd0 added",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} not in {summary:?}"
        );
    }

    // Noise: RTM_NEWLINK with the same up/carrier state, and RTM_NEWADDR
    // for a known address whose lifetimes were refreshed (what a router
    // advertisement does to SLAAC addresses), also on the link that existed
    // before the watcher.
    ns.ip(&["link", "set", "fcd0", "alias", "uplink"]).unwrap();
    ns.ip(&["link", "set", "fcd0", "mtu", "1400"]).unwrap();
    ns.ip(&["link", "set", "fcd1", "alias", "standby"]).unwrap();
    for dev in ["fcd0", "fcd1"] {
        let addr = if dev == "fcd0" {
            "10.77.0.1/24"
        } else {
            "10.78.0.1/24"
        };
        ns.ip(&[
            "addr",
            "change",
            addr,
            "dev",
            dev,
            "valid_lft",
            "600",
            "preferred_lft",
            "600",
        ])
        .unwrap();
    }
    let noise = collect(&rt, &mut rx, Duration::from_secs(1), Duration::ZERO);
    assert_eq!(noise, vec![], "alias, MTU and lifetime updates reported");

    // The uplink goes away.
    ns.ip(&["link", "del", "fcd0"]).unwrap();
    let gone = collect(&rt, &mut rx, Duration::from_secs(5), Duration::from_secs(1));
    assert_eq!(gone.len(), 1, "{gone:#?}");
    assert_eq!(gone[0].kinds, ["link", "address"], "{gone:#?}");
    for expected in [
        "link fcd0 removed",
        "address 10.77.0.1/24 removed from fcd0",
    ] {
        assert!(
            gone[0].summary.contains(expected),
            "{expected:?} not in {gone:#?}"
        );
    }

    // Stopping ends the thread, which drops the sender.
    watch.stop();
    assert_eq!(rt.block_on(rx.recv()), None);
}
