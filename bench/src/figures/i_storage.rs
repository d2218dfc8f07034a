//! (i) The object store: `notes` writes (`fill`) or reads (`scan`) a
//! 256-byte object N times within one task through the chassis (the
//! `storage` import: the call rate, the name check, the quota, one audit
//! record per call, the store on a blocking thread), vs the same
//! `FileStore` operations called directly by the host, no guest; µs per
//! operation. A put writes the object whole and flushes it and its
//! directory to disk on both sides, so the disk dominates it; a get reads a
//! file the page cache holds. The same two rows against the NATS store
//! (`NatsStore`, a JetStream key-value bucket on a `nats-server` this
//! figure starts on 127.0.0.1): a host of its own with `notes`, vs the same
//! `NatsStore` calls made directly; a put there is two compare-and-set
//! writes (the usage, then the object) and a read of each. Without the
//! `nats-server` that `cargo xtask build` installs, the NATS rows are
//! skipped, with a line that says so. No goal: the figures say what an
//! operation costs.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chassis::storage::files::FileStore;
use chassis::storage::nats::NatsStore;
use chassis::storage::{Quota, Store};
use chassis::{Chassis, ChassisConfig};

use super::Run;
use crate::measure::{Figure, figure, rounds};
use crate::setup::{ours, swarm};

/// Operations per task (divided by the run's scale).
const OPS: u32 = 200;
/// Bytes of each object.
const OBJECT_BYTES: usize = 256;

/// µs per put and per get, each side.
pub async fn measure(run: &Run<'_>) -> Result<Vec<Figure>> {
    eprintln!("==> (i) object store: a small put and get");
    let dir = run.bench_dir.join("storage-direct");
    let _ = std::fs::remove_dir_all(&dir);
    let direct = FileStore::open(&dir)?;
    let mut figures = side_by_side(run, &run.setup.chassis, &direct, "", "FileStore").await?;
    let server = run.root.join("target/tools/nats/bin/nats-server");
    if !server.exists() {
        eprintln!(
            "    (i) on NATS: skipped: {} is missing (`cargo xtask build` installs it)",
            server.display()
        );
        return Ok(figures);
    }
    let dir = run.bench_dir.join("nats-storage");
    let _ = std::fs::remove_dir_all(&dir);
    let nats = super::h_queue::nats_server(&dir)?;
    let url = nats.url.clone();
    let direct = NatsStore::connect(&url, 1).await?;
    let (mut contract, bytes) = swarm(run.root, "notes")?;
    contract.resource_limits.max_api_calls_per_second = 1_000_000;
    // Like the file rows' host: the same audit log takes its records.
    let chassis = Chassis::with_config(
        ChassisConfig::sized_for([&contract])
            .with_audit_log(run.setup.audit.clone())
            .with_store(Arc::new(NatsStore::connect(&url, 1).await?)),
    )?;
    chassis.load_bytes(&bytes, contract).await?;
    figures.extend(side_by_side(run, &chassis, &direct, "_nats", "NatsStore").await?);
    Ok(figures)
}

/// The put and get rows: `notes` on `chassis` against the same calls on
/// `direct` (a `store`, in a namespace of its own), each row's id ending in
/// `suffix`.
async fn side_by_side(
    run: &Run<'_>,
    chassis: &Chassis,
    direct: &dyn Store,
    suffix: &str,
    store: &str,
) -> Result<Vec<Figure>> {
    let n = OPS / run.scale;
    let quota = QUOTA;
    let names: &Vec<String> = &(0..16).map(|i| format!("fill/{i}")).collect();
    let value = &vec![7u8; OBJECT_BYTES];
    let payload = &serde_json::json!({ "n": n, "bytes": OBJECT_BYTES });
    // Both sides hold the objects before the first get.
    ours(chassis, "notes", "fill", payload).await?;
    for name in names {
        direct.set(DIRECT, name, value.clone(), quota).await?;
    }
    let mut figures = Vec::new();
    for (op, task) in [("put", "fill"), ("get", "scan")] {
        let (o, b) = rounds(
            run.rounds,
            move || async move {
                let t = Instant::now();
                ours(chassis, "notes", task, payload).await?;
                Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(n))
            },
            move || async move {
                let t = Instant::now();
                for i in 0..n as usize {
                    let name = &names[i % names.len()];
                    if op == "put" {
                        direct.set(DIRECT, name, value.clone(), quota).await?;
                    } else {
                        std::hint::black_box(direct.get(DIRECT, name).await?);
                    }
                }
                Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(n))
            },
        )
        .await?;
        let on = if suffix.is_empty() { "" } else { " on NATS" };
        figures.push(figure(
            &format!("i_storage{suffix}_{op}"),
            &format!("(i) storage{on}: one {OBJECT_BYTES}-byte {op}"),
            "µs",
            &format!("the same {store} call made directly by the host"),
            &o,
            &b,
            None,
        ));
    }
    Ok(figures)
}

/// The namespace of the direct calls: not `notes`', whose objects and
/// usage the chassis side keeps in the same bucket.
const DIRECT: &str = "direct";

/// Room for the objects the rows write.
const QUOTA: Quota = Quota {
    max_bytes: 1 << 20,
    max_objects: 16,
    max_object_bytes: 4096,
};
