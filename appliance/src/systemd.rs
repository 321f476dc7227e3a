//! systemd's service notifications (sd_notify(3)): `READY=1` once the
//! daemon serves, `WATCHDOG=1` while its control loop turns (a loop that
//! hangs stops the pings and systemd restarts the daemon, `WatchdogSec=`),
//! `STOPPING=1` on the way out. Nothing happens without `NOTIFY_SOCKET`,
//! so the daemon runs the same outside systemd.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::warn;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env() -> Notifier {
        Notifier::new(
            std::env::var("NOTIFY_SOCKET").ok().as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
    }

    /// `socket` is a path or, starting with `@`, an abstract socket name;
    /// `watchdog_usec` the watchdog timeout, meant for us when `watchdog_pid`
    /// is unset or our `pid`.
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let target = socket.filter(|s| !s.is_empty()).and_then(|s| {
            let addr = if let Some(name) = s.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())
            } else {
                SocketAddr::from_pathname(s)
            };
            match (addr, UnixDatagram::unbound()) {
                (Ok(a), Ok(sock)) => Some((sock, a)),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(socket = s, error = %e, "NOTIFY_SOCKET unusable; systemd will not hear from us");
                    None
                }
            }
        });
        let ours = watchdog_pid.is_none_or(|p| p.trim() == pid.to_string());
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2));
        Notifier { target, watchdog }
    }

    /// How often to ping: half the watchdog timeout, or never.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    pub fn notify(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            warn!(error = %e, state, "telling systemd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_socket_and_pings_at_half_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str(), Some("4000000"), None, 7);
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(2)));
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn abstract_sockets_and_other_pids() {
        let name = format!("fieldcast-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let n = Notifier::new(Some(&format!("@{name}")), Some("1000000"), Some("99"), 7);
        assert_eq!(
            n.watchdog_every(),
            None,
            "the watchdog is another process's"
        );
        n.notify("STOPPING=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let n = Notifier::new(None, Some("1000000"), None, 7);
        assert_eq!(n.watchdog_every(), None);
        n.notify("READY=1");
    }
}
