//! The players of `attack`: the history attacker, the flooder, the handshake storm, the two members and the
//! watcher, and what they count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::AttackArgs;

/// API Gateway bills WebSocket messages in 32 KB units.
const UNIT: usize = 32 * 1024;
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `room` from `address` (`X-Forwarded-For`).
async fn connect(
    url: &str,
    room: &str,
    address: &str,
    name: Option<&str>,
) -> anyhow::Result<Socket> {
    let named = name.map(|n| format!("&name={n}")).unwrap_or_default();
    let mut request = format!("{url}?room={room}{named}").into_client_request()?;
    request
        .headers_mut()
        .insert("X-Forwarded-For", address.parse()?);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("the handshake timed out")??;
    Ok(ws)
}

/// Billed units of a frame of `bytes`.
fn units(bytes: usize) -> u64 {
    bytes.div_ceil(UNIT).max(1) as u64
}
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) frames_in: AtomicU64,
    pub(super) billed_out: AtomicU64,
    pub(super) closed: AtomicU64,
    pub(super) handshakes: AtomicU64,
    pub(super) accepted: AtomicU64,
}

/// Fills `room` past the most history it keeps, with the longest messages, from a few senders (each within its
/// own chat burst) on addresses of their own.
pub(super) async fn fill(args: &AttackArgs, room: &str) -> anyhow::Result<()> {
    let text = "h".repeat(args.max_message_bytes);
    let needed = args.history_max_bytes / args.max_message_bytes + 5;
    let per_sender = 15;
    for sender in 0..needed.div_ceil(per_sender) {
        let mut ws = connect(&args.url, room, &format!("198.51.100.{}", sender + 1), None).await?;
        let body = serde_json::json!({ "message": text }).to_string();
        for _ in 0..per_sender {
            ws.send(Message::text(body.clone())).await?;
        }
        let mut echoed = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while echoed < per_sender {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"seq\"") => echoed += 1,
                Ok(Some(Ok(_))) => {}
                _ => bail!("filling the history room: {echoed} of {per_sender} echoed"),
            }
        }
        let _ = ws.close(None).await;
    }
    Ok(())
}

/// Counts what the attacker's socket receives until it closes.
fn count_received(mut stream: futures_util::stream::SplitStream<Socket>, counters: Arc<Counters>) {
    tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = &frame {
                counters
                    .billed_out
                    .fetch_add(units(text.len()), Ordering::Relaxed);
            }
        }
        counters.closed.fetch_add(1, Ordering::Relaxed);
    });
}

/// One socket asking for history as fast as told, reconnecting whenever the chat closes it.
pub(super) async fn history_attacker(
    args: AttackArgs,
    room: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(args.history_per_sec.max(1)));
    while !stop.load(Ordering::Relaxed) {
        let Ok(ws) = connect(&args.url, &room, "203.0.113.66", None).await else {
            // Refused (429 past the address's handshakes): try again in a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let (mut sink, stream) = ws.split();
        count_received(stream, counters.clone());
        let mut tick = tokio::time::interval(period);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            if sink
                .send(Message::text(r#"{"action":"history"}"#))
                .await
                .is_err()
            {
                break;
            }
            counters.frames_in.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One socket sending the longest messages into the watched room.
pub(super) async fn flooder(
    args: AttackArgs,
    room: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let Ok(ws) = connect(&args.url, &room, "203.0.113.77", None).await else {
        return;
    };
    let (mut sink, stream) = ws.split();
    count_received(stream, counters.clone());
    let body = serde_json::json!({ "message": "f".repeat(args.max_message_bytes) }).to_string();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.flood_per_sec.max(1)),
    ));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if sink.send(Message::text(body.clone())).await.is_err() {
            return;
        }
        counters.frames_in.fetch_add(1, Ordering::Relaxed);
    }
    let _ = sink.close().await;
}

/// Handshakes into the watched room, each closed at once, from `storm_addresses` addresses in turn.
pub(super) async fn storm(
    args: AttackArgs,
    room: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.storm_per_sec.max(1)),
    ));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let mut n = 0_u32;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let address = format!(
            "10.{}.{}.1",
            (n % args.storm_addresses.max(1)) / 250,
            (n % args.storm_addresses.max(1)) % 250
        );
        n = n.wrapping_add(1);
        let (url, room, counters) = (args.url.clone(), room.clone(), counters.clone());
        tokio::spawn(async move {
            counters.handshakes.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut ws) = connect(&url, &room, &address, None).await {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = ws.close(None).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while ws.next().await.is_some() {}
                })
                .await;
            }
            drop(permit);
        });
    }
}

/// Two members chatting in a room of their own; returns (sent, lost, error frames, p99 ms).
pub(super) async fn members(
    url: String,
    room: String,
    duration: Duration,
) -> anyhow::Result<(u64, u64, u64, f64)> {
    let a = connect(&url, &room, "192.0.2.10", None).await?;
    let b = connect(&url, &room, "192.0.2.11", None).await?;
    let started = Instant::now();
    let (mut a_sink, a_stream) = a.split();
    let (mut b_sink, b_stream) = b.split();
    // Each side records the other's messages it received: (sender, n) → latency.
    let received = Arc::new(std::sync::Mutex::new(Vec::<(u8, u64, f64)>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let listen = |mut stream: futures_util::stream::SplitStream<Socket>, me: u8| {
        let (received, errors) = (received.clone(), errors.clone());
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(json) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if json.get("error").is_some() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // "m:<sender>:<n>:<micros since start>"
                let Some(message) = json["message"].as_str() else {
                    continue;
                };
                let parts: Vec<&str> = message.split(':').collect();
                if let [_, sender, n, at] = parts[..]
                    && let (Ok(sender), Ok(n), Ok(at)) =
                        (sender.parse::<u8>(), n.parse(), at.parse::<u64>())
                    && sender != me
                {
                    let now = started.elapsed().as_micros() as u64;
                    let ms = now.saturating_sub(at) as f64 / 1000.0;
                    received.lock().expect("lock").push((sender, n, ms));
                }
            }
        })
    };
    let listeners = [listen(a_stream, 0), listen(b_stream, 1)];
    let mut sent = 0_u64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0_u64;
    while started.elapsed() < duration {
        tick.tick().await;
        for (sender, sink) in [(0_u8, &mut a_sink), (1_u8, &mut b_sink)] {
            let at = started.elapsed().as_micros();
            let body = serde_json::json!({ "message": format!("m:{sender}:{n}:{at}") }).to_string();
            sink.send(Message::text(body)).await?;
            sent += 1;
        }
        n += 1;
    }
    // Time for the last messages to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = a_sink.close().await;
    let _ = b_sink.close().await;
    for listener in listeners {
        listener.abort();
    }
    let mut latencies: Vec<f64> = received
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, _, ms)| *ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN);
    let lost = sent.saturating_sub(latencies.len() as u64);
    Ok((sent, lost, errors.load(Ordering::Relaxed), p99))
}

/// A page watching presence in the storm's room: it counts the presence frames it receives, keeps its count up
/// to date from them, and, as the room page does, asks again 2 s after a `recount`.
pub(super) struct Watcher {
    ws: Socket,
    count: Option<u64>,
    pub(super) presence_frames: u64,
    recount_at: Option<Instant>,
}

impl Watcher {
    pub(super) async fn start(url: &str, room: &str) -> anyhow::Result<Self> {
        let mut ws = connect(url, room, "192.0.2.20", Some("Watcher")).await?;
        ws.send(Message::text(r#"{"action":"presence"}"#)).await?;
        Ok(Self {
            ws,
            count: None,
            presence_frames: 0,
            recount_at: None,
        })
    }

    /// Reads frames until `until`; returns when the watch ended (the storm's end).
    pub(super) async fn watch_until(&mut self, until: Instant) -> Instant {
        while Instant::now() < until {
            self.step(until).await;
        }
        Instant::now()
    }

    /// After the storm: how long until the watcher's count is `expected` (and stays so on asking), within 10 s.
    pub(super) async fn settle(&mut self, storm_end: Instant, expected: u64) -> Option<Duration> {
        let give_up = storm_end + Duration::from_secs(10);
        while Instant::now() < give_up {
            if self.count == Some(expected) && self.recount_at.is_none() {
                return Some(storm_end.elapsed());
            }
            self.step(give_up).await;
        }
        None
    }

    /// One frame (or the recount timer), waiting at most until `until`.
    async fn step(&mut self, until: Instant) {
        let wake = self.recount_at.map_or(until, |at| at.min(until));
        match tokio::time::timeout_at(wake.into(), self.ws.next()).await {
            Err(_) => {
                if self.recount_at.is_some_and(|at| Instant::now() >= at) {
                    self.recount_at = None;
                    let _ = self
                        .ws
                        .send(Message::text(r#"{"action":"presence"}"#))
                        .await;
                }
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    return;
                };
                if let Some(count) = frame["presence"]["count"].as_u64() {
                    self.count = Some(count);
                } else if frame.get("joined").is_some() || frame.get("left").is_some() {
                    self.presence_frames += 1;
                    self.count = frame["count"].as_u64().or(self.count);
                    if frame["recount"] == Value::Bool(true) {
                        self.recount_at = Some(Instant::now() + Duration::from_secs(2));
                    }
                }
            }
            Ok(_) => {}
        }
    }
}
