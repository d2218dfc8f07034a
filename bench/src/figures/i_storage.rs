//! (i) The object store: `notes` writes (`fill`) or reads (`scan`) a
//! 256-byte object N times within one task through the chassis (the
//! `storage` import: the call rate, the name check, the quota, one audit
//! record per call, the store on a blocking thread), vs the same
//! `FileStore` operations called directly by the host, no guest; µs per
//! operation. A put writes the object whole and flushes it and its
//! directory to disk on both sides, so the disk dominates it; a get reads a
//! file the page cache holds. No goal: the figures say what an operation
//! costs.

use std::time::Instant;

use anyhow::Result;
use chassis::storage::files::FileStore;
use chassis::storage::{Quota, Store};

use super::Run;
use crate::measure::{Figure, figure, rounds};
use crate::setup::ours;

/// Operations per task (divided by the run's scale).
const OPS: u32 = 200;
/// Bytes of each object.
const OBJECT_BYTES: usize = 256;

/// µs per put and per get, each side.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (i) object store: a small put and get");
    let s = run.setup;
    let n = OPS / run.scale;
    let dir = run.bench_dir.join("storage-direct");
    let _ = std::fs::remove_dir_all(&dir);
    let direct = FileStore::open(&dir)?;
    let quota = Quota {
        max_bytes: 1 << 20,
        max_objects: 16,
        max_object_bytes: 4096,
    };
    let names: Vec<String> = (0..16).map(|i| format!("fill/{i}")).collect();
    let value = vec![7u8; OBJECT_BYTES];
    let payload = &serde_json::json!({ "n": n, "bytes": OBJECT_BYTES });
    let (direct, names, value) = (&direct, &names, &value);
    // Both sides hold the objects before the first get.
    ours(&s.chassis, "notes", "fill", payload).await?;
    for name in names {
        direct.set("notes", name, value.clone(), quota).await?;
    }
    let mut figures = Vec::new();
    for (op, task) in [("put", "fill"), ("get", "scan")] {
        let (o, b) = rounds(
            run.rounds,
            move || async move {
                let t = Instant::now();
                ours(&s.chassis, "notes", task, payload).await?;
                Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(n))
            },
            move || async move {
                let t = Instant::now();
                for i in 0..n as usize {
                    let name = &names[i % names.len()];
                    if op == "put" {
                        direct.set("notes", name, value.clone(), quota).await?;
                    } else {
                        std::hint::black_box(direct.get("notes", name).await?);
                    }
                }
                Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(n))
            },
        )
        .await?;
        figures.push(figure(
            &format!("i_storage_{op}"),
            &format!("(i) storage: one {OBJECT_BYTES}-byte {op}"),
            "µs",
            "the same FileStore call made directly by the host",
            &o,
            &b,
            None,
        ));
    }
    Ok(figures)
}
