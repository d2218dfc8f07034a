//! (f) Resident memory, each figure measured in a fresh child process
//! (`chassis-bench --child MODE ROOT`, see [`crate::child`]): the RSS a
//! loaded swarm adds (copies of the analyzer loaded into the chassis, vs
//! the same component deserialized and pre-linked in bare wasmtime), and
//! the RSS a running instance adds (`bench-probe` `hold` tasks running at
//! once, ours vs bare wasmtime). KiB per copy; no goal.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chassis::{Chassis, ChassisConfig, PoolConfig, ServiceContract};

use super::Run;
use crate::bare::{BareHost, BareSwarm, Epoch};
use crate::measure::{Figure, figure};
use crate::setup::{BARE_POOL, analyzer_contract, ours, swarm};

/// Copies loaded / instances running at once.
const MEMORY_COPIES: usize = 16;

/// What a `hold` task is asked to do: hold its instance for 300 ms.
const HOLD: &str = r#"{"ms":300}"#;

/// The precompiled analyzer the `loaded-bare` child deserializes, under
/// `target/bench`.
const BARE_ARTIFACT: &str = "analyzer-bare.cwasm";

/// KiB per loaded swarm and per running instance, each side, from child
/// processes (at most 3 rounds).
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (f) resident memory (child processes)");
    let bare_artifact = run.bench_dir.join(BARE_ARTIFACT);
    let bare_host = BareHost::new(Epoch::Off, BARE_POOL)?;
    std::fs::write(
        &bare_artifact,
        bare_host
            .engine()
            .precompile_component(&run.setup.analyzer_bytes)?,
    )?;
    let child_rounds = run.rounds.clamp(1, 3);
    let mut figures = Vec::new();
    for (what, ours_mode, bare_mode, name) in [
        (
            "(f) RSS per loaded swarm",
            "loaded-ours",
            "loaded-bare",
            "f_rss_per_loaded_swarm",
        ),
        (
            "(f) RSS per running instance",
            "running-ours",
            "running-bare",
            "f_rss_per_running_instance",
        ),
    ] {
        let (mut o, mut b) = (Vec::new(), Vec::new());
        for _ in 0..child_rounds {
            o.push(run_child(ours_mode, run.root)?);
            b.push(run_child(bare_mode, run.root)?);
        }
        figures.push(figure(
            name,
            what,
            "KiB",
            "bare wasmtime: the same component, deserialized / instantiated",
            &o,
            &b,
            None,
        ));
    }
    Ok(figures)
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/self/status")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?;
    Ok(kib)
}

/// Run this program as `--child mode root`; the figure it prints.
fn run_child(mode: &str, root: &Path) -> Result<f64> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--child", mode])
        .arg(root)
        .output()?;
    if !out.status.success() {
        bail!(
            "child {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("child {mode} printed {text:?}"))
}

/// Child `loaded-ours`: KiB per analyzer copy loaded into the chassis.
pub async fn loaded_ours(root: &Path) -> Result<f64> {
    let (contract, bytes) = swarm(root, "analyzer")?;
    let contracts: Vec<ServiceContract> = (0..MEMORY_COPIES)
        .map(|i| analyzer_contract(contract.clone(), &format!("analyzer-{i}")))
        .collect();
    let config =
        ChassisConfig::sized_for(&contracts).with_cache_dir(root.join("target/bench/cache"));
    let chassis = Chassis::with_config(config)?;
    // One load first: the engine, its linker and the allocator's first
    // touches are per host, not per swarm.
    let mut contracts = contracts.into_iter();
    let first = contracts.next().expect("copies");
    chassis.load_bytes(&bytes, first).await?;
    let before = rss_kib()?;
    for c in contracts {
        chassis.load_bytes(&bytes, c).await?;
    }
    Ok((rss_kib()? - before) / (MEMORY_COPIES - 1) as f64)
}

/// Child `loaded-bare`: KiB per copy of the precompiled analyzer
/// deserialized and pre-linked in bare wasmtime.
#[allow(unsafe_code)]
pub fn loaded_bare(root: &Path) -> Result<f64> {
    let host = BareHost::new(Epoch::Off, BARE_POOL)?;
    let artifact = root.join("target/bench").join(BARE_ARTIFACT);
    let load = || -> Result<BareSwarm> {
        let bytes = std::fs::read(&artifact)?;
        // SAFETY: this run's parent process wrote the file a moment ago with
        // `Engine::precompile_component` for an engine of this configuration.
        let component =
            unsafe { wasmtime::component::Component::deserialize(host.engine(), &bytes)? };
        host.prelink(&component)
    };
    let mut kept = vec![load()?];
    let before = rss_kib()?;
    for _ in 1..MEMORY_COPIES {
        kept.push(load()?);
    }
    let after = rss_kib()?;
    drop(kept);
    Ok((after - before) / (MEMORY_COPIES - 1) as f64)
}

/// Start `MEMORY_COPIES` hold tasks at once; the RSS rise while they all
/// run, per task.
async fn hold_many<F, Fut>(start: F) -> Result<f64>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    // Warm-up: one task, so first-use costs are not counted per instance.
    start().await?;
    let before = rss_kib()?;
    let peak = Arc::new(std::sync::Mutex::new(before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(now) = rss_kib() {
                    let mut p = peak.lock().expect("peak");
                    *p = p.max(now);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let tasks: Vec<_> = (0..MEMORY_COPIES).map(|_| tokio::spawn(start())).collect();
    for t in tasks {
        t.await??;
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = *peak.lock().expect("peak");
    Ok((peak - before) / MEMORY_COPIES as f64)
}

/// Child `running-ours`: KiB per `hold` task running in the chassis.
pub async fn running_ours(root: &Path) -> Result<f64> {
    let (contract, bytes) = swarm(root, "bench-probe")?;
    let config = ChassisConfig::sized_for([&contract]);
    let chassis = Chassis::with_config(config)?;
    chassis.load_bytes(&bytes, contract).await?;
    hold_many(|| {
        let chassis = chassis.clone();
        async move {
            ours(
                &chassis,
                "bench-probe",
                "hold",
                &serde_json::from_str(HOLD)?,
            )
            .await
        }
    })
    .await
}

/// Child `running-bare`: KiB per `hold` task running in bare wasmtime
/// (epoch interruption on, memories up to the probe's 64 MiB).
pub async fn running_bare(root: &Path) -> Result<f64> {
    let (_, bytes) = swarm(root, "bench-probe")?;
    let host = BareHost::new(
        Epoch::On,
        PoolConfig {
            max_memory_mb: 64,
            ..BARE_POOL
        },
    )?;
    let probe = host.load(&bytes)?;
    hold_many(|| {
        let probe = probe.clone();
        async move { probe.run("hold", HOLD).await.map(drop) }
    })
    .await
}
