//! The lists' network rules as Chromium `declarativeNetRequest` rules, and
//! the extension that carries them into each browser.
//!
//! Requests are decided inside the browser, by Chromium's own indexed
//! matcher: nothing pauses a request and nothing crosses a process for it
//! (ARCHITECTURE.md, "Ad blocking: where the engine runs"). Each network
//! line of Adblock Plus syntax becomes one rule where its meaning can be
//! kept whole:
//!
//! - the pattern (`||`, `|`, `*`, `^`) is the rule's `urlFilter` as it is
//!   (the two syntaxes share it); `/regex/` becomes a `regexFilter` when it
//!   uses nothing RE2 lacks (look-around, back-references), up to Chromium's
//!   limit of regex rules;
//! - `third-party` / `first-party` → `domainType`; `domain=` → initiator
//!   domains (included and `~`excluded); `to=` → request domains;
//!   `denyallow=` → excluded request domains; resource types (and `~`types)
//!   → `resourceTypes` / `excludedResourceTypes`; `match-case` → a
//!   case-sensitive filter; `method=` → request methods;
//! - priorities keep the lists' order of precedence: a block (1) loses to
//!   an exception (2), which loses to an `important` block (3), which loses
//!   to an `important` exception (4); a `$document` exception allows every
//!   request of the documents it names (`allowAllRequests`);
//! - `badfilter` removes the rule it names.
//!
//! A line whose meaning a rule cannot hold (a `redirect`, a `csp`, a
//! `removeparam`, a popup, an entity such as `example.*`, text that is not
//! ASCII, an option it does not know) is left out and counted: leaving a
//! rule out lets a request through, where a wrong rule would break a page.
//! A block of a top-level document is left out too: a page the client
//! navigates to is the client's to load, as it was with every design.
//!
//! Rules that name only a host (`||ads.example^`, most of the lists) are
//! merged into one rule per set of other conditions, its hosts in
//! `requestDomains` (which, as `||`, matches a host and its subdomains):
//! Chromium indexes the rules at each launch, and a tenth of the rules takes
//! a fifth of the time (BENCHMARKS.md).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The id of the extension's one ruleset.
pub const RULESET: &str = "lists";
/// The most regex rules Chromium takes from one extension.
const MAX_REGEX_RULES: usize = 1000;
/// The longest regex translated (Chromium refuses large compiled ones).
const MAX_REGEX_CHARS: usize = 250;

/// The rules made of some lists, and what could not be made a rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// The rules, ids from 1: the blocking ones first (ids up to
    /// `blocking`), then the exceptions.
    pub rules: Vec<Value>,
    /// How many of the rules block.
    pub blocking: usize,
    /// Network lines that became (part of) a rule.
    pub translated: usize,
    /// Network lines left out (see the module).
    pub left_out: usize,
}

/// The resource type of an option name, as `declarativeNetRequest` spells
/// it (`None`: not a resource type).
fn resource_type(option: &str) -> Option<&'static [&'static str]> {
    Some(match option {
        "script" => &["script"],
        "image" => &["image"],
        "stylesheet" | "css" => &["stylesheet"],
        "object" | "object-subrequest" => &["object"],
        "xmlhttprequest" | "xhr" => &["xmlhttprequest"],
        "subdocument" | "frame" => &["sub_frame"],
        "ping" | "beacon" => &["ping"],
        "media" => &["media"],
        "font" => &["font"],
        "websocket" => &["websocket"],
        "webtransport" => &["webtransport"],
        "other" => &["other", "csp_report"],
        _ => return None,
    })
}

/// The resource types of option names (each a resource type), sorted.
fn resource_types_of(names: &[&str]) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = names
        .iter()
        .filter_map(|name| resource_type(name))
        .flatten()
        .copied()
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// What one line says, before it becomes a rule.
#[derive(Debug, Default)]
struct Line {
    exception: bool,
    important: bool,
    /// A `$document` exception: every request of the document is allowed.
    whole_document: bool,
    condition: Map<String, Value>,
}

/// Why a line is no rule: a comment or an element rule (not counted), or
/// a network line left out (counted).
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    NotNetwork,
    LeftOut,
}

/// Domains of a `domain=`-like option, split into included and excluded;
/// `None` when one cannot be a rule's (an entity, a regex, not ASCII).
fn domains(value: &str) -> Option<(Vec<String>, Vec<String>)> {
    let (mut included, mut excluded) = (Vec::new(), Vec::new());
    for name in value.split('|').filter(|name| !name.is_empty()) {
        let (list, name) = match name.strip_prefix('~') {
            Some(name) => (&mut excluded, name),
            None => (&mut included, name),
        };
        if name.is_empty() || name.ends_with(".*") || !name.is_ascii() || name.contains(['/', '*', ':', '^', '|', '?'])
        {
            return None;
        }
        list.push(name.to_ascii_lowercase());
    }
    Some((included, excluded))
}

/// Puts the domains of a `domain=`-like option into `condition`, the
/// included ones under `keys[0]`, the excluded ones under `keys[1]`.
fn put_domains(condition: &mut Map<String, Value>, value: &str, keys: [&str; 2]) -> Result<(), Skip> {
    let (included, excluded) = domains(value).ok_or(Skip::LeftOut)?;
    for (key, names) in keys.into_iter().zip([included, excluded]) {
        if !names.is_empty() {
            condition.insert(key.into(), json!(names));
        }
    }
    Ok(())
}

/// Whether RE2 (Chromium's regex engine) takes a list's regex as the list
/// meant it.
fn re2_takes(regex: &str) -> bool {
    regex.is_ascii()
        && regex.len() <= MAX_REGEX_CHARS
        && !regex.contains("(?=")
        && !regex.contains("(?!")
        && !regex.contains("(?<")
        && !regex
            .as_bytes()
            .windows(2)
            .any(|pair| pair[0] == b'\\' && pair[1].is_ascii_digit() && pair[1] != b'0')
}

/// One network line as a rule's parts.
fn parse(line: &str) -> Result<Line, Skip> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('!') || (line.starts_with('[') && line.ends_with(']')) {
        return Err(Skip::NotNetwork);
    }
    // Element rules (`##`, `#@#`, `#?#`, `#$#`, …) are the cosmetic side's.
    if ["##", "#@#", "#?#", "#$#", "#%#", "#@?#", "#@$#"]
        .iter()
        .any(|mark| line.contains(mark))
    {
        return Err(Skip::NotNetwork);
    }
    let mut parsed = Line::default();
    let body = match line.strip_prefix("@@") {
        Some(body) => {
            parsed.exception = true;
            body
        }
        None => line,
    };
    // Options follow the last `$` that is not inside a regex.
    let (pattern, options) = if body.starts_with('/') && body.len() > 1 && !body.contains("/$") && body.ends_with('/') {
        (body, "")
    } else {
        match body.rfind('$') {
            Some(at) if !body[at + 1..].contains('/') || body[at + 1..].contains('=') => (&body[..at], &body[at + 1..]),
            _ => (body, ""),
        }
    };
    let (mut types, mut not_types): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut document = false;
    for option in options.split(',').map(str::trim).filter(|option| !option.is_empty()) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let (negated, bare) = match name.strip_prefix('~') {
            Some(bare) => (true, bare),
            None => (false, name),
        };
        match (bare, negated) {
            ("third-party" | "3p", false) | ("first-party" | "1p", true) => {
                parsed.condition.insert("domainType".into(), json!("thirdParty"));
            }
            ("third-party" | "3p", true) | ("first-party" | "1p", false) => {
                parsed.condition.insert("domainType".into(), json!("firstParty"));
            }
            ("domain" | "from", false) => {
                put_domains(
                    &mut parsed.condition,
                    value,
                    ["initiatorDomains", "excludedInitiatorDomains"],
                )?;
            }
            ("to", false) => put_domains(
                &mut parsed.condition,
                value,
                ["requestDomains", "excludedRequestDomains"],
            )?,
            ("denyallow", false) => {
                let (included, excluded) = domains(value).ok_or(Skip::LeftOut)?;
                if !excluded.is_empty() {
                    return Err(Skip::LeftOut);
                }
                parsed
                    .condition
                    .insert("excludedRequestDomains".into(), json!(included));
            }
            ("method", false) => {
                let methods: Vec<String> = value.split('|').map(str::to_ascii_lowercase).collect();
                if methods
                    .iter()
                    .any(|method| method.is_empty() || method.starts_with('~'))
                {
                    return Err(Skip::LeftOut);
                }
                parsed.condition.insert("requestMethods".into(), json!(methods));
            }
            ("match-case", false) => {
                parsed.condition.insert("isUrlFilterCaseSensitive".into(), json!(true));
            }
            ("important", false) => parsed.important = true,
            // Exceptions to element hiding: the cosmetic side's, not a
            // network rule (and not a rule left out).
            ("elemhide" | "ehide" | "generichide" | "ghide" | "specifichide" | "shide", false) => {
                return Err(Skip::NotNetwork)
            }
            ("document" | "doc", false) => document = true,
            ("all", false) => {
                document = true;
                types.extend(
                    [
                        "script",
                        "image",
                        "stylesheet",
                        "object",
                        "xmlhttprequest",
                        "subdocument",
                        "ping",
                        "media",
                        "font",
                        "websocket",
                        "other",
                    ]
                    .iter(),
                );
            }
            (other, negated) => match resource_type(other) {
                Some(_) if negated => not_types.push(other),
                Some(_) => types.push(other),
                // `popup`, `redirect`, `csp`, `removeparam`, `badfilter`
                // (read by the caller), element-hiding exceptions and
                // whatever else: no rule keeps their meaning.
                None => return Err(Skip::LeftOut),
            },
        }
    }
    let mut resource_types = resource_types_of(&types);
    if parsed.exception && document {
        if !types.is_empty() || !not_types.is_empty() {
            return Err(Skip::LeftOut);
        }
        parsed.whole_document = true;
        resource_types = vec!["main_frame", "sub_frame"];
    } else if document && types.is_empty() {
        // A block of top-level documents only (see the module).
        return Err(Skip::LeftOut);
    }
    if !resource_types.is_empty() {
        parsed.condition.insert("resourceTypes".into(), json!(resource_types));
    }
    let excluded = resource_types_of(&not_types);
    if !excluded.is_empty() {
        parsed.condition.insert("excludedResourceTypes".into(), json!(excluded));
    }
    if pattern.len() > 1 && pattern.starts_with('/') && pattern.ends_with('/') {
        let regex = &pattern[1..pattern.len() - 1];
        if !re2_takes(regex) {
            return Err(Skip::LeftOut);
        }
        parsed.condition.insert("regexFilter".into(), json!(regex));
    } else {
        let pattern = pattern.trim_start_matches('*');
        if !pattern.is_ascii() || pattern.starts_with("||*") || pattern.contains(' ') {
            return Err(Skip::LeftOut);
        }
        if !pattern.is_empty() && pattern != "|" && pattern != "||" {
            let lowered = if parsed.condition.contains_key("isUrlFilterCaseSensitive") {
                pattern.to_owned()
            } else {
                pattern.to_ascii_lowercase()
            };
            parsed.condition.insert("urlFilter".into(), json!(lowered));
        }
    }
    // A rule with no condition at all would act on every request.
    let narrowed = ["urlFilter", "regexFilter", "initiatorDomains", "requestDomains"]
        .iter()
        .any(|key| parsed.condition.contains_key(*key));
    if !narrowed {
        return Err(Skip::LeftOut);
    }
    Ok(parsed)
}

/// The host a rule names when its pattern is only `||host^` (and it can be
/// merged into a `requestDomains` list).
fn bare_host(condition: &Map<String, Value>) -> Option<String> {
    let pattern = condition.get("urlFilter")?.as_str()?;
    let host = pattern.strip_prefix("||")?.strip_suffix('^')?;
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-' || byte == b'_');
    (plain && !condition.contains_key("requestDomains") && !condition.contains_key("isUrlFilterCaseSensitive"))
        .then(|| host.to_owned())
}

/// The rules of the lists' texts (in order), merged (see the module).
pub fn translate<'a>(texts: impl IntoIterator<Item = &'a str>) -> Translation {
    let mut lines = Vec::new();
    let mut bad: HashSet<String> = HashSet::new();
    let mut translation = Translation::default();
    for text in texts {
        for raw in text.lines() {
            let raw = raw.trim();
            // `badfilter` names the rule it cancels: the same text without it.
            if let Some((before, options)) = raw.rsplit_once('$') {
                let kept: Vec<&str> = options.split(',').filter(|option| *option != "badfilter").collect();
                if kept.len() != options.split(',').count() {
                    bad.insert(if kept.is_empty() {
                        before.to_owned()
                    } else {
                        format!("{before}${}", kept.join(","))
                    });
                    continue;
                }
            }
            lines.push(raw);
        }
    }
    let mut merged: BTreeMap<(u8, &'static str, String), Vec<String>> = BTreeMap::new();
    let mut singles = Vec::new();
    let mut regexes = 0;
    for raw in lines {
        if bad.contains(raw) {
            continue;
        }
        let line = match parse(raw) {
            Ok(line) => line,
            Err(Skip::NotNetwork) => continue,
            Err(Skip::LeftOut) => {
                translation.left_out += 1;
                continue;
            }
        };
        if line.condition.contains_key("regexFilter") {
            if regexes == MAX_REGEX_RULES {
                translation.left_out += 1;
                continue;
            }
            regexes += 1;
        }
        translation.translated += 1;
        let priority: u8 = match (line.exception, line.important) {
            (false, false) => 1,
            (true, false) => 2,
            (false, true) => 3,
            (true, true) => 4,
        };
        let action = match (line.exception, line.whole_document) {
            (false, _) => "block",
            (true, false) => "allow",
            (true, true) => "allowAllRequests",
        };
        let mut condition = line.condition;
        match bare_host(&condition) {
            Some(host) if action != "allowAllRequests" => {
                condition.remove("urlFilter");
                let key = Value::Object(condition).to_string();
                merged.entry((priority, action, key)).or_default().push(host);
            }
            _ => singles.push(json!({
                "priority": priority,
                "action": {"type": action},
                "condition": condition,
            })),
        }
    }
    for ((priority, action, key), mut hosts) in merged {
        let Ok(Value::Object(mut condition)) = serde_json::from_str::<Value>(&key) else {
            continue;
        };
        hosts.sort_unstable();
        hosts.dedup();
        condition.insert("requestDomains".into(), json!(hosts));
        singles.push(json!({"priority": priority, "action": {"type": action}, "condition": condition}));
    }
    // Blocking rules first, so that an id tells a block from an exception
    // (the worker counts blocks only).
    singles.sort_by_key(|rule| rule["action"]["type"] != "block");
    translation.blocking = singles.iter().filter(|rule| rule["action"]["type"] == "block").count();
    for (index, rule) in singles.iter_mut().enumerate() {
        rule["id"] = json!(index + 1);
    }
    translation.rules = singles;
    translation
}

/// The extension's service worker (`worker.js`), for rules whose ids up to
/// `blocking` block: it tells the connection that holds it (through a
/// binding the connection adds, see `connection.rs`) of each request such a
/// rule blocked, for the node's count (an exception's match is not a block;
/// Chromium reports matches to unpacked extensions with the feedback
/// permission only), and passes the content script's reports on.
fn worker_script(blocking: usize) -> String {
    format!(
        "\"use strict\";\nconst LAST_BLOCKING_RULE = {blocking};\n{}",
        include_str!("worker.js")
    )
}

/// Writes the unpacked extension of `translation`'s rules into `dir` (made,
/// or emptied first): its manifest, its ruleset and its worker.
pub fn write_extension(dir: &Path, translation: &Translation) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let manifest = json!({
        "manifest_version": 3,
        "name": "anchorage ad blocking",
        "description": "The node's filter lists, as declarativeNetRequest rules.",
        "version": "1.0",
        // No host permissions: blocking needs none, and without them no
        // rule (static or added later) can redirect or rewrite a request.
        "permissions": ["declarativeNetRequest", "declarativeNetRequestFeedback"],
        "background": {"service_worker": "worker.js"},
        // Element hiding: a script in every http(s) document and frame (in
        // the extension's isolated world), answered through the worker.
        // Content scripts grant no host permission to the rules.
        "content_scripts": [{
            "matches": ["http://*/*", "https://*/*"],
            "js": ["page.js"],
            "run_at": "document_start",
            "all_frames": true,
        }],
        "declarative_net_request": {
            "rule_resources": [{"id": RULESET, "enabled": true, "path": "rules.json"}]
        },
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string())?;
    std::fs::write(
        dir.join("rules.json"),
        Value::Array(translation.rules.clone()).to_string(),
    )?;
    std::fs::write(dir.join("worker.js"), worker_script(translation.blocking))?;
    std::fs::write(dir.join("page.js"), include_str!("page.js"))?;
    Ok(())
}

/// The id Chromium gives an unpacked extension loaded from `dir` (an
/// absolute path): the SHA-256 of the path, its first 32 hex digits spelt
/// with the letters `a` to `p`.
pub fn extension_id(dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    digest
        .iter()
        .take(16)
        .flat_map(|byte| [byte >> 4, byte & 0x0f])
        .map(|nibble| char::from(b'a' + nibble))
        .collect()
}

/// Where a node keeps the extension of its lists' current compile.
pub fn extension_dir(root: &Path, generation: u64) -> PathBuf {
    root.join(format!("lists-{generation}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Translation {
        translate([text])
    }

    #[test]
    fn host_rules_merge_and_options_become_conditions() {
        let translation = rules(
            "! comment\n||ads.example^\n||track.example^\n||cdn.example^$third-party\n\
             /banners/*$image,domain=news.example|~shop.news.example\nexample.org##.ad\n\
             @@||ads.example/ok.js$script\n||x.example^$important\n@@||site.example^$document\n\
             ||popup.example^$popup\n||y.example^$redirect=noopjs\n||z.example^$~image,match-case\n\
             @@||site.example^$generichide\n",
        );
        assert_eq!(
            (translation.translated, translation.left_out),
            (8, 2),
            "{translation:?}"
        );
        let find = |needle: &str| {
            translation
                .rules
                .iter()
                .find(|rule| rule.to_string().contains(needle))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let plain = find("track.example");
        assert_eq!(
            plain["condition"],
            json!({"requestDomains": ["ads.example", "track.example"]})
        );
        assert_eq!(plain["action"]["type"], "block");
        assert_eq!(
            find("cdn.example")["condition"],
            json!({"domainType": "thirdParty", "requestDomains": ["cdn.example"]})
        );
        let banners = find("banners");
        assert_eq!(banners["condition"]["resourceTypes"], json!(["image"]));
        assert_eq!(banners["condition"]["initiatorDomains"], json!(["news.example"]));
        assert_eq!(
            banners["condition"]["excludedInitiatorDomains"],
            json!(["shop.news.example"])
        );
        let allow = find("ok.js");
        assert_eq!(
            (allow["priority"].clone(), allow["action"]["type"].clone()),
            (json!(2), json!("allow"))
        );
        assert_eq!(find("x.example")["priority"], 3);
        let document = find("site.example");
        assert_eq!(document["action"]["type"], "allowAllRequests");
        assert_eq!(
            document["condition"]["resourceTypes"],
            json!(["main_frame", "sub_frame"])
        );
        let z = find("z.example");
        assert_eq!(z["condition"]["excludedResourceTypes"], json!(["image"]));
        assert_eq!(z["condition"]["isUrlFilterCaseSensitive"], true);
        assert_eq!(find("popup.example"), Value::Null);
        let ids: Vec<u64> = translation
            .rules
            .iter()
            .filter_map(|rule| rule["id"].as_u64())
            .collect();
        assert_eq!(ids, (1..=translation.rules.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn badfilter_cancels_its_rule_and_unkeepable_lines_are_left_out() {
        let translation = rules(
            "||gone.example^$script\n||gone.example^$script,badfilter\n/ad[0-9]+\\.js/\n/(?=x)ad/\n\
             ||entity.example^$domain=google.*\n||ünïcode.example^\n$script\n*$image,domain=a.example\n",
        );
        let text = Value::Array(translation.rules.clone()).to_string();
        assert!(!text.contains("gone.example"), "{text}");
        assert!(text.contains(r#""regexFilter":"ad[0-9]+\\.js""#), "{text}");
        assert!(text.contains(r#""initiatorDomains":["a.example"]"#), "{text}");
        assert_eq!((translation.translated, translation.left_out), (2, 4), "{text}");
    }

    #[test]
    fn the_id_is_chromiums_for_the_path() {
        // Chromium's id of an unpacked extension at this path, as the
        // browser showed it (bench/adblock_inside.py's experiment).
        assert_eq!(
            extension_id(Path::new("/tmp/dnr/ext")),
            "kboggohbeboegmbnneafagbebmkmafcc"
        );
    }
}
