//! `fanout`: for each fan-out concurrency (`FANOUT_MAX_IN_FLIGHT`) it starts an emulator on a free 127.0.0.1 port
//! with a fixed latency added to every PostToConnection, runs the real `$default` handler in process (posting
//! straight into the emulator's connections, through the same checks and fault switches as `/@connections`),
//! connects `--members` WebSocket clients to one room, sends `--messages` messages one after the other and
//! measures, for each, the time from send until the last member has it. The results of all settings are printed
//! side by side, as ratios to the first, in one run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chat_shared::config::Config;
use tokio::sync::mpsc;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};

use crate::members::{connect_members, send_to_all};

/// `fanout` arguments.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    /// Members in the room (the sender is one of them).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Milliseconds added to every /@connections call.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Messages measured per setting.
    #[arg(long, default_value_t = 5)]
    messages: usize,
    /// Fan-out concurrencies to compare, comma-separated; the first is the baseline of the ratios.
    #[arg(long, value_delimiter = ',', default_value = "16,64,128,256")]
    in_flight: Vec<usize>,
    /// Give up on one message after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

struct Sample {
    in_flight: usize,
    median_ms: f64,
    max_ms: f64,
    connect_ms: f64,
}

/// Runs the benchmark at every `--in-flight` setting and prints the table.
///
/// # Errors
/// When an emulator cannot start or a message does not reach every member in time.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<()> {
    if args.members == 0 || args.messages == 0 || args.in_flight.is_empty() {
        bail!("--members, --messages and --in-flight must be positive");
    }
    println!(
        "wschat fan-out benchmark: {} members in one room, {} ms added to every PostToConnection, {} messages per setting",
        args.members, args.latency_ms, args.messages
    );
    let mut samples = Vec::new();
    for &in_flight in &args.in_flight {
        samples.push(
            measure(args, in_flight)
                .await
                .with_context(|| format!("in_flight = {in_flight}"))?,
        );
    }
    let base = samples[0].median_ms;
    println!();
    println!(
        "| FANOUT_MAX_IN_FLIGHT | message to all members, median | slowest | vs {} in flight | joining all members |",
        samples[0].in_flight
    );
    println!("|---:|---:|---:|---:|---:|");
    for s in &samples {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.2}x | {:.0} ms |",
            s.in_flight,
            s.median_ms,
            s.max_ms,
            base / s.median_ms,
            s.connect_ms
        );
    }
    println!();
    println!(
        "ideal with unlimited concurrency: about {} ms (one round of latency)",
        args.latency_ms
    );
    Ok(())
}

async fn measure(args: &FanoutArgs, in_flight: usize) -> anyhow::Result<Sample> {
    let options = Options {
        faults: wschat_emulator::faults::Faults {
            post_latency_ms: args.latency_ms,
            ..wschat_emulator::faults::Faults::default()
        },
        ..Options::default()
    };
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        // The limits lifted: a thousand members from one address (crate::lifted).
        config: crate::lifted::lifted(
            Config {
                fanout_max_in_flight: in_flight,
                ..Config::default()
            },
            args.members,
        ),
        posts: Posts::InMemory,
    });
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let emulator = Emulator::start(addr, options, backend).await?;
    let url = format!("ws://{}/local?room=bench", emulator.addr());

    // Every member reports each frame it receives on one channel, tagged with its index.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let connect_started = Instant::now();
    let mut sinks = connect_members(&url, args.members, &seen_tx).await?;
    let connect_ms = connect_started.elapsed().as_secs_f64() * 1000.0;
    sinks.truncate(1);
    let sender = sinks.pop();
    let mut sender = sender.context("no members")?;

    let mut times = Vec::with_capacity(args.messages);
    for n in 0..args.messages {
        let text = format!("bench message {n}");
        let trip = send_to_all(
            &mut sender,
            &mut seen_rx,
            args.members,
            &text,
            Duration::from_secs(args.timeout_secs),
        )
        .await?;
        if trip.missing > 0 {
            bail!("message {n}: {} members still waiting", trip.missing);
        }
        times.push(trip.ms);
    }
    emulator.shutdown().await;
    times.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    let max_ms = times[times.len() - 1];
    println!("  {in_flight:>4} in flight: median {median_ms:.0} ms, slowest {max_ms:.0} ms");
    Ok(Sample {
        in_flight,
        median_ms,
        max_ms,
        connect_ms,
    })
}
