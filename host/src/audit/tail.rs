//! The end of a log being written: its newest records (`tail`), read back
//! from the last segment's end, each byte once and at most a given number
//! of them, with the chain head and a check of the chain over what was
//! read — what the status page and `/v1/audit` show.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::read::{Head, open};
use super::record::record_hash;
use super::segments::Layout;
use super::{AuditError, GENESIS};

/// The end of a log: what [`tail`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    /// The last whole record's number and hash; `None` for an empty log,
    /// or one whose last whole line is not a record.
    pub head: Option<Head>,
    /// The newest records that passed the filter, newest first.
    pub records: Vec<Value>,
    /// Whether every record read (filtered out or not) has the hash of its
    /// contents and links to the one before it, and, when the whole log
    /// was read, whether it starts at record 1 on the genesis hash; the
    /// reason where not.
    pub chain: Result<(), String>,
    /// Bytes of the log read, from its end.
    pub scanned_bytes: u64,
}

/// The newest `limit` whole records of the log at `path` that pass `keep`,
/// reading back from its end, each byte once, at most `max_bytes`: for
/// showing a log that is being written without reading all of it. A
/// partial last line (a record being written) is left out. The records
/// read are checked as [`verify`](super::verify) checks a whole log, within what was
/// read; a log longer than `max_bytes` is not verified from its start.
pub fn tail(
    path: impl AsRef<Path>,
    limit: usize,
    max_bytes: u64,
    keep: impl Fn(&Value) -> bool,
) -> Result<Tail, AuditError> {
    let layout = Layout::find(path.as_ref())?;
    let mut back = Backwards::new(limit);
    let mut scanned = 0u64;
    let n = layout.segments.len();
    for (i, segment) in layout.segments.iter().enumerate().rev() {
        let (read, stopped, whole) = tail_file(
            &segment.path,
            max_bytes - scanned,
            &mut back,
            &keep,
            i + 1 == n,
        )?;
        scanned += read;
        if i == 0 && whole && !stopped {
            back.at_start();
        }
        if back.done() || !whole || scanned >= max_bytes {
            break;
        }
    }
    Ok(Tail {
        scanned_bytes: scanned,
        ..back.tail
    })
}

/// [`tail`] over one segment file, at most `max_bytes` of it, from its
/// end: the bytes read, whether the walk stopped with lines in hand still
/// unread, and whether the whole file was read.
fn tail_file(
    path: &Path,
    max_bytes: u64,
    back: &mut Backwards,
    keep: &impl Fn(&Value) -> bool,
    mut last: bool,
) -> Result<(u64, bool, bool), AuditError> {
    const CHUNK: u64 = 64 * 1024;
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = open(path)?;
    let len = file.metadata().map_err(io)?.len();
    let floor = len.saturating_sub(max_bytes);
    // The bytes after `pos` not yet taken: the start of a line whose
    // beginning lies before `pos`.
    let mut rest: Vec<u8> = Vec::new();
    let mut pos = len;
    // Whether the walk stopped with lines in hand still unread.
    let mut stopped = false;
    while pos > floor && !back.done() {
        let from = pos.saturating_sub(CHUNK).max(floor);
        let mut chunk = vec![0; (pos - from) as usize];
        file.seek(SeekFrom::Start(from)).map_err(io)?;
        file.read_exact(&mut chunk).map_err(io)?;
        chunk.extend_from_slice(&rest);
        pos = from;
        if last {
            // A record being written, after the last newline.
            match chunk.iter().rposition(|&b| b == b'\n') {
                Some(end) => chunk.truncate(end + 1),
                None => {
                    rest.clear();
                    continue;
                }
            }
            last = false;
        }
        let mut lines: Vec<&[u8]> = chunk.split_inclusive(|&b| b == b'\n').collect();
        // The first line may have begun before `from`.
        let first = if pos > 0 && !lines.is_empty() {
            lines.remove(0).to_vec()
        } else {
            Vec::new()
        };
        for (i, line) in lines.iter().enumerate().rev() {
            back.line(line, keep);
            if back.done() {
                stopped = i > 0;
                break;
            }
        }
        rest = first;
    }
    Ok((len - pos, stopped, pos == 0))
}

/// [`tail`]'s walk from the newest record back.
struct Backwards {
    tail: Tail,
    limit: usize,
    /// The record read just before (one newer): its `seq` and `prev_hash`.
    newer: Option<(u64, String)>,
    /// The head the record read just before covers, if it is a checkpoint.
    newer_covers: Option<Head>,
    /// Whether any line was read.
    seen: bool,
}

impl Backwards {
    fn new(limit: usize) -> Self {
        Self {
            tail: Tail {
                head: None,
                records: Vec::new(),
                chain: Ok(()),
                scanned_bytes: 0,
            },
            limit,
            newer: None,
            newer_covers: None,
            seen: false,
        }
    }

    /// Enough records, and the newest line (the head) read.
    fn done(&self) -> bool {
        self.seen && self.tail.records.len() >= self.limit
    }

    /// The next line back (with its newline).
    fn line(&mut self, line: &[u8], keep: &impl Fn(&Value) -> bool) {
        let newest = !self.seen;
        self.seen = true;
        let Ok(record) = serde_json::from_slice::<Value>(line) else {
            self.broken("a line is not a JSON record".into());
            self.newer = None;
            return;
        };
        let seq = record["seq"].as_u64().unwrap_or(0);
        let hash = record["hash"].as_str().unwrap_or_default().to_string();
        if self.tail.chain.is_ok() {
            if record_hash(&record) != hash {
                self.broken(format!("record {seq}'s hash does not match its contents"));
            } else if let Some((newer_seq, newer_prev)) = &self.newer
                && (Some(*newer_seq) != seq.checked_add(1) || *newer_prev != hash)
            {
                self.broken(format!("record {newer_seq} does not follow record {seq}"));
            }
        }
        if newest {
            self.tail.head = Some(Head {
                seq,
                hash: hash.clone(),
            });
        }
        let prev = record["prev_hash"].as_str().unwrap_or_default().to_string();
        self.newer_covers = super::checkpoint::covers(&record);
        self.newer = Some((seq, prev));
        if self.tail.records.len() < self.limit && keep(&record) {
            self.tail.records.push(record);
        }
    }

    /// The whole log was read: its oldest record must be the first.
    fn at_start(&mut self) {
        let Some((seq, prev)) = &self.newer else {
            return;
        };
        let genesis = *seq == 1 && prev == GENESIS;
        let checkpoint = self
            .newer_covers
            .as_ref()
            .is_some_and(|c| c.seq + 1 == *seq && c.hash == *prev);
        if !(genesis || checkpoint) {
            let seq = *seq;
            self.broken(format!(
                "the log starts at record {seq}, not at record 1 on the genesis hash nor with a checkpoint"
            ));
        }
    }

    fn broken(&mut self, reason: String) {
        if self.tail.chain.is_ok() {
            self.tail.chain = Err(reason);
        }
    }
}
