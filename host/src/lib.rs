//! IF.chassis: run untrusted WebAssembly components ("swarms") under
//! per-swarm service contracts.
//!
//! A swarm is a component that exports `infrafabric:chassis/task` (see the
//! WIT package in `wit/`). Each comes with a [`ServiceContract`] (TOML) that
//! bounds what it may use. The data path of one task:
//!
//! ```text
//! Chassis::execute_task(swarm_id, request)
//!   -> registry      the loaded swarm: contract + InstancePre      (registry)
//!   -> store         fresh Store: WASI per contract, memory limit,
//!                    epoch deadline                                 (runner, wasi)
//!   -> guest         task.execute(request)                          (bindings)
//!        <- imports  log / credentials / http-proxy, scoped to
//!                    the calling swarm                              (imports)
//!   -> TaskOutcome   status + output JSON + execution time          (outcome)
//! ```
//!
//! Loading checks the component before any of its code runs: it must be a
//! component (not a core module), export the task interface, and import
//! nothing its contract does not grant ([`imports::policy`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), chassis::Error> {
//! use chassis::{Chassis, TaskRequest};
//! let chassis = Chassis::new()?;
//! chassis.load("config/hello-world.toml").await?;
//! let outcome = chassis
//!     .execute_task("hello-world", TaskRequest::new("hello", serde_json::json!({"name": "Ada"})))
//!     .await?;
//! println!("{}", outcome.output);
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod contract;
mod engine;
mod error;
pub mod imports;
pub mod inspect;
mod outcome;
mod registry;
mod runner;
mod state;
pub mod wasi;

use std::path::Path;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use contract::{ContractError, ServiceContract};
pub use engine::{EPOCH_TICK, MAX_WASM_STACK};
pub use error::{Error, ImportRefusal};
pub use outcome::{GuestError, TaskOutcome, TaskRequest, TaskStatus};
pub use registry::{SwarmInfo, TASK_INTERFACE};
pub use runner::HOST_SLACK;
pub use state::HostState;

/// The host: loads swarms and runs their tasks. Cheap to clone; clones share
/// the engine and the loaded swarms, and may run tasks concurrently.
#[derive(Clone)]
pub struct Chassis {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    registry: registry::Registry,
}

impl Chassis {
    /// A host with no swarms loaded.
    pub fn new() -> Result<Self, Error> {
        let engine = engine::engine()?;
        let linker = engine::linker(&engine)?;
        engine::start_epoch_ticker(&engine);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                registry: registry::Registry::default(),
            }),
        })
    }

    /// The wasmtime engine every swarm runs on.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Load the swarm described by a contract file; its `wasm_module` is
    /// resolved relative to the contract file's directory.
    pub async fn load(&self, contract_path: impl AsRef<Path>) -> Result<SwarmInfo, Error> {
        let contract_path = contract_path.as_ref();
        let contract = ServiceContract::from_file(contract_path)?;
        if self.inner.registry.contains(&contract.swarm_id) {
            return Err(Error::AlreadyLoaded(contract.swarm_id));
        }
        let module = registry::module_path(&contract, contract_path)?;
        let bytes = std::fs::read(&module).map_err(|source| Error::Io {
            path: module.clone(),
            source,
        })?;
        self.load_from(&bytes, contract, module.display().to_string())
            .await
    }

    /// Load a swarm from component bytes and a contract built or parsed by the caller.
    pub async fn load_bytes(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
    ) -> Result<SwarmInfo, Error> {
        contract.validate()?;
        let origin = format!("<bytes for {}>", contract.swarm_id);
        self.load_from(bytes, contract, origin).await
    }

    async fn load_from(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
        origin: String,
    ) -> Result<SwarmInfo, Error> {
        if self.inner.registry.contains(&contract.swarm_id) {
            return Err(Error::AlreadyLoaded(contract.swarm_id));
        }
        let (pre, imports) = registry::prepare(
            &self.inner.engine,
            &self.inner.linker,
            bytes,
            &contract,
            &origin,
        )?;
        let contract = Arc::new(contract);
        let task_types = runner::describe(&self.inner.engine, &pre, &contract).await?;
        let info = SwarmInfo {
            swarm_id: contract.swarm_id.clone(),
            version: contract.version.clone(),
            origin,
            task_types,
            imports,
            contract: contract.clone(),
        };
        self.inner.registry.insert(registry::LoadedSwarm {
            contract,
            pre,
            info: info.clone(),
        })?;
        tracing::info!(target: "chassis", swarm = %info.swarm_id, "loaded {} ({} task types)", info.origin, info.task_types.len());
        Ok(info)
    }

    /// Unload a swarm. Tasks already running finish; new ones are refused.
    pub fn unload(&self, swarm_id: &str) -> Result<(), Error> {
        self.inner.registry.remove(swarm_id)?;
        tracing::info!(target: "chassis", swarm = swarm_id, "unloaded");
        Ok(())
    }

    /// Every loaded swarm, sorted by id.
    pub fn list(&self) -> Vec<SwarmInfo> {
        self.inner.registry.list()
    }

    /// What the host knows about one loaded swarm.
    pub fn describe(&self, swarm_id: &str) -> Result<SwarmInfo, Error> {
        Ok(self.inner.registry.get(swarm_id)?.info.clone())
    }

    /// Run one task on a loaded swarm, in a fresh instance.
    pub async fn execute_task(
        &self,
        swarm_id: &str,
        request: TaskRequest,
    ) -> Result<TaskOutcome, Error> {
        let swarm = self.inner.registry.get(swarm_id)?;
        runner::execute(&self.inner.engine, &swarm, request).await
    }
}
