//! The `chassis` crate's integration tests, one binary (as wasmtime's
//! `tests/all`): each module a subject, `common` what they share.
//!
//! - `architecture`: the module rules of `ARCHITECTURE.md`, on the source;
//! - `cli`: the command line as a process;
//! - `serve`: `chassis serve` as a process with a real HTTP client;
//! - `queue`: workers of a real `nats-server`;
//! - `deploy`: swarms deployed to those workers through NATS;
//! - `governor`: the throttle's circuit over HTTP, in the metrics the
//!   alerting rules read, on the status page and in the audit log;
//! - `crash`: kill -9, a full disk, restarts on a long audit log;
//! - `examples`: `host/examples/` run and do what they say;
//! - `new`: `chassis new` projects built and run outside the repository.

mod architecture;
mod cli;
mod common;
mod crash;
mod deploy;
mod examples;
mod governor;
mod new;
mod queue;
mod serve;
