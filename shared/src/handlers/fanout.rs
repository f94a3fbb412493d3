//! `ws-fanout`: one shard of a big room's fan-out ([`crate::fanout::shards`]), invoked asynchronously by
//! `ws-default`. It posts the frame to the shard's members with `group_send`'s rules (410 prunes after the grace,
//! 429 backs off, no post starts near this invocation's deadline) and, when some members could not be reached,
//! tells the sender, who has already had the rest of its answer.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tracing::{info, warn};

use super::HandlerError;
use crate::fanout::shards::Shard;
use crate::fanout::{Delivery, FanoutSettings, group_send};
use crate::gateway::Gateway;
use crate::rooms::{Member, RoomStore};
use crate::wire::{ConnectionId, RoomName, ServerFrame};

/// What `ws-fanout` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership (gone members are pruned from it).
    pub rooms: Arc<dyn RoomStore>,
    /// PostToConnection.
    pub gateway: Arc<dyn Gateway>,
    /// Fan-out tuning.
    pub fanout: FanoutSettings,
}

/// What one shard did (the invocation's result; nobody waits for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShardReport {
    /// Members the frame reached.
    pub delivered: usize,
    /// Members gone and pruned.
    pub pruned: usize,
    /// Members it did not reach.
    pub missed: usize,
}

/// Posts one shard.
///
/// # Errors
/// [`HandlerError::BadEvent`] or [`HandlerError::BadShard`] for an event `ws-default` could not have sent.
pub async fn handle(
    shard: &Shard,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Result<ShardReport, HandlerError> {
    let room = RoomName::parse(&shard.room)?;
    let sender = ConnectionId::parse(&shard.sender)?;
    let members = shard
        .members
        .iter()
        .map(|m| {
            Ok(Member {
                conn: ConnectionId::parse(&m.conn)?,
                connected_at_ms: m.connected_at_ms,
            })
        })
        .collect::<Result<Vec<_>, HandlerError>>()?;
    let delivery = Delivery {
        room: &room,
        members: &members,
        frame: Bytes::from(shard.frame.clone()),
        own: None,
        now_ms: shard.now_ms,
        deadline,
    };
    let report = group_send(
        deps.gateway.as_ref(),
        deps.rooms.as_ref(),
        delivery,
        &deps.fanout,
    )
    .await;
    let missed = report.missed();
    info!(
        sender = %sender,
        room = %room,
        members = members.len(),
        delivered = report.delivered,
        pruned = report.pruned.len(),
        missed,
        "fan-out shard done"
    );
    if missed > 0 {
        let error = format!(
            "your message did not reach {missed} of the room's {} members; they may see it only after reconnecting",
            shard.room_size
        );
        let frame = ServerFrame::Error {
            error: &error,
            undelivered: None,
            retry_after_ms: None,
            id: shard.id.as_deref(),
            uncertain: false,
        }
        .encode();
        if let Err(err) = deps.gateway.post_to_connection(&sender, frame).await {
            let err: &dyn std::error::Error = &err;
            warn!(connection = %sender, error = err, "could not tell the sender of a shard's missed members");
        }
    }
    Ok(ShardReport {
        delivered: report.delivered,
        pruned: report.pruned.len(),
        missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::shards::ShardMember;
    use crate::gateway::RecordingGateway;
    use crate::rooms::MemoryRoomStore;

    fn shard(members: &[&str]) -> Shard {
        Shard {
            room: "big".into(),
            sender: "sender=".into(),
            id: Some("m7".into()),
            frame: r#"{"message":"hi","seq":3}"#.into(),
            members: members
                .iter()
                .map(|c| ShardMember {
                    conn: (*c).into(),
                    connected_at_ms: 0,
                })
                .collect(),
            now_ms: 60_000,
            room_size: 3000,
        }
    }

    fn deps(gateway: Arc<RecordingGateway>) -> Deps {
        Deps {
            rooms: Arc::new(MemoryRoomStore::default()),
            gateway,
            fanout: FanoutSettings::default(),
        }
    }

    #[tokio::test]
    async fn a_shard_reaches_its_members_and_says_nothing_to_the_sender_when_all_were_reached() {
        let gateway = Arc::new(RecordingGateway::default());

        let report = handle(&shard(&["a=", "b="]), &deps(gateway.clone()), None)
            .await
            .expect("handled");

        assert_eq!(
            report,
            ShardReport {
                delivered: 2,
                pruned: 0,
                missed: 0
            }
        );
        for member in ["a=", "b="] {
            let got = gateway.received(&ConnectionId::parse(member).expect("id"));
            assert_eq!(got, [r#"{"message":"hi","seq":3}"#]);
        }
        assert!(
            gateway
                .received(&ConnectionId::parse("sender=").expect("id"))
                .is_empty()
        );
    }

    #[tokio::test]
    async fn members_a_shard_could_not_reach_are_told_to_the_sender_with_the_message_s_id() {
        let gateway = Arc::new(RecordingGateway::default());
        gateway.mark_forbidden(&ConnectionId::parse("b=").expect("id"));

        let report = handle(&shard(&["a=", "b="]), &deps(gateway.clone()), None)
            .await
            .expect("handled");

        assert_eq!(report.missed, 1);
        let told = gateway.received(&ConnectionId::parse("sender=").expect("id"));
        let error: serde_json::Value = serde_json::from_str(&told[0]).expect("JSON");
        assert_eq!(error["id"], "m7");
        assert!(
            error["error"]
                .as_str()
                .expect("text")
                .contains("1 of the room's 3000"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_shard_naming_a_bad_room_or_connection_is_a_malformed_event() {
        let gateway = Arc::new(RecordingGateway::default());
        let mut bad_room = shard(&["a="]);
        bad_room.room = "not a room".into();

        assert!(matches!(
            handle(&bad_room, &deps(gateway.clone()), None).await,
            Err(HandlerError::BadShard(_))
        ));
        assert!(matches!(
            handle(&shard(&[""]), &deps(gateway), None).await,
            Err(HandlerError::BadEvent(_))
        ));
    }
}
