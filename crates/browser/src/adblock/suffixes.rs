//! Which part of a host name is its site (the registrable domain: one label
//! more than its public suffix), for the engine's first-party and `domain=`
//! checks. The rules come from the Public Suffix List file the filter lists'
//! package ships (`effective_tld_names.dat`), read at the first compile:
//! the engine holds one resolver per process.
//!
//! Without the file every host's site is its last two labels, which is
//! right for most hosts and wrong for suffixes such as `co.uk`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use adblock::url_parser::ResolvesDomain;

/// The rules of a Public Suffix List.
#[derive(Debug, Default)]
pub(super) struct SuffixList {
    /// `com`, `co.uk`: suffixes as they are.
    plain: HashSet<String>,
    /// `*.ck` is kept as `ck`: every label under it is a suffix.
    wildcard: HashSet<String>,
    /// `!www.ck` is kept as `www.ck`: not a suffix, despite a wildcard.
    exception: HashSet<String>,
}

impl SuffixList {
    /// Reads the list's text (comments start with `//`; a rule is the first
    /// word of a line).
    pub(super) fn parse(text: &str) -> Self {
        let mut list = Self::default();
        for line in text.lines() {
            let Some(rule) = line.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let rule = rule.to_ascii_lowercase();
            if let Some(rest) = rule.strip_prefix("*.") {
                list.wildcard.insert(rest.to_owned());
            } else if let Some(rest) = rule.strip_prefix('!') {
                list.exception.insert(rest.to_owned());
            } else {
                list.plain.insert(rule);
            }
        }
        list
    }

    /// The byte offset in `host` where its public suffix starts.
    fn suffix_start(&self, host: &str) -> usize {
        // Candidates from the longest (the whole host) to the shortest.
        let mut starts = vec![0];
        starts.extend(host.match_indices('.').map(|(dot, _)| dot + 1));
        for (index, &start) in starts.iter().enumerate() {
            let candidate = &host[start..];
            if self.exception.contains(candidate) {
                // The suffix is what follows the exception's first label.
                return starts.get(index + 1).copied().unwrap_or(host.len());
            }
            if self.plain.contains(candidate) {
                return start;
            }
            if let Some(&parent) = starts.get(index + 1) {
                if self.wildcard.contains(&host[parent..]) {
                    return start;
                }
            }
        }
        // The implicit rule `*`: the last label is a suffix.
        starts.last().copied().unwrap_or(0)
    }
}

impl ResolvesDomain for SuffixList {
    fn get_host_domain(&self, host: &str) -> (usize, usize) {
        if host.is_empty() {
            return (0, 0);
        }
        let whole = (0, host.len());
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return whole;
        }
        let lower = host.to_ascii_lowercase();
        let suffix = self.suffix_start(&lower);
        if suffix == 0 {
            // The host is a public suffix itself.
            return whole;
        }
        // One label more than the suffix: back from the dot before it.
        let before = &lower[..suffix - 1];
        let start = before.rfind('.').map_or(0, |dot| dot + 1);
        (start, host.len())
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Gives the engine its resolver, once per process (later calls keep the
/// first one).
pub(super) fn install(path: Option<&Path>) {
    INSTALLED.get_or_init(|| {
        let list = match path.map(std::fs::read_to_string) {
            Some(Ok(text)) => SuffixList::parse(&text),
            Some(Err(error)) => {
                tracing::warn!(%error, "the public suffix list cannot be read; a host's site is its last two labels");
                SuffixList::default()
            }
            None => SuffixList::default(),
        };
        // Set only here, under the `OnceLock`, so it cannot be set already.
        let _ = adblock::url_parser::set_domain_resolver(Box::new(list));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_is_one_label_more_than_the_public_suffix() {
        let list = SuffixList::parse("// comment\ncom\nuk\nco.uk\n*.ck\n!www.ck\n");
        let site = |host: &str| {
            let (start, end) = list.get_host_domain(host);
            host[start..end].to_owned()
        };
        assert_eq!(site("ads.news.example.com"), "example.com");
        assert_eq!(site("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(site("a.b.foo.ck"), "b.foo.ck");
        assert_eq!(site("www.ck"), "www.ck");
        assert_eq!(site("x.www.ck"), "www.ck");
        assert_eq!(site("example.test"), "example.test");
        assert_eq!(site("com"), "com");
        assert_eq!(site("127.0.0.1"), "127.0.0.1");
        assert_eq!(site("localhost"), "localhost");
        assert_eq!(list.get_host_domain(""), (0, 0));
    }
}
