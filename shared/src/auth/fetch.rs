//! The issuer's key set over HTTP: from [`crate::config::AUTH_JWKS_URL`], or from the issuer's discovery document
//! (`{issuer}/.well-known/openid-configuration` → `jwks_uri`, whose own `issuer` must match exactly).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::keys::{FetchError, KeySource};
use crate::config::check_url;
use crate::http_client::HttpClient;

/// How long one fetch may take: a handshake waits for it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a discovery document or a key set may weigh.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The key set of one issuer, fetched over HTTP(S).
pub struct HttpKeySource {
    client: HttpClient,
    issuer: String,
    jwks_url: tokio::sync::OnceCell<String>,
}

impl HttpKeySource {
    /// The keys of `issuer`, at `jwks_url` or where its discovery document says.
    pub fn new(issuer: &str, jwks_url: Option<&str>) -> Self {
        Self {
            client: HttpClient::new(FETCH_TIMEOUT, MAX_DOCUMENT_BYTES),
            issuer: issuer.to_owned(),
            jwks_url: jwks_url.map_or_else(tokio::sync::OnceCell::new, |url| {
                tokio::sync::OnceCell::new_with(Some(url.to_owned()))
            }),
        }
    }

    /// Where the keys are named, for errors and logs: the key set's URL, or the discovery document's until then.
    pub fn describe(&self) -> String {
        self.jwks_url
            .get()
            .cloned()
            .unwrap_or_else(|| discovery_url(&self.issuer))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let failed = |source: crate::signed::BoxError| FetchError::Request {
            url: url.to_owned(),
            source,
        };
        let uri: http::Uri = url.parse().map_err(|e| failed(Box::new(e)))?;
        let answer = self
            .client
            .send("GET", &uri, &[], &[])
            .await
            .map_err(|e| failed(Box::new(e)))?;
        if answer.status != 200 {
            return Err(FetchError::Answer {
                url: url.to_owned(),
                reason: match http::StatusCode::from_u16(answer.status) {
                    Ok(status) => format!("answered {status}"),
                    Err(_) => format!("answered {}", answer.status),
                },
            });
        }
        Ok(answer.body.to_vec())
    }

    /// The key set's URL from the discovery document, checked like the issuer.
    async fn discover(&self) -> Result<String, FetchError> {
        let url = discovery_url(&self.issuer);
        let wrong = |reason: &str| FetchError::Answer {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let doc: Value = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|_| wrong("not a JSON document"))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(wrong("its issuer is not AUTH_ISSUER"));
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| wrong("it has no jwks_uri"))?;
        check_url("jwks_uri", jwks).map_err(|e| wrong(&e.to_string()))?;
        Ok(jwks.to_owned())
    }
}

#[async_trait]
impl KeySource for HttpKeySource {
    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let url = self.jwks_url.get_or_try_init(|| self.discover()).await?;
        self.get(url).await
    }
}

/// `{issuer}/.well-known/openid-configuration` (one slash between them).
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;
    use serde_json::json;

    use super::*;

    /// An issuer on loopback serving its discovery document (claiming `claimed_issuer`) and a key set.
    async fn issuer(claimed_issuer: Option<&str>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let claimed = claimed_issuer.map_or_else(|| base.clone(), str::to_owned);
        let jwks_uri = format!("{base}/keys");
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = fetches.clone();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move {
                    axum::Json(json!({ "issuer": claimed, "jwks_uri": jwks_uri }))
                }),
            )
            .route(
                "/keys",
                get(move || async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "keys": [] }))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, fetches)
    }

    #[tokio::test]
    async fn the_key_set_is_found_through_discovery_once_and_fetched_each_time() {
        let (base, fetches) = issuer(None).await;
        let source = HttpKeySource::new(&base, None);

        let first = source.fetch().await.expect("fetched");
        source.fetch().await.expect("fetched again");

        assert_eq!(first, br#"{"keys":[]}"#);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(source.describe(), format!("{base}/keys"));
    }

    #[tokio::test]
    async fn a_discovery_document_naming_another_issuer_is_refused() {
        let (base, fetches) = issuer(Some("https://elsewhere.example")).await;

        let err = HttpKeySource::new(&base, None)
            .fetch()
            .await
            .expect_err("refused");

        assert!(err.to_string().contains("issuer"), "{err}");
        assert_eq!(fetches.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_configured_key_url_skips_discovery_and_a_missing_one_is_an_answer_error() {
        let (base, _) = issuer(Some("https://elsewhere.example")).await;

        let direct = HttpKeySource::new(&base, Some(&format!("{base}/keys")));
        let missing = HttpKeySource::new(&base, Some(&format!("{base}/nothing-here")));

        assert!(direct.fetch().await.is_ok());
        assert!(matches!(
            missing.fetch().await,
            Err(FetchError::Answer { .. })
        ));
    }
}
