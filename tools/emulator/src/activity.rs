//! What the emulator saw lately, for its page (`GET /_emulator/events`): handshakes with their outcome, every
//! invocation with its status and duration, and every `/@connections` call that was not a success (410, 429, …),
//! newest last, each numbered so the page asks only for what it has not shown yet. Bounded: the oldest go first.
//!
//! And, in process, what the functions' metrics say ([`EmfLog`]): the Embedded Metric Format lines they would
//! write in Lambda, and their totals by function.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chat_shared::metrics::{Metric, Recorded};
use serde_json::{Value, json};

use crate::timefmt::now_ms;

/// Events kept for the page.
const KEPT: usize = 500;

/// The recent events.
#[derive(Default)]
pub(crate) struct Activity {
    next: AtomicU64,
    recent: Mutex<VecDeque<Value>>,
}

impl Activity {
    /// Adds `event` (an object: `kind` and its fields), numbered and timed.
    pub(crate) fn record(&self, mut event: Value) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        event["seq"] = json!(seq);
        event["at"] = json!(now_ms());
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The events numbered after `after`, oldest first.
    pub(crate) fn since(&self, after: u64) -> Vec<Value> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .filter(|event| event["seq"].as_u64().is_some_and(|seq| seq > after))
            .cloned()
            .collect()
    }
}

/// Lines kept for the page.
const LINES_KEPT: usize = 200;

/// The in-process functions' metrics: each invocation's EMF line, as Lambda would log it, and the totals.
pub struct EmfLog {
    namespace: String,
    inner: Mutex<EmfInner>,
}

#[derive(Default)]
struct EmfInner {
    lines: VecDeque<String>,
    totals: BTreeMap<&'static str, BTreeMap<Metric, f64>>,
    invocations: BTreeMap<&'static str, u64>,
}

impl EmfLog {
    /// An empty log of lines in `namespace` (`METRICS_NAMESPACE`).
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            inner: Mutex::default(),
        }
    }

    /// Adds what one invocation of `function` recorded.
    pub fn push(&self, function: &'static str, recorded: &Recorded) {
        let line = recorded.emf(&self.namespace, function, now_ms());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.lines.len() == LINES_KEPT {
            inner.lines.pop_front();
        }
        inner.lines.push_back(line);
        *inner.invocations.entry(function).or_default() += 1;
        let totals = inner.totals.entry(function).or_default();
        for (metric, value) in recorded.values() {
            *totals.entry(metric).or_default() += value;
        }
    }

    /// `GET /_emulator/emf`: the namespace, every metric's unit and meaning, the totals by function, and the
    /// latest lines.
    pub fn snapshot(&self) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let totals: serde_json::Map<String, Value> = inner
            .totals
            .iter()
            .map(|(function, values)| {
                let values: serde_json::Map<String, Value> = values
                    .iter()
                    .map(|(metric, value)| (metric.name().to_owned(), json!(value)))
                    .collect();
                ((*function).to_owned(), Value::Object(values))
            })
            .collect();
        let metrics: Vec<Value> = Metric::ALL
            .iter()
            .map(|m| json!({ "name": m.name(), "unit": m.unit().as_str(), "description": m.description() }))
            .collect();
        json!({
            "namespace": self.namespace,
            "metrics": metrics,
            "invocations": inner.invocations,
            "totals": totals,
            "lines": inner.lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_after_the_number_asked_for_are_given_and_the_oldest_go_first() {
        let activity = Activity::default();
        for i in 0..KEPT + 3 {
            activity.record(json!({ "kind": "post", "i": i }));
        }

        let all = activity.since(0);
        let last_two = activity.since((KEPT + 1) as u64);

        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0]["i"], 3);
        assert_eq!(last_two.len(), 2);
        assert_eq!(last_two[1]["i"], KEPT + 2);
    }
}
