//! How a worker finishes a task it took: its result published (the first
//! one kept, however late a second comes) and the task acknowledged, or
//! the task handed back for redelivery; and a task delivered too often
//! given up (`docs/scale-out.md`, "Finishing, in this order" and "Which
//! endings are final").

use async_nats::HeaderMap;
use async_nats::jetstream::{AckKind, Message};
use serde_json::value::RawValue;

use super::super::{
    HostFailure, QueueError, QueueResult, ResultStatus, dead_subject, message_id, publish_again,
    result_subject,
};
use super::{RETRY_DELAY, Worker};
use crate::{Event, TaskRequest};

/// What running a task came to.
pub(super) enum Ending {
    /// A result to publish, then acknowledge.
    Final(Box<QueueResult<Box<RawValue>>>),
    /// Not run, or stopped for a reason of this worker's: hand it back.
    Retry(String),
}

impl Worker {
    /// A result without the swarm's outcome.
    pub(super) fn failed(
        &self,
        swarm_id: &str,
        task_id: &str,
        status: ResultStatus,
        error: HostFailure,
        deliveries: i64,
    ) -> Ending {
        Ending::Final(Box::new(QueueResult {
            task_id: task_id.to_string(),
            swarm_id: swarm_id.to_string(),
            worker: self.id.clone(),
            status,
            outcome: None,
            error: Some(error),
            deliveries,
        }))
    }

    /// Give up a task delivered too often: an `abandoned` result, an audit
    /// record, a copy on the dead-letter subject, and the acknowledgement.
    pub(super) async fn abandon(
        &self,
        swarm_id: &str,
        request: &TaskRequest,
        message: &Message,
        deliveries: i64,
    ) {
        let task_id = &request.task_id;
        tracing::warn!(target: "chassis::queue", swarm = swarm_id, task = %task_id, "delivered {deliveries} times without an ending; given up");
        let mut headers = HeaderMap::new();
        message_id(&mut headers, task_id);
        let dead = async {
            self.queue
                .jetstream
                .publish_with_headers(dead_subject(swarm_id), headers, message.payload.clone())
                .await
                .map_err(QueueError::js)?
                .await
                .map_err(QueueError::js)
        };
        if let Err(e) = dead.await {
            self.finish(message, Ending::Retry(format!("dead-lettering: {e}")))
                .await;
            return;
        }
        let failure = HostFailure {
            kind: "abandoned".to_string(),
            message: format!(
                "delivered {deliveries} times without an ending (more than max_deliveries = {}); its workers kept stopping",
                self.max_deliveries
            ),
        };
        let result = self.failed(
            swarm_id,
            task_id,
            ResultStatus::Abandoned,
            failure,
            deliveries,
        );
        if self.finish(message, result).await {
            self.service.record(&Event::TaskAbandoned {
                swarm_id: swarm_id.to_string(),
                task_id: task_id.clone(),
                deliveries: deliveries.max(0) as u64,
            });
        }
    }

    /// Publish the result and acknowledge, or hand the task back. Returns
    /// whether this result is the task's one (published now).
    pub(super) async fn finish(&self, message: &Message, ending: Ending) -> bool {
        match ending {
            Ending::Final(result) => match self.publish(&result).await {
                Ok(published) => {
                    if !published {
                        tracing::info!(target: "chassis::queue", task = %crate::text::escape(&result.task_id, 256), "already answered by an earlier run; its result stands");
                    }
                    if let Err(e) = message.double_ack().await {
                        // The result is out; a redelivery will find it.
                        tracing::warn!(target: "chassis::queue", task = %crate::text::escape(&result.task_id, 256), "acknowledging: {e}");
                    }
                    published
                }
                Err(e) => {
                    tracing::warn!(target: "chassis::queue", task = %crate::text::escape(&result.task_id, 256), "publishing the result: {e}; handing the task back");
                    let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                    false
                }
            },
            Ending::Retry(reason) => {
                tracing::debug!(target: "chassis::queue", "handing a task back: {reason}");
                let _ = message.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                false
            }
        }
    }

    /// Publish a result, waiting for JetStream's acknowledgement. Only the
    /// first result of a task is kept, however late a second comes: the
    /// task id is the message id (a repeat within the duplicate window is
    /// dropped), and the result's subject must be empty (a repeat after it
    /// is refused). Returns `false` when a result was there already. A
    /// publish worth making again (`publish_again`: no answer in time, no
    /// stream leader, an earlier copy still being stored) is made again for
    /// up to [`RESULT_PATIENCE`].
    async fn publish(&self, result: &QueueResult<Box<RawValue>>) -> Result<bool, QueueError> {
        use async_nats::jetstream::context::PublishErrorKind;
        let body = serde_json::to_vec(result).map_err(|e| QueueError::Malformed(e.to_string()))?;
        let subject = result_subject(&result.task_id);
        let mut headers = HeaderMap::new();
        message_id(&mut headers, &result.task_id);
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        if let Some(key) = &self.queue.signer {
            for (name, value) in key.sign(super::super::trust::Signed::Result, &subject, &body) {
                headers.insert(name, value.as_str());
            }
        }
        let body = bytes::Bytes::from(body);
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let ack = match self
                .queue
                .jetstream
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => return Ok(!ack.duplicate),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => return Ok(false),
                // A stream leader being elected anew (no one answers, or
                // not in time), a connection broken on the way, an earlier
                // copy still being stored: the same message again, which
                // the stream keeps once.
                Err(e) if publish_again(&e) && started.elapsed() < RESULT_PATIENCE => {
                    tracing::debug!(target: "chassis::queue", task = %crate::text::escape(&result.task_id, 256), "publishing the result: {e}; sending it again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                }
                Err(e) => return Err(QueueError::js(e)),
            }
        }
    }
}

/// How long a worker keeps publishing a result that JetStream has not
/// acknowledged (the task's delivery kept alive meanwhile) before it hands
/// the task back, to be run again.
const RESULT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
