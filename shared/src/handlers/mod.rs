//! One pure `handle(&event, &deps)` per API Gateway route, shared by the Lambda functions, the emulator and the
//! tests. A client's mistake is an `Ok` response with a 4xx status (on `$connect` that status rejects the
//! handshake) and a `warn!`; an infrastructure failure is an `Err`, so the Lambda runtime logs it and the error
//! metric counts it.

pub mod authorize;
pub mod connect;
pub mod default;
pub mod disconnect;

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
    ApiGatewayWebsocketProxyRequestContext,
};
use aws_lambda_events::encodings::Body;

use crate::rooms::{Departed, RoomStore, StoreError};
use crate::wire::{ConnectionId, ConnectionIdError, DisplayName, RoomName};

/// The key under which the authorizer puts the room in its context (`requestContext.authorizer.room`).
pub const AUTHORIZER_ROOM_KEY: &str = "room";

/// The key under which the authorizer puts the sender's display name in its context.
pub const AUTHORIZER_NAME_KEY: &str = "name";

/// How `$connect` and `$disconnect` tell presence watchers about joins and leaves: the Management API client and
/// the fan-out tuning. Without one (no `WS_MANAGEMENT_ENDPOINT`), joins and leaves are not announced.
#[derive(Clone)]
pub struct Announcer {
    /// Where the events are posted.
    pub gateway: std::sync::Arc<dyn crate::gateway::Gateway>,
    /// Concurrency of the posts.
    pub settings: crate::fanout::FanoutSettings,
}

impl Announcer {
    /// Tells `watchers` of `room` one presence event ([`crate::fanout::announce`]).
    pub async fn tell(
        &self,
        rooms: &dyn RoomStore,
        room: &RoomName,
        watchers: &[ConnectionId],
        frame: bytes::Bytes,
    ) {
        crate::fanout::announce(
            self.gateway.as_ref(),
            rooms,
            room,
            watchers,
            frame,
            &self.settings,
        )
        .await;
    }

    /// Tells the watchers of `departed.room` who left ([`crate::fanout::announce_departures`]).
    pub async fn departures(&self, rooms: &dyn RoomStore, departed: &Departed) {
        crate::fanout::announce_departures(self.gateway.as_ref(), rooms, departed, &self.settings)
            .await;
    }
}

/// An infrastructure failure inside a handler.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The room store failed.
    #[error("room store failed")]
    Store(#[from] StoreError),
    /// The event is not one API Gateway would send (no connection id).
    #[error("malformed event")]
    BadEvent(#[from] ConnectionIdError),
}

impl HandlerError {
    /// A short, stable name for the kind of failure (the Lambda `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(_) => "RoomStoreError",
            Self::BadEvent(_) => "MalformedEvent",
        }
    }
}

/// A route's handler bound to its dependencies: each route's `Deps` implements it by calling its module's
/// `handle`. The Lambda mains serve one (`lambda::serve`, feature `lambda`) and the emulator dispatches to them by name.
#[async_trait::async_trait]
pub trait Route: Send + Sync {
    /// Handles one event of this route; `deadline` is when the invocation must be done (the Lambda's).
    ///
    /// # Errors
    /// [`HandlerError`] for an infrastructure failure.
    async fn handle(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError>;
}

/// An error and all its sources on one line (`a: b: c`), for logs and Lambda error messages.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A proxy response with `status` and an optional text body.
pub fn response(status: i64, body: Option<&str>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(|b| Body::Text(b.to_owned()));
    r
}

/// The connection the event is about.
///
/// # Errors
/// [`HandlerError::BadEvent`] when the event has no usable `requestContext.connectionId`.
pub fn connection_id(
    ctx: &ApiGatewayWebsocketProxyRequestContext,
) -> Result<ConnectionId, HandlerError> {
    let raw = ctx
        .connection_id
        .as_deref()
        .ok_or(ConnectionIdError::Missing)?;
    Ok(ConnectionId::parse(raw)?)
}

/// The room the authorizer attached to this connection's events, if an authorizer ran on `$connect`.
pub fn authorizer_room(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Option<RoomName> {
    let raw = ctx.authorizer.fields.get(AUTHORIZER_ROOM_KEY)?.as_str()?;
    RoomName::parse(raw).ok()
}

/// The display name the authorizer context carries (none: an anonymous connection, or no authorizer).
pub fn authorizer_name(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Option<DisplayName> {
    let raw = ctx.authorizer.fields.get(AUTHORIZER_NAME_KEY)?.as_str()?;
    DisplayName::parse(raw).ok()
}

/// The event's time in epoch milliseconds (API Gateway's clock), or this machine's when the event has none.
pub fn event_time_ms(ctx: &ApiGatewayWebsocketProxyRequestContext) -> i64 {
    if ctx.request_time_epoch > 0 {
        ctx.request_time_epoch
    } else {
        now_ms()
    }
}

/// This machine's clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Events shaped like the ones in `shared/tests/fixtures/`, built in code for the unit tests.

    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
    use serde_json::json;

    pub fn connect(
        conn: &str,
        query: serde_json::Value,
        headers: serde_json::Value,
    ) -> ApiGatewayWebsocketProxyRequest {
        serde_json::from_value(json!({
            "headers": headers,
            "queryStringParameters": query,
            "requestContext": context(conn, "$connect", "CONNECT"),
            "isBase64Encoded": false
        }))
        .expect("connect fixture deserializes")
    }

    pub fn message(
        conn: &str,
        body: &str,
        room_context: Option<&str>,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut ctx = context(conn, "$default", "MESSAGE");
        if let Some(room) = room_context {
            ctx["authorizer"] = json!({ "room": room, "principalId": conn });
        }
        serde_json::from_value(
            json!({ "requestContext": ctx, "body": body, "isBase64Encoded": false }),
        )
        .expect("message fixture deserializes")
    }

    pub fn disconnect(conn: &str) -> ApiGatewayWebsocketProxyRequest {
        serde_json::from_value(json!({
            "headers": { "Host": "example.com" },
            "requestContext": context(conn, "$disconnect", "DISCONNECT"),
            "isBase64Encoded": false
        }))
        .expect("disconnect fixture deserializes")
    }

    fn context(conn: &str, route: &str, event_type: &str) -> serde_json::Value {
        json!({
            "routeKey": route, "eventType": event_type, "connectionId": conn, "messageDirection": "IN",
            "connectedAt": 1_000, "requestTimeEpoch": 100_000, "stage": "local", "apiId": "local",
            "domainName": "127.0.0.1:3000", "requestId": "r", "identity": { "sourceIp": "127.0.0.1" }
        })
    }
}
