//! Operating it: what the functions report of a whole chat session, as the Embedded Metric Format lines
//! CloudWatch reads (checked against the specification, `wschat_tests::emf`), and the emulator's refusal of what
//! a web page could forge against it.
//!
//! The metrics session runs `in_redis` (the handlers in process: the lines the emulator keeps, `/_emulator/emf`) and
//! `in_lambda` (the real binaries of the fault stack, which print them to stdout as in Lambda: read from their
//! log, `WSCHAT_FAULT_FUNCTION_LOG`). The fault stack serves one test at a time, so every line there after the
//! test began is this session's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chat_shared::metrics::Metric;
use serde_json::{Value, json};
use wschat_emulator::Options;
use wschat_tests::emf::{self, Declared};
use wschat_tests::redis_servers::FaultRedis;
use wschat_tests::{Client, Mode as ChatMode, TestChat, WAIT, http, unique_room};

use crate::faults::{Mode, env_port, fault_emulator};

fault_modes!(a_chat_session_reports_every_metric_in_valid_emf_lines);

/// What the emulator serves on `path`, as JSON.
async fn get_json(base: &str, path: &str) -> Value {
    let (status, body) = http("GET", &format!("{base}{path}"), &[], Vec::new()).await;
    assert_eq!(status, 200, "{path}");
    serde_json::from_slice(&body).expect("JSON")
}

async fn set_faults(base: &str, change: Value) {
    let (status, body) = http(
        "POST",
        &format!("{base}/_emulator/faults"),
        &[("content-type", "application/json")],
        change.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

fn now_ms() -> u64 {
    u64::try_from(chat_shared::handlers::now_ms()).expect("after 1970")
}

/// The EMF lines the functions wrote since `since_ms`: kept by the emulator in process, printed by the binaries
/// in Lambda mode.
async fn lines(mode: Mode, base: &str, since_ms: u64) -> Vec<String> {
    match mode {
        Mode::Redis => get_json(base, "/_emulator/emf").await["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|line| line.as_str().expect("a line").to_owned())
            .collect(),
        Mode::Lambda => {
            let path = std::env::var("WSCHAT_FAULT_FUNCTION_LOG").expect(
                "WSCHAT_FAULT_FUNCTION_LOG is not set: run the tests with `make test` (tools/scripts/lambda-stack.sh)",
            );
            let log = std::fs::read_to_string(&path).expect("the fault stack's log");
            log.lines()
                .filter(|line| line.starts_with('{') && line.contains("\"_aws\""))
                .filter(|line| {
                    serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v["_aws"]["Timestamp"].as_u64())
                        .is_some_and(|at| at >= since_ms)
                })
                .map(str::to_owned)
                .collect()
        }
    }
}

/// (function, metric) → the units it was declared with and the sum of its values.
type Found = BTreeMap<(String, String), (Vec<Option<String>>, f64)>;

/// Every declared metric of `lines`, each line checked against the specification.
fn declared(lines: &[String]) -> Found {
    let mut found = Found::new();
    for line in lines {
        let metrics = emf::parse(line).unwrap_or_else(|why| panic!("{why}: {line}"));
        for Declared {
            namespace,
            dimensions,
            name,
            unit,
            value,
        } in metrics
        {
            assert_eq!(namespace, "wschat", "the default namespace");
            assert_eq!(dimensions.len(), 1, "one dimension set: {line}");
            let [(dimension, function)] = &dimensions[0][..] else {
                panic!("one dimension, the function: {line}");
            };
            assert_eq!(dimension, "Function");
            let entry = found.entry((function.clone(), name)).or_default();
            if !entry.0.contains(&unit) {
                entry.0.push(unit);
            }
            entry.1 += value;
        }
    }
    found
}

async fn a_chat_session_reports_every_metric_in_valid_emf_lines(mode: Mode) {
    // Arrange: a chat whose functions are this test's alone (the fault stack in Lambda mode).
    let since_ms = now_ms();
    let redis = match mode {
        Mode::Redis => FaultRedis::start().await,
        Mode::Lambda => FaultRedis::start_on(env_port("WSCHAT_FAULT_REDIS_PORT")).await,
    };
    let emulator = fault_emulator(mode, Options::default(), &redis.url()).await;
    let base = format!("http://{}", emulator.addr());
    let url = |room: &str| format!("ws://{}/local?room={room}", emulator.addr());
    let (room, elsewhere) = (unique_room("emf"), unique_room("emf_flood"));
    let mut carol = Client::connect(&url(&room), None).await.expect("carol");
    let carol_joined = Instant::now();
    let mut alice = Client::connect(&url(&room), None).await.expect("alice");
    let mut bob = Client::connect(&url(&room), None).await.expect("bob");
    let ids: Vec<String> = get_json(&base, "/_emulator/connections")
        .await
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["connectionId"].as_str().expect("id").to_owned())
        .collect();
    let bob_id = ids[2].clone();

    // Act: a refused handshake, a chat, a history, frames refused for each reason, posts throttled and pruned,
    // a disconnect.
    assert!(
        Client::connect(&url("not%20a%20room"), None).await.is_err(),
        "a bad room is refused"
    );
    alice.say("hello").await;
    for member in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(member.recv_message().await, "hello");
    }
    assert!(
        alice
            .history(None, None)
            .await
            .messages()
            .contains(&"hello".to_owned())
    );

    let mut dave = Client::connect(&url(&elsewhere), None).await.expect("dave");
    // Answered one at a time, before the flood: integrations run concurrently, and one of these meeting an
    // exhausted budget would be refused for that instead.
    dave.say(&"x".repeat(9000)).await;
    let too_long = dave.recv_json().await;
    dave.send_text("not a frame").await;
    let malformed = dave.recv_json().await;
    for _ in 0..25 {
        dave.say("flood").await;
    }
    for _ in 0..25 {
        dave.send_text(r#"{"action":"ping"}"#).await;
    }
    let (mut frames, _) = dave.frames_until_closed(Duration::from_secs(3)).await;
    frames.extend([too_long, malformed]);
    let errors: Vec<&str> = frames.iter().filter_map(|f| f["error"].as_str()).collect();
    for what in ["too long", "too many messages", "too many requests"] {
        assert!(
            errors.iter().any(|e| e.contains(what)),
            "{what} in {errors:?}"
        );
    }

    set_faults(&base, json!({ "throttleConnections": [bob_id] })).await;
    alice.say("bob is throttled").await;
    assert_eq!(alice.recv_message().await, "bob is throttled");
    let error = alice.recv_json().await;
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("2 of 3")),
        "{error}"
    );
    assert_eq!(carol.recv_message().await, "bob is throttled");
    set_faults(
        &base,
        json!({ "throttleConnections": [], "dropDisconnectRate": 1.0 }),
    )
    .await;

    // Carol leaves without a $disconnect once she is past the prune grace: the next fan-out prunes her.
    tokio::time::sleep(Duration::from_millis(5200).saturating_sub(carol_joined.elapsed())).await;
    carol.close().await;
    set_faults(&base, json!({ "dropDisconnectRate": 0.0 })).await;
    alice.say("carol is gone").await;
    assert_eq!(alice.recv_message().await, "carol is gone");
    bob.close().await;

    // Assert: every line is valid EMF, and the session's metrics are all there, each with its unit.
    let wanted = [
        ("ws-connect", Metric::Handshakes),
        ("ws-connect", Metric::HandshakesAccepted),
        ("ws-connect", Metric::HandshakesRefused),
        ("ws-connect", Metric::HandshakesRefusedInvalid),
        ("ws-authorize", Metric::Handshakes),
        ("ws-default", Metric::Frames),
        ("ws-default", Metric::ChatMessages),
        ("ws-default", Metric::Deliveries),
        ("ws-default", Metric::PostsThrottled),
        ("ws-default", Metric::PostsFailed),
        ("ws-default", Metric::PostsPruned),
        ("ws-default", Metric::FramesRefused),
        ("ws-default", Metric::FramesRefusedSize),
        ("ws-default", Metric::FramesRefusedMalformed),
        ("ws-default", Metric::FramesRefusedRate),
        ("ws-default", Metric::FramesRefusedBudget),
        ("ws-default", Metric::HistoryBytes),
        ("ws-default", Metric::FanoutTime),
        ("ws-default", Metric::RedisTime),
        ("ws-default", Metric::RedisRequests),
        ("ws-connect", Metric::RedisTime),
        ("ws-disconnect", Metric::Disconnects),
    ];
    let deadline = Instant::now() + WAIT;
    let found = loop {
        // The last invocations may still be writing (bob's $disconnect runs after his socket closed).
        let found = declared(&lines(mode, &base, since_ms).await);
        let complete = wanted
            .iter()
            .all(|(f, m)| found.contains_key(&((*f).to_owned(), m.name().to_owned())));
        if complete || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (function, metric) in wanted {
        let key = (function.to_owned(), metric.name().to_owned());
        let (units, total) = found
            .get(&key)
            .unwrap_or_else(|| panic!("{function} reported no {}: {found:?}", metric.name()));
        assert_eq!(units, &[Some(metric.unit().as_str().to_owned())], "{key:?}");
        assert!(*total > 0.0, "{key:?} = {total}");
    }
    let count = |f: &str, m: Metric| found[&(f.to_owned(), m.name().to_owned())].1;
    assert_eq!(count("ws-connect", Metric::HandshakesRefusedInvalid), 1.0);
    assert!(count("ws-default", Metric::ChatMessages) >= 3.0);
    assert!(count("ws-default", Metric::PostsPruned) >= 1.0);
    assert_eq!(
        count("ws-default", Metric::FramesRefused),
        count("ws-default", Metric::FramesRefusedSize)
            + count("ws-default", Metric::FramesRefusedMalformed)
            + count("ws-default", Metric::FramesRefusedRate)
            + count("ws-default", Metric::FramesRefusedBudget),
        "the total is the sum of the reasons"
    );
    drop(redis);
}

#[tokio::test]
async fn a_page_elsewhere_can_neither_post_to_the_emulator_nor_reach_it_under_another_name() {
    // Arrange
    let chat = TestChat::start(ChatMode::Memory).await;
    let faults_url = chat.http_url("/_emulator/faults");
    let before = get_json(&chat.http_url(""), "/_emulator/faults").await;
    let change = json!({ "goneRate": 1.0, "expire": "all" }).to_string();
    let mut member = chat.join(&unique_room("guarded")).await;

    // Act: what fetch(…, {mode: "no-cors"}) sends from any page, the same as JSON from another origin, and a
    // request under a name that resolves here (DNS rebinding).
    let (no_cors, _) = http(
        "POST",
        &faults_url,
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", "https://evil.example"),
        ],
        change.clone().into_bytes(),
    )
    .await;
    let (cross_origin, _) = http(
        "POST",
        &faults_url,
        &[
            ("content-type", "application/json"),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        change.clone().into_bytes(),
    )
    .await;
    let (rebound_post, _) = http(
        "POST",
        &faults_url,
        &[
            ("content-type", "application/json"),
            ("host", "evil.example"),
        ],
        change.into_bytes(),
    )
    .await;
    let (rebound_read, _) = http(
        "GET",
        &chat.http_url("/_emulator/connections"),
        &[("host", "evil.example")],
        Vec::new(),
    )
    .await;
    let (own_page, _) = http("GET", &chat.http_url("/_emulator/"), &[], Vec::new()).await;

    // Assert: each refused, nothing changed, nobody closed.
    assert_eq!(no_cors, 415);
    assert_eq!(cross_origin, 403);
    assert_eq!(rebound_post, 421);
    assert_eq!(rebound_read, 421);
    assert_eq!(own_page, 200);
    assert_eq!(
        get_json(&chat.http_url(""), "/_emulator/faults").await,
        before
    );
    member.say("still here").await;
    assert_eq!(member.recv_message().await, "still here");
}

/// The access string the template gives the cache's user (`CacheUser`), for the key prefix `prefix`.
fn template_access_string(prefix: &str) -> String {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ))
    .expect("infra/template.yaml");
    let line = template
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("AccessString: !Sub "))
        .expect("CacheUser's AccessString in the template");
    line.replace("${RedisKeyPrefix}", prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_runs_as_the_cache_user_the_template_makes_and_that_user_can_do_nothing_else() {
    // Arrange: a Redis user with exactly the template's access string, on a prefix of this test's own.
    let prefix = wschat_tests::unique_prefix();
    let (user, password) = (
        format!("wschat-{:08x}", fastrand::u32(..)),
        format!("{:032x}", fastrand::u128(..)),
    );
    let admin = redis::Client::open(wschat_tests::redis_url()).expect("the test Redis URL");
    let mut admin = admin
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis");
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER")
        .arg(&user)
        .arg("reset")
        .arg(format!(">{password}"));
    for rule in template_access_string(prefix.as_str()).split_whitespace() {
        acl.arg(rule);
    }
    let () = acl
        .query_async(&mut admin)
        .await
        .expect("the access string is valid ACL");
    let host = wschat_tests::redis_url()
        .trim_start_matches("redis://")
        .to_owned();
    let url = format!("redis://{user}:{password}@{host}");
    let config = chat_shared::config::Config {
        redis_url: Some(url.clone()),
        key_prefix: prefix.clone(),
        ..chat_shared::config::Config::default()
    };
    let backend =
        wschat_emulator::BackendChoice::InProcess(wschat_emulator::backend::InProcessOptions {
            store: wschat_emulator::backend::StoreChoice::Redis,
            config,
            posts: wschat_emulator::backend::Posts::InMemory,
        });
    let emulator = wschat_emulator::Emulator::start(
        "127.0.0.1:0".parse().expect("address"),
        Options::default(),
        backend,
    )
    .await
    .expect("the emulator starts as the cache user");
    let room = unique_room("acl");
    let url_of = |name: &str| format!("ws://{}/local?room={room}&name={name}", emulator.addr());

    // Act: everything the chat does (join with names, presence, chat, history, ping, leave).
    chat_shared::telemetry::init();
    let mut ann = Client::connect(&url_of("Ann"), None)
        .await
        .expect("Ann joins");
    ann.send_text(r#"{"action":"presence"}"#).await;
    let mut seen = vec![ann.recv_json().await];
    let mut bob = Client::connect(&url_of("Bob"), None)
        .await
        .expect("Bob joins");
    bob.say("hello").await;
    for _ in 0..2 {
        seen.push(ann.recv_json().await);
    }
    let history = bob.history(None, None).await;
    let pong = bob.pong().await;
    bob.close().await;
    let left = ann.recv_json().await;

    // Assert: it all worked, and the same user is refused what the access string leaves out.
    assert!(seen.iter().any(|f| f["message"] == "hello"), "{seen:?}");
    assert!(seen.iter().any(|f| f["joined"] == "Bob"), "{seen:?}");
    assert_eq!(history.messages(), ["hello"]);
    assert!(pong["pong"].is_i64(), "{pong}");
    assert_eq!(left["left"], "Bob", "{left}");
    let mut as_user = redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the user connects");
    for (command, args) in [
        ("FLUSHALL", vec![]),
        ("CONFIG", vec!["GET", "maxmemory"]),
        ("KEYS", vec!["*"]),
        ("ACL", vec!["LIST"]),
        ("CLIENT", vec!["LIST"]),
        ("GET", vec!["another-app:secret"]),
    ] {
        let refused: redis::RedisResult<redis::Value> = redis::cmd(command)
            .arg(&args)
            .query_async(&mut as_user)
            .await;
        let err = refused.expect_err(command);
        assert_eq!(err.code(), Some("NOPERM"), "{command}: {err}");
    }
    // The scripts read the server's run id (a restart starts a new epoch): INFO is let back in.
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut as_user)
        .await
        .expect("INFO is allowed");
    assert!(info.contains("run_id:"), "{info}");
    let own: Option<String> = redis::cmd("GET")
        .arg(format!("{}x", prefix.as_str()))
        .query_async(&mut as_user)
        .await
        .expect("its own keys");
    assert_eq!(own, None);
    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("cleaned up");
}
