//! Adaptive bitrate per input: which SRT push leads, what the decider
//! ([`fieldcast_media::abr`]) made of its link, and what operators see.

use fieldcast_capture::settings::{AdaptiveBitrate, EncodeSettings};
use fieldcast_media::abr::{Abr, Decision, LinkSample};
use fieldcast_media::unix_now;
use serde_json::{Value, json};
use std::time::Instant;

/// A push that could lead: a running SRT output of the input's stream.
pub struct Candidate<'a> {
    pub id: &'a str,
    pub live: bool,
    pub link: Option<LinkSample>,
    /// With backups: the destination in use (its counters are its own).
    pub destination: Option<usize>,
}

/// What to do after a sample.
pub enum Step {
    Nothing,
    Change(Decision),
}

pub struct InputAbr {
    config: AdaptiveBitrate,
    abr: Abr,
    lead: Option<String>,
    /// The lead's destination when it was last sampled.
    destination: Option<usize>,
    /// Why no link is followed now.
    waiting: Option<String>,
    last: Option<(f64, Decision)>,
    decisions: u64,
    /// Adaptive bitrate is off for this input, and why.
    off: Option<String>,
}

impl InputAbr {
    /// Starts at the operator's bitrate; the ceiling is `max_kbps` or that.
    pub fn new(config: AdaptiveBitrate, encode: &EncodeSettings) -> Self {
        let abr = Abr::new(config.min_kbps, config.ceiling(encode), encode.bitrate_kbps);
        InputAbr {
            config,
            abr,
            lead: None,
            destination: None,
            waiting: None,
            last: None,
            decisions: 0,
            off: None,
        }
    }

    pub fn config(&self) -> &AdaptiveBitrate {
        &self.config
    }

    pub fn is_off(&self) -> bool {
        self.off.is_some()
    }

    /// The configured lead when it runs, else the first live SRT push by
    /// id (`candidates` come in id order).
    fn choose<'a>(&self, candidates: &'a [Candidate<'a>]) -> Result<&'a Candidate<'a>, String> {
        match &self.config.lead {
            // A wildcard stream's push instance is `id@stream`.
            Some(lead) => match candidates
                .iter()
                .find(|c| c.id == lead || c.id.split_once('@').is_some_and(|(id, _)| id == lead))
            {
                Some(c) if c.live && c.link.is_some() => Ok(c),
                Some(_) => Err(format!("the lead push '{lead}' is not live")),
                None => Err(format!("the lead push '{lead}' is not a running SRT push")),
            },
            None => candidates
                .iter()
                .find(|c| c.live && c.link.is_some())
                .ok_or_else(|| "no SRT push of this stream is live".to_string()),
        }
    }

    /// One second's figures of the stream's SRT pushes.
    pub fn sample(&mut self, now: Instant, candidates: &[Candidate<'_>]) -> Step {
        if self.off.is_some() {
            return Step::Nothing;
        }
        let lead = match self.choose(candidates) {
            Ok(c) => c,
            Err(why) => {
                if self.lead.take().is_some() {
                    self.abr.reset_link();
                }
                self.waiting = Some(why);
                return Step::Nothing;
            }
        };
        self.waiting = None;
        // Another push, or the same push on another destination: a new
        // link, whose counters and RTT are its own.
        if self.lead.as_deref() != Some(lead.id) || self.destination != lead.destination {
            self.lead = Some(lead.id.to_string());
            self.destination = lead.destination;
            self.abr.reset_link();
        }
        let link = lead.link.expect("chosen leads have figures");
        match self.abr.observe(now, link) {
            Some(d) => Step::Change(d),
            None => Step::Nothing,
        }
    }

    /// The encoder took the decision.
    pub fn applied(&mut self, d: Decision) {
        self.decisions += 1;
        self.last = Some((unix_now(), d));
    }

    /// The encoder cannot follow: adaptive bitrate stops for this input.
    pub fn turn_off(&mut self, why: String) {
        self.off = Some(why);
    }

    pub fn lead(&self) -> Option<&str> {
        self.lead.as_deref()
    }

    /// Telemetry's view.
    pub fn view(&self) -> Value {
        let (min, max) = self.abr.bounds();
        let mut v = json!({
            "bitrate_kbps": self.abr.current_kbps(),
            "min_kbps": min,
            "max_kbps": max,
            "lead": self.lead,
            "state": if self.off.is_some() || self.waiting.is_some() { Value::Null } else { json!(self.abr.state()) },
            "decisions": self.decisions,
        });
        if let Some(why) = &self.waiting {
            v["waiting"] = json!(why);
        }
        if let Some(why) = &self.off {
            v["off"] = json!(why);
        }
        if let Some((ts, d)) = &self.last {
            v["last_decision"] = json!({
                "ts": ts, "from_kbps": d.from_kbps, "to_kbps": d.to_kbps, "reason": d.reason,
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn link(sent: u64, dropped: u64) -> LinkSample {
        LinkSample {
            packets_sent: sent,
            packets_dropped: dropped,
            rtt_ms: 10.0,
            send_buffer_ms: 20,
            latency_ms: 1000,
            send_rate_mbps: 3.0,
            ..Default::default()
        }
    }

    fn abr(lead: Option<&str>) -> InputAbr {
        InputAbr::new(
            AdaptiveBitrate {
                min_kbps: 300,
                max_kbps: None,
                lead: lead.map(str::to_string),
            },
            &EncodeSettings {
                bitrate_kbps: 2000,
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_configured_lead_decides_and_others_do_not() {
        let mut a = abr(Some("b"));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        // "a" drops packets, "b" (the lead) is clean: nothing changes.
        for s in 1..5 {
            let c = [
                Candidate {
                    id: "a",
                    live: true,
                    link: Some(link(s * 200, s * 10)),
                    destination: None,
                },
                Candidate {
                    id: "b",
                    live: true,
                    link: Some(link(s * 200, 0)),
                    destination: None,
                },
            ];
            assert!(matches!(a.sample(at(s), &c), Step::Nothing));
        }
        assert_eq!(a.lead(), Some("b"));
        // Now "b" drops: down.
        let c = [
            Candidate {
                id: "a",
                live: true,
                link: Some(link(1200, 60)),
                destination: None,
            },
            Candidate {
                id: "b",
                live: true,
                link: Some(link(1200, 5)),
                destination: None,
            },
        ];
        let Step::Change(d) = a.sample(at(6), &c) else {
            panic!("the lead's drops step down")
        };
        assert_eq!(d.from_kbps, 2000);
        a.applied(d);
        let v = a.view();
        assert_eq!(v["lead"], "b");
        assert_eq!(v["decisions"], 1);
        assert_eq!(v["state"], "congested");
        assert!(
            v["last_decision"]["reason"]
                .as_str()
                .unwrap()
                .contains("dropped")
        );
    }

    #[test]
    fn without_a_configured_lead_the_first_live_srt_push_leads() {
        let mut a = abr(None);
        let c = [
            Candidate {
                id: "a",
                live: false,
                link: None,
                destination: None,
            },
            Candidate {
                id: "b",
                live: true,
                link: Some(link(200, 0)),
                destination: None,
            },
            Candidate {
                id: "c",
                live: true,
                link: Some(link(200, 0)),
                destination: None,
            },
        ];
        a.sample(Instant::now(), &c);
        assert_eq!(a.lead(), Some("b"));
    }

    #[test]
    fn a_lead_on_another_destination_is_a_new_link() {
        let mut a = abr(None);
        let t0 = Instant::now();
        let on = |dest: usize, sent: u64, dropped: u64| Candidate {
            id: "up",
            live: true,
            link: Some(link(sent, dropped)),
            destination: Some(dest),
        };
        a.sample(t0, &[on(0, 100_000, 500)]);
        a.sample(t0 + Duration::from_secs(1), &[on(0, 100_200, 500)]);
        // The backup's counters are far higher: no deltas across sockets.
        let step = a.sample(t0 + Duration::from_secs(2), &[on(1, 900_000, 9_000)]);
        assert!(matches!(step, Step::Nothing));
        let step = a.sample(t0 + Duration::from_secs(3), &[on(1, 900_200, 9_000)]);
        assert!(matches!(step, Step::Nothing));
    }

    #[test]
    fn a_lead_names_its_instances_on_wildcard_streams() {
        let mut a = abr(Some("uplink"));
        let c = [Candidate {
            id: "uplink@cam+1",
            live: true,
            link: Some(link(200, 0)),
            destination: None,
        }];
        a.sample(Instant::now(), &c);
        assert_eq!(a.lead(), Some("uplink@cam+1"));
    }

    #[test]
    fn a_lead_that_is_not_live_is_waited_for_and_named() {
        let mut a = abr(Some("uplink"));
        let c = [Candidate {
            id: "other",
            live: true,
            link: Some(link(200, 0)),
            destination: None,
        }];
        a.sample(Instant::now(), &c);
        let v = a.view();
        assert_eq!(
            v["waiting"],
            "the lead push 'uplink' is not a running SRT push"
        );
        assert_eq!(v["lead"], Value::Null);
        assert_eq!(v["bitrate_kbps"], 2000);
        a.turn_off("the encoder cannot change its bitrate while running".into());
        assert!(a.view()["off"].as_str().unwrap().contains("cannot change"));
    }
}
