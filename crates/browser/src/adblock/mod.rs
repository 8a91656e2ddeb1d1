//! Ad and tracker blocking: filter lists in Adblock Plus syntax (EasyList,
//! EasyPrivacy, an operator's own) compiled once per node: the network
//! lines into the browsers' extension of rules ([`dnr`]), which decides every
//! request inside the browser, and the cosmetic lines into an engine (Brave's
//! `adblock` crate) that answers the pages' reports; the browser side that
//! applies both is [`connection`].
//!
//! Both are compiled from files on disk, kept behind an `Arc`, and swapped
//! whole when a file changes ([`Adblock::reload_if_changed`]), so an answer
//! never waits on a reload. A list that cannot be read, is not
//! text, or holds no rule is an error naming the file (and the line, for
//! bytes that are not UTF-8); a line the engine cannot parse (another
//! blocker's extended syntax, mostly) is skipped, counted, and its first
//! line numbers logged (a warning when they are most of the list).
//!
//! It must not know about sessions, teams or routes: the server decides
//! which browsers it applies to.

pub mod connection;
pub mod dnr;
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
    /// The browsers' extension could not be written.
    #[error("the ad blocking extension cannot be written to {path}: {reason}")]
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
    /// The lists' network rules as the browsers' rules (see [`dnr`]).
    translation: dnr::Translation,
    /// The extension carrying them, once written.
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
    /// CSS hiding the selectors the lists name for this site (and generic
    /// selectors that are not a single class or id).
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
        let translation = dnr::translate(texts.iter().map(String::as_str));
        Ok(Self {
            engine,
            lists,
            compile_time: started.elapsed(),
            stamps,
            translation,
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

    /// The unpacked extension that blocks the lists' requests in a browser
    /// (`None` for an engine of no node: a test's).
    pub fn extension(&self) -> Option<&Path> {
        self.extension.as_deref()
    }

    /// Writes the extension of this compile's rules as generation
    /// `generation` under `root`.
    fn write_extension(&mut self, root: &Path, generation: u64) -> Result<(), ListError> {
        let dir = dnr::extension_dir(root, generation);
        dnr::write_extension(&dir, &self.translation).map_err(|error| ListError::Extension {
            path: dir.clone(),
            reason: error.to_string(),
        })?;
        // The rules are on disk; the copy in memory is not needed again.
        self.translation.rules = Vec::new();
        self.extension = Some(dir);
        Ok(())
    }

    /// How many of the lists' network lines the browsers' rules hold, and
    /// how many were left out (see [`dnr`]).
    pub fn browser_rules(&self) -> (usize, usize) {
        (self.translation.translated, self.translation.left_out)
    }

    /// Whether any file changed (length or change time) since it was read.
    pub fn changed_on_disk(&self) -> bool {
        self.stamps.iter().any(|(path, then)| stamp(path) != *then)
    }

    /// What hides elements in a document at `url`, before its classes and
    /// ids are known.
    pub fn page_cosmetics(&self, url: &str) -> PageCosmetics {
        let resources = self.engine.url_cosmetic_resources(url);
        let mut selectors: Vec<&String> = resources.hide_selectors.iter().collect();
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

/// The node's ad blocking: the engine in use, its settings, and counts.
#[derive(Debug)]
pub struct Adblock {
    files: Vec<PathBuf>,
    suffix_list: Option<PathBuf>,
    /// Where each compile's extension is written (see [`dnr`]).
    extension_root: PathBuf,
    current: RwLock<Arc<FilterEngine>>,
    blocked: AtomicU64,
    reloads: AtomicU64,
    /// The extension folder a template launch indexed, and the entry it
    /// recorded for it (see [`Adblock::set_installed`]).
    installed: std::sync::Mutex<Option<(PathBuf, serde_json::Value)>>,
    /// The extension folder a template launch was begun for.
    templated: std::sync::Mutex<Option<PathBuf>>,
    /// Whether template launches are made at all.
    index_ahead: std::sync::atomic::AtomicBool,
}

impl Adblock {
    /// Compiles `files` (see [`FilterEngine::compile`]) and writes the
    /// browsers' extension of their rules under `extension_root` (whatever
    /// an earlier run left there is removed).
    pub fn load(files: Vec<PathBuf>, suffix_list: Option<PathBuf>, extension_root: PathBuf) -> Result<Self, ListError> {
        let mut engine = FilterEngine::compile(&files, suffix_list.as_deref())?;
        if extension_root.exists() {
            std::fs::remove_dir_all(&extension_root).map_err(|error| ListError::Extension {
                path: extension_root.clone(),
                reason: error.to_string(),
            })?;
        }
        engine.write_extension(&extension_root, 0)?;
        Ok(Self {
            files,
            suffix_list,
            extension_root,
            current: RwLock::new(Arc::new(engine)),
            blocked: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            installed: std::sync::Mutex::new(None),
            templated: std::sync::Mutex::new(None),
            index_ahead: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// The engine in use.
    pub fn engine(&self) -> Arc<FilterEngine> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
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
        engine.write_extension(&self.extension_root, generation)?;
        // The one before the last stays: a launch may be copying it now.
        if let Some(older) = generation.checked_sub(2) {
            let _ = std::fs::remove_dir_all(dnr::extension_dir(&self.extension_root, older));
        }
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(engine),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(engine),
        }
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Requests blocked so far on this node.
    pub fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Times the lists were compiled again after a change.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The current extension's folder when no template launch was begun for
    /// it yet, and from now on it counts as begun: the caller launches a
    /// browser that loads it in place (Chromium writes its rules' index into
    /// the folder) and reports the profile's entry with
    /// [`Adblock::set_installed`]. One per compile; a failed one is not
    /// tried again before the next.
    pub fn begin_template(&self) -> Option<PathBuf> {
        if !self.index_ahead.load(Ordering::Relaxed) {
            return None;
        }
        let current = self.engine().extension().map(Path::to_owned)?;
        let mut templated = self.templated.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if templated.as_ref() == Some(&current) {
            return None;
        }
        *templated = Some(current.clone());
        Some(current)
    }

    /// Turns template launches off (each browser then indexes the rules as
    /// it starts) or on.
    pub fn set_index_ahead(&self, on: bool) {
        self.index_ahead.store(on, Ordering::Relaxed);
    }

    /// Records what a template launch left: the entry of the extension at
    /// `dir` in its profile's preferences, from which later browsers load
    /// it already indexed.
    pub fn set_installed(&self, dir: PathBuf, entry: serde_json::Value) {
        *self.installed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((dir, entry));
    }

    /// The current extension, indexed ahead, with its entry: `None` until a
    /// template launch recorded one for this compile.
    pub fn installed(&self) -> Option<(PathBuf, serde_json::Value)> {
        let current = self.engine().extension().map(Path::to_owned)?;
        let installed = self.installed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        installed.as_ref().filter(|(dir, _)| *dir == current).cloned()
    }

    /// Counts a request a browser's rules blocked.
    pub(crate) fn count_blocked(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }
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
        let adblock = Adblock::load(vec![file.path().to_owned()], None, root.path().join("ext")).expect("loads");
        let first = adblock.engine().extension().map(Path::to_owned).expect("an extension");
        let rules = std::fs::read_to_string(first.join("rules.json")).expect("rules");
        assert!(rules.contains("ads.example"), "{rules}");
        assert_eq!(adblock.reload_if_changed(), Ok(false));
        file.write_all(b"||more.example^\n").expect("append");
        file.flush().expect("flush");
        assert_eq!(adblock.reload_if_changed(), Ok(true));
        let engine = adblock.engine();
        let second = engine.extension().map(Path::to_owned).expect("an extension");
        assert_ne!(first, second);
        let rules = std::fs::read_to_string(second.join("rules.json")).expect("rules");
        assert!(rules.contains("more.example"), "{rules}");
        file.write_all(b"\xff\n").expect("append");
        file.flush().expect("flush");
        assert!(adblock.reload_if_changed().is_err());
        assert_eq!(adblock.engine().extension(), Some(second.as_path()));
        assert_eq!(adblock.reloads(), 1);
    }
}
