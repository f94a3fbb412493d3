//! The members of a benchmark room: WebSocket clients that report every text frame they receive.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The sending half of a member's WebSocket.
pub type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// Connects `members` clients to `url`, one after the other; each reports the text frames it receives on `seen`,
/// tagged with its index. Returns their sending halves, in order.
pub async fn connect_members(
    url: &str,
    members: usize,
    seen: &mpsc::UnboundedSender<(usize, String)>,
) -> anyhow::Result<Vec<Sink>> {
    Ok(connect_members_over(url, members, seen, None).await?.0)
}

/// [`connect_members`] over `tls` (a `wss://` URL, trusting what that configuration trusts), or the system's
/// defaults; and how long each member's handshake took (TCP, TLS, the WebSocket upgrade with the authorizer and
/// `$connect`), in ms.
pub async fn connect_members_over(
    url: &str,
    members: usize,
    seen: &mpsc::UnboundedSender<(usize, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<(Vec<Sink>, Vec<f64>)> {
    let mut sinks = Vec::with_capacity(members);
    let mut handshakes = Vec::with_capacity(members);
    for index in 0..members {
        let connector = tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let started = std::time::Instant::now();
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector),
        )
        .await
        .context("connecting a member timed out")??;
        handshakes.push(started.elapsed().as_secs_f64() * 1000.0);
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(text) = frame {
                    let _ = seen.send((index, text.to_string()));
                }
            }
        });
    }
    Ok((sinks, handshakes))
}

/// One message's trip to every member: how long it took, and how many never got it.
pub struct Trip {
    /// From the send until the last member had it (or until the timeout), in ms.
    pub ms: f64,
    /// Members that did not get it within the timeout.
    pub missing: usize,
}

/// Sends `{"message": text}` from `sender` and waits until each of the `members` reported a frame holding `text`
/// on `seen` (see [`connect_members`]), or until `timeout`.
///
/// # Errors
/// When the send fails or every member hung up.
pub async fn send_to_all(
    sender: &mut Sink,
    seen: &mut mpsc::UnboundedReceiver<(usize, String)>,
    members: usize,
    text: &str,
    timeout: Duration,
) -> anyhow::Result<Trip> {
    let body = serde_json::json!({ "message": text }).to_string();
    let sent = std::time::Instant::now();
    sender.send(Message::text(body)).await?;
    let mut got = vec![false; members];
    let mut missing = members;
    let deadline = tokio::time::Instant::now() + timeout;
    while missing > 0 {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some((index, frame))) => {
                if frame.contains(text) && !got[index] {
                    got[index] = true;
                    missing -= 1;
                }
            }
            Ok(None) => anyhow::bail!("members hung up"),
            Err(_) => break,
        }
    }
    Ok(Trip {
        ms: sent.elapsed().as_secs_f64() * 1000.0,
        missing,
    })
}

/// An emulator binary this tool started, and what it said on starting.
pub struct Spawned {
    /// The process (killed when dropped).
    pub child: tokio::process::Child,
    /// Its URL (`http://…` or, with `--tls`, `https://…`).
    pub url: String,
    /// Its local CA's file, with `--tls`.
    pub ca: Option<String>,
}

/// Far above anything the benchmark does (as `crate::lifted`).
const LIFTED: &str = "1000000";

/// Starts the emulator binary `bin` in process, on a free port, with `args`, the abuse limits lifted (one address
/// opens every member's connection and sends every message), rooms in memory, and `env`; reads the lines that
/// say its URL (and its CA).
///
/// # Errors
/// When it cannot start, or does not say where it listens within 30 s.
pub async fn spawn_emulator(
    bin: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> anyhow::Result<Spawned> {
    let mut command = tokio::process::Command::new(bin);
    command
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RATE_LIMIT_PER_SEC", LIFTED)
        .env("RATE_LIMIT_BURST", LIFTED)
        .env("FRAME_RATE_PER_SEC", LIFTED)
        .env("FRAME_BURST", LIFTED)
        .env("CONNECT_RATE_PER_IP", LIFTED)
        .env("MAX_CONNECTIONS_PER_IP", LIFTED)
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {bin}"))?;
    let stdout = child.stdout.take().context("the emulator's stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let tls = args.contains(&"--tls");
    let (url, ca) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut url = None;
        while let Some(line) = lines.next_line().await? {
            if let Some(said) = line.strip_prefix("wschat emulator listening on ") {
                url = Some(said.trim().to_owned());
                if !tls {
                    return Ok::<_, anyhow::Error>((url, None));
                }
            } else if let Some(ca) = line.strip_prefix("wschat emulator CA: ") {
                return Ok((url, Some(ca.trim().to_owned())));
            }
        }
        anyhow::bail!("the emulator stopped before it listened")
    })
    .await
    .context("the emulator did not start within 30 s")??;
    let url = url.context("the emulator named its CA before its URL")?;
    Ok(Spawned { child, url, ca })
}
