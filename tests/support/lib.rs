//! Test support for the end-to-end suites: an emulator on a free port in the chosen mode, WebSocket clients
//! that speak the chat protocol with bounded waits, plain HTTP for the Management API, and the test Redis.
//!
//! Redis tests need `WSCHAT_TEST_REDIS_URL`; `make test` starts a private redis-server and sets it. Without it
//! they fail with a message saying so: they never skip.

pub mod emf;
pub mod proxy;
pub mod redis_servers;
pub mod signin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_shared::config::{Config, KeyPrefix, MAX_CONNECTION_LIFETIME};
use chat_shared::rooms::{
    Admission, Departed, Entered, HistoryPage, MemoryRoomStore, Presence, PublishOutcome,
    RedisRoomStore, RoomStore, Sender, Spent, StoreError,
};
use chat_shared::wire::{ConnectionId, DisplayName, Epoch, RoomName, SourceAddress, Uid};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// The variable naming the Redis the tests use.
pub const REDIS_ENV: &str = "WSCHAT_TEST_REDIS_URL";

/// The variable naming the shared Lambda-mode emulator (`tools/scripts/lambda-stack.sh` sets it).
pub const LAMBDA_ENV: &str = "WSCHAT_LAMBDA_EMULATOR_URL";

/// Where the functions run and rooms live while the test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An emulator of the test's own, in-process handlers, rooms in memory.
    Memory,
    /// An emulator of the test's own, in-process handlers, rooms in the test Redis under a fresh key prefix.
    Redis,
    /// The shared Lambda-mode stack: the real function binaries behind `cargo lambda watch`, the AWS SDK
    /// adapter, rooms in the test Redis under the functions' default prefix (tests use unique room names).
    Lambda,
    /// A deployed stage on AWS at `WSCHAT_E2E_URL` (`wss://{api}.execute-api.{region}.amazonaws.com/{stage}`).
    /// Its Redis is out of reach, so only scenarios that need no store inspection run there.
    Deployed,
}

/// The variable naming a deployed stage for [`Mode::Deployed`].
pub const DEPLOYED_ENV: &str = "WSCHAT_E2E_URL";

/// The test Redis URL.
///
/// # Panics
/// When `WSCHAT_TEST_REDIS_URL` is unset: Redis tests must fail loudly, never skip.
pub fn redis_url() -> String {
    std::env::var(REDIS_ENV).unwrap_or_else(|_| {
        panic!("{REDIS_ENV} is not set: run the tests with `make test`, which starts a private redis-server")
    })
}

/// A key prefix no other test uses, so tests can share one Redis.
pub fn unique_prefix() -> KeyPrefix {
    KeyPrefix::parse(&format!("wschat-test:{:016x}:", fastrand::u64(..)))
        .expect("no braces in the prefix")
}

/// This test process's source address, sent as `X-Forwarded-For` by every client it opens: the shared Lambda-mode
/// stack trusts that header (`--trust-forwarded-for`), so each test counts against address limits of its own.
pub fn test_address() -> &'static str {
    static ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDRESS.get_or_init(unique_address)
}

/// A source address no other test uses (in 10.0.0.0/8, like [`test_address`]), for a test's hostile clients: the
/// shared Lambda-mode stack keeps an address's counts between test runs.
pub fn unique_address() -> String {
    format!(
        "10.{}.{}.{}",
        fastrand::u8(..),
        fastrand::u8(..),
        fastrand::u8(1..255)
    )
}

/// A room name no other test uses.
pub fn unique_room(stem: &str) -> String {
    format!("{stem}_{:08x}", fastrand::u32(..))
}

/// The URL of the shared Lambda-mode emulator.
///
/// # Panics
/// When `WSCHAT_LAMBDA_EMULATOR_URL` is unset: Lambda-mode tests must fail loudly, never skip.
pub fn lambda_emulator_url() -> String {
    std::env::var(LAMBDA_ENV).unwrap_or_else(|_| {
        panic!(
            "{LAMBDA_ENV} is not set: run the tests with `make test`, which starts cargo lambda watch, Redis and \
             an emulator in Lambda mode (tools/scripts/lambda-stack.sh)"
        )
    })
}

/// The chat under test, served on 127.0.0.1.
pub struct TestChat {
    /// The emulator this test started (`None` in [`Mode::Lambda`], which shares one).
    pub emulator: Option<Emulator>,
    /// The address it serves on (unspecified for a deployed stage).
    pub addr: SocketAddr,
    /// The deployed stage's `wss://` URL, in [`Mode::Deployed`].
    pub deployed_url: Option<String>,
    /// The room store its handlers use (inspect it to check membership).
    pub rooms: Arc<dyn RoomStore>,
    /// What [`TestChat::lose_data`] must forget: the memory store, or the Redis key prefix.
    data: Data,
    /// Its options.
    pub options: Options,
    /// The issuer its functions trust (a chat started with [`TestChat::start_signed_in`]).
    pub issuer: Option<String>,
}

impl TestChat {
    /// Starts the chat in `mode` with the emulator's defaults.
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, Options::default()).await
    }

    /// Starts the chat in `mode` with `options`.
    ///
    /// # Panics
    /// When the emulator cannot start, or Redis cannot be reached in [`Mode::Redis`].
    pub async fn start_with(mode: Mode, options: Options) -> Self {
        Self::start_configured(mode, options, Config::default()).await
    }

    /// Starts the chat in `mode` with `options`, its in-process handlers reading `config` (ignored in
    /// [`Mode::Lambda`] and [`Mode::Deployed`], whose functions read their own environment).
    ///
    /// # Panics
    /// When the emulator cannot start, or Redis cannot be reached in [`Mode::Redis`].
    pub async fn start_configured(mode: Mode, options: Options, config: Config) -> Self {
        Self::launch(mode, options, |_| config, false).await
    }

    /// Starts the chat in `mode`, its functions reading the configuration `config_for` makes from the emulator's
    /// address (known before the functions are built); `signed_in`: the chat of [`signin`].
    async fn launch(
        mode: Mode,
        options: Options,
        config_for: impl FnOnce(SocketAddr) -> Config,
        signed_in: bool,
    ) -> Self {
        // Every client of a test says its address in X-Forwarded-For ([`test_address`]); the tests' emulators
        // trust it, as the shared Lambda-mode stack does.
        let options = Options {
            trust_forwarded_for: true,
            ..options
        };
        if mode == Mode::Deployed {
            let url = std::env::var(DEPLOYED_ENV).unwrap_or_else(|_| {
                panic!("{DEPLOYED_ENV} is not set: point it at a deployed stage (wss://…/prod)")
            });
            return Self {
                emulator: None,
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                deployed_url: Some(url.trim_end_matches('/').to_owned()),
                rooms: Arc::new(FlakyStore::down()),
                data: Data::OutOfReach,
                options,
                issuer: None,
            };
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let config = config_for(listener.local_addr().expect("bound"));
        // The store keeps and enforces what `config` says, as the functions' own would.
        let policy = chat_shared::startup::policy(&config);
        let (rooms, data): (Arc<dyn RoomStore>, Data) = match mode {
            Mode::Memory => {
                let memory = Arc::new(MemoryRoomStore::default().with_policy(policy));
                (memory.clone(), Data::Memory(memory))
            }
            Mode::Deployed => unreachable!("handled above"),
            Mode::Redis | Mode::Lambda => {
                let prefix = if mode == Mode::Lambda {
                    KeyPrefix::default()
                } else {
                    unique_prefix()
                };
                let store = RedisRoomStore::connect(&redis_url(), &prefix, MAX_CONNECTION_LIFETIME)
                    .await
                    .expect("the test Redis is reachable")
                    .with_policy(policy);
                (Arc::new(store), Data::Redis(prefix))
            }
        };
        if mode == Mode::Lambda {
            let url = if signed_in {
                signin::lambda_url()
            } else {
                lambda_emulator_url()
            };
            let addr: SocketAddr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .expect("http://IP:PORT");
            return Self {
                emulator: None,
                addr,
                deployed_url: None,
                rooms,
                data,
                options: Options::default(),
                issuer: signed_in.then(|| Emulator::issuer_at(addr, false)),
            };
        }
        let issuer = config.auth.oidc().map(|oidc| oidc.issuer.clone());
        let backend = BackendChoice::InProcess(InProcessOptions {
            store: StoreChoice::Shared(rooms.clone()),
            config,
            posts: Posts::InMemory,
        });
        let emulator = Emulator::start_on(listener, options.clone(), backend)
            .await
            .expect("emulator starts");
        Self {
            addr: emulator.addr(),
            emulator: Some(emulator),
            deployed_url: None,
            rooms,
            data,
            options,
            issuer,
        }
    }

    /// Makes the store forget `room` as a Redis that restarted without its data would: its members, sequence and
    /// history (in memory mode, everything: the store is this test's own).
    ///
    /// # Panics
    /// Against a deployed stage, whose Redis is out of reach.
    pub async fn lose_data(&self, room: &str) {
        match &self.data {
            Data::Memory(memory) => memory.lose_everything(),
            Data::Redis(prefix) => {
                let mut raw = redis::Client::open(redis_url())
                    .expect("url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("the test Redis is reachable");
                for kind in ["room", "seq", "history"] {
                    let _: () = redis::cmd("DEL")
                        .arg(format!("{prefix}{kind}:{{{room}}}"))
                        .query_async(&mut raw)
                        .await
                        .expect("DEL");
                }
            }
            Data::OutOfReach => panic!("a deployed stage's Redis is out of the tests' reach"),
        }
    }

    /// The emulator this test started.
    ///
    /// # Panics
    /// In [`Mode::Lambda`], where the emulator is shared.
    pub fn emulator(&self) -> &Emulator {
        self.emulator
            .as_ref()
            .expect("this test started its own emulator")
    }

    /// The emulator this test started, to keep (shut it down, say).
    pub fn own_emulator(self) -> Emulator {
        self.emulator.expect("this test started its own emulator")
    }

    /// `ws://127.0.0.1:PORT/STAGE?room=ROOM` (the room percent-encoded).
    pub fn ws_url(&self, room: &str) -> String {
        match &self.deployed_url {
            Some(base) => format!("{base}?room={}", encode(room)),
            None => format!(
                "ws://{}/{}?room={}",
                self.addr,
                self.options.stage,
                encode(room)
            ),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The key prefix of this chat's rooms in the test Redis ([`Mode::Redis`] and [`Mode::Lambda`]).
    pub fn key_prefix(&self) -> Option<&KeyPrefix> {
        match &self.data {
            Data::Redis(prefix) => Some(prefix),
            _ => None,
        }
    }

    /// The Management API's stage URL.
    pub fn management_endpoint(&self) -> String {
        format!("http://{}/{}", self.addr, self.options.stage)
    }

    /// Connects a client to `room`, as a browser on the emulator's page would (with its `Origin`).
    ///
    /// # Panics
    /// When the handshake is rejected.
    pub async fn join(&self, room: &str) -> Client {
        // A deployed stage allows only its site's origin for browsers; a client without Origin is not a browser.
        let origin = self.deployed_url.is_none().then(|| self.http_url(""));
        Client::connect(&self.ws_url(room), origin.as_deref())
            .await
            .expect("handshake accepted")
    }

    /// Connects a client to `room` from `address`, or the handshake's error (`tungstenite::Error::Http` with the
    /// status when it was refused).
    ///
    /// # Errors
    /// The handshake's failure.
    pub async fn join_from(&self, room: &str, address: &str) -> Result<Client, tungstenite::Error> {
        let origin = self.deployed_url.is_none().then(|| self.http_url(""));
        Client::connect_from(&self.ws_url(room), origin.as_deref(), address).await
    }

    /// Connects a client to `room` with the display name `name` (`?room=…&name=…`).
    ///
    /// # Panics
    /// When the handshake is rejected.
    pub async fn join_as(&self, room: &str, name: &str) -> Client {
        self.try_join_as(room, name)
            .await
            .expect("handshake accepted")
    }

    /// Connects a client to `room` as `name`, or the handshake's error.
    ///
    /// # Errors
    /// The handshake's failure (`tungstenite::Error::Http` with the status when it was rejected).
    pub async fn try_join_as(&self, room: &str, name: &str) -> Result<Client, tungstenite::Error> {
        let origin = self.deployed_url.is_none().then(|| self.http_url(""));
        let url = format!("{}&name={}", self.ws_url(room), encode(name));
        Client::connect(&url, origin.as_deref()).await
    }

    /// The ids of the live connections, oldest first (the emulator's `/_emulator/connections`).
    pub async fn connection_ids(&self) -> Vec<String> {
        let (status, body) = http(
            "GET",
            &self.http_url("/_emulator/connections"),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(status, 200);
        let list: Value = serde_json::from_slice(&body).expect("JSON list");
        list.as_array()
            .expect("array")
            .iter()
            .map(|c| c["connectionId"].as_str().expect("id").to_owned())
            .collect()
    }
}

/// Where a [`TestChat`]'s data lives, for [`TestChat::lose_data`].
enum Data {
    Memory(Arc<MemoryRoomStore>),
    Redis(KeyPrefix),
    OutOfReach,
}

/// A room store that can be switched off: while down, every call fails as an unreachable Redis would. Always
/// down, it stands in for a deployed stage's Redis (out of the tests' reach); switched, it makes the handlers meet
/// an infrastructure failure halfway through a chat.
pub struct FlakyStore {
    inner: Arc<dyn RoomStore>,
    down: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    /// A store that works (rooms in memory) until [`FlakyStore::set_down`].
    pub fn new() -> Self {
        Self {
            inner: Arc::new(MemoryRoomStore::default()),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A store that is down for good.
    pub fn down() -> Self {
        let store = Self::new();
        store.set_down(true);
        store
    }

    /// Switches the store off (`true`) or back on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<&dyn RoomStore, StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Corrupt {
                key: "the room store is down (or out of the tests' reach)".into(),
            })
        } else {
            Ok(self.inner.as_ref())
        }
    }
}

impl Default for FlakyStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl RoomStore for FlakyStore {
    async fn join(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        at: i64,
        name: Option<&DisplayName>,
        uid: Option<&Uid>,
    ) -> Result<Entered, StoreError> {
        self.check()?.join(room, conn, at, name, uid).await
    }
    async fn presence(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        now: i64,
    ) -> Result<Presence, StoreError> {
        self.check()?.presence(room, conn, now).await
    }
    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        self.check()?.room_of(conn).await
    }
    async fn members(&self, room: &RoomName, now: i64) -> Result<Vec<ConnectionId>, StoreError> {
        self.check()?.members(room, now).await
    }
    async fn publish(
        &self,
        room: &RoomName,
        sender: &Sender<'_>,
        json: &str,
        now: i64,
    ) -> Result<PublishOutcome, StoreError> {
        self.check()?.publish(room, sender, json, now).await
    }
    async fn history(
        &self,
        room: &RoomName,
        after: Option<u64>,
        epoch: Option<&Epoch>,
        now: i64,
    ) -> Result<HistoryPage, StoreError> {
        self.check()?.history(room, after, epoch, now).await
    }
    async fn leave(
        &self,
        conn: &ConnectionId,
        room: Option<&RoomName>,
        now: i64,
    ) -> Result<Option<Departed>, StoreError> {
        self.check()?.leave(conn, room, now).await
    }
    async fn prune(
        &self,
        room: &RoomName,
        gone: &[ConnectionId],
        now: i64,
    ) -> Result<Departed, StoreError> {
        self.check()?.prune(room, gone, now).await
    }
    async fn spend(&self, conn: &ConnectionId, now: i64) -> Result<Spent, StoreError> {
        self.check()?.spend(conn, now).await
    }
    async fn admit(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
        at: i64,
    ) -> Result<Admission, StoreError> {
        self.check()?.admit(address, conn, at).await
    }
    async fn release(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
    ) -> Result<(), StoreError> {
        self.check()?.release(address, conn).await
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A chat client over a real WebSocket.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else (a history answer), handed out first by `recv_json`.
    backlog: std::collections::VecDeque<Value>,
}

/// A whole history answer: the chat frames of all its `{"history"}` frames, in order.
#[derive(Debug, Clone)]
pub struct History {
    /// The chat frames.
    pub chats: Vec<Value>,
    /// The room's epoch.
    pub epoch: String,
    /// Whether nothing after the requested seq is missing.
    pub complete: bool,
    /// Whether more messages follow than the answer carried.
    pub more: bool,
    /// How many `{"history"}` frames carried it.
    pub frames: usize,
    /// Their bytes, in all.
    pub bytes: usize,
}

impl History {
    /// The seqs of its chat frames.
    pub fn seqs(&self) -> Vec<u64> {
        self.chats
            .iter()
            .map(|c| c["seq"].as_u64().expect("seq"))
            .collect()
    }

    /// The texts of its chat frames.
    pub fn messages(&self) -> Vec<String> {
        self.chats
            .iter()
            .map(|c| c["message"].as_str().expect("message").to_owned())
            .collect()
    }
}

impl Client {
    /// Opens `url`, sending `origin` as the `Origin` header when given.
    ///
    /// # Errors
    /// The handshake's failure, e.g. `Http(400)` when `$connect` rejects it.
    pub async fn connect(url: &str, origin: Option<&str>) -> Result<Self, tungstenite::Error> {
        Self::connect_from(url, origin, test_address()).await
    }

    /// [`Client::connect`] from `address` (`X-Forwarded-For`, which emulators started with
    /// `--trust-forwarded-for` take as the source address).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_from(
        url: &str,
        origin: Option<&str>,
        address: &str,
    ) -> Result<Self, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().expect("origin header"));
        }
        request.headers_mut().insert(
            "X-Forwarded-For",
            address.parse().expect("an address is a header value"),
        );
        Self::open(request).await
    }

    /// Opens the WebSocket `request` describes (URL and headers).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn open(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Self, tungstenite::Error> {
        // wss:// (a deployed stage) makes a rustls client from the process default.
        chat_shared::tls::install_crypto_provider();
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(Self {
            ws,
            backlog: std::collections::VecDeque::new(),
        })
    }

    /// Opens the WebSocket `request` describes over TLS, trusting `ca` and nothing else (an emulator's `--tls`).
    ///
    /// # Errors
    /// As [`Client::connect`]; a certificate `ca` did not sign fails the handshake.
    pub async fn open_trusting(
        request: tungstenite::handshake::client::Request,
        ca: rustls::pki_types::CertificateDer<'static>,
    ) -> Result<Self, tungstenite::Error> {
        chat_shared::tls::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("the CA parses");
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_tungstenite::Connector::Rustls(Arc::new(config));
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector)),
        )
        .await
        .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(Self {
            ws,
            backlog: std::collections::VecDeque::new(),
        })
    }

    /// Asks for the history after `after` of `epoch` and waits for the whole answer; chat frames that arrive
    /// meanwhile are kept for [`Client::recv_json`].
    pub async fn history(&mut self, after: Option<u64>, epoch: Option<&str>) -> History {
        let request = serde_json::json!({ "action": "history", "after": after, "epoch": epoch });
        self.send_text(&request.to_string()).await;
        let mut history = History {
            chats: Vec::new(),
            epoch: String::new(),
            complete: false,
            more: false,
            frames: 0,
            bytes: 0,
        };
        loop {
            let frame = self.next_json().await;
            let Some(chats) = frame.get("history").and_then(Value::as_array) else {
                self.backlog.push_back(frame);
                continue;
            };
            history.chats.extend(chats.iter().cloned());
            history.frames += 1;
            history.bytes += frame.to_string().len();
            history.more |= frame.get("more") == Some(&Value::Bool(true));
            history.epoch = frame["epoch"].as_str().expect("epoch").to_owned();
            if let Some(complete) = frame.get("complete") {
                history.complete = complete.as_bool().expect("complete is a boolean");
                return history;
            }
        }
    }

    /// Sends `{"action": "ping"}` and returns the pong's time; other frames meanwhile are kept.
    pub async fn ping(&mut self) -> i64 {
        self.pong().await["pong"]
            .as_i64()
            .expect("pong is epoch ms")
    }

    /// Sends `{"action": "ping"}` and returns the whole pong; other frames meanwhile are kept.
    pub async fn pong(&mut self) -> Value {
        self.send_text(r#"{"action":"ping"}"#).await;
        loop {
            let frame = self.next_json().await;
            if frame.get("pong").is_some() {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// The next `n` chat frames, sorted by seq (they may arrive out of order: integrations run concurrently).
    pub async fn recv_chats(&mut self, n: usize) -> Vec<Value> {
        let mut chats = Vec::with_capacity(n);
        while chats.len() < n {
            let frame = self.recv_json().await;
            assert!(
                frame["message"].is_string(),
                "expected a chat frame, got {frame}"
            );
            chats.push(frame);
        }
        chats.sort_by_key(|c| c["seq"].as_u64().expect("seq"));
        chats
    }

    /// Sends `{"message": text}`.
    pub async fn say(&mut self, text: &str) {
        self.send_text(&serde_json::json!({ "message": text }).to_string())
            .await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("text frame sent");
    }

    /// Sends a raw frame of any kind.
    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("frame sent");
    }

    /// The next data frame, parsed as JSON.
    ///
    /// # Panics
    /// When nothing arrives within [`WAIT`], the socket closes, or the frame is not JSON text.
    pub async fn recv_json(&mut self) -> Value {
        if let Some(frame) = self.backlog.pop_front() {
            return frame;
        }
        self.next_json().await
    }

    /// The next frame that is not a ping or pong: text, binary or close (a dropped socket reads as a close
    /// without a frame).
    ///
    /// # Panics
    /// When nothing arrives within `within`.
    pub async fn recv_frame(&mut self, within: Duration) -> Message {
        loop {
            let next = tokio::time::timeout(within, self.ws.next())
                .await
                .expect("a frame arrives in time");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(message)) => return message,
                None | Some(Err(_)) => return Message::Close(None),
            }
        }
    }

    /// The next data frame off the socket, parsed as JSON.
    async fn next_json(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame arrives in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("frames are JSON");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next chat message's text (`{"message": ...}`).
    pub async fn recv_message(&mut self) -> String {
        let frame = self.recv_json().await;
        frame["message"]
            .as_str()
            .unwrap_or_else(|| panic!("expected a chat message, got {frame}"))
            .to_owned()
    }

    /// Asserts that no data frame arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        assert!(
            self.backlog.is_empty(),
            "expected silence, got {:?}",
            self.backlog
        );
        if let Ok(next) = tokio::time::timeout(quiet, self.ws.next()).await {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Every data frame until the server closes the socket (or `within` passes), parsed as JSON, and whether it
    /// closed.
    pub async fn frames_until_closed(&mut self, within: Duration) -> (Vec<Value>, bool) {
        let mut frames: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return (frames, false),
                Ok(Some(Ok(Message::Text(text)))) => {
                    frames.push(serde_json::from_str(&text).expect("frames are JSON"));
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return (frames, true),
                Ok(Some(Ok(other))) => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Waits for the server to close the socket and returns its close frame.
    ///
    /// # Panics
    /// When a data frame arrives first or nothing happens within `within`.
    pub async fn recv_close(&mut self, within: Duration) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(within, self.ws.next())
                .await
                .expect("the socket closes in time");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                None | Some(Err(_)) => return None,
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }

    /// Closes the socket normally.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` if it does not within [`WAIT`]. For effects that
/// land after the client saw its frame (a prune runs after every post of the fan-out has answered).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live members of `room` in `rooms`, now.
pub async fn members_of(rooms: &dyn RoomStore, room: &str) -> Vec<chat_shared::wire::ConnectionId> {
    let room = chat_shared::wire::RoomName::parse(room).expect("valid room");
    rooms
        .members(&room, chat_shared::handlers::now_ms())
        .await
        .expect("members readable")
}

/// A plain HTTP/1.1 request to the emulator; returns the status and body.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    use http_body_util::{BodyExt as _, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("answered in time")
        .expect("HTTP");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

/// An `Authorization` header that passes the emulator's signature check (it checks presence, like a gateway in
/// front of IAM would reject unsigned calls; it does not verify the signature).
pub const SIGNED: (&str, &str) = ("Authorization", "AWS4-HMAC-SHA256 Credential=test");

/// Runs scenarios in every local mode: `all_modes!(name, …)` expects `async fn name(mode: Mode)` for each and
/// makes the tests `name::in_memory`, `name::in_redis` and `name::in_lambda`. `all_modes!(deployed: name, …)`
/// also makes `name::in_deployed_stage`, ignored by default (run it with
/// `WSCHAT_E2E_URL=wss://…/prod cargo nextest run -p wschat-tests --run-ignored only`), for the scenarios that
/// need no look into Redis.
#[macro_export]
macro_rules! all_modes {
    (@local $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn in_memory() {
            super::$name($crate::Mode::Memory).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn in_redis() {
            super::$name($crate::Mode::Redis).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn in_lambda() {
            super::$name($crate::Mode::Lambda).await;
        }
    };
    (deployed: $($name:ident),+ $(,)?) => {$(
        mod $name {
            $crate::all_modes!(@local $name);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs a deployed stage in WSCHAT_E2E_URL"]
            async fn in_deployed_stage() {
                super::$name($crate::Mode::Deployed).await;
            }
        }
    )+};
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            $crate::all_modes!(@local $name);
        }
    )+};
}

/// What a stand-in function answers: the Invoke API's status and body.
pub type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = (u16, Value)> + Send>>;

/// A stand-in for any server of the Lambda Invoke API (`cargo lambda watch`, `sam local start-lambda`, …):
/// `POST /2015-03-31/functions/{name}/invocations` answered by a closure, every call recorded.
pub struct StandInLambda {
    /// `http://127.0.0.1:PORT`, for `--lambda-invoke-url`.
    pub url: String,
    calls: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl StandInLambda {
    /// Serves `answer(function, event)` on a free loopback port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(answer: impl Fn(String, Value) -> Answer + Send + Sync + 'static) -> Self {
        use axum::extract::{Path, State};
        use axum::routing::post;
        type Shared = (
            Arc<dyn Fn(String, Value) -> Answer + Send + Sync>,
            Arc<std::sync::Mutex<Vec<(String, Value)>>>,
        );
        let calls: Arc<std::sync::Mutex<Vec<(String, Value)>>> = Arc::default();
        let shared: Shared = (Arc::new(answer), calls.clone());
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{function}/invocations",
                post(
                    |State((answer, calls)): State<Shared>,
                     Path(function): Path<String>,
                     axum::Json(event): axum::Json<Value>| async move {
                        calls
                            .lock()
                            .expect("calls")
                            .push((function.clone(), event.clone()));
                        let (status, body) = answer(function, event).await;
                        (
                            axum::http::StatusCode::from_u16(status).expect("status"),
                            axum::Json(body),
                        )
                    },
                ),
            )
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self {
            url: format!("http://{addr}"),
            calls,
        }
    }

    /// Every invocation so far: the function's name and the event, in arrival order.
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().expect("calls").clone()
    }

    /// The events `function` was invoked with so far, in arrival order.
    pub fn events_of(&self, function: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|(name, _)| name == function)
            .map(|(_, event)| event)
            .collect()
    }

    /// The names of the functions invoked so far, in arrival order.
    pub fn invoked(&self) -> Vec<String> {
        self.calls().into_iter().map(|(name, _)| name).collect()
    }
}

/// An authorizer's Allow answer with `context`.
pub fn allow_with(context: Value) -> Value {
    serde_json::json!({
        "principalId": "p",
        "policyDocument": { "Version": "2012-10-17", "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*" }] },
        "context": context
    })
}
