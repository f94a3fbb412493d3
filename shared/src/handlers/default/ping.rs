//! `{"action": "ping"}`: the page's heartbeat. It writes the sender's membership (and name) again, so a member
//! that Redis forgot is back at once, then answers `{"pong": <epoch ms>, "epoch", "seq"}` with the room's head
//! (read in the same round trip): a page that missed the last message of a quiet room learns of it within one
//! heartbeat.

use tracing::warn;

use super::Deps;
use super::reply::{Failure, Outcome};
use crate::handlers::events::Caller;
use crate::handlers::now_ms;
use crate::rooms::Entered;
use crate::wire::{RoomName, ServerFrame};

/// Rejoins the sender to `room` and answers the ping.
pub(super) async fn answer(room: &RoomName, caller: &Caller, deps: &Deps) -> Outcome {
    let sender = &caller.conn;
    let entered = deps
        .rooms
        .join(
            room,
            sender,
            caller.connected_at_ms,
            caller.name.as_ref(),
            caller.verified.as_ref().map(|user| &user.uid),
        )
        .await
        .map_err(Failure::store_down)?;
    let Entered::Joined { head, .. } = entered else {
        return Err(Failure::room_full());
    };
    let pong = ServerFrame::Pong {
        pong: now_ms(),
        epoch: head.as_ref().map(|head| head.epoch.as_str()),
        seq: head.as_ref().map(|head| head.seq),
    }
    .encode();
    if let Err(err) = deps.gateway.post_to_connection(sender, pong).await {
        let err: &dyn std::error::Error = &err;
        warn!(connection = %sender, error = err, "could not answer the ping");
    }
    Ok(())
}
