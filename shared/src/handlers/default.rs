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
use tracing::{debug, error, info, warn};

use super::{
    HandlerError, Route, authorizer_name, authorizer_room, connection_id, event_time_ms, now_ms,
    response,
};
use crate::fanout::announce_departures;
use crate::fanout::{Delivery, FanoutSettings, group_send};
use crate::gateway::Gateway;
use crate::rooms::{Departed, Entered, Presence, PublishOutcome, RoomStore, Sender, StoreError};
use crate::wire::{
    CHAT_FRAME_OVERHEAD, ClientFrame, ConnectionId, Epoch, FrameError, MAX_FRAME_BYTES,
    MAX_POST_BYTES, PresenceBody, RoomName, ServerFrame, history_frames,
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

/// Handles one `$default` event with no deadline (tests, the emulator).
///
/// # Errors
/// [`HandlerError`] when the event is not one API Gateway would send. A store or delivery failure is not an
/// error: the sender is told (`{"error"}`) and the response is a 5xx.
pub async fn handle(
    event: &ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    handle_until(event, deps, None).await
}

/// Handles one `$default` event; no post starts shortly before `deadline` (the Lambda's own).
///
/// Infrastructure failures are answered, not raised: a message that could not be stored or delivered gets
/// `{"error", "undelivered"}` to its sender and a 5xx response, so API Gateway does not push its own
/// `{"message": "Internal server error"}` frame, which a tutorial page would show as a chat line.
///
/// # Errors
/// [`HandlerError::BadEvent`] when the event has no connection id.
pub async fn handle_until(
    event: &ApiGatewayWebsocketProxyRequest,
    deps: &Deps,
    deadline: Option<tokio::time::Instant>,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let ctx = &event.request_context;
    let sender = connection_id(ctx)?;
    let frame = match ClientFrame::parse(event.body.as_deref(), event.is_base64_encoded) {
        Ok(frame) => frame,
        Err(err) => return Ok(refuse(deps, &sender, &err).await),
    };
    // The message is encoded once, here, and checked before the room is looked up: an oversized message costs
    // no round trip.
    let request = match frame {
        ClientFrame::Chat { message } => {
            debug!(connection = %sender, message = %message, "chat message");
            let json = serde_json::to_string(&message).unwrap_or_default();
            let size = json.len() + CHAT_FRAME_OVERHEAD;
            if size > MAX_POST_BYTES {
                return Ok(refuse(deps, &sender, &FrameError::TooLarge(size)).await);
            }
            Request::Chat { message, json }
        }
        ClientFrame::History { after, epoch } => Request::History { after, epoch },
        ClientFrame::Ping => Request::Ping,
        ClientFrame::Presence => Request::Presence,
    };
    let undelivered = match &request {
        Request::Chat { message, .. } => Some(message.as_str()),
        _ => None,
    };
    let room = match authorizer_room(ctx) {
        Some(room) => room,
        None => match deps.rooms.room_of(&sender).await {
            Ok(Some(room)) => room,
            Ok(None) => {
                warn!(connection = %sender, "message from a connection in no room");
                let error = "this connection is in no room (its membership expired); reconnect";
                tell(deps, &sender, error, undelivered).await;
                return Ok(response(410, Some(error)));
            }
            Err(err) => return Ok(store_down(deps, &sender, &err, undelivered).await),
        },
    };
    let now = event_time_ms(ctx);
    match request {
        Request::Chat { message, json } => {
            // API Gateway's messageId is unique per message; without one (a hand-made event), an id of this
            // invocation's own still keeps the store's retry from numbering the message twice.
            let own_id;
            let message_id = match ctx.message_id.as_deref() {
                Some(id) => id,
                None => {
                    own_id = format!("{:016x}", fastrand::u64(..));
                    &own_id
                }
            };
            let name = authorizer_name(ctx);
            let who = Sender {
                conn: &sender,
                connected_at_ms: ctx.connected_at,
                message_id: Some(message_id),
                user: name.as_ref(),
            };
            let chat = Chat {
                room: &room,
                sender: who,
                message: &message,
                json: &json,
                now,
                deadline,
            };
            Ok(chat.send(deps).await)
        }
        Request::History { after, epoch } => {
            Ok(history(deps, &sender, &room, after, epoch.as_ref(), now).await)
        }
        Request::Presence => Ok(presence(deps, &sender, &room, now).await),
        Request::Ping => {
            // The heartbeat writes the membership (and the name) again, so a member that Redis forgot is back at
            // once.
            let name = authorizer_name(ctx);
            match deps
                .rooms
                .enter(&room, &sender, ctx.connected_at, name.as_ref())
                .await
            {
                Ok(Entered::Joined { .. }) => {}
                Ok(Entered::RoomFull) => {
                    let error = "this room is full: your connection is not a member any more; reconnect later";
                    tell(deps, &sender, error, None).await;
                    return Ok(response(403, Some(error)));
                }
                Err(err) => return Ok(store_down(deps, &sender, &err, None).await),
            }
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
    /// Chat: the text, and the same encoded as a JSON string.
    Chat {
        message: String,
        json: String,
    },
    History {
        after: Option<u64>,
        epoch: Option<Epoch>,
    },
    Ping,
    Presence,
}

/// Who is in the room, to the sender alone; the sender hears of joins and leaves from now on.
async fn presence(
    deps: &Deps,
    sender: &ConnectionId,
    room: &RoomName,
    now: i64,
) -> ApiGatewayProxyResponse {
    let Presence {
        count,
        names,
        expired,
        watchers,
    } = match deps.rooms.presence(room, sender, now).await {
        Ok(present) => present,
        Err(err) => return store_down(deps, sender, &err, None).await,
    };
    if !expired.is_empty() {
        // Members found past their lifetime left without a `$disconnect`: the other watchers hear of it (the
        // sender's answer below already leaves them out).
        let departed = Departed {
            room: room.clone(),
            names: expired,
            count,
            watchers,
        };
        announce_departures(
            deps.gateway.as_ref(),
            deps.rooms.as_ref(),
            &departed,
            &deps.fanout,
        )
        .await;
    }
    let frame = ServerFrame::Presence {
        presence: PresenceBody {
            count,
            members: &names,
        },
    }
    .encode();
    if let Err(err) = deps.gateway.post_to_connection(sender, frame).await {
        let err: &dyn std::error::Error = &err;
        warn!(connection = %sender, error = err, "could not answer the presence request");
        return response(502, Some("the presence answer could not be delivered"));
    }
    response(200, None)
}

/// One chat message on its way: stored and numbered, then sent to every member of the room.
struct Chat<'a> {
    room: &'a RoomName,
    sender: Sender<'a>,
    message: &'a str,
    json: &'a str,
    now: i64,
    deadline: Option<tokio::time::Instant>,
}

impl Chat<'_> {
    async fn send(self, deps: &Deps) -> ApiGatewayProxyResponse {
        let conn = self.sender.conn;
        let published = match deps
            .rooms
            .publish(self.room, &self.sender, self.json, self.now)
            .await
        {
            Ok(PublishOutcome::Published(published)) => published,
            Ok(PublishOutcome::RateLimited { retry_after_ms }) => {
                warn!(connection = %conn, room = %self.room, retry_after_ms, "rate limited");
                let error = format!(
                    "too many messages: this one was not delivered; wait {:.1} s before sending again",
                    retry_after_ms as f64 / 1000.0
                );
                tell(deps, conn, &error, Some(self.message)).await;
                return response(429, Some(&error));
            }
            Err(err) => return store_down(deps, conn, &err, Some(self.message)).await,
        };
        let members = published.members.len();
        let delivery = Delivery {
            room: self.room,
            members: &published.members,
            frame: bytes::Bytes::from(published.frame),
            now_ms: self.now,
            deadline: self.deadline,
        };
        let report = group_send(
            deps.gateway.as_ref(),
            deps.rooms.as_ref(),
            delivery,
            &deps.fanout,
        )
        .await;
        info!(
            connection = %conn,
            room = %self.room,
            seq = published.seq,
            epoch = %published.epoch,
            members,
            delivered = report.delivered,
            pruned = report.pruned.len(),
            not_yet_open = report.not_yet_open.len(),
            retried = report.retried,
            failed = report.failed.len(),
            skipped = report.skipped.len(),
            prune_failed = report.prune_failed,
            "group_send done"
        );
        let missed = report.failed.len() + report.skipped.len();
        if missed == 0 {
            return response(200, None);
        }
        let error = if report.delivered == 0 {
            format!(
                "your message was not delivered: none of the {members} members could be reached"
            )
        } else {
            format!(
                "your message reached {} of {members} members; the others may see it only after reconnecting",
                report.delivered
            )
        };
        warn!(connection = %conn, room = %self.room, missed, "delivery incomplete");
        tell(
            deps,
            conn,
            &error,
            (report.delivered == 0).then_some(self.message),
        )
        .await;
        response(502, Some(&error))
    }
}

/// Sends the sender the retained messages after `after`, in frames under the 32 KB frame limit, in order.
async fn history(
    deps: &Deps,
    sender: &ConnectionId,
    room: &RoomName,
    after: Option<u64>,
    epoch: Option<&Epoch>,
    now: i64,
) -> ApiGatewayProxyResponse {
    let page = match deps.rooms.history(room, after, epoch, now).await {
        Ok(page) => page,
        Err(err) => return store_down(deps, sender, &err, None).await,
    };
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
    response(200, None)
}

/// The room store failed (after its one retry): the sender hears that its message (if any) was not delivered,
/// and API Gateway gets a 503 response, not a Lambda error.
async fn store_down(
    deps: &Deps,
    sender: &ConnectionId,
    err: &StoreError,
    undelivered: Option<&str>,
) -> ApiGatewayProxyResponse {
    error!(connection = %sender, error = %super::error_chain(err), "room store unavailable");
    let error = if undelivered.is_some() {
        "your message was not delivered: the chat's storage is unavailable right now; try again in a moment"
    } else {
        "the chat's storage is unavailable right now; try again in a moment"
    };
    tell(deps, sender, error, undelivered).await;
    response(503, Some(error))
}

#[async_trait::async_trait]
impl Route for Deps {
    async fn handle(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        handle_until(event, self, deadline).await
    }
}

/// Answers a bad frame: `{"error": ...}` to its sender alone, nothing broadcast, the connection left open.
async fn refuse(deps: &Deps, sender: &ConnectionId, err: &FrameError) -> ApiGatewayProxyResponse {
    let reason = err.to_string();
    warn!(connection = %sender, reason, "frame refused");
    tell(deps, sender, &reason, None).await;
    response(400, Some(&reason))
}

/// `{"error": …}` to the sender alone, with `"undelivered": <the text>` when a chat message did not get through
/// (the page puts it back in the composer).
async fn tell(deps: &Deps, sender: &ConnectionId, error: &str, undelivered: Option<&str>) {
    let frame = match undelivered {
        Some(undelivered) => ServerFrame::Undelivered { error, undelivered },
        None => ServerFrame::Error { error },
    }
    .encode();
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
    use crate::rooms::{Limits, MemoryRoomStore, Policy};
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
    async fn a_named_sender_s_messages_carry_its_name_and_an_anonymous_one_s_do_not() {
        let w = world(&[("room_1", "a"), ("room_1", "b")]).await;
        let mut named = fixtures::message("a", r#"{"message":"from ann"}"#, Some("room_1"));
        named
            .request_context
            .authorizer
            .fields
            .insert("name".to_owned(), json!("Ann"));
        let anonymous = fixtures::message("b", r#"{"message":"from nobody"}"#, Some("room_1"));

        handle(&named, &w.deps).await.expect("handled");
        handle(&anonymous, &w.deps).await.expect("handled");

        let frames = json_frames(&w.gateway, "b");
        assert_eq!(frames[0]["message"], "from ann");
        assert_eq!(frames[0]["user"], "Ann");
        assert_eq!(frames[1]["message"], "from nobody");
        assert!(frames[1].get("user").is_none(), "{}", frames[1]);
    }

    #[tokio::test]
    async fn a_presence_request_is_answered_to_the_sender_alone_and_a_gone_member_is_announced_as_left()
     {
        let w = world(&[("lobby", "a"), ("lobby", "b"), ("lobby", "gone")]).await;
        let named = crate::wire::DisplayName::parse("Bee").expect("name");
        w.store
            .enter(&room_("lobby"), &id("b"), 1_000, Some(&named))
            .await
            .expect("named");

        handle(
            &fixtures::message("a", r#"{"action":"presence"}"#, None),
            &w.deps,
        )
        .await
        .expect("handled");
        assert_eq!(
            json_frames(&w.gateway, "a"),
            [json!({ "presence": { "count": 3, "members": ["Bee"] } })]
        );
        assert!(
            w.gateway.received(&id("b")).is_empty(),
            "to the sender alone"
        );

        // "gone" vanished without a $disconnect: the next message's 410 prunes it, and "a" (a watcher) hears of it.
        w.gateway.mark_gone(&id("gone"));
        handle(
            &fixtures::message("b", r#"{"message":"hi"}"#, None),
            &w.deps,
        )
        .await
        .expect("handled");
        let frames = json_frames(&w.gateway, "a");
        assert!(
            frames.contains(&json!({ "left": null, "count": 2 })),
            "{frames:?}"
        );
        assert!(
            json_frames(&w.gateway, "b")
                .iter()
                .all(|f| f.get("left").is_none()),
            "b never asked for presence"
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
    async fn a_member_that_cannot_be_reached_is_reported_to_the_sender_with_a_5xx() {
        let w = world(&[("lobby", "a"), ("lobby", "b")]).await;
        w.gateway.mark_forbidden(&id("b"));

        let resp = handle(
            &fixtures::message("a", r#"{"message":"hi"}"#, None),
            &w.deps,
        )
        .await
        .expect("answered, not raised");

        assert_eq!(resp.status_code, 502);
        let frames = json_frames(&w.gateway, "a");
        assert_eq!(frames[0]["message"], "hi");
        let error = frames[1]["error"].as_str().expect("an error frame");
        assert!(error.contains("reached 1 of 2 members"), "{error}");
    }

    #[tokio::test]
    async fn delivering_to_nobody_is_a_5xx_answer_not_a_lambda_error() {
        let w = world(&[("lobby", "a")]).await;
        w.gateway.mark_forbidden(&id("a"));

        let resp = handle(
            &fixtures::message("a", r#"{"message":"hi"}"#, None),
            &w.deps,
        )
        .await
        .expect("answered, not raised");

        assert_eq!(resp.status_code, 502);
    }

    #[tokio::test]
    async fn a_sender_over_its_rate_limit_is_told_and_nothing_is_broadcast() {
        let store = Arc::new(MemoryRoomStore::default().with_policy(Policy {
            limits: Limits {
                burst: 3,
                messages_per_sec: 1,
                ..Limits::default()
            },
            ..Policy::default()
        }));
        let gateway = Arc::new(RecordingGateway::new());
        store
            .join(&room_("lobby"), &id("b"), 1_000)
            .await
            .expect("join");
        let deps = Deps {
            rooms: store.clone(),
            gateway: gateway.clone(),
            fanout: FanoutSettings::default(),
        };

        let mut statuses = Vec::new();
        for n in 0..4 {
            let body = json!({ "message": format!("m{n}") }).to_string();
            let resp = handle(&fixtures::message("a", &body, Some("lobby")), &deps)
                .await
                .expect("handled");
            statuses.push(resp.status_code);
        }

        assert_eq!(statuses, [200, 200, 200, 429]);
        assert_eq!(
            chats(&gateway, "b"),
            said(&[("m0", 1), ("m1", 2), ("m2", 3)])
        );
        let refusal = json_frames(&gateway, "a").pop().expect("told");
        assert!(
            refusal["error"]
                .as_str()
                .expect("error")
                .contains("too many messages"),
            "{refusal}"
        );
        assert_eq!(
            refusal["undelivered"], "m3",
            "the text comes back to the sender"
        );
    }

    #[tokio::test]
    async fn a_chat_message_makes_its_sender_a_member_again() {
        let w = world(&[("lobby", "b")]).await;
        // "a" is in no store entry (Redis lost it), but the authorizer context names its room.
        handle(
            &fixtures::message("a", r#"{"message":"back"}"#, Some("lobby")),
            &w.deps,
        )
        .await
        .expect("handled");

        assert_eq!(
            chats(&w.gateway, "a"),
            said(&[("back", 1)]),
            "the sender hears itself"
        );
        assert_eq!(
            w.store
                .members(&room_("lobby"), 2_000)
                .await
                .expect("members"),
            vec![id("a"), id("b")]
        );
    }

    #[tokio::test]
    async fn a_retried_message_keeps_its_seq() {
        let w = world(&[("lobby", "a")]).await;
        let mut event = fixtures::message("a", r#"{"message":"once"}"#, Some("lobby"));
        event.request_context.message_id = Some("m-1".into());

        handle(&event, &w.deps).await.expect("first");
        handle(&event, &w.deps).await.expect("retried");

        assert_eq!(
            chats(&w.gateway, "a"),
            said(&[("once", 1), ("once", 1)]),
            "the same frame twice (pages drop the repeat), never a second seq"
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
