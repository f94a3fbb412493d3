//! `coldstart`: how much later the first message after a cold start reaches a room than the messages after it,
//! when every connection is TLS as on AWS.
//!
//! Each start is a new emulator binary serving TLS (`--tls`, a local CA made for the run), its functions in
//! process posting over HTTPS to its `/@connections` with their own Management API client (`--posts http`), every
//! post taking `--latency-ms` more. The function's client is as cold as a Lambda's after Init: it opened one
//! connection (`Gateway::warm`) and nothing else. The members join over `wss://` (their handshakes are timed), then
//! one member sends the first message (cold: the fan-out opens the connections its posts in flight need), then
//! `--warm-messages` more (warm: the connections are pooled). The abuse limits are lifted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;

use crate::members::{Sink, connect_members_over, send_to_all, spawn_emulator};

/// `coldstart` arguments.
#[derive(Debug, clap::Args)]
pub struct ColdStartArgs {
    /// Members of the room.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Milliseconds added to every PostToConnection.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Cold starts (the median is reported).
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Messages after the first, per start.
    #[arg(long, default_value_t = 5)]
    warm_messages: usize,
    /// The emulator binary to start, once per cold start.
    #[arg(
        long,
        env = "WSCHAT_EMULATOR_BIN",
        default_value = "target/fast/wschat-emulator"
    )]
    emulator_bin: String,
    /// Give up on one message after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// One start's figures, in ms.
struct Start {
    handshake: f64,
    first: f64,
    warm: Vec<f64>,
}

/// Runs every start and prints the table.
///
/// # Errors
/// When an emulator cannot start, members cannot connect, or a message does not reach everyone in time.
pub async fn run(args: &ColdStartArgs) -> anyhow::Result<()> {
    if args.members == 0 || args.starts == 0 || args.warm_messages == 0 {
        bail!("--members, --starts and --warm-messages must be at least 1");
    }
    println!(
        "wschat cold-start benchmark: {} starts of the emulator serving TLS, functions in process posting over HTTPS \
         with {} ms added to every PostToConnection, a room of {} members, abuse limits lifted",
        args.starts, args.latency_ms, args.members
    );
    let mut starts = Vec::with_capacity(args.starts);
    for n in 0..args.starts {
        let start = one_start(args)
            .await
            .with_context(|| format!("start {n}"))?;
        println!(
            "  start {n}: member handshake median {:.1} ms, first message {:.0} ms, then median {:.0} ms",
            start.handshake,
            start.first,
            median(start.warm.clone())
        );
        starts.push(start);
    }
    let handshake = median(starts.iter().map(|s| s.handshake).collect());
    let first = median(starts.iter().map(|s| s.first).collect());
    let warm = median(starts.iter().flat_map(|s| s.warm.iter().copied()).collect());
    println!();
    println!(
        "| members | wss handshake, median | first message after a cold start, median of {} | a warm message, median | first / warm |",
        args.starts
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {handshake:.1} ms | {first:.0} ms | {warm:.0} ms | {:.2}× |",
        args.members,
        first / warm
    );
    Ok(())
}

async fn one_start(args: &ColdStartArgs) -> anyhow::Result<Start> {
    let dir = std::env::temp_dir().join(format!("wschat-coldstart-{:016x}", fastrand::u64(..)));
    let dir_arg = dir.display().to_string();
    let spawned = spawn_emulator(
        &args.emulator_bin,
        &[
            "--tls",
            "--tls-dir",
            &dir_arg,
            "--posts",
            "http",
            "--management-latency-ms",
            &args.latency_ms.to_string(),
        ],
        &[("MAX_ROOM_MEMBERS", args.members.max(2).to_string())],
    )
    .await?;
    let measured = measure(args, &spawned.url, spawned.ca.as_deref()).await;
    drop(spawned);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

async fn measure(args: &ColdStartArgs, base: &str, ca: Option<&str>) -> anyhow::Result<Start> {
    let ca = ca.context("the emulator named no CA")?;
    let pem = std::fs::read(ca).with_context(|| format!("cannot read {ca}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in chat_shared::tls::certificates(&pem).map_err(anyhow::Error::msg)? {
        roots.add(cert)?;
    }
    chat_shared::tls::install_crypto_provider();
    let tls = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let ws = base.replacen("https://", "wss://", 1);
    let url = format!("{ws}/local?room=cold_{:08x}", fastrand::u32(..));
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let (mut sinks, handshakes) =
        connect_members_over(&url, args.members, &seen_tx, Some(tls)).await?;
    sinks.truncate(1);
    let mut sender = sinks.pop().context("no members")?;
    // Presence and joins are not measured; let them settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while seen_rx.try_recv().is_ok() {}
    let first = deliver(args, &mut sender, &mut seen_rx, "cold").await?;
    let mut warm = Vec::with_capacity(args.warm_messages);
    for n in 0..args.warm_messages {
        // One message at a time, each after the last one's posts are done.
        tokio::time::sleep(Duration::from_millis(200)).await;
        warm.push(deliver(args, &mut sender, &mut seen_rx, &format!("warm {n}")).await?);
    }
    Ok(Start {
        handshake: median(handshakes),
        first,
        warm,
    })
}

/// Sends `text` and waits until every member has it; the time it took, in ms.
async fn deliver(
    args: &ColdStartArgs,
    sender: &mut Sink,
    seen: &mut mpsc::UnboundedReceiver<(usize, String)>,
    text: &str,
) -> anyhow::Result<f64> {
    let text = format!("cold-start message {text}");
    let timeout = Duration::from_secs(args.timeout_secs);
    let trip = send_to_all(sender, seen, args.members, &text, timeout).await?;
    if trip.missing > 0 {
        bail!(
            "{} members did not get {text:?} within {} s",
            trip.missing,
            args.timeout_secs
        );
    }
    Ok(trip.ms)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
