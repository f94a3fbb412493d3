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
use chat_shared::wire::MAX_POST_BYTES;
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

fn aws_error(status: StatusCode, error_type: &str, message: Option<&str>) -> Response {
    (
        status,
        [
            ("x-amzn-ErrorType", error_type),
            (header::CONTENT_TYPE.as_str(), "application/json"),
        ],
        Json(json!({ "message": message })),
    )
        .into_response()
}

fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", None)
}

/// Checks shared by the three calls; `Err` is the response to return.
async fn admit(
    state: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<String, Response> {
    let faults = state.faults();
    let latency = Duration::from_millis(faults.post_latency_ms)
        + Duration::from_millis(faults.post_jitter_ms).mul_f64(fastrand::f64());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    if !signed {
        return Err(aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            Some("Missing Authentication Token"),
        ));
    }
    if params
        .get("stage")
        .is_some_and(|stage| *stage != state.options.stage)
    {
        return Err(aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            Some("Forbidden"),
        ));
    }
    if Faults::roll(faults.throttle_rate) {
        return Err(aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            Some("Rate exceeded"),
        ));
    }
    // A live connection answered 410 as if it were stale (a fault switched on at run time).
    if Faults::roll(faults.gone_rate) {
        return Err(gone());
    }
    params.get("id").cloned().ok_or_else(gone)
}

/// Admits the call, lets `answer` produce the response for the connection id, and logs one line, like API
/// Gateway's execution log.
async fn managed(
    state: &AppState,
    method: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    bytes: usize,
    answer: impl FnOnce(&str) -> Response,
) -> Response {
    let response = match admit(state, params, headers).await {
        Ok(id) => answer(&id),
        Err(response) => response,
    };
    let connection = params.get("id").map_or("", String::as_str);
    info!(target: "apigw", method, connection, bytes, status = response.status().as_u16(), "@connections");
    response
}

async fn post_to_connection(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    managed(&state, "POST", &params, &headers, body.len(), |id| {
        if body.is_empty() {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                Some("Invalid request body"),
            );
        }
        if body.len() > MAX_POST_BYTES {
            return aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeException",
                Some("Request entity too large"),
            );
        }
        let Some(tx) = state
            .connections()
            .get(id)
            .filter(|handle| Instant::now() >= handle.postable_at)
            .map(|handle| handle.outbound.clone())
        else {
            return gone();
        };
        let bytes = body.len();
        let frame = match axum::extract::ws::Utf8Bytes::try_from(body.clone()) {
            Ok(text) => Outbound::Text(text),
            Err(_) => Outbound::Binary(body),
        };
        match tx.try_send(frame) {
            Ok(()) => {
                state.meter.sent(bytes);
                StatusCode::OK.into_response()
            }
            // The client is not reading fast enough: AWS's "client side buffer is full".
            Err(TrySendError::Full(_)) => aws_error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                Some("Rate exceeded"),
            ),
            Err(TrySendError::Closed(_)) => gone(),
        }
    })
    .await
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
        info.map_or_else(gone, |body| Json(body).into_response())
    })
    .await
}

async fn delete_connection(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    managed(&state, "DELETE", &params, &headers, 0, |id| {
        let control = state
            .connections()
            .get(id)
            .map(|handle| handle.control.clone());
        match control {
            Some(tx)
                if tx
                    .try_send(Control::Close {
                        code: 1000,
                        reason: "Connection deleted",
                    })
                    .is_ok() =>
            {
                StatusCode::NO_CONTENT.into_response()
            }
            _ => gone(),
        }
    })
    .await
}

/// `GET /_emulator/connections`: the live connections (an emulator extension for tests and debugging).
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let mut list: Vec<_> = state
        .connections()
        .values()
        .map(|handle| {
            let query: serde_json::Map<String, serde_json::Value> = handle
                .query
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "connectionId": handle.info.connection_id,
                "connectedAt": handle.info.connected_at,
                "queryString": query,
                "authorizer": handle.info.authorizer,
            })
        })
        .collect();
    list.sort_by_key(|c| c["connectedAt"].as_i64());
    Json(list).into_response()
}
