//! Outputs with backup destinations: one output as operators see it, made
//! of one child output per destination.
//!
//! *Active-backup* sends to one destination at a time. After
//! `after_failures` failed attempts in a row (a stall counts: liveness
//! turns it into a failure) it moves to the next destination, wrapping
//! round. While on a backup it tries the primary again every
//! `primary_retry`, make-before-break: a second child connects to the
//! primary while the backup carries on, and only once the primary is live
//! is the backup stopped. *Active-active* sends to every destination at
//! once, as professional SRT encoders do for redundant paths; the output
//! is live while any destination is.
//!
//! The decisions are in [`Decider`], pure and tested with injected events;
//! the task around it only spawns and stops children.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::{
    Command, OutputEvent, OutputHandle, OutputSpec, OutputState, OutputStatus, Target, spawn,
};
use crate::unix_now;

#[derive(Clone, Debug, PartialEq)]
pub enum Redundancy {
    ActiveBackup {
        /// Failed attempts in a row before moving on.
        after_failures: u32,
        /// Go back to the primary once it works again.
        return_to_primary: bool,
        /// How often to try the primary while on a backup.
        primary_retry: Duration,
    },
    ActiveActive,
}

impl Default for Redundancy {
    fn default() -> Self {
        Redundancy::ActiveBackup {
            after_failures: 3,
            return_to_primary: true,
            primary_retry: Duration::from_secs(30),
        }
    }
}

/// One destination as state shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestinationStatus {
    pub target: String,
    /// `active`, `standby`, `probing` (active-backup) or `active`.
    pub role: &'static str,
    pub state: &'static str,
    pub last_error: Option<String>,
}

/// What the task should do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Stop the child of `from` and start one for `to`.
    Switch {
        from: usize,
        to: usize,
        reason: String,
    },
    /// Start a probe child for the primary.
    Probe,
    /// The probe is live: stop the active child; the probe becomes active.
    Promote { from: usize },
    /// The probe failed: stop it.
    DropProbe,
}

/// Active-backup decisions over child events.
pub struct Decider {
    destinations: usize,
    after_failures: u32,
    return_to_primary: bool,
    primary_retry: Duration,
    pub active: usize,
    failures: u32,
    probing: bool,
    next_probe: Option<Instant>,
}

impl Decider {
    pub fn new(destinations: usize, r: &Redundancy, now: Instant) -> Self {
        let (after_failures, return_to_primary, primary_retry) = match r {
            Redundancy::ActiveBackup {
                after_failures,
                return_to_primary,
                primary_retry,
            } => (*after_failures, *return_to_primary, *primary_retry),
            Redundancy::ActiveActive => (u32::MAX, false, Duration::MAX),
        };
        let _ = now;
        Self {
            destinations,
            after_failures: after_failures.max(1),
            return_to_primary,
            primary_retry,
            active: 0,
            failures: 0,
            probing: false,
            next_probe: None,
        }
    }

    /// The active child went live.
    pub fn live(&mut self) {
        self.failures = 0;
    }

    /// The active child failed an attempt.
    pub fn failed(&mut self, now: Instant, reason: &str) -> Option<Action> {
        self.failures += 1;
        if self.failures < self.after_failures || self.destinations < 2 {
            return None;
        }
        let from = self.active;
        let to = (from + 1) % self.destinations;
        self.active = to;
        self.failures = 0;
        self.next_probe = (to != 0 && self.return_to_primary).then(|| now + self.primary_retry);
        Some(Action::Switch {
            from,
            to,
            reason: format!(
                "{} failed attempts in a row (last: {reason})",
                self.after_failures
            ),
        })
    }

    /// Time passes: maybe probe the primary.
    pub fn tick(&mut self, now: Instant) -> Option<Action> {
        match self.next_probe {
            Some(t) if !self.probing && self.active != 0 && now >= t => {
                self.probing = true;
                self.next_probe = None;
                Some(Action::Probe)
            }
            _ => None,
        }
    }

    /// The probe of the primary went live.
    pub fn probe_live(&mut self) -> Option<Action> {
        if !self.probing {
            return None;
        }
        self.probing = false;
        let from = self.active;
        self.active = 0;
        self.failures = 0;
        Some(Action::Promote { from })
    }

    /// The probe of the primary failed.
    pub fn probe_failed(&mut self, now: Instant) -> Option<Action> {
        if !self.probing {
            return None;
        }
        self.probing = false;
        self.next_probe = Some(now + self.primary_retry);
        Some(Action::DropProbe)
    }

    pub fn probing(&self) -> bool {
        self.probing
    }
}

/// A child output and the events it sends.
struct Child {
    index: usize,
    handle: OutputHandle,
    events: mpsc::UnboundedReceiver<OutputEvent>,
}

fn child(spec: &OutputSpec, targets: &[Target], index: usize) -> Child {
    let mut s = spec.clone();
    s.id = format!("{}#{index}", spec.id);
    s.target = targets[index].clone();
    s.backups = Vec::new();
    let (tx, rx) = mpsc::unbounded_channel();
    Child {
        index,
        handle: spawn(s, tx),
        events: rx,
    }
}

/// The next event of any child, with the child's position in `children`.
async fn next_event(children: &mut [Child]) -> (usize, Option<OutputEvent>) {
    if children.is_empty() {
        return std::future::pending().await;
    }
    let futs = children
        .iter_mut()
        .enumerate()
        .map(|(i, c)| Box::pin(async move { (i, c.events.recv().await) }));
    futures::future::select_all(futs).await.0
}

pub(super) async fn run(
    spec: OutputSpec,
    mut cmd: mpsc::Receiver<Command>,
    status: watch::Sender<OutputStatus>,
    events: mpsc::UnboundedSender<OutputEvent>,
) {
    let mut targets = vec![spec.target.clone()];
    targets.extend(spec.backups.iter().cloned());
    let shown: Vec<String> = targets.iter().map(Target::redacted).collect();
    let active_active = spec.redundancy == Redundancy::ActiveActive;
    let mut decider = Decider::new(targets.len(), &spec.redundancy, Instant::now());
    let mut children: Vec<Child> = if active_active {
        (0..targets.len())
            .map(|i| child(&spec, &targets, i))
            .collect()
    } else {
        vec![child(&spec, &targets, 0)]
    };
    let mut probe: Option<Child> = None;
    let mut errors: Vec<Option<String>> = vec![None; targets.len()];
    // Counters of children that ended, so the reported ones only grow.
    let mut done = (0u64, 0u64, 0u64, 0u32);
    let mut was_live = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let finished: Option<oneshot::Sender<()>> = loop {
        tokio::select! {
            c = cmd.recv() => match c {
                Some(Command::Stop(done_tx)) => break Some(done_tx),
                None => break None,
                Some(Command::Reconnect(why)) => {
                    for c in children.iter().chain(probe.iter()) {
                        c.handle.reconnect(why.clone());
                    }
                }
            },
            (pos, ev) = next_event(&mut children) => {
                let Some(ev) = ev else {
                    // A child task ended by itself (it only does when it
                    // failed for good): forget it, and count it as a failed
                    // attempt of its destination.
                    let gone = children.remove(pos);
                    let index = gone.index;
                    let why = gone.handle.status().last_error.unwrap_or_else(|| "the output ended".into());
                    errors[index] = Some(why.clone());
                    if !active_active && index == decider.active {
                        let next = decider.failed(Instant::now(), &why);
                        let to = match next {
                            Some(Action::Switch { to, .. }) => to,
                            _ => index,
                        };
                        children.push(child(&spec, &targets, to));
                    } else if active_active {
                        children.push(child(&spec, &targets, index));
                    }
                    continue;
                };
                let index = children[pos].index;
                match ev {
                    OutputEvent::OutputLive { .. } => {
                        errors[index] = None;
                        if !active_active && index == decider.active {
                            decider.live();
                        }
                    }
                    OutputEvent::OutputDisconnected { reason, retry_in_s, .. } => {
                        // A reconnect the group itself asked for (the
                        // network changed) is reported with no wait: not a
                        // failure of the destination.
                        let asked = retry_in_s == 0.0;
                        errors[index] = Some(reason.clone());
                        if !active_active && index == decider.active {
                            let _ = events.send(OutputEvent::OutputDisconnected {
                                id: spec.id.clone(),
                                reason: format!("{}: {reason}", shown[index]),
                                retry_in_s,
                            });
                        }
                        if !asked {
                            let _ = events.send(OutputEvent::DestinationDown {
                                id: spec.id.clone(),
                                destination: index,
                                target: shown[index].clone(),
                                reason: reason.clone(),
                            });
                        }
                        if !active_active && index == decider.active && !asked
                            && let Some(Action::Switch { from, to, reason }) = decider.failed(Instant::now(), &reason)
                        {
                            if to == 0 && let Some(p) = probe.take() {
                                // Round to the primary while it was being
                                // tried: one connection to it, not two.
                                decider.probe_failed(Instant::now());
                                p.handle.stop().await;
                            }
                            warn!(output = %spec.id, from = %shown[from], to = %shown[to], %reason, "failing over");
                            let old = children.remove(pos);
                            let c = old.handle.status();
                            done.0 += c.frames_sent;
                            done.1 += c.bytes_sent;
                            done.2 += c.frames_dropped;
                            done.3 += c.reconnects;
                            old.handle.stop().await;
                            children.push(child(&spec, &targets, to));
                            let _ = events.send(OutputEvent::OutputFailover {
                                id: spec.id.clone(),
                                from: shown[from].clone(),
                                to: shown[to].clone(),
                                reason,
                            });
                        }
                    }
                    OutputEvent::RecordingSegment { file, bytes, duration_s, .. } => {
                        let _ = events.send(OutputEvent::RecordingSegment { id: spec.id.clone(), file, bytes, duration_s });
                    }
                    _ => {}
                }
            }
            ev = async {
                match probe.as_mut() {
                    Some(p) => p.events.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let action = match ev {
                    Some(OutputEvent::OutputLive { .. }) => decider.probe_live(),
                    Some(OutputEvent::OutputDisconnected { reason, .. }) | Some(OutputEvent::OutputFailed { reason, .. }) => {
                        errors[0] = Some(reason);
                        decider.probe_failed(Instant::now())
                    }
                    None => decider.probe_failed(Instant::now()),
                    _ => None,
                };
                match action {
                    Some(Action::Promote { from }) => {
                        info!(output = %spec.id, primary = %shown[0], "primary is back; returning to it");
                        for old in children.drain(..) {
                            let c = old.handle.status();
                            done.0 += c.frames_sent;
                            done.1 += c.bytes_sent;
                            done.2 += c.frames_dropped;
                            done.3 += c.reconnects;
                            old.handle.stop().await;
                        }
                        children.push(probe.take().expect("probing"));
                        errors[0] = None;
                        let _ = events.send(OutputEvent::OutputFailover {
                            id: spec.id.clone(),
                            from: shown[from].clone(),
                            to: shown[0].clone(),
                            reason: "the primary is back".into(),
                        });
                    }
                    Some(Action::DropProbe) => {
                        if let Some(p) = probe.take() {
                            p.handle.stop().await;
                        }
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                if !active_active && let Some(Action::Probe) = decider.tick(Instant::now()) {
                    info!(output = %spec.id, primary = %shown[0], "trying the primary again");
                    probe = Some(child(&spec, &targets, 0));
                }
            }
        }
        // The group's status: the active child's (or, active-active, the
        // best destination's), with every destination listed.
        let child_status: Vec<(usize, OutputStatus)> = children
            .iter()
            .map(|c| (c.index, c.handle.status()))
            .collect();
        let lead = if active_active {
            child_status
                .iter()
                .find(|(_, s)| s.state == OutputState::Live)
                .or_else(|| child_status.first())
        } else {
            child_status.iter().find(|(i, _)| *i == decider.active)
        };
        let destinations: Vec<DestinationStatus> = (0..targets.len())
            .map(|i| {
                let s = child_status.iter().find(|(j, _)| *j == i).map(|(_, s)| s);
                let probing = i == 0 && probe.is_some();
                DestinationStatus {
                    target: shown[i].clone(),
                    role: if active_active || i == decider.active {
                        "active"
                    } else if probing {
                        "probing"
                    } else {
                        "standby"
                    },
                    state: match (s, probing) {
                        (Some(s), _) => s.state.name(),
                        (None, true) => "connecting",
                        (None, false) => "idle",
                    },
                    last_error: errors[i].clone(),
                }
            })
            .collect();
        let sums = child_status.iter().fold((0, 0, 0, 0), |a, (_, s)| {
            (
                a.0 + s.frames_sent,
                a.1 + s.bytes_sent,
                a.2 + s.frames_dropped,
                a.3 + s.reconnects,
            )
        });
        let kbps: u64 = child_status.iter().map(|(_, s)| s.bitrate_kbps).sum();
        let any_live = child_status
            .iter()
            .any(|(_, s)| s.state == OutputState::Live);
        if let Some((index, lead)) = lead {
            let mut next = lead.clone();
            if active_active && any_live {
                next.state = OutputState::Live;
            }
            next.frames_sent = done.0 + sums.0;
            next.bytes_sent = done.1 + sums.1;
            next.frames_dropped = done.2 + sums.2;
            next.reconnects = done.3 + sums.3;
            next.bitrate_kbps = kbps;
            next.destination = Some(*index);
            next.destinations = destinations;
            let became_live = next.state == OutputState::Live && !was_live;
            was_live = next.state == OutputState::Live;
            status.send_if_modified(|s| {
                let since = if s.state == next.state {
                    s.since
                } else {
                    unix_now()
                };
                next.since = since;
                let changed = *s != next;
                *s = next;
                changed
            });
            if became_live {
                let _ = events.send(OutputEvent::OutputLive {
                    id: spec.id.clone(),
                });
            }
        }
    };
    for c in children.into_iter().chain(probe) {
        c.handle.stop().await;
    }
    status.send_modify(|s| {
        s.state = OutputState::Stopped;
        s.since = unix_now();
    });
    let _ = events.send(OutputEvent::OutputStopped {
        id: spec.id.clone(),
    });
    if let Some(tx) = finished {
        let _ = tx.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ab(after: u32) -> Redundancy {
        Redundancy::ActiveBackup {
            after_failures: after,
            return_to_primary: true,
            primary_retry: Duration::from_secs(30),
        }
    }

    #[test]
    fn moves_on_after_n_failures_and_wraps_round() {
        let t0 = Instant::now();
        let mut d = Decider::new(3, &ab(2), t0);
        assert_eq!(d.failed(t0, "x"), None);
        assert!(matches!(
            d.failed(t0, "x"),
            Some(Action::Switch { from: 0, to: 1, .. })
        ));
        // Live in between resets the count.
        assert_eq!(d.failed(t0, "y"), None);
        d.live();
        assert_eq!(d.failed(t0, "y"), None);
        assert!(matches!(
            d.failed(t0, "y"),
            Some(Action::Switch { from: 1, to: 2, .. })
        ));
        d.failed(t0, "z");
        assert!(matches!(
            d.failed(t0, "z"),
            Some(Action::Switch { from: 2, to: 0, .. })
        ));
        assert_eq!(d.active, 0);
    }

    #[test]
    fn returns_to_the_primary_make_before_break() {
        let t0 = Instant::now();
        let mut d = Decider::new(2, &ab(1), t0);
        assert!(matches!(
            d.failed(t0, "down"),
            Some(Action::Switch { to: 1, .. })
        ));
        assert_eq!(d.tick(t0 + Duration::from_secs(29)), None);
        assert_eq!(d.tick(t0 + Duration::from_secs(30)), Some(Action::Probe));
        // One probe at a time.
        assert_eq!(d.tick(t0 + Duration::from_secs(31)), None);
        assert_eq!(
            d.probe_failed(t0 + Duration::from_secs(33)),
            Some(Action::DropProbe)
        );
        assert_eq!(d.tick(t0 + Duration::from_secs(62)), None);
        assert_eq!(d.tick(t0 + Duration::from_secs(63)), Some(Action::Probe));
        assert_eq!(d.probe_live(), Some(Action::Promote { from: 1 }));
        assert_eq!(d.active, 0);
        assert_eq!(d.tick(t0 + Duration::from_secs(200)), None);
    }

    #[test]
    fn no_return_when_not_asked_and_no_switch_with_one_destination() {
        let t0 = Instant::now();
        let r = Redundancy::ActiveBackup {
            after_failures: 1,
            return_to_primary: false,
            primary_retry: Duration::from_secs(1),
        };
        let mut d = Decider::new(2, &r, t0);
        assert!(d.failed(t0, "x").is_some());
        assert_eq!(d.tick(t0 + Duration::from_secs(100)), None);
        let mut one = Decider::new(1, &ab(1), t0);
        assert_eq!(one.failed(t0, "x"), None);
    }
}
