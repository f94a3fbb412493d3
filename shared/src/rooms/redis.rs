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
//! | `wschat:names:{<room>}` | hash | connection id → display name, for named members | lifetime after the newest named join |
//! | `wschat:watchers:{<room>}` | set | connections that asked for presence (they hear of joins and leaves) | lifetime after the newest request |
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
//! * `$connect` → one pipeline: the join script on the room's slot (cap check, `ZADD`, `PEXPIRE`, `HSET` of the
//!   name, `SMEMBERS` of the watchers to tell), `SET … PX` on the connection.
//! * `$default` chat → one script on the room's three keys (one slot): drop members older than the lifetime,
//!   assign the next seq (a new epoch if there is none), append the frame to the history, trim it, refresh its
//!   expiry, return the frame and the live members. The sender's room comes from the authorizer context that API
//!   Gateway attaches to every event, so the hot path is one round trip; without an authorizer one `GET` on the
//!   connection key comes first.
//! * `$default` history request → one script on the room's `seq` and `history` keys.
//! * `$default` ping → the same pipeline as `$connect` (the membership is written again).
//! * `$default` presence request → one script on the room's members, names and watchers (O(members)).
//! * `$disconnect` → the removal script on the room's slot (`ZREM`, `HGET`/`HDEL` the name, `SREM`, `SMEMBERS`
//!   the watchers) + `DEL` of the connection key, one pipeline, when the room is known; else `GETDEL` first.
//! * 410 during fan-out → the same removal script for all the gone members + their `DEL`s, one pipeline.
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
//! A `rediss://` URL connects over TLS with rustls, on the `ring` provider ([`crate::tls`]).
//! Certificates are always verified, against the system's roots (the ones the AWS SDK trusts too) or, when
//! `REDIS_CA_CERT_PATH` is set, against that PEM file's CAs only. The `#insecure` URL fragment is refused:
//! redis-rs is built without `tls-rustls-insecure`.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{TcpSettings, socket2};
use redis::{AsyncCommands, IntoConnectionInfo, TlsCertificates};
use tracing::warn;

use super::{
    Departed, Entered, HistoryPage, MAX_PRESENCE_NAMES, Member, Policy, Presence, PublishOutcome,
    Published, RoomStore, Sender, StoreError,
};
use crate::config::KeyPrefix;
use crate::wire::{ConnectionId, DisplayName, Epoch, RoomName};

/// How long connecting to one node, or one reply, may take before the attempt fails. A failed attempt is retried
/// once (see [`RedisRoomStore::retrying`]), so Redis may stall for up to twice this before a caller sees an error.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The sockets' settings: no Nagle delay on small commands; keepalive probes after 10 s of silence, so a peer
/// that vanished (a failover, a replaced node) is noticed without traffic; and `TCP_USER_TIMEOUT`, so a socket
/// whose sent data stays unacknowledged for 5 s is abandoned (and the manager reconnects) instead of waited on.
fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(5))
}
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

/// The chat hot path. KEYS: 1 members, 2 seq, 3 history, 4 the sender's rate bucket, 5 the message id's key.
/// ARGV: 1 member cutoff (ms), 2 now (ms), 3 the message as a JSON string, 4 a fresh epoch, 5 messages kept,
/// 6 history TTL (ms), 7 the sender, 8 its connectedAt, 9 the membership lifetime (ms), 10 `1` when KEYS[5] names
/// a message id, 11 messages per second, 12 burst, 13 how long a message id is remembered (ms),
/// 14 the sender's name as a JSON string (empty: anonymous), 15 the same name as text. KEYS[6] is the room's
/// names hash, where the name is written again with the membership.
/// Returns `{"limited", retry_after_ms}` or `{"ok", frame, seq, epoch, ts, member, connectedAt, ...}`, all
/// strings. The frame is built exactly as `wire::chat_frame` builds it (a test holds the two together).
const PUBLISH_LUA: &str = r#"
local now = tonumber(ARGV[2])
local repeat_seq, repeat_ts
if ARGV[10] == '1' then
  local seen = redis.call('GET', KEYS[5])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    repeat_seq = tonumber(string.sub(seen, 1, sep - 1))
    repeat_ts = string.sub(seen, sep + 1)
  end
end
if not repeat_seq then
  -- Token bucket: `t` tokens at time `at`, refilled at ARGV[11] per second up to ARGV[12].
  local rate, burst = tonumber(ARGV[11]), tonumber(ARGV[12])
  local bucket = redis.call('HMGET', KEYS[4], 't', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * rate / 1000)
    at = now
  end
  local keep = math.ceil(burst * 1000 / rate) + 1000
  if tokens < 1 then
    redis.call('HSET', KEYS[4], 't', tostring(tokens), 'at', string.format('%d', at))
    redis.call('PEXPIRE', KEYS[4], keep)
    return {'limited', string.format('%d', math.ceil((1 - tokens) * 1000 / rate))}
  end
  redis.call('HSET', KEYS[4], 't', tostring(tokens - 1), 'at', string.format('%d', at))
  redis.call('PEXPIRE', KEYS[4], keep)
end
-- The sender is alive (it is talking): make it a member again, whatever the store forgot.
redis.call('ZADD', KEYS[1], ARGV[8], ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
if ARGV[15] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[7], ARGV[15])
  redis.call('PEXPIRE', KEYS[6], ARGV[9])
end
local epoch = current_epoch(ARGV[4], ARGV[6])
local frame, seq_s, ts_s
if repeat_seq then
  local last = tonumber(redis.call('HGET', KEYS[2], 'seq'))
  local len = redis.call('LLEN', KEYS[3])
  local index = repeat_seq - (last - len + 1)
  if index >= 0 and index < len then
    frame = redis.call('LINDEX', KEYS[3], index)
    seq_s = string.format('%d', repeat_seq)
    ts_s = repeat_ts
  end
end
if not frame then
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  local ts = now
  local last_ts = tonumber(redis.call('HGET', KEYS[2], 'ts') or '0')
  if last_ts > ts then ts = last_ts end
  seq_s = string.format('%d', seq)
  ts_s = string.format('%d', ts)
  redis.call('HSET', KEYS[2], 'ts', ts_s)
  local user = ''
  if ARGV[14] ~= '' then user = ',"user":' .. ARGV[14] end
  frame = '{"message":' .. ARGV[3] .. user .. ',"seq":' .. seq_s .. ',"epoch":"' .. epoch .. '","ts":' .. ts_s .. '}'
  redis.call('RPUSH', KEYS[3], frame)
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  if ARGV[10] == '1' then
    redis.call('SET', KEYS[5], seq_s .. ':' .. ts_s, 'PX', ARGV[13])
  end
end
local out = {'ok', frame, seq_s, epoch, ts_s}
-- Members past their lifetime are left out, not removed: the join and presence scripts remove them and report
-- them, so their leave is announced.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
for i = 1, #members do out[#out + 1] = members[i] end
return out
"#;

/// What the presence scripts share, over the room's members KEYS[1], names KEYS[2] and watchers KEYS[3]:
/// `expire(cutoff)` removes the members that joined before `cutoff` and returns their names ('' for anonymous);
/// `push_counted(out, list)` appends `#list` then the list; `push_watchers(out, except)` appends the watchers but
/// `except`. Prepended to the join, presence and removal scripts.
const PRESENCE_HELPERS_LUA: &str = r"
local function expire(cutoff)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
  local names = {}
  for i = 1, #gone do
    names[#names + 1] = redis.call('HGET', KEYS[2], gone[i]) or ''
    redis.call('HDEL', KEYS[2], gone[i])
    redis.call('SREM', KEYS[3], gone[i])
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff) end
  return names
end
local function push_counted(out, list)
  out[#out + 1] = tostring(#list)
  for i = 1, #list do out[#out + 1] = list[i] end
end
local function push_watchers(out, except)
  local watchers = redis.call('SMEMBERS', KEYS[3])
  for i = 1, #watchers do
    if watchers[i] ~= except then out[#out + 1] = watchers[i] end
  end
end
";

/// `$connect`'s membership write, refused when the room is full. KEYS: 1 members, 2 names, 3 watchers. ARGV:
/// 1 member cutoff (ms), 2 the connection, 3 its connectedAt, 4 the membership lifetime (ms), 5 the most members,
/// 6 its display name (empty: anonymous, and a name already there stays). Returns `{"full"}` or
/// `{"joined", fresh ("1"/"0"), count, expired n, expired name × n, watcher...}` (the watchers but the joiner;
/// the expired members were removed now). Sent as `EVAL` inside the join pipeline (after [`PRESENCE_HELPERS_LUA`]): it is
/// short, and `$connect` is not the hot path.
const JOIN_LUA: &str = r"
local expired = expire(ARGV[1])
local fresh = not redis.call('ZSCORE', KEYS[1], ARGV[2])
if fresh and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
  return {'full'}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local out = {'joined', fresh and '1' or '0', tostring(redis.call('ZCARD', KEYS[1]))}
push_counted(out, expired)
push_watchers(out, ARGV[2])
return out
";

/// A presence request. KEYS: 1 members, 2 names, 3 watchers. ARGV: 1 member cutoff (ms), 2 the asking
/// connection (made a watcher), 3 the membership lifetime (ms), 4 the most names. Returns `{count, expired n,
/// expired name × n, listed m, name × m, watcher...}`: the names of the earliest-joined named members, at most
/// ARGV[4], and the other watchers (who hear of the expired members' leaves). Costs one `HGET` per member until
/// the list is full: O(members).
const PRESENCE_LUA: &str = r"
local expired = expire(ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local limit = tonumber(ARGV[4])
local names = {}
for i = 1, #members do
  if #names >= limit then break end
  local name = redis.call('HGET', KEYS[2], members[i])
  if name then names[#names + 1] = name end
end
local out = {tostring(#members)}
push_counted(out, expired)
push_counted(out, names)
push_watchers(out, ARGV[2])
return out
";

/// Members leaving (`$disconnect`, or a 410). KEYS: 1 members, 2 names, 3 watchers. ARGV: 1 member cutoff (ms),
/// then the connections. Returns `{count, removed, name...(removed of them, '' for anonymous), watcher...}`; only
/// connections that were still members are counted as removed, and `count` leaves out members past their
/// lifetime (the next join or presence request removes and announces those).
const REMOVE_LUA: &str = r"
local names = {}
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    names[#names + 1] = redis.call('HGET', KEYS[2], ARGV[i]) or ''
  end
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('SREM', KEYS[3], ARGV[i])
end
local out = {tostring(redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf'))}
push_counted(out, names)
push_watchers(out, nil)
return out
";

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
    policy: Policy,
    live_members: redis::Script,
    publish: redis::Script,
    history: redis::Script,
    presence: redis::Script,
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
        crate::tls::install_crypto_provider();
        let info = url
            .into_connection_info()
            .map_err(redis_err("connect"))?
            .set_tcp_settings(tcp_settings());
        let client = match roots {
            None => redis::Client::open(info),
            Some(roots) => redis::Client::build_with_tls(info, roots),
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
        crate::tls::install_crypto_provider();
        let mut builder = ClusterClient::builder([url])
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(RECONNECT_ATTEMPTS)
            .tcp_settings(tcp_settings());
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
            policy: Policy::default(),
            live_members: redis::Script::new(LIVE_MEMBERS_SCRIPT),
            publish: redis::Script::new(&format!("{CURRENT_EPOCH_LUA}{PUBLISH_LUA}")),
            history: redis::Script::new(&format!("{CURRENT_EPOCH_LUA}{HISTORY_LUA}")),
            presence: redis::Script::new(&format!("{PRESENCE_HELPERS_LUA}{PRESENCE_LUA}")),
            per_slot: false,
        }
    }

    /// The same store keeping history and enforcing limits as `policy` says.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The hash holding `conn`'s rate-limit bucket in `room` (in the room's slot, for the publish script).
    pub fn rate_key(&self, room: &RoomName, conn: &ConnectionId) -> String {
        format!(
            "{}rate:{{{}}}:{}",
            self.prefix,
            room.as_str(),
            conn.as_str()
        )
    }

    /// The key remembering which seq message `id` got in `room` (in the room's slot).
    pub fn message_key(&self, room: &RoomName, id: &str) -> String {
        format!("{}msg:{{{}}}:{}", self.prefix, room.as_str(), id)
    }

    /// Runs `attempt` and, when it fails for want of a connection (dropped, refused, timed out), once more. The
    /// connection manager reconnects in the background after a dropped connection but hands the failed request's
    /// error back; every operation here is idempotent (a publish through its message id), so one retry turns a
    /// Redis restart or a short stall into a slower answer instead of a lost message.
    async fn retrying<T, F, Fut>(&self, op: &'static str, attempt: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match attempt().await {
            Err(err) if err.is_io_error() => {
                warn!(op, error = %err, "Redis request failed; retrying once");
                attempt().await.map_err(redis_err(op))
            }
            other => other.map_err(redis_err(op)),
        }
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
        i64::try_from(self.policy.retention.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// The sorted-set key holding `room`'s members.
    pub fn room_key(&self, room: &RoomName) -> String {
        format!("{}room:{{{}}}", self.prefix, room.as_str())
    }

    /// The hash of `room`'s members' display names (connection → name).
    pub fn names_key(&self, room: &RoomName) -> String {
        format!("{}names:{{{}}}", self.prefix, room.as_str())
    }

    /// The set of `room`'s connections that asked for presence.
    pub fn watchers_key(&self, room: &RoomName) -> String {
        format!("{}watchers:{{{}}}", self.prefix, room.as_str())
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

    /// The removal script on the room's slot, whose reply comes first, then one `DEL` per connection key.
    fn removal(&self, room: &RoomName, gone: &[ConnectionId], now_ms: i64) -> Batch {
        let mut batch = self.batch();
        let script = batch
            .slot()
            .cmd("EVAL")
            .arg(format!("{PRESENCE_HELPERS_LUA}{REMOVE_LUA}"))
            .arg(3)
            .arg(self.room_key(room))
            .arg(self.names_key(room))
            .arg(self.watchers_key(room))
            .arg(now_ms.saturating_sub(self.lifetime_ms));
        for conn in gone {
            script.arg(conn.as_str());
        }
        // One DEL per key: a multi-key DEL would span slots on a cluster.
        for conn in gone {
            batch.slot().del(self.conn_key(conn)).ignore();
        }
        batch
    }

    /// Runs [`RedisRoomStore::removal`] and reads what presence must announce. The script goes as `EVAL`:
    /// `$disconnect` and 410s are not the hot path.
    async fn remove_members(
        &self,
        room: &RoomName,
        gone: &[ConnectionId],
        now_ms: i64,
        op: &'static str,
    ) -> Result<Departed, StoreError> {
        let removal = self.removal(room, gone, now_ms);
        let raw: Vec<String> = self.retrying(op, || removal.run_first(&self.conn)).await?;
        let corrupt = || StoreError::Corrupt {
            key: self.room_key(room),
        };
        let mut raw = raw.into_iter();
        let count: usize = raw
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(corrupt)?;
        let removed: usize = raw
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(corrupt)?;
        let names = raw
            .by_ref()
            .take(removed)
            .map(|n| (!n.is_empty()).then_some(n))
            .collect();
        let watchers = connections_of(raw);
        Ok(Departed {
            room: room.clone(),
            names,
            count,
            watchers,
        })
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

    /// Runs the batch and returns the one reply the first pipeline does not ignore.
    async fn run_first<C, T>(&self, conn: &C) -> redis::RedisResult<T>
    where
        C: ConnectionLike + Clone + Send + Sync,
        T: redis::FromRedisValue,
    {
        let (first, rest) = self.pipes.split_first().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "an empty batch has no reply"))
        })?;
        let mut first_conn = conn.clone();
        let (reply, ()) = futures_util::future::try_join(
            async move { first.query_async::<(T,)>(&mut first_conn).await },
            async {
                try_join_all(rest.iter().map(|pipe| {
                    let mut conn = conn.clone();
                    async move { pipe.query_async::<()>(&mut conn).await }
                }))
                .await
                .map(drop)
            },
        )
        .await?;
        Ok(reply.0)
    }
}

/// The rest of a script's reply as connection ids (a member that does not parse was not written by us: skipped).
fn connections_of(raw: impl Iterator<Item = String>) -> Vec<ConnectionId> {
    raw.filter_map(|id| ConnectionId::parse(&id).ok()).collect()
}

/// A counted list of names in a script's reply: `n`, then `n` names ('' for anonymous).
fn names_of(raw: &mut impl Iterator<Item = String>) -> Vec<Option<String>> {
    let n: usize = raw.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    raw.take(n)
        .map(|name| (!name.is_empty()).then_some(name))
        .collect()
}

fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |source| StoreError::Redis { op, source }
}

#[async_trait]
impl<C> RoomStore for RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    async fn enter(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        connected_at_ms: i64,
        name: Option<&DisplayName>,
    ) -> Result<Entered, StoreError> {
        let ttl = self.lifetime_ms;
        // Not MULTI: the two keys live in different slots. Both writes are idempotent, so a retried join is safe.
        // The script and the SET go together (one round trip on one node); a full room's SET is undone below,
        // which only a refused handshake pays for.
        let mut batch = self.batch();
        batch
            .slot()
            .cmd("EVAL")
            .arg(format!("{PRESENCE_HELPERS_LUA}{JOIN_LUA}"))
            .arg(3)
            .arg(self.room_key(room))
            .arg(self.names_key(room))
            .arg(self.watchers_key(room))
            .arg(connected_at_ms.saturating_sub(ttl))
            .arg(conn.as_str())
            .arg(connected_at_ms)
            .arg(ttl)
            .arg(self.policy.limits.max_members)
            .arg(name.map_or("", DisplayName::as_str));
        batch
            .slot()
            .cmd("SET")
            .arg(self.conn_key(conn))
            .arg(room.as_str())
            .arg("PX")
            .arg(ttl)
            .ignore();
        let raw: Vec<String> = self
            .retrying("join", || batch.run_first(&self.conn))
            .await?;
        let mut raw = raw.into_iter();
        if raw.next().as_deref() == Some("joined") {
            let fresh = raw.next().as_deref() == Some("1");
            let count = raw.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let expired = names_of(&mut raw);
            let watchers = connections_of(raw);
            return Ok(Entered::Joined {
                fresh,
                count,
                watchers,
                expired,
            });
        }
        self.retrying("join", || async {
            self.conn().del::<_, ()>(self.conn_key(conn)).await
        })
        .await?;
        Ok(Entered::RoomFull)
    }

    async fn presence(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        now_ms: i64,
    ) -> Result<Presence, StoreError> {
        let mut invocation = self.presence.key(self.room_key(room));
        invocation
            .key(self.names_key(room))
            .key(self.watchers_key(room))
            .arg(now_ms.saturating_sub(self.lifetime_ms))
            .arg(conn.as_str())
            .arg(self.lifetime_ms)
            .arg(MAX_PRESENCE_NAMES);
        let raw: Vec<String> = self
            .retrying("presence", || async {
                invocation.invoke_async(&mut self.conn()).await
            })
            .await?;
        let mut raw = raw.into_iter();
        let count = raw
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: self.room_key(room),
            })?;
        let expired = names_of(&mut raw);
        let mut names: Vec<String> = names_of(&mut raw).into_iter().flatten().collect();
        names.sort();
        let watchers = connections_of(raw);
        Ok(Presence {
            count,
            names,
            expired,
            watchers,
        })
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        let raw: Option<String> = self
            .retrying("room_of", || async {
                self.conn().get(self.conn_key(conn)).await
            })
            .await?;
        self.parse_room(conn, raw)
    }

    async fn publish(
        &self,
        room: &RoomName,
        sender: &Sender<'_>,
        message_json: &str,
        now_ms: i64,
    ) -> Result<PublishOutcome, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let epoch = Epoch::random();
        let message_key = self.message_key(room, sender.message_id.unwrap_or_default());
        let mut invocation = self.publish.key(self.room_key(room));
        invocation
            .key(self.seq_key(room))
            .key(self.history_key(room))
            .key(self.rate_key(room, sender.conn))
            .key(message_key)
            .key(self.names_key(room))
            .arg(cutoff)
            .arg(now_ms)
            .arg(message_json)
            .arg(epoch.as_str())
            .arg(self.policy.retention.max_messages)
            .arg(self.ttl_ms())
            .arg(sender.conn.as_str())
            .arg(sender.connected_at_ms)
            .arg(self.lifetime_ms)
            .arg(if sender.message_id.is_some() {
                "1"
            } else {
                "0"
            })
            .arg(self.policy.limits.messages_per_sec)
            .arg(self.policy.limits.burst)
            .arg(super::SEEN_FOR_MS)
            .arg(sender.user.map(DisplayName::to_json).unwrap_or_default())
            .arg(sender.user.map_or("", DisplayName::as_str));
        let raw: Vec<String> = self
            .retrying("publish", || async {
                invocation.invoke_async(&mut self.conn()).await
            })
            .await?;
        let corrupt = || StoreError::Corrupt {
            key: self.seq_key(room),
        };
        let mut raw = raw.into_iter();
        match raw.next().as_deref() {
            Some("limited") => {
                let retry_after_ms = raw.next().and_then(|ms| ms.parse().ok()).unwrap_or(1000);
                return Ok(PublishOutcome::RateLimited { retry_after_ms });
            }
            Some("ok") => {}
            _ => return Err(corrupt()),
        }
        let (Some(frame), Some(seq), Some(epoch), Some(ts)) =
            (raw.next(), raw.next(), raw.next(), raw.next())
        else {
            return Err(corrupt());
        };
        let mut members = Vec::new();
        while let (Some(id), Some(score)) = (raw.next(), raw.next()) {
            // A member that does not parse was not written by us; skip it rather than fail the whole room.
            if let Ok(conn) = ConnectionId::parse(&id) {
                let connected_at_ms = score.parse::<f64>().map_or(0, |s| s as i64);
                members.push(Member {
                    conn,
                    connected_at_ms,
                });
            }
        }
        Ok(PublishOutcome::Published(Published {
            frame,
            seq: seq.parse().map_err(|_| corrupt())?,
            epoch: Epoch::parse(&epoch).map_err(|_| corrupt())?,
            ts: ts.parse().map_err(|_| corrupt())?,
            members,
        }))
    }

    async fn history(
        &self,
        room: &RoomName,
        after: Option<u64>,
        epoch: Option<&Epoch>,
        _now_ms: i64,
    ) -> Result<HistoryPage, StoreError> {
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let mut invocation = self.history.key(self.room_key(room));
        invocation
            .key(self.seq_key(room))
            .key(self.history_key(room))
            .arg(after)
            .arg(epoch.map_or("", Epoch::as_str))
            .arg(Epoch::random().as_str())
            .arg(self.ttl_ms());
        let raw: Vec<String> = self
            .retrying("history", || async {
                invocation.invoke_async(&mut self.conn()).await
            })
            .await?;
        let corrupt = || StoreError::Corrupt {
            key: self.seq_key(room),
        };
        let mut raw = raw.into_iter();
        let (Some(epoch), Some(complete)) = (raw.next(), raw.next()) else {
            return Err(corrupt());
        };
        Ok(HistoryPage {
            epoch: Epoch::parse(&epoch).map_err(|_| corrupt())?,
            complete: complete == "1",
            frames: raw.collect(),
        })
    }

    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let mut invocation = self.live_members.key(self.room_key(room));
        invocation.arg(cutoff);
        let raw: Vec<String> = self
            .retrying("members", || async {
                invocation.invoke_async(&mut self.conn()).await
            })
            .await?;
        // A member that does not parse was not written by us; skip it rather than fail the whole room.
        Ok(raw
            .iter()
            .filter_map(|id| ConnectionId::parse(id).ok())
            .collect())
    }

    async fn depart(
        &self,
        conn: &ConnectionId,
        room: Option<&RoomName>,
        now_ms: i64,
    ) -> Result<Option<Departed>, StoreError> {
        let room = match room {
            Some(room) => room.clone(),
            None => {
                let raw: Option<String> = self
                    .retrying("leave", || async {
                        redis::cmd("GETDEL")
                            .arg(self.conn_key(conn))
                            .query_async(&mut self.conn())
                            .await
                    })
                    .await?;
                match self.parse_room(conn, raw)? {
                    Some(room) => room,
                    None => return Ok(None),
                }
            }
        };
        let departed = self
            .remove_members(&room, std::slice::from_ref(conn), now_ms, "leave")
            .await?;
        Ok(Some(departed))
    }

    async fn remove_gone(
        &self,
        room: &RoomName,
        gone: &[ConnectionId],
        now_ms: i64,
    ) -> Result<Departed, StoreError> {
        if gone.is_empty() {
            return Ok(Departed {
                room: room.clone(),
                names: Vec::new(),
                count: 0,
                watchers: Vec::new(),
            });
        }
        self.remove_members(room, gone, now_ms, "prune").await
    }
}
