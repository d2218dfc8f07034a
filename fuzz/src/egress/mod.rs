//! Target `egress`: the HTTP proxy's egress policy, checked differentially
//! against an independent reference.
//!
//! Two kinds of case:
//!
//! - An address. The host's SSRF guard (`chassis::fuzzing::ssrf_forbidden`)
//!   must refuse exactly the addresses the reference ([`ranges`]: the IANA
//!   special-purpose ranges the guard documents, as `ip_network` values,
//!   and the rules for IPv6 forms that embed IPv4) refuses. As a second
//!   opinion, every address `ip_network`'s `is_global` calls not globally
//!   reachable must be refused, and so must an IPv4-mapped or 6to4 address
//!   whose embedded IPv4 address it calls so.
//! - An allowlist and a URL. Each pattern is accepted by the host
//!   (`chassis::fuzzing::Allowlist`) exactly when the reference ([`urls`])
//!   accepts it; each accepted endpoint admits the URL exactly when the
//!   reference's does; and for a URL naming an address, the proxy's whole
//!   decision (an endpoint admits it, and the address is public or named
//!   literally by an endpoint that admits it) is the reference's: a
//!   forbidden address never gets through unless an admitting endpoint
//!   names that very address (an IPv4-mapped address as its IPv4 one). For
//!   a URL naming a host by name, no address the name could resolve to is
//!   let through because an endpoint names it.
//!
//! Exceptions to the second opinion: none. Where `ip_network` and the
//! guard differ, the guard refuses more, never less, and on purpose:
//! `192.0.0.9` and `192.0.0.10` (globally reachable anycast inside the
//! IETF block 192.0.0.0/24, which the guard refuses whole), IPv4 multicast
//! (`ip_network`'s IPv4 `is_global` does not exclude it), global-scope
//! IPv6 multicast, the IPv6 special-purpose blocks `ip_network` does not
//! know (100::/64, 100:0:0:1::/64, 2001::/23, 3fff::/20, 5f00::/16), and
//! the embedding forms (IPv4-mapped, compatible, translated, NAT64,
//! Teredo), which `ip_network` judges as plain IPv6 addresses. These are
//! checked against the reference table instead, which refuses them too.
//!
//! Two readings the reference shares with the host, stricter than a name
//! server or a web server might be, and safe for it: a trailing dot makes
//! a different name (`api.example.com.` is not `api.example.com`), and a
//! path is compared as the URL parser leaves it, percent-encoded bytes
//! undecoded (`/%76%31/` is not `/v1/`). An encoded `/` or `\` is data, as
//! RFC 3986 has it, so a path prefix does not protect a server that
//! decodes `..%2f` before it routes: the prefix narrows what a swarm may
//! ask for, not what such a server makes of it.
//!
//! Data flow: `fuzz` generates [`Case`]s; [`check`] runs one through the
//! host's code and the reference and compares. A failing case is kept as
//! its JSON text (one line: `{"address": "..."}` or `{"allow": [...],
//! "url": "..."}`), which [`replay`] reads back.

pub mod ranges;
pub mod urls;

use std::net::IpAddr;

use chassis::fuzzing::{Allowlist, ssrf_forbidden};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};
use url::Url;

use urls::{RefEndpoint, UrlHost};

/// One input of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Case {
    /// An address for the SSRF guard.
    Address(IpAddr),
    /// A swarm's allowed endpoints and a URL it asks for.
    Request {
        /// The patterns, as in `security.allowed_endpoints`.
        allow: Vec<String>,
        /// The URL, as the guest sends it.
        url: String,
    },
}

impl Case {
    /// The case as one line of JSON, a regression file's content.
    pub fn to_json(&self) -> Vec<u8> {
        let value = match self {
            Case::Address(ip) => json!({ "address": ip.to_string() }),
            Case::Request { allow, url } => json!({ "allow": allow, "url": url }),
        };
        let mut text = value.to_string().into_bytes();
        text.push(b'\n');
        text
    }

    /// Read a case written by [`Case::to_json`].
    pub fn from_json(input: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(input).map_err(|e| format!("not a JSON case: {e}"))?;
        if let Some(address) = value.get("address").and_then(Value::as_str) {
            return address
                .parse()
                .map(Case::Address)
                .map_err(|e| format!("address {address:?}: {e}"));
        }
        let allow = value
            .get("allow")
            .and_then(Value::as_array)
            .ok_or("neither \"address\" nor \"allow\"")?
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or("a pattern is not text")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let url = value
            .get("url")
            .and_then(Value::as_str)
            .ok_or("no \"url\"")?
            .to_string();
        Ok(Case::Request { allow, url })
    }
}

/// The property, for one case.
pub fn check(case: &Case) -> Result<(), String> {
    match case {
        Case::Address(ip) => check_address(*ip),
        Case::Request { allow, url } => check_request(allow, url),
    }
}

/// The property, for one regression file.
pub fn replay(input: &[u8]) -> Result<(), String> {
    check(&Case::from_json(input)?)
}

fn check_address(ip: IpAddr) -> Result<(), String> {
    let host = ssrf_forbidden(ip);
    let reference = ranges::refused(ip);
    if host.is_some() != reference.is_some() {
        return Err(format!(
            "{ip}: the guard says {}, the reference {}",
            host.map_or("public".to_string(), |why| format!("refused ({why})")),
            reference.map_or("public".to_string(), |why| format!("refused ({why})")),
        ));
    }
    let embedded = match ip {
        IpAddr::V6(v6) => ranges::judged_as_v4(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    for judged in [Some(ip), embedded].into_iter().flatten() {
        if host.is_none() && !ranges::ip_network_global(judged) {
            return Err(format!(
                "{ip}: the guard lets it through, but ip_network calls {judged} \
                 not globally reachable"
            ));
        }
    }
    Ok(())
}

/// Addresses a name could resolve to that an endpoint might name.
fn resolved_candidates(refs: &[RefEndpoint]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = [
        "127.0.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:10.0.0.1",
        "8.8.8.8",
    ]
    .iter()
    .map(|t| t.parse().expect("a valid address"))
    .collect();
    out.extend(refs.iter().filter_map(RefEndpoint::address));
    out
}

fn check_request(allow: &[String], text: &str) -> Result<(), String> {
    let mut kept = Vec::new();
    let mut refs = Vec::new();
    let mut singles = Vec::new();
    for pattern in allow {
        let host = Allowlist::new(std::slice::from_ref(pattern));
        let reference = RefEndpoint::parse(pattern);
        match (host, reference) {
            (Ok(single), Some(reference)) => {
                kept.push(pattern.clone());
                refs.push(reference);
                singles.push(single);
            }
            (Err(_), None) => {}
            (Ok(_), None) => {
                return Err(format!(
                    "pattern {pattern:?}: the host accepts it, the reference refuses it"
                ));
            }
            (Err(e), Some(_)) => {
                return Err(format!(
                    "pattern {pattern:?}: the host refuses it ({e}), the reference accepts it"
                ));
            }
        }
    }
    let Ok(url) = Url::parse(text) else {
        // The proxy refuses a URL it cannot parse before any other check.
        return Ok(());
    };
    for ((pattern, single), reference) in kept.iter().zip(&singles).zip(&refs) {
        let (host, reference) = (single.allows(&url), reference.matches(&url));
        if host != reference {
            return Err(format!(
                "{pattern:?} and {text:?} (parsed {url}): the host {}, the reference {}",
                if host { "admits it" } else { "refuses it" },
                if reference { "admits it" } else { "refuses it" },
            ));
        }
    }
    let list =
        Allowlist::new(&kept).map_err(|e| format!("the accepted patterns, together: {e}"))?;
    let admitted = refs.iter().any(|e| e.matches(&url));
    match urls::url_host(&url) {
        Some(UrlHost::Ip { literal, canonical }) => {
            let names = refs.iter().any(|e| e.matches(&url) && e.names(literal));
            if list.names_ip_for(&url, canonical) != names {
                return Err(format!(
                    "{text:?}: the host says an admitting endpoint {} {canonical}, \
                     the reference that one {}",
                    if names { "does not name" } else { "names" },
                    if names { "does" } else { "does not" },
                ));
            }
            let forbidden = ranges::refused(literal);
            let host = list.allows(&url) && list.admits_address(&url, literal);
            let reference = admitted && (forbidden.is_none() || names);
            if host != reference {
                return Err(match forbidden {
                    Some(why) if host => format!(
                        "{text:?} with {kept:?}: the proxy would connect to {literal}, \
                         {why}, which no admitting endpoint names (bypass)"
                    ),
                    _ => format!(
                        "{text:?} with {kept:?}: the proxy {} {literal}, the reference {}",
                        if host { "connects to" } else { "refuses" },
                        if reference { "connects" } else { "refuses" },
                    ),
                });
            }
        }
        Some(UrlHost::Name(name)) => {
            for ip in resolved_candidates(&refs) {
                let host = list.admits_address(&url, ip);
                if host != ranges::refused(ip).is_none() {
                    return Err(format!(
                        "{text:?} with {kept:?}: {name} resolving to {ip} is {} by the proxy, \
                         though a name never gets an address exemption",
                        if host { "admitted" } else { "refused" },
                    ));
                }
            }
        }
        None => {}
    }
    Ok(())
}

fn case() -> impl Strategy<Value = Case> {
    let allow = prop_oneof![
        4 => proptest::collection::vec(urls::pattern(), 1..4),
        1 => proptest::sample::select(urls::SEEDS)
            .prop_map(|(allow, _)| allow.iter().map(|p| p.to_string()).collect()),
    ];
    let request = allow
        .prop_flat_map(|allow| (Just(allow.clone()), urls::url(allow)))
        .prop_map(|(allow, url)| Case::Request { allow, url });
    let seed = proptest::sample::select(urls::SEEDS).prop_map(|(allow, url)| Case::Request {
        allow: allow.iter().map(|p| p.to_string()).collect(),
        url: url.to_string(),
    });
    prop_oneof![
        4 => ranges::ip().prop_map(Case::Address),
        5 => request,
        1 => seed,
    ]
}

/// One batch of cases.
pub(crate) fn fuzz(
    runner: &mut TestRunner,
    slowest: &mut std::time::Duration,
) -> Result<(), (String, Vec<u8>)> {
    let slowest_here = std::cell::Cell::new(*slowest);
    let result = runner.run(&case(), |case| {
        crate::timed(&slowest_here, || check(&case)).map_err(TestCaseError::fail)
    });
    *slowest = slowest_here.get();
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, case)) => Err((reason.to_string(), case.to_json())),
        Err(TestError::Abort(reason)) => Err((reason.to_string(), Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_survives_its_json() {
        for case in [
            Case::Address("::ffff:127.0.0.1".parse().unwrap()),
            Case::Request {
                allow: vec!["https://*.example.org".into()],
                url: "https://a.example.org\t/\n\u{0}".into(),
            },
        ] {
            assert_eq!(Case::from_json(&case.to_json()).unwrap(), case);
        }
    }

    /// What kind of case `case` is, for the reach test: the kinds that
    /// show the generators get past the parser to every decision.
    fn kinds(case: &Case) -> Vec<&'static str> {
        let mut out = Vec::new();
        match case {
            Case::Address(ip) => {
                out.push(match ssrf_forbidden(*ip) {
                    Some(_) => "a refused address",
                    None => "a public address",
                });
                if let IpAddr::V6(v6) = ip
                    && ranges::judged_as_v4(*v6).is_some()
                {
                    out.push("an address judged by its embedded IPv4 address");
                }
            }
            Case::Request { allow, url } => {
                let (Ok(list), Ok(parsed)) = (Allowlist::new(allow), Url::parse(url)) else {
                    return out;
                };
                if !list.allows(&parsed) {
                    out.push("a refused URL");
                    return out;
                }
                out.push("an admitted URL");
                match urls::url_host(&parsed) {
                    Some(UrlHost::Ip { literal, .. }) if ssrf_forbidden(literal).is_some() => {
                        out.push("an admitted URL naming a forbidden address");
                    }
                    Some(UrlHost::Name(_)) if allow.iter().any(|p| p.contains("*.")) => {
                        out.push("an admitted URL under a wildcard");
                    }
                    _ => {}
                }
                for (what, kind) in [
                    ("\\", "an admitted URL spelled with a backslash"),
                    ("%", "an admitted URL spelled with a percent sign"),
                    ("\t", "an admitted URL spelled with a tab"),
                    ("@", "an admitted URL spelled with an @"),
                    ("[", "an admitted URL naming an IPv6 address"),
                ] {
                    if url.contains(what) {
                        out.push(kind);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_generators_reach_every_kind_of_case() {
        use proptest::strategy::ValueTree;
        let mut runner = TestRunner::deterministic();
        let mut seen = std::collections::BTreeMap::<&str, u32>::new();
        for _ in 0..4000 {
            let case = case().new_tree(&mut runner).unwrap().current();
            for kind in kinds(&case) {
                *seen.entry(kind).or_default() += 1;
            }
        }
        for kind in [
            "a refused address",
            "a public address",
            "an address judged by its embedded IPv4 address",
            "a refused URL",
            "an admitted URL",
            "an admitted URL naming a forbidden address",
            "an admitted URL under a wildcard",
            "an admitted URL spelled with a backslash",
            "an admitted URL spelled with a percent sign",
            "an admitted URL spelled with a tab",
            "an admitted URL spelled with an @",
            "an admitted URL naming an IPv6 address",
        ] {
            assert!(
                seen.get(kind).is_some_and(|n| *n > 0),
                "no {kind}: {seen:?}"
            );
        }
    }

    #[test]
    fn every_hostile_test_url_passes() {
        for (allow, url) in urls::SEEDS {
            let case = Case::Request {
                allow: allow.iter().map(|p| p.to_string()).collect(),
                url: url.to_string(),
            };
            check(&case).unwrap();
        }
    }
}
