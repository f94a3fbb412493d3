//! How `$default` answers: every status code API Gateway gets and every error frame a sender gets, in one place.
//!
//! A frame that was done is a 200. One that was not is a [`Failure`]: the sender hears why, alone, in
//! `{"error": …}` (with `"undelivered": <its text>` when a chat message did not get through, so the page puts it
//! back in the composer), and API Gateway gets the status below. Infrastructure failures are answered, not
//! raised: a 5xx response instead of a Lambda error, so API Gateway does not push its own
//! `{"message": "Internal server error"}` frame, which a tutorial page would show as a chat line.
//!
//! | failure | status | the sender is told |
//! |---|---|---|
//! | a malformed or oversized frame | 400 | why ([`crate::wire::FrameError`]) |
//! | a ping that finds the room full | 403 | to reconnect later |
//! | the connection is in no room (its membership expired) | 410 | to reconnect |
//! | a chat message over the rate limit | 429 | how long to wait (`retryAfterMs`), and its text back |
//! | any other frame over the connection's frame budget | 429 | how long to wait (`retryAfterMs`); far past it, the connection is also closed (DeleteConnection) |
//! | any frame after the user's token expired (`AUTH_MODE=oidc`) | 401 | `token expired` (a chat message's text back); the connection is closed |
//! | some members could not be reached | 502 | how many were |
//! | the answer to the sender itself could not be posted | 502 | nothing (it cannot be reached) |
//! | the room store is down | 503 | to try again in a moment |

use std::borrow::Cow;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::{error, info, warn};

use crate::gateway::{Gateway, GatewayError};
use crate::handlers::events::Caller;
use crate::handlers::{error_chain, response};
use crate::metrics::{self, Metric};
use crate::rooms::StoreError;
use crate::wire::{FrameError, MessageId, ServerFrame};

/// What became of a frame: done, or a [`Failure`].
pub(super) type Outcome = Result<(), Failure>;

/// A frame `$default` could not simply do.
#[derive(Debug)]
pub(super) struct Failure {
    why: Why,
    /// The text of a chat message that did not get through, for the sender to send again.
    undelivered: Option<String>,
    /// The client's id of the chat message.
    id: Option<MessageId>,
    /// Whether a chat message may have been stored after all: the store did not answer in time.
    uncertain: bool,
}

#[derive(Debug)]
enum Why {
    Refused(FrameError),
    RoomFull,
    NoRoom,
    RateLimited { retry_after_ms: u64 },
    OverBudget { retry_after_ms: u64, close: bool },
    TokenExpired,
    Unreached { delivered: usize, members: usize },
    AnswerLost(&'static str),
    StoreDown(StoreError),
}

impl Failure {
    fn new(why: Why) -> Self {
        Self {
            why,
            undelivered: None,
            id: None,
            uncertain: false,
        }
    }

    /// The frame is malformed or too large.
    pub(super) fn refused(err: FrameError) -> Self {
        Self::new(Why::Refused(err))
    }

    /// A ping found the room full: the connection is not a member any more.
    pub(super) fn room_full() -> Self {
        Self::new(Why::RoomFull)
    }

    /// The connection is in no room.
    pub(super) fn no_room() -> Self {
        Self::new(Why::NoRoom)
    }

    /// The sender is over its rate limit.
    pub(super) fn rate_limited(retry_after_ms: u64) -> Self {
        Self::new(Why::RateLimited { retry_after_ms })
    }

    /// A frame over the connection's frame budget; `close`: far past it.
    pub(super) fn over_budget(retry_after_ms: u64, close: bool) -> Self {
        Self::new(Why::OverBudget {
            retry_after_ms,
            close,
        })
    }

    /// The sender's token has expired: nothing is done, and the connection ends.
    pub(super) fn token_expired() -> Self {
        Self::new(Why::TokenExpired)
    }

    /// The message reached `delivered` of `members` members.
    pub(super) fn unreached(delivered: usize, members: usize) -> Self {
        Self::new(Why::Unreached { delivered, members })
    }

    /// An answer to the sender alone (`what`) could not be posted.
    pub(super) fn answer_lost(what: &'static str) -> Self {
        Self::new(Why::AnswerLost(what))
    }

    /// The room store failed (after its one retry).
    pub(super) fn store_down(err: StoreError) -> Self {
        Self::new(Why::StoreDown(err))
    }

    /// The same failure of the chat message `text` (`id`: the client's id of it). The text goes back to its
    /// sender only when the message certainly was not stored and reached nobody: not when some members got it
    /// (sending it again would repeat it to them), nor when the store did not answer in time (it may have
    /// stored it: the sender is told so, and sends it again with the same id, which cannot store it twice).
    pub(super) fn of_message(mut self, text: String, id: Option<MessageId>) -> Self {
        self.uncertain = matches!(&self.why, Why::StoreDown(err) if err.outcome_unknown());
        let reached_some = matches!(self.why, Why::Unreached { delivered, .. } if delivered > 0);
        if !reached_some && !self.uncertain {
            self.undelivered = Some(text);
        }
        self.id = id;
        self
    }

    /// How long the sender must wait before sending again, when it must.
    fn retry_after_ms(&self) -> Option<u64> {
        match self.why {
            Why::RateLimited { retry_after_ms } | Why::OverBudget { retry_after_ms, .. } => {
                Some(retry_after_ms)
            }
            _ => None,
        }
    }

    /// The metric of a frame refused for what it is or for who sent it (not of one the system failed).
    fn refused_as(&self) -> Option<Metric> {
        match &self.why {
            Why::Refused(FrameError::MessageTooLong { .. }) => Some(Metric::FramesRefusedSize),
            Why::Refused(_) => Some(Metric::FramesRefusedMalformed),
            Why::RateLimited { .. } => Some(Metric::FramesRefusedRate),
            Why::OverBudget { .. } => Some(Metric::FramesRefusedBudget),
            Why::TokenExpired => Some(Metric::FramesRefusedAuth),
            Why::RoomFull
            | Why::NoRoom
            | Why::Unreached { .. }
            | Why::AnswerLost(_)
            | Why::StoreDown(_) => None,
        }
    }

    fn status(&self) -> i64 {
        match self.why {
            Why::Refused(_) => 400,
            Why::TokenExpired => 401,
            Why::RoomFull => 403,
            Why::NoRoom => 410,
            Why::RateLimited { .. } | Why::OverBudget { .. } => 429,
            Why::Unreached { .. } | Why::AnswerLost(_) => 502,
            Why::StoreDown(_) => 503,
        }
    }

    /// What the sender reads, and the response's body.
    fn reason(&self) -> Cow<'static, str> {
        let chat = self.undelivered.is_some();
        match &self.why {
            Why::Refused(err) => err.to_string().into(),
            Why::RoomFull => {
                "this room is full: your connection is not a member any more; reconnect later".into()
            }
            Why::NoRoom => "this connection is in no room (its membership expired); reconnect".into(),
            Why::RateLimited { retry_after_ms } => format!(
                "too many messages: this one was not delivered; wait {:.1} s before sending again",
                *retry_after_ms as f64 / 1000.0
            )
            .into(),
            Why::Unreached {
                delivered: 0,
                members,
            } => format!(
                "your message was not delivered: none of the {members} members could be reached"
            )
            .into(),
            Why::Unreached { delivered, members } => format!(
                "your message reached {delivered} of {members} members; the others may see it only after reconnecting"
            )
            .into(),
            Why::OverBudget {
                retry_after_ms,
                close: false,
            } => format!(
                "too many requests: this one was not answered; wait {:.1} s before sending again",
                *retry_after_ms as f64 / 1000.0
            )
            .into(),
            Why::OverBudget { close: true, .. } => {
                "far too many requests: this connection is closed".into()
            }
            Why::TokenExpired => "token expired".into(),
            Why::AnswerLost(what) => (*what).into(),
            Why::StoreDown(_) if self.uncertain => "your message may not have been delivered: the chat's storage did not answer in time; sending it again with the same id cannot make a second copy".into(),
            Why::StoreDown(_) if chat => "your message was not delivered: the chat's storage is unavailable right now; try again in a moment".into(),
            Why::StoreDown(_) => "the chat's storage is unavailable right now; try again in a moment".into(),
        }
    }
}

/// API Gateway's response to `outcome`, after telling the sender what went wrong (if anything did, and it can be
/// told), and closing its connection when it went on sending far past its budget.
pub(super) async fn send(
    outcome: Outcome,
    gateway: &dyn Gateway,
    caller: &Caller,
) -> ApiGatewayProxyResponse {
    let failure = match outcome {
        Ok(()) => return response(200, None),
        Err(failure) => failure,
    };
    let (sender, address) = (
        &caller.conn,
        caller.address.as_ref().map(ToString::to_string),
    );
    let reason = failure.reason();
    if let Some(refused) = failure.refused_as() {
        metrics::count(Metric::FramesRefused);
        metrics::count(refused);
    }
    match &failure.why {
        Why::StoreDown(err) => {
            error!(connection = %sender, error = %error_chain(err), "room store unavailable");
        }
        Why::Refused(_) => warn!(connection = %sender, address, reason = %reason, "frame refused"),
        Why::OverBudget {
            retry_after_ms,
            close,
        } => warn!(connection = %sender, address, retry_after_ms, close, "over its frame budget"),
        Why::TokenExpired => {
            info!(connection = %sender, address, "token expired: closing the connection")
        }
        _ => {}
    }
    if !matches!(failure.why, Why::AnswerLost(_)) {
        let frame = ServerFrame::Error {
            error: &reason,
            undelivered: failure.undelivered.as_deref(),
            retry_after_ms: failure.retry_after_ms(),
            id: failure.id.as_ref().map(MessageId::as_str),
            uncertain: failure.uncertain,
        }
        .encode();
        if let Err(err) = gateway.post_to_connection(sender, frame).await {
            let err: &dyn std::error::Error = &err;
            warn!(connection = %sender, error = err, "could not send the error frame");
        }
    }
    let closing = match failure.why {
        Why::OverBudget { close: true, .. } => Some("far past its frame budget"),
        Why::TokenExpired => Some("its token expired"),
        _ => None,
    };
    if let Some(why) = closing {
        match gateway.delete_connection(sender).await {
            Ok(()) | Err(GatewayError::Gone) => {
                warn!(connection = %sender, address, why, "connection closed");
            }
            Err(err) => {
                let err: &dyn std::error::Error = &err;
                warn!(connection = %sender, address, why, error = err, "could not close a connection");
            }
        }
    }
    response(failure.status(), Some(&reason))
}
