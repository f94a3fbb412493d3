//! `$default`: every frame a client sends that no other route takes, one kind per file ([`ClientFrame`]):
//! * `chat`, `{"message"}`: numbered and stored in the room's history, then fanned out to every member of the
//!   sender's room, the sender included;
//! * `history`, `{"action": "history"}`: the retained messages after a seq, to the sender alone;
//! * `presence`, `{"action": "presence"}`: who is here, to the sender alone, who then hears of joins and leaves;
//! * `ping`, `{"action": "ping"}`: `{"pong"}` to the sender, after writing its membership again.
//!
//! Every outcome is answered by `reply`: 200, or the failure's status with an error frame to the sender alone.
//!
//! History, presence and ping could be routes of their own (route selection is `$request.body.action`), but
//! they need exactly `$default`'s dependencies, and one function keeps one warm container and one place that
//! knows the protocol: the template routes only `$connect`, `$disconnect` and `$default`.

mod chat;
mod history;
mod ping;
mod presence;
mod reply;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::warn;

use self::reply::{Failure, Outcome};
use super::events::{Caller, Message};
use crate::fanout::FanoutSettings;
use crate::gateway::Gateway;
use crate::rooms::RoomStore;
use crate::wire::{ClientFrame, RoomName};

/// What `$default` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership and history.
    pub rooms: Arc<dyn RoomStore>,
    /// PostToConnection.
    pub gateway: Arc<dyn Gateway>,
    /// Fan-out tuning.
    pub fanout: FanoutSettings,
}

/// Handles one `$default` message; no post starts shortly before `deadline` (the Lambda's own). Never fails: a
/// failure is answered to the sender and in the response's status (see `reply`).
pub async fn handle(
    message: Message,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> ApiGatewayProxyResponse {
    let Message { caller, frame } = message;
    let outcome = match frame {
        Ok(frame) => dispatch(frame, &caller, deps, deadline).await,
        Err(err) => Err(Failure::refused(err)),
    };
    reply::send(outcome, deps.gateway.as_ref(), &caller.conn).await
}

/// Finds the sender's room, then hands the frame to the file of its kind.
async fn dispatch(
    frame: ClientFrame,
    caller: &Caller,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Outcome {
    let room = match room_of(caller, deps).await {
        Ok(room) => room,
        Err(failure) => {
            return Err(match frame {
                ClientFrame::Chat { message, .. } => failure.of_message(message),
                _ => failure,
            });
        }
    };
    match frame {
        ClientFrame::Chat { message, json } => {
            chat::send(&room, caller, message, &json, deps, deadline).await
        }
        ClientFrame::History { after, epoch } => {
            history::send(&room, caller, after, epoch, deps).await
        }
        ClientFrame::Presence => presence::answer(&room, caller, deps).await,
        ClientFrame::Ping => ping::answer(&room, caller, deps).await,
    }
}

/// The room the authorizer carried from the handshake, or failing that (no authorizer) the one the store holds
/// for the connection: one more round trip.
async fn room_of<'c>(caller: &'c Caller, deps: &Deps) -> Result<Cow<'c, RoomName>, Failure> {
    if let Some(room) = &caller.room {
        return Ok(Cow::Borrowed(room));
    }
    match deps.rooms.room_of(&caller.conn).await {
        Ok(Some(room)) => Ok(Cow::Owned(room)),
        Ok(None) => {
            warn!(connection = %caller.conn, "message from a connection in no room");
            Err(Failure::no_room())
        }
        Err(err) => Err(Failure::store_down(err)),
    }
}
