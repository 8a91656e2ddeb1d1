//! Ad and tracker blocking: filter lists in Adblock Plus syntax (EasyList,
//! EasyPrivacy, an operator's own) compiled once per node: the network
//! lines into a ruleset for Chromium's own subresource filter ([`filter`]),
//! which decides every subresource request inside the page's renderer, and
//! the cosmetic lines into an engine (Brave's `adblock` crate). Its generic
//! rules that are not a bare class or id become a stylesheet each browser
//! applies by itself ([`sheet`], given as a small extension:
//! [`extension`]); the rest (site rules, and the generic class and id rules
//! a document's own classes and ids call for) is sent by the browser side,
//! [`connection`].
//!
//! Both are compiled from files on disk, kept behind an `Arc`, and swapped
//! whole when a file changes ([`Adblock::reload_if_changed`]), so an answer
//! never waits on a reload. A list that cannot be read, is not
//! text, or holds no rule is an error naming the file (and the line, for
//! bytes that are not UTF-8); a line the engine cannot parse (another
//! blocker's extended syntax, mostly) is skipped, counted, and its first
//! line numbers logged (a warning when they are most of the list).
//!
//! The ruleset is indexed by one browser per compile and Chromium build
//! (an index launch, begun by the server: [`Adblock::index_job`]) and kept
//! in the node's index folder, where a restart finds it again.
//!
//! It must not know about sessions, teams or routes: the server decides
//! which browsers it applies to.

pub mod connection;
pub mod extension;
pub mod filter;
mod lines;
pub mod sheet;
mod suffixes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use adblock::lists::{FilterSet, ParseOptions};

pub use connection::AdblockConnection;

/// How many skipped line numbers of one file are logged.
const SKIPPED_LOGGED: usize = 5;

/// A filter list that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The file could not be read.
    #[error("the filter list {path} cannot be read: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file holds bytes that are not UTF-8.
    #[error("the filter list {path} is not text: line {line} is not UTF-8")]
    NotText {
        /// The file.
        path: PathBuf,
        /// The first line that is not UTF-8 (from 1).
        line: usize,
    },
    /// The file holds no rule the engine can use.
    #[error("the filter list {path} holds no filter rule ({skipped} line(s) could not be parsed, the first at line {first_line})")]
    NoRule {
        /// The file.
        path: PathBuf,
        /// Lines that were not comments and could not be parsed.
        skipped: usize,
        /// The first of them (0 for an empty file).
        first_line: usize,
    },
    /// No list was given.
    #[error("ad blocking needs at least one filter list")]
    NoList,
    /// The browsers' extension or ruleset could not be written.
    #[error("the ad blocking files cannot be written to {path}: {reason}")]
    Extension {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What was read from one list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInfo {
    /// The file.
    pub path: PathBuf,
    /// Its `! Title:` line, if it has one.
    pub title: Option<String>,
    /// When the file was last changed (the date its package or its operator
    /// gave it: the lists Debian ships carry no date of their own).
    pub modified: Option<SystemTime>,
    /// Rules the engine took.
    pub rules: usize,
    /// Lines that were not comments and could not be parsed (skipped).
    pub skipped: usize,
}

/// One compiled engine and the lists it came from.
pub struct FilterEngine {
    engine: adblock::Engine,
    lists: Vec<ListInfo>,
    /// How long compiling took (reading, parsing and building).
    compile_time: Duration,
    /// Each file's length and change time when it was read.
    stamps: Vec<(PathBuf, Option<(u64, SystemTime)>)>,
    /// The lists' network rules as the browsers' filter's (see [`filter`]);
    /// its data is dropped once written.
    ruleset: filter::Ruleset,
    /// The ruleset's version.
    version: String,
    /// Where the ruleset was written, unindexed.
    unindexed: Option<PathBuf>,
    /// The generic stylesheet every document gets from the browser itself,
    /// and where it does not.
    sheet: sheet::NativeSheet,
    /// The selectors of that sheet.
    sheet_selectors: HashSet<String>,
    /// Where this compile's extension was written.
    extension: Option<PathBuf>,
}

impl std::fmt::Debug for FilterEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FilterEngine")
            .field("lists", &self.lists)
            .field("compile_time", &self.compile_time)
            .finish_non_exhaustive()
    }
}

/// What hides elements in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageCosmetics {
    /// CSS hiding the selectors the lists name for this site, and the
    /// generic selectors that are not a single class or id where the
    /// browser does not apply them itself (see [`sheet`]): what the server
    /// sends as the document starts.
    pub css: String,
    /// Class and id selectors generic rules must leave alone here.
    pub exceptions: HashSet<String>,
    /// Whether generic rules are off for this site (`$generichide`).
    pub generic_off: bool,
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// The text of `path`, or the error naming it.
fn read_list(path: &Path) -> Result<String, ListError> {
    let bytes = std::fs::read(path).map_err(|error| ListError::Unreadable {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    String::from_utf8(bytes).map_err(|error| {
        let valid = error.utf8_error().valid_up_to();
        let line = error.as_bytes()[..valid].iter().filter(|byte| **byte == b'\n').count() + 1;
        ListError::NotText {
            path: path.to_owned(),
            line,
        }
    })
}

/// Whether a line is a comment or a header, which no engine parses.
fn is_comment(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('!') || (line.starts_with('[') && line.ends_with(']'))
}

impl FilterEngine {
    /// Reads and compiles `files`, in order. Public suffixes (for what is
    /// first or third party) come from `suffix_list` when given and readable,
    /// else every host's last two labels are its site.
    pub fn compile(files: &[PathBuf], suffix_list: Option<&Path>) -> Result<Self, ListError> {
        if files.is_empty() {
            return Err(ListError::NoList);
        }
        suffixes::install(suffix_list);
        let started = Instant::now();
        let mut set = FilterSet::new(false);
        let mut lists = Vec::new();
        let mut stamps = Vec::new();
        let mut texts = Vec::new();
        for path in files {
            let before = stamp(path);
            let text = read_list(path)?;
            let mut rules = 0;
            let mut skipped = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if is_comment(line) {
                    continue;
                }
                match adblock::lists::parse_filter(line, false, ParseOptions::default()) {
                    Ok(_) => rules += 1,
                    Err(_) => skipped.push(number + 1),
                }
            }
            if rules == 0 {
                return Err(ListError::NoRule {
                    path: path.clone(),
                    skipped: skipped.len(),
                    first_line: skipped.first().copied().unwrap_or(0),
                });
            }
            if !skipped.is_empty() {
                let shown: Vec<String> = skipped.iter().take(SKIPPED_LOGGED).map(usize::to_string).collect();
                let lines = format!(
                    "{}{}",
                    shown.join(", "),
                    if skipped.len() > SKIPPED_LOGGED { ", …" } else { "" }
                );
                // Real lists hold some lines in other blockers' extended
                // syntax; a list that is mostly such lines is likely not
                // meant for this engine, which is worth a warning.
                if skipped.len() > rules {
                    tracing::warn!(list = %path.display(), skipped = skipped.len(), rules, "most lines of a filter list cannot be parsed and are skipped (lines {lines})");
                } else {
                    tracing::info!(list = %path.display(), skipped = skipped.len(), rules, "filter list lines the engine cannot parse are skipped (lines {lines})");
                }
            }
            let record = set.add_filter_list(text.clone(), ParseOptions::default());
            texts.push(text);
            lists.push(ListInfo {
                path: path.clone(),
                title: record.metadata.title,
                modified: before.map(|(_, modified)| modified),
                rules,
                skipped: skipped.len(),
            });
            stamps.push((path.clone(), before));
        }
        let engine = adblock::Engine::new_with_filter_set(set);
        let ruleset = filter::translate(texts.iter().map(String::as_str));
        // The generic rules every site gets: what the engine gives a site
        // no list can name (`.invalid` is reserved for that).
        let mut generic: Vec<String> = engine
            .url_cosmetic_resources(NAMELESS_SITE)
            .hide_selectors
            .into_iter()
            .collect();
        generic.sort();
        let mut sheet = sheet::NativeSheet::exclusions(texts.iter().map(String::as_str));
        sheet.css = hiding_css(&generic);
        Ok(Self {
            engine,
            lists,
            compile_time: started.elapsed(),
            stamps,
            version: ruleset.version(),
            ruleset,
            unindexed: None,
            sheet,
            sheet_selectors: generic.into_iter().collect(),
            extension: None,
        })
    }

    /// The lists compiled.
    pub fn lists(&self) -> &[ListInfo] {
        &self.lists
    }

    /// How long compiling took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The version of this compile's ruleset for the browsers' filter.
    pub fn ruleset_version(&self) -> &str {
        &self.version
    }

    /// Where this compile's ruleset was written, unindexed (`None` for an
    /// engine of no node: a test's).
    pub fn unindexed_ruleset(&self) -> Option<&Path> {
        self.unindexed.as_deref()
    }

    /// Where this compile's extension was written (`None` for an engine of
    /// no node: a test's).
    pub fn extension(&self) -> Option<&Path> {
        self.extension.as_deref()
    }

    /// The generic stylesheet the browsers apply themselves.
    pub fn native_sheet(&self) -> &sheet::NativeSheet {
        &self.sheet
    }

    /// Writes this compile's ruleset, unindexed, and its extension, as
    /// generation `generation` under `root`.
    fn write_out(&mut self, root: &Path, generation: u64) -> Result<(), ListError> {
        let dir = extension::extension_dir(root, generation);
        extension::write_extension(&dir, &self.sheet).map_err(|error| ListError::Extension {
            path: dir.clone(),
            reason: error.to_string(),
        })?;
        self.extension = Some(dir);
        self.write_ruleset(root, generation)
    }

    fn write_ruleset(&mut self, root: &Path, generation: u64) -> Result<(), ListError> {
        let dir = root.join(format!("ruleset-{generation}"));
        filter::write_unindexed(&dir, &self.ruleset).map_err(|error| ListError::Extension {
            path: dir.clone(),
            reason: error.to_string(),
        })?;
        // The rules are on disk; the copy in memory is not needed again.
        self.ruleset.data = Vec::new();
        self.unindexed = Some(dir);
        Ok(())
    }

    /// How many of the lists' network lines the browsers' filter holds, and
    /// how many were left out (see [`filter`]).
    pub fn browser_rules(&self) -> (usize, usize) {
        (self.ruleset.translated, self.ruleset.left_out)
    }

    /// Whether any file changed (length or change time) since it was read.
    pub fn changed_on_disk(&self) -> bool {
        self.stamps.iter().any(|(path, then)| stamp(path) != *then)
    }

    /// What hides elements in a document at `url`, before its classes and
    /// ids are known.
    pub fn page_cosmetics(&self, url: &str) -> PageCosmetics {
        let resources = self.engine.url_cosmetic_resources(url);
        let native = self.sheet.applies_to(url);
        let mut selectors: Vec<&String> = resources
            .hide_selectors
            .iter()
            .filter(|selector| !(native && self.sheet_selectors.contains(*selector)))
            .collect();
        selectors.sort();
        PageCosmetics {
            css: hiding_css(selectors),
            exceptions: resources.exceptions,
            generic_off: resources.generichide,
        }
    }

    /// CSS hiding what generic rules name among `classes` and `ids`.
    pub fn generic_css(&self, classes: &[String], ids: &[String], exceptions: &HashSet<String>) -> String {
        let selectors = self.engine.hidden_class_id_selectors(classes, ids, exceptions);
        hiding_css(selectors.iter())
    }
}

/// An address on a site no list names.
const NAMELESS_SITE: &str = "https://anchorage.invalid/";

/// One rule per selector, so that a selector this Chromium does not know
/// spoils only its own rule.
fn hiding_css<'a>(selectors: impl IntoIterator<Item = &'a String>) -> String {
    let mut css = String::new();
    for selector in selectors {
        // A selector holding braces would end its rule early.
        if selector.contains(['{', '}']) {
            continue;
        }
        css.push_str(selector);
        css.push_str("{display:none!important}\n");
    }
    css
}

/// Where a node keeps the rulesets its browsers indexed, and the Chromium
/// build they were indexed by (a ruleset indexed by another build is not
/// used: its index format may differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSetting {
    /// The folder (one sub-folder per ruleset and build).
    pub dir: PathBuf,
    /// What tells this Chromium build from another (its executable's size
    /// and change time, say).
    pub build: String,
}

/// A ruleset to index: launch a browser with [`filter::place_unindexed`]
/// and component updates on, wait for [`filter::is_indexed`], close it
/// gracefully, keep what it made with [`filter::read_indexed`] into
/// `keep_in`, and report with [`Adblock::finish_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexJob {
    /// The unindexed ruleset.
    pub unindexed: PathBuf,
    /// Its version.
    pub version: String,
    /// Where to keep the indexed one.
    pub keep_in: PathBuf,
}

/// The browsers' filter's indexing, for the current compile.
#[derive(Debug, Default)]
struct FilterState {
    /// The indexed ruleset of the newest compile that has one (an older
    /// compile's serves until the current one's is indexed).
    indexed: Option<filter::IndexedFilter>,
    /// The version an index launch was begun for.
    begun: Option<String>,
    /// The version whose index launch failed, and why.
    failed: Option<(String, String)>,
}

/// The node's ad blocking: the engine in use, its settings, and counts.
#[derive(Debug)]
pub struct Adblock {
    files: Vec<PathBuf>,
    suffix_list: Option<PathBuf>,
    /// Where each compile's extension and ruleset are written.
    root: PathBuf,
    current: RwLock<Arc<FilterEngine>>,
    blocked: AtomicU64,
    reloads: AtomicU64,
    /// Where indexed rulesets are kept; `None`: no index launch is made,
    /// and browsers block no request (they still hide elements).
    index: std::sync::Mutex<Option<IndexSetting>>,
    filter: std::sync::Mutex<FilterState>,
    /// Bumped at each change of `filter`, for launches waiting on an index.
    filter_changes: tokio::sync::watch::Sender<u64>,
}

impl Adblock {
    /// Compiles `files` (see [`FilterEngine::compile`]) and writes the
    /// browsers' extension and the ruleset of the lists under `root`
    /// (whatever an earlier run left there is removed).
    pub fn load(files: Vec<PathBuf>, suffix_list: Option<PathBuf>, root: PathBuf) -> Result<Self, ListError> {
        let mut engine = FilterEngine::compile(&files, suffix_list.as_deref())?;
        let unwritable = |path: &Path, error: std::io::Error| ListError::Extension {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|error| unwritable(&root, error))?;
        }
        std::fs::create_dir_all(&root).map_err(|error| unwritable(&root, error))?;
        engine.write_out(&root, 0)?;
        Ok(Self {
            files,
            suffix_list,
            root,
            current: RwLock::new(Arc::new(engine)),
            blocked: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            index: std::sync::Mutex::new(None),
            filter: std::sync::Mutex::new(FilterState::default()),
            filter_changes: tokio::sync::watch::channel(0).0,
        })
    }

    /// The engine in use.
    pub fn engine(&self) -> Arc<FilterEngine> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The unpacked extension of the engine in use (see [`extension`]).
    pub fn extension(&self) -> PathBuf {
        let engine = self.engine();
        engine
            .extension()
            .map_or_else(|| extension::extension_dir(&self.root, 0), Path::to_owned)
    }

    /// Recompiles when a file changed; the engine in use stays if the new
    /// one cannot be made (the error says why). `Ok(true)` when reloaded.
    /// Blocking: run it off the async threads.
    pub fn reload_if_changed(&self) -> Result<bool, ListError> {
        if !self.engine().changed_on_disk() {
            return Ok(false);
        }
        let mut engine = FilterEngine::compile(&self.files, self.suffix_list.as_deref())?;
        let generation = self.reloads.load(Ordering::Relaxed) + 1;
        engine.write_out(&self.root, generation)?;
        // The one before the last stays: a launch may be copying it.
        if let Some(older) = generation.checked_sub(2) {
            let _ = std::fs::remove_dir_all(self.root.join(format!("ruleset-{older}")));
            let _ = std::fs::remove_dir_all(extension::extension_dir(&self.root, older));
        }
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(engine),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(engine),
        }
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.filter_changes.send_modify(|count| *count += 1);
        Ok(true)
    }

    /// Requests blocked so far on this node (as far as they were seen, see
    /// [`connection`]).
    pub fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Times the lists were compiled again after a change.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Where indexed rulesets are kept, and for which Chromium build; `None`
    /// turns index launches off (browsers then block no request).
    pub fn set_index(&self, setting: Option<IndexSetting>) {
        if let Some(setting) = &setting {
            filter::remove_stale_staging(&setting.dir);
        }
        *self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = setting;
        self.filter_changes.send_modify(|count| *count += 1);
    }

    fn filter_state(&self) -> std::sync::MutexGuard<'_, FilterState> {
        self.filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The index launch the current compile needs, once: `None` when its
    /// ruleset is indexed (or kept from an earlier run, which is then taken),
    /// when one was begun already, or when index launches are off.
    pub fn index_job(&self) -> Option<IndexJob> {
        let setting = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let engine = self.engine();
        let version = engine.ruleset_version().to_owned();
        let unindexed = engine.unindexed_ruleset()?.to_owned();
        let mut state = self.filter_state();
        if state.indexed.as_ref().is_some_and(|indexed| indexed.version == version)
            || state.begun.as_ref() == Some(&version)
        {
            return None;
        }
        let keep_in = setting.dir.join(index_key(&version, &setting.build));
        if let Some(kept) = filter::IndexedFilter::load(&keep_in) {
            state.indexed = Some(kept);
            drop(state);
            self.filter_changes.send_modify(|count| *count += 1);
            return None;
        }
        state.begun = Some(version.clone());
        Some(IndexJob {
            unindexed,
            version,
            keep_in,
        })
    }

    /// Records how an index launch ended.
    pub fn finish_index(&self, version: &str, outcome: Result<filter::IndexedFilter, String>) {
        let mut state = self.filter_state();
        match outcome {
            Ok(indexed) => {
                state.indexed = Some(indexed);
                state.failed = None;
            }
            Err(reason) => state.failed = Some((version.to_owned(), reason)),
        }
        drop(state);
        self.filter_changes.send_modify(|count| *count += 1);
    }

    /// The indexed ruleset browsers get now: the current compile's, or an
    /// older one while the current one is being indexed; `None` when index
    /// launches are off.
    pub fn indexed(&self) -> Option<filter::IndexedFilter> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()?;
        self.filter_state().indexed.clone()
    }

    /// Whether the current compile's ruleset is indexed.
    pub fn is_indexed(&self) -> bool {
        let version = self.engine().ruleset_version().to_owned();
        self.indexed().is_some_and(|indexed| indexed.version == version)
    }

    /// Whether an index launch for the current compile runs now.
    pub fn is_indexing(&self) -> bool {
        let version = self.engine().ruleset_version().to_owned();
        let state = self.filter_state();
        state.begun.as_ref() == Some(&version)
            && state.indexed.as_ref().is_none_or(|indexed| indexed.version != version)
            && state.failed.as_ref().is_none_or(|(failed, _)| *failed != version)
    }

    /// Why the current compile's ruleset could not be indexed, if it could not.
    pub fn index_failure(&self) -> Option<String> {
        let version = self.engine().ruleset_version().to_owned();
        self.filter_state()
            .failed
            .as_ref()
            .filter(|(failed, _)| *failed == version)
            .map(|(_, reason)| reason.clone())
    }

    /// A receiver that changes whenever the indexing does (see
    /// [`Adblock::indexed`]).
    pub fn index_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.filter_changes.subscribe()
    }

    /// Counts a request a browser's filter blocked.
    pub(crate) fn count_blocked(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }
}

/// The folder name of the ruleset of `version` indexed by `build`.
fn index_key(version: &str, build: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{version}\n{build}").as_bytes());
    let hex: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    format!("{version}-{hex}")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn list(text: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text).expect("write");
        file
    }

    #[test]
    fn cosmetic_rules_hide_per_site_and_generically() {
        let file = list(b"[Adblock Plus 2.0]\n! Title: Test list\n||ads.example^\n/banners/*$image\n@@||ads.example/ok.js\n###ad_top\nexample.org##.sponsor\n");
        let engine = FilterEngine::compile(&[file.path().to_owned()], None).expect("compiles");
        assert_eq!(engine.lists()[0].title.as_deref(), Some("Test list"));
        assert_eq!((engine.lists()[0].rules, engine.lists()[0].skipped), (5, 0));
        let cosmetics = engine.page_cosmetics("https://www.example.org/");
        assert!(
            cosmetics.css.contains(".sponsor{display:none!important}"),
            "{cosmetics:?}"
        );
        assert!(!engine.page_cosmetics("https://other.test/").css.contains(".sponsor"));
        let generic = engine.generic_css(&["content".to_owned()], &["ad_top".to_owned()], &cosmetics.exceptions);
        assert_eq!(generic, "#ad_top{display:none!important}\n");
    }

    #[test]
    fn the_browsers_own_sheet_holds_the_generic_rules_and_the_server_sends_the_rest() {
        let file =
            list(b"||ads.example^\n##[id^=\"ad-\"]\n###ad_top\nexample.org##.sponsor\nquiet.test#@#[id^=\"ad-\"]\n");
        let engine = FilterEngine::compile(&[file.path().to_owned()], None).expect("compiles");
        let sheet = engine.native_sheet();
        assert_eq!(sheet.css, "[id^=\"ad-\"]{display:none!important}\n");
        // A site the sheet covers gets only its own rules from the server.
        assert_eq!(
            engine.page_cosmetics("https://example.org/").css,
            ".sponsor{display:none!important}\n"
        );
        assert_eq!(engine.page_cosmetics("https://other.test/").css, "");
        // A site of an exception is left out of the sheet and gets the rest of
        // it from the server.
        assert!(!sheet.applies_to("https://www.quiet.test/"));
        assert_eq!(engine.page_cosmetics("https://www.quiet.test/").css, "");
        let excepted = list(b"##[id^=\"ad-\"]\n##AMP-AD\nquiet.test#@#AMP-AD\n");
        let engine = FilterEngine::compile(&[excepted.path().to_owned()], None).expect("compiles");
        assert_eq!(
            engine.page_cosmetics("https://quiet.test/").css,
            "[id^=\"ad-\"]{display:none!important}\n"
        );
    }

    #[test]
    fn bad_files_are_errors_naming_them_and_bad_lines_are_skipped() {
        let missing = PathBuf::from("/nonexistent/list.txt");
        let error = FilterEngine::compile(std::slice::from_ref(&missing), None).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/list.txt"), "{error}");
        let binary = list(b"||ads.example^\n||b.example^\n\xff\xfe\n");
        let error = FilterEngine::compile(&[binary.path().to_owned()], None).expect_err("binary");
        assert_eq!(
            error,
            ListError::NotText {
                path: binary.path().to_owned(),
                line: 3
            }
        );
        let nothing = list(b"! only a comment\n||x.example^$not-an-option\n");
        let error = FilterEngine::compile(&[nothing.path().to_owned()], None).expect_err("no rule");
        assert!(matches!(error, ListError::NoRule { .. }), "{error}");
        let mixed = list(b"||ads.example^\n||bad.example^$unknown-option-here\n");
        let engine = FilterEngine::compile(&[mixed.path().to_owned()], None).expect("compiles");
        assert_eq!((engine.lists()[0].rules, engine.lists()[0].skipped), (1, 1));
        assert_eq!(FilterEngine::compile(&[], None).expect_err("none"), ListError::NoList);
    }

    #[test]
    fn a_changed_file_is_compiled_again_and_a_broken_one_keeps_the_engine() {
        let mut file = list(b"||ads.example^\n");
        let root = tempfile::tempdir().expect("temp dir");
        let adblock = Adblock::load(vec![file.path().to_owned()], None, root.path().join("adblock")).expect("loads");
        assert!(adblock.extension().join("manifest.json").is_file());
        let first = adblock.engine();
        let rules = std::fs::read(first.unindexed_ruleset().expect("written").join("Filtering Rules")).expect("rules");
        assert!(rules.windows(11).any(|part| part == b"ads.example"));
        assert_eq!(adblock.reload_if_changed(), Ok(false));
        file.write_all(b"||more.example^\n").expect("append");
        file.flush().expect("flush");
        assert_eq!(adblock.reload_if_changed(), Ok(true));
        let second = adblock.engine();
        assert_ne!(first.unindexed_ruleset(), second.unindexed_ruleset());
        assert_ne!(first.ruleset_version(), second.ruleset_version());
        let rules = std::fs::read(second.unindexed_ruleset().expect("written").join("Filtering Rules")).expect("rules");
        assert!(rules.windows(12).any(|part| part == b"more.example"));
        file.write_all(b"\xff\n").expect("append");
        file.flush().expect("flush");
        assert!(adblock.reload_if_changed().is_err());
        assert_eq!(adblock.engine().ruleset_version(), second.ruleset_version());
        assert_eq!(adblock.reloads(), 1);
    }

    #[test]
    fn each_compile_is_indexed_once_and_a_kept_index_is_found_again() {
        let file = list(b"||ads.example^\n");
        let root = tempfile::tempdir().expect("temp dir");
        let adblock = Adblock::load(vec![file.path().to_owned()], None, root.path().join("adblock")).expect("loads");
        assert_eq!(adblock.index_job(), None, "index launches are off");
        let setting = IndexSetting {
            dir: root.path().join("index"),
            build: "chromium 1".to_owned(),
        };
        adblock.set_index(Some(setting.clone()));
        let job = adblock.index_job().expect("a job");
        assert_eq!(job.version, adblock.engine().ruleset_version());
        assert!(adblock.is_indexing() && !adblock.is_indexed());
        assert_eq!(adblock.index_job(), None, "begun once");
        adblock.finish_index(&job.version, Err("no".to_owned()));
        assert_eq!(adblock.index_failure().as_deref(), Some("no"));
        assert!(!adblock.is_indexing());
        assert_eq!(adblock.index_job(), None, "not tried again for the same compile");
        // What a browser left, kept where the job said.
        let profile = root.path().join("profile");
        let made = profile.join("Subresource Filter/Indexed Rules/38").join(&job.version);
        std::fs::create_dir_all(&made).expect("dirs");
        std::fs::write(made.join("Ruleset Data"), b"index").expect("write");
        let entry = serde_json::json!({"ruleset_version": {"content": job.version, "format": 38, "checksum": 1}});
        std::fs::write(
            profile.join("Local State"),
            serde_json::json!({"subresource_filter": entry}).to_string(),
        )
        .expect("write");
        let kept = filter::read_indexed(&profile, &job.version, &job.keep_in).expect("kept");
        adblock.finish_index(&job.version, Ok(kept.clone()));
        assert!(adblock.is_indexed());
        assert_eq!(adblock.indexed(), Some(kept.clone()));
        // A restart on the same folder takes it without a launch; another
        // Chromium build does not.
        let again = Adblock::load(vec![file.path().to_owned()], None, root.path().join("again")).expect("loads");
        again.set_index(Some(setting.clone()));
        assert_eq!(again.index_job(), None);
        assert_eq!(again.indexed(), Some(kept));
        let other = Adblock::load(vec![file.path().to_owned()], None, root.path().join("other")).expect("loads");
        other.set_index(Some(IndexSetting {
            build: "chromium 2".to_owned(),
            ..setting
        }));
        assert!(other.index_job().is_some());
    }
}
