//! Redis changing roles under a warm function: a server demoted to a replica (`REPLICAOF`) answers every write
//! with `READONLY`, and an open connection never notices by itself. Each test owns its redis-servers; in Lambda
//! mode the fault stack's functions reach them through the port their `REDIS_URL` names (faults.rs), here a
//! proxy that stands for a DNS name.

use std::time::{Duration, Instant};

use serde_json::Value;
use wschat_emulator::{Emulator, Options};
use wschat_tests::proxy::SwitchProxy;
use wschat_tests::redis_servers::FaultRedis;
use wschat_tests::{Client, unique_room};

use super::faults::{Mode, env_port, fault_emulator};

fault_modes!(
    a_server_demoted_and_promoted_again_takes_the_first_message_after,
    after_a_failover_behind_the_same_address_the_first_message_reaches_the_others,
);

/// How soon the first message after a change must reach the other members.
const WITHIN: Duration = Duration::from_secs(5);

/// The port a chat's Redis must be reached on: the fault stack's in Lambda mode, any in process.
fn redis_port(mode: Mode) -> u16 {
    match mode {
        Mode::Redis => 0,
        Mode::Lambda => env_port("WSCHAT_FAULT_REDIS_PORT"),
    }
}

async fn join(emulator: &Emulator, room: &str) -> Client {
    Client::connect(&format!("ws://{}/local?room={room}", emulator.addr()), None)
        .await
        .expect("handshake accepted")
}

/// The next chat message or error `client` gets within [`WITHIN`], skipping pongs and history answers.
async fn next_chat_or_error(client: &mut Client, started: Instant) -> Value {
    loop {
        let frame = client.recv_json().await;
        assert!(started.elapsed() < WITHIN, "not within {WITHIN:?}: {frame}");
        if frame.get("message").is_some() || frame.get("error").is_some() {
            return frame;
        }
    }
}

/// Ann says `text`; Bob and Ann get it within [`WITHIN`].
async fn delivered(ann: &mut Client, bob: &mut Client, text: &str) {
    let started = Instant::now();
    ann.say(text).await;
    assert_eq!(next_chat_or_error(bob, started).await["message"], text);
    assert_eq!(next_chat_or_error(ann, started).await["message"], text);
}

/// A chat whose functions reach Redis through `proxy`, its room (named after `stem`), and Ann and Bob in it, both
/// of whom got a first message, "before".
async fn chatting(
    mode: Mode,
    proxy: &SwitchProxy,
    stem: &str,
) -> (Emulator, String, Client, Client) {
    let emulator = fault_emulator(mode, Options::default(), &proxy.url()).await;
    let room = unique_room(stem);
    let mut ann = join(&emulator, &room).await;
    let mut bob = join(&emulator, &room).await;
    delivered(&mut ann, &mut bob, "before").await;
    (emulator, room, ann, bob)
}

async fn a_server_demoted_and_promoted_again_takes_the_first_message_after(mode: Mode) {
    let server = FaultRedis::start().await;
    let proxy = SwitchProxy::start(redis_port(mode), server.port()).await;
    let (_emulator, _room, mut ann, mut bob) = chatting(mode, &proxy, "demoted").await;

    // A replica of a primary that is not there: it keeps its data and refuses every write.
    let nobody = FaultRedis::start().await;
    let nowhere = nobody.port();
    drop(nobody);
    server.replicate(nowhere);
    let started = Instant::now();
    ann.say("while it is a replica").await;
    let answer = next_chat_or_error(&mut ann, started).await;
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("not delivered")),
        "a write the server refused is told as not delivered: {answer}"
    );
    assert_eq!(answer["undelivered"], "while it is a replica");

    server.promote();
    delivered(&mut ann, &mut bob, "after").await;
}

async fn after_a_failover_behind_the_same_address_the_first_message_reaches_the_others(mode: Mode) {
    let old = FaultRedis::start().await;
    let new = FaultRedis::start().await;
    // A full sync at once, not after the default 5 s wait for more replicas.
    old.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    new.replicate(old.port());
    new.wait_in_sync().await;
    let proxy = SwitchProxy::start(redis_port(mode), old.port()).await;
    let (_emulator, room, mut ann, mut bob) = chatting(mode, &proxy, "failover").await;

    // An orderly failover waits until the replica has every write (replication is asynchronous: on a busy
    // machine "before" and the memberships could still be in flight, and a replica behind is a rewind, which
    // faults.rs tests). Then the replica becomes the primary, the old primary its replica, and the name points
    // at the new one; the functions' open connections still reach the old.
    assert_eq!(
        old.cli(&["WAIT", "1", "5000"]),
        "1",
        "the replica has every write"
    );
    new.promote();
    old.replicate(new.port());
    proxy.point_at(new.port());

    delivered(&mut ann, &mut bob, "after the failover").await;
    delivered(&mut ann, &mut bob, "and the next").await;
    assert!(
        new.cli(&["LLEN", &format!("wschat:history:{{{room}}}")]) == "3",
        "the history went on on the new primary"
    );
}
