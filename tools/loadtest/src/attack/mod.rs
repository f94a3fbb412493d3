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
//!
//! The players are in `players`; this file runs them and reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

mod players;

use players::{Counters, Watcher, fill, flooder, history_attacker, members, storm};

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
