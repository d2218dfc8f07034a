//! The host side of every import a swarm can see.
//!
//! `add_to_linker` wires WASI (inert unless the contract grants a capability,
//! see [`crate::wasi`]) and each chassis interface into one linker shared by
//! all swarms; each interface lives in its own module with its `Host` impl.

pub mod credentials;
pub mod http_proxy;
pub mod log;
pub mod policy;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::Swarm;
use crate::state::HostState;

/// Add WASI 0.2 and all chassis interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Swarm::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl crate::bindings::types::Host for HostState {}
