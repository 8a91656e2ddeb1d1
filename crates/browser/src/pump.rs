//! The CDP frame pump: forwards WebSocket messages between one client and
//! one browser connection, both ways, unchanged.
//!
//! Each direction reads one message and does not read the next until the
//! previous one was written to the other side, so a slow reader slows its
//! writer down (TCP backpressure) instead of making the pump buffer. Behind
//! a slow client, the browser's messages wait in its DevTools connection's
//! queue, which is bounded ([`crate::QUEUE_BUDGET_BYTES`]).

use futures_util::{Sink, SinkExt, Stream, StreamExt};
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
/// hop by the WebSocket layer and not forwarded. The browser side is a
/// [`crate::DevtoolsConnection`] in the server, or any WebSocket.
pub async fn pump<C, B, E>(
    client: WebSocketStream<C>,
    browser: B,
    stop: impl std::future::Future<Output = ()> + Send,
    bytes: &std::sync::atomic::AtomicU64,
) -> PumpEnd
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    B: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin + Send,
{
    pump_watching(client, browser, stop, bytes, &Unwatched).await
}

/// What [`pump_watching`] shows the text frames it carries to. Each call
/// runs on the frame's way, so it must be quick.
pub trait FrameWatch: Sync {
    /// A frame from the client; `Some` replaces it.
    fn client_sent(&self, text: &str) -> Option<String>;
    /// A frame from the browser; work it returns is done before the client
    /// gets the frame.
    fn browser_sent(&self, text: &str) -> Option<futures_util::future::BoxFuture<'static, ()>>;
}

struct Unwatched;

impl FrameWatch for Unwatched {
    fn client_sent(&self, _: &str) -> Option<String> {
        None
    }
    fn browser_sent(&self, _: &str) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }
}

/// As [`pump`], showing each text frame to `watch` on its way.
pub async fn pump_watching<C, B, E>(
    client: WebSocketStream<C>,
    browser: B,
    stop: impl std::future::Future<Output = ()> + Send,
    bytes: &std::sync::atomic::AtomicU64,
    watch: &dyn FrameWatch,
) -> PumpEnd
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
    B: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin + Send,
{
    let (mut client_sink, mut client_stream) = client.split();
    let (mut browser_sink, mut browser_stream) = browser.split();

    let upstream = async {
        while let Some(message) = client_stream.next().await {
            match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    bytes.fetch_add(message.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let message = match &message {
                        Message::Text(text) => watch.client_sent(text.as_str()).map_or(message, Message::text),
                        _ => message,
                    };
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
                    if let Some(work) = match &message {
                        Message::Text(text) => watch.browser_sent(text.as_str()),
                        _ => None,
                    } {
                        work.await;
                    }
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

#[cfg(test)]
mod properties {
    use std::sync::atomic::AtomicU64;

    use futures_util::{SinkExt, StreamExt};
    use proptest::prelude::*;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    use super::*;

    /// Two ends of an in-memory WebSocket.
    async fn socket_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let client = WebSocketStream::from_raw_socket(near, Role::Client, Some(websocket_config()));
        let server = WebSocketStream::from_raw_socket(far, Role::Server, Some(websocket_config()));
        tokio::join!(client, server)
    }

    fn frame() -> impl Strategy<Value = Message> {
        prop_oneof![
            ".{0,300}".prop_map(Message::text),
            prop::collection::vec(any::<u8>(), 0..2048).prop_map(Message::binary),
        ]
    }

    /// Sends `frames` from one end and reads as many at the other.
    async fn carry(
        sender: &mut WebSocketStream<DuplexStream>,
        receiver: &mut WebSocketStream<DuplexStream>,
        frames: &[Message],
    ) -> Vec<Message> {
        let send = async {
            for frame in frames {
                sender.send(frame.clone()).await.expect("send");
            }
        };
        let receive = async {
            let mut received = Vec::new();
            while received.len() < frames.len() {
                match receiver.next().await {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => received.push(message),
                    Some(Ok(_)) => {}
                    other => panic!("the pump closed early: {other:?}"),
                }
            }
            received
        };
        tokio::join!(send, receive).1
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_frames_pass_both_ways_unchanged_and_in_order(
            upstream in prop::collection::vec(frame(), 0..24),
            downstream in prop::collection::vec(frame(), 0..24),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let (mut client, client_side) = socket_pair().await;
                let (browser_side, mut browser) = socket_pair().await;
                let bytes = AtomicU64::new(0);
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let pumping = pump(client_side, browser_side, async { let _ = stopped.await; }, &bytes);
                let checks = async {
                    assert_eq!(carry(&mut client, &mut browser, &upstream).await, upstream);
                    assert_eq!(carry(&mut browser, &mut client, &downstream).await, downstream);
                    let _ = stop.send(());
                };
                let (end, ()) = tokio::join!(pumping, checks);
                assert_eq!(end, PumpEnd::Stopped);
                let total: usize = upstream.iter().chain(&downstream).map(Message::len).sum();
                assert_eq!(bytes.load(std::sync::atomic::Ordering::Relaxed), total as u64);
            });
        }
    }
}
