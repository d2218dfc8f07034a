//! Target `imports`: the import surface. A hostile guest
//! (`swarms/hostile/import-fuzz`) calls `log`, `credentials` and
//! `http-proxy` in a random sequence with hostile arguments, chosen by a
//! seed; the host must answer every call, end every task with an outcome
//! or a typed error of an expected kind, keep everything it logs, records
//! and returns bounded, escaped and clean of the swarm's secret, and go on
//! serving a bystander.
//!
//! Data flow: a batch builds one `Host`: a [`Chassis`] with an audit log
//! under `target/tmp/fuzz-imports/`, a guest log sink that checks every
//! line, a secrets store, hello-world under `config/hello-world.toml` (the
//! bystander), and the fuzz component loaded twice, under a loose contract
//! (`import-fuzz`: rates high enough that nearly every call reaches the
//! import's code) and a tight one (`import-fuzz-tight`: 5 calls, 20 log
//! lines and 4 KiB of log a second, so calls are refused for rate and a
//! long task is ended for rate). Both scope `api_token` (a token),
//! `signing_key` (an Ed25519 key) and `missing` (no value), and allow a
//! tiny HTTP server this process runs on 127.0.0.1 (`Server`; the SSRF
//! guard lets a request reach a loopback address only when an allowed
//! endpoint names it literally), a port of 127.0.0.1 where nothing listens,
//! and `localhost` at the server's port (resolved, then refused by the SSRF
//! guard). Their reputation never quarantines them.
//!
//! Each case is an [`Input`]: a seed, a call count and which contract. It
//! runs the `fuzz` task, then checks (`Host::check`):
//!
//! - the task ended in an outcome, or in an error whose kind is expected:
//!   rate limited (tight contract only), too large (the guest's rare call
//!   past the host-call cap), a trap only when the seed makes the guest
//!   panic, invalid output only when it answers hostile output; a guest
//!   error only when the seed makes it fail; a summary names the calls
//!   asked for, and no call past the host-call cap came back to the guest;
//! - every error message is at most `MAX_ERROR_MESSAGE_BYTES` plus 1 KiB,
//!   shows no unescaped control or bidirectional character, and holds no
//!   form of the secret (raw, hex, base64);
//! - every guest log line the sink got is at most `MAX_LOG_LINE_BYTES`
//!   plus the cut marker, escaped, and clean of the secret;
//! - the bystander greets correctly;
//! - the task's records reach the audit log with exactly one terminal
//!   record (`task_complete` or `task_failed`), and every string in every
//!   new record is bounded, escaped and clean of the secret.
//!
//! At the end of the batch the audit log is closed and must verify
//! (`chassis::audit::verify`), hold every record read, and still give
//! every `fuzz` task exactly one terminal record.
//!
//! A regression input is a small text file of `key = value` lines
//! (`seed = 42`, `calls = 64`, and optionally `contract = tight`; `#`
//! starts a comment): [`Input::parse`], [`Input::to_text`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chassis::audit::{AuditLog, FsyncPolicy};
use chassis::caps::{MAX_ERROR_MESSAGE_BYTES, MAX_LOG_LINE_BYTES, MAX_PROXY_RESPONSE_BYTES};
use chassis::{
    Chassis, ChassisConfig, ErrorKind, GuestLine, GuestLogSink, Secret, SecretStore,
    ServiceContract, TaskRequest, TaskStatus,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};

/// The fuzz guest's component, in `target/swarms/`.
const COMPONENT: &str = "import_fuzz.wasm";

/// The guest under the loose contract, and under the tight one.
const LOOSE: &str = "import-fuzz";
const TIGHT: &str = "import-fuzz-tight";

/// The bystander, as `config/hello-world.toml` names it.
const BYSTANDER: &str = "hello-world";

/// The value of `api_token`, which the guest gets and tries to leak.
const TOKEN: &str = "fz-token-7f3a9c1e5b2d4680";

/// The seed of `signing_key` (RFC 8032's first test key).
const SIGNING_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// Most calls the guest makes in one task.
pub const MAX_CALLS: u32 = 256;

/// Room for the text around a bounded guest message (the swarm and task
/// ids, the error's own words, the cut marker).
const MESSAGE_SLACK: usize = 1024;

/// How long a task's terminal record may take to reach the audit log.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// One case: the guest's seed, how many calls it makes, and whether it
/// runs under the tight contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Chooses every call, its arguments and how the task ends.
    pub seed: u64,
    /// Import calls to make (at most [`MAX_CALLS`]).
    pub calls: u32,
    /// Run under the tight contract (`import-fuzz-tight`).
    pub tight: bool,
}

impl Input {
    /// The input as a regression file.
    pub fn to_text(&self) -> String {
        format!(
            "seed = {}\ncalls = {}\ncontract = {}\n",
            self.seed,
            self.calls,
            if self.tight { "tight" } else { "loose" }
        )
    }

    /// An input from a regression file: `seed = N` and `calls = N` lines,
    /// and optionally `contract = loose|tight` (loose when absent); blank
    /// lines and `#` comments are skipped.
    pub fn parse(bytes: &[u8]) -> Result<Input, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let (mut seed, mut calls, mut tight) = (None, None, false);
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad("expected key = value"))?;
            let value = value.trim();
            match key.trim() {
                "seed" => seed = Some(value.parse::<u64>().map_err(|_| bad("bad seed"))?),
                "calls" => {
                    calls = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n <= MAX_CALLS)
                            .ok_or_else(|| bad("calls must be 0 to 256"))?,
                    )
                }
                "contract" => {
                    tight = match value {
                        "loose" => false,
                        "tight" => true,
                        _ => return Err(bad("contract must be loose or tight")),
                    }
                }
                _ => return Err(bad("unknown key")),
            }
        }
        Ok(Input {
            seed: seed.ok_or("no `seed = N` line")?,
            calls: calls.ok_or("no `calls = N` line")?,
            tight,
        })
    }
}

/// How the guest ends a task, by its seed: the guest's `Ending::of`
/// (`seed % 32` of 29, 30 and 31 fail, answer hostile output and panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Summary,
    Fail,
    Hostile,
    Panic,
}

impl Ending {
    fn of(seed: u64) -> Ending {
        match seed % 32 {
            29 => Ending::Fail,
            30 => Ending::Hostile,
            31 => Ending::Panic,
            _ => Ending::Summary,
        }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1, a thread per connection: it reads
/// the request head and body and answers every request, then closes.
/// `/big` answers one byte past the proxy's response cap, `/redirect` a
/// redirect to the metadata address, `/headers` odd response headers;
/// every other path a short `200`.
struct Server {
    port: u16,
    /// A port of 127.0.0.1 where nothing listens.
    closed_port: u16,
}

/// Most bytes of a request head or body the server reads.
const SERVER_READ_LIMIT: usize = 2 * 1024 * 1024;

impl Server {
    fn start() -> Result<Server, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let closed_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        std::thread::Builder::new()
            .name("fuzz-imports-http".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = std::thread::Builder::new()
                        .name("fuzz-imports-conn".into())
                        .spawn(move || {
                            let _ = answer(stream);
                        });
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Server { port, closed_port })
    }

    /// The URL bases the contracts allow, as the guest's payload names them.
    fn allowed(&self) -> Value {
        json!([
            format!("http://127.0.0.1:{}/", self.port),
            format!("http://127.0.0.1:{}/", self.closed_port),
            format!("http://localhost:{}/", self.port),
        ])
    }
}

fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > SERVER_READ_LIMIT {
            return respond(stream, "431 Request Header Fields Too Large", &[], b"");
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(SERVER_READ_LIMIT);
    let mut body = buf.len() - head_end;
    while body < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body += n;
    }
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or_default();
    match path {
        "/big" => respond(
            stream,
            "200 OK",
            &[],
            &vec![b'b'; MAX_PROXY_RESPONSE_BYTES + 1],
        ),
        "/redirect" => respond(
            stream,
            "302 Found",
            &[("Location", b"http://169.254.169.254/latest/meta-data/")],
            b"",
        ),
        "/headers" => respond(
            stream,
            "200 OK",
            &[
                ("X-Weird", b"\xff\xfe\x1b[31m"),
                ("Set-Cookie", b"a=b; HttpOnly"),
                ("X-Long", &[b'l'; 8000]),
                ("Location", b"http://evil.example.net/"),
            ],
            b"odd headers",
        ),
        _ => respond(stream, "200 OK", &[], format!("ok {body}").as_bytes()),
    }
}

fn respond(
    mut stream: TcpStream,
    status: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

/// The secret's forms the host must never show: the values themselves,
/// and the encodings its redactor looks for.
fn secret_forms() -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = vec![TOKEN.to_string(), SIGNING_SEED.to_string()];
    forms.push(hex::encode(TOKEN));
    forms.push(hex::encode_upper(TOKEN));
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        let mut b64 = engine.encode(TOKEN);
        if !TOKEN.len().is_multiple_of(3) {
            b64.pop();
        }
        forms.push(b64);
    }
    forms
}

/// What is wrong with a piece of text the host shows or stores, if
/// anything: longer than `max_bytes`, an unescaped character, a secret.
fn bad_text(text: &str, max_bytes: usize, secrets: &[String]) -> Option<String> {
    if text.len() > max_bytes {
        return Some(format!(
            "{} bytes, over {max_bytes}: {}…",
            text.len(),
            chassis::text::escape(text, 200)
        ));
    }
    if let Some(c) = text.chars().find(|c| chassis::text::is_unsafe(*c)) {
        return Some(format!(
            "an unescaped U+{:04X} in {}",
            u32::from(c),
            chassis::text::escape(text, 300)
        ));
    }
    if secrets.iter().any(|s| text.contains(s.as_str())) {
        return Some(format!(
            "a form of the secret in {}",
            chassis::text::escape(text, 300)
        ));
    }
    None
}

/// The guest log sink: checks every line the host hands an embedder and
/// keeps the first bad one.
struct LineCheck {
    secrets: Vec<String>,
    first_bad: Mutex<Option<String>>,
}

impl GuestLogSink for LineCheck {
    fn line(&self, line: &GuestLine<'_>) {
        // The cut marker, and an escape that starts just under the cap.
        let max = MAX_LOG_LINE_BYTES + 64;
        if let Some(why) = bad_text(line.text, max, &self.secrets) {
            let mut first = self.first_bad.lock().expect("line check lock");
            if first.is_none() {
                *first = Some(format!(
                    "a {} line of {}: {why}",
                    line.channel, line.swarm_id
                ));
            }
        }
    }
}

/// What the process's hosts share: the server and the component.
struct Shared {
    server: Server,
    component: Vec<u8>,
}

fn shared(root: &Path) -> Result<&'static Shared, String> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Ok(Shared {
                component: crate::host::component(root, COMPONENT)?,
                server: Server::start()?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The fuzz guest's contract: `tight` for the tight rates.
fn contract(swarm_id: &str, server: &Server, tight: bool) -> ServiceContract {
    let (calls, lines, bytes) = if tight {
        (5, 20, 4096)
    } else {
        (1000, 2000, 16 * 1024 * 1024)
    };
    let text = format!(
        "swarm_id = \"{swarm_id}\"\n\
         [resource_limits]\n\
         max_memory_mb = 64\nmax_cpu_percent = 100\nmax_concurrent_tasks = 1\n\
         task_timeout_seconds = 10\nmax_network_bandwidth_mbps = 1000\n\
         max_api_calls_per_second = {calls}\nmax_log_lines_per_second = {lines}\n\
         max_log_bytes_per_second = {bytes}\n\
         [security]\n\
         scoped_credentials = [\"api_token\", \"signing_key\", \"missing\"]\n\
         wasi_capabilities = [\"wasi:io/streams\"]\n\
         network_access = \"proxy_only\"\n\
         allowed_endpoints = {}\n\
         [reputation]\nquarantine_threshold = 0.0\nmax_failure_rate_percent = 100\n",
        server.allowed()
    );
    ServiceContract::from_toml(&text, "fuzz").expect("the fuzz contract is valid")
}

/// Where this process's audit logs and component cache go.
fn scratch(root: &Path) -> PathBuf {
    root.join("target/tmp/fuzz-imports")
}

/// How far the audit log has been read, and what it held.
#[derive(Default)]
struct Reader {
    /// Bytes of whole lines read.
    offset: u64,
    /// Records read.
    records: u64,
    /// Terminal records (`task_complete`, `task_failed`) by task id.
    terminal: HashMap<String, u32>,
}

/// One batch's host; see the module docs.
struct Host {
    runtime: &'static tokio::runtime::Runtime,
    chassis: Chassis,
    audit: Arc<AuditLog>,
    path: PathBuf,
    allowed: Value,
    lines: Arc<LineCheck>,
    secrets: Vec<String>,
    reader: RefCell<Reader>,
    /// The `fuzz` tasks run, in order.
    tasks: RefCell<Vec<String>>,
    /// Tasks whose case failed: their records still coming in are not
    /// checked again (they would fail the cases proptest shrinks with).
    failed: RefCell<HashSet<String>>,
}

impl Host {
    fn new(root: &Path) -> Result<Host, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shared = shared(root)?;
        let runtime = crate::host::runtime()?;
        let dir = scratch(root);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!(
            "audit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        // One segment, followed as a file as it grows.
        let mut options = chassis::audit::AuditOptions::new(FsyncPolicy::Never);
        options.segment_max_bytes = u64::MAX;
        let audit = AuditLog::open_with(&path, options)
            .map_err(|e| format!("opening the audit log: {e}"))?;
        let secrets = secret_forms();
        let lines = Arc::new(LineCheck {
            secrets: secrets.clone(),
            first_bad: Mutex::new(None),
        });
        let mut store = SecretStore::new();
        for swarm in [LOOSE, TIGHT] {
            store.insert(swarm, "api_token", Secret::new(TOKEN));
            store.insert(
                swarm,
                "signing_key",
                Secret::new(format!("ed25519:{SIGNING_SEED}")),
            );
        }
        let config = ChassisConfig::default()
            .with_load_timeout(Duration::from_secs(5))
            .with_secrets(store)
            .with_audit_log(audit.clone())
            .with_log_sink(lines.clone())
            .with_cache_dir(dir.join("cache"));
        let chassis = Chassis::with_config(config).map_err(|e| e.to_string())?;
        runtime.block_on(async {
            chassis
                .load(root.join("config/hello-world.toml"))
                .await
                .map_err(|e| format!("loading the bystander: {e}"))?;
            for (swarm, tight) in [(LOOSE, false), (TIGHT, true)] {
                chassis
                    .load_bytes(&shared.component, contract(swarm, &shared.server, tight))
                    .await
                    .map_err(|e| format!("loading {swarm}: {e}"))?;
            }
            Ok::<_, String>(())
        })?;
        Ok(Host {
            runtime,
            chassis,
            audit,
            path,
            allowed: shared.server.allowed(),
            lines,
            secrets,
            reader: RefCell::default(),
            tasks: RefCell::default(),
            failed: RefCell::default(),
        })
    }

    /// One case; see the module docs for what is checked.
    fn check(&self, input: &Input) -> Result<(), String> {
        let swarm = if input.tight { TIGHT } else { LOOSE };
        let request = TaskRequest::new(
            "fuzz",
            json!({"seed": input.seed, "calls": input.calls, "allowed": self.allowed}),
        );
        let task_id = request.task_id.clone();
        self.tasks.borrow_mut().push(task_id.clone());
        let checked = self.run(input, swarm, request);
        if checked.is_err() {
            self.failed.borrow_mut().insert(task_id);
        }
        checked
    }

    fn run(&self, input: &Input, swarm: &str, request: TaskRequest) -> Result<(), String> {
        let task_id = request.task_id.clone();
        let result = self
            .runtime
            .block_on(self.chassis.execute_task(swarm, request));
        self.outcome(input, result)?;
        self.runtime
            .block_on(crate::host::greet(&self.chassis, BYSTANDER))?;
        if let Some(why) = self.lines.first_bad.lock().expect("line check lock").take() {
            return Err(format!("a guest log line: {why}"));
        }
        self.follow(&task_id)
    }

    /// The task's ending against the seed's.
    fn outcome(
        &self,
        input: &Input,
        result: Result<chassis::TaskOutcome, chassis::Error>,
    ) -> Result<(), String> {
        let ending = Ending::of(input.seed);
        let max = MAX_ERROR_MESSAGE_BYTES + MESSAGE_SLACK;
        match result {
            Ok(o) if o.status == TaskStatus::Success => {
                let summary = match ending {
                    Ending::Summary => &o.output,
                    Ending::Hostile => &o.output["summary"],
                    _ => {
                        return Err(format!(
                            "the task answered though the seed ends in {ending:?}: {}",
                            chassis::text::escape(&o.output.to_string(), 300)
                        ));
                    }
                };
                if summary["calls"] != input.calls {
                    return Err(format!("the guest's summary is {summary}"));
                }
                if summary["log"].get("overflow_returned").is_some() {
                    return Err(format!(
                        "a call past the host-call cap came back to the guest: {summary}"
                    ));
                }
                Ok(())
            }
            Ok(o) => {
                if ending != Ending::Fail {
                    return Err(format!(
                        "the task failed though the seed ends in {ending:?}: {:?}",
                        o.error
                    ));
                }
                let message = o.error.as_ref().map(|e| e.message()).unwrap_or_default();
                match bad_text(message, max, &self.secrets) {
                    Some(why) => Err(format!("the guest's error message: {why}")),
                    None => Ok(()),
                }
            }
            Err(e) => {
                let kind = e.kind();
                let expected = match kind {
                    ErrorKind::RateLimited => input.tight,
                    ErrorKind::TooLarge => true,
                    ErrorKind::Trap => ending == Ending::Panic,
                    ErrorKind::InvalidOutput => ending == Ending::Hostile,
                    _ => false,
                };
                let message = e.to_string();
                if !expected {
                    return Err(format!(
                        "the task ended in {} (seed ends in {ending:?}): {}",
                        kind.as_str(),
                        chassis::text::escape(&message, 2048)
                    ));
                }
                match bad_text(&message, max, &self.secrets) {
                    Some(why) => Err(format!("a {} error: {why}", kind.as_str())),
                    None => Ok(()),
                }
            }
        }
    }

    /// Read the audit log's new whole records, checking each.
    fn read_new(&self) -> Result<(), String> {
        let mut reader = self.reader.borrow_mut();
        let segment = self.path.join(chassis::audit::segment_name(1));
        let mut file =
            std::fs::File::open(&segment).map_err(|e| format!("{}: {e}", segment.display()))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(reader.offset))
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        let max = MAX_ERROR_MESSAGE_BYTES + MESSAGE_SLACK;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                break;
            }
            reader.offset += line.len() as u64;
            reader.records += 1;
            let record: Value = serde_json::from_slice(line)
                .map_err(|e| format!("audit record {} is not JSON: {e}", reader.records))?;
            let task = record["task_id"].as_str().unwrap_or_default();
            if matches!(
                record["operation"].as_str(),
                Some("task_complete" | "task_failed")
            ) {
                *reader.terminal.entry(task.to_string()).or_default() += 1;
            }
            if self.failed.borrow().contains(task) {
                continue;
            }
            let mut strings = Vec::new();
            strings_in(&record, &mut strings);
            for text in strings {
                if let Some(why) = bad_text(text, max, &self.secrets) {
                    return Err(format!(
                        "audit record {} ({} of {task}): {why}",
                        reader.records, record["operation"]
                    ));
                }
            }
        }
        Ok(())
    }

    /// Read the audit log until the task's terminal record is there, and
    /// check it is there once.
    fn follow(&self, task_id: &str) -> Result<(), String> {
        let deadline = Instant::now() + RECORD_WAIT;
        loop {
            self.read_new()?;
            let found = self.reader.borrow().terminal.get(task_id).copied();
            match found {
                Some(1) => return Ok(()),
                Some(n) => {
                    return Err(format!(
                        "the audit log has {n} terminal records for {task_id}"
                    ));
                }
                None if Instant::now() > deadline => {
                    return Err(format!(
                        "no task_complete or task_failed record for {task_id} in the audit log after {} s",
                        RECORD_WAIT.as_secs()
                    ));
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// The end of a batch: the log closed, verified, fully read, and one
    /// terminal record for every task; then it is removed.
    fn finish(self) -> Result<(), String> {
        self.audit
            .close()
            .map_err(|e| format!("closing the audit log: {e}"))?;
        self.read_new()?;
        let verified = chassis::audit::verify(&self.path)
            .map_err(|e| format!("the audit log does not verify: {e}"))?;
        let reader = self.reader.borrow();
        if verified.records != reader.records || verified.partial_tail_bytes != 0 {
            return Err(format!(
                "the audit log verifies {} records (partial tail {} bytes), {} were read",
                verified.records, verified.partial_tail_bytes, reader.records
            ));
        }
        for task in self.tasks.borrow().iter() {
            let n = reader.terminal.get(task).copied().unwrap_or(0);
            if n != 1 {
                return Err(format!("the audit log has {n} terminal records for {task}"));
            }
        }
        drop(reader);
        let _ = std::fs::remove_dir_all(&self.path);
        Ok(())
    }
}

/// Every string in a JSON value, keys included.
fn strings_in<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k);
                strings_in(v, out);
            }
        }
        _ => {}
    }
}

/// The cases: any seed; up to 64 calls, and one case in seven up to 192
/// more (enough for the tight contract to end a task for rate); a quarter
/// of them under the tight contract. Shrinking drops the extra calls,
/// then calls from the end (a prefix of the same sequence).
fn input() -> impl Strategy<Value = Input> {
    (
        any::<u64>(),
        0u32..=64,
        proptest::bool::weighted(1.0 / 7.0),
        0u32..=MAX_CALLS - 64,
        proptest::bool::weighted(0.25),
    )
        .prop_map(|(seed, calls, long, extra, tight)| Input {
            seed,
            calls: calls + if long { extra } else { 0 },
            tight,
        })
}

/// Check one input given as a regression file, on a host of its own.
pub fn replay(root: &Path, bytes: &[u8]) -> Result<(), String> {
    let input = Input::parse(bytes)?;
    let host = Host::new(root)?;
    host.check(&input)?;
    host.finish()
}

/// One batch of cases, on one host.
pub(crate) fn fuzz(
    root: &Path,
    runner: &mut TestRunner,
    slowest: &mut Duration,
) -> Result<(), (String, Vec<u8>)> {
    let host = Host::new(root).map_err(|e| (e, Vec::new()))?;
    let slowest_here = Cell::new(*slowest);
    let result = runner.run(&input(), |input| {
        crate::timed(&slowest_here, || host.check(&input)).map_err(TestCaseError::fail)
    });
    *slowest = slowest_here.get();
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            return Err((reason.to_string(), input.to_text().into_bytes()));
        }
        Err(TestError::Abort(reason)) => return Err((reason.to_string(), Vec::new())),
    }
    host.finish()
        .map_err(|e| (format!("at the end of the batch: {e}"), Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_through_their_text() {
        let input = Input {
            seed: u64::MAX,
            calls: 256,
            tight: true,
        };
        assert_eq!(Input::parse(input.to_text().as_bytes()), Ok(input));
        assert_eq!(
            Input::parse(b"# a comment\nseed = 7\n\ncalls = 3 # three\n"),
            Ok(Input {
                seed: 7,
                calls: 3,
                tight: false
            })
        );
        for bad in [
            "seed = 1",
            "calls = 1",
            "seed = x\ncalls = 1",
            "seed = 1\ncalls = 257",
            "seed = 1\ncalls = 1\nmode = 2",
        ] {
            assert!(Input::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_endings_are_the_guests() {
        assert_eq!(Ending::of(29), Ending::Fail);
        assert_eq!(Ending::of(32 + 30), Ending::Hostile);
        assert_eq!(Ending::of(31), Ending::Panic);
        assert_eq!(Ending::of(0), Ending::Summary);
    }
}
