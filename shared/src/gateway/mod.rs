//! Pushing frames to connections: API Gateway's Management API (`POST /@connections/{id}`) behind a trait.
//!
//! The trait speaks our types: `GatewayError::Gone`, never an SDK error type. [`aws`] posts through the SDK client;
//! [`direct`] posts with the SDK's signer and credentials over one keep-alive HTTP client, without the SDK
//! client's per-call machinery (the functions use it; see its module docs for why); [`recording`] is the fake the
//! unit tests use. With [`crate::secrets`], these are the only modules that see the AWS SDK's crates.

#[cfg(feature = "sdk")]
pub mod aws;
pub mod direct;
pub mod recording;

use async_trait::async_trait;
use bytes::Bytes;

use crate::wire::ConnectionId;

#[cfg(feature = "sdk")]
pub use self::aws::AwsGateway;
pub use self::direct::DirectGateway;
pub use self::recording::RecordingGateway;

/// A boxed error from below the adapter (the SDK, the HTTP stack).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Pushes one frame to one live connection (API Gateway PostToConnection).
#[async_trait]
pub trait Gateway: Send + Sync {
    /// Sends `data` as one text frame to `conn`.
    ///
    /// # Errors
    /// [`GatewayError`] says what API Gateway answered, so the caller can prune, retry or report.
    async fn post_to_connection(
        &self,
        conn: &ConnectionId,
        data: Bytes,
    ) -> Result<(), GatewayError>;
}

/// What went wrong with one PostToConnection, classified the way the fan-out must react to it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 410: the connection no longer exists. Prune it.
    #[error("connection is gone (410)")]
    Gone,
    /// 429: throttled, or the client's buffer is full. Retry with backoff.
    #[error("throttled (429)")]
    Throttled,
    /// 403: wrong endpoint or stage, or no `execute-api:ManageConnections`. A configuration error: never prune.
    #[error(
        "forbidden (403): check the management endpoint's stage and execute-api:ManageConnections"
    )]
    Forbidden(#[source] BoxError),
    /// 413: the payload is over 128 KB.
    #[error("payload too large (413)")]
    PayloadTooLarge,
    /// Anything else: timeouts, connection errors, 5xx.
    #[error("PostToConnection failed")]
    Other(#[source] BoxError),
}
