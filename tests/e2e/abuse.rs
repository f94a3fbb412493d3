//! One hostile socket or address cannot take the chat down or run up the bill, with the default limits, in every
//! mode: a flood of requests is refused past its budget and closed, handshakes past an address's rate get 429,
//! a storm of joins and leaves reaches watchers damped and settles, a history answer is a page at a time, and a
//! flooded room's history stays bounded in Redis.

use std::time::{Duration, Instant};

use chat_shared::config::{
    Config, DEFAULT_CONNECT_RATE_PER_IP, DEFAULT_FRAME_BURST, DEFAULT_HISTORY_MAX_BYTES,
    DEFAULT_HISTORY_PAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES,
};
use chat_shared::rooms::ANNOUNCEMENT_BURST;
use serde_json::Value;
use tokio_tungstenite::tungstenite;
use wschat_emulator::Options;
use wschat_tests::{Mode, TestChat, WAIT, all_modes, redis_url, unique_address, unique_room};

all_modes!(
    a_request_flood_is_refused_past_its_budget_and_closed_while_another_room_chats,
    handshakes_past_an_address_rate_get_429_and_other_addresses_still_connect,
    a_storm_of_joins_and_leaves_reaches_a_watcher_damped_and_its_count_settles,
    a_history_answer_is_a_page_and_the_rest_follows_after_it,
);

async fn a_request_flood_is_refused_past_its_budget_and_closed_while_another_room_chats(
    mode: Mode,
) {
    let chat = TestChat::start(mode).await;
    let (flooded, quiet) = (unique_room("flooded"), unique_room("quiet"));
    let mut attacker = chat
        .join_from(&flooded, &unique_address())
        .await
        .expect("joined");
    let mut ann = chat.join(&quiet).await;
    let mut bob = chat.join(&quiet).await;

    let sent = 100;
    for _ in 0..sent {
        attacker.send_text(r#"{"action":"history"}"#).await;
    }
    ann.say("unbothered").await;
    let (frames, closed) = attacker.frames_until_closed(Duration::from_secs(10)).await;

    let answers = frames.iter().filter(|f| f.get("history").is_some()).count();
    let refusals: Vec<&Value> = frames.iter().filter(|f| f.get("error").is_some()).collect();
    assert!(closed, "a connection far past its budget is closed");
    assert!(
        answers <= DEFAULT_FRAME_BURST as usize + 4,
        "at most a burst and what the rate refills: {answers}"
    );
    assert!(!refusals.is_empty());
    assert!(
        refusals
            .iter()
            .all(|r| r["retryAfterMs"].as_u64().is_some()),
        "each refusal says how long to wait: {refusals:?}"
    );
    assert!(
        frames.len() < 2 * sent,
        "fewer frames out than twice the frames in: {}",
        frames.len()
    );
    assert_eq!(bob.recv_message().await, "unbothered");
    assert_eq!(ann.recv_message().await, "unbothered");
}

async fn handshakes_past_an_address_rate_get_429_and_other_addresses_still_connect(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("knock");
    let hammer = unique_address();
    let started = Instant::now();
    let mut accepted = 0_u32;
    let refusal = loop {
        assert!(
            accepted <= 2 * DEFAULT_CONNECT_RATE_PER_IP,
            "no refusal after {accepted} handshakes in {:?}",
            started.elapsed()
        );
        match chat.join_from(&room, &hammer).await {
            Ok(client) => {
                accepted += 1;
                client.close().await;
            }
            Err(err) => break err,
        }
    };

    let status = match &refusal {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    };
    assert_eq!(status, 429);
    assert!(
        accepted >= DEFAULT_CONNECT_RATE_PER_IP,
        "a minute's worth at once first: {accepted}"
    );
    let mut elsewhere = chat
        .join_from(&room, &unique_address())
        .await
        .expect("another address");
    elsewhere.say("in").await;
    assert_eq!(elsewhere.recv_message().await, "in");
}

async fn a_storm_of_joins_and_leaves_reaches_a_watcher_damped_and_its_count_settles(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("storm");
    let mut watcher = chat.join_as(&room, "Wanda").await;
    watcher.send_text(r#"{"action":"presence"}"#).await;
    assert_eq!(watcher.recv_json().await["presence"]["count"], 1);

    // Each newcomer from an address of its own: only the damping holds the storm, not the address limits.
    let storm = 30;
    let started = Instant::now();
    for _ in 0..storm {
        let client = chat
            .join_from(&room, &unique_address())
            .await
            .expect("joined");
        client.close().await;
    }
    let lasted = started.elapsed();
    let (told, _) = watcher.frames_until_closed(Duration::from_secs(2)).await;

    let events: Vec<&Value> = told
        .iter()
        .filter(|f| f.get("joined").is_some() || f.get("left").is_some())
        .collect();
    let allowed = ANNOUNCEMENT_BURST as f64 + lasted.as_secs_f64() + 3.0;
    assert!(
        (events.len() as f64) <= allowed,
        "{} events for {} joins and leaves in {lasted:?}",
        events.len(),
        2 * storm
    );
    assert!(
        events.iter().any(|e| e["recount"] == Value::Bool(true)),
        "the watcher is told to count again: {events:?}"
    );
    // What the page does on `recount`: ask again once things are calm. Within 5 s the count is right.
    let settled = Instant::now();
    loop {
        watcher.send_text(r#"{"action":"presence"}"#).await;
        let answer = loop {
            let frame = watcher.recv_json().await;
            if frame.get("presence").is_some() {
                break frame;
            }
        };
        if answer["presence"]["count"] == 1 {
            assert_eq!(answer["presence"]["members"], serde_json::json!(["Wanda"]));
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "still {answer} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn a_history_answer_is_a_page_and_the_rest_follows_after_it(mode: Mode) {
    let chat = TestChat::start(mode).await;
    let room = unique_room("pages");
    let mut ann = chat.join(&room).await;
    // Ten messages of 7,000 bytes: more than one page (32,000 bytes by default), well within the chat burst.
    let said: Vec<String> = (0..10)
        .map(|n| format!("{n}{}", "y".repeat(7_000)))
        .collect();
    for text in &said {
        ann.say(text).await;
        assert_eq!(&ann.recv_message().await, text);
    }

    let first = ann.history(Some(0), None).await;
    let mut seqs = first.seqs();
    let mut pages = vec![first.clone()];
    while pages.last().is_some_and(|page| page.more) {
        assert!(pages.len() < 10, "bounded");
        let after = seqs.last().copied().expect("a message");
        let page = ann.history(Some(after), Some(&first.epoch)).await;
        seqs.extend(page.seqs());
        pages.push(page);
    }
    let recent = ann.history(None, None).await;

    assert!(first.more, "more follow the first page");
    assert!(pages.len() > 1);
    for page in &pages {
        assert!(
            page.bytes <= DEFAULT_HISTORY_PAGE_BYTES + 200 && page.frames == 1,
            "a page is one frame, one billed message: {} bytes in {} frames",
            page.bytes,
            page.frames
        );
    }
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<u64>>(),
        "every message once, in order"
    );
    assert!(recent.bytes <= DEFAULT_HISTORY_PAGE_BYTES + 200);
    assert_eq!(
        recent.seqs().last(),
        Some(&10),
        "the most recent page ends at the newest"
    );
    assert!(!recent.complete, "and says it does not start at the first");
}

/// A room flooded with the longest messages keeps a bounded history: under 1 MB of Redis for all its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_room_stays_under_a_megabyte_of_redis() {
    // The chat rate limit is lifted so the flood fills the history in a second; the byte bound still holds.
    let config = Config {
        rate_limit_per_sec: 100_000,
        rate_limit_burst: 100_000,
        ..Config::default()
    };
    let chat = TestChat::start_configured(Mode::Redis, Options::default(), config).await;
    let room = unique_room("flood");
    let mut flooder = chat.join(&room).await;
    let biggest = "z".repeat(DEFAULT_MAX_MESSAGE_BYTES);
    let count = 2 * DEFAULT_HISTORY_MAX_BYTES / DEFAULT_MAX_MESSAGE_BYTES + 10;
    for _ in 0..count {
        flooder.say(&biggest).await;
    }
    for _ in 0..count {
        let frame = flooder.recv_json().await;
        assert!(frame.get("message").is_some(), "{frame}");
    }

    let prefix = chat.key_prefix().expect("a Redis prefix");
    let mut raw = redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let pattern = format!("{prefix}*{{{room}}}*");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut raw)
        .await
        .expect("keys");
    let mut total = 0_u64;
    for key in &keys {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(&mut raw)
            .await
            .expect("memory usage");
        total += used.unwrap_or(0);
    }
    let history = flooder.history(Some(0), None).await;

    assert!(!keys.is_empty());
    assert!(total < 1024 * 1024, "{total} bytes in {keys:?}");
    assert!(
        !history.complete,
        "the oldest were trimmed, and readers are told"
    );
    tokio::time::timeout(WAIT, flooder.close())
        .await
        .expect("closed");
}
