//! What the figures run against: the components and contracts in
//! `config/`, the chassis with them loaded (with and without an audit log),
//! and bare wasmtime with the same components ([`crate::bare`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chassis::{
    Chassis, ChassisConfig, PoolConfig, Secret, SecretStore, ServiceContract, TaskRequest,
};

use crate::bare::{BareHost, BareSwarm, Epoch};

/// The credential value both hosts hand to the probe.
pub const BENCH_TOKEN: &str = "bench-token-value";

/// The size of the bare engines' pools: room for every task the figures
/// run at once, memories as large as the analyzer's contract allows. The
/// allocator's other settings are the chassis's own
/// ([`PoolConfig::pooling_allocation_config`]).
pub const BARE_POOL: PoolConfig = PoolConfig {
    instances: 64,
    max_memory_mb: 256,
};

/// A contract file and its component's bytes.
pub fn swarm(root: &Path, name: &str) -> Result<(ServiceContract, Vec<u8>)> {
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
pub fn analyzer_contract(mut c: ServiceContract, id: &str) -> ServiceContract {
    c.swarm_id = id.to_string();
    c.resource_limits.max_cpu_percent = 100;
    c.resource_limits.max_concurrent_tasks = 2;
    c
}

/// What ours and the baseline run: the chassis with every swarm loaded, and
/// bare wasmtime with the same components.
pub struct Setup {
    /// The chassis with `bench-probe`, `analyzer` and `notes` (with an
    /// object store), and an audit log.
    pub chassis: Chassis,
    /// The same host with `bench-probe` only and no audit log.
    pub chassis_no_audit: Chassis,
    /// The same host with `bench-probe` only and an audit log that keeps
    /// no state and writes no checkpoints: what checkpoints cost.
    pub chassis_no_checkpoints: Chassis,
    /// The audit log of `chassis`.
    pub audit: Arc<chassis::audit::AuditLog>,
    /// `bench-probe` in bare wasmtime, epoch interruption off.
    pub bare_probe: BareSwarm,
    /// `analyzer` in bare wasmtime, epoch interruption off.
    pub bare_analyzer: BareSwarm,
    /// `analyzer` in bare wasmtime, epoch interruption on.
    pub bare_analyzer_epoch: BareSwarm,
    /// The analyzer component.
    pub analyzer_bytes: Vec<u8>,
    /// The analyzer's contract, as loaded into `chassis`.
    pub analyzer_contract: ServiceContract,
}

impl Setup {
    /// Load the components into the chassis and into bare wasmtime; the
    /// audit log goes to `bench_dir/audit.jsonl`.
    pub async fn new(root: &Path, bench_dir: &Path) -> Result<Self> {
        let (probe_contract, probe_bytes) = swarm(root, "bench-probe")?;
        let (analyzer, analyzer_bytes) = swarm(root, "analyzer")?;
        let analyzer = analyzer_contract(analyzer, "analyzer");
        let (mut notes, notes_bytes) = swarm(root, "notes")?;
        notes.resource_limits.max_api_calls_per_second = 1_000_000;

        let audit_path = bench_dir.join("audit.jsonl");
        let _ = std::fs::remove_dir_all(&audit_path);
        let audit = chassis::audit::AuditLog::open(
            &audit_path,
            chassis::audit::FsyncPolicy::Interval(Duration::from_secs(1)),
        )?;
        let mut secrets = SecretStore::new();
        secrets.insert("bench-probe", "bench_token", Secret::new(BENCH_TOKEN));
        let config =
            ChassisConfig::sized_for([&probe_contract, &analyzer, &notes]).with_secrets(secrets);
        // The same host without an audit log, to show what the log costs.
        let chassis_no_audit = Chassis::with_config(config.clone())?;
        chassis_no_audit
            .load_bytes(&probe_bytes, probe_contract.clone())
            .await?;
        // The same host with an audit log that keeps no checkpoints.
        let plain_path = bench_dir.join("audit-no-checkpoints");
        let _ = std::fs::remove_dir_all(&plain_path);
        let mut plain = chassis::audit::AuditOptions::new(chassis::audit::FsyncPolicy::Interval(
            Duration::from_secs(1),
        ));
        plain.checkpoints = false;
        let audit_no_checkpoints = chassis::audit::AuditLog::open_with(&plain_path, plain)?;
        let chassis_no_checkpoints =
            Chassis::with_config(config.clone().with_audit_log(audit_no_checkpoints))?;
        chassis_no_checkpoints
            .load_bytes(&probe_bytes, probe_contract.clone())
            .await?;
        // `notes` and its objects (figure (i)), fresh each run, with room
        // for the calls a round makes.
        let store_dir = bench_dir.join("storage");
        let _ = std::fs::remove_dir_all(&store_dir);
        let store = chassis::storage::files::FileStore::open(&store_dir)?;
        let chassis = Chassis::with_config(
            config
                .with_audit_log(audit.clone())
                .with_store(Arc::new(store)),
        )?;
        chassis.load_bytes(&probe_bytes, probe_contract).await?;
        chassis.load_bytes(&notes_bytes, notes).await?;
        chassis
            .load_bytes(&analyzer_bytes, analyzer.clone())
            .await?;

        let bare = BareHost::new(Epoch::Off, BARE_POOL)?;
        let bare_epoch = BareHost::new(Epoch::On, BARE_POOL)?;
        Ok(Self {
            chassis,
            chassis_no_audit,
            chassis_no_checkpoints,
            audit,
            bare_probe: bare.load(&probe_bytes)?,
            bare_analyzer: bare.load(&analyzer_bytes)?,
            bare_analyzer_epoch: bare_epoch.load(&analyzer_bytes)?,
            analyzer_bytes,
            analyzer_contract: analyzer,
        })
    }
}

/// One task through `chassis` with its payload and output as JSON text,
/// as a caller holding text (an HTTP body, a queue message) runs it: no
/// parse into a tree, no print. An error unless it succeeds.
pub async fn ours_text(chassis: &Chassis, swarm: &str, task: &str, payload: &str) -> Result<()> {
    let request = TaskRequest::from_text(task, payload)?;
    let outcome = chassis.execute_task_text(swarm, request).await?;
    if !outcome.is_success() {
        bail!("{swarm} {task}: {:?}", outcome.error);
    }
    std::hint::black_box(outcome.output);
    Ok(())
}

/// Tasks per second of `bench-probe`'s `noop` through `chassis` in-process,
/// two workers of `per_worker` tasks each, payload and output as text:
/// the baseline of the service paths, figure (h).
pub async fn in_process_noops(chassis: Chassis, per_worker: u32) -> Result<f64> {
    let start = std::time::Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let chassis = chassis.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    ours_text(&chassis, "bench-probe", "noop", "{}").await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(f64::from(per_worker * 2) / start.elapsed().as_secs_f64())
}

/// One task through `chassis`; an error unless it succeeds.
pub async fn ours(
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
