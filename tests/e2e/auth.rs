//! Sign-in (`AUTH_MODE=oidc`), in every mode, with tokens signed by keys the tests make and add to the
//! provider's key set: the token names the member whatever `?name=` says, every missing or bad token is refused
//! with 401 before `$connect` runs, the rooms claim is enforced with 403, a rotated key is picked up, a
//! connection ends with its token, and a user's tabs are one person.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use wschat_tests::signin::{Via, new_key, refusals_of, refused_with};
use wschat_tests::{Mode, TestChat, WAIT, all_modes, unique_address, unique_room};

all_modes!(
    a_signed_in_member_chats_under_the_token_s_name_whatever_name_it_asks_for,
    every_missing_or_bad_token_is_refused_with_401_and_connect_never_runs,
    a_room_outside_the_rooms_claim_is_refused_with_403,
    a_rotated_key_is_accepted_after_one_fetch_of_the_keys,
    a_connection_ends_with_its_token,
    two_tabs_of_one_user_are_one_person_in_presence,
);

async fn a_signed_in_member_chats_under_the_token_s_name_whatever_name_it_asks_for(mode: Mode) {
    let chat = TestChat::start_signed_in(mode).await;
    let key = new_key();
    chat.trust(&key).await;
    let room = unique_room("signed");
    let ann = key.sign(&chat.claims("u-ann", "Ann", 600));
    let bob = key.sign(&chat.claims("u-bob", "Bob", 600));

    let mut as_ann = chat
        .join_with_token(&room, &ann, Via::Subprotocol, Some("Mallory"))
        .await
        .expect("Ann's token, as a subprotocol");
    let mut as_bob = chat
        .join_with_token(&room, &bob, Via::Query, None)
        .await
        .expect("Bob's token, in the query");
    as_ann.say("it is me").await;

    for client in [&mut as_ann, &mut as_bob] {
        let frame = client.recv_json().await;
        assert_eq!(frame["message"], "it is me");
        assert_eq!(
            frame["user"], "Ann",
            "the token's name, not ?name=: {frame}"
        );
    }
}

async fn every_missing_or_bad_token_is_refused_with_401_and_connect_never_runs(mode: Mode) {
    let chat = TestChat::start_signed_in(mode).await;
    let (trusted, stranger) = (new_key(), new_key());
    chat.trust(&trusted).await;
    let claims = chat.claims("u-ann", "Ann", 600);
    let with = |field: &str, value: serde_json::Value| {
        let mut changed = claims.clone();
        changed[field] = value;
        trusted.sign(&changed)
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT" }).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let hs256 = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256", "typ": "JWT" }).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"a guessed secret's signature")
    );
    let tokens = [
        (
            "expired",
            with("exp", json!(chat_shared::handlers::now_ms() / 1000 - 5)),
        ),
        (
            "signed by a key the issuer does not have",
            stranger.sign(&claims),
        ),
        (
            "another issuer",
            with("iss", json!("https://elsewhere.example")),
        ),
        ("another audience", with("aud", json!("another-app"))),
        ("alg none", unsigned),
        ("HS256 without a shared secret", hs256),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    let address = unique_address();
    let room = unique_room("refused");

    let none =
        refused_with(wschat_tests::Client::connect_from(&chat.ws_url(&room), None, &address).await);
    assert_eq!(none, 401, "no token");
    for (what, token) in &tokens {
        for via in [Via::Subprotocol, Via::Query] {
            let status = refused_with(
                chat.join_with_token_from(&room, token, via, None, &address)
                    .await,
            );
            assert_eq!(status, 401, "{what} ({via:?})");
        }
    }

    let attempts = 1 + 2 * tokens.len() as u64;
    assert_eq!(
        refusals_of(&chat, &address).await,
        json!({ "authorizer 401": attempts }),
        "every refusal is the authorizer's: $connect never ran"
    );
}

async fn a_room_outside_the_rooms_claim_is_refused_with_403(mode: Mode) {
    let chat = TestChat::start_signed_in(mode).await;
    let key = new_key();
    chat.trust(&key).await;
    let team = unique_room("team");
    let mut claims = chat.claims("u-ann", "Ann", 600);
    claims["rooms"] = json!([format!("{team}_*"), "lounge"]);
    let token = key.sign(&claims);
    let address = unique_address();

    let elsewhere = refused_with(
        chat.join_with_token_from(
            &unique_room("lobby"),
            &token,
            Via::Subprotocol,
            None,
            &address,
        )
        .await,
    );
    let mut inside = chat
        .join_with_token_from(
            &format!("{team}_red"),
            &token,
            Via::Subprotocol,
            None,
            &address,
        )
        .await
        .expect("a room the claim grants");

    assert_eq!(elsewhere, 403);
    assert_eq!(
        refusals_of(&chat, &address).await,
        json!({ "authorizer 403": 1 })
    );
    inside.say("in").await;
    assert_eq!(inside.recv_message().await, "in");
}

async fn a_rotated_key_is_accepted_after_one_fetch_of_the_keys(mode: Mode) {
    let chat = TestChat::start_signed_in(mode).await;
    let (old, new) = (new_key(), new_key());
    chat.trust(&old).await;
    let room = unique_room("rotate");
    let _first = chat.join_signed_in(&room, &old, "u-ann", "Ann").await;
    let fetched = chat.key_fetches().await;

    chat.trust(&new).await;
    let mut second = chat.join_signed_in(&room, &new, "u-bob", "Bob").await;

    let refetches = chat.key_fetches().await - fetched;
    if mode == Mode::Lambda {
        // The shared stack's other tests fetch too; this one's kid needed at least one.
        assert!(refetches >= 1, "{refetches}");
    } else {
        assert_eq!(refetches, 1, "one fetch for the unknown kid");
    }
    second.say("new key").await;
    assert_eq!(second.recv_message().await, "new key");
}

async fn a_connection_ends_with_its_token(mode: Mode) {
    let chat = TestChat::start_signed_in(mode).await;
    let key = new_key();
    chat.trust(&key).await;
    let room = unique_room("expiry");
    // No leeway in the test chats: the token ends 3 s from now.
    let short = key.sign(&chat.claims("u-ann", "Ann", 3));
    let mut ann = chat
        .join_with_token(&room, &short, Via::Subprotocol, None)
        .await
        .expect("valid for now");
    let mut bob = chat.join_signed_in(&room, &key, "u-bob", "Bob").await;
    ann.say("before").await;
    assert_eq!(bob.recv_message().await, "before");
    assert_eq!(ann.recv_message().await, "before");

    tokio::time::sleep(Duration::from_millis(4_200)).await;
    ann.say("after").await;
    let (frames, closed) = ann.frames_until_closed(WAIT).await;

    assert!(closed, "the connection ends with its token");
    let told = frames.last().expect("told why");
    assert_eq!(told["error"], "token expired");
    assert_eq!(told["undelivered"], "after");
    bob.expect_silence(Duration::from_millis(500)).await;
}

async fn two_tabs_of_one_user_are_one_person_in_presence(mode: Mode) {
    let chat = TestChat::start_signed_in(mode).await;
    let key = new_key();
    chat.trust(&key).await;
    let room = unique_room("tabs");
    let mut wanda = chat.join_signed_in(&room, &key, "u-wanda", "Wanda").await;
    wanda.send_text(r#"{"action":"presence"}"#).await;
    assert_eq!(wanda.recv_json().await["presence"]["count"], 1);

    let mut first_tab = chat.join_signed_in(&room, &key, "u-ann", "Ann").await;
    assert_eq!(
        wanda.recv_json().await,
        json!({ "joined": "Ann", "uid": "u-ann", "count": 2 })
    );
    let mut second_tab = chat.join_signed_in(&room, &key, "u-ann", "Ann").await;
    wanda.expect_silence(Duration::from_millis(500)).await;
    wanda.send_text(r#"{"action":"presence"}"#).await;
    let presence = wanda.recv_json().await;
    first_tab.say("from one tab").await;
    let in_the_other_tab = second_tab.recv_json().await;

    assert_eq!(presence["presence"]["count"], 2, "{presence}");
    assert_eq!(presence["presence"]["members"], json!(["Ann", "Wanda"]));
    assert_eq!(
        presence["presence"]["users"],
        json!([{ "user": "Ann", "uid": "u-ann" }, { "user": "Wanda", "uid": "u-wanda" }])
    );
    assert_eq!(in_the_other_tab["message"], "from one tab");
    assert_eq!(in_the_other_tab["uid"], "u-ann", "{in_the_other_tab}");
    assert_eq!(wanda.recv_json().await["uid"], "u-ann");
    assert_eq!(first_tab.recv_json().await["message"], "from one tab");

    first_tab.close().await;
    wanda.expect_silence(Duration::from_millis(500)).await;
    second_tab.close().await;
    assert_eq!(
        wanda.recv_json().await,
        json!({ "left": "Ann", "uid": "u-ann", "count": 1 })
    );
}
