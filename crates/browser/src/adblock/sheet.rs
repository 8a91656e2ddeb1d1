//! The stylesheet every blocking browser applies by itself: the lists'
//! generic element-hiding rules that are not a bare class or id (`[id^="ad-"]`,
//! `AMP-AD`, … a few hundred), given to Chromium as the extension's own
//! stylesheet content script. Chromium adds such a sheet to each matching
//! document as it starts, with no script and no message: measured free on a
//! page load, where any script content script (even an empty one) cost 4 to
//! 7 % (BENCHMARKS.md).
//!
//! A static sheet cannot be taken back, so it is not given where a rule
//! would take some of it back: the sites of `#@#` exceptions and of rules
//! with `~`excluded sites, and the pages a `$generichide` exception names.
//! Those are left out of the content script (`exclude_matches` for sites,
//! `exclude_globs` for address patterns); for them the server sends the
//! whole of what the engine says instead ([`NativeSheet::applies_to`] tells
//! the two apart, by the same rules Chromium matches with). Leaving out more
//! than needed is safe: such a page gets the same CSS from the server.

use std::collections::BTreeSet;

/// The generic stylesheet and the documents it is not given to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeSheet {
    /// One rule per selector.
    pub css: String,
    /// Sites left out, with their subdomains (as `*://*.<site>/*`).
    pub sites: BTreeSet<String>,
    /// Address patterns left out (Chromium's globs: `*` any text, `?` one
    /// character).
    pub globs: BTreeSet<String>,
    /// A `$generichide` exception for every page: no generic sheet at all.
    pub nowhere: bool,
}

impl NativeSheet {
    /// Reads what the lists' lines leave out of the generic sheet (the sheet
    /// itself is the engine's, set by the caller).
    pub fn exclusions<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut sheet = Self::default();
        for text in texts {
            for line in text.lines() {
                sheet.read_line(line.trim());
            }
        }
        sheet
    }

    fn read_line(&mut self, line: &str) {
        if line.is_empty() || line.starts_with('!') || line.starts_with('[') {
            return;
        }
        if let Some(rule) = line.strip_prefix("@@") {
            if let Some((pattern, options)) = rule.rsplit_once('$') {
                let options: Vec<&str> = options.split(',').map(str::trim).collect();
                if options.iter().any(|option| matches!(*option, "generichide" | "ghide")) {
                    self.leave_out_generichide(pattern, &options);
                }
            }
            return;
        }
        let Some(at) = cosmetic_separator(line) else {
            return;
        };
        let exception = line[at..].starts_with("#@");
        for domain in line[..at].split(',').map(str::trim).filter(|domain| !domain.is_empty()) {
            let (excluded, domain) = match domain.strip_prefix('~') {
                Some(domain) => (true, domain),
                None => (false, domain),
            };
            if exception || excluded {
                self.leave_out_site(domain);
            }
        }
    }

    /// A `$generichide` exception: its pattern's pages, and those of its
    /// `domain=` sites.
    fn leave_out_generichide(&mut self, pattern: &str, options: &[&str]) {
        let mut named_sites = false;
        for option in options {
            if let Some(list) = option.strip_prefix("domain=") {
                for site in list
                    .split('|')
                    .filter(|site| !site.is_empty() && !site.starts_with('~'))
                {
                    named_sites = true;
                    self.leave_out_site(site);
                }
            }
        }
        let pattern = pattern.trim();
        if pattern.is_empty() || pattern == "*" {
            if !named_sites {
                self.nowhere = true;
            }
            return;
        }
        if let Some(rest) = pattern.strip_prefix("||") {
            let end = rest.find(['^', '/', '|']).unwrap_or(rest.len());
            let (host, tail) = rest.split_at(end);
            if is_plain_host(host) && matches!(tail, "" | "^" | "^|" | "/" | "|") {
                self.sites.insert(host.to_owned());
                return;
            }
            // A host with a path: any address holding its text.
            self.globs.insert(format!("*{}*", glob_text(rest)));
            return;
        }
        let start = if pattern.starts_with('|') { "" } else { "*" };
        let body = pattern.trim_start_matches('|').trim_end_matches('|');
        self.globs.insert(format!("{start}{}*", glob_text(body)));
    }

    fn leave_out_site(&mut self, site: &str) {
        let site = site.to_ascii_lowercase();
        if let Some(entity) = site.strip_suffix(".*") {
            // `example.*`: every public suffix; the globs take in more
            // addresses than the entity does, which only costs a message.
            self.globs.insert(format!("*://{}.*", glob_text(entity)));
            self.globs.insert(format!("*://*.{}.*", glob_text(entity)));
        } else if is_plain_host(&site) {
            self.sites.insert(site);
        } else if !site.is_empty() {
            self.globs.insert(format!("*{}*", glob_text(&site)));
        }
    }

    /// Whether the sheet is given to a document at `url`, by the rules
    /// Chromium matches the content script with.
    pub fn applies_to(&self, url: &str) -> bool {
        if self.nowhere || self.css.is_empty() {
            return false;
        }
        let Ok(parsed) = url::Url::parse(url) else {
            return false;
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return false;
        }
        let host = parsed.host_str().unwrap_or_default().trim_end_matches('.');
        let mut suffix = host;
        loop {
            if self.sites.contains(suffix) {
                return false;
            }
            match suffix.split_once('.') {
                Some((_, rest)) => suffix = rest,
                None => break,
            }
        }
        !self.globs.iter().any(|glob| glob_matches(glob, parsed.as_str()))
    }

    /// The extension's content script entry that gives the sheet (`None`
    /// when it is given nowhere).
    pub fn content_script(&self, file: &str) -> Option<serde_json::Value> {
        if self.nowhere || self.css.is_empty() {
            return None;
        }
        let sites: Vec<String> = self.sites.iter().map(|site| format!("*://*.{site}/*")).collect();
        let mut entry = serde_json::json!({
            "matches": ["http://*/*", "https://*/*"],
            "css": [file],
            "run_at": "document_start",
            "all_frames": true,
        });
        if !sites.is_empty() {
            entry["exclude_matches"] = sites.into();
        }
        if !self.globs.is_empty() {
            entry["exclude_globs"] = self.globs.iter().cloned().collect::<Vec<_>>().into();
        }
        Some(entry)
    }
}

/// Where a cosmetic line's selector part begins (`##`, `#@#`, `#?#`,
/// `#@?#`, `#$#`, `#@$#`, …), if it is one.
fn cosmetic_separator(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut at = line.find('#')?;
    loop {
        let rest = &bytes[at + 1..];
        let rest = rest.strip_prefix(b"@").unwrap_or(rest);
        let rest = rest
            .strip_prefix(b"?")
            .or_else(|| rest.strip_prefix(b"$"))
            .or_else(|| rest.strip_prefix(b"%"))
            .unwrap_or(rest);
        if rest.first() == Some(&b'#') {
            return Some(at);
        }
        at += 1 + line[at + 1..].find('#')?;
    }
}

/// Whether `host` is a name Chromium takes in a match pattern as it is.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_')
        })
        && host.bytes().any(|byte| byte.is_ascii_lowercase())
}

/// Adblock Plus pattern text as a glob: its wildcards and separators become
/// `*` (a separator is one character or the end: `*` takes in more).
fn glob_text(text: &str) -> String {
    text.chars().map(|c| if c == '^' { '*' } else { c }).collect()
}

/// Chromium's glob matching of a whole address: `*` any text, `?` one
/// character, everything else itself.
fn glob_matches(glob: &str, text: &str) -> bool {
    let (glob, text) = (glob.as_bytes(), text.as_bytes());
    let (mut g, mut t) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && (glob[g] == b'?' || glob[g] == text[t]) {
            g += 1;
            t += 1;
        } else if g < glob.len() && glob[g] == b'*' {
            back = Some((g, t));
            g += 1;
        } else if let Some((star, from)) = back {
            g = star + 1;
            t = from + 1;
            back = Some((star, from + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&byte| byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(lines: &str) -> NativeSheet {
        let mut sheet = NativeSheet::exclusions([lines]);
        sheet.css = "AMP-AD{display:none!important}\n".to_owned();
        sheet
    }

    #[test]
    fn exceptions_and_excluded_sites_leave_their_sites_out() {
        let sheet = sheet(
            "example.com#@#AMP-AD\n~other.org,news.test##[id^=\"ad-\"]\nplain.test##.x\n\
             entity.*#@#.y\n! a comment with ## in it\n",
        );
        assert_eq!(
            sheet.sites.iter().map(String::as_str).collect::<Vec<_>>(),
            ["example.com", "other.org"]
        );
        assert!(sheet.globs.contains("*://entity.*"), "{sheet:?}");
        assert!(!sheet.applies_to("https://www.example.com/page"));
        assert!(!sheet.applies_to("http://other.org:8080/"));
        assert!(!sheet.applies_to("https://entity.co.uk/"));
        assert!(sheet.applies_to("https://news.test/"));
        assert!(sheet.applies_to("https://plain.test/"));
        assert!(sheet.applies_to("https://notexample.com/"));
        assert!(!sheet.applies_to("chrome://newtab/"));
    }

    #[test]
    fn generichide_exceptions_leave_their_pages_out() {
        let read = sheet(
            "@@||mail.test^$generichide\n@@://localhost:$generichide\n\
             @@$generichide,domain=a.test|b.test\n@@||c.test^$image\n",
        );
        assert!(!read.applies_to("https://mail.test/inbox"));
        assert!(!read.applies_to("http://localhost:3000/"));
        assert!(!read.applies_to("https://sub.a.test/"));
        assert!(read.applies_to("https://c.test/"));
        assert!(read.applies_to("http://localhost/"));
        assert!(!read.nowhere);
        assert!(sheet("@@*$generichide\n").nowhere);
    }

    #[test]
    fn the_content_script_leaves_out_what_the_server_sends_instead() {
        let sheet = sheet("example.com#@#AMP-AD\n@@://localhost:$generichide\n");
        let entry = sheet.content_script("generic.css").expect("an entry");
        assert_eq!(entry["exclude_matches"], serde_json::json!(["*://*.example.com/*"]));
        assert_eq!(entry["exclude_globs"], serde_json::json!(["*://localhost:*"]));
        assert_eq!(entry["css"], serde_json::json!(["generic.css"]));
        assert!(entry.get("js").is_none());
    }

    #[test]
    fn globs_match_as_chromiums_do() {
        assert!(glob_matches("*://localhost:*", "http://localhost:3000/"));
        assert!(!glob_matches("*://localhost:*", "http://localhost/"));
        assert!(glob_matches("a?c*", "abcdef"));
        assert!(!glob_matches("a?c", "abcd"));
        assert!(glob_matches("*x*y", "axxxy"));
    }
}
