//! The emulator's own endpoints, under `/_emulator/` (extensions for tests and debugging; API Gateway has none):
//!
//! | call | answer |
//! |---|---|
//! | `GET /_emulator/connections` | the live connections, oldest first: id, `connectedAt`, query string, authorizer context |
//! | `GET /_emulator/metrics` | what AWS would bill so far ([`crate::meter`]) |
//! | `GET /_emulator/faults` | the fault switches ([`crate::faults`]) |
//! | `POST /_emulator/faults` | changes the switches it names, expires connections, answers with all switches |

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::faults::Change;
use crate::state::{AppState, Control};

/// The `/_emulator/*` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_emulator/connections", get(connections))
        .route("/_emulator/metrics", get(metrics))
        .route("/_emulator/faults", get(show_faults).post(change_faults))
}

/// `GET /_emulator/connections`.
async fn connections(State(state): State<AppState>) -> Response {
    let mut handles: Vec<_> = state
        .connections()
        .values()
        .map(|handle| {
            let query: serde_json::Map<String, serde_json::Value> = handle
                .query
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            let listed = json!({
                "connectionId": handle.info.connection_id,
                "connectedAt": handle.info.connected_at,
                "queryString": query,
                "authorizer": handle.info.authorizer,
            });
            (handle.accepted, listed)
        })
        .collect();
    // Oldest first, by the order of acceptance: two handshakes of the same millisecond still have one.
    handles.sort_by_key(|(accepted, _)| *accepted);
    let list: Vec<_> = handles.into_iter().map(|(_, listed)| listed).collect();
    Json(list).into_response()
}

/// `GET /_emulator/metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    Json(state.metrics().await).into_response()
}

/// `GET /_emulator/faults`.
async fn show_faults(State(state): State<AppState>) -> Response {
    Json(state.faults()).into_response()
}

/// `POST /_emulator/faults`: a bad body or a rate outside 0–1 is a 400 that changes nothing; `expire` of an id
/// that is not live is a 404.
async fn change_faults(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let change: Change = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(err) => return bad_request(&format!("not a faults object: {err}")),
    };
    let next = match state.faults().changed(&change) {
        Ok(next) => next,
        Err(reason) => return bad_request(&reason),
    };
    let expired = match change.expire.as_deref() {
        None => 0,
        Some(which) => {
            let expired = expire(&state, which);
            if expired == 0 && which != "all" {
                return (
                    StatusCode::NOT_FOUND,
                    Json(json!({ "error": format!("no live connection {which}") })),
                )
                    .into_response();
            }
            expired
        }
    };
    tracing::info!(target: "apigw", faults = ?next, expired, "faults changed");
    state.set_faults(next.clone());
    let mut answer = serde_json::to_value(next).unwrap_or_default();
    answer["expired"] = json!(expired);
    Json(answer).into_response()
}

/// Closes connection `which` (or `all`) with 1001, as the 2-hour cap does; how many were closed.
fn expire(state: &AppState, which: &str) -> usize {
    let connections = state.connections();
    let mut expired = 0;
    for (id, handle) in connections.iter() {
        if which == "all" || which == id {
            let close = Control::Close {
                code: 1001,
                reason: "Going away",
            };
            expired += usize::from(handle.control.try_send(close).is_ok());
        }
    }
    expired
}

fn bad_request(reason: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": reason }))).into_response()
}
