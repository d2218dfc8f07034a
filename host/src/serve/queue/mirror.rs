//! The audit mirror: each worker's local audit log, record by record, on
//! `chassis.audit.<worker>` in the stream [`AUDIT_STREAM`], so a witness
//! elsewhere can follow every worker's chain, and a local log cut short is
//! caught against the stream's head (`chassis audit verify --nats`).
//!
//! Data flow: `Mirror` follows the local log (its segments, in order)
//! rather than the writer: it starts after the last record the stream
//! holds for the worker, reads the log's whole lines from there, and
//! publishes each (message id =
//! `<worker>:<seq>`, so a record sent twice is kept once), waiting for
//! JetStream's acknowledgement before the next: the stream holds a worker's
//! records in order and without a gap, so its last one is where the mirror
//! resumes after a restart. Records written while NATS
//! is unreachable are sent when it is back; the local log stays the
//! source, and nothing on the task path waits for the mirror.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::HeaderMap;

use super::trust::{Signed, Trust};
use super::{Queue, QueueError};
use crate::audit::Head;

/// The stream of every worker's audit records.
pub const AUDIT_STREAM: &str = "CHASSIS_AUDIT";

/// The subject a worker's records are mirrored to.
pub fn audit_subject(worker: &str) -> String {
    format!("chassis.audit.{worker}")
}

/// How often the local log is read for new records.
const POLL: Duration = Duration::from_millis(100);

/// A record's `seq` (read without building the record).
#[derive(serde::Deserialize)]
struct Seq {
    seq: u64,
}

/// The last record of `worker` the stream holds, as a chain head (`None`
/// when it holds none).
pub async fn mirrored_head(queue: &Queue, worker: &str) -> Result<Option<Head>, QueueError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let stream = queue
        .jetstream
        .get_stream(AUDIT_STREAM)
        .await
        .map_err(QueueError::js)?;
    let message = match stream
        .get_last_raw_message_by_subject(&audit_subject(worker))
        .await
    {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(QueueError::js(e)),
    };
    let record: serde_json::Value = serde_json::from_slice(&message.payload)
        .map_err(|e| QueueError::Malformed(format!("a mirrored audit record: {e}")))?;
    match (record["seq"].as_u64(), record["hash"].as_str()) {
        (Some(seq), Some(hash)) => Ok(Some(Head {
            seq,
            hash: hash.to_string(),
        })),
        _ => Err(QueueError::Malformed(
            "a mirrored audit record without seq and hash".to_string(),
        )),
    }
}

/// What [`verify_mirror`] found: every mirrored record of a worker signed
/// by a trusted key, in order without a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorCheck {
    /// Records checked.
    pub records: u64,
    /// The last one, as a chain head (`None` when there are none).
    pub head: Option<Head>,
}

/// How long the mirror may send nothing while it is read.
const READ_STALL: Duration = Duration::from_secs(5);

/// Read every record of `worker` the mirror holds and check each one's
/// signature against `trust` (give it that worker's key), that the first
/// is record 1 and that their `seq` run on without a gap (a record removed
/// from the stream would leave one). The first refused record is named.
/// Records cut from the mirror's end are caught only against a head kept
/// elsewhere; the stream refuses deletes and purges through the API.
pub async fn verify_mirror(
    queue: &Queue,
    worker: &str,
    trust: &Trust,
) -> Result<MirrorCheck, QueueError> {
    use async_nats::jetstream::consumer;
    use futures_util::StreamExt;
    let stream = queue
        .jetstream
        .get_stream(AUDIT_STREAM)
        .await
        .map_err(QueueError::js)?;
    let subject = audit_subject(worker);
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: queue.jetstream.client().new_inbox(),
            description: Some("chassis audit verify".to_string()),
            filter_subject: subject.clone(),
            replay_policy: consumer::ReplayPolicy::Instant,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(QueueError::js)?;
    let mut check = MirrorCheck {
        records: 0,
        head: None,
    };
    if consumer.cached_info().num_pending == 0 {
        return Ok(check);
    }
    let mut messages = consumer.messages().await.map_err(QueueError::js)?;
    loop {
        let message = tokio::time::timeout(READ_STALL, messages.next())
            .await
            .map_err(|_| QueueError::JetStream("the audit mirror sent nothing for 5 s".into()))?
            .ok_or_else(|| QueueError::JetStream("the audit mirror's reading ended early".into()))?
            .map_err(QueueError::js)?;
        let pending = message.info().map_err(QueueError::js)?.pending;
        let what = |seq: Option<u64>| match seq {
            Some(seq) => format!("mirrored audit record {seq} of worker {worker:?}"),
            None => format!("a mirrored audit record of worker {worker:?}"),
        };
        let record: serde_json::Value = serde_json::from_slice(&message.payload)
            .map_err(|e| QueueError::Malformed(format!("{}: {e}", what(None))))?;
        let (Some(seq), Some(hash)) = (record["seq"].as_u64(), record["hash"].as_str()) else {
            return Err(QueueError::Malformed(format!(
                "{} has no seq and hash",
                what(None)
            )));
        };
        trust
            .verify(
                Signed::AuditRecord,
                &subject,
                message.headers.as_ref(),
                &message.payload,
            )
            .map_err(|reason| QueueError::Untrusted {
                what: what(Some(seq)),
                reason,
            })?;
        if check.head.is_none() && seq != 1 {
            return Err(QueueError::Untrusted {
                what: what(Some(seq)),
                reason: format!(
                    "the mirror starts at it: records 1 to {} are missing",
                    seq.saturating_sub(1)
                ),
            });
        }
        if let Some(head) = &check.head
            && seq != head.seq + 1
        {
            return Err(QueueError::Untrusted {
                what: what(Some(seq)),
                reason: format!("it follows record {} (a gap or a repeat)", head.seq),
            });
        }
        check.records += 1;
        check.head = Some(Head {
            seq,
            hash: hash.to_string(),
        });
        if pending == 0 {
            return Ok(check);
        }
    }
}

/// One worker's mirror.
pub(crate) struct Mirror {
    queue: Queue,
    path: PathBuf,
    worker: String,
    /// The last record sent (by sequence number).
    sent: u64,
    /// The segment being read (by its first record), and where in it the
    /// next unread line starts.
    segment: u64,
    offset: u64,
}

/// Most records read from the log per pass.
const MAX_PASS_RECORDS: usize = 4096;

impl Mirror {
    /// A mirror of the log at `path`, starting after what the stream holds.
    pub(crate) async fn start(
        queue: Queue,
        path: PathBuf,
        worker: String,
    ) -> Result<Self, QueueError> {
        let sent = mirrored_head(&queue, &worker).await?.map_or(0, |h| h.seq);
        let local = crate::audit::tail(&path, 0, u64::MAX, |_| false)
            .ok()
            .and_then(|t| t.head)
            .map_or(0, |h| h.seq);
        if local < sent {
            tracing::warn!(target: "chassis::queue", "{}: the local audit log ends at record {local} but the mirror of worker {worker} holds {sent}: the log was cut short or started anew; records up to {sent} are not mirrored again", path.display());
        }
        Ok(Self {
            queue,
            path,
            worker,
            sent,
            segment: 0,
            offset: 0,
        })
    }

    /// Follow the log until aborted.
    pub(crate) async fn run(mut self) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(target: "chassis::queue", "mirroring the audit log: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Send the whole records not sent yet (up to [`MAX_PASS_RECORDS`];
    /// the next pass goes on).
    pub(crate) async fn pass(&mut self) -> Result<(), QueueError> {
        let (lines, (segment, end)) = self
            .read_new()
            .map_err(|e| QueueError::Malformed(format!("reading {}: {e}", self.path.display())))?;
        for line in lines {
            let seq = serde_json::from_str::<Seq>(&line).map_or(0, |r| r.seq);
            if seq <= self.sent {
                continue;
            }
            let subject = audit_subject(&self.worker);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{}:{seq}", self.worker).as_str());
            if let Some(key) = &self.queue.signer {
                for (name, value) in key.sign(Signed::AuditRecord, &subject, line.as_bytes()) {
                    headers.insert(name, value.as_str());
                }
            }
            self.queue
                .jetstream
                .publish_with_headers(subject, headers, line.into())
                .await
                .map_err(QueueError::js)?
                .await
                .map_err(QueueError::js)?;
            self.sent = seq;
        }
        self.segment = segment;
        self.offset = end;
        Ok(())
    }

    /// The whole lines after the last read (across segments), and where
    /// the last one ends: its segment and offset.
    fn read_new(&self) -> std::io::Result<(Vec<String>, (u64, u64))> {
        let segments = crate::audit::segments(&self.path).map_err(std::io::Error::other)?;
        // The segment read last, or (gone, or none yet) the one holding
        // the first record not sent.
        let (mut at, mut offset) = match segments.iter().position(|s| s.first_seq == self.segment) {
            Some(at) => (at, self.offset),
            None => {
                if segments
                    .first()
                    .is_some_and(|s| s.first_seq > self.sent + 1)
                {
                    tracing::warn!(target: "chassis::queue", "{}: records {} to {} are no longer in the local audit log (retention removed them before they were mirrored): the mirror of worker {} will have a gap", self.path.display(), self.sent + 1, segments[0].first_seq - 1, self.worker);
                }
                (
                    segments
                        .iter()
                        .rposition(|s| s.first_seq <= self.sent + 1)
                        .unwrap_or(0),
                    0,
                )
            }
        };
        let mut lines = Vec::new();
        while let Some(segment) = segments.get(at) {
            let mut file = std::fs::File::open(&segment.path)?;
            let len = file.metadata()?.len();
            // A segment made anew (shorter than what was read): read it again.
            if len < offset {
                offset = 0;
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            while lines.len() < MAX_PASS_RECORDS {
                line.clear();
                let n = reader.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                offset += n as u64;
                lines.push(line.trim_end().to_string());
            }
            let ended = offset >= len;
            if lines.len() >= MAX_PASS_RECORDS || !ended || at + 1 >= segments.len() {
                return Ok((lines, (segment.first_seq, offset)));
            }
            at += 1;
            offset = 0;
        }
        Ok((lines, (0, 0)))
    }
}
