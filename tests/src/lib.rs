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

/// Log lines captured from `tracing` while a test runs (plain text, one
/// event per line). Install with [`capture_logs`]; works on the test's own
/// thread, which is where a `#[tokio::test]` runs the guest.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture every `tracing` event on this thread until the guard is dropped.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}
