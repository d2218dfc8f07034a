//! Feature `fuzzing`: thin public wrappers over checkers that are otherwise
//! internal, for the `chassis-fuzz` crate to drive. Not part of the API:
//! hidden from the documentation, off by default, and free to change.
//!
//! Data flow: each wrapper hands its input straight to the host's own code
//! (the SSRF guard, the allowlist, the proxy's per-address decision) and
//! returns its answer unchanged, so the fuzzer checks exactly what the
//! proxy runs.

use std::net::IpAddr;

use url::Url;

use crate::imports::http_proxy::{allowlist, refused_address, ssrf};

/// The SSRF guard: why `ip` may not be connected to, or `None` when it is
/// a public address.
pub fn ssrf_forbidden(ip: IpAddr) -> Option<&'static str> {
    ssrf::forbidden(ip)
}

/// A swarm's `security.allowed_endpoints`, as the proxy holds them.
#[derive(Debug, Clone)]
pub struct Allowlist(allowlist::Allowlist);

impl Allowlist {
    /// Parse every pattern, as contract validation does.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        allowlist::Allowlist::new(patterns).map(Self)
    }

    /// Whether an endpoint admits `url` (the proxy's allowlist check).
    pub fn allows(&self, url: &Url) -> bool {
        self.0.find(url).is_some()
    }

    /// Whether an endpoint admitting `url` names `ip` literally.
    pub fn names_ip_for(&self, url: &Url, ip: IpAddr) -> bool {
        self.0.names_ip_for(url, ip)
    }

    /// Whether the proxy would connect to `addr` for `url` (an address
    /// `url` resolved to, or its literal one): public, or named literally
    /// by an endpoint admitting `url`.
    pub fn admits_address(&self, url: &Url, addr: IpAddr) -> bool {
        refused_address(&self.0, url, addr).is_none()
    }
}
