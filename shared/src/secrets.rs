//! The Redis URL from AWS Secrets Manager (`REDIS_URL_SECRET_ARN`), read once at cold start. Beside
//! [`crate::gateway::aws`], the only code that sees the AWS SDK.
//!
//! The URL may hold a password: it is never logged, and no error here carries it.

use std::time::Duration;

use aws_sdk_secretsmanager::config::BehaviorVersion;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tracing::info;

/// How long reading the secret may take at cold start. A function in a VPC without a route to Secrets Manager (no
/// NAT, no interface endpoint) would otherwise hang until its own timeout.
const SECRET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a secret's value cannot be used. Never carries the value itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// GetSecretValue failed (no permission, no such secret, no route to Secrets Manager, timeout, ...).
    #[error("GetSecretValue failed")]
    Fetch(#[source] Box<SdkError<GetSecretValueError>>),
    /// The secret holds binary data, not a SecretString.
    #[error("the secret has no SecretString")]
    NoString,
    /// The SecretString is not a URL (for example the JSON of a key/value secret).
    #[error("the SecretString is not a URL: store the bare redis:// or rediss:// URL")]
    NotAUrl,
}

/// The URL stored in the secret `arn`, read with the environment's credentials and region (the function's role).
///
/// # Errors
/// [`SecretError`] when the secret cannot be read or is not a URL.
pub async fn read_url(arn: &str) -> Result<String, SecretError> {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let client = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(SECRET_TIMEOUT)
                    .build(),
            )
            .build(),
    );
    url_from_secret(&client, arn).await
}

/// GetSecretValue on `arn` through `client`, checked to be a URL; the value is never logged.
async fn url_from_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, SecretError> {
    info!(arn, "reading the Redis URL from Secrets Manager");
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch(Box::new(e)))?;
    let url = output.secret_string().ok_or(SecretError::NoString)?.trim();
    if !url.contains("://") {
        return Err(SecretError::NotAUrl);
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_secretsmanager::config::retry::RetryConfig;
    use aws_sdk_secretsmanager::config::{Credentials, Region};
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    use super::*;
    use crate::handlers::error_chain;

    /// What the fake received: the `X-Amz-Target` header and the body of each request.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A Secrets Manager stand-in on a free port that answers every request with `status` and `body`, and a client
    /// pointed at it.
    async fn fake_secrets_manager(
        status: u16,
        body: &'static str,
    ) -> (aws_sdk_secretsmanager::Client, Seen) {
        let seen = Seen::default();
        let answer = move |State(seen): State<Seen>, headers: HeaderMap, request: String| async move {
            let target = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            seen.lock().expect("lock").push((target, request));
            (
                StatusCode::from_u16(status).expect("status"),
                [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
                body,
            )
                .into_response()
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(answer))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .build();
        (aws_sdk_secretsmanager::Client::from_conf(config), seen)
    }

    #[tokio::test]
    async fn the_secret_string_becomes_the_redis_url() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/redis-AbCdEf";
        let body = r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/redis-AbCdEf","Name":"wschat/redis","SecretString":"rediss://default:p%40ss@cache.example:6379\n","VersionId":"v1"}"#;
        let (client, seen) = fake_secrets_manager(200, body).await;

        let url = url_from_secret(&client, arn).await.expect("secret read");

        assert_eq!(url, "rediss://default:p%40ss@cache.example:6379");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "secretsmanager.GetSecretValue");
        assert!(seen[0].1.contains(arn), "{seen:?}");
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_keeps_the_cause() {
        let body = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;
        let (client, _) = fake_secrets_manager(400, body).await;

        let err = url_from_secret(&client, "arn:aws:secretsmanager:eu-west-1:1:secret:gone")
            .await
            .expect_err("no such secret");

        assert!(matches!(&err, SecretError::Fetch(_)), "{err:?}");
        let chain = error_chain(&err);
        assert!(chain.contains("ResourceNotFoundException"), "{chain}");
    }

    #[tokio::test]
    async fn a_secret_that_is_not_a_url_is_refused_without_showing_it() {
        let body = r#"{"Name":"wschat/redis","SecretString":"{\"password\":\"hunter2\"}"}"#;
        let (client, _) = fake_secrets_manager(200, body).await;

        let err = url_from_secret(&client, "arn:aws:secretsmanager:eu-west-1:1:secret:json")
            .await
            .expect_err("JSON, not a URL");

        assert!(matches!(err, SecretError::NotAUrl), "{err:?}");
        let shown = format!("{} {err:?}", error_chain(&err));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn a_secret_without_a_string_is_refused() {
        let body = r#"{"Name":"wschat/redis","SecretBinary":"aGVsbG8="}"#;
        let (client, _) = fake_secrets_manager(200, body).await;

        let err = url_from_secret(&client, "arn:aws:secretsmanager:eu-west-1:1:secret:bin")
            .await
            .expect_err("binary secret");

        assert!(matches!(err, SecretError::NoString), "{err:?}");
    }
}
