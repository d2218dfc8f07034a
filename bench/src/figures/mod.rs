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
pub mod g_languages;
pub mod h_http;
pub mod h_queue;
pub mod i_storage;
pub mod j_optimize;
pub mod k_routing;

/// The figures' letters, for `--only`.
pub const LETTERS: &str = "abcdefghijk";

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
    macro_rules! in_order {
        ($($letter:literal => $figure:ident),* $(,)?) => {
            $(if wants($letter) {
                figures.extend($figure::measure(run).await?);
            })*
        };
    }
    in_order!(
        'a' => a_latency,
        'b' => b_throughput,
        'c' => c_import_calls,
        'd' => d_cpu_bound,
        'e' => e_cold_load,
        'f' => f_memory,
        'g' => g_languages,
        'h' => h_http,
        'h' => h_queue,
        'i' => i_storage,
        'j' => j_optimize,
        'k' => k_routing,
    );
    Ok(figures)
}
