//! Redis room store.
//!
//! # Key schema
//! With the default prefix `wschat:`:
//!
//! | key | type | value | expiry |
//! |---|---|---|---|
//! | `wschat:room:{<room>}` | sorted set | member = connection id, score = `connectedAt` (epoch ms) | lifetime after the newest join |
//! | `wschat:conn:{<connection id>}` | string | the room name | lifetime after the join |
//!
//! The `{...}` hash tags put every key of one room in one Redis Cluster slot and every connection's key in its
//! own; no command or script ever touches keys of two slots at once, so the schema works unchanged on Redis
//! Cluster and ElastiCache Serverless (cluster mode).
//!
//! # Round trips
//! * `$connect` → one pipeline: `ZADD` + `PEXPIRE` on the room, `SET … PX` on the connection.
//! * `$default` → one script on the room key: drop members older than the lifetime, return the rest. The
//!   sender's room comes from the authorizer context that API Gateway attaches to every event, so the hot path is
//!   one round trip; without an authorizer one `GET` on the connection key comes first.
//! * `$disconnect` → `ZREM` + `DEL` (one pipeline) when the room is known, else `GETDEL` first.
//! * 410 during fan-out → one pipeline of `ZREM` + `DEL`s.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use super::{RoomStore, StoreError};
use crate::wire::{ConnectionId, RoomName};

/// Drops members that joined before `ARGV[1]` (epoch ms) and returns the others, in one round trip.
const LIVE_MEMBERS_SCRIPT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// A [`RoomStore`] in Redis (or anything speaking its protocol: Valkey, ElastiCache, MemoryDB).
#[derive(Clone)]
pub struct RedisRoomStore<C = ConnectionManager> {
    conn: C,
    prefix: String,
    lifetime_ms: i64,
    live_members: redis::Script,
}

impl<C> std::fmt::Debug for RedisRoomStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRoomStore")
            .field("prefix", &self.prefix)
            .field("lifetime_ms", &self.lifetime_ms)
            .finish()
    }
}

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "wschat:";

impl RedisRoomStore<ConnectionManager> {
    /// Connects to `url` (`redis://`, `rediss://` or `unix://`) with a connection manager that reconnects by
    /// itself; create it once per process (cold start) and share it.
    ///
    /// # Errors
    /// [`StoreError::Redis`] when the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str, prefix: &str, lifetime: Duration) -> Result<Self, StoreError> {
        let redis_err = |source| StoreError::Redis {
            op: "connect",
            source,
        };
        let client = redis::Client::open(url).map_err(redis_err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_err)?;
        Ok(Self::with_connection(manager, prefix, lifetime))
    }
}

impl<C> RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Wraps an existing connection. `prefix` starts every key; it must not contain `{` or `}`.
    pub fn with_connection(conn: C, prefix: &str, lifetime: Duration) -> Self {
        let prefix: String = prefix.chars().filter(|c| *c != '{' && *c != '}').collect();
        Self {
            conn,
            prefix,
            lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            live_members: redis::Script::new(LIVE_MEMBERS_SCRIPT),
        }
    }

    /// The sorted-set key holding `room`'s members.
    pub fn room_key(&self, room: &RoomName) -> String {
        format!("{}room:{{{}}}", self.prefix, room.as_str())
    }

    /// The string key holding the room `conn` joined.
    pub fn conn_key(&self, conn: &ConnectionId) -> String {
        format!("{}conn:{{{}}}", self.prefix, conn.as_str())
    }

    fn conn(&self) -> C {
        // Cloning a ConnectionManager is cheap: it shares one multiplexed socket.
        self.conn.clone()
    }

    fn parse_room(
        &self,
        conn: &ConnectionId,
        raw: Option<String>,
    ) -> Result<Option<RoomName>, StoreError> {
        raw.map(|name| {
            RoomName::parse(&name).map_err(|_| StoreError::Corrupt {
                key: self.conn_key(conn),
            })
        })
        .transpose()
    }

    fn removal(&self, room: &RoomName, gone: &[ConnectionId]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.zrem(
            self.room_key(room),
            gone.iter().map(ConnectionId::as_str).collect::<Vec<_>>(),
        )
        .ignore();
        // One DEL per key: a multi-key DEL would span slots on a cluster.
        for conn in gone {
            pipe.del(self.conn_key(conn)).ignore();
        }
        pipe
    }
}

fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |source| StoreError::Redis { op, source }
}

#[async_trait]
impl<C> RoomStore for RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    async fn join(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<(), StoreError> {
        let room_key = self.room_key(room);
        let ttl = self.lifetime_ms;
        // Not MULTI: the two keys live in different slots. Each command is idempotent, so a retried join is safe.
        let mut pipe = redis::pipe();
        pipe.zadd(&room_key, conn.as_str(), connected_at_ms)
            .ignore()
            .pexpire(&room_key, ttl)
            .ignore()
            .cmd("SET")
            .arg(self.conn_key(conn))
            .arg(room.as_str())
            .arg("PX")
            .arg(ttl)
            .ignore();
        pipe.query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err("join"))
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        let raw: Option<String> = self
            .conn()
            .get(self.conn_key(conn))
            .await
            .map_err(redis_err("room_of"))?;
        self.parse_room(conn, raw)
    }

    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let raw: Vec<String> = self
            .live_members
            .key(self.room_key(room))
            .arg(cutoff)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err("members"))?;
        // A member that does not parse was not written by us; skip it rather than fail the whole room.
        Ok(raw
            .iter()
            .filter_map(|id| ConnectionId::parse(id).ok())
            .collect())
    }

    async fn leave(
        &self,
        conn: &ConnectionId,
        room: Option<&RoomName>,
    ) -> Result<Option<RoomName>, StoreError> {
        let room = match room {
            Some(room) => room.clone(),
            None => {
                let raw: Option<String> = redis::cmd("GETDEL")
                    .arg(self.conn_key(conn))
                    .query_async(&mut self.conn())
                    .await
                    .map_err(redis_err("leave"))?;
                match self.parse_room(conn, raw)? {
                    Some(room) => room,
                    None => return Ok(None),
                }
            }
        };
        self.removal(&room, std::slice::from_ref(conn))
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err("leave"))?;
        Ok(Some(room))
    }

    async fn prune(&self, room: &RoomName, gone: &[ConnectionId]) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        self.removal(room, gone)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err("prune"))
    }
}
