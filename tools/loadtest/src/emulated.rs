//! What the smoke tests run against.

use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};

/// An in-process emulator on a free loopback port, rooms in memory, posting in process: what the smoke tests run
/// against.
pub async fn in_memory_emulator(config: chat_shared::config::Config) -> Emulator {
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        config,
        posts: Posts::InMemory,
    });
    // X-Forwarded-For trusted: `attack` is many addresses from one machine.
    let options = Options {
        trust_forwarded_for: true,
        ..Options::default()
    };
    Emulator::start("127.0.0.1:0".parse().expect("addr"), options, backend)
        .await
        .expect("emulator")
}
