//! The Redis room store (or anything speaking Redis's protocol: Valkey, ElastiCache, MemoryDB).
//!
//! * [`keys`]: the key schema, every key in one table.
//! * [`scripts`]: the Lua scripts (one `.lua` file each) and the reader of their replies.
//! * [`connection`]: one node or a cluster, TLS, the sockets' settings, the one retry, per-slot batches.
//! * `store`: [`RoomStore`](super::RoomStore) on top of them; `budgets`: its per-connection and per-address
//!   budgets.
//!
//! # Round trips
//! Counted on one node; on a cluster each pipeline becomes one request per slot, sent concurrently.
//! * `$connect` → one pipeline: the join script on the room's slot (cap check, `ZADD`, `PEXPIRE`, `HSET` of the
//!   name, `SMEMBERS` of the watchers to tell), `SET … PX` on the connection.
//! * `$default` chat → one script on the room's keys (one slot): the sender's rate bucket, its membership written
//!   again, the next seq (a new epoch if there is none), the frame appended to the history, trimmed, its expiry
//!   refreshed, the frame and the live members returned. The sender's room comes from the authorizer context that
//!   API Gateway attaches to every event, so the hot path is one round trip; without an authorizer one `GET` on
//!   the connection key comes first.
//! * `$default` history, presence or ping → first the budget script on the connection's `budget` key (a frame
//!   over budget stops there).
//! * `$default` history request → one script on the room's `seq` and `history` keys.
//! * `$default` ping → the same pipeline as `$connect` (the membership is written again).
//! * `$default` presence request → one script on the room's members, names and watchers (O(members)).
//! * `$connect` from an address → the address script on its `addr` and `addrconns` keys, before the join;
//!   `$disconnect` → a `ZREM` of its slot.
//! * `$disconnect` → the removal script on the room's slot (`ZREM`, `HGET`/`HDEL` the name, `SREM`, `SMEMBERS`
//!   the watchers) + `DEL` of the connection key, one pipeline, when the room is known; else `GETDEL` first.
//! * 410 during fan-out → the same removal script for all the gone members + their `DEL`s, one pipeline.
//!
//! # Cluster mode
//! With `REDIS_CLUSTER=true` ([`crate::startup::connect_store`]) the store talks through redis-rs's async cluster
//! client, which ElastiCache Serverless and any cluster-mode endpoint require. It learns the slot map from the
//! node in the URL, routes each command by its key and follows `MOVED`/`ASK`; a script's `EVALSHA` is routed by its
//! first key, and a node that answers `NOSCRIPT` (a new primary after a failover) gets the script whole (`EVAL`,
//! [`scripts::Lua`]). That client refuses a pipeline whose commands span hash slots, so the pipelines above that
//! touch a room key and connection keys are split by slot ([`connection::Batch`]).
//!
//! # TLS
//! A `rediss://` URL connects over TLS with rustls, on the `ring` provider ([`crate::tls`]). Certificates are
//! always verified, against the system's roots (the ones the AWS SDK trusts too) or, when `REDIS_CA_CERT_PATH` is
//! set, against that PEM file's CAs only. The `#insecure` URL fragment is refused: redis-rs is built without
//! `tls-rustls-insecure`.

mod budgets;
mod connection;
pub mod keys;
mod scripts;
mod store;

use std::time::Duration;

use redis::aio::ConnectionLike;

pub use self::connection::NodeConnection;
use self::keys::Keys;
use self::scripts::Scripts;
use super::Policy;
use crate::config::KeyPrefix;

/// A [`RoomStore`](super::RoomStore) in Redis.
#[derive(Clone)]
pub struct RedisRoomStore<C = NodeConnection> {
    conn: C,
    /// Makes `conn` a new connection after the server said it is not the primary (one node; a cluster's client
    /// follows a failover by itself).
    redial: Option<NodeConnection>,
    keys: Keys,
    lifetime_ms: i64,
    policy: Policy,
    scripts: Scripts,
    /// Split pipelines by hash slot: the cluster client refuses one that spans slots.
    per_slot: bool,
}

impl<C> std::fmt::Debug for RedisRoomStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRoomStore")
            .field("keys", &self.keys)
            .field("lifetime_ms", &self.lifetime_ms)
            .field("per_slot", &self.per_slot)
            .finish()
    }
}

impl<C> RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Wraps an existing connection to a single node (or anything that accepts a pipeline spanning hash slots).
    /// `prefix` starts every key.
    pub fn with_connection(conn: C, prefix: &KeyPrefix, lifetime: Duration) -> Self {
        Self {
            conn,
            redial: None,
            keys: Keys::new(prefix),
            lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            policy: Policy::default(),
            scripts: Scripts::default(),
            per_slot: false,
        }
    }

    /// The same store keeping history and enforcing limits as `policy` says.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The names of the keys this store writes.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}
