//! `chassis-bench`: the chassis host measured side by side with a baseline,
//! in one run. `cargo xtask bench` builds the swarms and runs this in release
//! mode.
//!
//! Each figure is measured in interleaved rounds (ours, baseline, ours, …)
//! after a warm-up; the table shows each side's median with its range over
//! the rounds, and the ratio of the medians (ours / baseline). The figures:
//!
//! - (a) latency of a trivial task through `Chassis::execute_task` (every
//!   limit, an audit log file, SLO tracking) vs bare wasmtime (fresh store
//!   from an `InstancePre`, pooling allocator, one call) — see [`bare`];
//! - (b) throughput with two workers, ours vs bare wasmtime;
//! - (c) one import call (log, credentials.get) vs a bare host function;
//! - (d) the analyzer over 1 MiB of source vs the same Rust function
//!   compiled natively, and epoch interruption on vs off;
//! - (e) loading a component from the cache vs compiling it;
//! - (f) resident memory per loaded swarm and per running instance, each
//!   measured in a fresh child process.
//!
//! Results go to stdout as a table and to a JSON file (`--out`).

mod bare;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bare::{BareHost, BareSwarm, Epoch};
use chassis::{Chassis, ChassisConfig, Secret, SecretStore, ServiceContract, TaskRequest};
use serde::Serialize;

/// The credential value both hosts hand to the probe.
pub const BENCH_TOKEN: &str = "bench-token-value";

/// Import calls per task in (c).
const LOG_CALLS: u32 = 20_000;
const CREDENTIAL_CALLS: u32 = 2_000;
/// Copies loaded / instances running in (f).
const MEMORY_COPIES: usize = 16;

const HELP: &str = "\
chassis-bench: the chassis host vs bare wasmtime and native code

Usage: chassis-bench [--rounds N] [--out FILE] [--quick]

  --rounds N   measured rounds per figure (default 9; each side, interleaved)
  --out FILE   write the results as JSON (default target/bench/results.json)
  --only LIST  measure only these figures, by letter (e.g. `--only ad`)
  --quick      3 rounds and shorter loops (a smoke run, not for quoting)

Run through `cargo xtask bench`, which builds the components first.
";

/// One measured figure.
#[derive(Debug, Serialize)]
struct Figure {
    /// Short stable name.
    name: String,
    /// What is measured, for the table.
    what: String,
    /// Median of ours.
    ours: f64,
    /// Median of the baseline.
    baseline: f64,
    /// ours / baseline.
    ratio: f64,
    unit: String,
    /// What `baseline` is.
    baseline_is: String,
    ours_min: f64,
    ours_max: f64,
    baseline_min: f64,
    baseline_max: f64,
    rounds: usize,
    /// The goal on the ratio, if there is one (`<= x` or `>= x`).
    goal: Option<String>,
    /// Whether the goal is met.
    met: Option<bool>,
}

#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn figure(
    name: &str,
    what: &str,
    unit: &str,
    baseline_is: &str,
    ours: &[f64],
    baseline: &[f64],
    goal: Option<Goal>,
) -> Figure {
    let (o, b) = (median(ours), median(baseline));
    let ratio = o / b;
    let (goal, met) = match goal {
        Some(Goal::AtMost(x)) => (Some(format!("<= {x}")), Some(ratio <= x)),
        Some(Goal::AtLeast(x)) => (Some(format!(">= {x}")), Some(ratio >= x)),
        None => (None, None),
    };
    let f = Figure {
        name: name.to_string(),
        what: what.to_string(),
        ours: o,
        baseline: b,
        ratio,
        unit: unit.to_string(),
        baseline_is: baseline_is.to_string(),
        ours_min: min(ours),
        ours_max: max(ours),
        baseline_min: min(baseline),
        baseline_max: max(baseline),
        rounds: ours.len(),
        goal,
        met,
    };
    eprintln!(
        "    {name}: ours {} {unit}, baseline {} {unit}, ratio {ratio:.3}",
        num(f.ours),
        num(f.baseline)
    );
    f
}

/// A number with about three significant digits.
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

struct Options {
    rounds: usize,
    quick: bool,
    out: PathBuf,
    /// Figures to measure, by letter (all when empty).
    only: String,
}

impl Options {
    fn wants(&self, figure: char) -> bool {
        self.only.is_empty() || self.only.contains(figure)
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("chassis-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let root = workspace_root();
    let mut options = Options {
        rounds: 9,
        quick: false,
        out: root.join("target/bench/results.json"),
        only: String::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => {
                options.rounds = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .context("--rounds needs a number of at least 1")?
            }
            "--out" => options.out = it.next().context("--out needs a file")?.into(),
            "--only" => {
                options.only = it
                    .next()
                    .filter(|f| !f.is_empty() && f.chars().all(|c| "abcdef".contains(c)))
                    .context("--only needs figure letters, e.g. `--only ab`")?
                    .clone()
            }
            "--quick" => {
                options.quick = true;
                options.rounds = 3;
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{HELP}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(&root, &options))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ lives in the workspace")
        .to_path_buf()
}

/// A contract file and its component's bytes.
fn swarm(root: &Path, name: &str) -> Result<(ServiceContract, Vec<u8>)> {
    let path = root.join("config").join(format!("{name}.toml"));
    let contract = ServiceContract::from_file(&path)?;
    let module = contract
        .wasm_module
        .clone()
        .context("contract has no wasm_module")?;
    let module = path.parent().expect("config dir").join(module);
    let bytes = std::fs::read(&module).with_context(|| {
        format!(
            "{}: missing; run `cargo xtask bench`, which builds the swarms first",
            module.display()
        )
    })?;
    Ok((contract, bytes))
}

/// The analyzer's contract, opened up so that (d) measures compute, not the
/// CPU share.
fn analyzer_contract(mut c: ServiceContract, id: &str) -> ServiceContract {
    c.swarm_id = id.to_string();
    c.resource_limits.max_cpu_percent = 100;
    c.resource_limits.max_concurrent_tasks = 2;
    c
}

/// About 1 MiB of Python: code, comments, blank lines, strings.
fn big_source() -> String {
    let mut s = String::with_capacity(1 << 20);
    let mut i = 0u32;
    while s.len() < (1 << 20) {
        s.push_str(&format!(
            "# step {i}: compute the value\ndef f{i}(x):\n    y = x * {i}  # scale\n\n    return \"#{i}\" + str(y)\n"
        ));
        i += 1;
    }
    s
}

/// What ours and the baseline run: the chassis with every swarm loaded, and
/// bare wasmtime with the same components.
struct Setup {
    chassis: Chassis,
    chassis_no_audit: Chassis,
    audit: Arc<chassis::audit::AuditLog>,
    bare_probe: BareSwarm,
    bare_analyzer: BareSwarm,
    bare_analyzer_epoch: BareSwarm,
    analyzer_bytes: Vec<u8>,
    analyzer_contract: ServiceContract,
}

async fn setup(root: &Path, bench_dir: &Path) -> Result<Setup> {
    let (probe_contract, probe_bytes) = swarm(root, "bench-probe")?;
    let (analyzer, analyzer_bytes) = swarm(root, "analyzer")?;
    let analyzer = analyzer_contract(analyzer, "analyzer");

    let audit_path = bench_dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit_path);
    let audit = chassis::audit::AuditLog::open(
        &audit_path,
        chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
    )?;
    let mut secrets = SecretStore::new();
    secrets.insert("bench-probe", "bench_token", Secret::new(BENCH_TOKEN));
    let config = ChassisConfig::sized_for([&probe_contract, &analyzer]).with_secrets(secrets);
    // The same host without an audit log, to show what the log costs.
    let chassis_no_audit = Chassis::with_config(config.clone())?;
    chassis_no_audit
        .load_bytes(&probe_bytes, probe_contract.clone())
        .await?;
    let chassis = Chassis::with_config(config.with_event_sink(audit.clone()))?;
    chassis.load_bytes(&probe_bytes, probe_contract).await?;
    chassis
        .load_bytes(&analyzer_bytes, analyzer.clone())
        .await?;

    let bare = BareHost::new(Epoch::Off, 64, 256)?;
    let bare_epoch = BareHost::new(Epoch::On, 64, 256)?;
    Ok(Setup {
        chassis,
        chassis_no_audit,
        audit,
        bare_probe: bare.load(&probe_bytes)?,
        bare_analyzer: bare.load(&analyzer_bytes)?,
        bare_analyzer_epoch: bare_epoch.load(&analyzer_bytes)?,
        analyzer_bytes,
        analyzer_contract: analyzer,
    })
}

async fn ours(
    chassis: &Chassis,
    swarm: &str,
    task: &str,
    payload: &serde_json::Value,
) -> Result<()> {
    let outcome = chassis
        .execute_task(swarm, TaskRequest::new(task, payload.clone()))
        .await?;
    if !outcome.is_success() {
        bail!("{swarm} {task}: {:?}", outcome.error);
    }
    Ok(())
}

/// Interleaved rounds: `ours` then `baseline`, `rounds` times after one
/// warm-up of each. Each closure returns one round's figure.
async fn rounds<O, B, FO, FB>(
    n: usize,
    mut ours: O,
    mut baseline: B,
) -> Result<(Vec<f64>, Vec<f64>)>
where
    O: FnMut() -> FO,
    B: FnMut() -> FB,
    FO: Future<Output = Result<f64>>,
    FB: Future<Output = Result<f64>>,
{
    ours().await?;
    baseline().await?;
    let (mut o, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        o.push(ours().await?);
        b.push(baseline().await?);
    }
    Ok((o, b))
}

async fn run(root: &Path, options: &Options) -> Result<()> {
    let bench_dir = root.join("target/bench");
    std::fs::create_dir_all(&bench_dir)?;
    let n = options.rounds;
    let scale = if options.quick { 4 } else { 1 };
    eprintln!("==> setting up (loading the components into the chassis and into bare wasmtime)");
    let setup = setup(root, &bench_dir).await?;
    let s = &setup;
    let mut figures = Vec::new();

    if options.wants('a') {
        // (a) trivial task latency.
        eprintln!("==> (a) trivial task latency");
        let tasks = 400 / scale;
        let noop = &serde_json::json!({});
        let (o, b) = rounds(
            n,
            move || async move {
                let t = Instant::now();
                for _ in 0..tasks {
                    ours(&s.chassis, "bench-probe", "noop", noop).await?;
                }
                Ok(t.elapsed().as_secs_f64() * 1e6 / tasks as f64)
            },
            move || async move {
                let t = Instant::now();
                for _ in 0..tasks {
                    s.bare_probe.run("noop", "{}").await?;
                }
                Ok(t.elapsed().as_secs_f64() * 1e6 / tasks as f64)
            },
        )
        .await?;
        figures.push(figure(
            "a_task_latency",
            "(a) trivial task, latency",
            "µs",
            "bare wasmtime: fresh store from InstancePre, pooling, one call",
            &o,
            &b,
            Some(Goal::AtMost(1.5)),
        ));
    }
    if options.wants('b') {
        // (b) throughput with two workers.
        eprintln!("==> (b) throughput, two workers");
        let window = Duration::from_millis(400 / scale as u64);
        let bare = || {
            let probe = s.bare_probe.clone();
            throughput(window, move || {
                let probe = probe.clone();
                async move { probe.run("noop", "{}").await.map(drop) }
            })
        };
        for (host, name, what, goal) in [
            (
                &s.chassis,
                "b_throughput",
                "(b) trivial tasks, 2 workers",
                Some(Goal::AtLeast(0.7)),
            ),
            (
                &s.chassis_no_audit,
                "b_throughput_no_audit",
                "(b) same, no audit log",
                None,
            ),
        ] {
            let ours_side = || {
                let chassis = host.clone();
                throughput(window, move || {
                    let chassis = chassis.clone();
                    async move { ours(&chassis, "bench-probe", "noop", &serde_json::json!({})).await }
                })
            };
            let (o, b) = rounds(n, ours_side, bare).await?;
            figures.push(figure(
                name,
                what,
                "tasks/s",
                "bare wasmtime, 2 workers",
                &o,
                &b,
                goal,
            ));
        }
    }
    if options.wants('c') {
        // (c) one import call.
        eprintln!("==> (c) import calls");
        for (task, calls, payload, what) in [
            (
                "log",
                LOG_CALLS / scale as u32,
                serde_json::json!({ "n": LOG_CALLS / scale as u32 }),
                "(c) one log call",
            ),
            (
                "credential",
                CREDENTIAL_CALLS / scale as u32,
                serde_json::json!({ "n": CREDENTIAL_CALLS / scale as u32, "name": "bench_token" }),
                "(c) one credentials.get call",
            ),
        ] {
            let text = &payload.to_string();
            let payload = &payload;
            let (o, b) = rounds(
                n,
                move || async move {
                    let t = Instant::now();
                    ours(&s.chassis, "bench-probe", task, payload).await?;
                    Ok(t.elapsed().as_secs_f64() * 1e9 / f64::from(calls))
                },
                move || async move {
                    let t = Instant::now();
                    s.bare_probe.run(task, text).await?;
                    Ok(t.elapsed().as_secs_f64() * 1e9 / f64::from(calls))
                },
            )
            .await?;
            figures.push(figure(
                &format!("c_import_{task}"),
                what,
                "ns",
                "bare wasmtime host function that returns at once",
                &o,
                &b,
                None,
            ));
        }
    }
    if options.wants('d') {
        // (d) CPU-bound: the analyzer over 1 MiB of source.
        eprintln!("==> (d) analyzer over 1 MiB of source");
        let source = big_source();
        let payload = &serde_json::json!({ "language": "python", "source": source });
        let text = &payload.to_string();
        // The three must agree before their times mean anything.
        let want = native(text)?;
        let got = s.bare_analyzer.run("analyze_code", text).await?;
        let got_ours = s
            .chassis
            .execute_task(
                "analyzer",
                TaskRequest::new("analyze_code", payload.clone()),
            )
            .await?;
        let want_value: serde_json::Value = serde_json::from_str(&want)?;
        if serde_json::from_str::<serde_json::Value>(&got)? != want_value
            || got_ours.output != want_value
        {
            bail!(
                "the analyzer's results differ: native {want}, bare {got}, ours {}",
                got_ours.output
            );
        }
        let (o, b) = rounds(
            n,
            move || async move {
                let t = Instant::now();
                ours(&s.chassis, "analyzer", "analyze_code", payload).await?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            },
            move || async move {
                let t = Instant::now();
                std::hint::black_box(native(std::hint::black_box(text))?);
                Ok(t.elapsed().as_secs_f64() * 1e3)
            },
        )
        .await?;
        figures.push(figure(
            "d_cpu_bound",
            "(d) analyze_code, 1 MiB source",
            "ms",
            "the same Rust function compiled natively (JSON in and out included)",
            &o,
            &b,
            Some(Goal::AtMost(1.6)),
        ));
        let (o, b) = rounds(
            n,
            move || async move {
                let t = Instant::now();
                s.bare_analyzer_epoch.run("analyze_code", text).await?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            },
            move || async move {
                let t = Instant::now();
                s.bare_analyzer.run("analyze_code", text).await?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            },
        )
        .await?;
        figures.push(figure(
            "d_epoch_cost",
            "(d) same, epoch interruption on",
            "ms",
            "bare wasmtime with epoch interruption off",
            &o,
            &b,
            None,
        ));
    }
    if options.wants('e') {
        // (e) cold load: compile vs cache hit.
        eprintln!("==> (e) loading the analyzer: compile vs component cache");
        let cache_dir = bench_dir.join("cache");
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
        if first != chassis::cache::CacheUse::Miss {
            bail!("the first load into an empty cache was a {first:?}, not a miss");
        }
        let (o, b) = rounds(
            n,
            move || async move {
                let (ms, used) = load(Some(cache_dir.clone())).await?;
                if used != chassis::cache::CacheUse::Hit {
                    bail!("a load from the warm cache was a {used:?}");
                }
                Ok(ms)
            },
            move || async move { Ok(load(None).await?.0) },
        )
        .await?;
        figures.push(figure(
            "e_load",
            "(e) load analyzer, cache hit",
            "ms",
            "the same load compiling the component (no cache)",
            &o,
            &b,
            Some(Goal::AtMost(0.05)),
        ));
    }
    if options.wants('f') {
        // (f) memory, each in a fresh child process.
        eprintln!("==> (f) resident memory (child processes)");
        let bare_artifact = bench_dir.join("analyzer-bare.cwasm");
        let bare_host = BareHost::new(Epoch::Off, 64, 256)?;
        std::fs::write(
            &bare_artifact,
            bare_host.engine().precompile_component(&s.analyzer_bytes)?,
        )?;
        let child_rounds = n.clamp(1, 3);
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
                o.push(run_child(ours_mode, root)?);
                b.push(run_child(bare_mode, root)?);
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
    }
    s.audit.close()?;
    let audit_records = chassis::audit::verify(s.audit.path())?.records;
    eprintln!("    audit log of the run: {audit_records} records, verify OK");

    print_table(&figures);
    let results = serde_json::json!({
        "date": chassis::audit::rfc3339(std::time::SystemTime::now()),
        "machine": machine(),
        "rounds": n,
        "quick": options.quick,
        "figures": figures,
    });
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", options.out.display()))?;
    eprintln!("\nresults: {}", options.out.display());
    Ok(())
}

/// The analyzer's `analyze_code`, natively: JSON payload in, JSON result out,
/// as the component does it.
fn native(text: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct P {
        language: String,
        source: String,
    }
    let p: P = serde_json::from_str(text)?;
    let lang = analyzer_core::Language::parse(&p.language).context("language")?;
    Ok(serde_json::to_string(&analyzer_core::analyze_code(
        lang, &p.source,
    ))?)
}

/// Tasks per second from two workers calling `task` until `window` ends.
async fn throughput<F, Fut>(window: Duration, task: F) -> Result<f64>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let end = start + window;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let task = task.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < end {
                    task().await?;
                    done += 1;
                }
                Ok::<_, anyhow::Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn print_table(figures: &[Figure]) {
    println!();
    println!(
        "{:<34} {:>24} {:>24} {:>7} {:>8}",
        "figure", "ours (min–max)", "baseline (min–max)", "ratio", "goal"
    );
    for f in figures {
        let side = |m: f64, lo: f64, hi: f64| format!("{} ({}–{})", num(m), num(lo), num(hi));
        let goal = match (&f.goal, f.met) {
            (Some(g), Some(true)) => format!("{g} met"),
            (Some(g), Some(false)) => format!("{g} MISSED"),
            _ => String::new(),
        };
        println!(
            "{:<34} {:>24} {:>24} {:>7.3} {:>8}",
            format!("{} [{}]", f.what, f.unit),
            side(f.ours, f.ours_min, f.ours_max),
            side(f.baseline, f.baseline_min, f.baseline_max),
            f.ratio,
            goal
        );
    }
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

// ---- (f): memory, measured in child processes ----

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

/// A child process: print one figure (KiB per copy) on stdout.
fn child(args: &[String]) -> Result<()> {
    let mode = args.first().context("--child needs a mode")?.clone();
    let root = PathBuf::from(args.get(1).context("--child needs the root")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let per_copy = runtime.block_on(async move {
        match mode.as_str() {
            "loaded-ours" => loaded_ours(&root).await,
            "loaded-bare" => loaded_bare(&root),
            "running-ours" => running_ours(&root).await,
            "running-bare" => running_bare(&root).await,
            // Not a figure: a loop of trivial tasks to run under a profiler
            // (`perf record -g chassis-bench --child profile <root>`).
            "profile" => profile(&root).await,
            other => bail!("unknown child mode {other:?}"),
        }
    })?;
    println!("{per_copy}");
    Ok(())
}

async fn loaded_ours(root: &Path) -> Result<f64> {
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

#[allow(unsafe_code)]
fn loaded_bare(root: &Path) -> Result<f64> {
    let host = BareHost::new(Epoch::Off, 64, 256)?;
    let artifact = root.join("target/bench/analyzer-bare.cwasm");
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

const HOLD: &str = r#"{"ms":300}"#;

async fn running_ours(root: &Path) -> Result<f64> {
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

async fn running_bare(root: &Path) -> Result<f64> {
    let (_, bytes) = swarm(root, "bench-probe")?;
    let host = BareHost::new(Epoch::On, 64, 64)?;
    let probe = host.load(&bytes)?;
    hold_many(|| {
        let probe = probe.clone();
        async move { probe.run("hold", HOLD).await.map(drop) }
    })
    .await
}

/// 20,000 trivial tasks through the chassis with an audit log; µs per task.
async fn profile(root: &Path) -> Result<f64> {
    let (contract, bytes) = swarm(root, "bench-probe")?;
    let audit = chassis::audit::AuditLog::open(
        root.join("target/bench/profile-audit.jsonl"),
        chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
    )?;
    let config = ChassisConfig::sized_for([&contract]).with_event_sink(audit.clone());
    let chassis = Chassis::with_config(config)?;
    chassis.load_bytes(&bytes, contract).await?;
    let noop = serde_json::json!({});
    let t = Instant::now();
    for _ in 0..20_000 {
        ours(&chassis, "bench-probe", "noop", &noop).await?;
    }
    let per_task = t.elapsed().as_secs_f64() * 1e6 / 20_000.0;
    audit.close()?;
    Ok(per_task)
}
