//! The emulator's shared state: its [`Options`], the live connections' registry (what `/@connections` and the
//! socket tasks both reach), and what the handshake hands a socket task. The server (`lib.rs`), the sockets
//! (`socket.rs`) and the Management API (`management.rs`) all use this module and none of them each other's
//! internals, so no module imports in a circle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::events::ConnectionInfo;
use crate::faults::Faults;
use crate::meter::{Meter, Prices};
use crate::routes::RouteTable;

/// How the emulator behaves; every API Gateway limit can be shortened for tests.
#[derive(Debug, Clone)]
pub struct Options {
    /// The stage name: the path of the WebSocket URL and of the Management API (`/local/@connections`).
    pub stage: String,
    /// The folder of static pages to serve.
    pub web_dir: PathBuf,
    /// Run the route table's `$connect` authorizer, as the deployed API does.
    pub authorizer: bool,
    /// Close a connection that received nothing for this long (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Close every connection after this long (API Gateway: 2 hours).
    pub max_duration: Duration,
    /// How long after a successful `$connect` PostToConnection still answers 410, as on AWS, where a connection
    /// becomes postable only once the handshake completed. Fan-outs running meanwhile meet the newcomer's 410.
    pub open_delay: Duration,
    /// The fault switches at start (latency, jitter, 429s, 410s, dropped `$disconnect`s); `POST /_emulator/faults`
    /// changes them while the emulator runs ([`Faults`]).
    pub faults: Faults,
    /// How long the gateway waits for an integration (API Gateway: 29 s, not configurable there). The function
    /// runs on; its caller gets `Endpoint request timed out`.
    pub integration_timeout: Duration,
    /// Whether frames sent to the client also reset the idle timer. AWS documents the 10-minute idle timeout
    /// without saying which direction counts; the default assumes only the client's own messages do (the
    /// stricter reading, so a page that passes here keeps its connection on AWS either way).
    pub idle_reset_on_send: bool,
    /// Take a handshake's source address (`requestContext.identity.sourceIp`) from the first address of its
    /// `X-Forwarded-For` header instead of the TCP peer, so tests and load tools on one machine can be many
    /// addresses. Only for a proxy you run, or loopback: anyone can write that header.
    pub trust_forwarded_for: bool,
    /// The longest chat message the functions accept (`MAX_MESSAGE_BYTES`), told to the pages by `/config.js`.
    pub max_message_bytes: usize,
    /// What the cost meter charges.
    pub prices: Prices,
    /// A Redis whose command count the cost meter reads (`INFO commandstats`), when it can see one.
    pub meter_redis_url: Option<String>,
    /// Which function serves which route.
    pub routes: RouteTable,
    /// Serve the development OpenID provider at `/oidc` ([`crate::oidc`]).
    pub oidc_provider: bool,
    /// How long the development provider's tokens last.
    pub oidc_token_ttl: Duration,
    /// What `/config.js` tells the pages about signing in (none: auth is off).
    pub page_auth: Option<PageAuth>,
    /// Host names answered besides the address the emulator serves on (and `localhost` on loopback): a request
    /// whose `Host` is any other name is refused, so a web page cannot reach the emulator by DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Serve `https://` and `wss://` with this certificate (`--tls`); none: `http://` and `ws://`.
    pub tls: Option<Arc<crate::tls::LocalTls>>,
}

/// Where the pages sign in: the issuer and the OAuth client (`AUTH_ISSUER`, `AUTH_CLIENT_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageAuth {
    /// The issuer URL; the pages read its discovery document.
    pub issuer: String,
    /// The client id they sign in with.
    pub client_id: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            stage: "local".to_owned(),
            web_dir: default_web_dir(),
            authorizer: true,
            idle_timeout: Duration::from_secs(10 * 60),
            max_duration: Duration::from_secs(2 * 60 * 60),
            open_delay: Duration::ZERO,
            faults: Faults::default(),
            integration_timeout: Duration::from_secs(29),
            idle_reset_on_send: false,
            trust_forwarded_for: false,
            max_message_bytes: chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES,
            prices: Prices::default(),
            meter_redis_url: None,
            // The template is compiled in and a unit test follows it, so this cannot fail in a released binary.
            routes: RouteTable::deployed()
                .expect("infra/template.yaml names every route's function"),
            oidc_provider: false,
            oidc_token_ttl: Duration::from_secs(3600),
            page_auth: None,
            allowed_hosts: Vec::new(),
            tls: None,
        }
    }
}

impl Options {
    /// `https` with TLS, else `http`.
    pub fn http_scheme(&self) -> &'static str {
        http_scheme(self.tls.is_some())
    }

    /// `wss` with TLS, else `ws`.
    pub fn ws_scheme(&self) -> &'static str {
        if self.tls.is_some() { "wss" } else { "ws" }
    }
}

/// `https` when the emulator serves TLS, else `http`.
pub(crate) fn http_scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// `web/` of this repository.
pub fn default_web_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web"))
}

/// Frames queued for one client before PostToConnection answers 429 ("client side buffer is full").
pub(crate) const OUTBOUND_BUFFER: usize = 256;

/// A frame on its way to the client.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Valid UTF-8 data: a text frame.
    Text(Utf8Bytes),
    /// Anything else: a binary frame.
    Binary(Bytes),
}

impl Outbound {
    /// The WebSocket message that carries it.
    pub(crate) fn into_message(self) -> axum::extract::ws::Message {
        match self {
            Self::Text(text) => axum::extract::ws::Message::Text(text),
            Self::Binary(data) => axum::extract::ws::Message::Binary(data),
        }
    }
}

/// An order from the gateway to the connection.
#[derive(Debug)]
pub(crate) enum Control {
    /// Close the socket with this code (DELETE /@connections, shutdown).
    Close {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
}

/// What the registry keeps per live connection.
pub(crate) struct Handle {
    pub(crate) info: ConnectionInfo,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) outbound: mpsc::Sender<Outbound>,
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) last_active_at: Arc<AtomicI64>,
    /// Before this instant PostToConnection answers 410: on AWS a connection is not postable the moment
    /// `$connect` returns, only once the handshake completed ([`Options::open_delay`]).
    pub(crate) postable_at: Instant,
    /// The order in which connections were accepted: `/_emulator/connections` lists the oldest first, and two
    /// handshakes in the same millisecond still have an order.
    pub(crate) accepted: u64,
}

/// Shared state of the server.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) options: Options,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) connections: Mutex<HashMap<String, Handle>>,
    /// Counts accepted connections ([`Handle::accepted`]).
    pub(crate) accepted: std::sync::atomic::AtomicU64,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) meter: Meter,
    /// The development OpenID provider (`--oidc-provider`).
    pub(crate) oidc: Option<Arc<crate::oidc::Provider>>,
    /// What happened lately, for the emulator's page.
    pub(crate) activity: crate::activity::Activity,
    /// The address it serves on (what a `Host` header must name).
    pub(crate) addr: std::net::SocketAddr,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub(crate) fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// The cost meter's counts and prices, open connections included.
    pub(crate) async fn metrics(&self) -> serde_json::Value {
        let now = crate::timefmt::now_ms();
        let live: Vec<Duration> = self
            .connections()
            .values()
            .map(|h| Duration::from_millis(u64::try_from(now - h.info.connected_at).unwrap_or(0)))
            .collect();
        self.meter.snapshot(live).await
    }

    pub(crate) fn close_all(&self, code: u16, reason: &'static str) {
        for handle in self.connections().values() {
            let _ = handle.control.try_send(Control::Close { code, reason });
        }
    }
}

/// The emulator, for what the in-process functions are given before it exists (they are built first): their
/// gateway and their invoker reach it through this once it is attached, and never keep it alive.
#[derive(Default)]
pub(crate) struct Later(std::sync::OnceLock<std::sync::Weak<Inner>>);

impl Later {
    /// Points at the emulator, once that exists.
    pub(crate) fn attach(&self, state: &AppState) {
        let _ = self.0.set(Arc::downgrade(&state.0));
    }

    /// The emulator, while it runs.
    pub(crate) fn get(&self) -> Option<AppState> {
        self.0
            .get()
            .and_then(std::sync::Weak::upgrade)
            .map(AppState)
    }
}

/// What the handshake hands to the socket task.
pub(crate) struct NewConnection {
    pub(crate) info: ConnectionInfo,
    pub(crate) outbound: mpsc::Receiver<Outbound>,
    pub(crate) control: mpsc::Receiver<Control>,
}

impl axum::extract::FromRef<AppState> for crate::oidc::Dev {
    fn from_ref(state: &AppState) -> Self {
        Self(state.oidc.clone())
    }
}
