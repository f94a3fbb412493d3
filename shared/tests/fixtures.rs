//! The event fixtures in `tests/fixtures/` (also used with `cargo lambda invoke --data-file`) run through the
//! functions as the Lambda runtime runs them (the event parsed at the edge, then the handler), with the in-memory
//! fakes: a whole connection's life, $connect to $disconnect.

use std::sync::Arc;

use chat_shared::WebsocketRequest;
use chat_shared::fanout::FanoutSettings;
use chat_shared::functions::{Function as _, WsAuthorize, WsConnect, WsDefault, WsDisconnect};
use chat_shared::gateway::RecordingGateway;
use chat_shared::handlers::{connect, default, disconnect};
use chat_shared::rooms::{MemoryRoomStore, RoomStore as _};
use chat_shared::wire::{ConnectionId, RoomName};

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} does not deserialize: {e}"))
}

#[tokio::test]
async fn a_connection_lives_through_the_fixture_events() {
    let store = Arc::new(MemoryRoomStore::default());
    let gateway = Arc::new(RecordingGateway::new());
    let room = RoomName::parse("lobby").expect("room");
    let conn = ConnectionId::parse("CAqG8dL3DoECF3g=").expect("id");

    let auth = WsAuthorize::handle(&Default::default(), &fixture("authorize.json"), None)
        .await
        .expect("authorized");
    assert_eq!(
        auth.context.get("room").and_then(|v| v.as_str()),
        Some("lobby")
    );

    let connect_deps = connect::Deps {
        rooms: store.clone(),
        origins: Default::default(),
        announcer: None,
        auth_required: false,
    };
    let resp = WsConnect::handle(
        &connect_deps,
        &fixture::<WebsocketRequest>("connect.json"),
        None,
    )
    .await
    .expect("connect");
    assert_eq!(resp.status_code, 200);
    assert_eq!(
        store
            .members(&room, 1_795_598_364_250)
            .await
            .expect("members"),
        vec![conn.clone()]
    );

    let default_deps = default::Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
        sharding: None,
        max_message_bytes: chat_shared::config::DEFAULT_MAX_MESSAGE_BYTES,
        token_leeway_secs: 60,
    };
    let resp = WsDefault::handle(
        &default_deps,
        &fixture::<WebsocketRequest>("default.json"),
        None,
    )
    .await
    .expect("default");
    assert_eq!(resp.status_code, 200);
    let received: Vec<serde_json::Value> = gateway
        .received(&conn)
        .iter()
        .map(|f| serde_json::from_str(f).expect("JSON"))
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["message"], "Hello, lobby! \"quoted\" 로비 😀");
    assert_eq!(received[0]["seq"], 1);
    assert!(received[0]["epoch"].is_string() && received[0]["ts"].is_i64());

    let disconnect_deps = disconnect::Deps {
        rooms: store.clone(),
        announcer: None,
    };
    let resp = WsDisconnect::handle(
        &disconnect_deps,
        &fixture::<WebsocketRequest>("disconnect.json"),
        None,
    )
    .await
    .expect("disconnect");
    assert_eq!(resp.status_code, 200);
    assert!(
        store
            .members(&room, 1_795_598_402_133)
            .await
            .expect("members")
            .is_empty()
    );
}
