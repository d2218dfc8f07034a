//! (j) What `chassis build --optimize` (Binaryen's `wasm-opt -Os` over each
//! core module, `chassis::commands::optimize`) does to the analyzer in each
//! language: the optimized component (ours) against the one built without
//! it (the baseline), on size, compiling it from cold, loading it from the
//! component cache, a trivial task (`count_lines` of one line) and a
//! CPU-bound one (`analyze_code` over 64 KiB of source). No goal: the
//! figures decide the default (`docs/performance.md`).
//!
//! Binaryen is installed on first use into the tools directory
//! (`CHASSIS_TOOLS_DIR`: `cargo xtask bench` and `test` point it at
//! `target/tools/`). The optimized copies are kept in `target/bench/opt/`, by the original's
//! SHA-256: wasm-opt takes seconds for a small component and more than a
//! minute for a Python or JavaScript one (an interpreter of 10 MiB or
//! more). Both copies must give the same result before their times mean
//! anything. With `--quick`, the compiled languages only (Rust, C,
//! AssemblyScript), and fewer rounds for the compile row.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use chassis::{CacheUse, Chassis, ChassisConfig, ServiceContract, TaskRequest};
use sha2::{Digest, Sha256};

use super::Run;
use crate::measure::{Figure, figure, ms, rounds};
use crate::setup::{ours_text, swarm};

/// The analyzers measured: (contract in `config/`, what the table calls
/// it, figure name, whether a quick run measures it).
const ANALYZERS: [(&str, &str, &str, bool); 5] = [
    ("analyzer", "Rust", "j_rust", true),
    ("analyzer-c", "C", "j_c", true),
    ("analyzer-as", "AssemblyScript", "j_assemblyscript", true),
    ("analyzer-py", "Python", "j_python", false),
    ("analyzer-js", "JavaScript", "j_javascript", false),
];

/// The caches a load has filled.
static FILLED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Trivial tasks per round (divided by the run's scale).
const TASKS: u32 = 100;

/// Each analyzer, optimized vs not.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (j) wasm-opt: each analyzer optimized vs as built");
    let mut figures = Vec::new();
    let tasks = (TASKS / run.scale).max(1);
    let source = source_of(64 * 1024);
    let cpu_payload = serde_json::json!({ "language": "python", "source": source }).to_string();
    let trivial_payload = r#"{"source":"a"}"#;
    for (name, what, figure_name, quick) in ANALYZERS {
        if run.scale > 1 && !quick {
            continue;
        }
        let (contract, plain) = swarm(run.root, name)?;
        let optimized = optimized(run, name, &plain)?;
        let size = |b: &[u8]| b.len() as f64 / 1024.0;
        figures.push(figure(
            &format!("{figure_name}_size"),
            &format!("(j) {what}: component size"),
            "KiB",
            "as built, without wasm-opt",
            &[size(&optimized)],
            &[size(&plain)],
            None,
        ));
        // Compiling from cold: a fresh host without a cache, each side.
        let compile_rounds = if name.ends_with("py") || name.ends_with("js") {
            run.rounds.min(3)
        } else {
            run.rounds
        };
        let (o, b) = rounds(
            compile_rounds,
            || load_ms(&contract, &optimized, None),
            || load_ms(&contract, &plain, None),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_compile"),
            &format!("(j) {what}: compile from cold"),
            "ms",
            "as built, without wasm-opt",
            &o,
            &b,
            None,
        ));
        // Loading from the component cache (each side its own).
        let cache_o = run.bench_dir.join(format!("cache-j-{name}-opt"));
        let cache_p = run.bench_dir.join(format!("cache-j-{name}"));
        load_ms(&contract, &optimized, Some(&cache_o)).await?;
        load_ms(&contract, &plain, Some(&cache_p)).await?;
        let (o, b) = rounds(
            run.rounds,
            || load_ms(&contract, &optimized, Some(&cache_o)),
            || load_ms(&contract, &plain, Some(&cache_p)),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_cache_load"),
            &format!("(j) {what}: load from the cache"),
            "ms",
            "as built, without wasm-opt",
            &o,
            &b,
            None,
        ));
        // Tasks: one host each, from the caches just filled.
        let host = |bytes: Vec<u8>, cache: std::path::PathBuf| {
            let contract = contract.clone();
            async move {
                let chassis = Chassis::with_config(
                    ChassisConfig::sized_for([&contract]).with_cache_dir(cache),
                )?;
                chassis.load_bytes(&bytes, contract).await?;
                Ok::<_, anyhow::Error>(chassis)
            }
        };
        let ours = host(optimized.clone(), cache_o.clone()).await?;
        let base = host(plain.clone(), cache_p.clone()).await?;
        let swarm_id = contract.swarm_id.as_str();
        for (task, payload) in [
            ("count_lines", trivial_payload),
            ("analyze_code", cpu_payload.as_str()),
        ] {
            let answer = |chassis: &Chassis| {
                let chassis = chassis.clone();
                async move {
                    let out = chassis
                        .execute_task_text(swarm_id, TaskRequest::from_text(task, payload)?)
                        .await?;
                    Ok::<_, anyhow::Error>(out.output.get().to_string())
                }
            };
            let (a, b) = (answer(&ours).await?, answer(&base).await?);
            if a != b {
                bail!("{name} {task}: optimized gives {a}, as built {b}");
            }
        }
        let (o, b) = rounds(
            run.rounds,
            || per_task(&ours, swarm_id, "count_lines", trivial_payload, tasks),
            || per_task(&base, swarm_id, "count_lines", trivial_payload, tasks),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_trivial"),
            &format!("(j) {what}: trivial task"),
            "ms",
            "as built, without wasm-opt",
            &o,
            &b,
            None,
        ));
        let cpu = cpu_payload.as_str();
        let (o, b) = rounds(
            run.rounds,
            || ms(ours_text(&ours, swarm_id, "analyze_code", cpu)),
            || ms(ours_text(&base, swarm_id, "analyze_code", cpu)),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_cpu"),
            &format!("(j) {what}: analyze_code, 64 KiB"),
            "ms",
            "as built, without wasm-opt",
            &o,
            &b,
            None,
        ));
    }
    Ok(figures)
}

/// ms per task of `tasks` tasks.
async fn per_task(
    chassis: &Chassis,
    swarm: &str,
    task: &str,
    payload: &str,
    tasks: u32,
) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..tasks {
        ours_text(chassis, swarm, task, payload).await?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(tasks))
}

/// ms to load `bytes` into a fresh host: compiling (no cache), or from
/// `cache` (its first load fills it; a later miss is an error).
async fn load_ms(
    contract: &ServiceContract,
    bytes: &[u8],
    cache: Option<&std::path::Path>,
) -> Result<f64> {
    let mut config = ChassisConfig::sized_for([contract]);
    if let Some(dir) = cache {
        config = config.with_cache_dir(dir);
    }
    let chassis = Chassis::with_config(config)?;
    let t = Instant::now();
    let info = chassis.load_bytes(bytes, contract.clone()).await?;
    let elapsed = t.elapsed().as_secs_f64() * 1e3;
    if let Some(dir) = cache {
        let filled = {
            let mut seen = FILLED.lock().unwrap_or_else(|e| e.into_inner());
            let filled = seen.iter().any(|d| d == dir);
            if !filled {
                seen.push(dir.to_path_buf());
            }
            filled
        };
        if filled && info.cache != CacheUse::Hit {
            bail!(
                "{}: a load from the warm cache was a {:?}",
                contract.swarm_id,
                info.cache
            );
        }
    }
    Ok(elapsed)
}

/// The optimized copy of `plain` (`target/bench/opt/NAME-SHA.wasm`), made
/// now if there is none.
fn optimized(run: &Run<'_>, name: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let digest = hex(&Sha256::digest(plain));
    let dir = run.bench_dir.join("opt");
    let path = dir.join(format!("{name}-{}.wasm", &digest[..16]));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    eprintln!(
        "    {name}: running wasm-opt (once per component; Python and JavaScript take minutes)"
    );
    let t = Instant::now();
    let bytes = chassis::commands::optimize::optimize_component(plain)
        .with_context(|| format!("optimizing {name}"))?;
    eprintln!(
        "    {name}: {} -> {} bytes in {:.1?}",
        plain.len(),
        bytes.len(),
        t.elapsed()
    );
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// About `n` bytes of Python, as figure (d)'s source.
fn source_of(n: usize) -> String {
    let mut s = String::with_capacity(n);
    let mut i = 0u32;
    while s.len() < n {
        s.push_str(&format!(
            "# step {i}: compute the value\ndef f{i}(x):\n    y = x * {i}  # scale\n\n    return \"#{i}\" + str(y)\n"
        ));
        i += 1;
    }
    s
}
