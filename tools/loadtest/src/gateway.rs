//! `wschat-loadtest gateway`: the CPU one PostToConnection costs the process that makes it, for the SDK client
//! ([`AwsGateway`]) and the direct client ([`DirectGateway`]), side by side, against a running emulator (its own
//! process, so only the client's work is counted). One WebSocket client receives every frame posted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use chat_shared::gateway::{AwsGateway, DirectGateway, Gateway};
use chat_shared::wire::ConnectionId;
use futures_util::StreamExt as _;

/// `gateway` arguments.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// The emulator's address (`127.0.0.1:PORT`); its stage is `local`.
    #[arg(long)]
    pub emulator: String,
    /// Posts per client.
    #[arg(long, default_value_t = 20_000)]
    pub posts: usize,
    /// Posts in flight at once (the fan-out's FANOUT_MAX_IN_FLIGHT).
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
}

/// Posts with both clients and prints CPU µs per post.
///
/// # Errors
/// When the emulator cannot be reached or a post fails.
pub async fn run(args: &GatewayArgs) -> anyhow::Result<()> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/local?room=gw", args.emulator))
        .await
        .context("connecting to the emulator")?;
    let (_sink, mut stream) = ws.split();
    tokio::spawn(async move { while stream.next().await.is_some() {} });
    let list: serde_json::Value = {
        let body = reqwest_free_get(&format!("{}/_emulator/connections", args.emulator)).await?;
        serde_json::from_str(&body)?
    };
    let conn = ConnectionId::parse(
        list[0]["connectionId"]
            .as_str()
            .context("the emulator lists the connection")?,
    )?;
    let endpoint = format!("http://{}/local", args.emulator);
    let clients: [(&str, Arc<dyn Gateway>); 2] = [
        (
            "SDK client (aws-sdk-apigatewaymanagement)",
            Arc::new(AwsGateway::local(&endpoint)),
        ),
        (
            "direct client (aws-sigv4 + hyper)",
            Arc::new(DirectGateway::local(&endpoint)),
        ),
    ];
    let frame = Bytes::from_static(br#"{"message":"a typical chat line of some forty bytes","seq":1234,"epoch":"0123456789abcdef","ts":1764620000000}"#);
    let mut results = Vec::new();
    for (name, gateway) in clients {
        // Warm the connection pool first.
        for _ in 0..args.in_flight {
            gateway.post_to_connection(&conn, frame.clone()).await?;
        }
        let cpu = crate::matrix::process_cpu_ns(std::process::id())?;
        let started = Instant::now();
        let outcomes: Vec<_> = futures_util::stream::iter(0..args.posts)
            .map(|_| {
                let gateway = gateway.clone();
                let (conn, frame) = (conn.clone(), frame.clone());
                async move { gateway.post_to_connection(&conn, frame).await }
            })
            .buffer_unordered(args.in_flight)
            .collect()
            .await;
        let wall = started.elapsed();
        let cpu_us = (crate::matrix::process_cpu_ns(std::process::id())? - cpu) as f64
            / 1000.0
            / args.posts as f64;
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        anyhow::ensure!(failed == 0, "{failed} posts failed with {name}");
        println!(
            "{name:<44} {cpu_us:>7.1} µs CPU per post, {:>8.0} posts/s",
            args.posts as f64 / wall.as_secs_f64()
        );
        results.push(cpu_us);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "the direct client uses {:.1}x less CPU per post",
        results[0] / results[1]
    );
    Ok(())
}

/// A plain HTTP/1.0 GET on loopback, without pulling in an HTTP client crate for one request.
async fn reqwest_free_get(url: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (host, path) = url.split_once('/').context("host/path")?;
    let mut socket = tokio::net::TcpStream::connect(host).await?;
    socket
        .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
