//! One WebSocket connection, from handshake to `$disconnect`, as API Gateway runs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_shared::wire::{MAX_FRAME_BYTES, MAX_POST_BYTES};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::backend::InvokeError;
use crate::events::{self, ConnectionInfo};
use crate::faults::Faults;
use crate::state::{AppState, Control, Handle, NewConnection, OUTBOUND_BUFFER, Outbound};
use crate::timefmt::now_ms;

/// Runs the authorizer and `$connect` before accepting; rejects with their status, or upgrades.
pub(crate) async fn handshake(
    state: AppState,
    upgrade: WebSocketUpgrade,
    parts: &Parts,
    peer: SocketAddr,
) -> Response {
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((header_case(name.as_str()), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let now = now_ms();
    let mut info = ConnectionInfo {
        connection_id: events::random_id(11),
        connected_at: now,
        source_ip: peer.ip().to_string(),
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
        Err(Failure::Failed(InvokeError::Function { error_message, .. }))
            if error_message == "Unauthorized" =>
        {
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
/// Frames written to a client with one flush, at most (a fair share of the writer's time for other sockets).
const WRITE_BATCH: usize = 64;

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

/// Why the gateway got no answer from an integration.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The function failed or could not be invoked.
    #[error(transparent)]
    Failed(#[from] InvokeError),
    /// No answer within the integration timeout.
    #[error("the integration timed out")]
    TimedOut,
}

/// Invokes `function` as API Gateway does: metered, and waited for at most the integration timeout. The
/// invocation runs in a task of its own, so a timed-out function runs on (and is billed) as a Lambda does after
/// API Gateway stopped waiting.
async fn invoke(state: &AppState, function: &str, event: Value) -> Result<Value, Failure> {
    let (task_state, name) = (state.clone(), function.to_owned());
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let result = task_state.backend.invoke(&name, event).await;
        let spec = task_state.options.routes.spec(&name);
        task_state.meter.invoked(&name, spec, started.elapsed());
        result
    });
    match tokio::time::timeout(state.options.integration_timeout, task).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(panicked)) => Err(InvokeError::Transport(Box::new(panicked)).into()),
        Err(_) => Err(Failure::TimedOut),
    }
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
        .on_upgrade(move |socket| run(state, socket, new, last_active_at))
}

/// Why a connection ended: the code and reason `$disconnect` reports, and whether the gateway must send the
/// close frame (it ended the connection) or the client already did.
struct Ending {
    code: u16,
    reason: String,
    gateway_closes: bool,
}

async fn run(
    state: AppState,
    socket: WebSocket,
    new: NewConnection,
    last_active_at: Arc<AtomicI64>,
) {
    let NewConnection {
        info,
        mut outbound,
        mut control,
    } = new;
    let conn = info.connection_id.clone();
    let opened = Instant::now();
    state.meter.opened();
    let (mut sink, mut stream) = socket.split();
    let (close_tx, mut close_rx) = mpsc::channel::<CloseFrame>(1);
    // When the gateway last sent the client a frame ([`crate::Options::idle_reset_on_send`]).
    let last_sent_at = Arc::new(AtomicI64::new(info.connected_at));
    // Only read with the option on: without it the writer need not look at the clock for every frame.
    let sent_at = state
        .options
        .idle_reset_on_send
        .then(|| last_sent_at.clone());

    // The writer owns the sink: frames from PostToConnection, then at most one close frame.
    let writer = tokio::spawn(async move {
        let mut outbound_open = true;
        loop {
            tokio::select! {
                // A close order wins over queued frames; the registry dropping its sender must not end the
                // writer before the close frame is out.
                biased;
                close = close_rx.recv() => {
                    if let Some(frame) = close {
                        let _ = sink.send(Message::Close(Some(frame))).await;
                    }
                    break;
                }
                frame = outbound.recv(), if outbound_open => {
                    let Some(frame) = frame else {
                        outbound_open = false;
                        continue;
                    };
                    // The frames already queued behind this one go out in the same write: in a busy room a
                    // client's frames arrive faster than one syscall each would carry them.
                    let mut next = Some(frame);
                    let mut written = 0;
                    let mut failed = false;
                    while let Some(frame) = next.take() {
                        if sink.feed(frame.into_message()).await.is_err() {
                            failed = true;
                            break;
                        }
                        written += 1;
                        if written < WRITE_BATCH {
                            next = outbound.try_recv().ok();
                        }
                    }
                    if failed || sink.flush().await.is_err() {
                        break;
                    }
                    if let Some(sent_at) = &sent_at {
                        sent_at.store(now_ms(), Ordering::Relaxed);
                    }
                }
            }
        }
        let _ = sink.close().await;
    });

    let max_duration = tokio::time::sleep(state.options.max_duration);
    tokio::pin!(max_duration);
    let idle = tokio::time::sleep(state.options.idle_timeout);
    tokio::pin!(idle);
    let ending = loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    state.meter.received(text.len());
                    let now = now_ms();
                    last_active_at.store(now, Ordering::Relaxed);
                    idle.as_mut().reset(tokio::time::Instant::now() + state.options.idle_timeout);
                    // Like API Gateway, one connection's messages are integrations running side by side, not
                    // a queue: two quick messages may finish (and be delivered) in either order.
                    let (state, info) = (state.clone(), info.clone());
                    tokio::spawn(async move { on_text(&state, &info, text.as_str(), now).await });
                }
                Some(Ok(Message::Binary(_))) => {
                    break Ending { code: 1003, reason: "Binary frames are not supported".into(), gateway_closes: true };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| (f.code, f.reason.to_string()));
                    break Ending { code, reason, gateway_closes: false };
                }
                Some(Err(err)) if too_big(&err) => {
                    break Ending { code: 1009, reason: "Message too big".into(), gateway_closes: true };
                }
                Some(Err(_)) | None => break Ending { code: 1006, reason: "Going away".into(), gateway_closes: false },
            },
            () = &mut idle => {
                if state.options.idle_reset_on_send {
                    let idle_ms = i64::try_from(state.options.idle_timeout.as_millis()).unwrap_or(i64::MAX);
                    let left = last_sent_at.load(Ordering::Relaxed).saturating_add(idle_ms) - now_ms();
                    if left > 0 {
                        let left = Duration::from_millis(left.unsigned_abs());
                        idle.as_mut().reset(tokio::time::Instant::now() + left);
                        continue;
                    }
                }
                break Ending { code: 1001, reason: "Going away".into(), gateway_closes: true };
            }
            () = &mut max_duration => break Ending { code: 1001, reason: "Going away".into(), gateway_closes: true },
            order = control.recv() => {
                let (code, reason) = match order {
                    Some(Control::Close { code, reason }) => (code, reason),
                    None => (1001, "Going away"),
                };
                break Ending { code, reason: reason.into(), gateway_closes: true };
            }
        }
    };

    // Gone from the registry first: from here on PostToConnection answers 410, as on AWS.
    state.connections().remove(&conn);
    if ending.gateway_closes {
        let frame = CloseFrame {
            code: ending.code,
            reason: Utf8Bytes::from(ending.reason.as_str()),
        };
        let _ = close_tx.send(frame).await;
    }
    drop(close_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    state.meter.closed(opened.elapsed());

    disconnect(&state, &info, ending.code, &ending.reason).await;
}

/// A read that failed on API Gateway's size limits (a frame over 32 KB, a message over 128 KB).
fn too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if matches!(
            err.downcast_ref::<tungstenite::Error>(),
            Some(tungstenite::Error::Capacity(_))
        ) {
            return true;
        }
        source = err.source();
    }
    false
}

/// Sends the `$disconnect` event, if the API has that route (and the fault switches do not drop it).
async fn disconnect(state: &AppState, info: &ConnectionInfo, code: u16, reason: &str) {
    if Faults::roll(state.faults().drop_disconnect_rate) {
        info!(target: "apigw", connection = %info.connection_id, route = "$disconnect", "dropped (fault switch)");
        return;
    }
    if let Some(function) = state.options.routes.function_for("$disconnect") {
        let event = events::disconnect(info, code, reason, now_ms());
        let _ = invoke_logged(state, &info.connection_id, "$disconnect", function, event).await;
    }
}

/// A text frame: select the route with `$request.body.action`, invoke its function. A failed invocation is
/// logged and the socket stays open, as on API Gateway.
async fn on_text(state: &AppState, info: &ConnectionInfo, body: &str, now: i64) {
    let conn = &info.connection_id;
    let Some(route) = events::select_route(body, state.options.routes.keys()) else {
        warn!(target: "apigw", connection = %conn, "no route matches and there is no $default route");
        return;
    };
    let Some(function) = state.options.routes.function_for(route) else {
        return;
    };
    let event = events::message(info, route, body, now);
    let request_id = event["requestContext"]["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Err(failure) = invoke_logged(state, conn, route, function, event).await {
        // What API Gateway pushes to the sender when a message's integration fails (a Lambda error, a throttle)
        // or times out: the client sees it as an ordinary frame.
        let message = match failure {
            Failure::TimedOut => "Endpoint request timed out",
            Failure::Failed(_) => "Internal server error",
        };
        let frame = serde_json::json!({
            "message": message,
            "connectionId": conn,
            "requestId": request_id,
        })
        .to_string();
        let outbound = state.connections().get(conn).map(|h| h.outbound.clone());
        if let Some(outbound) = outbound {
            state.meter.sent(frame.len());
            let _ = outbound.send(Outbound::Text(Utf8Bytes::from(frame))).await;
        }
    }
}

/// Invokes `function` and logs one line.
async fn invoke_logged(
    state: &AppState,
    conn: &str,
    route: &str,
    function: &str,
    event: Value,
) -> Result<(), Failure> {
    let started = Instant::now();
    let result = invoke(state, function, event).await;
    let ms = started.elapsed().as_millis();
    match result {
        Ok(response) => {
            let status = response
                .get("statusCode")
                .and_then(Value::as_u64)
                .unwrap_or(200);
            info!(target: "apigw", connection = %conn, route, function, status, ms, "event");
            Ok(())
        }
        Err(err) => {
            let error: &dyn std::error::Error = &err;
            warn!(target: "apigw", connection = %conn, route, function, ms, error, "integration failed");
            Err(err)
        }
    }
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
    fn header_names_get_their_canonical_case() {
        assert_eq!(header_case("sec-websocket-key"), "Sec-WebSocket-Key");
        assert_eq!(header_case("origin"), "Origin");
        assert_eq!(header_case("x-forwarded-for"), "X-Forwarded-For");
    }
}
