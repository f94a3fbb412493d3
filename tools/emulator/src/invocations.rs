//! Lambda's asynchronous invocation, played locally: how `ws-default` hands the shards of a big room to
//! `ws-fanout`. Lambda queues an `Event` invocation, answers 202, and runs it; so does the emulator, through the
//! same backend as every other invocation (in process, or `cargo lambda watch`), metered and listed among the
//! recent events.
//!
//! * Lambda mode: the functions' Invoke API client (`AWS_ENDPOINT_URL_LAMBDA` pointed here) calls
//!   `POST /2015-03-31/functions/{name}/invocations` with `X-Amz-Invocation-Type: Event`, signed: 202.
//!   Any other invocation type is a 400: the functions invoke nothing synchronously.
//! * In process: [`LocalInvoker`] queues the same invocation without the HTTP round trip.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use chat_shared::invoke::{InvokeError, Invoker, MAX_ASYNC_PAYLOAD_BYTES};
use serde_json::{Value, json};

use crate::state::AppState;

/// `/2015-03-31/functions/{name}/invocations`.
pub(crate) fn routes() -> MethodRouter<AppState> {
    post(invoke)
}

async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    if !signed {
        return refuse(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    }
    let event_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    if event_type != "Event" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "the emulator's Invoke API takes asynchronous (Event) invocations only",
        );
    }
    match queue(&state, &name, &body) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(InvokeError::TooLarge(_)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            "Request must be smaller than 262144 bytes for the InvokeAsync operation",
        ),
        Err(_) => refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        ),
    }
}

fn refuse(status: StatusCode, kind: &'static str, message: &'static str) -> Response {
    (
        status,
        [("x-amzn-errortype", kind)],
        axum::Json(json!({ "Type": "User", "message": message })),
    )
        .into_response()
}

/// Queues `function` with `event` (JSON) and returns at once, as Lambda does: the invocation runs in a task of its
/// own, metered and listed like every other.
fn queue(state: &AppState, function: &str, event: &[u8]) -> Result<(), InvokeError> {
    if event.len() > MAX_ASYNC_PAYLOAD_BYTES {
        return Err(InvokeError::TooLarge(event.len()));
    }
    let event: Value =
        serde_json::from_slice(event).map_err(|err| InvokeError::Unreachable(Box::new(err)))?;
    let (state, function) = (state.clone(), function.to_owned());
    tokio::spawn(async move {
        if let Err(err) = crate::integration::invoke(&state, &function, event).await {
            let err: &dyn std::error::Error = &err;
            tracing::warn!(target: "apigw", function, error = err, "asynchronous invocation failed");
        }
    });
    Ok(())
}

/// The in-process functions' [`Invoker`]: the emulator's own queue, without the HTTP round trip.
#[derive(Default)]
pub(crate) struct LocalInvoker {
    /// The emulator it queues into.
    pub(crate) state: crate::state::Later,
}

#[async_trait]
impl Invoker for LocalInvoker {
    async fn invoke_async(&self, function: &str, event: bytes::Bytes) -> Result<(), InvokeError> {
        let Some(state) = self.state.get() else {
            return Err(InvokeError::Unreachable(
                "the emulator is not running".into(),
            ));
        };
        queue(&state, function, &event)
    }
}
