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

/// The same with sign-in required: its development provider on, the functions trusting it.
pub async fn signed_in_emulator() -> Emulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let issuer = Emulator::issuer_at(listener.local_addr().expect("bound"), false);
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        config: chat_shared::config::Config {
            auth: wschat_emulator::oidc::trusted(&issuer),
            ..chat_shared::config::Config::default()
        },
        posts: Posts::InMemory,
    });
    let options = Options {
        oidc_provider: true,
        ..Options::default()
    };
    Emulator::start_on(listener, options, backend)
        .await
        .expect("emulator")
}
