//! `wschat-loadtest attack`: the abuse limits under attack, with the defaults (nothing lifted). For `--seconds`,
//! at once, against one chat (the emulator must trust `X-Forwarded-For`, so one machine is many addresses):
//!
//! * a history attacker: one socket sends `--history-per-sec` history requests a second into a room holding the
//!   largest history the limits allow, reconnecting whenever it is closed;
//! * a handshake storm: `--storm-per-sec` handshakes a second, each closed at once, into a room where one page
//!   watches presence, from `--storm-addresses` addresses (1: the per-address limit holds it; 100: only the
//!   damping does);
//! * a flooder: one socket sends the longest chat messages allowed into that room, `--flood-per-sec` a second;
//! * two members chat in another room, a message every 200 ms each.
//!
//! It reports the members' send-to-receipt latency (p99), lost messages and error frames; the attackers' frames
//! sent and the billed messages they received (32 KB units); the presence frames the watcher received and how long
//! after the storm its count (kept up to date the way the room page does it: `recount` makes it ask again 2 s
//! later) took to be right; and, with `--redis-url`, the flooded room's keys in Redis (`MEMORY USAGE`). Bounded in
//! count and time; loopback only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// API Gateway bills WebSocket messages in 32 KB units.
const UNIT: usize = 32 * 1024;

/// `attack` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AttackArgs {
    /// The target's name in the results.
    #[arg(long)]
    pub name: String,
    /// The chat's WebSocket URL without a query, e.g. `ws://127.0.0.1:3000/local` (loopback only).
    #[arg(long)]
    pub url: String,
    /// How long the attack lasts.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// History requests a second from the history attacker.
    #[arg(long, default_value_t = 100)]
    pub history_per_sec: u32,
    /// Handshakes a second in the storm.
    #[arg(long, default_value_t = 50)]
    pub storm_per_sec: u32,
    /// Addresses the storm comes from.
    #[arg(long, default_value_t = 1)]
    pub storm_addresses: u32,
    /// Chat messages a second from the flooder.
    #[arg(long, default_value_t = 50)]
    pub flood_per_sec: u32,
    /// The longest message the chat takes (`MAX_MESSAGE_BYTES`).
    #[arg(long, default_value_t = chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// How many bytes of history a room keeps (`HISTORY_MAX_BYTES`): the history room is filled past it.
    #[arg(long, default_value_t = chat_shared::config::DEFAULT_HISTORY_MAX_BYTES)]
    pub history_max_bytes: usize,
    /// The chat's Redis, to weigh the flooded room's keys (`MEMORY USAGE`).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The chat's key prefix in that Redis.
    #[arg(long, default_value = chat_shared::config::DEFAULT_KEY_PREFIX)]
    pub key_prefix: String,
}

/// What one attack measured.
#[derive(Debug, Clone, Serialize)]
pub struct AttackResult {
    /// The target.
    pub name: String,
    /// Addresses the storm came from.
    pub storm_addresses: u32,
    /// The members' messages sent, and received by the other member.
    pub member_messages: u64,
    /// Of those, never received.
    pub member_lost: u64,
    /// Error frames the members received.
    pub member_errors: u64,
    /// The members' send-to-receipt latency, 99th percentile, ms.
    pub member_p99_ms: f64,
    /// Frames the attackers (history and flood) sent.
    pub attacker_frames_in: u64,
    /// Billed messages (32 KB units) the attackers received.
    pub attacker_billed_out: u64,
    /// Times the history attacker's connection was closed by the chat.
    pub attacker_closed: u64,
    /// Handshakes in the storm, and how many were accepted.
    pub storm_handshakes: u64,
    /// Of those, accepted.
    pub storm_accepted: u64,
    /// Presence frames (joined, left) the watcher received during the attack.
    pub watcher_presence_frames: u64,
    /// How long after the storm the watcher's count was right, ms (`None`: not within 10 s).
    pub watcher_settled_ms: Option<u64>,
    /// The flooded room's keys in Redis, bytes.
    pub flooded_room_bytes: Option<u64>,
}

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

/// Runs the attack and prints one line of results.
///
/// # Errors
/// When the target is not on loopback or the setup cannot connect.
pub async fn run(args: &AttackArgs) -> anyhow::Result<AttackResult> {
    if !args.url.starts_with("ws://127.0.0.1:") && !args.url.starts_with("ws://localhost:") {
        bail!("attack only runs against loopback: {}", args.url);
    }
    let tag = format!("{:06x}", fastrand::u32(..0xff_ffff));
    let (history_room, watched_room, quiet_room) = (
        format!("attack_history_{tag}"),
        format!("attack_watched_{tag}"),
        format!("attack_quiet_{tag}"),
    );
    fill(args, &history_room).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let duration = Duration::from_secs_f64(args.seconds);

    let mut watcher = Watcher::start(&args.url, &watched_room).await?;
    let members = tokio::spawn(members(args.url.clone(), quiet_room, duration));
    let history = tokio::spawn(history_attacker(
        args.clone(),
        history_room,
        stop.clone(),
        counters.clone(),
    ));
    let flood = tokio::spawn(flooder(
        args.clone(),
        watched_room.clone(),
        stop.clone(),
        counters.clone(),
    ));
    let storm = tokio::spawn(storm(
        args.clone(),
        watched_room.clone(),
        stop.clone(),
        counters.clone(),
    ));
    let storm_end = watcher.watch_until(Instant::now() + duration).await;
    stop.store(true, Ordering::Relaxed);
    // Everyone but the watcher leaves: the storm closes each handshake, the flooder closes when it stops.
    let settled = watcher.settle(storm_end, 1).await;
    let (sent, lost, errors, p99) = members.await.context("members")??;
    for task in [history, flood, storm] {
        let _ = task.await;
    }
    let flooded_room_bytes = match &args.redis_url {
        Some(url) => Some(room_bytes(url, &args.key_prefix, &watched_room).await?),
        None => None,
    };
    let result = AttackResult {
        name: args.name.clone(),
        storm_addresses: args.storm_addresses,
        member_messages: sent,
        member_lost: lost,
        member_errors: errors,
        member_p99_ms: p99,
        attacker_frames_in: counters.frames_in.load(Ordering::Relaxed),
        attacker_billed_out: counters.billed_out.load(Ordering::Relaxed),
        attacker_closed: counters.closed.load(Ordering::Relaxed),
        storm_handshakes: counters.handshakes.load(Ordering::Relaxed),
        storm_accepted: counters.accepted.load(Ordering::Relaxed),
        watcher_presence_frames: watcher.presence_frames,
        watcher_settled_ms: settled.map(|d| d.as_millis() as u64),
        flooded_room_bytes,
    };
    println!("{}", line(&result));
    Ok(result)
}

/// One line of a result.
fn line(r: &AttackResult) -> String {
    format!(
        "{} (storm from {} address{}): members p99 {:.0} ms, {} lost, {} errors of {} messages; attackers sent {} frames, \
         got {} billed messages ({:.2}x), closed {} times; storm {} handshakes, {} accepted; watcher {} presence frames, \
         count right {}; flooded room {}",
        r.name,
        r.storm_addresses,
        if r.storm_addresses == 1 { "" } else { "es" },
        r.member_p99_ms,
        r.member_lost,
        r.member_errors,
        r.member_messages,
        r.attacker_frames_in,
        r.attacker_billed_out,
        r.attacker_billed_out as f64 / r.attacker_frames_in.max(1) as f64,
        r.attacker_closed,
        r.storm_handshakes,
        r.storm_accepted,
        r.watcher_presence_frames,
        r.watcher_settled_ms
            .map_or("not within 10 s".to_owned(), |ms| format!(
                "{ms} ms after the storm"
            )),
        r.flooded_room_bytes
            .map_or("not weighed".to_owned(), |b| format!("{b} bytes of Redis")),
    )
}

#[derive(Debug, Default)]
struct Counters {
    frames_in: AtomicU64,
    billed_out: AtomicU64,
    closed: AtomicU64,
    handshakes: AtomicU64,
    accepted: AtomicU64,
}

/// Fills `room` past the most history it keeps, with the longest messages, from a few senders (each within its
/// own chat burst) on addresses of their own.
async fn fill(args: &AttackArgs, room: &str) -> anyhow::Result<()> {
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
async fn history_attacker(
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
async fn flooder(args: AttackArgs, room: String, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
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
async fn storm(args: AttackArgs, room: String, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
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
async fn members(
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
struct Watcher {
    ws: Socket,
    count: Option<u64>,
    presence_frames: u64,
    recount_at: Option<Instant>,
}

impl Watcher {
    async fn start(url: &str, room: &str) -> anyhow::Result<Self> {
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
    async fn watch_until(&mut self, until: Instant) -> Instant {
        while Instant::now() < until {
            self.step(until).await;
        }
        Instant::now()
    }

    /// After the storm: how long until the watcher's count is `expected` (and stays so on asking), within 10 s.
    async fn settle(&mut self, storm_end: Instant, expected: u64) -> Option<Duration> {
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

/// The bytes of every key of `room` in Redis (`MEMORY USAGE`).
async fn room_bytes(url: &str, prefix: &str, room: &str) -> anyhow::Result<u64> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*{{{room}}}*"))
        .query_async(&mut conn)
        .await?;
    let mut total = 0;
    for key in keys {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        total += used.unwrap_or(0);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_shared::config::Config;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_attack_runs_against_an_emulator_and_is_measured() {
        let emulator = crate::emulated::in_memory_emulator(Config::default()).await;
        let args = AttackArgs {
            name: "smoke".into(),
            url: format!("ws://{}/local", emulator.addr()),
            seconds: 2.0,
            history_per_sec: 50,
            storm_per_sec: 20,
            storm_addresses: 1,
            flood_per_sec: 10,
            max_message_bytes: 1024,
            history_max_bytes: 16 * 1024,
            redis_url: None,
            key_prefix: "wschat:".into(),
        };

        let result = run(&args).await.expect("ran");

        assert!(result.member_messages >= 10, "{result:?}");
        assert_eq!(result.member_lost, 0, "{result:?}");
        assert!(result.attacker_frames_in > 0, "{result:?}");
        assert!(result.storm_handshakes > 0, "{result:?}");
        assert!(result.flooded_room_bytes.is_none());
    }
}
