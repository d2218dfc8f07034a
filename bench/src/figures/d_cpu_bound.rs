//! (d) A CPU-bound task: the analyzer's `analyze_code` over 1 MiB of Python
//! through the chassis, vs the same Rust function compiled natively (JSON in
//! and out included). Both sides take the payload as JSON text and give
//! the output as text: the chassis hands the text to the guest as it is
//! (`TaskRequest::from_text`, `execute_task_text`), with no parse into a
//! tree and no print. A second figure runs the same task with the
//! payload as a `Value` (printed) and the output parsed into one, against
//! the text path: what the round trip costs. Goal: ratio ≤ 1.6. Then the
//! host's own share: the chassis against bare wasmtime with epoch
//! interruption on, the same engine work (goal: ratio ≤ 1.1); what epoch
//! interruption costs: the analyzer on bare wasmtime with it on vs off (no goal); what
//! wasm costs: bare wasmtime vs native; and the share of the task that is
//! the host's check that the payload is one JSON document.
//! The three results must agree before their times mean anything.
//! Then the C analyzer (`analyzer-c`) through the chassis against the same
//! C source compiled natively by the same clang at `-O2` (zig's, which
//! `cargo xtask build` installed to build it), each checked against the
//! Rust result first. Last, what the engine's own settings change: the
//! analyzer on bare wasmtime with Cranelift at `speed_and_size` against its
//! default `speed`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chassis::{Chassis, ChassisConfig, TaskRequest};

use super::Run;
use crate::measure::{Figure, Goal, figure, ms, rounds};
use crate::setup::{ours, ours_text, swarm};

/// ms per task: ours vs native, then bare wasmtime with epochs on vs off.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (d) analyzer over 1 MiB of source");
    let s = run.setup;
    let n = run.rounds;
    let source = big_source();
    let payload = &serde_json::json!({ "language": "python", "source": source });
    let text = &payload.to_string();
    // The three must agree before their times mean anything.
    let want = native(text)?;
    let got = s.bare_analyzer.run("analyze_code", text).await?;
    let got_ours = s
        .chassis
        .execute_task_text(
            "analyzer",
            TaskRequest::from_text("analyze_code", text.as_str())?,
        )
        .await?;
    let want_value: serde_json::Value = serde_json::from_str(&want)?;
    if serde_json::from_str::<serde_json::Value>(&got)? != want_value
        || serde_json::from_str::<serde_json::Value>(got_ours.output.get())? != want_value
    {
        bail!(
            "the analyzer's results differ: native {want}, bare {got}, ours {}",
            got_ours.output
        );
    }
    let mut figures = Vec::new();
    let (o, b) = rounds(
        n,
        move || ms(ours_text(&s.chassis, "analyzer", "analyze_code", text)),
        move || ms(async move { native(std::hint::black_box(text)).map(std::hint::black_box) }),
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
        move || ms(ours(&s.chassis, "analyzer", "analyze_code", payload)),
        move || ms(ours_text(&s.chassis, "analyzer", "analyze_code", text)),
    )
    .await?;
    figures.push(figure(
        "d_value_payload",
        "(d) same, Value in and out",
        "ms",
        "the same task with payload and output as JSON text",
        &o,
        &b,
        None,
    ));
    // The host's own share: the same engine work (epochs on) with and
    // without the chassis around it, the payload's JSON check included.
    let (o, b) = rounds(
        n,
        move || ms(ours_text(&s.chassis, "analyzer", "analyze_code", text)),
        move || ms(s.bare_analyzer_epoch.run("analyze_code", text)),
    )
    .await?;
    figures.push(figure(
        "d_host_share",
        "(d) same, the chassis vs bare wasmtime with epochs",
        "ms",
        "bare wasmtime with epoch interruption on (the engine's share)",
        &o,
        &b,
        Some(Goal::AtMost(1.1)),
    ));
    let (o, b) = rounds(
        n,
        move || ms(s.bare_analyzer_epoch.run("analyze_code", text)),
        move || ms(s.bare_analyzer.run("analyze_code", text)),
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
    // Where the rest goes: the guest's code in wasm against the same code
    // native, and the host's check that the payload is JSON (which the
    // caller of `TaskRequest::from_text` pays) against the whole task.
    let (o, b) = rounds(
        n,
        move || ms(s.bare_analyzer.run("analyze_code", text)),
        move || ms(async move { native(std::hint::black_box(text)).map(std::hint::black_box) }),
    )
    .await?;
    figures.push(figure(
        "d_wasm_cost",
        "(d) same, bare wasmtime",
        "ms",
        "the same Rust function compiled natively",
        &o,
        &b,
        None,
    ));
    let (o, b) = rounds(
        n,
        move || {
            ms(async move {
                Ok(std::hint::black_box(TaskRequest::from_text(
                    "analyze_code",
                    text.as_str(),
                )?))
            })
        },
        move || ms(ours_text(&s.chassis, "analyzer", "analyze_code", text)),
    )
    .await?;
    figures.push(c_against_native(run, text, &want_value).await?);
    figures.push(engine_settings(run, text, &want_value).await?);
    figures.push(figure(
        "d_payload_check",
        "(d) the payload's JSON check",
        "ms",
        "the whole task through the chassis (ratio: the check's share)",
        &o,
        &b,
        None,
    ));
    Ok(figures)
}

/// `analyzer-c`'s `analyze_code` through a chassis of its own vs the same
/// C compiled natively at -O2 (its time measured inside the program, one
/// run per round, so starting the process is not counted).
async fn c_against_native(run: &Run<'_>, text: &str, want: &serde_json::Value) -> Result<Figure> {
    let native = build_native_c(run.root, run.bench_dir)?;
    let payload_file = run.bench_dir.join("d-payload.json");
    std::fs::write(&payload_file, text)?;
    let native_run = |iterations: u32| -> Result<(f64, String)> {
        let out = std::process::Command::new(&native)
            .arg("analyze_code")
            .arg(&payload_file)
            .arg(iterations.to_string())
            .output()
            .with_context(|| format!("running {}", native.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                native.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(out.stdout)?;
        let (ms, output) = text.split_once('\n').context("no output")?;
        Ok((ms.trim().parse()?, output.trim_end().to_string()))
    };
    let (contract, bytes) = swarm(run.root, "analyzer-c")?;
    let chassis = Chassis::with_config(
        ChassisConfig::sized_for([&contract]).with_cache_dir(run.bench_dir.join("cache-g")),
    )?;
    chassis.load_bytes(&bytes, contract).await?;
    let ours_out = chassis
        .execute_task_text("analyzer-c", TaskRequest::from_text("analyze_code", text)?)
        .await?;
    let (_, native_out) = native_run(1)?;
    if serde_json::from_str::<serde_json::Value>(ours_out.output.get())? != *want
        || serde_json::from_str::<serde_json::Value>(&native_out)? != *want
    {
        bail!(
            "the C analyzer's results differ from the Rust one: native {native_out}, ours {}",
            ours_out.output
        );
    }
    let chassis = &chassis;
    let native_run = &native_run;
    let (o, b) = rounds(
        run.rounds,
        move || ms(ours_text(chassis, "analyzer-c", "analyze_code", text)),
        move || async move { Ok(native_run(1)?.0) },
    )
    .await?;
    Ok(figure(
        "d_c_native",
        "(d) analyze_code in C (analyzer-c)",
        "ms",
        "the same C compiled natively by the same clang at -O2",
        &o,
        &b,
        None,
    ))
}

/// The native C analyzer, `target/bench/analyzer-c-native`: built with the
/// zig that `cargo xtask build` installed under `target/tools/`, again when
/// a source is newer.
fn build_native_c(root: &Path, bench_dir: &Path) -> Result<PathBuf> {
    let out = bench_dir.join("analyzer-c-native");
    let sources = [
        root.join("swarms/analyzer-c/src/analyzer.c"),
        root.join("swarms/analyzer-c/src/analyzer.h"),
        root.join("bench/native/analyzer_main.c"),
    ];
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = modified(&out);
    if built.is_some() && sources.iter().all(|s| modified(s) <= built) {
        return Ok(out);
    }
    let tools = root.join("target/tools");
    let zig = std::fs::read_dir(&tools)
        .with_context(|| format!("reading {}", tools.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ziglang-"))
                && p.join("bin/python-zig").is_file()
        })
        .max()
        .context(
            "no zig under target/tools: `cargo xtask build` installs it (it builds the C swarms)",
        )?;
    let cache = zig.join("cache");
    let status = std::process::Command::new(zig.join("bin/python-zig"))
        .args(["cc", "-O2", "-std=c11"])
        .arg(&sources[0])
        .arg(&sources[2])
        .arg("-I")
        .arg(root.join("swarms/analyzer-c/src"))
        .arg("-o")
        .arg(&out)
        .env("ZIG_GLOBAL_CACHE_DIR", &cache)
        .env("ZIG_LOCAL_CACHE_DIR", &cache)
        .status()
        .context("running zig cc")?;
    if !status.success() {
        bail!("zig cc failed ({status}) building {}", out.display());
    }
    Ok(out)
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

/// Bare wasmtime with Cranelift's `speed_and_size` against its default
/// (`speed`), epochs off on both: what the engine's optimization setting
/// does for the guest's code.
async fn engine_settings(run: &Run<'_>, text: &str, want: &serde_json::Value) -> Result<Figure> {
    let (_, bytes) = swarm(run.root, "analyzer")?;
    let tuned =
        crate::bare::BareHost::tuned(crate::bare::Epoch::Off, crate::setup::BARE_POOL, |c| {
            c.cranelift_opt_level(wasmtime::OptLevel::SpeedAndSize);
        })?
        .load(&bytes)?;
    let got = tuned.run("analyze_code", text).await?;
    if serde_json::from_str::<serde_json::Value>(&got)? != *want {
        bail!("the analyzer at speed_and_size gives another result: {got}");
    }
    let (tuned, bare) = (&tuned, &run.setup.bare_analyzer);
    let (o, b) = rounds(
        run.rounds,
        move || ms(tuned.run("analyze_code", text)),
        move || ms(bare.run("analyze_code", text)),
    )
    .await?;
    Ok(figure(
        "d_engine_speed_and_size",
        "(d) bare wasmtime, Cranelift speed_and_size",
        "ms",
        "bare wasmtime, Cranelift speed (its default)",
        &o,
        &b,
        None,
    ))
}
