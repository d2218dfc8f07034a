//! The shared wasmtime `Engine`, its `Linker`, and the epoch ticker.
//!
//! One engine and one linker serve every swarm. Epoch interruption is on: a
//! background thread advances the epoch every [`EPOCH_TICK`], and each task's
//! store gets a deadline in ticks, so a guest stuck in a loop is stopped.
//! The thread holds only a weak reference and exits when the engine is gone.

use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, EngineWeak};

use crate::error::Error;
use crate::state::HostState;

/// How often the epoch advances. Timeouts are enforced to this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest wasm stack a guest may use, in bytes.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Build the engine with the chassis configuration.
pub(crate) fn engine() -> Result<Engine, Error> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK);
    Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))
}

/// Build the linker holding WASI and every chassis import.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, Error> {
    let mut linker = Linker::new(engine);
    crate::imports::add_to_linker(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;
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

/// Epoch ticks for a wall-clock budget (at least one).
pub(crate) fn ticks(budget: Duration) -> u64 {
    (budget.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}
