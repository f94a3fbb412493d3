//! Rooms bigger than one invocation's shard: `ws-default` posts to the sender's shard and hands the others to
//! asynchronous invocations of `ws-fanout` (in process through the emulator's queue, in Lambda mode through the
//! emulator's Invoke API to the real binary). Two members a shard, so a room of a few is already sharded: in
//! process by the test's own configuration, in Lambda mode by the stack's (`WSCHAT_FANOUT_SHARD_SIZE=2`, which
//! `make test` gives it).

use std::time::Duration;

use chat_shared::config::Config;
use chat_shared::functions::{Function as _, WsFanout};
use serde_json::{Value, json};
use wschat_emulator::Options;
use wschat_tests::{Client, Mode, TestChat, http, unique_room};

wschat_tests::all_modes!(
    every_member_of_a_sharded_room_gets_the_message_once,
    a_shard_that_misses_a_member_tells_the_sender_with_the_message_s_id,
);

/// Members per shard in these tests.
const SHARD: usize = 2;

async fn sharded_chat(mode: Mode) -> TestChat {
    if mode == Mode::Lambda {
        let given = std::env::var("WSCHAT_FANOUT_SHARD_SIZE").unwrap_or_default();
        assert_eq!(
            given,
            SHARD.to_string(),
            "the Lambda-mode stack must shard by {SHARD}: run the tests with `make test` \
             (WSCHAT_FANOUT_SHARD_SIZE=2 tools/scripts/lambda-stack.sh -- …)"
        );
    }
    let config = Config {
        fanout_function: Some(WsFanout::BINARY.to_owned()),
        fanout_shard_size: SHARD,
        ..Config::default()
    };
    TestChat::start_configured(mode, Options::default(), config).await
}

/// `n` members of `room`, in the order they joined.
async fn join(chat: &TestChat, room: &str, n: usize) -> Vec<Client> {
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        members.push(chat.join(room).await);
    }
    members
}

async fn get_json(chat: &TestChat, path: &str) -> Value {
    let (status, body) = http("GET", &chat.http_url(path), &[], Vec::new()).await;
    assert_eq!(status, 200, "{path}");
    serde_json::from_slice(&body).expect("JSON")
}

/// How often the emulator has invoked `ws-fanout` so far.
async fn shard_invocations(chat: &TestChat) -> u64 {
    get_json(chat, "/_emulator/metrics").await["lambda"]["functions"][WsFanout::BINARY]["requests"]
        .as_u64()
        .unwrap_or(0)
}

async fn every_member_of_a_sharded_room_gets_the_message_once(mode: Mode) {
    // Arrange: seven members, so the sender's shard and three more.
    let chat = sharded_chat(mode).await;
    let room = unique_room("big");
    let mut members = join(&chat, &room, 7).await;
    let before = shard_invocations(&chat).await;

    // Act
    members[3]
        .send_text(&json!({ "message": "to all seven", "id": "big-1" }).to_string())
        .await;

    // Assert: each has it once; the sender's copy carries its id; shards ran.
    for (i, member) in members.iter_mut().enumerate() {
        let frame = member.recv_json().await;
        assert_eq!(frame["message"], "to all seven", "member {i}: {frame}");
        assert_eq!(frame["seq"], 1, "member {i}");
        assert_eq!(frame.get("id").is_some(), i == 3, "member {i}: {frame}");
    }
    for member in &mut members {
        member.expect_silence(Duration::from_millis(200)).await;
    }
    assert!(
        shard_invocations(&chat).await >= before + 3,
        "three shards went to ws-fanout"
    );
}

async fn a_shard_that_misses_a_member_tells_the_sender_with_the_message_s_id(mode: Mode) {
    // Arrange: five members; every one but the sender has all its posts throttled. Whatever order the store
    // gives, the sender's shard holds one of them and ws-fanout's shards the other three.
    let chat = sharded_chat(mode).await;
    let room = unique_room("big_miss");
    let mut members = join(&chat, &room, 5).await;
    // The room's connections, oldest first (the Lambda-mode emulator serves every test at once).
    let listed = get_json(&chat, "/_emulator/connections").await;
    let in_room: Vec<String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter(|c| c["queryString"]["room"] == room.as_str())
        .map(|c| c["connectionId"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(in_room.len(), 5);
    set_throttled(&chat, &in_room[1..]).await;

    // Act
    members[0]
        .send_text(&json!({ "message": "anyone?", "id": "big-2" }).to_string())
        .await;

    // Assert: the sender has its echo; its own answer counts the one member of its shard it missed, and the
    // shards tell it, with the message's id, of the three others.
    let sender = &mut members[0];
    assert_eq!(sender.recv_message().await, "anyone?");
    let (mut own_answer, mut told_by_shards) = (None, 0);
    while own_answer.is_none() || told_by_shards < 3 {
        let frame = sender.recv_json().await;
        let error = frame["error"]
            .as_str()
            .unwrap_or_else(|| panic!("an error frame: {frame}"));
        assert_eq!(frame["id"], "big-2", "{frame}");
        if error.contains("reached 4 of 5 members") {
            own_answer = Some(frame);
        } else {
            let missed: usize = error
                .strip_prefix("your message did not reach ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a shard's error: {error}"));
            assert!(error.contains("of the room's 5 members"), "{error}");
            told_by_shards += missed;
        }
    }
    set_throttled(&chat, &[]).await;
    assert_eq!(told_by_shards, 3);
    for member in &mut members[1..] {
        member.expect_silence(Duration::from_millis(200)).await;
    }
}

/// Throttles every post to `ids` (and no other), through the emulator's fault switches.
async fn set_throttled(chat: &TestChat, ids: &[String]) {
    let (status, _) = http(
        "POST",
        &chat.http_url("/_emulator/faults"),
        &[("content-type", "application/json")],
        json!({ "throttleConnections": ids })
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
}
