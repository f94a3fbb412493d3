//! `$disconnect`: leave the room. Best effort on API Gateway's side, so membership also expires by itself
//! and is pruned on 410; this handler only makes the common case immediate.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use tracing::info;

use super::{HandlerError, StartupError, authorizer_room, connection_id, response};
use crate::config::Config;
use crate::rooms::RoomStore;
use crate::rooms::redis::connect_from_config;

/// What `$disconnect` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership.
    pub rooms: Arc<dyn RoomStore>,
}

impl Deps {
    /// Builds the dependencies from the environment (`REDIS_URL` or `REDIS_URL_SECRET_ARN`, `REDIS_CLUSTER`, ...).
    ///
    /// # Errors
    /// [`StartupError`] when a variable is missing, the Redis URL's secret cannot be read, or Redis is unreachable.
    pub async fn from_env() -> Result<Self, StartupError> {
        let cfg = Config::from_env()?;
        let rooms = connect_from_config(&cfg).await?;
        Ok(Self { rooms })
    }
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
    let left = deps.rooms.leave(&conn, hint.as_ref()).await?;
    let status = event.request_context.disconnect_status_code;
    match left {
        Some(room) => info!(connection = %conn, room = %room, status, "left"),
        None => info!(connection = %conn, status, "disconnected while in no room"),
    }
    Ok(response(200, None))
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
    async fn disconnect_of_an_unknown_connection_is_harmless() {
        let deps = Deps {
            rooms: Arc::new(MemoryRoomStore::default()),
        };

        let resp = handle(&fixtures::disconnect("never-joined"), &deps)
            .await
            .expect("handled");

        assert_eq!(resp.status_code, 200);
    }
}
