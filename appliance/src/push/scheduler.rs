//! The push scheduler's decisions, pure: given what is true now (the clock,
//! which streams are live, the variables, the operator's start/stop), does
//! a push want to run, and if not, why. The controller asks every pass
//! (four times a second) and acts; nothing here touches a socket or a clock
//! of its own, so DST changes, midnight and a rule flipping mid-backoff are
//! tested with injected time.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use fieldcast_schedule::Schedule;

use super::def::{PushDef, PushKind};
use super::rules::{all_hold, stream_matches};

/// What the operator last said about a push (saved across restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Nothing: the definition's `enabled` decides.
    Default,
    Started,
    Stopped,
}

/// What is true at one instant, for one push.
pub struct Facts<'a> {
    /// Unix seconds.
    pub now: i64,
    /// The push's stream is live (its input produces frames).
    pub stream: &'a str,
    pub live_streams: &'a BTreeSet<String>,
    pub mark: Mark,
    /// The compiled schedule, when the push has one; `Err` when it cannot
    /// be known (an `.ics` calendar not loaded yet).
    pub schedule: Option<Result<&'a Schedule, &'a str>>,
    pub vars: &'a dyn Fn(&str) -> Option<String>,
}

/// Why a push does not run, as state shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Stopped by the operator, or defined disabled.
    Stopped(String),
    /// Its stream is offline (a one-shot push that was running ends).
    Offline(String),
    /// Waiting for something else that will come by itself: a window, a
    /// rule, an inhibiting stream to go away.
    Waiting(String),
}

impl Hold {
    pub fn why(&self) -> &str {
        match self {
            Hold::Stopped(w) | Hold::Offline(w) | Hold::Waiting(w) => w,
        }
    }
}

/// Whether `def` wants to run now; if not, why.
pub fn decide(def: &PushDef, f: &Facts) -> Result<(), Hold> {
    match f.mark {
        Mark::Stopped => return Err(Hold::Stopped("stopped by the operator".into())),
        Mark::Default if !def.enabled => return Err(Hold::Stopped("disabled".into())),
        _ => {}
    }
    if !f.live_streams.contains(f.stream) {
        return Err(Hold::Offline(format!("stream {} is offline", f.stream)));
    }
    if let Some(blocker) = def.inhibit.iter().find_map(|p| {
        f.live_streams
            .iter()
            .find(|s| s.as_str() != f.stream && stream_matches(p, s))
    }) {
        return Err(Hold::Waiting(format!(
            "inhibited while stream {blocker} is live"
        )));
    }
    if def.kind != PushKind::Scheduled {
        return Ok(());
    }
    match f.schedule {
        Some(Err(why)) => return Err(Hold::Waiting(format!("schedule unknown: {why}"))),
        Some(Ok(s)) if s.active_at(f.now).is_none() => {
            let next = s
                .next_windows(f.now, 1)
                .first()
                .map(|w| format!("; next window opens at {}", rfc3339(w.start)))
                .unwrap_or_else(|| "; no window ahead".into());
            return Err(Hold::Waiting(format!("outside its schedule{next}")));
        }
        _ => {}
    }
    all_hold(&def.rules, f.vars).map_err(Hold::Waiting)
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// Where a push is, as much as the next step depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Now {
    /// Not running, held for this reason.
    Idle(Hold),
    /// Its blocking handlers are deciding.
    Preparing,
    /// Its output runs (connecting, live, or in its own reconnect
    /// backoff); `failed` once a one-shot output gave up.
    Running { failed: Option<String> },
    /// Held back after a refused start; `due` once its backoff has passed.
    Held { due: bool },
    /// A one-shot push that failed or ended: only the operator starts it.
    Finished,
}

/// What to do with a push in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Nothing,
    Start,
    /// Stop its output; it becomes `then`.
    Stop {
        then: After,
        reason: String,
    },
    /// Not running: (still) held, for this reason.
    Hold(Hold),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum After {
    Idle(Hold),
    /// A one-shot push whose stream went away.
    Ended,
    /// A one-shot push whose output failed.
    Failed,
    /// An auto or scheduled push whose output ended by itself (it never
    /// should): held back, then started again.
    Retry,
}

/// The push state machine: from where a push is and what [`decide`] says,
/// the next step. A rule that turns false stops a push whatever its
/// output is doing, including waiting out a reconnect backoff.
pub fn step(now: &Now, decision: Result<(), Hold>, kind: PushKind) -> Next {
    match (now, decision) {
        (Now::Finished, _) => Next::Nothing,
        (
            Now::Running {
                failed: Some(reason),
            },
            Ok(()),
        ) => Next::Stop {
            then: if kind == PushKind::Push {
                After::Failed
            } else {
                After::Retry
            },
            reason: reason.clone(),
        },
        (Now::Running { .. }, Ok(())) | (Now::Preparing, Ok(())) => Next::Nothing,
        (Now::Running { .. }, Err(hold)) => {
            let reason = hold.why().to_string();
            let then = if kind == PushKind::Push && matches!(hold, Hold::Offline(_)) {
                After::Ended
            } else {
                After::Idle(hold)
            };
            Next::Stop { then, reason }
        }
        (Now::Held { due: false }, Ok(())) => Next::Nothing,
        (Now::Held { due: true } | Now::Idle(_), Ok(())) => Next::Start,
        (Now::Idle(current), Err(hold)) if *current == hold => Next::Nothing,
        (Now::Idle(_) | Now::Held { .. } | Now::Preparing, Err(hold)) => Next::Hold(hold),
    }
}

/// At most `per_second` starts in any second, so a reboot with many pushes
/// (or an ingest coming back for a whole fleet of outputs) does not dial
/// everything at once.
pub struct StartLimiter {
    per_second: usize,
    recent: VecDeque<Instant>,
}

impl StartLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1) as usize,
            recent: VecDeque::new(),
        }
    }

    /// Takes a start if one is left in the last second.
    pub fn try_start(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.recent.len() < self.per_second {
            self.recent.push_back(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::rules::{Op, Rule};
    use fieldcast_schedule::ScheduleDef;

    fn def(json: &str) -> PushDef {
        serde_json::from_str(json).unwrap()
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn at(iso: &str) -> i64 {
        iso.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    fn no_vars(_: &str) -> Option<String> {
        None
    }

    fn facts<'a>(
        now: i64,
        live: &'a BTreeSet<String>,
        schedule: Option<Result<&'a Schedule, &'a str>>,
        vars: &'a dyn Fn(&str) -> Option<String>,
    ) -> Facts<'a> {
        Facts {
            now,
            stream: "main",
            live_streams: live,
            mark: Mark::Default,
            schedule,
            vars,
        }
    }

    #[test]
    fn auto_push_follows_its_stream_and_the_operator() {
        let d = def(r#"{"id":"a","stream":"main","target":"srt://h:1"}"#);
        let on = live(&["main"]);
        let off = live(&[]);
        assert_eq!(decide(&d, &facts(0, &on, None, &no_vars)), Ok(()));
        assert_eq!(
            decide(&d, &facts(0, &off, None, &no_vars)),
            Err(Hold::Offline("stream main is offline".into()))
        );
        let mut f = facts(0, &on, None, &no_vars);
        f.mark = Mark::Stopped;
        assert!(matches!(decide(&d, &f), Err(Hold::Stopped(_))));
        let d = def(r#"{"id":"a","stream":"main","target":"srt://h:1","enabled":false}"#);
        assert!(
            matches!(decide(&d, &facts(0, &on, None, &no_vars)), Err(Hold::Stopped(w)) if w == "disabled")
        );
        let mut f = facts(0, &on, None, &no_vars);
        f.mark = Mark::Started;
        assert_eq!(decide(&d, &f), Ok(()));
    }

    #[test]
    fn inhibit_holds_a_push_back_while_another_stream_is_live() {
        let d = def(r#"{"id":"a","stream":"main","target":"srt://h:1","inhibit":["cam+","main"]}"#);
        assert_eq!(
            decide(&d, &facts(0, &live(&["main"]), None, &no_vars)),
            Ok(())
        );
        assert_eq!(
            decide(&d, &facts(0, &live(&["main", "cam+2"]), None, &no_vars)),
            Err(Hold::Waiting("inhibited while stream cam+2 is live".into()))
        );
    }

    fn weekday_evenings() -> Schedule {
        let s: ScheduleDef = serde_json::from_str(
            r#"{"timezone":"Europe/Amsterdam","windows":[{"start":"2026-01-05T18:00","duration":"2h","rrule":"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"}]}"#,
        )
        .unwrap();
        Schedule::compile(&s, None).unwrap()
    }

    #[test]
    fn scheduled_push_runs_inside_its_windows_across_dst() {
        let d = def(
            r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"scheduled","schedule":{"windows":[]}}"#,
        );
        let s = weekday_evenings();
        let on = live(&["main"]);
        let run = |iso: &str| decide(&d, &facts(at(iso), &on, Some(Ok(&s)), &no_vars));
        // Friday 2026-03-27, winter time (UTC+1): 18:00 local is 17:00Z.
        assert!(run("2026-03-27T16:59:59Z").is_err());
        assert_eq!(run("2026-03-27T17:00:00Z"), Ok(()));
        assert_eq!(run("2026-03-27T18:59:59Z"), Ok(()));
        assert!(run("2026-03-27T19:00:00Z").is_err());
        // Monday 2026-03-30, after the spring change (UTC+2): 16:00Z.
        assert!(run("2026-03-30T15:59:59Z").is_err());
        assert_eq!(run("2026-03-30T16:00:00Z"), Ok(()));
        assert!(run("2026-03-30T18:00:00Z").is_err());
        // Saturday: no window; the reason names the next one.
        let e = run("2026-03-28T17:30:00Z").unwrap_err();
        assert_eq!(
            e.why(),
            "outside its schedule; next window opens at 2026-03-30T16:00:00Z"
        );
        // Monday 2026-10-26, after the autumn change (back to UTC+1).
        assert!(run("2026-10-26T16:30:00Z").is_err());
        assert_eq!(run("2026-10-26T17:30:00Z"), Ok(()));
    }

    #[test]
    fn rules_combine_with_the_schedule_and_a_flip_is_seen_at_once() {
        let mut d = def(
            r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"scheduled","rules":[{"var":"mode","op":"eq","value":"on-air"}]}"#,
        );
        let on = live(&["main"]);
        let mode = std::cell::RefCell::new(Some("on-air".to_string()));
        let vars = |n: &str| {
            if n == "mode" {
                mode.borrow().clone()
            } else {
                None
            }
        };
        assert_eq!(decide(&d, &facts(0, &on, None, &vars)), Ok(()));
        *mode.borrow_mut() = Some("off".into());
        assert_eq!(
            decide(&d, &facts(0, &on, None, &vars)),
            Err(Hold::Waiting(
                "rule $mode eq \"on-air\" does not hold".into()
            ))
        );
        *mode.borrow_mut() = None;
        assert!(
            decide(&d, &facts(0, &on, None, &vars))
                .unwrap_err()
                .why()
                .contains("not set")
        );
        // With a schedule too, both must hold.
        d.rules = vec![Rule {
            var: "mode".into(),
            op: Op::Unset,
            value: None,
        }];
        let s = weekday_evenings();
        assert!(
            decide(
                &d,
                &facts(at("2026-03-28T17:30:00Z"), &on, Some(Ok(&s)), &vars)
            )
            .is_err()
        );
        assert_eq!(
            decide(
                &d,
                &facts(at("2026-03-27T17:30:00Z"), &on, Some(Ok(&s)), &vars)
            ),
            Ok(())
        );
        // A calendar not loaded yet holds the push back and says why.
        assert_eq!(
            decide(
                &d,
                &facts(0, &on, Some(Err("calendar.ics: not found")), &vars)
            ),
            Err(Hold::Waiting(
                "schedule unknown: calendar.ics: not found".into()
            ))
        );
    }

    #[test]
    fn state_machine() {
        use PushKind::{Auto, Push, Scheduled};
        let outside = || Hold::Waiting("outside its schedule; no window ahead".into());
        let offline = || Hold::Offline("stream main is offline".into());
        // A rule flipping while the output waits out a reconnect backoff
        // (still Running as far as the scheduler is concerned) stops it.
        assert_eq!(
            step(&Now::Running { failed: None }, Err(outside()), Scheduled),
            Next::Stop {
                then: After::Idle(outside()),
                reason: outside().why().into()
            }
        );
        // Held back after a refusal: the rule turning false ends the hold,
        // so a later window starts afresh, not after the old backoff.
        assert_eq!(
            step(&Now::Held { due: false }, Err(outside()), Scheduled),
            Next::Hold(outside())
        );
        assert_eq!(
            step(&Now::Held { due: false }, Ok(()), Scheduled),
            Next::Nothing
        );
        assert_eq!(
            step(&Now::Held { due: true }, Ok(()), Scheduled),
            Next::Start
        );
        // Handlers deciding when the rule turns false: dropped.
        assert_eq!(
            step(&Now::Preparing, Err(outside()), Auto),
            Next::Hold(outside())
        );
        assert_eq!(step(&Now::Preparing, Ok(()), Auto), Next::Nothing);
        // Idle: starts when allowed; a new reason is shown, the same one
        // changes nothing.
        assert_eq!(step(&Now::Idle(offline()), Ok(()), Auto), Next::Start);
        assert_eq!(
            step(&Now::Idle(offline()), Err(offline()), Auto),
            Next::Nothing
        );
        assert_eq!(
            step(&Now::Idle(offline()), Err(outside()), Auto),
            Next::Hold(outside())
        );
        // One-shot: its stream going away ends it; its output failing
        // fails it; the operator stopping it is a plain stop; finished
        // stays finished.
        assert_eq!(
            step(&Now::Running { failed: None }, Err(offline()), Push),
            Next::Stop {
                then: After::Ended,
                reason: "stream main is offline".into()
            }
        );
        let stopped = Hold::Stopped("stopped by the operator".into());
        assert_eq!(
            step(&Now::Running { failed: None }, Err(stopped.clone()), Push),
            Next::Stop {
                then: After::Idle(stopped.clone()),
                reason: "stopped by the operator".into()
            }
        );
        assert_eq!(
            step(
                &Now::Running {
                    failed: Some("refused".into())
                },
                Ok(()),
                Push
            ),
            Next::Stop {
                then: After::Failed,
                reason: "refused".into()
            }
        );
        assert_eq!(step(&Now::Finished, Ok(()), Push), Next::Nothing);
        // A one-shot push held back by an inhibiting stream is held, not
        // ended; an auto push whose output ended by itself is retried.
        let inhibited = Hold::Waiting("inhibited while stream backup is live".into());
        assert_eq!(
            step(&Now::Running { failed: None }, Err(inhibited.clone()), Push),
            Next::Stop {
                then: After::Idle(inhibited.clone()),
                reason: inhibited.why().into()
            }
        );
        assert_eq!(
            step(
                &Now::Running {
                    failed: Some("task ended".into())
                },
                Ok(()),
                Auto
            ),
            Next::Stop {
                then: After::Retry,
                reason: "task ended".into()
            }
        );
        // An auto push whose stream goes offline waits for it.
        assert_eq!(
            step(&Now::Running { failed: None }, Err(offline()), Auto),
            Next::Stop {
                then: After::Idle(offline()),
                reason: "stream main is offline".into()
            }
        );
    }

    #[test]
    fn start_limiter() {
        let mut l = StartLimiter::new(3);
        let t0 = Instant::now();
        assert!(l.try_start(t0) && l.try_start(t0) && l.try_start(t0));
        assert!(!l.try_start(t0 + Duration::from_millis(999)));
        assert!(l.try_start(t0 + Duration::from_secs(1)));
        assert!(l.try_start(t0 + Duration::from_secs(1)));
        assert!(l.try_start(t0 + Duration::from_secs(1)));
        assert!(!l.try_start(t0 + Duration::from_millis(1500)));
    }
}
