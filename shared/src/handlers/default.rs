//! `$default`: one chat frame in, fanned out to every member of the sender's room, the sender included.
//!
//! `$default` events carry no query string, so the room comes from the authorizer context API Gateway attaches
//! to every event of the connection (one Redis round trip per message: the live members), or failing that from
//! the connection's key in the store (one more).

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use tracing::{debug, info, warn};

use super::{HandlerError, Route, authorizer_room, connection_id, event_time_ms, response};
use crate::fanout::{FanoutSettings, group_send};
use crate::gateway::Gateway;
use crate::rooms::RoomStore;
use crate::wire::{ClientFrame, ConnectionId, FrameError, MAX_POST_BYTES, ServerFrame};

/// What `$default` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership.
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
    let encoded = ServerFrame::Message {
        message: &frame.message,
    }
    .encode();
    if encoded.len() > MAX_POST_BYTES {
        return refuse(deps, &sender, &FrameError::TooLarge(encoded.len())).await;
    }
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
    let members = deps.rooms.members(&room, event_time_ms(ctx)).await?;
    debug!(connection = %sender, room = %room, message = %frame.message, "chat message");
    let report = group_send(
        deps.gateway.as_ref(),
        deps.rooms.as_ref(),
        &room,
        &members,
        encoded,
        &deps.fanout,
    )
    .await;
    info!(
        connection = %sender,
        room = %room,
        members = members.len(),
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
            members: members.len(),
        });
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

    #[tokio::test]
    async fn chat_message_reaches_everyone_in_the_room_and_nobody_else() {
        let w = world(&[("room_1", "a"), ("room_1", "b"), ("room_2", "c")]).await;
        let event = fixtures::message("a", r#"{"message":"hello"}"#, None);

        let resp = handle(&event, &w.deps).await.expect("handled");

        assert_eq!(resp.status_code, 200);
        assert_eq!(
            json_frames(&w.gateway, "a"),
            vec![json!({ "message": "hello" })]
        );
        assert_eq!(
            json_frames(&w.gateway, "b"),
            vec![json!({ "message": "hello" })]
        );
        assert!(w.gateway.received(&id("c")).is_empty());
    }

    #[tokio::test]
    async fn the_authorizer_context_names_the_room_without_a_lookup() {
        let w = world(&[("room_1", "a"), ("room_1", "b")]).await;
        // The store has no conn → room entry for "x": only the context can name its room.
        let event = fixtures::message("x", r#"{"message":"via context"}"#, Some("room_1"));

        handle(&event, &w.deps).await.expect("handled");

        assert_eq!(
            json_frames(&w.gateway, "b"),
            vec![json!({ "message": "via context" })]
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
        assert_eq!(
            json_frames(&w.gateway, "a"),
            vec![json!({ "message": "hi" })]
        );
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
}
