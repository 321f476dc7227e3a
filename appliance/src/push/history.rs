//! What the scheduler tried and how each attempt ended: a bounded log per
//! device, readable over MQTT (`push.history`). Nothing here holds a
//! secret: targets are recorded redacted.

use std::collections::VecDeque;

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Entry {
    /// Increases by one per entry, so a reader can ask for what is new.
    pub seq: u64,
    /// Unix seconds.
    pub ts: f64,
    pub push: String,
    /// `start`, `refused`, `live`, `disconnected`, `reconnect`, `stop`,
    /// `failed`, `ended`, `held`.
    pub what: &'static str,
    pub detail: String,
}

pub struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
    next: u64,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            next: 1,
        }
    }

    /// Keeps at most `capacity` entries from now on (the oldest go first).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    pub fn record(&mut self, ts: f64, push: &str, what: &'static str, detail: impl Into<String>) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            seq: self.next,
            ts,
            push: push.to_string(),
            what,
            detail: detail.into(),
        });
        self.next += 1;
    }

    /// The newest `limit` entries (of push `id`, or of all), oldest first.
    pub fn query(&self, id: Option<&str>, limit: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .entries
            .iter()
            .rev()
            .filter(|e| id.is_none_or(|id| e.push == id))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The last `n` lines about one push, as a push-end trigger carries them.
    pub fn last_lines(&self, id: &str, n: usize) -> Vec<String> {
        self.query(Some(id), n)
            .into_iter()
            .map(|e| format!("{} {}", e.what, e.detail).trim_end().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_filtered_newest() {
        let mut h = History::new(3);
        h.record(1.0, "a", "start", "srt://h:1");
        h.record(2.0, "b", "start", "");
        h.record(3.0, "a", "live", "");
        h.record(4.0, "a", "stop", "stream offline");
        let all = h.query(None, 10);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        let a = h.query(Some("a"), 1);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].what, "stop");
        assert_eq!(h.last_lines("a", 5), vec!["live", "stop stream offline"]);
    }
}
