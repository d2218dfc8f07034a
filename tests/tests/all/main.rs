//! The end-to-end tests: real components, built by `cargo xtask build`
//! into `target/swarms/`, run through the real host. One test binary with a
//! module per area, so the host library is linked once; hosts are set up
//! with `chassis_tests::TestHost` and guests named by `chassis_tests::guests`.
//! Tests that measure the process itself (CPU time, resident memory) are
//! binaries of their own beside this one: `tests/tests/cpu.rs` and
//! `tests/tests/reclaim.rs`.

mod audit;
mod cases;
mod compiled;
mod credentials;
mod embedding;
mod guest_text;
mod guests;
mod health;
mod http_proxy;
mod languages;
mod limits;
mod load;
mod replace;
mod routing;
mod sandbox;
mod storage;
mod swarms;
mod throttle;
mod warm;
