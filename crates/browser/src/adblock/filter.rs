//! The lists' network rules as Chromium's own subresource filter: the
//! filter Chrome uses against abusive ads, given the lists instead of
//! Google's ruleset. Each page's renderer matches its subresource requests
//! against an indexed ruleset it memory-maps, before they leave the page:
//! nothing pauses a request, no request crosses a process for a decision
//! (ARCHITECTURE.md, "Ad blocking: where the engine runs").
//!
//! - **Rules**: each network line ([`super::lines`]) becomes one `UrlRule`
//!   of `components/url_pattern_index/proto/rules.proto` (encoded here, by
//!   hand: the few fields needed do not justify a protobuf dependency); the
//!   ruleset is a stream of length-prefixed `FilteringRules` messages. A line
//!   whose conditions the filter has no field for (`to=`, `denyallow=`,
//!   `method=`) is left out and counted. `important` has no meaning here:
//!   an exception always wins.
//! - **Indexing**: Chromium indexes a ruleset only when its component
//!   updater hands it one, at start-up. One browser per compile does it
//!   ([`place_unindexed`], [`read_indexed`]); the indexed file and the
//!   `Local State` entry naming it are kept ([`IndexedFilter`]), keyed by the
//!   ruleset and the Chromium build, and every later browser gets a link to
//!   the file and the entry ([`place_indexed`]) and does not index again.
//! - **Activation**: on for every page of a browser launched with
//!   [`ACTIVATION`]; a browser launched without it filters nothing. So a
//!   browser that blocks cannot be made one that does not.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::lines::{self, Line, Skip};

/// The feature (and its parameters) that turns the filter on for every
/// page. The priority puts it above Chromium's own dry-run setting for ad
/// tagging, which otherwise wins and blocks nothing (BENCHMARKS.md).
pub const ACTIVATION: &str =
    "SubresourceFilter:activation_state/enabled/activation_scope/all_sites/activation_priority/2000";
/// Where a user data dir holds the filter's rulesets.
const FOLDER: &str = "Subresource Filter";
/// The file of an indexed ruleset.
const INDEXED_FILE: &str = "Ruleset Data";
/// Rules per `FilteringRules` message.
const CHUNK: usize = 1000;
/// Every element type but popups (which the filter does not decide).
const ALL_TYPES: u64 = 32767 & !2048;
/// `activation_types` of a rule that allows a whole document.
const ACTIVATION_DOCUMENT: u64 = 1;

/// The lists' network rules in the filter's format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// The unindexed ruleset, as the component updater would deliver it.
    pub data: Vec<u8>,
    /// Network lines that became a rule.
    pub translated: usize,
    /// Network lines left out (see the module).
    pub left_out: usize,
}

impl Ruleset {
    /// The version Chromium is told this ruleset has (dotted numbers, from
    /// its content).
    pub fn version(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&self.data);
        format!("1.{}", u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn number_field(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, field << 3);
    varint(out, value);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The filter's element type bit of a `declarativeNetRequest` resource type.
fn element_type(name: &str) -> u64 {
    match name {
        "other" | "csp_report" => 1,
        "script" => 2,
        "image" => 4,
        "stylesheet" => 8,
        "object" => 16,
        "xmlhttprequest" => 32,
        "sub_frame" => 128,
        "ping" => 256,
        "media" => 512,
        "font" => 1024,
        "websocket" => 4096,
        "webtransport" => 8192,
        _ => 0,
    }
}

fn element_types(condition: &serde_json::Map<String, Value>, key: &str) -> u64 {
    condition
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(element_type)
        .fold(0, |types, bit| types | bit)
}

/// One line as an encoded `UrlRule`, or `None` when the filter cannot hold
/// its meaning.
fn url_rule(line: &Line) -> Option<Vec<u8>> {
    let condition = &line.condition;
    if ["requestDomains", "excludedRequestDomains", "requestMethods"]
        .iter()
        .any(|key| condition.contains_key(*key))
    {
        return None;
    }
    let mut rule = Vec::new();
    // Semantics: 1 blocks, 2 allows.
    number_field(&mut rule, 1, if line.exception { 2 } else { 1 });
    // Source type: 1 any, 2 third party, 3 first party.
    let source = match condition.get("domainType").and_then(Value::as_str) {
        Some("thirdParty") => 2,
        Some("firstParty") => 3,
        _ => 1,
    };
    number_field(&mut rule, 2, source);
    if line.whole_document {
        number_field(&mut rule, 3, 0);
        number_field(&mut rule, 4, ACTIVATION_DOCUMENT);
    } else {
        let wanted = element_types(condition, "resourceTypes");
        let types = if wanted == 0 { ALL_TYPES } else { wanted } & !element_types(condition, "excludedResourceTypes");
        if types == 0 {
            return None;
        }
        number_field(&mut rule, 3, types);
    }
    for (key, exclude) in [("initiatorDomains", false), ("excludedInitiatorDomains", true)] {
        for domain in condition
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let mut item = Vec::new();
            bytes_field(&mut item, 1, domain.as_bytes());
            if exclude {
                number_field(&mut item, 2, 1);
            }
            bytes_field(&mut rule, 5, &item);
        }
    }
    let mut pattern = condition.get("urlFilter").and_then(Value::as_str).unwrap_or_default();
    // Anchors: 1 none, 2 the URL's edge, 3 a host or a subdomain of it.
    let mut left = 1;
    if let Some(rest) = pattern.strip_prefix("||") {
        (pattern, left) = (rest, 3);
    } else if let Some(rest) = pattern.strip_prefix('|') {
        (pattern, left) = (rest, 2);
    }
    let mut right = 1;
    if let Some(rest) = pattern.strip_suffix('|') {
        (pattern, right) = (rest, 2);
    }
    // Pattern type: 1 a substring, 2 with wildcards (`*`, `^`).
    number_field(&mut rule, 6, if pattern.contains(['*', '^']) { 2 } else { 1 });
    number_field(&mut rule, 7, left);
    number_field(&mut rule, 8, right);
    if condition.contains_key("isUrlFilterCaseSensitive") {
        number_field(&mut rule, 9, 1);
    }
    bytes_field(&mut rule, 10, pattern.as_bytes());
    Some(rule)
}

/// The ruleset of the lists' texts (in order).
pub fn translate<'a>(texts: impl IntoIterator<Item = &'a str>) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let mut rules = Vec::new();
    for line in lines::network_lines(texts) {
        match line {
            Ok(line) => match url_rule(&line) {
                Some(rule) => {
                    ruleset.translated += 1;
                    rules.push(rule);
                }
                None => ruleset.left_out += 1,
            },
            Err(Skip::LeftOut) => ruleset.left_out += 1,
            Err(Skip::NotNetwork) => {}
        }
    }
    for chunk in rules.chunks(CHUNK) {
        let mut message = Vec::new();
        for rule in chunk {
            bytes_field(&mut message, 1, rule);
        }
        varint(&mut ruleset.data, message.len() as u64);
        ruleset.data.extend_from_slice(&message);
    }
    ruleset
}

/// Writes `ruleset` into `dir` (made) as the component updater delivers a
/// ruleset: the rules, a license and a manifest.
pub fn write_unindexed(dir: &Path, ruleset: &Ruleset) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("Filtering Rules"), &ruleset.data)?;
    std::fs::write(
        dir.join("LICENSE"),
        "The rules are the node's filter lists; their licenses are in the lists' own headers.\n",
    )?;
    let manifest = json!({
        "manifest_version": 2,
        "name": "Subresource Filter Rules",
        "version": ruleset.version(),
        "ruleset_format": 1,
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string())
}

/// Puts the unindexed ruleset in `unindexed` (see [`write_unindexed`]) into
/// the user data dir `profile`, where the component updater would have put
/// it: a browser started with component updates on indexes it.
pub fn place_unindexed(profile: &Path, unindexed: &Path, version: &str) -> std::io::Result<()> {
    let target = profile.join(FOLDER).join("Unindexed Rules").join(version);
    std::fs::create_dir_all(&target)?;
    for file in ["Filtering Rules", "LICENSE", "manifest.json"] {
        std::fs::copy(unindexed.join(file), target.join(file))?;
    }
    Ok(())
}

/// Whether the browser with user data dir `profile` has indexed the
/// ruleset of `version` (its indexed file is there).
pub fn is_indexed(profile: &Path, version: &str) -> bool {
    indexed_dir(profile, version).is_some()
}

/// The folder of the indexed ruleset of `version` in `profile`, and its
/// format number (the folder above it).
fn indexed_dir(profile: &Path, version: &str) -> Option<(PathBuf, String)> {
    let formats = std::fs::read_dir(profile.join(FOLDER).join("Indexed Rules")).ok()?;
    formats.filter_map(Result::ok).find_map(|format| {
        let dir = format.path().join(version);
        dir.join(INDEXED_FILE)
            .is_file()
            .then(|| (dir, format.file_name().to_string_lossy().into_owned()))
    })
}

/// A ruleset a browser indexed, kept for every later browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedFilter {
    /// The folder holding the indexed file and its license.
    pub dir: PathBuf,
    /// The ruleset's version.
    pub version: String,
    /// The index format number of the Chromium that made it.
    pub format: String,
    /// The `subresource_filter` entry of `Local State` that names it.
    pub local_state: Value,
}

/// The file in a kept folder that records the rest of an [`IndexedFilter`].
const RECORD: &str = "indexed.json";

impl IndexedFilter {
    /// The one kept in `dir`, if a whole one is there.
    pub fn load(dir: &Path) -> Option<Self> {
        let record: Value = serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()?;
        let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        let filter = Self {
            dir: dir.to_owned(),
            version: text("version")?,
            format: text("format")?,
            local_state: record.get("local_state")?.clone(),
        };
        dir.join(INDEXED_FILE).is_file().then_some(filter)
    }
}

/// Reads what the browser with user data dir `profile` indexed (after it
/// closed, so that its `Local State` is written) and keeps it in `dir`,
/// which must not exist yet: it is made whole in a sibling folder and
/// renamed into place, so that a reader never sees half of it.
pub fn read_indexed(profile: &Path, version: &str, dir: &Path) -> Result<IndexedFilter, String> {
    let (from, format) = indexed_dir(profile, version).ok_or("the browser left no indexed ruleset")?;
    let state: Value = std::fs::read(profile.join("Local State"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("the browser left no Local State")?;
    let local_state = state
        .get("subresource_filter")
        .filter(|entry| entry.pointer("/ruleset_version/content").and_then(Value::as_str) == Some(version))
        .cloned()
        .ok_or("the browser's Local State names no ruleset of this version")?;
    let parent = dir.parent().ok_or("the folder has no parent")?;
    std::fs::create_dir_all(parent).map_err(|error| error.to_string())?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let staged = parent.join(format!(".indexing-{}-{nanos}", std::process::id()));
    let staging = || -> std::io::Result<()> {
        std::fs::create_dir(&staged)?;
        std::fs::copy(from.join(INDEXED_FILE), staged.join(INDEXED_FILE))?;
        // The license is optional to Chromium; kept when there is one.
        let _ = std::fs::copy(from.join("LICENSE"), staged.join("LICENSE"));
        let record = json!({"version": version, "format": format, "local_state": local_state});
        std::fs::write(staged.join(RECORD), record.to_string())
    };
    if let Err(error) = staging() {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(error.to_string());
    }
    if let Err(error) = std::fs::rename(&staged, dir) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another node (or test) on the same folder kept the same one first.
        return IndexedFilter::load(dir).ok_or_else(|| error.to_string());
    }
    IndexedFilter::load(dir).ok_or_else(|| "the kept ruleset cannot be read back".to_owned())
}

/// How old a staging folder of [`read_indexed`] must be to count as left
/// by a keeper that died (another node sharing the folder may be writing a
/// younger one).
const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes from the index folder `dir` the staging folders of keepers that
/// died halfway.
pub fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let stale = entry.file_name().to_string_lossy().starts_with(".indexing-")
            && entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > STALE_STAGING);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Gives the user data dir `profile` (before its browser starts) the
/// indexed ruleset: a link to the kept file (a copy across file systems)
/// and the `Local State` entry naming it, merged into a `Local State` a
/// saved profile brought. Returns the files made, for their owner to be set.
pub fn place_indexed(profile: &Path, filter: &IndexedFilter) -> std::io::Result<Vec<PathBuf>> {
    let folder = profile.join(FOLDER);
    let target = folder.join("Indexed Rules").join(&filter.format).join(&filter.version);
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    std::fs::create_dir_all(&target)?;
    let mut made = vec![
        folder.clone(),
        folder.join("Indexed Rules"),
        folder.join("Indexed Rules").join(&filter.format),
        target.clone(),
    ];
    for file in [INDEXED_FILE, "LICENSE"] {
        let from = filter.dir.join(file);
        if !from.exists() {
            continue;
        }
        if std::fs::hard_link(&from, target.join(file)).is_err() {
            std::fs::copy(&from, target.join(file))?;
            made.push(target.join(file));
        }
    }
    let state_file = profile.join("Local State");
    let mut state = std::fs::read(&state_file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    state["subresource_filter"] = filter.local_state.clone();
    std::fs::write(&state_file, state.to_string())?;
    made.push(state_file);
    Ok(made)
}

/// The `--enable-features` switch of `switches` with the filter's feature
/// added (Chromium reads only the last such switch), and the others.
pub fn with_activation(switches: &[String]) -> Vec<String> {
    let mut features = vec![ACTIVATION.to_owned()];
    let mut others = Vec::new();
    for switch in switches {
        match switch.strip_prefix("--enable-features=") {
            Some(listed) => features.extend(listed.split(',').filter(|name| !name.is_empty()).map(str::to_owned)),
            None => others.push(switch.clone()),
        }
    }
    others.push(format!("--enable-features={}", features.join(",")));
    others
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `UrlRule`s of a ruleset, each as its fields (number, value).
    fn decode(data: &[u8]) -> Vec<Vec<(u64, Value)>> {
        fn read_varint(data: &[u8], at: &mut usize) -> u64 {
            let (mut value, mut shift) = (0u64, 0);
            loop {
                let byte = data[*at];
                *at += 1;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return value;
                }
                shift += 7;
            }
        }
        fn fields(data: &[u8]) -> Vec<(u64, Vec<u8>, u64)> {
            let mut at = 0;
            let mut out = Vec::new();
            while at < data.len() {
                let key = read_varint(data, &mut at);
                if key & 7 == 2 {
                    let length = read_varint(data, &mut at) as usize;
                    out.push((key >> 3, data[at..at + length].to_vec(), 0));
                    at += length;
                } else {
                    out.push((key >> 3, Vec::new(), read_varint(data, &mut at)));
                }
            }
            out
        }
        let mut rules = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let length = read_varint(data, &mut at) as usize;
            for (_, rule, _) in fields(&data[at..at + length]) {
                rules.push(
                    fields(&rule)
                        .into_iter()
                        .map(|(field, bytes, number)| match field {
                            10 => (field, json!(String::from_utf8_lossy(&bytes))),
                            5 => {
                                let item = fields(&bytes);
                                let name = String::from_utf8_lossy(&item[0].1).into_owned();
                                (field, json!([name, item.get(1).map_or(0, |flag| flag.2)]))
                            }
                            _ => (field, json!(number)),
                        })
                        .collect(),
                );
            }
            at += length;
        }
        rules
    }

    #[test]
    fn lines_become_url_rules_with_their_anchors_types_and_domains() {
        let ruleset = translate([
            "||ads.example^\n@@||ads.example/ok.js$script\n/banners/*$image,domain=news.example|~shop.news.example\n\
             |https://x.example/pixel.gif|$third-party,match-case\n@@||site.example^$document\n\
             ||to.example^$to=a.example\n||z.example^$~image,~script,~first-party\nexample.org##.ad\n",
        ]);
        assert_eq!((ruleset.translated, ruleset.left_out), (6, 1));
        let rules = decode(&ruleset.data);
        let field = |rule: &Vec<(u64, Value)>, number: u64| {
            rule.iter()
                .filter(|(field, _)| *field == number)
                .map(|(_, value)| value.clone())
                .collect::<Vec<_>>()
        };
        let block = &rules[0];
        assert_eq!(
            block.clone(),
            vec![
                (1, json!(1)),
                (2, json!(1)),
                (3, json!(ALL_TYPES)),
                (6, json!(2)),
                (7, json!(3)),
                (8, json!(1)),
                (10, json!("ads.example^"))
            ]
        );
        assert_eq!(field(&rules[1], 1), [json!(2)]);
        assert_eq!(field(&rules[1], 3), [json!(2)]);
        assert_eq!(field(&rules[1], 6), [json!(1)], "no wildcard: a substring");
        assert_eq!(field(&rules[2], 3), [json!(4)]);
        assert_eq!(
            field(&rules[2], 5),
            [json!(["news.example", 0]), json!(["shop.news.example", 1])]
        );
        let pixel = &rules[3];
        assert_eq!(
            (field(pixel, 2), field(pixel, 7), field(pixel, 8), field(pixel, 9)),
            (vec![json!(2)], vec![json!(2)], vec![json!(2)], vec![json!(1)])
        );
        assert_eq!(field(pixel, 10), [json!("https://x.example/pixel.gif")]);
        let document = &rules[4];
        assert_eq!(
            (field(document, 3), field(document, 4)),
            (vec![json!(0)], vec![json!(1)])
        );
        let z = &rules[5];
        assert_eq!(field(z, 2), [json!(2)]);
        assert_eq!(field(z, 3), [json!(ALL_TYPES & !4 & !2)]);
    }

    #[test]
    fn rules_come_in_chunks_and_the_version_follows_the_content() {
        let text: String = (0..2500).map(|number| format!("||host{number}.example^\n")).collect();
        let ruleset = translate([text.as_str()]);
        assert_eq!(ruleset.translated, 2500);
        assert_eq!(decode(&ruleset.data).len(), 2500);
        let other = translate(["||other.example^\n"]);
        assert_ne!(ruleset.version(), other.version());
        assert_eq!(ruleset.version(), translate([text.as_str()]).version());
        assert!(ruleset.version().split('.').all(|part| part.parse::<u32>().is_ok()));
    }

    #[test]
    fn a_kept_ruleset_goes_into_new_profiles_beside_what_they_have() {
        let root = tempfile::tempdir().expect("temp dir");
        // What a browser leaves after indexing version 1.5.
        let indexing = root.path().join("indexing");
        let indexed = indexing.join(FOLDER).join("Indexed Rules").join("38").join("1.5");
        std::fs::create_dir_all(&indexed).expect("dirs");
        std::fs::write(indexed.join(INDEXED_FILE), b"index").expect("write");
        let entry = json!({"ruleset_version": {"content": "1.5", "format": 38, "checksum": 7}});
        std::fs::write(
            indexing.join("Local State"),
            json!({"subresource_filter": entry, "other": 1}).to_string(),
        )
        .expect("write");
        assert!(is_indexed(&indexing, "1.5") && !is_indexed(&indexing, "1.6"));
        assert!(read_indexed(&indexing, "1.6", &root.path().join("kept-6")).is_err());
        let kept = read_indexed(&indexing, "1.5", &root.path().join("kept")).expect("kept");
        assert_eq!((kept.format.as_str(), kept.local_state.clone()), ("38", entry.clone()));
        assert_eq!(IndexedFilter::load(&root.path().join("kept")), Some(kept.clone()));
        // A second keeper of the same one finds it there.
        assert_eq!(
            read_indexed(&indexing, "1.5", &root.path().join("kept")),
            Ok(kept.clone())
        );
        // A profile with a Local State of its own keeps the rest of it.
        let profile = root.path().join("profile");
        std::fs::create_dir_all(&profile).expect("dir");
        std::fs::write(profile.join("Local State"), r#"{"browser": {"x": 1}}"#).expect("write");
        place_indexed(&profile, &kept).expect("placed");
        let state: Value =
            serde_json::from_slice(&std::fs::read(profile.join("Local State")).expect("read")).expect("json");
        assert_eq!(state, json!({"browser": {"x": 1}, "subresource_filter": entry}));
        assert!(is_indexed(&profile, "1.5"));
        // Placing it again (a saved profile that had it) is no error.
        place_indexed(&profile, &kept).expect("placed again");
    }

    #[test]
    fn the_feature_joins_other_enabled_features() {
        assert_eq!(with_activation(&[]), [format!("--enable-features={ACTIVATION}")]);
        assert_eq!(
            with_activation(&["--a".to_owned(), "--enable-features=X,Y".to_owned()]),
            ["--a".to_owned(), format!("--enable-features={ACTIVATION},X,Y")]
        );
    }
}
