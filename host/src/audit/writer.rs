//! `AuditLog`, the `EventSink` in front of the writer thread
//! (`appender.rs`): it opens the log (the segments, the newest checkpoint's
//! state, a partial last record cut off), starts the thread, and queues
//! each event for it; `AuditOptions` says how the log is kept.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::events::{Event, EventSink};
use crate::replay::{History, Params, Replay};

use super::appender::{
    Ack, AckHandle, Failure, Message, PAUSE_ENV, Pending, Segments, Writer, write_loop,
};
use super::checkpoint::{self, From, Restored};
use super::segments::{self, Layout, segment_name};
use super::{
    AuditError, DEFAULT_SEGMENT_MAX_AGE, DEFAULT_SEGMENT_MAX_BYTES, FsyncPolicy, QUEUE_CAPACITY,
};

/// How the log is kept: when to `fsync`, the host's name, when a segment
/// is closed, what retention removes, and the contracts its swarms are
/// judged by until their hosts announce them.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// When to `fsync`.
    pub fsync: FsyncPolicy,
    /// The host's name in every record, when it is one of several.
    pub worker: Option<String>,
    /// A segment is closed once it holds at least this many bytes.
    pub segment_max_bytes: u64,
    /// A segment is closed once its first record is this old (checked
    /// when a record is written).
    pub segment_max_age: Duration,
    /// What is removed when a segment closes.
    pub retention: Retention,
    /// Settings to judge swarms by whose records carry none (a log from
    /// before this host announced its contracts).
    pub contracts: Vec<(String, Params)>,
    /// Whether the writer keeps the swarms' state and writes checkpoints
    /// (the default). Off, it writes none, [`AuditLog::history`] answers
    /// `None`, retention removes nothing, and a restart replays the whole
    /// log: for measuring what they cost, not for a host that restores
    /// swarms.
    pub checkpoints: bool,
}

impl AuditOptions {
    /// The defaults, with this `fsync` policy.
    pub fn new(fsync: FsyncPolicy) -> Self {
        Self {
            fsync,
            worker: None,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age: DEFAULT_SEGMENT_MAX_AGE,
            retention: Retention::default(),
            contracts: Vec::new(),
            checkpoints: true,
        }
    }
}

/// What retention removes when a segment closes: the oldest segments,
/// while more are kept than a limit allows, and only segments older than
/// the newest checkpoint that covers them (the first segment kept starts
/// with a checkpoint, so what remains still verifies). No limit (the
/// default) keeps everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    /// Keep at most this many segments (the one being written included).
    pub keep_segments: Option<usize>,
    /// Keep at most this many bytes of segments.
    pub keep_bytes: Option<u64>,
    /// Keep segments last written to at most this long ago.
    pub keep_age: Option<Duration>,
    /// Delete removed segments (`true`) rather than move them to the
    /// archive directory.
    pub delete: bool,
    /// Where archived segments go (default: `archive/` in the log's
    /// directory); a directory on the same file system.
    pub archive_dir: Option<PathBuf>,
}

impl Retention {
    /// Whether any limit is set.
    pub fn active(&self) -> bool {
        self.keep_segments.is_some() || self.keep_bytes.is_some() || self.keep_age.is_some()
    }
}

/// The audit log: an [`EventSink`] that appends hash-chained records.
pub struct AuditLog {
    path: PathBuf,
    fsync: FsyncPolicy,
    sender: RwLock<Option<SyncSender<Message>>>,
    writer: Mutex<Option<JoinHandle<Result<(), AuditError>>>>,
    failure: Arc<Failure>,
    restored: Restored,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Open (or create) the log at `path`, lock it, restore its state
    /// from its newest checkpoint, and start the writer thread (see
    /// [`AuditLog::open_with`]; the default segments and no retention).
    pub fn open(path: impl AsRef<Path>, fsync: FsyncPolicy) -> Result<Arc<Self>, AuditError> {
        Self::open_with(path, AuditOptions::new(fsync))
    }

    /// [`AuditLog::open`] for a host named `worker` (one of several
    /// sharing a task queue): every record it writes carries a `worker`
    /// field with that name.
    pub fn open_as(
        path: impl AsRef<Path>,
        fsync: FsyncPolicy,
        worker: Option<String>,
    ) -> Result<Arc<Self>, AuditError> {
        Self::open_with(
            path,
            AuditOptions {
                worker,
                ..AuditOptions::new(fsync)
            },
        )
    }

    /// Open (or create) the log at `path` — a directory of segments; a
    /// single-file log becomes the first segment of a directory of that
    /// name — and lock it (another writer is refused). The swarms' state
    /// is restored from the newest checkpoint that holds, and the records
    /// after it are checked and replayed; a partial last line (a crash
    /// mid-write) is cut off; a log whose chain from there does not verify
    /// is refused (move it aside to start a new one). Then the writer
    /// thread starts.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: AuditOptions,
    ) -> Result<Arc<Self>, AuditError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let lock = segments::prepare(&path)?;
        if segments::list(&path)?.is_empty() {
            crate::files::create_private_file(&path.join(segment_name(1))).map_err(io)?;
            segments::sync_dir(&path).map_err(io)?;
        }
        let layout = Layout::find(&path)?;
        let mut replay = Replay::new();
        for (id, params) in &options.contracts {
            replay.contract(id, params.clone());
        }
        let restored = checkpoint::restore(&layout, &mut replay, From::Latest)?;
        let last = layout.last().clone();
        // The segment to be continued is checked whole, also where the
        // checkpoint the state came from is part way into it.
        if restored
            .checkpoint_at
            .is_some_and(|(segment, offset)| segment + 1 == layout.segments.len() && offset > 0)
        {
            checkpoint::check_segment(&layout, layout.segments.len() - 1)?;
        }
        let seg_io = |source| AuditError::Io {
            path: last.path.clone(),
            source,
        };
        // Never a fifo or a device: opening one could block, and records
        // written to it would be lost.
        let file = crate::files::open_regular_append(&last.path).map_err(seg_io)?;
        let v = &restored.verified;
        if v.partial_tail_bytes > 0 {
            let len = file.metadata().map_err(seg_io)?.len();
            file.set_len(len - v.partial_tail_bytes).map_err(seg_io)?;
            tracing::warn!(target: "chassis::audit", "{}: dropped a partial last record of {} bytes", last.path.display(), v.partial_tail_bytes);
        }
        let segment_bytes = file.metadata().map_err(seg_io)?.len();
        if segment_bytes == 0 && last.first_seq != v.last_seq + 1 {
            return Err(AuditError::Bad {
                path: last.path.clone(),
                line: 1,
                reason: format!(
                    "the segment is empty and named for record {}, but the log ends at record {}",
                    last.first_seq, v.last_seq
                ),
            });
        }
        if restored.checkpoint.is_some() || restored.replayed > 0 {
            tracing::info!(target: "chassis::audit", "{}: continuing at record {}: state from {}, {} records replayed", path.display(), v.last_seq, restored.checkpoint.as_ref().map_or("the log's start".to_string(), |h| format!("the checkpoint covering record {}", h.seq)), restored.replayed);
        }
        let segment_started = first_time(&last.path).unwrap_or_else(SystemTime::now);
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let writer_path = path.clone();
        let failure = Arc::<Failure>::default();
        let writer_failure = failure.clone();
        let mut writer = Writer::new(
            file,
            v.last_seq,
            v.head.clone(),
            options.fsync,
            options.worker.clone(),
        );
        writer.segments = Some(Segments {
            dir: path.clone(),
            _lock: lock,
            first_seq: last.first_seq,
            bytes: segment_bytes,
            started: segment_started,
            max_bytes: options.segment_max_bytes.max(1),
            max_age: options.segment_max_age,
            retention: options.retention.clone(),
            pause: std::env::var(PAUSE_ENV).ok(),
        });
        writer.replay = replay;
        writer.checkpoints = options.checkpoints;
        writer.since_checkpoint = restored.replayed;
        let writer = std::thread::Builder::new()
            .name("chassis-audit".into())
            .spawn(move || write_loop(writer_path, writer, receiver, &writer_failure))
            .map_err(io)?;
        Ok(Arc::new(Self {
            path,
            fsync: options.fsync,
            sender: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            failure,
            restored,
        }))
    }

    /// The log's path (its directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening the log restored: the checkpoint its state came from,
    /// the records replayed after it, the checkpoints passed over.
    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// `swarm_id`'s SLO figures and reputation after every record written
    /// so far, as a replay of the log gives them (`None` for a swarm with
    /// no record, when the writer has stopped, or with
    /// [`AuditOptions::checkpoints`] off).
    pub fn history(&self, swarm_id: &str) -> Option<History> {
        let (tx, rx) = sync_channel(1);
        self.send(Message::History(swarm_id.to_string(), tx))?;
        rx.recv().ok().flatten()
    }

    /// Close the segment being written now, and start the next with a
    /// checkpoint (retention then runs as it does when a segment fills).
    pub fn close_segment(&self) -> Result<(), AuditError> {
        let (tx, rx) = sync_channel(1);
        let stopped = || AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("the audit log's writer has stopped"),
        };
        self.send(Message::CloseSegment(tx)).ok_or_else(stopped)?;
        rx.recv()
            .map_err(|_| stopped())?
            .map_err(|reason| AuditError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(reason),
            })
    }

    fn send(&self, message: Message) -> Option<()> {
        let sender = self.sender.read().expect("audit lock");
        sender.as_ref()?.send(message).ok()
    }

    /// Write everything recorded so far, write a checkpoint when records
    /// came since the last, `fsync`, and stop the writer. From then on the
    /// log reports a failure, so a host using it refuses new loads and
    /// tasks.
    pub fn close(&self) -> Result<(), AuditError> {
        drop(self.sender.write().expect("audit lock").take());
        let result = match self.writer.lock().expect("audit lock").take() {
            Some(handle) => handle.join().unwrap_or(Ok(())),
            None => Ok(()),
        };
        // A deliberate close: no error to log, but nothing may run unrecorded.
        self.failure.fail(false, || {
            format!("audit log {} is closed", self.path.display())
        });
        result
    }
}

/// The time of the first record of the segment at `path`.
fn first_time(path: &Path) -> Option<SystemTime> {
    let mut lines = super::read::Lines::open(path).ok()?;
    let super::read::Line::Whole(line) = lines.next_line().ok()? else {
        return None;
    };
    let record: serde_json::Value = serde_json::from_slice(line).ok()?;
    let micros = super::record::parse_rfc3339(record["ts"].as_str()?)?;
    Some(UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64))
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(target: "chassis::audit", "closing the audit log: {e}");
        }
    }
}

impl EventSink for AuditLog {
    fn record(&self, event: &Event) {
        self.record_owned(event.clone());
    }

    fn record_owned(&self, event: Event) {
        let ack = (self.fsync == FsyncPolicy::Always).then(Arc::<Ack>::default);
        let operation = super::record::operation(&event);
        let pending = Pending {
            ts: SystemTime::now(),
            event,
            ack: ack.clone().map(AckHandle),
        };
        // Blocks while the queue is full: records are never dropped.
        let sent = self.send(Message::Record(pending)).is_some();
        let written = sent && ack.is_none_or(|ack| ack.wait());
        if !written {
            self.failure.fail(true, || {
                format!("audit log {} cannot be written", self.path.display())
            });
            tracing::error!(target: "chassis::audit", "a {operation} record was not written");
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.get()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A fifo (with or without a reader) or a device named as the log is
    /// refused at once, saying what it is, rather than blocking the host or
    /// writing records nowhere.
    #[test]
    fn a_fifo_or_device_is_refused_as_the_log_at_once() {
        let dir = std::env::temp_dir().join(format!("chassis-writer-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("log.fifo");
        let _ = std::fs::remove_file(&fifo);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(AuditLog::open_as(&path, FsyncPolicy::Always, None).map(|_| ()));
        });
        let opened = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a fifo as the audit log still waits after 5 s");
        let e = opened.unwrap_err().to_string();
        assert!(e.contains("fifo"), "{e}");
        let e = AuditLog::open_as("/dev/null", FsyncPolicy::Always, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
