//! What the in-memory store holds, and the operations on it that mirror the Redis scripts' steps.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::rooms::{
    ANNOUNCEMENT_BURST, ANNOUNCEMENTS_PER_SEC, Admission, Announce, Departed, Limits, Member,
    Someone, Spent,
};
use crate::wire::{ConnectionId, Epoch, RoomName, SourceAddress};

#[derive(Debug, Default)]
pub(super) struct State {
    /// room → (connection → connectedAt ms)
    pub(super) rooms: HashMap<RoomName, HashMap<ConnectionId, i64>>,
    /// connection → room
    pub(super) conns: HashMap<ConnectionId, RoomName>,
    /// room → its sequence and retained messages
    pub(super) histories: HashMap<RoomName, RoomHistory>,
    /// (room, connection) → its rate-limit bucket: tokens left, and when they were counted (ms)
    pub(super) buckets: HashMap<(RoomName, ConnectionId), Bucket>,
    /// connection → its frame budget (history, presence, ping, refused frames)
    pub(super) budgets: HashMap<ConnectionId, Bucket>,
    /// source address block ([`SourceAddress::block`]) → its handshake bucket
    pub(super) handshakes: HashMap<String, Bucket>,
    /// source address block → its live connections and when each connected (ms)
    pub(super) address_conns: HashMap<String, HashMap<ConnectionId, i64>>,
    /// room → its presence damping: the bucket, and how many announcements were merged away since the last
    pub(super) damping: HashMap<RoomName, (Bucket, usize)>,
    /// (room, message id) → the seq and ts it got, until the time (ms) it is forgotten
    pub(super) seen: HashMap<(RoomName, String), (u64, i64, i64)>,
    /// connection → who it is, as [`Someone::stored`] keeps it (anonymous connections have none)
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
    /// Their bytes, in all.
    pub(super) bytes: usize,
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

    /// Removes the members of `room` that joined before `cutoff` and returns the people that left with them.
    pub(super) fn expire(&mut self, room: &RoomName, cutoff: i64) -> Vec<Someone> {
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

    /// Where `room`'s history stands at `now_ms` (none: it has none, or it expired).
    pub(super) fn head(&self, room: &RoomName, now_ms: i64) -> Option<crate::rooms::Head> {
        self.histories
            .get(room)
            .filter(|history| history.expires_at_ms > now_ms)
            .map(|history| crate::rooms::Head {
                epoch: history.epoch.clone(),
                seq: history.seq,
            })
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

    /// Removes `conn` from `room`: who left, if it was a member and the last connection of its person (a signed-in
    /// user's other tab leaving is no news), as the removal script decides.
    pub(super) fn remove(&mut self, room: &RoomName, conn: &ConnectionId) -> Option<Someone> {
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
        let who = self
            .names
            .remove(conn)
            .map_or_else(Someone::default, |stored| Someone::from_stored(&stored));
        let another_tab = who.uid.is_some()
            && self.rooms.get(room).is_some_and(|members| {
                members
                    .keys()
                    .any(|other| self.someone(other).uid == who.uid)
            });
        (was && !another_tab).then_some(who)
    }

    /// Who `conn` is, as its stored name says.
    pub(super) fn someone(&self, conn: &ConnectionId) -> Someone {
        self.names
            .get(conn)
            .map_or_else(Someone::default, |stored| Someone::from_stored(stored))
    }

    /// The people among `live`: connections, a signed-in user's counted once.
    pub(super) fn people(&self, live: &[ConnectionId]) -> usize {
        let mut users = BTreeSet::new();
        live.iter()
            .filter(|conn| match self.someone(conn).uid {
                Some(uid) => users.insert(uid),
                None => true,
            })
            .count()
    }

    /// What presence announces after `names` left `room`.
    /// `count` leaves out members that joined before `cutoff` (the next join or presence request removes and
    /// announces those).
    pub(super) fn departed(&self, room: RoomName, names: Vec<Someone>, cutoff: i64) -> Departed {
        let live: Vec<ConnectionId> = self.rooms.get(&room).map_or_else(Vec::new, |m| {
            m.iter()
                .filter(|(_, at)| **at >= cutoff)
                .map(|(c, _)| c.clone())
                .collect()
        });
        Departed {
            announce: Announce::default(),
            count: self.people(&live),
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
            bytes: 0,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }
}

impl RoomHistory {
    /// Appends `frame`, then drops the oldest frames while more than `max` are kept or more than `max_bytes` in
    /// all (the newest always stays).
    pub(super) fn push(&mut self, frame: String, max: usize, max_bytes: usize) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        while self.frames.len() > 1 && (self.frames.len() > max || self.bytes > max_bytes) {
            let oldest = self.frames.pop_front().unwrap_or_default();
            self.bytes -= oldest.len();
        }
    }
}

/// A token bucket, with the same arithmetic as the Redis scripts': `tokens` counted at `at` (epoch ms).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at: i64,
}

impl Bucket {
    fn full(cap: u32, now_ms: i64) -> Self {
        Self {
            tokens: f64::from(cap),
            at: now_ms,
        }
    }

    /// Refills at `per_sec` up to `cap` for the time since it was last counted.
    pub(super) fn refill(&mut self, now_ms: i64, per_sec: f64, cap: u32) {
        if now_ms > self.at {
            self.tokens =
                (self.tokens + (now_ms - self.at) as f64 * per_sec / 1000.0).min(f64::from(cap));
            self.at = now_ms;
        }
    }

    /// How long until a token is there, refilling at `per_sec`.
    pub(super) fn wait_ms(&self, per_sec: f64) -> u64 {
        ((1.0 - self.tokens) * 1000.0 / per_sec).ceil() as u64
    }
}

impl State {
    /// A chat message's token from the sender's bucket in `room`; the wait when there is none.
    pub(super) fn chat_token(
        &mut self,
        room: &RoomName,
        conn: &ConnectionId,
        limits: Limits,
        now_ms: i64,
    ) -> Result<(), u64> {
        let per_sec = f64::from(limits.messages_per_sec);
        let bucket = self
            .buckets
            .entry((room.clone(), conn.clone()))
            .or_insert_with(|| Bucket::full(limits.burst, now_ms));
        bucket.refill(now_ms, per_sec, limits.burst);
        if bucket.tokens < 1.0 {
            return Err(bucket.wait_ms(per_sec));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// `conn`'s frame budget: a token, or a refusal into debt (down to `-burst`, where the connection is closed).
    pub(super) fn spend(&mut self, conn: &ConnectionId, limits: Limits, now_ms: i64) -> Spent {
        let (per_sec, burst) = (f64::from(limits.frames_per_sec), limits.frame_burst);
        let bucket = self
            .budgets
            .entry(conn.clone())
            .or_insert_with(|| Bucket::full(burst, now_ms));
        bucket.refill(now_ms, per_sec, burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Spent::Granted;
        }
        bucket.tokens = (bucket.tokens - 1.0).max(-f64::from(burst));
        Spent::Refused {
            retry_after_ms: bucket.wait_ms(per_sec),
            close: bucket.tokens <= -f64::from(burst),
        }
    }

    /// A handshake from `address`, counted; `conn` recorded as one of its live connections when admitted.
    pub(super) fn admit(
        &mut self,
        address: &SourceAddress,
        conn: &ConnectionId,
        limits: Limits,
        connected_at_ms: i64,
        cutoff: i64,
    ) -> Admission {
        let (per_min, per_sec) = (
            limits.handshakes_per_min,
            f64::from(limits.handshakes_per_min) / 60.0,
        );
        let bucket = self
            .handshakes
            .entry(address.block().to_owned())
            .or_insert_with(|| Bucket::full(per_min, connected_at_ms));
        bucket.refill(connected_at_ms, per_sec, per_min);
        if bucket.tokens < 1.0 {
            return Admission::TooFast {
                retry_after_ms: bucket.wait_ms(per_sec),
            };
        }
        bucket.tokens -= 1.0;
        let live = self
            .address_conns
            .entry(address.block().to_owned())
            .or_default();
        live.retain(|_, at| *at >= cutoff);
        if !live.contains_key(conn) && live.len() >= limits.connections_per_address {
            return Admission::TooMany;
        }
        live.insert(conn.clone(), connected_at_ms);
        Admission::Admitted
    }

    /// Presence damping in `room`: how many of `n` announcements go out now, and whether watchers should recount.
    pub(super) fn damp(&mut self, room: &RoomName, n: usize, now_ms: i64) -> Announce {
        if n == 0 {
            return Announce::default();
        }
        let (per_sec, burst) = (f64::from(ANNOUNCEMENTS_PER_SEC), ANNOUNCEMENT_BURST);
        let (bucket, missed) = self
            .damping
            .entry(room.clone())
            .or_insert_with(|| (Bucket::full(burst, now_ms), 0));
        bucket.refill(now_ms, per_sec, burst);
        let allowed = n.min(bucket.tokens.floor().max(0.0) as usize);
        bucket.tokens -= allowed as f64;
        let mut recount = false;
        if allowed > 0 {
            recount = *missed > 0 || allowed < n || bucket.tokens < 1.0;
            *missed = n - allowed;
        } else {
            *missed += n;
        }
        Announce { allowed, recount }
    }
}
