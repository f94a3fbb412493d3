//! The Management API, `/@connections/{id}`, answered the way AWS answers it:
//!
//! | call | success | errors |
//! |---|---|---|
//! | `POST` (PostToConnection) | 200, frame sent | 400 empty body, 403, 410 unknown or closed id, 413 over 128 KB, 429 |
//! | `GET` (GetConnection) | 200 `{connectedAt, identity, lastActiveAt}` | 403, 410, 429 |
//! | `DELETE` (DeleteConnection) | 204, socket closed, `$disconnect` runs | 403, 410, 429 |
//!
//! Errors carry `x-amzn-ErrorType` and a JSON `message`, which is what the AWS SDKs read. Unsigned calls and
//! calls to another stage get 403, as on AWS. The fault switches ([`crate::faults`]) add latency and answer a
//! share of calls 429 or 410, at run time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bytes::Bytes;
use chat_shared::gateway::{Gateway, GatewayError};
use chat_shared::wire::{ConnectionId, MAX_POST_BYTES};
use serde_json::json;
use tokio::sync::mpsc::error::TrySendError;
use tracing::info;

use crate::faults::Faults;
use crate::state::{AppState, Control, Outbound};
use crate::timefmt::iso8601;

pub(crate) fn routes() -> MethodRouter<AppState> {
    post(post_to_connection)
        .get(get_connection)
        .delete(delete_connection)
}

/// Why the gateway refused a Management API call: the status, AWS's error type and message. The HTTP route
/// answers it as AWS does; the in-process gateway ([`LocalGateway`]) turns it into the [`GatewayError`] the
/// functions' client would have made of that answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    status: StatusCode,
    error_type: &'static str,
    message: Option<&'static str>,
}

impl Refusal {
    const GONE: Self = Self::new(StatusCode::GONE, "GoneException", None);
    const THROTTLED: Self = Self::new(
        StatusCode::TOO_MANY_REQUESTS,
        "LimitExceededException",
        Some("Rate exceeded"),
    );

    const fn new(
        status: StatusCode,
        error_type: &'static str,
        message: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            error_type,
            message,
        }
    }

    fn forbidden(message: &'static str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "ForbiddenException", Some(message))
    }

    /// The HTTP answer AWS gives.
    fn into_response(self) -> Response {
        (
            self.status,
            [
                ("x-amzn-ErrorType", self.error_type),
                (header::CONTENT_TYPE.as_str(), "application/json"),
            ],
            Json(json!({ "message": self.message })),
        )
            .into_response()
    }

    /// What the functions' Management API client makes of that answer ([`chat_shared::gateway::DirectGateway`]).
    fn into_gateway_error(self) -> GatewayError {
        match self.status {
            StatusCode::GONE => GatewayError::Gone,
            StatusCode::TOO_MANY_REQUESTS => GatewayError::Throttled,
            StatusCode::PAYLOAD_TOO_LARGE => GatewayError::PayloadTooLarge,
            StatusCode::FORBIDDEN => GatewayError::Forbidden(self.to_string().into()),
            _ => GatewayError::Other(self.to_string().into()),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the Management API answered {} {}: {}",
            self.status.as_u16(),
            self.error_type,
            self.message.unwrap_or("")
        )
    }
}

/// What every call to connection `id` meets before its own work, signed or not: the fault switches' latency,
/// 429s and 410s.
async fn faults(state: &AppState, id: Option<&str>) -> Result<(), Refusal> {
    let faults = state.faults();
    let latency = Duration::from_millis(faults.post_latency_ms)
        + Duration::from_millis(faults.post_jitter_ms).mul_f64(fastrand::f64());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if Faults::roll(faults.throttle_rate)
        || id.is_some_and(|id| faults.throttle_connections.iter().any(|t| t == id))
    {
        return Err(Refusal::THROTTLED);
    }
    // A live connection answered 410 as if it were stale (a fault switched on at run time).
    if Faults::roll(faults.gone_rate) {
        return Err(Refusal::GONE);
    }
    Ok(())
}

/// Checks of an HTTP call: signed, for this stage, then the fault switches. `Ok` is the connection id.
async fn admit<'p>(
    state: &AppState,
    params: &'p HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<&'p str, Refusal> {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    if !signed {
        return Err(Refusal::forbidden("Missing Authentication Token"));
    }
    if params
        .get("stage")
        .is_some_and(|stage| *stage != state.options.stage)
    {
        return Err(Refusal::forbidden("Forbidden"));
    }
    let id = params.get("id").map(String::as_str);
    faults(state, id).await?;
    id.ok_or(Refusal::GONE)
}

/// One line per call, like API Gateway's execution log; a call that failed is also a recent event on the page.
fn log(state: &AppState, method: &str, connection: &str, bytes: usize, status: StatusCode) {
    info!(target: "apigw", method, connection, bytes, status = status.as_u16(), "@connections");
    if !status.is_success() {
        state.activity.record(serde_json::json!({
            "kind": "@connections",
            "method": method,
            "connection": connection,
            "status": status.as_u16(),
        }));
    }
}

/// Admits the HTTP call, lets `answer` produce the response for the connection id, and logs it.
async fn managed(
    state: &AppState,
    method: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    bytes: usize,
    answer: impl FnOnce(&str) -> Response,
) -> Response {
    let response = match admit(state, params, headers).await {
        Ok(id) => answer(id),
        Err(refusal) => refusal.into_response(),
    };
    let connection = params.get("id").map_or("", String::as_str);
    log(state, method, connection, bytes, response.status());
    response
}

/// PostToConnection once the call is admitted: the frame is queued for the socket, or the refusal AWS gives.
fn deliver(state: &AppState, id: &str, body: Bytes) -> Result<(), Refusal> {
    if body.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            Some("Invalid request body"),
        ));
    }
    if body.len() > MAX_POST_BYTES {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            Some("Request entity too large"),
        ));
    }
    let tx = state
        .connections()
        .get(id)
        .filter(|handle| Instant::now() >= handle.postable_at)
        .map(|handle| handle.outbound.clone())
        .ok_or(Refusal::GONE)?;
    let bytes = body.len();
    // A `Bytes` clone is a reference count.
    let frame = match axum::extract::ws::Utf8Bytes::try_from(body.clone()) {
        Ok(text) => Outbound::Text(text),
        Err(_) => Outbound::Binary(body),
    };
    match tx.try_send(frame) {
        Ok(()) => {
            state.meter.sent(bytes);
            Ok(())
        }
        // The client is not reading fast enough: AWS's "client side buffer is full".
        Err(TrySendError::Full(_)) => Err(Refusal::THROTTLED),
        Err(TrySendError::Closed(_)) => Err(Refusal::GONE),
    }
}

async fn post_to_connection(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bytes = body.len();
    managed(&state, "POST", &params, &headers, bytes, |id| {
        deliver(&state, id, body)
            .map_or_else(Refusal::into_response, |()| StatusCode::OK.into_response())
    })
    .await
}

/// The functions' [`Gateway`] when they run in this process: PostToConnection without the HTTP round trip,
/// through the same checks, fault switches, limits, meter and log line as `POST /@connections/{id}`, answering
/// what [`chat_shared::gateway::DirectGateway`] would make of the HTTP answer. The signature and stage checks are
/// the only ones it has no use for: the caller is this process. (`--posts http` keeps the HTTP path.)
#[derive(Default)]
pub(crate) struct LocalGateway {
    /// The emulator it posts to.
    pub(crate) state: crate::state::Later,
}

#[async_trait::async_trait]
impl Gateway for LocalGateway {
    async fn post_to_connection(
        &self,
        conn: &ConnectionId,
        data: Bytes,
    ) -> Result<(), GatewayError> {
        let Some(state) = self.state.get() else {
            return Err(GatewayError::Other("the emulator is not running".into()));
        };
        let bytes = data.len();
        let result = faults(&state, Some(conn.as_str()))
            .await
            .and_then(|()| deliver(&state, conn.as_str(), data));
        let status = result
            .as_ref()
            .map_or_else(|r| r.status, |()| StatusCode::OK);
        log(&state, "POST", conn.as_str(), bytes, status);
        result.map_err(Refusal::into_gateway_error)
    }

    async fn delete_connection(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        let Some(state) = self.state.get() else {
            return Err(GatewayError::Other("the emulator is not running".into()));
        };
        let result = faults(&state, Some(conn.as_str()))
            .await
            .and_then(|()| close(&state, conn.as_str()));
        let status = result
            .as_ref()
            .map_or_else(|r| r.status, |()| StatusCode::NO_CONTENT);
        log(&state, "DELETE", conn.as_str(), 0, status);
        result.map_err(Refusal::into_gateway_error)
    }
}

async fn get_connection(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    managed(&state, "GET", &params, &headers, 0, |id| {
        let info = state.connections().get(id).map(|handle| {
            json!({
                "connectedAt": iso8601(handle.info.connected_at),
                "identity": { "sourceIp": handle.info.source_ip, "userAgent": handle.info.user_agent },
                "lastActiveAt": iso8601(handle.last_active_at.load(Ordering::Relaxed)),
            })
        });
        info.map_or_else(
            || Refusal::GONE.into_response(),
            |body| Json(body).into_response(),
        )
    })
    .await
}

/// DeleteConnection once the call is admitted: the socket is closed (1000, as on AWS), and `$disconnect` runs.
fn close(state: &AppState, id: &str) -> Result<(), Refusal> {
    let control = state
        .connections()
        .get(id)
        .map(|handle| handle.control.clone())
        .ok_or(Refusal::GONE)?;
    control
        .try_send(Control::Close {
            code: 1000,
            reason: "Connection deleted",
        })
        .map_err(|_| Refusal::GONE)?;
    state.meter.deleted();
    Ok(())
}

async fn delete_connection(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    managed(&state, "DELETE", &params, &headers, 0, |id| {
        close(&state, id).map_or_else(Refusal::into_response, |()| {
            StatusCode::NO_CONTENT.into_response()
        })
    })
    .await
}
