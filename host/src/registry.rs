//! Loading and unloading swarms: the checks a component passes before any
//! task runs, and the table of loaded swarms.
//!
//! `load` reads the contract and the component, then in order: refuses a
//! duplicate id, refuses bytes that are not a component, compiles, checks the
//! component exports the task interface, checks each import against the
//! contract ([`crate::imports::policy`]), pre-links it into an `InstancePre`,
//! and asks it (in a throwaway store) which task types it serves. `replace`
//! runs the same checks beside the loaded version and then swaps the new
//! one into the table in one step; a task holds the version it started on
//! until it ends. The `Chassis::load`, `load_bytes`, `replace`,
//! `replace_bytes` and `unload` methods live here, next to the checks they
//! run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use crate::Chassis;
use crate::LoadError;
use crate::bindings::SwarmPre;
use crate::cache::{CacheUse, ComponentCache};
use crate::contract::ServiceContract;
use crate::error::{Error, ImportRefusal, chain};
use crate::events::Event;
use crate::inspect::require_component;
use crate::runner::warm::WarmPool;
use crate::state::{HostParts, HostState, SwarmRuntime};

/// The export every swarm must provide.
pub const TASK_INTERFACE: &str = "infrafabric:chassis/task@0.1.0";

/// A loaded swarm, ready to run tasks.
pub(crate) struct LoadedSwarm {
    pub(crate) runtime: Arc<SwarmRuntime>,
    pub(crate) pre: SwarmPre<HostState>,
    pub(crate) info: SwarmInfo,
    /// Its idle warm instances (`[instances]`), retired with the version.
    pub(crate) warm: WarmPool,
}

/// What the host knows about a loaded swarm.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmInfo {
    /// The swarm's id.
    pub swarm_id: String,
    /// The contract's version.
    pub version: String,
    /// Where the component came from (a path, or `<bytes>`).
    pub origin: String,
    /// The component's SHA-256, in hex: which build is serving.
    pub digest: String,
    /// The task types it serves, from its `describe` export.
    pub task_types: Vec<String>,
    /// The interfaces it imports.
    pub imports: Vec<String>,
    /// Whether its compiled code came from the component cache.
    pub cache: CacheUse,
    /// How long loading took (compile or cache, checks, `describe`), in ms.
    pub load_ms: f64,
    /// Its contract, defaults filled in.
    pub contract: Arc<ServiceContract>,
}

/// What [`Chassis::replace`] did: the version now loaded, and the one it
/// took the place of (`None` when the swarm was not loaded).
#[derive(Debug, Clone)]
pub struct Replacement {
    /// The new version.
    pub info: SwarmInfo,
    /// The version it replaced.
    pub previous: Option<SwarmInfo>,
}

/// The table of loaded swarms.
#[derive(Default)]
pub(crate) struct Registry {
    swarms: RwLock<HashMap<String, Arc<LoadedSwarm>>>,
}

impl Registry {
    pub(crate) fn get(&self, swarm_id: &str) -> Result<Arc<LoadedSwarm>, Error> {
        self.swarms
            .read()
            .expect("registry lock")
            .get(swarm_id)
            .cloned()
            .ok_or_else(|| Error::NotLoaded(swarm_id.to_string()))
    }

    pub(crate) fn contains(&self, swarm_id: &str) -> bool {
        self.swarms
            .read()
            .expect("registry lock")
            .contains_key(swarm_id)
    }

    pub(crate) fn insert(&self, swarm: LoadedSwarm) -> Result<(), Error> {
        let mut swarms = self.swarms.write().expect("registry lock");
        let id = swarm.info.swarm_id.clone();
        if swarms.contains_key(&id) {
            return Err(Error::Load(LoadError::AlreadyLoaded(id)));
        }
        swarms.insert(id, Arc::new(swarm));
        Ok(())
    }

    /// Put `swarm` in its id's place in one step, if the place still holds
    /// `expected` (the version it was checked beside, or nothing): tasks
    /// that start after it run on it; those already running keep the
    /// version they started on. `swapped` runs under the table's lock just
    /// before, so what it changes takes effect with the swap. Returns the
    /// version it replaced.
    pub(crate) fn swap(
        &self,
        swarm: LoadedSwarm,
        expected: Option<&Arc<LoadedSwarm>>,
        swapped: impl FnOnce(&LoadedSwarm),
    ) -> Result<Option<Arc<LoadedSwarm>>, Error> {
        let mut swarms = self.swarms.write().expect("registry lock");
        let id = swarm.info.swarm_id.clone();
        let unchanged = match (swarms.get(&id), expected) {
            (None, None) => true,
            (Some(now), Some(expected)) => Arc::ptr_eq(now, expected),
            _ => false,
        };
        if !unchanged {
            return Err(Error::Load(LoadError::ChangedWhileLoading(id)));
        }
        swapped(&swarm);
        let replaced = swarms.insert(id, Arc::new(swarm));
        drop(swarms);
        // Its idle instances go once the table is free again.
        if let Some(old) = &replaced {
            old.warm.retire();
        }
        Ok(replaced)
    }

    pub(crate) fn remove(&self, swarm_id: &str) -> Result<(), Error> {
        let removed = self
            .swarms
            .write()
            .expect("registry lock")
            .remove(swarm_id)
            .ok_or_else(|| Error::NotLoaded(swarm_id.to_string()))?;
        removed.warm.retire();
        Ok(())
    }

    /// Instance slots reserved by the loaded swarms (their
    /// `max_concurrent_tasks`), but for `except`'s.
    pub(crate) fn reserved_instances(&self, except: Option<&str>) -> u64 {
        self.swarms
            .read()
            .expect("registry lock")
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != except)
            .map(|(_, s)| u64::from(s.runtime.contract.resource_limits.max_concurrent_tasks))
            .sum()
    }

    /// Every loaded swarm, in no order.
    pub(crate) fn loaded(&self) -> Vec<Arc<LoadedSwarm>> {
        self.swarms
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn list(&self) -> Vec<SwarmInfo> {
        let mut all: Vec<SwarmInfo> = self
            .swarms
            .read()
            .expect("registry lock")
            .values()
            .map(|s| s.info.clone())
            .collect();
        all.sort_by(|a, b| a.swarm_id.cmp(&b.swarm_id));
        all
    }
}

impl Chassis {
    /// Load the swarm described by a contract file; its `wasm_module` is
    /// resolved relative to the contract file's directory.
    pub async fn load(&self, contract_path: impl AsRef<Path>) -> Result<SwarmInfo, Error> {
        let loaded = self.load_file(contract_path.as_ref(), Mode::New).await?;
        Ok(loaded.info)
    }

    /// Load the swarm of a contract file, or, when a swarm of its id is
    /// loaded, replace it: the new version is compiled, checked and asked
    /// for its task types beside the old one, then swapped in at once. New
    /// tasks run on the new version; tasks already running finish on the
    /// old. A new version that fails any check is refused (and audited) and
    /// the old one keeps serving. The swarm's SLO figures, reputation,
    /// quarantine and counters carry over; its reputation settings become
    /// the new contract's.
    ///
    /// Refused with [`LoadError::ChangedWhileLoading`] when the loaded swarm
    /// changed (another replacement, an unload, a load) while this one was
    /// being checked.
    pub async fn replace(&self, contract_path: impl AsRef<Path>) -> Result<Replacement, Error> {
        self.load_file(contract_path.as_ref(), Mode::Replace).await
    }

    /// [`Chassis::replace`] from component bytes and a contract.
    pub async fn replace_bytes(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
    ) -> Result<Replacement, Error> {
        self.load_checked(bytes, contract, None, Mode::Replace)
            .await
    }

    /// [`Chassis::replace_bytes`] naming where the bytes came from
    /// (`origin`, as its records show it).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) async fn replace_bytes_from(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
        origin: String,
    ) -> Result<Replacement, Error> {
        self.load_checked(bytes, contract, Some(origin), Mode::Replace)
            .await
    }

    async fn load_file(&self, contract_path: &Path, mode: Mode) -> Result<Replacement, Error> {
        let contract = match ServiceContract::from_file(contract_path) {
            Ok(contract) => contract,
            Err(e) => {
                // No swarm id to name: the record names the file.
                let result = Err(e.into());
                self.note_rejection("", &result);
                return result;
            }
        };
        let swarm_id = contract.swarm_id.clone();
        let result = match module_path(&contract, contract_path) {
            Ok(module) => {
                match crate::files::read_bounded(&module, self.inner.config.max_component_bytes) {
                    Ok(bytes) => {
                        self.load_from(&bytes, contract, module.display().to_string(), mode)
                            .await
                    }
                    Err(source) => Err(Error::Load(LoadError::Io {
                        path: module.clone(),
                        source,
                    })),
                }
            }
            Err(e) => Err(e),
        };
        self.note_rejection(&swarm_id, &result);
        result
    }

    /// Load a swarm from component bytes and a contract built or parsed by the caller.
    pub async fn load_bytes(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
    ) -> Result<SwarmInfo, Error> {
        let loaded = self.load_checked(bytes, contract, None, Mode::New).await?;
        Ok(loaded.info)
    }

    async fn load_checked(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
        origin: Option<String>,
        mode: Mode,
    ) -> Result<Replacement, Error> {
        let swarm_id = contract.swarm_id.clone();
        let limit = self.inner.config.max_component_bytes;
        let origin = origin.unwrap_or_else(|| format!("<bytes for {}>", contract.swarm_id));
        let result = match contract.validate() {
            Ok(()) if bytes.len() as u64 > limit => Err(Error::Load(LoadError::InvalidComponent {
                origin,
                reason: format!(
                    "{} bytes, over the host's limit of {limit} bytes (ChassisConfig::max_component_bytes)",
                    bytes.len()
                ),
            })),
            Ok(()) => self.load_from(bytes, contract, origin, mode).await,
            Err(e) => Err(e.into()),
        };
        self.note_rejection(&swarm_id, &result);
        result
    }

    fn note_rejection<T>(&self, swarm_id: &str, result: &Result<T, Error>) {
        if let Err(e) = result {
            self.inner.events.emit(|| Event::LoadRejected {
                swarm_id: swarm_id.to_string(),
                reason: e.to_string(),
            });
        }
    }

    /// Refuse a contract the instance pool cannot serve.
    /// A version being replaced (`replacing`) gives its slots back.
    fn check_pool(&self, contract: &ServiceContract, replacing: bool) -> Result<(), Error> {
        let Some(pool) = &self.inner.config.pool else {
            return Ok(());
        };
        let limits = &contract.resource_limits;
        let too_small = |reason: String| {
            Error::Load(LoadError::PoolTooSmall {
                swarm_id: contract.swarm_id.clone(),
                reason,
            })
        };
        if limits.max_memory_mb > pool.max_memory_mb {
            return Err(too_small(format!(
                "max_memory_mb = {} is more than this host's instance pool allows ({} MiB; raise PoolConfig::max_memory_mb)",
                limits.max_memory_mb, pool.max_memory_mb
            )));
        }
        let reserved = self
            .inner
            .registry
            .reserved_instances(replacing.then_some(contract.swarm_id.as_str()));
        let wanted = reserved + u64::from(limits.max_concurrent_tasks) + 1;
        if wanted > u64::from(pool.instances) {
            return Err(too_small(format!(
                "max_concurrent_tasks = {} does not fit: the instance pool has {} slots, {reserved} are reserved by loaded swarms and 1 is kept for loading (raise PoolConfig::instances)",
                limits.max_concurrent_tasks, pool.instances
            )));
        }
        if limits.max_fuel.is_some() && !self.inner.engine.get_consume_fuel() {
            return Err(too_small(
                "resource_limits.max_fuel is set but this host does not meter fuel (ChassisConfig::fuel_metering)".to_string(),
            ));
        }
        Ok(())
    }

    async fn load_from(
        &self,
        bytes: &[u8],
        contract: ServiceContract,
        origin: String,
        mode: Mode,
    ) -> Result<Replacement, Error> {
        if let Some(reason) = self.inner.events.failure() {
            return Err(Error::AuditUnavailable { reason });
        }
        let previous = match mode {
            Mode::New if self.inner.registry.contains(&contract.swarm_id) => {
                return Err(Error::Load(LoadError::AlreadyLoaded(contract.swarm_id)));
            }
            Mode::New => None,
            Mode::Replace => self.inner.registry.get(&contract.swarm_id).ok(),
        };
        self.check_pool(&contract, previous.is_some())?;
        let started = Instant::now();
        let (pre, imports, cache) = prepare(
            &self.inner.engine,
            &self.inner.linker,
            self.inner.cache.as_ref(),
            bytes,
            &contract,
            &origin,
        )?;
        let inner = &self.inner;
        let runtime = Arc::new(SwarmRuntime::new(
            Arc::new(contract),
            HostParts {
                queue: inner.config.queue,
                events: &inner.events,
                secrets: &inner.config.secrets,
                tls: &inner.tls,
                log_sink: inner.config.log_sink.as_ref(),
                store: inner.config.store.as_ref(),
                stopping: &inner.stopping,
            },
            previous.as_deref().map(|p| &*p.runtime),
        )?);
        let task_types = crate::runner::describe(
            &self.inner.engine,
            &pre,
            &runtime,
            self.inner.config.load_timeout,
        )
        .await?;
        let contract = runtime.contract.clone();
        let info = SwarmInfo {
            swarm_id: contract.swarm_id.clone(),
            version: contract.version.clone(),
            origin,
            digest: hex::encode(Sha256::digest(bytes)),
            task_types,
            imports,
            cache,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
            contract,
        };
        let swarm = LoadedSwarm {
            runtime,
            pre,
            info: info.clone(),
            warm: WarmPool::default(),
        };
        let replaced = match mode {
            Mode::New => {
                self.inner.registry.insert(swarm)?;
                None
            }
            Mode::Replace => self.inner.registry.swap(swarm, previous.as_ref(), |new| {
                new.runtime.health.reconfigure(&new.info.contract);
                let before = previous.as_ref().map(|p| &*p.runtime.throttle);
                new.runtime.throttle.reconfigure(&new.info.contract, before);
            })?,
        };
        match &replaced {
            None => {
                tracing::info!(target: "chassis", swarm = %info.swarm_id, "loaded {} ({} task types, {:.1} ms, cache {})", info.origin, info.task_types.len(), info.load_ms, info.cache.as_str());
                self.inner.events.emit(|| Event::ModuleLoaded {
                    swarm_id: info.swarm_id.clone(),
                    origin: info.origin.clone(),
                    digest: info.digest.clone(),
                    task_types: info.task_types.clone(),
                    settings: Some(info.contract.health_settings()),
                });
            }
            Some(old) => {
                tracing::info!(target: "chassis", swarm = %info.swarm_id, "replaced version {} ({}) by {} ({}) from {} ({:.1} ms)", old.info.version, short(&old.info.digest), info.version, short(&info.digest), info.origin, info.load_ms);
                self.inner.events.emit(|| Event::ModuleReplaced {
                    swarm_id: info.swarm_id.clone(),
                    origin: info.origin.clone(),
                    digest: info.digest.clone(),
                    previous_digest: old.info.digest.clone(),
                    task_types: info.task_types.clone(),
                    settings: Some(info.contract.health_settings()),
                });
            }
        }
        Ok(Replacement {
            info,
            previous: replaced.map(|old| old.info.clone()),
        })
    }

    /// Unload a swarm. Tasks already running finish; new ones are refused.
    pub fn unload(&self, swarm_id: &str) -> Result<(), Error> {
        self.inner.registry.remove(swarm_id)?;
        tracing::info!(target: "chassis", swarm = swarm_id, "unloaded");
        self.inner.events.emit(|| Event::ModuleUnloaded {
            swarm_id: swarm_id.to_string(),
        });
        Ok(())
    }
}

/// Whether a load may take the place of a loaded swarm of the same id.
#[derive(Clone, Copy)]
enum Mode {
    /// Refuse an id that is loaded.
    New,
    /// Load, or replace the loaded version.
    Replace,
}

/// The first 12 hex digits of a digest, for logs.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// Resolve a contract's `wasm_module` against the contract file's directory.
pub(crate) fn module_path(
    contract: &ServiceContract,
    contract_path: &Path,
) -> Result<PathBuf, Error> {
    let module = contract.wasm_module.as_ref().ok_or_else(|| {
        Error::Load(LoadError::MissingWasmModule {
            path: contract_path.to_path_buf(),
        })
    })?;
    Ok(match contract_path.parent() {
        Some(dir) if module.is_relative() => dir.join(module),
        _ => module.clone(),
    })
}

/// What [`prepare`] hands back: the pre-linked swarm, its imports, and
/// where its compiled code came from.
pub(crate) type Prepared = (SwarmPre<HostState>, Vec<String>, CacheUse);

/// Compile `bytes` (or take them from `cache`) and run every load-time check
/// except the `describe` call.
pub(crate) fn prepare(
    engine: &Engine,
    linker: &Linker<HostState>,
    cache: Option<&ComponentCache>,
    bytes: &[u8],
    contract: &ServiceContract,
    origin: &str,
) -> Result<Prepared, Error> {
    require_component(bytes, origin)?;
    let invalid = |reason: String| {
        Error::Load(LoadError::InvalidComponent {
            origin: origin.to_string(),
            reason,
        })
    };
    let compile = || Component::new(engine, bytes);
    let (component, cache_use) = match cache {
        Some(cache) => cache.get_or_compile(engine, bytes, compile),
        None => compile().map(|c| (c, CacheUse::Off)),
    }
    .map_err(|e| invalid(chain(&e)))?;
    let ty = component.component_type();

    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports.iter().any(|e| e == TASK_INTERFACE) {
        return Err(Error::Load(LoadError::MissingTaskExport {
            origin: origin.to_string(),
            expected: TASK_INTERFACE.to_string(),
            found: if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            },
        }));
    }

    let mut imports = Vec::new();
    let mut refusals = Vec::new();
    for (name, item) in ty.imports(engine) {
        let verdict = if matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            crate::imports::policy::check(contract, name)
        } else {
            Err(crate::imports::policy::Refusal {
                field: "(none)",
                reason: "only interface imports are supported".to_string(),
            })
        };
        match verdict {
            Ok(()) => imports.push(name.to_string()),
            Err(refusal) => refusals.push(ImportRefusal {
                import: name.to_string(),
                field: refusal.field.to_string(),
                reason: refusal.reason,
            }),
        }
    }
    if !refusals.is_empty() {
        return Err(Error::Load(LoadError::ImportNotPermitted {
            origin: origin.to_string(),
            refusals,
        }));
    }

    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| invalid(format!("does not match the host's imports: {}", chain(&e))))?;
    let pre = SwarmPre::new(instance_pre)
        .map_err(|e| invalid(format!("does not match the swarm world: {}", chain(&e))))?;
    Ok((pre, imports, cache_use))
}
