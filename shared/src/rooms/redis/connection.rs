//! Talking to Redis: connecting to one node or a cluster (over TLS for `rediss://`), the sockets' settings, the
//! one retry after a dropped connection or a server that stopped being the primary, and batches of commands split
//! by hash slot on a cluster.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{TcpSettings, socket2};
use redis::{Cmd, IntoConnectionInfo, RedisFuture, ServerErrorKind, TlsCertificates, Value};
use tracing::warn;

use super::RedisRoomStore;
use crate::config::KeyPrefix;
use crate::rooms::StoreError;

/// How long connecting to one node, or one reply, may take before the attempt fails. A failed attempt is retried
/// once (see [`retrying`]), so Redis may stall for up to twice this before a caller sees an error.
const TIMEOUT: Duration = Duration::from_secs(3);

/// How many times the connection manager tries to re-establish a dropped connection, and the cluster client to
/// re-route a request after `MOVED`/`ASK` or a node failure. Neither resends a request that failed on a single
/// node's dropped connection: that request's error reaches the caller.
const RECONNECT_ATTEMPTS: u32 = 2;

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

impl RedisRoomStore<NodeConnection> {
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
        let node = NodeConnection::open(client, config)
            .await
            .map_err(redis_err("connect"))?;
        let mut store = Self::with_connection(node.clone(), prefix, lifetime);
        store.redial = Some(node);
        Ok(store)
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

/// Whether `err` says the server is not a writable primary right now: `READONLY` (it was demoted to a replica: a
/// failover, `REPLICAOF`), `LOADING` (it is loading its data after a restart) or `MASTERDOWN` (a replica that lost
/// its primary). A new connection may reach the new primary (a failover behind a DNS name moves new connections
/// only), and nothing was written: the server refused the whole script.
fn is_role_error(err: &redis::RedisError) -> bool {
    matches!(
        err.kind(),
        redis::ErrorKind::Server(
            ServerErrorKind::ReadOnly | ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown
        )
    )
}

/// Runs `attempt` and, when it fails for want of a connection (dropped, refused, timed out), once more; and when
/// it fails because the server is not the primary (see [`is_role_error`]), once more after `redial`, a single
/// node's connection, is made anew (unless another request already did since this one began). Each kind is
/// retried once, so a failover seen first as a dropped connection and then as `READONLY` still goes through. The
/// connection manager reconnects in the background after a dropped connection but hands the failed request's
/// error back; every operation of the store is idempotent (a publish through its message id), so a retry turns a
/// Redis restart, a failover or a short stall into a slower answer instead of a lost message.
pub(super) async fn retrying<T, F, Fut>(
    op: &'static str,
    redial: Option<&NodeConnection>,
    attempt: F,
) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let (mut dropped, mut demoted) = (false, false);
    // A timed-out attempt may still run (the server was only slow): if a later one fails otherwise, the caller
    // must still learn that the outcome is unknown.
    let mut timed_out = None;
    let _timer = crate::metrics::Timer::start(crate::metrics::Metric::RedisTime);
    loop {
        let generation = redial.map(NodeConnection::generation);
        crate::metrics::count(crate::metrics::Metric::RedisRequests);
        match attempt().await {
            Err(err) if err.is_io_error() && dropped => {
                return Err(redis_err(op)(timed_out.unwrap_or(err)));
            }
            Err(err) if err.is_io_error() => {
                dropped = true;
                warn!(op, error = %err, "Redis request failed; retrying once");
                if err.is_timeout() {
                    timed_out = Some(err);
                }
            }
            Err(err) if is_role_error(&err) && !demoted => {
                demoted = true;
                warn!(op, error = %err, "Redis is not the primary; reconnecting and retrying once");
                if let (Some(node), Some(generation)) = (redial, generation) {
                    node.redial(generation).await;
                }
            }
            Err(err) => return Err(redis_err(op)(timed_out.unwrap_or(err))),
            Ok(value) => return Ok(value),
        }
    }
}

/// The connection to a single node: a [`ConnectionManager`] (which reconnects by itself after a dropped
/// connection), replaced by a fresh one when the server stops being the primary. After a failover behind a DNS
/// name or a proxy, an open connection still reaches the old primary, now a replica that answers every write with
/// `READONLY`, and the manager never reconnects on its own: it sees no dropped connection. Clones share it.
#[derive(Clone)]
pub struct NodeConnection {
    shared: Arc<Node>,
}

struct Node {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The manager in use, and its generation: how many redials made it. Requests refused together by one
    /// connection make one new connection, not one each.
    current: RwLock<(ConnectionManager, u64)>,
    /// Held while a new manager is made: one redial at a time.
    redialing: tokio::sync::Mutex<()>,
}

impl NodeConnection {
    async fn open(
        client: redis::Client,
        config: ConnectionManagerConfig,
    ) -> redis::RedisResult<Self> {
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(Self {
            shared: Arc::new(Node {
                client,
                config,
                current: RwLock::new((manager, 0)),
                redialing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn manager(&self) -> ConnectionManager {
        self.shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// The generation of the connection in use.
    fn generation(&self) -> u64 {
        self.shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
    }

    /// Replaces the connection of generation `failed` with a new one (nothing to do when it was replaced
    /// already); a failure to connect keeps the old one (the retry then fails as the first attempt did, and the
    /// caller is told).
    async fn redial(&self, failed: u64) {
        let _one_at_a_time = self.shared.redialing.lock().await;
        if self.generation() != failed {
            return;
        }
        match ConnectionManager::new_with_config(
            self.shared.client.clone(),
            self.shared.config.clone(),
        )
        .await
        {
            Ok(manager) => {
                *self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = (manager, failed + 1);
                warn!("reconnected to Redis: the server was not the primary");
            }
            Err(err) => warn!(error = %err, "could not reconnect to Redis"),
        }
    }
}

impl ConnectionLike for NodeConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut manager = self.manager();
        Box::pin(async move { manager.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut manager = self.manager();
        Box::pin(async move { manager.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

/// Wraps what redis-rs reported for operation `op`.
pub(super) fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |source| StoreError::Redis { op, source }
}

/// Commands sent together, grouped by the hash slot they touch. On one node the groups go as one pipeline (one
/// round trip); on a cluster as one pipeline per group, concurrently, because the cluster client refuses a
/// pipeline that spans slots ("crossed slots") and routes each pipeline by its keys: still one round trip of
/// latency, but one request per slot.
pub(super) struct Batch {
    pipes: Vec<redis::Pipeline>,
    per_slot: bool,
}

impl Batch {
    /// An empty batch; `per_slot` splits it by slot (a cluster).
    pub(super) fn new(per_slot: bool) -> Self {
        Self {
            pipes: Vec::new(),
            per_slot,
        }
    }

    /// The pipeline for the commands of one more slot.
    pub(super) fn slot(&mut self) -> &mut redis::Pipeline {
        if self.per_slot || self.pipes.is_empty() {
            self.pipes.push(redis::pipe());
        }
        let last = self.pipes.len() - 1;
        &mut self.pipes[last]
    }

    /// Runs the batch and returns the one reply the first pipeline does not ignore.
    pub(super) async fn run_first<C, T>(&self, conn: &C) -> redis::RedisResult<T>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(kind: ServerErrorKind) -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::Server(kind), "from the server"))
    }

    #[test]
    fn readonly_loading_and_masterdown_say_the_server_is_not_the_primary_and_nothing_else_does() {
        for kind in [
            ServerErrorKind::ReadOnly,
            ServerErrorKind::BusyLoading,
            ServerErrorKind::MasterDown,
        ] {
            assert!(is_role_error(&server_error(kind)), "{kind:?}");
        }
        for kind in [
            ServerErrorKind::ResponseError,
            ServerErrorKind::NoScript,
            ServerErrorKind::CrossSlot,
        ] {
            assert!(!is_role_error(&server_error(kind)), "{kind:?}");
        }
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(
            !is_role_error(&io),
            "a dropped connection is retried, not redialed"
        );
    }
}
