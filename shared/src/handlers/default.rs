//! `$default`: every frame a client sends that no other route takes. Three kinds ([`ClientFrame`]):
//! * chat `{"message"}`: numbered and stored in the room's history, then fanned out to every member of the
//!   sender's room, the sender included (one Redis round trip: [`RoomStore::publish`]);
//! * `{"action": "history"}`: the retained messages after a seq, to the sender alone, in frames under 32 KB;
//! * `{"action": "ping"}`: `{"pong"}` to the sender, after writing its membership again.
//!
//! History and ping could be routes of their own (route selection is `$request.body.action`), but they need
//! exactly `$default`'s dependencies, and one function keeps one warm container and one place that knows the
//! protocol: the template routes only `$connect`, `$disconnect` and `$default`.
//!
//! `$default` events carry no query string, so the room comes from the authorizer context API Gateway attaches
//! to every event of the connection, or failing that from the connection's key in the store (one more round
//! trip).

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use tracing::{debug, info, warn};

use super::{HandlerError, Route, authorizer_room, connection_id, event_time_ms, now_ms, response};
use crate::fanout::{FanoutSettings, group_send};
use crate::gateway::Gateway;
use crate::rooms::RoomStore;
use crate::wire::{
    CHAT_FRAME_OVERHEAD, ClientFrame, ConnectionId, Epoch, FrameError, MAX_FRAME_BYTES,
    MAX_POST_BYTES, RoomName, ServerFrame, history_frames,
};

/// What `$default` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership and history.
    pub rooms: Arc<dyn RoomStore>,
    /// PostToConnection.
    pub gateway: Arc<dyn Gateway>,
    /// Fan-out tuning.
    pub fanout: FanoutSettings,
}

/// Handles one `$default` event.
///
/// # Errors
/// [`HandlerError`] when the store fails, or when no member at all could be reached.
pub async fn handle(
    event: &ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ctx = &event.request_context;
    let sender = connection_id(ctx)?;
    let frame = match ClientFrame::parse(event.body.as_deref(), event.is_base64_encoded) {
        Ok(frame) => frame,
        Err(err) => return refuse(deps, &sender, &err).await,
    };
    // The message is encoded once, here, and checked before the room is looked up: an oversized message costs
    // no round trip.
    let request = match frame {
        ClientFrame::Chat { message } => {
            debug!(connection = %sender, message = %message, "chat message");
            let json = serde_json::to_string(&message).unwrap_or_default();
            let size = json.len() + CHAT_FRAME_OVERHEAD;
            if size > MAX_POST_BYTES {
                return refuse(deps, &sender, &FrameError::TooLarge(size)).await;
            }
            Request::Chat { json }
        }
        ClientFrame::History { after, epoch } => Request::History { after, epoch },
        ClientFrame::Ping => Request::Ping,
    };
    let room = match authorizer_room(ctx) {
        Some(room) => room,
        None => match deps.rooms.room_of(&sender).await? {
            Some(room) => room,
            None => {
                warn!(connection = %sender, "message from a connection in no room");
                let error = "this connection is in no room (its membership expired); reconnect";
                post_error(deps, &sender, error).await;
                return Ok(response(410, Some(error)));
            }
        },
    };
    let now = event_time_ms(ctx);
    match request {
        Request::Chat { json } => chat(deps, &sender, &room, &json, now).await,
        Request::History { after, epoch } => {
            history(deps, &sender, &room, after, epoch.as_ref(), now).await
        }
        Request::Ping => {
            // The heartbeat writes the membership again, so a member that Redis forgot is back at once.
            deps.rooms.join(&room, &sender, ctx.connected_at).await?;
            let pong = ServerFrame::Pong { pong: now_ms() }.encode();
            if let Err(err) = deps.gateway.post_to_connection(&sender, pong).await {
                let err: &dyn std::error::Error = &err;
                warn!(connection = %sender, error = err, "could not answer the ping");
            }
            Ok(response(200, None))
        }
    }
}

/// A parsed frame, ready for the store.
enum Request {
    /// Chat, the message already encoded as a JSON string.
    Chat {
        json: String,
    },
    History {
        after: Option<u64>,
        epoch: Option<Epoch>,
    },
    Ping,
}

/// Numbers and stores one chat message, then sends it to every member of the room.
async fn chat(
    deps: &Deps,
    sender: &ConnectionId,
    room: &RoomName,
    message_json: &str,
    now: i64,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let published = deps.rooms.publish(room, message_json, now).await?;
    let members = published.members.len();
    let report = group_send(
        deps.gateway.as_ref(),
        deps.rooms.as_ref(),
        room,
        &published.members,
        bytes::Bytes::from(published.frame),
        &deps.fanout,
    )
    .await;
    info!(
        connection = %sender,
        room = %room,
        seq = published.seq,
        epoch = %published.epoch,
        members,
        delivered = report.delivered,
        pruned = report.pruned.len(),
        retried = report.retried,
        failed = report.failed.len(),
        prune_failed = report.prune_failed,
        "group_send done"
    );
    if report.delivered == 0 && !report.failed.is_empty() {
        return Err(HandlerError::Undeliverable {
            failed: report.failed.len(),
            members,
        });
    }
    Ok(response(200, None))
}

/// Sends the sender the retained messages after `after`, in frames under the 32 KB frame limit, in order.
async fn history(
    deps: &Deps,
    sender: &ConnectionId,
    room: &RoomName,
    after: Option<u64>,
    epoch: Option<&Epoch>,
    now: i64,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let page = deps.rooms.history(room, after, epoch, now).await?;
    let frames = history_frames(&page.epoch, &page.frames, page.complete, MAX_FRAME_BYTES);
    info!(
        connection = %sender,
        room = %room,
        after,
        messages = page.frames.len(),
        frames = frames.len(),
        complete = page.complete,
        "history sent"
    );
    // One after another: the client relies on their order, and only the last says `complete`.
    for frame in frames {
        if let Err(err) = deps.gateway.post_to_connection(sender, frame).await {
            let err: &dyn std::error::Error = &err;
            warn!(connection = %sender, error = err, "could not send history");
            break;
        }
    }
    Ok(response(200, None))
}

#[async_trait::async_trait]
impl Route for Deps {
    async fn handle(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        handle(event, self).await
    }
}

/// Answers a bad frame: `{"error": ...}` to its sender alone, nothing broadcast, the connection left open.
async fn refuse(
    deps: &Deps,
    sender: &ConnectionId,
    err: &FrameError,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let reason = err.to_string();
    warn!(connection = %sender, reason, "frame refused");
    post_error(deps, sender, &reason).await;
    Ok(response(400, Some(&reason)))
}

async fn post_error(deps: &Deps, sender: &ConnectionId, error: &str) {
    let frame = ServerFrame::Error { error }.encode();
    if let Err(err) = deps.gateway.post_to_connection(sender, frame).await {
        let err: &dyn std::error::Error = &err;
        warn!(connection = %sender, error = err, "could not send the error frame");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::gateway::RecordingGateway;
    use crate::handlers::fixtures;
    use crate::rooms::MemoryRoomStore;
    use crate::wire::RoomName;

    struct World {
        deps: Deps,
        store: Arc<MemoryRoomStore>,
        gateway: Arc<RecordingGateway>,
    }

    async fn world(members: &[(&str, &str)]) -> World {
        let store = Arc::new(MemoryRoomStore::default());
        for (room, conn) in members {
            store
                .join(&room_(room), &id(conn), 1_000)
                .await
                .expect("join");
        }
        let gateway = Arc::new(RecordingGateway::new());
        let deps = Deps {
            rooms: store.clone(),
            gateway: gateway.clone(),
            fanout: FanoutSettings::default(),
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
    async fn delivering_to_nobody_is_an_infrastructure_error() {
        let w = world(&[("lobby", "a")]).await;
        w.gateway.mark_forbidden(&id("a"));

        let result = handle(
            &fixtures::message("a", r#"{"message":"hi"}"#, None),
            &w.deps,
        )
        .await;

        assert!(
            matches!(
                result,
                Err(HandlerError::Undeliverable {
                    failed: 1,
                    members: 1
                })
            ),
            "{result:?}"
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
}
