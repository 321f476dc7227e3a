//! When an output counts as live: a pure decision over the protocol's
//! counters, so it is tested with injected time.
//!
//! An output is live only while the peer acknowledges what we send. A socket
//! that is "connected" but whose acknowledgements stopped (a receiver that
//! hung, a NAT that dropped the mapping after a WAN switch) is failed and
//! rebuilt, instead of being reported healthy while nothing arrives. SRT
//! receivers acknowledge every 10 ms while data flows (SRT RFC draft
//! draft-sharabayko-srt, section 4.8.1 "Packet Acknowledgement"); they send
//! nothing when there is nothing new, so a pause of our own data (input
//! lost) is not held against the link.

use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub struct LivenessConfig {
    /// How long a new connection may take to produce its first
    /// acknowledgement.
    pub connect_timeout: Duration,
    /// How long we may send without any acknowledgement coming back.
    pub stall_timeout: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Connecting,
    /// A listener that nobody has called.
    Waiting,
    Live,
    Failed(String),
}

pub struct Liveness {
    cfg: LivenessConfig,
    started: Instant,
    acks: u64,
    sent: u64,
    /// Last time the acknowledgements grew, or our sending paused.
    last_progress: Instant,
    ever_acked: bool,
}

impl Liveness {
    pub fn new(cfg: LivenessConfig, now: Instant) -> Self {
        Self {
            cfg,
            started: now,
            acks: 0,
            sent: 0,
            last_progress: now,
            ever_acked: false,
        }
    }

    /// Whether the peer has acknowledged anything on this connection.
    pub fn acked(&self) -> bool {
        self.ever_acked
    }

    /// Takes the cumulative acknowledgement and sent-packet counters and the
    /// number of connected peers, and says what the output is.
    pub fn observe(
        &mut self,
        now: Instant,
        acks: u64,
        sent: u64,
        peers: usize,
        listener: bool,
    ) -> Verdict {
        let acked = acks > self.acks;
        let sending = sent > self.sent;
        // Counters restart when a listener's callers change; follow them down.
        self.acks = acks;
        self.sent = sent;
        if acked || !sending {
            self.last_progress = now;
        }
        if acked {
            self.ever_acked = true;
        }

        if listener {
            if peers == 0 {
                self.ever_acked = false;
                return Verdict::Waiting;
            }
            // libsrt removes a caller that stops answering (its peer idle
            // timeout), so a listener never fails on its own account.
            return if self.ever_acked && now - self.last_progress < self.cfg.stall_timeout {
                Verdict::Live
            } else {
                Verdict::Connecting
            };
        }

        if !self.ever_acked {
            if now - self.started >= self.cfg.connect_timeout {
                return Verdict::Failed(format!(
                    "no acknowledgement from the receiver within {} s",
                    self.cfg.connect_timeout.as_secs()
                ));
            }
            return Verdict::Connecting;
        }
        if now - self.last_progress >= self.cfg.stall_timeout {
            return Verdict::Failed(format!(
                "stalled: the receiver stopped acknowledging for {} s",
                (now - self.last_progress).as_secs()
            ));
        }
        Verdict::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn caller_goes_live_on_first_ack_and_fails_when_acks_stop() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        assert_eq!(l.observe(at(t0, 1), 0, 10, 1, false), Verdict::Connecting);
        assert_eq!(l.observe(at(t0, 2), 5, 20, 1, false), Verdict::Live);
        assert_eq!(l.observe(at(t0, 3), 9, 30, 1, false), Verdict::Live);
        // Still sending, no more acks.
        assert_eq!(l.observe(at(t0, 5), 9, 40, 1, false), Verdict::Live);
        assert!(
            matches!(l.observe(at(t0, 7), 9, 50, 1, false), Verdict::Failed(r) if r.starts_with("stalled"))
        );
    }

    #[test]
    fn our_own_pause_is_not_a_stall() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        assert_eq!(l.observe(at(t0, 1), 5, 10, 1, false), Verdict::Live);
        for s in 2..20 {
            assert_eq!(l.observe(at(t0, s), 5, 10, 1, false), Verdict::Live);
        }
    }

    #[test]
    fn caller_without_any_ack_times_out() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        assert_eq!(l.observe(at(t0, 9), 0, 10, 0, false), Verdict::Connecting);
        assert!(
            matches!(l.observe(at(t0, 10), 0, 20, 0, false), Verdict::Failed(r) if r.contains("within 10 s"))
        );
    }

    #[test]
    fn listener_waits_for_callers_and_never_fails() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default(), t0);
        assert_eq!(l.observe(at(t0, 60), 0, 0, 0, true), Verdict::Waiting);
        assert_eq!(l.observe(at(t0, 61), 0, 5, 1, true), Verdict::Connecting);
        assert_eq!(l.observe(at(t0, 62), 3, 10, 1, true), Verdict::Live);
        assert_eq!(l.observe(at(t0, 66), 3, 90, 1, true), Verdict::Connecting);
        assert_eq!(l.observe(at(t0, 71), 0, 0, 0, true), Verdict::Waiting);
    }
}
