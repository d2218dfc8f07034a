//! The shared wasmtime `Engine`, its `Linker`, and the epoch ticker.
//!
//! One engine and one linker serve every swarm. The pooling allocator (on by
//! default) pre-reserves instance slots sized by [`PoolConfig`](crate::PoolConfig). Epoch
//! interruption is on: a background thread advances the epoch every
//! [`EPOCH_TICK`]; each task's store runs a callback on every tick that
//! enforces the task's deadline and CPU share (see [`crate::limits`]). The
//! thread holds only a weak reference and exits when the engine is gone.

use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy};

use crate::config::ChassisConfig;
use crate::error::Error;
use crate::state::HostState;

/// How often the epoch advances. Deadlines and CPU shares are enforced to
/// this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(
            pool.pooling_allocation_config(),
        ));
    }
    Engine::new(&c).map_err(|e| Error::Engine(e.to_string()))
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
