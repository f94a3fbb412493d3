//! Room membership: which connections are in which room, bounded in time.
//!
//! [`RoomStore::join`] and [`RoomStore::leave`] are Channels' `group_add` and `group_discard`;
//! [`RoomStore::prune`] removes the members API Gateway reported gone, and [`RoomStore::publish`],
//! [`RoomStore::history`] and [`RoomStore::presence`] serve `$default`'s frames. Membership expires after a fixed
//! lifetime ([`MAX_CONNECTION_LIFETIME`] by default, API Gateway's hard cap on a connection), because
//! `$disconnect` is best effort: a member older than that is certainly gone, whatever Redis still says.

pub mod memory;
mod policy;
pub mod redis;

use async_trait::async_trait;

use crate::wire::{ConnectionId, DisplayName, Epoch, RoomName, SourceAddress, Uid};

pub use self::memory::MemoryRoomStore;
pub use self::policy::{ANNOUNCEMENT_BURST, ANNOUNCEMENTS_PER_SEC, Limits, Policy, Retention};
pub use self::redis::RedisRoomStore;

pub use crate::config::MAX_CONNECTION_LIFETIME;

/// How long a store remembers API Gateway's id of a message, so a publish retried after a lost answer is not
/// numbered twice.
pub const SEEN_FOR_MS: i64 = 60_000;

/// How long a store remembers a client's id of a message (`"id"`), so the client may send it again while it does
/// not know whether the first one went through (its retries, a reconnect) without it being stored twice.
pub const CLIENT_IDS_FOR_MS: i64 = 300_000;

/// Someone presence tells of: a display name (none: anonymous) and, when signed in, the user id, which makes two
/// tabs of one user one person. The stores keep it as one string per connection ([`Someone::stored`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Someone {
    /// The display name (none: anonymous).
    pub name: Option<String>,
    /// The signed-in user's id.
    pub uid: Option<String>,
}

impl Someone {
    /// A named, not signed-in member.
    pub fn named(name: &str) -> Self {
        Self {
            name: Some(name.to_owned()),
            uid: None,
        }
    }

    /// How the stores keep it: `''` (anonymous), `name`, or `uid<TAB>name` (neither a name nor a uid holds a
    /// control character, so the tab is unambiguous).
    pub fn stored(name: Option<&DisplayName>, uid: Option<&Uid>) -> String {
        let name = name.map_or("", DisplayName::as_str);
        match uid {
            Some(uid) => format!("{uid}\t{name}"),
            None => name.to_owned(),
        }
    }

    /// What [`Someone::stored`] made.
    pub fn from_stored(stored: &str) -> Self {
        let (uid, name) = match stored.split_once('\t') {
            Some((uid, name)) => (Some(uid.to_owned()), name),
            None => (None, stored),
        };
        Self {
            name: (!name.is_empty()).then(|| name.to_owned()),
            uid,
        }
    }
}

/// A live member of a room and when it joined (`connectedAt`, epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// The connection.
    pub conn: ConnectionId,
    /// When it connected: a 410 for a member this young is API Gateway not having opened it yet.
    pub connected_at_ms: i64,
}

/// Who sends a chat message: it is (re)made a member of the room in the same round trip, so a member the store
/// forgot (Redis lost its data) is back as soon as it talks.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The sender's connection.
    pub conn: &'a ConnectionId,
    /// Its `connectedAt` (epoch ms).
    pub connected_at_ms: i64,
    /// The id under which the store recognises this message sent again: the client's (`"id"`, per sender), else
    /// API Gateway's (`messageId`). A publish with an id seen in the last `remember_ms` returns the frame the
    /// first one got instead of numbering the message twice (it still costs a token of the rate limit).
    pub message_id: Option<&'a str>,
    /// How long the store remembers `message_id` ([`SEEN_FOR_MS`], [`CLIENT_IDS_FOR_MS`]).
    pub remember_ms: i64,
    /// The sender's display name, carried in the frame as `user` (none: anonymous).
    pub user: Option<&'a DisplayName>,
    /// The signed-in sender's id, carried in the frame as `uid`.
    pub uid: Option<&'a Uid>,
}

/// What [`RoomStore::publish`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Numbered and stored: send it.
    Published(Published),
    /// The sender is over its rate limit: nothing was stored.
    RateLimited {
        /// When the sender may send again.
        retry_after_ms: u64,
    },
}

/// Names a presence answer lists at most (the count is always exact): a bounded answer for a big room.
pub const MAX_PRESENCE_NAMES: usize = 100;

/// Where a room's history stands: its epoch and the seq of its newest message. Pings and presence answers carry
/// it, so a reader that missed a message (a post to it failed, and the room went quiet) notices within one
/// heartbeat and asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The room's current history.
    pub epoch: Epoch,
    /// The seq of its newest message.
    pub seq: u64,
}

/// What [`RoomStore::join`] did, with what presence needs to announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entered {
    /// A member now.
    Joined {
        /// Someone new: this connection was not a member before (a ping's rejoin is not news), and, signed in,
        /// no other tab of the same user is either.
        fresh: bool,
        /// People in the room now, this one included: live connections, a signed-in user's tabs counted once.
        count: usize,
        /// The connections that asked for presence, this one excluded: they hear of the join.
        watchers: Vec<ConnectionId>,
        /// People whose last connection was found past its lifetime and removed now: they left without a
        /// `$disconnect`, and the watchers hear of it too.
        expired: Vec<Someone>,
        /// How many of the announcements (the expired members' leaves, then the join) presence damping lets out.
        announce: Announce,
        /// Where the room's history stands (none: it has none).
        head: Option<Head>,
    },
    /// The room has [`Limits::max_members`] live members; nothing was written.
    RoomFull,
}

/// The answer to a presence request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// People in the room: live connections, anonymous ones included, a signed-in user's tabs counted once.
    pub count: usize,
    /// The named people, once each, sorted, at most [`MAX_PRESENCE_NAMES`].
    pub names: Vec<Someone>,
    /// People whose last connection was found past its lifetime and removed now.
    pub expired: Vec<Someone>,
    /// The other connections that asked for presence: they hear of the expired members' leaves.
    pub watchers: Vec<ConnectionId>,
    /// How many of the expired members' leaves presence damping lets out.
    pub announce: Announce,
    /// Where the room's history stands (none: it has none).
    pub head: Option<Head>,
}

/// Members that left a room (`$disconnect`, or pruned after a 410), with what presence needs to announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    /// The room they left.
    pub room: RoomName,
    /// Who left, for each member that was still there and was the last connection of its person (a signed-in
    /// user's other tab leaving is no news). Members already gone are not listed.
    pub names: Vec<Someone>,
    /// People left in the room.
    pub count: usize,
    /// The connections that asked for presence and are still there: they hear of the leave.
    pub watchers: Vec<ConnectionId>,
    /// How many of the leaves presence damping lets out.
    pub announce: Announce,
}

/// What presence damping lets out of a batch of joins and leaves ([`ANNOUNCEMENTS_PER_SEC`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Announce {
    /// How many of the batch's announcements go out, the first ones; the rest are merged away.
    pub allowed: usize,
    /// Watchers should ask for presence again once things calm down: some announcements were (or may soon be)
    /// merged away, so their names and counts may be stale.
    pub recount: bool,
}

/// What a frame's draw on its connection's budget decided ([`RoomStore::spend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// Go ahead.
    Granted,
    /// Over budget: do nothing else.
    Refused {
        /// When the connection may send again.
        retry_after_ms: u64,
        /// The connection went on sending far past its budget: close it.
        close: bool,
    },
}

/// What a handshake's source address decided ([`RoomStore::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted, and the connection recorded as one of the address's live connections.
    Admitted,
    /// The address made too many handshakes in the last minute.
    TooFast {
        /// When it may try again.
        retry_after_ms: u64,
    },
    /// The address holds too many live connections.
    TooMany,
}

/// What [`RoomStore::publish`] did: the message's place in the room's history and who is in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The chat frame every member gets ([`crate::wire::chat_frame`]), as stored in the history.
    pub frame: String,
    /// Its number in the room: one more than the previous message's.
    pub seq: u64,
    /// The room's history it belongs to.
    pub epoch: Epoch,
    /// When the store accepted it (epoch ms; never less than the previous message's).
    pub ts: i64,
    /// The live members of the room, the sender included.
    pub members: Vec<Member>,
}

/// What [`RoomStore::history`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The room's current epoch (created by the request if the room had no history).
    pub epoch: Epoch,
    /// Chat frames in ascending seq: every retained message after the requested seq.
    pub frames: Vec<String>,
    /// `false` when some messages after the requested seq are no longer retained, or the requested epoch is not
    /// the current one. Without a requested seq: whether the frames start at the room's first message.
    pub complete: bool,
    /// More messages follow than one page holds: ask again after the last one.
    pub more: bool,
}

/// Room membership storage. Implementations must be safe to share between concurrent invocations.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Records `conn` as a member of `room`, joined at `connected_at_ms` (epoch milliseconds), with its display
    /// name and, signed in, its user's id, unless the room is full (a member already in it is always written
    /// again), and says who to tell. Idempotent.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached or refuses the write.
    async fn join(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        connected_at_ms: i64,
        name: Option<&DisplayName>,
        uid: Option<&Uid>,
    ) -> Result<Entered, StoreError>;

    /// The live members of `room` as presence shows them, in one round trip; `conn` is recorded as a watcher
    /// (it hears of joins and leaves from now on).
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn presence(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        now_ms: i64,
    ) -> Result<Presence, StoreError>;

    /// The room `conn` joined, unless it left or its membership expired.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be read.
    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError>;

    /// The chat hot path, in one round trip: takes a token from the sender's rate limit, writes the sender's
    /// membership again, assigns `message_json` (the message as a JSON string) the room's next `seq` (starting a
    /// new epoch when the room has no history), appends the chat frame to the room's bounded history, and returns
    /// the frame and the live members (members past their lifetime are left out; [`RoomStore::join`] and
    /// [`RoomStore::presence`] remove them and report them, so their leave is announced). Safe to retry: a message id seen in the last
    /// minute returns the frame it got then.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached or refuses the write.
    async fn publish(
        &self,
        room: &RoomName,
        sender: &Sender<'_>,
        message_json: &str,
        now_ms: i64,
    ) -> Result<PublishOutcome, StoreError>;

    /// The retained chat frames of `room` after seq `after` of history `epoch` (the current history when `epoch`
    /// is `None`; the most recent frames when `after` is `None`), at most [`Retention::page_bytes`] of them (at
    /// least one), in one round trip. A room without history gets an epoch now, so the answer always names one.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be read.
    async fn history(
        &self,
        room: &RoomName,
        after: Option<u64>,
        epoch: Option<&Epoch>,
        now_ms: i64,
    ) -> Result<HistoryPage, StoreError>;

    /// The live members of `room` at `now_ms`; members past the lifetime are trimmed as a side effect.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be read.
    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError>;

    /// Removes `conn` from its room and says what presence must announce (`None` if it was in no room); the count
    /// leaves out members past their lifetime at `now_ms`. `room` is a hint (from the authorizer context) that
    /// saves looking the room up.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn leave(
        &self,
        conn: &ConnectionId,
        room: Option<&RoomName>,
        now_ms: i64,
    ) -> Result<Option<Departed>, StoreError>;

    /// Removes connections that API Gateway reported gone (410) from `room`, and says what presence must
    /// announce (the count leaves out members past their lifetime at `now_ms`). Idempotent.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn prune(
        &self,
        room: &RoomName,
        gone: &[ConnectionId],
        now_ms: i64,
    ) -> Result<Departed, StoreError>;

    /// Takes one token from `conn`'s frame budget ([`Limits::frames_per_sec`], [`Limits::frame_burst`]), in one
    /// round trip: every history, presence and ping request and every refused frame pays it first.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn spend(&self, conn: &ConnectionId, now_ms: i64) -> Result<Spent, StoreError>;

    /// Counts a handshake from `address` and, unless the address is over [`Limits::handshakes_per_min`] or
    /// [`Limits::connections_per_address`], records `conn` (connected at `connected_at_ms`) as one of its live
    /// connections, in one round trip.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn admit(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<Admission, StoreError>;

    /// Forgets `conn` as a live connection of `address` (it left, or its handshake was refused after all).
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn release(&self, address: &SourceAddress, conn: &ConnectionId)
    -> Result<(), StoreError>;
}

impl StoreError {
    /// Whether the operation may have been carried out although it failed: the store did not answer in time, or
    /// the connection dropped after the request went out. A refused connection or an error the server answered
    /// means it was not.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Redis { source, .. }
            if source.is_timeout() || (source.is_connection_dropped() && !source.is_connection_refusal()))
    }
}

/// A room store failure. Client mistakes never end up here: only infrastructure does.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A Redis command failed (connection refused, timeout, wrong type, ...).
    #[error("redis {op} failed")]
    Redis {
        /// The operation that failed, for the log line.
        op: &'static str,
        /// What redis-rs reported.
        #[source]
        source: ::redis::RedisError,
    },
    /// Redis holds a value this code did not write (for example a room name that does not parse).
    #[error("unexpected value under key {key}")]
    Corrupt {
        /// The key that holds the value.
        key: String,
    },
}
