//! A chat message `{"message": …, "id": …}`: numbered and stored in the room's history, then fanned out to every
//! member of the room, the sender included, in one Redis round trip ([`RoomStore::publish`]) and one post per
//! member ([`group_send`]). With an `id`, the message sent again by the same sender (a signed-in user, else the
//! connection) within [`CLIENT_IDS_FOR_MS`] is not stored again: its frame goes out again, and pages drop it by
//! seq; the sender's own copy carries the `id`.

use tracing::{debug, info, warn};

use super::Deps;
use super::reply::{Failure, Outcome};
use std::borrow::Cow;

use crate::fanout::shards::{self, HandedOff};
use crate::fanout::{Delivery, group_send};
use crate::handlers::events::Caller;
use crate::metrics::{self, Metric};
use crate::rooms::{CLIENT_IDS_FOR_MS, PublishOutcome, SEEN_FOR_MS, Sender};
use crate::wire::{MessageId, RoomName, echo_frame};

/// Stores `message` (`json`: the same, encoded; `id`: the client's id of it) and sends it to every member of
/// `room`. A message that did not get through goes back to its sender.
pub(super) async fn send(
    room: &RoomName,
    caller: &Caller,
    message: String,
    json: &str,
    id: Option<MessageId>,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Outcome {
    debug!(connection = %caller.conn, bytes = message.len(), "chat message");
    publish(room, caller, json, id.as_ref(), deps, deadline)
        .await
        .map_err(|failure| failure.of_message(message, id))
}

/// The store's round trip, then the fan-out; a member that cannot be reached is reported to the sender.
async fn publish(
    room: &RoomName,
    caller: &Caller,
    json: &str,
    id: Option<&MessageId>,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Outcome {
    let conn = &caller.conn;
    // The client's id, per sender (`c:` keeps it apart from API Gateway's ids, which hold no colon). Else API
    // Gateway's messageId, unique per message; without one (a hand-made event), an id of this invocation's own
    // still keeps the store's retry from numbering the message twice.
    let (message_id, remember_ms) = match (id, &caller.message_id) {
        (Some(id), _) => {
            let who = caller
                .verified
                .as_ref()
                .map_or(conn.as_str(), |user| user.uid.as_str());
            (format!("c:{who}:{}", id.as_str()), CLIENT_IDS_FOR_MS)
        }
        (None, Some(gateway)) => (gateway.clone(), SEEN_FOR_MS),
        (None, None) => (format!("{:016x}", fastrand::u64(..)), SEEN_FOR_MS),
    };
    let sender = Sender {
        conn,
        connected_at_ms: caller.connected_at_ms,
        message_id: Some(&message_id),
        remember_ms,
        user: caller.name.as_ref(),
        uid: caller.verified.as_ref().map(|user| &user.uid),
    };
    let published = match deps
        .rooms
        .publish(room, &sender, json, caller.time_ms)
        .await
        .map_err(Failure::store_down)?
    {
        PublishOutcome::Published(published) => {
            metrics::count(Metric::ChatMessages);
            published
        }
        PublishOutcome::RateLimited { retry_after_ms } => {
            warn!(connection = %conn, room = %room, retry_after_ms, "rate limited");
            return Err(Failure::rate_limited(retry_after_ms));
        }
    };
    let members = published.members.len();
    // A room bigger than a shard: the other shards are handed to invocations of their own first, so they post
    // while this one does.
    let (posted_here, handed) = match &deps.sharding {
        Some(sharding) if members > sharding.shard_size => {
            let (own, others) = shards::split(&published.members, conn, sharding.shard_size);
            let message = shards::Message {
                room,
                sender: conn,
                id: id.map(MessageId::as_str),
                frame: &published.frame,
                now_ms: caller.time_ms,
                room_size: members,
            };
            let handed = shards::hand_off(sharding, &message, others).await;
            metrics::count_n(Metric::FanoutShards, handed.shards);
            (Cow::Owned(own), handed)
        }
        _ => (Cow::Borrowed(&published.members[..]), HandedOff::default()),
    };
    let own = id.map(|id| (conn, bytes::Bytes::from(echo_frame(&published.frame, id))));
    let delivery = Delivery {
        room,
        members: &posted_here,
        own,
        frame: bytes::Bytes::from(published.frame),
        now_ms: caller.time_ms,
        deadline,
    };
    let report = group_send(
        deps.gateway.as_ref(),
        deps.rooms.as_ref(),
        delivery,
        &deps.fanout,
    )
    .await;
    info!(
        connection = %conn,
        room = %room,
        seq = published.seq,
        epoch = %published.epoch,
        members,
        delivered = report.delivered,
        pruned = report.pruned.len(),
        not_yet_open = report.not_yet_open.len(),
        retried = report.retried,
        failed = report.failed.len(),
        skipped = report.skipped.len(),
        prune_failed = report.prune_failed,
        shards = handed.shards,
        "group_send done"
    );
    let missed = report.missed() + handed.unreached;
    if missed == 0 {
        return Ok(());
    }
    warn!(connection = %conn, room = %room, missed, "delivery incomplete");
    // The handed-off shards count as reached: a shard that misses members tells the sender itself.
    let handed_off = members - posted_here.len() - handed.unreached;
    Err(Failure::unreached(report.delivered + handed_off, members))
}
