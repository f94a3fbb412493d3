//! What each invocation did, as numbers: counted where it happens ([`count`], [`add`], [`Timer`]) and written
//! once per invocation as one line of CloudWatch's Embedded Metric Format ([`Recorded::emf`]), which CloudWatch
//! Logs turns into metrics with no API call and no agent.
//!
//! The one dimension is the function (`Function`: `ws-default`, …): never a room or a user, whose numbers would
//! each be a custom metric billed by the month. A metric appears in a line only when the invocation recorded it,
//! so a metric that never happens never exists (nor costs). docs/operations.md lists them all.
//!
//! The counts live in a task-local scope opened around one invocation ([`record`]): the handlers, the fan-out and
//! the Redis store count into whichever invocation runs them, and outside a scope (unit tests, tools) counting does
//! nothing. Posts in flight run in the invocation's own task (`buffer_unordered`), so they count too.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// The dimension every metric carries: the function's binary name.
pub const DIMENSION: &str = "Function";

/// A CloudWatch unit ([`Metric::unit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// How many.
    Count,
    /// How many bytes.
    Bytes,
    /// How long.
    Milliseconds,
}

impl Unit {
    /// The name CloudWatch knows it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Bytes => "Bytes",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

macro_rules! metrics {
    ($($variant:ident => $unit:ident, $doc:literal;)*) => {
        /// One number an invocation may report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Metric {
            $(#[doc = $doc] $variant,)*
        }

        impl Metric {
            /// Every metric, in the order lines list them.
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),*];

            /// Its name in CloudWatch.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)*
                }
            }

            /// Its unit.
            pub fn unit(self) -> Unit {
                match self {
                    $(Self::$variant => Unit::$unit,)*
                }
            }

            /// What it counts (docs and the emulator's page).
            pub fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                }
            }
        }
    };
}

metrics! {
    Frames => Count, "frames a client sent to $default (each invocation of ws-default)";
    ChatMessages => Count, "chat messages stored and fanned out";
    Deliveries => Count, "posts a member's connection took (chat messages and presence events)";
    PostsPruned => Count, "members removed because API Gateway answered 410 Gone";
    PostsThrottled => Count, "posts API Gateway answered 429 (each attempt)";
    PostsFailed => Count, "members a frame did not reach: 403, 413, 5xx, timeouts, throttled to the end, or skipped near the deadline";
    FramesRefused => Count, "frames refused, for any reason below";
    FramesRefusedRate => Count, "chat messages over the sender's rate limit";
    FramesRefusedSize => Count, "chat messages over MAX_MESSAGE_BYTES";
    FramesRefusedMalformed => Count, "frames that are not a frame of the protocol";
    FramesRefusedBudget => Count, "frames over the connection's frame budget";
    FramesRefusedAuth => Count, "frames after the sender's token expired";
    Handshakes => Count, "handshakes that reached ws-connect or ws-authorize";
    HandshakesAccepted => Count, "handshakes that joined a room";
    HandshakesRefused => Count, "handshakes refused, for any reason below";
    HandshakesRefusedOrigin => Count, "handshakes from an Origin that is not allowed (403)";
    HandshakesRefusedInvalid => Count, "handshakes with a bad room or name (400)";
    HandshakesRefusedAddress => Count, "handshakes over their source address's limits (429)";
    HandshakesRefusedFull => Count, "handshakes into a full room (403)";
    HandshakesUnauthorized => Count, "handshakes without a valid token (401; ws-authorize reports it as a function error, which is how API Gateway answers 401)";
    HandshakesForbidden => Count, "handshakes into a room the token does not grant (403)";
    Disconnects => Count, "connections that left (each invocation of ws-disconnect)";
    HistoryBytes => Bytes, "bytes of history frames sent";
    FanoutShards => Count, "shards of a big room's fan-out handed to ws-fanout invocations";
    FanoutTime => Milliseconds, "time from the first post of a chat message to the last";
    RedisTime => Milliseconds, "time spent waiting for Redis, retries included";
    RedisRequests => Count, "Redis round trips";
}

/// The numbers of one invocation so far.
#[derive(Default)]
struct Recorder(Mutex<Vec<(Metric, f64)>>);

tokio::task_local! {
    static RECORDER: Arc<Recorder>;
}

/// Runs `invocation` with a fresh scope to count into, and returns what it recorded.
pub async fn record<F: Future>(invocation: F) -> (F::Output, Recorded) {
    let recorder = Arc::new(Recorder::default());
    let output = RECORDER.scope(recorder.clone(), invocation).await;
    let values = std::mem::take(&mut *recorder.0.lock().unwrap_or_else(|e| e.into_inner()));
    (output, Recorded { values })
}

/// Adds `value` to `metric` of the running invocation (nothing outside one).
pub fn add(metric: Metric, value: f64) {
    let _ = RECORDER.try_with(|recorder| {
        let mut values = recorder.0.lock().unwrap_or_else(|e| e.into_inner());
        match values.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, total)) => *total += value,
            None => values.push((metric, value)),
        }
    });
}

/// Adds one to `metric`.
pub fn count(metric: Metric) {
    add(metric, 1.0);
}

/// Adds `n` to `metric`.
pub fn count_n(metric: Metric, n: usize) {
    if n > 0 {
        add(metric, n as f64);
    }
}

/// Adds `elapsed` to a time metric, in milliseconds.
pub fn add_time(metric: Metric, elapsed: Duration) {
    add(metric, elapsed.as_secs_f64() * 1000.0);
}

/// Measures from its making to its drop, into a time metric: so an early return is timed too.
pub struct Timer {
    metric: Metric,
    started: Instant,
}

impl Timer {
    /// Starts timing `metric`.
    pub fn start(metric: Metric) -> Self {
        Self {
            metric,
            started: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        add_time(self.metric, self.started.elapsed());
    }
}

/// What one invocation recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    values: Vec<(Metric, f64)>,
}

impl Recorded {
    /// The recorded values, in [`Metric::ALL`]'s order.
    pub fn values(&self) -> Vec<(Metric, f64)> {
        let mut values = self.values.clone();
        values.sort_by_key(|(metric, _)| *metric);
        values
    }

    /// The value of `metric`, if it was recorded.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.values
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }

    /// One Embedded Metric Format document (a JSON object on one line) in `namespace`, dimension `function`, at
    /// `timestamp_ms` (epoch ms). Times are rounded to microseconds.
    pub fn emf(&self, namespace: &str, function: &str, timestamp_ms: i64) -> String {
        let values = self.values();
        let definitions: Vec<Value> = values
            .iter()
            .map(|(metric, _)| json!({ "Name": metric.name(), "Unit": metric.unit().as_str() }))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert(DIMENSION.into(), Value::String(function.to_owned()));
        for (metric, value) in values {
            let value = match metric.unit() {
                Unit::Milliseconds => (value * 1000.0).round() / 1000.0,
                Unit::Count | Unit::Bytes => value,
            };
            root.insert(metric.name().into(), json!(value));
        }
        Value::Object(root).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_made_inside_an_invocation_are_its_own_and_outside_one_go_nowhere() {
        count(Metric::Frames);

        let ((), first) = record(async {
            count(Metric::Frames);
            count_n(Metric::Deliveries, 3);
            count_n(Metric::Deliveries, 2);
            count_n(Metric::PostsFailed, 0);
        })
        .await;
        let ((), second) = record(async { count(Metric::Disconnects) }).await;

        assert_eq!(
            first.values(),
            [(Metric::Frames, 1.0), (Metric::Deliveries, 5.0)]
        );
        assert_eq!(second.values(), [(Metric::Disconnects, 1.0)]);
    }

    #[tokio::test]
    async fn a_timer_counts_its_time_even_when_dropped_early() {
        let ((), recorded) = record(async {
            let _timer = Timer::start(Metric::RedisTime);
            tokio::time::sleep(Duration::from_millis(5)).await;
        })
        .await;

        assert!(recorded.get(Metric::RedisTime).expect("timed") >= 5.0);
    }

    #[test]
    fn every_metric_has_a_distinct_name_and_a_description() {
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();

        assert_eq!(names.len(), Metric::ALL.len());
        assert!(Metric::ALL.len() <= 100, "EMF allows 100 per directive");
        assert!(Metric::ALL.iter().all(|m| !m.description().is_empty()));
    }

    #[test]
    fn the_operating_docs_list_every_metric_with_its_unit() {
        let docs = include_str!("../../docs/operating.md");

        for metric in Metric::ALL {
            let row = format!("| `{}` | {} |", metric.name(), metric.unit().as_str());
            assert!(docs.contains(&row), "docs/operating.md lists {row}");
        }
    }

    #[tokio::test]
    async fn a_line_declares_each_value_it_carries_under_the_function_dimension() {
        let ((), recorded) = record(async {
            count(Metric::ChatMessages);
            add_time(Metric::FanoutTime, Duration::from_micros(1500));
        })
        .await;

        let line: Value =
            serde_json::from_str(&recorded.emf("wschat/test", "ws-default", 1_700_000_000_000))
                .expect("json");

        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "wschat/test");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                { "Name": "ChatMessages", "Unit": "Count" },
                { "Name": "FanoutTime", "Unit": "Milliseconds" },
            ])
        );
        assert_eq!(line["Function"], "ws-default");
        assert_eq!(line["ChatMessages"], 1.0);
        assert_eq!(line["FanoutTime"], 1.5);
    }
}
