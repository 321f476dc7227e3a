//! The controller: owns the inputs, streams and pushes, applies commands,
//! and publishes state, events and telemetry.
//!
//! One task, one loop, selecting over typed channels: MQTT commands, output
//! and input events, and two timers. Nothing here holds a lock; every piece
//! of state is owned by this task. A command is validated in full and saved
//! before anything runs, so a bad command, or one that cannot be saved,
//! changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldcast_capture::InputHandle;
use fieldcast_capture::input::InputEvent;
use fieldcast_media::output::{self, OutputEvent, OutputHandle, OutputSpec, OutputState, Target};
use fieldcast_media::{Stream, Track, unix_now};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::command::{self, Command};
use crate::config::{PushDef, Settings};
use crate::error::{ApiError, Code};
use crate::mqtt::{self, Incoming};
use crate::store::{Persisted, Store};
use crate::topics::Topics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// From the config file: can be started and stopped, not removed.
    Config,
    /// Added over MQTT and saved in the data directory.
    Mqtt,
}

struct Push {
    def: PushDef,
    target: Target,
    origin: Origin,
    handle: Option<OutputHandle>,
}

/// What state shows of a push: health, not counters (those are telemetry),
/// so the retained state changes only when something happens.
#[derive(Serialize, PartialEq)]
struct PushView<'a> {
    id: &'a str,
    stream: &'a str,
    target: String,
    origin: Origin,
    running: bool,
    #[serde(flatten)]
    state: OutputState,
    since: Option<f64>,
    reconnects: u32,
    last_error: Option<String>,
}

pub struct Controller {
    settings: Settings,
    topics: Topics,
    client: AsyncClient,
    store: Store,
    persisted: Persisted,
    streams: HashMap<String, Arc<Stream>>,
    inputs: Vec<InputHandle>,
    pushes: BTreeMap<String, Push>,
    output_events_tx: mpsc::UnboundedSender<OutputEvent>,
    output_events: mpsc::UnboundedReceiver<OutputEvent>,
    input_events: mpsc::UnboundedReceiver<InputEvent>,
    started: Instant,
    last_state: Option<Value>,
    last_telemetry: Option<(Instant, HashMap<String, u64>)>,
    /// The MQTT session is up.
    online: bool,
}

impl Controller {
    /// Builds the controller and starts every input and every push that
    /// should run.
    pub fn start(
        settings: Settings,
        client: AsyncClient,
        store: Store,
        persisted: Persisted,
        store_warning: Option<String>,
    ) -> Self {
        let topics = Topics::new(&settings.mqtt.prefix, &settings.device.id);
        let (output_events_tx, output_events) = mpsc::unbounded_channel();
        let (input_events_tx, input_events) = mpsc::unbounded_channel();
        let mut streams = HashMap::new();
        let mut inputs = Vec::new();
        for spec in &settings.inputs {
            let tracks: &[Track] = if spec.has_audio() {
                &[Track::Video, Track::Audio]
            } else {
                &[Track::Video]
            };
            let stream = Stream::new(spec.name.clone(), tracks);
            streams.insert(spec.name.clone(), stream.clone());
            inputs.push(fieldcast_capture::input::spawn(
                spec.clone(),
                settings.board.clone(),
                stream,
                input_events_tx.clone(),
            ));
        }
        let mut c = Controller {
            settings,
            topics,
            client,
            store,
            persisted,
            streams,
            inputs,
            pushes: BTreeMap::new(),
            output_events_tx,
            output_events,
            input_events,
            started: Instant::now(),
            last_state: None,
            last_telemetry: None,
            online: false,
        };
        if let Some(w) = store_warning {
            warn!("{w}");
        }
        let config_outputs = c.settings.outputs.clone();
        for (def, target) in config_outputs {
            c.pushes.insert(
                def.id.clone(),
                Push {
                    def,
                    target,
                    origin: Origin::Config,
                    handle: None,
                },
            );
        }
        let names = c.settings.stream_names();
        for def in c.persisted.pushes.clone() {
            if c.pushes.contains_key(&def.id) {
                warn!(push = %def.id, "a saved push has the id of a configured output; the config wins");
                continue;
            }
            match def.validate("", &names) {
                Ok(target) => {
                    c.pushes.insert(
                        def.id.clone(),
                        Push {
                            def,
                            target,
                            origin: Origin::Mqtt,
                            handle: None,
                        },
                    );
                }
                // Kept in the store untouched: a config change may bring its
                // stream back.
                Err(e) => {
                    warn!(push = %def.id, error = %e, "saved push is not valid with this config; not started")
                }
            }
        }
        let ids: Vec<String> = c.pushes.keys().cloned().collect();
        for id in ids {
            if c.wants_running(&id) {
                c.spawn_output(&id);
            }
        }
        c
    }

    fn wants_running(&self, id: &str) -> bool {
        match self.persisted.running.get(id) {
            Some(r) => *r,
            None => self.pushes.get(id).is_some_and(|p| p.def.enabled),
        }
    }

    fn spawn_output(&mut self, id: &str) {
        let Some(p) = self.pushes.get_mut(id) else {
            return;
        };
        let Some(stream) = self.streams.get(&p.def.stream) else {
            return;
        };
        let spec = OutputSpec::new(id, stream.clone(), p.target.clone());
        info!(push = %id, target = %p.target.redacted(), "starting push");
        p.handle = Some(output::spawn(spec, self.output_events_tx.clone()));
    }

    async fn stop_output(&mut self, id: &str) {
        if let Some(h) = self.pushes.get_mut(id).and_then(|p| p.handle.take()) {
            info!(push = %id, "stopping push");
            h.stop().await;
        }
    }

    /// Runs until SIGTERM or SIGINT, then stops every pipeline and says
    /// offline. Nothing in this loop waits on the broker (see `mqtt`), so a
    /// broker outage never makes the daemon deaf to signals or commands.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut up: watch::Receiver<bool>,
    ) {
        let mut state_tick = tokio::time::interval(Duration::from_millis(500));
        let mut telemetry_tick =
            tokio::time::interval(Duration::from_secs(self.settings.mqtt.telemetry_interval_s));
        telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        loop {
            tokio::select! {
                Ok(()) = up.changed() => {
                    self.online = *up.borrow_and_update();
                    // The retained state on the broker may be stale or gone.
                    self.last_state = None;
                    self.publish_state();
                }
                Some(Incoming::Command { name, payload, response_topic, correlation }) = incoming.recv() => {
                    let outcome = match command::parse(&name, &payload) {
                        Ok(cmd) => self.apply(cmd).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = &outcome {
                        // The message never carries a secret; see ApiError.
                        info!(command = %name, code = ?e.code, error = %e.message, "command refused");
                    }
                    let body = command::reply(&name, &outcome);
                    mqtt::reply(&self.client, &self.topics, &name, response_topic, correlation, body);
                    self.publish_state();
                }
                Some(e) = self.output_events.recv() => {
                    self.publish_event(serde_json::to_value(&e).unwrap_or(Value::Null));
                    self.publish_state();
                }
                Some(e) = self.input_events.recv() => {
                    self.publish_event(serde_json::to_value(&e).unwrap_or(Value::Null));
                    self.publish_state();
                }
                _ = state_tick.tick() => self.publish_state(),
                _ = telemetry_tick.tick() => self.publish_telemetry(),
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        info!("shutting down");
        // Every output ends at once (each flushes its muxer and lets libsrt
        // send what it holds), so a box with many pushes still stops well
        // inside systemd's stop timeout.
        let handles: Vec<OutputHandle> = self
            .pushes
            .values_mut()
            .filter_map(|p| p.handle.take())
            .collect();
        futures::future::join_all(handles.into_iter().map(OutputHandle::stop)).await;
        futures::future::join_all(self.inputs.drain(..).map(InputHandle::stop)).await;
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

    async fn apply(&mut self, cmd: Command) -> Result<Value, ApiError> {
        match cmd {
            Command::StateGet => Ok(self.state()),
            Command::PushList => Ok(Value::Array(
                self.pushes.values().map(|p| self.push_detail(p)).collect(),
            )),
            Command::PushAdd(def) => {
                let target = def.validate("", &self.settings.stream_names())?;
                if let Some(existing) = self.pushes.get(&def.id) {
                    if existing.origin == Origin::Config {
                        return Err(ApiError::field(
                            Code::ReadOnly,
                            "id",
                            format!("'{}' is an output of the config file", def.id),
                        ));
                    }
                    if existing.def == def {
                        // Idempotent: the same add twice is one add.
                        return Ok(json!({"changed": false, "push": self.push_detail(existing)}));
                    }
                    return Err(ApiError::field(
                        Code::Conflict,
                        "id",
                        format!(
                            "'{}' exists with another definition; remove it first",
                            def.id
                        ),
                    ));
                }
                let mut next = self.persisted.clone();
                // A saved push this config could not load (its stream is
                // gone) is replaced, not shadowed by a second entry.
                next.pushes.retain(|d| d.id != def.id);
                next.pushes.push(def.clone());
                next.running.remove(&def.id);
                self.save(next).await?;
                let id = def.id.clone();
                let enabled = def.enabled;
                self.pushes.insert(
                    id.clone(),
                    Push {
                        def,
                        target,
                        origin: Origin::Mqtt,
                        handle: None,
                    },
                );
                if enabled {
                    self.spawn_output(&id);
                }
                self.publish_event(json!({"event": "push_added", "id": id}));
                Ok(json!({"changed": true, "push": self.push_detail(&self.pushes[&id])}))
            }
            Command::PushRemove { id } => {
                if !self.pushes.contains_key(&id)
                    && self.persisted.pushes.iter().any(|d| d.id == id)
                {
                    // Saved but not loaded (not valid with this config):
                    // removing it is how an operator cleans it up.
                    self.save(self.persisted.without(&id)).await?;
                    return Ok(json!({"changed": true}));
                }
                if self.find(&id)?.origin == Origin::Config {
                    return Err(ApiError::field(
                        Code::ReadOnly,
                        "id",
                        format!("'{id}' is an output of the config file; stop it instead"),
                    ));
                }
                self.save(self.persisted.without(&id)).await?;
                self.stop_output(&id).await;
                self.pushes.remove(&id);
                self.publish_event(json!({"event": "push_removed", "id": id}));
                Ok(json!({"changed": true}))
            }
            Command::PushStart { id } => self.set_running(id, true).await,
            Command::PushStop { id } => self.set_running(id, false).await,
        }
    }

    /// Starts or stops a push and remembers it across restarts. Idempotent:
    /// asking for the state a push is in changes nothing.
    async fn set_running(&mut self, id: String, want: bool) -> Result<Value, ApiError> {
        let running = self.find(&id)?.handle.is_some();
        let mut next = self.persisted.clone();
        next.running.insert(id.clone(), want);
        if next != self.persisted {
            self.save(next).await?;
        }
        let changed = running != want;
        if changed && want {
            self.spawn_output(&id);
            self.publish_event(json!({"event": "push_started", "id": id}));
        } else if changed {
            // The output task reports `output_stopped` itself.
            self.stop_output(&id).await;
        }
        Ok(json!({"changed": changed, "push": self.push_detail(&self.pushes[&id])}))
    }

    fn push_view<'a>(&self, p: &'a Push) -> PushView<'a> {
        let status = p.handle.as_ref().map(|h| h.status());
        PushView {
            id: &p.def.id,
            stream: &p.def.stream,
            target: p.target.redacted(),
            origin: p.origin,
            running: p.handle.is_some(),
            state: status
                .as_ref()
                .map(|s| s.state.clone())
                .unwrap_or(OutputState::Stopped),
            since: status.as_ref().map(|s| s.since),
            reconnects: status.as_ref().map_or(0, |s| s.reconnects),
            last_error: status.and_then(|s| s.last_error),
        }
    }

    /// A push with its counters, for `push.list` and command replies.
    fn push_detail(&self, p: &Push) -> Value {
        let mut v = serde_json::to_value(self.push_view(p)).unwrap_or(Value::Null);
        if let (Some(h), Some(obj)) = (&p.handle, v.as_object_mut()) {
            let s = h.status();
            obj.insert("frames_sent".into(), json!(s.frames_sent));
            obj.insert("frames_dropped".into(), json!(s.frames_dropped));
            obj.insert("bytes_sent".into(), json!(s.bytes_sent));
            obj.insert("srt".into(), json!(s.srt));
        }
        v
    }

    fn state(&self) -> Value {
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| serde_json::to_value(i.status()).unwrap_or(Value::Null))
            .collect();
        let outputs: Vec<Value> = self
            .pushes
            .values()
            .map(|p| serde_json::to_value(self.push_view(p)).unwrap_or(Value::Null))
            .collect();
        let live = |p: &Push| {
            p.handle.as_ref().is_some_and(|h| {
                matches!(h.status().state, OutputState::Live | OutputState::Waiting)
            })
        };
        let healthy = self
            .inputs
            .iter()
            .all(|i| matches!(i.status().state, fieldcast_capture::InputState::Running))
            && self
                .pushes
                .values()
                .filter(|p| p.handle.is_some())
                .all(live);
        json!({
            "device": self.settings.device.id,
            "version": env!("CARGO_PKG_VERSION"),
            "board": self.settings.board.board.name,
            "encoder": self.settings.board.video_encoder.element,
            "healthy": healthy,
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    /// Publishes the retained state when it changed since the last time it
    /// was sent; while the broker is away, once it is back.
    fn publish_state(&mut self) {
        if !self.online {
            return;
        }
        let state = self.state();
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
                .map(|p| (bytes.saturating_sub(*p) as f64 * 8.0 / 1000.0 / dt).round()),
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
            let Some(h) = &p.handle else { continue };
            let s = h.status();
            let key = format!("output:{id}");
            let kbps = rate(&key, s.bytes_sent, &self.last_telemetry);
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
                }),
            );
        }
        self.last_telemetry = Some((now, bytes_now));
        let t = json!({
            "ts": unix_now(),
            "device": self.settings.device.id,
            "uptime_s": self.started.elapsed().as_secs(),
            "streams": streams,
            "outputs": outputs,
        });
        let body = serde_json::to_vec(&t).expect("telemetry serializes");
        self.send(self.topics.telemetry(), QoS::AtMostOnce, false, body);
    }
}
