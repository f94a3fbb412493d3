//! The emulator's own endpoints, under `/_emulator/` (extensions for tests and debugging; API Gateway has none):
//!
//! | call | answer |
//! |---|---|
//! | `GET /_emulator/` | the emulator's page: connections by room, messages per second, the cost meter, the fault switches, recent events, the functions' metrics |
//! | `GET /_emulator/connections` | the live connections, oldest first: id, `connectedAt`, query string, authorizer context |
//! | `GET /_emulator/metrics` | what AWS would bill so far ([`crate::meter`]) |
//! | `GET /_emulator/faults` | the fault switches ([`crate::faults`]) |
//! | `POST /_emulator/faults` | changes the switches it names, expires connections, answers with all switches |
//! | `GET /_emulator/events?after=N` | the recent events numbered after `N` ([`crate::activity`]) |
//! | `GET /_emulator/emf` | in process: the functions' metrics, their totals and latest Embedded Metric Format lines (404 in Lambda mode) |
//!
//! A `POST` here must be JSON and not come from another origin ([`crate::guard`]).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

use crate::faults::Change;
use crate::state::{AppState, Control};

/// The `/_emulator/*` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/_emulator",
            get(|| async { Redirect::permanent("/_emulator/") }),
        )
        .route("/_emulator/", get(page_html))
        .route("/_emulator/page.js", get(page_js))
        .route("/_emulator/page.css", get(page_css))
        .route("/_emulator/events", get(events))
        .route("/_emulator/emf", get(emf))
        .route("/_emulator/connections", get(connections))
        .route("/_emulator/metrics", get(metrics))
        .route("/_emulator/faults", get(show_faults).post(change_faults))
}

/// The page's files, built into the binary.
const PAGE_HTML: &str = include_str!("../page/index.html");
const PAGE_JS: &str = include_str!("../page/page.js");
const PAGE_CSS: &str = include_str!("../page/page.css");

/// The page may load its own files and fetch from here, nothing else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                        img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

async fn page_html() -> Response {
    page_file("text/html; charset=utf-8", PAGE_HTML)
}

async fn page_js() -> Response {
    page_file("text/javascript; charset=utf-8", PAGE_JS)
}

async fn page_css() -> Response {
    page_file("text/css; charset=utf-8", PAGE_CSS)
}

#[derive(serde::Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

/// `GET /_emulator/events?after=N`.
async fn events(State(state): State<AppState>, Query(after): Query<After>) -> Response {
    Json(json!({ "events": state.activity.since(after.after) })).into_response()
}

/// `GET /_emulator/emf`: the in-process functions' metrics; 404 when the functions run elsewhere.
async fn emf(State(state): State<AppState>) -> Response {
    match state.backend.emf() {
        Some(log) => Json(log.snapshot()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "the functions run in Lambda mode: their metrics are in their own logs" })),
        )
            .into_response(),
    }
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
