//! Helpers for the end-to-end tests in `tests/tests/`: where the built
//! components and the example contracts are, and a host with them loaded.
//!
//! The components come from `cargo xtask build` (which `cargo xtask test`
//! runs first); a missing one is a test failure that says so.

use std::path::PathBuf;

use chassis::{Chassis, ServiceContract, SwarmInfo};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is one level below the root")
        .to_path_buf()
}

/// Path of an example contract, e.g. `contract_path("analyzer")`.
pub fn contract_path(name: &str) -> PathBuf {
    root().join("config").join(format!("{name}.toml"))
}

/// Bytes of a built component, e.g. `component("hello_world")`.
pub fn component(file_stem: &str) -> Vec<u8> {
    let path = root()
        .join("target/swarms")
        .join(format!("{file_stem}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the swarms first with `cargo xtask build` (or run `cargo xtask test`)",
            path.display()
        )
    })
}

/// A contract parsed from TOML text.
pub fn contract(text: &str) -> ServiceContract {
    ServiceContract::from_toml(text, "<test>").expect("test contract is valid")
}

/// A host with the example contract `name` loaded.
pub async fn chassis_with(name: &str) -> (Chassis, SwarmInfo) {
    let chassis = Chassis::new().expect("host starts");
    let info = chassis
        .load(contract_path(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    (chassis, info)
}

/// One greeting from the well-behaved `hello-world` swarm (loaded on
/// `chassis`), checked: the bystander that runs beside hostile guests.
pub async fn greet(chassis: &Chassis, name: &str) {
    let o = chassis
        .execute_task(
            "hello-world",
            chassis::TaskRequest::new("hello", serde_json::json!({ "name": name })),
        )
        .await
        .unwrap_or_else(|e| panic!("bystander failed: {e}"));
    assert_eq!(
        o.output["greeting"],
        serde_json::json!(format!("Hello, {name}!"))
    );
}

/// Log lines captured from `tracing` while a test runs (plain text, one
/// event per line). Install with [`capture_logs`]; it captures what is logged
/// on the test's own thread, which is where a `#[tokio::test]` runs the guest.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the capture of the current thread, if any.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing when dropped.
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Capture the host's own `tracing` events (targets `swarm` and `chassis`)
/// on this thread until the guard is dropped.
///
/// One process-wide subscriber routes each event to the capture of the
/// thread that logged it: per-thread default subscribers would race with
/// tests on other threads over `tracing`'s per-callsite interest cache.
pub fn capture_logs() -> (Logs, CaptureGuard) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "swarm=trace,chassis=trace",
            ))
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    let logs = Logs::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
    (logs, CaptureGuard(()))
}

/// Build a swarm component from a core module written in WAT, against the
/// `logging-swarm` world of the project's WIT. For guests Rust cannot
/// express (for example growing a table).
pub fn wat_swarm(wat: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat).expect("test WAT parses");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(root().join("wit"))
        .expect("project WIT parses");
    let world = resolve
        .select_world(&[pkg], Some("logging-swarm"))
        .expect("logging-swarm world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .expect("module is accepted")
        .encode()
        .expect("component encodes")
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// CPU time the calling thread has used (user + system), from
/// `/proc/thread-self/stat` (10 ms resolution).
pub fn thread_cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}

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

/// A real HTTP/1.1 server on 127.0.0.1 for proxy tests, on its own thread.
///
/// Routes: `GET /v1/hello` (JSON), `POST /v1/echo` (echoes the body),
/// `POST /v1/sink` (answers `{"received": <body length>}`),
/// `GET /v1/redirect` (302 to the cloud metadata address),
/// `GET /v1/bytes?n=N` (N bytes), `GET /v1/slow` (answers after 10 s);
/// anything else is 404. Every request is recorded.
pub struct TestServer {
    /// The port it listens on.
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

/// A certificate authority for TLS tests, and a server certificate it
/// issued for `127.0.0.1` and `localhost`.
pub struct TestCa {
    /// The CA's certificate (DER): what a client must trust.
    pub root_der: Vec<u8>,
    leaf_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and server certificate.
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Self {
            root_der: root.der().to_vec(),
            leaf_der: leaf.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestServer {
    /// Start a server on a free port of 127.0.0.1.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Start an HTTPS server on a free port of 127.0.0.1, with a certificate
    /// `ca` issued (the same routes).
    pub fn start_tls(ca: &TestCa) -> Self {
        use tokio_rustls::rustls;
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
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
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
            config,
        ))))
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let log = log.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _ = match tls {
                            Some(tls) => match tls.accept(stream).await {
                                Ok(stream) => serve(stream, log).await,
                                Err(e) => Err(e),
                            },
                            None => serve(stream, log).await,
                        };
                    });
                }
            });
        });
        Self { port, received }
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

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    log: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    log.lock().unwrap().push(Received {
        method: method.clone(),
        target: target.clone(),
        headers,
        body: body.clone(),
    });
    let path = target.split('?').next().unwrap_or_default();
    let (status, extra, payload): (&str, String, Vec<u8>) = match (method.as_str(), path) {
        ("GET", "/v1/hello") => ("200 OK", String::new(), br#"{"hello":"world"}"#.to_vec()),
        ("POST", "/v1/echo") => ("200 OK", String::new(), body),
        ("POST", "/v1/sink") => (
            "200 OK",
            String::new(),
            format!("{{\"received\":{}}}", body.len()).into_bytes(),
        ),
        ("GET", "/v1/redirect") => (
            "302 Found",
            "Location: http://169.254.169.254/latest/meta-data/\r\n".to_string(),
            Vec::new(),
        ),
        ("GET", "/v1/slow") => {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            ("200 OK", String::new(), b"late".to_vec())
        }
        ("GET", "/v1/bytes") => {
            let n: usize = target
                .split_once("?n=")
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(0);
            ("200 OK", String::new(), vec![b'a'; n])
        }
        _ => ("404 Not Found", String::new(), b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).await?;
    for part in payload.chunks(64 * 1024) {
        stream.write_all(part).await?;
    }
    stream.shutdown().await
}
