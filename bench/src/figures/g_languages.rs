//! (g) A trivial task in a swarm not written in Rust: `hello` of
//! `hello-py` (componentize-py), `hello-js` (componentize-js), `hello-c`,
//! `hello-cpp` (zig's clang, the C SDK) and `hello-as` (AssemblyScript),
//! through
//! `Chassis::execute_task_text` with an audit log vs the same component in
//! bare wasmtime, per task, instantiation included. Goal: ours ≤ 0.5 ms a
//! task in each language (the Rust `bench-probe` takes about 0.015 ms).
//!
//! Two more rows per language show where the baseline's time goes:
//! instantiation alone, and a call to an instance that has answered before
//! (what a task would cost if instances were reused), each against the
//! whole task in a fresh instance.
//!
//! For Python and JavaScript, a last row runs the same task with warm
//! instances (`[instances] tasks_per_instance = 1000`, the contract's
//! opt-in: `docs/warm-instances.md`) against calls to a used instance in
//! bare wasmtime. Goal: ≤ 0.5 ms, as for a fresh instance.
//!
//! The components are loaded here, not in [`crate::setup`], so that other
//! figures do not pay for compiling them: the chassis takes them from the
//! bench's component cache `target/bench/cache-g`, bare wasmtime from its
//! own serialized copy next to it (`bare-*.cwasm`), each compiled on the first run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chassis::{Chassis, ChassisConfig};
use wasmtime::component::Component;

use super::Run;
use crate::bare::{BareHost, BareSwarm, Epoch};
use crate::measure::{Figure, Goal, figure, rounds};
use crate::setup::{BARE_POOL, ours_text, swarm};

/// Tasks per round (divided by the run's scale).
const TASKS: u32 = 200;

/// The goal: ms per task, ours.
const GOAL_MS: f64 = 0.5;

/// The languages measured: (swarm, what the table calls it, figure name).
const LANGUAGES: [(&str, &str, &str); 5] = [
    ("hello-py", "Python", "g_python"),
    ("hello-js", "JavaScript", "g_javascript"),
    ("hello-c", "C", "g_c"),
    ("hello-cpp", "C++", "g_cpp"),
    ("hello-as", "AssemblyScript", "g_assemblyscript"),
];

/// The swarms also measured with warm instances.
const WARM: [&str; 2] = ["hello-py", "hello-js"];

/// Tasks a warm instance runs in figure (g)'s warm rows.
const TASKS_PER_INSTANCE: u32 = 1000;

/// ms per task, each side, per language.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (g) trivial task in Python, JavaScript, C, C++ and AssemblyScript swarms");
    let cache = run.bench_dir.join("cache-g");
    let audit = chassis::audit::AuditLog::open(
        run.bench_dir.join("audit-g.jsonl"),
        chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
    )?;
    let bare = BareHost::new(Epoch::Off, BARE_POOL)?;
    let tasks = TASKS / run.scale;
    let mut figures = Vec::new();
    for (name, what, figure_name) in LANGUAGES {
        let (contract, bytes) = swarm(run.root, name)?;
        let warm_id = format!("{name}-warm");
        let mut warm = contract.clone();
        warm.swarm_id = warm_id.clone();
        warm.instances.tasks_per_instance = TASKS_PER_INSTANCE;
        let config = ChassisConfig::sized_for([&contract, &warm])
            .with_cache_dir(&cache)
            .with_audit_log(audit.clone());
        let chassis = Chassis::with_config(config)?;
        let t = Instant::now();
        chassis.load_bytes(&bytes, contract).await?;
        if WARM.contains(&name) {
            chassis.load_bytes(&bytes, warm).await?;
        }
        eprintln!("    {name}: loaded into the chassis in {:.0?}", t.elapsed());
        let t = Instant::now();
        let baseline = bare_load(&bare, &bytes, &cache)?;
        eprintln!(
            "    {name}: loaded into bare wasmtime in {:.0?}",
            t.elapsed()
        );
        let payload = r#"{"name":"bench"}"#;
        let (chassis, baseline) = (&chassis, &baseline);
        let (o, b) = rounds(
            run.rounds,
            move || async move {
                let t = Instant::now();
                for _ in 0..tasks {
                    ours_text(chassis, name, "hello", payload).await?;
                }
                Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(tasks))
            },
            move || bare_tasks(baseline, tasks, payload),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_task"),
            &format!("(g) trivial task, {what}"),
            "ms",
            "the same component in bare wasmtime, per task",
            &o,
            &b,
            Some(Goal::OursAtMost(GOAL_MS)),
        ));
        // Where the baseline's time goes: instantiation alone vs the task.
        let (i, t) = rounds(
            run.rounds,
            move || async move {
                let t = Instant::now();
                for _ in 0..tasks {
                    baseline.instantiate_only().await?;
                }
                Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(tasks))
            },
            move || bare_tasks(baseline, tasks, payload),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_instantiation"),
            &format!("(g) {what}: instantiation (bare)"),
            "ms",
            "the whole task in bare wasmtime (ratio: instantiation's share)",
            &i,
            &t,
            None,
        ));
        // And what a call costs in an instance that has answered before.
        let (r, t) = rounds(
            run.rounds,
            move || baseline.calls_after_the_first(tasks, "hello", payload),
            move || bare_tasks(baseline, tasks, payload),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_call_again"),
            &format!("(g) {what}: a call to a used instance (bare)"),
            "ms",
            "the whole task in a fresh instance, bare wasmtime",
            &r,
            &t,
            None,
        ));
        if !WARM.contains(&name) {
            continue;
        }
        // The task on warm instances, against calls to a used instance.
        let warm_id = warm_id.as_str();
        let (w, r) = rounds(
            run.rounds,
            move || async move {
                let t = Instant::now();
                for _ in 0..tasks {
                    ours_text(chassis, warm_id, "hello", payload).await?;
                }
                Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(tasks))
            },
            move || baseline.calls_after_the_first(tasks, "hello", payload),
        )
        .await?;
        figures.push(figure(
            &format!("{figure_name}_warm_task"),
            &format!("(g) trivial task, {what}, warm instances"),
            "ms",
            "calls to a used instance, bare wasmtime",
            &w,
            &r,
            Some(Goal::OursAtMost(GOAL_MS)),
        ));
    }
    audit.close()?;
    Ok(figures)
}

/// ms per `hello` task of `baseline`, each in a fresh instance.
async fn bare_tasks(baseline: &BareSwarm, tasks: u32, payload: &str) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..tasks {
        std::hint::black_box(baseline.run("hello", payload).await?);
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / f64::from(tasks))
}

/// The component pre-linked in bare wasmtime, from a serialized copy in
/// `cache` when one fits this engine, else compiled and saved there.
#[allow(unsafe_code)]
fn bare_load(bare: &Arc<BareHost>, bytes: &[u8], cache: &Path) -> Result<BareSwarm> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let path = cache.join(format!("bare-{:016x}.cwasm", hasher.finish()));
    // SAFETY: the file was written by `Component::serialize` in this
    // directory, which only the bench writes; wasmtime checks that it was
    // compiled for this engine's settings and refuses it otherwise.
    if let Ok(component) = unsafe { Component::deserialize_file(bare.engine(), &path) } {
        return bare.prelink(&component);
    }
    let component = Component::new(bare.engine(), bytes)?;
    std::fs::create_dir_all(cache)?;
    std::fs::write(&path, component.serialize()?)
        .with_context(|| format!("writing {}", path.display()))?;
    bare.prelink(&component)
}
