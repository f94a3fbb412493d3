//! A fake [`Gateway`] for unit tests: it records what each connection received and which were closed, and can be
//! told to answer 410, 429 or 403 for chosen connections.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Gateway, GatewayError};
use crate::wire::ConnectionId;

/// Records every delivered frame per connection; scripted failures per connection.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    delivered: HashMap<ConnectionId, Vec<Bytes>>,
    gone: HashSet<ConnectionId>,
    forbidden: HashSet<ConnectionId>,
    throttle_left: HashMap<ConnectionId, u32>,
    attempts: HashMap<ConnectionId, u32>,
    deleted: Vec<ConnectionId>,
}

impl RecordingGateway {
    /// A gateway where every connection is live.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on, posts to `conn` answer 410 Gone.
    pub fn mark_gone(&self, conn: &ConnectionId) {
        self.state().gone.insert(conn.clone());
    }

    /// From now on, posts to `conn` answer 403 Forbidden.
    pub fn mark_forbidden(&self, conn: &ConnectionId) {
        self.state().forbidden.insert(conn.clone());
    }

    /// The next `times` posts to `conn` answer 429; later ones succeed.
    pub fn throttle(&self, conn: &ConnectionId, times: u32) {
        self.state().throttle_left.insert(conn.clone(), times);
    }

    /// The frames `conn` received, decoded as UTF-8 text, in order.
    pub fn received(&self, conn: &ConnectionId) -> Vec<String> {
        self.state()
            .delivered
            .get(conn)
            .map(|frames| {
                frames
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The connections closed through [`Gateway::delete_connection`], in order.
    pub fn deleted(&self) -> Vec<ConnectionId> {
        self.state().deleted.clone()
    }

    /// How many posts to `conn` were attempted, failed ones included.
    pub fn attempts(&self, conn: &ConnectionId) -> u32 {
        self.state().attempts.get(conn).copied().unwrap_or_default()
    }
}

#[async_trait]
impl Gateway for RecordingGateway {
    async fn post_to_connection(
        &self,
        conn: &ConnectionId,
        data: Bytes,
    ) -> Result<(), GatewayError> {
        let mut state = self.state();
        *state.attempts.entry(conn.clone()).or_default() += 1;
        if state.gone.contains(conn) {
            return Err(GatewayError::Gone);
        }
        if state.forbidden.contains(conn) {
            return Err(GatewayError::Forbidden("scripted 403".into()));
        }
        if let Some(left) = state.throttle_left.get_mut(conn).filter(|left| **left > 0) {
            *left -= 1;
            return Err(GatewayError::Throttled);
        }
        state.delivered.entry(conn.clone()).or_default().push(data);
        Ok(())
    }

    async fn delete_connection(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        let mut state = self.state();
        if !state.gone.insert(conn.clone()) {
            return Err(GatewayError::Gone);
        }
        state.deleted.push(conn.clone());
        Ok(())
    }
}
