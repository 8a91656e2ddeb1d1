//! The lists' network lines read into conditions, for the browsers' own
//! filter (see [`super::filter`]). Each line of Adblock Plus syntax becomes
//! one condition where its meaning can be kept whole, spelt in the names of
//! Chromium's `declarativeNetRequest` (which the two syntaxes share):
//!
//! - the pattern (`||`, `|`, `*`, `^`) is kept as it is;
//! - `third-party` / `first-party` → `domainType`; `domain=` → initiator
//!   domains (included and `~`excluded); `to=` → request domains;
//!   `denyallow=` → excluded request domains; resource types (and `~`types)
//!   → `resourceTypes` / `excludedResourceTypes`; `match-case` → a
//!   case-sensitive pattern; `method=` → request methods; `important` is
//!   taken and has no effect (to the browsers' filter an exception always
//!   wins); a `$document` exception allows every request of the documents it
//!   names;
//! - `badfilter` removes the line it names ([`network_lines`]).
//!
//! A line whose meaning cannot be held (a `redirect`, a `csp`, a
//! `removeparam`, a popup, a regex, an entity such as `example.*`, text that
//! is not ASCII, an option it does not know) is left out and counted:
//! leaving a rule out lets a request through, where a wrong rule would break
//! a page. A block of a top-level document is left out too: a page the
//! client navigates to is the client's to load.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

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

/// What one network line says.
#[derive(Debug, Default)]
pub(super) struct Line {
    /// An exception (`@@`).
    pub exception: bool,
    /// A `$document` exception: every request of the document is allowed.
    pub whole_document: bool,
    /// Its condition, in `declarativeNetRequest`'s names (see the module).
    pub condition: Map<String, Value>,
}

/// Why a line is no rule: a comment or an element rule (not counted), or
/// a network line left out (counted).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Skip {
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

/// One network line as a rule's parts.
pub(super) fn parse(line: &str) -> Result<Line, Skip> {
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
            // The browsers' filter has no precedence to raise (see the module).
            ("important", false) => {}
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
    // The browsers' filter has no regular expressions.
    if pattern.len() > 1 && pattern.starts_with('/') && pattern.ends_with('/') {
        return Err(Skip::LeftOut);
    }
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
    // A rule with no condition at all would act on every request.
    let narrowed = ["urlFilter", "initiatorDomains", "requestDomains"]
        .iter()
        .any(|key| parsed.condition.contains_key(*key));
    if !narrowed {
        return Err(Skip::LeftOut);
    }
    Ok(parsed)
}

/// The network lines of the lists' texts (in order), each read (see
/// [`parse`]), without those a `badfilter` line cancels.
pub(super) fn network_lines<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<Result<Line, Skip>> {
    let mut lines = Vec::new();
    let mut bad: HashSet<String> = HashSet::new();
    for text in texts {
        for raw in text.lines() {
            let raw = raw.trim();
            // `badfilter` names the line it cancels: the same text without it.
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
    lines.into_iter().filter(|raw| !bad.contains(*raw)).map(parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(line: &str) -> Value {
        parse(line).map_or(Value::Null, |line| Value::Object(line.condition))
    }

    #[test]
    fn options_become_conditions() {
        assert_eq!(condition("||ads.example^"), json!({"urlFilter": "||ads.example^"}));
        assert_eq!(
            condition("||cdn.example^$third-party"),
            json!({"domainType": "thirdParty", "urlFilter": "||cdn.example^"})
        );
        assert_eq!(
            condition("/banners/*$image,domain=news.example|~shop.news.example"),
            json!({"resourceTypes": ["image"], "initiatorDomains": ["news.example"],
                   "excludedInitiatorDomains": ["shop.news.example"], "urlFilter": "/banners/*"})
        );
        assert_eq!(
            condition("||Z.example^$~image,match-case"),
            json!({"excludedResourceTypes": ["image"], "isUrlFilterCaseSensitive": true, "urlFilter": "||Z.example^"})
        );
        let exception = parse("@@||ads.example/OK.js$script").expect("a rule");
        assert!(exception.exception && !exception.whole_document);
        assert_eq!(exception.condition["urlFilter"], "||ads.example/ok.js");
        let document = parse("@@||site.example^$document").expect("a rule");
        assert!(document.exception && document.whole_document);
        assert_eq!(
            condition("||x.example^$important"),
            json!({"urlFilter": "||x.example^"})
        );
        for not_network in [
            "! comment",
            "example.org##.ad",
            "@@||site.example^$generichide",
            "[Adblock Plus 2.0]",
        ] {
            assert_eq!(parse(not_network).err(), Some(Skip::NotNetwork), "{not_network}");
        }
    }

    #[test]
    fn badfilter_cancels_its_line_and_unkeepable_lines_are_left_out() {
        let lines = network_lines([
            "||gone.example^$script\n||gone.example^$script,badfilter\n/ad[0-9]+\\.js/\n\
             ||entity.example^$domain=google.*\n||ünïcode.example^\n$script\n*$image,domain=a.example\n\
             ||popup.example^$popup\n||y.example^$redirect=noopjs\n||page.example^$document\n",
        ]);
        let kept: Vec<Value> = lines
            .iter()
            .filter_map(|line| line.as_ref().ok())
            .map(|line| Value::Object(line.condition.clone()))
            .collect();
        assert_eq!(
            kept,
            vec![json!({"resourceTypes": ["image"], "initiatorDomains": ["a.example"]})]
        );
        let left_out = lines
            .iter()
            .filter(|line| line.as_ref().err() == Some(&Skip::LeftOut))
            .count();
        assert_eq!(left_out, 7);
    }
}
