//! The emulator behaves like API Gateway: the Management API's answers, the frame limits, the timeouts, the
//! authorizer context, and a failing integration that leaves the socket open.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_shared::config::Config;
use chat_shared::functions::{Function as _, WsAuthorize, WsConnect, WsDefault};
use chat_shared::gateway::{AwsGateway, DirectGateway, Gateway, GatewayError};
use chat_shared::wire::ConnectionId;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::faults::Faults;
use wschat_emulator::{BackendChoice, Emulator, Options};
use wschat_tests::{
    Client, FlakyStore, Mode, SIGNED, StandInLambda, TestChat, WAIT, allow_with, encode,
    eventually, http, members_of, unique_room,
};

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).expect("id")
}

/// Both PostToConnection clients, pointed at `endpoint`: the SDK's and the direct one the functions use.
fn clients(endpoint: &str) -> [(&'static str, Arc<dyn Gateway>); 2] {
    [
        ("SDK client", Arc::new(AwsGateway::local(endpoint))),
        ("direct client", Arc::new(DirectGateway::local(endpoint))),
    ]
}

/// Both clients over HTTP, and the emulator's in-memory gateway that its in-process handlers post through.
fn every_gateway(chat: &TestChat) -> Vec<(&'static str, Arc<dyn Gateway>)> {
    let mut all = clients(&chat.management_endpoint()).to_vec();
    all.push(("in-process gateway", chat.emulator().gateway()));
    all
}

#[tokio::test]
async fn post_to_connection_through_any_gateway_reaches_the_client() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("sdk")).await;
    let conn = chat.connection_ids().await.remove(0);

    for (name, gateway) in every_gateway(&chat) {
        let text = format!("from the {name}");
        gateway
            .post_to_connection(
                &id(&conn),
                Bytes::from(serde_json::json!({ "message": text }).to_string()),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));

        assert_eq!(alice.recv_message().await, text);
    }
}

#[tokio::test]
async fn every_answer_of_the_management_api_is_classified_alike_by_every_gateway() {
    let chat = TestChat::start(Mode::Memory).await;
    let _alice = chat.join(&unique_room("codes")).await;
    let conn = id(&chat.connection_ids().await.remove(0));
    let wrong_stage = chat.management_endpoint().replace("/local", "/prod");

    for (name, gateway) in every_gateway(&chat) {
        let unknown = gateway
            .post_to_connection(&id("NoSuchConn000A="), Bytes::from_static(b"x"))
            .await;
        let too_large = gateway
            .post_to_connection(&conn, Bytes::from(vec![b'x'; 129 * 1024]))
            .await;

        assert!(
            matches!(unknown, Err(GatewayError::Gone)),
            "{name}: {unknown:?}"
        );
        assert!(
            matches!(too_large, Err(GatewayError::PayloadTooLarge)),
            "{name}: {too_large:?}"
        );
    }
    for (name, gateway) in clients(&wrong_stage) {
        let forbidden = gateway
            .post_to_connection(&conn, Bytes::from_static(b"x"))
            .await;
        assert!(
            matches!(forbidden, Err(GatewayError::Forbidden(_))),
            "{name}: {forbidden:?}"
        );
    }
}

#[tokio::test]
async fn a_throttled_post_is_classified_alike_by_every_gateway() {
    let options = Options {
        faults: Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        },
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let _alice = chat.join(&unique_room("throttled")).await;
    let conn = id(&chat.connection_ids().await.remove(0));

    for (name, gateway) in every_gateway(&chat) {
        let result = gateway
            .post_to_connection(&conn, Bytes::from_static(b"x"))
            .await;
        assert!(
            matches!(result, Err(GatewayError::Throttled)),
            "{name}: {result:?}"
        );
    }
}

#[tokio::test]
async fn management_api_answers_like_aws() {
    let chat = TestChat::start(Mode::Memory).await;
    let _alice = chat.join(&unique_room("mgmt")).await;
    let conn = encode(&chat.connection_ids().await.remove(0));
    let at = |path: &str| chat.http_url(&format!("/local/@connections/{path}"));

    // (method, url, headers, body, expected status)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("POST", at(&conn), vec![SIGNED], b"hi".to_vec(), 200),
        (
            "POST",
            chat.http_url(&format!("/@connections/{conn}")),
            vec![SIGNED],
            b"hi".to_vec(),
            200,
        ),
        ("POST", at(&conn), vec![SIGNED], Vec::new(), 400),
        (
            "POST",
            at(&conn),
            vec![SIGNED],
            vec![b'x'; 128 * 1024 + 1],
            413,
        ),
        ("POST", at(&conn), vec![SIGNED], vec![b'x'; 128 * 1024], 200),
        (
            "POST",
            at("NoSuchConn000A%3D"),
            vec![SIGNED],
            b"hi".to_vec(),
            410,
        ),
        ("POST", at(&conn), vec![], b"hi".to_vec(), 403),
        (
            "POST",
            chat.http_url(&format!("/prod/@connections/{conn}")),
            vec![SIGNED],
            b"hi".to_vec(),
            403,
        ),
        ("GET", at(&conn), vec![SIGNED], Vec::new(), 200),
        (
            "GET",
            at("NoSuchConn000A%3D"),
            vec![SIGNED],
            Vec::new(),
            410,
        ),
        (
            "DELETE",
            at("NoSuchConn000A%3D"),
            vec![SIGNED],
            Vec::new(),
            410,
        ),
    ];
    for (method, url, headers, body, expected) in cases {
        let (status, _) = http(method, &url, &headers, body).await;

        assert_eq!(status, expected, "{method} {url}");
    }
}

#[tokio::test]
async fn get_connection_returns_connected_at_last_active_at_and_identity() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("info")).await;
    alice.say("activity").await;
    alice.recv_message().await;
    let conn = encode(&chat.connection_ids().await.remove(0));

    let (status, body) = http(
        "GET",
        &chat.http_url(&format!("/local/@connections/{conn}")),
        &[SIGNED],
        Vec::new(),
    )
    .await;

    assert_eq!(status, 200);
    let info: Value = serde_json::from_slice(&body).expect("JSON");
    let connected_at = info["connectedAt"].as_str().expect("connectedAt");
    let last_active_at = info["lastActiveAt"].as_str().expect("lastActiveAt");
    assert!(
        connected_at.ends_with('Z') && connected_at.len() == 24,
        "{connected_at}"
    );
    assert!(
        last_active_at >= connected_at,
        "{last_active_at} < {connected_at}"
    );
    assert_eq!(
        info["identity"]["sourceIp"],
        wschat_tests::test_address(),
        "the address the handshake came from (X-Forwarded-For, which the tests' emulators trust)"
    );
}

#[tokio::test]
async fn delete_connection_closes_the_socket_and_runs_disconnect() {
    let chat = TestChat::start(Mode::Memory).await;
    let room_name = unique_room("delete");
    let mut alice = chat.join(&room_name).await;
    let conn = chat.connection_ids().await.remove(0);

    let (status, _) = http(
        "DELETE",
        &chat.http_url(&format!("/local/@connections/{}", encode(&conn))),
        &[SIGNED],
        Vec::new(),
    )
    .await;

    assert_eq!(status, 204);
    assert!(
        alice.recv_close(WAIT).await.is_some(),
        "a close frame arrives"
    );
    let closed = chat.http_url(&format!("/local/@connections/{}", encode(&conn)));
    assert_eq!(
        http("POST", &closed, &[SIGNED], b"late".to_vec()).await.0,
        410,
        "a closed id is gone"
    );
    eventually("$disconnect removed the member", || async {
        members_of(chat.rooms.as_ref(), &room_name).await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn every_frame_posted_before_a_delete_connection_arrives_before_the_close() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("drain")).await;
    let conn = id(&chat.connection_ids().await.remove(0));
    let gateway = chat.emulator().gateway();

    // Alice reads nothing until the close is ordered: frames of 30 KB fill the socket's buffers, so most of them
    // are still queued in the emulator when the DeleteConnection comes.
    let (posted, padding) = (250, "x".repeat(30 * 1024));
    for n in 0..posted {
        let frame =
            serde_json::json!({ "message": format!("frame {n}"), "padding": padding }).to_string();
        gateway
            .post_to_connection(&conn, Bytes::from(frame))
            .await
            .expect("posted");
    }
    gateway.delete_connection(&conn).await.expect("deleted");

    let (frames, closed) = alice.frames_until_closed(WAIT).await;
    assert!(closed, "a close frame arrives");
    let texts: Vec<&str> = frames
        .iter()
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert_eq!(
        texts.len(),
        posted,
        "a post answered 200 is never dropped by a later close"
    );
    assert!(
        texts
            .iter()
            .enumerate()
            .all(|(n, t)| *t == format!("frame {n}")),
        "in the order posted"
    );
}

#[tokio::test]
async fn a_single_frame_of_200_kb_closes_with_a_1009_close_frame() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("huge")).await;

    alice
        .send_text(&format!(r#"{{"message":"{}"}}"#, "x".repeat(200 * 1024)))
        .await;

    let close = alice
        .recv_close(WAIT)
        .await
        .expect("a close frame, not a dropped socket");
    assert_eq!(u16::from(close.code), 1009);
}

/// Sends `text` as one message in frames of at most `frame` bytes (a first text frame, then continuations).
async fn send_in_frames(client: &mut Client, text: &str, frame: usize) {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(frame).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let last = i + 1 == chunks.len();
        client
            .send(Message::Frame(Frame::message(
                chunk.to_vec(),
                OpCode::Data(opcode),
                last,
            )))
            .await;
    }
}

/// An emulator in front of `lambda`'s Invoke API.
async fn in_front_of(lambda: &StandInLambda) -> Emulator {
    emulator_with(BackendChoice::Lambda {
        invoke_url: lambda.url.clone(),
    })
    .await
}

/// A client in `lobby` at `emulator`, without an `Origin`.
async fn open_lobby(emulator: &Emulator) -> Client {
    Client::connect(&format!("ws://{}/local?room=lobby", emulator.addr()), None)
        .await
        .expect("open")
}

/// A stand-in API whose authorizer allows every connection into `lobby` and whose functions answer 200.
async fn lobby_lambda() -> StandInLambda {
    StandInLambda::start(|function, _| {
        Box::pin(async move {
            match function.as_str() {
                WsAuthorize::BINARY => (200, allow_with(serde_json::json!({ "room": "lobby" }))),
                _ => (200, serde_json::json!({ "statusCode": 200 })),
            }
        })
    })
    .await
}

#[tokio::test]
async fn a_message_of_up_to_128_kb_in_frames_of_32_kb_reaches_the_function_whole() {
    let lambda = lobby_lambda().await;
    let emulator = in_front_of(&lambda).await;
    let mut alice = open_lobby(&emulator).await;
    let text = format!(r#"{{"message":"{}"}}"#, "y".repeat(127 * 1024));

    send_in_frames(&mut alice, &text, 32 * 1024).await;
    alice.say("and then a small one").await;

    let bodies = || {
        lambda
            .events_of(WsDefault::BINARY)
            .iter()
            .map(|e| e["body"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    eventually("both messages reached ws-default", || async {
        bodies().len() == 2
    })
    .await;
    assert!(
        bodies().contains(&text),
        "the fragmented message arrives whole"
    );
}

#[tokio::test]
async fn a_message_over_128_kb_in_frames_of_32_kb_closes_with_1009() {
    let lambda = lobby_lambda().await;
    let emulator = in_front_of(&lambda).await;
    let mut alice = open_lobby(&emulator).await;

    send_in_frames(&mut alice, &"z".repeat(128 * 1024 + 1), 32 * 1024).await;

    let close = alice.recv_close(WAIT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1009);
    assert!(
        !lambda.invoked().contains(&WsDefault::BINARY.to_owned()),
        "nothing of it was delivered"
    );
}

#[tokio::test]
async fn authorizer_context_numbers_and_booleans_reach_later_events_as_strings() {
    let lambda = StandInLambda::start(|function, _| {
        Box::pin(async move {
            match function.as_str() {
                WsAuthorize::BINARY => (
                    200,
                    allow_with(serde_json::json!({ "room": "lobby", "n": 7, "ok": true })),
                ),
                _ => (200, serde_json::json!({ "statusCode": 200 })),
            }
        })
    })
    .await;
    let emulator = in_front_of(&lambda).await;
    let mut alice = open_lobby(&emulator).await;

    alice.say("hi").await;

    let event = || lambda.events_of(WsDefault::BINARY).into_iter().next();
    eventually("ws-default ran", || async { event().is_some() }).await;
    assert_eq!(
        event().expect("event")["requestContext"]["authorizer"],
        serde_json::json!({ "room": "lobby", "n": "7", "ok": "true", "principalId": "p" })
    );
}

#[tokio::test]
async fn authorizer_context_objects_arrays_and_nulls_fail_the_handshake_with_500() {
    let lambda = StandInLambda::start(|function, event| {
        Box::pin(async move {
            let value = match event["queryStringParameters"]["room"].as_str() {
                Some("object") => serde_json::json!({ "a": 1 }),
                Some("array") => serde_json::json!(["a"]),
                Some("null") => Value::Null,
                _ => serde_json::json!("fine"),
            };
            match function.as_str() {
                WsAuthorize::BINARY => (
                    200,
                    allow_with(serde_json::json!({ "room": "lobby", "extra": value })),
                ),
                _ => (200, serde_json::json!({ "statusCode": 200 })),
            }
        })
    })
    .await;
    let emulator = in_front_of(&lambda).await;
    let url = |room: &str| format!("ws://{}/local?room={room}", emulator.addr());

    for room in ["object", "array", "null"] {
        let err = Client::connect(&url(room), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{room}: accepted"));
        assert!(is_status(&err, 500), "{room}: {err:?}");
    }
    Client::connect(&url("string"), None)
        .await
        .expect("a string value is fine");
    assert_eq!(
        lambda
            .invoked()
            .iter()
            .filter(|f| *f == WsConnect::BINARY)
            .count(),
        1,
        "$connect ran only for the accepted handshake"
    );
}

#[tokio::test]
async fn an_integration_slower_than_the_timeout_is_answered_endpoint_request_timed_out() {
    let lambda = StandInLambda::start(|function, event| {
        Box::pin(async move {
            let slow = event["body"].as_str().is_some_and(|b| b.contains("slow"))
                || event["queryStringParameters"]["room"] == "slow";
            if slow && function != WsAuthorize::BINARY {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            match function.as_str() {
                WsAuthorize::BINARY => (200, allow_with(serde_json::json!({ "room": "lobby" }))),
                _ => (200, serde_json::json!({ "statusCode": 200 })),
            }
        })
    })
    .await;
    let options = Options {
        integration_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let emulator = Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        options,
        BackendChoice::Lambda {
            invoke_url: lambda.url.clone(),
        },
    )
    .await
    .expect("starts");
    let url = |room: &str| format!("ws://{}/local?room={room}", emulator.addr());

    let err = Client::connect(&url("slow"), None)
        .await
        .err()
        .expect("a $connect past the timeout fails the handshake");
    assert!(is_status(&err, 504), "{err:?}");

    let mut alice = Client::connect(&url("lobby"), None).await.expect("open");
    alice.say("slow one").await;
    let frame = alice.recv_json().await;
    assert_eq!(frame["message"], "Endpoint request timed out", "{frame}");
    assert!(frame["connectionId"].as_str().is_some(), "{frame}");
    alice.say("quick one").await;
    alice.expect_silence(Duration::from_millis(300)).await;
}

/// Posts `count` frames to `conn` every 150 ms through the Management API.
async fn keep_posting(endpoint: String, conn: String, count: usize) {
    let gateway = DirectGateway::local(&endpoint);
    for i in 0..count {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let frame = Bytes::from(serde_json::json!({ "message": format!("post {i}") }).to_string());
        if gateway.post_to_connection(&id(&conn), frame).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn by_default_frames_sent_to_a_client_do_not_keep_it_from_idling_out() {
    let options = Options {
        idle_timeout: Duration::from_millis(800),
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let mut alice = chat.join(&unique_room("listener")).await;
    let conn = chat.connection_ids().await.remove(0);
    tokio::spawn(keep_posting(chat.management_endpoint(), conn, 20));

    let mut received = 0;
    let close = loop {
        match alice.recv_frame(WAIT).await {
            Message::Text(_) => received += 1,
            Message::Close(frame) => break frame.expect("close frame"),
            other => panic!("{other:?}"),
        }
    };

    assert_eq!(u16::from(close.code), 1001);
    assert!(
        received < 20,
        "closed while posts were still coming ({received})"
    );
}

#[tokio::test]
async fn with_idle_reset_on_send_frames_sent_to_a_client_keep_it_open() {
    let options = Options {
        idle_timeout: Duration::from_millis(800),
        idle_reset_on_send: true,
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let mut alice = chat.join(&unique_room("listener")).await;
    let conn = chat.connection_ids().await.remove(0);
    tokio::spawn(keep_posting(chat.management_endpoint(), conn, 12));

    for i in 0..12 {
        assert_eq!(alice.recv_message().await, format!("post {i}"));
    }
    let close = alice
        .recv_close(WAIT)
        .await
        .expect("idles out after the posts stop");
    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn text_frame_over_32_kb_closes_with_1009() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("big")).await;

    alice
        .send_text(&format!(r#"{{"message":"{}"}}"#, "x".repeat(32 * 1024)))
        .await;

    let close = alice.recv_close(WAIT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1009);
}

#[tokio::test]
async fn binary_frame_closes_with_1003() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("binary")).await;

    alice.send(Message::binary(b"\x00\x01".to_vec())).await;

    let close = alice.recv_close(WAIT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1003);
}

#[tokio::test]
async fn idle_connection_closes_with_1001() {
    let options = Options {
        idle_timeout: Duration::from_millis(600),
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let mut alice = chat.join(&unique_room("idle")).await;

    let close = alice.recv_close(WAIT).await.expect("close frame");

    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn activity_resets_the_idle_timeout() {
    let options = Options {
        idle_timeout: Duration::from_millis(800),
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let mut alice = chat.join(&unique_room("busy")).await;

    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        alice.say("still talking").await;
        assert_eq!(alice.recv_message().await, "still talking");
    }
}

#[tokio::test]
async fn connection_closes_with_1001_at_the_maximum_duration() {
    let options = Options {
        max_duration: Duration::from_millis(700),
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let mut alice = chat.join(&unique_room("cap")).await;

    let close = alice.recv_close(WAIT).await.expect("close frame");

    assert_eq!(u16::from(close.code), 1001);
}

#[tokio::test]
async fn failing_default_integration_leaves_the_socket_open() {
    // Every /@connections call is throttled, so group_send delivers to nobody, and the handler's error frame to the
    // sender is throttled too: nothing can reach alice, and the handler answers 502.
    let options = Options {
        faults: Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        },
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Memory, options).await;
    let mut alice = chat.join(&unique_room("fail")).await;

    alice.say("into the void").await;

    alice.expect_silence(Duration::from_secs(1)).await;
    assert_eq!(
        chat.connection_ids().await.len(),
        1,
        "the connection is still open"
    );
}

/// 30 % of posts answer 429. Without retries, 40 posts would all get through with probability 0.7^40 < 1e-6; with
/// 12 attempts each, one is lost with probability 0.3^12 per post (< 1e-4 over the test).
async fn throttled_posts_are_retried_until_every_member_has_every_message(posts: Posts) {
    let options = Options {
        faults: Faults {
            throttle_rate: 0.3,
            ..Faults::default()
        },
        ..Options::default()
    };
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        config: Config {
            fanout_max_attempts: 12,
            ..Config::default()
        },
        posts,
    });
    let emulator = Emulator::start("127.0.0.1:0".parse().expect("addr"), options, backend)
        .await
        .expect("starts");
    let url = format!("ws://{}/local?room=throttle", emulator.addr());
    let mut alice = Client::connect(&url, None).await.expect("open");
    let mut bob = Client::connect(&url, None).await.expect("open");

    for n in 0..20 {
        alice.say(&format!("n{n}")).await;

        assert_eq!(alice.recv_message().await, format!("n{n}"), "{posts:?}");
        assert_eq!(bob.recv_message().await, format!("n{n}"), "{posts:?}");
    }
    let sent = emulator.metrics().await["apiGateway"]["messagesSent"].clone();
    assert_eq!(sent, 40, "{posts:?}: only delivered posts are metered");
}

#[tokio::test]
async fn throttled_in_memory_posts_are_retried_until_every_member_has_every_message() {
    throttled_posts_are_retried_until_every_member_has_every_message(Posts::InMemory).await;
}

#[tokio::test]
async fn throttled_posts_over_http_are_retried_until_every_member_has_every_message() {
    throttled_posts_are_retried_until_every_member_has_every_message(Posts::Http).await;
}

#[tokio::test]
async fn authorizer_context_carries_the_room_to_later_events() {
    let chat = TestChat::start(Mode::Memory).await;
    let room = unique_room("ctx");
    let _alice = chat.join(&room).await;

    let (_, body) = http(
        "GET",
        &chat.http_url("/_emulator/connections"),
        &[],
        Vec::new(),
    )
    .await;

    let list: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(list[0]["authorizer"]["room"], room.as_str());
    assert!(list[0]["authorizer"]["principalId"].is_string());
}

#[tokio::test]
async fn without_the_authorizer_the_room_is_looked_up_by_connection() {
    let options = Options {
        authorizer: false,
        ..Options::default()
    };
    let chat = TestChat::start_with(Mode::Redis, options).await;
    let room = unique_room("noauth");
    let mut alice = chat.join(&room).await;
    let mut bob = chat.join(&room).await;

    alice.say("looked up").await;

    assert_eq!(bob.recv_message().await, "looked up");
    assert_eq!(alice.recv_message().await, "looked up");
}

#[tokio::test]
async fn config_js_points_the_pages_at_this_emulator() {
    let chat = TestChat::start(Mode::Memory).await;

    let (status, body) = http("GET", &chat.http_url("/config.js"), &[], Vec::new()).await;

    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("UTF-8");
    assert!(
        text.contains(&format!("ws://{}/local", chat.addr)),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_1001() {
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("bye")).await;

    chat.own_emulator().shutdown().await;

    let close = alice.recv_close(WAIT).await.expect("close frame");
    assert_eq!(u16::from(close.code), 1001);
}

async fn emulator_with(backend: BackendChoice) -> Emulator {
    Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        Options::default(),
        backend,
    )
    .await
    .expect("starts")
}

fn is_status(err: &tokio_tungstenite::tungstenite::Error, status: u16) -> bool {
    matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == status)
}

#[tokio::test]
async fn connect_handler_error_rejects_the_handshake_with_500() {
    let emulator = emulator_with(BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Shared(Arc::new(FlakyStore::down())),
        config: Config::default(),
        posts: Posts::InMemory,
    }))
    .await;

    let err = Client::connect(&format!("ws://{}/local?room=lobby", emulator.addr()), None)
        .await
        .err()
        .expect("rejected");

    assert!(is_status(&err, 500), "{err:?}");
}

/// A stand-in for `cargo lambda watch`'s Invoke API that answers each function with a canned response.
async fn fake_invoke_api(answer: fn(&str, &Value) -> (u16, Value)) -> String {
    StandInLambda::start(move |function, event| {
        let answered = answer(&function, &event);
        Box::pin(async move { answered })
    })
    .await
    .url
}

fn allow(_: &str) -> Value {
    serde_json::json!({
        "principalId": "p",
        "policyDocument": { "Version": "2012-10-17", "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*" }] },
        "context": { "room": "lobby" }
    })
}

#[tokio::test]
async fn lambda_mode_connect_with_a_5xx_function_rejects_with_500_and_non_2xx_with_its_status() {
    let invoke_url = fake_invoke_api(|function, event| match function {
        WsAuthorize::BINARY => (200, allow(function)),
        WsConnect::BINARY if event["queryStringParameters"]["room"] == "teapot" => {
            (200, serde_json::json!({ "statusCode": 418 }))
        }
        WsConnect::BINARY => (
            500,
            serde_json::json!({ "errorType": "RoomStoreError", "errorMessage": "redis down" }),
        ),
        _ => (200, serde_json::json!({ "statusCode": 200 })),
    })
    .await;
    let emulator = emulator_with(BackendChoice::Lambda { invoke_url }).await;

    let err = Client::connect(&format!("ws://{}/local?room=lobby", emulator.addr()), None)
        .await
        .err()
        .expect("rejected");
    assert!(is_status(&err, 500), "{err:?}");
    let err = Client::connect(&format!("ws://{}/local?room=teapot", emulator.addr()), None)
        .await
        .err()
        .expect("rejected");
    assert!(is_status(&err, 418), "{err:?}");
}

#[tokio::test]
async fn lambda_mode_authorizer_deny_is_403_and_unauthorized_is_401() {
    let invoke_url = fake_invoke_api(|function, event| {
        match (function, event["queryStringParameters"]["room"].as_str()) {
            (WsAuthorize::BINARY, Some("deny")) => {
                let mut policy = allow(function);
                policy["policyDocument"]["Statement"][0]["Effect"] = "Deny".into();
                (200, policy)
            }
            (WsAuthorize::BINARY, _) => (
                500,
                serde_json::json!({ "errorType": "Error", "errorMessage": "Unauthorized" }),
            ),
            _ => (200, serde_json::json!({ "statusCode": 200 })),
        }
    })
    .await;
    let emulator = emulator_with(BackendChoice::Lambda { invoke_url }).await;

    let err = Client::connect(&format!("ws://{}/local?room=deny", emulator.addr()), None)
        .await
        .err()
        .expect("rejected");
    assert!(is_status(&err, 403), "{err:?}");
    let err = Client::connect(&format!("ws://{}/local?room=other", emulator.addr()), None)
        .await
        .err()
        .expect("rejected");
    assert!(is_status(&err, 401), "{err:?}");
}

#[tokio::test]
async fn lambda_mode_default_function_error_is_answered_like_api_gateway_and_leaves_the_socket_open()
 {
    let invoke_url = fake_invoke_api(|function, _| match function {
        WsAuthorize::BINARY => (200, allow(function)),
        WsDefault::BINARY => (
            500,
            serde_json::json!({ "errorType": "Undeliverable", "errorMessage": "boom" }),
        ),
        _ => (200, serde_json::json!({ "statusCode": 200 })),
    })
    .await;
    let emulator = emulator_with(BackendChoice::Lambda { invoke_url }).await;
    let mut alice = open_lobby(&emulator).await;

    alice.say("first").await;
    alice.say("second").await;

    // API Gateway's own answer to a failed integration, once per failed message.
    let ids = {
        let (_, body) = http(
            "GET",
            &format!("http://{}/_emulator/connections", emulator.addr()),
            &[],
            Vec::new(),
        )
        .await;
        serde_json::from_slice::<Value>(&body).expect("JSON")
    };
    let conn = ids[0]["connectionId"].as_str().expect("id").to_owned();
    for _ in 0..2 {
        let frame = alice.recv_json().await;
        assert_eq!(frame["message"], "Internal server error", "{frame}");
        assert_eq!(frame["connectionId"], conn.as_str());
        assert!(
            frame["requestId"].as_str().is_some_and(|r| !r.is_empty()),
            "{frame}"
        );
    }
    alice.expect_silence(Duration::from_millis(300)).await;
    let (status, body) = http(
        "GET",
        &format!("http://{}/_emulator/connections", emulator.addr()),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body)
            .expect("JSON")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// A TCP forwarder to `target` that counts the connections made through it.
async fn counting_forwarder(
    target: std::net::SocketAddr,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}/local"), accepted)
}

#[tokio::test]
async fn the_functions_client_opens_its_connection_before_the_first_post_and_the_post_reuses_it() {
    // Arrange: the functions' Management API client, through a forwarder that counts its connections.
    let chat = TestChat::start(Mode::Memory).await;
    let mut alice = chat.join(&unique_room("warm")).await;
    let conn = chat.connection_ids().await.remove(0);
    let (endpoint, connections) = counting_forwarder(chat.addr).await;
    let gateway = DirectGateway::local(&endpoint);

    // Act: what a cold start does, then the first message's post.
    gateway.warm().await;
    let opened_at_init = connections.load(std::sync::atomic::Ordering::SeqCst);
    gateway
        .post_to_connection(&id(&conn), Bytes::from_static(br#"{"message":"first"}"#))
        .await
        .expect("posted");

    // Assert
    assert_eq!(opened_at_init, 1, "the connection is opened by the warm-up");
    assert_eq!(alice.recv_message().await, "first");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the first post reuses it"
    );
}

#[tokio::test]
async fn the_invoke_api_takes_only_signed_asynchronous_json_events_under_256_kb() {
    // Arrange: what ws-default hands ws-fanout, and what it never would.
    let chat = TestChat::start(Mode::Memory).await;
    let url = chat.http_url("/2015-03-31/functions/ws-fanout/invocations");
    let shard = serde_json::json!({
        "room": "nobody", "sender": "s0000000000A=", "frame": "{}", "members": [], "nowMs": 1, "roomSize": 0
    })
    .to_string();
    let event = ("x-amz-invocation-type", "Event");
    let post = |headers: Vec<(&'static str, &'static str)>, body: Vec<u8>| {
        let url = url.clone();
        async move { http("POST", &url, &headers, body).await.0 }
    };

    // Act
    let unsigned = post(vec![event], shard.clone().into_bytes()).await;
    let synchronous = post(vec![SIGNED], shard.clone().into_bytes()).await;
    let not_json = post(vec![SIGNED, event], b"not json".to_vec()).await;
    let too_large = post(vec![SIGNED, event], vec![b' '; 256 * 1024 + 1]).await;
    let queued = post(vec![SIGNED, event], shard.into_bytes()).await;

    // Assert
    assert_eq!(
        (unsigned, synchronous, not_json, too_large, queued),
        (403, 400, 400, 413, 202)
    );
    eventually("the queued shard ran", || async {
        let (_, body) = http("GET", &chat.http_url("/_emulator/metrics"), &[], Vec::new()).await;
        let meter: Value = serde_json::from_slice(&body).expect("JSON");
        meter["lambda"]["functions"]["ws-fanout"]["requests"] == 1
    })
    .await;
}
