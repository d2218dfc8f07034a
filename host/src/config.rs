//! Host-wide configuration: the instance pool, fuel metering, the admission
//! queue and the event sinks. Per-swarm limits live in the contracts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::contract::ServiceContract;
use crate::events::{EventSink, EventSinks};
use crate::imports::log::GuestLogSink;
use crate::limits::QueueConfig;
use crate::secrets::SecretStore;

/// Sizes of the pooling instance allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Component instances that may exist at once, over all swarms. A swarm
    /// reserves `max_concurrent_tasks` of them at load time; one more is kept
    /// for loading.
    pub instances: u32,
    /// Largest linear memory of any instance, in MiB: the largest
    /// `max_memory_mb` a contract may ask for on this host.
    pub max_memory_mb: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            instances: 128,
            max_memory_mb: 1024,
        }
    }
}

impl PoolConfig {
    /// The pooling allocator's settings for a pool of this size: what the
    /// chassis's engine runs with, and what a bare wasmtime embedding must
    /// use to be compared with it (the benchmark's baseline does).
    ///
    /// Room for `instances` component instances (at least one), each with up
    /// to 64 core instances, 4 memories and 16 tables of up to
    /// [`crate::limits::MAX_TABLE_ELEMENTS`] elements; memories up to
    /// `max_memory_mb`. A slot is reset for its next task by zeroing in place
    /// the pages the task dirtied (found with `PAGEMAP_SCAN`, Linux 6.7+), up
    /// to 1 MiB per memory and table (64 KiB, zeroed whole, where the kernel
    /// lacks it), instead of with `madvise`: `madvise` flushes the TLB of
    /// every core running one of the host's threads, which costs more than a
    /// small task does.
    pub fn pooling_allocation_config(&self) -> wasmtime::PoolingAllocationConfig {
        use crate::limits::MAX_TABLE_ELEMENTS;

        let instances = self.instances.max(1);
        let mut p = wasmtime::PoolingAllocationConfig::new();
        p.total_component_instances(instances)
            // A Rust swarm has a handful of core instances; a Python or
            // JavaScript one (an interpreter and its adapters) several dozen.
            .total_core_instances(instances.saturating_mul(MAX_CORE_INSTANCES))
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .total_memories(instances.saturating_mul(2))
            .max_memories_per_component(4)
            .total_tables(instances.saturating_mul(8))
            .max_tables_per_component(16)
            .total_stacks(instances)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(self.max_memory_mb as usize * 1024 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let keep = keep_resident();
        p.linear_memory_keep_resident(keep)
            .table_keep_resident(keep);
        p
    }
}

/// Most core instances one component may contain.
pub const MAX_CORE_INSTANCES: u32 = 64;

/// Bytes of each linear memory and table kept resident (and zeroed in
/// place) when a slot is reused: 1 MiB where the kernel reports dirty pages
/// (PAGEMAP_SCAN, Linux 6.7+), so only what a task touched is zeroed; 64 KiB
/// elsewhere, where the whole amount is zeroed every time.
fn keep_resident() -> usize {
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        1024 * 1024
    } else {
        64 * 1024
    }
}

/// How a [`crate::Chassis`] is set up.
#[derive(Clone)]
pub struct ChassisConfig {
    /// The pooling allocator's sizes; `None` allocates each instance on demand.
    pub pool: Option<PoolConfig>,
    /// Count wasm fuel so contracts can set `max_fuel` (costs some speed for
    /// every swarm). Contracts with `max_fuel` are refused when this is off.
    pub fuel_metering: bool,
    /// Waiting room for tasks when a swarm's slots are all busy.
    pub queue: QueueConfig,
    /// How tasks addressed to a capability choose their swarm.
    pub routing: crate::governor::RoutingConfig,
    /// Where events go, in order: observers (metrics, tests), then the
    /// audit log.
    pub event_sinks: EventSinks,
    /// Secret values per swarm (the environment is read at load time too).
    pub secrets: SecretStore,
    /// A directory for precompiled components (`cache.rs`); `None`
    /// compiles every component on every load.
    pub cache_dir: Option<PathBuf>,
    /// Certificate authorities (DER) the HTTP proxy trusts for `https`
    /// besides the Mozilla roots it ships with: a private CA, say.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// How long loading a swarm may run the swarm's own code (instantiating
    /// it and its `describe` export), whatever its `task_timeout_seconds`.
    pub load_timeout: Duration,
    /// Largest component file [`crate::Chassis::load`] reads, in bytes.
    pub max_component_bytes: u64,
    /// Where every swarm's log lines go (log import, stdout, stderr);
    /// `None` logs them with `tracing` (target `swarm`). One swarm's can be
    /// sent elsewhere with [`crate::Chassis::set_log_sink`].
    pub log_sink: Option<Arc<dyn GuestLogSink>>,
    /// Where swarms granted storage keep their objects
    /// ([`crate::storage`]); `None` refuses to load a contract that grants
    /// storage.
    pub store: Option<Arc<dyn crate::storage::Store>>,
}

/// Default [`ChassisConfig::load_timeout`]: 10 s.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`ChassisConfig::max_component_bytes`]: 256 MiB (a Python
/// component with its interpreter is about 40 MiB).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 256 * 1024 * 1024;

impl std::fmt::Debug for ChassisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChassisConfig")
            .field("pool", &self.pool)
            .field("fuel_metering", &self.fuel_metering)
            .field("queue", &self.queue)
            .field("event_sinks", &self.event_sinks.len())
            .field("secrets", &self.secrets)
            .field("cache_dir", &self.cache_dir)
            .field(
                "extra_root_certificates",
                &self.extra_root_certificates.len(),
            )
            .field("load_timeout", &self.load_timeout)
            .field("max_component_bytes", &self.max_component_bytes)
            .field("log_sink", &self.log_sink.is_some())
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl Default for ChassisConfig {
    /// Pooling on ([`PoolConfig::default`]), no fuel metering, the default
    /// queue, no event sinks, no component cache, a 10 s load timeout,
    /// components up to 256 MiB.
    fn default() -> Self {
        Self {
            pool: Some(PoolConfig::default()),
            fuel_metering: false,
            queue: QueueConfig::default(),
            routing: crate::governor::RoutingConfig::default(),
            event_sinks: EventSinks::default(),
            secrets: SecretStore::new(),
            cache_dir: None,
            extra_root_certificates: Vec::new(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            log_sink: None,
            store: None,
        }
    }
}

impl ChassisConfig {
    /// The default configuration (see [`ChassisConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A configuration whose pool fits exactly these contracts (plus one
    /// instance for loading), with fuel metering on if any sets `max_fuel`.
    pub fn sized_for<'a>(contracts: impl IntoIterator<Item = &'a ServiceContract>) -> Self {
        let mut instances = 1;
        let mut max_memory_mb = 1;
        let mut fuel = false;
        for c in contracts {
            instances += c.resource_limits.max_concurrent_tasks;
            max_memory_mb = max_memory_mb.max(c.resource_limits.max_memory_mb);
            fuel |= c.resource_limits.max_fuel.is_some();
        }
        Self {
            pool: Some(PoolConfig {
                instances,
                max_memory_mb,
            }),
            fuel_metering: fuel,
            ..Self::default()
        }
    }

    /// Send every swarm's log lines to `sink` instead of `tracing`.
    pub fn with_log_sink(mut self, sink: Arc<dyn GuestLogSink>) -> Self {
        self.log_sink = Some(sink);
        self
    }

    /// Use these secrets.
    pub fn with_secrets(mut self, secrets: SecretStore) -> Self {
        self.secrets = secrets;
        self
    }

    /// Keep swarms' objects (the `storage` import) in `store`, for example
    /// a [`crate::storage::files::FileStore`].
    pub fn with_store(mut self, store: Arc<dyn crate::storage::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Keep precompiled components in `dir` (created mode 0700 if missing).
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Trust this certificate authority (DER) for `https` through the proxy,
    /// besides the Mozilla roots. A certificate that does not parse makes
    /// [`crate::Chassis::with_config`] fail.
    pub fn with_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_root_certificates.push(der.into());
        self
    }

    /// Give loading (the swarm's instantiation and `describe`) at most `timeout`.
    pub fn with_load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// Refuse component files larger than `bytes`.
    pub fn with_max_component_bytes(mut self, bytes: u64) -> Self {
        self.max_component_bytes = bytes;
        self
    }

    /// Add an event sink that observes every event (metrics, a test's
    /// [`crate::MemorySink`]); it records before the audit log.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.event_sinks.observe(sink);
        self
    }

    /// Record every event in `log`, after every other sink.
    pub fn with_audit_log(mut self, log: Arc<dyn EventSink>) -> Self {
        self.event_sinks.keep_in(log);
        self
    }
}
