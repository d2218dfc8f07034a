//! The toolkit of the end-to-end tests in `tests/tests/`: real components
//! run through the real host, nothing mocked.
//!
//! - [`guests`]: one constant per built component in `target/swarms/`, so a
//!   test names the guest it runs, and [`component`] reads its bytes.
//! - [`TestHost`]: the one way a test sets up a host: its configuration,
//!   secrets, event sinks (a [`MemorySink`], an audit log) and the swarms
//!   loaded before the test starts. It builds a [`Host`].
//! - [`TestServer`] and [`TestCa`]: an HTTP (or HTTPS) server on 127.0.0.1,
//!   built on hyper, for the HTTP proxy tests.
//! - [`Nats`]: a real `nats-server` with JetStream on 127.0.0.1, for the
//!   stores and queues that workers share (from `chassis-test-support`).
//! - [`capture_logs`], [`wat_swarm`], [`rss_bytes`], [`thread_cpu_time`]:
//!   the host's log lines, guests written in WAT, and process measurements.
//!
//! The components come from `cargo xtask build` (which `cargo xtask test`
//! runs first); a missing one is a test failure that says so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chassis::audit::{AuditLog, FsyncPolicy};
use chassis::{
    Chassis, ChassisConfig, ContractBuilder, Event, MemorySink, Secret, ServiceContract, SwarmInfo,
};

pub use chassis_test_support::{Nats, audit_segment, audit_text, root};

/// Path of a contract in `config/` by its file stem, e.g.
/// `contract_path("research-agent-001")`. For a guest's own example
/// contract, [`guests::example`].
pub fn contract_path(name: &str) -> PathBuf {
    root().join("config").join(format!("{name}.toml"))
}

pub mod guests {
    //! The built guest components: one constant per file in
    //! `target/swarms/`, named by its file stem (`hello_world` for
    //! `target/swarms/hello_world.wasm`). `cargo xtask build` makes them from
    //! the swarm packages under `swarms/`: a package's name with `-` turned
    //! into `_`. The `guests` test module checks that every swarm has a
    //! constant, every constant a swarm, and every guest a test.

    use std::path::PathBuf;

    /// `swarms/hostile/alloc-loop`: spins in `cabi_realloc` on big payloads.
    pub const ALLOC_LOOP: &str = "alloc_loop";
    /// `swarms/analyzer`: the code analyzer in Rust (the reference).
    pub const ANALYZER: &str = "analyzer";
    /// `swarms/analyzer-as`: the analyzer in AssemblyScript (`chassis build`).
    pub const ANALYZER_AS: &str = "analyzer_as";
    /// `swarms/analyzer-c`: the analyzer in C (`chassis build`).
    pub const ANALYZER_C: &str = "analyzer_c";
    /// `swarms/analyzer-js`: the analyzer in JavaScript.
    pub const ANALYZER_JS: &str = "analyzer_js";
    /// `swarms/analyzer-py`: the analyzer in Python.
    pub const ANALYZER_PY: &str = "analyzer_py";
    /// `swarms/analyzer-ts`: the analyzer in TypeScript (`chassis build`).
    pub const ANALYZER_TS: &str = "analyzer_ts";
    /// `swarms/api-client`: fetches JSON through the HTTP proxy.
    pub const API_CLIENT: &str = "api_client";
    /// `swarms/bench-probe`: well-behaved work of a chosen size.
    pub const BENCH_PROBE: &str = "bench_probe";
    /// `swarms/hostile/early-bird`: asks for credentials and the network
    /// while it is being loaded.
    pub const EARLY_BIRD: &str = "early_bird";
    /// `swarms/hostile/egress`: steals credentials and fetches any URL.
    pub const EGRESS: &str = "egress";
    /// `swarms/hostile/fs-escape`: imports the filesystem.
    pub const FS_ESCAPE: &str = "fs_escape";
    /// `swarms/guardian-council`: votes, signed by the host.
    pub const GUARDIAN_COUNCIL: &str = "guardian_council";
    /// `swarms/hello-as`: the AssemblyScript SDK's example.
    pub const HELLO_AS: &str = "hello_as";
    /// `swarms/hello-c`: the C SDK's example.
    pub const HELLO_C: &str = "hello_c";
    /// `swarms/hello-cpp`: the C SDK's example, in C++.
    pub const HELLO_CPP: &str = "hello_cpp";
    /// `swarms/hello-js`: the JavaScript helpers' example.
    pub const HELLO_JS: &str = "hello_js";
    /// `swarms/hello-py`: the Python helpers' example.
    pub const HELLO_PY: &str = "hello_py";
    /// `swarms/hello-world`: the well-behaved bystander.
    pub const HELLO_WORLD: &str = "hello_world";
    /// `swarms/hostile/hog`: tasks each within their own limits that
    /// together take more than their swarm may.
    pub const HOG: &str = "hog";
    /// `swarms/hostile/import-fuzz`: random import calls with hostile
    /// arguments from a seed (the `imports` fuzz target's guest), or one
    /// given call.
    pub const IMPORT_FUZZ: &str = "import_fuzz";
    /// `swarms/hostile/leaky`: leaks its own secret in every channel.
    pub const LEAKY: &str = "leaky";
    /// `swarms/hostile/liar`: answers `describe` with a 3 MiB name.
    pub const LIAR: &str = "liar";
    /// `swarms/hostile/misbehave`: breaks every resource limit on request.
    pub const MISBEHAVE: &str = "misbehave";
    /// `swarms/hostile/misbehave-as`: breaks limits in AssemblyScript, and
    /// hands the SDK's canonical-ABI readers values to check.
    pub const MISBEHAVE_AS: &str = "misbehave_as";
    /// `swarms/hostile/misbehave-c`: breaks limits in C.
    pub const MISBEHAVE_C: &str = "misbehave_c";
    /// `swarms/hostile/misbehave-cpp`: breaks limits in C++.
    pub const MISBEHAVE_CPP: &str = "misbehave_cpp";
    /// `swarms/notes`: keeps notes and counters in its object store.
    pub const NOTES: &str = "notes";
    /// `swarms/notes-as`: the notes swarm in AssemblyScript (`chassis build`).
    pub const NOTES_AS: &str = "notes_as";
    /// `swarms/notes-js`: the notes swarm in JavaScript.
    pub const NOTES_JS: &str = "notes_js";
    /// `swarms/notes-py`: the notes swarm in Python.
    pub const NOTES_PY: &str = "notes_py";
    /// `swarms/hostile/net-escape`: imports sockets.
    pub const NET_ESCAPE: &str = "net_escape";
    /// `swarms/hostile/sandbox-probe`: looks at what WASI shows it.
    pub const SANDBOX_PROBE: &str = "sandbox_probe";
    /// `swarms/hostile/slow-load`: loops while it is being loaded.
    pub const SLOW_LOAD: &str = "slow_load";

    /// Every guest, in file-name order.
    pub const ALL: &[&str] = &[
        ALLOC_LOOP,
        ANALYZER,
        ANALYZER_AS,
        ANALYZER_C,
        ANALYZER_JS,
        ANALYZER_PY,
        ANALYZER_TS,
        API_CLIENT,
        BENCH_PROBE,
        EARLY_BIRD,
        EGRESS,
        FS_ESCAPE,
        GUARDIAN_COUNCIL,
        HELLO_AS,
        HELLO_C,
        HELLO_CPP,
        HELLO_JS,
        HELLO_PY,
        HELLO_WORLD,
        HOG,
        IMPORT_FUZZ,
        LEAKY,
        LIAR,
        MISBEHAVE,
        MISBEHAVE_AS,
        MISBEHAVE_C,
        MISBEHAVE_CPP,
        NET_ESCAPE,
        NOTES,
        NOTES_AS,
        NOTES_JS,
        NOTES_PY,
        SANDBOX_PROBE,
        SLOW_LOAD,
    ];

    /// Where the built component of `guest` is.
    pub fn path(guest: &str) -> PathBuf {
        super::root()
            .join("target/swarms")
            .join(format!("{guest}.wasm"))
    }

    /// The example contract of `guest` in `config/` (its stem with `-` for
    /// `_`, e.g. `config/hello-world.toml`); its `wasm_module` is this guest.
    pub fn example(guest: &str) -> PathBuf {
        super::contract_path(&guest.replace('_', "-"))
    }
}

/// Bytes of a built component, e.g. `component(guests::HELLO_WORLD)`.
pub fn component(guest: &str) -> Vec<u8> {
    let path = guests::path(guest);
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

/// A contract for [`TestHost`]: TOML text, a [`ServiceContract`], or a
/// [`ContractBuilder`] (built, and so validated, when the host is built).
pub trait IntoContract {
    /// The contract; panics if it is not valid.
    fn into_contract(self) -> ServiceContract;
}

impl IntoContract for &str {
    fn into_contract(self) -> ServiceContract {
        contract(self)
    }
}

impl IntoContract for &String {
    fn into_contract(self) -> ServiceContract {
        contract(self)
    }
}

impl IntoContract for String {
    fn into_contract(self) -> ServiceContract {
        contract(&self)
    }
}

impl IntoContract for ServiceContract {
    fn into_contract(self) -> ServiceContract {
        self
    }
}

impl IntoContract for ContractBuilder {
    fn into_contract(self) -> ServiceContract {
        self.build().expect("test contract is valid")
    }
}

/// A swarm to load while building a [`TestHost`].
enum Load {
    /// A contract file, loaded with [`Chassis::load`].
    File(PathBuf),
    /// Component bytes under a contract, loaded with [`Chassis::load_bytes`].
    Bytes {
        bytes: Vec<u8>,
        contract: Box<ServiceContract>,
    },
}

/// Builds the host of a test: configuration, secrets, event sinks and the
/// swarms loaded up front, in the order given.
///
/// ```no_run
/// # async fn demo() {
/// use chassis_tests::{TestHost, guests};
/// let host = TestHost::new()
///     .example(guests::HELLO_WORLD)
///     .component(guests::EGRESS, "swarm_id = \"thief\"\n[security]\nscoped_credentials = [\"k\"]\n")
///     .secret("thief", "k", "value")
///     .memory_sink()
///     .build()
///     .await;
/// host.execute_task("thief", chassis::TaskRequest::new("steal_credential", serde_json::json!({"name": "k"})))
///     .await
///     .unwrap();
/// assert!(!host.events().is_empty());
/// # }
/// ```
#[must_use]
pub struct TestHost {
    config: ChassisConfig,
    sink: bool,
    audit: Option<(PathBuf, FsyncPolicy)>,
    loads: Vec<Load>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// A host with the default configuration ([`ChassisConfig::default`]),
    /// no sinks, nothing loaded.
    pub fn new() -> Self {
        Self {
            config: ChassisConfig::default(),
            sink: false,
            audit: None,
            loads: Vec::new(),
        }
    }

    /// Change the configuration, e.g. `.config(|c| c.with_load_timeout(t))`
    /// or `.config(|c| ChassisConfig { fuel_metering: true, ..c })`. Sinks
    /// and secrets of this builder are added on top.
    pub fn config(mut self, change: impl FnOnce(ChassisConfig) -> ChassisConfig) -> Self {
        self.config = change(self.config);
        self
    }

    /// Hold `value` as the secret `key` of `swarm_id`.
    pub fn secret(mut self, swarm_id: &str, key: &str, value: impl Into<String>) -> Self {
        self.config
            .secrets
            .insert(swarm_id, key, Secret::new(value.into()));
        self
    }

    /// Keep swarms' objects in a [`chassis::storage::files::FileStore`] in
    /// `dir`.
    pub fn store(self, dir: impl AsRef<Path>) -> Self {
        let store = chassis::storage::files::FileStore::open(dir.as_ref())
            .unwrap_or_else(|e| panic!("opening the store: {e}"));
        self.config(|c| c.with_store(Arc::new(store)))
    }

    /// Record every event in a [`MemorySink`] ([`Host::events`]).
    pub fn memory_sink(mut self) -> Self {
        self.sink = true;
        self
    }

    /// Write an audit log at `path` ([`Host::audit_log`]), opened when the
    /// host is built.
    pub fn audit(mut self, path: impl Into<PathBuf>, fsync: FsyncPolicy) -> Self {
        self.audit = Some((path.into(), fsync));
        self
    }

    /// Load the example contract of `guest` from `config/`
    /// ([`guests::example`]), e.g. `hello-world` as a bystander.
    pub fn example(mut self, guest: &str) -> Self {
        self.loads.push(Load::File(guests::example(guest)));
        self
    }

    /// Load a contract file with [`Chassis::load`].
    pub fn contract_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.loads.push(Load::File(path.into()));
        self
    }

    /// Load the built component of `guest` under `contract` (TOML text or a
    /// [`ServiceContract`]) with [`Chassis::load_bytes`].
    pub fn component(mut self, guest: &str, contract: impl IntoContract) -> Self {
        self.loads.push(Load::Bytes {
            bytes: component(guest),
            contract: Box::new(contract.into_contract()),
        });
        self
    }

    /// Load component bytes made by the test (e.g. [`wat_swarm`]) under
    /// `contract`.
    pub fn bytes(mut self, bytes: Vec<u8>, contract: impl IntoContract) -> Self {
        self.loads.push(Load::Bytes {
            bytes,
            contract: Box::new(contract.into_contract()),
        });
        self
    }

    /// The host, with everything loaded; panics on any refusal.
    pub async fn build(self) -> Host {
        self.try_build()
            .await
            .unwrap_or_else(|e| panic!("building the test host: {e}"))
    }

    /// The host, or the first refusal: of the configuration
    /// ([`Chassis::with_config`]) or of a load.
    pub async fn try_build(self) -> Result<Host, chassis::Error> {
        let mut config = self.config;
        let sink = self.sink.then(MemorySink::new);
        if let Some(sink) = &sink {
            config = config.with_event_sink(Arc::new(sink.clone()));
        }
        let audit = match self.audit {
            Some((path, fsync)) => {
                let log = AuditLog::open(&path, fsync)
                    .unwrap_or_else(|e| panic!("opening the audit log {}: {e}", path.display()));
                config = config.with_audit_log(log.clone());
                Some((path, log))
            }
            None => None,
        };
        let chassis = Chassis::with_config(config)?;
        let mut loaded = Vec::new();
        for load in self.loads {
            loaded.push(match load {
                Load::File(path) => chassis.load(&path).await?,
                Load::Bytes { bytes, contract } => chassis.load_bytes(&bytes, *contract).await?,
            });
        }
        Ok(Host {
            chassis,
            sink,
            audit,
            loaded,
        })
    }
}

/// A host built by [`TestHost`]: the [`Chassis`] (which it derefs to), the
/// swarms loaded while building it, and its event sinks.
pub struct Host {
    /// The host.
    pub chassis: Chassis,
    /// What was loaded while building it, in order.
    pub loaded: Vec<SwarmInfo>,
    sink: Option<MemorySink>,
    audit: Option<(PathBuf, Arc<AuditLog>)>,
}

impl std::ops::Deref for Host {
    type Target = Chassis;

    fn deref(&self) -> &Chassis {
        &self.chassis
    }
}

impl Host {
    /// The sink of [`TestHost::memory_sink`].
    pub fn sink(&self) -> &MemorySink {
        self.sink
            .as_ref()
            .expect("the host was built without .memory_sink()")
    }

    /// Every event so far ([`TestHost::memory_sink`]).
    pub fn events(&self) -> Vec<Event> {
        self.sink().events()
    }

    /// The audit log of [`TestHost::audit`].
    pub fn audit_log(&self) -> &Arc<AuditLog> {
        &self
            .audit
            .as_ref()
            .expect("the host was built without .audit()")
            .1
    }

    /// Where the audit log of [`TestHost::audit`] is.
    pub fn audit_path(&self) -> &Path {
        &self
            .audit
            .as_ref()
            .expect("the host was built without .audit()")
            .0
    }

    /// The info of the one swarm loaded while building the host.
    pub fn info(&self) -> &SwarmInfo {
        match self.loaded.as_slice() {
            [info] => info,
            other => panic!("{} swarms were loaded, not one", other.len()),
        }
    }
}

/// A fresh, empty directory for one test's files: `name` under a
/// directory of this test process in `target/tmp/`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = root()
        .join("target/tmp")
        .join(format!("chassis-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
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
pub struct Logs(Arc<Mutex<Vec<u8>>>);

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
    wat_swarm_in("logging-swarm", wat)
}

/// [`wat_swarm`] against another world of the project's WIT (e.g.
/// `storing-swarm`, for a guest that calls the `storage` import).
pub fn wat_swarm_in(world: &str, wat: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat).expect("test WAT parses");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(root().join("wit"))
        .expect("project WIT parses");
    let world = resolve
        .select_world(&[pkg], Some(world))
        .unwrap_or_else(|e| panic!("world {world}: {e}"));
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

mod server;

pub use server::{Received, TestCa, TestServer};
