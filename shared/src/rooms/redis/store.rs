//! [`RoomStore`] on Redis: each operation is one round trip (a script, or a batch of one script and the
//! connection keys), retried once after a dropped connection, and its reply read by [`Reply`].

use std::future::Future;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionLike;

use super::RedisRoomStore;
use super::connection::{Batch, retrying};
use super::scripts::{JOIN, REMOVE, Reply};
use crate::rooms::{
    ANNOUNCEMENT_BURST, ANNOUNCEMENTS_PER_SEC, Admission, Announce, Departed, Entered, HistoryPage,
    MAX_PRESENCE_NAMES, Member, Presence, PublishOutcome, Published, RoomStore, Sender, Someone,
    Spent, StoreError,
};
use crate::wire::{ConnectionId, DisplayName, Epoch, RoomName, SourceAddress, Uid};

impl<C> RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Runs `request`, whose reply is a flat list of strings (retried once after a dropped connection), and reads
    /// the reply with `read`; a reply `read` cannot make sense of is [`StoreError::Corrupt`] naming `key`.
    pub(super) async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        key: impl FnOnce() -> String,
        request: F,
        read: impl FnOnce(Reply) -> Option<T>,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<Vec<String>>>,
    {
        let raw = retrying(op, self.redial.as_ref(), request).await?;
        read(Reply::new(raw)).ok_or_else(|| StoreError::Corrupt { key: key() })
    }

    pub(super) fn conn(&self) -> C {
        // Cloning a ConnectionManager or a ClusterConnection is cheap: clones share the same sockets.
        self.conn.clone()
    }

    pub(super) fn cutoff(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.lifetime_ms)
    }

    fn history_ttl_ms(&self) -> i64 {
        i64::try_from(self.policy.retention.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn parse_room(
        &self,
        conn: &ConnectionId,
        raw: Option<String>,
    ) -> Result<Option<RoomName>, StoreError> {
        raw.map(|name| {
            RoomName::parse(&name).map_err(|_| StoreError::Corrupt {
                key: self.keys.conn(conn),
            })
        })
        .transpose()
    }

    /// Removes `gone` from `room` (the removal script on the room's slot, then one `DEL` per connection key) and
    /// reads what presence must announce.
    async fn remove(
        &self,
        room: &RoomName,
        gone: &[ConnectionId],
        now_ms: i64,
        op: &'static str,
    ) -> Result<Departed, StoreError> {
        let mut batch = Batch::new(self.per_slot);
        let script = batch
            .slot()
            .cmd("EVAL")
            .arg(REMOVE)
            .arg(5)
            .arg(self.keys.room(room))
            .arg(self.keys.names(room))
            .arg(self.keys.watchers(room))
            .arg(self.keys.announce(room))
            .arg(self.keys.people(room))
            .arg(self.cutoff(now_ms))
            .arg(now_ms)
            .arg(ANNOUNCEMENTS_PER_SEC)
            .arg(ANNOUNCEMENT_BURST);
        for conn in gone {
            script.arg(conn.as_str());
        }
        // One DEL per key: a multi-key DEL would span slots on a cluster.
        for conn in gone {
            batch.slot().del(self.keys.conn(conn)).ignore();
        }
        self.run(
            op,
            || self.keys.room(room),
            || batch.run_first(&self.conn),
            |mut reply| {
                let count = reply.parse()?;
                let announce = reply.announce()?;
                let names = reply.people()?;
                Some(Departed {
                    room: room.clone(),
                    names,
                    count,
                    watchers: reply.connections(),
                    announce,
                })
            },
        )
        .await
    }
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
        name: Option<&DisplayName>,
        uid: Option<&Uid>,
    ) -> Result<Entered, StoreError> {
        let ttl = self.lifetime_ms;
        // Not MULTI: the two keys live in different slots. Both writes are idempotent, so a retried join is safe.
        // The script and the SET go together (one round trip on one node); a full room's SET is undone below,
        // which only a refused handshake pays for.
        let mut batch = Batch::new(self.per_slot);
        batch
            .slot()
            .cmd("EVAL")
            .arg(JOIN)
            .arg(6)
            .arg(self.keys.room(room))
            .arg(self.keys.names(room))
            .arg(self.keys.watchers(room))
            .arg(self.keys.announce(room))
            .arg(self.keys.people(room))
            .arg(self.keys.seq(room))
            .arg(connected_at_ms.saturating_sub(ttl))
            .arg(conn.as_str())
            .arg(connected_at_ms)
            .arg(ttl)
            .arg(self.policy.limits.max_members)
            .arg(Someone::stored(name, uid))
            .arg(ANNOUNCEMENTS_PER_SEC)
            .arg(ANNOUNCEMENT_BURST);
        batch
            .slot()
            .cmd("SET")
            .arg(self.keys.conn(conn))
            .arg(room.as_str())
            .arg("PX")
            .arg(ttl)
            .ignore();
        let entered = self
            .run(
                "join",
                || self.keys.room(room),
                || batch.run_first(&self.conn),
                |mut reply| {
                    if reply.text().as_deref() != Some("joined") {
                        return Some(Entered::RoomFull);
                    }
                    let fresh = reply.text().as_deref() == Some("1");
                    let count = reply.parse()?;
                    let announce = reply.announce()?;
                    let head = reply.head()?;
                    let expired = reply.people()?;
                    Some(Entered::Joined {
                        fresh,
                        count,
                        watchers: reply.connections(),
                        expired,
                        announce,
                        head,
                    })
                },
            )
            .await?;
        if entered == Entered::RoomFull {
            retrying("join", self.redial.as_ref(), || async {
                self.conn().del::<_, ()>(self.keys.conn(conn)).await
            })
            .await?;
        }
        Ok(entered)
    }

    async fn presence(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        now_ms: i64,
    ) -> Result<Presence, StoreError> {
        let mut invocation = self.scripts.presence.key(self.keys.room(room));
        invocation
            .key(self.keys.names(room))
            .key(self.keys.watchers(room))
            .key(self.keys.announce(room))
            .key(self.keys.people(room))
            .key(self.keys.seq(room))
            .arg(self.cutoff(now_ms))
            .arg(conn.as_str())
            .arg(self.lifetime_ms)
            .arg(MAX_PRESENCE_NAMES)
            .arg(now_ms)
            .arg(ANNOUNCEMENTS_PER_SEC)
            .arg(ANNOUNCEMENT_BURST);
        self.run(
            "presence",
            || self.keys.room(room),
            || async { invocation.invoke_async(&mut self.conn()).await },
            |mut reply| {
                let count = reply.parse()?;
                let announce = reply.announce()?;
                let head = reply.head()?;
                let expired = reply.people()?;
                let mut names = reply.people()?;
                names.sort();
                Some(Presence {
                    count,
                    names,
                    expired,
                    watchers: reply.connections(),
                    announce,
                    head,
                })
            },
        )
        .await
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        let raw: Option<String> = retrying("room_of", self.redial.as_ref(), || async {
            self.conn().get(self.keys.conn(conn)).await
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
        let message_key = self
            .keys
            .message(room, sender.message_id.unwrap_or_default());
        let mut invocation = self.scripts.publish.key(self.keys.room(room));
        invocation
            .key(self.keys.seq(room))
            .key(self.keys.history(room))
            .key(self.keys.rate(room, sender.conn))
            .key(message_key)
            .key(self.keys.names(room))
            .arg(self.cutoff(now_ms))
            .arg(now_ms)
            .arg(message_json)
            .arg(Epoch::random().as_str())
            .arg(self.policy.retention.max_messages)
            .arg(self.history_ttl_ms())
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
            .arg(sender.remember_ms)
            .arg(sender.user.map(DisplayName::to_json).unwrap_or_default())
            .arg(if sender.user.is_some() || sender.uid.is_some() {
                Someone::stored(sender.user, sender.uid)
            } else {
                String::new()
            })
            .arg(self.policy.retention.max_bytes)
            .arg(sender.uid.map(Uid::to_json).unwrap_or_default());
        self.run(
            "publish",
            || self.keys.seq(room),
            || async { invocation.invoke_async(&mut self.conn()).await },
            |mut reply| match reply.text()?.as_str() {
                "limited" => Some(PublishOutcome::RateLimited {
                    retry_after_ms: reply.parse().unwrap_or(1000),
                }),
                "ok" => {
                    let frame = reply.text()?;
                    let seq = reply.parse()?;
                    let epoch = Epoch::parse(&reply.text()?).ok()?;
                    let ts = reply.parse()?;
                    let members = reply
                        .pairs()
                        .filter_map(|(id, score)| {
                            // A member that does not parse was not written by us; skip it rather than fail the
                            // whole room.
                            Some(Member {
                                conn: ConnectionId::parse(&id).ok()?,
                                connected_at_ms: score.parse::<f64>().map_or(0, |s| s as i64),
                            })
                        })
                        .collect();
                    Some(PublishOutcome::Published(Published {
                        frame,
                        seq,
                        epoch,
                        ts,
                        members,
                    }))
                }
                _ => None,
            },
        )
        .await
    }

    async fn history(
        &self,
        room: &RoomName,
        after: Option<u64>,
        epoch: Option<&Epoch>,
        _now_ms: i64,
    ) -> Result<HistoryPage, StoreError> {
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let mut invocation = self.scripts.history.key(self.keys.room(room));
        invocation
            .key(self.keys.seq(room))
            .key(self.keys.history(room))
            .arg(after)
            .arg(epoch.map_or("", Epoch::as_str))
            .arg(Epoch::random().as_str())
            .arg(self.history_ttl_ms())
            .arg(self.policy.retention.page_bytes);
        self.run(
            "history",
            || self.keys.seq(room),
            || async { invocation.invoke_async(&mut self.conn()).await },
            |mut reply| {
                let epoch = Epoch::parse(&reply.text()?).ok()?;
                let complete = reply.text()? == "1";
                let more = reply.text()? == "1";
                Some(HistoryPage {
                    epoch,
                    complete,
                    more,
                    frames: reply.rest(),
                })
            },
        )
        .await
    }

    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError> {
        let mut invocation = self.scripts.live_members.key(self.keys.room(room));
        invocation.arg(self.cutoff(now_ms));
        self.run(
            "members",
            || self.keys.room(room),
            || async { invocation.invoke_async(&mut self.conn()).await },
            |reply| Some(reply.connections()),
        )
        .await
    }

    async fn leave(
        &self,
        conn: &ConnectionId,
        room: Option<&RoomName>,
        now_ms: i64,
    ) -> Result<Option<Departed>, StoreError> {
        let room = match room {
            Some(room) => room.clone(),
            None => {
                let raw: Option<String> = retrying("leave", self.redial.as_ref(), || async {
                    redis::cmd("GETDEL")
                        .arg(self.keys.conn(conn))
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
            .remove(&room, std::slice::from_ref(conn), now_ms, "leave")
            .await?;
        Ok(Some(departed))
    }

    async fn prune(
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
                announce: Announce::default(),
            });
        }
        self.remove(room, gone, now_ms, "prune").await
    }

    async fn spend(&self, conn: &ConnectionId, now_ms: i64) -> Result<Spent, StoreError> {
        self.spend_frame(conn, now_ms).await
    }

    async fn admit(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<Admission, StoreError> {
        self.admit_handshake(address, conn, connected_at_ms).await
    }

    async fn release(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
    ) -> Result<(), StoreError> {
        self.release_address(address, conn).await
    }
}
