//! Scale-out over NATS JetStream: the streams and names the workers and
//! clients share, the messages they exchange, and the connection.
//! `docs/scale-out.md` states what the queue promises; this module and its
//! children implement it.
//!
//! A task travels as a [`crate::TaskRequest`] in JSON (`task_id`,
//! `task_type`, `payload`: the HTTP route's body with the id set).
//!
//! Data flow: a client ([`client`]) publishes a task to
//! `chassis.tasks.<swarm_id>` in the work-queue stream [`TASKS_STREAM`],
//! with the task id as the message id. Every worker (`worker`) that has
//! the swarm loaded pulls from the swarm's one durable consumer, no more
//! messages than the swarm has free slots; it runs the task through the
//! host, publishes the result to [`RESULTS_STREAM`] (message id = task id)
//! and, once that is acknowledged, acknowledges the task. A task delivered
//! too often is given up: an `abandoned` result and a copy in
//! [`DEAD_STREAM`]. Quarantine is shared through a key-value bucket
//! ([`fleet`]); each worker's audit log is mirrored to a stream
//! ([`mirror`]); each worker says what it serves in a heartbeat
//! ([`workers`]). Swarms deployed to the fleet travel as signed bundles
//! through an object store and a key-value bucket ([`deploy`]).
//!
//! Trust ([`trust`], `docs/scale-out.md`, "Security"): every connection
//! signs in with the credentials of its role, and the NATS server's
//! permissions keep each role to its subjects; workers sign their results
//! and mirrored audit records, and a reader believes only those signed by
//! a worker key it trusts.

pub mod client;
mod connection;
pub mod deploy;
pub mod fleet;
pub mod mirror;
pub mod trust;
pub(crate) mod worker;
pub mod workers;

pub use connection::PING_INTERVAL;
pub(crate) use connection::{connect, publish_again};

use std::collections::HashSet;
use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TaskOutcome;

/// The work-queue stream of tasks.
pub const TASKS_STREAM: &str = "CHASSIS_TASKS";
/// The stream of results, one per task id.
pub const RESULTS_STREAM: &str = "CHASSIS_RESULTS";
/// Tasks given up after too many deliveries.
pub const DEAD_STREAM: &str = "CHASSIS_DEAD";

/// The subject a swarm's tasks are published to.
#[doc(hidden)]
pub fn task_subject(swarm_id: &str) -> String {
    format!("chassis.tasks.{swarm_id}")
}

/// The subject a task's result is published to: its id hashed into one
/// subject token (task ids may hold characters a subject cannot).
#[doc(hidden)]
pub fn result_subject(task_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(task_id.as_bytes()));
    format!("chassis.results.{}", &digest[..32])
}

/// How long a worker waits for the whole answer to a look-up of results.
const LOOK_UP_WAIT: Duration = Duration::from_secs(10);

/// The most bytes of results found one look-up brings back (found results
/// are rare: a task delivered again after its result was published).
const LOOK_UP_MAX_BYTES: usize = 1 << 20;

/// The subject a swarm's given-up tasks are copied to.
#[doc(hidden)]
pub fn dead_subject(swarm_id: &str) -> String {
    format!("chassis.dead.{swarm_id}")
}

/// The durable consumer every worker of a swarm shares. Consumer names
/// cannot hold `.`, which swarm ids may: it becomes `_`, and a short hash
/// of the id keeps two ids apart that differ only there.
#[doc(hidden)]
pub fn consumer_name(swarm_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(swarm_id.as_bytes()));
    format!("chassis-{}-{}", swarm_id.replace('.', "_"), &digest[..8])
}

/// How a queued task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// The swarm answered with its output.
    Success,
    /// The swarm answered with its own error, or the host stopped or refused
    /// the task for a reason running it again would not change.
    Failed,
    /// Delivered more than `max_deliveries` times without an ending (its
    /// workers kept dying): given up.
    Abandoned,
}

/// Why the host did not answer a task with the swarm's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFailure {
    /// The error's kind (`timeout`, `trap`, `memory`, `task_not_exported`,
    /// `invalid_request`, `abandoned`, ...).
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// A task's one result, as published to [`RESULTS_STREAM`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueResult<O = serde_json::Value> {
    /// The task.
    pub task_id: String,
    /// Its swarm.
    pub swarm_id: String,
    /// The worker that published the result.
    pub worker: String,
    /// How it ended.
    pub status: ResultStatus,
    /// The swarm's outcome, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TaskOutcome<O>>,
    /// The host's reason, when the swarm did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<HostFailure>,
    /// How many times the task was delivered, this one included.
    pub deliveries: i64,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Connecting to the NATS server.
    #[error("connecting to NATS at {url}: {reason}")]
    Connect {
        /// The server URL(s).
        url: String,
        /// Why.
        reason: String,
    },
    /// A JetStream request (a stream, a consumer, a publish) failed.
    #[error("NATS JetStream: {0}")]
    JetStream(String),
    /// JetStream did not answer the setting up of the streams and buckets
    /// (a server or cluster just started, with no JetStream leader yet).
    #[error("NATS JetStream does not answer yet: {0}")]
    Unavailable(String),
    /// A message that is not what it should be.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The credentials or TLS settings for the NATS server.
    #[error("NATS credentials: {0}")]
    Auth(String),
    /// A result or record that is not signed by a trusted worker.
    #[error("{what} refused: {reason}")]
    Untrusted {
        /// What was read (`the result of task "t1"`).
        what: String,
        /// Why it is not believed.
        reason: String,
    },
    /// No live worker's swarm can take a task addressed to a capability.
    #[error("{0}")]
    NoRoute(String),
    /// No result within the time asked for.
    #[error("no result for task {task_id:?} within {waited:?}")]
    NoResult {
        /// The task.
        task_id: String,
        /// How long was waited.
        waited: Duration,
    },
}

impl QueueError {
    pub(crate) fn js(e: impl std::fmt::Display) -> Self {
        QueueError::JetStream(e.to_string())
    }
}

/// How the streams are made when they do not exist yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Streams {
    /// Stream replicas (3 on a three-node cluster).
    pub replicas: usize,
    /// How long a task id is remembered to drop a resubmission.
    pub duplicate_window: Duration,
    /// How long results are kept.
    pub results_max_age: Duration,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            results_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// A connection to NATS, with JetStream, the streams and the bucket made.
#[derive(Clone)]
pub struct Queue {
    pub(crate) jetstream: jetstream::Context,
    pub(crate) results: stream::Stream,
    /// The fleet's quarantine state ([`fleet`]).
    pub(crate) health: async_nats::jetstream::kv::Store,
    /// Whose results [`Queue::result`] and [`Queue::wait`] believe.
    trust: trust::Trust,
    /// The key this worker signs its results and audit records with.
    pub(crate) signer: Option<Arc<trust::WorkerKey>>,
}

impl Queue {
    /// Connect to `url` (one URL or several, comma-separated) and make the
    /// streams that do not exist yet, with no credentials.
    pub async fn connect(url: &str, streams: &Streams) -> Result<Self, QueueError> {
        Self::connect_as(url, &trust::NatsAuth::default(), streams).await
    }

    /// The same, signing in with `auth`.
    pub async fn connect_as(
        url: &str,
        auth: &trust::NatsAuth,
        streams: &Streams,
    ) -> Result<Self, QueueError> {
        Self::set_up(
            jetstream::new(connect(url, auth, "chassis").await?),
            streams,
        )
        .await
    }

    /// [`Queue::connect_as`] for worker `worker_id`: its connection is
    /// named `chassis worker <id>`, which the server's monitoring
    /// (`/connz`) and `nats server report connections` show.
    pub(crate) async fn connect_worker(
        url: &str,
        auth: &trust::NatsAuth,
        streams: &Streams,
        worker_id: &str,
    ) -> Result<Self, QueueError> {
        let name = format!("chassis worker {worker_id}");
        Self::set_up(jetstream::new(connect(url, auth, &name).await?), streams).await
    }

    /// Make the streams and the quarantine bucket that do not exist yet.
    async fn set_up(jetstream: jetstream::Context, streams: &Streams) -> Result<Self, QueueError> {
        let make = |name: &str, subjects: &str| stream::Config {
            name: name.to_string(),
            subjects: vec![subjects.to_string()],
            storage: stream::StorageType::File,
            num_replicas: streams.replicas,
            duplicate_window: streams.duplicate_window,
            allow_direct: true,
            ..Default::default()
        };
        jetstream
            .get_or_create_stream(stream::Config {
                retention: stream::RetentionPolicy::WorkQueue,
                ..make(TASKS_STREAM, "chassis.tasks.>")
            })
            .await
            .map_err(QueueError::making_stream)?;
        // What is kept as evidence is never deleted or purged through the
        // API, whoever asks: only its age limit removes it.
        let kept = |config: stream::Config| stream::Config {
            deny_delete: true,
            deny_purge: true,
            ..config
        };
        let results = jetstream
            .get_or_create_stream(kept(stream::Config {
                max_age: streams.results_max_age,
                max_messages_per_subject: 1,
                ..make(RESULTS_STREAM, "chassis.results.*")
            }))
            .await
            .map_err(QueueError::making_stream)?;
        jetstream
            .get_or_create_stream(kept(make(DEAD_STREAM, "chassis.dead.>")))
            .await
            .map_err(QueueError::making_stream)?;
        jetstream
            .get_or_create_stream(kept(make(mirror::AUDIT_STREAM, "chassis.audit.*")))
            .await
            .map_err(QueueError::making_stream)?;
        let health = fleet::bucket(&jetstream, streams).await?;
        Ok(Self::of(jetstream, results, health))
    }

    /// A queue over these streams and bucket, trusting no one yet and
    /// signing nothing.
    fn of(
        jetstream: jetstream::Context,
        results: stream::Stream,
        health: jetstream::kv::Store,
    ) -> Self {
        Self {
            jetstream,
            results,
            health,
            trust: trust::Trust::Unset,
            signer: None,
        }
    }

    /// Connect to the queue the workers made, making nothing (for clients:
    /// the workers' configuration decides the streams' replicas and limits),
    /// with no credentials. Refused when no worker has started on this NATS
    /// server yet.
    pub async fn open(url: &str) -> Result<Self, QueueError> {
        Self::open_as(url, &trust::NatsAuth::default()).await
    }

    /// The same, signing in with `auth`.
    pub async fn open_as(url: &str, auth: &trust::NatsAuth) -> Result<Self, QueueError> {
        let jetstream = jetstream::new(connect(url, auth, "chassis").await?);
        let missing = |e: &dyn std::fmt::Display| {
            QueueError::JetStream(format!(
                "{e}: the queue's streams are not there; start a `chassis serve --nats` worker on this server first"
            ))
        };
        let results = jetstream
            .get_stream(RESULTS_STREAM)
            .await
            .map_err(|e| missing(&e))?;
        let health = jetstream
            .get_key_value(fleet::HEALTH_BUCKET)
            .await
            .map_err(|e| missing(&e))?;
        Ok(Self::of(jetstream, results, health))
    }

    /// Believe the results (and audit records) `trust` says: by default
    /// none, and reading one is refused saying so.
    pub fn trusting(mut self, trust: trust::Trust) -> Self {
        self.trust = trust;
        self
    }

    /// Sign what this worker publishes with `key`.
    pub(crate) fn signing_with(mut self, key: Option<Arc<trust::WorkerKey>>) -> Self {
        self.signer = key;
        self
    }

    /// Whose results this queue believes.
    pub fn trust(&self) -> &trust::Trust {
        &self.trust
    }

    /// A swarm's queue now: tasks waiting to be taken, and tasks taken and
    /// not yet acknowledged (`None` before any worker took its tasks).
    pub async fn figures(&self, swarm_id: &str) -> Result<Option<(u64, u64)>, QueueError> {
        let stream = self
            .jetstream
            .get_stream(TASKS_STREAM)
            .await
            .map_err(QueueError::js)?;
        match stream.consumer_info(consumer_name(swarm_id)).await {
            Ok(info) => Ok(Some((info.num_pending, info.num_ack_pending as u64))),
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(QueueError::js(e)),
        }
    }

    /// Every result published from now on, as it is published (a plain
    /// NATS subscription: for following a batch, not for looking one up).
    /// Its messages are not checked: verify each with [`trust::Trust::verify`]
    /// (kind [`trust::Signed::Result`], its subject), or read the result
    /// through [`Queue::result`], before believing it.
    pub async fn subscribe_results(&self) -> Result<async_nats::Subscriber, QueueError> {
        self.jetstream
            .client()
            .subscribe("chassis.results.*")
            .await
            .map_err(QueueError::js)
    }

    /// A task's result, if one was published, once its signature is
    /// checked against the workers this queue trusts ([`Queue::trusting`]):
    /// a result no trusted worker signed is refused
    /// ([`QueueError::Untrusted`]), as is one for another task.
    pub async fn result(&self, task_id: &str) -> Result<Option<QueueResult>, QueueError> {
        let Some(message) = self.raw_result(task_id).await? else {
            return Ok(None);
        };
        let what = || format!("the result of task {:?}", crate::text::escape(task_id, 256));
        self.trust
            .verify(
                trust::Signed::Result,
                &result_subject(task_id),
                Some(&message.headers),
                &message.payload,
            )
            .map_err(|reason| QueueError::Untrusted {
                what: what(),
                reason,
            })?;
        let result: QueueResult = serde_json::from_slice(&message.payload)
            .map_err(|e| QueueError::Malformed(e.to_string()))?;
        if result.task_id != task_id {
            return Err(QueueError::Untrusted {
                what: what(),
                reason: "it names another task".to_string(),
            });
        }
        Ok(Some(result))
    }

    /// Which of `task_ids` have a result in [`RESULTS_STREAM`]. A worker
    /// asks once for all the tasks one pull delivered: one direct get of
    /// the last message on each of their result subjects (`multi_last`,
    /// answered by any of the stream's replicas), rather than a request a
    /// task. What that cannot answer (an answer cut short at its byte
    /// limit, a server or stream without `multi_last` direct gets) is
    /// asked task by task of the stream's leader instead.
    pub(crate) async fn results_found(
        &self,
        task_ids: &[&str],
    ) -> Result<HashSet<String>, QueueError> {
        self.results_found_within(task_ids, LOOK_UP_MAX_BYTES).await
    }

    /// [`Queue::results_found`], its one answer held to `max_bytes` (the
    /// results found are sent whole; the server stops after the one that
    /// reaches the limit).
    #[doc(hidden)]
    pub async fn results_found_within(
        &self,
        task_ids: &[&str],
        max_bytes: usize,
    ) -> Result<HashSet<String>, QueueError> {
        if task_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let subjects: Vec<String> = task_ids.iter().map(|id| result_subject(id)).collect();
        let (found, complete) = match tokio::time::timeout(
            LOOK_UP_WAIT,
            self.last_messages(&subjects, max_bytes),
        )
        .await
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!(target: "chassis::queue", "looking up {} results at once: {e}; one by one instead", subjects.len());
                (HashSet::new(), false)
            }
            Err(_) => {
                return Err(QueueError::JetStream(format!(
                    "no whole answer to a look-up of {} results in {LOOK_UP_WAIT:?}",
                    subjects.len()
                )));
            }
        };
        let mut answered = HashSet::new();
        for (id, subject) in task_ids.iter().zip(&subjects) {
            let has_result =
                found.contains(subject) || (!complete && self.raw_result(id).await?.is_some());
            if has_result {
                answered.insert(id.to_string());
            }
        }
        Ok(answered)
    }

    /// One `multi_last` direct get of `subjects`: the subjects that have a
    /// message, and whether the answer covered them all (`false` when it
    /// stopped at `max_bytes` with results left to send).
    async fn last_messages(
        &self,
        subjects: &[String],
        max_bytes: usize,
    ) -> Result<(HashSet<String>, bool), QueueError> {
        use futures_util::StreamExt;
        let request = serde_json::json!({
            "multi_last": subjects,
            "batch": subjects.len(),
            "max_bytes": max_bytes,
        });
        let client = self.jetstream.client();
        let inbox = client.new_inbox();
        // Subscribed before the request goes out (both go through the
        // connection in order), so no answer is missed.
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(QueueError::js)?;
        client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{RESULTS_STREAM}"),
                inbox,
                request.to_string().into(),
            )
            .await
            .map_err(QueueError::js)?;
        let mut found = HashSet::new();
        while let Some(reply) = replies.next().await {
            let header = |name: &str| {
                reply
                    .headers
                    .as_ref()
                    // The server adds its own after the message's.
                    .and_then(|h| h.get_last(name))
                    .map(|v| v.to_string())
            };
            match reply.status.map(u16::from) {
                // A result found; its subject says whose.
                None | Some(200) => {
                    let subject = header("Nats-Subject").ok_or_else(|| {
                        QueueError::Malformed("a looked-up result without its subject".into())
                    })?;
                    found.insert(subject);
                }
                // The end: whole unless results were left unsent.
                Some(204) => {
                    let pending = header("Nats-Num-Pending").and_then(|n| n.parse::<u64>().ok());
                    return Ok((found, pending == Some(0)));
                }
                Some(404)
                    if reply
                        .description
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case("no results")) =>
                {
                    return Ok((found, true));
                }
                Some(status) => {
                    return Err(QueueError::JetStream(format!(
                        "status {status} {}",
                        reply.description.as_deref().unwrap_or_default()
                    )));
                }
            }
        }
        Err(QueueError::JetStream(
            "the look-up's answers ended".to_string(),
        ))
    }

    /// A task's result message as published, if there is one.
    pub(crate) async fn raw_result(
        &self,
        task_id: &str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, QueueError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .results
            .get_last_raw_message_by_subject(&result_subject(task_id))
            .await
        {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(QueueError::js(e)),
        }
    }
}

/// The task id as the message id, where it can be a header value (an id
/// with a line break, refused anyway, cannot): without it the result's
/// subject alone keeps a second result out.
pub(crate) fn message_id(headers: &mut async_nats::HeaderMap, task_id: &str) {
    if let Ok(value) = task_id.parse::<async_nats::HeaderValue>() {
        headers.insert("Nats-Msg-Id", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        assert_eq!(task_subject("hello-world"), "chassis.tasks.hello-world");
        let a = consumer_name("a.b");
        let b = consumer_name("a_b");
        assert_ne!(a, b);
        assert!(!a.contains('.') && a.starts_with("chassis-a_b-"), "{a}");
        // Any task id becomes one subject token.
        let s = result_subject("a.b *> c");
        assert_eq!(s.matches('.').count(), 2, "{s}");
        assert!(!s.contains(['*', '>', ' ']));
        assert_ne!(result_subject("t1"), result_subject("t2"));
    }
}
