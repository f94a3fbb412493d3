//! Room membership: which connections are in which room, bounded in time.
//!
//! [`RoomStore::join`] and [`RoomStore::leave`] are Channels' `group_add` and `group_discard` (this crate says
//! join and leave throughout), plus the reads the `$default` hot path needs. Membership expires after a fixed
//! lifetime ([`MAX_CONNECTION_LIFETIME`] by default, API Gateway's hard cap on a connection), because
//! `$disconnect` is best effort: a member older than that is certainly gone, whatever Redis still says.

pub mod memory;
pub mod redis;

use async_trait::async_trait;

use crate::wire::{ConnectionId, RoomName};

pub use self::memory::MemoryRoomStore;
pub use self::redis::RedisRoomStore;

pub use crate::config::MAX_CONNECTION_LIFETIME;

/// Room membership storage. Implementations must be safe to share between concurrent invocations.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Records `conn` as a member of `room`, joined at `connected_at_ms` (epoch milliseconds).
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached or refuses the write.
    async fn join(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// The room `conn` joined, unless it left or its membership expired.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be read.
    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError>;

    /// The live members of `room` at `now_ms`; members past the lifetime are trimmed as a side effect.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be read.
    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError>;

    /// Removes `conn` from its room and returns the room it left (`None` if it was in none).
    /// `room` is a hint (from the authorizer context) that saves looking the room up.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn leave(
        &self,
        conn: &ConnectionId,
        room: Option<&RoomName>,
    ) -> Result<Option<RoomName>, StoreError>;

    /// Removes connections that API Gateway reported gone (410) from `room`.
    ///
    /// # Errors
    /// [`StoreError`] when the backing store cannot be reached.
    async fn prune(&self, room: &RoomName, gone: &[ConnectionId]) -> Result<(), StoreError>;
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
