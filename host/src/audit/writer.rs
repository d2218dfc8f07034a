//! The writer: a thread that numbers, hashes and appends queued records in
//! batches, flushes, and calls `fsync` as the policy says; `AuditLog` is the
//! `EventSink` in front of it.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crate::events::{Event, EventSink};

use super::read::verify;
use super::record::append_record;
use super::{AuditError, BATCH_LINGER, FsyncPolicy, GENESIS, MAX_BATCH, QUEUE_CAPACITY};

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

/// The audit log: an [`EventSink`] that appends hash-chained records.
pub struct AuditLog {
    path: PathBuf,
    fsync: FsyncPolicy,
    sender: RwLock<Option<SyncSender<Pending>>>,
    writer: Mutex<Option<JoinHandle<Result<(), AuditError>>>>,
    failure: Arc<Failure>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Open (or create) the log at `path`, lock it, verify what it holds,
    /// and start the writer thread. A partial last line is cut off; a log
    /// that does not verify is refused (move it aside to start a new one), as
    /// is one another process (or another `AuditLog`) has open.
    pub fn open(path: impl AsRef<Path>, fsync: FsyncPolicy) -> Result<Arc<Self>, AuditError> {
        Self::open_as(path, fsync, None)
    }

    /// [`AuditLog::open`] for a host named `worker` (one of several
    /// sharing a task queue): every record it writes carries a `worker`
    /// field with that name.
    pub fn open_as(
        path: impl AsRef<Path>,
        fsync: FsyncPolicy,
        worker: Option<String>,
    ) -> Result<Arc<Self>, AuditError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        // Never a fifo or a device: opening one could block, and records
        // written to it would be lost.
        let mut file = crate::files::open_regular_append(&path).map_err(io)?;
        // Held until the writer closes the file.
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => AuditError::InUse { path: path.clone() },
            std::fs::TryLockError::Error(e) => io(e),
        })?;
        let (seq, head) = if file.metadata().map_err(io)?.len() > 0 {
            let v = verify(&path)?;
            if v.partial_tail_bytes > 0 {
                let len = file.metadata().map_err(io)?.len();
                file.set_len(len - v.partial_tail_bytes).map_err(io)?;
                tracing::warn!(target: "chassis::audit", "{}: dropped a partial last record of {} bytes", path.display(), v.partial_tail_bytes);
            }
            (v.records, v.head)
        } else {
            (0, GENESIS.to_string())
        };
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let writer_path = path.clone();
        let failure = Arc::<Failure>::default();
        let writer_failure = failure.clone();
        let writer = std::thread::Builder::new()
            .name("chassis-audit".into())
            .spawn(move || {
                let writer = Writer::new(file, seq, head, fsync, worker);
                write_loop(writer_path, writer, receiver, &writer_failure)
            })
            .map_err(io)?;
        Ok(Arc::new(Self {
            path,
            fsync,
            sender: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            failure,
        }))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write everything recorded so far, `fsync`, and stop the writer.
    /// From then on the log reports a failure, so a host using it refuses
    /// new loads and tasks.
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
        let sent = {
            let sender = self.sender.read().expect("audit lock");
            // Blocks while the queue is full: records are never dropped.
            matches!(&*sender, Some(s) if s.send(pending).is_ok())
        };
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
    receiver: Receiver<Pending>,
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
        }
    }
}

impl Writer {
    /// Write what `receiver` brings until it closes; a failed write is
    /// told to `failed` before the callers waiting on it are.
    fn run(
        &mut self,
        receiver: &Receiver<Pending>,
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
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let batch_was_full = batch.len() == MAX_BATCH;
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
            if !batch_was_full {
                std::thread::sleep(BATCH_LINGER);
            }
        }
        self.sync()
    }

    /// Append `batch` with one write, and sync as the policy says.
    fn write_batch(&mut self, batch: &[Pending], text: &mut String) -> std::io::Result<()> {
        text.clear();
        for pending in batch.iter() {
            self.seq += 1;
            self.head = append_record(
                text,
                self.seq,
                &self.head,
                pending.ts,
                &pending.event,
                self.worker.as_deref(),
            );
            self.since_sync += 1;
        }
        self.file.write_all(text.as_bytes())?;
        self.file.flush()?;
        self.synced = false;
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
        sender.send(pending(Some(ack.clone()))).unwrap();
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
        sender.send(pending(Some(ack.clone()))).unwrap();
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
        assert!(sender.send(pending(None)).is_err());
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
        sender.send(pending(None)).unwrap();
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
