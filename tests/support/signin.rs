//! Sign-in for the end-to-end tests: a chat whose functions require tokens (`AUTH_MODE=oidc`) of its emulator's
//! development provider, keys the tests make and own ([`SigningKey`]) and add to that provider's key set, tokens
//! for any claims, and clients that carry a token as a subprotocol or in the query.
//!
//! In process, each test's emulator is its own; in Lambda mode the tests share the sign-in stack of
//! `tools/scripts/lambda-stack.sh` (`WSCHAT_LAMBDA_OIDC_EMULATOR_URL`), whose functions fetch the keys again on
//! every unknown `kid` and allow no leeway, as the chats started here do.

use std::net::SocketAddr;

use chat_shared::config::{AuthConfig, Config, Oidc};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use wschat_emulator::oidc::{DEV_CLIENT_ID, SigningKey};
use wschat_emulator::{Emulator, Options, PageAuth};

use crate::{Client, Mode, TestChat, encode, http, test_address};

/// The variable naming the shared sign-in stack's emulator.
pub const LAMBDA_OIDC_ENV: &str = "WSCHAT_LAMBDA_OIDC_EMULATOR_URL";

/// The URL of the shared sign-in stack's emulator.
///
/// # Panics
/// When [`LAMBDA_OIDC_ENV`] is unset: Lambda-mode tests must fail loudly, never skip.
pub fn lambda_url() -> String {
    std::env::var(LAMBDA_OIDC_ENV).unwrap_or_else(|_| {
        panic!("{LAMBDA_OIDC_ENV} is not set: run the tests with `make test` (tools/scripts/lambda-stack.sh starts the sign-in stack)")
    })
}

/// How a client hands over its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Sec-WebSocket-Protocol: wschat, <jwt>`, as the pages do.
    Subprotocol,
    /// `?token=<jwt>`.
    Query,
}

/// The settings under which the functions of a test chat at `addr` trust its provider: no leeway, and every unknown
/// `kid` fetched at once (each test brings its own key), as in the Lambda-mode sign-in stack.
fn trusting(addr: SocketAddr) -> AuthConfig {
    let AuthConfig::Oidc(oidc) = wschat_emulator::oidc::trusted(&Emulator::issuer_at(addr, false))
    else {
        unreachable!("trusted() is oidc")
    };
    AuthConfig::Oidc(Oidc {
        jwks_refetch: std::time::Duration::ZERO,
        leeway_secs: 0,
        ..oidc
    })
}

impl TestChat {
    /// Starts a chat that requires sign-in, in `mode` (in process: an emulator with its development provider; in
    /// Lambda mode: the shared sign-in stack).
    pub async fn start_signed_in(mode: Mode) -> Self {
        let options = Options {
            oidc_provider: true,
            ..Options::default()
        };
        let mut chat = Self::launch(
            mode,
            options,
            |addr| Config {
                auth: trusting(addr),
                ..Config::default()
            },
            true,
        )
        .await;
        chat.options.page_auth = chat.issuer.clone().map(|issuer| PageAuth {
            issuer,
            client_id: DEV_CLIENT_ID.to_owned(),
        });
        chat
    }

    /// The issuer the chat's functions trust.
    ///
    /// # Panics
    /// For a chat that was not started with [`TestChat::start_signed_in`].
    pub fn issuer(&self) -> &str {
        self.issuer.as_deref().expect("a chat started signed in")
    }

    /// Adds `key`'s public half to the provider's key set: tokens it signs are then the issuer's.
    pub async fn trust(&self, key: &SigningKey) {
        let (status, body) = http(
            "POST",
            &self.http_url("/_emulator/oidc/keys"),
            &[("content-type", "application/json")],
            key.jwk().to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    }

    /// How many times the provider's key set was fetched so far.
    pub async fn key_fetches(&self) -> u64 {
        let (status, body) = http("GET", &self.http_url("/_emulator/oidc"), &[], Vec::new()).await;
        assert_eq!(status, 200);
        let stats: Value = serde_json::from_slice(&body).expect("JSON");
        stats["jwksFetches"].as_u64().expect("a count")
    }

    /// Claims of the user `uid` named `name`, for this chat's issuer and audience, valid for `seconds`.
    pub fn claims(&self, uid: &str, name: &str, seconds: i64) -> Value {
        let now = chat_shared::handlers::now_ms() / 1000;
        json!({
            "iss": self.issuer(), "aud": DEV_CLIENT_ID, "sub": uid, "name": name,
            "iat": now, "exp": now + seconds,
        })
    }

    /// Connects to `room` with `token` (and `?name=` when given), or the handshake's error.
    ///
    /// # Errors
    /// The handshake's failure (`tungstenite::Error::Http` with the status when it was refused).
    pub async fn join_with_token(
        &self,
        room: &str,
        token: &str,
        via: Via,
        name: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        self.join_with_token_from(room, token, via, name, test_address())
            .await
    }

    /// [`TestChat::join_with_token`] from `address` (`X-Forwarded-For`).
    ///
    /// # Errors
    /// As [`TestChat::join_with_token`].
    pub async fn join_with_token_from(
        &self,
        room: &str,
        token: &str,
        via: Via,
        name: Option<&str>,
        address: &str,
    ) -> Result<Client, tungstenite::Error> {
        let mut url = self.ws_url(room);
        if let Some(name) = name {
            url.push_str(&format!("&name={}", encode(name)));
        }
        if via == Via::Query {
            url.push_str(&format!("&token={}", encode(token)));
        }
        let mut request = url.into_client_request()?;
        let headers = request.headers_mut();
        headers.insert("Origin", self.http_url("").parse().expect("origin header"));
        headers.insert("X-Forwarded-For", address.parse().expect("address header"));
        if via == Via::Subprotocol {
            headers.insert(
                "Sec-WebSocket-Protocol",
                format!("wschat, {token}")
                    .parse()
                    .expect("a token is a header value"),
            );
        }
        Client::open(request).await
    }

    /// Joins `room` signed in as `uid`/`name` with a token of `key` valid for ten minutes.
    ///
    /// # Panics
    /// When the handshake is refused.
    pub async fn join_signed_in(
        &self,
        room: &str,
        key: &SigningKey,
        uid: &str,
        name: &str,
    ) -> Client {
        let token = key.sign(&self.claims(uid, name, 600));
        self.join_with_token(room, &token, Via::Subprotocol, None)
            .await
            .expect("a signed-in handshake is accepted")
    }
}

/// A key of the test's own, named uniquely.
pub fn new_key() -> SigningKey {
    SigningKey::generate(&format!("test-{:08x}", fastrand::u32(..)))
}

/// The status a refused handshake got (0: it was not refused with a status).
pub fn refused_with(outcome: Result<Client, tungstenite::Error>) -> u16 {
    match outcome {
        Ok(_) => 0,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// The refusals the emulator's meter counted for `address`, as `{"authorizer 401": n, …}`.
pub async fn refusals_of(chat: &TestChat, address: &str) -> Value {
    let (status, body) = http("GET", &chat.http_url("/_emulator/metrics"), &[], Vec::new()).await;
    assert_eq!(status, 200);
    let metrics: Value = serde_json::from_slice(&body).expect("JSON");
    metrics["refusals"]["byAddress"][address].clone()
}
