//! The worker side of the queue (`chassis serve --nats`): for every loaded
//! swarm, pull its tasks from its shared durable consumer, no more than it
//! has free slots; run each through the host; publish its result; then
//! acknowledge it (`docs/scale-out.md`, "Finishing, in this order").
//!
//! A pull loop per swarm follows the host's loaded swarms (started for a
//! swarm that appears, stopped for one that goes, restarted when its slot
//! count changes). Each message is handled on its own task that holds one
//! of the swarm's slots until it is acknowledged or handed back. The tasks
//! one pull delivered are looked up together (one request for the results
//! they may have already): a task whose result exists is acknowledged at
//! once; one delivered too often is given up; the rest run, kept alive
//! with in-progress acknowledgements while they do. A pull loop waits for
//! a slot to free rather than looking for one now and then, so a slot is
//! filled again as soon as its task is acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::{
    HostFailure, Queue, QueueError, QueueResult, ResultStatus, TASKS_STREAM, consumer_name,
    task_subject,
};
use crate::serve::Service;
use crate::{ErrorKind, TaskRequest};

mod finish;

use finish::Ending;

/// How long one pull waits for messages before it looks again.
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// How long a task handed back waits before it is delivered again (and a
/// failed pull before the next).
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Failed pulls in a row after which a pull loop starts over.
const MAX_PULL_FAILURES: u32 = 5;

/// One worker: the service it runs tasks on and the queue it takes them from.
pub(crate) struct Worker {
    queue: Queue,
    service: Arc<Service>,
    /// This worker's name, in its results.
    id: String,
    /// Deliveries after which a task is given up.
    max_deliveries: i64,
    /// Added to a swarm's task timeout for the consumer's acknowledgement
    /// wait.
    ack_slack: Duration,
    /// Tasks taken and not yet answered or handed back.
    active: std::sync::atomic::AtomicUsize,
}

/// Counts a taken task as active until dropped.
struct Active<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A task as one pull delivered it: its message, the task read from it,
/// and whether its result was found already (or why that is not known).
struct Delivered {
    message: Message,
    request: Result<TaskRequest, serde_json::Error>,
    answered: Result<bool, String>,
}

/// One swarm's pull loop.
struct Pull {
    /// The slot count it was started for.
    slots: u32,
    handle: tokio::task::JoinHandle<()>,
    /// Tells it to hand out what it fetched and end.
    retire: watch::Sender<bool>,
}

impl Worker {
    pub(crate) fn new(
        queue: Queue,
        service: Arc<Service>,
        id: String,
        max_deliveries: i64,
        ack_slack: Duration,
    ) -> Self {
        Self {
            queue,
            service,
            id,
            max_deliveries,
            ack_slack,
            active: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Wait until every task taken is answered or handed back.
    pub(crate) async fn drain(&self) {
        while self.active.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Take tasks for every loaded swarm until `stop` turns true; running
    /// tasks then finish on their own tasks.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Swarm id -> its pull loop. A loop whose swarm went or whose slot
        // count changed is told to retire: it hands out what it fetched
        // (never dropping a delivered task) and ends; its successor starts
        // once it has.
        let mut pulls: HashMap<String, Pull> = HashMap::new();
        loop {
            let loaded = self.service.chassis().list();
            pulls.retain(|id, pull| {
                let current = loaded.iter().any(|info| {
                    info.swarm_id == *id
                        && info.contract.resource_limits.max_concurrent_tasks == pull.slots
                });
                if !current {
                    let _ = pull.retire.send(true);
                }
                !pull.handle.is_finished()
            });
            // Nothing is taken before the first load is whole and restored.
            let loaded = if self.service.loading() {
                Vec::new()
            } else {
                loaded
            };
            for info in loaded {
                if pulls.contains_key(&info.swarm_id) {
                    continue;
                }
                let limits = &info.contract.resource_limits;
                let slots = limits.max_concurrent_tasks;
                let ack_wait =
                    Duration::from_secs_f64(limits.task_timeout_seconds) + self.ack_slack;
                let worker = self.clone();
                let stop = stop.clone();
                let (retire, retired) = watch::channel(false);
                let id = info.swarm_id.clone();
                let handle = tokio::spawn(async move {
                    if let Err(e) = worker.pull(&id, slots, ack_wait, stop, retired).await {
                        tracing::error!(target: "chassis::queue", swarm = %id, "taking tasks: {e}");
                    }
                });
                pulls.insert(
                    info.swarm_id,
                    Pull {
                        slots,
                        handle,
                        retire,
                    },
                );
            }
            // While the first load runs, look again soon: tasks are taken
            // as soon as it is done.
            let pass = if self.service.loading() {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                () = tokio::time::sleep(pass) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        for (_, pull) in pulls {
            let _ = pull.handle.await;
        }
    }

    /// The pull loop of one swarm.
    async fn pull(
        self: &Arc<Self>,
        swarm_id: &str,
        slots: u32,
        ack_wait: Duration,
        stop: watch::Receiver<bool>,
        mut retired: watch::Receiver<bool>,
    ) -> Result<(), QueueError> {
        let consumer: PullConsumer = self
            .queue
            .jetstream
            .get_stream(TASKS_STREAM)
            .await
            .map_err(QueueError::js)?
            .create_consumer(pull::Config {
                durable_name: Some(consumer_name(swarm_id)),
                filter_subject: task_subject(swarm_id),
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: -1,
                ..Default::default()
            })
            .await
            .map_err(QueueError::js)?;
        let free = Arc::new(Semaphore::new(slots as usize));
        tracing::info!(target: "chassis::queue", swarm = swarm_id, "taking tasks ({slots} at a time)");
        // Fleet state for this swarm set before it was loaded here.
        super::fleet::apply_current(&self.queue.health, self.service.chassis(), swarm_id).await;
        let mut failures = 0u32;
        let mut stop = stop;
        while !*stop.borrow() && !*retired.borrow() {
            // A free slot (waited for, not polled) ...
            let first = tokio::select! {
                permit = free.clone().acquire_owned() => permit.expect("never closed"),
                _ = stop.changed() => continue,
                _ = retired.changed() => continue,
            };
            // ... but take nothing a refusal would only hand back: a swarm
            // held back (quarantined, out of budget, circuit open), or a
            // host whose audit log cannot record; and no more than the
            // throttle lets run beside those running (one when a probe is
            // due).
            let chassis = self.service.chassis();
            let running = slots as usize - free.available_permits() - 1;
            let room = chassis.concurrency(swarm_id).saturating_sub(running);
            let held = chassis.holding_back(swarm_id) || chassis.event_sink_failure().is_some();
            if held || room == 0 {
                drop(first);
                let pause = Duration::from_millis(if held { 200 } else { 20 });
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                    _ = retired.changed() => {}
                }
                continue;
            }
            // As many messages as there are free slots it may fill.
            let mut permits = vec![first];
            while permits.len() < room
                && let Ok(permit) = free.clone().try_acquire_owned()
            {
                permits.push(permit);
            }
            let fetched = consumer
                .fetch()
                .max_messages(permits.len())
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let mut batch = match fetched {
                Ok(batch) => batch,
                Err(e) => {
                    self.pull_failed(swarm_id, &mut failures, &e).await?;
                    continue;
                }
            };
            // What the pull delivered, taken whole (it ends as soon as the
            // server has sent what there was) ...
            let mut delivered = Vec::new();
            let mut broken = None;
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => delivered.push(message),
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if !delivered.is_empty() {
                failures = 0;
            }
            // ... read, and looked up in one request: which of its tasks
            // have a result already.
            let requests: Vec<Result<TaskRequest, serde_json::Error>> = delivered
                .iter()
                .map(|message| serde_json::from_slice(&message.payload))
                .collect();
            let ids: Vec<&str> = requests
                .iter()
                .flatten()
                .filter(|request| request.id_problem().is_none())
                .map(|request| request.task_id.as_str())
                .collect();
            let found = self
                .queue
                .results_found(&ids)
                .await
                .map_err(|e| e.to_string());
            for (message, request) in delivered.into_iter().zip(requests) {
                let Some(permit) = permits.pop() else {
                    // More than asked for: hand it back at once.
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    continue;
                };
                let answered = match (&found, &request) {
                    (Ok(found), Ok(request)) => Ok(found.contains(&request.task_id)),
                    (Ok(_), Err(_)) => Ok(false),
                    (Err(e), _) => Err(e.clone()),
                };
                let worker = self.clone();
                let swarm_id = swarm_id.to_string();
                worker
                    .active
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let _active = Active(&worker.active);
                    let task = Delivered {
                        message,
                        request,
                        answered,
                    };
                    worker.handle(&swarm_id, task, ack_wait, permit).await;
                });
            }
            if let Some(e) = broken {
                self.pull_failed(swarm_id, &mut failures, &e).await?;
            }
        }
        Ok(())
    }

    /// A pull that failed: wait before the next; after several in a row,
    /// give up the loop so it is started again with its consumer made anew.
    async fn pull_failed(
        &self,
        swarm_id: &str,
        failures: &mut u32,
        e: &(dyn std::fmt::Display + Sync),
    ) -> Result<(), QueueError> {
        *failures += 1;
        tracing::warn!(target: "chassis::queue", swarm = swarm_id, "pulling: {e}");
        if *failures >= MAX_PULL_FAILURES {
            return Err(QueueError::JetStream(format!(
                "{failures} pulls in a row failed, the last with: {e}"
            )));
        }
        tokio::time::sleep(RETRY_DELAY).await;
        Ok(())
    }

    /// One delivered task, holding one slot.
    async fn handle(
        &self,
        swarm_id: &str,
        task: Delivered,
        ack_wait: Duration,
        _slot: OwnedSemaphorePermit,
    ) {
        let Delivered {
            message,
            request,
            answered,
        } = task;
        // The delivery is kept alive until the task is finished, however
        // it ends: while it runs, and while its result is published (again
        // while JetStream elects a leader).
        let _keep_alive = KeepAlive::start(&message, ack_wait);
        let deliveries = message.info().map(|i| i.delivered).unwrap_or(1);
        if deliveries > 1 {
            self.service.redelivered(swarm_id);
        }
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                let task_id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                tracing::warn!(target: "chassis::queue", swarm = swarm_id, "a malformed task message ({:?}): {e}", crate::text::escape(&task_id, 256));
                if crate::outcome::task_id_problem(&task_id).is_some() {
                    // Nothing to answer to (no id, or one the host would
                    // not record): stop its delivery.
                    let _ = message.ack_with(AckKind::Term).await;
                    return;
                }
                let failure = HostFailure {
                    kind: "invalid_request".to_string(),
                    message: format!(
                        "the message is not a task ({{\"task_id\", \"task_type\", \"payload\"}}): {e}"
                    ),
                };
                let result = self.failed(
                    swarm_id,
                    &task_id,
                    ResultStatus::Failed,
                    failure,
                    deliveries,
                );
                self.finish(&message, result).await;
                return;
            }
        };
        // An id the host would not record or show as it is: answered
        // without its look-up, run or record (the host refuses it as
        // it would over HTTP).
        if let Some(reason) = request.id_problem() {
            let shown = crate::text::escape(&request.task_id, 256);
            tracing::warn!(target: "chassis::queue", swarm = swarm_id, "a task id refused ({shown:?}): {reason}");
            let failure = HostFailure {
                kind: ErrorKind::InvalidPayload.as_str().to_string(),
                message: format!("swarm {swarm_id:?}: task id refused: {reason}"),
            };
            let result = self.failed(
                swarm_id,
                &request.task_id,
                ResultStatus::Failed,
                failure,
                deliveries,
            );
            self.finish(&message, result).await;
            return;
        }
        let task_id = request.task_id.clone();
        // A task delivered again may have been answered a moment ago: a
        // "no" from the pull's look-up (which any replica may give) is
        // checked with the stream's leader.
        let answered = match answered {
            Ok(false) if deliveries > 1 => self
                .queue
                .raw_result(&task_id)
                .await
                .map(|found| found.is_some())
                .map_err(|e| e.to_string()),
            answered => answered,
        };
        match answered {
            Ok(true) => {
                // It ran before and its result is out: only the
                // acknowledgement was lost.
                tracing::info!(target: "chassis::queue", swarm = swarm_id, task = %task_id, "delivered again after its result was published; acknowledged without running");
                let _ = message.double_ack().await;
                return;
            }
            Ok(false) => {}
            Err(e) => {
                self.finish(
                    &message,
                    Ending::Retry(format!("looking up its result: {e}")),
                )
                .await;
                return;
            }
        }
        if deliveries > self.max_deliveries {
            self.abandon(swarm_id, &request, &message, deliveries).await;
            return;
        }
        // Busy with tasks from elsewhere (HTTP): wait here for a slot, kept
        // alive, rather than spend one of the task's deliveries.
        let outcome = loop {
            let outcome = self
                .service
                .chassis()
                .execute_task_text(swarm_id, request.clone())
                .await;
            match &outcome {
                Err(e) if e.kind() == ErrorKind::Overloaded && !self.service.interrupted() => {
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                _ => break outcome,
            }
        };
        let ending = match outcome {
            Err(e)
                if self.service.interrupted()
                    && matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Cancelled) =>
            {
                Ending::Retry("stopped by the worker's shutdown".to_string())
            }
            Ok(outcome) => Ending::Final(Box::new(QueueResult {
                task_id: task_id.clone(),
                swarm_id: swarm_id.to_string(),
                worker: self.id.clone(),
                status: if outcome.is_success() {
                    ResultStatus::Success
                } else {
                    ResultStatus::Failed
                },
                outcome: Some(outcome),
                error: None,
                deliveries,
            })),
            // Refusals about this worker now, not about the task: it is
            // delivered again (here or elsewhere) rather than answered.
            Err(e) if e.kind().retry_elsewhere() => Ending::Retry(e.to_string()),
            Err(e) => {
                let failure = HostFailure {
                    kind: e.kind().as_str().to_string(),
                    message: e.to_string(),
                };
                self.failed(
                    swarm_id,
                    &task_id,
                    ResultStatus::Failed,
                    failure,
                    deliveries,
                )
            }
        };
        self.finish(&message, ending).await;
    }
}

/// In-progress acknowledgements of one delivery, every third of its
/// acknowledgement wait, until this is dropped (the task finished, or its
/// handling stopped by a panic).
struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    fn start(message: &Message, ack_wait: Duration) -> Self {
        let message = message.clone();
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ack_wait / 3).await;
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}
