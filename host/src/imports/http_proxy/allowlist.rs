//! `security.allowed_endpoints`: which URLs a swarm's requests may go to.
//!
//! Pure: a pattern is `scheme://host[:port][/path-prefix]`, where host is a
//! name, `*.` followed by a name (any subdomain: one or more non-empty
//! labels before the name, not the name itself), an IPv4 address or a
//! bracketed IPv6 address. The wildcard is read from the parsed host, so
//! `*.` elsewhere in a pattern is no wildcard. The port defaults to the
//! scheme's. A URL matches when scheme, host and port are equal and its
//! path starts with the prefix at a segment boundary. URLs are parsed with
//! the WHATWG rules (`url` crate), so `..` segments, percent-encoded dots
//! and numeric IPv4 spellings (`2130706433`, `0x7f000001`) are normalised
//! before matching.

use std::net::IpAddr;

use url::{Host, Url};

/// One allowed endpoint pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// The host pattern.
    pub host: HostPattern,
    /// The port (explicit, or the scheme's default).
    pub port: u16,
    /// Path prefix, always starting with `/`.
    pub path_prefix: String,
    /// The pattern as written in the contract.
    pub text: String,
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Exactly this name (lower case).
    Name(String),
    /// Any subdomain of this name.
    AnySubdomainOf(String),
    /// Exactly this address.
    Ip(IpAddr),
}

impl Endpoint {
    /// Parse a pattern from a contract.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{text:?}: scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?}: must not contain user info"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{text:?}: must not contain a query or fragment"));
        }
        // The URL parser takes `*` in a name as it is; a leading `*.` label
        // is the wildcard, wherever the pattern spells its slashes.
        let host = match url.host() {
            Some(Host::Domain(d)) => match d.strip_prefix("*.") {
                Some(name) if proper_name(name) => {
                    HostPattern::AnySubdomainOf(name.to_ascii_lowercase())
                }
                Some(_) => return Err(format!("{text:?}: a wildcard needs a name after `*.`")),
                None => HostPattern::Name(d.to_ascii_lowercase()),
            },
            Some(Host::Ipv4(ip)) => HostPattern::Ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => HostPattern::Ip(canonical(IpAddr::V6(ip))),
            None => return Err(format!("{text:?}: invalid host")),
        };
        Ok(Self {
            port: url
                .port_or_known_default()
                .ok_or_else(|| format!("{text:?}: no port"))?,
            path_prefix: url.path().to_string(),
            scheme,
            host,
            text: text.to_string(),
        })
    }

    /// Whether `url` is within this endpoint.
    pub(crate) fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.port_or_known_default() != Some(self.port) {
            return false;
        }
        let host_ok = match (&self.host, url.host()) {
            (HostPattern::Name(n), Some(Host::Domain(d))) => d.eq_ignore_ascii_case(n),
            (HostPattern::AnySubdomainOf(n), Some(Host::Domain(d))) => {
                let d = d.to_ascii_lowercase();
                d.strip_suffix(n.as_str())
                    .and_then(|sub| sub.strip_suffix('.'))
                    .is_some_and(|sub| sub.split('.').all(|label| !label.is_empty()))
            }
            (HostPattern::Ip(ip), Some(Host::Ipv4(v4))) => *ip == IpAddr::V4(v4),
            (HostPattern::Ip(ip), Some(Host::Ipv6(v6))) => *ip == canonical(IpAddr::V6(v6)),
            _ => false,
        };
        host_ok && path_within(url.path(), &self.path_prefix)
    }

    /// Whether this endpoint names `ip` literally.
    pub(crate) fn names_ip(&self, ip: IpAddr) -> bool {
        matches!(self.host, HostPattern::Ip(mine) if mine == canonical(ip))
    }
}

/// Whether `name` is a name a wildcard can stand before: one or more
/// labels, none of them empty but a final one (a trailing dot, the root).
fn proper_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.split('.').all(|label| !label.is_empty())
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn path_within(path: &str, prefix: &str) -> bool {
    if prefix == "/" || path == prefix {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// A swarm's allowed endpoints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    endpoints: Vec<Endpoint>,
}

impl Allowlist {
    /// Parse every pattern of a contract.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, String> {
        Ok(Self {
            endpoints: patterns
                .iter()
                .map(|p| Endpoint::parse(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The first endpoint `url` falls within.
    pub(crate) fn find(&self, url: &Url) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.matches(url))
    }

    /// Whether an endpoint that admits `url` names `ip` literally: the only
    /// way past the SSRF guard. An address named for one endpoint opens no
    /// other URL that happens to resolve to it.
    pub(crate) fn names_ip_for(&self, url: &Url, ip: IpAddr) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.matches(url) && e.names_ip(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        Endpoint::parse(pattern)
            .unwrap()
            .matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn scheme_host_port_and_path_must_all_match() {
        let p = "https://api.example.com/v1/";
        assert!(allows(p, "https://api.example.com/v1/users?id=3"));
        assert!(allows(p, "https://API.Example.com:443/v1/"));
        assert!(!allows(p, "http://api.example.com/v1/users"), "scheme");
        assert!(!allows(p, "https://api.example.com:8443/v1/users"), "port");
        assert!(!allows(p, "https://evil.example.com/v1/users"), "host");
        assert!(
            !allows(p, "https://api.example.com.evil.net/v1/"),
            "suffix trick"
        );
        assert!(!allows(p, "https://api.example.com/v2/users"), "path");
        assert!(
            !allows(p, "https://api.example.com/v1"),
            "prefix ends in a slash"
        );
    }

    #[test]
    fn path_prefixes_stop_at_segment_boundaries() {
        let p = "http://h.example/api";
        assert!(allows(p, "http://h.example/api"));
        assert!(allows(p, "http://h.example/api/x"));
        assert!(!allows(p, "http://h.example/apix"));
        assert!(allows("http://h.example", "http://h.example/anything"));
    }

    #[test]
    fn dot_segments_are_resolved_before_matching() {
        let p = "http://h.example/public/";
        assert!(!allows(p, "http://h.example/public/../admin"));
        assert!(!allows(p, "http://h.example/public/%2e%2e/admin"));
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let p = "https://*.example.org";
        assert!(allows(p, "https://a.example.org/"));
        assert!(allows(p, "https://b.a.example.org/x"));
        assert!(!allows(p, "https://example.org/"));
        assert!(!allows(p, "https://badexample.org/"));
        // Empty labels make no subdomain.
        assert!(!allows(p, "https://.example.org/"));
        assert!(!allows(p, "https://..example.org/"));
        assert!(!allows(p, "https://.a.example.org/"));
        assert!(!allows(p, "https://a..example.org/"));
        assert!(allows("https://*.example.org.", "https://a.example.org./"));
        assert!(!allows("https://*.example.org.", "https://a.example.org/"));
    }

    #[test]
    fn the_wildcard_is_read_from_the_parsed_host() {
        // `://*.` in the path makes no wildcard.
        let exact = Endpoint::parse("https://example.com/x://*.y/").unwrap();
        assert_eq!(exact.host, HostPattern::Name("example.com".into()));
        // However the slashes are spelled, a leading `*.` is the wildcard.
        for spelling in ["https:*.example.org", "https:\\\\*.example.org/"] {
            let wild = Endpoint::parse(spelling).unwrap();
            assert_eq!(
                wild.host,
                HostPattern::AnySubdomainOf("example.org".into()),
                "{spelling}"
            );
        }
    }

    #[test]
    fn ip_patterns_match_every_spelling_of_the_address() {
        let p = "http://127.0.0.1:8080/";
        assert!(allows(p, "http://127.0.0.1:8080/x"));
        assert!(allows(p, "http://2130706433:8080/x"), "decimal");
        assert!(allows(p, "http://0x7f000001:8080/x"), "hex");
        assert!(!allows(p, "http://127.0.0.2:8080/x"));
        let e = Endpoint::parse(p).unwrap();
        assert!(e.names_ip("127.0.0.1".parse().unwrap()));
        assert!(
            e.names_ip("::ffff:127.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!e.names_ip("127.0.0.2".parse().unwrap()));
        assert!(allows("http://[::1]:9/", "http://[0:0:0:0:0:0:0:1]:9/"));
        // An IPv4-mapped pattern is the IPv4 address it maps.
        let mapped = Endpoint::parse("http://[::ffff:127.0.0.1]:9/").unwrap();
        assert!(mapped.names_ip("127.0.0.1".parse().unwrap()));
        assert!(allows(
            "http://[::ffff:127.0.0.1]:9/",
            "http://127.0.0.1:9/"
        ));
    }

    #[test]
    fn a_literal_address_opens_only_the_endpoints_that_name_it() {
        let list = Allowlist::new(&[
            "http://127.0.0.1:9999/".to_string(),
            "http://api.example.com:9999/".to_string(),
        ])
        .unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let literal = Url::parse("http://127.0.0.1:9999/x").unwrap();
        let named = Url::parse("http://api.example.com:9999/x").unwrap();
        assert!(list.names_ip_for(&literal, lo));
        // A name that resolves to the listed address is still guarded.
        assert!(!list.names_ip_for(&named, lo));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "https://x.example/?q=1",
            "not a url",
            "https://*.127.0.0.1/",
            "https://*./",
            "https://*..example.com/",
            "https://*.example..com/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
