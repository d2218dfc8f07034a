//! One HTTP/1.1 exchange with an address the proxy has already checked.
//!
//! The connection goes to that address and nowhere else (no resolution
//! here); TLS verifies the certificate for the URL's host against the
//! webpki roots. Redirects are not followed. Request and response bodies
//! pass through the swarm's bandwidth bucket; the response is read
//! incrementally and refused past [`MAX_RESPONSE_BYTES`]; connect and the
//! whole exchange are bounded by timeouts inside the task's deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

use crate::limits::{PeriodBudget, TokenBucket};

/// Largest request body, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response body, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest whole exchange (also never past the task's deadline).
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long before the task's deadline an exchange is given up.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    Timeout(String),
    TooLarge(String),
    Network(String),
    Invalid(String),
    /// The swarm's network budget for the period is spent.
    Budget(String),
}

/// What a swarm's requests go out through.
#[derive(Clone, Copy)]
pub(crate) struct Link<'a> {
    /// The swarm's bandwidth bucket.
    pub bandwidth: &'a Bandwidth,
    /// The host's TLS client.
    pub tls: &'a Arc<tokio_rustls::rustls::ClientConfig>,
}

/// A response, read whole.
pub(crate) struct Exchange {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A swarm's network bandwidth: one bucket of bytes for both directions,
/// and its network budget for the period, if it has one.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    bucket: Mutex<TokenBucket>,
    budget: Option<Arc<PeriodBudget>>,
}

impl Bandwidth {
    /// `mbps` megabits per second; bursts of a tenth of a second (at least 16 KiB).
    pub(crate) fn new(mbps: u32) -> Self {
        let rate = f64::from(mbps) * 125_000.0;
        let capacity = (rate / 10.0).max(16.0 * 1024.0);
        Self {
            bucket: Mutex::new(TokenBucket::with_capacity(rate, capacity, Instant::now())),
            budget: None,
        }
    }

    /// The same, charging every byte to `budget` (`[budget] network_bytes`).
    pub(crate) fn with_budget(mut self, budget: Option<Arc<PeriodBudget>>) -> Self {
        self.budget = budget;
        self
    }

    /// Wait until `bytes` may pass; refused when they would pass the
    /// swarm's network budget.
    pub(crate) async fn take(&self, bytes: usize) -> Result<(), ExchangeError> {
        if bytes == 0 {
            return Ok(());
        }
        if let Some(budget) = &self.budget
            && let Err(spent) = budget.charge_network(bytes as u64, std::time::SystemTime::now())
        {
            return Err(ExchangeError::Budget(format!(
                "the swarm's network budget of {} bytes per period is spent (budget.network_bytes); it renews in {} s",
                spent.limit,
                spent.renews_in(std::time::SystemTime::now()).as_secs()
            )));
        }
        loop {
            let wait = {
                let mut b = self.bucket.lock().expect("bandwidth lock");
                if b.try_take(bytes as f64, Instant::now()) {
                    return Ok(());
                }
                b.wait_for(bytes as f64)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The proxy's TLS client: the Mozilla roots plus `extra_roots` (DER).
/// Certificates are always verified; there is no way to turn that off.
pub(crate) fn tls_config(
    extra_roots: &[Vec<u8>],
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (i, der) in extra_roots.iter().enumerate() {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| format!("extra root certificate #{}: {e}", i + 1))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    url: &Url,
    tls: &Arc<tokio_rustls::rustls::ClientConfig>,
) -> Result<Box<dyn Io>, ExchangeError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| ExchangeError::Network(format!("connecting to {addr}: {e}")))?;
    tcp.set_nodelay(true).ok();
    if url.scheme() != "https" {
        return Ok(Box::new(tcp));
    }
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| ExchangeError::Invalid(format!("TLS server name: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| ExchangeError::Network(format!("TLS with {addr}: {e}")))?;
    Ok(Box::new(stream))
}

/// Send one request to `addr` (already checked) and read the response.
pub(crate) async fn exchange(
    addr: SocketAddr,
    url: &Url,
    method: hyper::Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    link: Link<'_>,
    deadline: Instant,
) -> Result<Exchange, ExchangeError> {
    let Link { bandwidth, tls } = link;
    // End a little before the task's deadline, so the guest gets the
    // timeout error rather than being interrupted mid-call.
    let budget = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(DEADLINE_MARGIN)
        .min(TOTAL_TIMEOUT);
    let work = async {
        bandwidth.take(body.len()).await?;
        let connect_budget = budget.min(CONNECT_TIMEOUT);
        let io = tokio::time::timeout(connect_budget, connect(addr, url, tls))
            .await
            .map_err(|_| {
                ExchangeError::Timeout(format!(
                    "no connection to {addr} within {:.1} s",
                    connect_budget.as_secs_f64()
                ))
            })??;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| ExchangeError::Network(format!("HTTP handshake: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, host);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExchangeError::Invalid(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ExchangeError::Network(format!("HTTP exchange: {e}")))?;
        let (parts, mut incoming) = response.into_parts();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame =
                frame.map_err(|e| ExchangeError::Network(format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if body.len() + data.len() > MAX_RESPONSE_BYTES {
                    return Err(ExchangeError::TooLarge(format!(
                        "response body over {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                bandwidth.take(data.len()).await?;
                body.extend_from_slice(&data);
            }
        }
        driver.abort();
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(Exchange {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    };
    tokio::time::timeout(budget, work).await.map_err(|_| {
        ExchangeError::Timeout(format!(
            "no complete response within {:.1} s",
            budget.as_secs_f64()
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The exchange connects to the address it is given, never to a fresh
    /// lookup of the URL's name: the name here resolves nowhere.
    #[tokio::test]
    async fn the_connection_goes_to_the_checked_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let url = Url::parse(&format!("http://unresolvable.invalid:{}/v1/x", addr.port())).unwrap();
        let got = exchange(
            addr,
            &url,
            hyper::Method::GET,
            Vec::new(),
            Vec::new(),
            Link {
                bandwidth: &Bandwidth::new(100),
                tls: &tls_config(&[]).unwrap(),
            },
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((got.status, got.body.as_slice()), (200, b"ok".as_slice()));
        let head = server.join().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /v1/x http/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("host: unresolvable.invalid:{}\r\n", addr.port())),
            "{head}"
        );
    }
}
