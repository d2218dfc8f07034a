//! The shared wasmtime `Engine`, its `Linker`, and the epoch ticker.
//!
//! One engine and one linker serve every swarm. The pooling allocator (on by
//! default) pre-reserves instance slots sized by [`PoolConfig`]. Epoch
//! interruption is on: a background thread advances the epoch every
//! [`EPOCH_TICK`]; each task's store runs a callback on every tick that
//! enforces the task's deadline and CPU share (see [`crate::limits`]). The
//! thread holds only a weak reference and exits when the engine is gone.

use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::config::{ChassisConfig, PoolConfig};
use crate::error::Error;
use crate::limits::MAX_TABLE_ELEMENTS;
use crate::state::HostState;

/// How often the epoch advances. Deadlines and CPU shares are enforced to
/// this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most core instances one component may contain.
pub const MAX_CORE_INSTANCES: u32 = 64;

/// Largest wasm stack a guest may use, in bytes.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Build the engine with the chassis configuration.
pub(crate) fn engine(config: &ChassisConfig) -> Result<Engine, Error> {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(config.fuel_metering)
        .max_wasm_stack(MAX_WASM_STACK);
    if let Some(pool) = &config.pool {
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(pool)));
    }
    Engine::new(&c).map_err(|e| Error::Engine(e.to_string()))
}

fn pooling(pool: &PoolConfig) -> PoolingAllocationConfig {
    let instances = pool.instances.max(1);
    let mut p = PoolingAllocationConfig::new();
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
        .max_memory_size(pool.max_memory_mb as usize * 1024 * 1024)
        // Resetting a slot for its next task: zero the pages the task
        // dirtied (found with PAGEMAP_SCAN where the kernel has it) with
        // memset up to this much, instead of madvise. madvise flushes the
        // TLB of every core running one of the host's threads, which costs
        // more than a small task does.
        .pagemap_scan(Enabled::Auto);
    let keep = keep_resident();
    p.linear_memory_keep_resident(keep)
        .table_keep_resident(keep);
    p
}

/// Bytes of each linear memory and table kept resident (and zeroed in
/// place) when a slot is reused: 1 MiB where the kernel reports dirty pages
/// (PAGEMAP_SCAN, Linux 6.7+), so only what a task touched is zeroed; 64 KiB
/// elsewhere, where the whole amount is zeroed every time.
pub fn keep_resident() -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        1024 * 1024
    } else {
        64 * 1024
    }
}

/// Build the linker holding WASI and every chassis import.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, Error> {
    let mut linker = Linker::new(engine);
    HostState::add_to_linker(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;
    Ok(linker)
}

/// Start the thread that advances `engine`'s epoch until the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    let weak: EngineWeak = engine.weak();
    std::thread::Builder::new()
        .name("chassis-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
