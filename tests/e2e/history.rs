//! Sequence, history and resume, end to end in every mode: every member sees every message of its room,
//! numbered without holes, and gets what it missed after a reconnect, with `complete` honest about what the store
//! no longer has. A client that speaks only the tutorial's protocol sees none of it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use wschat_tests::{Mode, TestChat, all_modes, unique_room};

all_modes!(
    seq_is_consecutive_per_room_under_concurrent_senders,
    a_member_that_reconnects_gets_exactly_the_missed_messages_in_order,
    past_the_retention_limit_history_says_it_is_incomplete,
    a_late_joiner_gets_the_recent_history,
    the_epoch_changes_after_the_room_lost_its_data,
    a_tutorial_client_receives_only_chat_frames,
    pings_and_presence_answers_carry_the_room_s_head,
    a_message_sent_again_with_its_id_is_stored_once_and_goes_out_with_the_same_seq,
);

async fn a_message_sent_again_with_its_id_is_stored_once_and_goes_out_with_the_same_seq(
    mode: Mode,
) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("idempotent");
    let mut ann = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    ann.send_text(r#"{"message":"once","id":"m-1"}"#).await;
    let first = ann.recv_json().await;
    ann.send_text(r#"{"message":"once","id":"m-1"}"#).await;
    let again = ann.recv_json().await;
    // The same id from someone else is their own message.
    bob.send_text(r#"{"message":"mine","id":"m-1"}"#).await;

    assert_eq!(
        first["id"], "m-1",
        "the sender's echo carries its id: {first}"
    );
    assert_eq!(again, first, "sent again: the same frame, the same seq");
    let to_bob = bob.recv_chats(3).await;
    assert_eq!(to_bob[0]["seq"], first["seq"]);
    assert!(
        to_bob
            .iter()
            .all(|c| c.get("id").is_none() || c["message"] == "mine"),
        "only a sender's own echo carries its id: {to_bob:?}"
    );
    let history = bob.history(Some(0), None).await;
    let texts: Vec<&Value> = history.chats.iter().map(|c| &c["message"]).collect();
    assert_eq!(texts, ["once", "mine"], "stored once each");
    assert!(
        history.chats.iter().all(|c| c.get("id").is_none()),
        "the history keeps no ids"
    );
}

async fn pings_and_presence_answers_carry_the_room_s_head(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("head");
    let mut ann = chat.join(&room).await;
    let pong = ann.pong().await;
    assert!(
        pong.get("epoch").is_none() && pong.get("seq").is_none(),
        "a room without history has no head: {pong}"
    );

    ann.say("one").await;
    ann.say("two").await;
    let chats = ann.recv_chats(2).await;
    let pong = ann.pong().await;
    assert_eq!(pong["seq"], 2, "{pong}");
    assert_eq!(pong["epoch"], chats[1]["epoch"], "{pong}");

    ann.send_text(r#"{"action":"presence"}"#).await;
    let presence = loop {
        let frame = ann.recv_json().await;
        if frame.get("presence").is_some() {
            break frame;
        }
    };
    assert_eq!(presence["seq"], 2, "{presence}");
    assert_eq!(presence["epoch"], chats[1]["epoch"], "{presence}");
}

fn seq(frame: &Value) -> u64 {
    frame["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {frame}"))
}

fn epoch(frame: &Value) -> String {
    frame["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch in {frame}"))
        .to_owned()
}

async fn seq_is_consecutive_per_room_under_concurrent_senders(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let (busy, quiet) = (unique_room("busy"), unique_room("quiet"));
    let mut senders = Vec::new();
    for _ in 0..3 {
        senders.push(chat.join(&busy).await);
    }
    let mut other = chat.join(&quiet).await;

    // Every sender sends all its messages without waiting for any: the integrations overlap.
    for (n, sender) in senders.iter_mut().enumerate() {
        for i in 0..10 {
            sender.say(&format!("{n}-{i}")).await;
        }
    }
    other.say("alone").await;

    let mut seen = Vec::new();
    for member in &mut senders {
        let chats = member.recv_chats(30).await;
        let seqs: Vec<u64> = chats.iter().map(seq).collect();
        assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "no hole, no repeat");
        let epochs: BTreeSet<String> = chats.iter().map(epoch).collect();
        assert_eq!(epochs.len(), 1, "one epoch: {epochs:?}");
        seen.push(chats);
    }
    assert_eq!(
        seen[0], seen[1],
        "every member saw the same numbered messages"
    );
    assert_eq!(seen[1], seen[2]);
    let texts: BTreeSet<&str> = seen[0]
        .iter()
        .map(|c| c["message"].as_str().expect("text"))
        .collect();
    assert_eq!(texts.len(), 30, "each message once");
    let alone = other.recv_json().await;
    assert_eq!(
        (alone["message"].as_str(), seq(&alone)),
        (Some("alone"), 1),
        "another room counts on its own"
    );
}

async fn a_member_that_reconnects_gets_exactly_the_missed_messages_in_order(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("resume");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    for text in ["one", "two", "three"] {
        alice.say(text).await;
        alice.recv_json().await;
    }
    let seen = bob.recv_chats(3).await;
    let (last, bobs_epoch) = (seq(&seen[2]), epoch(&seen[2]));
    bob.close().await;

    for text in ["four", "five", "six", "seven", "eight"] {
        alice.say(text).await;
        alice.recv_json().await;
    }
    let mut bob = chat.join(&room).await;
    let missed = bob.history(Some(last), Some(&bobs_epoch)).await;

    assert_eq!(missed.messages(), ["four", "five", "six", "seven", "eight"]);
    assert_eq!(missed.seqs(), [4, 5, 6, 7, 8]);
    assert!(missed.complete, "nothing is missing");
    assert_eq!(missed.epoch, bobs_epoch);
    bob.expect_silence(Duration::from_millis(200)).await;
}

async fn past_the_retention_limit_history_says_it_is_incomplete(mode: Mode) {
    // The default HISTORY_MAX_MESSAGES (100) in every mode: the Lambda stack runs with the defaults.
    let chat = TestChat::start(mode).await;
    let room = unique_room("retention");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;
    alice.say("m1").await;
    alice.recv_json().await;
    let first = bob.recv_json().await;
    bob.close().await;

    // Six talkers share the 104 messages: each stays inside its rate limit's burst (RATE_LIMIT_BURST, 20).
    let mut talkers = Vec::new();
    for _ in 0..6 {
        talkers.push(chat.join(&room).await);
    }
    for n in 2..=105 {
        let talker = n % talkers.len();
        talkers[talker].say(&format!("m{n}")).await;
        alice.recv_json().await;
    }
    let mut bob = chat.join(&room).await;
    let missed = bob.history(Some(seq(&first)), Some(&epoch(&first))).await;

    assert!(!missed.complete, "messages 2 to 5 are no longer retained");
    assert_eq!(missed.seqs(), (6..=105).collect::<Vec<_>>());
    assert!(
        missed.frames >= 1,
        "answered in frames under 32 KB: {}",
        missed.frames
    );
}

async fn a_late_joiner_gets_the_recent_history(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("late");
    let mut alice = chat.join(&room).await;
    for text in ["before", "you", "came"] {
        alice.say(text).await;
        alice.recv_json().await;
    }

    let mut carol = chat.join(&room).await;
    let recent = carol.history(None, None).await;

    assert_eq!(recent.messages(), ["before", "you", "came"]);
    assert_eq!(recent.seqs(), [1, 2, 3]);
    assert!(recent.complete, "it starts at the room's first message");
}

async fn the_epoch_changes_after_the_room_lost_its_data(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("amnesia");
    let mut alice = chat.join(&room).await;
    alice.say("old").await;
    let old = alice.recv_json().await;

    chat.lose_data(&room).await;
    // The heartbeat writes the membership again (the store forgot it), then the room starts over.
    alice.ping().await;
    alice.say("new").await;
    let new = alice.recv_json().await;

    assert_eq!(new["message"], "new");
    assert_eq!(seq(&new), 1, "seq starts again");
    assert_ne!(
        epoch(&new),
        epoch(&old),
        "a new epoch says history was lost"
    );
    let resumed = alice.history(Some(seq(&old)), Some(&epoch(&old))).await;
    assert!(!resumed.complete, "the old epoch's messages are gone");
    assert_eq!(resumed.epoch, epoch(&new));
    assert_eq!(resumed.messages(), ["new"]);
}

async fn a_tutorial_client_receives_only_chat_frames(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("tutorial");
    let mut tutorial = chat.join(&room).await;
    let mut modern = chat.join(&room).await;

    modern.ping().await;
    modern.history(None, None).await;
    modern.say("hello").await;
    tutorial.say("hi").await;

    let mut got = vec![tutorial.recv_json().await, tutorial.recv_json().await];
    got.sort_by_key(seq);
    let texts: BTreeSet<&str> = got.iter().filter_map(|c| c["message"].as_str()).collect();
    assert_eq!(texts, BTreeSet::from(["hello", "hi"]), "{got:?}");
    tutorial.expect_silence(Duration::from_millis(300)).await;
    let mut modern_got = modern.recv_chats(2).await;
    modern_got.sort_by_key(seq);
    assert_eq!(
        modern_got, got,
        "the tutorial client saw what everyone saw, nothing more"
    );
}
