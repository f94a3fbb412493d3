//! The emulator's extras that no other local API Gateway has: the cost meter (`GET /_emulator/metrics`) and faults
//! switched at run time (`POST /_emulator/faults`), each driven through a real chat over real WebSockets.

use std::time::{Duration, Instant};

use chat_shared::config::Config;
use chat_shared::functions::{Function as _, WsAuthorize, WsConnect, WsDefault, WsDisconnect};
use serde_json::{Value, json};
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::faults::Faults;
use wschat_emulator::{BackendChoice, Emulator, Options};
use wschat_tests::redis_servers::FaultRedis;
use wschat_tests::{
    Client, Mode, SIGNED, TestChat, WAIT, encode, eventually, http, members_of, unique_room,
};

async fn get_json(url: &str) -> Value {
    let (status, body) = http("GET", url, &[], Vec::new()).await;
    assert_eq!(status, 200, "{url}");
    serde_json::from_slice(&body).expect("JSON")
}

async fn metrics(chat: &TestChat) -> Value {
    get_json(&chat.http_url("/_emulator/metrics")).await
}

/// `POST /_emulator/faults` with `change`; the status and the answer.
async fn set_faults(chat: &TestChat, change: Value) -> (u16, Value) {
    let (status, body) = http(
        "POST",
        &chat.http_url("/_emulator/faults"),
        &[("content-type", "application/json")],
        change.to_string().into_bytes(),
    )
    .await;
    (status, serde_json::from_slice(&body).expect("JSON"))
}

fn f64_at(value: &Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} in {value}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

#[tokio::test]
async fn the_cost_meter_counts_and_prices_a_scripted_session() {
    let started = Instant::now();
    let chat = TestChat::start(Mode::Memory).await;
    let room = unique_room("meter");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    let bob_id = chat.connection_ids().await.remove(1);

    for text in ["a", "b", "c"] {
        alice.say(text).await;
        assert_eq!(alice.recv_message().await, text);
        assert_eq!(bob.recv_message().await, text);
    }
    // 40 KB through the Management API: two 32 KB units.
    let big = json!({ "message": "x".repeat(40 * 1024) }).to_string();
    let (status, _) = http(
        "POST",
        &chat.http_url(&format!("/local/@connections/{}", encode(&bob_id))),
        &[SIGNED],
        big.into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bob.recv_message().await.len(), 40 * 1024);
    let m = metrics(&chat).await;

    assert_eq!(m["apiGateway"]["messagesReceived"], 3);
    assert_eq!(m["apiGateway"]["messagesSent"], 7);
    assert_eq!(m["apiGateway"]["billedMessages"], 3 + 6 + 2);
    assert_eq!(m["apiGateway"]["connections"], 2);
    let minutes = f64_at(&m, "/apiGateway/connectionMinutes");
    assert!(
        minutes > 0.0 && minutes <= 2.0 * started.elapsed().as_secs_f64() / 60.0,
        "two connections for at most the test's duration: {minutes}"
    );
    let functions = &m["lambda"]["functions"];
    assert_eq!(functions[WsAuthorize::BINARY]["requests"], 2);
    assert_eq!(functions[WsConnect::BINARY]["requests"], 2);
    assert_eq!(functions[WsDefault::BINARY]["requests"], 3);
    assert_eq!(m["lambda"]["requests"], 7);
    // The template's MemorySize (256 MB) on arm64; every invocation bills at least 1 ms.
    assert_eq!(functions[WsDefault::BINARY]["memoryMb"], 256);
    assert_eq!(functions[WsDefault::BINARY]["architecture"], "arm64");
    let billed_ms: f64 = [WsAuthorize::BINARY, WsConnect::BINARY, WsDefault::BINARY]
        .iter()
        .map(|f| f64_at(functions, &format!("/{f}/billedMs")))
        .sum();
    assert!(billed_ms >= 7.0, "{billed_ms}");
    assert!(close(
        f64_at(&m, "/lambda/gbSeconds"),
        billed_ms * 0.25 / 1000.0
    ));
    assert!(
        m["redis"].is_null(),
        "no Redis in memory mode: {}",
        m["redis"]
    );
    let cost = &m["costUsd"];
    assert!(close(f64_at(cost, "/messages"), 11.0 * 1.00 / 1e6));
    assert!(close(f64_at(cost, "/lambdaRequests"), 7.0 * 0.20 / 1e6));
    assert!(close(
        f64_at(cost, "/lambdaDuration"),
        billed_ms * 0.25 / 1000.0 * 0.000_013_333_4
    ));
    assert!(close(
        f64_at(cost, "/connectionMinutes"),
        minutes * 0.25 / 1e6
    ));
    let parts: f64 = [
        "messages",
        "connectionMinutes",
        "lambdaRequests",
        "lambdaDuration",
        "redis",
    ]
    .iter()
    .map(|k| f64_at(cost, &format!("/{k}")))
    .sum();
    assert!(close(f64_at(cost, "/total"), parts));

    alice.close().await;
    let chat_ref = &chat;
    eventually("$disconnect was metered", || async move {
        metrics(chat_ref).await["lambda"]["functions"][WsDisconnect::BINARY]["requests"] == 1
    })
    .await;
}

#[tokio::test]
async fn the_cost_meter_counts_the_commands_of_a_redis_it_can_see() {
    let redis = FaultRedis::start().await;
    let options = Options {
        meter_redis_url: Some(redis.url()),
        ..Options::default()
    };
    let config = Config {
        redis_url: Some(redis.url()),
        ..Config::default()
    };
    let emulator = Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        options,
        BackendChoice::InProcess(InProcessOptions {
            store: StoreChoice::Redis,
            config,
            posts: Posts::InMemory,
        }),
    )
    .await
    .expect("starts");
    let url = |path: &str| format!("http://{}{path}", emulator.addr());
    let before = get_json(&url("/_emulator/metrics")).await;
    let mut alice = Client::connect(
        &format!("ws://{}/local?room=counted", emulator.addr()),
        None,
    )
    .await
    .expect("open");

    alice.say("one").await;
    assert_eq!(alice.recv_message().await, "one");
    let after = get_json(&url("/_emulator/metrics")).await;

    assert_eq!(before["redis"]["commands"], 0, "{before}");
    let commands = f64_at(&after, "/redis/commands");
    assert!(commands >= 2.0, "a join and a publish at least: {after}");
    assert!(close(
        f64_at(&after, "/costUsd/redis"),
        commands * 0.0034 / 1e6
    ));
}

#[tokio::test]
async fn throttling_switched_on_at_run_time_throttles_every_post_and_switched_off_delivers_again() {
    let chat = TestChat::start(Mode::Memory).await;
    let room = unique_room("throttle");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    let at = chat.http_url(&format!(
        "/local/@connections/{}",
        encode(&chat.connection_ids().await.remove(1))
    ));

    let (status, answer) = set_faults(&chat, json!({ "throttleRate": 1.0 })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["throttleRate"], 1.0);
    let (post, _) = http("POST", &at, &[SIGNED], b"{\"message\":\"x\"}".to_vec()).await;
    assert_eq!(post, 429);
    alice.say("into the wall").await;
    // Every post, the sender's own error frame included, is throttled: nobody hears anything.
    bob.expect_silence(Duration::from_millis(500)).await;

    set_faults(&chat, json!({ "throttleRate": 0.0 })).await;
    alice.say("through").await;

    // The first message's retries may land once the switch is off: whatever arrives, "through" does.
    for client in [&mut bob, &mut alice] {
        let mut seen = Vec::new();
        while !seen.contains(&"through".to_owned()) {
            assert!(seen.len() < 3, "{seen:?}");
            seen.push(client.recv_message().await);
        }
    }
}

#[tokio::test]
async fn a_dropped_disconnect_leaves_a_stale_member_that_the_next_message_prunes() {
    let config = Config {
        prune_grace: Duration::ZERO,
        ..Config::default()
    };
    let chat = TestChat::start_configured(Mode::Memory, Options::default(), config).await;
    let room = unique_room("stale");
    let mut alice = chat.join(&room).await;
    let bob = chat.join(&room).await;
    set_faults(&chat, json!({ "dropDisconnectRate": 1.0 })).await;

    bob.close().await;
    let chat_ref = &chat;
    eventually("the gateway forgot bob", || async move {
        chat_ref.connection_ids().await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        members_of(chat.rooms.as_ref(), &room).await.len(),
        2,
        "no $disconnect: the store still counts bob"
    );

    alice.say("anyone?").await;
    assert_eq!(alice.recv_message().await, "anyone?");

    let rooms = chat.rooms.clone();
    eventually("the 410 for bob pruned him", || {
        let (rooms, room) = (rooms.clone(), room.clone());
        async move { members_of(rooms.as_ref(), &room).await.len() == 1 }
    })
    .await;
}

#[tokio::test]
async fn gone_switched_on_answers_410_for_a_live_connection_until_switched_off() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("gone")).await;
    let at = chat.http_url(&format!(
        "/local/@connections/{}",
        encode(&chat.connection_ids().await.remove(0))
    ));

    set_faults(&chat, json!({ "goneRate": 1.0 })).await;
    let (post, _) = http("POST", &at, &[SIGNED], b"{\"message\":\"x\"}".to_vec()).await;
    let (get, _) = http("GET", &at, &[SIGNED], Vec::new()).await;
    assert_eq!((post, get), (410, 410));

    set_faults(&chat, json!({ "goneRate": 0.0 })).await;
    let (post, _) = http("POST", &at, &[SIGNED], b"{\"message\":\"y\"}".to_vec()).await;
    assert_eq!(post, 200);
    assert_eq!(alice.recv_message().await, "y");
}

#[tokio::test]
async fn expire_closes_a_connection_as_the_two_hour_cap_would_and_runs_disconnect() {
    let chat = TestChat::start(Mode::Memory).await;
    let room = unique_room("expire");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    let bob_id = chat.connection_ids().await.remove(1);

    let (status, answer) = set_faults(&chat, json!({ "expire": bob_id })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["expired"], 1);

    let close = bob.recv_close(WAIT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1001);
    let rooms = chat.rooms.clone();
    eventually("$disconnect removed bob", || {
        let (rooms, room) = (rooms.clone(), room.clone());
        async move { members_of(rooms.as_ref(), &room).await.len() == 1 }
    })
    .await;
    alice.say("still here").await;
    assert_eq!(alice.recv_message().await, "still here");
    let (status, _) = set_faults(&chat, json!({ "expire": "NoSuchConn000A=" })).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_bad_fault_change_is_refused_and_changes_nothing() {
    let options = Options {
        faults: Faults {
            throttle_rate: 0.25,
            post_latency_ms: 3,
            ..Faults::default()
        },
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;

    let (out_of_range, _) =
        set_faults(&chat, json!({ "goneRate": 2.0, "throttleRate": 0.5 })).await;
    let (misspelt, _) = set_faults(&chat, json!({ "gonRate": 0.5 })).await;
    let (status, body) = http(
        "POST",
        &chat.http_url("/_emulator/faults"),
        &[("content-type", "application/json")],
        b"not json".to_vec(),
    )
    .await;

    assert_eq!((out_of_range, misspelt, status), (400, 400, 400));
    assert!(String::from_utf8_lossy(&body).contains("error"));
    assert_eq!(
        get_json(&chat.http_url("/_emulator/faults")).await,
        json!({
            "dropDisconnectRate": 0.0,
            "goneRate": 0.0,
            "throttleRate": 0.25,
            "throttleConnections": [],
            "postLatencyMs": 3,
            "postJitterMs": 0
        }),
        "the switches the options set at start, untouched"
    );
}
