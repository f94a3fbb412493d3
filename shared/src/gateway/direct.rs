//! PostToConnection (and DeleteConnection) with the SDK's own signer over one keep-alive HTTP client ([`crate::signed`]), without the SDK
//! client's per-call machinery: the functions' gateway (docs/benchmark.md, "Where the CPU goes" has the profile that
//! justifies it). It behaves as the SDK adapter (`AwsGateway`, feature `sdk`) does, and the same tests hold both
//! to it: the endpoint is the stage URL, `/@connections/{id}` is appended with the id percent-encoded as a path segment, errors are
//! classified by status (410, 429, 403, 413), and nothing is retried here ([`crate::fanout`] retries 429).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{BoxError, Gateway, GatewayError};
use crate::signed::SignedClient;
use crate::wire::ConnectionId;

/// How long one PostToConnection may take before it counts as failed (as the SDK adapter's operation timeout).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// What a connection id keeps unescaped in the path: RFC 3986 unreserved characters (the SDK escapes `=` too).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path of `conn`'s `@connections` resource under the stage URL: `/@connections/{id}`, the id escaped as one
/// path segment.
pub fn connection_path(conn: &ConnectionId) -> String {
    format!(
        "/@connections/{}",
        utf8_percent_encode(conn.as_str(), PATH_SEGMENT)
    )
}

/// [`Gateway`] posting straight to the Management API.
#[derive(Debug, Clone)]
pub struct DirectGateway {
    client: SignedClient,
    /// The stage URL without a trailing slash.
    endpoint: String,
}

impl DirectGateway {
    /// A gateway for `endpoint` with the region and credentials Lambda puts in the environment.
    pub fn from_env(endpoint: &str) -> Self {
        Self::with_client(endpoint, SignedClient::from_env(OPERATION_TIMEOUT))
    }

    /// A gateway for a local emulator: fixed dummy credentials and region, no environment read.
    pub fn local(endpoint: &str) -> Self {
        Self::with_client(endpoint, SignedClient::local(OPERATION_TIMEOUT))
    }

    fn with_client(endpoint: &str, client: SignedClient) -> Self {
        Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        }
    }
}

impl DirectGateway {
    /// One signed call to `conn`'s `@connections` resource, classified by its status.
    async fn call(
        &self,
        method: &str,
        conn: &ConnectionId,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(), GatewayError> {
        let uri = format!("{}{}", self.endpoint, connection_path(conn));
        let answer = self
            .client
            .send("execute-api", method, &uri, headers, body)
            .await
            .map_err(GatewayError::Other)?;
        match GatewayError::from_status(answer.status, || said(answer.status, &answer.body)) {
            None => Ok(()),
            Some(err) => Err(err),
        }
    }
}

#[async_trait]
impl Gateway for DirectGateway {
    async fn post_to_connection(
        &self,
        conn: &ConnectionId,
        data: Bytes,
    ) -> Result<(), GatewayError> {
        self.call(
            "POST",
            conn,
            &[("content-type", "application/octet-stream")],
            data,
        )
        .await
    }

    async fn delete_connection(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        self.call("DELETE", conn, &[], Bytes::new()).await
    }

    /// One GetConnection of a connection that does not exist: its answer (410, or 403 where the role may only
    /// post) is dropped, and the keep-alive connection, TLS handshake done, stays in the pool for the first post.
    async fn warm(&self) {
        let uri = format!("{}/@connections/{WARM_UP_ID}", self.endpoint);
        match self
            .client
            .send("execute-api", "GET", &uri, &[], Bytes::new())
            .await
        {
            Ok(answer) => {
                tracing::debug!(status = answer.status, "Management API connection opened")
            }
            Err(err) => {
                let err: &dyn std::error::Error = err.as_ref();
                tracing::warn!(
                    error = err,
                    "could not open a Management API connection ahead of the first post"
                );
            }
        }
    }
}

/// The connection id the warm-up asks for: one API Gateway never gives (its ids end in `=`).
const WARM_UP_ID: &str = "wschat-warm-up";

/// An error naming the status and what the service said.
fn said(status: u16, body: &[u8]) -> BoxError {
    format!(
        "the Management API answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    )
    .into()
}
