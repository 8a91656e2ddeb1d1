//! The live view: `GET /live/{session_id}?token=…` (the page that
//! `live_view_url` leads to) and `GET /live/{session_id}/stream?token=…`
//! (its WebSocket).
//!
//! The page draws the frames it receives on a canvas and sends the viewer's
//! mouse, wheel and keyboard input back. The stream relays between the page
//! and a [`Screencast`] of the session's browser. Both take the session's
//! own token, never an API key. A viewer counts as a client for the idle
//! timeout. Input of a read-only session (`session.live_view.read_only`) is
//! refused here, on the server, and the viewer is told so.
//!
//! Stream messages are JSON text. Server to viewer: `hello`
//! (`session_id`, `read_only`), `frame` (`data`: base64 JPEG, `width`,
//! `height`: the page's viewport in CSS pixels), `page` (the shown tab
//! changed), `refused` and `error` (`message`), `ended` (`message`). Viewer
//! to server: `mouse` (`event`: `down`/`up`/`move`, `x`, `y`, `button`,
//! `clicks`, `modifiers`), `wheel` (`x`, `y`, `delta_x`, `delta_y`,
//! `modifiers`), `key` (`event`: `down`/`up`, `key`, `code`, `text`,
//! `key_code`, `modifiers`).

use std::sync::Arc;

use anchorage_browser::{Input, MouseButton, MouseKind, Screencast, ScreencastEvent};
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::cdp::Handshake;
use super::extract::session_by_token;
use crate::error::ApiError;
use crate::fleet::LiveSession;
use crate::state::AppState;

/// The viewer page; it reads the session id and token from its own URL.
const LIVE_PAGE: &str = include_str!("../../assets/live.html");

/// `GET /live/{session_id}?token=…`: the viewer page.
#[utoipa::path(
    operation_id = "live_view_page",
    get,
    path = "/live/{session_id}",
    tag = "live view",
    summary = "Watch a session (the live_view_url)",
    description = "An HTML page that shows the session's screen and forwards mouse, wheel and keyboard input unless the session is read-only.",
    params(
        ("session_id" = String, Path, description = "The session's id"),
        ("token" = String, Query, description = "The session's own token, from its live_view_url"),
    ),
    responses(
        (status = 200, description = "The viewer page", content_type = "text/html", body = String)
    )
)]
pub async fn page(State(state): State<AppState>, Path(raw_id): Path<String>, request: Request) -> Response {
    if let Err(error) = session_by_token(&state, &raw_id, request.uri().query()) {
        return error.into_response();
    }
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(LIVE_PAGE),
    )
        .into_response()
}

/// `GET /live/{session_id}/stream?token=…`: the viewer's WebSocket.
#[utoipa::path(
    operation_id = "live_view_stream",
    get,
    path = "/live/{session_id}/stream",
    tag = "live view",
    summary = "The live view's WebSocket",
    description = "A WebSocket upgrade speaking JSON text messages: to the viewer `hello`, `frame` (base64 JPEG and the page size), `page`, `refused`, `error`, `ended`; from the viewer `mouse`, `wheel`, `key`.",
    params(
        ("session_id" = String, Path, description = "The session's id"),
        ("token" = String, Query, description = "The session's own token"),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol")
    )
)]
pub async fn stream(State(state): State<AppState>, Path(raw_id): Path<String>, mut request: Request) -> Response {
    let session_id = match session_by_token(&state, &raw_id, request.uri().query()) {
        Ok(session_id) => session_id,
        Err(error) => return error.into_response(),
    };
    let handshake = match Handshake::accept(&mut request) {
        Ok(handshake) => handshake,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(session) = state.fleet.live_session_any_team(session_id) else {
        // The token is right, so the viewer may learn that the session is over.
        return handshake.finish(&state, |mut viewer| async move {
            let _ = send(&mut viewer, &ended_message("this session has ended")).await;
            let _ = viewer.close(None).await;
        });
    };
    let screencast = match Screencast::open(&session.devtools).await {
        Ok(screencast) => screencast,
        Err(error) => {
            if state.fleet.live_session_any_team(session_id).is_none() {
                return ApiError::session_not_found().into_response();
            }
            return ApiError::internal(format!("opening the live view of {session_id}: {error}")).into_response();
        }
    };
    handshake.finish(&state, move |viewer| relay(session, screencast, viewer))
}

/// Relays frames to the viewer and input to the browser until either side
/// leaves or the session ends.
async fn relay<S>(session: Arc<LiveSession>, mut screencast: Screencast, mut viewer: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _client = session.connect_client();
    let hello = json!({"type": "hello", "session_id": session.id, "read_only": session.live_view_read_only});
    if send(&mut viewer, &hello).await.is_err() {
        return;
    }
    let farewell = loop {
        tokio::select! {
            () = session.ending() => break Some("this session has ended"),
            message = screencast.recv() => {
                let Some(message) = message else { break Some("the browser of this session has gone") };
                match screencast.handle(message).await {
                    Ok(ScreencastEvent::Frame(frame)) => {
                        let shown = json!({"type": "frame", "data": frame.jpeg_base64,
                            "width": frame.page_width, "height": frame.page_height});
                        if send(&mut viewer, &shown).await.is_err() {
                            break None;
                        }
                        if screencast.ack(frame.ack).await.is_err() {
                            break Some("the browser of this session has gone");
                        }
                    }
                    Ok(ScreencastEvent::PageChanged) => {
                        if send(&mut viewer, &json!({"type": "page"})).await.is_err() {
                            break None;
                        }
                    }
                    Ok(ScreencastEvent::Nothing) => {}
                    Err(_) => break Some("the browser of this session has gone"),
                }
            }
            incoming = viewer.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                    Some(Ok(_)) => continue,
                };
                let answer = if session.live_view_read_only {
                    Some(json!({"type": "refused",
                        "message": "this session's live view is read-only; input is not forwarded"}))
                } else {
                    match parse_input(&text) {
                        Ok(input) => {
                            if screencast.dispatch(&input).await.is_err() {
                                break Some("the browser of this session has gone");
                            }
                            None
                        }
                        Err(message) => Some(json!({"type": "error", "message": message})),
                    }
                };
                if let Some(answer) = answer {
                    if send(&mut viewer, &answer).await.is_err() {
                        break None;
                    }
                }
            }
        }
    };
    if let Some(message) = farewell {
        let _ = send(&mut viewer, &ended_message(message)).await;
    }
    let _ = viewer.close(None).await;
    screencast.close().await;
}

fn ended_message(message: &str) -> serde_json::Value {
    json!({"type": "ended", "message": message})
}

async fn send<S>(viewer: &mut WebSocketStream<S>, value: &serde_json::Value) -> Result<(), ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    viewer.send(Message::text(value.to_string())).await.map_err(drop)
}

/// One input message of the viewer, as it arrives.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ViewerInput {
    Mouse {
        event: String,
        x: f64,
        y: f64,
        #[serde(default)]
        button: Option<String>,
        #[serde(default)]
        clicks: Option<u32>,
        #[serde(default)]
        modifiers: u32,
    },
    Wheel {
        x: f64,
        y: f64,
        #[serde(default)]
        delta_x: f64,
        #[serde(default)]
        delta_y: f64,
        #[serde(default)]
        modifiers: u32,
    },
    Key {
        event: String,
        key: String,
        #[serde(default)]
        code: String,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        key_code: u32,
        #[serde(default)]
        modifiers: u32,
    },
}

/// Largest coordinate or scroll we pass on, in CSS pixels.
const MAX_COORDINATE: f64 = 100_000.0;

/// Turns a viewer message into a browser input event, or says what is wrong.
fn parse_input(text: &str) -> Result<Input, String> {
    let input: ViewerInput =
        serde_json::from_str(text).map_err(|error| format!("not a live-view input message: {error}"))?;
    let in_range = |value: f64| value.is_finite() && value.abs() <= MAX_COORDINATE;
    let modifiers_ok = |modifiers: u32| modifiers <= 15;
    match input {
        ViewerInput::Mouse {
            event,
            x,
            y,
            button,
            clicks,
            modifiers,
        } => {
            let kind = match event.as_str() {
                "down" => MouseKind::Pressed,
                "up" => MouseKind::Released,
                "move" => MouseKind::Moved,
                _ => return Err("mouse event must be down, up or move".to_owned()),
            };
            let button = match button.as_deref() {
                None | Some("none") => MouseButton::None,
                Some("left") => MouseButton::Left,
                Some("middle") => MouseButton::Middle,
                Some("right") => MouseButton::Right,
                Some(_) => return Err("mouse button must be none, left, middle or right".to_owned()),
            };
            let click_count = clicks.unwrap_or(u32::from(kind != MouseKind::Moved));
            if !in_range(x) || !in_range(y) || click_count > 3 || !modifiers_ok(modifiers) {
                return Err("mouse input is out of range".to_owned());
            }
            Ok(Input::Mouse {
                kind,
                x,
                y,
                button,
                click_count,
                modifiers,
            })
        }
        ViewerInput::Wheel {
            x,
            y,
            delta_x,
            delta_y,
            modifiers,
        } => {
            if ![x, y, delta_x, delta_y].into_iter().all(in_range) || !modifiers_ok(modifiers) {
                return Err("wheel input is out of range".to_owned());
            }
            Ok(Input::Wheel {
                x,
                y,
                delta_x,
                delta_y,
                modifiers,
            })
        }
        ViewerInput::Key {
            event,
            key,
            code,
            text,
            key_code,
            modifiers,
        } => {
            let down = match event.as_str() {
                "down" => true,
                "up" => false,
                _ => return Err("key event must be down or up".to_owned()),
            };
            let too_long = |value: &str| value.chars().count() > 32;
            if too_long(&key) || too_long(&code) || text.as_deref().is_some_and(too_long) || key_code > 255 {
                return Err("key input is out of range".to_owned());
            }
            if !modifiers_ok(modifiers) {
                return Err("key modifiers are out of range".to_owned());
            }
            Ok(Input::Key {
                down,
                key,
                code,
                text: text.filter(|text| !text.is_empty()),
                key_code,
                modifiers,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_parses_with_its_defaults() {
        let input = parse_input(r#"{"type":"mouse","event":"down","x":10,"y":20.5,"button":"left"}"#);
        assert_eq!(
            input,
            Ok(Input::Mouse {
                kind: MouseKind::Pressed,
                x: 10.0,
                y: 20.5,
                button: MouseButton::Left,
                click_count: 1,
                modifiers: 0,
            })
        );
    }

    #[test]
    fn keys_and_wheels_parse() {
        assert!(matches!(
            parse_input(r#"{"type":"key","event":"down","key":"a","code":"KeyA","text":"a","key_code":65}"#),
            Ok(Input::Key { down: true, .. })
        ));
        assert!(matches!(
            parse_input(r#"{"type":"wheel","x":1,"y":2,"delta_y":120}"#),
            Ok(Input::Wheel { delta_y, .. }) if delta_y == 120.0
        ));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        for bad in [
            "not json",
            r#"{"type":"touch"}"#,
            r#"{"type":"mouse","event":"hover","x":1,"y":1}"#,
            r#"{"type":"mouse","event":"down","x":1e300,"y":1}"#,
            r#"{"type":"mouse","event":"down","x":1,"y":1,"button":"fourth"}"#,
            r#"{"type":"key","event":"down","key":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
            r#"{"type":"wheel","x":1,"y":1,"modifiers":99}"#,
        ] {
            assert!(parse_input(bad).is_err(), "{bad} was accepted");
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::json;

        use super::super::*;

        fn number() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                any::<f64>().prop_map(|value| json!(value)),
                any::<i64>().prop_map(|value| json!(value)),
                Just(json!("12")),
                Just(json!(null)),
            ]
        }

        fn message() -> impl Strategy<Value = String> {
            let named = |names: Vec<&'static str>| prop::sample::select(names).prop_map(String::from);
            let kinds = prop_oneof![named(vec!["mouse", "wheel", "key", "touch"]), ".{0,8}"];
            let events = prop_oneof![named(vec!["down", "up", "move"]), ".{0,8}"];
            (kinds, events, number(), number(), number(), ".{0,40}", any::<u32>()).prop_map(
                |(kind, event, x, y, delta, key, modifiers)| {
                    json!({"type": kind, "event": event, "x": x, "y": y, "delta_y": delta, "key": key,
                           "text": key, "key_code": modifiers % 300, "modifiers": modifiers % 20, "clicks": modifiers % 5})
                    .to_string()
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_text_is_parsed_or_refused_without_a_panic(text in ".{0,200}") {
                let _ = parse_input(&text);
            }

            #[test]
            fn accepted_input_is_always_within_range(text in message()) {
                match parse_input(&text) {
                    Ok(Input::Mouse { x, y, click_count, modifiers, .. }) => {
                        prop_assert!(x.abs() <= MAX_COORDINATE && y.abs() <= MAX_COORDINATE);
                        prop_assert!(click_count <= 3 && modifiers <= 15);
                    }
                    Ok(Input::Wheel { x, y, delta_x, delta_y, .. }) => {
                        prop_assert!([x, y, delta_x, delta_y].iter().all(|value| value.is_finite()));
                    }
                    Ok(Input::Key { key, code, key_code, .. }) => {
                        prop_assert!(key.chars().count() <= 32 && code.chars().count() <= 32 && key_code <= 255);
                    }
                    Err(message) => prop_assert!(!message.is_empty()),
                }
            }
        }
    }
}
