//! The witness: a tamper-evident audit log of every event, as JSON lines.
//!
//! Each record is one line:
//!
//! ```json
//! {"component":"IF.chassis","operation":"task_start","params":{...},"prev_hash":"00…","seq":1,
//!  "swarm_id":"hello-world","task_id":"task-1","ts":"2026-11-21T12:00:00.000123Z","hash":"…"}
//! ```
//!
//! `hash` is the SHA-256 (hex) of the record's canonical encoding: the
//! record without `hash`, as JSON with object keys sorted at every level and
//! no whitespace. `prev_hash` is the previous record's `hash` (64 zeros for
//! the first), and `seq` counts from 1, so an edited field, a deleted,
//! inserted, duplicated or reordered line all break verification. Text a
//! guest controls is JSON-escaped inside the record, so it can neither end a
//! line nor forge a record.
//!
//! Data flow: [`AuditLog`] is an [`EventSink`]. `record` stamps the time and
//! hands the event to a writer thread over a bounded channel (when the
//! channel is full the task waits: backpressure, never a dropped record).
//! The writer takes what is queued (up to [`MAX_BATCH`] records), numbers
//! and hashes each record, appends them with one write and flushes, calls
//! `fsync` as the [`FsyncPolicy`] says, then lets the next records gather for
//! [`BATCH_LINGER`] before it takes them. Tasks therefore rarely have to wake
//! the writer, and a record reaches the file within about a millisecond.
//! Under [`FsyncPolicy::Always`], `record` returns only once its record is
//! on disk (group commit: one `fsync` covers a batch).
//!
//! If the log cannot be written (a full disk, say) or has been closed, it
//! reports a failure ([`EventSink::failure`]) and the host refuses new loads
//! and tasks rather than run them unrecorded.
//!
//! Opening an existing log takes an exclusive lock on it (a second writer
//! would fork the chain), verifies it, drops a partial last line (a crash
//! mid-write), and continues its chain.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::events::{Event, EventSink};

/// `component` of every record.
pub const COMPONENT: &str = "IF.chassis";

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records that may wait for the writer before `record` blocks.
pub const QUEUE_CAPACITY: usize = 4096;

/// Most records the writer appends with one write.
pub const MAX_BATCH: usize = 512;

/// How long the writer lets records gather after writing a batch.
pub const BATCH_LINGER: Duration = Duration::from_millis(1);

/// When the writer calls `fsync`.
///
/// Under every policy but `Always`, records still in the queue (at most
/// [`QUEUE_CAPACITY`] + [`MAX_BATCH`], normally a millisecond's worth) are
/// also lost if the process dies; what the policy bounds is what was handed
/// to the OS but not yet on disk when the machine goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every write (a batch of the records queued at that moment), and
    /// `record` waits for it: once an event is recorded it is on disk, so a
    /// crash loses nothing recorded.
    Always,
    /// After every `n` records: a crash loses at most `n - 1` written records.
    EveryN(u32),
    /// When at least this long has passed since the last `fsync`, also while
    /// no new records come: a crash loses at most that much time of records.
    Interval(Duration),
    /// Never (the OS decides): a crash may lose what the OS had not written.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    /// `always`, `never`, `every:N` or `interval:MS`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.split_once(':') {
                Some(("every", n)) => n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(FsyncPolicy::EveryN)
                    .ok_or_else(|| format!("bad fsync policy {s:?}: every:N needs N ≥ 1")),
                Some(("interval", ms)) => ms
                    .parse()
                    .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                    .map_err(|_| format!("bad fsync policy {s:?}: interval:MS needs milliseconds")),
                _ => Err(format!(
                    "bad fsync policy {s:?}: expected always, never, every:N or interval:MS"
                )),
            },
        }
    }
}

/// Why the audit log could not be opened, written or verified.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File trouble.
    #[error("{}: {source}", path.display())]
    Io {
        /// The log.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another writer has the log open.
    #[error("{}: the audit log is open in another writer (another chassis process?)", path.display())]
    InUse {
        /// The log.
        path: PathBuf,
    },
    /// The log does not hold the expected head.
    #[error("{}: {reason}", path.display())]
    HeadMismatch {
        /// The log.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A record that does not verify.
    #[error("{}: record on line {line} is bad: {reason}", path.display())]
    Bad {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whole records, all verified.
    pub records: u64,
    /// Hash of the last record (the chain head).
    pub head: String,
    /// Bytes of a partial last line (a crash mid-write), ignored.
    pub partial_tail_bytes: u64,
}

/// JSON with object keys sorted at every level, no whitespace.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

/// Append the canonical encoding of `value` to `out`.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                write_canonical(out, v);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, v);
            }
            out.push(']');
        }
        Value::String(text) => push_json_str(out, text),
        other => out.push_str(&other.to_string()),
    }
}

/// Append `text` as a JSON string, escaped as serde_json escapes it.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

/// SHA-256 (hex) of a record's canonical encoding without its `hash`.
pub fn record_hash(record: &Value) -> String {
    let mut body = record.clone();
    if let Value::Object(m) = &mut body {
        m.remove("hash");
    }
    hex::encode(Sha256::digest(canonical(&body).as_bytes()))
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-21T12:00:00.000123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339(&mut out, t);
    out
}

/// Append [`rfc3339`] of `t` to `out`.
fn push_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Years outside 0..=9999 do not occur for times after 1970 and before 10000.
    let y = year.clamp(0, 9999);
    push_digits(out, y, 4, '-');
    push_digits(out, month, 2, '-');
    push_digits(out, day, 2, 'T');
    push_digits(out, rem / 3600, 2, ':');
    push_digits(out, rem % 3600 / 60, 2, ':');
    push_digits(out, rem % 60, 2, '.');
    push_digits(out, i64::from(d.subsec_micros()), 6, 'Z');
}

/// Append the last `width` decimal digits of `n` (zero-padded), then `then`.
fn push_digits(out: &mut String, n: i64, width: u32, then: char) {
    let mut div = 10_i64.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
    out.push(then);
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into microseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    // Days from civil (inverse of the above).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// The operation name, swarm, task and parameters of an event.
fn describe(event: &Event) -> (&'static str, Option<String>, Value) {
    let mut v = serde_json::to_value(event).expect("events serialize");
    let map = v.as_object_mut().expect("events are objects");
    map.remove("event");
    map.remove("swarm_id");
    let task_id = map
        .remove("task_id")
        .and_then(|t| t.as_str().map(str::to_string));
    let op = match event {
        Event::ModuleLoaded { .. } => "module_loaded",
        Event::LoadRejected { .. } => "load_rejected",
        Event::ModuleUnloaded { .. } => "module_unloaded",
        Event::TaskStart { .. } => "task_start",
        Event::TaskComplete { .. } => "task_complete",
        Event::TaskFailed { .. } => "task_failed",
        Event::LimitExceeded { .. } => "resource_limit_exceeded",
        Event::RateLimited { .. } => "rate_limited",
        Event::CredentialAccess { allowed: true, .. } => "credential_access_allowed",
        Event::CredentialAccess { allowed: false, .. } => "credential_access_denied",
        Event::HttpProxy { allowed: true, .. } => "http_proxy",
        Event::HttpProxy { allowed: false, .. } => "http_proxy_denied",
        Event::SloViolation { .. } => "slo_violation",
        Event::ReputationChanged { .. } => "reputation_changed",
        Event::Quarantined { .. } => "quarantined",
        Event::Released { .. } => "released",
        Event::SecretRedacted { .. } => "secret_redacted",
    };
    (op, task_id, v)
}

struct Pending {
    ts: SystemTime,
    event: Event,
    /// Under `FsyncPolicy::Always`: signalled once the record is on disk.
    ack: Option<Arc<Ack>>,
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
        let path = path.as_ref().to_path_buf();
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
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
                write_loop(
                    writer_path,
                    file,
                    receiver,
                    seq,
                    head,
                    fsync,
                    &writer_failure,
                )
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
        let ack = (self.fsync == FsyncPolicy::Always).then(Arc::<Ack>::default);
        let pending = Pending {
            ts: SystemTime::now(),
            event: event.clone(),
            ack: ack.clone(),
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
            tracing::error!(target: "chassis::audit", "event not recorded: {}", event.swarm_id());
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.get()
    }
}

fn write_loop(
    path: PathBuf,
    file: File,
    receiver: Receiver<Pending>,
    seq: u64,
    head: String,
    fsync: FsyncPolicy,
    failure: &Failure,
) -> Result<(), AuditError> {
    let mut writer = Writer {
        file,
        seq,
        head,
        fsync,
        since_sync: 0,
        last_sync: Instant::now(),
        synced: true,
        last_fsync: None,
    };
    let result = writer.run(&receiver).map_err(|source| AuditError::Io {
        path: path.clone(),
        source,
    });
    if let Err(e) = &result {
        failure.fail(true, || format!("audit log writer stopped: {e}"));
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
    since_sync: u32,
    last_sync: Instant,
    /// Whether everything written is synced.
    synced: bool,
    /// When `fsync` last ran.
    last_fsync: Option<Instant>,
}

impl Writer {
    fn run(&mut self, receiver: &Receiver<Pending>) -> std::io::Result<()> {
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
            self.head = append_record(text, self.seq, &self.head, pending.ts, &pending.event);
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

/// Number, chain and hash one record, append it to `text` as a line, and
/// return its hash.
///
/// The line is the record's canonical encoding itself (keys sorted), with
/// `hash` added last, so it is built and hashed in one pass.
fn append_record(text: &mut String, seq: u64, head: &str, ts: SystemTime, event: &Event) -> String {
    let (operation, task_id, params) = describe(event);
    let start = text.len();
    text.push_str("{\"component\":");
    push_json_str(text, COMPONENT);
    text.push_str(",\"operation\":");
    push_json_str(text, operation);
    text.push_str(",\"params\":");
    write_canonical(text, &params);
    text.push_str(",\"prev_hash\":");
    push_json_str(text, head);
    // Writing to a String cannot fail.
    let _ = write!(text, ",\"seq\":{seq},\"swarm_id\":");
    push_json_str(text, event.swarm_id());
    text.push_str(",\"task_id\":");
    match &task_id {
        Some(id) => push_json_str(text, id),
        None => text.push_str("null"),
    }
    text.push_str(",\"ts\":\"");
    push_rfc3339(text, ts);
    text.push_str("\"}");
    let digest = Sha256::digest(&text.as_bytes()[start..]);
    text.pop();
    text.push_str(",\"hash\":\"");
    let hash_at = text.len();
    for b in digest {
        text.push(HEX[usize::from(b >> 4)] as char);
        text.push(HEX[usize::from(b & 0xf)] as char);
    }
    let hash = text[hash_at..].to_string();
    text.push_str("\"}\n");
    hash
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A chain head: the sequence number and hash of a log's last record, as
/// `audit verify` prints it (`SEQ:HASH`). Kept somewhere the log's writer
/// cannot reach, it detects a log whose tail was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The record's `seq`.
    pub seq: u64,
    /// The record's `hash`.
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = String;

    /// `SEQ:HASH`, e.g. `42:3f2a…` (64 hex digits).
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("bad head {s:?}: expected SEQ:HASH"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("bad head {s:?}: SEQ must be a record number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("bad head {s:?}: HASH must be 64 hex digits"));
        }
        Ok(Head {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

impl Verified {
    /// The chain head: the last record's number and hash (`0` and the
    /// genesis hash for an empty log).
    pub fn head(&self) -> Head {
        Head {
            seq: self.records,
            hash: self.head.clone(),
        }
    }
}

/// [`verify`], and check that the log holds `expected` — the record with
/// that sequence number has that hash — so a log cut back to before a head
/// kept elsewhere is detected. A log that has grown past it passes.
pub fn verify_against(path: impl AsRef<Path>, expected: &Head) -> Result<Verified, AuditError> {
    let path = path.as_ref();
    let mut found: Option<String> = None;
    let v = verify_each(path, |seq, hash| {
        if seq == expected.seq {
            found = Some(hash.to_string());
        }
    })?;
    let mismatch = |reason: String| AuditError::HeadMismatch {
        path: path.to_path_buf(),
        reason,
    };
    if expected.seq == 0 {
        return if expected.hash == GENESIS {
            Ok(v)
        } else {
            Err(mismatch("head 0 has the genesis hash (64 zeros)".into()))
        };
    }
    match found {
        None => Err(mismatch(format!(
            "the log ends at record {}, before the expected head {}: records were cut from its end",
            v.records, expected.seq
        ))),
        Some(hash) if hash != expected.hash => Err(mismatch(format!(
            "record {} has hash {hash}, not the expected {}: the log was rewritten",
            expected.seq, expected.hash
        ))),
        Some(_) => Ok(v),
    }
}

/// Verify a log file: every whole line a record whose `seq`, `prev_hash`
/// and `hash` are right. A partial last line (no newline) is reported, not
/// counted. Deleting records from the end leaves a valid, shorter log:
/// check against a head kept elsewhere with [`verify_against`].
pub fn verify(path: impl AsRef<Path>) -> Result<Verified, AuditError> {
    verify_each(path.as_ref(), |_, _| {})
}

/// [`verify`], calling `each(seq, hash)` for every good record.
fn verify_each(path: &Path, mut each: impl FnMut(u64, &str)) -> Result<Verified, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut head = GENESIS.to_string();
    let mut records = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            return Ok(Verified {
                records,
                head,
                partial_tail_bytes: n as u64,
            });
        }
        let line = records as usize + 1;
        let bad = |reason: String| AuditError::Bad {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let record: Value = serde_json::from_slice(&buf[..n - 1])
            .map_err(|e| bad(format!("not a JSON record: {e}")))?;
        let seq = record["seq"].as_u64();
        if seq != Some(records + 1) {
            return Err(bad(format!(
                "sequence number is {}, expected {} (a record was deleted, inserted, duplicated or moved)",
                record["seq"],
                records + 1
            )));
        }
        if record["prev_hash"].as_str() != Some(head.as_str()) {
            return Err(bad(
                "prev_hash does not match the previous record's hash (the chain is broken)".into(),
            ));
        }
        let claimed = record["hash"].as_str().unwrap_or_default();
        let actual = record_hash(&record);
        if claimed != actual {
            return Err(bad(format!(
                "hash does not match the record's contents (a field was edited): claimed {claimed}, computed {actual}"
            )));
        }
        head = actual;
        records += 1;
        each(records, &head);
    }
    Ok(Verified {
        records,
        head,
        partial_tail_bytes: 0,
    })
}

/// Which records `show` prints.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this swarm.
    pub swarm_id: Option<String>,
    /// Only operations containing this text (e.g. `credential`, `task_failed`).
    pub operation: Option<String>,
    /// Only records at or after this time (microseconds since the epoch).
    pub since_micros: Option<i64>,
    /// Only records before this time (microseconds since the epoch).
    pub until_micros: Option<i64>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &Value) -> bool {
        if let Some(s) = &self.swarm_id
            && record["swarm_id"].as_str() != Some(s.as_str())
        {
            return false;
        }
        if let Some(op) = &self.operation
            && !record["operation"]
                .as_str()
                .unwrap_or_default()
                .contains(op.as_str())
        {
            return false;
        }
        let ts = record["ts"].as_str().and_then(parse_rfc3339);
        if let (Some(since), Some(ts)) = (self.since_micros, ts)
            && ts < since
        {
            return false;
        }
        if let (Some(until), Some(ts)) = (self.until_micros, ts)
            && ts >= until
        {
            return false;
        }
        true
    }
}

/// One audit record read back as the event it records.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// When the event happened, microseconds since the Unix epoch.
    pub ts_micros: i64,
    /// The event.
    pub event: Event,
}

impl Record {
    /// The event a record (as [`read`] returns it) holds: the inverse of
    /// the encoding the writer uses. `None` for a record this version does
    /// not know.
    pub fn from_json(record: &Value) -> Option<Record> {
        let variant = match record["operation"].as_str()? {
            "resource_limit_exceeded" => "limit_exceeded",
            "credential_access_allowed" | "credential_access_denied" => "credential_access",
            "http_proxy" | "http_proxy_denied" => "http_proxy",
            other => other,
        };
        let mut fields = record["params"].as_object()?.clone();
        fields.insert("event".into(), Value::from(variant));
        fields.insert("swarm_id".into(), record["swarm_id"].clone());
        if let Some(task) = record["task_id"].as_str() {
            fields.insert("task_id".into(), Value::from(task));
        }
        Some(Record {
            seq: record["seq"].as_u64()?,
            ts_micros: record["ts"].as_str().and_then(parse_rfc3339)?,
            event: serde_json::from_value(Value::Object(fields)).ok()?,
        })
    }
}

/// Every whole record of the log, as events, in order (records this
/// version does not know are left out).
pub fn events(path: impl AsRef<Path>) -> Result<Vec<Record>, AuditError> {
    Ok(read(path, &Filter::default())?
        .iter()
        .filter_map(Record::from_json)
        .collect())
}

/// Every whole record of the log that passes `filter`, in order.
pub fn read(path: impl AsRef<Path>, filter: &Filter) -> Result<Vec<Value>, AuditError> {
    let path = path.as_ref();
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut out = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            break;
        }
        let record: Value = serde_json::from_str(line).map_err(|e| AuditError::Bad {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("not a JSON record: {e}"),
        })?;
        if filter.matches(&record) {
            out.push(record);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does() {
        for text in [
            "plain",
            "quote \" backslash \\ slash /",
            "lines\n\r\ttab",
            "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
            "héllo ✓ 😀 \u{2028}",
            "",
        ] {
            let mut ours = String::new();
            push_json_str(&mut ours, text);
            assert_eq!(ours, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    /// Every kind of event, written as a record, reads back as itself.
    #[test]
    fn every_event_reads_back_from_its_record() {
        use crate::limits::LimitKind;
        let s = || "s".to_string();
        let t = || "t".to_string();
        let events = vec![
            Event::ModuleLoaded {
                swarm_id: s(),
                origin: "o".into(),
                task_types: vec!["a".into()],
            },
            Event::LoadRejected {
                swarm_id: s(),
                reason: "r".into(),
            },
            Event::ModuleUnloaded { swarm_id: s() },
            Event::TaskStart {
                swarm_id: s(),
                task_id: t(),
                task_type: "a".into(),
            },
            Event::TaskComplete {
                swarm_id: s(),
                task_id: t(),
                wall_ms: 1.25,
            },
            Event::TaskFailed {
                swarm_id: s(),
                task_id: t(),
                kind: "guest_error".into(),
                error: "e".into(),
                guest_error: Some("failed".into()),
                wall_ms: 0.1,
            },
            Event::TaskFailed {
                swarm_id: s(),
                task_id: t(),
                kind: "trap".into(),
                error: "e".into(),
                guest_error: None,
                wall_ms: 3.0,
            },
            Event::LimitExceeded {
                swarm_id: s(),
                task_id: t(),
                limit: LimitKind::Memory,
                detail: "d".into(),
            },
            Event::CredentialAccess {
                swarm_id: s(),
                task_id: t(),
                key: "k".into(),
                operation: "get".into(),
                allowed: false,
                reason: Some("no".into()),
                security_violation: true,
            },
            Event::CredentialAccess {
                swarm_id: s(),
                task_id: t(),
                key: "k".into(),
                operation: "get".into(),
                allowed: true,
                reason: None,
                security_violation: false,
            },
            Event::HttpProxy {
                swarm_id: s(),
                task_id: t(),
                allowed: true,
                method: "GET".into(),
                url: "u".into(),
                status: Some(200),
                bytes_out: 1,
                bytes_in: 2,
                elapsed_ms: 0.5,
                reason: None,
                security_violation: false,
            },
            Event::HttpProxy {
                swarm_id: s(),
                task_id: t(),
                allowed: false,
                method: "GET".into(),
                url: "u".into(),
                status: None,
                bytes_out: 0,
                bytes_in: 0,
                elapsed_ms: 0.5,
                reason: Some("r".into()),
                security_violation: true,
            },
            Event::SloViolation {
                swarm_id: s(),
                task_id: t(),
                metric: "error_rate".into(),
                actual: 50.0,
                target: 1.0,
            },
            Event::ReputationChanged {
                swarm_id: s(),
                task_id: t(),
                from: 0.5,
                to: 0.55,
            },
            Event::Quarantined {
                swarm_id: s(),
                task_id: t(),
                score: 0.1,
                threshold: 0.2,
                reason: "why".into(),
            },
            Event::SecretRedacted {
                swarm_id: s(),
                task_id: t(),
                keys: vec!["k".into()],
                channel: "log".into(),
                security_violation: true,
            },
            Event::Released {
                swarm_id: s(),
                score: 0.5,
            },
            Event::RateLimited {
                swarm_id: s(),
                task_id: t(),
                import: "log".into(),
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            let mut text = String::new();
            append_record(&mut text, i as u64 + 1, GENESIS, SystemTime::now(), &event);
            let value: Value = serde_json::from_str(&text).unwrap();
            let record = Record::from_json(&value).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(record.event, event, "{text}");
            assert_eq!(record.seq, i as u64 + 1);
        }
    }

    #[test]
    fn a_written_line_is_its_own_canonical_form_plus_the_hash() {
        let mut text = String::new();
        let event = Event::TaskStart {
            swarm_id: "s\"1".into(),
            task_id: "t\n1".into(),
            task_type: "echo".into(),
        };
        let hash = append_record(&mut text, 7, GENESIS, SystemTime::now(), &event);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let record: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(record["hash"], json!(hash));
        assert_eq!(record_hash(&record), hash);
        assert_eq!(record["seq"], json!(7));
        assert_eq!(record["operation"], json!("task_start"));
        assert_eq!(record["swarm_id"], json!("s\"1"));
        assert_eq!(record["task_id"], json!("t\n1"));
        assert_eq!(record["params"], json!({"task_type": "echo"}));
    }

    fn pending(ack: Option<Arc<Ack>>) -> Pending {
        Pending {
            ts: SystemTime::now(),
            event: Event::ModuleUnloaded {
                swarm_id: "s".into(),
            },
            ack,
        }
    }

    #[test]
    fn a_writer_that_cannot_write_fails_the_log_and_its_waiters() {
        // /dev/full refuses every write with ENOSPC: a full disk.
        let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let (sender, receiver) = sync_channel(4);
        let ack = Arc::<Ack>::default();
        sender.send(pending(Some(ack.clone()))).unwrap();
        let failure = Arc::<Failure>::default();
        let result = write_loop(
            PathBuf::from("/dev/full"),
            file,
            receiver,
            0,
            GENESIS.to_string(),
            FsyncPolicy::Always,
            &failure,
        );
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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut writer = Writer {
            file,
            seq: 0,
            head: GENESIS.to_string(),
            fsync: FsyncPolicy::Interval(Duration::from_millis(30)),
            since_sync: 0,
            last_sync: Instant::now(),
            synced: true,
            last_fsync: None,
        };
        let started = Instant::now();
        let (sender, receiver) = sync_channel(4);
        sender.send(pending(None)).unwrap();
        // Nothing more comes for 300 ms, then the log is closed.
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(sender);
        });
        writer.run(&receiver).unwrap();
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

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn times_round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-18T11:06:40.123456Z");
        assert_eq!(parse_rfc3339(&s), Some(1_795_000_000_123_456));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn hashes_survive_a_round_trip_through_text() {
        let mut r = json!({"seq": 1, "params": {"wall_ms": 0.10579200000000001, "x": 1e-7}, "prev_hash": GENESIS});
        r["hash"] = json!(record_hash(&r));
        let back: Value = serde_json::from_str(&r.to_string()).unwrap();
        assert_eq!(record_hash(&back), r["hash"].as_str().unwrap());
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!("every:100".parse(), Ok(FsyncPolicy::EveryN(100)));
        assert_eq!(
            "interval:250".parse(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
        );
        assert!("every:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
