//! The writer thread: it numbers, hashes and appends queued records in
//! batches, flushes, and calls `fsync` as the policy says; closes a segment
//! at its size or age and starts the next with a checkpoint of the state it
//! keeps (a `Replay` fed every record); and answers `history`. `AuditLog`
//! (`writer.rs`) is the sending side: `Message`s, each record a `Pending`
//! whose `Ack` a caller under `FsyncPolicy::Always` waits on.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::events::Event;
use crate::replay::{History, Replay};

use super::checkpoint;
use super::record::append_record;
use super::segments::{self, segment_name};
use super::writer::Retention;
use super::{AuditError, BATCH_LINGER, FsyncPolicy, MAX_BATCH, retention};

pub(super) struct Pending {
    pub(super) ts: SystemTime,
    pub(super) event: Event,
    /// Under `FsyncPolicy::Always`: signalled once the record is on disk.
    pub(super) ack: Option<AckHandle>,
}

/// The writer's end of an [`Ack`]. Dropped without a signal (a record
/// still queued when a failed writer stopped), it tells the waiting caller
/// that the record was not written, so no caller waits forever.
pub(super) struct AckHandle(pub(super) Arc<Ack>);

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
pub(super) struct Ack {
    /// `Some(true)` on disk, `Some(false)` the write failed.
    done: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Ack {
    fn signal(&self, ok: bool) {
        *self.done.lock().expect("audit ack lock") = Some(ok);
        self.cv.notify_all();
    }

    pub(super) fn wait(&self) -> bool {
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
pub(super) struct Failure {
    set: std::sync::atomic::AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Failure {
    /// Record the first reason; `loud` logs it as an error.
    pub(super) fn fail(&self, loud: bool, reason: impl FnOnce() -> String) {
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

    pub(super) fn get(&self) -> Option<String> {
        if !self.set.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.reason.lock().expect("audit failure lock").clone()
    }
}

/// What a message to the writer asks.
pub(super) enum Message {
    /// Write a record.
    Record(Pending),
    /// A swarm's state after every record before this message.
    History(String, SyncSender<Option<History>>),
    /// Close the segment now (and start the next with a checkpoint).
    CloseSegment(SyncSender<Result<(), String>>),
}

pub(super) fn write_loop(
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
pub(super) struct Segments {
    pub(super) dir: PathBuf,
    /// The writer's lock on the log, held while it writes.
    pub(super) _lock: File,
    /// First record of the segment being written.
    pub(super) first_seq: u64,
    pub(super) bytes: u64,
    pub(super) started: SystemTime,
    pub(super) max_bytes: u64,
    pub(super) max_age: Duration,
    pub(super) retention: Retention,
    pub(super) pause: Option<String>,
}

pub(super) struct Writer {
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
    pub(super) segments: Option<Segments>,
    /// The state of every swarm after the records written.
    pub(super) replay: Replay,
    /// Records written since the last checkpoint.
    pub(super) since_checkpoint: u64,
    /// Whether the state is kept and checkpoints written.
    pub(super) checkpoints: bool,
}

impl Writer {
    /// A writer appending to `file` after record `seq` whose hash is `head`.
    pub(super) fn new(
        file: File,
        seq: u64,
        head: String,
        fsync: FsyncPolicy,
        worker: Option<String>,
    ) -> Self {
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
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    use super::*;
    use crate::audit::GENESIS;

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
