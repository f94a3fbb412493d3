//! `{"action": "presence"}`: who is in the room, to the sender alone; from then on the sender hears of joins and
//! leaves. Members the request finds past their lifetime left without a `$disconnect`: the other watchers hear of
//! it now.

use tracing::warn;

use super::Deps;
use super::reply::{Failure, Outcome};
use crate::fanout::announce_departures;
use crate::handlers::events::Caller;
use crate::rooms::{Departed, Presence};
use crate::wire::{PresenceBody, RoomName, ServerFrame, UserRef};

/// Answers the sender with the room's count and names.
pub(super) async fn answer(room: &RoomName, caller: &Caller, deps: &Deps) -> Outcome {
    let sender = &caller.conn;
    let Presence {
        count,
        names,
        expired,
        watchers,
        announce,
        head,
    } = deps
        .rooms
        .presence(room, sender, caller.time_ms)
        .await
        .map_err(Failure::store_down)?;
    if !expired.is_empty() {
        // The sender's answer below already leaves them out.
        let departed = Departed {
            room: room.clone(),
            names: expired,
            count,
            watchers,
            announce,
        };
        announce_departures(
            deps.gateway.as_ref(),
            deps.rooms.as_ref(),
            &departed,
            &deps.fanout,
        )
        .await;
    }
    let frame = ServerFrame::Presence {
        presence: PresenceBody {
            count,
            members: names.iter().filter_map(|who| who.name.as_deref()).collect(),
            users: names
                .iter()
                .filter_map(|who| {
                    Some(UserRef {
                        user: who.name.as_deref()?,
                        uid: who.uid.as_deref()?,
                    })
                })
                .collect(),
        },
        epoch: head.as_ref().map(|head| head.epoch.as_str()),
        seq: head.as_ref().map(|head| head.seq),
    }
    .encode();
    if let Err(err) = deps.gateway.post_to_connection(sender, frame).await {
        let err: &dyn std::error::Error = &err;
        warn!(connection = %sender, error = err, "could not answer the presence request");
        return Err(Failure::answer_lost(
            "the presence answer could not be delivered",
        ));
    }
    Ok(())
}
