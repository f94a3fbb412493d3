//! `wschat-loadtest gateway`: the CPU one PostToConnection costs the process that makes it, for the SDK client
//! ([`AwsGateway`]) and the direct client ([`DirectGateway`]), side by side, against a running emulator (its own
//! process, so only the client's work is counted). One WebSocket client receives every frame posted.
//!
//! A third row is the floor under both: the direct client's request (path, content type, body) with its head
//! built once, written as plain bytes to a keep-alive loopback socket and its answer read back, with no signing
//! and no HTTP library ([`RawFloor`]). It is not a client anyone could deploy (it signs nothing and parses only what the emulator answers); it says what one
//! loopback HTTP request per post costs the poster on this machine whatever the client.

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
    let clients: [(&str, Arc<dyn Gateway>); 3] = [
        (
            "SDK client (aws-sdk-apigatewaymanagement)",
            Arc::new(AwsGateway::local(&endpoint)),
        ),
        (
            "direct client (aws-sigv4 + hyper)",
            Arc::new(DirectGateway::local(&endpoint)),
        ),
        (
            "floor: pre-built bytes on a raw socket",
            Arc::new(RawFloor::new(&args.emulator, &conn)),
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
        "the direct client uses {:.1}x less CPU per post; {:.0} % of its CPU is the floor's",
        results[0] / results[1],
        100.0 * results[2] / results[1]
    );
    Ok(())
}

/// The floor: one connection's POST as bytes (the head built once, the length and body appended per post),
/// written to an idle keep-alive socket (or a new one), the answer's head and `content-length` body read back.
/// Unsigned but for a fixed `Authorization` header the emulator only checks the shape of; posts to the one
/// connection it was made for.
struct RawFloor {
    address: String,
    head: String,
    idle: std::sync::Mutex<Vec<tokio::net::TcpStream>>,
}

impl RawFloor {
    fn new(address: &str, conn: &ConnectionId) -> Self {
        let path = chat_shared::gateway::direct::connection_path(conn);
        Self {
            address: address.to_owned(),
            head: format!(
                "POST /local{path} HTTP/1.1\r\nhost: {address}\r\n\
                 authorization: AWS4-HMAC-SHA256 Credential=local/20261202/us-east-1/execute-api/aws4_request\r\n\
                 content-type: application/octet-stream\r\ncontent-length: "
            ),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn exchange(
        &self,
        socket: &mut tokio::net::TcpStream,
        data: &Bytes,
    ) -> std::io::Result<u16> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut request = Vec::with_capacity(self.head.len() + 8 + data.len());
        request.extend_from_slice(self.head.as_bytes());
        request.extend_from_slice(format!("{}\r\n\r\n", data.len()).as_bytes());
        request.extend_from_slice(data);
        socket.write_all(&request).await?;
        let mut answer = Vec::with_capacity(256);
        loop {
            if socket.read_buf(&mut answer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = response
                .parse(&answer)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            else {
                continue;
            };
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            if answer.len() >= head + length {
                return Ok(response.code.unwrap_or(0));
            }
        }
    }
}

#[async_trait::async_trait]
impl Gateway for RawFloor {
    async fn post_to_connection(
        &self,
        _conn: &ConnectionId,
        data: Bytes,
    ) -> Result<(), chat_shared::gateway::GatewayError> {
        let other = |e: std::io::Error| chat_shared::gateway::GatewayError::Other(Box::new(e));
        let idle = self.idle.lock().expect("pool lock").pop();
        let mut socket = match idle {
            Some(socket) => socket,
            None => {
                let socket = tokio::net::TcpStream::connect(&self.address)
                    .await
                    .map_err(other)?;
                socket.set_nodelay(true).map_err(other)?;
                socket
            }
        };
        let status = self.exchange(&mut socket, &data).await.map_err(other)?;
        self.idle.lock().expect("pool lock").push(socket);
        match status {
            200 => Ok(()),
            status => Err(chat_shared::gateway::GatewayError::Other(
                format!("the emulator answered {status}").into(),
            )),
        }
    }
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
