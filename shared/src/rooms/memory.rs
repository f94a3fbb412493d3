//! In-memory room store: the emulator's default and the unit tests' fake, with the same expiry rules as Redis.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{MAX_CONNECTION_LIFETIME, RoomStore, StoreError};
use crate::wire::{ConnectionId, RoomName};

/// A [`RoomStore`] held in process memory. Membership expires like the Redis store's.
#[derive(Debug)]
pub struct MemoryRoomStore {
    lifetime_ms: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// room → (connection → connectedAt ms)
    rooms: HashMap<RoomName, HashMap<ConnectionId, i64>>,
    /// connection → room
    conns: HashMap<ConnectionId, RoomName>,
}

impl Default for MemoryRoomStore {
    fn default() -> Self {
        Self::new(MAX_CONNECTION_LIFETIME)
    }
}

impl MemoryRoomStore {
    /// A store whose memberships last `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (each update is one insert or
        // remove), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn remove(&mut self, room: &RoomName, conn: &ConnectionId) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(conn);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
        if self.conns.get(conn) == Some(room) {
            self.conns.remove(conn);
        }
    }
}

#[async_trait]
impl RoomStore for MemoryRoomStore {
    async fn join(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(previous) = state.conns.get(conn).cloned() {
            state.remove(&previous, conn);
        }
        state.conns.insert(conn.clone(), room.clone());
        state
            .rooms
            .entry(room.clone())
            .or_default()
            .insert(conn.clone(), connected_at_ms);
        Ok(())
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        Ok(self.state().conns.get(conn).cloned())
    }

    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let mut state = self.state();
        let Some(members) = state.rooms.get(room) else {
            return Ok(Vec::new());
        };
        let expired: Vec<ConnectionId> = members
            .iter()
            .filter(|(_, at)| **at < cutoff)
            .map(|(c, _)| c.clone())
            .collect();
        for conn in &expired {
            state.remove(room, conn);
        }
        let mut live: Vec<ConnectionId> = state
            .rooms
            .get(room)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        live.sort();
        Ok(live)
    }

    async fn leave(
        &self,
        conn: &ConnectionId,
        _room: Option<&RoomName>,
    ) -> Result<Option<RoomName>, StoreError> {
        let mut state = self.state();
        let Some(room) = state.conns.get(conn).cloned() else {
            return Ok(None);
        };
        state.remove(&room, conn);
        Ok(Some(room))
    }

    async fn prune(&self, room: &RoomName, gone: &[ConnectionId]) -> Result<(), StoreError> {
        let mut state = self.state();
        for conn in gone {
            state.remove(room, conn);
        }
        Ok(())
    }
}
