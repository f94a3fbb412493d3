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
//! | `throttleConnections` | connection ids whose `/@connections` calls are all answered 429 (one member's posts throttled) |
//! | `postLatencyMs`, `postJitterMs` | added to every `/@connections` call: a fixed delay plus up to this much at random |
//! | `expire` | a connection id, or `"all"`: closed now with 1001 "Going away", as the 2-hour cap closes it (an action, not a switch) |
//!
//! The command-line options of the same names set the switches at start. This module is the switches alone;
//! the endpoint that changes them is in [`crate::admin`].

use serde::{Deserialize, Serialize};

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
    /// Connections whose `/@connections` calls are all answered 429.
    #[serde(default)]
    pub throttle_connections: Vec<String>,
    /// Milliseconds added to every `/@connections` call.
    pub post_latency_ms: u64,
    /// Up to this many random milliseconds more per call (reorders concurrent deliveries).
    pub post_jitter_ms: u64,
}

/// A `POST /_emulator/faults` body: the switches to change, and connections to expire.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Change {
    drop_disconnect_rate: Option<f64>,
    gone_rate: Option<f64>,
    throttle_rate: Option<f64>,
    throttle_connections: Option<Vec<String>>,
    post_latency_ms: Option<u64>,
    post_jitter_ms: Option<u64>,
    /// A connection id, or `all`: closed now as the 2-hour cap closes them.
    pub(crate) expire: Option<String>,
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

    /// The switches after `change`, checked.
    ///
    /// # Errors
    /// As [`Faults::validate`]: the first rate outside 0.0–1.0; nothing is changed then.
    pub(crate) fn changed(&self, change: &Change) -> Result<Self, String> {
        let next = Self {
            drop_disconnect_rate: change
                .drop_disconnect_rate
                .unwrap_or(self.drop_disconnect_rate),
            gone_rate: change.gone_rate.unwrap_or(self.gone_rate),
            throttle_rate: change.throttle_rate.unwrap_or(self.throttle_rate),
            throttle_connections: change
                .throttle_connections
                .clone()
                .unwrap_or_else(|| self.throttle_connections.clone()),
            post_latency_ms: change.post_latency_ms.unwrap_or(self.post_latency_ms),
            post_jitter_ms: change.post_jitter_ms.unwrap_or(self.post_jitter_ms),
        };
        next.validate()?;
        Ok(next)
    }

    /// True with probability `rate`.
    pub(crate) fn roll(rate: f64) -> bool {
        rate > 0.0 && fastrand::f64() < rate
    }
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
