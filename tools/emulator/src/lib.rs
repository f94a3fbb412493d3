//! A local API Gateway WebSocket API, so the whole chat runs on one laptop with no AWS and no Docker.
//!
//! One process on one port:
//! * serves the static pages of `web/` (and a `/config.js` that points them at this emulator);
//! * accepts WebSocket upgrades on `/` and `/{stage}`, runs the authorizer and `$connect` **before** accepting
//!   (a non-2xx `$connect` rejects the handshake with that status), turns each text frame into a `MESSAGE` event
//!   routed by `$request.body.action`, and sends `$disconnect` when the socket closes;
//! * answers the Management API, `POST`/`GET`/`DELETE` `/@connections/{id}` (also under `/{stage}`), with the
//!   status codes, error types and limits of AWS;
//! * answers Lambda's Invoke API for asynchronous invocations (`ws-default` handing a big room's shards to
//!   `ws-fanout`), queued and run like every other invocation ([`invocations`]);
//! * enforces API Gateway's limits: 32 KB frames (close 1009), no binary frames (1003), idle timeout and
//!   maximum connection duration (1001);
//! * with `--tls`, serves all of it as `https://` and `wss://` with a certificate of a local CA ([`tls`]).
//!
//! The events go to the function [`routes::RouteTable`] (read from the deploy template) names for the route, run
//! by a [`backend::Backend`]: the shared handlers in process, or the real Lambda binaries behind
//! `cargo lambda watch` ([`lambda`]).

mod activity;
mod admin;
pub mod backend;
pub mod events;
pub mod faults;
mod guard;
mod handshake;
mod integration;
mod invocations;
pub mod lambda;
mod management;
pub mod meter;
pub mod oidc;
pub mod routes;
mod socket;
mod state;
mod timefmt;
pub mod tls;

pub use crate::state::{Options, PageAuth, default_web_dir};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt as _;

use crate::backend::{Backend, InProcess, InProcessOptions};
use crate::lambda::LambdaInvoke;
use crate::state::{AppState, Inner};

/// Where the functions run.
#[derive(Debug, Clone)]
// Built once per emulator and moved once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum BackendChoice {
    /// The shared handlers, in this process.
    InProcess(InProcessOptions),
    /// Real Lambda binaries behind a Lambda Invoke API (`cargo lambda watch`), at this base URL.
    Lambda {
        /// e.g. `http://127.0.0.1:9000`.
        invoke_url: String,
    },
}

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    state: AppState,
    local: Arc<management::LocalGateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Binds `addr` (port 0 picks a free port) and starts serving in the background.
    ///
    /// # Errors
    /// When the address cannot be bound or the backend cannot be built (Redis unreachable).
    pub async fn start(
        addr: SocketAddr,
        options: Options,
        backend: BackendChoice,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Self::start_on(listener, options, backend).await
    }

    /// Starts serving on `listener`, bound by the caller: so the caller knows the address first (for instance to
    /// configure the functions to trust this emulator's OpenID provider, [`Emulator::issuer_at`]).
    ///
    /// # Errors
    /// When the backend cannot be built (Redis unreachable).
    pub async fn start_on(
        listener: TcpListener,
        options: Options,
        backend: BackendChoice,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let endpoint = format!("{}://{addr}/{}", options.http_scheme(), options.stage);
        if let Some(tls) = &options.tls {
            // The in-process handlers' HTTPS clients (posts with --posts http, the issuer's keys) trust the local
            // CA, as the functions do through AWS_CA_BUNDLE.
            chat_shared::tls::trust_also(vec![tls.ca()]);
        }
        // The in-process handlers post into the emulator they are part of, which is built after them.
        let local = Arc::new(management::LocalGateway::default());
        let invoker = Arc::new(invocations::LocalInvoker::default());
        let backend: Arc<dyn Backend> = match backend {
            BackendChoice::InProcess(opts) => Arc::new(
                InProcess::new(&opts, local.clone(), invoker.clone(), &endpoint)
                    .await
                    .context("cannot build the in-process handlers (Redis?)")?,
            ),
            BackendChoice::Lambda { invoke_url } => Arc::new(LambdaInvoke::new(&invoke_url)?),
        };
        let redis = match options.meter_redis_url.as_deref() {
            Some(url) => match meter::RedisCounter::start(url).await {
                Ok(counter) => Some(counter),
                Err(err) => {
                    tracing::warn!(error = %err, "the cost meter cannot read Redis's command count; Redis is not priced");
                    None
                }
            },
            None => None,
        };
        options.faults.validate().map_err(anyhow::Error::msg)?;
        let oidc = options.oidc_provider.then(|| {
            Arc::new(oidc::Provider::new(
                Self::issuer_at(addr, options.tls.is_some()),
                options.oidc_token_ttl,
            ))
        });
        let state = AppState(Arc::new(Inner {
            meter: meter::Meter::new(options.prices.clone(), redis),
            faults: Mutex::new(options.faults.clone()),
            options,
            backend,
            connections: Mutex::default(),
            accepted: std::sync::atomic::AtomicU64::new(0),
            oidc,
            activity: activity::Activity::default(),
            addr,
        }));
        local.state.attach(&state);
        invoker.state.attach(&state);
        let app = router(state.clone());
        let kept = state.clone();
        let (shutdown, on_shutdown) = oneshot::channel::<()>();
        let tls = state.options.tls.clone();
        let task = tokio::spawn(async move {
            let closing = state.clone();
            let stopped = async move {
                let _ = on_shutdown.await;
                // Open WebSockets would hold graceful shutdown forever: close them like a gateway going away.
                closing.close_all(1001, "Going away");
            };
            let served = match tls {
                Some(tls) => match tls.listen(listener) {
                    Ok(listener) => serve(listener, app, stopped).await,
                    Err(err) => Err(err),
                },
                // TCP_NODELAY on every accepted socket: HTTP answers and WebSocket frames are small writes, and
                // Nagle's algorithm meeting the peer's delayed ACK would hold each for ~40 ms. (The TLS listener
                // sets it before the handshake.)
                None => {
                    let listener = listener.tap_io(|tcp| {
                        if let Err(err) = tcp.set_nodelay(true) {
                            tracing::debug!(error = %err, "could not set TCP_NODELAY");
                        }
                    });
                    serve(listener, app, stopped).await
                }
            };
            if let Err(err) = served {
                tracing::error!(error = %err, "emulator stopped");
            }
        });
        // As a Lambda's Init opens its Management API connection before the first message (with --posts http; the
        // in-memory gateway has nothing to open).
        let backend = kept.backend.clone();
        tokio::spawn(async move { backend.warm().await });
        Ok(Self {
            addr,
            state: kept,
            local,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer URL of the development OpenID provider of an emulator at `addr` (`--oidc-provider`), serving
    /// TLS or not.
    pub fn issuer_at(addr: SocketAddr, tls: bool) -> String {
        format!("{}://{addr}/oidc", state::http_scheme(tls))
    }

    /// The emulator's URL: `http://127.0.0.1:PORT`, or `https://` with TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.state.options.http_scheme(), self.addr)
    }

    /// The stage URL of the Management API (`http://127.0.0.1:PORT/local`).
    pub fn management_endpoint(&self, stage: &str) -> String {
        format!("{}/{stage}", self.url())
    }

    /// The gateway the in-process handlers post through by default: PostToConnection straight into this emulator's
    /// connections, with the same checks, faults, limits and meter as `POST /@connections/{id}`.
    pub fn gateway(&self) -> Arc<dyn chat_shared::gateway::Gateway> {
        self.local.clone()
    }

    /// What the cost meter counted so far (the JSON of `GET /_emulator/metrics`).
    pub async fn metrics(&self) -> serde_json::Value {
        self.state.metrics().await
    }

    /// Closes every connection (each gets its `$disconnect`), stops serving, and returns the cost meter's final
    /// counts.
    pub async fn shutdown(mut self) -> serde_json::Value {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.state.metrics().await
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `app` on `listener` until `stopped`, with each request's peer address.
async fn serve<L>(
    listener: L,
    app: Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    // tap_io: axum gives the peer address (ConnectInfo) of any listener it wraps this way.
    axum::serve(
        listener.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped)
    .await
}

/// The warning to print when the emulator listens on `host`, if any: beyond loopback, anyone who can reach the
/// port can post to any connection, because the emulator's `/@connections` checks that a request is signed,
/// not who signed it.
pub fn exposure_warning(host: std::net::IpAddr) -> Option<&'static str> {
    (!host.is_loopback()).then_some(
        "listening on a non-loopback address: the emulator's /@connections does not verify signatures, \
         so anyone who reaches this port can post to or close any connection",
    )
}

fn router(state: AppState) -> Router {
    Router::new()
        .merge(admin::routes())
        .merge(oidc::routes())
        .route("/@connections/{id}", management::routes())
        .route("/{stage}/@connections/{id}", management::routes())
        .route(
            "/2015-03-31/functions/{name}/invocations",
            invocations::routes(),
        )
        .route("/config.js", get(config_js))
        .fallback(upgrade_or_static)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::refuse_forgeries,
        ))
        .with_state(state)
}

/// `/config.js`: tells the pages where the WebSocket API is (this emulator, at the host the page came from) and the
/// longest message it takes.
async fn config_js(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:3000");
    let mut config = serde_json::json!({
        "websocketUrl": format!("{}://{host}/{}", state.options.ws_scheme(), state.options.stage),
        "maxMessageBytes": state.options.max_message_bytes,
    });
    if let Some(auth) = &state.options.page_auth {
        config["auth"] = serde_json::json!({ "issuer": auth.issuer, "clientId": auth.client_id });
    }
    let body = format!("// Generated by the wschat emulator.\nwindow.WSCHAT_CONFIG = {config};\n");
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Every other request: a WebSocket handshake on `/` or `/{stage}`, else a static file.
async fn upgrade_or_static(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Ok(upgrade) =
        axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state).await
    {
        let path = parts.uri.path().trim_end_matches('/');
        if !path.is_empty() && path.trim_start_matches('/') != state.options.stage {
            return (StatusCode::NOT_FOUND, "no WebSocket API at this path").into_response();
        }
        return handshake::handshake(state, upgrade, &parts, peer).await;
    }
    let request = Request::from_parts(parts, body);
    match tower_http::services::ServeDir::new(&state.options.web_dir)
        .oneshot(request)
        .await
    {
        Ok(response) => response.into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_loopback_address_is_warned_about() {
        assert!(exposure_warning("127.0.0.1".parse().expect("ip")).is_none());
        assert!(exposure_warning("::1".parse().expect("ip")).is_none());
        let warning = exposure_warning("0.0.0.0".parse().expect("ip")).expect("warned");
        assert!(warning.contains("signatures"), "{warning}");
        assert!(exposure_warning("192.168.1.20".parse().expect("ip")).is_some());
    }
}
