//! `$connect`: validate the handshake (origin, `?room=`, and `?name=` when given), count it against its source
//! address, then join the room.
//!
//! Runs while the upgrade is pending: a non-2xx answer rejects the handshake with that status. The connection
//! does not exist yet, so nothing may be posted to it from here (API Gateway would answer 410).

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::{info, warn};

use super::events::Connecting;
use super::{HandlerError, response};
use crate::auth::transport;
use crate::fanout::Announcer;
use crate::metrics::{self, Metric};
use crate::rooms::{Admission, Announce, Departed, Entered, RoomStore, Someone};
use crate::wire::{ConnectionId, DisplayName, RoomName, ServerFrame, Uid};

/// What `$connect` needs.
#[derive(Clone)]
pub struct Deps {
    /// Room membership.
    pub rooms: Arc<dyn RoomStore>,
    /// Which browser origins may connect.
    pub origins: OriginPolicy,
    /// Who tells presence watchers about the newcomer (none: nobody is told).
    pub announcer: Option<Announcer>,
    /// `AUTH_MODE=oidc`: a handshake the authorizer did not verify is refused (401), whatever let it through.
    pub auth_required: bool,
}

/// Which browser origins may open a connection (`ALLOWED_ORIGINS`; the equivalent of Channels'
/// `AllowedHostsOriginValidator`).
///
/// Only browsers send `Origin`, and only browsers can be tricked into connecting from another site's page, so
/// a connection without `Origin` (a CLI client, a test) is allowed; a browser from an unlisted origin is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// Any origin (`*`).
    #[default]
    Any,
    /// Only these origins, compared case-insensitively (`https://chat.example.com`).
    Only(Vec<String>),
}

impl OriginPolicy {
    /// Parses `*` or a comma-separated list of origins.
    pub fn parse(raw: &str) -> Self {
        let list: Vec<String> = raw
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|o| o == "*") {
            Self::Any
        } else {
            Self::Only(list)
        }
    }

    /// Whether a request with this `Origin` header (or none) may connect.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (self, origin) {
            (Self::Any, _) | (Self::Only(_), None) => true,
            (Self::Only(list), Some(origin)) => {
                let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
                list.contains(&origin)
            }
        }
    }
}

/// Handles one `$connect` event: the origin, then the room, then the name are checked (each refusal rejects the
/// handshake with its reason), then the source address's handshake rate and live connections (429); the newcomer
/// joins, and the room's presence watchers hear of it, as far as presence damping lets them.
///
/// # Errors
/// [`HandlerError`] when the store fails (API Gateway then rejects the handshake with 500).
pub async fn handle(
    connecting: Connecting,
    deps: &Deps,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let Connecting {
        conn,
        connected_at_ms,
        origin,
        address,
        handshake,
        offers_subprotocol,
        verified,
    } = connecting;
    let at = address.as_ref().map(ToString::to_string);
    metrics::count(Metric::Handshakes);
    if !deps.origins.allows(origin.as_deref()) {
        warn!(connection = %conn, address = at, origin, "handshake rejected: origin not allowed");
        return Ok(refused(
            Metric::HandshakesRefusedOrigin,
            403,
            "origin not allowed",
        ));
    }
    if deps.auth_required && verified.is_none() {
        warn!(connection = %conn, address = at, "handshake rejected: no verified user (is the authorizer on $connect?)");
        return Ok(refused(
            Metric::HandshakesUnauthorized,
            401,
            "sign in first",
        ));
    }
    let room = match handshake.room {
        Ok(room) => room,
        Err(reason) => {
            let reason = reason.to_string();
            warn!(connection = %conn, address = at, reason, "handshake rejected: bad room");
            return Ok(refused(Metric::HandshakesRefusedInvalid, 400, &reason));
        }
    };
    // A verified user is named by the token (`?name=` is ignored). Otherwise no `name` is an anonymous member,
    // and a `name` that breaks the rules is refused like a bad room.
    let name = match (&verified, handshake.name) {
        (Some(user), _) => Some(user.name.clone()),
        (None, Ok(name)) => name,
        (None, Err(reason)) => {
            let reason = reason.to_string();
            warn!(connection = %conn, address = at, reason, "handshake rejected: bad name");
            return Ok(refused(Metric::HandshakesRefusedInvalid, 400, &reason));
        }
    };
    if let Some(address) = &address {
        let refusal = match deps.rooms.admit(address, &conn, connected_at_ms).await? {
            Admission::Admitted => None,
            Admission::TooFast { retry_after_ms } => Some(format!(
                "too many connections from your address: try again in {:.0} s",
                (retry_after_ms as f64 / 1000.0).ceil()
            )),
            Admission::TooMany => {
                Some("too many open connections from your address: close some first".to_owned())
            }
        };
        if let Some(reason) = refusal {
            warn!(connection = %conn, address = at, reason, "handshake rejected: address limit");
            return Ok(refused(Metric::HandshakesRefusedAddress, 429, &reason));
        }
    }
    let entered = deps
        .rooms
        .join(
            &room,
            &conn,
            connected_at_ms,
            name.as_ref(),
            verified.as_ref().map(|user| &user.uid),
        )
        .await;
    if !matches!(entered, Ok(Entered::Joined { .. }))
        && let Some(address) = &address
        && let Err(err) = deps.rooms.release(address, &conn).await
    {
        let err: &dyn std::error::Error = &err;
        warn!(connection = %conn, address = at, error = err, "could not release a refused handshake's address slot");
    }
    match entered? {
        Entered::Joined {
            fresh,
            count,
            watchers,
            expired,
            announce,
            ..
        } => {
            info!(connection = %conn, address = at, room = %room, count, "joined");
            if let Some(announcer) = &deps.announcer {
                let tell = Telling {
                    room: &room,
                    watchers,
                    count,
                    fresh,
                    name: name.as_ref(),
                    uid: verified.as_ref().map(|user| &user.uid),
                };
                tell.announce(announcer, deps.rooms.as_ref(), expired, announce)
                    .await;
            }
            metrics::count(Metric::HandshakesAccepted);
            Ok(accepted(offers_subprotocol))
        }
        Entered::RoomFull => {
            warn!(connection = %conn, address = at, room = %room, "handshake rejected: the room is full");
            Ok(refused(
                Metric::HandshakesRefusedFull,
                403,
                "this room is full",
            ))
        }
    }
}

/// A refused handshake's answer, counted under `why` and in the total.
fn refused(why: Metric, status: i64, reason: &str) -> ApiGatewayProxyResponse {
    metrics::count(Metric::HandshakesRefused);
    metrics::count(why);
    response(status, Some(reason))
}

/// 200, selecting the `wschat` subprotocol when the client offered it: a browser that offered subprotocols drops
/// a socket whose answer selects none.
fn accepted(offers_subprotocol: bool) -> ApiGatewayProxyResponse {
    let mut answer = response(200, None);
    if offers_subprotocol {
        answer.headers.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(transport::SUBPROTOCOL),
        );
    }
    answer
}

/// A join, told to the room's presence watchers.
struct Telling<'a> {
    room: &'a RoomName,
    watchers: Vec<ConnectionId>,
    count: usize,
    fresh: bool,
    name: Option<&'a DisplayName>,
    uid: Option<&'a Uid>,
}

impl Telling<'_> {
    /// The members found past their lifetime (they left without a `$disconnect`) are announced first, then the
    /// newcomer, as many of them as presence damping lets out; the last one out says `recount` when it must.
    async fn announce(
        self,
        announcer: &Announcer,
        rooms: &dyn RoomStore,
        expired: Vec<Someone>,
        announce: Announce,
    ) {
        let leaves = announce.allowed.min(expired.len());
        // Only the others: the newcomer's own connection is not open yet (a post to it would get 410), and it
        // is not a watcher before it asks.
        let join = self.fresh && announce.allowed > leaves;
        if leaves > 0 {
            let departed = Departed {
                room: self.room.clone(),
                names: expired,
                count: self.count - usize::from(self.fresh),
                watchers: self.watchers.clone(),
                announce: Announce {
                    allowed: leaves,
                    recount: announce.recount && !join,
                },
            };
            announcer.departures(rooms, &departed).await;
        }
        if join {
            let frame = ServerFrame::Joined {
                joined: self.name.map(DisplayName::as_str),
                uid: self.uid.map(Uid::as_str),
                count: self.count,
                recount: announce.recount,
            }
            .encode();
            announcer
                .tell(rooms, self.room, &self.watchers, frame)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
    use serde_json::json;

    use super::*;
    use crate::handlers::fixtures;
    use crate::rooms::MemoryRoomStore;

    /// The event as the edge parses it, then the handler.
    async fn handle(
        event: &ApiGatewayWebsocketProxyRequest,
        deps: &Deps,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        super::handle(Connecting::try_from(event)?, deps).await
    }

    fn deps(origins: OriginPolicy) -> (Deps, Arc<MemoryRoomStore>) {
        with_store(MemoryRoomStore::default(), origins)
    }

    /// Any origin, no announcer, a store with these limits.
    fn limited(limits: crate::rooms::Limits) -> (Deps, Arc<MemoryRoomStore>) {
        let policy = crate::rooms::Policy {
            limits,
            ..crate::rooms::Policy::default()
        };
        with_store(
            MemoryRoomStore::default().with_policy(policy),
            OriginPolicy::Any,
        )
    }

    fn with_store(store: MemoryRoomStore, origins: OriginPolicy) -> (Deps, Arc<MemoryRoomStore>) {
        let store = Arc::new(store);
        let deps = Deps {
            rooms: store.clone(),
            origins,
            announcer: None,
            auth_required: false,
        };
        (deps, store)
    }

    #[tokio::test]
    async fn connect_with_a_valid_room_joins_it() {
        let (deps, store) = deps(OriginPolicy::Any);
        let event = fixtures::connect("c1", json!({ "room": "로비" }), json!({}));

        let resp = handle(&event, &deps).await.expect("handled");

        assert_eq!(resp.status_code, 200);
        let room = RoomName::parse("로비").expect("room");
        assert_eq!(
            store.members(&room, 2_000).await.expect("members"),
            vec![ConnectionId::parse("c1").expect("id")]
        );
    }

    #[tokio::test]
    async fn with_auth_required_only_a_verified_user_joins_and_under_the_token_s_name() {
        let (mut deps, store) = deps(OriginPolicy::Any);
        deps.auth_required = true;
        let unverified =
            fixtures::connect("c1", json!({ "room": "lobby", "name": "Ann" }), json!({}));
        let mut verified = fixtures::connect(
            "c2",
            json!({ "room": "lobby", "name": "Mallory\u{202E}" }),
            json!({ "Sec-WebSocket-Protocol": "wschat, a.b.c" }),
        );
        for (key, value) in [
            ("room", "lobby"),
            ("name", "Ann"),
            ("uid", "u-1"),
            ("exp", "1800000600"),
        ] {
            verified
                .request_context
                .authorizer
                .fields
                .insert(key.to_owned(), json!(value));
        }

        let refused = handle(&unverified, &deps).await.expect("handled");
        let joined = handle(&verified, &deps).await.expect("handled");

        assert_eq!(refused.status_code, 401);
        assert_eq!(joined.status_code, 200, "?name= is ignored, not checked");
        assert_eq!(
            joined
                .headers
                .get("sec-websocket-protocol")
                .map(|v| v.as_bytes()),
            Some(&b"wschat"[..]),
            "the offered subprotocol is selected"
        );
        let lobby = RoomName::parse("lobby").expect("room");
        let here = store
            .presence(&lobby, &ConnectionId::parse("c2").expect("id"), 2_000)
            .await
            .expect("presence");
        assert_eq!(here.count, 1);
        assert_eq!(
            here.names,
            [crate::rooms::Someone {
                name: Some("Ann".to_owned()),
                uid: Some("u-1".to_owned())
            }]
        );
    }

    #[tokio::test]
    async fn connect_without_room_is_rejected_with_400() {
        let (deps, store) = deps(OriginPolicy::Any);
        for query in [
            json!({}),
            json!({ "room": "" }),
            json!({ "room": "no spaces" }),
            json!({ "room": "x".repeat(101) }),
        ] {
            let event = fixtures::connect("c1", query.clone(), json!({}));

            let resp = handle(&event, &deps).await.expect("handled");

            assert_eq!(resp.status_code, 400, "{query}");
            assert_eq!(
                store
                    .room_of(&ConnectionId::parse("c1").expect("id"))
                    .await
                    .expect("room_of"),
                None
            );
        }
    }

    #[tokio::test]
    async fn connect_with_a_bad_name_is_rejected_with_400_and_a_reason_and_without_one_is_anonymous()
     {
        let (deps, store) = deps(OriginPolicy::Any);
        for (name, reason) in [
            ("", "empty"),
            (" \t", "empty"),
            ("x".repeat(33).as_str(), "longer than 32"),
            ("a\u{200B}b", "U+200B"),
        ] {
            let event =
                fixtures::connect("c1", json!({ "room": "lobby", "name": name }), json!({}));

            let resp = handle(&event, &deps).await.expect("handled");

            assert_eq!(resp.status_code, 400, "{name:?}");
            let body = match resp.body {
                Some(aws_lambda_events::encodings::Body::Text(t)) => t,
                other => panic!("{other:?}"),
            };
            assert!(body.contains(reason), "{name:?}: {body}");
        }
        assert!(
            store
                .members(&RoomName::parse("lobby").expect("room"), 0)
                .await
                .expect("read")
                .is_empty()
        );

        for query in [
            json!({ "room": "lobby" }),
            json!({ "room": "lobby", "name": "Zoë" }),
        ] {
            let event = fixtures::connect("c2", query.clone(), json!({}));
            let resp = handle(&event, &deps).await.expect("handled");
            assert_eq!(resp.status_code, 200, "{query}");
        }
    }

    #[tokio::test]
    async fn a_newcomer_is_announced_to_the_watchers_only_and_never_to_itself() {
        let store = Arc::new(MemoryRoomStore::default());
        let gateway = Arc::new(crate::gateway::RecordingGateway::default());
        let deps = Deps {
            rooms: store.clone(),
            origins: OriginPolicy::Any,
            announcer: Some(Announcer {
                gateway: gateway.clone(),
                settings: crate::fanout::FanoutSettings::default(),
            }),
            auth_required: false,
        };
        let lobby = RoomName::parse("lobby").expect("room");
        let id = |c: &str| ConnectionId::parse(c).expect("id");
        for conn in ["watcher", "quiet"] {
            store
                .join(&lobby, &id(conn), 1_000, None, None)
                .await
                .expect("join");
        }
        store
            .presence(&lobby, &id("watcher"), 1_000)
            .await
            .expect("asks");

        let newcomer =
            fixtures::connect("new", json!({ "room": "lobby", "name": "Nia" }), json!({}));
        assert_eq!(
            handle(&newcomer, &deps).await.expect("handled").status_code,
            200
        );
        // The same connection again (a retried $connect) is no news.
        assert_eq!(
            handle(&newcomer, &deps).await.expect("handled").status_code,
            200
        );

        assert_eq!(
            gateway.received(&id("watcher")),
            [r#"{"joined":"Nia","count":3}"#]
        );
        assert!(gateway.received(&id("quiet")).is_empty(), "never asked");
        assert!(gateway.received(&id("new")).is_empty(), "not open yet");
    }

    #[tokio::test]
    async fn connect_from_an_unlisted_origin_is_rejected_with_403() {
        let (deps, _) = deps(OriginPolicy::parse("http://127.0.0.1:3000"));
        let evil = fixtures::connect(
            "c1",
            json!({ "room": "lobby" }),
            json!({ "Origin": "https://evil.example" }),
        );
        let good = fixtures::connect(
            "c2",
            json!({ "room": "lobby" }),
            json!({ "Origin": "http://127.0.0.1:3000" }),
        );

        assert_eq!(
            handle(&evil, &deps).await.expect("handled").status_code,
            403
        );
        assert_eq!(
            handle(&good, &deps).await.expect("handled").status_code,
            200
        );
    }

    #[test]
    fn origin_policy_allows_listed_origins_and_non_browsers() {
        let policy = OriginPolicy::parse("https://chat.example.com, http://127.0.0.1:3000/");
        assert!(policy.allows(Some("https://chat.example.com")));
        assert!(policy.allows(Some("HTTP://127.0.0.1:3000")));
        assert!(policy.allows(None));
        assert!(!policy.allows(Some("https://evil.example.com")));
        assert_eq!(OriginPolicy::parse("*"), OriginPolicy::Any);
    }

    #[tokio::test]
    async fn connect_to_a_full_room_is_rejected_with_403_and_a_member_may_come_back() {
        let (deps, store) = limited(crate::rooms::Limits {
            max_members: 2,
            ..crate::rooms::Limits::default()
        });
        let join =
            |conn: &'static str| fixtures::connect(conn, json!({ "room": "lobby" }), json!({}));

        let statuses = [
            handle(&join("a"), &deps).await.expect("a").status_code,
            handle(&join("b"), &deps).await.expect("b").status_code,
            handle(&join("c"), &deps).await.expect("c").status_code,
            handle(&join("a"), &deps)
                .await
                .expect("a again")
                .status_code,
        ];

        assert_eq!(statuses, [200, 200, 403, 200]);
        assert_eq!(
            store
                .room_of(&ConnectionId::parse("c").expect("id"))
                .await
                .expect("room_of"),
            None
        );
    }

    #[tokio::test]
    async fn an_address_past_its_handshakes_or_live_connections_is_refused_with_429() {
        let (deps, store) = limited(crate::rooms::Limits {
            max_members: 1,
            handshakes_per_min: 5,
            connections_per_address: 2,
            ..crate::rooms::Limits::default()
        });
        let mut answers = Vec::new();
        for (conn, room) in [
            ("a", "lobby"),
            ("b", "lobby"),
            ("c", "other"),
            ("d", "third"),
            ("e", "fourth"),
            ("f", "fifth"),
        ] {
            let event = fixtures::connect(conn, json!({ "room": room }), json!({}));
            let resp = handle(&event, &deps).await.expect("handled");
            let body = match resp.body {
                Some(aws_lambda_events::encodings::Body::Text(t)) => t,
                _ => String::new(),
            };
            answers.push((resp.status_code, body));
        }

        let statuses: Vec<i64> = answers.iter().map(|(status, _)| *status).collect();
        assert_eq!(
            statuses,
            [200, 403, 200, 429, 429, 429],
            "b's full room gave its address slot back, so c fits: {answers:?}"
        );
        assert!(
            answers[3].1.contains("too many open connections"),
            "{answers:?}"
        );
        assert!(
            answers[5].1.contains("try again in"),
            "five handshakes a minute: {answers:?}"
        );
        assert_eq!(
            store
                .room_of(&ConnectionId::parse("d").expect("id"))
                .await
                .expect("room_of"),
            None,
            "a refused handshake joins nothing"
        );
    }
}
