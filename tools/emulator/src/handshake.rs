//! The WebSocket handshake as API Gateway runs it: the `$connect` authorizer and `$connect` itself run **before**
//! the upgrade is accepted, and a non-2xx `$connect` rejects it with that status. Accepted, the connection is
//! registered (postable after [`crate::Options::open_delay`]) and handed to [`crate::socket::run`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use axum::extract::ws::WebSocketUpgrade;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_shared::wire::{MAX_FRAME_BYTES, MAX_POST_BYTES};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::backend::InvokeError;
use crate::events::{self, ConnectionInfo};
use crate::integration::{Failure, disconnect, invoke};
use crate::state::{AppState, Handle, NewConnection, OUTBOUND_BUFFER};
use crate::timefmt::now_ms;
use chat_shared::handlers::HandlerError;

/// Runs the authorizer and `$connect` before accepting; rejects with their status, or upgrades.
pub(crate) async fn handshake(
    state: AppState,
    upgrade: WebSocketUpgrade,
    parts: &Parts,
    peer: SocketAddr,
) -> Response {
    let recorder = state.clone();
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let room = query
        .iter()
        .find_map(|(key, value)| (key == "room").then(|| value.clone()));
    let response = answer(state, upgrade, parts, peer, query).await;
    recorder.activity.record(serde_json::json!({
        "kind": "handshake",
        "room": room,
        "status": response.status().as_u16(),
    }));
    response
}

/// The handshake's answer (`query`: its query string, parsed): 101 and a socket, or the status that refused it.
async fn answer(
    state: AppState,
    upgrade: WebSocketUpgrade,
    parts: &Parts,
    peer: SocketAddr,
    query: Vec<(String, String)>,
) -> Response {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((header_case(name.as_str()), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let now = now_ms();
    let mut info = ConnectionInfo {
        connection_id: events::random_id(11),
        connected_at: now,
        source_ip: source_ip(&parts.headers, peer, state.options.trust_forwarded_for),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        domain_name: parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_owned(),
        stage: state.options.stage.clone(),
        authorizer: None,
    };
    let conn = info.connection_id.clone();

    if let Some(function) = state
        .options
        .routes
        .authorizer
        .as_deref()
        .filter(|_| state.options.authorizer)
    {
        let event = events::authorizer(&info, &headers, &query, now);
        match authorize(&state, function, event).await {
            Ok(context) => info.authorizer = Some(context),
            Err(status) => {
                info!(target: "apigw", connection = %conn, route = "$connect", status = status.as_u16(), "authorizer rejected the handshake");
                state
                    .meter
                    .refused("authorizer", u64::from(status.as_u16()), &info.source_ip);
                return status.into_response();
            }
        }
    }

    let Some(function) = state.options.routes.function_for("$connect") else {
        // No $connect route: API Gateway accepts every handshake.
        return accept(state, upgrade, info, query, None);
    };
    let started = Instant::now();
    let result = invoke(
        &state,
        function,
        events::connect(&info, &headers, &query, now),
    )
    .await;
    let ms = started.elapsed().as_millis();
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            let status = match err {
                Failure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                Failure::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let err: &dyn std::error::Error = &err;
            warn!(target: "apigw", connection = %conn, route = "$connect", function, ms, error = err, status = status.as_u16(), "integration failed");
            return status.into_response();
        }
    };
    let status = response
        .get("statusCode")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    info!(target: "apigw", connection = %conn, route = "$connect", function, status, ms, "event");
    if !(200..300).contains(&status) {
        state.meter.refused("$connect", status, &info.source_ip);
        // API Gateway rejects the handshake with the integration's status and no body.
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok());
        return status
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let protocol = response
        .pointer("/headers/Sec-WebSocket-Protocol")
        .or_else(|| response.pointer("/headers/sec-websocket-protocol"))
        .and_then(Value::as_str)
        .and_then(|p| HeaderValue::from_str(p).ok());
    accept(state, upgrade, info, query, protocol)
}

/// Calls the authorizer: its context on Allow, 403 on Deny, 401 on "Unauthorized", 500 on failure.
async fn authorize(
    state: &AppState,
    function: &str,
    event: Value,
) -> Result<Map<String, Value>, StatusCode> {
    let response = match invoke(state, function, event).await {
        Ok(response) => response,
        // Lambda's errorMessage "Unauthorized" (in process: the handler error that the runtime reports so).
        Err(Failure::Failed(InvokeError::Function { error_message, .. }))
            if error_message == "Unauthorized" =>
        {
            return Err(StatusCode::UNAUTHORIZED);
        }
        Err(Failure::Failed(InvokeError::Handler(HandlerError::Unauthorized))) => {
            return Err(StatusCode::UNAUTHORIZED);
        }
        Err(err) => {
            let err: &dyn std::error::Error = &err;
            warn!(target: "apigw", function, error = err, "authorizer failed: 500");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if serde_json::to_vec(&response).map_or(0, |r| r.len()) > MAX_AUTHORIZER_RESULT_BYTES {
        warn!(target: "apigw", function, "authorizer result over 8 KB: 500");
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let allowed = response
        .pointer("/policyDocument/Statement")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            !s.is_empty()
                && s.iter()
                    .all(|st| st.get("Effect").and_then(Value::as_str) == Some("Allow"))
        });
    if !allowed {
        return Err(StatusCode::FORBIDDEN);
    }
    let mut context = match response.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context_as_delivered(context).map_err(|key| {
            warn!(target: "apigw", function, key, "authorizer context value is not a string, number or boolean: 500");
            StatusCode::INTERNAL_SERVER_ERROR
        })?,
        Some(_) => {
            warn!(target: "apigw", function, "authorizer context is not an object: 500");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if let Some(principal) = response.get("principalId") {
        context.insert("principalId".to_owned(), principal.clone());
    }
    Ok(context)
}

/// API Gateway's limit on what an authorizer returns.
const MAX_AUTHORIZER_RESULT_BYTES: usize = 8 * 1024;

/// The authorizer context as later events carry it: API Gateway accepts only string, number and boolean values
/// (an object, array or null makes the authorizer's answer invalid: the handshake fails with 500) and passes
/// every value on as a string. `Err` names the first key whose value is refused.
fn context_as_delivered(context: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    context
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(key.clone()),
            };
            Ok((key.clone(), Value::String(text)))
        })
        .collect()
}

fn accept(
    state: AppState,
    upgrade: WebSocketUpgrade,
    info: ConnectionInfo,
    query: Vec<(String, String)>,
    protocol: Option<HeaderValue>,
) -> Response {
    let (outbound_tx, outbound) = mpsc::channel(OUTBOUND_BUFFER);
    let (control_tx, control) = mpsc::channel(4);
    let last_active_at = Arc::new(AtomicI64::new(info.connected_at));
    let handle = Handle {
        info: info.clone(),
        query,
        outbound: outbound_tx,
        control: control_tx,
        last_active_at: last_active_at.clone(),
        postable_at: Instant::now() + state.options.open_delay,
        accepted: state
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    };
    // Registered now: once $connect has returned 2xx the connection exists for GET /@connections; posts get 410
    // until `postable_at`, as on AWS right after $connect.
    state
        .connections()
        .insert(info.connection_id.clone(), handle);
    // API Gateway's limits: frames of at most 32 KB, and a message of at most 128 KB in as many frames as it
    // takes. Past either, the read fails and `run` closes with 1009.
    let mut upgrade = upgrade
        .max_message_size(MAX_POST_BYTES)
        .max_frame_size(MAX_FRAME_BYTES);
    if let Some(protocol) = protocol {
        upgrade.set_selected_protocol(protocol);
    }
    let new = NewConnection {
        info,
        outbound,
        control,
    };
    let failed_state = state.clone();
    let failed_info = new.info.clone();
    upgrade
        .on_failed_upgrade(move |_| {
            // $connect already joined the room: a handshake that dies now still owes a $disconnect.
            failed_state
                .connections()
                .remove(&failed_info.connection_id);
            tokio::spawn(async move {
                disconnect(&failed_state, &failed_info, 1006, "Going away").await
            });
        })
        .on_upgrade(move |socket| crate::socket::run(state, socket, new, last_active_at))
}

/// The handshake's source address: the TCP peer's, or, when trusted, the first address of `X-Forwarded-For`.
fn source_ip(headers: &HeaderMap, peer: SocketAddr, trust_forwarded_for: bool) -> String {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse::<std::net::IpAddr>().ok())
        .filter(|_| trust_forwarded_for);
    forwarded.unwrap_or(peer.ip()).to_string()
}

/// Query parameters, percent-decoded (`+` is a space), in order.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// `sec-websocket-key` → `Sec-WebSocket-Key`: HTTP/1 names arrive lower-cased; API Gateway passes the client's
/// spelling, which for browsers is the canonical one.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "websocket" => "WebSocket".to_owned(),
            _ => {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        assert_eq!(
            parse_query("room=%EB%A1%9C%EB%B9%84&x=a+b&flag"),
            vec![
                ("room".to_owned(), "로비".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn the_source_address_comes_from_x_forwarded_for_only_when_trusted() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
        );

        assert_eq!(source_ip(&headers, peer, true), "203.0.113.7");
        assert_eq!(source_ip(&headers, peer, false), "127.0.0.1");
        headers.insert("x-forwarded-for", HeaderValue::from_static("not an ip"));
        assert_eq!(source_ip(&headers, peer, true), "127.0.0.1");
    }

    #[test]
    fn header_names_get_their_canonical_case() {
        assert_eq!(header_case("sec-websocket-key"), "Sec-WebSocket-Key");
        assert_eq!(header_case("origin"), "Origin");
        assert_eq!(header_case("x-forwarded-for"), "X-Forwarded-For");
    }
}
