//! Private networks: which hosts count as private (loopback, private and
//! link-local ranges, `localhost`), and the Chromium host-resolver rules
//! that keep a browser from reaching them when the server blocks them
//! (`ANCHORAGE_BLOCK_PRIVATE_NETWORKS`).
//!
//! The rules match host names and address literals as written in a URL;
//! they cannot see a public name that resolves to a private address (DNS
//! rebinding). Stopping that takes a network namespace or a firewall.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Patterns of private address literals and names, in Chromium's
/// host-resolver-rules syntax.
const PRIVATE_PATTERNS: &[&str] = &[
    "localhost",
    "*.localhost",
    "0.*",
    "10.*",
    "127.*",
    "169.254.*",
    "192.168.*",
    "172.16.*",
    "172.17.*",
    "172.18.*",
    "172.19.*",
    "172.20.*",
    "172.21.*",
    "172.22.*",
    "172.23.*",
    "172.24.*",
    "172.25.*",
    "172.26.*",
    "172.27.*",
    "172.28.*",
    "172.29.*",
    "172.30.*",
    "172.31.*",
    "[::]",
    "[::1]",
    "[fc*",
    "[fd*",
    "[fe80:*",
    "[::ffff:*",
];

/// The `--host-resolver-rules` value that makes every private host, and
/// each of `extra_hosts` (the server's own names), fail to resolve.
pub fn blocking_rules(extra_hosts: &[String]) -> String {
    PRIVATE_PATTERNS
        .iter()
        .copied()
        .chain(extra_hosts.iter().map(String::as_str))
        .map(|pattern| format!("MAP {pattern} ~NOTFOUND"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn private_v4(address: Ipv4Addr) -> bool {
    address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_unspecified()
        || address.octets()[0] == 0
}

fn private_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    address.is_loopback()
        || address.is_unspecified()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || address.to_ipv4_mapped().is_some_and(private_v4)
}

/// Whether an address is loopback, private, link-local or unspecified.
pub fn is_private_ip(address: std::net::IpAddr) -> bool {
    match address {
        std::net::IpAddr::V4(address) => private_v4(address),
        std::net::IpAddr::V6(address) => private_v6(address),
    }
}

/// Whether a URL's host is private by its name or literal address.
pub fn is_private_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(address)) => private_v4(address),
        Some(Host::Ipv6(address)) => private_v6(address),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(url: &str) -> bool {
        is_private_url(&Url::parse(url).expect("url"))
    }

    #[test]
    fn private_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://localhost:3000/",
            "http://api.localhost./",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
        ] {
            assert!(private(url), "{url}");
        }
        for url in [
            "https://example.com/",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://[2001:db8::1]/",
        ] {
            assert!(!private(url), "{url}");
        }
    }

    #[test]
    fn rules_cover_the_patterns_and_the_extra_hosts() {
        let rules = blocking_rules(&["browsers.example".to_owned()]);
        assert!(rules.starts_with("MAP localhost ~NOTFOUND, "));
        assert!(rules.contains("MAP 127.* ~NOTFOUND"));
        assert!(rules.ends_with("MAP browsers.example ~NOTFOUND"));
    }
}
