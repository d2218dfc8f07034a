//! (d) A CPU-bound task: the analyzer's `analyze_code` over 1 MiB of Python
//! through the chassis, vs the same Rust function compiled natively (JSON in
//! and out included). Both sides take the payload as JSON text and give
//! the output as text: the chassis hands the text to the guest as it is
//! (`TaskRequest::from_text`, `execute_task_text`), with no parse into a
//! tree and no print. A second figure runs the same task with the
//! payload as a `Value` (printed) and the output parsed into one, against
//! the text path: what the round trip costs. Goal: ratio ≤ 1.6. Then what epoch interruption
//! costs: the analyzer on bare wasmtime with it on vs off (no goal); what
//! wasm costs: bare wasmtime vs native; and the share of the task that is
//! the host's check that the payload is one JSON document.
//! The three results must agree before their times mean anything.

use anyhow::{Context, Result, bail};
use chassis::TaskRequest;

use super::Run;
use crate::measure::{Figure, Goal, figure, ms, rounds};
use crate::setup::{ours, ours_text};

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
