//! Presence, end to end: who is in the room, and joins and leaves told to the connections that asked, in every
//! mode; leaves found by pruning (a `$disconnect` that never came) in the modes whose emulator the test owns. A
//! client that never asks (the tutorial's) receives none of it.

use std::time::Duration;

use chat_shared::config::{Config, MAX_CONNECTION_LIFETIME};
use chat_shared::wire::{ConnectionId, DisplayName, RoomName};
use serde_json::{Value, json};
use wschat_emulator::Options;
use wschat_emulator::faults::Faults;
use wschat_tests::{Client, Mode, TestChat, all_modes, http, unique_room};

all_modes!(
    deployed: presence_counts_and_names_through_joins_and_leaves,
    a_tutorial_client_that_never_asks_receives_no_presence_frames,
);
all_modes!(members_past_their_lifetime_are_announced_as_left_when_found);

/// Asks for presence and returns the answer's body.
async fn ask(client: &mut Client) -> Value {
    client.send_text(r#"{"action":"presence"}"#).await;
    let frame = client.recv_json().await;
    assert!(frame["presence"].is_object(), "{frame}");
    frame["presence"].clone()
}

async fn presence_counts_and_names_through_joins_and_leaves(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let (room, elsewhere) = (unique_room("presence"), unique_room("other"));
    let mut ann = chat.join_as(&room, "Ann").await;
    let _other = chat.join_as(&elsewhere, "Zed").await;

    assert_eq!(
        ask(&mut ann).await,
        json!({ "count": 1, "members": ["Ann"] })
    );

    let bob = chat.join_as(&room, "Bob").await;
    assert_eq!(
        ann.recv_json().await,
        json!({ "joined": "Bob", "count": 2 })
    );
    let mut nobody = chat.join(&room).await;
    assert_eq!(ann.recv_json().await, json!({ "joined": null, "count": 3 }));
    assert_eq!(
        ask(&mut nobody).await,
        json!({ "count": 3, "members": ["Ann", "Bob"] }),
        "anonymous members are counted, not listed"
    );

    bob.close().await;
    for watcher in [&mut ann, &mut nobody] {
        assert_eq!(
            watcher.recv_json().await,
            json!({ "left": "Bob", "count": 2 })
        );
    }
    ann.say("still here").await;
    assert_eq!(ann.recv_json().await["message"], "still here");
    assert_eq!(nobody.recv_json().await["message"], "still here");
    nobody.close().await;
    assert_eq!(ann.recv_json().await, json!({ "left": null, "count": 1 }));
    ann.expect_silence(Duration::from_millis(300)).await;
}

async fn a_tutorial_client_that_never_asks_receives_no_presence_frames(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("quiet");
    let mut tutorial = chat.join(&room).await;
    let mut ann = chat.join_as(&room, "Ann").await;
    ask(&mut ann).await;

    let bob = chat.join_as(&room, "Bob").await;
    assert_eq!(ann.recv_json().await["joined"], "Bob");
    bob.close().await;
    assert_eq!(ann.recv_json().await["left"], "Bob");
    ann.say("hello").await;

    let frame = tutorial.recv_json().await;
    assert_eq!(frame["message"], "hello", "only the chat frame: {frame}");
    tutorial.expect_silence(Duration::from_millis(300)).await;
}

/// A member whose `$disconnect` never came is found gone by the next message (410) and announced as left.
async fn a_member_pruned_after_a_lost_disconnect_is_announced_as_left(mode: Mode) {
    let options = Options {
        faults: Faults {
            drop_disconnect_rate: 1.0,
            ..Faults::default()
        },
        ..Options::default()
    };
    let config = Config {
        prune_grace: Duration::ZERO,
        ..Config::default()
    };
    let chat = TestChat::start_configured(mode, options, config).await;
    let room = unique_room("pruned");
    let mut ann = chat.join_as(&room, "Ann").await;
    ask(&mut ann).await;
    let ghost = chat.join_as(&room, "Ghost").await;
    assert_eq!(ann.recv_json().await["joined"], "Ghost");

    ghost.close().await;
    let chat_ref = &chat;
    wschat_tests::eventually("the gateway forgot the ghost", || async move {
        chat_ref.connection_ids().await.len() == 1
    })
    .await;
    ann.say("anyone?").await;

    let mut frames = vec![ann.recv_json().await, ann.recv_json().await];
    frames.sort_by_key(|f| f.get("message").is_some());
    assert_eq!(
        frames[0],
        json!({ "left": "Ghost", "count": 1 }),
        "{frames:?}"
    );
    assert_eq!(frames[1]["message"], "anyone?");
    let (status, _) = http(
        "POST",
        &chat.http_url("/_emulator/faults"),
        &[("content-type", "application/json")],
        br#"{"dropDisconnectRate": 0}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_pruned_after_a_lost_disconnect_is_announced_as_left_in_memory() {
    a_member_pruned_after_a_lost_disconnect_is_announced_as_left(Mode::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_pruned_after_a_lost_disconnect_is_announced_as_left_in_redis() {
    a_member_pruned_after_a_lost_disconnect_is_announced_as_left(Mode::Redis).await;
}

/// A member the store still holds from before the 2-hour cap (its `$disconnect` never came), named `name`.
async fn plant_expired_member(chat: &TestChat, room: &str, conn: &str, name: &str) {
    let long_ago = chat_shared::handlers::now_ms()
        - i64::try_from(MAX_CONNECTION_LIFETIME.as_millis()).expect("ms")
        - 60_000;
    chat.rooms
        .join(
            &RoomName::parse(room).expect("room"),
            &ConnectionId::parse(conn).expect("id"),
            long_ago,
            Some(&DisplayName::parse(name).expect("name")),
            None,
        )
        .await
        .expect("planted");
}

async fn members_past_their_lifetime_are_announced_as_left_when_found(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("expired");
    let mut ann = chat.join_as(&room, "Ann").await;
    ask(&mut ann).await;
    plant_expired_member(&chat, &room, "ghost000000A1=", "Old").await;

    // The next join finds it past its lifetime: its leave is announced before the newcomer.
    let mut bob = chat.join_as(&room, "Bob").await;
    assert_eq!(ann.recv_json().await, json!({ "left": "Old", "count": 1 }));
    assert_eq!(
        ann.recv_json().await,
        json!({ "joined": "Bob", "count": 2 })
    );

    // So does a presence request: the asker's answer leaves it out, the other watchers hear it left.
    plant_expired_member(&chat, &room, "ghost000000A2=", "Older").await;
    assert_eq!(
        ask(&mut bob).await,
        json!({ "count": 2, "members": ["Ann", "Bob"] })
    );
    assert_eq!(
        ann.recv_json().await,
        json!({ "left": "Older", "count": 2 })
    );
    bob.expect_silence(Duration::from_millis(300)).await;
}
