//! Reading a log back: `verify` (the chain), the chain head and
//! `verify_against`, `read` with a `Filter`, and records as typed events
//! (`tail.rs` reads a live log's end).
//!
//! A log is opened as `files.rs` opens what the host is pointed at (a
//! regular file, never waiting on a fifo or a device) and read as a stream,
//! one line at a time, none longer than [`MAX_RECORD_BYTES`]: memory stays
//! bounded whatever the file holds.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::events::Event;

use super::record::{MAX_RECORD_BYTES, parse_rfc3339, record_hash};
use super::segments::{Cursor, Layout};
use super::{AuditError, GENESIS};

/// Open the log at `path` for reading: a regular file, or an error saying
/// what it is (a fifo, a device, a directory), at once.
pub(super) fn open(path: &Path) -> Result<File, AuditError> {
    crate::files::open_regular(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One step of [`Lines`].
pub(super) enum Line<'a> {
    /// A whole line, without its newline.
    Whole(&'a [u8]),
    /// Bytes after the last newline (a record being written, or cut off by
    /// a crash): the end for now.
    Partial(usize),
    /// Nothing more.
    End,
}

/// A log file read one line at a time, each line at most
/// [`MAX_RECORD_BYTES`] (newline included): a longer line is an error
/// naming it. After a [`Line::Partial`], a later call goes on with the same
/// line, so a log still being written can be followed.
pub(super) struct Lines {
    reader: BufReader<File>,
    path: PathBuf,
    /// Whole lines read (counting those before the starting offset).
    line: usize,
    buf: Vec<u8>,
    /// Whether `buf` holds a whole line, to be cleared before the next.
    whole: bool,
    /// Byte offset of the line in `buf`.
    start: u64,
}

impl Lines {
    /// The log file at `path`, opened with [`open`].
    pub(super) fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_at(path, 0)
    }

    /// The log file at `path` from byte `offset` (the start of a line) on;
    /// lines are still numbered from the start of the file.
    pub(super) fn open_at(path: &Path, offset: u64) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = BufReader::with_capacity(64 * 1024, open(path)?);
        let mut line = 0;
        if offset > 0 {
            // Count the lines before it, for errors that name a line.
            let mut left = offset;
            while left > 0 {
                let buf = reader.fill_buf().map_err(io)?;
                if buf.is_empty() {
                    break;
                }
                let n = buf.len().min(left as usize);
                line += buf[..n].iter().filter(|&&b| b == b'\n').count();
                reader.consume(n);
                left -= n as u64;
            }
        }
        Ok(Self {
            reader,
            path: path.to_path_buf(),
            line,
            buf: Vec::new(),
            whole: false,
            start: offset,
        })
    }

    /// Byte offset of the next line to be read (or of the partial line
    /// being read).
    pub(super) fn offset(&self) -> u64 {
        if self.whole {
            self.start + self.buf.len() as u64
        } else {
            self.start
        }
    }

    /// The next line.
    pub(super) fn next_line(&mut self) -> Result<Line<'_>, AuditError> {
        if self.whole {
            self.start += self.buf.len() as u64;
            self.buf.clear();
            self.whole = false;
        }
        let room = (MAX_RECORD_BYTES - self.buf.len()) as u64;
        (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| AuditError::Io {
                path: self.path.clone(),
                source,
            })?;
        if self.buf.last() == Some(&b'\n') {
            self.whole = true;
            self.line += 1;
            return Ok(Line::Whole(&self.buf[..self.buf.len() - 1]));
        }
        if self.buf.len() >= MAX_RECORD_BYTES {
            return Err(AuditError::Bad {
                path: self.path.clone(),
                line: self.line + 1,
                reason: format!(
                    "the line is longer than {MAX_RECORD_BYTES} bytes, the longest a record can be"
                ),
            });
        }
        Ok(if self.buf.is_empty() {
            Line::End
        } else {
            Line::Partial(self.buf.len())
        })
    }

    /// The last whole line read (without its newline) and its offset.
    pub(super) fn current(&self) -> (&[u8], u64) {
        let end = self.buf.len().saturating_sub(usize::from(self.whole));
        (&self.buf[..end], self.start)
    }

    /// The error for the last whole line read.
    pub(super) fn bad(&self, reason: String) -> AuditError {
        AuditError::Bad {
            path: self.path.clone(),
            line: self.line,
            reason,
        }
    }

    /// The error for the line after the last whole one.
    pub(super) fn bad_next(&self, reason: String) -> AuditError {
        AuditError::Bad {
            path: self.path.clone(),
            line: self.line + 1,
            reason,
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whole records, all verified.
    pub records: u64,
    /// The first record's `seq`: 1, or later when older segments were
    /// removed by retention (the log then starts with a checkpoint).
    pub first_seq: u64,
    /// The last record's `seq` (0 for an empty log).
    pub last_seq: u64,
    /// Hash of the last record (the chain head).
    pub head: String,
    /// Bytes of a partial last line (a crash mid-write), ignored.
    pub partial_tail_bytes: u64,
    /// Segment files read.
    pub segments: usize,
    /// When the log starts after record 1: the head its first checkpoint
    /// covers, which verification started from (what came before was
    /// removed by retention).
    pub anchor: Option<Head>,
}

/// A chain head: the sequence number and hash of a log's last record, as
/// `audit verify` prints it (`SEQ:HASH`). Kept somewhere the log's writer
/// cannot reach, it detects a log whose tail was cut off.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
            seq: self.last_seq,
            hash: self.head.clone(),
        }
    }
}

/// [`verify`], and check that the log holds `expected` — the record with
/// that sequence number has that hash — so a log cut back to before a head
/// kept elsewhere is detected. A log that has grown past it passes. A head
/// older than the log's first record (in segments retention removed) is
/// covered by the checkpoint the log starts with and cannot be checked by
/// hash: it passes, and [`Verified::anchor`] says where the log starts.
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
    if let Some(anchor) = &v.anchor {
        if expected.seq < anchor.seq {
            return Ok(v);
        }
        if expected.seq == anchor.seq {
            found = Some(anchor.hash.clone());
        }
    }
    match found {
        None => Err(mismatch(format!(
            "the log ends at record {}, before the expected head {}: records were cut from its end",
            v.last_seq, expected.seq
        ))),
        Some(hash) if hash != expected.hash => Err(mismatch(format!(
            "record {} has hash {hash}, not the expected {}: the log was rewritten",
            expected.seq, expected.hash
        ))),
        Some(_) => Ok(v),
    }
}

/// Verify a log (a directory of segments, or a single file): every whole
/// line a record whose `seq`, `prev_hash` and `hash` are right, each
/// segment starting at the record its name says and linking to the one
/// before. The log starts at record 1 on the genesis hash, or, when
/// retention removed its oldest segments, with a checkpoint whose covered
/// head is the first record's `prev_hash`. A partial last line (no
/// newline) is reported, not counted. Deleting records from the end leaves
/// a valid, shorter log: check against a head kept elsewhere with
/// [`verify_against`].
pub fn verify(path: impl AsRef<Path>) -> Result<Verified, AuditError> {
    verify_each(path.as_ref(), |_, _| {})
}

/// [`verify`], calling `each(seq, hash)` for every good record.
fn verify_each(path: &Path, mut each: impl FnMut(u64, &str)) -> Result<Verified, AuditError> {
    let layout = Layout::find(path)?;
    walk(&layout, 0, 0, None, |seq, hash, _| {
        each(seq, hash);
        Ok(true)
    })
}

/// Where a [`walk`] starts checking the chain: the record before the
/// first one it reads.
#[derive(Debug, Clone)]
pub(super) struct Anchor {
    /// The head the first record must follow.
    pub head: Head,
    /// Whether that head is given by a checkpoint the walk starts with
    /// (rather than being record 0, the genesis).
    pub by_checkpoint: bool,
}

/// Check the chain of `layout` from byte `offset` of segment `segment` on,
/// handing `each` every good record (its `seq`, `hash` and the record)
/// until it answers `false`.
/// `anchor` is the head the first record must follow; `None` takes the
/// log's start: genesis, or the checkpoint a retained log starts with.
pub(super) fn walk(
    layout: &Layout,
    segment: usize,
    offset: u64,
    anchor: Option<Anchor>,
    mut each: impl FnMut(u64, &str, &Value) -> Result<bool, AuditError>,
) -> Result<Verified, AuditError> {
    let mut cursor = Cursor::new(layout, segment, offset)?;
    let mut head: Option<Head> = anchor.as_ref().map(|a| a.head.clone());
    let mut anchor_head = anchor.filter(|a| a.by_checkpoint).map(|a| a.head);
    // A log found to start after record 1 must say, in a `retention`
    // record, that the records before it were removed.
    let mut removal_unrecorded: Option<(u64, PathBuf)> = None;
    let mut records = 0u64;
    let mut first_seq = None;
    let mut current_segment = usize::MAX;
    let mut segments = 0;
    while let Some(at) = cursor.next_line()? {
        let record: Value = match serde_json::from_slice(at.line) {
            Ok(record) => record,
            Err(e) => return Err(cursor.bad(format!("not a JSON record: {e}"))),
        };
        let seq = record["seq"].as_u64();
        let prev = record["prev_hash"].as_str().unwrap_or_default();
        let expected = match &head {
            Some(h) => match h.seq.checked_add(1) {
                Some(next) => next,
                None => return Err(cursor.bad("the sequence number overflows".into())),
            },
            None => match seq {
                // The log's first record: 1 on the genesis hash, or a
                // checkpoint that covers the records before it.
                Some(first) if first > 1 => match super::checkpoint::covers(&record) {
                    Some(c) if c.seq.checked_add(1) == Some(first) && c.hash == prev => {
                        anchor_head = Some(c.clone());
                        removal_unrecorded =
                            Some((c.seq, layout.segments[at.segment].path.clone()));
                        head = Some(c);
                        first
                    }
                    _ => {
                        return Err(cursor.bad(format!(
                            "the log starts at record {first}, which is not a checkpoint covering record {}: records 1 to {} are missing",
                            first - 1,
                            first - 1
                        )));
                    }
                },
                _ => {
                    head = Some(Head {
                        seq: 0,
                        hash: GENESIS.to_string(),
                    });
                    1
                }
            },
        };
        let head_now = head.as_ref().expect("set above");
        if seq != Some(expected) {
            return Err(cursor.bad(format!(
                "sequence number is {}, expected {} (a record was deleted, inserted, duplicated or moved)",
                record["seq"], expected
            )));
        }
        if at.segment != current_segment {
            current_segment = at.segment;
            segments += 1;
            if layout.dir.is_some() && at.offset == 0 {
                let named = layout.segments[at.segment].first_seq;
                if named != expected {
                    return Err(cursor.bad(format!(
                        "the segment is named for record {named} but starts at record {expected}"
                    )));
                }
            }
        }
        if prev != head_now.hash {
            return Err(cursor.bad(
                "prev_hash does not match the previous record's hash (the chain is broken)".into(),
            ));
        }
        let claimed = record["hash"].as_str().unwrap_or_default();
        let actual = record_hash(&record);
        if claimed != actual {
            return Err(cursor.bad(format!(
                "hash does not match the record's contents (a field was edited): claimed {claimed}, computed {actual}"
            )));
        }
        first_seq.get_or_insert(expected);
        records += 1;
        if let Some((removed_to, _)) = &removal_unrecorded
            && record["operation"].as_str() == Some("retention")
            && record["params"]["first_seq"]
                .as_u64()
                .is_some_and(|first| first <= *removed_to)
            && record["params"]["last_seq"]
                .as_u64()
                .is_some_and(|last| last >= *removed_to)
        {
            removal_unrecorded = None;
        }
        let go_on = each(expected, &actual, &record)?;
        head = Some(Head {
            seq: expected,
            hash: actual,
        });
        if !go_on {
            break;
        }
    }
    if let Some((removed_to, path)) = removal_unrecorded {
        return Err(AuditError::Bad {
            path,
            line: 1,
            reason: format!(
                "the log starts after record {removed_to}, at a checkpoint, but no retention record in it says records up to {removed_to} were removed: segments were taken away"
            ),
        });
    }
    // Segments after the last record read (empty ones) count as read.
    let total = layout.segments.len().saturating_sub(segment);
    let head = head.unwrap_or(Head {
        seq: 0,
        hash: GENESIS.to_string(),
    });
    Ok(Verified {
        records,
        first_seq: first_seq.unwrap_or(head.seq + 1),
        last_seq: head.seq,
        head: head.hash,
        partial_tail_bytes: cursor.partial_tail_bytes,
        segments: total.max(segments),
        anchor: anchor_head,
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
            "storage" | "storage_denied" => "storage_access",
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
/// version does not know, and checkpoints, are left out). Holds them all:
/// for a log of any length, replay it with [`crate::report::from_log`].
pub fn events(path: impl AsRef<Path>) -> Result<Vec<Record>, AuditError> {
    let mut out = Vec::new();
    each_record(path.as_ref(), |record| {
        if let Some(record) = Record::from_json(&record) {
            out.push(record);
        }
    })?;
    Ok(out)
}

/// Every whole record of the log that passes `filter`, in order.
pub fn read(path: impl AsRef<Path>, filter: &Filter) -> Result<Vec<Value>, AuditError> {
    let mut out = Vec::new();
    for_each(path, filter, |record| out.push(record))?;
    Ok(out)
}

/// Hand every whole record of the log that passes `filter` to `each`, in
/// order, one at a time (memory stays bounded whatever the log's length).
pub fn for_each(
    path: impl AsRef<Path>,
    filter: &Filter,
    mut each: impl FnMut(Value),
) -> Result<(), AuditError> {
    each_record(path.as_ref(), |record| {
        if filter.matches(&record) {
            each(record);
        }
    })
}

/// Hand each whole record of the log at `path`, across its segments, to
/// `each`, as JSON. A partial last line (which `verify` reports and does
/// not count) is left: read as bytes, it may hold anything.
pub(super) fn each_record(path: &Path, mut each: impl FnMut(Value)) -> Result<(), AuditError> {
    let layout = Layout::find(path)?;
    let mut cursor = Cursor::new(&layout, 0, 0)?;
    while let Some(at) = cursor.next_line()? {
        match serde_json::from_slice(at.line) {
            Ok(record) => each(record),
            Err(e) => return Err(cursor.bad(format!("not a JSON record: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, SystemTime};

    use super::super::record::append_record;
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chassis-read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Every way of reading a log, each on a thread of its own: the errors,
    /// or `None` for a read still waiting after five seconds.
    fn read_every_way(path: &Path) -> Vec<(&'static str, Option<String>)> {
        type Read = fn(&Path) -> Result<(), AuditError>;
        let ways: [(&str, Read); 5] = [
            ("verify", |p| verify(p).map(drop)),
            ("verify_against", |p| {
                verify_against(
                    p,
                    &Head {
                        seq: 0,
                        hash: GENESIS.into(),
                    },
                )
                .map(drop)
            }),
            ("read", |p| read(p, &Filter::default()).map(drop)),
            ("events", |p| events(p).map(drop)),
            ("tail", |p| {
                super::super::tail(p, 10, 1 << 20, |_| true).map(drop)
            }),
        ];
        let waiting: Vec<_> = ways
            .into_iter()
            .map(|(name, way)| {
                let (tx, rx) = mpsc::channel();
                let path = path.to_path_buf();
                std::thread::spawn(move || {
                    let _ = tx.send(way(&path).err().map(|e| e.to_string()));
                });
                (name, rx)
            })
            .collect();
        waiting
            .into_iter()
            .map(|(name, rx)| {
                let answer = rx.recv_timeout(Duration::from_secs(5)).ok();
                (name, answer.map(|e| e.unwrap_or_else(|| "no error".into())))
            })
            .collect()
    }

    /// A fifo (with no writer) or a device given as the log, or as one of
    /// its segments, is refused at once, saying what it is: no read waits
    /// on it. A directory without segments is refused, saying so.
    #[test]
    fn a_fifo_or_device_given_as_the_log_is_refused_at_once() {
        let dir = scratch("fifo");
        let fifo = dir.join("audit.jsonl");
        let segmented = dir.join("log");
        std::fs::create_dir(&segmented).unwrap();
        let fifo_segment = segmented.join(super::super::segment_name(1));
        for path in [&fifo, &fifo_segment] {
            let status = std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let empty = dir.join("empty");
        std::fs::create_dir(&empty).unwrap();
        for (path, what, named) in [
            (fifo.as_path(), "is a fifo", fifo.as_path()),
            (segmented.as_path(), "is a fifo", fifo_segment.as_path()),
            (
                Path::new("/dev/zero"),
                "is a character device",
                Path::new("/dev/zero"),
            ),
            (
                empty.as_path(),
                "holds no audit log segment",
                empty.as_path(),
            ),
        ] {
            for (way, error) in read_every_way(path) {
                let error = error
                    .unwrap_or_else(|| panic!("{way} of {} still waits after 5 s", path.display()));
                assert!(
                    error.contains(what) && error.contains(&named.display().to_string()),
                    "{way}: {error}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A line longer than a record can be is refused, naming its line,
    /// without reading all of it; one just short enough is read.
    #[test]
    fn a_line_longer_than_a_record_can_be_is_refused_naming_it() {
        let dir = scratch("long");
        let path = dir.join("audit.jsonl");
        let mut text = String::new();
        let event = Event::TaskStart {
            swarm_id: "s".into(),
            task_id: "t".into(),
            task_type: "echo".into(),
        };
        let head = append_record(&mut text, 1, GENESIS, SystemTime::now(), &event, None);
        // Line 2: a record whose (made-up) field makes it a byte too long.
        let mut long = serde_json::json!({"seq": 2, "prev_hash": head, "pad": ""});
        let pad = MAX_RECORD_BYTES - long.to_string().len() - 1 + 1;
        long["pad"] = Value::from("x".repeat(pad));
        let long = long.to_string();
        assert_eq!(long.len() + 1, MAX_RECORD_BYTES + 1);
        std::fs::write(&path, format!("{text}{long}\n")).unwrap();
        for (way, error) in read_every_way(&path) {
            if way == "tail" {
                // Bounded by its own byte limit; not a stream of lines.
                continue;
            }
            let error = error.unwrap();
            assert!(
                error.contains("line 2") && error.contains("longer than 1048576 bytes"),
                "{way}: {error}"
            );
        }
        // Also when it is the last line, without a newline: not a partial
        // record to skip.
        std::fs::write(&path, format!("{text}{long}")).unwrap();
        let error = verify(&path).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        // A byte shorter: it is read (and is a bad record, as it should be).
        let short = long.replacen("xx", "x", 1);
        std::fs::write(&path, format!("{text}{short}\n")).unwrap();
        let error = verify(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("hash"),
            "{error}"
        );
        assert_eq!(read(&path, &Filter::default()).unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
