//! A development OpenID Connect provider (`--oidc-provider`), so sign-in runs on one laptop with no AWS: the same
//! Authorization Code flow with PKCE that Cognito's Hosted UI, Auth0 or Keycloak run, and tokens the functions
//! verify exactly as they would theirs (ES256, a key made per run, a JWKS).
//!
//! | call | answer |
//! |---|---|
//! | `GET /oidc/.well-known/openid-configuration` | the discovery document |
//! | `GET /oidc/jwks` | the provider's public key, and any a test added |
//! | `GET /oidc/authorize` | a "sign in as …" page (a name, and optionally the rooms the token grants); with `prompt=none`, a code at once for the browser's session, else `error=login_required` |
//! | `POST /oidc/authorize` | signs in: a session cookie, and back to `redirect_uri` with a one-time code |
//! | `POST /oidc/token` | code + PKCE verifier → an ID token and an access token (the same JWT) and a refresh token; a refresh token → new tokens while its sign-in lasts |
//! | `GET /oidc/logout` | ends the session and goes back to `post_logout_redirect_uri` |
//! | `POST /_emulator/oidc/keys` | adds a public JWK to the key set (tests sign tokens with keys of their own) |
//! | `GET /_emulator/oidc` | how often the key set was fetched, the issuer, the client id |
//!
//! Anyone who reaches it can sign in as anyone: it is a development tool, and answers only redirect URIs on
//! loopback.

mod authorize;
mod key;
mod pages;
mod token;

pub use key::SigningKey;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use serde::Deserialize;
use serde_json::{Value, json};

/// The client id the pages sign in with, and the audience of the tokens, locally.
pub const DEV_CLIENT_ID: &str = "wschat-local";
/// The session cookie of the provider's sign-in.
const SESSION_COOKIE: &str = "wschat_dev_session";
/// How long a code may wait for its token request.
const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// The settings under which functions trust the development provider at `issuer`: its client id as the audience,
/// otherwise the defaults.
pub fn trusted(issuer: &str) -> chat_shared::config::AuthConfig {
    chat_shared::config::AuthConfig::Oidc(chat_shared::config::Oidc {
        issuer: issuer.to_owned(),
        audience: DEV_CLIENT_ID.to_owned(),
        client_id: DEV_CLIENT_ID.to_owned(),
        jwks_url: None,
        rooms_claim: chat_shared::config::DEFAULT_AUTH_ROOMS_CLAIM.to_owned(),
        hs256_secret_arn: None,
        hs256_secret: None,
        jwks_refetch: chat_shared::config::DEFAULT_AUTH_JWKS_REFETCH,
        leeway_secs: chat_shared::config::DEFAULT_AUTH_LEEWAY_SECS,
    })
}

/// Who signed in on this browser.
#[derive(Clone)]
struct Session {
    name: String,
    rooms: Option<Vec<String>>,
}

/// A code waiting for its token request.
struct Pending {
    session_id: String,
    session: Session,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    made: Instant,
}

/// The provider when the emulator runs with one: what the provider's handlers take from the emulator's state.
#[derive(Clone, Default)]
pub(crate) struct Dev(pub(crate) Option<Arc<Provider>>);

/// The running provider, as a handler's argument: without one (no `--oidc-provider`) every provider route
/// answers 404 before its handler runs.
pub(crate) struct Running(Arc<Provider>);

impl<S> FromRequestParts<S> for Running
where
    S: Send + Sync,
    Dev: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(_: &mut Parts, state: &S) -> Result<Self, Response> {
        Dev::from_ref(state).0.map(Self).ok_or_else(absent)
    }
}

/// The provider's state.
pub(crate) struct Provider {
    issuer: String,
    key: SigningKey,
    token_ttl: Duration,
    added: Mutex<Vec<Value>>,
    sessions: Mutex<HashMap<String, Session>>,
    codes: Mutex<HashMap<String, Pending>>,
    /// refresh token → (session id, client id)
    refreshes: Mutex<HashMap<String, (String, String)>>,
    jwks_fetches: AtomicU64,
}

impl Provider {
    /// A provider whose issuer is `issuer` (`http://127.0.0.1:PORT/oidc`), with a key made now.
    pub(crate) fn new(issuer: String, token_ttl: Duration) -> Self {
        Self {
            issuer,
            key: SigningKey::generate(&format!("dev-{}", random_token(6))),
            token_ttl,
            added: Mutex::default(),
            sessions: Mutex::default(),
            codes: Mutex::default(),
            refreshes: Mutex::default(),
            jwks_fetches: AtomicU64::new(0),
        }
    }

    /// The issuer URL.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `session`, for `client_id`.
    fn token(&self, session: &Session, client_id: &str, nonce: Option<&str>) -> String {
        let now = crate::timefmt::now_ms() / 1000;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": client_id,
            "sub": format!("dev:{}", session.name),
            "name": session.name,
            "iat": now,
            "exp": now + i64::try_from(self.token_ttl.as_secs()).unwrap_or(3600),
        });
        if let Some(rooms) = &session.rooms {
            claims["rooms"] = json!(rooms);
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.key.sign(&claims)
    }
}

/// The provider's routes (the handlers answer 404 when the emulator runs without it).
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Dev: FromRef<S>,
{
    Router::new()
        .route("/oidc/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route(
            "/oidc/authorize",
            get(authorize::page).post(authorize::sign_in),
        )
        .route("/oidc/token", post(token::token))
        .route("/oidc/logout", get(logout))
        .route("/_emulator/oidc", get(stats))
        .route("/_emulator/oidc/keys", post(add_key))
}

/// The answer of every provider route when the emulator runs without it.
fn absent() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no OpenID provider: start the emulator with --oidc-provider",
    )
        .into_response()
}

/// JSON any page may read (the pages may be served from another origin than the issuer's, as with Cognito).
fn public_json(body: Value) -> Response {
    (
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Json(body),
    )
        .into_response()
}

async fn discovery(Running(provider): Running) -> Response {
    let issuer = provider.issuer();
    public_json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "profile"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}

async fn jwks(Running(provider): Running) -> Response {
    provider.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    let mut keys = vec![provider.key.jwk().clone()];
    keys.extend(lock(&provider.added).iter().cloned());
    public_json(json!({ "keys": keys }))
}

/// The logout request's parameters.
#[derive(Debug, Deserialize)]
struct LogoutParams {
    post_logout_redirect_uri: Option<String>,
}

async fn logout(
    Running(provider): Running,
    headers: HeaderMap,
    Query(params): Query<LogoutParams>,
) -> Response {
    if let Some(id) = session_of(&headers) {
        lock(&provider.sessions).remove(&id);
    }
    let mut response = match params
        .post_logout_redirect_uri
        .as_deref()
        .filter(|u| is_loopback_url(u))
    {
        Some(uri) => Redirect::to(uri).into_response(),
        None => "signed out".into_response(),
    };
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("wschat_dev_session=; Path=/oidc; Max-Age=0"),
    );
    response
}

async fn stats(Running(provider): Running) -> Response {
    Json(json!({
        "issuer": provider.issuer(),
        "clientId": DEV_CLIENT_ID,
        "jwksFetches": provider.jwks_fetches.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn add_key(Running(provider): Running, Json(jwk): Json<Value>) -> Response {
    if jwk.get("kty").and_then(Value::as_str).is_none() || jwk.get("d").is_some() {
        return (StatusCode::BAD_REQUEST, "a public JWK, please").into_response();
    }
    lock(&provider.added).push(jwk);
    StatusCode::NO_CONTENT.into_response()
}

/// The provider's session id in the request's cookies.
fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// An `http(s)://` URL whose host is this machine.
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `bytes` random bytes from the system's generator, URL-safe: codes and sessions must not be guessable.
fn random_token(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut random = vec![0_u8; bytes];
    SystemRandom::new()
        .fill(&mut random)
        .expect("the system's randomness fills a buffer");
    URL_SAFE_NO_PAD.encode(random)
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_redirects_are_answered() {
        for ok in [
            "http://127.0.0.1:3000/",
            "http://localhost:8080/room.html?x=1",
            "https://[::1]/cb",
        ] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "http://127.0.0.1.evil.example/",
            "javascript:alert(1)",
            "//x",
        ] {
            assert!(!is_loopback_url(bad), "{bad}");
        }
    }

    #[test]
    fn a_session_is_found_among_the_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; wschat_dev_session=abc; b=2"),
        );

        assert_eq!(session_of(&headers).as_deref(), Some("abc"));
        assert_eq!(session_of(&HeaderMap::new()), None);
    }
}
