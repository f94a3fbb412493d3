//! The Redis room store against a real redis-server: key schema, expiry, pruning, and one round trip per read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_shared::WebsocketRequest;
use chat_shared::config::{KeyPrefix, MAX_CONNECTION_LIFETIME};
use chat_shared::fanout::FanoutSettings;
use chat_shared::functions::{Function as _, WsDefault};
use chat_shared::gateway::RecordingGateway;
use chat_shared::handlers::default::Deps;
use serde_json::json;

use chat_shared::rooms::{RedisRoomStore, RoomStore, Someone};
use chat_shared::wire::{ConnectionId, RoomName};
use redis::AsyncCommands as _;
use wschat_tests::{redis_url, unique_prefix};

const HOUR_MS: i64 = 3_600_000;

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).expect("id")
}

fn room(raw: &str) -> RoomName {
    RoomName::parse(raw).expect("room")
}

async fn store(
    lifetime: Duration,
) -> (RedisRoomStore, redis::aio::MultiplexedConnection, KeyPrefix) {
    let prefix = unique_prefix();
    let store = RedisRoomStore::connect(&redis_url(), &prefix, lifetime)
        .await
        .expect("Redis reachable");
    let raw = redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    (store, raw, prefix)
}

#[tokio::test]
async fn join_writes_the_documented_keys_with_expiry() {
    let (store, mut raw, prefix) = store(MAX_CONNECTION_LIFETIME).await;

    store
        .join(&room("lobby"), &id("c1="), 1_000, None, None)
        .await
        .expect("join");

    let members: Vec<(String, i64)> = raw
        .zrange_withscores(format!("{prefix}room:{{lobby}}"), 0, -1)
        .await
        .expect("zrange");
    assert_eq!(members, vec![("c1=".to_owned(), 1_000)]);
    let room_of: String = raw.get(format!("{prefix}conn:{{c1=}}")).await.expect("get");
    assert_eq!(room_of, "lobby");
    for key in [
        format!("{prefix}room:{{lobby}}"),
        format!("{prefix}conn:{{c1=}}"),
    ] {
        let ttl: i64 = raw.pttl(&key).await.expect("pttl");
        assert!(
            ttl > 7_000_000 && ttl <= 7_200_000,
            "{key} expires in {ttl} ms"
        );
    }
}

#[tokio::test]
async fn members_older_than_the_lifetime_are_ignored_and_trimmed() {
    let (store, mut raw, prefix) = store(MAX_CONNECTION_LIFETIME).await;
    let now = 10 * HOUR_MS;
    store
        .join(&room("lobby"), &id("old"), now - 3 * HOUR_MS, None, None)
        .await
        .expect("join");
    store
        .join(&room("lobby"), &id("new"), now - HOUR_MS, None, None)
        .await
        .expect("join");

    let members = store.members(&room("lobby"), now).await.expect("members");

    assert_eq!(members, vec![id("new")]);
    let left: i64 = raw
        .zcard(format!("{prefix}room:{{lobby}}"))
        .await
        .expect("zcard");
    assert_eq!(left, 1, "the expired member was trimmed, not just filtered");
}

#[tokio::test]
async fn room_of_leave_and_prune_keep_both_keys_consistent() {
    let (store, mut raw, prefix) = store(MAX_CONNECTION_LIFETIME).await;
    for c in ["a", "b", "c"] {
        store
            .join(&room("r"), &id(c), 1_000, None, None)
            .await
            .expect("join");
    }

    assert_eq!(
        store.room_of(&id("a")).await.expect("room_of"),
        Some(room("r"))
    );
    assert_eq!(
        store
            .leave(&id("a"), None, 0)
            .await
            .expect("leave")
            .map(|departed| departed.room),
        Some(room("r"))
    );
    assert_eq!(
        store
            .leave(&id("b"), Some(&room("r")), 0)
            .await
            .expect("leave")
            .map(|departed| departed.room),
        Some(room("r"))
    );
    store.prune(&room("r"), &[id("c")], 0).await.expect("prune");

    assert!(
        store
            .members(&room("r"), 2_000)
            .await
            .expect("members")
            .is_empty()
    );
    for c in ["a", "b", "c"] {
        let exists: bool = raw
            .exists(format!("{prefix}conn:{{{c}}}"))
            .await
            .expect("exists");
        assert!(!exists, "conn key of {c} was removed");
    }
    assert_eq!(
        store
            .leave(&id("a"), None, 0)
            .await
            .expect("leave twice")
            .map(|departed| departed.room),
        None
    );
}

#[tokio::test]
async fn every_key_is_hash_tagged_by_its_room_or_its_connection() {
    let (store, _, prefix) = store(MAX_CONNECTION_LIFETIME).await;

    // Redis Cluster hashes only what is inside the first {...}: one room's keys share a slot, and no script or
    // pipeline ever needs two slots at once.
    assert_eq!(
        store.keys().room(&room("로비")),
        format!("{prefix}room:{{로비}}")
    );
    assert_eq!(
        store.keys().conn(&id("L0SM9cOFvHcCIhw=")),
        format!("{prefix}conn:{{L0SM9cOFvHcCIhw=}}")
    );
}

/// A connection that counts round trips: one per command or pipeline sent.
#[derive(Clone)]
struct Counting {
    inner: redis::aio::MultiplexedConnection,
    round_trips: Arc<AtomicUsize>,
}

impl redis::aio::ConnectionLike for Counting {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.round_trips.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.round_trips.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

async fn counting_store() -> (RedisRoomStore<Counting>, Arc<AtomicUsize>) {
    let inner = redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
    let round_trips = Arc::new(AtomicUsize::new(0));
    let conn = Counting {
        inner,
        round_trips: round_trips.clone(),
    };
    (
        RedisRoomStore::with_connection(conn, &unique_prefix(), MAX_CONNECTION_LIFETIME),
        round_trips,
    )
}

#[tokio::test]
async fn a_chat_message_costs_one_redis_round_trip() {
    let (store, round_trips) = counting_store().await;
    let store = Arc::new(store);
    for n in 0..20 {
        store
            .join(&room("hot"), &id(&format!("c{n}")), 1_000, None, None)
            .await
            .expect("join");
    }
    let gateway = Arc::new(RecordingGateway::new());
    let deps = Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
        sharding: None,
        max_message_bytes: chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES,
        token_leeway_secs: 60,
    };
    let event = |n: usize| -> WebsocketRequest {
        serde_json::from_value(json!({
            "requestContext": {
                "routeKey": "$default", "eventType": "MESSAGE", "connectionId": "c0", "messageId": format!("m{n}"),
                "connectedAt": 1_000, "requestTimeEpoch": 2_000, "stage": "prod", "apiId": "x", "domainName": "d",
                "authorizer": { "room": "hot", "principalId": "c0" }
            },
            "body": format!(r#"{{"message":"m{n}"}}"#),
            "isBase64Encoded": false
        }))
        .expect("event")
    };
    // The first call may load the script (NOSCRIPT → EVAL); measure warm calls.
    WsDefault::handle(&deps, &event(0), None)
        .await
        .expect("handled");
    let before = round_trips.load(Ordering::SeqCst);

    for n in 1..=10 {
        WsDefault::handle(&deps, &event(n), None)
            .await
            .expect("handled");
    }

    assert_eq!(
        round_trips.load(Ordering::SeqCst) - before,
        10,
        "one round trip per message"
    );
    assert_eq!(
        gateway.received(&id("c19")).len(),
        11,
        "every member got every message"
    );
    let history = store
        .history(&room("hot"), None, None, 3_000)
        .await
        .expect("history");
    assert_eq!(
        history.frames,
        gateway.received(&id("c19")),
        "that one round trip also kept the history"
    );
}

#[tokio::test]
async fn join_and_leave_with_a_known_room_are_one_round_trip_each() {
    let (store, round_trips) = counting_store().await;

    store
        .join(&room("r"), &id("a"), 1_000, None, None)
        .await
        .expect("join");
    assert_eq!(round_trips.load(Ordering::SeqCst), 1);
    store
        .leave(&id("a"), Some(&room("r")), 0)
        .await
        .expect("leave")
        .map(|departed| departed.room);
    assert_eq!(round_trips.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn presence_keys_share_the_room_s_slot_and_leaves_count_only_live_members() {
    let (store, mut raw, prefix) = store(MAX_CONNECTION_LIFETIME).await;
    let now = 10 * HOUR_MS;
    let stale = chat_shared::wire::DisplayName::parse("Stale").expect("name");
    let ann = chat_shared::wire::DisplayName::parse("Ann").expect("name");
    store
        .join(
            &room("lobby"),
            &id("stale"),
            now - 3 * HOUR_MS,
            Some(&stale),
            None,
        )
        .await
        .expect("join");
    store
        .join(&room("lobby"), &id("a"), now - HOUR_MS, Some(&ann), None)
        .await
        .expect("join");
    store
        .join(&room("lobby"), &id("b"), now - HOUR_MS, None, None)
        .await
        .expect("join");
    store
        .presence(&room("lobby"), &id("b"), now - HOUR_MS)
        .await
        .expect("watch");

    let left = store
        .leave(&id("a"), Some(&room("lobby")), now)
        .await
        .expect("leave")
        .expect("was a member");

    assert_eq!(left.names, [Someone::named("Ann")]);
    assert_eq!(
        left.count, 1,
        "b only: the stale member is past its lifetime"
    );
    assert_eq!(left.watchers, [id("b")]);
    let names: std::collections::HashMap<String, String> = raw
        .hgetall(format!("{prefix}names:{{lobby}}"))
        .await
        .expect("names");
    assert_eq!(names.get("a"), None, "the leaver's name is gone");
    let present = store
        .presence(&room("lobby"), &id("b"), now)
        .await
        .expect("presence");
    assert_eq!(present.expired, [Someone::named("Stale")]);
    assert_eq!((present.count, present.names.len()), (1, 0));
    let watchers: Vec<String> = raw
        .smembers(format!("{prefix}watchers:{{lobby}}"))
        .await
        .expect("watchers");
    assert_eq!(watchers, ["b"]);
}

#[tokio::test]
async fn a_request_over_its_frame_budget_costs_the_budget_check_and_nothing_else() {
    let (store, round_trips) = counting_store().await;
    let store = Arc::new(store.with_policy(chat_shared::rooms::Policy {
        limits: chat_shared::rooms::Limits {
            frames_per_sec: 1,
            frame_burst: 1,
            ..chat_shared::rooms::Limits::default()
        },
        ..chat_shared::rooms::Policy::default()
    }));
    let gateway = Arc::new(RecordingGateway::new());
    let deps = Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
        sharding: None,
        max_message_bytes: chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES,
        token_leeway_secs: 60,
    };
    let history: WebsocketRequest = serde_json::from_value(json!({
        "requestContext": {
            "routeKey": "$default", "eventType": "MESSAGE", "connectionId": "c0", "messageId": "m",
            "connectedAt": 1_000, "requestTimeEpoch": 2_000, "stage": "prod", "apiId": "x", "domainName": "d",
            "authorizer": { "room": "hot", "principalId": "c0" }
        },
        "body": r#"{"action":"history"}"#,
        "isBase64Encoded": false
    }))
    .expect("event");
    let granted = WsDefault::handle(&deps, &history, None)
        .await
        .expect("handled");
    let before = round_trips.load(Ordering::SeqCst);

    let refused = WsDefault::handle(&deps, &history, None)
        .await
        .expect("handled");

    assert_eq!((granted.status_code, refused.status_code), (200, 429));
    assert_eq!(
        round_trips.load(Ordering::SeqCst) - before,
        1,
        "the budget's script, and no history read"
    );
}
