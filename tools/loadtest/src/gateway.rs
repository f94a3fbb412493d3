//! `wschat-loadtest gateway`: the CPU one PostToConnection costs the process that makes it, for the SDK client
//! ([`AwsGateway`]) and the direct client ([`DirectGateway`]), side by side, against a running emulator (its own
//! process, so only the client's work is counted). One WebSocket client receives every frame posted.
//!
//! Below them, three floors ([`RawFloor`]), none a client anyone could deploy (they parse only what the emulator
//! answers, and recover from nothing):
//! * the direct client's request (path, content type, body) with its head built once, written as plain bytes to
//!   a keep-alive loopback socket and its answer read back, with no signing and no HTTP library: what one
//!   loopback HTTP request per post costs the poster on this machine whatever the client;
//! * the same, signed per post as the direct client signs ([`SignedClient::signature_headers`]): what the
//!   direct client would cost with a bare stack of idle sockets, no timeout and no checks of its own;
//! * the unsigned bytes pipelined, `--in-flight` (64) requests per write on one connection: what HTTP/1.1
//!   pipelining would save (docs/benchmark.md, "How far down one post can go" says why the functions do not pipeline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use chat_shared::gateway::{AwsGateway, DirectGateway, Gateway};
use chat_shared::signed::SignedClient;
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

/// Posts with both clients and the floors, prints CPU µs per post and returns them, row by row.
///
/// # Errors
/// When the emulator cannot be reached or a post fails.
pub async fn run(args: &GatewayArgs) -> anyhow::Result<Vec<(String, f64)>> {
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
    let clients: [(&str, Arc<dyn Gateway>); 4] = [
        (
            "SDK client (aws-sdk-apigatewaymanagement)",
            Arc::new(AwsGateway::local(&endpoint)),
        ),
        (
            "direct client (aws-sigv4 + its HTTP/1.1)",
            Arc::new(DirectGateway::local(&endpoint)),
        ),
        (
            "floor: pre-built bytes on a raw socket",
            Arc::new(RawFloor::new(&args.emulator, &conn, None)),
        ),
        (
            "floor + SigV4: the same bytes, signed per post",
            Arc::new(RawFloor::new(
                &args.emulator,
                &conn,
                Some(SignedClient::local(Duration::from_secs(5))),
            )),
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
        let cpu_us = cpu_ns_since(cpu)? as f64 / 1000.0 / args.posts as f64;
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        anyhow::ensure!(failed == 0, "{failed} posts failed with {name}");
        println!(
            "{name:<44} {cpu_us:>7.1} µs CPU per post, {:>8.0} posts/s",
            args.posts as f64 / wall.as_secs_f64()
        );
        results.push((name.to_owned(), cpu_us));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (pipelined, rate) = pipelined_floor(args, &conn, &frame).await?;
    let name = format!("floor, pipelined: {} per write", args.in_flight);
    println!("{name:<44} {pipelined:>7.1} µs CPU per post, {rate:>8.0} posts/s");
    results.push((name, pipelined));
    println!(
        "the direct client uses {:.1}x less CPU per post than the SDK client; {:.0} % of its CPU is the floor's, {:.0} % the signed floor's",
        results[0].1 / results[1].1,
        100.0 * results[2].1 / results[1].1,
        100.0 * results[3].1 / results[1].1
    );
    Ok(results)
}

/// The floor: one connection's POST as bytes (the head built once; the signature, length and body appended per
/// post), written to an idle keep-alive socket (or a new one), the answer's head and `content-length` body read
/// back. Unsigned, it sends a fixed `Authorization` header the emulator only checks the shape of; posts to the
/// one connection it was made for.
struct RawFloor {
    address: String,
    /// `http://{address}{path}`, as the signer sees it.
    uri: String,
    head: String,
    signer: Option<SignedClient>,
    idle: std::sync::Mutex<Vec<tokio::net::TcpStream>>,
}

/// The floor's one header besides `host` (which the signer adds to what it signs by itself).
const CONTENT_TYPE: (&str, &str) = ("content-type", "application/octet-stream");

impl RawFloor {
    fn new(address: &str, conn: &ConnectionId, signer: Option<SignedClient>) -> Self {
        let path = format!(
            "/local{}",
            chat_shared::gateway::direct::connection_path(conn)
        );
        let (name, value) = CONTENT_TYPE;
        Self {
            address: address.to_owned(),
            uri: format!("http://{address}{path}"),
            head: format!("POST {path} HTTP/1.1\r\nhost: {address}\r\n{name}: {value}\r\n"),
            signer,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Appends the whole request for `data` to `request`.
    fn write_request(&self, request: &mut Vec<u8>, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        request.extend_from_slice(self.head.as_bytes());
        match &self.signer {
            Some(signer) => {
                let signature = signer
                    .signature_headers("execute-api", "POST", &self.uri, &[CONTENT_TYPE], data)
                    .map_err(std::io::Error::other)?;
                for (name, value) in signature {
                    write!(request, "{name}: {value}\r\n")?;
                }
            }
            None => request.extend_from_slice(
                b"authorization: AWS4-HMAC-SHA256 Credential=local/20261202/us-east-1/execute-api/aws4_request\r\n",
            ),
        }
        write!(request, "content-length: {}\r\n\r\n", data.len())?;
        request.extend_from_slice(data);
        Ok(())
    }

    async fn exchange(
        &self,
        socket: &mut tokio::net::TcpStream,
        data: &Bytes,
    ) -> std::io::Result<u16> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut request = Vec::with_capacity(self.head.len() + 400 + data.len());
        self.write_request(&mut request, data)?;
        socket.write_all(&request).await?;
        let mut answer = Vec::with_capacity(256);
        loop {
            if socket.read_buf(&mut answer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some((status, _)) = parse_answer(&answer)? {
                return Ok(status);
            }
        }
    }
}

/// The status and length of the complete answer at the start of `buf` (its head and `content-length` body), or
/// `None` while it is incomplete.
fn parse_answer(buf: &[u8]) -> std::io::Result<Option<(u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response
        .parse(buf)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
    else {
        return Ok(None);
    };
    let length: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .unwrap_or(0);
    Ok((buf.len() >= head + length).then(|| (response.code.unwrap_or(0), head + length)))
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

    async fn delete_connection(
        &self,
        _conn: &ConnectionId,
    ) -> Result<(), chat_shared::gateway::GatewayError> {
        Err(chat_shared::gateway::GatewayError::Other(
            "the floor only measures posts".into(),
        ))
    }
}

/// The floor with HTTP/1.1 pipelining: `in_flight` of the floor's requests written at once on one connection,
/// then their answers read; returns CPU µs per post and posts/s.
async fn pipelined_floor(
    args: &GatewayArgs,
    conn: &ConnectionId,
    frame: &Bytes,
) -> anyhow::Result<(f64, f64)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let floor = RawFloor::new(&args.emulator, conn, None);
    let mut socket = tokio::net::TcpStream::connect(&args.emulator).await?;
    socket.set_nodelay(true)?;
    let cpu = crate::matrix::process_cpu_ns(std::process::id())?;
    let started = Instant::now();
    let batches = args.posts / args.in_flight;
    let mut answer = bytes::BytesMut::with_capacity(64 * 1024);
    for _ in 0..batches {
        let mut request =
            Vec::with_capacity(args.in_flight * (floor.head.len() + 200 + frame.len()));
        for _ in 0..args.in_flight {
            floor.write_request(&mut request, frame)?;
        }
        socket.write_all(&request).await?;
        let mut answered = 0;
        while answered < args.in_flight {
            while let Some((status, length)) = parse_answer(&answer)? {
                anyhow::ensure!(status == 200, "the emulator answered {status}");
                let _ = answer.split_to(length);
                answered += 1;
            }
            if answered < args.in_flight {
                anyhow::ensure!(
                    socket.read_buf(&mut answer).await? > 0,
                    "the emulator closed"
                );
            }
        }
    }
    let wall = started.elapsed();
    let posts = (batches * args.in_flight) as f64;
    let cpu_us = cpu_ns_since(cpu)? as f64 / 1000.0 / posts;
    Ok((cpu_us, posts / wall.as_secs_f64()))
}

/// This process's CPU time (ns) since it was `before`; never negative, though a thread that ended (tokio's
/// blocking pool lets idle threads go) takes its time out of the sum.
fn cpu_ns_since(before: u64) -> anyhow::Result<u64> {
    Ok(crate::matrix::process_cpu_ns(std::process::id())?.saturating_sub(before))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_client_and_floor_posts_to_the_emulator_and_is_measured() {
        let emulator =
            crate::emulated::in_memory_emulator(chat_shared::config::Config::default()).await;
        let args = GatewayArgs {
            emulator: emulator.addr().to_string(),
            posts: 64,
            in_flight: 8,
        };

        let rows = run(&args).await.expect("every post answered 200");

        let names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names[4].contains("pipelined: 8 per write"), "{names:?}");
        // A row this small can measure 0 µs (a thread that ended takes its CPU out of the process's sum), so
        // only the whole is required to have been measured.
        assert!(
            rows.iter().all(|(_, cpu)| cpu.is_finite() && *cpu >= 0.0),
            "{rows:?}"
        );
        assert!(
            rows.iter().map(|(_, cpu)| cpu).sum::<f64>() > 0.0,
            "{rows:?}"
        );
        emulator.shutdown().await;
    }
}
