//! The Redis room store over TLS and on a Redis Cluster, the two shapes of a deployed Redis (a managed Redis
//! behind `rediss://`, ElastiCache Serverless in cluster mode), against real servers these tests start themselves:
//! a TLS redis-server with a throw-away CA, and 3-node clusters, plain and TLS. Everything goes through
//! `connect_store`, the function the Lambda functions call at cold start.
//!
//! The servers come from `wschat_tests::redis_servers`; without `redis-server`, `redis-cli` or `openssl` the
//! tests fail with a message saying so: they never skip.

use std::collections::BTreeSet;
use std::sync::Arc;

use chat_shared::WebsocketRequest;
use chat_shared::config::{Config, REDIS_CA_CERT_PATH, REDIS_CLUSTER, REDIS_KEY_PREFIX, REDIS_URL};
use chat_shared::fanout::FanoutSettings;
use chat_shared::functions::{Function as _, WsDefault};
use chat_shared::gateway::RecordingGateway;
use chat_shared::handlers::{default, error_chain, now_ms};
use chat_shared::rooms::{PublishOutcome, RoomStore, SEEN_FOR_MS, Sender};
use chat_shared::startup::{StartupError, connect_store};
use chat_shared::wire::{ConnectionId, RoomName};
use serde_json::json;
use wschat_tests::redis_servers::{Cluster, Pki, Servers, tls_server};
use wschat_tests::unique_prefix;

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).expect("id")
}

fn room(raw: &str) -> RoomName {
    RoomName::parse(raw).expect("room")
}

fn config(vars: &[(&str, String)]) -> Config {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("valid configuration")
}

/// Joins two members to a room, reads them back, makes one leave: the store's whole life cycle.
async fn join_members_leave(store: &dyn RoomStore, stem: &str) {
    let lobby = room(&wschat_tests::unique_room(stem));
    store
        .join(&lobby, &id("a="), now_ms(), None, None)
        .await
        .expect("join a");
    store
        .join(&lobby, &id("b="), now_ms(), None, None)
        .await
        .expect("join b");

    let mut members = store.members(&lobby, now_ms()).await.expect("members");
    members.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(members, vec![id("a="), id("b=")]);
    assert_eq!(
        store.room_of(&id("a=")).await.expect("room_of"),
        Some(lobby.clone())
    );

    assert_eq!(
        store
            .leave(&id("a="), None, 0)
            .await
            .expect("leave")
            .map(|departed| departed.room),
        Some(lobby.clone())
    );
    assert_eq!(
        store.members(&lobby, now_ms()).await.expect("members"),
        vec![id("b=")]
    );
    assert_eq!(store.room_of(&id("a=")).await.expect("room_of"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_joins_lists_and_leaves_over_tls_trusting_the_configured_ca() {
    let mut servers = Servers::scratch();
    let pki = Pki::generate(&servers.dir);
    let port = tls_server(&mut servers, &pki).await;
    let cfg = config(&[
        (REDIS_URL, format!("rediss://127.0.0.1:{port}")),
        (REDIS_CA_CERT_PATH, pki.ca.display().to_string()),
        (REDIS_KEY_PREFIX, unique_prefix().to_string()),
    ]);

    let store = connect_store(&cfg).await.expect("TLS connection");

    join_members_leave(store.as_ref(), "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_the_client_does_not_trust_is_refused() {
    let mut servers = Servers::scratch();
    let pki = Pki::generate(&servers.dir);
    let port = tls_server(&mut servers, &pki).await;
    let url = format!("rediss://127.0.0.1:{port}");

    // Trusting another CA, then the system's roots (which never include a CA made a moment ago).
    let other_ca = connect_store(&config(&[
        (REDIS_URL, url.clone()),
        (REDIS_CA_CERT_PATH, pki.other_ca.display().to_string()),
    ]))
    .await;
    let system_roots = connect_store(&config(&[(REDIS_URL, url.clone())])).await;
    // redis-rs is built without `tls-rustls-insecure`: the URL cannot turn verification off either.
    let insecure = connect_store(&config(&[
        (REDIS_URL, format!("{url}/#insecure")),
        (REDIS_CA_CERT_PATH, pki.other_ca.display().to_string()),
    ]))
    .await;

    for (what, result) in [
        ("another CA", other_ca),
        ("the system roots", system_roots),
        ("#insecure", insecure),
    ] {
        let err = result
            .err()
            .unwrap_or_else(|| panic!("trusting {what}, the connection was accepted"));
        let chain = error_chain(&err);
        assert!(matches!(err, StartupError::Store(_)), "{what}: {chain}");
        let expected = if what == "#insecure" {
            "insecure"
        } else {
            "UnknownIssuer"
        };
        assert!(chain.contains(expected), "{what}: {chain}");
    }
}

/// A room of the store's schema whose key lands on each node, and for each room two connections whose keys land
/// on other nodes than the room's, so every join, leave and prune spans nodes.
async fn spread(cluster: &Cluster, prefix: &str) -> Vec<(RoomName, Vec<ConnectionId>)> {
    let mut admin = cluster.node(cluster.ports[0]).await;
    let mut rooms = Vec::new();
    let mut used_nodes = BTreeSet::new();
    for n in 0.. {
        assert!(n < 10_000, "no room names spread over the 3 nodes");
        let name = format!("room{n}");
        let node = cluster
            .owner(&mut admin, &format!("{prefix}room:{{{name}}}"))
            .await;
        if !used_nodes.insert(node) {
            continue;
        }
        let mut members = Vec::new();
        for m in 0.. {
            assert!(m < 10_000, "no connection ids off node {node}");
            let conn = format!("{name}-c{m}=");
            if cluster
                .owner(&mut admin, &format!("{prefix}conn:{{{conn}}}"))
                .await
                != node
            {
                members.push(id(&conn));
                if members.len() == 2 {
                    members.sort_by(|x, y| x.as_str().cmp(y.as_str()));
                    break;
                }
            }
        }
        rooms.push((room(&name), members));
        if used_nodes.len() == cluster.ports.len() {
            return rooms;
        }
    }
    unreachable!("the loop returns or panics")
}

async fn cluster_store(cluster: &Cluster, pki: Option<&Pki>) -> (Arc<dyn RoomStore>, String) {
    let prefix = unique_prefix().to_string();
    let mut vars = vec![
        (REDIS_URL, cluster.url()),
        (REDIS_CLUSTER, "true".to_owned()),
        (REDIS_KEY_PREFIX, prefix.clone()),
    ];
    if let Some(pki) = pki {
        vars.push((REDIS_CA_CERT_PATH, pki.ca.display().to_string()));
    }
    let store = connect_store(&config(&vars))
        .await
        .unwrap_or_else(|e| panic!("cluster connection: {}", error_chain(&e)));
    (store, prefix)
}

/// Join, members, room_of, leave (with and without the room hint) and prune in rooms on every node, each
/// membership's two keys on different nodes; then checks where the keys live and that no node ever had to
/// redirect a request (`MOVED`): every command, pipeline and script went straight to the node owning its key.
async fn store_life_cycle_across_nodes(cluster: &Cluster, pki: Option<&Pki>) {
    let (store, prefix) = cluster_store(cluster, pki).await;
    let rooms = spread(cluster, &prefix).await;
    let joined_at = now_ms();

    for (room, members) in &rooms {
        for conn in members {
            store
                .join(room, conn, joined_at, None, None)
                .await
                .expect("join");
        }
    }

    for (room, members) in &rooms {
        let mut listed = store.members(room, now_ms()).await.expect("members");
        listed.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(&listed, members, "members of {room}");
        for conn in members {
            assert_eq!(
                store.room_of(conn).await.expect("room_of").as_ref(),
                Some(room)
            );
            assert!(cluster.holds(&format!("{prefix}conn:{{{conn}}}")).await);
        }
        assert!(cluster.holds(&format!("{prefix}room:{{{room}}}")).await);
    }
    let mut admin = cluster.node(cluster.ports[0]).await;
    let mut room_nodes = BTreeSet::new();
    for (room, _) in &rooms {
        room_nodes.insert(
            cluster
                .owner(&mut admin, &format!("{prefix}room:{{{room}}}"))
                .await,
        );
    }
    assert_eq!(room_nodes.len(), 3, "the rooms live on all three nodes");

    let (first_room, first) = &rooms[0];
    let (second_room, second) = &rooms[1];
    let (third_room, third) = &rooms[2];
    assert_eq!(
        store
            .leave(&first[0], None, 0)
            .await
            .expect("leave")
            .map(|departed| departed.room),
        Some(first_room.clone())
    );
    assert_eq!(
        store
            .leave(&second[0], Some(second_room), 0)
            .await
            .expect("leave")
            .map(|departed| departed.room),
        Some(second_room.clone())
    );
    store.prune(third_room, third, 0).await.expect("prune");

    assert_eq!(
        store.members(first_room, now_ms()).await.expect("members"),
        vec![first[1].clone()]
    );
    assert_eq!(
        store.members(second_room, now_ms()).await.expect("members"),
        vec![second[1].clone()]
    );
    assert!(
        store
            .members(third_room, now_ms())
            .await
            .expect("members")
            .is_empty()
    );
    for gone in [&first[0], &second[0], &third[0], &third[1]] {
        assert_eq!(store.room_of(gone).await.expect("room_of"), None);
        assert!(!cluster.holds(&format!("{prefix}conn:{{{gone}}}")).await);
    }
    for port in &cluster.ports {
        assert_eq!(
            cluster.error_count(*port, "MOVED").await,
            0,
            "node {port} redirected a request"
        );
        assert_eq!(
            cluster.error_count(*port, "CROSSSLOT").await,
            0,
            "node {port} refused a cross-slot request"
        );
        assert!(
            cluster.calls(*port, "evalsha").await > 0,
            "the members script ran on node {port}, which holds a room"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_across_the_nodes_of_a_redis_cluster() {
    let mut servers = Servers::scratch();
    let cluster = Cluster::start(&mut servers, None).await;

    store_life_cycle_across_nodes(&cluster, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_on_a_tls_cluster_like_elasticache_serverless() {
    let mut servers = Servers::scratch();
    let pki = Pki::generate(&servers.dir);
    let cluster = Cluster::start(&mut servers, Some(&pki)).await;

    store_life_cycle_across_nodes(&cluster, Some(&pki)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_member_of_a_room_on_a_cluster_and_gone_members_are_pruned() {
    let mut servers = Servers::scratch();
    let cluster = Cluster::start(&mut servers, None).await;
    let (store, prefix) = cluster_store(&cluster, None).await;
    let rooms = spread(&cluster, &prefix).await;
    let (lobby, members) = &rooms[0];
    let (elsewhere, outsiders) = &rooms[1];
    let sender = &members[0];
    let gone = &members[1];
    // Joined a minute ago: past the grace period in which a 410 only means "not open yet".
    for conn in members {
        store
            .join(lobby, conn, now_ms() - 60_000, None, None)
            .await
            .expect("join");
    }
    for conn in outsiders {
        store
            .join(elsewhere, conn, now_ms(), None, None)
            .await
            .expect("join");
    }
    let gateway = Arc::new(RecordingGateway::new());
    gateway.mark_gone(gone);
    let deps = default::Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
        sharding: None,
        max_message_bytes: chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES,
        token_leeway_secs: 60,
    };
    // No authorizer context: the room comes from the sender's key, on another node than the room's.
    let event: WebsocketRequest = serde_json::from_value(json!({
        "requestContext": {
            "routeKey": "$default", "eventType": "MESSAGE", "connectionId": sender.as_str(), "messageId": "m1",
            "connectedAt": now_ms(), "requestTimeEpoch": now_ms(), "stage": "prod", "apiId": "x", "domainName": "d"
        },
        "body": r#"{"message":"hello, cluster"}"#,
        "isBase64Encoded": false
    }))
    .expect("event");

    let response = WsDefault::handle(&deps, &event, None)
        .await
        .expect("handled");

    assert_eq!(response.status_code, 200);
    let received = gateway.received(sender);
    assert_eq!(received.len(), 1, "{received:?}");
    let frame: serde_json::Value = serde_json::from_str(&received[0]).expect("JSON");
    assert_eq!(frame["message"], "hello, cluster");
    assert_eq!(frame["seq"], 1);
    for outsider in outsiders {
        assert!(
            gateway.received(outsider).is_empty(),
            "{outsider} is in another room"
        );
    }
    assert_eq!(
        store.members(lobby, now_ms()).await.expect("members"),
        vec![sender.clone()],
        "the gone member was pruned"
    );
    assert!(!cluster.holds(&format!("{prefix}conn:{{{gone}}}")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_in_a_cluster_the_first_message_is_stored_by_the_new_primary() {
    let mut servers = Servers::scratch();
    let cluster = Cluster::start(&mut servers, None).await;
    let (store, prefix) = cluster_store(&cluster, None).await;
    let lobby = room(&wschat_tests::unique_room("failover"));
    let history_key = format!("{prefix}history:{{{lobby}}}");
    let mut any = cluster.node(cluster.ports[0]).await;
    let primary = cluster.owner(&mut any, &history_key).await;
    let replica = cluster.add_replica(&mut servers, primary).await;
    let conn = id("L0SM9cOFvHcCIhw=");
    store
        .join(&lobby, &conn, now_ms(), None, None)
        .await
        .expect("join");
    let publish = |text: &'static str, n: u64| {
        let (store, lobby, conn) = (store.clone(), lobby.clone(), conn.clone());
        async move {
            let message_id = format!("m{n}");
            let sender = Sender {
                conn: &conn,
                connected_at_ms: now_ms(),
                message_id: Some(&message_id),
                remember_ms: SEEN_FOR_MS,
                user: None,
                uid: None,
            };
            match store
                .publish(&lobby, &sender, &format!("\"{text}\""), now_ms())
                .await
            {
                Ok(PublishOutcome::Published(published)) => published,
                other => panic!("{text}: {other:?}"),
            }
        }
    };
    let one = publish("one", 1).await;

    // The replica takes over; the old primary becomes its replica and answers MOVED (or READONLY) for the slot.
    cluster.failover(replica).await;
    let two = publish("two", 2).await;

    assert_eq!(two.seq, 2, "{two:?}");
    assert_ne!(
        two.epoch, one.epoch,
        "another server: a new epoch, the history carried over"
    );
    let held: i64 = redis::cmd("LLEN")
        .arg(&history_key)
        .query_async(&mut cluster.node(replica).await)
        .await
        .expect("LLEN");
    assert_eq!(held, 2, "the new primary holds both");
}
