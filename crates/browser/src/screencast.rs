//! The browser side of a live view: one CDP connection that follows the
//! browser's visible page, streams its screencast frames, and dispatches
//! input events to it.
//!
//! The caller drives it with two calls so that its own `select!` stays
//! cancel-safe: [`Screencast::recv`] only reads (safe to drop mid-way), and
//! [`Screencast::handle`] does the writes a message calls for (run to the end
//! in the arm that received it). Frames are acknowledged by the caller once
//! it has passed them on, so a slow viewer slows the screencast down instead
//! of making anyone buffer.
//!
//! Which page is shown: the session's active page (see [`crate::pages`]),
//! followed as tabs and popups open and close and as the session is switched
//! to another tab through the API.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;
use tokio::sync::watch;

use crate::pages::{PageOrder, Switch};

/// Largest frame side asked of the screencast, in device pixels.
const MAX_FRAME_SIDE: u32 = 1920;

/// One screencast frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The JPEG image, base64-encoded as CDP sends it.
    pub jpeg_base64: String,
    /// The page's viewport width in CSS pixels (input coordinates use it).
    pub page_width: f64,
    /// The page's viewport height in CSS pixels.
    pub page_height: f64,
    /// What the caller hands back to [`Screencast::ack`].
    pub ack: FrameAck,
}

/// The acknowledgement a frame needs before the browser sends the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAck {
    cdp_session: String,
    frame_number: i64,
}

/// An input event for the shown page, in the page's CSS pixels.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A mouse button press, release or a move.
    Mouse {
        /// `mousePressed`, `mouseReleased` or `mouseMoved`.
        kind: MouseKind,
        /// Horizontal position.
        x: f64,
        /// Vertical position.
        y: f64,
        /// `left`, `middle`, `right` or `none`.
        button: MouseButton,
        /// 1 for a single click, 2 for a double click.
        click_count: u32,
        /// CDP modifier bits (Alt 1, Ctrl 2, Meta 4, Shift 8).
        modifiers: u32,
    },
    /// A wheel turn at a position.
    Wheel {
        /// Horizontal position.
        x: f64,
        /// Vertical position.
        y: f64,
        /// Horizontal scroll in CSS pixels.
        delta_x: f64,
        /// Vertical scroll in CSS pixels.
        delta_y: f64,
        /// CDP modifier bits.
        modifiers: u32,
    },
    /// A key going down or up.
    Key {
        /// Down (with or without text) or up.
        down: bool,
        /// The DOM `key` value, e.g. `a` or `Enter`.
        key: String,
        /// The DOM `code` value, e.g. `KeyA`.
        code: String,
        /// The text the key types, if any (`\r` for Enter).
        text: Option<String>,
        /// The Windows virtual key code (what Chromium needs for Backspace, arrows…).
        key_code: u32,
        /// CDP modifier bits.
        modifiers: u32,
    },
}

/// What a mouse event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseKind {
    /// A button goes down.
    Pressed,
    /// A button goes up.
    Released,
    /// The pointer moves.
    Moved,
}

/// Which mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseButton {
    /// No button (moves).
    None,
    /// The main button.
    Left,
    /// The wheel button.
    Middle,
    /// The secondary button.
    Right,
}

impl MouseButton {
    fn as_cdp(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Left => "left",
            Self::Middle => "middle",
            Self::Right => "right",
        }
    }
}

/// What one browser message meant for the viewer.
#[derive(Debug, Clone, PartialEq)]
pub enum ScreencastEvent {
    /// A new frame to show, then acknowledge.
    Frame(Frame),
    /// The shown page changed (a new tab, or the shown one closed).
    PageChanged,
    /// Nothing the viewer needs to know.
    Nothing,
}

/// Why a pending command was sent, to act on its answer.
#[derive(Debug)]
enum Pending {
    Discover,
    Attach(String),
}

/// What [`Screencast::recv`] read, for [`Screencast::handle`].
#[derive(Debug)]
pub struct Incoming(IncomingKind);

#[derive(Debug)]
enum IncomingKind {
    /// A message from the browser.
    Browser(Message),
    /// The session was switched to another tab.
    Switched,
}

/// A live-view connection to one browser.
pub struct Screencast {
    client: CdpClient,
    pending: HashMap<u64, Pending>,
    /// The browser's open pages, to show the active one.
    order: PageOrder,
    /// The session's switches to another tab.
    switches: watch::Receiver<Option<Switch>>,
    /// The session's handle, for the order its pages opened in.
    devtools: Devtools,
    /// The shown target and the CDP session attached to it.
    shown: Option<(String, String)>,
    /// Whether the existing targets have all been announced.
    discovered: bool,
}

impl Screencast {
    /// Opens a connection on the browser's DevTools pipe and starts following its pages.
    pub async fn open(devtools: &Devtools) -> Result<Self, CdpError> {
        let mut screencast = Self {
            client: CdpClient::open(devtools).await?,
            pending: HashMap::new(),
            order: PageOrder::default(),
            switches: devtools.front().watch(),
            devtools: devtools.clone(),
            shown: None,
            discovered: false,
        };
        let switch = screencast.switches.borrow_and_update().clone();
        screencast.order.follow(switch);
        // The browser announces every existing target before it answers.
        let id = screencast
            .send("Target.setDiscoverTargets", json!({"discover": true}), None)
            .await?;
        screencast.pending.insert(id, Pending::Discover);
        Ok(screencast)
    }

    /// Reads the next browser message or switch of tab; `None` once the
    /// browser has gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Incoming> {
        tokio::select! {
            message = self.client.next() => message.map(|message| Incoming(IncomingKind::Browser(message))),
            Ok(()) = self.switches.changed() => Some(Incoming(IncomingKind::Switched)),
        }
    }

    /// Acts on one message from [`Self::recv`] and says what it meant.
    pub async fn handle(&mut self, incoming: Incoming) -> Result<ScreencastEvent, CdpError> {
        let message = match incoming.0 {
            IncomingKind::Browser(message) => message,
            IncomingKind::Switched => {
                let switch = self.switches.borrow_and_update().clone();
                if self.order.follow(switch) && self.discovered {
                    if let Some(active) = self.order.active().map(str::to_owned) {
                        self.show(&active).await?;
                    }
                }
                return Ok(ScreencastEvent::Nothing);
            }
        };
        let Message::Text(text) = message else {
            return Ok(ScreencastEvent::Nothing);
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            return Ok(ScreencastEvent::Nothing);
        };
        if let Some(id) = value.get("id").and_then(Value::as_u64) {
            return self.answered(id, &value).await;
        }
        let params = value.get("params").cloned().unwrap_or(Value::Null);
        match value.get("method").and_then(Value::as_str) {
            Some("Page.screencastFrame") => Ok(self.frame(&value, &params)),
            Some("Target.targetCreated") => {
                if self.order.observe(&value) && self.discovered {
                    if let Some(newest) = self.order.active().map(str::to_owned) {
                        self.show(&newest).await?;
                    }
                }
                Ok(ScreencastEvent::Nothing)
            }
            Some("Target.targetDestroyed") => {
                self.order.observe(&value);
                let gone = params.get("targetId").and_then(Value::as_str);
                if self
                    .shown
                    .as_ref()
                    .is_some_and(|(shown, _)| Some(shown.as_str()) == gone)
                {
                    self.shown = None;
                    if let Some(newest) = self.order.active().map(str::to_owned) {
                        self.show(&newest).await?;
                    }
                    return Ok(ScreencastEvent::PageChanged);
                }
                Ok(ScreencastEvent::Nothing)
            }
            _ => Ok(ScreencastEvent::Nothing),
        }
    }

    /// Tells the browser the frame was passed on, so it sends the next.
    pub async fn ack(&mut self, ack: FrameAck) -> Result<(), CdpError> {
        self.send(
            "Page.screencastFrameAck",
            json!({"sessionId": ack.frame_number}),
            Some(&ack.cdp_session),
        )
        .await
        .map(drop)
    }

    /// Dispatches an input event to the shown page (dropped if none is shown).
    pub async fn dispatch(&mut self, input: &Input) -> Result<(), CdpError> {
        let Some((_, cdp_session)) = self.shown.clone() else {
            return Ok(());
        };
        let (method, params) = match input {
            Input::Mouse {
                kind,
                x,
                y,
                button,
                click_count,
                modifiers,
            } => {
                let kind = match kind {
                    MouseKind::Pressed => "mousePressed",
                    MouseKind::Released => "mouseReleased",
                    MouseKind::Moved => "mouseMoved",
                };
                (
                    "Input.dispatchMouseEvent",
                    json!({"type": kind, "x": x, "y": y, "button": button.as_cdp(),
                           "clickCount": click_count, "modifiers": modifiers}),
                )
            }
            Input::Wheel {
                x,
                y,
                delta_x,
                delta_y,
                modifiers,
            } => (
                "Input.dispatchMouseEvent",
                json!({"type": "mouseWheel", "x": x, "y": y, "deltaX": delta_x, "deltaY": delta_y,
                       "modifiers": modifiers}),
            ),
            Input::Key {
                down,
                key,
                code,
                text,
                key_code,
                modifiers,
            } => {
                let kind = match (down, text) {
                    (false, _) => "keyUp",
                    (true, Some(_)) => "keyDown",
                    (true, None) => "rawKeyDown",
                };
                let mut params = json!({"type": kind, "key": key, "code": code,
                    "windowsVirtualKeyCode": key_code, "nativeVirtualKeyCode": key_code, "modifiers": modifiers});
                if let (true, Some(text)) = (down, text) {
                    params["text"] = json!(text);
                    params["unmodifiedText"] = json!(text);
                }
                ("Input.dispatchKeyEvent", params)
            }
        };
        self.send(method, params, Some(&cdp_session)).await.map(drop)
    }

    /// Closes the connection (the browser stops the screencast with it).
    pub async fn close(self) {
        self.client.close().await;
    }

    async fn answered(&mut self, id: u64, value: &Value) -> Result<ScreencastEvent, CdpError> {
        let Some(pending) = self.pending.remove(&id) else {
            return Ok(ScreencastEvent::Nothing);
        };
        match pending {
            Pending::Discover => {
                self.discovered = true;
                self.order.arrange(&self.devtools);
                if self.shown.is_none() {
                    if let Some(active) = self.order.active().map(str::to_owned) {
                        self.show(&active).await?;
                    }
                }
                Ok(ScreencastEvent::Nothing)
            }
            Pending::Attach(target_id) => {
                let Some(cdp_session) = value.pointer("/result/sessionId").and_then(Value::as_str) else {
                    // The target closed before we got there.
                    return Ok(ScreencastEvent::Nothing);
                };
                let cdp_session = cdp_session.to_owned();
                if let Some((_, previous)) = self.shown.take() {
                    self.send("Page.stopScreencast", json!({}), Some(&previous)).await?;
                    self.send("Target.detachFromTarget", json!({"sessionId": previous}), None)
                        .await?;
                }
                self.send(
                    "Page.startScreencast",
                    json!({"format": "jpeg", "quality": 70, "maxWidth": MAX_FRAME_SIDE,
                           "maxHeight": MAX_FRAME_SIDE, "everyNthFrame": 1}),
                    Some(&cdp_session),
                )
                .await?;
                self.shown = Some((target_id, cdp_session));
                Ok(ScreencastEvent::PageChanged)
            }
        }
    }

    fn frame(&self, value: &Value, params: &Value) -> ScreencastEvent {
        let cdp_session = value.get("sessionId").and_then(Value::as_str).unwrap_or_default();
        let (Some(data), Some(frame_number)) = (
            params.get("data").and_then(Value::as_str),
            params.get("sessionId").and_then(Value::as_i64),
        ) else {
            return ScreencastEvent::Nothing;
        };
        let metadata = |key: &str| params.pointer(&format!("/metadata/{key}")).and_then(Value::as_f64);
        let ack = FrameAck {
            cdp_session: cdp_session.to_owned(),
            frame_number,
        };
        // A frame of a page no longer shown still needs its ack, but is not drawn.
        if self.shown.as_ref().map(|(_, shown)| shown.as_str()) != Some(cdp_session) {
            return ScreencastEvent::Nothing;
        }
        ScreencastEvent::Frame(Frame {
            jpeg_base64: data.to_owned(),
            page_width: metadata("deviceWidth").unwrap_or(0.0),
            page_height: metadata("deviceHeight").unwrap_or(0.0),
            ack,
        })
    }

    async fn show(&mut self, target_id: &str) -> Result<(), CdpError> {
        let id = self
            .send(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
                None,
            )
            .await?;
        self.pending.insert(id, Pending::Attach(target_id.to_owned()));
        Ok(())
    }

    async fn send(&mut self, method: &str, params: Value, cdp_session: Option<&str>) -> Result<u64, CdpError> {
        self.client.send(method, params, cdp_session).await
    }
}
