//! (e) Cold load: `Chassis::load` of the analyzer into a fresh host from
//! the component cache (a hit) vs the same load compiling the component (no
//! cache). Goal: ratio ≤ 0.05 (20× faster). The first load into the emptied
//! cache must be a miss, every measured one a hit.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use chassis::{Chassis, ChassisConfig};

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};

/// ms per load, each side.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (e) loading the analyzer: compile vs component cache");
    let s = run.setup;
    let cache_dir = run.bench_dir.join("cache");
    let _ = std::fs::remove_dir_all(&cache_dir);
    let load = |cache: Option<PathBuf>| {
        let bytes = &s.analyzer_bytes;
        let contract = s.analyzer_contract.clone();
        async move {
            let mut config = ChassisConfig::sized_for([&contract]);
            if let Some(dir) = cache {
                config = config.with_cache_dir(dir);
            }
            let chassis = Chassis::with_config(config)?;
            let t = Instant::now();
            let info = chassis.load_bytes(bytes, contract).await?;
            Ok::<_, anyhow::Error>((t.elapsed().as_secs_f64() * 1e3, info.cache))
        }
    };
    let (load, cache_dir) = (&load, &cache_dir);
    let (_, first) = load(Some(cache_dir.clone())).await?;
    if first != chassis::CacheUse::Miss {
        bail!("the first load into an empty cache was a {first:?}, not a miss");
    }
    let (o, b) = rounds(
        run.rounds,
        move || async move {
            let (ms, used) = load(Some(cache_dir.clone())).await?;
            if used != chassis::CacheUse::Hit {
                bail!("a load from the warm cache was a {used:?}");
            }
            Ok(ms)
        },
        move || async move { Ok(load(None).await?.0) },
    )
    .await?;
    Ok(vec![figure(
        "e_load",
        "(e) load analyzer, cache hit",
        "ms",
        "the same load compiling the component (no cache)",
        &o,
        &b,
        Some(Goal::AtMost(0.05)),
    )])
}
