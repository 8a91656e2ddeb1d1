//! REST actions on a session's active page: a screenshot, mouse, wheel and
//! keyboard input, navigation. Each call opens its own DevTools connection
//! (so it never disturbs a client's or the live view's), attaches to the
//! active page, acts with real CDP input (`Input.dispatch*`, so pages see
//! trusted events) and detaches.
//!
//! **The active page** is the newest page target of the browser, the same
//! rule the live view follows for a page opened while it watches.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;
use tokio::sync::watch;

use crate::pages::{PageOrder, Switch};

/// A mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    /// The primary button.
    Left,
    /// The wheel button.
    Middle,
    /// The secondary button.
    Right,
}

impl Button {
    fn as_cdp(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Middle => "middle",
            Self::Right => "right",
        }
    }
}

/// One key of a shortcut or of typed text, as CDP wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The DOM `key` value (`a`, `Enter`, `Control`).
    pub key: String,
    /// The DOM `code` value (`KeyA`, `Enter`, `ControlLeft`).
    pub code: String,
    /// The Windows virtual key code Chromium expects.
    pub key_code: u32,
    /// The text the key types, if any.
    pub text: Option<String>,
    /// Its bit in CDP's modifier mask when it is a modifier.
    pub modifier: u32,
}

impl Key {
    /// The key named `name` (DOM key names, case-insensitive for named keys;
    /// one character for a printable key), `None` if it is unknown.
    pub fn named(name: &str) -> Option<Self> {
        let named = |key: &str, code: &str, key_code: u32, modifier: u32| {
            Some(Self {
                key: key.to_owned(),
                code: code.to_owned(),
                key_code,
                text: None,
                modifier,
            })
        };
        let mut characters = name.chars();
        if let (Some(character), None) = (characters.next(), characters.next()) {
            return Some(Self::character(character));
        }
        match name.to_ascii_lowercase().as_str() {
            "control" | "ctrl" | "controlormeta" => named("Control", "ControlLeft", 17, 2),
            "shift" => named("Shift", "ShiftLeft", 16, 8),
            "alt" | "option" => named("Alt", "AltLeft", 18, 1),
            "meta" | "command" | "cmd" => named("Meta", "MetaLeft", 91, 4),
            "enter" | "return" => Some(Self {
                text: Some("\r".to_owned()),
                ..named("Enter", "Enter", 13, 0)?
            }),
            "tab" => named("Tab", "Tab", 9, 0),
            "escape" | "esc" => named("Escape", "Escape", 27, 0),
            "backspace" => named("Backspace", "Backspace", 8, 0),
            "delete" => named("Delete", "Delete", 46, 0),
            "space" => Some(Self::character(' ')),
            "arrowleft" | "left" => named("ArrowLeft", "ArrowLeft", 37, 0),
            "arrowup" | "up" => named("ArrowUp", "ArrowUp", 38, 0),
            "arrowright" | "right" => named("ArrowRight", "ArrowRight", 39, 0),
            "arrowdown" | "down" => named("ArrowDown", "ArrowDown", 40, 0),
            "home" => named("Home", "Home", 36, 0),
            "end" => named("End", "End", 35, 0),
            "pageup" => named("PageUp", "PageUp", 33, 0),
            "pagedown" => named("PageDown", "PageDown", 34, 0),
            "insert" => named("Insert", "Insert", 45, 0),
            other => {
                let number = other.strip_prefix('f')?.parse::<u32>().ok()?;
                if !(1..=12).contains(&number) {
                    return None;
                }
                let name = format!("F{number}");
                named(&name, &name, 111 + number, 0)
            }
        }
    }

    /// A printable character's key.
    pub fn character(character: char) -> Self {
        let upper = character.to_ascii_uppercase();
        let (code, key_code) = match character {
            'a'..='z' | 'A'..='Z' => (format!("Key{upper}"), u32::from(upper)),
            '0'..='9' => (format!("Digit{character}"), u32::from(character)),
            ' ' => ("Space".to_owned(), 32),
            _ => (String::new(), 0),
        };
        Self {
            key: character.to_string(),
            code,
            key_code,
            text: Some(character.to_string()),
            modifier: 0,
        }
    }
}

/// The bytes of a CDP answer's base64 `data`.
fn decode_data(answer: &Value, method: &str) -> Result<Vec<u8>, CdpError> {
    let data = answer
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| CdpError::Malformed(format!("{method} gave no data")))?;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|error| CdpError::Malformed(format!("{method} gave data that is not base64: {error}")))
}

/// A connection to a session's active page, or to a tab of its own.
///
/// One opened with [`PageControl::open`] follows the browser's pages (see
/// the crate's `pages` module): [`PageControl::refresh`] moves it to the page that is
/// active now, so a caller may keep it across calls.
pub struct PageControl {
    client: CdpClient,
    /// The CDP session attached to the page, and that page's target id.
    session: String,
    target: String,
    /// The pages followed, for a connection to the active page, and the
    /// session's switches.
    order: Option<(PageOrder, watch::Receiver<Option<Switch>>)>,
    /// Whether the connection failed (closed, or a call went unanswered);
    /// such a connection is closed, never kept.
    broken: bool,
    /// Whether the page closed under a command and no other took its place.
    page_gone: bool,
    /// The tab this connection opened, closed again with it.
    own_tab: Option<String>,
}

impl std::fmt::Debug for PageControl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PageControl")
            .field("target", &self.target)
            .field("session", &self.session)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// How a capture of a page is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capture {
    /// JPEG at this quality (1 to 99); PNG when `None`.
    pub jpeg_quality: Option<u8>,
    /// The whole height of the page, not only the viewport.
    pub full_height: bool,
    /// Speed over size (Chromium's `optimizeForSpeed`: a faster encoder).
    pub fast: bool,
}

/// Most screens `scroll_through` scrolls down (100 ms each).
const SCROLL_SCREENS: u32 = 100;

/// How long one CDP answer may take before the action fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl PageControl {
    /// Opens a connection attached to the page `target` (a target id, as
    /// [`crate::list_pages`] gives them); it stays on that page.
    pub async fn open_target(devtools: &Devtools, target: &str) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        let session = client.attach(target).await?;
        Ok(Self {
            client,
            session,
            target: target.to_owned(),
            order: None,
            broken: false,
            page_gone: false,
            own_tab: None,
        })
    }

    /// Opens a connection and attaches to the active page.
    pub async fn open(devtools: &Devtools) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        let switches = devtools.front().watch();
        let order = crate::pages::discover(&mut client, devtools).await?;
        let target = order
            .active()
            .map(str::to_owned)
            .ok_or_else(|| CdpError::Malformed("the browser has no page".to_owned()))?;
        let session = client.attach(&target).await?;
        Ok(Self {
            client,
            session,
            target,
            order: Some((order, switches)),
            broken: false,
            page_gone: false,
            own_tab: None,
        })
    }

    /// Moves a connection opened with [`PageControl::open`] to the page that
    /// is active now, if that is another one.
    pub async fn refresh(&mut self) -> Result<(), CdpError> {
        let Some((order, switches)) = self.order.as_mut() else {
            return Ok(());
        };
        let events = self.client.take_events().inspect_err(|_| self.broken = true)?;
        for event in &events {
            order.observe(event);
        }
        order.follow(switches.borrow_and_update().clone());
        let active = order
            .active()
            .map(str::to_owned)
            .ok_or_else(|| CdpError::Malformed("the browser has no page".to_owned()))?;
        if active != self.target {
            let previous = std::mem::replace(&mut self.session, self.client.attach(&active).await?);
            self.target = active;
            self.client.detach(&previous).await;
        }
        Ok(())
    }

    /// Whether the connection still works (a broken one is closed, not kept).
    pub fn is_usable(&self) -> bool {
        !self.broken && !self.page_gone
    }

    /// Opens a tab of its own in the browser (closed again by
    /// [`PageControl::close`]), with a viewport of `window` when given, so
    /// that the session's own pages are left as they were.
    pub async fn open_tab(devtools: &Devtools, window: Option<(u32, u32)>) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        let created = client
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await?;
        let target = created
            .get("targetId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| CdpError::Malformed("Target.createTarget gave no target id".to_owned()))?;
        let session = client.attach(&target).await?;
        let mut page = Self {
            client,
            session,
            target: target.clone(),
            order: None,
            broken: false,
            page_gone: false,
            own_tab: Some(target),
        };
        if let Some((width, height)) = window {
            page.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await?;
        }
        Ok(page)
    }

    /// One command to the page. On a connection that follows the active
    /// page, a command that finds its page closed (a tab closed just before,
    /// its end not yet announced) is sent once more to the page active now.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Result<Value, CdpError> {
        let answer = self.call_once(method, params.clone()).await;
        if !answer.as_ref().is_err_and(CdpError::is_page_gone) {
            return answer;
        }
        let Some((order, _)) = self.order.as_mut() else {
            self.page_gone = true;
            return answer;
        };
        order.forget(&self.target);
        if let Err(error) = self.refresh().await {
            self.page_gone = true;
            return Err(error);
        }
        let again = self.call_once(method, params).await;
        if again.as_ref().is_err_and(CdpError::is_page_gone) {
            self.page_gone = true;
        }
        again
    }

    async fn call_once(&mut self, method: &str, params: Value) -> Result<Value, CdpError> {
        let session = self.session.clone();
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, self.client.call(method, params, Some(&session)))
            .await
            .unwrap_or_else(|_| Err(CdpError::Timeout(method.to_owned())));
        if matches!(
            answer,
            Err(CdpError::Closed | CdpError::Send(_) | CdpError::Timeout(_) | CdpError::Unreachable(_))
        ) {
            self.broken = true;
        }
        answer
    }

    /// The viewport's size in CSS pixels.
    pub async fn viewport(&mut self) -> Result<(f64, f64), CdpError> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let side = |key: &str| {
            metrics
                .pointer(&format!("/cssLayoutViewport/{key}"))
                .and_then(Value::as_f64)
        };
        match (side("clientWidth"), side("clientHeight")) {
            (Some(width), Some(height)) => Ok((width, height)),
            _ => Err(CdpError::Malformed(format!("Page.getLayoutMetrics gave {metrics}"))),
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&mut self) -> Result<Vec<u8>, CdpError> {
        self.capture(Capture {
            jpeg_quality: None,
            full_height: false,
            fast: false,
        })
        .await
    }

    /// One mouse event (`mousePressed`, `mouseReleased`, `mouseMoved`) at `x`, `y`.
    pub async fn mouse(
        &mut self,
        kind: &str,
        x: f64,
        y: f64,
        button: Option<Button>,
        clicks: u32,
    ) -> Result<(), CdpError> {
        let mut params = json!({"type": kind, "x": x, "y": y, "clickCount": clicks});
        if let Some(button) = button {
            params["button"] = json!(button.as_cdp());
        }
        self.call("Input.dispatchMouseEvent", params).await.map(drop)
    }

    /// A click: press and release, `clicks` times in a row (2 for a double
    /// click). No move comes first: a move waits for the page's next frame
    /// (Chromium lines moves up with its animation frames), and the press
    /// itself moves the pointer there, with the enter and over events a page
    /// expects.
    pub async fn click(&mut self, x: f64, y: f64, button: Button, clicks: u32) -> Result<(), CdpError> {
        for count in 1..=clicks {
            self.mouse("mousePressed", x, y, Some(button), count).await?;
            self.mouse("mouseReleased", x, y, Some(button), count).await?;
        }
        Ok(())
    }

    /// The wheel at `x`, `y`, in `steps` equal parts.
    pub async fn wheel(&mut self, x: f64, y: f64, delta_x: f64, delta_y: f64, steps: u32) -> Result<(), CdpError> {
        let steps = steps.max(1);
        for _ in 0..steps {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": "mouseWheel", "x": x, "y": y,
                       "deltaX": delta_x / f64::from(steps), "deltaY": delta_y / f64::from(steps)}),
            )
            .await?;
        }
        Ok(())
    }

    /// A key down (with the modifiers held) or up.
    async fn key(&mut self, key: &Key, down: bool, modifiers: u32) -> Result<(), CdpError> {
        let kind = match (down, &key.text) {
            (false, _) => "keyUp",
            // A modified key types nothing (Control+A selects, it does not type "a").
            (true, Some(_)) if modifiers & !8 == 0 => "keyDown",
            (true, _) => "rawKeyDown",
        };
        let mut params = json!({"type": kind, "key": key.key, "code": key.code,
            "windowsVirtualKeyCode": key.key_code, "nativeVirtualKeyCode": key.key_code, "modifiers": modifiers});
        if kind == "keyDown" {
            if let Some(text) = &key.text {
                params["text"] = json!(text);
                params["unmodifiedText"] = json!(text);
            }
        }
        self.call("Input.dispatchKeyEvent", params).await.map(drop)
    }

    /// Types `text`, a key per character, waiting `delay` between keys.
    pub async fn type_text(&mut self, text: &str, delay: Duration) -> Result<(), CdpError> {
        for (index, character) in text.chars().enumerate() {
            if index > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let key = Key::character(character);
            self.key(&key, true, 0).await?;
            self.key(&key, false, 0).await?;
        }
        Ok(())
    }

    /// Presses `keys` together (modifiers first, in order), holds them for
    /// `hold`, and releases them in reverse order.
    pub async fn shortcut(&mut self, keys: &[Key], hold: Duration) -> Result<(), CdpError> {
        let mut modifiers = 0;
        for key in keys {
            modifiers |= key.modifier;
            self.key(key, true, modifiers).await?;
        }
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        for key in keys.iter().rev() {
            self.key(key, false, modifiers).await?;
            modifiers &= !key.modifier;
        }
        Ok(())
    }

    /// Navigates to `url` and waits for its load event (or `timeout`).
    pub async fn goto(&mut self, url: &Url, timeout: Duration) -> Result<(), CdpError> {
        self.call("Page.enable", json!({})).await?;
        let navigated = self.call("Page.navigate", json!({"url": url.as_str()})).await?;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            return Err(CdpError::Failed {
                method: "Page.navigate".to_owned(),
                error: json!(error),
            });
        }
        let session = self.session.clone();
        let loaded = async {
            while let Some(Message::Text(text)) = self.client.next().await {
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if message.get("method").and_then(Value::as_str) == Some("Page.loadEventFired")
                    && message.get("sessionId").and_then(Value::as_str) == Some(session.as_str())
                {
                    return Ok(());
                }
                self.client.keep(message);
            }
            Err(CdpError::Closed)
        };
        let outcome = tokio::time::timeout(timeout, loaded)
            .await
            .unwrap_or_else(|_| Err(CdpError::Timeout("the page's load".to_owned())));
        if matches!(outcome, Err(CdpError::Closed)) {
            self.broken = true;
        } else {
            // A kept connection gets no page events while it waits for its next call.
            let _ = self.call("Page.disable", json!({})).await;
        }
        outcome
    }

    /// Evaluates `expression` in the page and returns its value.
    pub(crate) async fn evaluate(&mut self, expression: &str) -> Result<Value, CdpError> {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(exception) = answer.get("exceptionDetails") {
            return Err(CdpError::Failed {
                method: "Runtime.evaluate".to_owned(),
                error: exception.clone(),
            });
        }
        Ok(answer.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    /// The text selected in the page: in the focused text field, or the
    /// document's selection.
    pub async fn selected_text(&mut self) -> Result<String, CdpError> {
        let value = self
            .evaluate(
                "(() => { const e = document.activeElement; \
                 if (e && (e.tagName === 'INPUT' || e.tagName === 'TEXTAREA') && typeof e.selectionStart === 'number') \
                 { return e.value.slice(e.selectionStart, e.selectionEnd); } \
                 return String(getSelection()); })()",
            )
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Pastes `text` at the caret as a paste would: a `paste` event with the
    /// text on its clipboard data goes to the focused element first, and the
    /// text is inserted unless the page cancelled it.
    pub async fn paste(&mut self, text: &str) -> Result<(), CdpError> {
        let literal = serde_json::to_string(text).map_err(|error| CdpError::Malformed(error.to_string()))?;
        let proceed = self
            .evaluate(&format!(
                "(() => {{ const data = new DataTransfer(); data.setData('text/plain', {literal}); \
                 const event = new ClipboardEvent('paste', {{clipboardData: data, bubbles: true, cancelable: true}}); \
                 return (document.activeElement || document.body).dispatchEvent(event); }})()"
            ))
            .await?;
        if proceed == json!(true) {
            self.call("Input.insertText", json!({"text": text})).await?;
        }
        Ok(())
    }

    /// The centre of the `index`th element `selector` matches, scrolled into
    /// view; `Ok(None)` if nothing matches within `timeout`.
    pub async fn element_centre(
        &mut self,
        selector: &str,
        index: usize,
        timeout: Duration,
    ) -> Result<Option<(f64, f64)>, CdpError> {
        let literal = serde_json::to_string(selector).map_err(|error| CdpError::Malformed(error.to_string()))?;
        // Scrolled into view, then measured frame by frame until it holds
        // still (a smooth scroll still under way would move it after).
        let expression = format!(
            "(async () => {{ const element = document.querySelectorAll({literal})[{index}]; if (!element) return null; \
             let previous = null; \
             for (let frame = 0; frame < 60; frame++) {{ \
               if (frame % 10 === 0) element.scrollIntoView({{block: 'center', inline: 'center'}}); \
               await new Promise(resolve => requestAnimationFrame(() => resolve())); \
               const box = element.getBoundingClientRect(); \
               const centre = [box.x + box.width / 2, box.y + box.height / 2]; \
               if (previous && previous[0] === centre[0] && previous[1] === centre[1]) return centre; \
               previous = centre; }} \
             return previous; }})()"
        );
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self.evaluate(&expression).await?;
            if let (Some(x), Some(y)) = (
                found.get(0).and_then(Value::as_f64),
                found.get(1).and_then(Value::as_f64),
            ) {
                return Ok(Some((x, y)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses at `from`, moves to `to` in steps, and releases there.
    pub async fn drag(&mut self, from: (f64, f64), to: (f64, f64), button: Button) -> Result<(), CdpError> {
        const STEPS: u32 = 10;
        self.mouse("mouseMoved", from.0, from.1, None, 0).await?;
        self.mouse("mousePressed", from.0, from.1, Some(button), 1).await?;
        for step in 1..=STEPS {
            let part = f64::from(step) / f64::from(STEPS);
            let (x, y) = (from.0 + (to.0 - from.0) * part, from.1 + (to.1 - from.1) * part);
            self.mouse("mouseMoved", x, y, Some(button), 0).await?;
        }
        self.mouse("mouseReleased", to.0, to.1, Some(button), 1).await
    }

    /// A capture of the page as it is now (see [`Capture`]).
    pub async fn capture(&mut self, capture: Capture) -> Result<Vec<u8>, CdpError> {
        let mut params = match capture.jpeg_quality {
            Some(quality) => json!({"format": "jpeg", "quality": quality}),
            None => json!({"format": "png"}),
        };
        if capture.fast {
            params["optimizeForSpeed"] = json!(true);
        }
        if capture.full_height {
            let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
            let size = |key: &str| {
                metrics
                    .pointer(&format!("/cssContentSize/{key}"))
                    .and_then(Value::as_f64)
            };
            let width = metrics
                .pointer("/cssLayoutViewport/clientWidth")
                .and_then(Value::as_f64)
                .or(size("width"))
                .unwrap_or(0.0);
            let height = size("height").unwrap_or(0.0);
            params["captureBeyondViewport"] = json!(true);
            params["clip"] = json!({"x": 0, "y": 0, "width": width, "height": height, "scale": 1});
        }
        let shot = self.call("Page.captureScreenshot", params).await?;
        decode_data(&shot, "Page.captureScreenshot")
    }

    /// Scrolls to the bottom of the page and back, so that content loaded
    /// on scroll is there for a capture.
    pub async fn scroll_through(&mut self) -> Result<(), CdpError> {
        // The height is read again at each step, so content that loads on
        // the way down is scrolled through too, up to SCROLL_SCREENS screens
        // (an endless page would never end).
        self.evaluate(&format!(
            "(async () => {{ const pause = () => new Promise(resolve => setTimeout(resolve, 100)); \
             for (let y = 0, n = 0; n <= {SCROLL_SCREENS} && y < document.documentElement.scrollHeight; \
             y += innerHeight, n++) {{ scrollTo(0, y); await pause(); }} \
             scrollTo(0, document.documentElement.scrollHeight); await pause(); scrollTo(0, 0); await pause(); }})()",
        ))
        .await
        .map(drop)
    }

    /// The page printed to PDF with `Page.printToPDF` parameters.
    pub async fn pdf(&mut self, parameters: Value) -> Result<Vec<u8>, CdpError> {
        let printed = self.call("Page.printToPDF", parameters).await?;
        decode_data(&printed, "Page.printToPDF")
    }

    /// The rendered document's HTML.
    pub async fn html(&mut self) -> Result<String, CdpError> {
        let html = self.evaluate("document.documentElement.outerHTML").await?;
        Ok(html.as_str().unwrap_or_default().to_owned())
    }

    /// Detaches and closes the connection, and the tab it opened, if any.
    pub async fn close(mut self) {
        if let Some(target) = self.own_tab.take() {
            let _ = self
                .client
                .call("Target.closeTarget", json!({"targetId": target}), None)
                .await;
        }
        self.client.close().await;
    }
}
