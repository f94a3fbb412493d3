//! `wschat-loadtest`: the benchmarks behind `make bench`.
//!
//! * `fanout`: how long one chat message takes to reach every member of a large room when every
//!   PostToConnection takes as long as API Gateway's does.
//! * `matrix` ([`matrix`]): throughput, latency, loss and CPU per delivered frame of any chat server speaking the
//!   tutorial's protocol, over a matrix of rooms × clients × messages in flight.
//! * `report`: the matrix results of several targets side by side, as a Markdown table with ratios.
//! * `gateway`: CPU per PostToConnection of the SDK client and of the direct client.
//! * `cost` ([`cost`]): what 1,000 chat messages cost on AWS at several room sizes, by the emulator's cost meter.
//!
//! `fanout`: for each fan-out concurrency (`FANOUT_MAX_IN_FLIGHT`) it starts an emulator on a free 127.0.0.1 port with a
//! fixed latency added to every `/@connections` call, runs the real `$default` handler in process (posting through
//! the real AWS SDK adapter), connects `--members` WebSocket clients to one room, sends `--messages` messages one
//! after the other and measures, for each, the time from send until the last member has it. The results of all
//! settings are printed side by side, as ratios to the first, in one run. Every loop is bounded in count and time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chat_shared::config::Config;
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};

mod cost;
mod gateway;
mod matrix;
mod report;

/// The wschat benchmarks.
#[derive(Debug, Parser)]
enum Command {
    /// One message to every member of a large room, at several fan-out concurrencies.
    Fanout(Args),
    /// Rooms × clients × in-flight against any chat server (see `make bench`).
    Matrix(matrix::MatrixArgs),
    /// The JSON lines of several `matrix` runs as one Markdown table, with ratios to a baseline target.
    Report(report::ReportArgs),
    /// CPU per PostToConnection of the SDK client and the direct client, against a running emulator.
    Gateway(gateway::GatewayArgs),
    /// What 1,000 chat messages cost on AWS at several room sizes, by the emulator's cost meter.
    Cost(cost::CostArgs),
}

/// Fan-out benchmark arguments.
#[derive(Debug, clap::Args)]
struct Args {
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

// The allocator ws-default runs with, so that `gateway` measures the posts as the function makes them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let command = Command::parse();
    // `gateway` posts on one thread, as ws-default does (a function has one vCPU); the rest drive hundreds of
    // clients and use every core.
    let runtime = match command {
        Command::Gateway(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()?;
    runtime.block_on(async move {
        match command {
            Command::Fanout(args) => fanout(args).await,
            Command::Matrix(args) => matrix::run(&args).await.map(drop),
            Command::Report(args) => report::run(&args),
            Command::Gateway(args) => gateway::run(&args).await.map(drop),
            Command::Cost(args) => cost::run(&args).await,
        }
    })
}

async fn fanout(args: Args) -> anyhow::Result<()> {
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
            run(&args, in_flight)
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

/// The sending half of a member's WebSocket.
type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// Connects `members` clients to `url`, one after the other; each reports the text frames it receives on `seen`,
/// tagged with its index. Returns their sending halves, in order.
async fn connect_members(
    url: &str,
    members: usize,
    seen: &mpsc::UnboundedSender<(usize, String)>,
) -> anyhow::Result<Vec<Sink>> {
    let mut sinks = Vec::with_capacity(members);
    for index in 0..members {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .context("connecting a member timed out")??;
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
    Ok(sinks)
}

async fn run(args: &Args, in_flight: usize) -> anyhow::Result<Sample> {
    let options = Options {
        faults: wschat_emulator::faults::Faults {
            post_latency_ms: args.latency_ms,
            ..wschat_emulator::faults::Faults::default()
        },
        ..Options::default()
    };
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        config: Config {
            fanout_max_in_flight: in_flight,
            ..Config::default()
        },
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
        let body = serde_json::json!({ "message": text }).to_string();
        let started = Instant::now();
        sender.send(Message::text(body)).await?;
        let mut got = vec![false; args.members];
        let mut remaining = args.members;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
        while remaining > 0 {
            let (index, frame) = tokio::time::timeout_at(deadline, seen_rx.recv())
                .await
                .with_context(|| format!("message {n}: {remaining} members still waiting"))?
                .context("members hung up")?;
            if frame.contains(&text) && !got[index] {
                got[index] = true;
                remaining -= 1;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
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

/// An in-process emulator on a free loopback port, rooms in memory, posting in process: what the smoke tests run
/// against.
#[cfg(test)]
async fn in_memory_emulator(config: chat_shared::config::Config) -> Emulator {
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        config,
        posts: Posts::InMemory,
    });
    Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        Options::default(),
        backend,
    )
    .await
    .expect("emulator")
}
