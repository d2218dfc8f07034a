//! The figures, one module each, measured in this order. Every figure is
//! ours against a baseline in the same run (see [`crate::measure`]); a
//! module's doc says what each side runs and the goal on the ratio, if any.

use std::path::Path;

use anyhow::Result;

use crate::measure::Figure;
use crate::setup::Setup;

pub mod a_latency;
pub mod b_throughput;
pub mod c_import_calls;
pub mod d_cpu_bound;
pub mod e_cold_load;
pub mod f_memory;

/// The figures' letters, for `--only`.
pub const LETTERS: &str = "abcdef";

/// What every figure is measured with.
pub struct Run<'a> {
    /// The workspace root.
    pub root: &'a Path,
    /// `target/bench`: the audit log, the component cache, artifacts.
    pub bench_dir: &'a Path,
    /// Measured rounds per side.
    pub rounds: usize,
    /// Loops and windows are divided by this (4 with `--quick`, else 1).
    pub scale: u32,
    /// The hosts and components.
    pub setup: &'a Setup,
}

/// Measure the figures whose letter `wants` accepts, in order.
pub async fn measure(run: &Run<'_>, wants: impl Fn(char) -> bool) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    if wants('a') {
        figures.extend(a_latency::measure(run).await?);
    }
    if wants('b') {
        figures.extend(b_throughput::measure(run).await?);
    }
    if wants('c') {
        figures.extend(c_import_calls::measure(run).await?);
    }
    if wants('d') {
        figures.extend(d_cpu_bound::measure(run).await?);
    }
    if wants('e') {
        figures.extend(e_cold_load::measure(run).await?);
    }
    if wants('f') {
        figures.extend(f_memory::measure(run).await?);
    }
    Ok(figures)
}
