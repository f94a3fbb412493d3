//! `cost`: what chat messages cost on AWS, by room size, as the emulator's cost meter prices them.
//!
//! For each room size it starts an emulator of its own on 127.0.0.1 (in-process handlers; rooms in Redis when
//! `--redis-url` is given, so Redis commands are counted too), connects that many members to one room, reads
//! `/_emulator/metrics`, has the members send `--messages` chat messages round-robin (at most `--in-flight` not yet
//! received by everyone), waits until every member has every message, reads the metrics again, and prices the
//! difference per 1,000 chat messages. Joining is not in the figures; connection minutes are shown apart (they
//! depend on how long people stay, not on what they say). Bounded in count and time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chat_shared::config::Config;
use futures_util::SinkExt as _;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};

/// `cost` arguments.
#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// Room sizes to price, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,10,100,1000")]
    sizes: Vec<usize>,
    /// Chat messages sent per room size.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Messages not yet received by every member, at most.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Rooms in this Redis (plain `redis://`), whose commands the meter then counts; in memory otherwise.
    #[arg(long)]
    redis_url: Option<String>,
    /// Give up on a room size after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// What one room size cost.
struct Priced {
    size: usize,
    messages: usize,
    /// `after - before` of the meter's JSON numbers that matter.
    delta: HashMap<&'static str, f64>,
}

const FIELDS: [(&str, &str); 8] = [
    ("billed", "/apiGateway/billedMessages"),
    ("requests", "/lambda/requests"),
    ("gbs", "/lambda/gbSeconds"),
    ("redis", "/redis/commands"),
    ("usd_messages", "/costUsd/messages"),
    ("usd_requests", "/costUsd/lambdaRequests"),
    ("usd_duration", "/costUsd/lambdaDuration"),
    ("usd_redis", "/costUsd/redis"),
];

/// Runs the benchmark and prints the table.
///
/// # Errors
/// When an emulator cannot start, a member cannot connect, or messages do not all arrive in time.
pub async fn run(args: &CostArgs) -> anyhow::Result<()> {
    if args.sizes.is_empty() || args.sizes.contains(&0) || args.messages == 0 || args.in_flight == 0
    {
        bail!("--sizes, --messages and --in-flight must be positive");
    }
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let priced =
            tokio::time::timeout(Duration::from_secs(args.timeout_secs), price(args, size))
                .await
                .with_context(|| {
                    format!("room of {size}: not done in {} s", args.timeout_secs)
                })??;
        rows.push(priced);
    }
    println!("{}", table(&rows, args.redis_url.is_some()));
    Ok(())
}

async fn price(args: &CostArgs, size: usize) -> anyhow::Result<Priced> {
    // Members here send as fast as the benchmark lets them, from one address, and a room may be larger than the
    // default cap: the limits lifted (crate::lifted).
    let config = crate::lifted::lifted(
        Config {
            redis_url: args.redis_url.clone(),
            ..Config::default()
        },
        size,
    );
    let (store, meter_redis_url) = match &args.redis_url {
        Some(url) => (StoreChoice::Redis, Some(url.clone())),
        None => (StoreChoice::Memory, None),
    };
    let options = Options {
        meter_redis_url,
        ..Options::default()
    };
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let emulator = Emulator::start(
        addr,
        options,
        BackendChoice::InProcess(InProcessOptions {
            store,
            config,
            posts: Posts::InMemory,
        }),
    )
    .await?;
    let room = format!("cost_{size}_{}", fastrand::u32(..));
    let url = format!("ws://{}/local?room={room}", emulator.addr());
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let mut members = crate::members::connect_members(&url, size, &seen_tx).await?;
    let before = emulator.metrics().await;

    // Message n is sent by member n % size; it is done when all `size` members have it.
    let mut pending: HashMap<String, usize> = HashMap::new();
    let (mut sent, mut done) = (0, 0);
    while done < args.messages {
        while sent < args.messages && pending.len() < args.in_flight {
            let text = format!("cost message {sent}");
            let body = serde_json::json!({ "message": text }).to_string();
            members[sent % size].send(Message::text(body)).await?;
            pending.insert(text, size);
            sent += 1;
        }
        let (_, frame) = seen_rx.recv().await.context("members hung up")?;
        let frame: Value = serde_json::from_str(&frame).unwrap_or_default();
        let Some(text) = frame.get("message").and_then(Value::as_str) else {
            bail!("room of {size}: a frame that is not a chat message: {frame}");
        };
        if let Some(left) = pending.get_mut(text) {
            *left -= 1;
            if *left == 0 {
                pending.remove(text);
                done += 1;
            }
        }
    }
    // A message is everyone's before its invocation has returned (and been metered): wait for the last ones.
    let requests = |v: &Value| {
        v.pointer("/lambda/functions/ws-default/requests")
            .and_then(Value::as_u64)
    };
    let wanted = requests(&before).unwrap_or(0) + args.messages as u64;
    let mut after = emulator.metrics().await;
    for _ in 0..250 {
        if requests(&after).unwrap_or(0) >= wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = emulator.metrics().await;
    }
    drop(members);
    emulator.shutdown().await;
    let number =
        |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0);
    let delta = FIELDS
        .iter()
        .map(|(name, pointer)| (*name, number(&after, pointer) - number(&before, pointer)))
        .collect();
    eprintln!("cost: room of {size}: {} messages priced", args.messages);
    Ok(Priced {
        size,
        messages: args.messages,
        delta,
    })
}

fn table(rows: &[Priced], redis: bool) -> String {
    let mut out = String::from(
        "| room size | API Gateway messages per chat message | Lambda requests per chat message | Lambda GB-s per 1,000 | Redis commands per chat message | USD per 1,000 chat messages: API Gateway | Lambda | Redis | **total** |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let d = |name: &str| row.delta.get(name).copied().unwrap_or(0.0);
        let per_message = |name: &str| d(name) / row.messages as f64;
        let per_1000 = |name: &str| per_message(name) * 1000.0;
        let lambda = per_1000("usd_requests") + per_1000("usd_duration");
        let total = per_1000("usd_messages") + lambda + per_1000("usd_redis");
        let redis_cell = if redis {
            format!("{:.1}", per_message("redis"))
        } else {
            "n/a (memory)".to_owned()
        };
        out.push_str(&format!(
            "| {} | {:.1} | {:.2} | {:.4} | {} | ${:.6} | ${:.6} | ${:.6} | **${:.6}** |\n",
            row.size,
            per_message("billed"),
            per_message("requests"),
            per_1000("gbs"),
            redis_cell,
            per_1000("usd_messages"),
            lambda,
            per_1000("usd_redis"),
            total,
        ));
    }
    out.push_str(
        "\nConnection minutes are billed apart, whatever is said: $0.25 per million, $0.015 per 1,000 connection-hours.",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_run_prices_every_chat_message_for_every_member() {
        let args = CostArgs {
            sizes: vec![1, 3],
            messages: 4,
            in_flight: 2,
            redis_url: None,
            timeout_secs: 30,
        };

        let rows = [
            price(&args, 1).await.expect("size 1"),
            price(&args, 3).await.expect("size 3"),
        ];

        // One received plus one sent per member, each under 32 KB: 1 + size units per chat message.
        assert_eq!(rows[0].delta["billed"], 4.0 * 2.0);
        assert_eq!(rows[1].delta["billed"], 4.0 * 4.0);
        assert_eq!(
            rows[1].delta["requests"], 4.0,
            "one ws-default invocation per message"
        );
        let printed = table(&rows, false);
        assert!(printed.contains("| 3 | 4.0 | 1.00 |"), "{printed}");
    }
}
