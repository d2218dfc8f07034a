//! The writer: a thread that numbers, hashes and appends queued records in
//! batches, flushes, and calls `fsync` as the policy says; `AuditLog` is the
//! `EventSink` in front of it.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::events::{Event, EventSink};
use crate::replay::{History, Params, Replay};

use super::checkpoint::{self, From, Restored};
use super::record::append_record;
use super::segments::{self, Layout, segment_name};
use super::{
    AuditError, BATCH_LINGER, DEFAULT_SEGMENT_MAX_AGE, DEFAULT_SEGMENT_MAX_BYTES, FsyncPolicy,
    MAX_BATCH, QUEUE_CAPACITY, retention,
};

struct Pending {
    ts: SystemTime,
    event: Event,
    /// Under `FsyncPolicy::Always`: signalled once the record is on disk.
    ack: Option<AckHandle>,
}

/// The writer's end of an [`Ack`]. Dropped without a signal (a record
/// still queued when a failed writer stopped), it tells the waiting caller
/// that the record was not written, so no caller waits forever.
struct AckHandle(Arc<Ack>);

impl AckHandle {
    fn signal(self, ok: bool) {
        self.0.signal(ok);
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        let mut done = self.0.done.lock().expect("audit ack lock");
        if done.is_none() {
            *done = Some(false);
            self.0.cv.notify_all();
        }
    }
}

/// A waiting `record` call under `FsyncPolicy::Always`.
#[derive(Default)]
struct Ack {
    /// `Some(true)` on disk, `Some(false)` the write failed.
    done: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Ack {
    fn signal(&self, ok: bool) {
        *self.done.lock().expect("audit ack lock") = Some(ok);
        self.cv.notify_all();
    }

    fn wait(&self) -> bool {
        let mut done = self.done.lock().expect("audit ack lock");
        while done.is_none() {
            done = self.cv.wait(done).expect("audit ack lock");
        }
        done.unwrap_or(false)
    }
}

/// Why the log cannot take records any more (first reason wins). Read on
/// every task, so the usual answer (none) costs one atomic load.
#[derive(Default)]
struct Failure {
    set: std::sync::atomic::AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Failure {
    /// Record the first reason; `loud` logs it as an error.
    fn fail(&self, loud: bool, reason: impl FnOnce() -> String) {
        let mut r = self.reason.lock().expect("audit failure lock");
        if r.is_none() {
            let reason = reason();
            if loud {
                tracing::error!(target: "chassis::audit", "{reason}; new loads and tasks are refused");
            }
            *r = Some(reason);
            self.set.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn get(&self) -> Option<String> {
        if !self.set.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.reason.lock().expect("audit failure lock").clone()
    }
}

/// What a message to the writer asks.
enum Message {
    /// Write a record.
    Record(Pending),
    /// A swarm's state after every record before this message.
    History(String, SyncSender<Option<History>>),
    /// Close the segment now (and start the next with a checkpoint).
    CloseSegment(SyncSender<Result<(), String>>),
}

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

fn write_loop(
    path: PathBuf,
    mut writer: Writer,
    receiver: Receiver<Message>,
    failure: &Failure,
) -> Result<(), AuditError> {
    let stopped = |e: &AuditError| format!("audit log writer stopped: {e}");
    // The reason is recorded before any waiting caller learns its record
    // was not written, so the host reports why, not only that.
    let result = writer
        .run(&receiver, |source| {
            let e = AuditError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            };
            failure.fail(true, || stopped(&e));
        })
        .map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        });
    if let Err(e) = &result {
        failure.fail(true, || stopped(e));
        // Wake every waiting caller: their records will not be written.
        drop(receiver);
    }
    result
}

/// The environment variable that pauses the writer at a point of a
/// segment close, for crash tests (`docs/audit.md`): `segment` (the next
/// segment made, nothing in it yet) or `checkpoint` (its checkpoint's
/// marker written, its swarm states not yet).
pub const PAUSE_ENV: &str = "CHASSIS_AUDIT_PAUSE";

/// The writer's segment: where it is, how full, and when to close it.
struct Segments {
    dir: PathBuf,
    /// The writer's lock on the log, held while it writes.
    _lock: File,
    /// First record of the segment being written.
    first_seq: u64,
    bytes: u64,
    started: SystemTime,
    max_bytes: u64,
    max_age: Duration,
    retention: Retention,
    pause: Option<String>,
}

struct Writer {
    file: File,
    seq: u64,
    head: String,
    fsync: FsyncPolicy,
    /// The host's name in every record, when it is one of several.
    worker: Option<String>,
    since_sync: u32,
    last_sync: Instant,
    /// Whether everything written is synced.
    synced: bool,
    /// When `fsync` last ran.
    last_fsync: Option<Instant>,
    /// The segments (`None`: a writer of one file, in tests).
    segments: Option<Segments>,
    /// The state of every swarm after the records written.
    replay: Replay,
    /// Records written since the last checkpoint.
    since_checkpoint: u64,
    /// Whether the state is kept and checkpoints written.
    checkpoints: bool,
}

impl Writer {
    /// A writer appending to `file` after record `seq` whose hash is `head`.
    fn new(file: File, seq: u64, head: String, fsync: FsyncPolicy, worker: Option<String>) -> Self {
        Self {
            file,
            seq,
            head,
            fsync,
            worker,
            since_sync: 0,
            last_sync: Instant::now(),
            synced: true,
            last_fsync: None,
            segments: None,
            replay: Replay::new(),
            since_checkpoint: 0,
            checkpoints: true,
        }
    }
}

impl Writer {
    /// Write what `receiver` brings until it closes; a failed write is
    /// told to `failed` before the callers waiting on it are.
    fn run(
        &mut self,
        receiver: &Receiver<Message>,
        failed: impl Fn(&std::io::Error),
    ) -> std::io::Result<()> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut text = String::new();
        loop {
            // Wait for the first record of a batch; under an interval policy
            // wake up in time to sync what is written even if none comes.
            let first = match self.fsync {
                FsyncPolicy::Interval(d) if !self.synced => {
                    let due = d.saturating_sub(self.last_sync.elapsed());
                    match receiver.recv_timeout(due) {
                        Ok(p) => p,
                        Err(RecvTimeoutError::Timeout) => {
                            self.sync()?;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match receiver.recv() {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut other = None;
            match first {
                Message::Record(p) => batch.push(p),
                m => other = Some(m),
            }
            while other.is_none() && batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(Message::Record(next)) => batch.push(next),
                    Ok(m) => other = Some(m),
                    Err(_) => break,
                }
            }
            let batch_was_full = batch.len() == MAX_BATCH;
            if !batch.is_empty() {
                let result = self.write_batch(&batch, &mut text);
                if let Err(e) = &result {
                    failed(e);
                }
                for pending in batch.drain(..) {
                    if let Some(ack) = pending.ack {
                        ack.signal(result.is_ok());
                    }
                }
                result?;
            }
            let handled = other.is_some();
            match other {
                None => {}
                Some(Message::Record(_)) => unreachable!("records go in the batch"),
                Some(Message::History(id, reply)) => {
                    let history = self.checkpoints.then(|| self.replay.history(&id));
                    let _ = reply.send(history.flatten());
                }
                Some(Message::CloseSegment(reply)) => {
                    let result = self.close_segment("requested", &mut text);
                    let _ = reply.send(result.as_ref().map_err(|e| e.to_string()).copied());
                    if let Err(e) = &result {
                        failed(e);
                    }
                    result?;
                }
            }
            if !batch_was_full && !handled {
                std::thread::sleep(BATCH_LINGER);
            }
        }
        if self.since_checkpoint > 0 && self.segments.is_some() && self.checkpoints {
            text.clear();
            self.append_checkpoint(&mut text, "shutdown");
            self.append_text(&text)?;
        }
        self.sync()
    }

    /// Whether the segment being written is due to close, with `pending`
    /// more bytes written to it.
    fn segment_full(&self, pending: u64) -> bool {
        let Some(s) = &self.segments else {
            return false;
        };
        let bytes = s.bytes + pending;
        bytes >= s.max_bytes || (bytes > 0 && s.started.elapsed().unwrap_or_default() >= s.max_age)
    }

    /// Append a checkpoint of every swarm's state to `text`.
    fn append_checkpoint(&mut self, text: &mut String, reason: &str) {
        checkpoint::append(
            text,
            &mut self.seq,
            &mut self.head,
            SystemTime::now(),
            &self.replay,
            reason,
            self.worker.as_deref(),
        );
        self.since_checkpoint = 0;
    }

    /// Close the segment being written: sync it, make the next one, and
    /// write a checkpoint at its start; then apply retention.
    fn close_segment(&mut self, reason: &str, text: &mut String) -> std::io::Result<()> {
        let Some(s) = &self.segments else {
            return Ok(());
        };
        let (dir, pause) = (s.dir.clone(), s.pause.clone());
        let first_seq = self.seq + 1;
        if first_seq == s.first_seq {
            // Nothing in it yet: it is the next segment already.
            return Ok(());
        }
        self.file.sync_data()?;
        let path = dir.join(segment_name(first_seq));
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        segments::sync_dir(&dir)?;
        if pause.as_deref() == Some("segment") {
            pause_here(&format!("made segment {}", path.display()));
        }
        text.clear();
        if self.checkpoints {
            self.append_checkpoint(text, reason);
        }
        if pause.as_deref() == Some("checkpoint") {
            let marker = text.find('\n').map_or(text.len(), |i| i + 1);
            file.write_all(&text.as_bytes()[..marker])?;
            file.sync_data()?;
            pause_here(&format!(
                "wrote the checkpoint marker in {}",
                path.display()
            ));
        }
        file.write_all(text.as_bytes())?;
        file.flush()?;
        file.sync_data()?;
        self.file = file;
        self.synced = true;
        self.since_sync = 0;
        if let Some(s) = &mut self.segments {
            s.first_seq = first_seq;
            // The checkpoint does not count towards the segment's size:
            // a segment closes on the records written after it.
            s.bytes = 0;
            s.started = SystemTime::now();
        }
        self.retain(text)
    }

    /// Remove the oldest segments as retention says, and record that it
    /// did. A failure to remove one is logged, not fatal.
    fn retain(&mut self, text: &mut String) -> std::io::Result<()> {
        let Some(s) = &self.segments else {
            return Ok(());
        };
        if !s.retention.active() {
            return Ok(());
        }
        let plan = match retention::plan(&s.dir, &s.retention) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::error!(target: "chassis::audit", "retention of {}: {e}", s.dir.display());
                return Ok(());
            }
        };
        // What goes is recorded, on disk, before it goes.
        text.clear();
        self.seq += 1;
        self.head = super::record::append_value_record(
            text,
            self.seq,
            &self.head,
            SystemTime::now(),
            "retention",
            "",
            &plan.record(),
            self.worker.as_deref(),
        );
        self.append_text(text)?;
        self.sync()?;
        if let Err(e) = plan.carry_out() {
            tracing::error!(target: "chassis::audit", "retention: {e}");
        }
        Ok(())
    }

    /// Append `batch` with one write (one per segment when the batch fills
    /// the segment being written), and sync as the policy says.
    fn write_batch(&mut self, batch: &[Pending], text: &mut String) -> std::io::Result<()> {
        if self.segment_full(0) {
            self.close_segment("segment", text)?;
        }
        text.clear();
        for (i, pending) in batch.iter().enumerate() {
            self.seq += 1;
            self.head = append_record(
                text,
                self.seq,
                &self.head,
                pending.ts,
                &pending.event,
                self.worker.as_deref(),
            );
            if self.checkpoints {
                self.replay.observe(micros(pending.ts), &pending.event);
            }
            self.since_sync += 1;
            self.since_checkpoint += 1;
            if i + 1 < batch.len() && self.segment_full(text.len() as u64) {
                self.append_text(text)?;
                self.close_segment("segment", text)?;
                text.clear();
            }
        }
        self.append_text(text)?;
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::EveryN(n) => self.since_sync >= n,
            FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        Ok(())
    }

    /// Append `text` to the segment being written.
    fn append_text(&mut self, text: &str) -> std::io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.flush()?;
        if let Some(s) = &mut self.segments {
            s.bytes += text.len() as u64;
        }
        self.synced = false;
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if !self.synced {
            self.file.sync_data()?;
            self.synced = true;
            self.last_fsync = Some(Instant::now());
        }
        self.since_sync = 0;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// A record's time as the log writes it: microseconds since the epoch
/// (the epoch for a time before it).
fn micros(t: SystemTime) -> i64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64) * 1_000_000 + i64::from(d.subsec_micros())
}

/// Stop here until the process is killed (crash tests, [`PAUSE_ENV`]).
fn pause_here(what: &str) -> ! {
    eprintln!("chassis audit: paused: {what}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::GENESIS;

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

    fn pending(ack: Option<Arc<Ack>>) -> Pending {
        Pending {
            ts: SystemTime::now(),
            event: Event::ModuleUnloaded {
                swarm_id: "s".into(),
            },
            ack: ack.map(AckHandle),
        }
    }

    #[test]
    fn a_record_left_in_the_queue_of_a_stopped_writer_is_answered() {
        // A writer that failed drops its queue; a caller waiting on a
        // record in it learns that it was not written.
        let (sender, receiver) = sync_channel(4);
        let ack = Arc::<Ack>::default();
        sender
            .send(Message::Record(pending(Some(ack.clone()))))
            .unwrap();
        let waiter = std::thread::spawn({
            let ack = ack.clone();
            move || ack.wait()
        });
        drop(receiver);
        assert!(!waiter.join().unwrap());
        // A signalled record keeps its answer when the handle goes.
        let ack = Arc::<Ack>::default();
        AckHandle(ack.clone()).signal(true);
        assert!(ack.wait());
    }

    #[test]
    fn a_writer_that_cannot_write_fails_the_log_and_its_waiters() {
        // /dev/full refuses every write with ENOSPC: a full disk.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        let (sender, receiver) = sync_channel(4);
        let ack = Arc::<Ack>::default();
        sender
            .send(Message::Record(pending(Some(ack.clone()))))
            .unwrap();
        let failure = Arc::<Failure>::default();
        let writer = Writer::new(file, 0, GENESIS.to_string(), FsyncPolicy::Always, None);
        let result = write_loop(PathBuf::from("/dev/full"), writer, receiver, &failure);
        assert!(result.is_err());
        assert!(
            !ack.wait(),
            "the waiting caller learns its record was not written"
        );
        let why = failure.get().unwrap();
        assert!(
            why.contains("audit log writer stopped") && why.contains("/dev/full"),
            "{why}"
        );
        // Later records cannot be queued: the caller sees the failure.
        assert!(sender.send(Message::Record(pending(None))).is_err());
    }

    #[test]
    fn an_interval_policy_syncs_even_when_records_stop_coming() {
        let dir =
            std::env::temp_dir().join(format!("chassis-audit-interval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut writer = Writer::new(
            file,
            0,
            GENESIS.to_string(),
            FsyncPolicy::Interval(Duration::from_millis(30)),
            None,
        );
        let started = Instant::now();
        let (sender, receiver) = sync_channel(4);
        sender.send(Message::Record(pending(None))).unwrap();
        // Nothing more comes for 300 ms, then the log is closed.
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(sender);
        });
        writer.run(&receiver, |_| {}).unwrap();
        closer.join().unwrap();
        // The record was written at once but not yet due for a sync; the
        // writer synced it when the interval ended, not at close.
        assert_eq!(writer.seq, 1);
        let synced_after = writer.last_fsync.unwrap() - started;
        assert!(
            synced_after < Duration::from_millis(250),
            "{synced_after:?}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
