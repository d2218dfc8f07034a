//! `infrafabric:chassis/http-proxy`: outbound HTTP for swarms, on the host's
//! terms.
//!
//! A `fetch` goes through, in order: the call rate; the request's shape
//! (method, size, headers); `network_access = "proxy_only"`; the allowlist
//! ([`allowlist`], pure); name resolution and the SSRF guard ([`ssrf`],
//! pure) — every resolved address must be public unless an allowed
//! endpoint names it literally, and the connection goes to the checked
//! address; credential injection (a scoped credential sent as a header,
//! never shown to the guest); then one exchange ([`client`]) with size caps,
//! timeouts inside the task's deadline and the swarm's bandwidth bucket.
//! Redirects are not followed: a 3xx response is returned as it is, and a
//! request to its `Location` is checked like any other.
//!
//! Every decision raises an `HttpProxy` event: allowed or denied, method,
//! URL without user info or query, status, bytes each way, time, and why it
//! failed. The method, the URL and the reason are guest text: the swarm's
//! secret values are redacted from them, and they are escaped and bounded
//! before the event or the host's log gets them. A denied endpoint or a
//! refused address is a security violation.

pub(crate) mod allowlist;
pub(crate) mod client;
pub(crate) mod ssrf;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use url::Url;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::bindings::credentials::CredentialError;
use crate::bindings::http_proxy::{Header, Host, ProxyError, Request, Response};
use crate::contract::{NetworkAccess, ServiceContract};
use crate::events::Event;
use crate::imports::credentials::CredentialsState;
use crate::imports::scope::Scoped;

/// Longest wait for name resolution.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most request headers a guest may set.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of request header names and values together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Headers the host sets itself or that would change the framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];

/// Longest URL text kept in a request's event, in bytes.
pub(crate) const MAX_RECORDED_URL_BYTES: usize = 1024;

/// Longest method text kept in a request's event, in bytes.
const MAX_RECORDED_METHOD_BYTES: usize = 32;

/// Longest reason kept in a request's event, in bytes.
const MAX_RECORDED_REASON_BYTES: usize = 2048;

/// Longest piece of a request (a scheme, a header name) an error message
/// shows, in bytes.
const MAX_SHOWN_PART_BYTES: usize = 256;

/// What happened to one request, for its event.
struct Record {
    method: String,
    url: String,
    status: Option<u16>,
    bytes_out: u64,
    bytes_in: u64,
    violation: bool,
    /// Whether every check passed and the request went to the network (it
    /// may still fail there: a timeout, a refused connection).
    sent: bool,
}

/// The URL as recorded: no user info, no query, no fragment.
fn redacted(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        },
        url.path()
    )
}

/// Why the SSRF guard refuses to connect to `addr` for `url`, with the
/// address as judged (an IPv4-mapped one as its IPv4 address), or `None`
/// when it is public or an endpoint admitting `url` names it literally.
pub(crate) fn refused_address(
    allowlist: &allowlist::Allowlist,
    url: &Url,
    addr: IpAddr,
) -> Option<(IpAddr, &'static str)> {
    let ip = allowlist::canonical(addr);
    let why = ssrf::forbidden(ip)?;
    (!allowlist.names_ip_for(url, ip)).then_some((ip, why))
}

fn denied(why: impl Into<String>) -> ProxyError {
    ProxyError::Denied(why.into())
}

fn describe(e: &ProxyError) -> String {
    match e {
        ProxyError::Denied(m) => format!("denied: {m}"),
        ProxyError::InvalidRequest(m) => format!("invalid request: {m}"),
        ProxyError::TooLarge(m) => format!("too large: {m}"),
        ProxyError::Timeout(m) => format!("timeout: {m}"),
        ProxyError::RateLimited(m) => format!("rate limited: {m}"),
        ProxyError::Network(m) => format!("network: {m}"),
    }
}

/// Body bytes a swarm's requests sent and its responses brought back
/// through the proxy since it was loaded: counters, only ever added to (a
/// replacing version carries on its predecessor's).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
}

/// The HTTP proxy capability of one swarm, built at load.
pub(crate) struct ProxyState {
    network_access: NetworkAccess,
    bandwidth_mbps: u32,
    /// Where its HTTP requests may go.
    allowlist: allowlist::Allowlist,
    /// Its network bandwidth, both directions.
    bandwidth: client::Bandwidth,
    /// The proxy's TLS client (the host's roots).
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// What went through it, counted as each request's event goes out.
    traffic: Arc<Traffic>,
}

impl ProxyState {
    /// The proxy of a swarm loaded under `contract`, adding to `traffic`
    /// and charging its `budget`.
    pub(crate) fn new(
        contract: &ServiceContract,
        tls: Arc<tokio_rustls::rustls::ClientConfig>,
        traffic: Arc<Traffic>,
        budget: Option<Arc<crate::limits::PeriodBudget>>,
    ) -> Self {
        let bandwidth_mbps = contract.resource_limits.max_network_bandwidth_mbps;
        Self {
            network_access: contract.security.network_access,
            bandwidth_mbps,
            // The contract was validated, so every pattern parses.
            allowlist: allowlist::Allowlist::new(&contract.security.allowed_endpoints)
                .unwrap_or_default(),
            bandwidth: client::Bandwidth::new(bandwidth_mbps).with_budget(budget),
            tls,
            traffic,
        }
    }

    /// Its byte counters.
    pub(crate) fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }
}

/// One task's view of the HTTP proxy.
pub(crate) struct ProxyHost<'a> {
    pub(crate) proxy: &'a ProxyState,
    /// For the credential header.
    pub(crate) credentials: &'a CredentialsState,
    pub(crate) scoped: Scoped<'a>,
    /// The task's deadline: no exchange outlasts it.
    pub(crate) deadline: Instant,
    /// Time the task spent waiting on the network (not its CPU time).
    pub(crate) waiting: &'a mut Duration,
}

impl ProxyHost<'_> {
    async fn proxy(&mut self, request: Request, rec: &mut Record) -> Result<Response, ProxyError> {
        let method = hyper::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| ProxyError::InvalidRequest(format!("bad method {:?}", rec.method)))?;
        let url = Url::parse(&request.url)
            .map_err(|e| ProxyError::InvalidRequest(format!("bad URL: {e}")))?;
        rec.url = self
            .scoped
            .guest_text(&redacted(&url), "url", MAX_RECORDED_URL_BYTES);
        if url.scheme() != "http" && url.scheme() != "https" {
            rec.violation = true;
            return Err(denied(format!(
                "scheme {:?} is not http or https",
                self.scoped
                    .guest_text(url.scheme(), "url", MAX_SHOWN_PART_BYTES)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(denied(
                "user info in URLs is not allowed; use credential-header",
            ));
        }
        if request.body.len() > client::MAX_REQUEST_BYTES {
            return Err(ProxyError::TooLarge(format!(
                "request body over {} bytes",
                client::MAX_REQUEST_BYTES
            )));
        }
        if !self.scoped.in_task() {
            return Err(denied("the HTTP proxy is only available while a task runs"));
        }
        if self.proxy.network_access != NetworkAccess::ProxyOnly {
            rec.violation = true;
            return Err(denied("network_access is \"none\""));
        }
        if self.proxy.allowlist.find(&url).is_none() {
            rec.violation = true;
            return Err(denied(format!("{} is not in allowed_endpoints", rec.url)));
        }
        if self.proxy.bandwidth_mbps == 0 {
            return Err(denied("max_network_bandwidth_mbps is 0"));
        }
        let headers = self.request_headers(&request)?;

        // Resolve, then check every address before connecting to one of them.
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(name)) => {
                let budget =
                    DNS_TIMEOUT.min(self.deadline.saturating_duration_since(Instant::now()));
                match tokio::time::timeout(budget, tokio::net::lookup_host((name, port))).await {
                    Err(_) => return Err(ProxyError::Timeout(format!("resolving {name}"))),
                    Ok(Err(e)) => {
                        return Err(ProxyError::Network(format!("resolving {name}: {e}")));
                    }
                    Ok(Ok(found)) => found.collect(),
                }
            }
            None => return Err(ProxyError::InvalidRequest("URL has no host".into())),
        };
        let Some(first) = addrs.first().copied() else {
            return Err(ProxyError::Network(
                "the name resolved to no address".into(),
            ));
        };
        for addr in &addrs {
            if let Some((ip, why)) = refused_address(&self.proxy.allowlist, &url, addr.ip()) {
                rec.violation = true;
                return Err(denied(format!(
                    "{} resolves to {ip}, {why}, which no allowed endpoint names (SSRF guard)",
                    url.host_str().unwrap_or_default()
                )));
            }
        }

        rec.bytes_out = request.body.len() as u64;
        rec.sent = true;
        let exchange = client::exchange(
            first,
            &url,
            method,
            headers,
            request.body,
            client::Link {
                bandwidth: &self.proxy.bandwidth,
                tls: &self.proxy.tls,
            },
            self.deadline,
        )
        .await
        .map_err(|e| match e {
            client::ExchangeError::Timeout(m) => ProxyError::Timeout(m),
            client::ExchangeError::TooLarge(m) => ProxyError::TooLarge(m),
            client::ExchangeError::Network(m) => ProxyError::Network(m),
            client::ExchangeError::Invalid(m) => ProxyError::InvalidRequest(m),
            client::ExchangeError::Budget(m) => ProxyError::RateLimited(m),
        })?;
        rec.status = Some(exchange.status);
        rec.bytes_in = exchange.body.len() as u64;
        Ok(Response {
            status: exchange.status,
            headers: exchange
                .headers
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: exchange.body,
        })
    }

    /// The guest's headers, checked, plus the injected credential header.
    fn request_headers(
        &mut self,
        request: &Request,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
        if request.headers.len() > MAX_HEADERS {
            return Err(ProxyError::TooLarge(format!(
                "more than {MAX_HEADERS} headers"
            )));
        }
        let size: usize = request
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum();
        if size > MAX_HEADER_BYTES {
            return Err(ProxyError::TooLarge(format!(
                "headers over {MAX_HEADER_BYTES} bytes"
            )));
        }
        let mut out = Vec::with_capacity(request.headers.len() + 1);
        for h in &request.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| self.bad_header_name(&h.name))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(ProxyError::InvalidRequest(format!(
                    "header {name} is set by the host"
                )));
            }
            let value = HeaderValue::from_str(&h.value)
                .map_err(|_| ProxyError::InvalidRequest(format!("bad value for header {name}")))?;
            out.push((name, value));
        }
        if let Some(inject) = &request.credential_header {
            let name = HeaderName::from_bytes(inject.header.as_bytes())
                .map_err(|_| self.bad_header_name(&inject.header))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(ProxyError::InvalidRequest(format!(
                    "header {name} is set by the host"
                )));
            }
            let secret = self
                .credentials
                .scoped_secret(&mut self.scoped, "inject", &inject.credential)
                .map_err(|e| match e {
                    CredentialError::Denied(m)
                    | CredentialError::NotFound(m)
                    | CredentialError::Unsupported(m)
                    | CredentialError::RateLimited(m) => denied(format!("credential-header: {m}")),
                })?;
            if secret.signing_key().is_some() {
                return Err(denied("credential-header: signing keys are never sent"));
            }
            let text = zeroize::Zeroizing::new(format!("{}{}", inject.prefix, secret.expose()));
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                ProxyError::InvalidRequest("the credential cannot be sent as a header value".into())
            })?;
            value.set_sensitive(true);
            out.push((name, value));
        }
        Ok(out)
    }

    /// The refusal of a header name that is not one, showing the name
    /// redacted, escaped and bounded.
    fn bad_header_name(&self, name: &str) -> ProxyError {
        ProxyError::InvalidRequest(format!(
            "bad header name {:?}",
            self.scoped
                .guest_text(name, "http_header", MAX_SHOWN_PART_BYTES)
        ))
    }
}

impl Host for ProxyHost<'_> {
    async fn fetch(&mut self, request: Request) -> wasmtime::Result<Result<Response, ProxyError>> {
        if !self.scoped.admit_call("http-proxy")? {
            return Ok(Err(ProxyError::RateLimited(
                "over max_api_calls_per_second".to_string(),
            )));
        }
        let started = Instant::now();
        // Until the URL parses, the record holds its text up to any query
        // or fragment: secrets redacted, escaped, bounded.
        let raw = request.url.split(['?', '#']).next().unwrap_or_default();
        let mut rec = Record {
            method: self.scoped.guest_text(
                &request.method,
                "http_method",
                MAX_RECORDED_METHOD_BYTES,
            ),
            url: self.scoped.guest_text(raw, "url", MAX_RECORDED_URL_BYTES),
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            violation: false,
            sent: false,
        };
        let result = self.proxy(request, &mut rec).await;
        let elapsed = started.elapsed();
        // Time waiting on the network is not the guest's CPU time.
        *self.waiting += elapsed;
        if rec.violation {
            self.scoped.violation();
        }
        // Messages may quote the request: the same care as any guest text.
        let reason = result.as_ref().err().map(|e| {
            self.scoped
                .guest_text(&describe(e), "http_error", MAX_RECORDED_REASON_BYTES)
        });
        match &reason {
            None => {
                tracing::debug!(target: "chassis::http_proxy", swarm = self.scoped.swarm_id(), task = self.scoped.task_id(), "{} {} -> {:?}", rec.method, rec.url, rec.status)
            }
            Some(why) => {
                tracing::warn!(target: "chassis::http_proxy", swarm = self.scoped.swarm_id(), task = self.scoped.task_id(), "{} {}: {why}", rec.method, rec.url)
            }
        }
        let traffic = &self.proxy.traffic;
        traffic
            .bytes_out
            .fetch_add(rec.bytes_out, Ordering::Relaxed);
        traffic.bytes_in.fetch_add(rec.bytes_in, Ordering::Relaxed);
        self.scoped.swarm.events.emit(|| Event::HttpProxy {
            swarm_id: self.scoped.swarm_id().to_string(),
            task_id: self.scoped.task_id().to_string(),
            allowed: rec.sent,
            method: rec.method.clone(),
            url: rec.url.clone(),
            status: rec.status,
            bytes_out: rec.bytes_out,
            bytes_in: rec.bytes_in,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            reason: reason.clone(),
            security_violation: rec.violation,
        });
        Ok(result)
    }
}

crate::imports::scope::linker_for!(http_proxy, ProxyHost);
