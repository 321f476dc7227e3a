//! The controller: owns the inputs, streams and pushes, runs the push
//! scheduler, keeps the variables, fires the triggers, applies commands, and
//! publishes state, events and telemetry.
//!
//! One task, one loop, selecting over typed channels: MQTT commands, output
//! and input events, variable refreshes, blocking trigger answers, network
//! changes, and timers. Nothing here holds a lock; every piece of state is
//! owned by this task. Anything slow (a trigger handler, a variable's
//! command, an output draining its last packets) runs in a task of its own
//! and reports back, so the loop always answers. A command is validated in
//! full and saved before anything runs, so a bad command, or one that
//! cannot be saved, changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldcast_capture::input::InputEvent;
use fieldcast_capture::settings::EncodeChange;
use fieldcast_capture::{InputHandle, InputSpec, InputState};
use fieldcast_media::backoff::Backoff;
use fieldcast_media::netwatch::NetChange;
use fieldcast_media::output::{self, OutputEvent, OutputHandle, OutputSpec, OutputState, Target};
use fieldcast_media::record::RecordTarget;
use fieldcast_media::{Stream, Track, unix_now};
use fieldcast_schedule::Schedule;
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::adaptive::{Candidate, InputAbr, Step};
use crate::command::{self, Command};
use crate::config::Settings;
use crate::error::{ApiError, Code, ConfigError};
use crate::mqtt::{self, Incoming};
use crate::push::history::History;
use crate::push::rules::stream_matches;
use crate::push::scheduler::{self, After, Facts, Hold, Mark, Next, Now, StartLimiter};
use crate::push::{PushDef, PushKind, ValidPush};
use crate::store::{Layer, Persisted, Store};
use crate::topics::Topics;
use crate::triggers::{self, HandlerDef, Trigger, Verdict};
use crate::vars::{self, Refreshed, VarDef, VarValue};

/// What MQTT may add, at most: each costs memory and, for a push, a
/// pipeline; a fleet script gone wrong must not exhaust the device.
const MAX_MQTT_PUSHES: usize = 256;
const MAX_MQTT_VARIABLES: usize = 256;
const MAX_MQTT_HANDLERS: usize = 16;

/// The largest calendar read (a few years of a busy schedule fit easily).
const MAX_CALENDAR: usize = 4 * 1024 * 1024;

/// Reads a calendar file: a regular file (not a device, a FIFO, or a
/// symbolic link to one) of at most [`MAX_CALENDAR`] bytes.
fn read_calendar(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let mut text = String::new();
    f.take(MAX_CALENDAR as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    if text.len() > MAX_CALENDAR {
        return Err(format!("{shown}: longer than {MAX_CALENDAR} bytes"));
    }
    Ok(text)
}

/// How long a live stream's input may be down (restarting) before the
/// stream counts as offline.
const OFFLINE_GRACE: Duration = Duration::from_secs(3);

/// How often the scheduler looks at every push (MistServer checks once a
/// second; a quarter second keeps window edges tight).
const PASS: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// From the config file: can be started and stopped, not changed.
    Config,
    /// Added over MQTT and saved in the data directory.
    Mqtt,
    /// A push's instance for one wildcard stream (`id@name+suffix`):
    /// follows its parent, which is what is changed.
    Wildcard,
}

/// Where a push is in its life, as far as the controller is concerned; a
/// running output has its own finer state (connecting, live, backoff).
enum Phase {
    /// Not running, and why: stopped by the operator, or waiting for its
    /// stream, its schedule or its rules.
    Idle(Hold),
    /// Its blocking trigger handlers are running; the push's `generation`
    /// tells a late answer from a current one.
    Preparing,
    Running {
        handle: OutputHandle,
        /// The target it connected to, redacted.
        shown: String,
        rewritten: bool,
        /// It dials out (caller, rendezvous): a network change makes it
        /// dial again. Listeners wait for their callers.
        dials: bool,
        started: Instant,
    },
    /// Could not start (refused by a handler, a variable unset, a target
    /// invalid after substitution); tried again at `until`.
    Held {
        until: Instant,
        retry_at: f64,
        why: String,
    },
    /// A one-shot push that failed, or ended with its stream.
    Failed(String),
    Ended(String),
}

struct Push {
    valid: ValidPush,
    origin: Origin,
    /// The schedule in use: compiled from the definition and, when it
    /// imports a calendar, from the calendar's last good text.
    schedule: Option<Result<Schedule, String>>,
    phase: Phase,
    since: f64,
    generation: u64,
    /// Held-back attempts in a row (refusals, bad targets), for backoff.
    holds: u32,
    /// The backups filled in for the start under way.
    backups: Vec<String>,
}

impl Push {
    fn def(&self) -> &PushDef {
        &self.valid.def
    }

    fn handle(&self) -> Option<&OutputHandle> {
        match &self.phase {
            Phase::Running { handle, .. } => Some(handle),
            _ => None,
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = unix_now();
    }
}

/// The answer of a push's blocking handlers.
struct Prepared {
    id: String,
    generation: u64,
    verdict: Verdict,
}

/// A calendar (`.ics`) a scheduled push imports, fetched again and again.
struct Calendar {
    source: String,
    text: Option<String>,
    error: Option<String>,
    task: JoinHandle<()>,
}

struct CalendarLoaded {
    id: String,
    source: String,
    result: Result<String, String>,
}

/// A user variable with its current value.
struct Var {
    def: VarDef,
    origin: Origin,
    value: Option<String>,
    updated: Option<f64>,
    error: Option<String>,
    task: Option<JoinHandle<()>>,
}

pub struct Controller {
    /// Hands out push generations; never reset, so an answer for a push
    /// that was since replaced (same id) can never match.
    generations: u64,
    settings: Settings,
    topics: Topics,
    client: AsyncClient,
    store: Store,
    persisted: Persisted,
    http: reqwest::Client,
    streams: HashMap<String, Arc<Stream>>,
    /// Every running input by its stream name, wildcard streams included.
    inputs: BTreeMap<String, InputHandle>,
    input_events_tx: mpsc::UnboundedSender<InputEvent>,
    /// What capture devices discovery found (V4L2, ALSA, DeckLink).
    devices: Value,
    discovered_tx: mpsc::UnboundedSender<Value>,
    discovered: mpsc::UnboundedReceiver<Value>,
    /// Adaptive bitrate of the inputs that have it, by stream name.
    adaptive: BTreeMap<String, InputAbr>,
    pushes: BTreeMap<String, Push>,
    /// Outputs that were told to stop and are draining; a push waits for
    /// its old output before it starts again (a listener's port).
    stopping: HashMap<String, JoinHandle<()>>,
    /// Wildcard streams' inputs that were told to stop; a capture device
    /// can take a while to let go, and the loop must not wait for it.
    stopping_inputs: HashMap<String, JoinHandle<()>>,
    vars: BTreeMap<String, Var>,
    calendars: HashMap<String, Calendar>,
    live_streams: BTreeSet<String>,
    /// Since when each input has not been running.
    down_since: HashMap<String, Instant>,
    lost_inputs: BTreeSet<String>,
    history: History,
    limiter: StartLimiter,
    hold_backoff: Backoff,
    output_events_tx: mpsc::UnboundedSender<OutputEvent>,
    output_events: mpsc::UnboundedReceiver<OutputEvent>,
    input_events: mpsc::UnboundedReceiver<InputEvent>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
    prepared: mpsc::UnboundedReceiver<Prepared>,
    refreshed_tx: mpsc::UnboundedSender<Refreshed>,
    refreshed: mpsc::UnboundedReceiver<Refreshed>,
    calendar_tx: mpsc::UnboundedSender<CalendarLoaded>,
    calendar_rx: mpsc::UnboundedReceiver<CalendarLoaded>,
    started: Instant,
    last_state: Option<Value>,
    /// What each push's state was last published as, for push_state events.
    last_push_states: HashMap<String, (String, String)>,
    last_telemetry: Option<(Instant, HashMap<String, u64>)>,
    /// The MQTT session is up.
    online: bool,
    /// The config file, read again on SIGHUP.
    config_path: Option<std::path::PathBuf>,
    /// systemd's readiness and watchdog notifications.
    notifier: Option<crate::systemd::Notifier>,
}

impl Controller {
    /// Builds the controller and starts every input; pushes start from the
    /// first scheduler pass, once their streams are live.
    pub fn start(
        settings: Settings,
        client: AsyncClient,
        store: Store,
        persisted: Persisted,
        store_warning: Option<String>,
    ) -> Self {
        let topics = Topics::new(&settings.mqtt.prefix, &settings.device.id)
            .with_groups(&settings.mqtt.prefix, &settings.device.groups);
        let (output_events_tx, output_events) = mpsc::unbounded_channel();
        let (input_events_tx, input_events) = mpsc::unbounded_channel();
        let (discovered_tx, discovered) = mpsc::unbounded_channel();
        let (prepared_tx, prepared) = mpsc::unbounded_channel();
        let (refreshed_tx, refreshed) = mpsc::unbounded_channel();
        let (calendar_tx, calendar_rx) = mpsc::unbounded_channel();
        let streams = HashMap::new();
        let inputs = BTreeMap::new();
        let http = reqwest::Client::builder()
            .user_agent(concat!("fieldcast/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds (TLS roots load lazily)");
        let mut c = Controller {
            generations: 0,
            history: History::new(settings.pushes.history),
            limiter: StartLimiter::new(settings.pushes.max_starts_per_s),
            settings,
            topics,
            client,
            store,
            persisted,
            http,
            streams,
            inputs,
            input_events_tx,
            adaptive: BTreeMap::new(),
            devices: Value::Null,
            discovered_tx,
            discovered,
            pushes: BTreeMap::new(),
            stopping: HashMap::new(),
            stopping_inputs: HashMap::new(),
            vars: BTreeMap::new(),
            calendars: HashMap::new(),
            live_streams: BTreeSet::new(),
            down_since: HashMap::new(),
            lost_inputs: BTreeSet::new(),
            hold_backoff: Backoff::default(),
            output_events_tx,
            output_events,
            input_events,
            prepared_tx,
            prepared,
            refreshed_tx,
            refreshed,
            calendar_tx,
            calendar_rx,
            started: Instant::now(),
            last_state: None,
            last_push_states: HashMap::new(),
            last_telemetry: None,
            online: false,
            config_path: None,
            notifier: None,
        };
        if let Some(w) = store_warning {
            warn!("{w}");
        }
        for spec in c.settings.inputs.clone() {
            if !spec.template {
                c.spawn_input(spec);
            }
        }
        for name in c.persisted.streams.clone() {
            match c.wildcard_spec(&name) {
                Ok(spec) => c.spawn_input(spec),
                Err(e) => {
                    warn!(stream = %name, error = %e.message, "saved wildcard stream not started")
                }
            }
        }
        for valid in c.settings.outputs.clone() {
            c.insert_push(valid, Origin::Config);
        }
        let names = c.settings.stream_names();
        for def in c.persisted.pushes.clone() {
            if c.pushes.contains_key(&def.id) {
                warn!(push = %def.id, "a saved push has the id of a configured output; the config wins");
                continue;
            }
            match def.validate("", &names) {
                Ok(valid) => c.insert_push(valid, Origin::Mqtt),
                // Kept in the store untouched: a config change may bring its
                // stream back.
                Err(e) => {
                    warn!(push = %def.id, error = %e, "saved push is not valid with this config; not started")
                }
            }
        }
        c.load_vars();
        c
    }

    /// Where the config came from, so SIGHUP can read it again.
    pub fn with_config_path(mut self, path: std::path::PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    pub fn with_notifier(mut self, notifier: crate::systemd::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.notify(state);
        }
    }

    fn spawn_input(&mut self, mut spec: InputSpec) {
        // Encoder settings changed over MQTT survive a restart, as long as
        // they still fit the config and the board.
        if let Some(change) = self.persisted.encoders.get(&spec.name) {
            match self.changed_encode(&spec, change, "") {
                Ok(e) => spec.encode = e,
                Err(e) => {
                    warn!(input = %spec.name, error = %e.message, "saved encoder settings no longer apply; using the config's")
                }
            }
        }
        let tracks: &[Track] = if spec.has_audio() {
            &[Track::Video, Track::Audio]
        } else {
            &[Track::Video]
        };
        let stream = Stream::new(spec.name.clone(), tracks);
        self.streams.insert(spec.name.clone(), stream.clone());
        let handle = fieldcast_capture::input::spawn(
            spec.clone(),
            self.settings.board.clone(),
            stream,
            self.input_events_tx.clone(),
        );
        match &spec.adaptive_bitrate {
            Some(abr) => {
                self.adaptive
                    .insert(spec.name.clone(), InputAbr::new(abr.clone(), &spec.encode));
            }
            None => {
                self.adaptive.remove(&spec.name);
            }
        }
        self.inputs.insert(spec.name, handle);
    }

    fn no_input(&self, name: &str) -> ApiError {
        ApiError::field(
            Code::NotFound,
            "input",
            format!(
                "'{name}' is not a running input (inputs: {})",
                self.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    }

    /// The config's settings of input `name` (a configured input or a
    /// wildcard stream of a template), before changes over MQTT.
    fn base_input_spec(&self, name: &str) -> Option<InputSpec> {
        if name.contains('+') {
            return self.wildcard_spec(name).ok();
        }
        self.settings
            .inputs
            .iter()
            .find(|i| i.name == name && !i.template)
            .cloned()
    }

    /// `change` applied to `base`'s encoding, checked against the board.
    /// Errors name the setting (`bitrate_kbps`) prefixed by `at`.
    fn changed_encode(
        &self,
        base: &InputSpec,
        change: &EncodeChange,
        at: &str,
    ) -> Result<fieldcast_capture::settings::EncodeSettings, ApiError> {
        let mut spec = base.clone();
        spec.encode = change.apply(&base.encode);
        spec.validate("", &self.settings.board).map_err(|e| {
            let mut err = ApiError::from(ConfigError::from_capture(e));
            if let Some(f) = err.field.take() {
                let short = f.trim_start_matches(".encode.").to_string();
                err.message = err.message.replacen(&f, &format!("{at}{short}"), 1);
                err.field = Some(format!("{at}{short}"));
            }
            err
        })?;
        Ok(spec.encode)
    }

    /// `encoder.set` (on top of earlier changes) and `encoder.reset` (back
    /// to the config): saved first, then applied to the running input,
    /// live where the encoder allows it.
    async fn encoder_set(
        &mut self,
        input: &str,
        change: EncodeChange,
        reset: bool,
    ) -> Result<Value, ApiError> {
        let base = self
            .base_input_spec(input)
            .filter(|_| self.inputs.contains_key(input))
            .ok_or_else(|| self.no_input(input))?;
        let merged = if reset {
            change
        } else {
            self.persisted
                .encoders
                .get(input)
                .cloned()
                .unwrap_or_default()
                .then(&change)
        };
        let encode = self.changed_encode(&base, &merged, "")?;
        let before = self.persisted.clone();
        let previous = before
            .encoders
            .get(input)
            .and_then(|c| self.changed_encode(&base, c, "").ok())
            .unwrap_or_else(|| base.encode.clone());
        let mut next = self.persisted.clone();
        if merged.is_empty() {
            next.encoders.remove(input);
        } else {
            next.encoders.insert(input.to_string(), merged);
        }
        if next != self.persisted {
            self.save(next).await?;
        }
        let applied = self.apply_encode(input, encode.clone()).await;
        if applied["how"] == "failed" {
            // The device cannot run it (a size or rate the source or the
            // encoder refuses): back to what ran before, saved and applied.
            let why = applied["error"].as_str().unwrap_or("it failed").to_string();
            warn!(input, error = %why, "new encoder settings failed; restoring the previous ones");
            self.save(before).await?;
            self.apply_encode(input, previous).await;
            return Err(ApiError::new(
                Code::InvalidArgument,
                format!(
                    "input {input} did not run with these settings ({why}); the previous settings are back"
                ),
            ));
        }
        // The operator's bitrate is the new start (and, without max_kbps,
        // the new ceiling) of adaptive bitrate.
        if let Some(a) = self.adaptive.get_mut(input) {
            *a = InputAbr::new(a.config().clone(), &encode);
        }
        Ok(json!({"input": input, "applied": applied, "encode": encode}))
    }

    /// Adaptive bitrate: each input's lead link, sampled once a second;
    /// a decision is set on the encoder (live, not saved: the operator's
    /// setting stays what `encoder.set` made it).
    async fn adapt(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.adaptive.keys().cloned().collect();
        for input in names {
            if self.adaptive.get(&input).is_none_or(InputAbr::is_off) {
                continue;
            }
            // On the slate, or restarting: the encoder on air is not the
            // one a change would reach.
            let on_air = self.inputs.get(&input).is_some_and(|h| {
                let s = h.status();
                matches!(s.state, InputState::Running) && !s.slate
            });
            if !on_air {
                continue;
            }
            type Figures = (
                String,
                bool,
                Option<fieldcast_media::abr::LinkSample>,
                Option<usize>,
            );
            let figures: Vec<Figures> = self
                .pushes
                .iter()
                .filter(|(_, p)| p.def().stream == input)
                .filter_map(|(id, p)| match &p.phase {
                    Phase::Running { handle, shown, .. } => {
                        let s = handle.status();
                        // An SRT push, or one whose backup in use is SRT.
                        if !shown.starts_with("srt://") && s.srt.is_none() {
                            return None;
                        }
                        let link = s.srt.as_ref().map(fieldcast_media::abr::LinkSample::from);
                        Some((
                            id.clone(),
                            matches!(s.state, OutputState::Live),
                            link,
                            s.destination,
                        ))
                    }
                    _ => None,
                })
                .collect();
            let candidates: Vec<Candidate<'_>> = figures
                .iter()
                .map(|(id, live, link, destination)| Candidate {
                    id,
                    live: *live,
                    link: *link,
                    destination: *destination,
                })
                .collect();
            let Some(a) = self.adaptive.get_mut(&input) else {
                continue;
            };
            let Step::Change(d) = a.sample(now, &candidates) else {
                continue;
            };
            let lead = a.lead().map(str::to_string);
            let Some(mut encode) = self.running_encode(&input) else {
                continue;
            };
            encode.bitrate_kbps = d.to_kbps;
            let Some(handle) = self.inputs.get(&input) else {
                continue;
            };
            // A live change answers at once; anything else is a rebuild,
            // which adaptive bitrate must not cause every few seconds.
            let applied =
                tokio::time::timeout(Duration::from_secs(3), handle.reconfigure(encode)).await;
            let how = match &applied {
                Ok(Ok(applied)) => json!(applied.how),
                Ok(Err(e)) => {
                    warn!(input, error = %e, "adaptive bitrate off: the encoder refused a change");
                    if let Some(a) = self.adaptive.get_mut(&input) {
                        a.turn_off(format!("the encoder refused a bitrate change: {e}"));
                    }
                    continue;
                }
                Err(_) => json!("pending"),
            };
            info!(input, lead = ?lead, from = d.from_kbps, to = d.to_kbps, reason = %d.reason, "bitrate adapted");
            self.publish_event(json!({
                "event": "bitrate_adapted", "input": input, "lead": lead,
                "from_kbps": d.from_kbps, "to_kbps": d.to_kbps, "reason": d.reason,
            }));
            let Some(a) = self.adaptive.get_mut(&input) else {
                continue;
            };
            a.applied(d);
            if how != "live" {
                let why = "the encoder cannot change its bitrate while running (each change rebuilds the capture pipeline)";
                warn!(input, "adaptive bitrate off: {why}");
                a.turn_off(why.into());
            }
        }
    }

    /// The encoding input `name` runs with: the config's, with the
    /// operator's saved changes.
    fn running_encode(&self, name: &str) -> Option<fieldcast_capture::settings::EncodeSettings> {
        let base = self.base_input_spec(name)?;
        Some(
            self.persisted
                .encoders
                .get(name)
                .and_then(|c| self.changed_encode(&base, c, "").ok())
                .unwrap_or(base.encode),
        )
    }

    /// Hands new settings to a running input and tells operators.
    async fn apply_encode(
        &mut self,
        input: &str,
        encode: fieldcast_capture::settings::EncodeSettings,
    ) -> Value {
        let Some(handle) = self.inputs.get(input) else {
            return Value::Null;
        };
        // Bounded: a rebuilt pipeline answers at its first frame or its
        // failure (a source gets 15 s for its first frame).
        let applied =
            match tokio::time::timeout(Duration::from_secs(20), handle.reconfigure(encode.clone()))
                .await
            {
                Ok(Ok(a)) => json!(a),
                Ok(Err(e)) => json!({"how": "failed", "error": e}),
                Err(_) => json!({"how": "pending", "changed": []}),
            };
        info!(input, applied = %applied, "encoder settings changed");
        self.publish_event(json!({
            "event": "encoder_changed", "input": input, "applied": applied, "encode": encode,
        }));
        applied
    }

    /// The input of wildcard stream `name` (`base+suffix`): the settings of
    /// input `base` under its own name.
    fn wildcard_spec(&self, name: &str) -> Result<InputSpec, ApiError> {
        let (base, _) = name.split_once('+').ok_or_else(|| {
            ApiError::field(
                Code::InvalidArgument,
                "name",
                format!("'{name}' is not a wildcard stream (name+suffix)"),
            )
        })?;
        let spec = self
            .settings
            .inputs
            .iter()
            .find(|i| i.name == base)
            .ok_or_else(|| {
                ApiError::field(
                    Code::NotFound,
                    "name",
                    format!("'{base}' is not a configured input"),
                )
            })?;
        let inst = spec
            .instance(name)
            .map_err(|e| ApiError::field(Code::InvalidArgument, "name", e.to_string()))?;
        inst.validate("stream", &self.settings.board)
            .map_err(|e| ApiError::from(ConfigError::from_capture(e)))?;
        Ok(inst)
    }

    /// Creates the per-stream instances of pushes that serve wildcard
    /// streams (`stream = "cam+"`), and removes those whose stream or
    /// parent is gone. An instance is its parent's definition for one
    /// stream, with its own state, output and history, as MistServer runs
    /// one push per wildcard stream.
    async fn sync_instances(&mut self) {
        let mut want: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (id, p) in &self.pushes {
            if p.origin == Origin::Wildcard || !p.def().stream.ends_with('+') {
                continue;
            }
            for s in self.streams.keys() {
                if s.contains('+') && stream_matches(&p.def().stream, s) {
                    want.insert(format!("{id}@{s}"), (id.clone(), s.clone()));
                }
            }
        }
        let gone: Vec<String> = self
            .pushes
            .iter()
            .filter(|(id, p)| p.origin == Origin::Wildcard && !want.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_push(&id).await;
        }
        for (iid, (parent, stream)) in want {
            if self.pushes.contains_key(&iid) {
                continue;
            }
            let p = &self.pushes[&parent];
            let mut def = p.def().clone();
            def.id = iid.clone();
            def.stream = stream;
            let schedule = p.schedule.clone();
            let valid = ValidPush {
                def,
                schedule: p.valid.schedule.clone(),
            };
            self.pushes.insert(
                iid.clone(),
                Push {
                    valid,
                    origin: Origin::Wildcard,
                    schedule,
                    phase: Phase::Idle(Hold::Waiting("starting".into())),
                    since: unix_now(),
                    generation: 0,
                    holds: 0,
                    backups: Vec::new(),
                },
            );
            self.history
                .record(unix_now(), &iid, "added", format!("instance of {parent}"));
        }
    }

    fn insert_push(&mut self, valid: ValidPush, origin: Origin) {
        let id = valid.def.id.clone();
        let schedule = valid.schedule.clone().map(Ok);
        let ics = valid.def.schedule.as_ref().and_then(|s| s.ics.clone());
        self.pushes.insert(
            id.clone(),
            Push {
                valid,
                origin,
                schedule,
                phase: Phase::Idle(Hold::Waiting("starting".into())),
                since: unix_now(),
                generation: 0,
                holds: 0,
                backups: Vec::new(),
            },
        );
        self.watch_calendar(&id, ics);
    }

    /// Starts (or stops) fetching the calendar a push imports.
    fn watch_calendar(&mut self, id: &str, source: Option<String>) {
        if let Some(old) = self.calendars.get(id)
            && Some(&old.source) == source.as_ref()
        {
            return;
        }
        if let Some(old) = self.calendars.remove(id) {
            old.task.abort();
        }
        let Some(source) = source else { return };
        let every = self
            .pushes
            .get(id)
            .and_then(|p| p.def().schedule.as_ref())
            .map_or(300, |s| s.ics_refresh_s);
        let (tx, http, id_owned, src) = (
            self.calendar_tx.clone(),
            self.http.clone(),
            id.to_string(),
            source.clone(),
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let result = if src.starts_with("http://") || src.starts_with("https://") {
                    vars::fetch_url(&http, &src, Duration::from_secs(30), MAX_CALENDAR).await
                } else {
                    let path = std::path::PathBuf::from(&src);
                    tokio::task::spawn_blocking(move || read_calendar(&path))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                };
                let msg = CalendarLoaded {
                    id: id_owned.clone(),
                    source: src.clone(),
                    result,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        if let Some(p) = self.pushes.get_mut(id) {
            p.schedule = Some(Err("its calendar is not loaded yet".into()));
        }
        self.calendars.insert(
            id.to_string(),
            Calendar {
                source,
                text: None,
                error: None,
                task,
            },
        );
    }

    fn calendar_loaded(&mut self, c: CalendarLoaded) {
        let Some(cal) = self.calendars.get_mut(&c.id) else {
            return;
        };
        if cal.source != c.source {
            return;
        }
        let Some(p) = self.pushes.get_mut(&c.id) else {
            return;
        };
        let Some(def) = p.valid.def.schedule.clone() else {
            return;
        };
        let shown = vars::shown_url(&c.source);
        let compiled = c.result.and_then(|text| {
            Schedule::compile(&def, Some(&text))
                .map(|s| (s, text))
                .map_err(|e| e.to_string())
        });
        match compiled {
            Ok((schedule, text)) => {
                if cal.text.as_ref() != Some(&text) {
                    info!(push = %c.id, calendar = %shown, "calendar loaded");
                }
                cal.text = Some(text);
                cal.error = None;
                p.schedule = Some(Ok(schedule.clone()));
                let prefix = format!("{}@", c.id);
                for (iid, q) in self.pushes.iter_mut() {
                    if q.origin == Origin::Wildcard && iid.starts_with(&prefix) {
                        q.schedule = Some(Ok(schedule.clone()));
                    }
                }
            }
            Err(e) => {
                let first = cal.error.as_ref() != Some(&e);
                cal.error = Some(e.clone());
                let kept_last = cal.text.is_some();
                // The last good calendar stays in use.
                if !kept_last {
                    p.schedule = Some(Err(e.clone()));
                }
                if first {
                    warn!(push = %c.id, calendar = %shown, error = %e, "calendar not loaded");
                    self.publish_event(json!({"event": "calendar_failed", "id": c.id, "calendar": shown, "error": e, "kept_last": kept_last}));
                }
            }
        }
    }

    /// The variables in effect: the config's, with those set over MQTT in
    /// their place; sources (re)started only where the definition changed.
    fn load_vars(&mut self) {
        let mut want: BTreeMap<String, (VarDef, Origin)> = BTreeMap::new();
        for v in &self.settings.variables {
            want.insert(v.name.clone(), (v.clone(), Origin::Config));
        }
        for v in &self.persisted.variables {
            if let Err(e) = v.validate("") {
                warn!(variable = %v.name, error = %e, "saved variable is not valid; not used");
                continue;
            }
            if v.command.is_some() && !self.settings.control.allow_exec {
                warn!(variable = %v.name, "saved command variable not run: [control] allow_exec is off");
                continue;
            }
            want.insert(v.name.clone(), (v.clone(), Origin::Mqtt));
        }
        self.vars.retain(|name, var| {
            let keep = want.get(name).is_some_and(|(d, _)| *d == var.def);
            if !keep && let Some(t) = var.task.take() {
                t.abort();
            }
            keep
        });
        for (name, (def, origin)) in want {
            if let Some(v) = self.vars.get_mut(&name) {
                v.origin = origin;
                continue;
            }
            let (value, task) = match def.source() {
                vars::Source::Static(v) => (Some(v), None),
                _ => (
                    None,
                    Some(vars::spawn_source(
                        def.clone(),
                        self.http.clone(),
                        self.refreshed_tx.clone(),
                    )),
                ),
            };
            self.vars.insert(
                name,
                Var {
                    def,
                    origin,
                    value,
                    updated: None,
                    error: None,
                    task,
                },
            );
        }
    }

    fn var_refreshed(&mut self, r: Refreshed) {
        let Some(var) = self.vars.get_mut(&r.name) else {
            return;
        };
        if var.def != r.def {
            return;
        }
        match r.result {
            Ok(value) => {
                if var.error.take().is_some() {
                    info!(variable = %r.name, "variable source works again");
                }
                if var.value.as_ref() != Some(&value) {
                    debug!(variable = %r.name, "variable changed");
                }
                var.value = Some(value);
                var.updated = Some(unix_now());
            }
            Err(e) => {
                let first = var.error.as_ref() != Some(&e);
                var.error = Some(e.clone());
                if first {
                    warn!(variable = %r.name, error = %e, "variable not refreshed; keeping its last value");
                    let kept = var.value.is_some();
                    self.trigger(
                        Trigger::VariableFailed,
                        None,
                        json!({"name": r.name, "error": e, "kept_last": kept}),
                    );
                }
            }
        }
    }

    /// Looks a variable up for a push of `stream` (built-ins first: a user
    /// variable cannot shadow one).
    fn lookup<'a>(
        &'a self,
        stream: Option<&'a str>,
        push: Option<&'a str>,
        clock: &'a BTreeMap<&'static str, String>,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        // Borrowed, not copied: this runs for every push four times a
        // second, and variables may be large.
        let parts = stream.map(vars::stream_parts);
        move |name: &str| -> Option<String> {
            if let Some(v) = clock.get(name) {
                return Some(v.clone());
            }
            match name {
                "device" => return Some(self.settings.device.id.clone()),
                "board" => return Some(self.settings.board.board.name.clone()),
                "uptime" => return Some(self.started.elapsed().as_secs().to_string()),
                "push" if push.is_some() => return push.map(str::to_string),
                "input_status" if stream.is_some() => {
                    return Some(
                        stream
                            .and_then(|s| self.inputs.get(s))
                            .map(|i| input_state_name(&i.status().state).to_string())
                            .unwrap_or_else(|| "none".into()),
                    );
                }
                _ => {}
            }
            if let Some(parts) = &parts
                && let Some((_, v)) = parts.iter().find(|(k, _)| *k == name)
            {
                return Some(v.clone());
            }
            if vars::BUILTINS.contains(&name) {
                return None;
            }
            self.vars.get(name).and_then(|v| v.value.clone())
        }
    }

    fn clock(&self) -> BTreeMap<&'static str, String> {
        vars::time_builtins(jiff::Timestamp::now(), &self.settings.timezone)
    }

    /// The handlers in effect: the config's, then those set over MQTT that
    /// this config allows (a saved exec handler stays unused once
    /// `allow_exec` is turned off; one that no longer validates is unused).
    fn handlers(&self) -> Vec<HandlerDef> {
        let c = &self.settings.control;
        let from_mqtt = self.persisted.triggers.iter().filter(|h| {
            (h.exec.is_none() || c.allow_exec)
                && (!h.on.can_block() || c.allow_push_handlers)
                && h.validate("").is_ok()
        });
        self.settings
            .triggers
            .iter()
            .cloned()
            .chain(from_mqtt.cloned().map(|mut h| {
                h.trusted = c.allow_push_handlers;
                h
            }))
            .collect()
    }

    /// Publishes trigger `t` as an event and runs its (non-blocking)
    /// handlers with it.
    fn trigger(&self, t: Trigger, stream: Option<&str>, mut body: Value) {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("event".into(), json!(t.name()));
            if let Some(s) = stream {
                obj.insert("stream".into(), json!(s));
            }
        }
        self.publish_event(body.clone());
        if let Some(obj) = body.as_object_mut() {
            obj.insert("ts".into(), json!(unix_now()));
            obj.insert("device".into(), json!(self.settings.device.id));
        }
        for h in self.handlers() {
            if h.on == t && h.applies_to(stream) {
                triggers::fire(h, body.clone(), self.http.clone());
            }
        }
    }

    /// The operator's last word on a push; an instance of a wildcard push
    /// without one of its own follows its parent's.
    fn mark(&self, id: &str) -> Mark {
        let own = self.persisted.running.get(id);
        let parent = || {
            id.split_once('@')
                .and_then(|(p, _)| self.persisted.running.get(p))
        };
        match own.or_else(parent) {
            Some(true) => Mark::Started,
            Some(false) => Mark::Stopped,
            None => Mark::Default,
        }
    }

    /// One pass of the scheduler: every push that should run and does not
    /// is started (as far as the start rate allows), every push that runs
    /// and should not is stopped.
    async fn schedule_pass(&mut self) {
        self.update_live_streams();
        self.sync_instances().await;
        self.stopping.retain(|_, t| !t.is_finished());
        let now = unix_now() as i64;
        let clock = self.clock();
        let ids: Vec<String> = self.pushes.keys().cloned().collect();
        for id in ids {
            let Some(p) = self.pushes.get(&id) else {
                continue;
            };
            let def = p.def();
            if def.stream.ends_with('+') {
                // A template: its instances run, one per wildcard stream.
                let n = self
                    .pushes
                    .values()
                    .filter(|q| {
                        q.origin == Origin::Wildcard && q.def().id.starts_with(&format!("{id}@"))
                    })
                    .count();
                let hold = Hold::Waiting(format!(
                    "serves the wildcard streams {}*: {n} now",
                    def.stream
                ));
                if !matches!(&p.phase, Phase::Idle(h) if *h == hold) {
                    let p = self.pushes.get_mut(&id).expect("present");
                    p.set_phase(Phase::Idle(hold));
                }
                continue;
            }
            let lookup = self.lookup(Some(&def.stream), Some(&id), &clock);
            let schedule = p
                .schedule
                .as_ref()
                .map(|s| s.as_ref().map_err(String::as_str));
            let facts = Facts {
                now,
                stream: &def.stream,
                live_streams: &self.live_streams,
                mark: self.mark(&id),
                schedule,
                vars: &lookup,
            };
            let decision = scheduler::decide(def, &facts);
            // What to do, decided with the push borrowed; done after.
            let now_is = match &p.phase {
                Phase::Idle(h) => Now::Idle(h.clone()),
                Phase::Preparing => Now::Preparing,
                Phase::Running { handle, .. } => Now::Running {
                    failed: handle.is_finished().then(|| match handle.status().state {
                        OutputState::Failed { reason } => reason,
                        _ => "the output ended".into(),
                    }),
                },
                Phase::Held { until, .. } => Now::Held {
                    due: *until <= Instant::now(),
                },
                Phase::Failed(_) | Phase::Ended(_) => Now::Finished,
            };
            let next = scheduler::step(&now_is, decision, def.kind);
            let rendered = (next == Next::Start).then(|| {
                let target = vars::substitute_push_target(&def.target, &lookup)
                    .map_err(|e| e.to_string())?;
                let backups = def
                    .backups
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        vars::substitute_target(b, &lookup)
                            .map_err(|e| format!("backups[{i}]: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, String>((target, backups))
            });
            drop(lookup);
            match next {
                Next::Nothing => {}
                Next::Stop { then, reason } => {
                    let phase = match then {
                        After::Idle(hold) => Phase::Idle(hold),
                        After::Ended => Phase::Ended(reason.clone()),
                        After::Failed => Phase::Failed(reason.clone()),
                        After::Retry => self.held(&id, &reason).0,
                    };
                    self.end_push(&id, phase, &reason).await;
                }
                Next::Hold(hold) => {
                    // A late answer of its handlers is ignored.
                    let p = self.pushes.get_mut(&id).expect("present");
                    self.generations += 1;
                    p.generation = self.generations;
                    p.holds = 0;
                    p.set_phase(Phase::Idle(hold));
                }
                Next::Start => {
                    if self.stopping.contains_key(&id) {
                        continue; // its previous output is still draining
                    }
                    if !self.limiter.try_start(Instant::now()) {
                        continue; // next pass
                    }
                    self.begin_start(&id, rendered.expect("rendered for a start"));
                }
            }
        }
    }

    /// A stream is live while its input runs. An input that restarts its
    /// pipeline (a retry after an error, a renegotiation) passes through
    /// `error` for a moment: a live stream goes offline only after
    /// [`OFFLINE_GRACE`] of that, so its pushes follow the restart (on a
    /// keyframe) instead of being stopped and started.
    fn update_live_streams(&mut self) {
        let now = Instant::now();
        let mut live = BTreeSet::new();
        for (name, input) in &self.inputs {
            // The slate keeps a lost input's stream going: its pushes stay.
            let status = input.status();
            if matches!(status.state, InputState::Running) || status.slate {
                self.down_since.remove(name);
                live.insert(name.clone());
            } else {
                let since = *self.down_since.entry(name.clone()).or_insert(now);
                if self.live_streams.contains(name) && now - since < OFFLINE_GRACE {
                    live.insert(name.clone());
                }
            }
        }
        self.down_since
            .retain(|name, _| self.inputs.contains_key(name));
        if live == self.live_streams {
            return;
        }
        let went_live: Vec<String> = live.difference(&self.live_streams).cloned().collect();
        let went_off: Vec<String> = self.live_streams.difference(&live).cloned().collect();
        self.live_streams = live;
        for s in went_live {
            info!(stream = %s, "stream live");
            self.trigger(Trigger::StreamLive, Some(&s), json!({}));
        }
        for s in went_off {
            info!(stream = %s, "stream offline");
            self.trigger(Trigger::StreamOffline, Some(&s), json!({}));
        }
    }

    /// Starts push `id` with `rendered` (its target with the variables
    /// filled in): through its blocking handlers, if it has any.
    fn begin_start(&mut self, id: &str, rendered: Result<(String, Vec<String>), String>) {
        let (target, backups) = match rendered {
            Ok(t) => t,
            Err(why) => return self.hold(id, format!("target: {why}")),
        };
        let handlers = self.handlers();
        let p = self.pushes.get_mut(id).expect("present");
        // Handlers decide the primary target; the backups go as configured.
        p.backups = backups;
        self.generations += 1;
        p.generation = self.generations;
        let generation = p.generation;
        let stream = p.def().stream.clone();
        let blocking: Vec<HandlerDef> = handlers
            .into_iter()
            .filter(|h| matches!(h.on, Trigger::PushStart | Trigger::PushRewrite))
            .filter(|h| h.applies_to(Some(&stream)))
            .collect();
        if blocking.is_empty() {
            return self.finish_start(Prepared {
                id: id.to_string(),
                generation,
                verdict: Verdict::Go {
                    target,
                    rewritten: false,
                },
            });
        }
        p.set_phase(Phase::Preparing);
        let event = json!({
            "id": id,
            "stream": stream,
            "kind": p.def().kind_name(),
            "device": self.settings.device.id,
            "ts": unix_now(),
        });
        let (tx, http, id) = (self.prepared_tx.clone(), self.http.clone(), id.to_string());
        tokio::spawn(async move {
            let verdict = triggers::before_push(&blocking, &stream, target, event, &http).await;
            let _ = tx.send(Prepared {
                id,
                generation,
                verdict,
            });
        });
    }

    /// Holds a push back after a failed start: retried after a backoff; a
    /// one-shot push fails instead.
    fn hold(&mut self, id: &str, why: String) {
        let p = self.pushes.get_mut(id).expect("present");
        self.history.record(unix_now(), id, "refused", why.clone());
        if p.def().kind == PushKind::Push {
            warn!(push = %id, reason = %why, "one-shot push not started");
            p.set_phase(Phase::Failed(why.clone()));
            self.publish_event(json!({"event": "push_refused", "id": id, "reason": why}));
            return;
        }
        let (held, delay) = self.held(id, &why);
        warn!(push = %id, reason = %why, retry_in = ?delay, "push not started");
        self.pushes.get_mut(id).expect("present").set_phase(held);
        self.publish_event(json!({"event": "push_refused", "id": id, "reason": why, "retry_in_s": delay.as_secs_f64()}));
    }

    /// The next `Held` phase of a push that could not run, after one more
    /// step of its backoff.
    fn held(&mut self, id: &str, why: &str) -> (Phase, Duration) {
        let p = self.pushes.get_mut(id).expect("present");
        p.holds += 1;
        let delay = self.hold_backoff.delay_random(p.holds);
        let phase = Phase::Held {
            until: Instant::now() + delay,
            retry_at: unix_now() + delay.as_secs_f64(),
            why: why.to_string(),
        };
        (phase, delay)
    }

    fn finish_start(&mut self, prepared: Prepared) {
        let Prepared {
            id,
            generation,
            verdict,
        } = prepared;
        let Some(p) = self.pushes.get(&id) else {
            return;
        };
        if p.generation != generation || matches!(p.phase, Phase::Running { .. }) {
            return;
        }
        let (text, rewritten) = match verdict {
            Verdict::Refuse(why) => return self.hold(&id, why),
            Verdict::Go { target, rewritten } => (target, rewritten),
        };
        let target = match Target::parse(&text) {
            Ok(t) => t,
            // The parser's messages never quote a secret.
            Err(e) => return self.hold(&id, e.to_string()),
        };
        let Some(stream) = self.streams.get(&p.def().stream).cloned() else {
            return self.hold(&id, format!("stream {} does not exist", p.def().stream));
        };
        let shown = target.redacted();
        let dials = target.dials();
        if let Target::Record(t) = &target {
            let trusted = match p.origin {
                Origin::Config => true,
                Origin::Mqtt => false,
                Origin::Wildcard => id
                    .split_once('@')
                    .and_then(|(parent, _)| self.pushes.get(parent))
                    .is_some_and(|q| q.origin == Origin::Config),
            };
            if !trusted && !t.root.starts_with(self.recording_dir()) {
                return self.hold(
                    &id,
                    format!(
                        "recording directory {} is outside {}",
                        t.root.display(),
                        self.recording_dir().display()
                    ),
                );
            }
        }
        let mut backups = Vec::new();
        for (i, b) in p.backups.iter().enumerate() {
            match Target::parse(b) {
                Ok(t) => backups.push(t),
                Err(e) => return self.hold(&id, format!("backups[{i}]: {e}")),
            }
        }
        let mut spec = OutputSpec::new(id.clone(), stream.clone(), target);
        spec.retry = p.def().kind != PushKind::Push;
        spec.backups = backups;
        spec.redundancy = p.def().redundancy.clone().unwrap_or_default().to_media();
        let tz = self.settings.timezone.clone();
        spec.namer = Some(std::sync::Arc::new(move |template, at, index| {
            vars::segment_name(template, at, index, &tz)
        }));
        info!(push = %id, target = %shown, rewritten, "starting push");
        let handle = output::spawn(spec, self.output_events_tx.clone());
        let stream_name = p.def().stream.clone();
        let p = self.pushes.get_mut(&id).expect("present");
        p.holds = 0;
        p.set_phase(Phase::Running {
            handle,
            shown: shown.clone(),
            rewritten,
            dials,
            started: Instant::now(),
        });
        self.history.record(
            unix_now(),
            &id,
            "start",
            if rewritten {
                format!("{shown} (rewritten by a handler)")
            } else {
                shown.clone()
            },
        );
        if rewritten {
            self.publish_event(
                json!({"event": "push_rewrite", "id": id, "stream": stream_name, "target": shown}),
            );
        }
        // Handlers of push_start ran before connecting; this is the event.
        self.publish_event(
            json!({"event": "push_start", "id": id, "stream": stream_name, "target": shown}),
        );
    }

    /// Reads the config file again (SIGHUP, as `systemctl reload` sends)
    /// and applies what can change live, by difference: config outputs
    /// added, changed (only those restart) or removed, variables, trigger
    /// handlers and the scheduler's settings. Inputs, the board and the
    /// MQTT session need a restart; a change there is reported, not
    /// applied. A config that does not validate changes nothing.
    async fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            return;
        };
        let new = match crate::config::Config::load(&path) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "config not reloaded");
                self.publish_event(json!({"event": "config_reload_failed", "field": e.field, "error": e.to_string()}));
                return;
            }
        };
        let mut needs_restart = Vec::new();
        if new.inputs != self.settings.inputs {
            needs_restart.push("inputs");
        }
        if new.board.board.name != self.settings.board.board.name
            || new.device.board_file != self.settings.device.board_file
        {
            needs_restart.push("device.board");
        }
        if new.device.id != self.settings.device.id
            || new.device.groups != self.settings.device.groups
            || new.device.data_dir != self.settings.device.data_dir
            || new.device.timezone != self.settings.device.timezone
        {
            needs_restart.push("device");
        }
        if format!("{:?}{:?}", new.mqtt, new.broker)
            != format!("{:?}{:?}", self.settings.mqtt, self.settings.broker)
            || new.mqtt.password != self.settings.mqtt.password
        {
            needs_restart.push("mqtt");
        }
        let old: BTreeMap<String, PushDef> = self
            .settings
            .outputs
            .iter()
            .map(|v| (v.def.id.clone(), v.def.clone()))
            .collect();
        let (mut added, mut updated, mut removed) = (vec![], vec![], vec![]);
        for id in old.keys() {
            if !new.outputs.iter().any(|v| v.def.id == *id) {
                self.remove_push(id).await;
                removed.push(id.clone());
            }
        }
        for v in new.outputs.clone() {
            let id = v.def.id.clone();
            match old.get(&id) {
                Some(d) if *d == v.def => {}
                Some(_) => {
                    self.replace_push(v).await;
                    updated.push(id);
                }
                None => {
                    if self
                        .pushes
                        .get(&id)
                        .is_some_and(|p| p.origin == Origin::Mqtt)
                    {
                        warn!(push = %id, "a new config output has the id of a push added over MQTT; the config wins");
                        self.remove_push(&id).await;
                    }
                    self.insert_push(v, Origin::Config);
                    added.push(id);
                }
            }
        }
        self.limiter = StartLimiter::new(new.pushes.max_starts_per_s);
        self.history.set_capacity(new.pushes.history);
        self.settings.outputs = new.outputs;
        self.settings.variables = new.variables;
        self.settings.triggers = new.triggers;
        self.settings.pushes = new.pushes;
        self.settings.control = new.control;
        self.load_vars();
        info!(
            ?added,
            ?updated,
            ?removed,
            ?needs_restart,
            "config reloaded"
        );
        self.config_changed(
            "reload",
            json!({"added": added, "updated": updated, "removed": removed, "needs_restart": needs_restart}),
        );
    }

    /// Stops a running push (its output drains in the background), fires
    /// `push_end`, and moves it to `next`.
    async fn end_push(&mut self, id: &str, next: Phase, reason: &str) {
        let Some(p) = self.pushes.get_mut(id) else {
            return;
        };
        let finished = matches!(next, Phase::Ended(_) | Phase::Failed(_));
        let old = std::mem::replace(&mut p.phase, Phase::Idle(Hold::Waiting(String::new())));
        p.set_phase(next);
        let stream = p.def().stream.clone();
        let one_shot = p.def().kind == PushKind::Push;
        if let Phase::Running {
            handle,
            shown,
            started,
            ..
        } = old
        {
            let s = handle.status();
            info!(push = %id, %reason, "push ends");
            self.history
                .record(unix_now(), id, "stop", reason.to_string());
            let t = tokio::spawn(handle.stop());
            self.stopping.insert(id.to_string(), t);
            let lines = self.history.last_lines(id, 10);
            self.trigger(
                Trigger::PushEnd,
                Some(&stream),
                json!({
                    "id": id,
                    "target": shown,
                    "reason": reason,
                    "duration_s": started.elapsed().as_secs_f64(),
                    "stats": {
                        "frames_sent": s.frames_sent,
                        "bytes_sent": s.bytes_sent,
                        "frames_dropped": s.frames_dropped,
                        "reconnects": s.reconnects,
                        "last_error": s.last_error,
                    },
                    "log": lines,
                }),
            );
        }
        if one_shot && finished {
            // A one-shot push that ended stays ended across a restart.
            let mut next = self.persisted.clone();
            next.running.insert(id.to_string(), false);
            if let Err(e) = self.save(next).await {
                warn!(push = %id, error = %e.message, "could not remember that the push ended");
            }
        }
    }

    /// Runs until SIGTERM or SIGINT, then stops every pipeline and says
    /// offline. Nothing in this loop waits on the broker (see `mqtt`), so a
    /// broker outage never makes the daemon deaf to signals or commands.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut up: watch::Receiver<bool>,
        mut net: Option<mpsc::Receiver<NetChange>>,
    ) {
        let mut pass = tokio::time::interval(PASS);
        pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut telemetry_tick =
            tokio::time::interval(Duration::from_secs(self.settings.mqtt.telemetry_interval_s));
        telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The watchdog is fed from this loop: if it stops turning, systemd
        // restarts the daemon.
        let watchdog_every = self
            .notifier
            .as_ref()
            .and_then(|n| n.watchdog_every())
            .unwrap_or(Duration::from_secs(3600));
        let watchdog_on = self
            .notifier
            .as_ref()
            .is_some_and(|n| n.watchdog_every().is_some());
        let mut watchdog_tick = tokio::time::interval(watchdog_every);
        watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.notify("READY=1");
        let mut adapt_tick = tokio::time::interval(Duration::from_secs(1));
        adapt_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("SIGHUP handler");
        self.trigger(
            Trigger::SystemStart,
            None,
            json!({"version": env!("CARGO_PKG_VERSION")}),
        );
        // Capture devices, for operators picking an input: found off the
        // loop, reported in state.
        let tx = self.discovered_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(discover_devices().await);
        });
        loop {
            tokio::select! {
                Ok(()) = up.changed() => {
                    self.online = *up.borrow_and_update();
                    // The retained state on the broker may be stale or gone.
                    self.last_state = None;
                    self.publish_state();
                }
                Some(Incoming::Command { name, payload, response_topic, correlation }) = incoming.recv() => {
                    // Discovery may take seconds on a slow device: answered
                    // from a task of its own, the loop goes on.
                    if let Ok(Command::DevicesDiscover) = command::parse(&name, &payload) {
                        let (client, topics) = (self.client.clone(), self.topics.clone());
                        let (device, tx) = (self.settings.device.id.clone(), self.discovered_tx.clone());
                        tokio::spawn(async move {
                            let report = discover_devices().await;
                            let body = command::reply(&device, &name, &Ok(report.clone()));
                            mqtt::reply(&client, &topics, &name, response_topic, correlation, body);
                            let _ = tx.send(report);
                        });
                        continue;
                    }
                    let outcome = match command::parse(&name, &payload) {
                        Ok(cmd) => self.apply(cmd).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = &outcome {
                        // The message never carries a secret; see ApiError.
                        info!(command = %name, code = ?e.code, error = %e.message, "command refused");
                    }
                    let body = command::reply(&self.settings.device.id, &name, &outcome);
                    mqtt::reply(&self.client, &self.topics, &name, response_topic, correlation, body);
                    // Act on the change at once rather than on the next pass.
                    self.schedule_pass().await;
                    self.publish_state();
                }
                Some(e) = self.output_events.recv() => {
                    self.output_event(e).await;
                    self.publish_state();
                }
                Some(e) = self.input_events.recv() => {
                    self.input_event(e);
                    self.schedule_pass().await;
                    self.publish_state();
                }
                Some(p) = self.prepared.recv() => {
                    self.finish_start(p);
                    self.publish_state();
                }
                Some(r) = self.refreshed.recv() => self.var_refreshed(r),
                Some(d) = self.discovered.recv() => {
                    self.devices = d;
                    self.publish_state();
                }
                Some(c) = self.calendar_rx.recv() => self.calendar_loaded(c),
                Some(change) = recv_net(&mut net) => self.network_changed(change),
                _ = pass.tick() => {
                    self.schedule_pass().await;
                    self.publish_state();
                }
                _ = telemetry_tick.tick() => self.publish_telemetry(),
                _ = adapt_tick.tick(), if !self.adaptive.is_empty() => self.adapt().await,
                _ = watchdog_tick.tick(), if watchdog_on => self.notify("WATCHDOG=1"),
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    self.reload().await;
                    self.schedule_pass().await;
                    self.publish_state();
                }
            }
        }
        info!("shutting down");
        self.notify("STOPPING=1");
        self.trigger(Trigger::SystemStop, None, json!({}));
        // Every output ends at once (each flushes its muxer and lets libsrt
        // send what it holds), so a box with many pushes still stops well
        // inside systemd's stop timeout.
        let mut handles = Vec::new();
        for p in self.pushes.values_mut() {
            if let Phase::Running { handle, .. } =
                std::mem::replace(&mut p.phase, Phase::Idle(Hold::Waiting(String::new())))
            {
                handles.push(handle);
            }
        }
        futures::future::join_all(handles.into_iter().map(OutputHandle::stop)).await;
        for (_, t) in self.stopping.drain().chain(self.stopping_inputs.drain()) {
            let _ = t.await;
        }
        let inputs = std::mem::take(&mut self.inputs);
        futures::future::join_all(inputs.into_values().map(InputHandle::stop)).await;
        self.send(
            self.topics.status(),
            QoS::AtLeastOnce,
            true,
            b"offline".to_vec(),
        );
        let _ = self.client.try_disconnect();
        // Give the event loop a moment to flush the offline status.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn output_event(&mut self, e: OutputEvent) {
        self.publish_event(serde_json::to_value(&e).unwrap_or(Value::Null));
        match e {
            OutputEvent::OutputLive { id } => self.history.record(unix_now(), &id, "live", ""),
            OutputEvent::OutputDisconnected {
                id,
                reason,
                retry_in_s,
            } => self.history.record(
                unix_now(),
                &id,
                "disconnected",
                format!("{reason}; retry in {retry_in_s:.1} s"),
            ),
            OutputEvent::OutputFailed { id, reason } => {
                self.history
                    .record(unix_now(), &id, "failed", reason.clone());
                // Only if its current output is the one that ended: a late
                // event of an earlier output must not end a new one.
                if self
                    .pushes
                    .get(&id)
                    .and_then(|p| p.handle())
                    .is_some_and(|h| h.is_finished())
                {
                    self.end_push(&id, Phase::Failed(reason.clone()), &reason)
                        .await;
                }
            }
            OutputEvent::OutputStopped { .. } => {}
            OutputEvent::OutputFailover {
                id,
                from,
                to,
                reason,
            } => self.history.record(
                unix_now(),
                &id,
                "failover",
                format!("{from} -> {to}: {reason}"),
            ),
            OutputEvent::DestinationDown {
                id, target, reason, ..
            } => self.history.record(
                unix_now(),
                &id,
                "destination_down",
                format!("{target}: {reason}"),
            ),
            OutputEvent::RecordingSegment {
                id,
                file,
                bytes,
                duration_s,
            } => {
                self.history.record(
                    unix_now(),
                    &id,
                    "segment",
                    format!("{file} ({bytes} bytes, {duration_s:.1} s)"),
                );
                let stream = self.pushes.get(&id).map(|p| p.def().stream.clone());
                self.run_handlers(
                    Trigger::RecordingSegment,
                    stream.as_deref(),
                    json!({"event": "recording_segment", "id": id, "stream": stream,
                           "file": file, "bytes": bytes, "duration_s": duration_s}),
                );
            }
        }
    }

    fn input_event(&mut self, e: InputEvent) {
        self.publish_event(serde_json::to_value(&e).unwrap_or(Value::Null));
        match e {
            InputEvent::InputLost { input, reason } => {
                if self.lost_inputs.insert(input.clone()) {
                    // Already published above as an event; handlers too.
                    self.run_handlers(
                        Trigger::InputLost,
                        Some(&input),
                        json!({"event": "input_lost", "input": input, "reason": reason}),
                    );
                }
            }
            // Published above; nothing else follows from them (the input's
            // state already says whether its audio is silent).
            InputEvent::EncoderFallback { .. }
            | InputEvent::AudioSilence { .. }
            | InputEvent::AudioRestored { .. }
            | InputEvent::InputTimingChanged { .. } => {}
            InputEvent::InputLive { input } => {
                if self.lost_inputs.remove(&input) {
                    self.trigger(
                        Trigger::InputRestored,
                        Some(&input),
                        json!({"input": input}),
                    );
                }
            }
        }
    }

    /// Runs a trigger's handlers without publishing an event (the event
    /// was published by whoever reported it).
    fn run_handlers(&self, t: Trigger, stream: Option<&str>, mut body: Value) {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("ts".into(), json!(unix_now()));
            obj.insert("device".into(), json!(self.settings.device.id));
        }
        for h in self.handlers() {
            if h.on == t && h.applies_to(stream) {
                triggers::fire(h, body.clone(), self.http.clone());
            }
        }
    }

    /// A new route, address or interface: caller and rendezvous pushes
    /// dial again at once instead of sending into a path that may be gone
    /// (listeners wait for their callers, who will call again).
    fn network_changed(&mut self, change: NetChange) {
        if !self.settings.pushes.reconnect_on_network_change {
            return;
        }
        info!(change = %change.summary, "network changed");
        let mut reconnected = Vec::new();
        for (id, p) in &self.pushes {
            let Phase::Running { handle, dials, .. } = &p.phase else {
                continue;
            };
            if *dials {
                handle.reconnect(format!("network changed: {}", change.summary));
                reconnected.push(id.clone());
            }
        }
        for id in &reconnected {
            self.history.record(
                unix_now(),
                id,
                "reconnect",
                format!("network changed: {}", change.summary),
            );
        }
        self.publish_event(json!({"event": "network_changed", "change": change.summary, "kinds": change.kinds, "reconnected": reconnected}));
    }

    /// Queues a publish without waiting. False when the request queue is
    /// full (the broker has been away for a while) or the loop is gone.
    fn send(&self, topic: String, qos: QoS, retain: bool, body: Vec<u8>) -> bool {
        match self.client.try_publish(topic, qos, retain, body) {
            Ok(()) => true,
            Err(e) => {
                debug!(error = %e, "publish not queued");
                false
            }
        }
    }

    /// Saves `next` as the persisted state; on failure nothing changes. The
    /// write and its fsyncs run off the runtime: on slow flash they take a
    /// while, and the outputs must not wait for them.
    async fn save(&mut self, next: Persisted) -> Result<(), ApiError> {
        let store = self.store.clone();
        let to_write = next.clone();
        let result = tokio::task::spawn_blocking(move || store.save(&to_write))
            .await
            .unwrap_or_else(|e| {
                Err(crate::store::StoreError {
                    path: "pushes.json".into(),
                    reason: e.to_string(),
                })
            });
        result.map_err(|e| {
            error!(error = %e, "saving pushes");
            ApiError::new(
                Code::StorageFailed,
                format!("the change could not be saved ({e}); nothing was changed"),
            )
        })?;
        self.persisted = next;
        Ok(())
    }

    fn find(&self, id: &str) -> Result<&Push, ApiError> {
        self.pushes.get(id).ok_or_else(|| {
            ApiError::field(
                Code::NotFound,
                "id",
                format!(
                    "'{}' is not a push",
                    id.chars().take(64).collect::<String>()
                ),
            )
        })
    }

    fn config_changed(&self, what: &str, ids: Value) {
        self.trigger(
            Trigger::ConfigChanged,
            None,
            json!({"change": what, "ids": ids}),
        );
    }

    async fn apply(&mut self, cmd: Command) -> Result<Value, ApiError> {
        match cmd {
            Command::StateGet => Ok(self.state()),
            Command::DevicesDiscover => {
                let report = discover_devices().await;
                self.devices = report.clone();
                Ok(report)
            }
            Command::PushList => Ok(Value::Array(
                self.pushes.values().map(|p| self.push_detail(p)).collect(),
            )),
            Command::PushHistory { id, limit } => {
                if let Some(id) = &id {
                    self.find(id)?;
                }
                Ok(json!(self.history.query(id.as_deref(), limit)))
            }
            Command::PushAdd(def) => self.push_add(def).await,
            Command::PushUpdate(def) => self.push_update(def).await,
            Command::PushRemove { id } => {
                if !self.pushes.contains_key(&id)
                    && self.persisted.pushes.iter().any(|d| d.id == id)
                {
                    // Saved but not loaded (not valid with this config):
                    // removing it is how an operator cleans it up.
                    self.save(self.persisted.without(&id)).await?;
                    return Ok(json!({"changed": true}));
                }
                match self.find(&id)?.origin {
                    Origin::Config => {
                        return Err(ApiError::field(
                            Code::ReadOnly,
                            "id",
                            format!("'{id}' is an output of the config file; stop it instead"),
                        ));
                    }
                    Origin::Wildcard => {
                        return Err(ApiError::field(
                            Code::ReadOnly,
                            "id",
                            format!(
                                "'{id}' is an instance for a wildcard stream; stop it, or remove its parent"
                            ),
                        ));
                    }
                    Origin::Mqtt => {}
                }
                self.save(self.persisted.without(&id)).await?;
                self.remove_push(&id).await;
                self.publish_event(json!({"event": "push_removed", "id": id}));
                self.config_changed("push.remove", json!([id]));
                Ok(json!({"changed": true}))
            }
            Command::PushStart { id } => self.set_running(id, true).await,
            Command::PushStop { id } => self.set_running(id, false).await,
            Command::VarList => Ok(self.var_list()),
            Command::VarSet(def) => self.var_set(def).await,
            Command::VarRemove { name } => {
                if !self.persisted.variables.iter().any(|v| v.name == name) {
                    let why = if self
                        .vars
                        .get(&name)
                        .is_some_and(|v| v.origin == Origin::Config)
                    {
                        (
                            Code::ReadOnly,
                            format!("'{name}' comes from the config file"),
                        )
                    } else {
                        (
                            Code::NotFound,
                            format!("'{name}' is not a variable set over MQTT"),
                        )
                    };
                    return Err(ApiError::field(why.0, "name", why.1));
                }
                let mut next = self.persisted.clone();
                next.variables.retain(|v| v.name != name);
                self.save(next).await?;
                self.load_vars();
                self.config_changed("var.remove", json!([name]));
                Ok(json!({"changed": true}))
            }
            Command::TriggerList => Ok(self.trigger_list()),
            Command::TriggerSet { on, handlers } => {
                if !self.settings.control.allow_exec && handlers.iter().any(|h| h.exec.is_some()) {
                    return Err(ApiError::field(
                        Code::Forbidden,
                        "handlers",
                        "exec handlers cannot be set over MQTT on this device ([control] allow_exec is off); use a url handler",
                    ));
                }
                if on.can_block()
                    && !handlers.is_empty()
                    && !self.settings.control.allow_push_handlers
                {
                    return Err(ApiError::field(
                        Code::Forbidden,
                        "on",
                        format!(
                            "handlers of {} decide where pushes go; this device takes them from its config file only ([control] allow_push_handlers is off)",
                            on.name()
                        ),
                    ));
                }
                if handlers.len() > MAX_MQTT_HANDLERS {
                    return Err(ApiError::field(
                        Code::LimitReached,
                        "handlers",
                        format!("at most {MAX_MQTT_HANDLERS} handlers per trigger"),
                    ));
                }
                let mut next = self.persisted.clone();
                next.triggers.retain(|h| h.on != on);
                next.triggers.extend(handlers);
                let changed = next != self.persisted;
                if changed {
                    self.save(next).await?;
                    self.config_changed("trigger.set", json!([on.name()]));
                }
                Ok(
                    json!({"changed": changed, "trigger": on.name(), "handlers": self.persisted.triggers.iter().filter(|h| h.on == on).map(HandlerDef::shown).collect::<Vec<_>>()}),
                )
            }
            Command::SchedulePreview {
                id,
                schedule,
                count,
            } => self.schedule_preview(id, schedule, count),
            Command::StreamStart { name } => self.stream_start(name).await,
            Command::StreamStop { name } => self.stream_stop(name).await,
            Command::StreamList => Ok(self.stream_list()),
            Command::EncoderSet { input, change } => self.encoder_set(&input, change, false).await,
            Command::EncoderReset { input } => {
                self.encoder_set(&input, EncodeChange::default(), true)
                    .await
            }
            Command::EncoderKeyframe { input } => {
                let stream = self
                    .streams
                    .get(&input)
                    .ok_or_else(|| self.no_input(&input))?;
                let sent = stream.request_keyframe();
                Ok(json!({"input": input, "requested": sent}))
            }
            Command::ConfigExport => Ok(self.export()),
            Command::ConfigImport(layer) => self.import(*layer).await,
        }
    }

    /// Starts wildcard stream `name` (`base+suffix`) with the settings of
    /// input `base`, and remembers it across restarts.
    async fn stream_start(&mut self, name: String) -> Result<Value, ApiError> {
        if self.streams.contains_key(&name) {
            return Ok(json!({"changed": false, "stream": name}));
        }
        let spec = self.wildcard_spec(&name)?;
        self.stopping_inputs.retain(|_, t| !t.is_finished());
        if self.stopping_inputs.contains_key(&name) {
            return Err(ApiError::field(
                Code::Busy,
                "name",
                format!("'{name}' is still stopping; try again in a moment"),
            ));
        }
        let running = self.streams.keys().filter(|s| s.contains('+')).count();
        if running >= self.settings.pushes.max_wildcard_streams {
            return Err(ApiError::field(
                Code::LimitReached,
                "name",
                format!(
                    "{running} wildcard streams run already ([pushes] max_wildcard_streams = {})",
                    self.settings.pushes.max_wildcard_streams
                ),
            ));
        }
        let mut next = self.persisted.clone();
        next.streams.push(name.clone());
        self.save(next).await?;
        info!(stream = %name, source = ?spec.video, "starting wildcard stream");
        self.spawn_input(spec);
        self.config_changed("stream.start", json!([name]));
        Ok(json!({"changed": true, "stream": name}))
    }

    async fn stream_stop(&mut self, name: String) -> Result<Value, ApiError> {
        if !name.contains('+') {
            let known = self.streams.contains_key(&name);
            return Err(ApiError::field(
                if known {
                    Code::ReadOnly
                } else {
                    Code::NotFound
                },
                "name",
                format!("'{name}' is not a wildcard stream (configured inputs run always)"),
            ));
        }
        if !self.streams.contains_key(&name) {
            return Ok(json!({"changed": false, "stream": name}));
        }
        let mut next = self.persisted.clone();
        next.streams.retain(|s| *s != name);
        self.save(next).await?;
        // Its pushes stop first (they would report the stream closing as a
        // failure), then the input.
        let serving: Vec<String> = self
            .pushes
            .iter()
            .filter(|(_, p)| p.def().stream == name && p.handle().is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in serving {
            let why = format!("stream {name} was stopped");
            let phase = if self.pushes[&id].def().kind == PushKind::Push {
                Phase::Ended(why.clone())
            } else {
                Phase::Idle(Hold::Offline(why.clone()))
            };
            self.end_push(&id, phase, &why).await;
        }
        self.streams.remove(&name);
        self.adaptive.remove(&name);
        if let Some(h) = self.inputs.remove(&name) {
            self.stopping_inputs
                .insert(name.clone(), tokio::spawn(h.stop()));
        }
        self.config_changed("stream.stop", json!([name]));
        Ok(json!({"changed": true, "stream": name}))
    }

    fn stream_list(&self) -> Value {
        let list: Vec<Value> = self
            .settings
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.template))
            .chain(
                self.streams
                    .keys()
                    .filter(|s| s.contains('+'))
                    .map(|s| (s.clone(), false)),
            )
            .map(|(name, template)| {
                let (base, wildcard) = name.split_once('+').unwrap_or((&name, ""));
                json!({
                    "name": name,
                    "base": base,
                    "wildcard": (!wildcard.is_empty()).then_some(wildcard),
                    "template": template,
                    "running": self.inputs.contains_key(&name),
                    "live": self.live_streams.contains(&name),
                })
            })
            .collect();
        Value::Array(list)
    }

    /// What a push sent over MQTT may not do that one of the config file
    /// may: read a calendar file outside the calendar directory (whoever
    /// can publish commands must not read the device's files).
    fn check_from_mqtt(&self, def: &PushDef, at: &str) -> Result<(), ApiError> {
        if RecordTarget::is_recording(&def.target) {
            let dir = self.recording_dir();
            let inside =
                RecordTarget::try_from(def.target.as_str()).is_ok_and(|t| t.root.starts_with(&dir));
            if !inside {
                return Err(ApiError::field(
                    Code::Forbidden,
                    crate::error::field_at(at, "target"),
                    format!(
                        "over MQTT a recording is written under {} (its directory must be fixed, not a variable)",
                        dir.display()
                    ),
                ));
            }
        }
        let Some(ics) = def.schedule.as_ref().and_then(|s| s.ics.as_deref()) else {
            return Ok(());
        };
        if ics.starts_with("http://") || ics.starts_with("https://") {
            return Ok(());
        }
        let dir = self.calendar_dir();
        let path = std::path::Path::new(ics);
        let inside = path.is_absolute()
            && path.starts_with(&dir)
            && path
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
        if inside {
            Ok(())
        } else {
            Err(ApiError::field(
                Code::Forbidden,
                crate::error::field_at(at, "schedule.ics"),
                format!(
                    "over MQTT a calendar is an http(s) URL or a file in {}",
                    dir.display()
                ),
            ))
        }
    }

    fn recording_dir(&self) -> std::path::PathBuf {
        self.settings
            .pushes
            .recording_dir
            .clone()
            .unwrap_or_else(|| self.settings.device.data_dir.join("recordings"))
    }

    fn calendar_dir(&self) -> std::path::PathBuf {
        self.settings
            .pushes
            .calendar_dir
            .clone()
            .unwrap_or_else(|| self.settings.device.data_dir.join("calendars"))
    }

    async fn push_add(&mut self, def: PushDef) -> Result<Value, ApiError> {
        let valid = def.validate("", &self.settings.stream_names())?;
        self.check_from_mqtt(&def, "")?;
        if let Some(existing) = self.pushes.get(&def.id) {
            if existing.origin == Origin::Config {
                return Err(ApiError::field(
                    Code::ReadOnly,
                    "id",
                    format!("'{}' is an output of the config file", def.id),
                ));
            }
            if *existing.def() == def {
                // Idempotent: the same add twice is one add.
                return Ok(json!({"changed": false, "push": self.push_detail(existing)}));
            }
            return Err(ApiError::field(
                Code::Conflict,
                "id",
                format!(
                    "'{}' exists with another definition; use push.update or remove it first",
                    def.id
                ),
            ));
        }
        if self.persisted.pushes.len() >= MAX_MQTT_PUSHES {
            return Err(ApiError::new(
                Code::LimitReached,
                format!("{MAX_MQTT_PUSHES} pushes were added over MQTT already; remove one first"),
            ));
        }
        // A saved push this config could not load (its stream is gone) is
        // replaced, not shadowed by a second entry; old marks go with it.
        let mut next = self.persisted.without(&def.id);
        next.pushes.push(def.clone());
        self.save(next).await?;
        let id = def.id.clone();
        self.insert_push(valid, Origin::Mqtt);
        self.history
            .record(unix_now(), &id, "added", def.shown_target());
        self.publish_event(json!({"event": "push_added", "id": id}));
        self.config_changed("push.add", json!([id]));
        self.schedule_pass().await;
        Ok(json!({"changed": true, "push": self.push_detail(&self.pushes[&id])}))
    }

    /// Replaces a push's definition: that push restarts (if it runs), and
    /// nothing else is touched.
    async fn push_update(&mut self, def: PushDef) -> Result<Value, ApiError> {
        let existing = self.find(&def.id)?;
        if existing.origin == Origin::Wildcard {
            return Err(ApiError::field(
                Code::ReadOnly,
                "id",
                format!(
                    "'{}' is an instance for a wildcard stream; change its parent",
                    def.id
                ),
            ));
        }
        if existing.origin == Origin::Config {
            return Err(ApiError::field(
                Code::ReadOnly,
                "id",
                format!("'{}' is an output of the config file", def.id),
            ));
        }
        if *existing.def() == def {
            return Ok(json!({"changed": false, "push": self.push_detail(existing)}));
        }
        let valid = def.validate("", &self.settings.stream_names())?;
        self.check_from_mqtt(&def, "")?;
        let mut next = self.persisted.clone();
        for d in next.pushes.iter_mut().filter(|d| d.id == def.id) {
            *d = def.clone();
        }
        self.save(next).await?;
        let id = def.id.clone();
        self.replace_push(valid).await;
        self.history
            .record(unix_now(), &id, "updated", def.shown_target());
        self.config_changed("push.update", json!([id]));
        self.schedule_pass().await;
        Ok(json!({"changed": true, "push": self.push_detail(&self.pushes[&id])}))
    }

    /// Stops a push (if running) and puts a new definition in its place.
    async fn replace_push(&mut self, valid: ValidPush) {
        let id = valid.def.id.clone();
        let origin = self.pushes.get(&id).map_or(Origin::Mqtt, |p| p.origin);
        // Its instances follow the new definition: made again next pass.
        let instances: Vec<String> = self
            .pushes
            .iter()
            .filter(|(iid, p)| p.origin == Origin::Wildcard && iid.starts_with(&format!("{id}@")))
            .map(|(iid, _)| iid.clone())
            .collect();
        for iid in instances {
            self.remove_push(&iid).await;
        }
        if self.pushes.get(&id).is_some_and(|p| p.handle().is_some()) {
            self.end_push(
                &id,
                Phase::Idle(Hold::Waiting("updated".into())),
                "its definition changed",
            )
            .await;
        }
        if let Some(c) = self.calendars.remove(&id) {
            c.task.abort();
        }
        self.insert_push(valid, origin);
    }

    async fn remove_push(&mut self, id: &str) {
        let instances: Vec<String> = self
            .pushes
            .iter()
            .filter(|(iid, p)| p.origin == Origin::Wildcard && iid.starts_with(&format!("{id}@")))
            .map(|(iid, _)| iid.clone())
            .collect();
        for iid in instances {
            Box::pin(self.remove_push(&iid)).await;
        }
        if self.pushes.get(id).is_some_and(|p| p.handle().is_some()) {
            self.end_push(id, Phase::Idle(Hold::Stopped("removed".into())), "removed")
                .await;
        }
        if let Some(c) = self.calendars.remove(id) {
            c.task.abort();
        }
        self.pushes.remove(id);
    }

    /// Starts or stops a push and remembers it across restarts. Idempotent:
    /// asking for what a push already does changes nothing. Starting a
    /// scheduled or auto push lets its rule decide when it runs; starting a
    /// one-shot push that ended runs it again.
    async fn set_running(&mut self, id: String, want: bool) -> Result<Value, ApiError> {
        let p = self.find(&id)?;
        let state_before = self.push_view(p)["state"].clone();
        let was_running = p.handle().is_some();
        let finished = matches!(p.phase, Phase::Failed(_) | Phase::Ended(_));
        let mut next = self.persisted.clone();
        next.running.insert(id.clone(), want);
        if next != self.persisted {
            self.save(next).await?;
        }
        let mut changed = false;
        if want && finished {
            let p = self.pushes.get_mut(&id).expect("present");
            p.set_phase(Phase::Idle(Hold::Waiting("started again".into())));
            changed = true;
        }
        if !want && was_running {
            self.end_push(
                &id,
                Phase::Idle(Hold::Stopped("stopped by the operator".into())),
                "stopped by the operator",
            )
            .await;
        }
        // The scheduler applies the new mark at once, so the reply shows
        // what it decided; `changed` says whether the push's state did.
        self.schedule_pass().await;
        changed |= self.push_view(&self.pushes[&id])["state"] != state_before;
        Ok(json!({"changed": changed, "push": self.push_detail(&self.pushes[&id])}))
    }

    async fn var_set(&mut self, def: VarDef) -> Result<Value, ApiError> {
        def.validate("")?;
        if def.command.is_some() && !self.settings.control.allow_exec {
            return Err(ApiError::field(
                Code::Forbidden,
                "command",
                "command variables cannot be set over MQTT on this device ([control] allow_exec is off)",
            ));
        }
        if let Some(v) = self.vars.get(&def.name)
            && v.origin == Origin::Config
            && !matches!(v.def.source(), vars::Source::Static(_))
        {
            return Err(ApiError::field(
                Code::ReadOnly,
                "name",
                format!(
                    "'{}' is a command or URL variable of the config file",
                    def.name
                ),
            ));
        }
        if self.persisted.variables.contains(&def) {
            return Ok(json!({"changed": false}));
        }
        if self.persisted.variables.len() >= MAX_MQTT_VARIABLES
            && !self.persisted.variables.iter().any(|v| v.name == def.name)
        {
            return Err(ApiError::new(
                Code::LimitReached,
                format!(
                    "{MAX_MQTT_VARIABLES} variables were set over MQTT already; remove one first"
                ),
            ));
        }
        let mut next = self.persisted.clone();
        next.variables.retain(|v| v.name != def.name);
        next.variables.push(def.clone());
        self.save(next).await?;
        self.load_vars();
        self.config_changed("var.set", json!([def.name]));
        Ok(json!({"changed": true, "variable": self.var_value(&def.name)}))
    }

    fn var_value(&self, name: &str) -> Option<VarValue> {
        self.vars.get(name).map(|v| VarValue {
            value: if v.def.secret {
                v.value.as_ref().map(|_| "***".to_string())
            } else {
                v.value.clone()
            },
            source: match v.def.source() {
                vars::Source::Static(_) => "static",
                vars::Source::Command(_) => "command",
                vars::Source::Url(_) => "url",
            },
            updated: v.updated,
            error: v.error.clone(),
        })
    }

    fn var_list(&self) -> Value {
        let clock = self.clock();
        let lookup = self.lookup(None, None, &clock);
        let mut builtins = serde_json::Map::new();
        for name in vars::BUILTINS {
            if let Some(v) = lookup(name) {
                builtins.insert(name.to_string(), json!(v));
            }
        }
        let mut streams = serde_json::Map::new();
        for name in self.streams.keys() {
            let l = self.lookup(Some(name), None, &clock);
            streams.insert(
                name.clone(),
                json!({"input_status": l("input_status"), "live": self.live_streams.contains(name)}),
            );
        }
        let user: serde_json::Map<String, Value> = self
            .vars
            .iter()
            .map(|(name, v)| {
                let mut val = serde_json::to_value(self.var_value(name)).unwrap_or(Value::Null);
                val["origin"] = json!(v.origin);
                (name.clone(), val)
            })
            .collect();
        json!({"variables": user, "builtin": builtins, "streams": streams})
    }

    fn trigger_list(&self) -> Value {
        let list: Vec<Value> = triggers::ALL
            .iter()
            .map(|t| {
                let config: Vec<Value> = self
                    .settings
                    .triggers
                    .iter()
                    .filter(|h| h.on == *t)
                    .map(|h| {
                        let mut v = h.shown();
                        v["origin"] = json!("config");
                        v
                    })
                    .collect();
                let mqtt = self
                    .persisted
                    .triggers
                    .iter()
                    .filter(|h| h.on == *t)
                    .map(|h| {
                        let mut v = h.shown();
                        v["origin"] = json!("mqtt");
                        v
                    });
                json!({
                    "trigger": t.name(),
                    "can_block": t.can_block(),
                    "handlers": config.into_iter().chain(mqtt).collect::<Vec<_>>(),
                })
            })
            .collect();
        Value::Array(list)
    }

    fn schedule_preview(
        &self,
        id: Option<String>,
        schedule: Option<fieldcast_schedule::ScheduleDef>,
        count: usize,
    ) -> Result<Value, ApiError> {
        let now = unix_now() as i64;
        let compiled;
        let (s, rules) = match (&id, &schedule) {
            (Some(id), _) => {
                let p = self.find(id)?;
                match &p.schedule {
                    Some(Ok(s)) => (s, p.def().rules.clone()),
                    Some(Err(why)) => {
                        return Err(ApiError::field(
                            Code::Conflict,
                            "id",
                            format!("the schedule of '{id}' is not known yet: {why}"),
                        ));
                    }
                    None => {
                        return Err(ApiError::field(
                            Code::InvalidArgument,
                            "id",
                            format!(
                                "'{id}' has no schedule (it is a {} push)",
                                p.def().kind_name()
                            ),
                        ));
                    }
                }
            }
            (None, Some(def)) => {
                if def.ics.is_some() {
                    return Err(ApiError::field(
                        Code::InvalidArgument,
                        "schedule.ics",
                        "a calendar can be previewed once a push imports it (give the push's id)",
                    ));
                }
                compiled = Schedule::compile(def, None).map_err(|e| {
                    ConfigError::new(
                        format!("schedule.{}", e.field.trim_start_matches("schedule.")),
                        e.message,
                    )
                })?;
                (&compiled, vec![])
            }
            (None, None) => unreachable!("checked by the parser"),
        };
        let windows: Vec<Value> = s
            .next_windows(now, count)
            .iter()
            .map(|w| w.describe(s))
            .collect();
        Ok(json!({
            "id": id,
            "now": now,
            "active": s.active_at(now).is_some(),
            "windows": windows,
            "rules": rules.iter().map(|r| r.describe()).collect::<Vec<_>>(),
        }))
    }

    fn export(&self) -> Value {
        let mut layer = self.persisted.layer();
        let secrets = self.settings.control.export_secrets;
        if !secrets {
            // Only what holds a secret is redacted, so an export without
            // any imports back unchanged; an import refuses what was.
            let url = |u: &mut String| {
                let has_secret = url::Url::parse(u).is_ok_and(|p| {
                    !p.username().is_empty() || p.password().is_some() || p.query().is_some()
                });
                if has_secret {
                    *u = vars::shown_url(u);
                }
            };
            for p in &mut layer.pushes {
                if crate::push::def::holds_secret(&p.target) {
                    p.target = p.shown_target();
                }
                for b in &mut p.backups {
                    if crate::push::def::holds_secret(b) {
                        *b = crate::push::def::shown(b);
                    }
                }
                if let Some(ics) = p.schedule.as_mut().and_then(|s| s.ics.as_mut()) {
                    url(ics);
                }
            }
            for v in &mut layer.variables {
                if v.secret && v.value.is_some() {
                    v.value = Some("***".into());
                }
                if let Some(u) = v.url.as_mut() {
                    url(u);
                }
            }
            for h in &mut layer.triggers {
                if let Some(u) = h.url.as_mut() {
                    url(u);
                }
            }
        }
        json!({"secrets": secrets, "config": layer})
    }

    /// Replaces everything managed over MQTT with `layer`, validated in
    /// full first; then applies the difference: pushes that did not change
    /// keep running untouched.
    async fn import(&mut self, layer: Layer) -> Result<Value, ApiError> {
        let names = self.settings.stream_names();
        let mut ids = BTreeSet::new();
        let mut valid = Vec::new();
        for (i, def) in layer.pushes.iter().enumerate() {
            let at = format!("config.pushes[{i}]");
            if def.target.contains("***") {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("{at}.target"),
                    "is redacted (exported without secrets); give the full target",
                ));
            }
            if let Some(i) = def.backups.iter().position(|b| b.contains("***")) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("{at}.backups[{i}]"),
                    "is redacted (exported without secrets); give the full target",
                ));
            }
            let v = def.validate(&at, &names)?;
            self.check_from_mqtt(def, &at)?;
            if !ids.insert(def.id.clone()) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("{at}.id"),
                    format!("'{}' is used twice", def.id),
                ));
            }
            if self
                .pushes
                .get(&def.id)
                .is_some_and(|p| p.origin == Origin::Config)
            {
                return Err(ApiError::field(
                    Code::ReadOnly,
                    format!("{at}.id"),
                    format!("'{}' is an output of the config file", def.id),
                ));
            }
            valid.push(v);
        }
        for (what, n, max) in [
            ("config.pushes", layer.pushes.len(), MAX_MQTT_PUSHES),
            (
                "config.variables",
                layer.variables.len(),
                MAX_MQTT_VARIABLES,
            ),
            (
                "config.triggers",
                layer.triggers.len(),
                MAX_MQTT_HANDLERS * triggers::ALL.len(),
            ),
            (
                "config.streams",
                layer.streams.len(),
                self.settings.pushes.max_wildcard_streams,
            ),
        ] {
            if n > max {
                return Err(ApiError::field(
                    Code::LimitReached,
                    what,
                    format!("{n} entries; at most {max}"),
                ));
            }
        }
        let redacted = "is redacted (exported without secrets); give it in full";
        for (i, p) in layer.pushes.iter().enumerate() {
            if p.schedule
                .as_ref()
                .and_then(|s| s.ics.as_deref())
                .is_some_and(|u| u.contains("?…"))
            {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("config.pushes[{i}].schedule.ics"),
                    redacted,
                ));
            }
        }
        for (i, v) in layer.variables.iter().enumerate() {
            let bad = if v.secret && v.value.as_deref() == Some("***") {
                Some("value")
            } else if v.url.as_deref().is_some_and(|u| u.contains("?…")) {
                Some("url")
            } else {
                None
            };
            if let Some(f) = bad {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("config.variables[{i}].{f}"),
                    redacted,
                ));
            }
        }
        for (i, h) in layer.triggers.iter().enumerate() {
            if h.url.as_deref().is_some_and(|u| u.contains("?…")) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("config.triggers[{i}].url"),
                    redacted,
                ));
            }
        }
        let mut var_names = BTreeSet::new();
        for (i, v) in layer.variables.iter().enumerate() {
            let at = format!("config.variables[{i}]");
            if self.vars.get(&v.name).is_some_and(|var| {
                var.origin == Origin::Config && !matches!(var.def.source(), vars::Source::Static(_))
            }) {
                return Err(ApiError::field(
                    Code::ReadOnly,
                    format!("{at}.name"),
                    format!(
                        "'{}' is a command or URL variable of the config file",
                        v.name
                    ),
                ));
            }
            v.validate(&at)?;
            if v.command.is_some() && !self.settings.control.allow_exec {
                return Err(ApiError::field(
                    Code::Forbidden,
                    format!("{at}.command"),
                    "command variables cannot be set over MQTT on this device ([control] allow_exec is off)",
                ));
            }
            if !var_names.insert(v.name.clone()) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("{at}.name"),
                    format!("'{}' is defined twice", v.name),
                ));
            }
        }
        for (i, h) in layer.triggers.iter().enumerate() {
            let at = format!("config.triggers[{i}]");
            h.validate(&at)?;
            if h.on.can_block() && !self.settings.control.allow_push_handlers {
                return Err(ApiError::field(
                    Code::Forbidden,
                    format!("{at}.on"),
                    format!(
                        "handlers of {} are taken from the config file only ([control] allow_push_handlers is off)",
                        h.on.name()
                    ),
                ));
            }
            if h.exec.is_some() && !self.settings.control.allow_exec {
                return Err(ApiError::field(
                    Code::Forbidden,
                    format!("{at}.exec"),
                    "exec handlers cannot be set over MQTT on this device ([control] allow_exec is off)",
                ));
            }
        }
        let mut stream_names = BTreeSet::new();
        for (i, name) in layer.streams.iter().enumerate() {
            self.wildcard_spec(name).map_err(|e| ApiError {
                field: Some(format!("config.streams[{i}]")),
                message: format!(
                    "config.streams[{i}]: {}",
                    e.message.trim_start_matches("name: ")
                ),
                ..e
            })?;
            if !stream_names.insert(name.clone()) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    format!("config.streams[{i}]"),
                    format!("'{name}' is listed twice"),
                ));
            }
        }
        for (id, _) in layer.running.iter() {
            let parent = id.split('@').next().unwrap_or(id);
            if !ids.contains(parent)
                && !self
                    .pushes
                    .get(parent)
                    .is_some_and(|p| p.origin == Origin::Config)
            {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    "config.running",
                    format!("'{id}' is not a push"),
                ));
            }
        }
        for (name, change) in &layer.encoders {
            let base = self.base_input_spec(name).ok_or_else(|| {
                ApiError::field(
                    Code::NotFound,
                    format!("config.encoders.{name}"),
                    format!("'{name}' is not an input"),
                )
            })?;
            self.changed_encode(&base, change, &format!("config.encoders.{name}."))?;
        }
        let next = Persisted::from_layer(layer);
        if next == self.persisted {
            let ids: Vec<&String> = next.pushes.iter().map(|d| &d.id).collect();
            return Ok(json!({
                "changed": false,
                "added": [], "updated": [], "removed": [],
                "unchanged": ids,
            }));
        }
        let before: BTreeMap<String, PushDef> = self
            .persisted
            .pushes
            .iter()
            .map(|d| (d.id.clone(), d.clone()))
            .collect();
        let encoders_before = self.persisted.encoders.clone();
        self.save(next).await?;
        let inputs: Vec<String> = self.inputs.keys().cloned().collect();
        for name in inputs {
            let after = self.persisted.encoders.get(&name).cloned();
            if encoders_before.get(&name) == after.as_ref() {
                continue;
            }
            let Some(base) = self.base_input_spec(&name) else {
                continue;
            };
            if let Ok(encode) = self.changed_encode(&base, &after.unwrap_or_default(), "") {
                self.apply_encode(&name, encode).await;
            }
        }
        let (mut added, mut updated, mut removed, mut unchanged) = (vec![], vec![], vec![], vec![]);
        for (id, old) in &before {
            if !ids.contains(id) {
                self.remove_push(id).await;
                removed.push(id.clone());
            } else if valid.iter().any(|v| v.def.id == *id && v.def == *old) {
                unchanged.push(id.clone());
            }
        }
        for v in valid {
            let id = v.def.id.clone();
            match before.get(&id) {
                None => {
                    self.insert_push(v, Origin::Mqtt);
                    added.push(id);
                }
                Some(old) if *old != v.def => {
                    self.replace_push(v).await;
                    updated.push(id);
                }
                Some(_) => {}
            }
        }
        // A push the import marks stopped stops now; one it marks started
        // follows on the next pass.
        let stop_now: Vec<String> = self
            .persisted
            .running
            .iter()
            .filter(|(id, run)| {
                !**run && self.pushes.get(*id).is_some_and(|p| p.handle().is_some())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stop_now {
            self.end_push(
                &id,
                Phase::Idle(Hold::Stopped("stopped by the operator".into())),
                "stopped by import",
            )
            .await;
        }
        // Wildcard streams: the ones no longer listed stop, new ones start.
        let running_wild: Vec<String> = self
            .streams
            .keys()
            .filter(|s| s.contains('+'))
            .cloned()
            .collect();
        for name in running_wild {
            if !stream_names.contains(&name) {
                let _ = self.stream_stop(name).await;
            }
        }
        for name in stream_names {
            if !self.streams.contains_key(&name)
                && let Ok(spec) = self.wildcard_spec(&name)
            {
                self.spawn_input(spec);
            }
        }
        self.load_vars();
        self.config_changed(
            "config.import",
            json!({"added": added, "updated": updated, "removed": removed}),
        );
        Ok(json!({
            "changed": true,
            "added": added,
            "updated": updated,
            "removed": removed,
            "unchanged": unchanged,
        }))
    }

    /// How a push looks in state and replies: its health, not its counters
    /// (those are telemetry), so the retained state changes only when
    /// something happens.
    fn push_view(&self, p: &Push) -> Value {
        let def = p.def();
        let status = p.handle().map(|h| h.status());
        let (state, reason, retry_at): (&str, Option<String>, Option<f64>) = match &p.phase {
            Phase::Idle(Hold::Stopped(why)) => ("stopped", Some(why.clone()), None),
            Phase::Idle(Hold::Waiting(why) | Hold::Offline(why)) => {
                ("waiting", Some(why.clone()), None)
            }
            Phase::Preparing => (
                "connecting",
                Some("running its trigger handlers".into()),
                None,
            ),
            Phase::Held { retry_at, why, .. } => ("backoff", Some(why.clone()), Some(*retry_at)),
            Phase::Failed(why) => ("failed", Some(why.clone()), None),
            Phase::Ended(why) => ("ended", Some(why.clone()), None),
            Phase::Running { .. } => match &status.as_ref().expect("running").state {
                OutputState::Connecting => ("connecting", None, None),
                OutputState::Waiting => ("waiting", Some("for a caller".into()), None),
                OutputState::Live => ("live", None, None),
                OutputState::Backoff { retry_at, reason } => {
                    ("backoff", Some(reason.clone()), Some(*retry_at))
                }
                OutputState::Failed { reason } => ("failed", Some(reason.clone()), None),
                OutputState::Stopped => ("stopped", None, None),
            },
        };
        let (target, rewritten) = match &p.phase {
            Phase::Running {
                shown, rewritten, ..
            } => (shown.clone(), *rewritten),
            _ => (def.shown_target(), false),
        };
        let since = match (&p.phase, &status) {
            (Phase::Running { .. }, Some(s)) => s.since.max(p.since),
            _ => p.since,
        };
        let mut view = json!({
            "id": def.id,
            "stream": def.stream,
            "kind": def.kind_name(),
            "target": target,
            "rewritten": rewritten,
            "origin": p.origin,
            "running": p.handle().is_some(),
            "state": state,
            "reason": reason,
            "retry_at": retry_at,
            "since": since,
            "reconnects": status.as_ref().map_or(0, |s| s.reconnects),
            "last_error": status.as_ref().and_then(|s| s.last_error.clone()),
        });
        // Only pushes with backups say which destination is in use.
        if !def.backups.is_empty()
            && let Some(obj) = view.as_object_mut()
        {
            obj.insert("backups".into(), json!(def.shown_backups()));
            if let Some(s) = &status {
                obj.insert("destination".into(), json!(s.destination));
                obj.insert("destinations".into(), json!(s.destinations));
            }
        }
        view
    }

    /// A push with its definition's details and counters, for `push.list`
    /// and command replies.
    fn push_detail(&self, p: &Push) -> Value {
        let mut v = self.push_view(p);
        let def = p.def();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("enabled".into(), json!(def.enabled));
            if let Some(s) = &def.schedule {
                let mut s = s.clone();
                if let Some(ics) = s.ics.as_mut() {
                    *ics = vars::shown_url(ics);
                }
                obj.insert("schedule".into(), json!(s));
            }
            if !def.rules.is_empty() {
                obj.insert("rules".into(), json!(def.rules));
            }
            if !def.inhibit.is_empty() {
                obj.insert("inhibit".into(), json!(def.inhibit));
            }
            if let Some(h) = p.handle() {
                let s = h.status();
                obj.insert("frames_sent".into(), json!(s.frames_sent));
                obj.insert("frames_dropped".into(), json!(s.frames_dropped));
                obj.insert("bytes_sent".into(), json!(s.bytes_sent));
                if s.srt.is_some() {
                    obj.insert("srt".into(), json!(s.srt));
                }
                if s.rtmp.is_some() {
                    obj.insert("rtmp".into(), json!(s.rtmp));
                }
                if s.recording.is_some() {
                    obj.insert("recording".into(), json!(s.recording));
                }
                if s.whip.is_some() {
                    obj.insert("whip".into(), json!(s.whip));
                }
            }
        }
        v
    }

    fn state(&self) -> Value {
        let inputs: Vec<Value> = self
            .inputs
            .values()
            .map(|i| serde_json::to_value(i.status()).unwrap_or(Value::Null))
            .collect();
        let outputs: Vec<Value> = self.pushes.values().map(|p| self.push_view(p)).collect();
        let healthy_push = |p: &Push| match &p.phase {
            Phase::Running { handle, .. } => {
                matches!(
                    handle.status().state,
                    OutputState::Live | OutputState::Waiting
                )
            }
            Phase::Held { .. } | Phase::Failed(_) => false,
            _ => true,
        };
        let healthy = self
            .inputs
            .values()
            .all(|i| matches!(i.status().state, InputState::Running))
            && self.pushes.values().all(healthy_push);
        json!({
            "device": self.settings.device.id,
            "version": env!("CARGO_PKG_VERSION"),
            "board": self.settings.board.board.name,
            "encoder": self.settings.board.video_encoder.element,
            "groups": self.settings.device.groups,
            "healthy": healthy,
            "streams": self.streams.keys().map(|s| (s.clone(), json!({"live": self.live_streams.contains(s)}))).collect::<serde_json::Map<_, _>>(),
            "inputs": inputs,
            "outputs": outputs,
            "devices": devices_summary(&self.devices),
        })
    }

    /// Publishes the retained state when it changed since the last time it
    /// was sent; while the broker is away, once it is back. Each push whose
    /// state changed also gets a `push_state` event.
    fn publish_state(&mut self) {
        let state = self.state();
        if let Some(outputs) = state["outputs"].as_array() {
            for o in outputs {
                let id = o["id"].as_str().unwrap_or_default().to_string();
                let now = (
                    o["state"].as_str().unwrap_or_default().to_string(),
                    o["reason"].as_str().unwrap_or_default().to_string(),
                );
                if self.last_push_states.get(&id) != Some(&now) {
                    let mut e = json!({"event": "push_state", "id": id, "state": now.0});
                    if !now.1.is_empty() {
                        e["reason"] = json!(now.1);
                    }
                    if let Some(r) = o["retry_at"].as_f64() {
                        e["retry_at"] = json!(r);
                    }
                    self.publish_event(e);
                    self.last_push_states.insert(id, now);
                }
            }
            self.last_push_states
                .retain(|id, _| self.pushes.contains_key(id));
        }
        if !self.online {
            return;
        }
        if self.last_state.as_ref() == Some(&state) {
            return;
        }
        let body = serde_json::to_vec(&state).expect("state serializes");
        if self.send(self.topics.state(), QoS::AtLeastOnce, true, body) {
            self.last_state = Some(state);
        }
    }

    fn publish_event(&self, mut event: Value) {
        if let Some(obj) = event.as_object_mut() {
            obj.insert("ts".into(), json!(unix_now()));
            obj.insert("device".into(), json!(self.settings.device.id));
        }
        info!(event = %event, "event");
        let body = serde_json::to_vec(&event).expect("event serializes");
        if !self.send(self.topics.events(), QoS::AtLeastOnce, false, body) {
            warn!("event not sent: the broker is unreachable");
        }
    }

    fn publish_telemetry(&mut self) {
        if !self.online {
            // Counters are cumulative: nothing is lost by skipping a report.
            return;
        }
        let now = Instant::now();
        let mut bytes_now = HashMap::new();
        let elapsed = self
            .last_telemetry
            .as_ref()
            .map(|(t, _)| (now - *t).as_secs_f64());
        let rate = |key: &str, bytes: u64, last: &Option<(Instant, HashMap<String, u64>)>| match (
            last, elapsed,
        ) {
            (Some((_, prev)), Some(dt)) if dt > 0.0 => prev
                .get(key)
                .map(|p| (bytes.saturating_sub(*p) as f64 * 8.0 / 1000.0 / dt).round() as u64),
            _ => None,
        };
        let mut streams = serde_json::Map::new();
        for (name, s) in &self.streams {
            let st = s.stats();
            let key = format!("stream:{name}");
            let kbps = rate(&key, st.bytes, &self.last_telemetry);
            bytes_now.insert(key, st.bytes);
            let mut v = serde_json::to_value(&st).unwrap_or(Value::Null);
            v["bitrate_kbps"] = json!(kbps);
            streams.insert(name.clone(), v);
        }
        let mut outputs = serde_json::Map::new();
        for (id, p) in &self.pushes {
            let Some(h) = p.handle() else { continue };
            let s = h.status();
            let key = format!("output:{id}");
            let kbps = s.bitrate_kbps;
            bytes_now.insert(key, s.bytes_sent);
            outputs.insert(
                id.clone(),
                json!({
                    "state": s.state.name(),
                    "bytes_sent": s.bytes_sent,
                    "bitrate_kbps": kbps,
                    "frames_sent": s.frames_sent,
                    "frames_dropped": s.frames_dropped,
                    "reconnects": s.reconnects,
                    "srt": s.srt,
                    "rtmp": s.rtmp,
                    "recording": s.recording,
                    "whip": s.whip,
                }),
            );
        }
        self.last_telemetry = Some((now, bytes_now));
        // Audio levels per input: they change every 100 ms, so they are
        // telemetry; the state only says whether the audio is silent.
        let inputs: serde_json::Map<String, Value> = self
            .inputs
            .iter()
            .filter_map(|(name, i)| Some((name.clone(), json!({"audio": i.audio_levels()?}))))
            .collect();
        let mut t = json!({
            "ts": unix_now(),
            "device": self.settings.device.id,
            "uptime_s": self.started.elapsed().as_secs(),
            "streams": streams,
            "outputs": outputs,
        });
        if !inputs.is_empty() {
            t["inputs"] = inputs.into();
        }
        if !self.adaptive.is_empty() {
            t["adaptive_bitrate"] = self
                .adaptive
                .iter()
                .map(|(name, a)| (name.clone(), a.view()))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let body = serde_json::to_vec(&t).expect("telemetry serializes");
        self.send(self.topics.telemetry(), QoS::AtMostOnce, false, body);
    }
}

/// What the state carries of discovery: enough to pick an input (nodes,
/// their inputs and signal, devices, config hints). Every format, size and
/// rate is in `devices.discover`'s answer: a capture card lists hundreds,
/// and the state goes out on every change.
fn devices_summary(report: &Value) -> Value {
    if report.is_null() {
        return Value::Null;
    }
    let pick = |v: &Value, keys: &[&str]| -> Value {
        keys.iter()
            .map(|k| (k.to_string(), v[*k].clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let list = |v: &Value, f: &dyn Fn(&Value) -> Value| -> Value {
        v.as_array()
            .map(|a| a.iter().map(f).collect::<Vec<_>>())
            .unwrap_or_default()
            .into()
    };
    json!({
        "at": report["at"],
        "v4l2": list(&report["v4l2"], &|n| {
            let mut s = pick(n, &["path", "driver", "card", "kind", "error"]);
            s["inputs"] = list(&n["inputs"], &|i| pick(i, &["index", "name", "current", "signal"]));
            s
        }),
        "devices": list(&report["devices"], &|d| {
            pick(d, &["name", "class", "api", "path", "alsa_device", "decklink_device_number"])
        }),
        "decklink": report["decklink"]["note"],
        "hints": report["hints"],
        "errors": report["errors"],
    })
}

/// Discovery's report, bounded: a stuck driver is an error line in it.
/// Generous, since it runs beside the loop: enumerating every format, size
/// and rate of a many-node device is slow on a small CPU.
async fn discover_devices() -> Value {
    let options = fieldcast_capture::discover::DiscoverOptions {
        timeout: Duration::from_secs(30),
    };
    match tokio::task::spawn_blocking(move || fieldcast_capture::discover::discover_with(&options))
        .await
    {
        Ok(report) => serde_json::to_value(&report).unwrap_or(Value::Null),
        Err(e) => json!({"errors": [format!("discovery failed: {e}")]}),
    }
}

fn input_state_name(s: &InputState) -> &'static str {
    match s {
        InputState::Starting => "starting",
        InputState::Running => "running",
        InputState::Error { .. } => "error",
        InputState::Stopped => "stopped",
    }
}

/// The next network change, or never when the watcher could not start.
async fn recv_net(net: &mut Option<mpsc::Receiver<NetChange>>) -> Option<NetChange> {
    match net {
        Some(rx) => match rx.recv().await {
            Some(c) => Some(c),
            None => {
                *net = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
