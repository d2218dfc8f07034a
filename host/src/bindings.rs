//! The one `bindgen!` site: typed host bindings for the `swarm` world.
//!
//! Every chassis import is generated `async | trappable`: host functions may
//! wait (HTTP, rate limits) and may end the task with a trap when a guest
//! abuses them. Exports are `async` so a task can be interrupted and resumed
//! by the epoch machinery.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "swarm",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::infrafabric::chassis::task;
pub use infrafabric::chassis::{credentials, http_proxy, log, storage, types};
