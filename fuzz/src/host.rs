//! What the targets that run components through a real host share: the
//! components `cargo xtask build` built into `target/swarms/`, the one
//! tokio runtime of the process that every such host runs on, and the
//! bystander's check (the well-behaved hello-world swarm, loaded beside
//! the hostile input, still greets correctly).

use std::path::Path;
use std::sync::OnceLock;

use chassis::{Chassis, TaskRequest};

/// The bytes of a built component, by file name in `target/swarms/`.
pub(crate) fn component(root: &Path, file: &str) -> Result<Vec<u8>, String> {
    let path = root.join("target/swarms").join(file);
    std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (`cargo xtask build` builds it)", path.display()))
}

/// The process's runtime for the hosts: one worker thread beside the
/// thread that blocks on a case.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The bystander `swarm_id` (hello-world's component) greets `b`
/// correctly.
pub(crate) async fn greet(chassis: &Chassis, swarm_id: &str) -> Result<(), String> {
    let outcome = chassis
        .execute_task(
            swarm_id,
            TaskRequest::new("hello", serde_json::json!({"name": "b"})),
        )
        .await
        .map_err(|e| format!("the bystander failed: {e}"))?;
    if outcome.output["greeting"] != "Hello, b!" {
        return Err(format!("the bystander answered {}", outcome.output));
    }
    Ok(())
}
