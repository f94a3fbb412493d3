//! `wschat-emulator`: the local API Gateway WebSocket. See the crate docs of `wschat_emulator`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chat_shared::config::Config;
use clap::Parser;
use wschat_emulator::backend::{InProcessOptions, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};

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
    /// Invoke real Lambda binaries through this Lambda Invoke API (e.g. `cargo lambda watch`'s
    /// http://127.0.0.1:9000) instead of running the handlers in process.
    #[arg(long, env = "LAMBDA_INVOKE_URL")]
    lambda_invoke_url: Option<String>,
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
    /// Share of /@connections calls answered 429 LimitExceeded (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_shared::telemetry::init();
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.throttle_rate),
        "--throttle-rate must be between 0 and 1"
    );
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
        management_latency: Duration::from_millis(args.management_latency_ms),
        management_jitter: Duration::from_millis(args.management_jitter_ms),
        open_delay: Duration::from_millis(args.open_delay_ms),
        throttle_rate: args.throttle_rate,
        ..Options::default()
    };
    // The same variables the functions read (REDIS_URL, ALLOWED_ORIGINS, FANOUT_*...).
    let config = Config::from_env()?;
    let backend = match args.lambda_invoke_url {
        Some(invoke_url) => BackendChoice::Lambda { invoke_url },
        None => BackendChoice::InProcess(InProcessOptions::from_config(config)),
    };
    let mode = match &backend {
        BackendChoice::Lambda { invoke_url } => format!("Lambda functions at {invoke_url}"),
        BackendChoice::InProcess(InProcessOptions {
            store: StoreChoice::Redis,
            ..
        }) => "in-process handlers, rooms in Redis".to_owned(),
        BackendChoice::InProcess(_) => "in-process handlers, rooms in memory".to_owned(),
    };
    if !args.host.is_loopback() {
        // Anyone who can reach the port can post to any connection: the Management API here checks that a
        // request is signed, not who signed it.
        tracing::warn!(
            host = %args.host,
            "listening on a non-loopback address: the emulator's /@connections does not verify signatures"
        );
    }
    let emulator = Emulator::start(SocketAddr::new(args.host, args.port), options, backend).await?;
    // Scripts and tests read this exact line to learn the port.
    println!("wschat emulator listening on http://{}", emulator.addr());
    tracing::info!(
        mode,
        websocket = %format!("ws://{}/{}", emulator.addr(), args.stage),
        management = %emulator.management_endpoint(&args.stage),
        "ready: open http://{}/ in a browser", emulator.addr()
    );
    shutdown_signal().await;
    emulator.shutdown().await;
    Ok(())
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
