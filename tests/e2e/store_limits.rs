//! What a room store enforces besides membership, the same in memory and in Redis: the frame budget, the limits
//! per source address, presence damping, a history bounded by bytes and answered a page at a time, and people
//! counted once however many tabs a signed-in user has open. Every
//! check runs against both stores (`_in_memory`, `_in_redis`); the Redis one against the test Redis.

use std::sync::Arc;

use chat_shared::config::MAX_CONNECTION_LIFETIME;
use chat_shared::rooms::{
    ANNOUNCEMENT_BURST, Admission, Announce, Entered, Limits, MemoryRoomStore, Policy,
    PublishOutcome, RedisRoomStore, Retention, RoomStore, Sender, Someone, Spent,
};
use chat_shared::wire::{ConnectionId, DisplayName, RoomName, SourceAddress, Uid};
use wschat_tests::{redis_url, unique_prefix};

/// Which store a check runs against.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    Redis,
}

async fn store_with(kind: Kind, limits: Limits, retention: Retention) -> Arc<dyn RoomStore> {
    let policy = Policy { limits, retention };
    match kind {
        Kind::Memory => Arc::new(MemoryRoomStore::default().with_policy(policy)),
        Kind::Redis => Arc::new(
            RedisRoomStore::connect(&redis_url(), &unique_prefix(), MAX_CONNECTION_LIFETIME)
                .await
                .expect("Redis reachable")
                .with_policy(policy),
        ),
    }
}

/// `name_in_memory` and `name_in_redis` for each check.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn in_memory() {
                    super::$name(super::Kind::Memory).await;
                }
                #[tokio::test]
                async fn in_redis() {
                    super::$name(super::Kind::Redis).await;
                }
            }
        )*
    };
}

both_stores!(
    a_frame_budget_refuses_past_its_burst_waits_for_its_rate_and_closes_far_past_it,
    an_address_is_refused_past_its_handshake_rate_and_its_live_connections,
    presence_damping_lets_a_burst_out_then_one_a_second_and_asks_watchers_to_recount,
    a_history_is_bounded_by_bytes_and_answered_a_page_at_a_time,
    a_signed_in_user_s_tabs_are_one_person_who_arrives_with_the_first_and_leaves_with_the_last,
    a_stored_chat_frame_is_byte_for_byte_the_one_chat_frame_makes,
    a_message_sent_again_with_its_id_pays_the_chat_rate_each_time,
);

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).expect("id")
}

fn room(raw: &str) -> RoomName {
    RoomName::parse(raw).expect("room")
}

/// An anonymous sender connected at time 0, with no message id.
fn anonymous(conn: &ConnectionId) -> Sender<'_> {
    Sender {
        conn,
        connected_at_ms: 0,
        message_id: None,
        remember_ms: chat_shared::rooms::SEEN_FOR_MS,
        user: None,
        uid: None,
    }
}

async fn a_frame_budget_refuses_past_its_burst_waits_for_its_rate_and_closes_far_past_it(
    kind: Kind,
) {
    let limits = Limits {
        frames_per_sec: 2,
        frame_burst: 3,
        ..Limits::default()
    };
    let store = store_with(kind, limits, Retention::default()).await;
    let (a, b) = (id("a"), id("b"));

    let mut spent = Vec::new();
    for _ in 0..3 {
        spent.push(store.spend(&a, 1_000).await.expect("counted"));
    }
    let refused = store.spend(&a, 1_000).await.expect("counted");

    assert_eq!(spent, [Spent::Granted; 3]);
    assert_eq!(
        refused,
        Spent::Refused {
            retry_after_ms: 1000,
            close: false
        },
        "in debt by one: two tokens to earn back at two a second"
    );
    assert_eq!(
        store.spend(&b, 1_000).await.expect("counted"),
        Spent::Granted,
        "another connection has a budget of its own"
    );
    let after_a_while = store.spend(&a, 3_000).await.expect("counted");
    assert_eq!(
        after_a_while,
        Spent::Granted,
        "two seconds earned 4 tokens back"
    );
    let mut last = Spent::Granted;
    for _ in 0..8 {
        last = store.spend(&a, 3_000).await.expect("counted");
        if matches!(last, Spent::Refused { close: true, .. }) {
            break;
        }
    }
    assert!(
        matches!(last, Spent::Refused { close: true, .. }),
        "hammering into a debt of a whole burst closes: {last:?}"
    );
}

async fn an_address_is_refused_past_its_handshake_rate_and_its_live_connections(kind: Kind) {
    let limits = Limits {
        handshakes_per_min: 3,
        connections_per_address: 2,
        ..Limits::default()
    };
    let store = store_with(kind, limits, Retention::default()).await;
    let (here, there) = (
        SourceAddress::parse("203.0.113.1").expect("ip"),
        SourceAddress::parse("203.0.113.2").expect("ip"),
    );

    let first = store.admit(&here, &id("c1"), 0).await.expect("counted");
    let second = store.admit(&here, &id("c2"), 0).await.expect("counted");
    let third = store.admit(&here, &id("c3"), 0).await.expect("counted");
    store.release(&here, &id("c1")).await.expect("released");
    let too_fast = store.admit(&here, &id("c4"), 0).await.expect("counted");
    let elsewhere = store.admit(&there, &id("c5"), 0).await.expect("counted");
    let a_minute_on = store
        .admit(&here, &id("c6"), 20_000)
        .await
        .expect("counted");

    assert_eq!((first, second), (Admission::Admitted, Admission::Admitted));
    assert_eq!(third, Admission::TooMany, "two live connections already");
    assert_eq!(
        too_fast,
        Admission::TooFast {
            retry_after_ms: 20_000
        },
        "three handshakes a minute, each counted"
    );
    assert_eq!(elsewhere, Admission::Admitted);
    assert_eq!(
        a_minute_on,
        Admission::Admitted,
        "a token back, and c1's slot free again"
    );

    // An IPv6 address counts with the rest of its /64: hopping inside it buys nothing.
    let in_one_64 = ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3"];
    let mut hops = Vec::new();
    for (n, raw) in in_one_64.iter().enumerate() {
        let address = SourceAddress::parse(raw).expect("ip");
        hops.push(
            store
                .admit(&address, &id(&format!("v{n}")), 0)
                .await
                .expect("counted"),
        );
    }
    let next_64 = SourceAddress::parse("2001:db8:7:8::1").expect("ip");
    assert_eq!(
        hops,
        [Admission::Admitted, Admission::Admitted, Admission::TooMany],
        "one /64, two live connections"
    );
    assert_eq!(
        store.admit(&next_64, &id("v9"), 0).await.expect("counted"),
        Admission::Admitted,
        "another /64 is another subscriber"
    );
}

async fn presence_damping_lets_a_burst_out_then_one_a_second_and_asks_watchers_to_recount(
    kind: Kind,
) {
    let store = store_with(kind, Limits::default(), Retention::default()).await;
    let lobby = room("lobby");
    let mut announced = Vec::new();
    for n in 0..15 {
        let conn = id(&format!("c{n}"));
        let entered = store
            .join(&lobby, &conn, 1_000, None, None)
            .await
            .expect("join");
        let Entered::Joined { announce, .. } = entered else {
            panic!("{entered:?}")
        };
        announced.push(announce);
    }
    let later = store
        .leave(&id("c0"), None, 2_500)
        .await
        .expect("leave")
        .expect("was there");

    let allowed: usize = announced.iter().map(|a| a.allowed).sum();
    assert_eq!(allowed, ANNOUNCEMENT_BURST as usize);
    assert!(announced[..9].iter().all(|a| !a.recount));
    assert!(
        announced[9].recount,
        "the one that empties the bucket warns"
    );
    assert_eq!(
        later.announce,
        Announce {
            allowed: 1,
            recount: true
        },
        "a second and a half later one goes out, saying some were merged away"
    );
}

async fn a_history_is_bounded_by_bytes_and_answered_a_page_at_a_time(kind: Kind) {
    let retention = Retention {
        max_bytes: 1_000,
        page_bytes: 300,
        ..Retention::default()
    };
    let store = store_with(kind, Limits::default(), retention).await;
    let lobby = room("lobby");
    let sender = id("a");
    for n in 0..20 {
        let who = anonymous(&sender);
        let text = format!("\"message number {n:02}\"");
        store
            .publish(&lobby, &who, &text, 1_000 + n)
            .await
            .expect("published");
    }

    let recent = store
        .history(&lobby, None, None, 2_000)
        .await
        .expect("read");
    let first_page = store
        .history(&lobby, Some(0), None, 2_000)
        .await
        .expect("read");

    let bytes = |frames: &[String]| frames.iter().map(String::len).sum::<usize>();
    let seq = |frame: &String| {
        serde_json::from_str::<serde_json::Value>(frame).expect("json")["seq"]
            .as_u64()
            .expect("seq")
    };
    assert!(bytes(&recent.frames) <= 300 && !recent.frames.is_empty());
    assert_eq!(
        recent.frames.last().map(seq),
        Some(20),
        "the newest messages"
    );
    assert!(!recent.complete && !recent.more);
    assert!(bytes(&first_page.frames) <= 300);
    assert!(first_page.more, "more follow");
    assert!(
        !first_page.complete,
        "the oldest were trimmed to stay under 1,000 bytes"
    );
    let oldest = seq(&first_page.frames[0]);
    assert!(oldest > 1, "{oldest}");
    let mut after = first_page.frames.last().map(seq).expect("a frame");
    let mut pages = 1;
    loop {
        let page = store
            .history(&lobby, Some(after), None, 2_000)
            .await
            .expect("read");
        assert_eq!(
            page.frames.first().map(seq),
            Some(after + 1),
            "no gap between pages"
        );
        after = page.frames.last().map(seq).expect("a frame");
        pages += 1;
        if !page.more {
            break;
        }
        assert!(pages < 20, "bounded");
    }
    assert_eq!(after, 20);
}

async fn a_signed_in_user_s_tabs_are_one_person_who_arrives_with_the_first_and_leaves_with_the_last(
    kind: Kind,
) {
    let store = store_with(kind, Limits::default(), Retention::default()).await;
    let lobby = room("lobby");
    let (ann, bob) = (
        DisplayName::parse("Ann").expect("name"),
        DisplayName::parse("Bob").expect("name"),
    );
    let (u_ann, u_bob) = (
        Uid::parse("u-ann").expect("uid"),
        Uid::parse("u-bob").expect("uid"),
    );
    let store = store.as_ref();
    let arrivals = [
        joined(store, &lobby, "ann-tab-1", Some((&ann, &u_ann))).await,
        joined(store, &lobby, "ann-tab-2", Some((&ann, &u_ann))).await,
        joined(store, &lobby, "anonymous", None).await,
        joined(store, &lobby, "bob-tab-1", Some((&bob, &u_bob))).await,
        joined(store, &lobby, "ann-tab-1", Some((&ann, &u_ann))).await,
    ];
    let present = store
        .presence(&lobby, &id("anonymous"), 2_000)
        .await
        .expect("presence");
    let first_out = store
        .leave(&id("ann-tab-1"), Some(&lobby), 2_000)
        .await
        .expect("left")
        .expect("was in a room");
    let last_out = store
        .leave(&id("ann-tab-2"), Some(&lobby), 2_000)
        .await
        .expect("left")
        .expect("was in a room");

    assert_eq!(
        arrivals,
        [(true, 1), (false, 1), (true, 2), (true, 3), (false, 3)],
        "Ann's second tab and a rejoin are no news, and people are counted once"
    );
    let person = |name: &str, uid: &str| Someone {
        name: Some(name.to_owned()),
        uid: Some(uid.to_owned()),
    };
    assert_eq!(present.count, 3);
    assert_eq!(
        present.names,
        [person("Ann", "u-ann"), person("Bob", "u-bob")]
    );
    assert_eq!(
        (first_out.names, first_out.count),
        (vec![], 3),
        "Ann is still here"
    );
    assert_eq!(
        (last_out.names, last_out.count),
        (vec![person("Ann", "u-ann")], 2),
        "Ann left with her last tab"
    );
}

/// Joins `conn` to `room` (signed in as `who`, or anonymous): whether it was news, and the people now.
async fn joined(
    store: &dyn RoomStore,
    room: &RoomName,
    conn: &str,
    who: Option<(&DisplayName, &Uid)>,
) -> (bool, usize) {
    let entered = store
        .join(room, &id(conn), 1_000, who.map(|w| w.0), who.map(|w| w.1))
        .await
        .expect("joined");
    match entered {
        Entered::Joined { fresh, count, .. } => (fresh, count),
        Entered::RoomFull => panic!("not full"),
    }
}

async fn a_stored_chat_frame_is_byte_for_byte_the_one_chat_frame_makes(kind: Kind) {
    let store = store_with(kind, Limits::default(), Retention::default()).await;
    let lobby = room("lobby");
    let (conn, name, uid) = (
        id("a"),
        DisplayName::parse("Ann \"the\" <b>").expect("name"),
        Uid::parse("sub|\u{e9}\"1\"").expect("uid"),
    );
    let senders = [(None, None), (Some(&name), None), (Some(&name), Some(&uid))];

    for (n, (user, uid)) in senders.into_iter().enumerate() {
        let sender = Sender {
            user,
            uid,
            ..anonymous(&conn)
        };
        let json =
            serde_json::to_string(&format!("message {n}: \u{1F600} \"quoted\"")).expect("JSON");
        let PublishOutcome::Published(published) = store
            .publish(&lobby, &sender, &json, 1_000 + n as i64)
            .await
            .expect("published")
        else {
            panic!("not rate limited");
        };

        assert_eq!(
            published.frame,
            chat_shared::wire::chat_frame(
                &json,
                user,
                uid,
                published.seq,
                &published.epoch,
                published.ts
            ),
            "sender {n}"
        );
    }
}

/// A resend with a message id is stored once, but each resend goes out to every member again: it pays the chat
/// rate like a new message, or resending one id would be a free fan-out.
async fn a_message_sent_again_with_its_id_pays_the_chat_rate_each_time(kind: Kind) {
    let limits = Limits {
        messages_per_sec: 1,
        burst: 3,
        ..Limits::default()
    };
    let store = store_with(kind, limits, Retention::default()).await;
    let lobby = room("lobby");
    let sender = id("a");
    let who = Sender {
        message_id: Some("c:a:m-1"),
        remember_ms: chat_shared::rooms::CLIENT_IDS_FOR_MS,
        ..anonymous(&sender)
    };
    let mut seqs = Vec::new();
    for _ in 0..3 {
        match store.publish(&lobby, &who, "\"once\"", 1_000).await {
            Ok(PublishOutcome::Published(published)) => seqs.push(published.seq),
            other => panic!("within the burst: {other:?}"),
        }
    }
    let fourth = store.publish(&lobby, &who, "\"once\"", 1_000).await;

    assert_eq!(seqs, [1, 1, 1], "stored once, the same seq each time");
    assert!(
        matches!(fourth, Ok(PublishOutcome::RateLimited { retry_after_ms }) if retry_after_ms > 0),
        "past the burst, a resend is refused like any message: {fourth:?}"
    );
    let history = store
        .history(&lobby, Some(0), None, 1_000)
        .await
        .expect("read");
    assert_eq!(history.frames.len(), 1);
}
