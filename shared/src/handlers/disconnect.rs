//! `$disconnect`: leave the room. Best effort on API Gateway's side, so membership also expires by itself
//! and is pruned on 410; this handler only makes the common case immediate.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use tracing::info;

use super::{
    Announcer, HandlerError, Route, authorizer_room, connection_id, event_time_ms, response,
};
use crate::rooms::RoomStore;

/// What `$disconnect` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership.
    pub rooms: Arc<dyn RoomStore>,
    /// Who tells presence watchers about the leave (none: nobody is told).
    pub announcer: Option<Announcer>,
}

/// Handles one `$disconnect` event.
///
/// # Errors
/// [`HandlerError`] when the store fails.
pub async fn handle(
    event: &ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let conn = connection_id(&event.request_context)?;
    let hint = authorizer_room(&event.request_context);
    let now = event_time_ms(&event.request_context);
    let left = deps.rooms.depart(&conn, hint.as_ref(), now).await?;
    let status = event.request_context.disconnect_status_code;
    match left {
        Some(departed) => {
            info!(connection = %conn, room = %departed.room, status, "left");
            if let Some(announcer) = &deps.announcer {
                announcer.departures(deps.rooms.as_ref(), &departed).await;
            }
        }
        None => info!(connection = %conn, status, "disconnected while in no room"),
    }
    Ok(response(200, None))
}

#[async_trait::async_trait]
impl Route for Deps {
    async fn handle(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        handle(event, self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::fixtures;
    use crate::rooms::MemoryRoomStore;
    use crate::wire::{ConnectionId, RoomName};

    #[tokio::test]
    async fn disconnect_removes_the_connection_from_its_room() {
        let store = Arc::new(MemoryRoomStore::default());
        let room = RoomName::parse("lobby").expect("room");
        let conn = ConnectionId::parse("c1").expect("id");
        store.join(&room, &conn, 1_000).await.expect("join");
        let deps = Deps {
            rooms: store.clone(),
            announcer: None,
        };

        let resp = handle(&fixtures::disconnect("c1"), &deps)
            .await
            .expect("handled");

        assert_eq!(resp.status_code, 200);
        assert!(
            store
                .members(&room, 2_000)
                .await
                .expect("members")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_leave_is_announced_to_the_watchers_with_the_name_and_the_count() {
        let store = Arc::new(MemoryRoomStore::default());
        let gateway = Arc::new(crate::gateway::RecordingGateway::default());
        let room = RoomName::parse("lobby").expect("room");
        let id = |c: &str| ConnectionId::parse(c).expect("id");
        let name = crate::wire::DisplayName::parse("Cy").expect("name");
        store
            .enter(&room, &id("c1"), 1_000, Some(&name))
            .await
            .expect("join");
        store.join(&room, &id("w"), 1_000).await.expect("join");
        store.presence(&room, &id("w"), 1_000).await.expect("asks");
        let deps = Deps {
            rooms: store.clone(),
            announcer: Some(Announcer {
                gateway: gateway.clone(),
                settings: crate::fanout::FanoutSettings::default(),
            }),
        };

        handle(&fixtures::disconnect("c1"), &deps)
            .await
            .expect("handled");
        handle(&fixtures::disconnect("c1"), &deps)
            .await
            .expect("a second $disconnect");

        assert_eq!(gateway.received(&id("w")), [r#"{"left":"Cy","count":1}"#]);
    }

    #[tokio::test]
    async fn disconnect_of_an_unknown_connection_is_harmless() {
        let deps = Deps {
            rooms: Arc::new(MemoryRoomStore::default()),
            announcer: None,
        };

        let resp = handle(&fixtures::disconnect("never-joined"), &deps)
            .await
            .expect("handled");

        assert_eq!(resp.status_code, 200);
    }
}
