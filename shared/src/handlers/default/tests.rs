//! The `$default` handler's behaviour, frame by frame, on the in-memory fakes.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use serde_json::{Value, json};

use super::Deps;
use crate::fanout::FanoutSettings;
use crate::gateway::RecordingGateway;
use crate::handlers::events::Message;
use crate::handlers::{HandlerError, fixtures};
use crate::rooms::{Limits, MemoryRoomStore, Policy, RoomStore};
use crate::wire::{ConnectionId, RoomName};

/// The event as the edge parses it, then the handler.
async fn handle(
    event: &ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    Ok(super::handle(Message::try_from(event)?, deps, None).await)
}

struct World {
    deps: Deps,
    store: Arc<MemoryRoomStore>,
    gateway: Arc<RecordingGateway>,
}

async fn world(members: &[(&str, &str)]) -> World {
    let store = Arc::new(MemoryRoomStore::default());
    for (room, conn) in members {
        store
            .join(&room_(room), &id(conn), 1_000, None, None)
            .await
            .expect("join");
    }
    let gateway = Arc::new(RecordingGateway::new());
    let deps = Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
        sharding: None,
        max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        token_leeway_secs: 60,
    };
    World {
        deps,
        store,
        gateway,
    }
}

fn id(s: &str) -> ConnectionId {
    ConnectionId::parse(s).expect("id")
}

fn room_(s: &str) -> RoomName {
    RoomName::parse(s).expect("room")
}

fn json_frames(gw: &RecordingGateway, conn: &str) -> Vec<Value> {
    gw.received(&id(conn))
        .iter()
        .map(|f| serde_json::from_str(f).expect("frames are JSON"))
        .collect()
}

/// The chat frames `conn` received as (message, seq), checking each has an epoch and a ts.
fn chats(gw: &RecordingGateway, conn: &str) -> Vec<(String, u64)> {
    json_frames(gw, conn)
        .iter()
        .filter(|f| f.get("message").is_some())
        .map(|f| {
            assert!(f["epoch"].is_string(), "{f}");
            assert!(f["ts"].is_i64(), "{f}");
            (
                f["message"].as_str().expect("message").to_owned(),
                f["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}

fn said(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(m, s)| ((*m).to_owned(), *s)).collect()
}

#[tokio::test]
async fn chat_message_reaches_everyone_in_the_room_and_nobody_else() {
    let w = world(&[("room_1", "a"), ("room_1", "b"), ("room_2", "c")]).await;
    let event = fixtures::message("a", r#"{"message":"hello"}"#, None);

    let resp = handle(&event, &w.deps).await.expect("handled");

    assert_eq!(resp.status_code, 200);
    assert_eq!(chats(&w.gateway, "a"), said(&[("hello", 1)]));
    assert_eq!(w.gateway.received(&id("a")), w.gateway.received(&id("b")));
    assert!(w.gateway.received(&id("c")).is_empty());
}

#[tokio::test]
async fn the_authorizer_context_names_the_room_without_a_lookup() {
    let w = world(&[("room_1", "a"), ("room_1", "b")]).await;
    // The store has no conn → room entry for "x": only the context can name its room.
    let event = fixtures::message("x", r#"{"message":"via context"}"#, Some("room_1"));

    handle(&event, &w.deps).await.expect("handled");

    assert_eq!(chats(&w.gateway, "b"), said(&[("via context", 1)]));
}

#[tokio::test]
async fn a_named_sender_s_messages_carry_its_name_and_an_anonymous_one_s_do_not() {
    let w = world(&[("room_1", "a"), ("room_1", "b")]).await;
    let mut named = fixtures::message("a", r#"{"message":"from ann"}"#, Some("room_1"));
    named
        .request_context
        .authorizer
        .fields
        .insert("name".to_owned(), json!("Ann"));
    let anonymous = fixtures::message("b", r#"{"message":"from nobody"}"#, Some("room_1"));

    handle(&named, &w.deps).await.expect("handled");
    handle(&anonymous, &w.deps).await.expect("handled");

    let frames = json_frames(&w.gateway, "b");
    assert_eq!(frames[0]["message"], "from ann");
    assert_eq!(frames[0]["user"], "Ann");
    assert_eq!(frames[1]["message"], "from nobody");
    assert!(frames[1].get("user").is_none(), "{}", frames[1]);
}

#[tokio::test]
async fn a_presence_request_is_answered_to_the_sender_alone_and_a_gone_member_is_announced_as_left()
{
    let w = world(&[("lobby", "a"), ("lobby", "b"), ("lobby", "gone")]).await;
    let named = crate::wire::DisplayName::parse("Bee").expect("name");
    w.store
        .join(&room_("lobby"), &id("b"), 1_000, Some(&named), None)
        .await
        .expect("named");

    handle(
        &fixtures::message("a", r#"{"action":"presence"}"#, None),
        &w.deps,
    )
    .await
    .expect("handled");
    assert_eq!(
        json_frames(&w.gateway, "a"),
        [json!({ "presence": { "count": 3, "members": ["Bee"] } })]
    );
    assert!(
        w.gateway.received(&id("b")).is_empty(),
        "to the sender alone"
    );

    // "gone" vanished without a $disconnect: the next message's 410 prunes it, and "a" (a watcher) hears of it.
    w.gateway.mark_gone(&id("gone"));
    handle(
        &fixtures::message("b", r#"{"message":"hi"}"#, None),
        &w.deps,
    )
    .await
    .expect("handled");
    let frames = json_frames(&w.gateway, "a");
    assert!(
        frames.contains(&json!({ "left": null, "count": 2 })),
        "{frames:?}"
    );
    assert!(
        json_frames(&w.gateway, "b")
            .iter()
            .all(|f| f.get("left").is_none()),
        "b never asked for presence"
    );
}

#[tokio::test]
async fn malformed_frame_gets_an_error_to_its_sender_only() {
    let w = world(&[("lobby", "a"), ("lobby", "b")]).await;
    for body in ["nope", "{}", r#"{"message": 5}"#, "[]"] {
        let event = fixtures::message("a", body, None);

        let resp = handle(&event, &w.deps).await.expect("handled");

        assert_eq!(resp.status_code, 400, "{body}");
    }
    let frames = json_frames(&w.gateway, "a");
    assert_eq!(frames.len(), 4);
    assert!(
        frames
            .iter()
            .all(|f| f["error"].is_string() && f.get("message").is_none()),
        "{frames:?}"
    );
    assert!(
        w.gateway.received(&id("b")).is_empty(),
        "nothing is broadcast"
    );
}

#[tokio::test]
async fn gone_member_is_pruned_on_the_next_send() {
    let w = world(&[("lobby", "a"), ("lobby", "vanished")]).await;
    w.gateway.mark_gone(&id("vanished"));

    handle(
        &fixtures::message("a", r#"{"message":"hi"}"#, None),
        &w.deps,
    )
    .await
    .expect("handled");

    assert_eq!(
        w.store
            .members(&room_("lobby"), 2_000)
            .await
            .expect("members"),
        vec![id("a")]
    );
    assert_eq!(chats(&w.gateway, "a"), said(&[("hi", 1)]));
}

#[tokio::test]
async fn message_from_a_connection_in_no_room_is_answered_with_an_error() {
    let w = world(&[("lobby", "b")]).await;

    let resp = handle(
        &fixtures::message("stranger", r#"{"message":"hi"}"#, None),
        &w.deps,
    )
    .await
    .expect("handled");

    assert_eq!(resp.status_code, 410);
    assert!(json_frames(&w.gateway, "stranger")[0]["error"].is_string());
    assert!(w.gateway.received(&id("b")).is_empty());
}

#[tokio::test]
async fn oversize_broadcast_is_refused_before_any_post() {
    let w = world(&[("lobby", "a"), ("lobby", "b")]).await;
    // 30,000 control characters fit in a 32 KB frame but escape to 180,000 bytes.
    let body = json!({ "message": "\u{1}".repeat(30_000) }).to_string();

    let resp = handle(&fixtures::message("a", &body, None), &w.deps)
        .await
        .expect("handled");

    assert_eq!(resp.status_code, 400);
    assert!(
        json_frames(&w.gateway, "a")[0]["error"]
            .as_str()
            .expect("error")
            .contains("too large")
    );
    assert!(w.gateway.received(&id("b")).is_empty());
}

#[tokio::test]
async fn a_member_that_cannot_be_reached_is_reported_to_the_sender_with_a_5xx() {
    let w = world(&[("lobby", "a"), ("lobby", "b")]).await;
    w.gateway.mark_forbidden(&id("b"));

    let resp = handle(
        &fixtures::message("a", r#"{"message":"hi"}"#, None),
        &w.deps,
    )
    .await
    .expect("answered, not raised");

    assert_eq!(resp.status_code, 502);
    let frames = json_frames(&w.gateway, "a");
    assert_eq!(frames[0]["message"], "hi");
    let error = frames[1]["error"].as_str().expect("an error frame");
    assert!(error.contains("reached 1 of 2 members"), "{error}");
}

/// Room `big` of members `a` to `e`, sharded two a shard to `ws-fanout` through `invoker`.
async fn sharded_world(invoker: Arc<crate::invoke::RecordingInvoker>) -> World {
    let members: Vec<(&str, &str)> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|c| ("big", *c))
        .collect();
    let mut w = world(&members).await;
    w.deps.sharding = Some(crate::fanout::shards::Sharding {
        invoker,
        function: "ws-fanout".into(),
        shard_size: 2,
    });
    w
}

#[tokio::test]
async fn a_room_bigger_than_a_shard_is_posted_here_in_part_and_handed_off_for_the_rest() {
    let invoker = Arc::new(crate::invoke::RecordingInvoker::default());
    let w = sharded_world(invoker.clone()).await;

    let resp = handle(
        &fixtures::message("c", r#"{"message":"hi","id":"m1"}"#, None),
        &w.deps,
    )
    .await
    .expect("handled");

    assert_eq!(resp.status_code, 200);
    let here: Vec<&str> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .filter(|c| !w.gateway.received(&id(c)).is_empty())
        .collect();
    assert_eq!(here.len(), 2, "one shard posted here: {here:?}");
    assert!(here.contains(&"c"), "the sender's own shard, with its echo");
    assert_eq!(json_frames(&w.gateway, "c")[0]["id"], "m1");
    let shards: Vec<crate::fanout::shards::Shard> = invoker
        .invoked()
        .iter()
        .map(|(function, event)| {
            assert_eq!(function, "ws-fanout");
            serde_json::from_slice(event).expect("a shard")
        })
        .collect();
    let mut handed: Vec<String> = shards
        .iter()
        .flat_map(|s| s.members.iter().map(|m| m.conn.clone()))
        .collect();
    handed.sort();
    let mut rest: Vec<String> = ["a", "b", "d", "e"]
        .iter()
        .filter(|c| !here.contains(c))
        .map(|c| (*c).to_owned())
        .collect();
    rest.sort();
    assert_eq!(handed, rest, "every other member, in exactly one shard");
    assert!(
        shards
            .iter()
            .all(|s| s.sender == "c" && s.id.as_deref() == Some("m1") && s.room_size == 5)
    );
    assert_eq!(shards[0].frame, w.gateway.received(&id(here[0]))[0]);
}

#[tokio::test]
async fn members_of_a_shard_lambda_would_not_take_are_reported_to_the_sender() {
    let invoker = Arc::new(crate::invoke::RecordingInvoker::default());
    invoker.refuse_all();
    let w = sharded_world(invoker).await;

    let resp = handle(
        &fixtures::message("a", r#"{"message":"hi"}"#, None),
        &w.deps,
    )
    .await
    .expect("answered, not raised");

    assert_eq!(resp.status_code, 502);
    let frames = json_frames(&w.gateway, "a");
    let error = frames[1]["error"].as_str().expect("an error frame");
    assert!(error.contains("reached 2 of 5 members"), "{error}");
}

#[tokio::test]
async fn delivering_to_nobody_is_a_5xx_answer_not_a_lambda_error() {
    let w = world(&[("lobby", "a")]).await;
    w.gateway.mark_forbidden(&id("a"));

    let resp = handle(
        &fixtures::message("a", r#"{"message":"hi"}"#, None),
        &w.deps,
    )
    .await
    .expect("answered, not raised");

    assert_eq!(resp.status_code, 502);
}

#[tokio::test]
async fn a_sender_over_its_rate_limit_is_told_and_nothing_is_broadcast() {
    let store = Arc::new(MemoryRoomStore::default().with_policy(Policy {
        limits: Limits {
            burst: 3,
            messages_per_sec: 1,
            ..Limits::default()
        },
        ..Policy::default()
    }));
    let gateway = Arc::new(RecordingGateway::new());
    store
        .join(&room_("lobby"), &id("b"), 1_000, None, None)
        .await
        .expect("join");
    let deps = Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
        sharding: None,
        max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        token_leeway_secs: 60,
    };

    let mut statuses = Vec::new();
    for n in 0..4 {
        let body = json!({ "message": format!("m{n}") }).to_string();
        let resp = handle(&fixtures::message("a", &body, Some("lobby")), &deps)
            .await
            .expect("handled");
        statuses.push(resp.status_code);
    }

    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(
        chats(&gateway, "b"),
        said(&[("m0", 1), ("m1", 2), ("m2", 3)])
    );
    let refusal = json_frames(&gateway, "a").pop().expect("told");
    assert!(
        refusal["error"]
            .as_str()
            .expect("error")
            .contains("too many messages"),
        "{refusal}"
    );
    assert_eq!(
        refusal["undelivered"], "m3",
        "the text comes back to the sender"
    );
}

#[tokio::test]
async fn a_chat_message_makes_its_sender_a_member_again() {
    let w = world(&[("lobby", "b")]).await;
    // "a" is in no store entry (Redis lost it), but the authorizer context names its room.
    handle(
        &fixtures::message("a", r#"{"message":"back"}"#, Some("lobby")),
        &w.deps,
    )
    .await
    .expect("handled");

    assert_eq!(
        chats(&w.gateway, "a"),
        said(&[("back", 1)]),
        "the sender hears itself"
    );
    assert_eq!(
        w.store
            .members(&room_("lobby"), 2_000)
            .await
            .expect("members"),
        vec![id("a"), id("b")]
    );
}

#[tokio::test]
async fn a_retried_message_keeps_its_seq() {
    let w = world(&[("lobby", "a")]).await;
    let mut event = fixtures::message("a", r#"{"message":"once"}"#, Some("lobby"));
    event.request_context.message_id = Some("m-1".into());

    handle(&event, &w.deps).await.expect("first");
    handle(&event, &w.deps).await.expect("retried");

    assert_eq!(
        chats(&w.gateway, "a"),
        said(&[("once", 1), ("once", 1)]),
        "the same frame twice (pages drop the repeat), never a second seq"
    );
}

#[tokio::test]
async fn messages_of_a_room_are_numbered_one_by_one_in_one_epoch_and_rooms_apart() {
    let w = world(&[("one", "a"), ("two", "c")]).await;
    for (conn, text) in [("a", "first"), ("c", "elsewhere"), ("a", "second")] {
        let event = fixtures::message(conn, &json!({ "message": text }).to_string(), None);
        handle(&event, &w.deps).await.expect("handled");
    }

    assert_eq!(chats(&w.gateway, "a"), said(&[("first", 1), ("second", 2)]));
    assert_eq!(chats(&w.gateway, "c"), said(&[("elsewhere", 1)]));
    let frames = json_frames(&w.gateway, "a");
    assert_eq!(frames[0]["epoch"], frames[1]["epoch"]);
    assert_ne!(frames[0]["epoch"], json_frames(&w.gateway, "c")[0]["epoch"]);
}

#[tokio::test]
async fn a_history_request_gets_what_followed_the_given_seq_to_the_sender_alone() {
    let w = world(&[("lobby", "a"), ("lobby", "b")]).await;
    for text in ["one", "two", "three"] {
        let event = fixtures::message("a", &json!({ "message": text }).to_string(), None);
        handle(&event, &w.deps).await.expect("handled");
    }
    let epoch = json_frames(&w.gateway, "b")[0]["epoch"].clone();
    let before = w.gateway.received(&id("a")).len();

    let request = json!({ "action": "history", "after": 1, "epoch": epoch }).to_string();
    let resp = handle(&fixtures::message("b", &request, None), &w.deps)
        .await
        .expect("handled");

    assert_eq!(resp.status_code, 200);
    let answer = json_frames(&w.gateway, "b").pop().expect("an answer");
    assert_eq!(answer["epoch"], epoch);
    assert_eq!(answer["complete"], json!(true));
    let history: Vec<&str> = answer["history"]
        .as_array()
        .expect("array")
        .iter()
        .map(|f| f["message"].as_str().expect("message"))
        .collect();
    assert_eq!(history, ["two", "three"]);
    assert_eq!(
        w.gateway.received(&id("a")).len(),
        before,
        "a got nothing more"
    );
}

#[tokio::test]
async fn a_history_request_for_a_lost_epoch_is_answered_as_incomplete() {
    let w = world(&[("lobby", "a")]).await;
    handle(
        &fixtures::message("a", r#"{"message":"kept"}"#, None),
        &w.deps,
    )
    .await
    .expect("handled");

    let request = r#"{"action":"history","after":7,"epoch":"0000dead"}"#;
    handle(&fixtures::message("a", request, None), &w.deps)
        .await
        .expect("handled");

    let answer = json_frames(&w.gateway, "a").pop().expect("an answer");
    assert_eq!(answer["complete"], json!(false));
    assert_eq!(answer["history"][0]["message"], "kept");
}

#[tokio::test]
async fn a_ping_is_answered_with_a_pong_and_rejoins_a_member_the_store_forgot() {
    let w = world(&[]).await;
    let event = fixtures::message("a", r#"{"action":"ping"}"#, Some("lobby"));

    let resp = handle(&event, &w.deps).await.expect("handled");

    assert_eq!(resp.status_code, 200);
    assert!(json_frames(&w.gateway, "a")[0]["pong"].is_i64());
    assert_eq!(
        w.store
            .members(&room_("lobby"), 2_000)
            .await
            .expect("members"),
        vec![id("a")]
    );
}

/// A world whose connections may send `burst` non-chat frames at once, and one a second after.
async fn budgeted_world(burst: u32) -> World {
    let store = Arc::new(MemoryRoomStore::default().with_policy(Policy {
        limits: Limits {
            frames_per_sec: 1,
            frame_burst: burst,
            ..Limits::default()
        },
        ..Policy::default()
    }));
    for conn in ["a", "b"] {
        store
            .join(&room_("lobby"), &id(conn), 1_000, None, None)
            .await
            .expect("join");
    }
    let gateway = Arc::new(RecordingGateway::new());
    World {
        deps: Deps {
            rooms: store.clone(),
            gateway: gateway.clone(),
            fanout: FanoutSettings::default(),
            sharding: None,
            max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
            token_leeway_secs: 60,
        },
        store,
        gateway,
    }
}

#[tokio::test]
async fn every_frame_but_chat_pays_the_frame_budget_and_past_it_is_answered_429_and_nothing_else() {
    let w = budgeted_world(3).await;
    let mut statuses = Vec::new();
    for body in [
        r#"{"action":"ping"}"#,
        r#"{"action":"presence"}"#,
        r#"{"action":"history"}"#,
        r#"{"action":"history"}"#,
    ] {
        let resp = handle(&fixtures::message("a", body, Some("lobby")), &w.deps)
            .await
            .expect("handled");
        statuses.push(resp.status_code);
    }
    let chat = handle(
        &fixtures::message("a", r#"{"message":"still talking"}"#, Some("lobby")),
        &w.deps,
    )
    .await
    .expect("handled");

    assert_eq!(statuses, [200, 200, 200, 429]);
    let frames = json_frames(&w.gateway, "a");
    let refusal = &frames[3];
    assert!(
        refusal["error"]
            .as_str()
            .expect("an error")
            .contains("too many requests"),
        "{refusal}"
    );
    assert_eq!(
        refusal["retryAfterMs"], 2000,
        "one in debt: two tokens to earn back at one a second"
    );
    assert_eq!(
        frames.iter().filter(|f| f.get("history").is_some()).count(),
        1,
        "the refused request got no history: {frames:?}"
    );
    assert_eq!(chat.status_code, 200, "chat pays its own rate limit only");
    assert_eq!(chats(&w.gateway, "b"), said(&[("still talking", 1)]));
    assert!(w.gateway.deleted().is_empty());
}

#[tokio::test]
async fn malformed_frames_pay_the_budget_too_and_hammering_far_past_it_closes_the_connection() {
    let w = budgeted_world(2).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = handle(&fixtures::message("a", "not json", Some("lobby")), &w.deps)
            .await
            .expect("handled");
        statuses.push(resp.status_code);
        if !w.gateway.deleted().is_empty() {
            break;
        }
    }

    assert_eq!(statuses, [400, 400, 429, 429], "two answered, two refused");
    assert_eq!(
        w.gateway.deleted(),
        [id("a")],
        "closed after a burst's worth of debt"
    );
    let last = json_frames(&w.gateway, "a").pop().expect("told");
    assert!(
        last["error"].as_str().expect("error").contains("closed"),
        "{last}"
    );
    assert!(w.gateway.received(&id("b")).is_empty(), "nobody else heard");
}

/// Everything the handlers log, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_message_text_reaches_the_log_at_any_level_delivered_refused_or_over_budget() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let w = budgeted_world(1).await;
    let marker = "SECRET-BODY-7f3a";
    let too_long = format!(
        "{marker}{}",
        "x".repeat(crate::config::DEFAULT_MAX_MESSAGE_BYTES)
    );
    let bodies = [
        json!({ "message": marker }).to_string(),
        json!({ "message": too_long }).to_string(),
        format!(r#"{{"mesage":"{marker}"}}"#),
        format!("{marker} is not JSON"),
        format!(r#"{{"action":"history","after":"{marker}"}}"#),
    ];

    let mut statuses = Vec::new();
    for body in &bodies {
        let resp = handle(&fixtures::message("a", body, Some("lobby")), &w.deps)
            .await
            .expect("handled");
        statuses.push(resp.status_code);
    }

    assert_eq!(
        statuses,
        [200, 400, 429, 429, 429],
        "delivered, refused, over budget"
    );
    let logged = String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("UTF-8");
    assert!(
        logged.contains("chat message"),
        "debug lines were captured: {logged}"
    );
    assert!(logged.contains("frame refused"), "{logged}");
    assert!(logged.contains("over its frame budget"), "{logged}");
    assert!(
        !logged.contains(marker),
        "a message's text was logged:\n{logged}"
    );
}

#[tokio::test]
async fn a_frame_after_the_token_expired_reaches_nobody_and_closes_the_connection() {
    let w = world(&[("lobby", "a"), ("lobby", "b")]).await;
    // The fixture's request time is 100 s after the epoch; the leeway is 60 s.
    let from_user = |body: &str, exp: &str| {
        let mut event = fixtures::message("a", body, Some("lobby"));
        for (key, value) in [("uid", "u-1"), ("name", "Ann"), ("exp", exp)] {
            event
                .request_context
                .authorizer
                .fields
                .insert(key.to_owned(), json!(value));
        }
        event
    };

    let valid = handle(&from_user(r#"{"message":"still here"}"#, "50"), &w.deps)
        .await
        .expect("handled");
    let expired = handle(&from_user(r#"{"message":"too late"}"#, "39"), &w.deps)
        .await
        .expect("handled");

    assert_eq!((valid.status_code, expired.status_code), (200, 401));
    assert_eq!(
        chats(&w.gateway, "b"),
        said(&[("still here", 1)]),
        "the late one reached nobody"
    );
    let told = json_frames(&w.gateway, "a").pop().expect("told");
    assert_eq!(told["error"], "token expired");
    assert_eq!(told["undelivered"], "too late");
    assert_eq!(
        w.gateway.deleted(),
        [id("a")],
        "and the connection is closed"
    );
}
