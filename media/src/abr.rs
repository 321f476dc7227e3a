//! Adaptive bitrate: the encoder's bitrate follows what the leading SRT
//! link can carry. Pure: it reads libsrt's figures once a second and
//! answers with a new bitrate or nothing; the caller sets the encoder.
//!
//! Steps down fast, up slowly (the shape of every congestion controller
//! since Jacobson's: multiplicative decrease, additive increase):
//!
//! - **Severe**: packets dropped too late (the viewer lost them), the send
//!   buffer holding more than half the latency, or more than 15 % of
//!   packets lost: down to 60 %, or to 75 % of what the link delivered if
//!   that is lower. Again after 2 s if it goes on.
//! - **Moderate**: the send buffer growing past RTT + 100 ms for 2 s, more
//!   than 5 % loss, or the RTT more than twice its floor + 40 ms for 2 s
//!   (a queue building up on the path): down to 80 %.
//! - **Clear** for 10 s since the last change: up by 10 % (at least
//!   50 kbit/s), never past `max_kbps`. A level that congested within 10 s
//!   of being reached is not tried again for 60 s.
//!
//! Random loss that retransmission repairs (a few percent on radio links)
//! is not congestion and does not move the bitrate. libsrt's link capacity
//! estimate (`mbpsBandwidth`, from packet pairs) is not used: on a live
//! stream it follows the sending rate, not the link (it read 0.34 Mbit/s on
//! an open veth link carrying 0.33), so it would hold the bitrate down.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::srt_sock::SrtSocketStats;

/// Between two down steps while congestion goes on.
const DOWN_EVERY: Duration = Duration::from_secs(2);
/// Clear time before a step up.
const UP_AFTER: Duration = Duration::from_secs(10);
/// A level that congested soon after being reached stays out of reach
/// this long.
const FAILED_LEVEL_FOR: Duration = Duration::from_secs(60);
const SEVERE_LOSS_PERCENT: f64 = 15.0;
const MODERATE_LOSS_PERCENT: f64 = 5.0;

/// The figures a decision reads: libsrt's counters (totals) and gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkSample {
    pub packets_sent: u64,
    pub packets_lost: u64,
    pub packets_retransmitted: u64,
    pub packets_dropped: u64,
    pub send_buffer_ms: u64,
    pub rtt_ms: f64,
    pub send_rate_mbps: f64,
    pub latency_ms: u64,
}

impl From<&SrtSocketStats> for LinkSample {
    fn from(s: &SrtSocketStats) -> Self {
        LinkSample {
            packets_sent: s.packets_sent,
            packets_lost: s.packets_lost,
            packets_retransmitted: s.packets_retransmitted,
            packets_dropped: s.packets_dropped,
            send_buffer_ms: s.send_buffer_ms,
            rtt_ms: s.rtt_ms,
            send_rate_mbps: s.send_rate_mbps,
            latency_ms: s.negotiated_latency_ms,
        }
    }
}

/// A change of bitrate and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub from_kbps: u32,
    pub to_kbps: u32,
    pub reason: String,
}

/// How the link looks now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// At the ceiling, nothing wrong.
    Steady,
    /// Below the ceiling, the link clear: stepping back up.
    Recovering,
    /// The last second showed congestion.
    Congested,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Congestion {
    Severe,
    Moderate,
}

pub struct Abr {
    min_kbps: u32,
    max_kbps: u32,
    current_kbps: u32,
    prev: Option<(Instant, LinkSample)>,
    /// Since when this link has been watched: it must look clear for a
    /// while before a step up.
    watching_since: Option<Instant>,
    last_change: Option<Instant>,
    last_down: Option<Instant>,
    last_up: Option<(Instant, u32)>,
    last_congested: Option<Instant>,
    /// Since when the send buffer has been above its threshold.
    buffer_high_since: Option<Instant>,
    /// Since when the RTT has been far above its floor.
    rtt_high_since: Option<Instant>,
    /// The lowest RTT seen: the path without queueing.
    rtt_floor_ms: Option<f64>,
    failed_level: Option<(u32, Instant)>,
    state: LinkState,
}

impl Abr {
    /// `current_kbps` is what the encoder runs at now, kept in bounds.
    pub fn new(min_kbps: u32, max_kbps: u32, current_kbps: u32) -> Self {
        let max_kbps = max_kbps.max(min_kbps);
        Abr {
            min_kbps,
            max_kbps,
            current_kbps: current_kbps.clamp(min_kbps, max_kbps),
            prev: None,
            watching_since: None,
            last_change: None,
            last_down: None,
            last_up: None,
            last_congested: None,
            buffer_high_since: None,
            rtt_high_since: None,
            rtt_floor_ms: None,
            failed_level: None,
            state: LinkState::Steady,
        }
    }

    pub fn current_kbps(&self) -> u32 {
        self.current_kbps
    }

    pub fn bounds(&self) -> (u32, u32) {
        (self.min_kbps, self.max_kbps)
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The link was lost or another output leads now: figures start over
    /// (counters restart with a new connection; the RTT floor belongs to
    /// the old path).
    pub fn reset_link(&mut self) {
        self.prev = None;
        self.buffer_high_since = None;
        self.rtt_high_since = None;
        self.rtt_floor_ms = None;
    }

    /// One sample of the leading link; `Some` when the bitrate should change
    /// (already taken as current).
    pub fn observe(&mut self, now: Instant, s: LinkSample) -> Option<Decision> {
        if s.rtt_ms > 0.0 {
            self.rtt_floor_ms = Some(self.rtt_floor_ms.map_or(s.rtt_ms, |f| f.min(s.rtt_ms)));
        }
        let Some((_, prev)) = self.prev.replace((now, s)) else {
            self.watching_since = Some(now);
            return None;
        };
        if s.packets_sent < prev.packets_sent {
            // A new connection: its counters started from zero.
            self.reset_link();
            self.prev = Some((now, s));
            self.watching_since = Some(now);
            self.rtt_floor_ms = (s.rtt_ms > 0.0).then_some(s.rtt_ms);
            return None;
        }
        let sent = s.packets_sent - prev.packets_sent;
        let lost = s.packets_lost.saturating_sub(prev.packets_lost);
        let dropped = s.packets_dropped.saturating_sub(prev.packets_dropped);
        let retrans = s
            .packets_retransmitted
            .saturating_sub(prev.packets_retransmitted);
        let rtt_floor = self.rtt_floor_ms.unwrap_or(s.rtt_ms);
        let loss_percent = if sent > 0 {
            lost as f64 * 100.0 / sent as f64
        } else {
            0.0
        };

        let buffer_limit = s.rtt_ms + 100.0;
        let buffer_high = s.send_buffer_ms as f64 > buffer_limit;
        let buffer_rising = s.send_buffer_ms >= prev.send_buffer_ms;
        if buffer_high && buffer_rising {
            self.buffer_high_since.get_or_insert(now);
        } else if !buffer_high {
            self.buffer_high_since = None;
        }
        let rtt_high = s.rtt_ms > rtt_floor * 2.0 + 40.0;
        if rtt_high {
            self.rtt_high_since.get_or_insert(now);
        } else {
            self.rtt_high_since = None;
        }
        let held = |since: Option<Instant>| since.is_some_and(|t| now - t >= DOWN_EVERY);

        let severe = if dropped > 0 {
            Some(format!(
                "{dropped} packets dropped too late to arrive within the latency"
            ))
        } else if s.latency_ms > 0 && s.send_buffer_ms * 2 > s.latency_ms && buffer_rising {
            Some(format!(
                "the send buffer holds {} ms, more than half the {} ms latency",
                s.send_buffer_ms, s.latency_ms
            ))
        } else if loss_percent > SEVERE_LOSS_PERCENT {
            Some(format!("{loss_percent:.0} % of packets lost"))
        } else {
            None
        };
        let moderate = if held(self.buffer_high_since) {
            Some(format!(
                "the send buffer grew to {} ms (RTT {:.0} ms)",
                s.send_buffer_ms, s.rtt_ms
            ))
        } else if loss_percent > MODERATE_LOSS_PERCENT {
            Some(format!("{loss_percent:.0} % of packets lost"))
        } else if held(self.rtt_high_since) {
            Some(format!(
                "the RTT rose from {rtt_floor:.0} to {:.0} ms (a queue on the path)",
                s.rtt_ms
            ))
        } else {
            None
        };
        let congestion = match (severe, moderate) {
            (Some(why), _) => Some((Congestion::Severe, why)),
            (None, Some(why)) => Some((Congestion::Moderate, why)),
            (None, None) => None,
        };

        if let Some((kind, why)) = congestion {
            self.state = LinkState::Congested;
            self.last_congested = Some(now);
            // Congested soon after a step up: that level is too much.
            if let Some((at, level)) = self.last_up
                && now - at < UP_AFTER
            {
                self.failed_level = Some((level, now));
                self.last_up = None;
            }
            if self.last_down.is_some_and(|t| now - t < DOWN_EVERY) {
                return None;
            }
            let factor = match kind {
                Congestion::Severe => 0.6,
                Congestion::Moderate => 0.8,
            };
            let mut to = (f64::from(self.current_kbps) * factor) as u32;
            if kind == Congestion::Severe && s.send_rate_mbps > 0.0 && sent > 0 {
                // What got through, without the retransmissions.
                let useful = 1.0 - (retrans as f64 / sent as f64).min(1.0);
                let delivered = s.send_rate_mbps * 1000.0 * useful;
                to = to.min((delivered * 0.75) as u32);
            }
            let d = self.change(now, to, why);
            if d.is_some() {
                self.last_down = Some(now);
            }
            return d;
        }

        let clear_for = |t: Option<Instant>| t.is_none_or(|t| now - t >= UP_AFTER);
        if self.current_kbps >= self.max_kbps {
            self.state = LinkState::Steady;
            return None;
        }
        self.state = LinkState::Recovering;
        if ![self.watching_since, self.last_change, self.last_congested]
            .into_iter()
            .all(clear_for)
        {
            return None;
        }
        let step = (self.current_kbps / 10).max(50);
        let mut to = (self.current_kbps + step).min(self.max_kbps);
        if let Some((level, at)) = self.failed_level {
            if now - at < FAILED_LEVEL_FOR {
                to = to.min(level.saturating_sub(level / 20));
            } else {
                self.failed_level = None;
            }
        }
        if to <= self.current_kbps {
            return None;
        }
        let why = format!("the link has been clear for {} s", UP_AFTER.as_secs());
        let d = self.change(now, to, why);
        if let Some(d) = &d {
            self.last_up = Some((now, d.to_kbps));
        }
        d
    }

    fn change(&mut self, now: Instant, to: u32, reason: String) -> Option<Decision> {
        let to = to.clamp(self.min_kbps, self.max_kbps);
        if to == self.current_kbps {
            return None;
        }
        let from = std::mem::replace(&mut self.current_kbps, to);
        self.last_change = Some(now);
        Some(Decision {
            from_kbps: from,
            to_kbps: to,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link fed second by second.
    struct Link {
        t0: Instant,
        secs: u64,
        s: LinkSample,
    }

    impl Link {
        fn new() -> Self {
            Link {
                t0: Instant::now(),
                secs: 0,
                s: LinkSample {
                    rtt_ms: 20.0,
                    send_buffer_ms: 30,
                    latency_ms: 1000,
                    send_rate_mbps: 2.0,
                    ..Default::default()
                },
            }
        }

        /// One second of `sent` packets, `lost` of them lost.
        fn second(&mut self, abr: &mut Abr, sent: u64, lost: u64) -> Option<Decision> {
            self.secs += 1;
            self.s.packets_sent += sent;
            self.s.packets_lost += lost;
            self.s.packets_retransmitted += lost;
            abr.observe(self.t0 + Duration::from_secs(self.secs), self.s)
        }
    }

    #[test]
    fn a_clear_link_at_the_ceiling_stays() {
        let mut abr = Abr::new(300, 3000, 3000);
        let mut l = Link::new();
        for _ in 0..60 {
            assert_eq!(l.second(&mut abr, 200, 0), None);
        }
        assert_eq!(abr.state(), LinkState::Steady);
    }

    #[test]
    fn drops_step_down_fast_and_recovery_is_slow() {
        let mut abr = Abr::new(300, 3000, 3000);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        l.s.packets_dropped += 5;
        l.s.send_rate_mbps = 1.0;
        let d = l.second(&mut abr, 200, 0).expect("a step down");
        // 60 % of 3000, or 75 % of the 1 Mbit/s delivered: the lower.
        assert_eq!((d.from_kbps, d.to_kbps), (3000, 750));
        assert!(d.reason.contains("5 packets dropped"), "{}", d.reason);
        // Still dropping a second later: held (the change needs time).
        l.s.packets_dropped += 5;
        assert_eq!(l.second(&mut abr, 200, 0), None);
        // Two seconds on: down again.
        l.s.packets_dropped += 5;
        let d = l.second(&mut abr, 200, 0).unwrap();
        assert_eq!(d.to_kbps, 450);
        // Clear: nothing for 10 s, then +10 % (at least 50) every 10 s.
        let mut ups = vec![];
        for _ in 0..60 {
            if let Some(d) = l.second(&mut abr, 200, 0) {
                ups.push((l.secs, d.to_kbps));
            }
        }
        assert_eq!(ups.first(), Some(&(14, 500)), "{ups:?}");
        assert!(ups.windows(2).all(|w| w[1].0 - w[0].0 == 10), "{ups:?}");
        assert_eq!(abr.state(), LinkState::Recovering);
        assert!(abr.current_kbps() < 1000);
    }

    #[test]
    fn never_below_min_or_above_max() {
        let mut abr = Abr::new(400, 1000, 800);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        for _ in 0..20 {
            l.s.packets_dropped += 1;
            l.second(&mut abr, 200, 0);
        }
        assert_eq!(abr.current_kbps(), 400);
        for _ in 0..300 {
            l.second(&mut abr, 200, 0);
        }
        assert_eq!(abr.current_kbps(), 1000);
        assert_eq!(abr.state(), LinkState::Steady);
    }

    #[test]
    fn a_growing_send_buffer_is_moderate_congestion() {
        let mut abr = Abr::new(300, 2000, 2000);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        let mut got = None;
        for ms in [150, 200, 260, 330] {
            l.s.send_buffer_ms = ms;
            if let Some(d) = l.second(&mut abr, 200, 0) {
                got = Some((ms, d));
                break;
            }
        }
        let (ms, d) = got.expect("a step down");
        assert_eq!(ms, 260, "after 2 s above RTT + 100 ms");
        assert_eq!(d.to_kbps, 1600);
        assert!(
            d.reason.contains("send buffer grew to 260 ms"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn half_the_latency_in_the_buffer_is_severe() {
        let mut abr = Abr::new(300, 2000, 2000);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        l.s.send_buffer_ms = 600;
        let d = l.second(&mut abr, 200, 0).unwrap();
        assert!(d.to_kbps <= 1200, "{d:?}");
        assert!(
            d.reason.contains("half the 1000 ms latency"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn small_random_loss_is_not_congestion_but_heavy_loss_is() {
        let mut abr = Abr::new(300, 2000, 2000);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        for _ in 0..30 {
            assert_eq!(l.second(&mut abr, 200, 4), None, "2 % loss");
        }
        let d = l.second(&mut abr, 200, 20).unwrap();
        assert_eq!(d.to_kbps, 1600);
        assert!(d.reason.contains("10 % of packets lost"), "{}", d.reason);
    }

    #[test]
    fn a_rising_rtt_means_a_queue() {
        let mut abr = Abr::new(300, 2000, 2000);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        l.s.rtt_ms = 90.0;
        assert_eq!(l.second(&mut abr, 200, 0), None);
        assert_eq!(l.second(&mut abr, 200, 0), None);
        let d = l.second(&mut abr, 200, 0).unwrap();
        assert!(d.reason.contains("RTT rose from 20 to 90"), "{}", d.reason);
    }

    #[test]
    fn a_level_that_congested_is_not_retried_at_once() {
        let mut abr = Abr::new(300, 2000, 1000);
        let mut l = Link::new();
        l.second(&mut abr, 200, 0);
        // Clear for 10 s: up to 1100.
        let mut up = None;
        for _ in 0..12 {
            up = up.or(l.second(&mut abr, 200, 0));
        }
        assert_eq!(up.unwrap().to_kbps, 1100);
        // Congested at once: back down, and 1100 is marked as too much.
        l.s.packets_dropped += 3;
        let d = l.second(&mut abr, 200, 0).unwrap();
        assert!(d.to_kbps < 1100);
        // The next step ups stop short of 1100 for a minute.
        let mut highest = 0;
        for _ in 0..50 {
            if let Some(d) = l.second(&mut abr, 200, 0) {
                highest = highest.max(d.to_kbps);
            }
        }
        assert!(highest > 0 && highest < 1100, "{highest}");
        for _ in 0..60 {
            l.second(&mut abr, 200, 0);
        }
        assert!(abr.current_kbps() >= 1100);
    }

    #[test]
    fn a_new_connection_starts_the_counters_over() {
        let mut abr = Abr::new(300, 2000, 2000);
        let mut l = Link::new();
        l.second(&mut abr, 5000, 0);
        l.second(&mut abr, 5000, 0);
        l.s.packets_sent = 10;
        l.s.packets_lost = 0;
        assert_eq!(l.second(&mut abr, 200, 0), None);
        assert_eq!(l.second(&mut abr, 200, 0), None);
    }
}
