//! Secrets from AWS Secrets Manager, read once at cold start with one signed `GetSecretValue` call
//! ([`crate::signed`]), so the functions link no second SDK client for a single request: the Redis URL
//! (`REDIS_URL_SECRET_ARN`) and the authorizer's HS256 key (`AUTH_HS256_SECRET_ARN`).
//!
//! A secret's value is never logged, and no error here carries it.

use std::time::Duration;

use bytes::Bytes;
use tracing::info;

use crate::signed::{BoxError, SignedClient};

/// How long reading the secret may take at cold start. A function in a VPC without a route to Secrets Manager (no
/// NAT, no interface endpoint) would otherwise hang until its own timeout.
const SECRET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a secret's value cannot be used. Never carries the value itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// GetSecretValue could not be sent or answered (no route to Secrets Manager, timeout, ...).
    #[error("GetSecretValue failed")]
    Fetch(#[source] BoxError),
    /// Secrets Manager refused (no permission, no such secret, ...): its error type and message.
    #[error("GetSecretValue answered {status}: {kind}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// `__type`, e.g. `ResourceNotFoundException`.
        kind: String,
        /// Its `message`.
        message: String,
    },
    /// The secret holds binary data, not a SecretString.
    #[error("the secret has no SecretString")]
    NoString,
    /// The SecretString is not a URL (for example the JSON of a key/value secret).
    #[error("the SecretString is not a URL: store the bare redis:// or rediss:// URL")]
    NotAUrl,
    /// The SecretString is not `{"username": …, "password": …}`.
    #[error("the SecretString is not a JSON object with a username and a password")]
    NotCredentials,
}

/// A Redis user's name and password, as a secret holds them: `{"username": …, "password": …}`, the shape a
/// generated Secrets Manager secret has. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUser {
    /// The user (an ElastiCache user's `UserName`).
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for RedisUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RedisUser {
    /// Reads `{"username": …, "password": …}` (other members, such as an engine or a host, are ignored).
    ///
    /// # Errors
    /// [`SecretError::NotCredentials`], without repeating the text.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| SecretError::NotCredentials)?;
        let field = |name: &str| {
            value[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or(SecretError::NotCredentials)
        };
        Ok(Self {
            username: field("username")?,
            password: field("password")?,
        })
    }
}

/// The Redis user stored in the secret `arn`, read like [`read_url`].
///
/// # Errors
/// [`SecretError`] when the secret cannot be read or does not hold a username and a password.
pub async fn read_redis_user(arn: &str) -> Result<RedisUser, SecretError> {
    let (client, endpoint) = client_for(arn);
    info!(arn, "reading the Redis user from Secrets Manager");
    RedisUser::parse(&secret_string(&client, &endpoint, arn).await?)
}

/// The URL stored in the secret `arn`, read with the environment's credentials from the environment's region.
///
/// # Errors
/// [`SecretError`] when the secret cannot be read or is not a URL.
pub async fn read_url(arn: &str) -> Result<String, SecretError> {
    let (client, endpoint) = client_for(arn);
    url_from_secret(&client, &endpoint, arn).await
}

/// The SecretString stored in `arn`, whatever it holds, read like [`read_url`].
///
/// # Errors
/// [`SecretError`] when the secret cannot be read or holds no string.
pub async fn read_string(arn: &str) -> Result<String, SecretError> {
    let (client, endpoint) = client_for(arn);
    info!(arn, "reading a secret from Secrets Manager");
    secret_string(&client, &endpoint, arn).await
}

/// A client signing for the secret's own region, and that region's endpoint.
fn client_for(arn: &str) -> (SignedClient, String) {
    let client = SignedClient::from_env(SECRET_TIMEOUT);
    // The secret's own region (an ARN's fourth field) decides the endpoint, and the signature must name it too.
    let client = match arn.split(':').nth(3).filter(|r| !r.is_empty()) {
        Some(region) => client.in_region(region),
        None => client,
    };
    let endpoint = format!("https://secretsmanager.{}.amazonaws.com/", client.region());
    (client, endpoint)
}

/// GetSecretValue on `arn` at `endpoint`, checked to be a URL; the value is never logged.
async fn url_from_secret(
    client: &SignedClient,
    endpoint: &str,
    arn: &str,
) -> Result<String, SecretError> {
    info!(arn, "reading the Redis URL from Secrets Manager");
    let url = secret_string(client, endpoint, arn).await?;
    if !url.contains("://") {
        return Err(SecretError::NotAUrl);
    }
    Ok(url)
}

/// GetSecretValue on `arn` at `endpoint`: its SecretString, trimmed; the value is never logged.
async fn secret_string(
    client: &SignedClient,
    endpoint: &str,
    arn: &str,
) -> Result<String, SecretError> {
    let body = serde_json::json!({ "SecretId": arn }).to_string();
    let answer = client
        .send(
            "secretsmanager",
            "POST",
            endpoint,
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "secretsmanager.GetSecretValue"),
            ],
            Bytes::from(body),
        )
        .await
        .map_err(SecretError::Fetch)?;
    let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if !(200..300).contains(&answer.status) {
        let text = |field: &str| value[field].as_str().unwrap_or_default().to_owned();
        return Err(SecretError::Refused {
            status: answer.status,
            kind: text("__type"),
            message: text("message"),
        });
    }
    let text = value["SecretString"]
        .as_str()
        .ok_or(SecretError::NoString)?
        .trim();
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_credential_types::Credentials;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    use super::*;
    use crate::handlers::error_chain;

    /// What the fake received: the `X-Amz-Target` header, the body and the `Authorization` header of each request.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A Secrets Manager stand-in on a free port that answers every request with `status` and `body`; a client and
    /// the endpoint to point it at.
    async fn fake_secrets_manager(status: u16, body: &'static str) -> (SignedClient, String, Seen) {
        let seen = Seen::default();
        let answer = move |State(seen): State<Seen>, headers: HeaderMap, request: String| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            seen.lock().expect("lock").push((
                header("x-amz-target"),
                request,
                header("authorization"),
            ));
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
        let client = SignedClient::new(
            "eu-west-1",
            Credentials::new("test", "test", None, None, "test"),
            Duration::from_secs(5),
        );
        (client, format!("{endpoint}/"), seen)
    }

    #[tokio::test]
    async fn the_secret_string_becomes_the_redis_url() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/redis-AbCdEf";
        let body = r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/redis-AbCdEf","Name":"wschat/redis","SecretString":"rediss://default:p%40ss@cache.example:6379\n","VersionId":"v1"}"#;
        let (client, endpoint, seen) = fake_secrets_manager(200, body).await;

        let url = url_from_secret(&client, &endpoint, arn)
            .await
            .expect("secret read");

        assert_eq!(url, "rediss://default:p%40ss@cache.example:6379");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "secretsmanager.GetSecretValue");
        assert!(
            seen[0].2.starts_with("AWS4-HMAC-SHA256 Credential=test/"),
            "signed: {seen:?}"
        );
        assert!(seen[0].1.contains(arn), "{seen:?}");
    }

    #[tokio::test]
    async fn any_secret_string_is_read_as_it_is_for_the_authorizer_s_hs256_key() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/hs256-AbCdEf";
        let body = r#"{"Name":"wschat/hs256","SecretString":" a shared key, not a URL \n"}"#;
        let (client, endpoint, seen) = fake_secrets_manager(200, body).await;

        let key = secret_string(&client, &endpoint, arn)
            .await
            .expect("secret read");
        let as_url = url_from_secret(&client, &endpoint, arn).await;

        assert_eq!(key, "a shared key, not a URL");
        assert!(
            matches!(as_url, Err(SecretError::NotAUrl)),
            "the Redis reader still insists on a URL"
        );
        assert_eq!(seen.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_keeps_the_cause() {
        let body = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;
        let (client, endpoint, _) = fake_secrets_manager(400, body).await;

        let err = url_from_secret(
            &client,
            &endpoint,
            "arn:aws:secretsmanager:eu-west-1:1:secret:gone",
        )
        .await
        .expect_err("no such secret");

        assert!(
            matches!(&err, SecretError::Refused { status: 400, .. }),
            "{err:?}"
        );
        let chain = error_chain(&err);
        assert!(chain.contains("ResourceNotFoundException"), "{chain}");
    }

    #[tokio::test]
    async fn a_secret_that_is_not_a_url_is_refused_without_showing_it() {
        let body = r#"{"Name":"wschat/redis","SecretString":"{\"password\":\"hunter2\"}"}"#;
        let (client, endpoint, _) = fake_secrets_manager(200, body).await;

        let err = url_from_secret(
            &client,
            &endpoint,
            "arn:aws:secretsmanager:eu-west-1:1:secret:json",
        )
        .await
        .expect_err("JSON, not a URL");

        assert!(matches!(err, SecretError::NotAUrl), "{err:?}");
        let shown = format!("{} {err:?}", error_chain(&err));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn a_client_moved_to_the_secrets_region_signs_for_that_region() {
        let body = r#"{"SecretString":"redis://cache.example:6379"}"#;
        let (client, endpoint, seen) = fake_secrets_manager(200, body).await;
        let client = client.in_region("ap-south-1");

        url_from_secret(
            &client,
            &endpoint,
            "arn:aws:secretsmanager:ap-south-1:1:secret:x",
        )
        .await
        .expect("secret read");

        let seen = seen.lock().expect("lock").clone();
        assert!(
            seen[0]
                .2
                .contains("/ap-south-1/secretsmanager/aws4_request"),
            "{seen:?}"
        );
    }

    #[test]
    fn a_generated_secret_gives_its_redis_user_and_nothing_else_is_taken_for_one() {
        let generated = r#"{"username":"wschat","password":"p@ss:w/rd","engine":"valkey"}"#;

        let user = RedisUser::parse(generated).expect("a user");

        assert_eq!(user.username, "wschat");
        assert_eq!(user.password, "p@ss:w/rd");
        assert!(!format!("{user:?}").contains("p@ss"), "never printed");
        for not in [
            "rediss://host:6379",
            r#"{"username":"wschat"}"#,
            r#"{"username":"","password":"x"}"#,
        ] {
            assert!(
                matches!(RedisUser::parse(not), Err(SecretError::NotCredentials)),
                "{not}"
            );
        }
    }

    #[tokio::test]
    async fn a_secret_without_a_string_is_refused() {
        let body = r#"{"Name":"wschat/redis","SecretBinary":"aGVsbG8="}"#;
        let (client, endpoint, _) = fake_secrets_manager(200, body).await;

        let err = url_from_secret(
            &client,
            &endpoint,
            "arn:aws:secretsmanager:eu-west-1:1:secret:bin",
        )
        .await
        .expect_err("binary secret");

        assert!(matches!(err, SecretError::NoString), "{err:?}");
    }
}
