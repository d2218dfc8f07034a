//! The host library's typed errors.
//!
//! Each variant names what was wrong (the file or swarm, the import and the
//! contract field, the task type) so the CLI can print it on one line.

use std::path::PathBuf;

use crate::contract::ContractError;

/// One import a contract does not permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRefusal {
    /// The import, as the component names it (e.g. `wasi:filesystem/types@0.2.6`).
    pub import: String,
    /// The contract field that decides it (`(none)` when nothing can grant it).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

fn describe_refusals(refusals: &[ImportRefusal]) -> String {
    let parts: Vec<String> = refusals
        .iter()
        .map(|r| {
            format!(
                "import `{}` is not permitted by the contract: {}: {}",
                r.import, r.field, r.reason
            )
        })
        .collect();
    parts.join("; ")
}

/// Everything the host library can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The contract could not be read or is invalid.
    #[error(transparent)]
    Contract(#[from] ContractError),

    /// A component file could not be read.
    #[error("{}: cannot read component: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A contract loaded from a file has no `wasm_module`.
    #[error("{}: wasm_module: missing; say which component this contract is for", path.display())]
    MissingWasmModule {
        /// The contract file.
        path: PathBuf,
    },

    /// A swarm with this id is already loaded.
    #[error("swarm {0:?} is already loaded; unload it first")]
    AlreadyLoaded(String),

    /// No swarm with this id is loaded.
    #[error("swarm {0:?} is not loaded")]
    NotLoaded(String),

    /// The bytes are not WebAssembly at all.
    #[error("{origin}: not a valid wasm file: {reason}")]
    NotWasm {
        /// Where the bytes came from.
        origin: String,
        /// What is wrong with them.
        reason: String,
    },

    /// The bytes are a core module, not a component.
    #[error(
        "{origin}: is a core WebAssembly module, but a component is expected \
         (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Where the bytes came from.
        origin: String,
    },

    /// The component failed validation or compilation.
    #[error("{origin}: invalid component: {reason}")]
    InvalidComponent {
        /// Where the bytes came from.
        origin: String,
        /// wasmtime's explanation.
        reason: String,
    },

    /// The component does not export the task interface.
    #[error("{origin}: does not export `{expected}`, so it is not a swarm (it exports: {found})")]
    MissingTaskExport {
        /// Where the bytes came from.
        origin: String,
        /// The interface a swarm must export.
        expected: String,
        /// What it exports instead.
        found: String,
    },

    /// The component imports something its contract does not grant.
    #[error("{origin}: {}", describe_refusals(refusals))]
    ImportNotPermitted {
        /// Where the bytes came from.
        origin: String,
        /// Every refused import, in the component's order.
        refusals: Vec<ImportRefusal>,
    },

    /// Instantiating the component (or asking it what it serves) failed.
    #[error("swarm {swarm_id:?}: could not be started: {reason}")]
    Instantiate {
        /// The swarm.
        swarm_id: String,
        /// What went wrong.
        reason: String,
    },

    /// The task type is not one the swarm lists in `describe`.
    #[error(
        "swarm {swarm_id:?}: task not exported by swarm: {task_type:?} (it serves: {available})"
    )]
    TaskNotExported {
        /// The swarm.
        swarm_id: String,
        /// The requested task type.
        task_type: String,
        /// The task types it does serve.
        available: String,
    },

    /// The task ran past its wall-clock limit.
    #[error(
        "swarm {swarm_id:?} task {task_id:?}: timed out after {seconds} s (task_timeout_seconds)"
    )]
    Timeout {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The limit that was hit.
        seconds: f64,
    },

    /// The guest trapped (panic, unreachable, out-of-bounds access, limit...).
    #[error("swarm {swarm_id:?} task {task_id:?}: trapped: {message}")]
    Trap {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The trap and the guest's message, if any.
        message: String,
    },

    /// The guest reported success but its output is not JSON.
    #[error("swarm {swarm_id:?} task {task_id:?}: output is not valid JSON: {reason}")]
    InvalidOutput {
        /// The swarm.
        swarm_id: String,
        /// The task.
        task_id: String,
        /// The JSON parser's complaint.
        reason: String,
    },

    /// The engine could not be configured.
    #[error("engine configuration failed: {0}")]
    Engine(String),
}
