//! Rooms too big for one invocation: above `FANOUT_SHARD_SIZE` members, `ws-default` posts to one shard of the
//! room itself (the one holding the sender) and hands every other shard to an asynchronous invocation of
//! `ws-fanout` (`FANOUT_FUNCTION`), so a message reaches 10,000 members in the time one invocation takes for
//! 1,000. Lambda runs as many invocations at once as it is asked to, within the function's reserved concurrency.
//!
//! A shard carries its members (ids and join times) and the frame itself: about 40 bytes a member, so a shard of
//! 4,000 and the longest frame stay under the 256 KB limit of an asynchronous event. Passing the members, not
//! ranks to read again, keeps a shard exactly the members the message was stored for, however the room changes
//! meanwhile. Each shard keeps `group_send`'s rules (410 prunes after the grace, 429 backs off, the deadline is
//! the shard's own invocation's) and tells the sender itself when some of its members could not be reached; a
//! shard Lambda would not take counts as unreached in the sender's own answer.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::MAX_FANOUT_SHARD_SIZE;
use crate::invoke::{InvokeError, Invoker};
use crate::rooms::Member;
use crate::wire::{ConnectionId, RoomName};

/// How a big room's fan-out is shared out: the function each other shard is handed to, and the shard size.
#[derive(Clone)]
pub struct Sharding {
    /// Queues the invocations.
    pub invoker: Arc<dyn Invoker>,
    /// The function that posts a shard (`ws-fanout`'s name or ARN).
    pub function: String,
    /// Members per invocation.
    pub shard_size: usize,
}

impl std::fmt::Debug for Sharding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharding")
            .field("function", &self.function)
            .field("shard_size", &self.shard_size)
            .finish_non_exhaustive()
    }
}

/// One member of a shard, as the event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMember {
    /// The connection id.
    #[serde(rename = "c")]
    pub conn: String,
    /// When it connected (epoch ms), for the prune grace.
    #[serde(rename = "t")]
    pub connected_at_ms: i64,
}

/// The event of one `ws-fanout` invocation: one message, to some of a room's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shard {
    /// The room (its gone members are pruned from it).
    pub room: String,
    /// Who sent the message: told when some of these members could not be reached.
    pub sender: String,
    /// The client's id of the message, for that error frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The chat frame, as members get it.
    pub frame: String,
    /// The members to post it to.
    pub members: Vec<ShardMember>,
    /// The message's time (epoch ms), against which members' ages are measured.
    pub now_ms: i64,
    /// Members in the whole room, for what the sender is told.
    pub room_size: usize,
}

/// The members this invocation posts to itself (a shard that holds the sender, who gets its own copy with the
/// message's id) and the other shards, `shard_size` members each.
pub fn split(
    members: &[Member],
    sender: &ConnectionId,
    shard_size: usize,
) -> (Vec<Member>, Vec<Vec<Member>>) {
    let shard_size = shard_size.clamp(1, MAX_FANOUT_SHARD_SIZE);
    let mut ordered: Vec<Member> = Vec::with_capacity(members.len());
    ordered.extend(members.iter().filter(|m| m.conn == *sender).cloned());
    ordered.extend(members.iter().filter(|m| m.conn != *sender).cloned());
    let mut chunks = ordered.chunks(shard_size).map(<[Member]>::to_vec);
    let own = chunks.next().unwrap_or_default();
    (own, chunks.collect())
}

/// What one message's hand-off did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandedOff {
    /// Shards queued.
    pub shards: usize,
    /// Members in shards Lambda would not take: unreached.
    pub unreached: usize,
}

/// What every shard of one message shares.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The room.
    pub room: &'a RoomName,
    /// The sender.
    pub sender: &'a ConnectionId,
    /// The client's id of the message.
    pub id: Option<&'a str>,
    /// The frame members get.
    pub frame: &'a str,
    /// The message's time (epoch ms).
    pub now_ms: i64,
    /// Members in the whole room.
    pub room_size: usize,
}

/// Queues one invocation per shard, all at once; counts the members of those Lambda would not take.
pub async fn hand_off(
    sharding: &Sharding,
    message: &Message<'_>,
    shards: Vec<Vec<Member>>,
) -> HandedOff {
    let invocations = shards.into_iter().map(|members| async move {
        let size = members.len();
        let shard = Shard {
            room: message.room.as_str().to_owned(),
            sender: message.sender.as_str().to_owned(),
            id: message.id.map(str::to_owned),
            frame: message.frame.to_owned(),
            members: members
                .into_iter()
                .map(|m| ShardMember {
                    conn: m.conn.as_str().to_owned(),
                    connected_at_ms: m.connected_at_ms,
                })
                .collect(),
            now_ms: message.now_ms,
            room_size: message.room_size,
        };
        // The invoker refuses an event over the asynchronous limit; `MAX_FANOUT_SHARD_SIZE` keeps a shard under it.
        let result = match serde_json::to_vec(&shard) {
            Ok(event) => {
                sharding
                    .invoker
                    .invoke_async(&sharding.function, Bytes::from(event))
                    .await
            }
            Err(err) => Err(InvokeError::Unreachable(Box::new(err))),
        };
        if let Err(err) = &result {
            let err: &dyn std::error::Error = err;
            tracing::warn!(room = %message.room, members = size, error = err, "a fan-out shard was not handed off");
        }
        (size, result.is_ok())
    });
    let results = futures_util::future::join_all(invocations).await;
    HandedOff {
        shards: results.iter().filter(|(_, ok)| *ok).count(),
        unreached: results.iter().filter(|(_, ok)| !ok).map(|(n, _)| n).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoke::{MAX_ASYNC_PAYLOAD_BYTES, RecordingInvoker};

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                conn: ConnectionId::parse(&format!("conn{i:06}=")).expect("id"),
                connected_at_ms: 1_000 + i as i64,
            })
            .collect()
    }

    #[test]
    fn the_sender_s_shard_is_its_own_and_every_member_is_in_exactly_one_shard() {
        let room = members(2500);
        let sender = room[1700].conn.clone();

        let (own, others) = split(&room, &sender, 1000);

        assert_eq!(own.len(), 1000);
        assert_eq!(own[0].conn, sender, "the sender posts its own copy");
        assert_eq!(others.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 500]);
        let mut all: Vec<_> = own
            .iter()
            .chain(others.iter().flatten())
            .map(|m| m.conn.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2500);
        let (small, none) = split(&room[..10], &sender, 1000);
        assert_eq!((small.len(), none.len()), (10, 0));
    }

    #[tokio::test]
    async fn every_shard_is_handed_to_the_function_under_the_async_limit_and_refused_ones_are_counted()
     {
        let room = RoomName::parse("big").expect("room");
        let sender = ConnectionId::parse("sender=").expect("id");
        let invoker = Arc::new(RecordingInvoker::default());
        let sharding = Sharding {
            invoker: invoker.clone(),
            function: "ws-fanout".into(),
            shard_size: MAX_FANOUT_SHARD_SIZE,
        };
        let frame = format!(r#"{{"message":"{}"}}"#, "x".repeat(16 * 1024 * 4 / 3));
        let message = Message {
            room: &room,
            sender: &sender,
            id: Some("m1"),
            frame: &frame,
            now_ms: 5,
            room_size: 12_001,
        };
        let (_, shards) = split(&members(12_000), &sender, MAX_FANOUT_SHARD_SIZE);

        let handed = hand_off(&sharding, &message, shards.clone()).await;
        invoker.refuse_all();
        let refused = hand_off(&sharding, &message, shards).await;

        assert_eq!(
            handed,
            HandedOff {
                shards: 2,
                unreached: 0
            }
        );
        let invoked = invoker.invoked();
        assert!(
            invoked
                .iter()
                .all(|(f, e)| f == "ws-fanout" && e.len() <= MAX_ASYNC_PAYLOAD_BYTES)
        );
        let shard: Shard = serde_json::from_slice(&invoked[0].1).expect("a shard");
        assert_eq!(
            (
                shard.room.as_str(),
                shard.sender.as_str(),
                shard.id.as_deref()
            ),
            ("big", "sender=", Some("m1"))
        );
        assert_eq!(shard.frame, frame);
        assert_eq!(shard.members.len(), MAX_FANOUT_SHARD_SIZE);
        assert_eq!(
            refused,
            HandedOff {
                shards: 0,
                unreached: 8000
            }
        );
    }
}
