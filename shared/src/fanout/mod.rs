//! `group_send`: one frame to every member of a room, concurrently, the way Channels' `group_send` does it over
//! a channel layer, here over PostToConnection.
//!
//! * The frame is encoded once by the caller and shared (`Bytes` clones are reference counts).
//! * At most `max_in_flight` posts run at once: a room of 1,000 members must not open 1,000 sockets at once,
//!   and each post counts against the account's 10,000 requests/s callback throttle.
//! * 410 Gone prunes *that* member (the AWS sample prunes the sender by mistake), unless it joined less than
//!   `prune_grace` ago: API Gateway answers 410 to posts made between `$connect` returning and the connection
//!   being open, and pruning a newcomer then would leave it deaf for good. 429 is retried with capped
//!   exponential backoff and full jitter; 403, 413 and the rest are reported and never prune anyone.
//! * With a deadline (the Lambda's own), no post starts later than `deadline_margin` before it; the members
//!   skipped are reported (they get the message from history when they next notice the gap).
//! * One failed post never fails the fan-out: the [`FanoutReport`] says what happened to each member.
//!
//! Presence events (`joined`, `left`) go to the room's watchers through [`announce`], once each and never retried:
//! the next event carries the right count again. [`Announcer`] is what `$connect` and `$disconnect` announce with.

pub mod shards;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::config::DEFAULT_PRUNE_GRACE;
use crate::config::{DEFAULT_FANOUT_MAX_ATTEMPTS, DEFAULT_FANOUT_MAX_IN_FLIGHT};
use crate::gateway::{Gateway, GatewayError};
use crate::metrics::{self, Metric};
use crate::rooms::{Departed, Member, RoomStore};
use crate::wire::{ConnectionId, RoomName, ServerFrame};

/// Tuning for [`group_send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutSettings {
    /// Posts in flight at once.
    pub max_in_flight: usize,
    /// Attempts per member when throttled (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubled on each retry, with full jitter.
    pub base_backoff: Duration,
    /// Cap on one backoff.
    pub max_backoff: Duration,
    /// A member that connected less than this long ago is not pruned on 410 (its connection may not be open yet).
    pub prune_grace: Duration,
    /// No post starts later than this before the deadline, so the invocation ends before Lambda stops it.
    pub deadline_margin: Duration,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_FANOUT_MAX_IN_FLIGHT,
            max_attempts: DEFAULT_FANOUT_MAX_ATTEMPTS,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(400),
            prune_grace: DEFAULT_PRUNE_GRACE,
            deadline_margin: Duration::from_millis(1500),
        }
    }
}

/// Why a post to one member was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Still throttled after the last attempt.
    Throttled,
    /// 403: a configuration problem.
    Forbidden,
    /// 413: the frame is too large.
    PayloadTooLarge,
    /// Timeouts, connection errors, 5xx.
    Other,
}

/// What [`group_send`] did, member by member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutReport {
    /// Members the frame was delivered to (API Gateway answered 200).
    pub delivered: usize,
    /// Members API Gateway reported gone and that were removed from the room.
    pub pruned: Vec<ConnectionId>,
    /// Retries made after 429 answers, over all members.
    pub retried: u32,
    /// Members the frame could not be delivered to, and why.
    pub failed: Vec<(ConnectionId, Failure)>,
    /// Set when removing the gone members from the store failed; they will expire or be pruned next time.
    pub prune_failed: bool,
    /// Members that answered 410 within `prune_grace` of connecting: kept, not delivered to.
    pub not_yet_open: Vec<ConnectionId>,
    /// Members no post was started for, because the deadline was near.
    pub skipped: Vec<ConnectionId>,
}

impl FanoutReport {
    /// Members the frame did not reach and will not: failed, or skipped near the deadline (the pruned are gone,
    /// and the not yet open hear of it from history).
    pub fn missed(&self) -> usize {
        self.failed.len() + self.skipped.len()
    }
}

enum Outcome {
    Delivered { retries: u32 },
    Gone { retries: u32 },
    Failed { failure: Failure, retries: u32 },
    Skipped,
}

/// One frame on its way to a room's members.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The room (gone members are pruned from it).
    pub room: &'a RoomName,
    /// Who gets the frame, and when each connected.
    pub members: &'a [Member],
    /// The frame, encoded once.
    pub frame: Bytes,
    /// The sender's own copy when it differs (its echo carries the client's id of the message).
    pub own: Option<(&'a ConnectionId, Bytes)>,
    /// The event's time (epoch ms), against which members' ages are measured.
    pub now_ms: i64,
    /// When the invocation must be done (the Lambda's deadline), if anyone knows.
    pub deadline: Option<tokio::time::Instant>,
}

/// Sends the delivery's frame to every member (the sender included, as in Channels) and prunes the gone ones.
pub async fn group_send(
    gateway: &dyn Gateway,
    rooms: &dyn RoomStore,
    delivery: Delivery<'_>,
    settings: &FanoutSettings,
) -> FanoutReport {
    let Delivery {
        room,
        members,
        frame,
        own,
        now_ms,
        deadline,
    } = delivery;
    let last_start = deadline.map(|d| d - settings.deadline_margin);
    let timer = metrics::Timer::start(Metric::FanoutTime);
    // Owned ids in the stream: futures borrowing from the iterator trip rustc's higher-ranked `Send` check
    // (rust-lang/rust#102211) once the handler is boxed as a `Send` future.
    let outcomes: Vec<(Member, Outcome)> = futures_util::stream::iter(members.iter().cloned())
        .map(|member| {
            let frame = match &own {
                Some((conn, copy)) if **conn == member.conn => copy.clone(),
                _ => frame.clone(),
            };
            async move {
                if last_start.is_some_and(|last| tokio::time::Instant::now() >= last) {
                    return (member, Outcome::Skipped);
                }
                let outcome = post_with_retry(gateway, &member.conn, frame, settings).await;
                (member, outcome)
            }
        })
        .buffer_unordered(settings.max_in_flight.max(1))
        .collect()
        .await;
    drop(timer);
    let grace_ms = i64::try_from(settings.prune_grace.as_millis()).unwrap_or(i64::MAX);

    let mut report = FanoutReport::default();
    for (member, outcome) in outcomes {
        let conn = member.conn;
        match outcome {
            Outcome::Delivered { retries } => {
                report.delivered += 1;
                report.retried += retries;
            }
            Outcome::Gone { retries } if now_ms - member.connected_at_ms < grace_ms => {
                report.not_yet_open.push(conn);
                report.retried += retries;
            }
            Outcome::Gone { retries } => {
                report.pruned.push(conn);
                report.retried += retries;
            }
            Outcome::Failed { failure, retries } => {
                report.failed.push((conn, failure));
                report.retried += retries;
            }
            Outcome::Skipped => report.skipped.push(conn),
        }
    }
    metrics::count_n(Metric::Deliveries, report.delivered);
    metrics::count_n(Metric::PostsPruned, report.pruned.len());
    metrics::count_n(Metric::PostsFailed, report.missed());
    if !report.skipped.is_empty() {
        tracing::warn!(
            room = %room,
            skipped = report.skipped.len(),
            "the invocation's deadline is near: posts not started"
        );
    }
    if !report.pruned.is_empty() {
        report.pruned.sort();
        match rooms.prune(room, &report.pruned, now_ms).await {
            // Pruned members are members that left without a `$disconnect`: presence hears of it now.
            Ok(departed) => announce_departures(gateway, rooms, &departed, settings).await,
            Err(err) => {
                tracing::warn!(error = %err, room = %room, "could not prune gone connections");
                report.prune_failed = true;
            }
        }
    }
    report
}

/// Tells `watchers` (the connections that asked for presence) `frame`, concurrently, once each: a presence event
/// is a hint (the next one carries the right count again), so it is not retried. A watcher answered 410 is gone:
/// it is pruned from `room`, without an announcement of its own (which would announce to the same watchers
/// again); every other failure is logged.
pub async fn announce(
    gateway: &dyn Gateway,
    rooms: &dyn RoomStore,
    room: &RoomName,
    watchers: &[ConnectionId],
    frame: Bytes,
    settings: &FanoutSettings,
) {
    if watchers.is_empty() {
        return;
    }
    let post = |conn: ConnectionId| {
        let frame = frame.clone();
        async move {
            let result = gateway.post_to_connection(&conn, frame).await;
            (conn, result)
        }
    };
    let mut posts = futures_util::stream::iter(watchers.to_vec())
        .map(post)
        .buffer_unordered(settings.max_in_flight.max(1));
    let mut gone = Vec::new();
    while let Some((conn, result)) = posts.next().await {
        match result {
            Ok(()) => metrics::count(Metric::Deliveries),
            Err(GatewayError::Gone) => gone.push(conn),
            Err(err) => {
                if matches!(err, GatewayError::Throttled) {
                    metrics::count(Metric::PostsThrottled);
                }
                metrics::count(Metric::PostsFailed);
                let err: &dyn std::error::Error = &err;
                tracing::warn!(connection = %conn, room = %room, error = err, "presence event not delivered");
            }
        }
    }
    metrics::count_n(Metric::PostsPruned, gone.len());
    // Not announced, so the count is not needed: any clock will do.
    if !gone.is_empty()
        && let Err(err) = rooms.prune(room, &gone, 0).await
    {
        tracing::warn!(error = %err, room = %room, "could not prune gone watchers");
    }
}

/// Announces the people that left `departed.room` to its watchers, `{"left": <name or null>, "count": n}` each,
/// as many as presence damping lets out (`departed.announce`); the last one says `recount` when it must.
pub async fn announce_departures(
    gateway: &dyn Gateway,
    rooms: &dyn RoomStore,
    departed: &Departed,
    settings: &FanoutSettings,
) {
    let allowed = departed.announce.allowed.min(departed.names.len());
    for (i, who) in departed.names.iter().take(allowed).enumerate() {
        let frame = ServerFrame::Left {
            left: who.name.as_deref(),
            uid: who.uid.as_deref(),
            count: departed.count,
            recount: departed.announce.recount && i + 1 == allowed,
        }
        .encode();
        announce(
            gateway,
            rooms,
            &departed.room,
            &departed.watchers,
            frame,
            settings,
        )
        .await;
    }
}

/// How `$connect` and `$disconnect` tell presence watchers about joins and leaves: the Management API client and
/// the fan-out tuning. Without one (no `WS_MANAGEMENT_ENDPOINT`), joins and leaves are not announced.
#[derive(Clone)]
pub struct Announcer {
    /// Where the events are posted.
    pub gateway: std::sync::Arc<dyn Gateway>,
    /// Concurrency of the posts.
    pub settings: FanoutSettings,
}

impl Announcer {
    /// Tells `watchers` of `room` one presence event ([`announce`]).
    pub async fn tell(
        &self,
        rooms: &dyn RoomStore,
        room: &RoomName,
        watchers: &[ConnectionId],
        frame: Bytes,
    ) {
        announce(
            self.gateway.as_ref(),
            rooms,
            room,
            watchers,
            frame,
            &self.settings,
        )
        .await;
    }

    /// Tells the watchers of `departed.room` who left ([`announce_departures`]).
    pub async fn departures(&self, rooms: &dyn RoomStore, departed: &Departed) {
        announce_departures(self.gateway.as_ref(), rooms, departed, &self.settings).await;
    }
}

async fn post_with_retry(
    gateway: &dyn Gateway,
    conn: &ConnectionId,
    frame: Bytes,
    settings: &FanoutSettings,
) -> Outcome {
    let mut retries = 0;
    loop {
        match gateway.post_to_connection(conn, frame.clone()).await {
            Ok(()) => return Outcome::Delivered { retries },
            Err(GatewayError::Gone) => return Outcome::Gone { retries },
            Err(GatewayError::Throttled) if retries + 1 < settings.max_attempts => {
                metrics::count(Metric::PostsThrottled);
                tokio::time::sleep(backoff(settings, retries)).await;
                retries += 1;
            }
            Err(err) => {
                if matches!(err, GatewayError::Throttled) {
                    metrics::count(Metric::PostsThrottled);
                }
                let failure = match err {
                    GatewayError::Throttled => Failure::Throttled,
                    GatewayError::Forbidden(_) => Failure::Forbidden,
                    GatewayError::PayloadTooLarge => Failure::PayloadTooLarge,
                    GatewayError::Gone | GatewayError::Other(_) => Failure::Other,
                };
                let error: &dyn std::error::Error = &err;
                tracing::warn!(connection = %conn, error, "post_to_connection failed");
                return Outcome::Failed { failure, retries };
            }
        }
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, base * 2^retry)]`.
fn backoff(settings: &FanoutSettings, retry: u32) -> Duration {
    let ceiling = settings
        .base_backoff
        .saturating_mul(1 << retry.min(16))
        .min(settings.max_backoff);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::RecordingGateway;
    use crate::rooms::MemoryRoomStore;
    use crate::wire::ServerFrame;

    fn id(s: &str) -> ConnectionId {
        ConnectionId::parse(s).expect("valid id")
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).expect("valid room")
    }

    /// Members that connected long ago (epoch 0).
    fn old(ids: &[ConnectionId]) -> Vec<Member> {
        ids.iter()
            .map(|conn| Member {
                conn: conn.clone(),
                connected_at_ms: 0,
            })
            .collect()
    }

    /// A delivery of `frame` to `members` of `room` at 10 minutes past the epoch, without deadline.
    fn delivery<'a>(room: &'a RoomName, members: &'a [Member], frame: Bytes) -> Delivery<'a> {
        Delivery {
            room,
            members,
            frame,
            own: None,
            now_ms: 600_000,
            deadline: None,
        }
    }

    async fn store_with(members: &[(&str, &str)]) -> MemoryRoomStore {
        let store = MemoryRoomStore::default();
        for (r, c) in members {
            store
                .join(&room(r), &id(c), 0, None, None)
                .await
                .expect("join");
        }
        store
    }

    #[tokio::test]
    async fn every_member_gets_the_frame_the_sender_included() {
        let store = store_with(&[("lobby", "a"), ("lobby", "b"), ("other", "c")]).await;
        let gw = RecordingGateway::new();
        let members = store.members(&room("lobby"), 0).await.expect("members");
        let frame = ServerFrame::Message { message: "hi" }.encode();

        let report = group_send(
            &gw,
            &store,
            delivery(&room("lobby"), &old(&members), frame),
            &FanoutSettings::default(),
        )
        .await;

        assert_eq!(report.delivered, 2);
        assert_eq!(gw.received(&id("a")), vec![r#"{"message":"hi"}"#]);
        assert_eq!(gw.received(&id("b")), vec![r#"{"message":"hi"}"#]);
        assert!(
            gw.received(&id("c")).is_empty(),
            "another room's member must get nothing"
        );
    }

    #[tokio::test]
    async fn gone_connection_is_pruned_and_the_others_still_get_the_frame() {
        let store = store_with(&[("lobby", "a"), ("lobby", "stale"), ("lobby", "b")]).await;
        let gw = RecordingGateway::new();
        gw.mark_gone(&id("stale"));
        let members = store.members(&room("lobby"), 0).await.expect("members");

        let report = group_send(
            &gw,
            &store,
            delivery(&room("lobby"), &old(&members), Bytes::from_static(b"x")),
            &FanoutSettings::default(),
        )
        .await;

        assert_eq!(report.delivered, 2);
        assert_eq!(report.pruned, vec![id("stale")]);
        assert_eq!(
            store.members(&room("lobby"), 0).await.expect("members"),
            vec![id("a"), id("b")]
        );
        assert_eq!(store.room_of(&id("stale")).await.expect("room_of"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_post_is_retried_until_it_succeeds() {
        let store = store_with(&[("lobby", "a")]).await;
        let gw = RecordingGateway::new();
        gw.throttle(&id("a"), 2);
        let members = vec![id("a")];

        let report = group_send(
            &gw,
            &store,
            delivery(&room("lobby"), &old(&members), Bytes::from_static(b"x")),
            &FanoutSettings::default(),
        )
        .await;

        assert_eq!(report.delivered, 1);
        assert_eq!(report.retried, 2);
        assert_eq!(gw.attempts(&id("a")), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_beyond_the_attempt_budget_is_reported_not_pruned() {
        let store = store_with(&[("lobby", "a")]).await;
        let gw = RecordingGateway::new();
        gw.throttle(&id("a"), 100);
        let settings = FanoutSettings {
            max_attempts: 3,
            ..FanoutSettings::default()
        };

        let report = group_send(
            &gw,
            &store,
            delivery(&room("lobby"), &old(&[id("a")]), Bytes::from_static(b"x")),
            &settings,
        )
        .await;

        assert_eq!(report.delivered, 0);
        assert_eq!(report.failed, vec![(id("a"), Failure::Throttled)]);
        assert_eq!(gw.attempts(&id("a")), 3);
        assert_eq!(
            store.members(&room("lobby"), 0).await.expect("members"),
            vec![id("a")]
        );
    }

    #[tokio::test]
    async fn forbidden_is_reported_and_never_prunes() {
        let store = store_with(&[("lobby", "a"), ("lobby", "b")]).await;
        let gw = RecordingGateway::new();
        gw.mark_forbidden(&id("a"));
        let members = store.members(&room("lobby"), 0).await.expect("members");

        let report = group_send(
            &gw,
            &store,
            delivery(&room("lobby"), &old(&members), Bytes::from_static(b"x")),
            &FanoutSettings::default(),
        )
        .await;

        assert_eq!(report.failed, vec![(id("a"), Failure::Forbidden)]);
        assert_eq!(report.delivered, 1);
        assert_eq!(
            store
                .members(&room("lobby"), 0)
                .await
                .expect("members")
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_newcomer_answering_410_within_the_grace_period_is_kept_and_an_old_one_pruned() {
        let store = store_with(&[("lobby", "new"), ("lobby", "old")]).await;
        let gw = RecordingGateway::new();
        gw.mark_gone(&id("new"));
        gw.mark_gone(&id("old"));
        let now = 600_000;
        let members = [
            Member {
                conn: id("new"),
                connected_at_ms: now - 1_000,
            },
            Member {
                conn: id("old"),
                connected_at_ms: now - 60_000,
            },
        ];

        let report = group_send(
            &gw,
            &store,
            delivery(&room("lobby"), &members, Bytes::from_static(b"x")),
            &FanoutSettings::default(),
        )
        .await;

        assert_eq!(report.not_yet_open, vec![id("new")]);
        assert_eq!(report.pruned, vec![id("old")]);
        assert_eq!(
            store.members(&room("lobby"), 0).await.expect("members"),
            vec![id("new")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_post_starts_once_the_deadline_is_near_and_the_skipped_are_reported() {
        let store = store_with(&[("lobby", "a"), ("lobby", "b")]).await;
        let gw = RecordingGateway::new();
        let members = old(&[id("a"), id("b")]);
        let settings = FanoutSettings::default();
        let deadline = tokio::time::Instant::now() + settings.deadline_margin / 2;

        let report = group_send(
            &gw,
            &store,
            Delivery {
                deadline: Some(deadline),
                ..delivery(&room("lobby"), &members, Bytes::from_static(b"x"))
            },
            &settings,
        )
        .await;

        assert_eq!(report.delivered, 0);
        assert_eq!(report.skipped.len(), 2);
        assert_eq!(gw.attempts(&id("a")), 0);
    }

    #[test]
    fn backoff_stays_within_its_cap() {
        let settings = FanoutSettings::default();
        for retry in 0..40 {
            assert!(backoff(&settings, retry) <= settings.max_backoff);
        }
    }
}
