//! `bigroom`: how long one chat message takes to reach every member of a room of thousands, when every
//! PostToConnection takes as long as API Gateway's (`--latency-ms`) and the fan-out is shared out to `ws-fanout`
//! invocations of `--shard-size` members each.
//!
//! Against the emulator binary in process (`--emulator-bin`, one process per room size: a room of 10,000 is
//! 10,000 sockets on each side, and one process may hold 20,000), or against a running emulator
//! (`--emulator-url`: the Lambda-mode stack, whose functions are the real binaries; the latency is then set through
//! its fault switches). The abuse limits are lifted (one address opens thousands of connections), and the room cap
//! is raised to the room's size.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;

use crate::members::{connect_members, send_to_all};

/// `bigroom` arguments.
#[derive(Debug, clap::Args)]
pub struct BigRoomArgs {
    /// Room sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    members: Vec<usize>,
    /// Milliseconds added to every PostToConnection.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Messages measured per room size (the median is reported).
    #[arg(long, default_value_t = 5)]
    messages: usize,
    /// Members per invocation (`FANOUT_SHARD_SIZE`) when this tool starts the emulator.
    #[arg(long, default_value_t = 1000)]
    shard_size: usize,
    /// The emulator binary to start, once per room size.
    #[arg(
        long,
        env = "WSCHAT_EMULATOR_BIN",
        default_value = "target/fast/wschat-emulator"
    )]
    emulator_bin: String,
    /// A running emulator to measure instead (e.g. the Lambda-mode stack's `http://127.0.0.1:PORT`).
    #[arg(long)]
    emulator_url: Option<String>,
    /// Give up on one message after this many seconds (its missing members are counted as lost).
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

struct Sample {
    members: usize,
    median_ms: f64,
    slowest_ms: f64,
    lost: usize,
    shards: f64,
    connect_s: f64,
}

/// Runs every room size and prints the table.
///
/// # Errors
/// When an emulator cannot start or members cannot connect.
pub async fn run(args: &BigRoomArgs) -> anyhow::Result<()> {
    if args.members.is_empty() || args.messages == 0 {
        bail!("--members and --messages must be given");
    }
    let mode = if args.emulator_url.is_some() {
        "against a running emulator (its functions as they are)"
    } else {
        "emulator in process"
    };
    println!(
        "wschat big-room benchmark, {mode}: {} ms added to every PostToConnection, {} messages per room, abuse limits lifted",
        args.latency_ms, args.messages
    );
    let mut samples = Vec::new();
    for &members in &args.members {
        let sample = match &args.emulator_url {
            Some(url) => measure(args, url, members).await,
            None => {
                let (mut child, url) = start_emulator(args, members).await?;
                let sample = measure(args, &url, members).await;
                let _ = child.kill().await;
                sample
            }
        }
        .with_context(|| format!("a room of {members}"))?;
        samples.push(sample);
    }
    println!();
    println!(
        "| members | message to all members, median | slowest | lost | ws-fanout invocations per message | joining all members |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for s in &samples {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {} | {:.1} | {:.1} s |",
            s.members, s.median_ms, s.slowest_ms, s.lost, s.shards, s.connect_s
        );
    }
    Ok(())
}

/// The emulator binary for a room of `members`, in process, with the latency and the limits; and its URL.
async fn start_emulator(
    args: &BigRoomArgs,
    members: usize,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let started = crate::members::spawn_emulator(
        &args.emulator_bin,
        &[
            "--management-latency-ms",
            &args.latency_ms.to_string(),
            "--worker-threads",
            "2",
        ],
        &[
            ("MAX_ROOM_MEMBERS", members.to_string()),
            ("FANOUT_SHARD_SIZE", args.shard_size.to_string()),
        ],
    )
    .await?;
    Ok((started.child, started.url))
}

async fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse()?).await?;
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

async fn post_faults(base: &str, change: serde_json::Value) -> anyhow::Result<()> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = hyper::Request::post(format!("{base}/_emulator/faults"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            change.to_string(),
        )))?;
    let status = client.request(request).await?.status();
    if !status.is_success() {
        bail!("POST /_emulator/faults answered {status}");
    }
    Ok(())
}

/// How often the emulator has invoked `ws-fanout`.
async fn shard_invocations(base: &str) -> anyhow::Result<u64> {
    let meter = get_json(&format!("{base}/_emulator/metrics")).await?;
    Ok(meter["lambda"]["functions"]["ws-fanout"]["requests"]
        .as_u64()
        .unwrap_or(0))
}

async fn measure(args: &BigRoomArgs, base: &str, members: usize) -> anyhow::Result<Sample> {
    let base = base.trim_end_matches('/');
    if args.emulator_url.is_some() {
        post_faults(base, serde_json::json!({ "postLatencyMs": 0 })).await?;
    }
    let ws = base.replacen("http://", "ws://", 1);
    let room = format!("big_{members}_{:08x}", fastrand::u32(..));
    let url = format!("{ws}/local?room={room}");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let started = Instant::now();
    let mut sinks = connect_members(&url, members, &seen_tx).await?;
    let connect_s = started.elapsed().as_secs_f64();
    sinks.truncate(1);
    let mut sender = sinks.pop().context("no members")?;
    // Presence and joins are not measured; let them settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while seen_rx.try_recv().is_ok() {}
    if args.emulator_url.is_some() {
        post_faults(
            base,
            serde_json::json!({ "postLatencyMs": args.latency_ms }),
        )
        .await?;
    }
    let shards_before = shard_invocations(base).await?;

    let mut times = Vec::with_capacity(args.messages);
    let mut lost = 0;
    for n in 0..args.messages {
        let text = format!("big room message {n}");
        let trip = send_to_all(
            &mut sender,
            &mut seen_rx,
            members,
            &text,
            Duration::from_secs(args.timeout_secs),
        )
        .await?;
        lost += trip.missing;
        times.push(trip.ms);
        // The next message after this one's posts are all done: one message at a time, as `fanout` measures.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shards = (shard_invocations(base).await? - shards_before) as f64 / args.messages as f64;
    if args.emulator_url.is_some() {
        post_faults(base, serde_json::json!({ "postLatencyMs": 0 })).await?;
    }
    times.sort_by(f64::total_cmp);
    let sample = Sample {
        members,
        median_ms: times[times.len() / 2],
        slowest_ms: times[times.len() - 1],
        lost,
        shards,
        connect_s,
    };
    println!(
        "  {members:>6} members: median {:.0} ms, slowest {:.0} ms, {lost} lost, {shards:.1} shards a message",
        sample.median_ms, sample.slowest_ms
    );
    Ok(sample)
}
