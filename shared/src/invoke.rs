//! Lambda's asynchronous invocation, behind [`Invoker`]: how `ws-default` hands the shards of a big room's fan-out
//! to further invocations of `ws-fanout` ([`crate::fanout::shards`]). Lambda queues the event and answers 202 at
//! once; the invocation runs on its own (the template tells Lambda not to retry it: a second run would post twice).
//!
//! [`LambdaInvoker`] calls the Invoke API with the SDK's own signer over one keep-alive client ([`crate::signed`]),
//! as the Management API client does: `POST {endpoint}/2015-03-31/functions/{name}/invocations` with
//! `X-Amz-Invocation-Type: Event`. The endpoint is Lambda's own in the function's region, or
//! `AWS_ENDPOINT_URL_LAMBDA` (the SDK's name for it): the emulator's, locally.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::signed::SignedClient;

/// The largest event Lambda accepts for an asynchronous invocation.
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 256 * 1024;

/// How long one Invoke call may take: Lambda answers an `Event` invocation as soon as it is queued.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The variable naming another Invoke API endpoint (the AWS SDKs read the same).
pub const LAMBDA_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_LAMBDA";

/// Why an asynchronous invocation was not queued.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The event is over Lambda's 256 KB limit for asynchronous invocations.
    #[error("the event is {0} bytes, over the 256 KB asynchronous limit")]
    TooLarge(usize),
    /// Lambda refused it (throttled, not allowed, no such function, …).
    #[error("Lambda answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Lambda's message.
        message: String,
    },
    /// Lambda could not be reached.
    #[error("Lambda could not be reached")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Queues one invocation of a function with an event.
#[async_trait]
pub trait Invoker: Send + Sync {
    /// Invokes `function` with `event`, asynchronously: `Ok` once the invocation is queued.
    ///
    /// # Errors
    /// [`InvokeError`] when it was not queued.
    async fn invoke_async(&self, function: &str, event: Bytes) -> Result<(), InvokeError>;
}

/// [`Invoker`] on the Lambda Invoke API.
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: SignedClient,
    endpoint: String,
}

impl LambdaInvoker {
    /// The region's Invoke API, or `AWS_ENDPOINT_URL_LAMBDA`, with the environment's credentials.
    pub fn from_env() -> Self {
        let client = SignedClient::from_env(INVOKE_TIMEOUT);
        let endpoint = std::env::var(LAMBDA_ENDPOINT_VAR)
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| format!("https://lambda.{}.amazonaws.com", client.region()));
        Self::new(client, &endpoint)
    }

    /// The Invoke API at `endpoint`, signed by `client`.
    pub fn new(client: SignedClient, endpoint: &str) -> Self {
        Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        }
    }
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke_async(&self, function: &str, event: Bytes) -> Result<(), InvokeError> {
        if event.len() > MAX_ASYNC_PAYLOAD_BYTES {
            return Err(InvokeError::TooLarge(event.len()));
        }
        let name =
            percent_encoding::utf8_percent_encode(function, percent_encoding::NON_ALPHANUMERIC);
        let uri = format!("{}/2015-03-31/functions/{name}/invocations", self.endpoint);
        let answer = self
            .client
            .send(
                "lambda",
                "POST",
                &uri,
                &[
                    ("content-type", "application/json"),
                    ("x-amz-invocation-type", "Event"),
                ],
                event,
            )
            .await
            .map_err(InvokeError::Unreachable)?;
        if answer.status == 202 {
            return Ok(());
        }
        let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(|m| m.as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        Err(InvokeError::Refused {
            status: answer.status,
            message,
        })
    }
}

/// A fake [`Invoker`] for tests: keeps every invocation, and can refuse them all.
#[derive(Default)]
pub struct RecordingInvoker {
    invoked: Mutex<Vec<(String, Bytes)>>,
    refuse: std::sync::atomic::AtomicBool,
}

impl RecordingInvoker {
    /// Every invocation so far: the function and the event.
    pub fn invoked(&self) -> Vec<(String, Bytes)> {
        self.invoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// From now on, refuses every invocation as a throttled Lambda would (429).
    pub fn refuse_all(&self) {
        self.refuse
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[async_trait]
impl Invoker for RecordingInvoker {
    async fn invoke_async(&self, function: &str, event: Bytes) -> Result<(), InvokeError> {
        if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(InvokeError::Refused {
                status: 429,
                message: "Rate exceeded".into(),
            });
        }
        self.invoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((function.to_owned(), event));
        Ok(())
    }
}
