//! Measuring and reporting, shared by every figure: interleaved rounds of
//! ours and the baseline, the statistics over them (median and range), the
//! [`Figure`] each measurement becomes (a line of the table, an entry of the
//! JSON file), the table itself and the machine's description.

use anyhow::Result;
use serde::Serialize;

/// One measured figure.
#[derive(Debug, Serialize)]
pub struct Figure {
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
    /// The goal, if there is one: on the ratio (`<= x`, `>= x`) or on ours
    /// (`ours <= x UNIT`).
    goal: Option<String>,
    /// Whether the goal is met.
    met: Option<bool>,
}

/// A goal on a figure: on its ratio (ours / baseline) or on ours alone.
#[derive(Clone, Copy)]
pub enum Goal {
    /// The ratio is at most this.
    AtMost(f64),
    /// The ratio is at least this.
    AtLeast(f64),
    /// Ours (the median, in the figure's unit) is at most this.
    OursAtMost(f64),
    /// Ours (the median, in the figure's unit) is at least this.
    OursAtLeast(f64),
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

/// The figure for these rounds of each side (medians, ranges, ratio, goal),
/// announced on stderr.
pub fn figure(
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
        Some(Goal::OursAtMost(x)) => (Some(format!("ours <= {x} {unit}")), Some(o <= x)),
        Some(Goal::OursAtLeast(x)) => (Some(format!("ours >= {x} {unit}")), Some(o >= x)),
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

/// Milliseconds `work` takes to finish.
pub async fn ms<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<f64> {
    let t = std::time::Instant::now();
    work.await?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Interleaved rounds: `ours` then `baseline`, `n` times after one
/// warm-up of each. Each closure returns one round's figure.
pub async fn rounds<O, B, FO, FB>(
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

/// The table of every figure, on stdout.
pub fn print_table(figures: &[Figure]) {
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

/// The machine the figures were measured on, for the JSON file.
pub fn machine() -> serde_json::Value {
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
