//! (c) One import call: `bench-probe` calls `log` (or `credentials.get`) in
//! a loop within one task through the chassis, vs the same task on bare
//! wasmtime, whose host functions return at once; ns per call: what the
//! chassis's checks on each call cost. The 2,000 `credentials.get` calls
//! of one key in one task write one `credential_access_allowed` record and
//! one `credential_repeated` count. Goal for `credentials.get`: ratio ≤ 2.

use std::time::Instant;

use anyhow::Result;

use super::Run;
use crate::measure::{Figure, Goal, figure, rounds};
use crate::setup::ours;

/// `log` calls per task (divided by the run's scale).
const LOG_CALLS: u32 = 20_000;
/// `credentials.get` calls per task (divided by the run's scale).
const CREDENTIAL_CALLS: u32 = 2_000;

/// ns per call, each side, for `log` and for `credentials.get`.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (c) import calls");
    let s = run.setup;
    let mut figures = Vec::new();
    for (task, calls, payload, what, goal) in [
        (
            "log",
            LOG_CALLS / run.scale,
            serde_json::json!({ "n": LOG_CALLS / run.scale }),
            "(c) one log call",
            None,
        ),
        (
            "credential",
            CREDENTIAL_CALLS / run.scale,
            serde_json::json!({ "n": CREDENTIAL_CALLS / run.scale, "name": "bench_token" }),
            "(c) one credentials.get call",
            Some(Goal::AtMost(2.0)),
        ),
    ] {
        let text = &payload.to_string();
        let payload = &payload;
        let (o, b) = rounds(
            run.rounds,
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
            goal,
        ));
    }
    Ok(figures)
}
