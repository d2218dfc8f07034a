//! The submitting side: put tasks on the queue and wait for their results
//! (`chassis submit`, and embedders).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;

use super::{Queue, QueueError, QueueResult, task_subject};
use crate::TaskRequest;

impl Queue {
    /// Put `request` on `swarm_id`'s queue; returns its task id. Submitting
    /// the same task id again within the duplicate window is a no-op
    /// (JetStream drops it), so a submission can be retried safely.
    pub async fn submit(&self, swarm_id: &str, request: TaskRequest) -> Result<String, QueueError> {
        if let Some(reason) = request.id_problem() {
            return Err(QueueError::Malformed(format!("task id refused: {reason}")));
        }
        let body =
            serde_json::to_vec(&request).map_err(|e| QueueError::Malformed(e.to_string()))?;
        let task_id = request.task_id;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", task_id.as_str());
        self.jetstream
            .publish_with_headers(task_subject(swarm_id), headers, body.into())
            .await
            .map_err(QueueError::js)?
            .await
            .map_err(QueueError::js)?;
        Ok(task_id)
    }

    /// Wait for a task's result, at most `timeout`.
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<QueueResult, QueueError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(result) = self.result(task_id).await? {
                return Ok(result);
            }
            if started.elapsed() >= timeout {
                return Err(QueueError::NoResult {
                    task_id: task_id.to_string(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}
