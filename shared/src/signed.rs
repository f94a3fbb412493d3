//! AWS API requests signed with the SDK's own SigV4 signer (`aws-sigv4`), over one keep-alive HTTP/1.1 client
//! ([`crate::http_client`], rustls on ring), with the credentials Lambda puts in the
//! environment. Used for every AWS call the functions make: PostToConnection ([`crate::gateway::direct`]), Invoke
//! of `ws-fanout` ([`crate::invoke`]) and, at cold start, GetSecretValue ([`crate::secrets`]).
//!
//! Why not the SDK clients: their per-call machinery (interceptors, retry and identity-resolution layers,
//! endpoint resolution, serializers, a copy of the body) costs several times what signing and HTTP cost together
//! (docs/benchmark.md, "Where the CPU goes"), and the SDK with `aws-config`'s provider chain (SSO, STS, IMDS, ECS, profiles)
//! is most of a function binary's size. Lambda always provides `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN` and `AWS_REGION` to a function, and refreshes them with the execution environment.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SigningInstructions, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;

use crate::http_client::HttpClient;
pub use crate::http_client::{Answer, BoxError};

/// The most an AWS answer may weigh here: Lambda's limit for a synchronous invocation's answer (6 MB); the
/// Management API and Secrets Manager answer far less.
const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024;

/// A client that signs requests for one region with one identity.
#[derive(Clone)]
pub struct SignedClient {
    client: HttpClient,
    region: Arc<str>,
    identity: Identity,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SignedClient {
    /// The region and credentials of the environment (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`), as Lambda sets them.
    pub fn from_env(timeout: Duration) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credentials = Credentials::new(
            var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        Self::new(&region, credentials, timeout)
    }

    /// A client for a local emulator: fixed dummy credentials and region, no environment read.
    pub fn local(timeout: Duration) -> Self {
        let credentials = Credentials::new("local", "local", None, None, "wschat-local");
        Self::new("us-east-1", credentials, timeout)
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The same client signing for `region` (a call to another region's endpoint must be signed for it).
    #[must_use]
    pub fn in_region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    /// A client for `region` signing with `credentials`.
    pub fn new(region: &str, credentials: Credentials, timeout: Duration) -> Self {
        Self {
            client: HttpClient::new(timeout, MAX_ANSWER_BYTES),
            region: region.into(),
            identity: credentials.into(),
        }
    }

    /// The headers SigV4 adds to `method uri` with `headers` and `body` for `service`, signed now (`x-amz-date`,
    /// `authorization`, and `x-amz-security-token` with session credentials): what [`Self::send`] adds, for a
    /// caller that writes its own request (the load tool's floor).
    ///
    /// # Errors
    /// When the request cannot be signed (a header or the URI the signer refuses).
    pub fn signature_headers(
        &self,
        service: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, BoxError> {
        let (headers, _query) = self.sign(service, method, uri, headers, body)?.into_parts();
        Ok(headers
            .into_iter()
            .map(|header| (header.name(), header.value().to_owned()))
            .collect())
    }

    fn sign(
        &self,
        service: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<SigningInstructions, BoxError> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            method,
            uri,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )?;
        let (instructions, _signature) = sign(signable, &params)?.into_parts();
        Ok(instructions)
    }

    /// Signs `method uri` with `headers` and `body` for `service`, sends it, and reads the answer.
    ///
    /// # Errors
    /// When the request cannot be signed or sent, or no answer comes within the timeout.
    pub async fn send(
        &self,
        service: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, BoxError> {
        let instructions = self.sign(service, method, uri, headers, &body)?;
        let uri: http::Uri = uri.parse()?;
        let (signature, _query) = instructions.into_parts();
        let mut all = Vec::with_capacity(headers.len() + signature.len());
        all.extend_from_slice(headers);
        all.extend(signature.iter().map(|h| (h.name(), h.value())));
        Ok(self.client.send(method, &uri, &all, &body).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> SignedClient {
        let credentials = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        SignedClient::new("eu-west-1", credentials, Duration::from_secs(5))
    }

    #[test]
    fn signature_headers_scope_the_signature_and_carry_the_session_token() {
        let uri = "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections/a%3D";
        let content_type = [("content-type", "application/octet-stream")];

        let headers = client()
            .signature_headers("execute-api", "POST", uri, &content_type, b"{}")
            .expect("signed");

        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        let date = value("x-amz-date");
        assert_eq!(value("x-amz-security-token"), "token");
        let authorization = value("authorization");
        assert!(
            authorization.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential=AKID/{}/eu-west-1/execute-api/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=",
                &date[..8]
            )),
            "{authorization}"
        );
    }
}
