//! Integrations as API Gateway calls them: each invocation metered and waited for at most the integration
//! timeout; a text frame routed by `$request.body.action`; `$disconnect` when a socket ends. A failed message
//! integration pushes API Gateway's own error frame to the sender.

use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use serde_json::Value;
use tracing::{info, warn};

use crate::backend::InvokeError;
use crate::events::{self, ConnectionInfo};
use crate::faults::Faults;
use crate::state::{AppState, Outbound};
use crate::timefmt::now_ms;

/// Why the gateway got no answer from an integration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
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
pub(crate) async fn invoke(
    state: &AppState,
    function: &str,
    event: Value,
) -> Result<Value, Failure> {
    let (task_state, name) = (state.clone(), function.to_owned());
    let connection = event
        .pointer("/requestContext/connectionId")
        .cloned()
        .unwrap_or(Value::Null);
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let result = task_state.backend.invoke(&name, event).await;
        let elapsed = started.elapsed();
        let spec = task_state.options.routes.spec(&name);
        task_state.meter.invoked(&name, spec, elapsed);
        task_state.activity.record(serde_json::json!({
            "kind": "invoke",
            "function": name,
            "connection": connection,
            "status": outcome(&result),
            "ms": elapsed.as_secs_f64() * 1000.0,
        }));
        result
    });
    match tokio::time::timeout(state.options.integration_timeout, task).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(panicked)) => Err(InvokeError::Transport(Box::new(panicked)).into()),
        Err(_) => Err(Failure::TimedOut),
    }
}

/// What an invocation answered, in a word: its `statusCode`, an authorizer's effect, or `error`.
fn outcome(result: &Result<Value, InvokeError>) -> Value {
    match result {
        Ok(response) => response
            .get("statusCode")
            .cloned()
            .or_else(|| {
                response
                    .pointer("/policyDocument/Statement/0/Effect")
                    .cloned()
            })
            .unwrap_or_else(|| Value::from(200)),
        Err(InvokeError::Function { error_type, .. }) => Value::String(error_type.clone()),
        Err(_) => Value::from("error"),
    }
}

/// Sends the `$disconnect` event, if the API has that route (and the fault switches do not drop it).
pub(crate) async fn disconnect(state: &AppState, info: &ConnectionInfo, code: u16, reason: &str) {
    if Faults::roll(state.faults().drop_disconnect_rate) {
        info!(target: "apigw", connection = %info.connection_id, route = "$disconnect", "dropped (fault switch)");
        return;
    }
    if let Some(function) = state.options.routes.function_for("$disconnect") {
        let event = events::disconnect(info, code, reason, now_ms());
        let _ = invoke_logged(state, info, "$disconnect", function, event).await;
    }
}

/// A text frame: select the route with `$request.body.action`, invoke its function. A failed invocation is
/// logged and the socket stays open, as on API Gateway.
pub(crate) async fn on_text(state: &AppState, info: &ConnectionInfo, body: &str, now: i64) {
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
    if let Err(failure) = invoke_logged(state, info, route, function, event).await {
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

/// Invokes `function` and logs one line; an answer of 4xx or 5xx is counted as a refusal of the connection's
/// address by the cost meter.
async fn invoke_logged(
    state: &AppState,
    info: &ConnectionInfo,
    route: &str,
    function: &str,
    event: Value,
) -> Result<(), Failure> {
    let conn = &info.connection_id;
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
            if status >= 400 {
                state.meter.refused(route, status, &info.source_ip);
            }
            Ok(())
        }
        Err(err) => {
            let error: &dyn std::error::Error = &err;
            warn!(target: "apigw", connection = %conn, route, function, ms, error, "integration failed");
            Err(err)
        }
    }
}
