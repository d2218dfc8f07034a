//! (e) Cold load: `Chassis::load` of the analyzer into a fresh host from
//! the component cache (a hit) vs the same load compiling the component (no
//! cache). Goal: ratio ≤ 0.05 (20× faster). The first load into the emptied
//! cache must be a miss, every measured one a hit.
//!
//! And the whole directory: `chassis serve config/` (every example swarm,
//! loaded several at a time) from its start to its "ready" line, with a warm
//! component cache vs an empty one. Goal: ready in under a second warm.
//! With `--quick`, two of the contracts only.

use std::path::{Path, PathBuf};
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
    let load = figure(
        "e_load",
        "(e) load analyzer, cache hit",
        "ms",
        "the same load compiling the component (no cache)",
        &o,
        &b,
        Some(Goal::AtMost(0.05)),
    );
    eprintln!("==> (e) chassis serve config/: warm cache vs empty");
    let dir = run.bench_dir.join("serve-config");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let contracts: Vec<PathBuf> = if run.scale > 1 {
        ["hello-world.toml", "bench-probe.toml"]
            .iter()
            .map(|c| run.root.join("config").join(c))
            .collect()
    } else {
        vec![run.root.join("config")]
    };
    let serve = |cold: bool| {
        let (dir, contracts) = (dir.clone(), contracts.clone());
        async move { tokio::task::spawn_blocking(move || serve_ready_ms(&dir, &contracts, cold)).await? }
    };
    let serve = &serve;
    // A cold start compiles every component: half a minute for the
    // examples on two cores, so fewer rounds.
    let (o, b) = rounds(run.rounds.min(3), move || serve(false), move || serve(true)).await?;
    let directory = figure(
        "e_serve_config",
        "(e) chassis serve config/ ready, warm cache",
        "ms",
        "the same start with an empty component cache (every component compiled, several at a time)",
        &o,
        &b,
        Some(Goal::OursAtMost(1000.0)),
    );
    Ok(vec![load, directory])
}

/// Milliseconds from starting `chassis serve` on `contracts` to its
/// "ready" line, its component cache under `dir` (emptied first when
/// `cold`). Every swarm must load.
fn serve_ready_ms(dir: &Path, contracts: &[PathBuf], cold: bool) -> Result<f64> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let cache = dir.join("cache");
    if cold {
        let _ = std::fs::remove_dir_all(&cache);
    }
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "watch = false\ncache_dir = {cache:?}\nstorage_dir = {:?}\n",
            dir.join("storage")
        ),
    )?;
    let started = Instant::now();
    let mut child = Command::new(super::h_queue::chassis_binary()?)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .args(contracts)
        .env("CHASSIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let _process = super::h_queue::Process(child);
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.starts_with("chassis serve: ready") {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if !line.contains(", 0 failed") {
                bail!("{line}");
            }
            return Ok(ms);
        }
    }
    bail!("chassis serve stopped before it was ready")
}
