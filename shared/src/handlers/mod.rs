//! One pure `handle(typed event, &deps)` per API Gateway route, shared by the Lambda functions, the emulator and
//! the tests. Each event is parsed first, at the edge, into the typed value its handler takes ([`events`]).
//! A client's mistake is an `Ok` response with a 4xx status (on `$connect` that status rejects the handshake)
//! and a `warn!`; an infrastructure failure is an `Err`, so the Lambda runtime logs it and the error metric
//! counts it (`$default` answers even those to the sender instead: see [`default`]).

pub mod authorize;
pub mod connect;
pub mod default;
pub mod disconnect;
pub mod events;
pub mod fanout;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;

use crate::rooms::StoreError;
use crate::wire::{ConnectionIdError, RoomNameError};

/// An infrastructure failure inside a handler.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The room store failed.
    #[error("room store failed")]
    Store(#[from] StoreError),
    /// The event is not one API Gateway would send (no connection id).
    #[error("malformed event")]
    BadEvent(#[from] ConnectionIdError),
    /// A fan-out shard names no valid room: not an event `ws-default` could have sent.
    #[error("malformed fan-out shard")]
    BadShard(#[from] RoomNameError),
    /// The handshake's token is missing or bad: exactly this message makes API Gateway answer 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// The issuer's signing keys cannot be fetched: the handshake fails with 500, not the client's fault.
    #[error("cannot verify tokens")]
    AuthKeys(#[source] crate::auth::AuthError),
}

impl HandlerError {
    /// A short, stable name for the kind of failure (the Lambda `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(_) => "RoomStoreError",
            Self::BadEvent(_) | Self::BadShard(_) => "MalformedEvent",
            Self::Unauthorized => "Unauthorized",
            Self::AuthKeys(_) => "AuthKeysUnavailable",
        }
    }
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
