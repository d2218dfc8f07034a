//! The baseline: the same components run by bare wasmtime, as an embedder
//! would without the chassis. One engine with the pooling allocator (with
//! the chassis's own settings, [`chassis::PoolConfig::pooling_allocation_config`],
//! so that the ratio shows what the chassis adds, not a tuning difference), one
//! linker with WASI and the chassis interfaces as do-nothing host functions,
//! one `InstancePre` per component, and per task a fresh `Store` and one
//! `execute` call. No limits, no events, no audit log, no SLOs.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use chassis::PoolConfig;
use chassis::bindings::{Swarm, SwarmPre, credentials, http_proxy, log, storage, types};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store state: a default WASI context.
pub struct BareState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for BareState {}

impl log::Host for BareState {
    async fn log(&mut self, _level: log::Level, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl credentials::Host for BareState {
    async fn get(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<String, credentials::CredentialError>> {
        Ok(Ok(crate::setup::BENCH_TOKEN.to_string()))
    }

    async fn sign(
        &mut self,
        _name: String,
        _message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, credentials::CredentialError>> {
        Ok(Err(credentials::CredentialError::Unsupported(
            "not in the baseline".into(),
        )))
    }

    async fn public_key(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<Vec<u8>, credentials::CredentialError>> {
        Ok(Err(credentials::CredentialError::Unsupported(
            "not in the baseline".into(),
        )))
    }
}

impl http_proxy::Host for BareState {
    async fn fetch(
        &mut self,
        _request: http_proxy::Request,
    ) -> wasmtime::Result<Result<http_proxy::Response, http_proxy::ProxyError>> {
        Ok(Err(http_proxy::ProxyError::Denied(
            "not in the baseline".into(),
        )))
    }
}

/// The baseline has no object store: every call is refused.
impl storage::Host for BareState {
    async fn get(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }

    async fn set(
        &mut self,
        _name: String,
        _value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }

    async fn delete(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }

    async fn exists(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<bool, storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }

    async fn list_keys(
        &mut self,
        _prefix: String,
        _cursor: Option<String>,
        _limit: u32,
    ) -> wasmtime::Result<Result<storage::KeyResponse, storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }

    async fn stat(
        &mut self,
        _name: String,
    ) -> wasmtime::Result<Result<Option<storage::ObjectInfo>, storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }

    async fn usage(
        &mut self,
    ) -> wasmtime::Result<Result<storage::UsageInfo, storage::StorageError>> {
        Ok(Err(not_in_baseline()))
    }
}

fn not_in_baseline() -> storage::StorageError {
    storage::StorageError::Denied("not in the baseline".into())
}

/// Epoch interruption in the baseline engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// Off: no interruption checks in the compiled code.
    Off,
    /// On, with a ticker every 10 ms (the chassis's [`chassis::caps::EPOCH_TICK`])
    /// and a callback that lets the task go on (yielding to the async
    /// executor), as a host that enforces deadlines does.
    On,
}

/// A bare wasmtime engine and linker.
pub struct BareHost {
    engine: Engine,
    linker: Linker<BareState>,
    epoch: Epoch,
}

/// One component ready to instantiate.
#[derive(Clone)]
pub struct BareSwarm {
    host: Arc<BareHost>,
    pre: SwarmPre<BareState>,
}

impl BareHost {
    /// An engine with the pooling allocator sized by `pool` and otherwise
    /// set up as the chassis sets up its own: the same allocator settings,
    /// the same wasm stack limit.
    pub fn new(epoch: Epoch, pool: PoolConfig) -> Result<Arc<Self>> {
        Self::tuned(epoch, pool, |_| {})
    }

    /// The same, with `tune` changing the engine's configuration last:
    /// for figures that try the engine's own settings.
    pub fn tuned(
        epoch: Epoch,
        pool: PoolConfig,
        tune: impl FnOnce(&mut Config),
    ) -> Result<Arc<Self>> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(epoch == Epoch::On)
            .max_wasm_stack(chassis::caps::MAX_WASM_STACK)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
                pool.pooling_allocation_config(),
            ));
        tune(&mut config);
        let engine = Engine::new(&config)?;
        if epoch == Epoch::On {
            let weak = engine.weak();
            std::thread::spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(chassis::caps::EPOCH_TICK);
                }
            });
        }
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Swarm::add_to_linker::<BareState, HasSelf<BareState>>(&mut linker, |s| s)?;
        Ok(Arc::new(Self {
            engine,
            linker,
            epoch,
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile `bytes` and pre-link them.
    pub fn load(self: &Arc<Self>, bytes: &[u8]) -> Result<BareSwarm> {
        let component = Component::new(&self.engine, bytes)?;
        self.prelink(&component)
    }

    /// Pre-link a compiled component.
    pub fn prelink(self: &Arc<Self>, component: &Component) -> Result<BareSwarm> {
        let pre = SwarmPre::new(self.linker.instantiate_pre(component)?)?;
        Ok(BareSwarm {
            host: self.clone(),
            pre,
        })
    }
}

impl BareSwarm {
    /// A fresh store.
    pub fn store(&self) -> Store<BareState> {
        let state = BareState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.host.engine, state);
        if self.host.epoch == Epoch::On {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        }
        store
    }

    /// Instantiate in a fresh store and drop it: the part of a task that is
    /// wasmtime's instantiation alone.
    pub async fn instantiate_only(&self) -> Result<()> {
        let mut store = self.store();
        std::hint::black_box(self.pre.instantiate_async(&mut store).await?);
        Ok(())
    }

    /// Instantiate once, call `execute` once, then `calls` more times on the
    /// same instance: ms per call after the first. What a task would cost
    /// if instances were not fresh per task.
    pub async fn calls_after_the_first(
        &self,
        calls: u32,
        task_type: &str,
        payload: &str,
    ) -> Result<f64> {
        let (mut store, instance) = self.instance().await?;
        let request = request(task_type, payload);
        let task = instance.infrafabric_chassis_task();
        let mut call = async || {
            task.call_execute(&mut store, &request)
                .await?
                .map_err(|e| anyhow!("the task failed: {e:?}"))
        };
        call().await?;
        let t = std::time::Instant::now();
        for _ in 0..calls {
            std::hint::black_box(call().await?);
        }
        Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(calls))
    }

    /// A fresh store and an instance in it.
    async fn instance(&self) -> Result<(Store<BareState>, Swarm)> {
        let mut store = self.store();
        let instance = self.pre.instantiate_async(&mut store).await?;
        Ok((store, instance))
    }

    /// Run one task in a fresh instance; the output JSON.
    pub async fn run(&self, task_type: &str, payload: &str) -> Result<String> {
        let (mut store, instance) = self.instance().await?;
        instance
            .infrafabric_chassis_task()
            .call_execute(&mut store, &request(task_type, payload))
            .await?
            .map_err(|e| anyhow!("the task failed: {e:?}"))
    }
}

/// The task request both `run` and `calls_after_the_first` send.
fn request(task_type: &str, payload: &str) -> types::TaskRequest {
    types::TaskRequest {
        task_id: "bench".to_string(),
        task_type: task_type.to_string(),
        payload: payload.to_string(),
    }
}
