//! A start's options, translated into what the fleet records and what it
//! launches. Pure functions: what they need from the outside world (the
//! saved profile's copy, the team's certificates, the extensions' folders)
//! is found first, by the provisioning, and handed in as [`Found`]. A new
//! start option that changes the browser is added here, with its test.

use std::path::PathBuf;

use anchorage_browser::{AdblockSetup, BrowserSetup, LaunchRequest};
use anchorage_core::{Isolation, NodeId, SessionId, SessionOptions, SessionStatus, Timestamp};
use anchorage_store::{RequestRecord, SessionRecord};

/// What a start gets where it does not say.
#[derive(Debug, Clone, Copy)]
pub(super) struct Defaults {
    /// Whether it runs headless.
    pub headless: bool,
    /// Whether it is recorded.
    pub recording: bool,
    /// Whether recordings can be made at all (ffmpeg is there).
    pub can_record: bool,
}

/// What a launch needs from outside its options, found before it.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// The saved profile's copy to begin from, and the most it may grow to.
    pub profile_seed: Option<(PathBuf, u64)>,
    /// The team's CA certificates the start names (name, PEM).
    pub trusted_cas: Vec<(String, String)>,
    /// The folders of the extensions it loads.
    pub extension_dirs: Vec<PathBuf>,
}

/// Whether a session of these options is recorded: as asked, else the
/// default; never where recordings cannot be made.
pub(super) fn records(options: &SessionOptions, defaults: Defaults) -> bool {
    defaults.can_record && options.recording_requested.unwrap_or(defaults.recording)
}

/// The session a request starts, as recorded when its launch begins.
pub(super) fn session_record(
    request: &RequestRecord,
    session_id: SessionId,
    defaults: Defaults,
    node: NodeId,
    now: Timestamp,
) -> SessionRecord {
    let options = &request.options;
    SessionRecord {
        id: session_id,
        team_id: request.team_id,
        api_key_id: request.api_key_id,
        api_key_name: request.api_key_name.clone(),
        request_id: Some(request.id),
        batch_id: request.batch_id,
        status: SessionStatus::Starting,
        configuration: request.configuration.clone(),
        tags: options.tags.clone(),
        headless: options.headless_requested.unwrap_or(defaults.headless),
        recording: records(options, defaults),
        proxy: options.proxy_requested,
        created_at: now,
        started_at: None,
        ended_at: None,
        end_reason: None,
        node_id: Some(node),
    }
}

/// Whether a start's options set something for a whole browser process:
/// a profile directory, a proxy, extensions, trusted CAs, Chromium
/// switches, fullscreen, the PDF preference. Such a start launches a
/// browser of its own (neither a pooled one nor a context).
pub(super) fn sets_the_process(options: &SessionOptions) -> bool {
    options.proxy.is_some() || sets_the_process_besides_a_proxy(options)
}

/// As [`sets_the_process`], leaving the proxy out.
fn sets_the_process_besides_a_proxy(options: &SessionOptions) -> bool {
    options.profile.is_some()
        || !options.extensions.is_empty()
        || !options.certificates.is_empty()
        || !options.switches.is_empty()
        || options.fullscreen
        || options.pdfs_downloaded
}

/// How a session of these options is isolated: as it asks, else as the
/// server's setting says; a context only when nothing it asks for needs a
/// browser of its own (a headful window, a profile directory, extensions,
/// trusted CAs, Chromium switches, fullscreen, the PDF preference: all set
/// for a whole browser process).
pub(super) fn isolation(options: &SessionOptions, server: Isolation, default_headless: bool) -> Isolation {
    let asked = options.isolation.unwrap_or(server);
    // A proxy is the context's own (`Target.createBrowserContext`'s
    // `proxyServer`); its credentials are answered in the context's own
    // targets.
    let fits_a_context =
        options.headless_requested.unwrap_or(default_headless) && !sets_the_process_besides_a_proxy(options);
    match asked {
        Isolation::Context if fits_a_context => Isolation::Context,
        _ => Isolation::Browser,
    }
}

/// The launch of a host browser for context sessions: headless, with the
/// default window (each context's first page is sized on its own).
pub(super) fn host_launch_request(adblock: Option<AdblockSetup>) -> LaunchRequest {
    let mut request = default_launch_request("host", false, false);
    request.setup.adblock = adblock;
    request
}

/// The launch of a browser of the default kind, not yet anyone's: named
/// `prefix` and a random part, with the default window.
pub(super) fn default_launch_request(prefix: &str, headful: bool, ahead: bool) -> LaunchRequest {
    LaunchRequest {
        name: format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
        window: (
            anchorage_core::Viewport::default().width,
            anchorage_core::Viewport::default().height,
        ),
        initial_url: None,
        ahead,
        setup: BrowserSetup {
            headful,
            ..BrowserSetup::default()
        },
    }
}

/// Whether a session's proxy wants credentials answered (over DevTools,
/// once the browser is up).
pub(super) fn proxy_needs_credentials(options: &SessionOptions) -> bool {
    options.proxy.as_ref().is_some_and(|proxy| proxy.username.is_some())
}

/// The launch of `session`'s browser.
/// With `adblock`, the browser blocks ads, and the first page waits
/// until ads are blocked (it opens after the launch).
pub(super) fn launch_request(
    session: &SessionRecord,
    options: &SessionOptions,
    found: Found,
    adblock: Option<AdblockSetup>,
) -> LaunchRequest {
    let blocks_ads = adblock.is_some();
    LaunchRequest {
        name: session.id.as_uuid().simple().to_string(),
        window: (options.viewport.width, options.viewport.height),
        // Behind a proxy that wants credentials, the first page opens once
        // they can be answered.
        initial_url: options
            .initial_url
            .clone()
            .filter(|_| !proxy_needs_credentials(options) && !blocks_ads),
        ahead: false,
        setup: BrowserSetup {
            profile_seed: found.profile_seed,
            proxy_server: options.proxy.as_ref().map(|proxy| proxy.server.clone()),
            extensions: found.extension_dirs,
            adblock,
            index_filter: None,
            trusted_cas: found.trusted_cas,
            switches: options.switches.iter().map(|switch| switch.flag()).collect(),
            pdfs_downloaded: options.pdfs_downloaded,
            fullscreen: options.fullscreen,
            headful: !session.headless,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use anchorage_core::TeamId;
    use serde_json::{json, Value};

    const DEFAULTS: Defaults = Defaults {
        headless: true,
        recording: false,
        can_record: true,
    };

    #[test]
    fn a_context_is_given_only_where_asked_and_nothing_needs_a_browser() {
        let options = |body: Value| SessionOptions::from_configuration(&body).unwrap();
        let plain = options(json!({}));
        assert_eq!(isolation(&plain, Isolation::Browser, true), Isolation::Browser);
        assert_eq!(isolation(&plain, Isolation::Context, true), Isolation::Context);
        // Headful by default on this server: a browser.
        assert_eq!(isolation(&plain, Isolation::Context, false), Isolation::Browser);
        let asked = options(json!({"anchorage": {"isolation": "context"}}));
        assert_eq!(isolation(&asked, Isolation::Browser, true), Isolation::Context);
        let declined = options(json!({"anchorage": {"isolation": "browser"}}));
        assert_eq!(isolation(&declined, Isolation::Context, true), Isolation::Browser);
        for needs_a_browser in [
            json!({"browser": {"headless": {"active": false}}}),
            json!({"browser": {"profile": {"name": "p"}}}),
            json!({"browser": {"extensions": ["00000000-0000-0000-0000-000000000001"]}}),
            json!({"browser": {"certificates": ["ca"]}}),
            json!({"browser": {"fullscreen": {"active": true}}}),
            json!({"browser": {"disable_web_security": {"active": true}}}),
        ] {
            let mut body = needs_a_browser.clone();
            body["anchorage"] = json!({"isolation": "context"});
            assert_eq!(
                isolation(&options(body), Isolation::Context, true),
                Isolation::Browser,
                "{needs_a_browser}"
            );
        }
        assert!(SessionOptions::from_configuration(&json!({"anchorage": {"isolation": "thread"}})).is_err());
        // Viewport, recording, tags and timeouts stay with a context.
        let fitting = options(json!({
            "browser": {"viewport": {"width": 800, "height": 600}},
            "session": {"recording": {"active": true}, "tags": ["a"], "timeout": {"max_duration": 5}}
        }));
        assert_eq!(isolation(&fitting, Isolation::Context, true), Isolation::Context);
        // A proxy is the context's own, with credentials or without.
        let proxied = options(json!({"session": {"proxy": {"type": "custom", "server": "http://127.0.0.1:1"}}}));
        assert_eq!(isolation(&proxied, Isolation::Context, true), Isolation::Context);
        let authenticated = options(json!({"session": {"proxy": {
            "type": "custom", "server": "http://127.0.0.1:1", "username": "u", "password": "p"
        }}}));
        assert_eq!(isolation(&authenticated, Isolation::Context, true), Isolation::Context);
    }

    fn request(body: Value) -> RequestRecord {
        let options = SessionOptions::from_configuration(&body).unwrap();
        RequestRecord::pending(TeamId::new_random(), None, body, options, Timestamp::now())
    }

    fn plan(body: Value, defaults: Defaults, found: Found) -> (SessionRecord, LaunchRequest) {
        let request = request(body);
        let session = session_record(
            &request,
            SessionId::new_random(),
            defaults,
            NodeId::from_u128(7),
            Timestamp::now(),
        );
        let launch = launch_request(&session, &request.options, found, None);
        (session, launch)
    }

    #[test]
    fn a_start_that_says_nothing_gets_the_defaults() {
        let (session, launch) = plan(json!({}), DEFAULTS, Found::default());
        assert!(session.headless && !session.recording && !session.proxy);
        assert_eq!(session.status, SessionStatus::Starting);
        assert_eq!(session.node_id, Some(NodeId::from_u128(7)));
        assert_eq!(launch.name, session.id.as_uuid().simple().to_string());
        assert!(!launch.ahead && !launch.setup.headful);
        assert_eq!(launch.initial_url, None);
        let headful = Defaults {
            headless: false,
            recording: true,
            ..DEFAULTS
        };
        let (session, launch) = plan(json!({}), headful, Found::default());
        assert!(!session.headless && session.recording && launch.setup.headful);
    }

    #[test]
    fn what_a_start_asks_for_wins_over_the_defaults_but_not_over_what_cannot_be() {
        let body = json!({
            "session": {"recording": {"active": true}, "initial_url": "http://page.test/"},
            "browser": {"headless": {"active": false}, "viewport": {"width": 800, "height": 600}},
        });
        let (session, launch) = plan(body.clone(), DEFAULTS, Found::default());
        assert!(!session.headless && session.recording && launch.setup.headful);
        assert_eq!(launch.window, (800, 600));
        assert_eq!(
            launch.initial_url.as_ref().map(url::Url::as_str),
            Some("http://page.test/")
        );
        // Without ffmpeg nothing is recorded, whatever the start says.
        let no_ffmpeg = Defaults {
            can_record: false,
            ..DEFAULTS
        };
        let (session, _) = plan(body, no_ffmpeg, Found::default());
        assert!(!session.recording);
    }

    #[test]
    fn behind_a_proxy_with_credentials_the_first_page_waits_for_them() {
        let proxy = |username: Option<&str>| {
            let mut proxy = json!({"active": true, "type": "custom", "server": "http://proxy.test:3128"});
            if let Some(username) = username {
                proxy["username"] = json!(username);
                proxy["password"] = json!("secret");
            }
            json!({"session": {"initial_url": "http://page.test/", "proxy": proxy}})
        };
        let (session, launch) = plan(proxy(None), DEFAULTS, Found::default());
        assert!(session.proxy);
        assert_eq!(launch.setup.proxy_server.as_deref(), Some("http://proxy.test:3128"));
        assert!(launch.initial_url.is_some(), "nothing to wait for");
        let (_, launch) = plan(proxy(Some("user")), DEFAULTS, Found::default());
        assert_eq!(launch.initial_url, None, "opened once the credentials can be answered");
        // Likewise once ads are blocked.
        let request = request(proxy(None));
        let session = session_record(
            &request,
            SessionId::new_random(),
            DEFAULTS,
            NodeId::from_u128(7),
            Timestamp::now(),
        );
        let launch = launch_request(
            &session,
            &request.options,
            Found::default(),
            Some(AdblockSetup {
                extension: PathBuf::from("/ext"),
                filter: None,
            }),
        );
        assert_eq!(launch.initial_url, None, "opened once ads are blocked");
    }

    #[test]
    fn what_was_found_goes_into_the_launch_as_found() {
        let found = Found {
            profile_seed: Some((PathBuf::from("/seed"), 42)),
            trusted_cas: vec![("ca".to_owned(), "PEM".to_owned())],
            extension_dirs: vec![PathBuf::from("/ext/a")],
        };
        let (_, launch) = plan(json!({"session": {"tags": ["x"]}}), DEFAULTS, found);
        assert_eq!(launch.setup.profile_seed, Some((PathBuf::from("/seed"), 42)));
        assert_eq!(launch.setup.trusted_cas, [("ca".to_owned(), "PEM".to_owned())]);
        assert_eq!(launch.setup.extensions, [PathBuf::from("/ext/a")]);
    }
}
