//! `{"action": "history", "after": n, "epoch": "…"}`: the retained messages after seq `after`, to the sender alone,
//! at most `HISTORY_PAGE_BYTES` of them (the last frame says `"more": true` when more follow), in frames under API
//! Gateway's 32 KB frame limit, in order: one billed message with the default page, at most 4 with the largest.

use tracing::{info, warn};

use super::Deps;
use super::reply::{Failure, Outcome};
use crate::handlers::events::Caller;
use crate::metrics::{self, Metric};
use crate::wire::{Epoch, MAX_FRAME_BYTES, RoomName, history_frames};

/// Sends the sender what followed `after` of history `epoch` (the most recent messages without `after`).
pub(super) async fn send(
    room: &RoomName,
    caller: &Caller,
    after: Option<u64>,
    epoch: Option<Epoch>,
    deps: &Deps,
) -> Outcome {
    let sender = &caller.conn;
    let page = deps
        .rooms
        .history(room, after, epoch.as_ref(), caller.time_ms)
        .await
        .map_err(Failure::store_down)?;
    let frames = history_frames(
        &page.epoch,
        &page.frames,
        page.complete,
        page.more,
        MAX_FRAME_BYTES,
    );
    info!(
        connection = %sender,
        room = %room,
        after,
        messages = page.frames.len(),
        frames = frames.len(),
        complete = page.complete,
        more = page.more,
        "history sent"
    );
    // One after another: the client relies on their order, and only the last says `complete`.
    for frame in frames {
        let bytes = frame.len();
        if let Err(err) = deps.gateway.post_to_connection(sender, frame).await {
            let err: &dyn std::error::Error = &err;
            warn!(connection = %sender, error = err, "could not send history");
            break;
        }
        metrics::count_n(Metric::HistoryBytes, bytes);
    }
    Ok(())
}
