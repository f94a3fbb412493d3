//! `$disconnect`: leave the room, and free the source address's slot. Best effort on API Gateway's side, so membership also expires by itself
//! and is pruned on 410; this handler only makes the common case immediate.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::{info, warn};

use super::events::Leaving;
use super::{HandlerError, response};
use crate::fanout::Announcer;
use crate::metrics::{self, Metric};
use crate::rooms::RoomStore;

/// What `$disconnect` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership.
    pub rooms: Arc<dyn RoomStore>,
    /// Who tells presence watchers about the leave (none: nobody is told).
    pub announcer: Option<Announcer>,
}

/// Handles one `$disconnect` event: the connection leaves its room (the authorizer context names it, saving a
/// lookup), and the room's presence watchers hear of it.
///
/// # Errors
/// [`HandlerError`] when the store fails.
pub async fn handle(
    leaving: Leaving,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let Leaving { caller, status } = leaving;
    metrics::count(Metric::Disconnects);
    let conn = &caller.conn;
    // The address's live connection is released alongside the leave: the two keys live in different slots.
    let release = async {
        match &caller.address {
            Some(address) => deps.rooms.release(address, conn).await,
            None => Ok(()),
        }
    };
    let (left, released) = tokio::join!(
        deps.rooms.leave(conn, caller.room.as_ref(), caller.time_ms),
        release
    );
    if let Err(err) = released {
        let err: &dyn std::error::Error = &err;
        warn!(connection = %conn, error = err, "could not release the address's live connection");
    }
    match left? {
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

#[cfg(test)]
mod tests {
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

    use super::*;
    use crate::handlers::fixtures;
    use crate::rooms::MemoryRoomStore;
    use crate::wire::{ConnectionId, RoomName};

    /// The event as the edge parses it, then the handler.
    async fn handle(
        event: &ApiGatewayWebsocketProxyRequest,
        deps: &Deps,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        super::handle(Leaving::try_from(event)?, deps).await
    }

    #[tokio::test]
    async fn disconnect_removes_the_connection_from_its_room() {
        let store = Arc::new(MemoryRoomStore::default());
        let room = RoomName::parse("lobby").expect("room");
        let conn = ConnectionId::parse("c1").expect("id");
        store
            .join(&room, &conn, 1_000, None, None)
            .await
            .expect("join");
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
            .join(&room, &id("c1"), 1_000, Some(&name), None)
            .await
            .expect("join");
        store
            .join(&room, &id("w"), 1_000, None, None)
            .await
            .expect("join");
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
