//! `$default`: every frame a client sends that no other route takes, one kind per file ([`ClientFrame`]):
//! * `chat`, `{"message"}`: numbered and stored in the room's history, then fanned out to every member of the
//!   sender's room, the sender included;
//! * `history`, `{"action": "history"}`: the retained messages after a seq, to the sender alone;
//! * `presence`, `{"action": "presence"}`: who is here, to the sender alone, who then hears of joins and leaves;
//! * `ping`, `{"action": "ping"}`: `{"pong"}` to the sender, after writing its membership again.
//!
//! A frame of a verified user whose token has expired (`AUTH_MODE=oidc`) is refused and its connection closed,
//! before anything else. Chat pays its own rate limit, in its publish's round trip. Every other frame, a refused one included, first
//! pays the connection's frame budget (`FRAME_RATE_PER_SEC`, `FRAME_BURST`): over it, nothing else is done. Every
//! outcome is answered by `reply`: 200, or the failure's status with an error frame to the sender alone.
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
use crate::fanout::shards::Sharding;
use crate::gateway::Gateway;
use crate::metrics::{self, Metric};
use crate::rooms::{RoomStore, Spent};
use crate::wire::{ClientFrame, FrameError, RoomName};

/// What `$default` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership and history.
    pub rooms: Arc<dyn RoomStore>,
    /// PostToConnection.
    pub gateway: Arc<dyn Gateway>,
    /// Fan-out tuning.
    pub fanout: FanoutSettings,
    /// How a big room's fan-out is shared out to further invocations (none: this one posts to everyone).
    pub sharding: Option<Sharding>,
    /// UTF-8 bytes a chat message's text may have (`MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// How long past its `exp` a verified user's token still holds, in seconds (`AUTH_LEEWAY_SECS`).
    pub token_leeway_secs: i64,
}

/// Handles one `$default` message; no post starts shortly before `deadline` (the Lambda's own). Never fails: a
/// failure is answered to the sender and in the response's status (see `reply`).
pub async fn handle(
    message: Message,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> ApiGatewayProxyResponse {
    let Message { caller, frame } = message;
    metrics::count(Metric::Frames);
    let outcome = serve(frame, &caller, deps, deadline).await;
    reply::send(outcome, deps.gateway.as_ref(), &caller).await
}

/// Charges the frame, finds the sender's room, then hands the frame to the file of its kind.
async fn serve(
    frame: Result<ClientFrame, FrameError>,
    caller: &Caller,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Outcome {
    // A connection does not outlive its token: no frame of it is served after `exp`.
    if caller.verified.as_ref().is_some_and(|user| {
        caller.time_ms / 1000 > user.expires_at.saturating_add(deps.token_leeway_secs)
    }) {
        return Err(match frame {
            Ok(ClientFrame::Chat { message, id, .. }) => {
                Failure::token_expired().of_message(message, id)
            }
            _ => Failure::token_expired(),
        });
    }
    let frame = frame.and_then(|frame| within_limits(frame, deps.max_message_bytes));
    if !matches!(frame, Ok(ClientFrame::Chat { .. })) {
        spend(caller, deps).await?;
    }
    let frame = frame.map_err(Failure::refused)?;
    let room = match room_of(caller, deps).await {
        Ok(room) => room,
        Err(failure) => {
            return Err(match frame {
                ClientFrame::Chat { message, id, .. } => failure.of_message(message, id),
                _ => failure,
            });
        }
    };
    match frame {
        ClientFrame::Chat { message, json, id } => {
            chat::send(&room, caller, message, &json, id, deps, deadline).await
        }
        ClientFrame::History { after, epoch } => {
            history::send(&room, caller, after, epoch, deps).await
        }
        ClientFrame::Presence => presence::answer(&room, caller, deps).await,
        ClientFrame::Ping => ping::answer(&room, caller, deps).await,
    }
}

/// A chat frame whose text is over `MAX_MESSAGE_BYTES` is refused like a malformed one.
fn within_limits(frame: ClientFrame, max_message_bytes: usize) -> Result<ClientFrame, FrameError> {
    match frame {
        ClientFrame::Chat { message, .. } if message.len() > max_message_bytes => {
            Err(FrameError::MessageTooLong {
                bytes: message.len(),
                limit: max_message_bytes,
            })
        }
        frame => Ok(frame),
    }
}

/// One token of the connection's frame budget. When the store cannot count, the frame goes ahead: whatever it
/// asks of the store then fails and is answered as such, and a malformed frame is still told why.
async fn spend(caller: &Caller, deps: &Deps) -> Outcome {
    match deps.rooms.spend(&caller.conn, caller.time_ms).await {
        Ok(Spent::Granted) => Ok(()),
        Ok(Spent::Refused {
            retry_after_ms,
            close,
        }) => Err(Failure::over_budget(retry_after_ms, close)),
        Err(err) => {
            let err: &dyn std::error::Error = &err;
            warn!(connection = %caller.conn, error = err, "the frame budget could not be counted");
            Ok(())
        }
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
