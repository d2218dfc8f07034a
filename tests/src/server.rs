//! The test HTTP server: hyper's HTTP/1.1 server on a free port of
//! 127.0.0.1 (never another address), plain or TLS, with a few fixed routes
//! and a record of every request it received.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::LOCATION;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, rustls};

/// One request the test server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A real HTTP/1.1 server on 127.0.0.1 for proxy tests, on its own thread
/// and runtime, stopped when dropped.
///
/// Routes: `GET /v1/hello` (JSON), `POST /v1/echo` (echoes the body),
/// `POST /v1/sink` (answers `{"received": <body length>}`),
/// `GET /v1/redirect` (302 to the cloud metadata address),
/// `GET /v1/bytes?n=N` (N bytes), `GET /v1/slow` (answers after 10 s);
/// anything else is 404. Every request is recorded, and every connection
/// is closed after one response.
pub struct TestServer {
    /// The port it listens on.
    pub port: u16,
    received: Log,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub use chassis_test_support::TestCa;

impl TestServer {
    /// Start a server on a free port of 127.0.0.1.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Start an HTTPS server on a free port of 127.0.0.1, with a certificate
    /// `ca` issued (the same routes).
    pub fn start_tls(ca: &TestCa) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(ca.leaf_der.clone())],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ca.key_der.clone().into()),
        )
        .unwrap();
        Self::start_with(Some(TlsAcceptor::from(Arc::new(config))))
    }

    fn start_with(tls: Option<TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Log::default();
        let log = received.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                    };
                    let log = log.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            Some(tls) => {
                                if let Ok(stream) = tls.accept(stream).await {
                                    serve(stream, log).await;
                                }
                            }
                            None => serve(stream, log).await,
                        }
                    });
                }
            });
            // Dropping the runtime ends the connections still open.
        });
        Self {
            port,
            received,
            stop: Some(stop),
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// `http://<host>:<port><path>`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serve one connection: one request, then the connection is closed.
async fn serve<S>(stream: S, log: Log)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| respond(request, log.clone()));
    // A client that hangs up early is no concern of the tests.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Record the request, then answer it by its route.
async fn respond(
    request: Request<Incoming>,
    log: Log,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    log.lock().unwrap().push(Received {
        method: method.clone(),
        target,
        headers,
        body: body.clone(),
    });
    let mut response = Response::builder();
    let (status, payload) = match (method.as_str(), path.as_str()) {
        ("GET", "/v1/hello") => (StatusCode::OK, br#"{"hello":"world"}"#.to_vec()),
        ("POST", "/v1/echo") => (StatusCode::OK, body),
        ("POST", "/v1/sink") => (
            StatusCode::OK,
            format!("{{\"received\":{}}}", body.len()).into_bytes(),
        ),
        ("GET", "/v1/redirect") => {
            response = response.header(LOCATION, "http://169.254.169.254/latest/meta-data/");
            (StatusCode::FOUND, Vec::new())
        }
        ("GET", "/v1/slow") => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::OK, b"late".to_vec())
        }
        ("GET", "/v1/bytes") => {
            let n: usize = query
                .strip_prefix("n=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (StatusCode::OK, vec![b'a'; n])
        }
        _ => (StatusCode::NOT_FOUND, b"not found".to_vec()),
    };
    Ok(response
        .status(status)
        .body(Full::new(Bytes::from(payload)))
        .expect("a valid response"))
}
