//! The host side of every chassis import a swarm can see, one capability
//! per module.
//!
//! Each capability owns its per-swarm state (built at load from the
//! contract), a per-task view that implements the generated `Host` trait,
//! and its own `add_to_linker`: `log` ([`log::LogState`]), `credentials`
//! ([`credentials::CredentialsState`]), `http_proxy`
//! ([`http_proxy::ProxyState`]) and `storage` ([`storage::StorageState`],
//! over the host's `crate::storage::Store`). What they share — who is calling, the call
//! rate, violation counting, guest text — is [`scope`]. `policy` decides at
//! load which imports a contract permits. Nothing here knows the store's
//! data type: `crate::state` builds the views and links them.

pub(crate) mod credentials;
pub(crate) mod http_proxy;
pub(crate) mod log;
pub(crate) mod policy;
pub(crate) mod scope;
pub(crate) mod storage;
