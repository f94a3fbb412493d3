//! One accepted WebSocket connection, from the upgrade to `$disconnect`: a writer task that owns the sink
//! (frames from PostToConnection, then at most one close frame), and a reader loop that enforces API Gateway's
//! limits (32 KB frames, no binary frames, idle timeout, maximum duration) and turns text frames into
//! integrations.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;

use crate::integration::{disconnect, on_text};
use crate::state::{AppState, Control, NewConnection};
use crate::timefmt::now_ms;

/// Frames written to a client with one flush, at most (a fair share of the writer's time for other sockets).
const WRITE_BATCH: usize = 64;

/// Why a connection ended: the code and reason `$disconnect` reports, and whether the gateway must send the
/// close frame (it ended the connection) or the client already did.
struct Ending {
    code: u16,
    reason: String,
    gateway_closes: bool,
}

pub(crate) async fn run(
    state: AppState,
    socket: WebSocket,
    new: NewConnection,
    last_active_at: Arc<AtomicI64>,
) {
    let NewConnection {
        info,
        mut outbound,
        mut control,
    } = new;
    let conn = info.connection_id.clone();
    let opened = Instant::now();
    state.meter.opened();
    let (mut sink, mut stream) = socket.split();
    let (close_tx, mut close_rx) = mpsc::channel::<CloseFrame>(1);
    // When the gateway last sent the client a frame ([`crate::Options::idle_reset_on_send`]).
    let last_sent_at = Arc::new(AtomicI64::new(info.connected_at));
    // Only read with the option on: without it the writer need not look at the clock for every frame.
    let sent_at = state
        .options
        .idle_reset_on_send
        .then(|| last_sent_at.clone());

    // The writer owns the sink: frames from PostToConnection, then at most one close frame.
    let writer = tokio::spawn(async move {
        let mut outbound_open = true;
        loop {
            tokio::select! {
                // A close order is served first, so the registry dropping its sender cannot end the writer
                // before the close frame is out; the frames already queued go before it: their posts were
                // answered 200, so they are the client's before the close.
                biased;
                close = close_rx.recv() => {
                    if let Some(frame) = close {
                        while let Ok(queued) = outbound.try_recv() {
                            if sink.feed(queued.into_message()).await.is_err() {
                                break;
                            }
                        }
                        let _ = sink.send(Message::Close(Some(frame))).await;
                    }
                    break;
                }
                frame = outbound.recv(), if outbound_open => {
                    let Some(frame) = frame else {
                        outbound_open = false;
                        continue;
                    };
                    // The frames already queued behind this one go out in the same write: in a busy room a
                    // client's frames arrive faster than one syscall each would carry them.
                    let mut next = Some(frame);
                    let mut written = 0;
                    let mut failed = false;
                    while let Some(frame) = next.take() {
                        if sink.feed(frame.into_message()).await.is_err() {
                            failed = true;
                            break;
                        }
                        written += 1;
                        if written < WRITE_BATCH {
                            next = outbound.try_recv().ok();
                        }
                    }
                    if failed || sink.flush().await.is_err() {
                        break;
                    }
                    if let Some(sent_at) = &sent_at {
                        sent_at.store(now_ms(), Ordering::Relaxed);
                    }
                }
            }
        }
        let _ = sink.close().await;
    });

    let max_duration = tokio::time::sleep(state.options.max_duration);
    tokio::pin!(max_duration);
    let idle = tokio::time::sleep(state.options.idle_timeout);
    tokio::pin!(idle);
    let ending = loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    state.meter.received(text.len());
                    let now = now_ms();
                    last_active_at.store(now, Ordering::Relaxed);
                    idle.as_mut().reset(tokio::time::Instant::now() + state.options.idle_timeout);
                    // Like API Gateway, one connection's messages are integrations running side by side, not
                    // a queue: two quick messages may finish (and be delivered) in either order.
                    let (state, info) = (state.clone(), info.clone());
                    tokio::spawn(async move { on_text(&state, &info, text.as_str(), now).await });
                }
                Some(Ok(Message::Binary(_))) => {
                    break Ending { code: 1003, reason: "Binary frames are not supported".into(), gateway_closes: true };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| (f.code, f.reason.to_string()));
                    break Ending { code, reason, gateway_closes: false };
                }
                Some(Err(err)) if too_big(&err) => {
                    break Ending { code: 1009, reason: "Message too big".into(), gateway_closes: true };
                }
                Some(Err(_)) | None => break Ending { code: 1006, reason: "Going away".into(), gateway_closes: false },
            },
            () = &mut idle => {
                if state.options.idle_reset_on_send {
                    let idle_ms = i64::try_from(state.options.idle_timeout.as_millis()).unwrap_or(i64::MAX);
                    let left = last_sent_at.load(Ordering::Relaxed).saturating_add(idle_ms) - now_ms();
                    if left > 0 {
                        let left = Duration::from_millis(left.unsigned_abs());
                        idle.as_mut().reset(tokio::time::Instant::now() + left);
                        continue;
                    }
                }
                break Ending { code: 1001, reason: "Going away".into(), gateway_closes: true };
            }
            () = &mut max_duration => break Ending { code: 1001, reason: "Going away".into(), gateway_closes: true },
            order = control.recv() => {
                let (code, reason) = match order {
                    Some(Control::Close { code, reason }) => (code, reason),
                    None => (1001, "Going away"),
                };
                break Ending { code, reason: reason.into(), gateway_closes: true };
            }
        }
    };

    // Gone from the registry first: from here on PostToConnection answers 410, as on AWS.
    state.connections().remove(&conn);
    if ending.gateway_closes {
        let frame = CloseFrame {
            code: ending.code,
            reason: Utf8Bytes::from(ending.reason.as_str()),
        };
        let _ = close_tx.send(frame).await;
    }
    drop(close_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    state.meter.closed(opened.elapsed());

    disconnect(&state, &info, ending.code, &ending.reason).await;
}

/// A read that failed on API Gateway's size limits (a frame over 32 KB, a message over 128 KB).
fn too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if matches!(
            err.downcast_ref::<tungstenite::Error>(),
            Some(tungstenite::Error::Capacity(_))
        ) {
            return true;
        }
        source = err.source();
    }
    false
}
