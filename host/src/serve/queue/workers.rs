//! Who serves what: each worker's heartbeat, one entry per worker in the
//! key-value bucket [`WORKERS_BUCKET`] — its id, its signing key, the
//! swarms it has loaded (version, slots, free slots, quarantine) and when
//! it was last seen.
//!
//! Data flow: `heartbeat` writes the worker's entry every
//! `nats.heartbeat_seconds` and deletes it on a clean stop; entries of a
//! worker that died expire with the bucket's age limit. [`Queue::workers`]
//! reads the live ones (seen within [`live_within`] of the interval):
//! `chassis submit` refuses a task no live worker serves, and `chassis
//! fleet` and `/v1/fleet` list them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Queue, QueueError, Streams};
use crate::Chassis;

/// The key-value bucket of worker heartbeats.
pub const WORKERS_BUCKET: &str = "chassis_workers";

/// Entries read at most (a bucket holding more is read in part).
const MAX_WORKERS: usize = 10_000;

/// How long after its last heartbeat a worker still counts as live: three
/// heartbeats.
pub fn live_within(interval: Duration) -> Duration {
    interval * 3
}

/// One swarm a worker serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedSwarm {
    /// The swarm.
    pub swarm_id: String,
    /// Its contract's version.
    pub version: String,
    /// Its slots (`max_concurrent_tasks`).
    pub slots: u32,
    /// Slots free at the heartbeat.
    pub free_slots: u32,
    /// Whether it is quarantined on this worker.
    pub quarantined: bool,
    /// Its component's SHA-256 (absent in older heartbeats).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The bundle it was loaded from, when it came from a deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// What it declares it can do (its contract's `capabilities`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// The task types it serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_types: Vec<String>,
    /// Its reputation score on this worker.
    #[serde(default)]
    pub score: f64,
    /// Why capability routing leaves it out on this worker now, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

/// What a worker that follows deployments did with one swarm's newest
/// entry (`chassis fleet` compares it with the bucket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentState {
    /// The swarm.
    pub swarm_id: String,
    /// The revision of the newest entry applied or refused.
    pub revision: u64,
    /// The generation of the newest entry this worker believed and acted
    /// on (0: none).
    pub generation: u64,
    /// The bundle served here from the deployment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    /// `serving`, `not_placed`, `shadowed`, `undeployed` or `refused`.
    pub state: String,
    /// The refusal's kind, when refused (`digest`, `signature`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Why, when refused or shadowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a worker says of itself beyond the swarms it has loaded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// Its labels.
    pub(crate) labels: Vec<String>,
    /// Its deployments' states, when it follows deployments.
    pub(crate) deployments: Option<Vec<DeploymentState>>,
}

/// One worker's heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEntry {
    /// The worker's id.
    pub worker: String,
    /// Its public signing key (64 hex digits), if it signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Seconds between its heartbeats.
    pub heartbeat_seconds: f64,
    /// When the entry was written, in milliseconds since the Unix epoch:
    /// as the NATS server stored it, when read back through
    /// [`Queue::workers`].
    pub last_seen_ms: u64,
    /// The swarms it has loaded.
    pub swarms: Vec<ServedSwarm>,
    /// Its labels (`nats.labels`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// What it did with each deployment, when it follows deployments
    /// (`nats.deployments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments: Option<Vec<DeploymentState>>,
}

impl WorkerEntry {
    /// Whether the worker was seen recently enough to count as live at
    /// `now_ms`.
    pub fn live_at(&self, now_ms: u64) -> bool {
        let interval = Duration::from_secs_f64(self.heartbeat_seconds.clamp(0.1, 3600.0));
        now_ms.saturating_sub(self.last_seen_ms) <= live_within(interval).as_millis() as u64
    }

    /// Whether it serves `swarm_id` (quarantined or not).
    pub fn serves(&self, swarm_id: &str) -> bool {
        self.swarms.iter().any(|s| s.swarm_id == swarm_id)
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bucket, made if it does not exist. Entries older than a minute or
/// ten heartbeats, whichever is longer, expire.
pub(crate) async fn bucket(
    jetstream: &async_nats::jetstream::Context,
    streams: &Streams,
    interval: Duration,
) -> Result<kv::Store, QueueError> {
    jetstream
        .create_or_update_key_value(kv::Config {
            bucket: WORKERS_BUCKET.to_string(),
            description: "chassis: worker heartbeats, one entry per worker".to_string(),
            history: 1,
            max_age: (interval * 10).max(Duration::from_secs(60)),
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: streams.replicas,
            ..Default::default()
        })
        .await
        .map_err(QueueError::making_bucket)
}

/// This worker's entry now.
pub(crate) fn entry(
    chassis: &Chassis,
    worker: &str,
    signer: Option<String>,
    interval: Duration,
    facts: Facts,
) -> WorkerEntry {
    let bundle = |swarm_id: &str| {
        facts
            .deployments
            .iter()
            .flatten()
            .find(|d| d.swarm_id == swarm_id)
            .and_then(|d| d.serving.clone())
    };
    let swarms = chassis
        .list()
        .into_iter()
        .map(|info| {
            let slots = info.contract.resource_limits.max_concurrent_tasks;
            // One read of its standing: score, quarantine, and the slots
            // the governor's throttle lets be taken now.
            let standing = chassis.standing(&info.swarm_id).ok();
            ServedSwarm {
                version: info.contract.version.clone(),
                bundle: bundle(&info.swarm_id),
                capabilities: info.contract.capabilities.clone(),
                task_types: info.task_types.clone(),
                score: standing.as_ref().map_or(0.0, |s| s.score),
                excluded: match &standing {
                    Some(s) => s.excluded(),
                    None => Some("not loaded".to_string()),
                },
                swarm_id: info.swarm_id,
                slots,
                free_slots: standing.as_ref().map_or(0, |s| s.free_slots),
                quarantined: standing.as_ref().is_some_and(|s| s.quarantined),
                digest: info.digest,
            }
        })
        .collect();
    WorkerEntry {
        worker: worker.to_string(),
        signer,
        heartbeat_seconds: interval.as_secs_f64(),
        last_seen_ms: now_ms(),
        swarms,
        labels: facts.labels,
        deployments: facts.deployments,
    }
}

/// What [`heartbeat`] asks for the worker's [`Facts`] at each beat.
pub(crate) type FactsSource = std::sync::Arc<dyn Fn() -> Facts + Send + Sync>;

/// Write this worker's entry once, now.
pub(crate) async fn beat(
    store: &kv::Store,
    chassis: &Chassis,
    worker: &str,
    signer: Option<String>,
    interval: Duration,
    facts: Facts,
) -> Result<(), String> {
    let entry = entry(chassis, worker, signer, interval, facts);
    let body = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
    store
        .put(worker, body.into())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Write this worker's entry every `interval` until `stop` turns true;
/// then delete it.
pub(crate) async fn heartbeat(
    store: kv::Store,
    chassis: Chassis,
    worker: String,
    signer: Option<String>,
    interval: Duration,
    facts: FactsSource,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing = false;
    while !*stop.borrow() {
        let written = beat(&store, &chassis, &worker, signer.clone(), interval, facts()).await;
        match written {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(target: "chassis::queue", "heartbeats are written again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(target: "chassis::queue", "writing this worker's heartbeat: {e}; trying on");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
    if let Err(e) = store.delete(&worker).await {
        tracing::debug!(target: "chassis::queue", "removing this worker's heartbeat: {e}");
    }
}

impl Queue {
    /// Every worker whose heartbeat is in the bucket, live or not (empty
    /// before any worker wrote one). See [`WorkerEntry::live_at`].
    pub async fn workers(&self) -> Result<Vec<WorkerEntry>, QueueError> {
        let store = match self.jetstream.get_key_value(WORKERS_BUCKET).await {
            Ok(store) => store,
            Err(e) if e.to_string().to_ascii_lowercase().contains("not found") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(QueueError::js(e)),
        };
        let mut keys = store.keys().await.map_err(QueueError::js)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(QueueError::js)?);
            if names.len() >= MAX_WORKERS {
                break;
            }
        }
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let Some(kv_entry) = store.entry(&name).await.map_err(QueueError::js)? else {
                continue;
            };
            if kv_entry.operation != kv::Operation::Put {
                continue;
            }
            match serde_json::from_slice::<WorkerEntry>(&kv_entry.value) {
                Ok(mut entry) => {
                    // When the server stored it, not what the worker's
                    // clock claims: workers' clocks need not agree.
                    let stored = kv_entry.created.unix_timestamp_nanos() / 1_000_000;
                    entry.last_seen_ms = u64::try_from(stored).unwrap_or(0);
                    entries.push(entry);
                }
                Err(e) => {
                    tracing::warn!(target: "chassis::queue", "a malformed heartbeat ({:?}): {e}", crate::text::escape(&name, 64))
                }
            }
        }
        entries.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(entries)
    }

    /// Choose, from the live workers' heartbeats, the swarm a task of
    /// `task_type` addressed to `capability` goes to (`docs/governor.md`):
    /// among the swarms that declare it and serve the task type and that at
    /// least one live worker can run now, weighted by their mean score over
    /// those workers, among those with a free slot on one; `draw` in
    /// `[0, 1)` decides. Any worker that serves the swarm takes the task
    /// from its subject.
    pub async fn route(
        &self,
        capability: &str,
        task_type: &str,
        draw: f64,
    ) -> Result<String, QueueError> {
        let now = now_ms();
        let shown = |t: &str| crate::text::escape(t, 128);
        // Swarm -> (scores where eligible, free slots there, why not elsewhere).
        let mut swarms: std::collections::BTreeMap<String, (Vec<f64>, u32, Vec<String>)> =
            Default::default();
        for worker in self.workers().await?.into_iter().filter(|w| w.live_at(now)) {
            for s in worker.swarms {
                if !s.capabilities.iter().any(|c| c == capability)
                    || !s.task_types.iter().any(|t| t == task_type)
                {
                    continue;
                }
                let entry = swarms.entry(s.swarm_id).or_default();
                match s.excluded {
                    None => {
                        entry.0.push(s.score);
                        entry.1 = entry.1.saturating_add(s.free_slots);
                    }
                    Some(why) => {
                        entry
                            .2
                            .push(format!("on {}: {}", shown(&worker.worker), shown(&why)))
                    }
                }
            }
        }
        if swarms.is_empty() {
            return Err(QueueError::NoRoute(format!(
                "no live worker serves a swarm that declares capability {:?} and serves task type {:?}",
                shown(capability),
                shown(task_type)
            )));
        }
        let candidates: Vec<crate::Candidate> = swarms
            .iter()
            .filter(|(_, (scores, _, _))| !scores.is_empty())
            .map(|(id, (scores, free, _))| crate::Candidate {
                swarm_id: id.clone(),
                score: scores.iter().sum::<f64>() / scores.len() as f64,
                selection_threshold: 0.0,
                quarantined: false,
                budget_spent: false,
                circuit_open: false,
                free_slots: *free,
            })
            .collect();
        match crate::governor::route::choose(&candidates, draw) {
            Ok(i) => Ok(candidates[i].swarm_id.clone()),
            Err(_) => Err(QueueError::NoRoute(format!(
                "no swarm that declares capability {:?} and serves task type {:?} can be chosen now: {}",
                shown(capability),
                shown(task_type),
                swarms
                    .iter()
                    .map(|(id, (_, _, why))| format!("{}: {}", shown(id), why.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    /// The live workers that serve `swarm_id`, by id.
    pub async fn serving(&self, swarm_id: &str) -> Result<Vec<String>, QueueError> {
        let now = now_ms();
        Ok(self
            .workers()
            .await?
            .into_iter()
            .filter(|w| w.live_at(now) && w.serves(swarm_id))
            .map(|w| w.worker)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_live_for_three_heartbeats() {
        let entry = WorkerEntry {
            worker: "w".into(),
            signer: None,
            heartbeat_seconds: 2.0,
            last_seen_ms: 10_000,
            swarms: vec![ServedSwarm {
                swarm_id: "hello".into(),
                version: "1.0".into(),
                slots: 4,
                free_slots: 4,
                quarantined: false,
                digest: String::new(),
                bundle: None,
                capabilities: Vec::new(),
                task_types: Vec::new(),
                score: 0.5,
                excluded: None,
            }],
            labels: Vec::new(),
            deployments: None,
        };
        assert!(entry.live_at(10_000));
        assert!(entry.live_at(16_000));
        assert!(!entry.live_at(16_001));
        assert!(entry.serves("hello") && !entry.serves("other"));
    }
}
