//! Never silently deaf: Redis paused, killed, restarted with and without its data; the window after `$connect`;
//! rate limits, the room cap and a flood. Each against a real redis-server the test owns, in two modes:
//! * `in_redis`: the handlers in process, talking to the test's redis-server;
//! * `in_lambda`: the real binaries behind `cargo lambda watch` (the fault stack `tools/scripts/lambda-stack.sh`
//!   starts), whose `REDIS_URL` and Management API endpoint are ports this test serves. These run one at a time
//!   (`.config/nextest.toml`).
//!
//! Every message sent in these tests is either delivered to its sender or answered with an error saying it was
//! not: none is dropped without a word.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_shared::config::Config;
use serde_json::Value;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::{BackendChoice, Emulator, Options};
use wschat_tests::redis_servers::FaultRedis;
use wschat_tests::{Client, WAIT, unique_room};

/// The room cap the fault stack's functions run with (`MAX_ROOM_MEMBERS=3` in lambda-stack.sh); the in-process
/// mode uses the same.
const MAX_MEMBERS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Redis,
    Lambda,
}

/// A chat whose Redis this test controls.
struct FaultChat {
    redis: FaultRedis,
    emulator: Emulator,
}

pub(crate) fn env_port(name: &str) -> u16 {
    std::env::var(name)
        .unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the tests with `make test`, which starts the fault stack \
                 (tools/scripts/lambda-stack.sh)"
            )
        })
        .parse()
        .expect("a port")
}

impl FaultChat {
    async fn start(mode: Mode, options: Options) -> Self {
        let redis = match mode {
            Mode::Redis => FaultRedis::start().await,
            Mode::Lambda => FaultRedis::start_on(env_port("WSCHAT_FAULT_REDIS_PORT")).await,
        };
        let emulator = fault_emulator(mode, options, &redis.url()).await;
        Self { redis, emulator }
    }

    async fn join(&self, room: &str) -> Client {
        self.try_join(room).await.expect("handshake accepted")
    }

    async fn try_join(&self, room: &str) -> Result<Client, String> {
        let url = format!("ws://{}/local?room={room}", self.emulator.addr());
        Client::connect(&url, None).await.map_err(|e| e.to_string())
    }
}

/// An emulator whose functions use the Redis at `redis_url`: in process (`Mode::Redis`), or the fault stack's
/// functions (`Mode::Lambda`), whose `REDIS_URL` is fixed to `WSCHAT_FAULT_REDIS_PORT`: there `redis_url` must be
/// on that port.
pub(crate) async fn fault_emulator(mode: Mode, options: Options, redis_url: &str) -> Emulator {
    // The emulator's and the in-process handlers' logs, shown when a test fails.
    chat_shared::telemetry::init();
    match mode {
        Mode::Redis => {
            let config = Config {
                redis_url: Some(redis_url.to_owned()),
                max_room_members: MAX_MEMBERS,
                ..Config::default()
            };
            let backend = BackendChoice::InProcess(InProcessOptions {
                store: StoreChoice::Redis,
                config,
                posts: Posts::InMemory,
            });
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
            Emulator::start(addr, options, backend)
                .await
                .expect("emulator starts")
        }
        Mode::Lambda => {
            let port = env_port("WSCHAT_FAULT_REDIS_PORT");
            assert!(
                redis_url.ends_with(&format!(":{port}")),
                "the fault stack's functions use Redis on port {port}, not {redis_url}"
            );
            let invoke_url = std::env::var("WSCHAT_FAULT_INVOKE_URL").expect("set with the ports");
            let addr = SocketAddr::from(([127, 0, 0, 1], env_port("WSCHAT_FAULT_EMULATOR_PORT")));
            Emulator::start(addr, options, BackendChoice::Lambda { invoke_url })
                .await
                .expect("the fault stack's emulator port is free")
        }
    }
}

/// Runs each scenario `in_redis` and `in_lambda`.
macro_rules! fault_modes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_redis() {
                super::$name(super::Mode::Redis).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_lambda() {
                super::$name(super::Mode::Lambda).await;
            }
        }
    )+};
}

fault_modes!(
    a_message_sent_while_redis_is_paused_for_four_seconds_is_delivered,
    a_message_whose_outcome_is_unknown_is_said_so_and_sent_again_with_its_id_is_stored_once,
    a_message_sent_while_redis_is_down_is_answered_with_an_error_and_the_next_one_after_it_is_back_is_delivered,
    the_room_heals_after_redis_restarts_without_its_data,
    a_restart_with_the_data_carries_the_history_over_into_a_new_epoch,
    a_rewind_to_an_older_snapshot_never_numbers_two_messages_alike,
    a_newcomer_joining_during_a_busy_fan_out_receives_what_follows,
    a_flooding_client_is_limited_and_nobody_else_is,
    the_room_cap_refuses_one_more_member,
);

/// The next frame that is a chat message or an error, skipping pongs and history answers.
async fn next_chat_or_error(client: &mut Client) -> Value {
    loop {
        let frame = client.recv_json().await;
        if frame.get("message").is_some() || frame.get("error").is_some() {
            return frame;
        }
    }
}

async fn a_message_sent_while_redis_is_paused_for_four_seconds_is_delivered(mode: Mode) {
    let chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("paused");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    chat.redis.pause();
    alice.say("said while Redis stalls").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    chat.redis.resume();

    // The store's first attempt times out after 3 s; its one retry is answered once Redis goes on.
    let to_alice = next_chat_or_error(&mut alice).await;
    assert_eq!(to_alice["message"], "said while Redis stalls", "{to_alice}");
    assert_eq!(
        next_chat_or_error(&mut bob).await["message"],
        "said while Redis stalls"
    );
    alice.say("and after").await;
    assert_eq!(next_chat_or_error(&mut bob).await["message"], "and after");
}

async fn a_message_whose_outcome_is_unknown_is_said_so_and_sent_again_with_its_id_is_stored_once(
    mode: Mode,
) {
    let chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("unknown");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    // Both attempts time out (3 s each); Redis then runs the queued script anyway.
    chat.redis.pause();
    alice
        .send_text(r#"{"message":"said into a stall","id":"a-1"}"#)
        .await;
    // Two attempts of 3 s, the second cut at 5 s by the socket's TCP_USER_TIMEOUT: longer than `WAIT`.
    let answer = loop {
        let frame = alice.recv_frame(Duration::from_secs(15)).await;
        let frame: Value =
            serde_json::from_str(frame.to_text().expect("a text frame")).expect("JSON");
        if frame.get("error").is_some() || frame.get("message").is_some() {
            break frame;
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    chat.redis.resume();

    assert_eq!(answer["uncertain"], true, "not 'not delivered': {answer}");
    assert_eq!(answer["id"], "a-1", "{answer}");
    assert!(
        answer.get("undelivered").is_none(),
        "the text is not given back as undelivered: {answer}"
    );
    alice
        .send_text(r#"{"message":"said into a stall","id":"a-1"}"#)
        .await;
    let echo = next_chat_or_error(&mut alice).await;
    let to_bob = next_chat_or_error(&mut bob).await;
    assert_eq!(echo["message"], "said into a stall", "{echo}");
    assert_eq!(echo["id"], "a-1");
    assert_eq!(to_bob["seq"], echo["seq"]);
    let history = bob.history(Some(0), None).await;
    let texts: Vec<&Value> = history.chats.iter().map(|c| &c["message"]).collect();
    assert_eq!(texts, ["said into a stall"], "stored exactly once");
}

async fn a_message_sent_while_redis_is_down_is_answered_with_an_error_and_the_next_one_after_it_is_back_is_delivered(
    mode: Mode,
) {
    let mut chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("down");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    alice.say("before").await;
    assert_eq!(next_chat_or_error(&mut bob).await["message"], "before");
    assert_eq!(next_chat_or_error(&mut alice).await["message"], "before");

    chat.redis.kill_after_saving();
    alice.say("into the void").await;
    let answer = next_chat_or_error(&mut alice).await;

    let error = answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("told, not silence: {answer}"));
    assert!(error.contains("not delivered"), "{error}");
    assert_eq!(
        answer["undelivered"], "into the void",
        "the text comes back"
    );
    assert!(
        answer.get("connectionId").is_none(),
        "the handler answered, not API Gateway's 'Internal server error': {answer}"
    );

    chat.redis.start_again().await;
    alice.say("back").await;
    assert_eq!(next_chat_or_error(&mut alice).await["message"], "back");
    assert_eq!(
        next_chat_or_error(&mut bob).await["message"],
        "back",
        "the first message after Redis is back is delivered (bob still a member: the data survived)"
    );
}

async fn the_room_heals_after_redis_restarts_without_its_data(mode: Mode) {
    let mut chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("amnesia");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    let mut carol = chat.join(&room).await;
    alice.say("before").await;
    let before = next_chat_or_error(&mut carol).await;
    bob.recv_json().await;
    alice.recv_json().await;

    chat.redis.restart_empty().await;

    // A talker is back at once: its own message makes it a member again, and it hears it.
    alice.say("first after").await;
    let first = next_chat_or_error(&mut alice).await;
    assert_eq!(first["message"], "first after", "{first}");
    assert_eq!(first["seq"], 1, "the room starts over");
    assert_ne!(
        first["epoch"], before["epoch"],
        "a new epoch tells pages history was lost"
    );
    // Another talker too.
    bob.say("me too").await;
    assert_eq!(next_chat_or_error(&mut bob).await["message"], "me too");
    assert_eq!(next_chat_or_error(&mut alice).await["message"], "me too");
    // A silent reader is back after one heartbeat.
    carol.ping().await;
    alice.say("everyone").await;
    assert_eq!(next_chat_or_error(&mut carol).await["message"], "everyone");
    assert_eq!(next_chat_or_error(&mut bob).await["message"], "everyone");
}

async fn a_restart_with_the_data_carries_the_history_over_into_a_new_epoch(mode: Mode) {
    let mut chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("restarted");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    alice.say("one").await;
    let one = next_chat_or_error(&mut bob).await;

    chat.redis.restart_with_data().await;
    alice.say("two").await;
    let two = next_chat_or_error(&mut bob).await;

    // A restarted server cannot vouch that it holds every message readers saw: the history goes on under a new
    // epoch, what it kept carried over with its seqs.
    assert_eq!(two["message"], "two", "bob is still a member: {two}");
    assert_eq!(two["seq"], 2);
    assert_ne!(two["epoch"], one["epoch"], "{two}");
    let history = bob.history(Some(0), two["epoch"].as_str()).await;
    assert_eq!(history.epoch, two["epoch"]);
    let kept: Vec<(&Value, &Value, &Value)> = history
        .chats
        .iter()
        .map(|c| (&c["seq"], &c["message"], &c["epoch"]))
        .collect();
    assert_eq!(
        kept,
        [
            (&1.into(), &"one".into(), &two["epoch"]),
            (&2.into(), &"two".into(), &two["epoch"])
        ],
        "{:?}",
        history.chats
    );
    assert_eq!(history.chats[0]["ts"], one["ts"], "carried over as it was");
}

async fn a_rewind_to_an_older_snapshot_never_numbers_two_messages_alike(mode: Mode) {
    let mut chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("rewound");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    for text in ["m1", "m2", "m3"] {
        alice.say(text).await;
    }
    let before: Vec<Value> = bob.recv_chats(3).await;
    chat.redis.save();
    for text in ["m4", "m5"] {
        alice.say(text).await;
    }
    let seen = bob.recv_chats(2).await;
    assert_eq!(seen[1]["seq"], 5);

    // Restored from the snapshot taken at m3: m4 and m5 are gone from the store, not from Bob's screen.
    chat.redis.kill();
    chat.redis.start_again().await;
    for text in ["m6", "m7"] {
        alice.say(text).await;
    }
    let after = bob.recv_chats(2).await;

    let old = &before[0]["epoch"];
    for frame in &after {
        assert_ne!(
            &frame["epoch"], old,
            "no seq of the old epoch is reused: {frame}"
        );
    }
    assert_eq!(
        after
            .iter()
            .map(|c| (c["seq"].as_u64(), c["message"].as_str()))
            .collect::<Vec<_>>(),
        [(Some(4), Some("m6")), (Some(5), Some("m7"))]
    );
    let history = bob.history(Some(0), after[0]["epoch"].as_str()).await;
    let texts: Vec<&Value> = history.chats.iter().map(|c| &c["message"]).collect();
    let kept_then_new: Vec<&Value> = before.iter().chain(&after).map(|c| &c["message"]).collect();
    assert_eq!(
        texts, kept_then_new,
        "the new epoch: what the store kept, then what followed"
    );
}

async fn a_newcomer_joining_during_a_busy_fan_out_receives_what_follows(mode: Mode) {
    // Posts to a connection answer 410 for 600 ms after its $connect, as AWS does before the connection is open.
    let options = Options {
        open_delay: Duration::from_millis(600),
        ..Options::default()
    };
    let chat = FaultChat::start(mode, options).await;
    let room = unique_room("newcomer");
    let mut talker = chat.join(&room).await;
    let mut newcomer = None;
    // Twenty messages 100 ms apart (within the talker's burst); the newcomer joins after the third, so several
    // fan-outs meet its 410 while it is not open yet.
    for n in 1..=20 {
        talker.say(&format!("m{n}")).await;
        if n == 3 {
            newcomer = Some(chat.join(&room).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut newcomer = newcomer.expect("joined");

    let mut heard = Vec::new();
    loop {
        let frame = next_chat_or_error(&mut newcomer).await;
        let text = frame["message"].as_str().expect("chat").to_owned();
        heard.push(text.clone());
        if text == "m20" {
            break;
        }
    }
    assert!(
        heard.len() >= 5,
        "once open, the newcomer hears the rest (it was not pruned for its early 410s): {heard:?}"
    );
}

async fn a_flooding_client_is_limited_and_nobody_else_is(mode: Mode) {
    let chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("flood");
    let mut flooder = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    let mut reader = chat.join(&room).await;

    for n in 0..60 {
        flooder.say(&format!("flood {n}")).await;
    }
    let mut latencies = Vec::new();
    for n in 0..5 {
        let sent = Instant::now();
        bob.say(&format!("bob {n}")).await;
        // Read until bob's message arrives: every frame the reader gets meanwhile is the flooder's.
        loop {
            let frame = next_chat_or_error(&mut reader).await;
            if frame["message"] == format!("bob {n}").as_str() {
                latencies.push(sent.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut delivered = 0;
    let mut refused = 0;
    while delivered + refused < 60 {
        let frame = next_chat_or_error(&mut flooder).await;
        if frame["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("flood"))
        {
            delivered += 1;
        } else if frame["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many messages"))
        {
            refused += 1;
            assert!(
                frame["undelivered"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("flood"))
            );
        } else if frame["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("bob"))
        {
            continue;
        } else {
            panic!("unexpected frame {frame}");
        }
    }

    println!(
        "bob's latencies during the flood: {latencies:?}; flooder: {delivered} delivered, {refused} refused"
    );
    assert_eq!(
        latencies.len(),
        5,
        "every one of bob's messages got through the flood, each within {WAIT:?}"
    );
    // The burst (20) plus what 5 tokens a second refill while the flood is read: never the whole flood.
    assert!((20..40).contains(&delivered), "delivered {delivered}");
    assert_eq!(
        delivered + refused,
        60,
        "every flood message was delivered or refused, none dropped"
    );
}

async fn the_room_cap_refuses_one_more_member(mode: Mode) {
    let chat = FaultChat::start(mode, Options::default()).await;
    let room = unique_room("full");
    let mut members = Vec::new();
    for _ in 0..MAX_MEMBERS {
        members.push(chat.join(&room).await);
    }

    let refused = chat.try_join(&room).await.err().expect("the room is full");
    let elsewhere = chat.try_join(&unique_room("other")).await;

    assert!(refused.contains("403"), "{refused}");
    assert!(elsewhere.is_ok(), "another room is not affected");
    members.pop().expect("a member").close().await;
    // $disconnect runs after the close: retry until it has, within the usual bound.
    let deadline = Instant::now() + WAIT;
    let rejoined = loop {
        match chat.try_join(&room).await {
            Ok(client) => break client,
            Err(err) if Instant::now() < deadline => {
                assert!(err.contains("403"), "{err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the freed place was not taken again: {err}"),
        }
    };
    drop(rejoined);
}
