//! What a store keeps and enforces besides membership lifetime: history retention, the room cap, the rate limits
//! of chat, of other frames and of handshakes per address, and presence damping.

use std::time::Duration;

use crate::config;

/// How much of a room's history the store keeps and hands out at once (`HISTORY_MAX_MESSAGES`,
/// `HISTORY_MAX_BYTES`, `HISTORY_TTL_SECS`, `HISTORY_PAGE_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many messages of each room are kept.
    pub max_messages: usize,
    /// ... and at most this many bytes of their frames, the oldest going first (the newest always stays).
    pub max_bytes: usize,
    /// A room's history (and its sequence) is forgotten this long after its last message.
    pub ttl: Duration,
    /// A history answer carries at most this many bytes of frames (at least one frame).
    pub page_bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_messages: config::DEFAULT_HISTORY_MAX_MESSAGES,
            max_bytes: config::DEFAULT_HISTORY_MAX_BYTES,
            ttl: config::DEFAULT_HISTORY_TTL,
            page_bytes: config::DEFAULT_HISTORY_PAGE_BYTES,
        }
    }
}

/// What a store keeps and enforces besides membership lifetime: one value, so every store takes the same
/// settings the same way (`startup::policy` reads them from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// How much history is kept.
    pub retention: Retention,
    /// The room cap and the rate limits.
    pub limits: Limits,
}

/// What the store enforces per room and per connection, in the same round trips as the writes they guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `$connect` into a room with this many live members is refused (`MAX_ROOM_MEMBERS`).
    pub max_members: usize,
    /// Chat messages a connection may send per second, sustained (`RATE_LIMIT_PER_SEC`).
    pub messages_per_sec: u32,
    /// Messages a connection may send at once after a quiet spell (`RATE_LIMIT_BURST`).
    pub burst: u32,
    /// Other frames (history, presence, ping, refused ones) a connection may send per second
    /// (`FRAME_RATE_PER_SEC`).
    pub frames_per_sec: u32,
    /// ... and at once (`FRAME_BURST`); refused this many times more in a row, a connection is closed.
    pub frame_burst: u32,
    /// Handshakes one source address may make per minute, and at once (`CONNECT_RATE_PER_IP`).
    pub handshakes_per_min: u32,
    /// Live connections one source address may hold (`MAX_CONNECTIONS_PER_IP`).
    pub connections_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_members: config::DEFAULT_MAX_ROOM_MEMBERS,
            messages_per_sec: config::DEFAULT_RATE_LIMIT_PER_SEC,
            burst: config::DEFAULT_RATE_LIMIT_BURST,
            frames_per_sec: config::DEFAULT_FRAME_RATE_PER_SEC,
            frame_burst: config::DEFAULT_FRAME_BURST,
            handshakes_per_min: config::DEFAULT_CONNECT_RATE_PER_IP,
            connections_per_address: config::DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

/// Presence damping: joins and leaves announced to a room's watchers per second, sustained, however fast people
/// come and go. The ones beyond are merged: the next announcement says `recount`, and watchers ask again.
pub const ANNOUNCEMENTS_PER_SEC: u32 = 1;

/// ... and at once after a quiet spell.
pub const ANNOUNCEMENT_BURST: u32 = 10;
