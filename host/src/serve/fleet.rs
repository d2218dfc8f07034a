//! The service's fleet part: with `--nats`, the task queue this server
//! also takes tasks from, the workers' heartbeats, the fleet's quarantine
//! bucket and the audit mirror; without, nothing. This file is the one
//! place the `nats` feature is decided for the service: the rest of
//! `serve` calls [`Fleet`] the same way in every build.
//!
//! Life cycle: [`Fleet::connect`] (in `Service::new`: the queue's streams
//! and the heartbeat bucket made), [`Fleet::shared_store`] and
//! [`Fleet::configure`] (the host's object store and the event sink that
//! tells the fleet of quarantines), [`Fleet::first_deployments`] (in
//! `Service::load`, with `nats.deployments`: the swarms deployed to the
//! fleet loaded before any task is taken), [`Fleet::start`] (in
//! `Service::serve`: the audit mirror, the fleet's quarantine watcher, the
//! deployments' follower, the heartbeat and the pull loops),
//! [`Running::finish`] when HTTP has drained, and
//! [`Fleet::mirror_the_rest`] once the audit log is closed.

use std::sync::Arc;

use super::{ServeConfig, ServeError, Service};
use crate::{Chassis, ChassisConfig};

pub(super) use imp::{Convergences, DeploymentsView, Fleet, Workers};

#[cfg(feature = "nats")]
mod imp {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::serve::queue;

    /// What `/v1/fleet` lists: the live workers, as their heartbeats say.
    pub(in crate::serve) type Workers = Arc<Vec<queue::workers::WorkerEntry>>;

    /// What `/v1/fleet` says of each deployed swarm: how far the fleet is
    /// with it.
    pub(in crate::serve) type Convergences = Vec<queue::deploy::Convergence>;

    /// What `/readyz` says of deployments, when the worker follows them.
    #[derive(serde::Serialize)]
    pub(in crate::serve) struct DeploymentsView {
        /// Whether the first sync with the bucket is done.
        pub(in crate::serve) synced: bool,
        /// This worker's labels.
        pub(in crate::serve) labels: Vec<String>,
        /// What it did with each swarm's newest entry.
        pub(in crate::serve) swarms: Vec<queue::workers::DeploymentState>,
    }

    /// The queue and what goes with it, or nothing without `nats` in the
    /// configuration.
    #[derive(Default)]
    pub(in crate::serve) struct Fleet {
        queue: Option<queue::Queue>,
        /// The bucket of worker heartbeats.
        heartbeats: Option<async_nats::jetstream::kv::Store>,
        /// The host's quarantines and releases, for the fleet's bucket:
        /// the sink's end is the host's ([`Fleet::configure`]), this one
        /// is taken by [`Fleet::start`].
        changes:
            std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<queue::fleet::Change>>>,
        /// The live workers as last read, and when: read at most once a
        /// second, one reader at a time, however many ask.
        view: tokio::sync::Mutex<Option<(Instant, Workers)>>,
        /// The deployments this worker follows (`nats.deployments`).
        deployments: Option<Arc<queue::deploy::follow::Deployments>>,
    }

    /// How long a starting worker waits for JetStream to answer its
    /// setting up.
    const JETSTREAM_WAIT: Duration = Duration::from_secs(60);

    /// The fleet's tasks while the server runs.
    pub(in crate::serve) struct Running {
        worker: Arc<queue::worker::Worker>,
        /// The pull loops and the heartbeat, awaited once.
        run: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    }

    impl Fleet {
        /// Connect to the queue named by `config.nats` (making its
        /// streams and the heartbeat bucket), signing with the worker key
        /// if one is set.
        pub(in crate::serve) async fn connect(config: &ServeConfig) -> Result<Self, ServeError> {
            let Some(nats) = &config.nats else {
                return Ok(Self::default());
            };
            // A worker may start with its NATS servers (one host, one
            // compose file): while JetStream has no leader yet, its
            // setting up is tried again for a while, saying so.
            let key = worker_key(nats)?;
            let started = Instant::now();
            let (queue, heartbeats) = loop {
                match Self::set_up(config, nats, key.clone()).await {
                    Err(queue::QueueError::Unavailable(e))
                        if started.elapsed() < JETSTREAM_WAIT =>
                    {
                        tracing::warn!(target: "chassis::queue", "NATS JetStream does not answer yet ({e}); trying again (for up to {JETSTREAM_WAIT:?} in all)");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    set_up => break set_up?,
                }
            };
            let deployments = if nats.deployments {
                let deployments =
                    queue::deploy::follow::Deployments::open(&queue.jetstream, nats).await?;
                tracing::info!(target: "chassis::queue", "serving the swarms deployed to the fleet (bucket {}), labels {:?}", queue::deploy::DEPLOYMENTS_BUCKET, nats.labels);
                Some(Arc::new(deployments))
            } else {
                None
            };
            Ok(Self {
                queue: Some(queue),
                heartbeats: Some(heartbeats),
                deployments,
                ..Self::default()
            })
        }

        /// Connect as this worker, making the streams and buckets that
        /// are not there yet.
        async fn set_up(
            config: &ServeConfig,
            nats: &crate::serve::config::NatsSettings,
            key: Option<Arc<queue::trust::WorkerKey>>,
        ) -> Result<(queue::Queue, async_nats::jetstream::kv::Store), queue::QueueError> {
            let queue = queue::Queue::connect_worker(
                &nats.url,
                &nats.auth,
                &queue::Streams {
                    replicas: nats.replicas,
                    duplicate_window: nats.duplicate_window,
                    results_max_age: nats.results_max_age,
                },
                &config.worker_id().unwrap_or_default(),
            )
            .await?
            .signing_with(key);
            let heartbeats = queue::workers::bucket(
                &queue.jetstream,
                &queue::Streams {
                    replicas: nats.replicas,
                    ..Default::default()
                },
                nats.heartbeat,
            )
            .await?;
            Ok((queue, heartbeats))
        }

        /// The contracts of the swarms deployed to the fleet that this
        /// worker would serve now: the host is sized for them too.
        pub(in crate::serve) async fn deployed_contracts(&self) -> Vec<crate::ServiceContract> {
            match &self.deployments {
                Some(d) => d.contracts().await,
                None => Vec::new(),
            }
        }

        /// Load the swarms deployed to the fleet (with `nats.deployments`),
        /// before any task is taken.
        pub(in crate::serve) async fn first_deployments(&self, service: &Service) {
            if let Some(deployments) = &self.deployments {
                deployments.first_sync(service).await;
            }
        }

        /// The bundle `swarm_id` is served from, when a deployment loaded it.
        pub(in crate::serve) fn deployed_bundle(&self, swarm_id: &str) -> Option<String> {
            self.deployments.as_ref()?.serving(swarm_id)
        }

        /// What `/readyz` says of deployments, when this worker follows
        /// them.
        pub(in crate::serve) fn deployments_view(&self) -> Option<DeploymentsView> {
            let d = self.deployments.as_ref()?;
            Some(DeploymentsView {
                synced: d.synced(),
                labels: d.labels().to_vec(),
                swarms: d.states(),
            })
        }

        /// What the heartbeat says beyond the loaded swarms.
        fn facts(&self) -> queue::workers::FactsSource {
            let labels = self
                .deployments
                .as_ref()
                .map(|d| d.labels().to_vec())
                .unwrap_or_default();
            let deployments = self.deployments.clone();
            Arc::new(move || queue::workers::Facts {
                labels: labels.clone(),
                deployments: deployments.as_ref().map(|d| d.states()),
            })
        }

        /// The fleet's shared object store, with `nats.shared_storage`;
        /// one that cannot be opened is an error only when a contract
        /// needs a store.
        pub(in crate::serve) async fn shared_store(
            &self,
            config: &ServeConfig,
            needs_store: bool,
        ) -> Result<Option<Arc<dyn crate::storage::Store>>, ServeError> {
            let (Some(queue), Some(nats)) = (&self.queue, &config.nats) else {
                return Ok(None);
            };
            if !nats.shared_storage {
                return Ok(None);
            }
            match crate::storage::nats::NatsStore::open(&queue.jetstream, nats.replicas).await {
                Ok(store) => {
                    tracing::info!(target: "chassis::serve", "swarms' objects are kept in the NATS bucket {} (nats.shared_storage){}", crate::storage::nats::BUCKET, if config.storage_dir.is_some() { "; storage_dir is not used" } else { "" });
                    Ok(Some(Arc::new(store)))
                }
                Err(e) if !needs_store => {
                    tracing::warn!(target: "chassis::serve", "the shared object store: {e}; serving without an object store");
                    Ok(None)
                }
                Err(e) => Err(ServeError::SharedStorage(e)),
            }
        }

        /// Add the sink that tells the fleet of the host's quarantines
        /// and releases.
        pub(in crate::serve) fn configure(&self, host: ChassisConfig) -> ChassisConfig {
            if self.queue.is_none() {
                return host;
            }
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            *self.changes.lock().expect("fleet lock") = Some(rx);
            host.with_event_sink(queue::fleet::sink(tx))
        }

        /// Write this worker's heartbeat now.
        pub(in crate::serve) async fn beat(&self, chassis: &Chassis, config: &ServeConfig) {
            let (Some(store), Some(nats), Some(id)) =
                (&self.heartbeats, &config.nats, config.worker_id())
            else {
                return;
            };
            let signer = self
                .queue
                .as_ref()
                .and_then(|q| q.signer.as_ref())
                .map(|k| k.public_hex());
            let interval = nats.heartbeat;
            let facts = self.facts()();
            if let Err(e) = queue::workers::beat(store, chassis, &id, signer, interval, facts).await
            {
                tracing::warn!(target: "chassis::queue", "writing this worker's heartbeat: {e}");
            }
        }

        /// The fleet's live workers (`None` without a queue), read from
        /// the heartbeats at most once a second.
        pub(in crate::serve) async fn live_workers(&self) -> Option<Result<Workers, String>> {
            let queue = self.queue.as_ref()?;
            let mut view = self.view.lock().await;
            if let Some((at, workers)) = view.as_ref()
                && at.elapsed() < Duration::from_secs(1)
            {
                return Some(Ok(workers.clone()));
            }
            let now = queue::workers::now_ms();
            Some(
                queue
                    .workers()
                    .await
                    .map(|all| {
                        let live: Workers =
                            Arc::new(all.into_iter().filter(|w| w.live_at(now)).collect());
                        *view = Some((Instant::now(), live.clone()));
                        live
                    })
                    .map_err(|e| e.to_string()),
            )
        }

        /// How far the live `workers` are with each swarm deployed to the
        /// fleet (`None` without a queue, or when the bucket cannot be
        /// read: there may be no deployments yet).
        pub(in crate::serve) async fn convergence(
            &self,
            workers: &Workers,
        ) -> Option<Convergences> {
            let queue = self.queue.as_ref()?;
            let store = queue
                .jetstream
                .get_key_value(queue::deploy::DEPLOYMENTS_BUCKET)
                .await
                .ok()?;
            let current = queue::deploy::current(&store, None).await.ok()?;
            Some(queue::deploy::convergence(&current, workers))
        }

        /// Set each loaded swarm's queue figures in the metrics, read from
        /// NATS now (at most a second for all).
        pub(in crate::serve) async fn queue_figures(
            &self,
            chassis: &Chassis,
            metrics: &crate::metrics::Metrics,
        ) {
            let Some(queue) = &self.queue else {
                return;
            };
            let read = async {
                if let Some(Ok(workers)) = self.live_workers().await {
                    metrics.fleet_workers(workers.len());
                }
                metrics.clear_queue_figures();
                for info in chassis.list() {
                    if let Ok(Some((pending, in_flight))) = queue.figures(&info.swarm_id).await {
                        metrics.queue_figures(&info.swarm_id, pending, in_flight);
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
        }

        /// Start what a worker of the queue runs beside HTTP, until
        /// `stop`: the audit mirror, the fleet's quarantine watcher, the
        /// heartbeat and the pull loops.
        pub(in crate::serve) fn start(
            &self,
            service: &Arc<Service>,
            stop: tokio::sync::watch::Receiver<bool>,
        ) -> Option<Running> {
            let queue = self.queue.clone()?;
            let nats = service.config.nats.as_ref()?;
            let id = service.config.worker_id()?;
            if let Some(log) = service.audit.log() {
                let (queue, path, id) = (queue.clone(), log.path().to_path_buf(), id.clone());
                tokio::spawn(async move {
                    loop {
                        match queue::mirror::Mirror::start(queue.clone(), path.clone(), id.clone())
                            .await
                        {
                            Ok(mirror) => return mirror.run().await,
                            Err(e) => {
                                tracing::warn!(target: "chassis::queue", "starting the audit mirror: {e}; trying again in 5 s");
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                        }
                    }
                });
            }
            if let Some(changes) = self.changes.lock().expect("fleet lock").take() {
                queue::fleet::spawn(
                    queue.health.clone(),
                    service.chassis.clone(),
                    id.clone(),
                    changes,
                );
            }
            if let Some(deployments) = self.deployments.clone() {
                let (service, stop) = (service.clone(), stop.clone());
                tokio::spawn(async move { deployments.follow(&service, stop).await });
            }
            let heartbeat = {
                let (chassis, id) = (service.chassis.clone(), id.clone());
                let interval = nats.heartbeat;
                let signer = queue.signer.as_ref().map(|k| k.public_hex());
                let store = self.heartbeats.clone();
                let stop = stop.clone();
                let facts = self.facts();
                tokio::spawn(async move {
                    if let Some(store) = store {
                        queue::workers::heartbeat(
                            store, chassis, id, signer, interval, facts, stop,
                        )
                        .await;
                    }
                })
            };
            let worker = Arc::new(queue::worker::Worker::new(
                queue,
                service.clone(),
                id,
                i64::from(nats.max_deliveries),
                nats.ack_slack,
            ));
            let run = {
                let worker = worker.clone();
                tokio::spawn(async move {
                    worker.run(stop).await;
                    // Its entry removed before the process ends.
                    let _ = heartbeat.await;
                })
            };
            Some(Running {
                worker,
                run: std::sync::Mutex::new(Some(run)),
            })
        }

        /// Send the audit log's last records to the mirror once it is
        /// closed (at most a few seconds).
        pub(in crate::serve) async fn mirror_the_rest(&self, path: &Path, config: &ServeConfig) {
            let (Some(queue), Some(id)) = (self.queue.clone(), config.worker_id()) else {
                return;
            };
            let last = async {
                let mut mirror =
                    queue::mirror::Mirror::start(queue, path.to_path_buf(), id).await?;
                mirror.pass().await
            };
            match tokio::time::timeout(Duration::from_secs(5), last).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target: "chassis::queue", "mirroring the audit log's last records: {e}")
                }
                Err(_) => {
                    tracing::warn!(target: "chassis::queue", "mirroring the audit log's last records: no answer from NATS within 5 s")
                }
            }
        }
    }

    impl Running {
        /// Once `stop` was sent: the pull loops stop, then what they took
        /// ends.
        pub(in crate::serve) async fn finish(&self) {
            let run = self.run.lock().expect("fleet lock").take();
            if let Some(run) = run {
                let _ = run.await;
            }
            self.worker.drain().await;
        }

        /// Wait, at most five seconds, for the tasks taken from the queue
        /// to be answered or handed back (after the grace period).
        pub(in crate::serve) async fn drain_for_a_while(&self) {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.worker.drain()).await;
        }
    }

    /// The worker's signing key, read from `nats.signing_key`; without one
    /// its results go out unsigned, which a warning says.
    fn worker_key(
        nats: &crate::serve::config::NatsSettings,
    ) -> Result<Option<Arc<queue::trust::WorkerKey>>, ServeError> {
        match &nats.signing_key {
            Some(path) => {
                let key = queue::trust::WorkerKey::from_file(path)
                    .map_err(|e| queue::QueueError::Auth(format!("nats.signing_key: {e}")))?;
                tracing::info!(target: "chassis::queue", "results and audit records are signed with key {}", key.public_hex());
                Ok(Some(Arc::new(key)))
            }
            None => {
                tracing::warn!(target: "chassis::queue", "no nats.signing_key: this worker's results go out unsigned, and clients that verify (chassis submit --worker-key) refuse them; make one with `chassis keygen`");
                Ok(None)
            }
        }
    }

    /// What a queued task's worker asks of the service.
    impl Service {
        /// Whether running tasks are being stopped at the end of the grace
        /// period: a queued task stopped so is handed back, not answered.
        pub(crate) fn interrupted(&self) -> bool {
            self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
        }

        /// A task taken from the queue had been delivered before.
        pub(crate) fn redelivered(&self, swarm_id: &str) {
            self.observers.metrics.redelivered(swarm_id);
        }

        /// Record an event the service itself decides (a queued task given
        /// up, a deployment) in the audit log and the metrics, as the host
        /// records its own.
        pub(crate) fn record(&self, event: &crate::Event) {
            use crate::EventSink;
            if let Some(log) = self.audit.log() {
                log.record(event);
            }
            self.observers.metrics.record(event);
        }
    }
}

#[cfg(not(feature = "nats"))]
mod imp {
    use std::path::Path;

    use super::*;

    /// Without NATS there is no fleet to list.
    #[derive(serde::Serialize)]
    pub(in crate::serve) enum Workers {}

    /// Nor deployments.
    #[derive(serde::Serialize)]
    pub(in crate::serve) enum Convergences {}

    /// Nor deployments to follow.
    #[derive(serde::Serialize)]
    pub(in crate::serve) enum DeploymentsView {}

    /// A build without NATS support: no queue, and a configuration that
    /// asks for one is refused.
    pub(in crate::serve) struct Fleet;

    /// Nothing runs beside HTTP.
    pub(in crate::serve) struct Running;

    impl Fleet {
        pub(in crate::serve) async fn connect(config: &ServeConfig) -> Result<Self, ServeError> {
            match config.nats {
                Some(_) => Err(ServeError::Config(super::super::ConfigError::Invalid {
                    path: "nats".into(),
                    reason: "this build of chassis has no NATS support (the `nats` feature)".into(),
                })),
                None => Ok(Self),
            }
        }

        pub(in crate::serve) async fn shared_store(
            &self,
            _: &ServeConfig,
            _: bool,
        ) -> Result<Option<Arc<dyn crate::storage::Store>>, ServeError> {
            Ok(None)
        }

        pub(in crate::serve) fn configure(&self, host: ChassisConfig) -> ChassisConfig {
            host
        }

        pub(in crate::serve) async fn beat(&self, _: &Chassis, _: &ServeConfig) {}

        pub(in crate::serve) async fn deployed_contracts(&self) -> Vec<crate::ServiceContract> {
            Vec::new()
        }

        pub(in crate::serve) async fn first_deployments(&self, _: &Service) {}

        pub(in crate::serve) fn deployed_bundle(&self, _: &str) -> Option<String> {
            None
        }

        pub(in crate::serve) fn deployments_view(&self) -> Option<DeploymentsView> {
            None
        }

        pub(in crate::serve) async fn convergence(&self, _: &Workers) -> Option<Convergences> {
            None
        }

        pub(in crate::serve) async fn live_workers(&self) -> Option<Result<Workers, String>> {
            None
        }

        pub(in crate::serve) async fn queue_figures(
            &self,
            _: &Chassis,
            _: &crate::metrics::Metrics,
        ) {
        }

        pub(in crate::serve) fn start(
            &self,
            _: &Arc<Service>,
            _: tokio::sync::watch::Receiver<bool>,
        ) -> Option<Running> {
            None
        }

        pub(in crate::serve) async fn mirror_the_rest(&self, _: &Path, _: &ServeConfig) {}
    }

    impl Running {
        pub(in crate::serve) async fn finish(&self) {}

        pub(in crate::serve) async fn drain_for_a_while(&self) {}
    }
}
