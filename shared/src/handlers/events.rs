//! Each route's event, parsed once at the edge into the one typed value its handler takes. Nothing past this
//! module reads an API Gateway event.
//!
//! | route | typed value | parsed from |
//! |---|---|---|
//! | the `$connect` authorizer | [`Authorization`] | the query string ([`Handshake`]), the token, the connection id, the route's ARN |
//! | `$connect` | [`Connecting`] | the query string ([`Handshake`]), `Origin`, `Sec-WebSocket-Protocol`, `requestContext` and the authorizer context ([`Verified`]) |
//! | `$default` | [`Message`] | `requestContext` and the authorizer context ([`Caller`]), the body ([`ClientFrame`]) |
//! | `$disconnect` | [`Leaving`] | `requestContext` and the authorizer context ([`Caller`]), the close status |
//!
//! `$connect` is the only event with headers and a query string. Every later event of a connection carries what
//! the authorizer returned as `requestContext.authorizer` ([`AUTHORIZER_ROOM_KEY`], [`AUTHORIZER_NAME_KEY`], and
//! with `AUTH_MODE=oidc` [`AUTHORIZER_UID_KEY`], [`AUTHORIZER_EXPIRES_KEY`]), which is how `$default` knows the
//! sender's room, name and user without asking Redis. API Gateway delivers every context value as a string.

use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use serde::{Deserialize, Serialize};

use super::HandlerError;
use crate::auth::transport::{self, Token};
use crate::wire::{
    ClientFrame, ConnectionId, ConnectionIdError, DisplayName, DisplayNameError, FrameError,
    RoomName, RoomNameError, SourceAddress, Uid,
};

/// The key under which the authorizer puts the room in its context (`requestContext.authorizer.room`).
pub const AUTHORIZER_ROOM_KEY: &str = "room";

/// The key under which the authorizer puts the sender's display name in its context.
pub const AUTHORIZER_NAME_KEY: &str = "name";

/// The key under which the authorizer puts the verified user id (the token's `sub`; `AUTH_MODE=oidc` only).
pub const AUTHORIZER_UID_KEY: &str = "uid";

/// The key under which the authorizer puts when the token expires (epoch seconds; `AUTH_MODE=oidc` only).
pub const AUTHORIZER_EXPIRES_KEY: &str = "exp";

/// What a handshake asks for in its query string (`?room=…&name=…`): read by the authorizer and by `$connect`
/// alike, with the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `room`: required, the tutorial's `\w{1,100}`.
    pub room: Result<RoomName, RoomNameError>,
    /// `name`: optional (none: an anonymous member); when given, it must follow [`DisplayName::parse`]'s rules.
    pub name: Result<Option<DisplayName>, DisplayNameError>,
}

impl Handshake {
    /// Parses the query parameters `query` looks up.
    pub fn parse<'q>(query: impl Fn(&str) -> Option<&'q str>) -> Self {
        Self {
            room: query("room").map_or(Err(RoomNameError::Missing), RoomName::parse),
            name: query("name").map(DisplayName::parse).transpose(),
        }
    }
}

/// The parts of a WebSocket REQUEST authorizer event this authorizer reads. (`aws_lambda_events`' type for it
/// lacks `requestContext.connectionId`, which WebSocket authorizer events carry.)
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequest {
    /// The ARN of the `$connect` route being authorized.
    #[serde(default)]
    pub method_arn: Option<String>,
    /// The handshake's query string.
    #[serde(default)]
    pub query_string_parameters: Option<HashMap<String, String>>,
    /// The handshake's headers.
    #[serde(default)]
    pub headers: Option<HashMap<String, String>>,
    /// The connection being authorized.
    #[serde(default)]
    pub request_context: AuthorizerRequestContext,
}

/// `requestContext` of an authorizer event.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequestContext {
    /// The connection id API Gateway assigned to the handshake.
    #[serde(default)]
    pub connection_id: Option<String>,
}

/// The authorizer's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Who is connecting: the connection id (there are no users), or `anonymous` without one.
    pub principal_id: String,
    /// The ARN of the `$connect` route being authorized (`*` when absent).
    pub resource: String,
    /// What the handshake asks for.
    pub handshake: Handshake,
    /// The token it carries ([`crate::auth::transport`]), if any.
    pub token: Option<Token>,
}

impl From<&AuthorizerRequest> for Authorization {
    fn from(event: &AuthorizerRequest) -> Self {
        let query = event.query_string_parameters.as_ref();
        let protocols = transport::protocols_header(
            event
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Self {
            token: transport::token(
                protocols,
                query.and_then(|q| q.get("token")).map(String::as_str),
            ),
            principal_id: event
                .request_context
                .connection_id
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "anonymous".to_owned()),
            resource: event.method_arn.clone().unwrap_or_else(|| "*".to_owned()),
            handshake: Handshake::parse(|key| query?.get(key).map(String::as_str)),
        }
    }
}

/// A `$connect` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connecting {
    /// The connection API Gateway is opening.
    pub conn: ConnectionId,
    /// When it connected (epoch ms).
    pub connected_at_ms: i64,
    /// The browser's `Origin` header (none: not a browser).
    pub origin: Option<String>,
    /// Where it comes from (`requestContext.identity.sourceIp`; none in a hand-made event).
    pub address: Option<SourceAddress>,
    /// What the handshake asks for.
    pub handshake: Handshake,
    /// Whether the client offered the `wschat` subprotocol (then the answer must select it).
    pub offers_subprotocol: bool,
    /// Who the authorizer verified the user to be (none: `AUTH_MODE=open`, or no authorizer ran).
    pub verified: Option<Verified>,
}

/// A verified user, as the authorizer carries it to every event of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The token's `sub`.
    pub uid: Uid,
    /// The name from the token.
    pub name: DisplayName,
    /// When the token expires (epoch seconds).
    pub expires_at: i64,
}

impl Verified {
    /// The verified user in an authorizer context, when it holds one whole.
    fn from_context(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Option<Self> {
        let context = |key: &str| ctx.authorizer.fields.get(key);
        let text = |key: &str| context(key).and_then(|v| v.as_str());
        let expires_at = context(AUTHORIZER_EXPIRES_KEY).and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })?;
        Some(Self {
            uid: Uid::parse(text(AUTHORIZER_UID_KEY)?)?,
            name: DisplayName::parse_normalized(text(AUTHORIZER_NAME_KEY)?).ok()?,
            expires_at,
        })
    }
}

impl TryFrom<&ApiGatewayWebsocketProxyRequest> for Connecting {
    type Error = HandlerError;

    fn try_from(event: &ApiGatewayWebsocketProxyRequest) -> Result<Self, HandlerError> {
        let query = &event.query_string_parameters;
        Ok(Self {
            conn: connection_id(&event.request_context)?,
            connected_at_ms: event.request_context.connected_at,
            origin: event
                .headers
                .get("origin")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            address: source_address(&event.request_context),
            handshake: Handshake::parse(|key| query.first(key)),
            offers_subprotocol: transport::offers_subprotocol(
                event
                    .headers
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok()),
            ),
            verified: Verified::from_context(&event.request_context),
        })
    }
}

/// Who sent an event of an open connection: its `requestContext` and the context the authorizer attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The connection.
    pub conn: ConnectionId,
    /// The room the authorizer carried from the handshake (none: no authorizer ran).
    pub room: Option<RoomName>,
    /// The display name the authorizer carried (none: anonymous, or no authorizer).
    pub name: Option<DisplayName>,
    /// When the connection was opened (epoch ms).
    pub connected_at_ms: i64,
    /// The event's time in epoch ms: API Gateway's clock, or this machine's when the event has none.
    pub time_ms: i64,
    /// API Gateway's id of this message (`messageId`; message events only).
    pub message_id: Option<String>,
    /// Where the connection comes from (`requestContext.identity.sourceIp`), for the logs and the address limits.
    pub address: Option<SourceAddress>,
    /// The verified user (`AUTH_MODE=oidc`); then [`Caller::name`] is theirs.
    pub verified: Option<Verified>,
}

impl TryFrom<&ApiGatewayWebsocketProxyRequestContext> for Caller {
    type Error = HandlerError;

    fn try_from(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Result<Self, HandlerError> {
        let context = |key: &str| ctx.authorizer.fields.get(key).and_then(|v| v.as_str());
        Ok(Self {
            conn: connection_id(ctx)?,
            room: context(AUTHORIZER_ROOM_KEY).and_then(|r| RoomName::parse(r).ok()),
            name: context(AUTHORIZER_NAME_KEY).and_then(|n| DisplayName::parse_normalized(n).ok()),
            connected_at_ms: ctx.connected_at,
            time_ms: if ctx.request_time_epoch > 0 {
                ctx.request_time_epoch
            } else {
                super::now_ms()
            },
            message_id: ctx.message_id.clone(),
            address: source_address(ctx),
            verified: Verified::from_context(ctx),
        })
    }
}

/// A `$default` event: who sent it, and its frame as parsed (a frame that does not parse is answered to its
/// sender, so the reason travels with it).
#[derive(Debug)]
pub struct Message {
    /// The sender.
    pub caller: Caller,
    /// The frame.
    pub frame: Result<ClientFrame, FrameError>,
}

impl TryFrom<&ApiGatewayWebsocketProxyRequest> for Message {
    type Error = HandlerError;

    fn try_from(event: &ApiGatewayWebsocketProxyRequest) -> Result<Self, HandlerError> {
        Ok(Self {
            caller: Caller::try_from(&event.request_context)?,
            frame: ClientFrame::parse(event.body.as_deref(), event.is_base64_encoded),
        })
    }
}

/// A `$disconnect` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving {
    /// The connection that closed.
    pub caller: Caller,
    /// The WebSocket close code API Gateway reports (`disconnectStatusCode`).
    pub status: Option<i64>,
}

impl TryFrom<&ApiGatewayWebsocketProxyRequest> for Leaving {
    type Error = HandlerError;

    fn try_from(event: &ApiGatewayWebsocketProxyRequest) -> Result<Self, HandlerError> {
        Ok(Self {
            caller: Caller::try_from(&event.request_context)?,
            status: event.request_context.disconnect_status_code,
        })
    }
}

/// The address the connection comes from, when the event says (API Gateway's always do).
fn source_address(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Option<SourceAddress> {
    ctx.identity
        .source_ip
        .as_deref()
        .and_then(SourceAddress::parse)
}

/// The connection an event is about; an event without one is not one API Gateway would send.
fn connection_id(
    ctx: &ApiGatewayWebsocketProxyRequestContext,
) -> Result<ConnectionId, HandlerError> {
    let raw = ctx
        .connection_id
        .as_deref()
        .ok_or(ConnectionIdError::Missing)?;
    Ok(ConnectionId::parse(raw)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::fixtures;

    #[test]
    fn a_handshake_without_a_name_is_anonymous_and_a_bad_name_is_kept_as_its_reason() {
        let parse = |room: Option<&'static str>, name: Option<&'static str>| {
            Handshake::parse(move |key| match key {
                "room" => room,
                "name" => name,
                _ => None,
            })
        };

        let anonymous = parse(Some("lobby"), None);
        let named = parse(Some("lobby"), Some(" Zoë "));
        let bad = parse(None, Some("a\u{200B}b"));

        assert_eq!(anonymous.room, RoomName::parse("lobby"));
        assert_eq!(anonymous.name, Ok(None));
        assert_eq!(
            named.name,
            Ok(Some(DisplayName::parse("Zoë").expect("name")))
        );
        assert_eq!(bad.room, Err(RoomNameError::Missing));
        assert_eq!(bad.name, Err(DisplayNameError::BadCharacter('\u{200B}')));
    }

    #[test]
    fn a_caller_is_read_from_the_request_context_and_the_authorizer_context() {
        let mut event = fixtures::message("c1", "{}", Some("lobby"));
        event
            .request_context
            .authorizer
            .fields
            .insert("name".to_owned(), json!("Ann"));
        event.request_context.message_id = Some("m-1".to_owned());

        let caller = Caller::try_from(&event.request_context).expect("a caller");

        assert_eq!(caller.conn, ConnectionId::parse("c1").expect("id"));
        assert_eq!(caller.room, RoomName::parse("lobby").ok());
        assert_eq!(caller.name, DisplayName::parse("Ann").ok());
        assert_eq!((caller.connected_at_ms, caller.time_ms), (1_000, 100_000));
        assert_eq!(caller.message_id.as_deref(), Some("m-1"));
        assert_eq!(caller.address, SourceAddress::parse("127.0.0.1"));
    }

    #[test]
    fn an_event_without_a_connection_id_is_a_malformed_event() {
        let mut event = fixtures::message("c1", "{}", None);
        event.request_context.connection_id = None;

        let err = Message::try_from(&event).expect_err("no connection id");

        assert_eq!(err.kind(), "MalformedEvent");
    }
}
