//! `wschat-loadtest matrix`: an external WebSocket load generator for any chat that speaks the tutorial's
//! `{"message": …}` protocol (wschat in any mode, the Django Channels tutorial).
//!
//! A cell `RxN:K` connects R rooms of N clients; every client sends chat messages, keeping at most K of its own
//! messages not yet received by every other member of its room. For a fixed time it measures, at every other
//! member, the latency from send to receipt; counts frames delivered, lost (expected but never received),
//! duplicated and cross-room; and, for the processes it is told about, the CPU time they spent, per delivered
//! frame (from `/proc/<pid>/task/*/schedstat`, nanoseconds). Bounded in count and time; loopback only.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// One cell of the matrix: `RxN:K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// Rooms.
    pub rooms: usize,
    /// Clients per room.
    pub clients: usize,
    /// Messages of one client not yet received by every other member, at most.
    pub in_flight: usize,
}

impl FromStr for Cell {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not RxN:K (e.g. 1x10:4)");
        let (rooms, rest) = s.split_once('x').ok_or_else(bad)?;
        let (clients, in_flight) = rest.split_once(':').ok_or_else(bad)?;
        let cell = Self {
            rooms: rooms.trim().parse().map_err(|_| bad())?,
            clients: clients.trim().parse().map_err(|_| bad())?,
            in_flight: in_flight.trim().parse().map_err(|_| bad())?,
        };
        if cell.rooms == 0 || cell.clients < 2 || cell.in_flight == 0 {
            return Err(format!("{s}: at least 1 room, 2 clients and 1 in flight"));
        }
        Ok(cell)
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} K={}", self.rooms, self.clients, self.in_flight)
    }
}

/// `matrix` arguments.
#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// The target's name in the results.
    #[arg(long)]
    pub name: String,
    /// WebSocket URL with `{room}` where the room name goes, e.g. `ws://127.0.0.1:3000/local?room={room}` or
    /// `ws://127.0.0.1:8000/ws/chat/{room}/`. Must be a loopback address.
    #[arg(long)]
    pub url: String,
    /// Cells, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1x2:4,1x10:4,1x50:4,10x10:4,1x50:1"
    )]
    pub cells: Vec<Cell>,
    /// Seconds every client sends for, per cell.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Processes whose CPU time to report per delivered frame: `LABEL=PID` or `LABEL=comm:NAME` (every process
    /// named NAME, e.g. `ws-default`). Repeatable.
    #[arg(long)]
    pub cpu: Vec<String>,
    /// Append one JSON line per cell to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Send this `Origin` header, as a browser on the chat's page would (Channels' `AllowedHostsOriginValidator`
    /// refuses a handshake without one).
    #[arg(long)]
    pub origin: Option<String>,
}

/// What one cell measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CellResult {
    /// The target.
    pub target: String,
    /// The cell, as `RxN K=k`.
    pub cell: String,
    /// Frames delivered to clients (every member's copy, the sender's echo included) per second.
    pub delivered_per_sec: f64,
    /// Send-to-receipt latency at the other members, median, ms.
    pub p50_ms: f64,
    /// The same, 99th percentile, ms.
    pub p99_ms: f64,
    /// Frames delivered.
    pub delivered: u64,
    /// Receipts expected but never seen (after a drain of up to 5 s).
    pub lost: u64,
    /// Receipts seen twice by the same member.
    pub duplicates: u64,
    /// Receipts of another room's message.
    pub cross_room: u64,
    /// CPU µs per delivered frame, per measured process label.
    pub cpu_us_per_frame: Vec<(String, f64)>,
}

/// One message on its way: who still has to receive it.
struct Pending {
    sent: Instant,
    room: usize,
    remaining: usize,
}

#[derive(Default)]
struct Tally {
    pending: HashMap<(usize, u64), Pending>,
    latencies_us: Vec<u64>,
    delivered: u64,
    duplicates: u64,
    cross_room: u64,
    seen: Vec<HashSet<(usize, u64)>>,
}

/// Runs every cell against the target and returns the results (also printed and, with `--json`, appended).
///
/// # Errors
/// When the URL is not loopback, a client cannot connect, or a measured process cannot be read.
pub async fn run(args: &MatrixArgs) -> anyhow::Result<Vec<CellResult>> {
    let host = args
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
        bail!("--url must point at a loopback address, not {host:?}");
    }
    let mut results = Vec::new();
    for (index, cell) in args.cells.iter().enumerate() {
        // A cell that fails (the target stops accepting connections, say) is reported and the others still run.
        let result = match run_cell(args, *cell, index).await {
            Ok(result) => result,
            Err(err) => {
                println!("{:<14} {:<10} FAILED: {err:#}", args.name, cell.to_string());
                continue;
            }
        };
        println!(
            "{:<14} {:<10} {:>10.0} msg/s  p50 {:>7.1} ms  p99 {:>7.1} ms  lost {}  dup {}  cross {}  cpu {:?}",
            result.target,
            result.cell,
            result.delivered_per_sec,
            result.p50_ms,
            result.p99_ms,
            result.lost,
            result.duplicates,
            result.cross_room,
            result.cpu_us_per_frame
        );
        if let Some(path) = &args.json {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            writeln!(file, "{}", serde_json::to_string(&result)?)?;
        }
        results.push(result);
    }
    Ok(results)
}

async fn run_cell(args: &MatrixArgs, cell: Cell, index: usize) -> anyhow::Result<CellResult> {
    let tag = format!("{:08x}", fastrand::u32(..));
    let total = cell.rooms * cell.clients;
    let tally = Arc::new(Mutex::new(Tally {
        seen: vec![HashSet::new(); total],
        ..Tally::default()
    }));
    let permits: Vec<Arc<Semaphore>> = (0..total)
        .map(|_| Arc::new(Semaphore::new(cell.in_flight)))
        .collect();

    // Connect everyone first, so every member is in its room before anyone talks.
    let mut sinks = Vec::with_capacity(total);
    let mut readers = Vec::with_capacity(total);
    for client in 0..total {
        let room = client / cell.clients;
        let url = args
            .url
            .replace("{room}", &format!("bench{index}r{room}t{tag}"));
        let mut request = url.as_str().into_client_request()?;
        if let Some(origin) = &args.origin {
            request.headers_mut().insert("Origin", origin.parse()?);
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .context("connecting timed out")??;
        let (sink, stream) = ws.split();
        sinks.push(sink);
        readers.push(stream);
    }
    // Settle: let $connect's side effects land before the first message.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cpu_before = cpu_ns(&args.cpu)?;
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(args.seconds);

    let mut reader_tasks = Vec::new();
    for (client, mut stream) in readers.into_iter().enumerate() {
        let tally = tally.clone();
        let permits = permits.clone();
        let room = client / cell.clients;
        reader_tasks.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let Some((sender, n)) = parse(&text) else {
                    continue;
                };
                let now = Instant::now();
                let mut t = tally
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                t.delivered += 1;
                if sender == client {
                    continue; // the echo to the sender: delivered, not a latency sample
                }
                if !t.seen[client].insert((sender, n)) {
                    t.duplicates += 1;
                    continue;
                }
                let Some(pending) = t.pending.get_mut(&(sender, n)) else {
                    continue;
                };
                if pending.room != room {
                    t.cross_room += 1;
                    continue;
                }
                let latency =
                    u64::try_from(now.duration_since(pending.sent).as_micros()).unwrap_or(u64::MAX);
                pending.remaining -= 1;
                let done = pending.remaining == 0;
                t.latencies_us.push(latency);
                if done {
                    t.pending.remove(&(sender, n));
                    permits[sender].add_permits(1);
                }
            }
        }));
    }

    let mut sender_tasks = Vec::new();
    for (client, mut sink) in sinks.into_iter().enumerate() {
        let tally = tally.clone();
        let permit = permits[client].clone();
        let room = client / cell.clients;
        let others = cell.clients - 1;
        sender_tasks.push(tokio::spawn(async move {
            let mut n = 0_u64;
            // Bounded: the clock, and at most a million messages per client.
            while Instant::now() < stop_at && n < 1_000_000 {
                let wait = stop_at.saturating_duration_since(Instant::now());
                let Ok(Ok(p)) = tokio::time::timeout(wait, permit.acquire()).await else {
                    break;
                };
                p.forget();
                tally
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pending
                    .insert(
                        (client, n),
                        Pending {
                            sent: Instant::now(),
                            room,
                            remaining: others,
                        },
                    );
                let body = format!(r#"{{"message":"c{client}:{n}"}}"#);
                if sink.send(Message::text(body)).await.is_err() {
                    break;
                }
                n += 1;
            }
            sink
        }));
    }
    let mut sinks = Vec::new();
    for task in sender_tasks {
        sinks.push(task.await?);
    }
    // Drain: up to 5 s for what is still on its way.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until {
        if tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pending
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_ns(&args.cpu)?;
    for mut sink in sinks {
        let _ = sink.close().await;
    }
    for task in reader_tasks {
        task.abort();
    }

    let mut t = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lost = t.pending.values().map(|p| p.remaining as u64).sum();
    t.latencies_us.sort_unstable();
    let pct = |q: f64| -> f64 {
        if t.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((t.latencies_us.len() - 1) as f64 * q).round() as usize;
        t.latencies_us[i] as f64 / 1000.0
    };
    let delivered = t.delivered;
    let cpu_us_per_frame = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|((label, before), (_, after))| {
            let us = after.saturating_sub(*before) as f64 / 1000.0;
            (label.clone(), us / delivered.max(1) as f64)
        })
        .collect();
    Ok(CellResult {
        target: args.name.clone(),
        cell: cell.to_string(),
        delivered_per_sec: delivered as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        delivered,
        lost,
        duplicates: t.duplicates,
        cross_room: t.cross_room,
        cpu_us_per_frame,
    })
}

/// `c{client}:{n}` out of a frame whose `"message"` carries it.
fn parse(frame: &str) -> Option<(usize, u64)> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let text = value.get("message")?.as_str()?;
    let (client, n) = text.strip_prefix('c')?.split_once(':')?;
    Some((client.parse().ok()?, n.parse().ok()?))
}

/// CPU nanoseconds spent so far by each `LABEL=PID` / `LABEL=comm:NAME` process (all threads).
fn cpu_ns(specs: &[String]) -> anyhow::Result<Vec<(String, u64)>> {
    specs
        .iter()
        .map(|spec| {
            let (label, what) = spec
                .split_once('=')
                .with_context(|| format!("--cpu {spec}: expected LABEL=PID or LABEL=comm:NAME"))?;
            let pids: Vec<u32> = match what.strip_prefix("comm:") {
                Some(name) => pids_named(name)?,
                None => vec![
                    what.parse()
                        .with_context(|| format!("--cpu {spec}: not a pid"))?,
                ],
            };
            let mut total = 0;
            for pid in pids {
                total += process_cpu_ns(pid).unwrap_or(0);
            }
            Ok((label.to_owned(), total))
        })
        .collect()
}

fn pids_named(name: &str) -> anyhow::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The sum of every thread's run time (`schedstat`'s first field, ns).
///
/// # Errors
/// When the process's task list cannot be read.
pub(crate) fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_parse_from_rooms_clients_and_in_flight() {
        assert_eq!(
            "10x50:4".parse::<Cell>().expect("valid"),
            Cell {
                rooms: 10,
                clients: 50,
                in_flight: 4
            }
        );
        assert!(
            "1x1:4".parse::<Cell>().is_err(),
            "one client has nobody to talk to"
        );
        assert!("x2:4".parse::<Cell>().is_err());
    }

    #[test]
    fn message_tags_are_read_back_from_any_chat_frame() {
        assert_eq!(parse(r#"{"message":"c3:17","seq":9}"#), Some((3, 17)));
        assert_eq!(parse(r#"{"message":"hello"}"#), None);
        assert_eq!(parse("not json"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_matrix_against_the_emulator_delivers_everything_once() {
        use chat_shared::config::Config;

        // The rate limit is lifted: the matrix floods on purpose.
        let emulator = crate::emulated::in_memory_emulator(Config {
            rate_limit_per_sec: 1_000_000,
            rate_limit_burst: 1_000_000,
            ..Config::default()
        })
        .await;
        let args = MatrixArgs {
            name: "smoke".into(),
            url: format!("ws://{}/local?room={{room}}", emulator.addr()),
            cells: vec!["2x3:2".parse().expect("cell")],
            seconds: 0.3,
            cpu: vec![format!("self={}", std::process::id())],
            json: None,
            origin: None,
        };

        let results = run(&args).await.expect("the matrix runs");

        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert!(r.delivered > 0, "{r:?}");
        assert_eq!((r.lost, r.duplicates, r.cross_room), (0, 0, 0), "{r:?}");
        assert!(
            r.p50_ms.is_finite() && r.cpu_us_per_frame[0].1 > 0.0,
            "{r:?}"
        );
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_non_loopback_target_is_refused() {
        let args = MatrixArgs {
            name: "x".into(),
            url: "ws://10.0.0.1/?room={room}".into(),
            cells: vec!["1x2:1".parse().expect("cell")],
            seconds: 0.1,
            cpu: vec![],
            json: None,
            origin: None,
        };

        assert!(run(&args).await.is_err());
    }
}
