//! `wschat-loadtest`: the benchmarks behind `make bench`.
//!
//! * `fanout` ([`fanout`]): how long one chat message takes to reach every member of a large room when every
//!   PostToConnection takes as long as API Gateway's does.
//! * `bigroom` ([`bigroom`]): the same for rooms of thousands, shared out to `ws-fanout` invocations.
//! * `coldstart` ([`coldstart`]): the first message after a cold start against the ones after it, over TLS.
//! * `matrix` ([`matrix`]): throughput, latency, loss and CPU per delivered frame of any chat server speaking the
//!   tutorial's protocol, over a matrix of rooms × clients × messages in flight.
//! * `report` ([`report`]): the matrix results of several targets side by side, as a Markdown table with ratios.
//! * `gateway` ([`gateway`]): CPU per PostToConnection of the SDK client and of the direct client.
//! * `cost` ([`cost`]): what 1,000 chat messages cost on AWS at several room sizes, by the emulator's cost meter.
//! * `attack` ([`attack`]): the abuse limits under attack, with their defaults: a request flood, a handshake storm
//!   and a message flood at once, while two members chat.
//! * `authorize` ([`authorize`]): what sign-in costs a handshake, and the authorizer alone.
//!
//! Every loop is bounded in count and time; everything talks to 127.0.0.1 only.

use clap::Parser;

mod attack;
mod authorize;
mod bigroom;
mod coldstart;
mod cost;
#[cfg(test)]
mod emulated;
mod fanout;
mod gateway;
mod lifted;
mod matrix;
mod members;
mod report;

/// The wschat benchmarks.
#[derive(Debug, Parser)]
enum Command {
    /// One message to every member of a large room, at several fan-out concurrencies.
    Fanout(fanout::FanoutArgs),
    /// One message to every member of rooms of thousands, the fan-out shared out to ws-fanout invocations.
    Bigroom(bigroom::BigRoomArgs),
    /// The first message after a cold start against the ones after it, with the emulator serving TLS.
    Coldstart(coldstart::ColdStartArgs),
    /// Rooms × clients × in-flight against any chat server (see `make bench`).
    Matrix(matrix::MatrixArgs),
    /// The JSON lines of several `matrix` runs as one Markdown table, with ratios to a baseline target.
    Report(report::ReportArgs),
    /// CPU per PostToConnection of the SDK client and the direct client, against a running emulator.
    Gateway(gateway::GatewayArgs),
    /// What 1,000 chat messages cost on AWS at several room sizes, by the emulator's cost meter.
    Cost(cost::CostArgs),
    /// A request flood, a handshake storm and a message flood at once against one chat, with its limits.
    Attack(attack::AttackArgs),
    /// Signed-in handshakes, and the authorizer alone, timed against a chat that requires sign-in.
    Authorize(authorize::AuthorizeArgs),
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
            Command::Fanout(args) => fanout::run(&args).await,
            Command::Bigroom(args) => bigroom::run(&args).await,
            Command::Coldstart(args) => coldstart::run(&args).await,
            Command::Matrix(args) => matrix::run(&args).await.map(drop),
            Command::Report(args) => report::run(&args),
            Command::Gateway(args) => gateway::run(&args).await.map(drop),
            Command::Cost(args) => cost::run(&args).await,
            Command::Attack(args) => attack::run(&args).await.map(drop),
            Command::Authorize(args) => authorize::run(&args).await.map(drop),
        }
    })
}
