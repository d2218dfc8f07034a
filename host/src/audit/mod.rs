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
//! The writer takes what is queued (up to `MAX_BATCH` records), numbers
//! and hashes each record, appends them with one write and flushes, calls
//! `fsync` as the [`FsyncPolicy`] says, then lets the next records gather for
//! `BATCH_LINGER` before it takes them. Tasks therefore rarely have to wake
//! the writer, and a record reaches the file within about a millisecond.
//! Under [`FsyncPolicy::Always`], `record` returns only once its record is
//! on disk (group commit: one `fsync` covers a batch). The writer also feeds
//! each record to a [`Replay`](crate::replay::Replay), the swarms' SLO and
//! reputation state as a replay of the log gives it: a host restores a
//! swarm from it ([`AuditLog::history`]) without reading the log.
//!
//! The log is a directory of segments. The writer closes the segment it
//! writes at a size or age, starts the next with a checkpoint (the
//! replay's state, in the chain), writes one at a clean close too, and
//! applies [`Retention`]. Opening a log takes an exclusive lock on it (a
//! second writer would fork the chain), restores the state from the newest
//! checkpoint that holds and replays the records after it, checks the chain
//! from there and the segment it continues, drops a partial last line (a
//! crash mid-write), and continues the chain.
//!
//! If the log cannot be written (a full disk, say) or has been closed, it
//! reports a failure ([`EventSink::failure`]) and the host refuses new loads
//! and tasks rather than run them unrecorded.
//!
//! By concern: `record` (the encoding of one record, its hash, timestamps,
//! and [`MAX_RECORD_BYTES`], the longest line written or read),
//! `writer` ([`AuditLog`] and its batching, fsync, segments, checkpoints
//! and failure handling), `segments` (the directory, its lock, a
//! single-file log made its first segment, lines across segments),
//! `checkpoint` (the checkpoint records, and reading a log back into a
//! replay from its newest checkpoint, its start or a range:
//! [`replay_into`]), `retention` (removing the oldest segments) and `read`
//! ([`verify`], the chain [`Head`], [`read`] with a [`Filter`], records back
//! as typed events, and [`tail`]; a log is streamed, line by line, from
//! regular files opened without blocking). The record encoding and the hex
//! formatting are written by hand because they run on the task path (two
//! records per task); `audit::tests` checks them against serde_json and a
//! full round trip. Timestamps are written and parsed with the `time`
//! crate.
//!
//! [`EventSink`]: crate::EventSink
//! [`EventSink::failure`]: crate::EventSink::failure

mod appender;
mod checkpoint;
mod read;
mod record;
mod retention;
mod segments;
mod stamp;
mod tail;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use checkpoint::{CHECKPOINT, CHECKPOINT_SWARM, From, Restored};
pub use read::{Filter, Head, Record, Verified, events, for_each, read, verify, verify_against};
pub use record::MAX_RECORD_BYTES;
#[cfg(any(feature = "cli", test))]
pub(crate) use record::parse_rfc3339;
pub use tail::{Tail, tail};
// For the project's own tests and tools, which check and date records.
pub use appender::PAUSE_ENV;
#[doc(hidden)]
pub use record::{record_hash, rfc3339};
pub use segments::{ARCHIVE_DIR, Segment, segment_name};
pub use writer::{AuditLog, AuditOptions, Retention};

/// A segment is closed once it holds this many bytes (32 MiB, about
/// 100,000 records): the most a restart after a crash replays.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// A segment is closed once its first record is this old (a day).
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Read the log at `path` into `replay` from `from` on (the newest
/// checkpoint, the log's start, or a range of records), checking the chain
/// of what is read, one record at a time: memory stays bounded by the
/// number of swarms, whatever the log's length.
pub fn replay_into(
    path: impl AsRef<std::path::Path>,
    replay: &mut crate::replay::Replay,
    from: From,
) -> Result<Restored, AuditError> {
    let layout = segments::Layout::find(path.as_ref())?;
    checkpoint::restore(&layout, replay, from)
}

/// The segments of the log at `path`, oldest first (a single-file log is
/// one, starting at record 1).
pub fn segments(path: impl AsRef<std::path::Path>) -> Result<Vec<Segment>, AuditError> {
    Ok(segments::Layout::find(path.as_ref())?.segments)
}

/// `component` of every record.
pub const COMPONENT: &str = "IF.chassis";

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records that may wait for the writer before `record` blocks.
pub(crate) const QUEUE_CAPACITY: usize = 4096;

/// Most records the writer appends with one write.
pub(crate) const MAX_BATCH: usize = 512;

/// How long the writer lets records gather after writing a batch.
pub(crate) const BATCH_LINGER: Duration = Duration::from_millis(1);

/// When the writer calls `fsync`.
///
/// Under every policy but `Always`, records still in the queue (at most
/// `QUEUE_CAPACITY` + `MAX_BATCH`, normally a millisecond's worth) are
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::Value;

    use std::time::UNIX_EPOCH;

    use super::read::*;
    use super::record::*;
    use super::*;
    use crate::events::Event;
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

    /// One event of every kind, both sides of each option.
    fn sample_events() -> Vec<Event> {
        use crate::limits::LimitKind;
        let s = || "s".to_string();
        let t = || "t".to_string();
        vec![
            Event::ModuleLoaded {
                swarm_id: s(),
                origin: "o".into(),
                digest: "d".into(),
                task_types: vec!["a".into()],
                settings: Some(
                    crate::ServiceContract::builder("s")
                        .build()
                        .unwrap()
                        .health_settings(),
                ),
            },
            Event::ModuleLoaded {
                swarm_id: s(),
                origin: "o".into(),
                digest: "d".into(),
                task_types: vec!["a".into()],
                settings: None,
            },
            Event::ModuleReplaced {
                swarm_id: s(),
                origin: "o".into(),
                digest: "d2".into(),
                previous_digest: "d".into(),
                task_types: vec!["a".into()],
                settings: None,
            },
            Event::TaskAbandoned {
                swarm_id: s(),
                task_id: t(),
                deliveries: 6,
            },
            Event::LoadRejected {
                swarm_id: s(),
                reason: "r".into(),
            },
            Event::ModuleUnloaded { swarm_id: s() },
            Event::Deployment {
                swarm_id: s(),
                action: "deploy".into(),
                bundle: Some("b".into()),
                version: Some("1.0.0".into()),
                component: Some("c".into()),
                deployer: "k".into(),
                generation: 2,
                placed: true,
            },
            Event::Deployment {
                swarm_id: s(),
                action: "undeploy".into(),
                bundle: None,
                version: None,
                component: None,
                deployer: "k".into(),
                generation: 3,
                placed: false,
            },
            Event::DeploymentRefused {
                swarm_id: s(),
                bundle: Some("b".into()),
                kind: "digest".into(),
                reason: "r".into(),
            },
            Event::DeploymentRefused {
                swarm_id: s(),
                bundle: None,
                kind: "signature".into(),
                reason: "r".into(),
            },
            Event::TaskRouted {
                swarm_id: s(),
                task_id: t(),
                capability: "code-analysis:python".into(),
                eligible: 2,
                draw: 0.25,
            },
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
            Event::CredentialRepeated {
                swarm_id: s(),
                task_id: t(),
                key: "k".into(),
                operation: "get".into(),
                repeats: 1999,
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
            Event::StorageAccess {
                swarm_id: s(),
                task_id: t(),
                operation: "set".into(),
                name: "docs/a".into(),
                allowed: true,
                bytes: 12,
                reason: None,
                security_violation: false,
            },
            Event::StorageAccess {
                swarm_id: s(),
                task_id: t(),
                operation: "get".into(),
                name: "../x".into(),
                allowed: false,
                bytes: 0,
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
            Event::ConcurrencyChanged {
                swarm_id: s(),
                task_id: t(),
                from: 8,
                to: 4,
                reason: "r".into(),
            },
            Event::CircuitChanged {
                swarm_id: s(),
                task_id: t(),
                state: "open".into(),
                reason: "r".into(),
                cool_down_seconds: Some(30.0),
            },
            Event::CircuitChanged {
                swarm_id: s(),
                task_id: String::new(),
                state: "closed".into(),
                reason: "r".into(),
                cool_down_seconds: None,
            },
            Event::RateLimited {
                swarm_id: s(),
                task_id: t(),
                import: "log".into(),
            },
        ]
    }

    /// The events written field by field encode exactly as the generic
    /// path (serde to a value, keys sorted) encodes them, with hostile text
    /// and every kind of number.
    #[test]
    fn hot_events_encode_as_the_generic_path_does() {
        let nasty = [
            "",
            "plain",
            "q\"uote\\back\nline\ttab\r\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}</script>",
            "ünï©ødé \u{2028} 🦀",
        ];
        let numbers = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            123456.789,
            1e21,
            f64::NAN,
            f64::INFINITY,
        ];
        let mut events = sample_events();
        for (i, text) in nasty.iter().enumerate() {
            let text = text.to_string();
            let n = numbers[i % numbers.len()];
            events.push(Event::TaskStart {
                swarm_id: text.clone(),
                task_id: text.clone(),
                task_type: text.clone(),
            });
            events.push(Event::TaskFailed {
                swarm_id: text.clone(),
                task_id: text.clone(),
                kind: text.clone(),
                error: text.clone(),
                guest_error: (i % 2 == 0).then(|| text.clone()),
                wall_ms: n,
            });
            events.push(Event::CredentialAccess {
                swarm_id: text.clone(),
                task_id: text.clone(),
                key: text.clone(),
                operation: text.clone(),
                allowed: i % 2 == 0,
                reason: (i % 2 == 1).then(|| text.clone()),
                security_violation: i % 3 == 0,
            });
            events.push(Event::HttpProxy {
                swarm_id: text.clone(),
                task_id: text.clone(),
                allowed: i % 2 == 1,
                method: text.clone(),
                url: text.clone(),
                status: (i % 2 == 0).then_some(599),
                bytes_out: u64::MAX,
                bytes_in: i as u64,
                elapsed_ms: n,
                reason: (i % 2 == 0).then(|| text.clone()),
                security_violation: i % 2 == 0,
            });
            events.push(Event::RateLimited {
                swarm_id: text.clone(),
                task_id: text.clone(),
                import: text.clone(),
            });
        }
        for n in numbers {
            events.push(Event::TaskComplete {
                swarm_id: "s".into(),
                task_id: "t".into(),
                wall_ms: n,
            });
        }
        for event in &events {
            let mut fast = String::new();
            record::write_params(&mut fast, event);
            let generic = canonical(&record::params(event));
            assert_eq!(fast, generic, "{event:?}");
            serde_json::from_str::<Value>(&fast).unwrap();
        }
    }

    /// Every kind of event, written as a record, reads back as itself.
    #[test]
    fn every_event_reads_back_from_its_record() {
        for (i, event) in sample_events().into_iter().enumerate() {
            let mut text = String::new();
            append_record(
                &mut text,
                i as u64 + 1,
                GENESIS,
                SystemTime::now(),
                &event,
                None,
            );
            let value: Value = serde_json::from_str(&text).unwrap();
            let record = Record::from_json(&value).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(record.event, event, "{text}");
            assert_eq!(record.seq, i as u64 + 1);
        }
    }

    /// `tail` gives the newest records that pass, newest first, the head,
    /// leaves out a partial last line, reads back only as far as it needs,
    /// and finds an edited or missing record within what it read.
    #[test]
    fn the_tail_of_a_log_is_its_newest_records_and_a_checked_chain() {
        let mut text = String::new();
        let mut head = GENESIS.to_string();
        for seq in 1..=2000u64 {
            let event = Event::TaskStart {
                swarm_id: if seq % 2 == 0 { "even" } else { "odd" }.into(),
                task_id: format!("t{seq}"),
                task_type: "echo".into(),
            };
            head = append_record(&mut text, seq, &head, SystemTime::now(), &event, None);
        }
        let dir = std::env::temp_dir().join(format!("chassis-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        // A record being written: not shown, not the head.
        std::fs::write(&path, format!("{text}{{\"component\":\"IF.ch")).unwrap();
        let odd = |r: &Value| r["swarm_id"] == "odd";
        let t = tail(&path, 3, u64::MAX, odd).unwrap();
        assert_eq!(
            t.head,
            Some(Head {
                seq: 2000,
                hash: head.clone()
            })
        );
        let seqs: Vec<u64> = t
            .records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1999, 1997, 1995]);
        assert_eq!(t.chain, Ok(()));
        assert!(
            t.scanned_bytes < text.len() as u64 / 4,
            "{}",
            t.scanned_bytes
        );
        // Within a byte bound: fewer records, the same head.
        let t = tail(&path, 1000, 2000, odd).unwrap();
        assert!(
            !t.records.is_empty() && t.records.len() < 10,
            "{}",
            t.records.len()
        );
        assert_eq!(t.scanned_bytes, 2000);
        // The whole log, across chunk boundaries, each record once.
        let t = tail(&path, usize::MAX, u64::MAX, |_| true).unwrap();
        let seqs: Vec<u64> = t
            .records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=2000).rev().collect::<Vec<u64>>());
        assert_eq!(t.chain, Ok(()));
        // A record being written that is longer than a chunk.
        std::fs::write(&path, format!("{text}{{\"x\":\"{}", "y".repeat(200_000))).unwrap();
        let t = tail(&path, 2, u64::MAX, |_| true).unwrap();
        assert_eq!(
            t.head,
            Some(Head {
                seq: 2000,
                hash: head.clone()
            })
        );
        assert_eq!((t.records.len(), t.chain), (2, Ok(())));
        // A log whose first records were cut off, read whole.
        let cut: Vec<&str> = text.lines().skip(5).collect();
        std::fs::write(&path, cut.join("\n") + "\n").unwrap();
        let t = tail(&path, usize::MAX, u64::MAX, |_| true).unwrap();
        assert!(
            t.chain.as_ref().unwrap_err().contains("starts at record 6"),
            "{:?}",
            t.chain
        );
        // ... also when the last record wanted is its first line.
        let t = tail(&path, 1995, u64::MAX, |_| true).unwrap();
        assert_eq!(t.records.len(), 1995);
        let broken = t.chain.as_ref().unwrap_err();
        assert!(broken.contains("starts at record 6"), "{broken}");
        // No record wanted: still the head.
        let t = tail(&path, 0, u64::MAX, |_| true).unwrap();
        assert_eq!((t.head.unwrap().seq, t.records.len()), (2000, 0));
        // An edited record and a removed record are found.
        let edited = text.replacen("\"t1990\"", "\"tX990\"", 1);
        std::fs::write(&path, &edited).unwrap();
        let t = tail(&path, 50, u64::MAX, |_| true).unwrap();
        assert!(
            t.chain.as_ref().unwrap_err().contains("1990"),
            "{:?}",
            t.chain
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("\"t1995\"")).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let t = tail(&path, 50, u64::MAX, |_| true).unwrap();
        assert!(
            t.chain
                .as_ref()
                .unwrap_err()
                .contains("1996 does not follow record 1994"),
            "{:?}",
            t.chain
        );
        // An empty log.
        std::fs::write(&path, "").unwrap();
        let t = tail(&path, 5, u64::MAX, |_| true).unwrap();
        assert_eq!((t.head, t.records.len(), t.chain), (None, 0, Ok(())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_written_line_is_its_own_canonical_form_plus_the_hash() {
        let mut text = String::new();
        let event = Event::TaskStart {
            swarm_id: "s\"1".into(),
            task_id: "t\n1".into(),
            task_type: "echo".into(),
        };
        let hash = append_record(&mut text, 7, GENESIS, SystemTime::now(), &event, None);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let record: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(record["hash"], json!(hash));
        assert_eq!(record_hash(&record), hash);
        assert_eq!(record["seq"], json!(7));
        assert_eq!(record["operation"], json!("task_start"));
        assert_eq!(record["swarm_id"], json!("s\"1"));
        assert_eq!(record["task_id"], json!("t\n1"));
        assert_eq!(record["params"], json!({"task_type": "echo"}));
        assert!(record.get("worker").is_none());
        // A worker's name is a field like the others, in the hash.
        let mut named = String::new();
        let hash = append_record(
            &mut named,
            7,
            GENESIS,
            SystemTime::now(),
            &event,
            Some("w\"1"),
        );
        let record: Value = serde_json::from_str(named.trim_end()).unwrap();
        assert_eq!(record["worker"], json!("w\"1"));
        assert_eq!(record_hash(&record), hash);
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
