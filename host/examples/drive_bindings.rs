//! Driving a swarm through the generated bindings, for embedders who call
//! a component's exports themselves: the chassis checks and pre-links the
//! component (`Chassis::load`), and gives a store bound by the swarm's
//! contract (`Chassis::new_store`) in which its own import
//! implementations — log, credentials, the HTTP proxy, WASI as granted —
//! and limits apply.
//!
//! Run it with `cargo run -p chassis --example drive_bindings` after
//! `cargo xtask build`. It prints the task types, a greeting, and how a
//! hostile guest's memory bomb is stopped at its contract's bound.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chassis::Chassis;
use chassis::bindings::types::TaskRequest;

#[tokio::main]
async fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("host/ lives below the workspace root")?
        .to_path_buf();
    let chassis = Chassis::new()?;
    chassis.load(root.join("config/hello-world.toml")).await?;

    // The component as loaded: checked against its contract, pre-linked.
    let pre = chassis.swarm_pre("hello-world")?;
    let mut store = chassis.new_store("hello-world", "bindings-1")?;
    let swarm = pre.instantiate_async(&mut store).await?;
    let task = swarm.infrafabric_chassis_task();
    let types = task.call_describe(&mut store).await?;
    println!("task types: {}", types.join(", "));
    let request = TaskRequest {
        task_id: "bindings-1".into(),
        task_type: "hello".into(),
        payload: r#"{"name": "Ada"}"#.into(),
    };
    match task.call_execute(&mut store, &request).await? {
        Ok(output) => println!("output: {output}"),
        Err(e) => bail!("the swarm failed: {e:?}"),
    }

    // The contract's limits hold in these stores too: a hostile guest
    // that allocates without end, held to 16 MiB.
    let contract = chassis::ServiceContract::builder("misbehave")
        .max_memory_mb(16)
        .wasi_capability("wasi:io/streams")
        .build()?;
    let bytes = std::fs::read(root.join("target/swarms/misbehave.wasm"))
        .context("build the swarms first: cargo xtask build")?;
    chassis.load_bytes(&bytes, contract).await?;
    let pre = chassis.swarm_pre("misbehave")?;
    let mut store = chassis.new_store("misbehave", "bindings-2")?;
    let swarm = pre.instantiate_async(&mut store).await?;
    let request = TaskRequest {
        task_id: "bindings-2".into(),
        task_type: "memory_bomb".into(),
        payload: "{}".into(),
    };
    match swarm
        .infrafabric_chassis_task()
        .call_execute(&mut store, &request)
        .await
    {
        Ok(answer) => bail!("the memory bomb was not stopped: {answer:?}"),
        Err(e) => println!("stopped: {}", e.root_cause()),
    }
    Ok(())
}
