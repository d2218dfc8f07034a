//! The submitting side: put tasks on the queue and wait for their results
//! (`chassis submit`, and embedders).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;

use super::{Queue, QueueError, QueueResult, publish_again, task_subject};
use crate::TaskRequest;

/// How long [`Queue::submit`] keeps publishing a task whose
/// acknowledgement did not come (a stream leader lost with its node, a
/// frozen server): every attempt carries the same message id, so the
/// stream keeps one copy while the duplicate window (120 s by default) is
/// longer than this.
pub const SUBMIT_PATIENCE: Duration = Duration::from_secs(30);

impl Queue {
    /// Put `request` on `swarm_id`'s queue; returns its task id. Submitting
    /// the same task id again within the duplicate window is a no-op
    /// (JetStream drops it), so a submission can be retried safely: a
    /// publish whose acknowledgement timed out, whose connection broke
    /// before it came, that found no stream leader, or whose earlier copy
    /// the stream is still storing, is sent again for up to
    /// [`SUBMIT_PATIENCE`].
    pub async fn submit(&self, swarm_id: &str, request: TaskRequest) -> Result<String, QueueError> {
        if let Some(reason) = request.id_problem() {
            return Err(QueueError::Malformed(format!("task id refused: {reason}")));
        }
        let body: bytes::Bytes = serde_json::to_vec(&request)
            .map_err(|e| QueueError::Malformed(e.to_string()))?
            .into();
        let task_id = request.task_id;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", task_id.as_str());
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let published = match self
                .jetstream
                .publish_with_headers(task_subject(swarm_id), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match published {
                Ok(_) => return Ok(task_id),
                Err(e) if publish_again(&e) && started.elapsed() < SUBMIT_PATIENCE => {
                    tracing::debug!(target: "chassis::queue", "submitting {task_id:?}: {e}; sending it again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(QueueError::js(e)),
            }
        }
    }

    /// Wait for a task's result, at most `timeout`. A look-up that fails
    /// on the way (a timeout while a stream's leader is elected anew) is
    /// made again until then; a result that is there but not believed or
    /// not readable ends the wait at once.
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<QueueResult, QueueError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let failed = match self.result(task_id).await {
                Ok(Some(result)) => return Ok(result),
                Ok(None) => None,
                Err(e @ QueueError::JetStream(_)) => Some(e),
                Err(e) => return Err(e),
            };
            if started.elapsed() >= timeout {
                return Err(failed.unwrap_or_else(|| QueueError::NoResult {
                    task_id: task_id.to_string(),
                    waited: timeout,
                }));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}
