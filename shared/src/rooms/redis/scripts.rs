//! The store's Lua scripts, one `.lua` file each under `scripts/`, and the reader of their replies.
//!
//! Every script touches the keys of one room only ([`super::keys`]), so it runs on Redis Cluster. Their arguments
//! (each reply is a flat list of strings, read by [`Reply`]):
//!
//! | script | KEYS | ARGV | reply |
//! |---|---|---|---|
//! | [`LIVE_MEMBERS`] | members | member cutoff (ms) | the live members (the older ones are dropped) |
//! | [`PUBLISH`] | members, seq, history, the sender's rate bucket, the message id's key, names | 1 member cutoff (ms), 2 now (ms), 3 the message as a JSON string, 4 a fresh epoch, 5 messages kept, 6 history TTL (ms), 7 the sender, 8 its `connectedAt`, 9 the membership lifetime (ms), 10 `1` when KEYS\[5\] names a message id, 11 messages per second, 12 burst, 13 how long a message id is remembered (ms), 14 the sender's name as a JSON string (empty: anonymous), 15 the same name as text, 16 bytes kept | `limited, retry_after_ms` or `ok, frame, seq, epoch, ts, (member, connectedAt)...` |
//! | [`HISTORY`] | members, seq, history | 1 after (`-1`: none), 2 the client's epoch (empty: none), 3 a fresh epoch, 4 history TTL (ms), 5 page bytes | `epoch, complete (1/0), more (1/0), frame...` |
//! | [`JOIN`] | members, names, watchers, announce, people, seq | 1 member cutoff (ms), 2 the connection, 3 its `connectedAt`, 4 the membership lifetime (ms), 5 the most members, 6 who it is ([`Someone::stored`]; empty: anonymous, and a name already there stays), 7 announcements per second, 8 their burst | `full` or `joined, fresh (1/0), count, allowed, recount (1/0), epoch (empty: no history), seq, n, expired name × n, watcher...` (the watchers but the joiner) |
//! | [`PRESENCE`] | members, names, watchers, announce, people, seq | 1 member cutoff (ms), 2 the asking connection (made a watcher), 3 the membership lifetime (ms), 4 the most names, 5 now (ms), 6 announcements per second, 7 their burst | `count, allowed, recount, epoch (empty: no history), seq, n, expired name × n, m, name × m, watcher...` (the names of the earliest-joined named members; the other watchers) |
//! | [`REMOVE`] | members, names, watchers, announce | 1 member cutoff (ms), 2 now (ms), 3 announcements per second, 4 their burst, then the connections | `count, allowed, recount, n, name × n, watcher...` (only connections that were still members are named; `count` leaves out members past their lifetime) |
//! | [`SPEND`] | the connection's budget | 1 now (ms), 2 frames per second, 3 burst | `granted`, or `refused, retry_after_ms, close (1/0)` |
//! | [`ADMIT`] | the address's bucket, its live connections | 1 now (ms), 2 handshakes per minute, 3 the most live connections, 4 the connection, 5 its `connectedAt`, 6 member cutoff (ms), 7 the membership lifetime (ms) | `admitted`, `fast, retry_after_ms` or `many` |
//!
//! Every rate in the scripts is a token bucket (`bucket.lua`, prepended to the scripts that use one; the memory
//! store's `Bucket` does the same arithmetic): `refill(key, now, per_ms, burst, ...)` reads a hash of `t` tokens
//! at `at` (ms), a bucket never seen being full, refills it for the time since, and returns the tokens, `at` and
//! the first of the extra fields `...` named; `store(key, tokens, at, keep_ms, ...)` writes it back, with extra
//! field-value pairs, and keeps it `keep_ms`. (The `.lua` files carry no comments where they are sent whole with
//! `EVAL`: they would cost bytes on every call.) Presence damping (`damp` in `presence_helpers.lua`) is one per room:
//! a batch of joins and leaves lets out as many announcements as it has tokens, and `recount` tells watchers that
//! some were merged away (or soon may be). A frame budget or a handshake bucket refuses before anything else is done.
//!
//! `current_epoch.lua` (prepended to [`PUBLISH`] and [`HISTORY`]) compares the `seq` hash's `run` with the
//! server's run id (`INFO server`, about 3 µs) and starts a carried-over epoch when they differ ([`super::keys`]).
//!
//! Names are `''` for an anonymous member. [`PUBLISH`] builds the chat frame exactly as
//! [`crate::wire::chat_frame`] does (a test holds the two together); a message id seen in the last minute
//! returns the frame it got then. Members past their lifetime are left out of a publish, not removed: [`JOIN`]
//! and [`PRESENCE`] remove them and report them, so their leave is announced. [`PRESENCE`] costs one `HGET` per
//! member until the list is full: O(members).
//!
//! The hot-path scripts run by SHA (`EVALSHA`, sent whole once per node by [`Lua`]); [`JOIN`] and [`REMOVE`] are sent whole as `EVAL`
//! inside pipelines that also touch connection keys (they are short, and `$connect`, `$disconnect` and 410s are
//! not the hot path).

use std::str::FromStr;

use crate::rooms::Someone;
use crate::wire::ConnectionId;

/// Drops the members that joined before the cutoff and returns the others.
pub(super) const LIVE_MEMBERS: &str = include_str!("scripts/live_members.lua");

/// The chat hot path: the rate bucket, the sender's membership, the next seq (a new epoch when the room has no
/// history), the frame appended to the bounded history, and the live members, in one round trip.
pub(super) const PUBLISH: &str = concat!(
    include_str!("scripts/bucket.lua"),
    include_str!("scripts/current_epoch.lua"),
    include_str!("scripts/publish.lua")
);

/// A history request: the retained frames after a seq.
pub(super) const HISTORY: &str = concat!(
    include_str!("scripts/current_epoch.lua"),
    include_str!("scripts/history.lua")
);

/// `$connect`'s membership write, refused when the room is full.
pub(super) const JOIN: &str = concat!(
    include_str!("scripts/bucket.lua"),
    include_str!("scripts/presence_helpers.lua"),
    include_str!("scripts/join.lua")
);

/// A presence request: who is here, and the asker made a watcher.
pub(super) const PRESENCE: &str = concat!(
    include_str!("scripts/bucket.lua"),
    include_str!("scripts/presence_helpers.lua"),
    include_str!("scripts/presence.lua")
);

/// Members leaving (`$disconnect`, or a 410).
pub(super) const REMOVE: &str = concat!(
    include_str!("scripts/bucket.lua"),
    include_str!("scripts/presence_helpers.lua"),
    include_str!("scripts/remove.lua")
);

/// A frame's draw on its connection's budget.
pub(super) const SPEND: &str = concat!(
    include_str!("scripts/bucket.lua"),
    include_str!("scripts/spend.lua")
);

/// A handshake counted against its source address.
pub(super) const ADMIT: &str = concat!(
    include_str!("scripts/bucket.lua"),
    include_str!("scripts/admit.lua")
);

/// The scripts that run by SHA, hashed once per store.
#[derive(Clone)]
pub(super) struct Scripts {
    pub(super) live_members: Lua,
    pub(super) publish: Lua,
    pub(super) history: Lua,
    pub(super) presence: Lua,
    pub(super) spend: Lua,
    pub(super) admit: Lua,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            live_members: Lua::new(LIVE_MEMBERS),
            publish: Lua::new(PUBLISH),
            history: Lua::new(HISTORY),
            presence: Lua::new(PRESENCE),
            spend: Lua::new(SPEND),
            admit: Lua::new(ADMIT),
        }
    }
}

/// A script run by its SHA1 (`EVALSHA`), and sent whole (`EVAL`, which also caches it on that node) when the node
/// answers `NOSCRIPT`. Both are routed by the first key, so the fallback reaches the node that owns the room even
/// when the client's map of the cluster is stale: after a failover to a replica the client never knew, redis-rs's
/// own fallback (`SCRIPT LOAD` on every node it knows, then `EVALSHA` again) loads the script everywhere but on the
/// new primary, and the second `EVALSHA` fails too.
#[derive(Clone)]
pub(super) struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self {
            code,
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// A call of this script whose first key is `key`.
    pub(super) fn key(&self, key: impl redis::ToRedisArgs) -> Call<'_> {
        let mut call = Call {
            lua: self,
            keys: Vec::new(),
            args: Vec::new(),
        };
        call.key(key);
        call
    }
}

/// A call of a [`Lua`] script: its keys, then its arguments.
pub(super) struct Call<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    pub(super) fn key(&mut self, key: impl redis::ToRedisArgs) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub(super) fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    fn command(&self, verb: &str, script: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(verb);
        cmd.arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    /// Runs the script: `EVALSHA`, then `EVAL` when the node does not have it.
    pub(super) async fn invoke_async<T: redis::FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        match self
            .command("EVALSHA", &self.lua.hash)
            .query_async(conn)
            .await
        {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.command("EVAL", self.lua.code).query_async(conn).await
            }
            done => done,
        }
    }
}

/// A script's reply, read front to back. Each read returns `None` for an item that is missing or does not parse,
/// which the caller reports as a corrupt reply.
pub(super) struct Reply(std::vec::IntoIter<String>);

impl Reply {
    pub(super) fn new(raw: Vec<String>) -> Self {
        Self(raw.into_iter())
    }

    /// The next item as text.
    pub(super) fn text(&mut self) -> Option<String> {
        self.0.next()
    }

    /// What presence damping let out: the count of announcements allowed, then `recount` (`1`/`0`).
    pub(super) fn announce(&mut self) -> Option<crate::rooms::Announce> {
        Some(crate::rooms::Announce {
            allowed: self.parse()?,
            recount: self.text()? == "1",
        })
    }

    /// Where the room's history stands: its epoch (empty: it has none), then its last seq.
    pub(super) fn head(&mut self) -> Option<Option<crate::rooms::Head>> {
        let epoch = self.text()?;
        let seq = self.parse()?;
        if epoch.is_empty() {
            return Some(None);
        }
        let epoch = crate::wire::Epoch::parse(&epoch).ok()?;
        Some(Some(crate::rooms::Head { epoch, seq }))
    }

    /// The next item, parsed.
    pub(super) fn parse<T: FromStr>(&mut self) -> Option<T> {
        self.0.next()?.parse().ok()
    }

    /// A counted list of people: `n`, then `n` of them as the names hash keeps them ([`Someone::stored`]).
    pub(super) fn people(&mut self) -> Option<Vec<Someone>> {
        let n: usize = self.parse()?;
        let people: Vec<Someone> = self
            .0
            .by_ref()
            .take(n)
            .map(|stored| Someone::from_stored(&stored))
            .collect();
        (people.len() == n).then_some(people)
    }

    /// The rest as connection ids. One that does not parse was not written by us: skipped, rather than failing
    /// the whole room.
    pub(super) fn connections(self) -> Vec<ConnectionId> {
        self.0
            .filter_map(|id| ConnectionId::parse(&id).ok())
            .collect()
    }

    /// The rest as pairs (a member and its score).
    pub(super) fn pairs(self) -> impl Iterator<Item = (String, String)> {
        let mut items = self.0;
        std::iter::from_fn(move || Some((items.next()?, items.next()?)))
    }

    /// The rest, as it is.
    pub(super) fn rest(self) -> Vec<String> {
        self.0.collect()
    }
}
