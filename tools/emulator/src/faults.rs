//! Faults on demand: what production will do to the functions, switched on and off while the emulator runs.
//!
//! `GET /_emulator/faults` shows the switches; `POST /_emulator/faults` with a JSON object changes the ones it
//! names and answers with all of them:
//!
//! | field | effect |
//! |---|---|
//! | `dropDisconnectRate` | share of `$disconnect` events never sent (AWS delivers `$disconnect` on a best-effort basis) |
//! | `goneRate` | share of `/@connections` calls to a **live** connection answered 410 GoneException |
//! | `throttleRate` | share of `/@connections` calls answered 429 LimitExceededException |
//! | `postLatencyMs`, `postJitterMs` | added to every `/@connections` call: a fixed delay plus up to this much at random |
//! | `expire` | a connection id, or `"all"`: closed now with 1001 "Going away", as the 2-hour cap closes it (an action, not a switch) |
//!
//! The command-line options of the same names set the switches at start.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::state::{AppState, Control};

/// The switches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Share of `$disconnect` events dropped (0.0–1.0).
    pub drop_disconnect_rate: f64,
    /// Share of `/@connections` calls to live connections answered 410 (0.0–1.0).
    pub gone_rate: f64,
    /// Share of `/@connections` calls answered 429 (0.0–1.0).
    pub throttle_rate: f64,
    /// Milliseconds added to every `/@connections` call.
    pub post_latency_ms: u64,
    /// Up to this many random milliseconds more per call (reorders concurrent deliveries).
    pub post_jitter_ms: u64,
}

/// A `POST /_emulator/faults` body: the switches to change, and connections to expire.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Change {
    drop_disconnect_rate: Option<f64>,
    gone_rate: Option<f64>,
    throttle_rate: Option<f64>,
    post_latency_ms: Option<u64>,
    post_jitter_ms: Option<u64>,
    expire: Option<String>,
}

impl Faults {
    /// Checks every rate is a share.
    ///
    /// # Errors
    /// The name of the first rate outside 0.0–1.0.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("dropDisconnectRate", self.drop_disconnect_rate),
            ("goneRate", self.gone_rate),
            ("throttleRate", self.throttle_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1 (got {rate})"));
            }
        }
        Ok(())
    }

    /// True with probability `rate`.
    pub(crate) fn roll(rate: f64) -> bool {
        rate > 0.0 && fastrand::f64() < rate
    }
}

/// `GET /_emulator/faults`.
pub(crate) async fn show(State(state): State<AppState>) -> Response {
    Json(state.faults()).into_response()
}

/// `POST /_emulator/faults`.
pub(crate) async fn change(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let change: Change = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(err) => return bad_request(&format!("not a faults object: {err}")),
    };
    let mut next = state.faults();
    if let Some(rate) = change.drop_disconnect_rate {
        next.drop_disconnect_rate = rate;
    }
    if let Some(rate) = change.gone_rate {
        next.gone_rate = rate;
    }
    if let Some(rate) = change.throttle_rate {
        next.throttle_rate = rate;
    }
    if let Some(ms) = change.post_latency_ms {
        next.post_latency_ms = ms;
    }
    if let Some(ms) = change.post_jitter_ms {
        next.post_jitter_ms = ms;
    }
    if let Err(reason) = next.validate() {
        return bad_request(&reason);
    }
    let expired = match change.expire.as_deref() {
        None => 0,
        Some(which) => {
            let connections = state.connections();
            let mut expired = 0;
            for (id, handle) in connections.iter() {
                if which == "all" || which == id {
                    let close = Control::Close {
                        code: 1001,
                        reason: "Going away",
                    };
                    expired += usize::from(handle.control.try_send(close).is_ok());
                }
            }
            if expired == 0 && which != "all" {
                return (
                    StatusCode::NOT_FOUND,
                    Json(json!({ "error": format!("no live connection {which}") })),
                )
                    .into_response();
            }
            expired
        }
    };
    tracing::info!(target: "apigw", faults = ?next, expired, "faults changed");
    state.set_faults(next.clone());
    let mut answer = serde_json::to_value(next).unwrap_or_default();
    answer["expired"] = json!(expired);
    Json(answer).into_response()
}

fn bad_request(reason: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": reason }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_outside_zero_to_one_is_refused_by_name() {
        let faults = Faults {
            gone_rate: 1.5,
            ..Faults::default()
        };

        let err = faults.validate().expect_err("1.5 is not a share");

        assert!(err.contains("goneRate"), "{err}");
    }

    #[test]
    fn a_rate_of_zero_never_fires_and_one_always_does() {
        assert!((0..1000).all(|_| !Faults::roll(0.0)));
        assert!((0..1000).all(|_| Faults::roll(1.0)));
    }
}
