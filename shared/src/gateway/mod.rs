//! Pushing frames to connections, and closing them: API Gateway's Management API (`POST` and `DELETE`
//! `/@connections/{id}`) behind a trait.
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

/// Pushes one frame to one live connection (API Gateway PostToConnection), or closes it (DeleteConnection).
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

    /// Closes `conn`: the client is disconnected and API Gateway runs `$disconnect`.
    ///
    /// # Errors
    /// [`GatewayError`] as for a post; [`GatewayError::Gone`] when the connection is closed already.
    async fn delete_connection(&self, conn: &ConnectionId) -> Result<(), GatewayError>;

    /// Opens what the first post will need (a client's connection and its TLS handshake) ahead of it, at cold
    /// start, so the first message is not the one that pays for it. Nothing to do by default.
    async fn warm(&self) {}
}

/// What went wrong with one Management API call, classified the way the fan-out must react to it.
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
    #[error("the Management API call failed")]
    Other(#[source] BoxError),
}

impl GatewayError {
    /// The error a Management API answer with `status` stands for (`said`: what the service said, for 403 and the
    /// rest); `None` for a success.
    pub fn from_status(status: u16, said: impl FnOnce() -> BoxError) -> Option<Self> {
        Some(match status {
            200..=299 => return None,
            410 => Self::Gone,
            429 => Self::Throttled,
            413 => Self::PayloadTooLarge,
            403 => Self::Forbidden(said()),
            _ => Self::Other(said()),
        })
    }
}
