//! The CDP frame pump: forwards WebSocket messages between one client and
//! one browser connection, both ways, unchanged.
//!
//! Each direction reads one message and does not read the next until the
//! previous one was written to the other side, so a slow reader slows its
//! writer down (TCP backpressure) instead of making the server buffer.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest frame and message we pass (256 MiB): big screenshots and PDFs fit.
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// The WebSocket settings for both legs of the proxy.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        // Write straight through: the pump's own pacing is the buffer.
        .write_buffer_size(0)
}

/// Why a pump stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpEnd {
    /// The client closed or dropped.
    ClientLeft,
    /// The browser side closed or dropped.
    BrowserLeft,
    /// The caller stopped it (the session ended).
    Stopped,
}

/// Forwards frames until one side leaves or `stop` resolves, then closes
/// both sides, adding the payload bytes forwarded (both ways) to `bytes`.
/// Text and binary frames pass unchanged; ping and pong are answered per
/// hop by the WebSocket layer and not forwarded.
pub async fn pump<C, B>(
    client: WebSocketStream<C>,
    browser: WebSocketStream<B>,
    stop: impl std::future::Future<Output = ()> + Send,
    bytes: &std::sync::atomic::AtomicU64,
) -> PumpEnd
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    B: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut client_sink, mut client_stream) = client.split();
    let (mut browser_sink, mut browser_stream) = browser.split();

    let upstream = async {
        while let Some(message) = client_stream.next().await {
            match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    bytes.fetch_add(message.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    if browser_sink.send(message).await.is_err() {
                        return PumpEnd::BrowserLeft;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return PumpEnd::ClientLeft,
                Ok(_) => {}
            }
        }
        PumpEnd::ClientLeft
    };
    let downstream = async {
        while let Some(message) = browser_stream.next().await {
            match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    bytes.fetch_add(message.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    if client_sink.send(message).await.is_err() {
                        return PumpEnd::ClientLeft;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return PumpEnd::BrowserLeft,
                Ok(_) => {}
            }
        }
        PumpEnd::BrowserLeft
    };

    let end = tokio::select! {
        end = upstream => end,
        end = downstream => end,
        () = stop => PumpEnd::Stopped,
    };
    // A peer that stopped reading must not hold the pump open.
    let grace = std::time::Duration::from_secs(2);
    let _ = tokio::time::timeout(grace, browser_sink.close()).await;
    let _ = tokio::time::timeout(grace, client_sink.close()).await;
    end
}
