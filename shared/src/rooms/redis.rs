//! Redis room store.
//!
//! # Key schema
//! With the default prefix `wschat:`:
//!
//! | key | type | value | expiry |
//! |---|---|---|---|
//! | `wschat:room:{<room>}` | sorted set | member = connection id, score = `connectedAt` (epoch ms) | lifetime after the newest join |
//! | `wschat:conn:{<connection id>}` | string | the room name | lifetime after the join |
//! | `wschat:seq:{<room>}` | hash | `epoch` (the history's name), `seq` (last seq assigned), `ts` (last ts) | `HISTORY_TTL_SECS` after the last message |
//! | `wschat:history:{<room>}` | list | the newest `HISTORY_MAX_MESSAGES` chat frames, oldest first | as `seq` |
//!
//! The list always holds the frames of seqs `seq - LLEN + 1 ..= seq` (both are written by one script), so a
//! history request finds "everything after seq N" with one `LRANGE`. When the `seq` hash is gone (expired,
//! evicted, or Redis lost its data), the next publish or history request starts a new epoch at seq 1 and empties
//! the list, so no client can take a new message for an old one.
//!
//! The `{...}` hash tags put every key of one room in one Redis Cluster slot and every connection's key in its
//! own; no command or script ever touches keys of two slots at once, so the schema works unchanged on Redis
//! Cluster and ElastiCache Serverless (cluster mode). Only the non-atomic pipelines below mix slots, and on a
//! cluster they are split by slot (see [Cluster mode](#cluster-mode)).
//!
//! # Round trips
//! Counted on one node; on a cluster each pipeline becomes one request per slot, sent concurrently.
//! * `$connect` → one pipeline: `ZADD` + `PEXPIRE` on the room, `SET … PX` on the connection.
//! * `$default` chat → one script on the room's three keys (one slot): drop members older than the lifetime,
//!   assign the next seq (a new epoch if there is none), append the frame to the history, trim it, refresh its
//!   expiry, return the frame and the live members. The sender's room comes from the authorizer context that API
//!   Gateway attaches to every event, so the hot path is one round trip; without an authorizer one `GET` on the
//!   connection key comes first.
//! * `$default` history request → one script on the room's `seq` and `history` keys.
//! * `$default` ping → the same pipeline as `$connect` (the membership is written again).
//! * `$disconnect` → `ZREM` + `DEL` (one pipeline) when the room is known, else `GETDEL` first.
//! * 410 during fan-out → one pipeline of `ZREM` + `DEL`s.
//!
//! # Cluster mode
//! With `REDIS_CLUSTER=true` ([`crate::startup::connect_store`]) the store talks through redis-rs's async cluster
//! client, which ElastiCache Serverless and any cluster-mode endpoint require. It
//! learns the slot map from the node in the URL, routes each command by its key, follows `MOVED`/`ASK`, and runs
//! `SCRIPT LOAD` on every node when a node answers `NOSCRIPT`; the script's `EVALSHA` carries one key, so it is
//! routed by that key. That client refuses a pipeline whose commands span hash slots ("crossed slots"), so the
//! pipelines above that touch a room key and connection keys are sent as one pipeline per slot, concurrently:
//! still one round trip of latency, but one request per slot.
//!
//! # TLS
//! A `rediss://` URL connects over TLS with rustls, on the aws-lc-rs provider the AWS SDK already builds.
//! Certificates are always verified, against the system's roots (the ones the AWS SDK trusts too) or, when
//! `REDIS_CA_CERT_PATH` is set, against that PEM file's CAs only. The `#insecure` URL fragment is refused:
//! redis-rs is built without `tls-rustls-insecure`.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, TlsCertificates};

use super::{HistoryPage, Published, Retention, RoomStore, StoreError};
use crate::config::KeyPrefix;
use crate::wire::{ConnectionId, Epoch, RoomName};

/// How long connecting to one node, or one reply, may take before the attempt fails.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How many times the connection manager tries to re-establish a dropped connection, and the cluster client to
/// re-route a request after `MOVED`/`ASK` or a node failure. Neither resends a request that failed on a single
/// node's dropped connection: that request's error reaches the caller.
const RECONNECT_ATTEMPTS: u32 = 2;

/// Drops members that joined before `ARGV[1]` (epoch ms) and returns the others, in one round trip.
const LIVE_MEMBERS_SCRIPT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// Starts a new history (epoch `ARGV[epoch_arg]`, seq 0, an empty list) when the room's `seq` hash is gone, and
/// returns the epoch. Shared by the two scripts below. KEYS[1] = members, KEYS[2] = seq hash, KEYS[3] = history.
const CURRENT_EPOCH_LUA: &str = r"
local function current_epoch(candidate, ttl)
  local epoch = redis.call('HGET', KEYS[2], 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0, 'ts', 0)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return epoch
end
";

/// The chat hot path. ARGV: 1 member cutoff (ms), 2 now (ms), 3 the message as a JSON string, 4 a fresh epoch,
/// 5 messages kept, 6 history TTL (ms). Returns `{frame, seq, epoch, ts, member...}`, all strings. The frame is
/// built exactly as `wire::chat_frame` builds it (a test holds the two together).
const PUBLISH_LUA: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local epoch = current_epoch(ARGV[4], ARGV[6])
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local ts = tonumber(ARGV[2])
local last_ts = tonumber(redis.call('HGET', KEYS[2], 'ts') or '0')
if last_ts > ts then ts = last_ts end
local seq_s = string.format('%d', seq)
local ts_s = string.format('%d', ts)
redis.call('HSET', KEYS[2], 'ts', ts_s)
local frame = '{"message":' .. ARGV[3] .. ',"seq":' .. seq_s .. ',"epoch":"' .. epoch .. '","ts":' .. ts_s .. '}'
redis.call('RPUSH', KEYS[3], frame)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local out = {frame, seq_s, epoch, ts_s}
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for i = 1, #members do out[#out + 1] = members[i] end
return out
"#;

/// A history request. ARGV: 1 after (`-1` for none), 2 the client's epoch (`` for none), 3 a fresh epoch,
/// 4 history TTL (ms). Returns `{epoch, complete ("1"/"0"), frame...}`. Mirrors `MemoryRoomStore::history`.
const HISTORY_LUA: &str = r"
local epoch = current_epoch(ARGV[3], ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[2], 'seq'))
local len = redis.call('LLEN', KEYS[3])
local first = last - len + 1
local after = tonumber(ARGV[1])
local start = 0
local complete
if after < 0 then
  complete = first <= 1
elseif ARGV[2] ~= '' and ARGV[2] ~= epoch then
  complete = false
else
  start = after - first + 1
  if start < 0 then start = 0 end
  if start > len then start = len end
  complete = after + 1 >= first
end
local out = {epoch, complete and '1' or '0'}
if start < len then
  local frames = redis.call('LRANGE', KEYS[3], start, -1)
  for i = 1, #frames do out[#out + 1] = frames[i] end
end
return out
";

/// A [`RoomStore`] in Redis (or anything speaking its protocol: Valkey, ElastiCache, MemoryDB).
#[derive(Clone)]
pub struct RedisRoomStore<C = ConnectionManager> {
    conn: C,
    prefix: String,
    lifetime_ms: i64,
    retention: Retention,
    live_members: redis::Script,
    publish: redis::Script,
    history: redis::Script,
    /// Split pipelines by hash slot: the cluster client refuses one that spans slots.
    per_slot: bool,
}

impl<C> std::fmt::Debug for RedisRoomStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRoomStore")
            .field("prefix", &self.prefix)
            .field("lifetime_ms", &self.lifetime_ms)
            .field("per_slot", &self.per_slot)
            .finish()
    }
}

impl RedisRoomStore<ConnectionManager> {
    /// Connects to `url` (`redis://`, `rediss://` or `unix://`) with a connection manager that reconnects by
    /// itself; create it once per process (cold start) and share it.
    ///
    /// # Errors
    /// [`StoreError::Redis`] when the URL is invalid or the server cannot be reached.
    pub async fn connect(
        url: &str,
        prefix: &KeyPrefix,
        lifetime: Duration,
    ) -> Result<Self, StoreError> {
        Self::single_node(url, None, prefix, lifetime).await
    }

    /// [`RedisRoomStore::connect`], trusting `roots` for `rediss://` (the system's roots when `None`).
    pub(crate) async fn single_node(
        url: &str,
        roots: Option<TlsCertificates>,
        prefix: &KeyPrefix,
        lifetime: Duration,
    ) -> Result<Self, StoreError> {
        let client = match roots {
            None => redis::Client::open(url),
            Some(roots) => redis::Client::build_with_tls(url, roots),
        }
        .map_err(redis_err("connect"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(RECONNECT_ATTEMPTS as usize);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_err("connect"))?;
        Ok(Self::with_connection(manager, prefix, lifetime))
    }
}

impl RedisRoomStore<ClusterConnection> {
    /// Connects to the Redis Cluster that `url` (`redis://` or `rediss://`, one node or a configuration endpoint)
    /// belongs to, with redis-rs's async cluster client, trusting `roots` for `rediss://`; create it once per
    /// process (cold start) and share it.
    ///
    /// # Errors
    /// [`StoreError::Redis`] when the URL is invalid or the cluster cannot be reached.
    pub(crate) async fn cluster(
        url: &str,
        roots: Option<TlsCertificates>,
        prefix: &KeyPrefix,
        lifetime: Duration,
    ) -> Result<Self, StoreError> {
        let mut builder = ClusterClient::builder([url])
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(RECONNECT_ATTEMPTS);
        if let Some(roots) = roots {
            builder = builder.certs(roots);
        }
        let conn = builder
            .build()
            .map_err(redis_err("connect"))?
            .get_async_connection()
            .await
            .map_err(redis_err("connect"))?;
        let mut store = Self::with_connection(conn, prefix, lifetime);
        store.per_slot = true;
        Ok(store)
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
            prefix: prefix.as_str().to_owned(),
            lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            retention: Retention::default(),
            live_members: redis::Script::new(LIVE_MEMBERS_SCRIPT),
            publish: redis::Script::new(&format!("{CURRENT_EPOCH_LUA}{PUBLISH_LUA}")),
            history: redis::Script::new(&format!("{CURRENT_EPOCH_LUA}{HISTORY_LUA}")),
            per_slot: false,
        }
    }

    /// The same store keeping `retention` of each room's history.
    #[must_use]
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The hash holding `room`'s epoch, last seq and last ts.
    pub fn seq_key(&self, room: &RoomName) -> String {
        format!("{}seq:{{{}}}", self.prefix, room.as_str())
    }

    /// The list holding `room`'s retained chat frames.
    pub fn history_key(&self, room: &RoomName) -> String {
        format!("{}history:{{{}}}", self.prefix, room.as_str())
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.retention.ttl.as_millis()).unwrap_or(i64::MAX)
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
        // Cloning a ConnectionManager or a ClusterConnection is cheap: clones share the same sockets.
        self.conn.clone()
    }

    fn batch(&self) -> Batch {
        Batch {
            pipes: Vec::new(),
            per_slot: self.per_slot,
        }
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

    fn removal(&self, room: &RoomName, gone: &[ConnectionId]) -> Batch {
        let mut batch = self.batch();
        batch
            .slot()
            .zrem(
                self.room_key(room),
                gone.iter().map(ConnectionId::as_str).collect::<Vec<_>>(),
            )
            .ignore();
        // One DEL per key: a multi-key DEL would span slots on a cluster.
        for conn in gone {
            batch.slot().del(self.conn_key(conn)).ignore();
        }
        batch
    }
}

/// Commands sent together, grouped by the hash slot they touch. On one node the groups go as one pipeline (one
/// round trip); on a cluster as one pipeline per group, concurrently, because the cluster client refuses a
/// pipeline that spans slots and routes each pipeline by its keys.
struct Batch {
    pipes: Vec<redis::Pipeline>,
    per_slot: bool,
}

impl Batch {
    /// The pipeline for the commands of one more slot.
    fn slot(&mut self) -> &mut redis::Pipeline {
        if self.per_slot || self.pipes.is_empty() {
            self.pipes.push(redis::pipe());
        }
        let last = self.pipes.len() - 1;
        &mut self.pipes[last]
    }

    async fn run<C>(self, conn: &C) -> redis::RedisResult<()>
    where
        C: ConnectionLike + Clone + Send + Sync,
    {
        try_join_all(self.pipes.into_iter().map(|pipe| {
            let mut conn = conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        }))
        .await
        .map(drop)
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
        let mut batch = self.batch();
        batch
            .slot()
            .zadd(&room_key, conn.as_str(), connected_at_ms)
            .ignore()
            .pexpire(&room_key, ttl)
            .ignore();
        batch
            .slot()
            .cmd("SET")
            .arg(self.conn_key(conn))
            .arg(room.as_str())
            .arg("PX")
            .arg(ttl)
            .ignore();
        batch.run(&self.conn).await.map_err(redis_err("join"))
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        let raw: Option<String> = self
            .conn()
            .get(self.conn_key(conn))
            .await
            .map_err(redis_err("room_of"))?;
        self.parse_room(conn, raw)
    }

    async fn publish(
        &self,
        room: &RoomName,
        message_json: &str,
        now_ms: i64,
    ) -> Result<Published, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let raw: Vec<String> = self
            .publish
            .key(self.room_key(room))
            .key(self.seq_key(room))
            .key(self.history_key(room))
            .arg(cutoff)
            .arg(now_ms)
            .arg(message_json)
            .arg(Epoch::random().as_str())
            .arg(self.retention.max_messages)
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err("publish"))?;
        let corrupt = || StoreError::Corrupt {
            key: self.seq_key(room),
        };
        let mut raw = raw.into_iter();
        let (Some(frame), Some(seq), Some(epoch), Some(ts)) =
            (raw.next(), raw.next(), raw.next(), raw.next())
        else {
            return Err(corrupt());
        };
        Ok(Published {
            frame,
            seq: seq.parse().map_err(|_| corrupt())?,
            epoch: Epoch::parse(&epoch).map_err(|_| corrupt())?,
            ts: ts.parse().map_err(|_| corrupt())?,
            // A member that does not parse was not written by us; skip it rather than fail the whole room.
            members: raw.filter_map(|id| ConnectionId::parse(&id).ok()).collect(),
        })
    }

    async fn history(
        &self,
        room: &RoomName,
        after: Option<u64>,
        epoch: Option<&Epoch>,
        _now_ms: i64,
    ) -> Result<HistoryPage, StoreError> {
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let raw: Vec<String> = self
            .history
            .key(self.room_key(room))
            .key(self.seq_key(room))
            .key(self.history_key(room))
            .arg(after)
            .arg(epoch.map_or("", Epoch::as_str))
            .arg(Epoch::random().as_str())
            .arg(self.ttl_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err("history"))?;
        let mut raw = raw.into_iter();
        let (Some(epoch), Some(complete)) = (raw.next(), raw.next()) else {
            return Err(StoreError::Corrupt {
                key: self.seq_key(room),
            });
        };
        Ok(HistoryPage {
            epoch: Epoch::parse(&epoch).map_err(|_| StoreError::Corrupt {
                key: self.seq_key(room),
            })?,
            complete: complete == "1",
            frames: raw.collect(),
        })
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
            .run(&self.conn)
            .await
            .map_err(redis_err("leave"))?;
        Ok(Some(room))
    }

    async fn prune(&self, room: &RoomName, gone: &[ConnectionId]) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        self.removal(room, gone)
            .run(&self.conn)
            .await
            .map_err(redis_err("prune"))
    }
}
