//! The Redis key schema: every key the store writes, in one place.
//!
//! With the default prefix `wschat:` (`REDIS_KEY_PREFIX`):
//!
//! | key | type | value | expiry |
//! |---|---|---|---|
//! | `wschat:room:{<room>}` | sorted set | member = connection id, score = `connectedAt` (epoch ms) | membership lifetime after the newest join |
//! | `wschat:conn:{<connection id>}` | string | the room name | membership lifetime after the join |
//! | `wschat:names:{<room>}` | hash | connection id → display name for named members; `<uid>\t<name>` for signed-in ones | membership lifetime after the newest named join |
//! | `wschat:people:{<room>}` | hash | signed-in user id → their live connections in the room, and `""` → the sum: the count of people is members − sum + users | membership lifetime after the newest join |
//! | `wschat:watchers:{<room>}` | set | connections that asked for presence (they hear of joins and leaves) | membership lifetime after the newest request |
//! | `wschat:seq:{<room>}` | hash | `epoch` (the history's name), `seq` (last seq assigned), `ts` (last ts), `bytes` (the history's size), `run` (the run id of the server that wrote it: another one means a restart or a failover, and a new epoch) | `HISTORY_TTL_SECS` after the last message |
//! | `wschat:history:{<room>}` | list | the newest chat frames, oldest first: at most `HISTORY_MAX_MESSAGES` of them and `HISTORY_MAX_BYTES` in all | as `seq` |
//! | `wschat:rate:{<room>}:<connection id>` | hash | the sender's token bucket: `t` (tokens left), `at` (last refill, epoch ms) | the time a full bucket takes to refill, plus 1 s, after the last message |
//! | `wschat:msg:{<room>}:<message id>` | string | `<seq>:<ts>`, what API Gateway's message id got | 60 s: a publish retried after a lost answer returns the same seq |
//! | `wschat:announce:{<room>}` | hash | presence damping: `t` (announcements left), `at` (last refill), `missed` (not announced since the last one) | the time a full bucket takes to refill, plus 1 s |
//! | `wschat:budget:{<connection id>}` | hash | the connection's frame budget: `t` (tokens, below zero in debt), `at` (last refill) | the time it takes to refill from the floor, plus 1 s |
//! | `wschat:addr:{<block>}` | hash | the handshake bucket of a source address (IPv4) or its /64 (IPv6): `t`, `at` | 61 s |
//! | `wschat:addrconns:{<block>}` | sorted set | the block's live connections, scored by `connectedAt` | membership lifetime after the newest |
//!
//! The list always holds the frames of seqs `seq - LLEN + 1 ..= seq` (both are written by one script), so a
//! history request finds "everything after seq N" with one `LRANGE`. When the `seq` hash is gone (expired,
//! evicted, or Redis lost its data), the next publish or history request starts a new epoch at seq 1 and empties
//! the list, so no client can take a new message for an old one. When `run` names another server process than
//! the one running the script (it restarted, or a replica took over: either may hold less than readers saw), the
//! next publish or history request starts a new epoch too, but carries the list over, each frame's epoch
//! rewritten, so seqs and the list's invariant stay; without `INFO` in scripts the check is skipped.
//!
//! The `{...}` hash tags put every key of one room (its rate buckets, message ids and damping included) in one
//! Redis Cluster slot, every connection's keys in their own, and every source address's in its own; no command or script ever touches keys of two slots at
//! once, so the schema works unchanged on Redis Cluster and ElastiCache Serverless (cluster mode).

use crate::config::KeyPrefix;
use crate::wire::{ConnectionId, RoomName, SourceAddress};

/// The names of the keys, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (it holds no brace: [`KeyPrefix`] refuses them).
    pub fn new(prefix: &KeyPrefix) -> Self {
        Self {
            prefix: prefix.as_str().to_owned(),
        }
    }

    /// The sorted set of `room`'s members.
    pub fn room(&self, room: &RoomName) -> String {
        self.of_room("room", room)
    }

    /// The string holding the room `conn` joined.
    pub fn conn(&self, conn: &ConnectionId) -> String {
        format!("{}conn:{{{}}}", self.prefix, conn.as_str())
    }

    /// The hash of `room`'s members' display names (connection → name).
    pub fn names(&self, room: &RoomName) -> String {
        self.of_room("names", room)
    }

    /// The set of `room`'s connections that asked for presence.
    pub fn watchers(&self, room: &RoomName) -> String {
        self.of_room("watchers", room)
    }

    /// The hash holding `room`'s epoch, last seq and last ts.
    pub fn seq(&self, room: &RoomName) -> String {
        self.of_room("seq", room)
    }

    /// The list holding `room`'s retained chat frames.
    pub fn history(&self, room: &RoomName) -> String {
        self.of_room("history", room)
    }

    /// The hash holding `conn`'s rate-limit bucket in `room` (in the room's slot, for the publish script).
    pub fn rate(&self, room: &RoomName, conn: &ConnectionId) -> String {
        format!("{}:{}", self.of_room("rate", room), conn.as_str())
    }

    /// The string remembering which seq message `id` got in `room` (in the room's slot).
    pub fn message(&self, room: &RoomName, id: &str) -> String {
        format!("{}:{id}", self.of_room("msg", room))
    }

    /// The hash counting `room`'s signed-in people: user id → their live connections, and `""` → all of those.
    pub fn people(&self, room: &RoomName) -> String {
        self.of_room("people", room)
    }

    /// The hash damping `room`'s presence announcements.
    pub fn announce(&self, room: &RoomName) -> String {
        self.of_room("announce", room)
    }

    /// The hash holding `conn`'s frame budget.
    pub fn budget(&self, conn: &ConnectionId) -> String {
        format!("{}budget:{{{}}}", self.prefix, conn.as_str())
    }

    /// The hash holding the handshake bucket of `address`'s block (the address, or its IPv6 /64).
    pub fn address(&self, address: &SourceAddress) -> String {
        format!("{}addr:{{{}}}", self.prefix, address.block())
    }

    /// The sorted set of the live connections of `address`'s block.
    pub fn address_connections(&self, address: &SourceAddress) -> String {
        format!("{}addrconns:{{{}}}", self.prefix, address.block())
    }

    fn of_room(&self, kind: &str, room: &RoomName) -> String {
        format!("{}{kind}:{{{}}}", self.prefix, room.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_its_room_its_connection_or_its_address_as_its_hash_tag() {
        let keys = Keys::new(&KeyPrefix::default());
        let room = RoomName::parse("로비").expect("room");
        let conn = ConnectionId::parse("L0SM9cOFvHcCIhw=").expect("id");

        assert_eq!(keys.room(&room), "wschat:room:{로비}");
        assert_eq!(keys.names(&room), "wschat:names:{로비}");
        assert_eq!(keys.watchers(&room), "wschat:watchers:{로비}");
        assert_eq!(keys.seq(&room), "wschat:seq:{로비}");
        assert_eq!(keys.history(&room), "wschat:history:{로비}");
        assert_eq!(
            keys.rate(&room, &conn),
            "wschat:rate:{로비}:L0SM9cOFvHcCIhw="
        );
        assert_eq!(keys.message(&room, "m-1"), "wschat:msg:{로비}:m-1");
        assert_eq!(keys.announce(&room), "wschat:announce:{로비}");
        assert_eq!(keys.conn(&conn), "wschat:conn:{L0SM9cOFvHcCIhw=}");
        assert_eq!(keys.budget(&conn), "wschat:budget:{L0SM9cOFvHcCIhw=}");
        let address = SourceAddress::parse("2001:db8::1").expect("an address");
        assert_eq!(keys.address(&address), "wschat:addr:{2001:db8::/64}");
        assert_eq!(
            keys.address_connections(&address),
            "wschat:addrconns:{2001:db8::/64}"
        );
        let address = SourceAddress::parse("198.51.100.7").expect("an address");
        assert_eq!(keys.address(&address), "wschat:addr:{198.51.100.7}");
    }
}
