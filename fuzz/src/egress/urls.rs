//! The reference for the allowlist, and the URLs the target tries on it.
//!
//! The reference reads a pattern and a URL through the `url` crate's parsed
//! parts only — scheme, `host_str`, `port`, `path_segments` — and decides
//! on them by its own rules: the scheme and the port (explicit, or the
//! scheme's default) equal; the host equal as the URL parser canonicalised
//! it (lower case, IDNA, an address as the address it names, an
//! IPv4-mapped IPv6 address as its IPv4 address); a wildcard `*.name`
//! covering names with one or more non-empty labels before `name`'s; the
//! path's segments starting with the prefix's, and going past a prefix that
//! ends in a slash. It never looks at the host's `HostPattern` or path
//! code.
//!
//! The URLs start from the allowed patterns and from every URL spelling the
//! hostile tests use, changed the ways an attacker would spell an allowed
//! endpoint or hide another behind it: case, a trailing dot, user info
//! (`https://allowed@evil/`, `https://evil#@allowed/`), backslashes, tabs
//! and newlines inside, percent-encoded host and path bytes, dot segments,
//! explicit and zero-padded ports, every IPv4 spelling (decimal, hex,
//! octal, short), IPv6 forms (expanded, mapped, compatible, zone ids),
//! suffixes (`allowed.evil.net`, `evilallowed`), full-width dots; and
//! plain random ASCII.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use url::Url;

use super::ranges;

/// The host part of a pattern, as the reference reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefHost {
    /// Exactly this (canonical) name.
    Name(String),
    /// One or more non-empty labels, then these labels.
    Under(Vec<String>),
    /// This address (an IPv4-mapped one as its IPv4 address).
    Ip(IpAddr),
}

/// An allowed endpoint, as the reference reads it.
#[derive(Debug, Clone)]
pub(crate) struct RefEndpoint {
    scheme: String,
    host: RefHost,
    port: u16,
    /// The prefix's path segments, without the empty one a final slash
    /// leaves.
    prefix: Vec<String>,
    /// Whether the prefix ended in a slash: then a URL needs a segment
    /// past it.
    dir: bool,
}

/// The host of a parsed URL, as the reference reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlHost {
    Name(String),
    /// The address as written, and as judged (IPv4-mapped as IPv4).
    Ip {
        literal: IpAddr,
        canonical: IpAddr,
    },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.octets() {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => {
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            _ => ip,
        },
        v4 => v4,
    }
}

/// The host of `url` from its serialised host text.
pub(crate) fn url_host(url: &Url) -> Option<UrlHost> {
    let text = url.host_str()?;
    let literal = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?),
        None => match text.parse::<Ipv4Addr>() {
            Ok(v4) => IpAddr::V4(v4),
            Err(_) => return Some(UrlHost::Name(text.to_string())),
        },
    };
    Some(UrlHost::Ip {
        literal,
        canonical: canonical(literal),
    })
}

/// A name's labels are proper when none is empty but a final one (the
/// root, a trailing dot), and there is at least one before it.
fn proper(labels: &[String]) -> bool {
    let body = match labels.split_last() {
        Some((last, body)) if last.is_empty() => body,
        _ => labels,
    };
    !body.is_empty() && body.iter().all(|l| !l.is_empty())
}

impl RefEndpoint {
    /// Read a pattern; `None` when the reference would refuse it.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let url = Url::parse(text).ok()?;
        let scheme = url.scheme().to_string();
        let default = default_port(&scheme)?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        let host = match url_host(&url)? {
            UrlHost::Name(name) => match name.strip_prefix("*.") {
                Some(base) => {
                    let labels: Vec<String> = base.split('.').map(str::to_string).collect();
                    if !proper(&labels) {
                        return None;
                    }
                    RefHost::Under(labels)
                }
                None => RefHost::Name(name),
            },
            UrlHost::Ip { canonical, .. } => RefHost::Ip(canonical),
        };
        let mut prefix: Vec<String> = url.path_segments()?.map(str::to_string).collect();
        let dir = prefix.last().is_some_and(String::is_empty);
        if dir {
            prefix.pop();
        }
        Some(Self {
            port: url.port().unwrap_or(default),
            scheme,
            host,
            prefix,
            dir,
        })
    }

    /// Whether `url` is within this endpoint.
    pub(crate) fn matches(&self, url: &Url) -> bool {
        let Some(default) = default_port(url.scheme()) else {
            return false;
        };
        if url.scheme() != self.scheme || url.port().unwrap_or(default) != self.port {
            return false;
        }
        let host_ok = match (&self.host, url_host(url)) {
            (RefHost::Name(mine), Some(UrlHost::Name(theirs))) => *mine == theirs,
            (RefHost::Under(base), Some(UrlHost::Name(theirs))) => {
                let labels: Vec<&str> = theirs.split('.').collect();
                labels.len() > base.len()
                    && labels[labels.len() - base.len()..] == base[..]
                    && labels[..labels.len() - base.len()]
                        .iter()
                        .all(|l| !l.is_empty())
            }
            (RefHost::Ip(mine), Some(UrlHost::Ip { canonical, .. })) => *mine == canonical,
            _ => false,
        };
        host_ok && self.path_within(url)
    }

    fn path_within(&self, url: &Url) -> bool {
        let Some(segments) = url.path_segments() else {
            return false;
        };
        let segments: Vec<&str> = segments.collect();
        segments.len() >= self.prefix.len() + usize::from(self.dir)
            && segments[..self.prefix.len()] == self.prefix[..]
    }

    /// The address this endpoint names, if it names one.
    pub(crate) fn address(&self) -> Option<IpAddr> {
        match self.host {
            RefHost::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    /// Whether this endpoint names `ip` (as judged) literally.
    pub(crate) fn names(&self, ip: IpAddr) -> bool {
        self.host == RefHost::Ip(canonical(ip))
    }
}

/// Patterns from the contracts, the host's tests and the hostile tests.
pub(crate) const PATTERNS: &[&str] = &[
    "https://api.example.com/v1/",
    "http://127.0.0.1:9999/v1/",
    "http://localhost:9999/v1/",
    "http://*.example.com/",
    "http://127.0.0.1:1/",
    "https://127.0.0.1:9999/v1/",
    "http://h.example/api",
    "http://h.example/public/",
    "http://h.example",
    "https://*.example.org",
    "http://127.0.0.1:8080/",
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]:9/",
    "https://gatekeeper.example:443/api/",
    "http://169.254.169.254/latest/",
    "https://[2001:db8::1]/",
    "https://[fd00:ec2::254]/",
    "https://8.8.8.8/dns-query",
    "https://*.xn--bcher-kva.example/",
    "https://API.Example.COM:443/V1/",
];

/// Patterns the host may read differently from the reference: a wildcard
/// over an empty or malformed name, `://*.` outside the host.
const ODD_PATTERNS: &[&str] = &[
    "https://*./",
    "https://*..example.com/",
    "https://*.example..com/",
    "https://*.example.com./",
    "https://*.*.example.com/",
    "https://example.com/x://*.y/",
    "https://*.127.0.0.1/",
    "https://*.0x7f.1/",
    "https://*/",
    "https://*.com/",
    "https://*.wildcard.example/",
    "https://wildcard.example/",
    "http://*.example.com:0443/",
    "https://[::ffff:0:7f00:1]/",
    "https://[::7f00:1]/",
    "https:*.example.org",
    "https:\\\\*.example.org/",
    "HTTPS://*.EXAMPLE.ORG",
    "https://*.example.org/x://*.y/",
];

/// URLs the hostile tests send (their port is 9999 here), with the
/// allowlist each runs against.
pub(crate) const SEEDS: &[(&[&str], &str)] = &[
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://127.0.0.1:9999/v1/hello",
    ),
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://localhost:9999/v1/hello",
    ),
    (
        &["http://127.0.0.1:9999/v1/"],
        "https://127.0.0.1:9999/v1/hello",
    ),
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://127.0.0.1:10000/v1/hello",
    ),
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://127.0.0.1:9999/admin",
    ),
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://127.0.0.1:9999/v1/../admin",
    ),
    (&["http://127.0.0.1:9999/v1/"], "file:///etc/passwd"),
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://2130706433:9999/v1/hello",
    ),
    (
        &["http://127.0.0.1:9999/v1/"],
        "http://exa mple.com/\u{1b}[2K\u{202e}x?token=abc#frag",
    ),
    (
        &[
            "http://localhost:9999/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        "http://127.0.0.1:9999/v1/hello",
    ),
    (
        &[
            "http://localhost:9999/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        "http://[::1]:9999/v1/hello",
    ),
    (
        &[
            "http://localhost:9999/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        "http://169.254.169.254/latest/meta-data/",
    ),
    (
        &[
            "http://localhost:9999/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        "http://0x7f000001:9999/v1/hello",
    ),
    (
        &[
            "http://localhost:9999/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        "http://[::ffff:127.0.0.1]:9999/v1/hello",
    ),
    (
        &[
            "http://localhost:9999/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        "http://localhost:9999/v1/hello",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://api.example.com/v1/users?id=3",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://API.Example.com:443/v1/",
    ),
    (
        &["https://api.example.com/v1/"],
        "http://api.example.com/v1/users",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://api.example.com:8443/v1/users",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://evil.example.com/v1/users",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://api.example.com.evil.net/v1/",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://api.example.com/v2/users",
    ),
    (
        &["https://api.example.com/v1/"],
        "https://api.example.com/v1",
    ),
    (&["http://h.example/api"], "http://h.example/api"),
    (&["http://h.example/api"], "http://h.example/api/x"),
    (&["http://h.example/api"], "http://h.example/apix"),
    (&["http://h.example"], "http://h.example/anything"),
    (
        &["http://h.example/public/"],
        "http://h.example/public/../admin",
    ),
    (
        &["http://h.example/public/"],
        "http://h.example/public/%2e%2e/admin",
    ),
    (&["https://*.example.org"], "https://a.example.org/"),
    (&["https://*.example.org"], "https://b.a.example.org/x"),
    (&["https://*.example.org"], "https://example.org/"),
    (&["https://*.example.org"], "https://badexample.org/"),
    (&["http://127.0.0.1:8080/"], "http://127.0.0.1:8080/x"),
    (&["http://127.0.0.1:8080/"], "http://2130706433:8080/x"),
    (&["http://127.0.0.1:8080/"], "http://0x7f000001:8080/x"),
    (&["http://127.0.0.1:8080/"], "http://127.0.0.2:8080/x"),
    (&["http://[::1]:9/"], "http://[0:0:0:0:0:0:0:1]:9/"),
    (&["http://[::ffff:127.0.0.1]:9/"], "http://127.0.0.1:9/"),
    (
        &["http://127.0.0.1:9999/", "http://api.example.com:9999/"],
        "http://127.0.0.1:9999/x",
    ),
    (
        &["http://127.0.0.1:9999/", "http://api.example.com:9999/"],
        "http://api.example.com:9999/x",
    ),
];

/// A pattern: one of the known ones, an odd one, or put together from a
/// scheme, a host (name, wildcard, IPv4, IPv6), a port and a path.
pub(crate) fn pattern() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(vec![
        "api.example.com",
        "example.org",
        "a.b.example.net",
        "localhost",
        "xn--bcher-kva.example",
        "h.example",
        "x",
    ]);
    let host = prop_oneof![
        3 => name.clone().prop_map(str::to_string),
        2 => name.prop_map(|n| format!("*.{n}")),
        2 => ranges::special_v4().prop_map(|v4| v4.to_string()),
        2 => ranges::special_v6().prop_map(|v6| format!("[{v6}]")),
    ];
    let port = prop_oneof![
        3 => Just(String::new()),
        1 => Just(":80".to_string()),
        1 => Just(":443".to_string()),
        1 => Just(":8080".to_string()),
        1 => any::<u16>().prop_map(|p| format!(":{p}")),
    ];
    let path = proptest::sample::select(vec!["", "/", "/v1/", "/v1", "/api/v2/", "/a/b", "/%7Eu/"]);
    let scheme = proptest::sample::select(vec!["http", "https"]);
    prop_oneof![
        3 => proptest::sample::select(PATTERNS).prop_map(str::to_string),
        1 => proptest::sample::select(ODD_PATTERNS).prop_map(str::to_string),
        6 => (scheme, host, port, path).prop_map(|(s, h, p, path)| format!("{s}://{h}{p}{path}")),
    ]
}

/// A URL split into the parts the changes work on; joined, the parts are
/// the URL's text.
#[derive(Debug, Clone)]
struct Parts {
    scheme: String,
    sep: String,
    userinfo: String,
    host: String,
    port: String,
    path: String,
    tail: String,
}

impl Parts {
    /// Split `text` as a pattern or URL is commonly written; a wildcard's
    /// `*` becomes `label`.
    fn split(text: &str, label: &str) -> Self {
        let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let split_at = match hostport.rfind(']') {
            Some(end) => hostport[end..].find(':').map(|c| end + c),
            None => hostport.rfind(':'),
        };
        let (host, port) = match split_at {
            Some(at) => hostport.split_at(at),
            None => (hostport, ""),
        };
        let (path, tail) = match path.find(['?', '#']) {
            Some(at) => path.split_at(at),
            None => (path, ""),
        };
        let host = match host.strip_prefix('*') {
            Some(rest) => format!("{label}{rest}"),
            None => host.to_string(),
        };
        Self {
            scheme: scheme.to_string(),
            sep: if text.contains("://") { "://" } else { "" }.to_string(),
            userinfo: userinfo.to_string(),
            host,
            port: port.to_string(),
            path: path.to_string(),
            tail: tail.to_string(),
        }
    }

    fn join(&self) -> String {
        format!(
            "{}{}{}{}{}{}{}",
            self.scheme, self.sep, self.userinfo, self.host, self.port, self.path, self.tail
        )
    }
}

/// One hostile change to a URL.
#[derive(Debug, Clone)]
enum Edit {
    FlipCase(u64),
    TrailingDot,
    Subdomain(&'static str),
    Suffix(usize),
    UserInfo(usize),
    Backslashes(u64),
    PercentHost(u64),
    PercentPath(u64),
    DotSegment(usize, usize),
    Port(usize, u16),
    V4Spelling(usize),
    V6Spelling(usize),
    Scheme(usize),
    Tail(usize),
    WideDots(usize),
    Segment(String),
    /// Text spliced in anywhere, after the parts are joined.
    Splice(usize, &'static str),
}

const SUFFIXES: &[&str] = &[".evil.net", "evil", "-evil", "evil.", ".", ".."];
const DOT_SEGMENTS: &[&str] = &[
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%2e",
    "...",
    "..;",
    "..%2f",
    "%252e%252e",
    "..\\",
];
const SCHEMES: &[&str] = &[
    "http",
    "https",
    "HTTPS",
    "hTtP",
    "ws",
    "wss",
    "ftp",
    "file",
    "",
    "https:",
    "javascript",
];
const TAILS: &[&str] = &[
    "?x=1",
    "#frag",
    "?/v1/",
    "#/../",
    "?@evil.example",
    "/..",
    "/x",
    "#",
    "?",
    "/%2e%2e",
    "//",
];
const SPLICES: &[&str] = &[
    "\t",
    "\n",
    "\r",
    " ",
    "@",
    "#",
    "?",
    "\\",
    "/",
    ":",
    "%",
    ".",
    "[",
    "]",
    "*",
    "\u{0}",
    "%2e",
    "%00",
    "\u{3002}",
    "\u{ff0e}",
    "%40",
    "evil.example@",
    "\u{200b}",
    "\u{ad}",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<u64>().prop_map(Edit::FlipCase),
        Just(Edit::TrailingDot),
        proptest::sample::select(vec!["a", "evil", "", "*", "a.b", "xn--80ak6aa92e"])
            .prop_map(Edit::Subdomain),
        any::<usize>().prop_map(Edit::Suffix),
        any::<usize>().prop_map(Edit::UserInfo),
        any::<u64>().prop_map(Edit::Backslashes),
        any::<u64>().prop_map(Edit::PercentHost),
        any::<u64>().prop_map(Edit::PercentPath),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::DotSegment(a, b)),
        (any::<usize>(), any::<u16>()).prop_map(|(k, p)| Edit::Port(k, p)),
        any::<usize>().prop_map(Edit::V4Spelling),
        any::<usize>().prop_map(Edit::V6Spelling),
        any::<usize>().prop_map(Edit::Scheme),
        any::<usize>().prop_map(Edit::Tail),
        any::<usize>().prop_map(Edit::WideDots),
        "[a-zA-Z0-9%._~-]{0,8}".prop_map(Edit::Segment),
        (any::<usize>(), proptest::sample::select(SPLICES)).prop_map(|(a, s)| Edit::Splice(a, s)),
    ]
}

fn pick<T: Copy>(list: &[T], i: usize) -> T {
    list[i % list.len()]
}

/// Percent-encode the characters of `text` that `mask` picks (cycling).
fn percent(text: &str, mask: u64) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if mask >> (i % 64) & 1 == 1 && c.is_ascii() {
            if i % 3 == 0 {
                out.push_str(&format!("%{:02x}", c as u8));
            } else {
                out.push_str(&format!("%{:02X}", c as u8));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Ways to write an IPv4 address in a URL's host.
fn v4_spelling(ip: Ipv4Addr, kind: usize) -> String {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    match kind % 12 {
        0 => n.to_string(),
        1 => format!("0x{n:x}"),
        2 => format!("0X{n:08X}"),
        3 => format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        4 => format!("{a}.{}", n & 0x00ff_ffff),
        5 => format!("{a}.{b}.{}", n & 0xffff),
        6 => format!("0x{a:x}.{b}.0{c:o}.{d}"),
        7 => format!("{a}.{b}.{c}.{d}."),
        8 => format!("{a:03}.{b:03}.{c:03}.{d:03}"),
        9 => format!("0x{a:02x}.0x{b:02x}.0x{c:02x}.0x{d:02x}"),
        10 => format!("{}", u64::from(n) + (1u64 << 32)),
        _ => format!("{a}.{b}.{c}.{}", u32::from(d) + 256),
    }
}

/// Ways to write an IPv6 address (or an IPv4 one as IPv6) in a URL's host.
fn v6_spelling(ip: IpAddr, kind: usize) -> String {
    let v6 = match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => match kind % 4 {
            0 => v4.to_ipv6_mapped(),
            1 => v4.to_ipv6_compatible(),
            2 => Ipv6Addr::from(0x0064_ff9b_u128 << 96 | u128::from(u32::from(v4))),
            _ => Ipv6Addr::from(0x2002_u128 << 112 | u128::from(u32::from(v4)) << 80),
        },
    };
    let s = v6.segments();
    let full = s.map(|x| format!("{x:x}")).join(":");
    let [.., a, b, c, d] = v6.octets();
    match kind % 9 {
        0 => format!("[{v6}]"),
        1 => format!("[{full}]"),
        2 => format!("[{}]", s.map(|x| format!("{x:04X}")).join(":")),
        3 => {
            let high: Vec<String> = s[..6].iter().map(|x| format!("{x:x}")).collect();
            format!("[{}:{a}.{b}.{c}.{d}]", high.join(":"))
        }
        4 => format!("[{v6}%25eth0]"),
        5 => format!("[{v6}%eth0]"),
        6 => format!("[::ffff:{a}.{b}.{c}.{d}]"),
        7 => format!("{v6}"),
        _ => format!("[{}]", v6.to_string().to_uppercase()),
    }
}

fn apply(parts: &mut Parts, edit: &Edit) {
    match edit {
        Edit::FlipCase(mask) => {
            parts.host = parts
                .host
                .chars()
                .enumerate()
                .map(|(i, c)| match mask >> (i % 64) & 1 {
                    1 if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
                    1 => c.to_ascii_lowercase(),
                    _ => c,
                })
                .collect();
        }
        Edit::TrailingDot => parts.host.push('.'),
        Edit::Subdomain(label) => parts.host = format!("{label}.{}", parts.host),
        Edit::Suffix(i) => {
            let suffix = pick(SUFFIXES, *i);
            parts.host = match i % 2 {
                0 => format!("{}{suffix}", parts.host),
                _ => format!("{suffix}{}", parts.host),
            };
        }
        Edit::UserInfo(i) => {
            let allowed = format!("{}{}", parts.host, parts.port);
            match i % 8 {
                0 => {
                    parts.userinfo = format!("{allowed}@");
                    parts.host = "evil.example".into();
                    parts.port.clear();
                }
                1 => parts.host = format!("evil.example#@{}", parts.host),
                2 => parts.host = format!("evil.example\\@{}", parts.host),
                3 => parts.host = format!("evil.example?@{}", parts.host),
                4 => parts.host = format!("evil.example/@{}", parts.host),
                5 => {
                    parts.userinfo =
                        format!("{}:{}@", parts.host, parts.port.trim_start_matches(':'));
                    parts.host = "evil.example".into();
                }
                6 => parts.host = format!("{}%40evil.example", parts.host),
                _ => parts.userinfo = "user:pass@".into(),
            }
        }
        Edit::Backslashes(mask) => {
            if mask & 1 == 1 {
                parts.sep = parts.sep.replace('/', "\\");
            }
            parts.path = parts
                .path
                .chars()
                .enumerate()
                .map(|(i, c)| match (c, mask >> (1 + i % 63) & 1) {
                    ('/', 1) => '\\',
                    _ => c,
                })
                .collect();
        }
        Edit::PercentHost(mask) => parts.host = percent(&parts.host, *mask),
        Edit::PercentPath(mask) => parts.path = percent(&parts.path, *mask),
        Edit::DotSegment(at, kind) => {
            let mut segments: Vec<&str> = parts.path.split('/').collect();
            let at = 1 + at % segments.len().max(1);
            segments.insert(at.min(segments.len()), pick(DOT_SEGMENTS, *kind));
            parts.path = segments.join("/");
            if !parts.path.starts_with('/') {
                parts.path.insert(0, '/');
            }
        }
        Edit::Port(kind, random) => {
            parts.port = match kind % 11 {
                0 => String::new(),
                1 => ":".into(),
                2 => ":80".into(),
                3 => ":443".into(),
                4 => ":0443".into(),
                5 => ":00080".into(),
                6 => ":65536".into(),
                7 => ":0".into(),
                8 => format!(":{random}"),
                9 => format!(":0{}", parts.port.trim_start_matches(':')),
                _ => format!("{}0", parts.port),
            }
        }
        Edit::V4Spelling(kind) => {
            if let Ok(v4) = parts.host.parse::<Ipv4Addr>() {
                parts.host = v4_spelling(v4, *kind);
            }
        }
        Edit::V6Spelling(kind) => {
            let inner = parts.host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = inner.parse::<IpAddr>() {
                parts.host = v6_spelling(ip, *kind);
            }
        }
        Edit::Scheme(i) => {
            parts.scheme = pick(SCHEMES, *i).to_string();
            if i % 5 == 4 {
                parts.sep = pick(&["", ":", ":/", ":///", ":\\\\", "://\\", "//"], i / 5).into();
            }
        }
        Edit::Tail(i) => parts.tail.push_str(pick(TAILS, *i)),
        Edit::WideDots(i) => {
            let wide = pick(&["\u{3002}", "\u{ff0e}", "\u{ff61}"], *i);
            parts.host = match i % 2 {
                0 => parts.host.replace('.', wide),
                _ => parts.host.replacen('a', "\u{ff41}", 1),
            };
        }
        Edit::Segment(seg) => {
            if !parts.path.ends_with('/') {
                parts.path.push('/');
            }
            parts.path.push_str(seg);
        }
        Edit::Splice(..) => {}
    }
}

/// `base` (a pattern or a URL) with `edits` applied.
fn mutate(base: &str, label: &str, edits: &[Edit]) -> String {
    let mut parts = Parts::split(base, label);
    for edit in edits {
        apply(&mut parts, edit);
    }
    let mut text = parts.join();
    for edit in edits {
        if let Edit::Splice(at, what) = edit {
            let at = text.floor_char_boundary(at % (text.len() + 1));
            text.insert_str(at, what);
        }
    }
    text
}

/// A URL to try on `allow`: one of the patterns or a hostile test's URL,
/// changed; a test's URL as it is; or random ASCII.
pub(crate) fn url(allow: Vec<String>) -> impl Strategy<Value = String> {
    let n = allow.len();
    let from_pattern = (
        0..n,
        proptest::sample::select(vec!["a", "b.c", "", "A", "xn--nxasmq6b"]),
        proptest::collection::vec(edit(), 0..5),
    )
        .prop_map(move |(i, label, edits)| mutate(&allow[i], label, &edits));
    let from_seed = (
        proptest::sample::select(SEEDS),
        proptest::collection::vec(edit(), 0..4),
    )
        .prop_map(|((_, url), edits)| mutate(url, "a", &edits));
    prop_oneof![
        8 => from_pattern,
        2 => from_seed,
        1 => proptest::sample::select(SEEDS).prop_map(|(_, url)| url.to_string()),
        1 => "[ -~]{0,60}",
        1 => "(https?|HTTPS?)://[ -~]{0,50}",
        1 => "(https?://)?[a-z0-9.:@/\\\\#?%*\\[\\]\t]{0,40}",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        RefEndpoint::parse(pattern)
            .unwrap()
            .matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn the_reference_agrees_with_the_documented_examples() {
        let p = "https://api.example.com/v1/";
        assert!(allows(p, "https://API.Example.com:443/v1/users"));
        assert!(!allows(p, "https://api.example.com/v1"));
        assert!(!allows(p, "https://api.example.com.evil.net/v1/"));
        assert!(!allows(p, "https://api.example.com/v1/../admin"));
        assert!(allows("http://h.example/api", "http://h.example/api"));
        assert!(!allows("http://h.example/api", "http://h.example/apix"));
        assert!(allows("https://*.example.org", "https://b.a.example.org/"));
        assert!(!allows("https://*.example.org", "https://example.org/"));
        assert!(!allows("https://*.example.org", "https://..example.org/"));
        assert!(allows("http://127.0.0.1:8080/", "http://0x7f000001:8080/"));
        assert!(allows(
            "http://[::ffff:127.0.0.1]:9/",
            "http://127.0.0.1:9/"
        ));
        assert!(RefEndpoint::parse("https://*./").is_none());
        assert!(RefEndpoint::parse("https://*.127.0.0.1/").is_none());
    }

    #[test]
    fn parts_join_back_to_the_text() {
        for text in PATTERNS.iter().chain(SEEDS.iter().map(|(_, u)| u)) {
            if !text.contains('*') {
                assert_eq!(Parts::split(text, "a").join(), *text);
            }
        }
    }
}
