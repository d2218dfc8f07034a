//! Helpers for the end-to-end tests in `tests/tests/`: where the built
//! components and the example contracts are, a host with them loaded, and
//! an HTTP server for the proxy tests ([`TestServer`]).
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

mod server;

pub use server::{Received, TestCa, TestServer};
