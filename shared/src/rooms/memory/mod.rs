//! In-memory room store: the emulator's default and the unit tests' fake, with the same expiry, sequence and
//! history rules as Redis.

mod state;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use self::state::State;
use super::{
    Admission, Departed, Entered, HistoryPage, MAX_CONNECTION_LIFETIME, MAX_PRESENCE_NAMES, Policy,
    Presence, PublishOutcome, Published, RoomStore, Sender, Someone, Spent, StoreError,
};
use crate::wire::{ConnectionId, DisplayName, Epoch, RoomName, SourceAddress, Uid, chat_frame};

/// A [`RoomStore`] held in process memory. Membership and history expire like the Redis store's.
#[derive(Debug)]
pub struct MemoryRoomStore {
    lifetime_ms: i64,
    policy: Policy,
    state: Mutex<State>,
}

impl Default for MemoryRoomStore {
    fn default() -> Self {
        Self::new(MAX_CONNECTION_LIFETIME)
    }
}

impl MemoryRoomStore {
    /// A store whose memberships last `lifetime`, with the default [`Policy`].
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime_ms: millis(lifetime),
            policy: Policy::default(),
            state: Mutex::default(),
        }
    }

    /// The same store keeping history and enforcing limits as `policy` says.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Forgets everything, as a Redis that restarted without its data would: memberships, sequences and history.
    pub fn lose_everything(&self) {
        *self.state() = State::default();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (each update is one insert or
        // remove), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl RoomStore for MemoryRoomStore {
    async fn join(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        connected_at_ms: i64,
        name: Option<&DisplayName>,
        uid: Option<&Uid>,
    ) -> Result<Entered, StoreError> {
        let mut state = self.state();
        // The clock of the join itself: members older than the lifetime do not count towards the cap.
        let cutoff = connected_at_ms.saturating_sub(self.lifetime_ms);
        let expired = state.expire(room, cutoff);
        let live = state.live_members(room, cutoff);
        let fresh = !live.contains(conn);
        if live.len() >= self.policy.limits.max_members && fresh {
            return Ok(Entered::RoomFull);
        }
        // Someone new: not a member yet, and no other tab of the same signed-in user is one either.
        let newcomer = fresh
            && uid.is_none_or(|uid| {
                live.iter()
                    .all(|other| state.someone(other).uid.as_deref() != Some(uid.as_str()))
            });
        state.add(room, conn, connected_at_ms);
        if name.is_some() || uid.is_some() {
            state.names.insert(conn.clone(), Someone::stored(name, uid));
        }
        let announce = state.damp(room, expired.len() + usize::from(newcomer), connected_at_ms);
        let members = state.live_members(room, cutoff);
        Ok(Entered::Joined {
            fresh: newcomer,
            count: state.people(&members),
            watchers: state.watchers_of(room, conn),
            expired,
            announce,
            head: state.head(room, connected_at_ms),
        })
    }

    async fn presence(
        &self,
        room: &RoomName,
        conn: &ConnectionId,
        now_ms: i64,
    ) -> Result<Presence, StoreError> {
        let mut state = self.state();
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let expired = state.expire(room, cutoff);
        let live = state.live_members(room, cutoff);
        let watchers = state.watchers_of(room, conn);
        state
            .watchers
            .entry(room.clone())
            .or_default()
            .insert(conn.clone());
        let mut names: Vec<Someone> = live
            .iter()
            .map(|c| state.someone(c))
            .filter(|who| who.name.is_some())
            .collect();
        names.sort();
        // One entry per person: a signed-in user's tabs are listed once.
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|who| who.uid.as_ref().is_none_or(|uid| seen.insert(uid.clone())));
        names.truncate(MAX_PRESENCE_NAMES);
        let announce = state.damp(room, expired.len(), now_ms);
        Ok(Presence {
            count: state.people(&live),
            names,
            expired,
            watchers,
            announce,
            head: state.head(room, now_ms),
        })
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomName>, StoreError> {
        Ok(self.state().conns.get(conn).cloned())
    }

    async fn publish(
        &self,
        room: &RoomName,
        sender: &Sender<'_>,
        message_json: &str,
        now_ms: i64,
    ) -> Result<PublishOutcome, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let ttl_ms = millis(self.policy.retention.ttl);
        let max = self.policy.retention.max_messages;
        let mut state = self.state();
        state.seen.retain(|_, (_, _, until)| *until > now_ms);
        let seen_key = sender.message_id.map(|id| (room.clone(), id.to_owned()));
        let repeat = seen_key
            .as_ref()
            .and_then(|key| state.seen.get(key))
            .copied();
        if let Err(retry_after_ms) = state.chat_token(room, sender.conn, self.policy.limits, now_ms)
        {
            return Ok(PublishOutcome::RateLimited { retry_after_ms });
        }
        state.add(room, sender.conn, sender.connected_at_ms);
        if sender.user.is_some() || sender.uid.is_some() {
            state.names.insert(
                sender.conn.clone(),
                Someone::stored(sender.user, sender.uid),
            );
        }
        let members = state.live_member_times(room, cutoff);
        let history = state.history(room, now_ms, ttl_ms);
        if let Some((seq, ts, _)) = repeat {
            // A retried publish: the frame it got the first time, if still retained.
            let first = history.seq + 1 - history.frames.len() as u64;
            if let Some(frame) = seq
                .checked_sub(first)
                .and_then(|i| history.frames.get(usize::try_from(i).ok()?))
            {
                return Ok(PublishOutcome::Published(Published {
                    frame: frame.clone(),
                    seq,
                    epoch: history.epoch.clone(),
                    ts,
                    members,
                }));
            }
        }
        history.seq += 1;
        history.ts = history.ts.max(now_ms);
        history.expires_at_ms = now_ms.saturating_add(ttl_ms);
        let frame = chat_frame(
            message_json,
            sender.user,
            sender.uid,
            history.seq,
            &history.epoch,
            history.ts,
        );
        history.push(frame.clone(), max, self.policy.retention.max_bytes);
        let published = Published {
            frame,
            seq: history.seq,
            epoch: history.epoch.clone(),
            ts: history.ts,
            members,
        };
        if let Some(key) = seen_key {
            state.seen.insert(
                key,
                (
                    published.seq,
                    published.ts,
                    now_ms.saturating_add(sender.remember_ms),
                ),
            );
        }
        Ok(PublishOutcome::Published(published))
    }

    async fn history(
        &self,
        room: &RoomName,
        after: Option<u64>,
        epoch: Option<&Epoch>,
        now_ms: i64,
    ) -> Result<HistoryPage, StoreError> {
        let ttl_ms = millis(self.policy.retention.ttl);
        let mut state = self.state();
        let history = state.history(room, now_ms, ttl_ms);
        let retained = history.frames.len() as u64;
        // The seq of the oldest retained message (one past the last when nothing is retained).
        let first = history.seq + 1 - retained;
        let (skip, complete) = match (after, epoch) {
            // `after` without an epoch means the current one.
            (Some(after), epoch) if epoch.is_none_or(|e| *e == history.epoch) => (
                after.saturating_sub(first - 1).min(retained),
                after + 1 >= first,
            ),
            // A seq of a history that is gone: everything retained now, and the client must know it missed some.
            (Some(_), _) => (0, false),
            (None, _) => (0, first <= 1),
        };
        let page = self.policy.retention.page_bytes;
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let mut frames = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        if after.is_some() {
            // What follows, up to a page: at least one message, so a reader paging through always moves on.
            for frame in history.frames.iter().skip(skip) {
                if !frames.is_empty() && bytes + frame.len() > page {
                    more = true;
                    break;
                }
                bytes += frame.len();
                frames.push(frame.clone());
            }
        } else {
            // The most recent messages that fit in a page, oldest first.
            for frame in history.frames.iter().rev() {
                if !frames.is_empty() && bytes + frame.len() > page {
                    break;
                }
                bytes += frame.len();
                frames.push(frame.clone());
            }
            frames.reverse();
        }
        let complete = if after.is_none() {
            first + (retained - frames.len() as u64) <= 1
        } else {
            complete
        };
        Ok(HistoryPage {
            epoch: history.epoch.clone(),
            frames,
            complete,
            more,
        })
    }

    async fn members(&self, room: &RoomName, now_ms: i64) -> Result<Vec<ConnectionId>, StoreError> {
        let cutoff = now_ms.saturating_sub(self.lifetime_ms);
        let mut state = self.state();
        state.expire(room, cutoff);
        Ok(state.live_members(room, cutoff))
    }

    async fn leave(
        &self,
        conn: &ConnectionId,
        _room: Option<&RoomName>,
        now_ms: i64,
    ) -> Result<Option<Departed>, StoreError> {
        let mut state = self.state();
        let Some(room) = state.conns.get(conn).cloned() else {
            return Ok(None);
        };
        let names: Vec<_> = state.remove(&room, conn).into_iter().collect();
        let announce = state.damp(&room, names.len(), now_ms);
        let departed = state.departed(room, names, now_ms.saturating_sub(self.lifetime_ms));
        Ok(Some(Departed {
            announce,
            ..departed
        }))
    }

    async fn prune(
        &self,
        room: &RoomName,
        gone: &[ConnectionId],
        now_ms: i64,
    ) -> Result<Departed, StoreError> {
        let mut state = self.state();
        let names: Vec<_> = gone.iter().filter_map(|c| state.remove(room, c)).collect();
        let announce = state.damp(room, names.len(), now_ms);
        let departed = state.departed(room.clone(), names, now_ms.saturating_sub(self.lifetime_ms));
        Ok(Departed {
            announce,
            ..departed
        })
    }

    async fn spend(&self, conn: &ConnectionId, now_ms: i64) -> Result<Spent, StoreError> {
        Ok(self.state().spend(conn, self.policy.limits, now_ms))
    }

    async fn admit(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
        connected_at_ms: i64,
    ) -> Result<Admission, StoreError> {
        let cutoff = connected_at_ms.saturating_sub(self.lifetime_ms);
        Ok(self
            .state()
            .admit(address, conn, self.policy.limits, connected_at_ms, cutoff))
    }

    async fn release(
        &self,
        address: &SourceAddress,
        conn: &ConnectionId,
    ) -> Result<(), StoreError> {
        if let Some(live) = self.state().address_conns.get_mut(address.block()) {
            live.remove(conn);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn id(raw: &str) -> ConnectionId {
        ConnectionId::parse(raw).expect("id")
    }

    #[tokio::test]
    async fn a_leave_counts_only_members_within_their_lifetime_and_expiry_is_reported_once() {
        let store = MemoryRoomStore::default();
        let room = RoomName::parse("lobby").expect("room");
        let now = 10 * HOUR_MS;
        let stale = DisplayName::parse("Stale").expect("name");
        store
            .join(&room, &id("stale"), now - 3 * HOUR_MS, Some(&stale), None)
            .await
            .expect("join");
        for conn in ["a", "b"] {
            store
                .join(&room, &id(conn), now - HOUR_MS, None, None)
                .await
                .expect("join");
        }

        let left = store
            .leave(&id("a"), None, now)
            .await
            .expect("leave")
            .expect("was a member");
        assert_eq!(
            left.count, 1,
            "b only: the stale member is past its lifetime"
        );

        let present = store
            .presence(&room, &id("b"), now)
            .await
            .expect("presence");
        assert_eq!(present.expired, [Someone::named("Stale")]);
        assert_eq!(present.count, 1);
        let again = store
            .presence(&room, &id("b"), now)
            .await
            .expect("presence");
        assert!(again.expired.is_empty(), "reported once: {again:?}");
    }
}
