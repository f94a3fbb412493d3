//! A chat message `{"message": …}`: numbered and stored in the room's history, then fanned out to every member of
//! the room, the sender included, in one Redis round trip ([`RoomStore::publish`]) and one post per member
//! ([`group_send`]).

use tracing::{debug, info, warn};

use super::Deps;
use super::reply::{Failure, Outcome};
use crate::fanout::{Delivery, group_send};
use crate::handlers::events::Caller;
use crate::rooms::{PublishOutcome, Sender};
use crate::wire::RoomName;

/// Stores `message` (`json`: the same, encoded) and sends it to every member of `room`. A message that did not
/// get through goes back to its sender.
pub(super) async fn send(
    room: &RoomName,
    caller: &Caller,
    message: String,
    json: &str,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Outcome {
    debug!(connection = %caller.conn, bytes = message.len(), "chat message");
    publish(room, caller, json, deps, deadline)
        .await
        .map_err(|failure| failure.of_message(message))
}

/// The store's round trip, then the fan-out; a member that cannot be reached is reported to the sender.
async fn publish(
    room: &RoomName,
    caller: &Caller,
    json: &str,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Outcome {
    let conn = &caller.conn;
    // API Gateway's messageId is unique per message; without one (a hand-made event), an id of this
    // invocation's own still keeps the store's retry from numbering the message twice.
    let own_id;
    let message_id = match &caller.message_id {
        Some(id) => id.as_str(),
        None => {
            own_id = format!("{:016x}", fastrand::u64(..));
            &own_id
        }
    };
    let sender = Sender {
        conn,
        connected_at_ms: caller.connected_at_ms,
        message_id: Some(message_id),
        user: caller.name.as_ref(),
        uid: caller.verified.as_ref().map(|user| &user.uid),
    };
    let published = match deps
        .rooms
        .publish(room, &sender, json, caller.time_ms)
        .await
        .map_err(Failure::store_down)?
    {
        PublishOutcome::Published(published) => published,
        PublishOutcome::RateLimited { retry_after_ms } => {
            warn!(connection = %conn, room = %room, retry_after_ms, "rate limited");
            return Err(Failure::rate_limited(retry_after_ms));
        }
    };
    let members = published.members.len();
    let delivery = Delivery {
        room,
        members: &published.members,
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
        "group_send done"
    );
    let missed = report.failed.len() + report.skipped.len();
    if missed == 0 {
        return Ok(());
    }
    warn!(connection = %conn, room = %room, missed, "delivery incomplete");
    Err(Failure::unreached(report.delivered, members))
}
