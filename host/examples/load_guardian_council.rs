//! The guardian-council walkthrough: load a contract, load the swarm it
//! names, run a guardian vote, and print each step.
//!
//! Run it with `cargo xtask demo` (which builds the swarms first).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chassis::audit::{AuditLog, FsyncPolicy};
use chassis::{Chassis, ChassisConfig, Secret, SecretStore, ServiceContract, TaskRequest};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    // The swarm's own log lines (prefixed with its id) go to stderr, in
    // colour only on a terminal and without NO_COLOR, as the CLI's.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,swarm=info"))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .init();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("host/ lives below the workspace root")?
        .to_path_buf();
    let contract_path = root.join("config/guardian-council.toml");

    // Step 1: load the service contract.
    println!("Loading service contract...");
    let contract = ServiceContract::from_file(&contract_path)?;
    println!("  Swarm ID: {}", contract.swarm_id);
    println!(
        "  WASM module: {}",
        contract
            .wasm_module
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("  CPU limit: {}%", contract.resource_limits.max_cpu_percent);
    println!(
        "  Memory limit: {} MB",
        contract.resource_limits.max_memory_mb
    );

    // Step 2: a signing key for this run, held by the host only.
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut secrets = SecretStore::new();
    secrets.insert(
        &contract.swarm_id,
        "guardian_signing_key",
        Secret::new(format!("ed25519:{}", hex::encode(seed))),
    );
    let verifying_key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();

    // Step 3: start the host, with an audit log, and load the swarm.
    println!("\nInitializing IF.chassis...");
    // A fresh log each run: a directory of segments.
    let audit_path = root.join("target/demo-audit");
    let _ = std::fs::remove_dir_all(&audit_path);
    let audit = AuditLog::open(&audit_path, FsyncPolicy::Always)?;
    let chassis = Chassis::with_config(
        ChassisConfig::sized_for([&contract])
            .with_secrets(secrets)
            .with_audit_log(audit.clone()),
    )?;
    let info = chassis.load(&contract_path).await?;
    println!("  ✅ WASM module loaded and validated");
    println!("  Task types: {}", info.task_types.join(", "));

    // Step 4: run a guardian vote.
    println!("\nExecuting guardian vote task...");
    let request = TaskRequest::new(
        "guardian_vote",
        json!({
            "session": "session-4-sip",
            "proposal": "Approve SIP integration Phase 3",
            "voting_period": 3600
        }),
    )
    .with_id("vote-001");
    match chassis.execute_task(&info.swarm_id, request).await {
        Ok(outcome) if outcome.is_success() => {
            println!(
                "  ✅ Task completed in {:.2}ms",
                outcome.execution_time.as_secs_f64() * 1000.0
            );
            let o = &outcome.output;
            let summary = json!({
                "vote": o["vote"],
                "guardian_id": o["guardian_id"],
                "signature": o["signature"],
            });
            println!("  Result: {summary}");
            match verify(o, &verifying_key) {
                Ok(()) => println!("  ✅ Signature verified with the guardian's public key"),
                Err(why) => println!("  ❌ Signature does not verify: {why}"),
            }
        }
        Ok(outcome) => {
            let why = outcome.error.map(|e| e.to_string()).unwrap_or_default();
            println!("  ❌ Task failed: {why}");
        }
        Err(e) => println!("  ❌ Task failed: {e}"),
    }

    // Step 5: SLO compliance and reputation.
    println!("\nChecking SLO compliance...");
    let report = chassis.slo_report(&info.swarm_id)?;
    for check in &report.slo.compliance {
        let mark = if check.compliant { "✅" } else { "❌" };
        println!(
            "  {mark} {}: {:.2} (target: {})",
            check.metric, check.actual, check.target
        );
    }
    let rep = &report.reputation;
    println!("\nReputation score: {:.2}", rep.score);
    println!("  SLO compliance: {:.2}", rep.slo_compliance);
    println!("  Security compliance: {:.2}", rep.security_compliance);

    // Step 6: the witness.
    chassis.unload(&info.swarm_id)?;
    audit.close()?;
    let verified = chassis::audit::verify(&audit_path)?;
    println!(
        "\nAudit log: {} ({} records), verify OK",
        audit_path
            .strip_prefix(&root)
            .unwrap_or(&audit_path)
            .display(),
        verified.records
    );

    println!("\n✅ Example complete!");
    Ok(())
}

/// Check the vote's `ed25519:<hex>` signature over its `signed_message`.
fn verify(output: &serde_json::Value, key: &ed25519_dalek::VerifyingKey) -> Result<(), String> {
    if let Some(why) = output.get("signature_error") {
        return Err(format!("not signed: {why}"));
    }
    let text = output["signature"].as_str().ok_or("no signature")?;
    let bytes = hex::decode(text.trim_start_matches("ed25519:")).map_err(|e| e.to_string())?;
    let signature = ed25519_dalek::Signature::from_slice(&bytes).map_err(|e| e.to_string())?;
    let message = output["signed_message"]
        .as_str()
        .ok_or("no signed_message")?;
    key.verify_strict(message.as_bytes(), &signature)
        .map_err(|e| e.to_string())
}
