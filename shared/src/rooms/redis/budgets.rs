//! The budgets of connections and source addresses ([`RoomStore::spend`], [`RoomStore::admit`],
//! [`RoomStore::release`]): one script each, on keys of their own slot (`budget:{conn}`, `addr:{ip}`,
//! `addrconns:{ip}`), never a room's.
//!
//! [`RoomStore::spend`]: crate::rooms::RoomStore::spend
//! [`RoomStore::admit`]: crate::rooms::RoomStore::admit
//! [`RoomStore::release`]: crate::rooms::RoomStore::release

use redis::AsyncCommands;
use redis::aio::ConnectionLike;

use super::RedisRoomStore;
use super::connection::retrying;
use crate::rooms::{Admission, Spent, StoreError};
use crate::wire::{ConnectionId, SourceAddress};

impl<C> RedisRoomStore<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// One frame from `conn` against its budget (`FRAME_RATE_PER_SEC`, `FRAME_BURST`): the budget script.
    pub(super) async fn spend_frame(
        &self,
        conn: &ConnectionId,
        now_ms: i64,
    ) -> Result<Spent, StoreError> {
        let limits = self.policy.limits;
        let mut invocation = self.scripts.spend.key(self.keys.budget(conn));
        invocation
            .arg(now_ms)
            .arg(limits.frames_per_sec)
            .arg(limits.frame_burst);
        self.run(
            "spend",
            || self.keys.budget(conn),
            || async { invocation.invoke_async(&mut self.conn()).await },
            |mut reply| match reply.text()?.as_str() {
                "granted" => Some(Spent::Granted),
                "refused" => Some(Spent::Refused {
                    retry_after_ms: reply.parse()?,
                    close: reply.text()? == "1",
                }),
                _ => None,
            },
        )
        .await
    }

    /// A handshake from `address` against its rate and its live connections: the address script.
    pub(super) async fn admit_handshake(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<Admission, StoreError> {
        let limits = self.policy.limits;
        let mut invocation = self.scripts.admit.key(self.keys.address(address));
        invocation
            .key(self.keys.address_connections(address))
            .arg(connected_at_ms)
            .arg(limits.handshakes_per_min)
            .arg(limits.connections_per_address)
            .arg(conn.as_str())
            .arg(connected_at_ms)
            .arg(self.cutoff(connected_at_ms))
            .arg(self.lifetime_ms);
        self.run(
            "admit",
            || self.keys.address(address),
            || async { invocation.invoke_async(&mut self.conn()).await },
            |mut reply| match reply.text()?.as_str() {
                "admitted" => Some(Admission::Admitted),
                "fast" => Some(Admission::TooFast {
                    retry_after_ms: reply.parse()?,
                }),
                "many" => Some(Admission::TooMany),
                _ => None,
            },
        )
        .await
    }

    /// `conn` no longer holds one of `address`'s live connection slots.
    pub(super) async fn release_address(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
    ) -> Result<(), StoreError> {
        retrying("release", self.redial.as_ref(), || async {
            self.conn()
                .zrem::<_, _, ()>(self.keys.address_connections(address), conn.as_str())
                .await
        })
        .await
    }
}
