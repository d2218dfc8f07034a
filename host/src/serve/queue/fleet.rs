//! Fleet-wide quarantine through the JetStream key-value bucket
//! [`HEALTH_BUCKET`]: one entry per swarm, `{"quarantined", "reason",
//! "by"}`.
//!
//! Data flow: the host's quarantine and release events reach
//! `QuarantineSink` (an event sink, like the audit log), which hands them
//! to `publish`; it writes the swarm's entry when the fleet's state
//! differs. `follow` watches the bucket and brings the local host in step:
//! a swarm quarantined elsewhere is quarantined here (its tasks stop being
//! taken at once), a release elsewhere releases it here. A worker that
//! starts reads the current entries first, so it starts in step.

use std::sync::Arc;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{QueueError, Streams};
use crate::{Chassis, Event, EventSink};

/// The key-value bucket of the fleet's quarantine state.
pub const HEALTH_BUCKET: &str = "chassis_health";

/// One swarm's entry in [`HEALTH_BUCKET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetHealth {
    /// Whether every worker refuses the swarm's tasks.
    pub quarantined: bool,
    /// Why, when quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which worker (or `operator`) wrote it.
    pub by: String,
}

/// The bucket, made if it does not exist.
pub(crate) async fn bucket(
    jetstream: &async_nats::jetstream::Context,
    streams: &Streams,
) -> Result<kv::Store, QueueError> {
    jetstream
        .create_or_update_key_value(kv::Config {
            bucket: HEALTH_BUCKET.to_string(),
            description: "chassis: fleet-wide quarantine, one entry per swarm".to_string(),
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: streams.replicas,
            ..Default::default()
        })
        .await
        .map_err(QueueError::making_bucket)
}

/// Write `swarm_id`'s entry, if the fleet's state is not that already.
pub(crate) async fn put(
    store: &kv::Store,
    swarm_id: &str,
    health: &FleetHealth,
) -> Result<(), QueueError> {
    let now = store
        .get(swarm_id)
        .await
        .map_err(QueueError::js)?
        .and_then(|bytes| serde_json::from_slice::<FleetHealth>(&bytes).ok());
    if now.is_some_and(|now| now.quarantined == health.quarantined) {
        return Ok(());
    }
    let body = serde_json::to_vec(health).map_err(|e| QueueError::Malformed(e.to_string()))?;
    store
        .put(swarm_id, body.into())
        .await
        .map_err(QueueError::js)?;
    Ok(())
}

/// A swarm quarantined (`Some(reason)`) or released (`None`) on this host.
pub(crate) type Change = (String, Option<String>);

/// The host's quarantines and releases, passed to [`publish`].
pub(crate) struct QuarantineSink(pub(crate) mpsc::UnboundedSender<Change>);

impl EventSink for QuarantineSink {
    fn record(&self, event: &Event) {
        match event {
            Event::Quarantined {
                swarm_id, reason, ..
            } => {
                let _ = self.0.send((swarm_id.clone(), Some(reason.clone())));
            }
            Event::Released { swarm_id, .. } => {
                let _ = self.0.send((swarm_id.clone(), None));
            }
            _ => {}
        }
    }
}

/// Changes [`follow`] made here from the bucket, by swarm (`true`: a
/// quarantine): [`publish`] does not write them back.
type Echoes = Arc<std::sync::Mutex<std::collections::HashMap<String, bool>>>;

/// Write each local quarantine (`Some(reason)`) or release (`None`) to the
/// bucket as worker `by`, until the sink is dropped. A change that came
/// from the bucket is not written back, nor one the host has undone since.
pub(crate) async fn publish(
    store: kv::Store,
    chassis: Chassis,
    by: String,
    echoes: Echoes,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    while let Some((swarm_id, reason)) = changes.recv().await {
        let quarantine = reason.is_some();
        {
            let mut echoes = echoes.lock().expect("echoes lock");
            if echoes.get(&swarm_id) == Some(&quarantine) {
                echoes.remove(&swarm_id);
                continue;
            }
        }
        let now = chassis
            .slo_report(&swarm_id)
            .map(|r| r.reputation.quarantined);
        if now.is_ok_and(|now| now != quarantine) {
            continue;
        }
        let health = FleetHealth {
            quarantined: reason.is_some(),
            reason,
            by: by.clone(),
        };
        if let Err(e) = put(&store, &swarm_id, &health).await {
            tracing::error!(target: "chassis::queue", swarm = %swarm_id, "passing the quarantine state to the fleet: {e}");
        }
    }
}

/// Bring `chassis` in step with the bucket, entry by entry (the current
/// ones first), until the watch ends.
pub(crate) async fn follow(store: kv::Store, chassis: Chassis, echoes: Echoes) {
    let mut entries = match store.watch_with_history(">").await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(target: "chassis::queue", "watching the fleet's quarantine state: {e}");
            return;
        }
    };
    while let Some(entry) = entries.next().await {
        let Ok(entry) = entry else { continue };
        let Ok(health) = serde_json::from_slice::<FleetHealth>(&entry.value) else {
            continue;
        };
        apply(&chassis, &entry.key, &health, Some(&echoes));
    }
}

/// Bring one swarm in step with its fleet entry.
fn apply(chassis: &Chassis, swarm_id: &str, health: &FleetHealth, echoes: Option<&Echoes>) {
    let Ok(report) = chassis.slo_report(swarm_id) else {
        return;
    };
    let here = report.reputation.quarantined;
    if health.quarantined == here {
        return;
    }
    if let Some(echoes) = echoes {
        echoes
            .lock()
            .expect("echoes lock")
            .insert(swarm_id.to_string(), health.quarantined);
    }
    // The entry is anyone's on the NATS server to write: bounded and
    // escaped before the host keeps or shows it.
    let by = crate::text::escape(&health.by, 64);
    if health.quarantined {
        let reason = format!(
            "quarantined on {by}: {}",
            crate::text::escape(health.reason.as_deref().unwrap_or("no reason given"), 512)
        );
        tracing::warn!(target: "chassis::queue", swarm = swarm_id, "{reason}");
        let _ = chassis.quarantine(swarm_id, &reason);
    } else {
        tracing::info!(target: "chassis::queue", swarm = swarm_id, "released by {by}");
        let _ = chassis.release(swarm_id);
    }
}

/// Bring a swarm just loaded here in step with its fleet entry, if it has
/// one (the watch skipped it while it was not loaded).
pub(crate) async fn apply_current(store: &kv::Store, chassis: &Chassis, swarm_id: &str) {
    match store.get(swarm_id).await {
        Ok(Some(bytes)) => {
            if let Ok(health) = serde_json::from_slice::<FleetHealth>(&bytes) {
                apply(chassis, swarm_id, &health, None);
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(target: "chassis::queue", swarm = swarm_id, "reading the fleet's quarantine state: {e}")
        }
    }
}

/// Keep `store` and `chassis` in step both ways; returns the two tasks.
pub(crate) fn spawn(
    store: kv::Store,
    chassis: Chassis,
    me: String,
    changes: mpsc::UnboundedReceiver<Change>,
) -> [tokio::task::JoinHandle<()>; 2] {
    let echoes = Echoes::default();
    let publisher = tokio::spawn(publish(
        store.clone(),
        chassis.clone(),
        me,
        echoes.clone(),
        changes,
    ));
    let follower = tokio::spawn(follow(store, chassis, echoes));
    [publisher, follower]
}

/// An operator's release of `swarm_id` on every worker.
pub async fn release(queue: &super::Queue, swarm_id: &str) -> Result<(), QueueError> {
    let health = FleetHealth {
        quarantined: false,
        reason: None,
        by: "operator".to_string(),
    };
    let body = serde_json::to_vec(&health).map_err(|e| QueueError::Malformed(e.to_string()))?;
    queue
        .health
        .put(swarm_id, body.into())
        .await
        .map_err(QueueError::js)?;
    Ok(())
}

/// Keep the sink alive for as long as the host is.
pub(crate) fn sink(tx: mpsc::UnboundedSender<(String, Option<String>)>) -> Arc<dyn EventSink> {
    Arc::new(QuarantineSink(tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_bounded_and_escaped_before_the_host_keeps_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let chassis = Chassis::new().unwrap();
        let wasm = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/swarms/hello_world.wasm"),
        );
        let Ok(wasm) = wasm else {
            // Built by `cargo xtask build`, which `cargo xtask test` runs first.
            panic!("target/swarms/hello_world.wasm is missing: run `cargo xtask build`");
        };
        let contract = crate::ServiceContract::from_toml(
            "swarm_id = \"s\"\n[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
            "test",
        )
        .unwrap();
        runtime
            .block_on(chassis.load_bytes(&wasm, contract))
            .unwrap();
        let health = FleetHealth {
            quarantined: true,
            reason: Some(format!("\u{1b}[31m{}", "x".repeat(100_000))),
            by: "w\n1".to_string(),
        };
        apply(&chassis, "s", &health, None);
        let reputation = chassis.slo_report("s").unwrap().reputation;
        assert!(reputation.quarantined);
        let reason = reputation.quarantine_reason.unwrap();
        assert!(reason.len() < 1024, "{} bytes", reason.len());
        assert!(
            !reason.contains('\u{1b}') && !reason.contains('\n'),
            "{reason}"
        );
    }
}
