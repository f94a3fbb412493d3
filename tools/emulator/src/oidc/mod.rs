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

mod pages;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::AppState;

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

/// An ES256 signing key and its public JWK.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    /// A new P-256 key named `kid`.
    ///
    /// # Panics
    /// If the system has no randomness (ring cannot make a key).
    pub fn generate(kid: &str) -> Self {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
            .expect("the system's randomness makes a P-256 key");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                .expect("a key just made reads back");
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    /// The public key, as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// `claims`, signed ES256 with this key's `kid` in the header.
    ///
    /// # Panics
    /// Never for a JSON object (signing cannot fail otherwise).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("claims serialize and sign")
    }
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
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oidc/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/authorize", get(authorize_page).post(sign_in))
        .route("/oidc/token", post(token))
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

async fn discovery(State(state): State<AppState>) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
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

async fn jwks(State(state): State<AppState>) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
    provider.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    let mut keys = vec![provider.key.jwk().clone()];
    keys.extend(lock(&provider.added).iter().cloned());
    public_json(json!({ "keys": keys }))
}

/// The authorize request's parameters.
#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    prompt: Option<String>,
    /// The sign-in form's fields.
    name: Option<String>,
    rooms: Option<String>,
}

impl AuthorizeParams {
    /// The request's problem, if any: only the code flow with S256 PKCE, back to a loopback address.
    fn problem(&self) -> Option<&'static str> {
        if self.response_type.as_deref() != Some("code") {
            return Some("response_type must be code");
        }
        if self.client_id.as_deref().is_none_or(str::is_empty) {
            return Some("client_id is required");
        }
        if !self.redirect_uri.as_deref().is_some_and(is_loopback_url) {
            return Some("redirect_uri must be an http(s) URL on this machine");
        }
        if self.code_challenge_method.as_deref() != Some("S256")
            || self.code_challenge.as_deref().is_none_or(str::is_empty)
        {
            return Some("PKCE with S256 is required");
        }
        None
    }

    /// Back to the client with `code`, or with `error`.
    fn back(&self, outcome: Result<&str, &str>) -> Response {
        let (key, value) = match outcome {
            Ok(code) => ("code", code),
            Err(error) => ("error", error),
        };
        let mut url = format!(
            "{}{}{key}={}",
            self.redirect_uri.as_deref().unwrap_or_default(),
            if self
                .redirect_uri
                .as_deref()
                .unwrap_or_default()
                .contains('?')
            {
                '&'
            } else {
                '?'
            },
            encode(value)
        );
        if let Some(state) = &self.state {
            url.push_str(&format!("&state={}", encode(state)));
        }
        Redirect::to(&url).into_response()
    }
}

async fn authorize_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
    if let Some(problem) = params.problem() {
        return (StatusCode::BAD_REQUEST, problem).into_response();
    }
    if params.prompt.as_deref() == Some("none") {
        let session = session_of(&headers)
            .and_then(|id| Some((id.clone(), lock(&provider.sessions).get(&id).cloned()?)));
        return match session {
            Some((id, session)) => {
                let code = provider.grant(&params, id, session);
                params.back(Ok(&code))
            }
            None => params.back(Err("login_required")),
        };
    }
    pages::sign_in(&params).into_response()
}

async fn sign_in(
    State(state): State<AppState>,
    axum::Form(params): axum::Form<AuthorizeParams>,
) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
    if let Some(problem) = params.problem() {
        return (StatusCode::BAD_REQUEST, problem).into_response();
    }
    let name = params.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return pages::sign_in(&params).into_response();
    }
    let rooms = params
        .rooms
        .as_deref()
        .map(|r| {
            r.split([',', ' '])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.is_empty());
    let session = Session {
        name: name.to_owned(),
        rooms,
    };
    let id = random_token(16);
    lock(&provider.sessions).insert(id.clone(), session.clone());
    let code = provider.grant(&params, id.clone(), session);
    let mut response = params.back(Ok(&code));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/oidc; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

impl Provider {
    /// A one-time code for `session`, bound to the request's client, redirect URI and PKCE challenge.
    fn grant(&self, params: &AuthorizeParams, session_id: String, session: Session) -> String {
        let code = random_token(16);
        let mut codes = lock(&self.codes);
        codes.retain(|_, pending| pending.made.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            Pending {
                session_id,
                session,
                client_id: params.client_id.clone().unwrap_or_default(),
                redirect_uri: params.redirect_uri.clone().unwrap_or_default(),
                challenge: params.code_challenge.clone().unwrap_or_default(),
                nonce: params.nonce.clone(),
                made: Instant::now(),
            },
        );
        code
    }
}

/// The token request's form.
#[derive(Debug, Deserialize)]
struct TokenParams {
    grant_type: Option<String>,
    code: Option<String>,
    refresh_token: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
}

async fn token(
    State(state): State<AppState>,
    axum::Form(params): axum::Form<TokenParams>,
) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
    let invalid = |error: &str| {
        let mut response = public_json(json!({ "error": error }));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response
    };
    match params.grant_type.as_deref() {
        Some("authorization_code") => {}
        Some("refresh_token") => return refreshed(provider, &params),
        _ => return invalid("unsupported_grant_type"),
    }
    let Some(pending) = params
        .code
        .as_deref()
        .and_then(|code| lock(&provider.codes).remove(code))
    else {
        return invalid("invalid_grant");
    };
    // RFC 7636: a verifier of 43 to 128 characters.
    let verifier = params
        .code_verifier
        .as_deref()
        .filter(|v| (43..=128).contains(&v.len()))
        .unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    if pending.made.elapsed() >= CODE_LIFETIME
        || params.client_id.as_deref() != Some(pending.client_id.as_str())
        || params.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str())
        || verifier.is_empty()
        || challenge != pending.challenge
    {
        return invalid("invalid_grant");
    }
    let jwt = provider.token(
        &pending.session,
        &pending.client_id,
        pending.nonce.as_deref(),
    );
    let refresh = random_token(24);
    lock(&provider.refreshes).insert(refresh.clone(), (pending.session_id, pending.client_id));
    public_json(json!({
        "token_type": "Bearer",
        "id_token": jwt,
        "access_token": jwt,
        "refresh_token": refresh,
        "expires_in": provider.token_ttl.as_secs(),
    }))
}

/// `grant_type=refresh_token`: new tokens for the sign-in the refresh token belongs to, while it lasts.
fn refreshed(provider: &Provider, params: &TokenParams) -> Response {
    let grant = params
        .refresh_token
        .as_deref()
        .and_then(|token| lock(&provider.refreshes).get(token).cloned());
    let session = grant.as_ref().and_then(|(session_id, client_id)| {
        let same_client = params.client_id.as_deref() == Some(client_id.as_str());
        same_client
            .then(|| lock(&provider.sessions).get(session_id).cloned())
            .flatten()
    });
    let (Some((_, client_id)), Some(session)) = (grant, session) else {
        let mut response = public_json(json!({ "error": "invalid_grant" }));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let jwt = provider.token(&session, &client_id, None);
    public_json(json!({
        "token_type": "Bearer",
        "id_token": jwt,
        "access_token": jwt,
        "expires_in": provider.token_ttl.as_secs(),
    }))
}

/// The logout request's parameters.
#[derive(Debug, Deserialize)]
struct LogoutParams {
    post_logout_redirect_uri: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<LogoutParams>,
) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
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

async fn stats(State(state): State<AppState>) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
    Json(json!({
        "issuer": provider.issuer(),
        "clientId": DEV_CLIENT_ID,
        "jwksFetches": provider.jwks_fetches.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn add_key(State(state): State<AppState>, Json(jwk): Json<Value>) -> Response {
    let Some(provider) = state.oidc.as_deref() else {
        return absent();
    };
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
