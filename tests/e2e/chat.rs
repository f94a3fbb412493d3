//! The tutorial's behaviour, end to end: emulator on a free port, real WebSocket clients, both room stores.

use std::time::Duration;

use chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES;
use chat_shared::wire::{ConnectionId, RoomName};
use wschat_tests::{Client, Mode, TestChat, all_modes, eventually, members_of, unique_room};

all_modes!(
    deployed: when_chat_message_posted_then_seen_by_everyone_in_same_room,
    when_chat_message_posted_then_not_seen_by_anyone_in_different_room,
    message_text_round_trips_byte_exactly,
    a_message_over_the_byte_limit_is_refused_to_its_sender_only,
    malformed_frame_is_answered_with_an_error_to_its_sender_only,
    unicode_room_names_work,
);
// These look into the room store, which a deployed stage keeps out of reach.
all_modes!(
    vanished_member_is_pruned_on_the_next_send,
    disconnect_removes_the_member_from_its_room
);

async fn when_chat_message_posted_then_seen_by_everyone_in_same_room(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("room_1");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    alice.say("hello").await;

    let to_alice = alice.recv_json().await;
    let to_bob = bob.recv_json().await;

    assert_eq!(
        to_alice["message"], "hello",
        "the sender sees its own message"
    );
    assert_eq!(to_alice["seq"], 1, "{to_alice}");
    assert!(
        to_alice["epoch"].is_string() && to_alice["ts"].is_i64(),
        "{to_alice}"
    );
    assert_eq!(to_bob, to_alice, "every member gets the same frame");
}

async fn when_chat_message_posted_then_not_seen_by_anyone_in_different_room(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let (room_1, room_2) = (unique_room("room_1"), unique_room("room_2"));
    let mut alice = chat.join(&room_1).await;
    let mut carol = chat.join(&room_2).await;

    alice.say("only for room 1").await;
    assert_eq!(alice.recv_message().await, "only for room 1");
    // A message in room 2 after it: carol must see it as her very first frame.
    carol.say("barrier").await;

    assert_eq!(carol.recv_message().await, "barrier");
    alice.expect_silence(Duration::from_millis(300)).await;
}

async fn message_text_round_trips_byte_exactly(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("exact");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    let texts = [
        String::new(),
        "quotes \" and 'single' and backslash \\ and \\\" mixed".to_owned(),
        "non-ASCII: 로비 Ünïcödé ∑ — emoji: 😀🎉👩‍👩‍👧".to_owned(),
        "control: \t\n\r\u{0}\u{1f} and </script> <b>html</b> &amp;".to_owned(),
        // Exactly MAX_MESSAGE_BYTES of UTF-8, in 3-byte characters: the limit counts bytes, not characters.
        "€".repeat(DEFAULT_MAX_MESSAGE_BYTES / 3) + "xx",
    ];
    assert_eq!(texts[4].len(), DEFAULT_MAX_MESSAGE_BYTES);

    for text in &texts {
        alice.say(text).await;

        assert_eq!(&alice.recv_message().await, text);
        assert_eq!(&bob.recv_message().await, text);
    }
}

async fn a_message_over_the_byte_limit_is_refused_to_its_sender_only(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("long");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    alice
        .say(&"€".repeat(DEFAULT_MAX_MESSAGE_BYTES / 3 + 1))
        .await;

    let refusal = alice.recv_json().await;
    let error = refusal["error"].as_str().expect("an error frame");
    assert!(
        error.contains("too long") && error.contains("8192"),
        "{error}"
    );
    assert!(refusal.get("message").is_none(), "{refusal}");
    alice.say("short").await;
    assert_eq!(bob.recv_message().await, "short", "bob saw nothing before");
}

async fn malformed_frame_is_answered_with_an_error_to_its_sender_only(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("bad");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    for bad in [
        "not json",
        "{}",
        r#"{"message": 42}"#,
        r#"{"message": null}"#,
        "[\"message\"]",
        "   ",
    ] {
        alice.send_text(bad).await;

        let reply = alice.recv_json().await;
        assert!(reply["error"].is_string(), "{bad:?} got {reply}");
        assert!(reply.get("message").is_none());
    }
    bob.expect_silence(Duration::from_millis(200)).await;
    // The connection stays open and usable.
    alice.say("still here").await;
    assert_eq!(alice.recv_message().await, "still here");
    assert_eq!(bob.recv_message().await, "still here");
}

async fn vanished_member_is_pruned_on_the_next_send(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room_name = unique_room("prune");
    let room = RoomName::parse(&room_name).expect("room");
    let mut alice = chat.join(&room_name).await;
    // A member whose connection vanished without $disconnect a minute ago (past the grace period in which a 410
    // means "not open yet"): in the room, unknown to the gateway.
    let ghost = ConnectionId::parse("GhostConn0000g=").expect("id");
    chat.rooms
        .join(
            &room,
            &ghost,
            chat_shared::handlers::now_ms() - 60_000,
            None,
            None,
        )
        .await
        .expect("join");
    assert_eq!(
        chat.rooms
            .members(&room, chat_shared::handlers::now_ms())
            .await
            .expect("members")
            .len(),
        2
    );

    alice.say("anyone?").await;
    assert_eq!(alice.recv_message().await, "anyone?");

    eventually("the ghost is pruned", || async {
        members_of(chat.rooms.as_ref(), &room_name).await.len() == 1
    })
    .await;
    assert_ne!(members_of(chat.rooms.as_ref(), &room_name).await[0], ghost);
    assert_eq!(chat.rooms.room_of(&ghost).await.expect("room_of"), None);
}

async fn disconnect_removes_the_member_from_its_room(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room_name = unique_room("leave");
    let mut alice = chat.join(&room_name).await;
    let bob = chat.join(&room_name).await;

    bob.close().await;

    eventually("bob has left the room", || async {
        members_of(chat.rooms.as_ref(), &room_name).await.len() == 1
    })
    .await;
    alice.say("alone").await;
    assert_eq!(alice.recv_message().await, "alone");
}

async fn unicode_room_names_work(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("로비");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    bob.say("안녕").await;

    assert_eq!(alice.recv_message().await, "안녕");
    assert_eq!(bob.recv_message().await, "안녕");
}

#[tokio::test]
async fn connect_without_a_valid_room_is_rejected_with_400() {
    let chat = TestChat::start(Mode::Memory).await;
    let base = format!("ws://{}/local", chat.addr);
    for url in [
        base.clone(),
        format!("{base}?room="),
        format!("{base}?room=no%20spaces"),
        format!("{base}?room=a-b"),
        format!("{base}?room={}", "x".repeat(101)),
    ] {
        let err = Client::connect(&url, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} should be rejected"));

        assert!(
            matches!(&err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 400),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn both_the_root_and_the_stage_path_accept_websockets() {
    let chat = TestChat::start(Mode::Memory).await;
    let room = unique_room("paths");
    let root = format!("ws://{}/?room={room}", chat.addr);
    let mut a = Client::connect(&root, None).await.expect("root path");
    let mut b = chat.join(&room).await;

    a.say("via root").await;

    assert_eq!(b.recv_message().await, "via root");
    assert_eq!(a.recv_message().await, "via root");
}
