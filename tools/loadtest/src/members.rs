//! The members of a benchmark room: WebSocket clients that report every text frame they receive.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The sending half of a member's WebSocket.
pub type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// Connects `members` clients to `url`, one after the other; each reports the text frames it receives on `seen`,
/// tagged with its index. Returns their sending halves, in order.
pub async fn connect_members(
    url: &str,
    members: usize,
    seen: &mpsc::UnboundedSender<(usize, String)>,
) -> anyhow::Result<Vec<Sink>> {
    let mut sinks = Vec::with_capacity(members);
    for index in 0..members {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .context("connecting a member timed out")??;
        let (sink, mut stream) = ws.split();
        sinks.push(sink);
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(text) = frame {
                    let _ = seen.send((index, text.to_string()));
                }
            }
        });
    }
    Ok(sinks)
}
