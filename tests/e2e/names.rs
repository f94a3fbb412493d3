//! Names, end to end in every mode: a member who connected with `?name=` is named on every frame of its messages
//! (and in the history), an anonymous one is not, a bad name is refused at the handshake, and nobody in another
//! room hears any of it.

use std::time::Duration;

use tokio_tungstenite::tungstenite;
use wschat_tests::{Mode, TestChat, all_modes, unique_room};

all_modes!(
    deployed: names_ride_on_every_member_s_frames_and_in_the_history,
    a_bad_name_is_refused_at_the_handshake_with_400,
);

async fn names_ride_on_every_member_s_frames_and_in_the_history(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let (room, elsewhere) = (unique_room("named"), unique_room("other"));
    let mut ann = chat.join_as(&room, "Ann").await;
    let mut bob = chat.join_as(&room, "  Bob \u{1F642} ").await;
    let mut nobody = chat.join(&room).await;
    let mut dave = chat.join_as(&elsewhere, "Dave").await;

    ann.say("hi, I am Ann").await;
    let from_ann = bob.recv_json().await;
    // Every member has Ann's message before the next one is sent: two senders' fan-outs run concurrently, so a
    // member may get them in either order (clients order by `seq`).
    for member in [&mut ann, &mut nobody] {
        assert_eq!(member.recv_json().await["user"], "Ann");
    }
    nobody.say("and I am nobody").await;

    assert_eq!(from_ann["message"], "hi, I am Ann");
    assert_eq!(from_ann["user"], "Ann");
    for member in [&mut ann, &mut bob, &mut nobody] {
        let frame = member.recv_json().await;
        assert_eq!(frame["message"], "and I am nobody");
        assert!(frame.get("user").is_none(), "anonymous: {frame}");
    }
    bob.say("trimmed").await;
    assert_eq!(
        ann.recv_json().await["user"],
        "Bob \u{1F642}",
        "the name as normalized and trimmed"
    );
    dave.expect_silence(Duration::from_millis(300)).await;

    let mut late = chat.join_as(&room, "Late").await;
    let history = late.history(None, None).await;
    let users: Vec<Option<String>> = history
        .chats
        .iter()
        .map(|f| f["user"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        users,
        [
            Some("Ann".to_owned()),
            None,
            Some("Bob \u{1F642}".to_owned())
        ],
        "the history keeps who said what"
    );
}

async fn a_bad_name_is_refused_at_the_handshake_with_400(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("badname");

    for name in ["", "x".repeat(33).as_str(), "evil\u{202E}txt", "two\nlines"] {
        let err = chat
            .try_join_as(&room, name)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name:?} accepted"));
        assert!(
            matches!(&err, tungstenite::Error::Http(r) if r.status() == 400),
            "{name:?}: {err:?}"
        );
    }
    let mut fine = chat.join_as(&room, "Zoë").await;
    fine.say("still open").await;
    assert_eq!(fine.recv_json().await["user"], "Zoë");
}
