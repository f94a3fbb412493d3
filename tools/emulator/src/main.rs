//! `wschat-emulator`: the local API Gateway WebSocket. See the crate docs of `wschat_emulator`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chat_shared::config::Config;
use chat_shared::functions::{Function as _, WsFanout};
use clap::Parser;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::faults::Faults;
use wschat_emulator::meter::Prices;
use wschat_emulator::routes::{Naming, RouteTable};
use wschat_emulator::{BackendChoice, Emulator, Options, PageAuth};

// mimalloc: every frame allocates its event, JSON and queue entries; glibc's malloc and free were a tenth of the
// emulator's CPU per frame (docs/benchmark.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A local API Gateway WebSocket API for wschat: serves web/, runs the handlers, answers /@connections.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Stage name: the WebSocket URL is ws://HOST:PORT/STAGE and the Management API is under /STAGE/@connections.
    #[arg(long, default_value = "local")]
    stage: String,
    /// Folder of static pages to serve.
    #[arg(long, env = "WSCHAT_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Invoke the functions through this Lambda Invoke API (`cargo lambda watch`'s http://127.0.0.1:9000,
    /// `sam local start-lambda`'s http://127.0.0.1:3001, or any server of that API) instead of running wschat's
    /// handlers in process.
    #[arg(long, env = "LAMBDA_INVOKE_URL")]
    lambda_invoke_url: Option<String>,
    /// A SAM/CloudFormation template to read the routes, the authorizer and the functions' memory from, at start
    /// (default: wschat's own infra/template.yaml, built in).
    #[arg(long, env = "WSCHAT_TEMPLATE")]
    template: Option<PathBuf>,
    /// Invoke functions by their template logical id (`logical-id`, as `sam local start-lambda` names them) or
    /// by `Metadata.BuildProperties.Binary` (`binary`, as `cargo lambda watch` does).
    #[arg(long, default_value = "binary")]
    function_names: wschat_emulator::routes::Naming,
    /// A JSON file of prices for the cost meter (`GET /_emulator/metrics`); fields it omits keep the
    /// us-east-1 list prices.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Do not run the $connect authorizer (events then carry no requestContext.authorizer).
    #[arg(long)]
    no_authorizer: bool,
    /// Close a connection after this many seconds without a message from the client (API Gateway: 600).
    #[arg(long, default_value_t = 600.0)]
    idle_timeout_secs: f64,
    /// Close every connection after this many seconds (API Gateway: 7200).
    #[arg(long, default_value_t = 7200.0)]
    max_duration_secs: f64,
    /// Milliseconds added to every /@connections call (the real API takes a few).
    #[arg(long, default_value_t = 0)]
    management_latency_ms: u64,
    /// Up to this many random milliseconds more on each /@connections call (reorders concurrent deliveries).
    #[arg(long, default_value_t = 0)]
    management_jitter_ms: u64,
    /// Milliseconds after a successful $connect during which posts to the new connection answer 410 (as on AWS).
    #[arg(long, default_value_t = 0)]
    open_delay_ms: u64,
    /// Share of /@connections calls answered 429 LimitExceeded (0.0-1.0; also POST /_emulator/faults).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Share of /@connections calls to live connections answered 410 Gone (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    gone_rate: f64,
    /// Share of $disconnect events never sent, as AWS may skip them (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    drop_disconnect_rate: f64,
    /// Milliseconds the gateway waits for an integration (API Gateway: 29000).
    #[arg(long, default_value_t = 29_000)]
    integration_timeout_ms: u64,
    /// How the in-process handlers post: `in-memory` (into the emulator's connections, with every check, fault and
    /// limit of /@connections but no HTTP round trip) or `http` (signed, over HTTP to this emulator's
    /// /@connections, as the Lambda functions do). Ignored with --lambda-invoke-url.
    #[arg(long, value_enum, default_value_t = Posts::InMemory)]
    posts: Posts,
    /// Threads running the gateway (and the in-process handlers). One spends the least CPU per delivered frame:
    /// on loopback the work is small and many-threaded runtimes spend much of it waking each other
    /// (docs/benchmark.md, "Threads"); more may help a big in-process chat on a many-core machine.
    #[arg(long, env = "WSCHAT_EMULATOR_THREADS", default_value_t = 1)]
    worker_threads: usize,
    /// Let frames sent to a client reset its idle timer too (by default only the client's messages do).
    #[arg(long)]
    idle_reset_on_send: bool,
    /// Take each handshake's source address from its X-Forwarded-For header (the first address) instead of the
    /// TCP peer: tests and load tools on one machine can then be many addresses. Anyone can write that header.
    #[arg(long, env = "WSCHAT_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Serve a development OpenID Connect provider at /oidc (sign in as anyone). In process, the functions then
    /// require its tokens (AUTH_MODE=oidc, AUTH_ISSUER=this emulator's /oidc), unless AUTH_MODE says otherwise.
    #[arg(long, env = "WSCHAT_OIDC_PROVIDER")]
    oidc_provider: bool,
    /// How long the development provider's tokens last, in seconds.
    #[arg(long, default_value_t = 3600)]
    oidc_token_ttl_secs: u64,
    /// A host name to answer besides the address served on (and localhost on loopback), e.g. a name in
    /// /etc/hosts; repeat for more. Any other Host is refused (421), so no web page reaches the emulator by DNS
    /// rebinding.
    #[arg(long = "allow-host", env = "WSCHAT_ALLOW_HOSTS", value_delimiter = ',')]
    allow_hosts: Vec<String>,
    /// Serve https:// and wss:// (the pages, the WebSocket API, /@connections, the Invoke API, /oidc) with a
    /// certificate of a local CA, made in --tls-dir on first use and kept. Functions behind
    /// --lambda-invoke-url are told to trust it with AWS_CA_BUNDLE=<tls-dir>/ca.pem.
    #[arg(long, env = "WSCHAT_TLS")]
    tls: bool,
    /// The local CA's folder (default: $XDG_DATA_HOME/wschat-emulator/tls, else ~/.local/share/wschat-emulator/tls).
    #[arg(long, env = "WSCHAT_TLS_DIR")]
    tls_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = match args.worker_threads {
        0 => anyhow::bail!("--worker-threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    chat_shared::telemetry::init();
    let naming = args.function_names;
    let routes = match &args.template {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            RouteTable::from_template_named(&text, naming)
                .with_context(|| format!("cannot follow the routes of {}", path.display()))?
        }
        None => RouteTable::from_template_named(wschat_emulator::routes::TEMPLATE, naming)?,
    };
    let prices = match &args.prices {
        Some(path) => Prices::from_file(path)?,
        None => Prices::default(),
    };
    let seconds = |s: f64, name: &str| {
        Duration::try_from_secs_f64(s)
            .with_context(|| format!("--{name} must be a positive number of seconds"))
    };
    let options = Options {
        stage: args.stage.clone(),
        web_dir: args
            .web_dir
            .unwrap_or_else(wschat_emulator::default_web_dir),
        authorizer: !args.no_authorizer,
        idle_timeout: seconds(args.idle_timeout_secs, "idle-timeout-secs")?,
        max_duration: seconds(args.max_duration_secs, "max-duration-secs")?,
        faults: Faults {
            drop_disconnect_rate: args.drop_disconnect_rate,
            gone_rate: args.gone_rate,
            throttle_rate: args.throttle_rate,
            post_latency_ms: args.management_latency_ms,
            post_jitter_ms: args.management_jitter_ms,
            throttle_connections: Vec::new(),
        },
        open_delay: Duration::from_millis(args.open_delay_ms),
        integration_timeout: Duration::from_millis(args.integration_timeout_ms),
        idle_reset_on_send: args.idle_reset_on_send,
        trust_forwarded_for: args.trust_forwarded_for,
        allowed_hosts: args.allow_hosts.clone(),
        prices,
        routes,
        ..Options::default()
    };
    let tls = if args.tls {
        let dir = args
            .tls_dir
            .clone()
            .unwrap_or_else(wschat_emulator::tls::default_dir);
        let mut hosts = args.allow_hosts.clone();
        hosts.push(args.host.to_string());
        let tls = wschat_emulator::tls::LocalTls::in_dir(&dir, &hosts).with_context(|| {
            format!(
                "cannot make the local CA's certificate in {}",
                dir.display()
            )
        })?;
        Some(std::sync::Arc::new(tls))
    } else {
        None
    };
    let options = Options { tls, ..options };
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // The same variables the functions read (REDIS_URL, ALLOWED_ORIGINS, FANOUT_*, AUTH_*...).
    let mut config = Config::from_env()?;
    chat_shared::startup::trust_ca_bundle(&config)?;
    // As deployed, a big room's fan-out is shared out to ws-fanout (FANOUT_SHARD_SIZE members per invocation).
    if config.fanout_function.is_none() {
        config.fanout_function = Some(WsFanout::BINARY.to_owned());
    }
    if args.oidc_provider && args.lambda_invoke_url.is_none() && config.auth.oidc().is_none() {
        // The provider's issuer and client, and the rest of the AUTH_* variables as set (AUTH_LEEWAY_SECS...).
        let issuer = Emulator::issuer_at(listener.local_addr()?, options.tls.is_some());
        config.auth = Config::from_lookup(|name| match name {
            chat_shared::config::AUTH_MODE => Some("oidc".to_owned()),
            chat_shared::config::AUTH_ISSUER => Some(issuer.clone()),
            chat_shared::config::AUTH_AUDIENCE => {
                Some(wschat_emulator::oidc::DEV_CLIENT_ID.to_owned())
            }
            other => std::env::var(other).ok(),
        })?
        .auth;
    }
    let options = Options {
        oidc_provider: args.oidc_provider,
        oidc_token_ttl: Duration::from_secs(args.oidc_token_ttl_secs),
        page_auth: config.auth.oidc().map(|oidc| PageAuth {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
        }),
        ..options
    };
    // The cost meter counts Redis commands on a single server it can reach (not a cluster).
    let options = Options {
        meter_redis_url: config.redis_url.clone().filter(|_| !config.redis_cluster),
        max_message_bytes: config.max_message_bytes,
        ..options
    };
    anyhow::ensure!(
        args.lambda_invoke_url.is_some() || naming == Naming::Binary,
        "--function-names logical-id needs --lambda-invoke-url: the in-process handlers go by binary name"
    );
    let backend = match args.lambda_invoke_url {
        Some(invoke_url) => BackendChoice::Lambda { invoke_url },
        None => BackendChoice::InProcess(InProcessOptions {
            posts: args.posts,
            ..InProcessOptions::from_config(config)
        }),
    };
    let mode = match &backend {
        BackendChoice::Lambda { invoke_url } => format!("Lambda functions at {invoke_url}"),
        BackendChoice::InProcess(InProcessOptions {
            store: StoreChoice::Redis,
            ..
        }) => "in-process handlers, rooms in Redis".to_owned(),
        BackendChoice::InProcess(_) => "in-process handlers, rooms in memory".to_owned(),
    };
    if let Some(warning) = wschat_emulator::exposure_warning(args.host) {
        tracing::warn!(host = %args.host, "{warning}");
    }
    let auth = match config_auth_issuer(&options) {
        Some(issuer) => format!("sign-in required (issuer {issuer})"),
        None => "open (no sign-in)".to_owned(),
    };
    let ca = options
        .tls
        .as_ref()
        .map(|tls| tls.ca_path().display().to_string());
    let ws = options.ws_scheme();
    let emulator = Emulator::start_on(listener, options, backend).await?;
    let url = emulator.url();
    // Scripts and tests read this exact line to learn the port.
    println!("wschat emulator listening on {url}");
    if let Some(ca) = &ca {
        // Scripts and tests read this line to learn what to trust.
        println!("wschat emulator CA: {ca}");
    }
    tracing::info!(
        mode,
        auth,
        websocket = %format!("{ws}://{}/{}", emulator.addr(), args.stage),
        management = %emulator.management_endpoint(&args.stage),
        "ready: open {url}/ in a browser (the emulator's own page: {url}/_emulator/)",
    );
    if let Some(ca) = &ca {
        tracing::info!(
            ca,
            "TLS with a local CA: functions trust it with AWS_CA_BUNDLE={ca}; a browser, once it is imported"
        );
    }
    shutdown_signal().await;
    let metrics = emulator.shutdown().await;
    tracing::info!("{}", wschat_emulator::meter::summary(&metrics));
    Ok(())
}

/// The issuer the pages sign in with, when auth is on.
fn config_auth_issuer(options: &Options) -> Option<&str> {
    options.page_auth.as_ref().map(|auth| auth.issuer.as_str())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
