//! What a task's `Store` holds: the swarm it belongs to, its WASI context and
//! resource table, and its memory limits.
//!
//! One `HostState` is built per task and dropped with the task's store, so
//! nothing a guest does can outlive its task.

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::contract::ServiceContract;

/// Store data of one task.
pub struct HostState {
    /// The contract of the swarm the task belongs to.
    pub(crate) contract: Arc<ServiceContract>,
    /// The task's id (`describe` at load time runs with a `load` id).
    pub(crate) task_id: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
}

impl HostState {
    /// The swarm id, for log prefixes and errors.
    pub(crate) fn swarm_id(&self) -> &str {
        &self.contract.swarm_id
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
