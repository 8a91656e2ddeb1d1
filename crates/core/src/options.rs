//! The options of a session start, validated.
//!
//! A start body (`SessionCreateRequestSchema` upstream) is kept whole as the
//! session's recorded `configuration`; this module reads from it the options
//! we act on and checks every field we know. Unknown fields are ignored (the
//! SDKs may send fields we do not act on yet), and known ones we do not act on
//! yet are recorded as asked, never pretended.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Default `max_duration` in minutes, as upstream.
pub const DEFAULT_MAX_DURATION_MINUTES: i64 = 20;
/// Default `idle_timeout` in minutes, as upstream.
pub const DEFAULT_IDLE_TIMEOUT_MINUTES: i64 = 5;
/// Longest timeout we accept, in minutes (one week).
pub const MAX_TIMEOUT_MINUTES: i64 = 7 * 24 * 60;
/// Most tags on one session.
pub const MAX_TAGS: usize = 100;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 256;
/// Longest `initial_url`, in bytes.
pub const MAX_URL_BYTES: usize = 8192;

/// A browser window size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewport {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Default for Viewport {
    /// Upstream's default, 1440×900.
    fn default() -> Self {
        Self {
            width: 1440,
            height: 900,
        }
    }
}

/// What a start asked for, in the form the server acts on. Serialized only
/// by the store, which keeps it with the request it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionOptions {
    /// Page to open first; `None` opens a blank page.
    pub initial_url: Option<Url>,
    /// Labels, in the order given, without duplicates.
    pub tags: Vec<String>,
    /// Minutes after start at which the session ends; `None` disables.
    pub max_duration_minutes: Option<i64>,
    /// Minutes without a client after which the session ends; `None` disables.
    pub idle_timeout_minutes: Option<i64>,
    /// Whether the live view may only watch.
    pub live_view_read_only: bool,
    /// Whether a headless browser was asked for; `None` leaves it to the
    /// server's default (upstream's is headful).
    pub headless_requested: Option<bool>,
    /// Whether recording was asked for; `None` leaves it to the server's
    /// default (upstream's is on).
    pub recording_requested: Option<bool>,
    /// Whether a proxy was asked for.
    pub proxy_requested: bool,
    /// The window size.
    pub viewport: Viewport,
    /// The saved profile the browser starts from (`browser.profile`).
    #[serde(default)]
    pub profile: Option<ProfileUse>,
    /// The proxy of the user's own the browser sends its traffic through
    /// (`session.proxy` of type `custom`).
    #[serde(default)]
    pub proxy: Option<CustomProxy>,
    /// Uploaded extensions loaded into the browser (`browser.extensions`).
    #[serde(default)]
    pub extensions: Vec<crate::ExtensionId>,
    /// Names of the team's CA certificates the browser trusts
    /// (`browser.certificates`).
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Chromium switches the start's browser options ask for
    /// (`browser.disable_web_security`, `browser.popup_blocker`).
    #[serde(default)]
    pub switches: Vec<BrowserSwitch>,
    /// Whether JavaScript dialogs are dismissed by the server
    /// (`browser.disable_dialogs.active`).
    #[serde(default)]
    pub dismiss_dialogs: bool,
    /// Whether popups open as tabs of the opener's window
    /// (`browser.force_popups_as_tabs.active`).
    #[serde(default)]
    pub popups_as_tabs: bool,
    /// Whether ad blocking is off for the session
    /// (`browser.adblock.active: false`; on by default).
    #[serde(default)]
    pub no_adblock: bool,
    /// Whether the window is fullscreen, on a screen the viewport's size
    /// (`browser.fullscreen.active`).
    #[serde(default)]
    pub fullscreen: bool,
    /// Whether PDFs are downloaded instead of shown in Chromium's viewer
    /// (`browser.pdf_viewer.active: false`).
    #[serde(default)]
    pub pdfs_downloaded: bool,
    /// How the session is isolated, if the start says
    /// (`anchorage.isolation`); `None` leaves it to the server's setting.
    #[serde(default)]
    pub isolation: Option<Isolation>,
}

/// How a session is isolated from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A Chromium of its own.
    Browser,
    /// A browser context (plus its first page) in a Chromium that hosts
    /// several sessions.
    Context,
}

impl Isolation {
    /// Reads `browser` or `context`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "browser" => Some(Self::Browser),
            "context" => Some(Self::Context),
            _ => None,
        }
    }
}

/// A Chromium switch a start's browser options turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrowserSwitch {
    /// `browser.disable_web_security.active: true`: no same-origin policy or CORS checks.
    DisableWebSecurity,
    /// `browser.popup_blocker.active: false`: pages may open windows without a user gesture.
    AllowPopups,
}

impl BrowserSwitch {
    /// The command-line switch.
    pub fn flag(self) -> &'static str {
        match self {
            Self::DisableWebSecurity => "--disable-web-security",
            Self::AllowPopups => "--disable-popup-blocking",
        }
    }
}

/// Checks a certificate name: 1 to 255 letters, digits, hyphens and
/// underscores. `field` names it in the message.
pub fn check_certificate_name(name: &str, field: &str) -> Result<(), OptionsError> {
    if name.is_empty() || name.len() > 255 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(invalid(format!(
            "{field} must be 1 to 255 letters, digits, hyphens or underscores"
        )));
    }
    Ok(())
}

/// Most extensions one session loads.
pub const MAX_SESSION_EXTENSIONS: usize = 20;

/// A proxy of the user's own (`session.proxy` with `type: "custom"`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomProxy {
    /// `scheme://host:port` (`http`, `https`, `socks4` or `socks5`), as Chromium's `--proxy-server` takes it.
    pub server: String,
    /// For a proxy that asks for credentials, answered over DevTools.
    pub username: Option<String>,
    /// Never shown: see [`redact_configuration`].
    pub password: Option<String>,
}

impl std::fmt::Debug for CustomProxy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CustomProxy")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// What stands for a password wherever a start body is shown.
pub const REDACTED: &str = "[redacted]";

/// Replaces the proxy password of a start body (as it is kept and shown in
/// a session's `configuration`) with [`REDACTED`].
pub fn redact_configuration(configuration: &mut Value) {
    if let Some(password) = configuration
        .get_mut("session")
        .and_then(|session| session.get_mut("proxy"))
        .and_then(|proxy| proxy.get_mut("password"))
    {
        if !password.is_null() {
            *password = Value::String(REDACTED.to_owned());
        }
    }
}

/// A saved profile a session starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUse {
    /// The profile's name, within the team.
    pub name: String,
    /// Whether the session's state is written back to it when it ends.
    pub persist: bool,
}

/// Longest profile name, in characters.
pub const MAX_PROFILE_NAME_CHARS: usize = 128;

/// Checks a profile name: 1 to 128 characters, none of them a control
/// character or a slash. `field` names it in the message.
pub fn check_profile_name(name: &str, field: &str) -> Result<(), OptionsError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_PROFILE_NAME_CHARS
        || name.chars().any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(invalid(format!(
            "{field} must be 1 to {MAX_PROFILE_NAME_CHARS} characters, without slashes or control characters"
        )));
    }
    Ok(())
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            initial_url: None,
            tags: Vec::new(),
            max_duration_minutes: Some(DEFAULT_MAX_DURATION_MINUTES),
            idle_timeout_minutes: Some(DEFAULT_IDLE_TIMEOUT_MINUTES),
            live_view_read_only: false,
            headless_requested: None,
            recording_requested: None,
            proxy_requested: false,
            viewport: Viewport::default(),
            profile: None,
            proxy: None,
            extensions: Vec::new(),
            certificates: Vec::new(),
            switches: Vec::new(),
            dismiss_dialogs: false,
            popups_as_tabs: false,
            no_adblock: false,
            fullscreen: false,
            pdfs_downloaded: false,
            isolation: None,
        }
    }
}

/// A start body that cannot be accepted. The message names the field and
/// says what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionsError(pub String);

fn invalid(message: impl Into<String>) -> OptionsError {
    OptionsError(message.into())
}

/// The body of a session start (`SessionCreateRequestSchema` upstream).
/// Every part is optional and unknown fields are ignored (the SDKs may send
/// fields anchorage does not act on yet); options it does not act on yet
/// (recording, proxy, profile, extensions, headful) are accepted and
/// recorded in the session's `configuration`. Decoded with serde, so a value
/// of the wrong type is refused with its field's path; the limits are
/// checked by [`SessionOptions::from_body`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct StartBody {
    /// Session options.
    pub session: Option<SessionPart>,
    /// Browser options.
    pub browser: Option<BrowserPart>,
    /// Hosted integrations; accepted, not acted on.
    #[cfg_attr(feature = "schema", schema(value_type = Option<Vec<Object>>))]
    pub integrations: Option<Vec<Value>>,
    /// Hosted identities; accepted, not acted on.
    #[cfg_attr(feature = "schema", schema(value_type = Option<Vec<Object>>))]
    pub identities: Option<Vec<Value>>,
    /// anchorage's own options (no upstream field is named so).
    pub anchorage: Option<AnchoragePart>,
}

/// `anchorage` of a start: options upstream does not have.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AnchoragePart {
    /// `browser` (a Chromium of its own) or `context` (a browser context in
    /// a shared Chromium); the server's `ANCHORAGE_SESSION_ISOLATION` when
    /// absent. A start whose options need a browser of its own gets one.
    pub isolation: Option<String>,
}

/// Session options of a start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SessionPart {
    /// Page opened first: `http` or `https` only.
    pub initial_url: Option<String>,
    /// Up to 100 tags of up to 256 characters.
    pub tags: Option<Vec<String>>,
    /// Recording; recorded, not active yet.
    pub recording: Option<ActivePart>,
    /// A proxy: `type: "custom"` with `server` (and `username`, `password`)
    /// is used; the hosted `anchor_proxy` is refused.
    pub proxy: Option<ProxyPart>,
    /// Timeouts in minutes.
    pub timeout: Option<TimeoutPart>,
    /// Live view options.
    pub live_view: Option<LiveViewPart>,
}

/// `session.proxy` of a start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ProxyPart {
    /// `custom` (a proxy of your own) or `anchor_proxy` (hosted only, refused).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// On or off (default on).
    pub active: Option<bool>,
    /// For `custom`: `scheme://host:port`.
    pub server: Option<String>,
    /// For `custom`: the proxy's user name.
    pub username: Option<String>,
    /// For `custom`: the proxy's password (never shown back).
    pub password: Option<String>,
    /// For `anchor_proxy` (hosted only).
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub country_code: Option<Value>,
    /// For `anchor_proxy` (hosted only).
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub region: Option<Value>,
    /// For `anchor_proxy` (hosted only).
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub city: Option<Value>,
}

/// Longest proxy server, user name or password, in bytes.
const MAX_PROXY_FIELD_BYTES: usize = 1024;

fn parse_proxy(part: &ProxyPart) -> Result<Option<CustomProxy>, OptionsError> {
    if part.active == Some(false) {
        return Ok(None);
    }
    match part.kind.as_deref() {
        Some("custom") => {}
        None | Some("anchor_proxy") => {
            return Err(invalid(
                "session.proxy: the anchor_proxy (a residential proxy by country) is a hosted AnchorBrowser                  service that anchorage does not have; use {\"type\": \"custom\", \"server\": \"http://host:port\", \
                 \"username\": …, \"password\": …, \"active\": true} with a proxy of your own",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "session.proxy.type must be \"custom\" (a proxy of your own), not {other:?}"
            )))
        }
    }
    let server = part
        .server
        .as_deref()
        .ok_or_else(|| invalid("session.proxy.server is required for a custom proxy (scheme://host:port)"))?;
    let url = Url::parse(server).ok().filter(|url| {
        matches!(url.scheme(), "http" | "https" | "socks4" | "socks5")
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && matches!(url.path(), "" | "/")
            && url.query().is_none()
            && url.fragment().is_none()
    });
    let Some(url) = url.filter(|_| server.len() <= MAX_PROXY_FIELD_BYTES) else {
        return Err(invalid(
            "session.proxy.server must be scheme://host:port with scheme http, https, socks4 or socks5              (credentials go in username and password)",
        ));
    };
    for (name, value) in [("username", &part.username), ("password", &part.password)] {
        if value
            .as_ref()
            .is_some_and(|value| value.len() > MAX_PROXY_FIELD_BYTES || value.chars().any(char::is_control))
        {
            return Err(invalid(format!(
                "session.proxy.{name} must be at most {MAX_PROXY_FIELD_BYTES} bytes, without control characters"
            )));
        }
    }
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    Ok(Some(CustomProxy {
        server: format!("{}://{host}{port}", url.scheme()),
        username: part.username.clone().filter(|name| !name.is_empty()),
        password: part.password.clone(),
    }))
}

/// A part that is switched on or off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ActivePart {
    /// On or off.
    pub active: Option<bool>,
}

/// Timeouts of a start, in minutes; `-1` disables one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TimeoutPart {
    /// Ends the session this long after it started (default 20).
    pub max_duration: Option<i64>,
    /// Ends it this long after its last client left, or after start if none came (default 5).
    pub idle_timeout: Option<i64>,
}

/// Live view options of a start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LiveViewPart {
    /// Viewers may watch but their input is not forwarded.
    pub read_only: Option<bool>,
}

/// Browser options of a start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct BrowserPart {
    /// `{"active": bool}`: a headless browser; headful is recorded, not active yet.
    pub headless: Option<ActivePart>,
    /// The page's viewport (default 1440×900).
    pub viewport: Option<ViewportPart>,
    /// The saved profile to start from, and whether to write the session's
    /// state back to it when it ends.
    pub profile: Option<ProfilePart>,
    /// Ad and tracker blocking by the node's filter lists: on by default;
    /// `{"active": false}` turns it off for the session.
    pub adblock: Option<ActivePart>,
    /// Popup blocking: on by default (Chromium's own: no window opens
    /// without a user gesture); `{"active": false}` lets pages open them.
    pub popup_blocker: Option<ActivePart>,
    /// `{"active": true}`: no same-origin policy or CORS checks.
    pub disable_web_security: Option<ActivePart>,
    /// `{"active": true}`: JavaScript dialogs are dismissed as they open.
    pub disable_dialogs: Option<ActivePart>,
    /// `{"active": true}`: a popup opens as a tab of its opener's window.
    pub force_popups_as_tabs: Option<ActivePart>,
    /// `{"active": false}`: PDFs are downloaded, not shown (the viewer is on by default).
    pub pdf_viewer: Option<ActivePart>,
    /// Captcha solving (hosted only); recorded, not active.
    #[cfg_attr(feature = "schema", schema(value_type = Option<Object>))]
    pub captcha_solver: Option<Map<String, Value>>,
    /// `{"active": true}`: the window is fullscreen on a screen the viewport's size.
    pub fullscreen: Option<ActivePart>,
    /// Names of the team's CA certificates the browser trusts (`POST /v1/certificates`).
    pub certificates: Option<Vec<String>>,
    /// Ids of the team's uploaded extensions to load (`POST /v1/extensions`).
    #[cfg_attr(feature = "schema", schema(value_type = Option<Vec<String>>))]
    pub extensions: Option<Vec<Value>>,
}

/// `browser.profile` of a start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ProfilePart {
    /// A profile of the team (made with `POST /v1/profiles`).
    pub name: Option<String>,
    /// Write the session's state back to the profile when it ends (default false).
    pub persist: Option<bool>,
}

/// A viewport size in CSS pixels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ViewportPart {
    /// Width, 100 to 7680.
    pub width: Option<i64>,
    /// Height, 100 to 4320.
    pub height: Option<i64>,
}

/// What a field of the start body must be, for the message that refuses a
/// value of the wrong type (`path` without array indices).
fn expected_at(path: &str) -> String {
    let expectation = match path {
        "session"
        | "browser"
        | "session.recording"
        | "session.proxy"
        | "session.timeout"
        | "session.live_view"
        | "browser.headless"
        | "browser.viewport"
        | "browser.profile"
        | "browser.adblock"
        | "browser.popup_blocker"
        | "browser.disable_web_security"
        | "browser.disable_dialogs"
        | "browser.pdf_viewer"
        | "browser.force_popups_as_tabs"
        | "browser.captcha_solver"
        | "browser.fullscreen" => "must be an object".to_owned(),
        "session.proxy.type" | "session.proxy.server" | "session.proxy.username" | "session.proxy.password" => {
            "must be a string".to_owned()
        }
        "session.recording.active"
        | "session.proxy.active"
        | "session.live_view.read_only"
        | "browser.headless.active"
        | "browser.adblock.active"
        | "browser.popup_blocker.active"
        | "browser.disable_web_security.active"
        | "browser.disable_dialogs.active"
        | "browser.pdf_viewer.active"
        | "browser.force_popups_as_tabs.active"
        | "browser.fullscreen.active" => "must be true or false".to_owned(),
        "session.initial_url" => "must be a string holding an http or https URL".to_owned(),
        "session.tags" => "must be an array of strings".to_owned(),
        "session.timeout.max_duration" | "session.timeout.idle_timeout" => timeout_expectation(),
        "browser.viewport.width" => "must be an integer between 100 and 7680".to_owned(),
        "browser.viewport.height" => "must be an integer between 100 and 4320".to_owned(),
        "browser.extensions" => "must be an array of extension ids".to_owned(),
        "browser.certificates" => "must be an array of certificate names".to_owned(),
        "browser.profile.name" => "must be a string".to_owned(),
        "browser.profile.persist" => "must be true or false".to_owned(),
        "integrations" | "identities" => "must be an array".to_owned(),
        _ => "has the wrong type".to_owned(),
    };
    format!("{path} {expectation}")
}

fn timeout_expectation() -> String {
    format!("must be -1 (no limit) or an integer number of minutes between 1 and {MAX_TIMEOUT_MINUTES}")
}

/// A timeout in minutes: absent is the default, `-1` disables, otherwise 1
/// up to a week.
fn timeout_minutes(value: Option<i64>, key: &str, default: i64) -> Result<Option<i64>, OptionsError> {
    match value {
        None => Ok(Some(default)),
        Some(-1) => Ok(None),
        Some(minutes) if (1..=MAX_TIMEOUT_MINUTES).contains(&minutes) => Ok(Some(minutes)),
        Some(_) => Err(invalid(format!("session.timeout.{key} {}", timeout_expectation()))),
    }
}

fn viewport_side(value: Option<i64>, key: &str, high: i64, default: u32) -> Result<u32, OptionsError> {
    match value {
        None => Ok(default),
        Some(side) if (100..=high).contains(&side) => u32::try_from(side).map_err(|_| invalid(key)),
        Some(_) => Err(invalid(format!(
            "browser.viewport.{key} must be an integer between 100 and {high}"
        ))),
    }
}

fn parse_initial_url(text: &str) -> Result<Option<Url>, OptionsError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "session.initial_url must be at most {MAX_URL_BYTES} bytes long"
        )));
    }
    let url = Url::parse(text).map_err(|error| invalid(format!("session.initial_url is not a valid URL: {error}")))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(Some(url)),
        "http" | "https" => Err(invalid("session.initial_url must name a host")),
        other => Err(invalid(format!(
            "session.initial_url must use http or https, not {other}:"
        ))),
    }
}

fn parse_tags(items: &[String]) -> Result<Vec<String>, OptionsError> {
    check_tags("session.tags", items)
}

/// Checks a list of tags given as `field` (at most [`MAX_TAGS`], each 1 to
/// 256 characters) and drops repeats, keeping the first of each in order.
pub fn check_tags(field: &str, items: &[String]) -> Result<Vec<String>, OptionsError> {
    if items.len() > MAX_TAGS {
        return Err(invalid(format!("{field} must hold at most {MAX_TAGS} tags")));
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for tag in items {
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            return Err(invalid(format!(
                "each of {field} must be 1 to {MAX_TAG_CHARS} characters long"
            )));
        }
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    Ok(tags)
}

/// Decodes a JSON value into a typed request struct. A value of the wrong
/// type is refused with `expected(path)`, where `path` names the field (its
/// keys joined by dots, array indices left out: `session.tags`), so that the
/// message says which field and what it must be.
pub fn decode_with<T: serde::de::DeserializeOwned>(
    value: &Value,
    expected: impl FnOnce(&str) -> String,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Seq { .. } | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        expected(&path.join("."))
    })
}

impl StartBody {
    /// Decodes a start body; a value of the wrong type is refused with its
    /// field's path and what it must be.
    pub fn decode(configuration: &Value) -> Result<Self, OptionsError> {
        match configuration {
            Value::Object(_) => {}
            Value::Null => return Ok(Self::default()),
            _ => return Err(invalid("the request body must be a JSON object")),
        }
        decode_with(configuration, expected_at).map_err(invalid)
    }
}

impl SessionOptions {
    /// Validates a start body given as JSON and reads the options we act on.
    pub fn from_configuration(configuration: &Value) -> Result<Self, OptionsError> {
        Self::from_body(&StartBody::decode(configuration)?)
    }

    /// Checks a decoded start body's limits and reads the options we act on.
    pub fn from_body(body: &StartBody) -> Result<Self, OptionsError> {
        let mut options = Self::default();
        if let Some(isolation) = body.anchorage.as_ref().and_then(|part| part.isolation.as_deref()) {
            options.isolation = Some(Isolation::parse(isolation).ok_or_else(|| {
                invalid(format!(
                    "anchorage.isolation: {isolation:?} is not valid: it must be \"browser\" or \"context\""
                ))
            })?);
        }
        if let Some(session) = &body.session {
            if let Some(url) = &session.initial_url {
                options.initial_url = parse_initial_url(url)?;
            }
            if let Some(tags) = &session.tags {
                options.tags = parse_tags(tags)?;
            }
            if let Some(active) = session.recording.as_ref().and_then(|part| part.active) {
                options.recording_requested = Some(active);
            }
            if let Some(proxy) = &session.proxy {
                options.proxy = parse_proxy(proxy)?;
                options.proxy_requested = options.proxy.is_some();
            }
            if let Some(timeout) = &session.timeout {
                options.max_duration_minutes =
                    timeout_minutes(timeout.max_duration, "max_duration", DEFAULT_MAX_DURATION_MINUTES)?;
                options.idle_timeout_minutes =
                    timeout_minutes(timeout.idle_timeout, "idle_timeout", DEFAULT_IDLE_TIMEOUT_MINUTES)?;
            }
            if let Some(read_only) = session.live_view.as_ref().and_then(|part| part.read_only) {
                options.live_view_read_only = read_only;
            }
        }
        if let Some(browser) = &body.browser {
            if let Some(active) = browser.headless.as_ref().and_then(|part| part.active) {
                options.headless_requested = Some(active);
            }
            if let Some(profile) = &browser.profile {
                match (&profile.name, profile.persist) {
                    (Some(name), persist) => {
                        check_profile_name(name, "browser.profile.name")?;
                        options.profile = Some(ProfileUse {
                            name: name.clone(),
                            persist: persist.unwrap_or(false),
                        });
                    }
                    (None, Some(true)) => {
                        return Err(invalid("browser.profile.name is required to persist a profile"));
                    }
                    (None, _) => {}
                }
            }
            if let Some(extensions) = &browser.extensions {
                if extensions.len() > MAX_SESSION_EXTENSIONS {
                    return Err(invalid(format!(
                        "browser.extensions may name at most {MAX_SESSION_EXTENSIONS} extensions"
                    )));
                }
                for id in extensions {
                    let id = id
                        .as_str()
                        .and_then(|text| text.parse::<crate::ExtensionId>().ok())
                        .ok_or_else(|| invalid("browser.extensions must be an array of extension ids"))?;
                    if !options.extensions.contains(&id) {
                        options.extensions.push(id);
                    }
                }
            }
            if let Some(names) = &browser.certificates {
                if names.len() > MAX_SESSION_EXTENSIONS {
                    return Err(invalid(format!(
                        "browser.certificates may name at most {MAX_SESSION_EXTENSIONS} certificates"
                    )));
                }
                for name in names {
                    check_certificate_name(name, "each of browser.certificates")?;
                    if !options.certificates.contains(name) {
                        options.certificates.push(name.clone());
                    }
                }
            }
            if browser.disable_web_security.as_ref().and_then(|part| part.active) == Some(true) {
                options.switches.push(BrowserSwitch::DisableWebSecurity);
            }
            options.dismiss_dialogs = browser.disable_dialogs.as_ref().and_then(|part| part.active) == Some(true);
            options.fullscreen = browser.fullscreen.as_ref().and_then(|part| part.active) == Some(true);
            options.popups_as_tabs = browser.force_popups_as_tabs.as_ref().and_then(|part| part.active) == Some(true);
            options.no_adblock = browser.adblock.as_ref().and_then(|part| part.active) == Some(false);
            options.pdfs_downloaded = browser.pdf_viewer.as_ref().and_then(|part| part.active) == Some(false);
            if browser.popup_blocker.as_ref().and_then(|part| part.active) == Some(false) {
                options.switches.push(BrowserSwitch::AllowPopups);
            }
            if let Some(viewport) = &browser.viewport {
                let defaults = Viewport::default();
                options.viewport = Viewport {
                    width: viewport_side(viewport.width, "width", 7680, defaults.width)?,
                    height: viewport_side(viewport.height, "height", 4320, defaults.height)?,
                };
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(body: Value) -> String {
        match SessionOptions::from_configuration(&body) {
            Err(error) => error.0,
            Ok(options) => panic!("accepted {body}: {options:?}"),
        }
    }

    #[test]
    fn empty_body_gives_upstream_defaults() {
        let options = SessionOptions::from_configuration(&json!({})).expect("valid");
        assert_eq!(options, SessionOptions::default());
        assert_eq!(options.max_duration_minutes, Some(20));
        assert_eq!(options.idle_timeout_minutes, Some(5));
        assert_eq!(
            options.viewport,
            Viewport {
                width: 1440,
                height: 900
            }
        );
    }

    #[test]
    fn reads_every_known_option() {
        let body = json!({
            "session": {
                "initial_url": "https://example.test/path",
                "tags": ["a", "b", "a"],
                "recording": {"active": false},
                "timeout": {"max_duration": -1, "idle_timeout": 3},
                "live_view": {"read_only": true},
                "proxy": {"type": "custom", "server": "http://proxy.test:3128", "username": "u", "password": "p", "active": true},
                "unknown": 1
            },
            "browser": {"headless": {"active": true}, "viewport": {"width": 800, "height": 600}},
            "something_new": {}
        });
        let options = SessionOptions::from_configuration(&body).expect("valid");
        assert_eq!(
            options.initial_url.map(String::from).as_deref(),
            Some("https://example.test/path")
        );
        assert_eq!(options.tags, vec!["a", "b"]);
        assert_eq!(options.recording_requested, Some(false));
        assert_eq!(options.max_duration_minutes, None);
        assert_eq!(options.idle_timeout_minutes, Some(3));
        assert!(options.live_view_read_only);
        assert!(options.proxy_requested);
        let proxy = options.proxy.as_ref().expect("proxy");
        assert_eq!(
            (proxy.server.as_str(), proxy.username.as_deref()),
            ("http://proxy.test:3128", Some("u"))
        );
        assert!(
            !format!("{proxy:?}").contains("\"p\""),
            "the password is not in Debug output"
        );
        assert_eq!(options.headless_requested, Some(true));
        assert_eq!(
            options.viewport,
            Viewport {
                width: 800,
                height: 600
            }
        );
    }

    #[test]
    fn refuses_bad_fields_by_name() {
        assert!(error_of(json!([])).contains("JSON object"));
        assert!(error_of(json!({"session": 3})).contains("session must be an object"));
        for url in [
            "file:///etc/passwd",
            "chrome://settings",
            "javascript:alert(1)",
            "data:text/html,x",
        ] {
            assert!(
                error_of(json!({"session": {"initial_url": url}})).contains("http or https"),
                "{url}"
            );
        }
        assert!(error_of(json!({"session": {"initial_url": "not a url"}})).contains("session.initial_url"));
        assert!(error_of(json!({"session": {"tags": "x"}})).contains("session.tags"));
        assert!(error_of(json!({"session": {"tags": [1]}})).contains("session.tags"));
        assert!(error_of(json!({"session": {"timeout": {"max_duration": 0}}})).contains("max_duration"));
        assert!(error_of(json!({"session": {"timeout": {"idle_timeout": "5"}}})).contains("idle_timeout"));
        assert!(error_of(json!({"session": {"timeout": {"idle_timeout": 2.5}}})).contains("idle_timeout"));
        assert!(error_of(json!({"browser": {"viewport": {"width": 10}}})).contains("browser.viewport.width"));
        assert!(error_of(json!({"browser": {"headless": {"active": "yes"}}})).contains("browser.headless.active"));
        let many: Vec<String> = (0..=MAX_TAGS).map(|index| index.to_string()).collect();
        assert!(error_of(json!({"session": {"tags": many}})).contains("at most"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// Any JSON value, a few levels deep.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|number| json!(number)),
            any::<f64>().prop_map(|number| json!(number)),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// A start body with the fields we read, each holding anything.
    fn start_body() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            any_json(),
            (-3_i64..20_000).prop_map(|number| json!(number)),
            prop::collection::vec(".{0,300}", 0..120).prop_map(|tags| json!(tags)),
            prop_oneof![
                Just("https://example.test/"),
                Just("file:///etc/passwd"),
                Just("javascript:alert(1)"),
                Just("http://[::1]:80/x")
            ]
            .prop_map(|url| json!(url)),
        ];
        (
            field.clone(),
            field.clone(),
            field.clone(),
            field.clone(),
            field.clone(),
            field,
        )
            .prop_map(|(url, tags, max, idle, width, height)| {
                json!({
                    "session": {"initial_url": url, "tags": tags,
                                "timeout": {"max_duration": max, "idle_timeout": idle},
                                "live_view": {"read_only": width.clone()}},
                    "browser": {"viewport": {"width": width, "height": height}},
                })
            })
    }

    fn holds_its_promises(options: &SessionOptions) {
        assert!(options.tags.len() <= MAX_TAGS);
        assert!(options
            .tags
            .iter()
            .all(|tag| !tag.is_empty() && tag.chars().count() <= MAX_TAG_CHARS));
        if let Some(url) = &options.initial_url {
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
        }
        for minutes in [options.max_duration_minutes, options.idle_timeout_minutes]
            .into_iter()
            .flatten()
        {
            assert!((1..=MAX_TIMEOUT_MINUTES).contains(&minutes));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_json_is_accepted_or_refused_without_a_panic(body in any_json()) {
            if let Ok(options) = SessionOptions::from_configuration(&body) {
                holds_its_promises(&options);
            }
        }

        #[test]
        fn start_bodies_are_accepted_only_within_their_limits(body in start_body()) {
            match SessionOptions::from_configuration(&body) {
                Ok(options) => holds_its_promises(&options),
                // Every refusal names the field it is about.
                Err(error) => prop_assert!(error.0.contains("session") || error.0.contains("browser"), "{}", error.0),
            }
        }
    }
}
