//! The Lambda mode's backend: invoke real function binaries through the Lambda Invoke API that
//! `cargo lambda watch` serves, `POST {base}/2015-03-31/functions/{name}/invocations` with the event as the body.
//! A function error comes back as HTTP 200 with `X-Amz-Function-Error` (AWS) or as a 5xx (`cargo lambda`),
//! with `{"errorType", "errorMessage"}` in the body.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::backend::{Backend, InvokeError};

/// Invokes functions over the Lambda Invoke API.
#[derive(Clone)]
pub struct LambdaInvoke {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Invocations in flight at once, over all functions (a reserved-concurrency stand-in).
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Invocations the emulator keeps in flight at once in Lambda mode. `cargo lambda watch` (1.9) stalls when a
/// couple of hundred invocations arrive together (measured: 200 overlapping chat messages, none answered within
/// 8 s); AWS would run them in parallel sandboxes up to the function's reserved concurrency. The rest wait here.
const MAX_INVOCATIONS_IN_FLIGHT: usize = 32;

impl LambdaInvoke {
    /// A backend for the Invoke API at `base` (e.g. `http://127.0.0.1:9000`).
    ///
    /// # Errors
    /// When `base` is not an `http://` URL.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://"),
            "the Lambda invoke URL must start with http:// (got {base})"
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            base,
            client,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_INVOCATIONS_IN_FLIGHT)),
        })
    }
}

#[async_trait]
impl Backend for LambdaInvoke {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        // Never closed: the semaphore lives as long as the backend.
        let _permit = self.in_flight.acquire().await;
        let uri = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
        let request = hyper::Request::post(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&event)?)))
            .map_err(|e| InvokeError::Transport(Box::new(e)))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| InvokeError::Transport(Box::new(e)))?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| InvokeError::Transport(Box::new(e)))?
            .to_bytes();
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)?
        };
        if status == hyper::StatusCode::NOT_FOUND {
            return Err(InvokeError::UnknownFunction(function.to_owned()));
        }
        if function_error || !status.is_success() {
            let field = |name: &str| {
                value
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Err(InvokeError::Function {
                error_type: field("errorType"),
                error_message: field("errorMessage"),
            });
        }
        Ok(value)
    }
}
