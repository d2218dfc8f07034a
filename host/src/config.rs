//! Host-wide configuration: the instance pool, fuel metering, the admission
//! queue and the event sinks. Per-swarm limits live in the contracts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::contract::ServiceContract;
use crate::events::EventSink;
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
    /// Where events go (audit log, reputation, tests).
    pub event_sinks: Vec<Arc<dyn EventSink>>,
    /// Secret values per swarm (the environment is read at load time too).
    pub secrets: SecretStore,
    /// A directory for precompiled components ([`crate::cache`]); `None`
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
            event_sinks: Vec::new(),
            secrets: SecretStore::new(),
            cache_dir: None,
            extra_root_certificates: Vec::new(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            log_sink: None,
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

    /// Add an event sink.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.event_sinks.push(sink);
        self
    }
}
