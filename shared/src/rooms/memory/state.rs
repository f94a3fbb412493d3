//! What the in-memory store holds, and the operations on it that mirror the Redis scripts' steps.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::rooms::{Departed, Member};
use crate::wire::{ConnectionId, Epoch, RoomName};

#[derive(Debug, Default)]
pub(super) struct State {
    /// room → (connection → connectedAt ms)
    pub(super) rooms: HashMap<RoomName, HashMap<ConnectionId, i64>>,
    /// connection → room
    pub(super) conns: HashMap<ConnectionId, RoomName>,
    /// room → its sequence and retained messages
    pub(super) histories: HashMap<RoomName, RoomHistory>,
    /// (room, connection) → its rate-limit bucket: tokens left, and when they were counted (ms)
    pub(super) buckets: HashMap<(RoomName, ConnectionId), (f64, i64)>,
    /// (room, message id) → the seq and ts it got, until the time (ms) it is forgotten
    pub(super) seen: HashMap<(RoomName, String), (u64, i64, i64)>,
    /// connection → its display name (anonymous connections have none)
    pub(super) names: HashMap<ConnectionId, String>,
    /// room → the connections that asked for presence
    pub(super) watchers: HashMap<RoomName, BTreeSet<ConnectionId>>,
}

/// One room's history: what Redis keeps in the room's `seq` hash and `history` list.
#[derive(Debug)]
pub(super) struct RoomHistory {
    pub(super) epoch: Epoch,
    /// The last seq assigned.
    pub(super) seq: u64,
    /// The last ts assigned.
    pub(super) ts: i64,
    /// The newest retained chat frames, oldest first: seqs `seq - len + 1 ..= seq`.
    pub(super) frames: VecDeque<String>,
    /// Forgotten at this time (epoch ms) unless another message comes first.
    pub(super) expires_at_ms: i64,
}

impl State {
    /// The live members of `room` with their join times, sorted, after dropping those that joined before `cutoff`.
    pub(super) fn live_member_times(&mut self, room: &RoomName, cutoff: i64) -> Vec<Member> {
        let live = self.live_members(room, cutoff);
        let joined = self.rooms.get(room);
        live.into_iter()
            .map(|conn| Member {
                connected_at_ms: joined
                    .and_then(|m| m.get(&conn))
                    .copied()
                    .unwrap_or_default(),
                conn,
            })
            .collect()
    }

    /// Writes `conn` into `room` (leaving any other room).
    pub(super) fn add(&mut self, room: &RoomName, conn: &ConnectionId, connected_at_ms: i64) {
        if let Some(previous) = self.conns.get(conn).cloned()
            && previous != *room
        {
            self.remove(&previous, conn);
        }
        self.conns.insert(conn.clone(), room.clone());
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(conn.clone(), connected_at_ms);
    }

    /// The live members of `room`, sorted: those that joined at or after `cutoff` (older ones are left out, not
    /// removed: see [`State::expire`]).
    pub(super) fn live_members(&mut self, room: &RoomName, cutoff: i64) -> Vec<ConnectionId> {
        let mut live: Vec<ConnectionId> = self
            .rooms
            .get(room)
            .map(|m| {
                m.iter()
                    .filter(|(_, at)| **at >= cutoff)
                    .map(|(c, _)| c.clone())
                    .collect()
            })
            .unwrap_or_default();
        live.sort();
        live
    }

    /// Removes the members of `room` that joined before `cutoff` and returns their names (`None`: anonymous).
    pub(super) fn expire(&mut self, room: &RoomName, cutoff: i64) -> Vec<Option<String>> {
        let mut expired: Vec<ConnectionId> = self
            .rooms
            .get(room)
            .map(|members| {
                members
                    .iter()
                    .filter(|(_, at)| **at < cutoff)
                    .map(|(c, _)| c.clone())
                    .collect()
            })
            .unwrap_or_default();
        expired.sort();
        expired
            .iter()
            .filter_map(|conn| self.remove(room, conn))
            .collect()
    }

    /// `room`'s history, started afresh (a new epoch) when it has none or it expired.
    pub(super) fn history(
        &mut self,
        room: &RoomName,
        now_ms: i64,
        ttl_ms: i64,
    ) -> &mut RoomHistory {
        let history = self
            .histories
            .entry(room.clone())
            .or_insert_with(|| RoomHistory::fresh(now_ms, ttl_ms));
        if history.expires_at_ms <= now_ms {
            *history = RoomHistory::fresh(now_ms, ttl_ms);
        }
        history
    }

    /// Removes `conn` from `room`; its name if it was there (`None` if it was not a member).
    pub(super) fn remove(
        &mut self,
        room: &RoomName,
        conn: &ConnectionId,
    ) -> Option<Option<String>> {
        let was = self
            .rooms
            .get_mut(room)
            .and_then(|members| members.remove(conn))
            .is_some();
        if self.rooms.get(room).is_some_and(HashMap::is_empty) {
            self.rooms.remove(room);
        }
        if let Some(watchers) = self.watchers.get_mut(room) {
            watchers.remove(conn);
        }
        if self.conns.get(conn) == Some(room) {
            self.conns.remove(conn);
        }
        let name = self.names.remove(conn);
        was.then_some(name)
    }

    /// What presence announces after `names` left `room`.
    /// `count` leaves out members that joined before `cutoff` (the next join or presence request removes and
    /// announces those).
    pub(super) fn departed(
        &self,
        room: RoomName,
        names: Vec<Option<String>>,
        cutoff: i64,
    ) -> Departed {
        Departed {
            count: self
                .rooms
                .get(&room)
                .map_or(0, |m| m.values().filter(|at| **at >= cutoff).count()),
            watchers: self
                .watchers
                .get(&room)
                .map(|w| w.iter().cloned().collect())
                .unwrap_or_default(),
            room,
            names,
        }
    }

    /// The watchers of `room`, but `except`.
    pub(super) fn watchers_of(&self, room: &RoomName, except: &ConnectionId) -> Vec<ConnectionId> {
        self.watchers
            .get(room)
            .map(|w| w.iter().filter(|c| *c != except).cloned().collect())
            .unwrap_or_default()
    }
}

impl RoomHistory {
    pub(super) fn fresh(now_ms: i64, ttl_ms: i64) -> Self {
        Self {
            epoch: Epoch::random(),
            seq: 0,
            ts: 0,
            frames: VecDeque::new(),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }
}
