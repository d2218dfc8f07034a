//! What the tests of `chassis` as a real process share: scratch
//! directories and contracts; with what every crate's tests share (the
//! workspace root, `chassis serve`, `nats-server`, Chromium, the audit log
//! as text) from `chassis-test-support`.

#![allow(dead_code)]

use std::path::PathBuf;

pub use chassis_test_support::{
    Nats, Server, assert_ok, audit_segment, audit_text, browser, cut_audit, root,
};

/// What `server` answers on `/metrics` now.
pub async fn metrics(server: &Server) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A fresh directory under `target/tmp/` for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target/tmp/serve-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A contract in `dir` for a swarm `fragile` (the hostile `misbehave`
/// guest) that is quarantined by two failures in a window of two.
pub fn fragile_contract(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("fragile.toml");
    std::fs::write(
        &path,
        format!(
            "swarm_id = \"fragile\"\nwasm_module = {:?}\n\
             [security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [reputation]\nfailure_window = 2\nmax_failure_rate_percent = 10\n",
            root().join("target/swarms/misbehave.wasm"),
        ),
    )
    .unwrap();
    path
}
