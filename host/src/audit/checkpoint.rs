//! Checkpoints: records in the chain that hold the state a restart needs,
//! so a host continues a log without reading all of it.
//!
//! A checkpoint is a run of records the writer appends in one write: a
//! marker (`operation` `checkpoint`, params `covers` — the `seq` and `hash`
//! of the record before it, the head it covers — `swarms`, how many state
//! records follow, and `reason`), then one `checkpoint_swarm` record per
//! swarm, holding that swarm's [`Replay::state`] after every record up to
//! the covered head. The writer writes one at the start of each new
//! segment (so a segment begins with the state of everything before it,
//! and retention can remove what came before) and at a clean shutdown.
//!
//! Restoring ([`restore`]) takes the newest checkpoint that holds: its
//! marker's covered head is the record before it (whose own hash is
//! checked when that record is still there), its state records all follow,
//! chained, and each is a state; then the chain is checked from the marker
//! to the end and the records after the checkpoint are fed to the replay.
//! A checkpoint that does not hold is named and passed over for the one
//! before it, back to a replay of the whole log. Checkpoint records are
//! never fed to a replay.
//!
//! Markers are found by reading a segment backwards for lines that begin
//! with the marker's fixed prefix: a record is written with its keys in
//! order and its text escaped, so no other line can begin so.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::replay::Replay;

use super::read::{Anchor, Head, Record, Verified, walk};
use super::record::{append_value_record, record_hash};
use super::segments::{Cursor, Layout};
use super::{AuditError, GENESIS};

/// `operation` of a checkpoint's marker.
pub const CHECKPOINT: &str = "checkpoint";

/// `operation` of a checkpoint's record of one swarm.
pub const CHECKPOINT_SWARM: &str = "checkpoint_swarm";

/// Most swarm states a checkpoint may say it holds.
const MAX_CHECKPOINT_SWARMS: u64 = 1 << 20;

/// How every marker line begins.
const MARKER_PREFIX: &[u8] = b"{\"component\":\"IF.chassis\",\"operation\":\"checkpoint\",";

/// The head a checkpoint marker covers, if `record` is a marker.
pub(super) fn covers(record: &Value) -> Option<Head> {
    if record["operation"].as_str() != Some(CHECKPOINT) {
        return None;
    }
    let c = &record["params"]["covers"];
    Some(Head {
        seq: c["seq"].as_u64()?,
        hash: c["hash"].as_str()?.to_string(),
    })
}

/// Whether `record` is part of a checkpoint.
pub(super) fn is_checkpoint(record: &Value) -> bool {
    matches!(
        record["operation"].as_str(),
        Some(CHECKPOINT | CHECKPOINT_SWARM)
    )
}

/// Append a checkpoint of `replay` covering record `*seq` (hash `*head`)
/// to `text`, numbering and chaining its records on from there.
pub(super) fn append(
    text: &mut String,
    seq: &mut u64,
    head: &mut String,
    ts: SystemTime,
    replay: &Replay,
    reason: &str,
    worker: Option<&str>,
) {
    let states = replay.state();
    let marker = json!({
        "covers": {"seq": *seq, "hash": head.as_str()},
        "swarms": states.len(),
        "reason": reason,
    });
    *seq += 1;
    *head = append_value_record(text, *seq, head, ts, CHECKPOINT, "", &marker, worker);
    for (swarm_id, state) in &states {
        *seq += 1;
        *head = append_value_record(
            text,
            *seq,
            head,
            ts,
            CHECKPOINT_SWARM,
            swarm_id,
            state,
            worker,
        );
    }
}

/// Whether segment `segment` of `layout` starts with a checkpoint that
/// holds (retention cuts only before such a segment).
pub(super) fn holds_at_start(layout: &Layout, segment: usize) -> bool {
    let mut scratch = Replay::new();
    load(layout, segment, 0, &mut scratch).is_ok()
}

/// Where reading a log back into a [`Replay`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The newest checkpoint that holds (what a restarting host does).
    Latest,
    /// The log's start: record 1, or the checkpoint a log whose oldest
    /// segments were removed starts with.
    Start,
    /// Only the records from `seq` to `seq` (both included), from an
    /// empty state.
    Range(u64, u64),
}

/// What reading a log back into a [`Replay`] read ([`super::replay_into`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The chain from where the reading started to the end, checked.
    pub verified: Verified,
    /// The head covered by the checkpoint the state came from (`None`:
    /// from the log's start, or an empty state).
    pub checkpoint: Option<Head>,
    /// Records fed to the replay.
    pub replayed: u64,
    /// Checkpoints passed over, newest first, and why.
    pub refused: Vec<String>,
    /// Where the checkpoint used is: its segment (index) and byte offset.
    pub checkpoint_at: Option<(usize, u64)>,
}

/// Check the chain of segment `segment` of `layout` from its start to the
/// log's end (its first record following the `prev_hash` it names).
pub(super) fn check_segment(layout: &Layout, segment: usize) -> Result<(), AuditError> {
    let anchor = first_prev(layout, segment)?;
    walk(layout, segment, 0, anchor, |_, _, _| Ok(true)).map(drop)
}

/// Read the log of `layout` into `replay` from `from` on, checking the
/// chain of what is read.
pub(super) fn restore(
    layout: &Layout,
    replay: &mut Replay,
    from: From,
) -> Result<Restored, AuditError> {
    let mut refused = Vec::new();
    match from {
        From::Latest => {
            for segment in (0..layout.segments.len()).rev() {
                let path = &layout.segments[segment].path;
                let mut before = std::fs::metadata(path)
                    .map_err(|source| AuditError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                while let Some(offset) = marker_before(path, before)? {
                    match load(layout, segment, offset, replay) {
                        Ok(covered) => {
                            return forward(
                                layout,
                                segment,
                                offset,
                                Some(covered),
                                replay,
                                refused,
                            );
                        }
                        Err(reason) => {
                            tracing::warn!(target: "chassis::audit", "{}: {reason}; an older checkpoint is used", path.display());
                            refused.push(reason);
                            replay.clear();
                            before = offset;
                        }
                    }
                }
            }
            start(layout, replay, refused)
        }
        From::Start => start(layout, replay, refused),
        From::Range(first, last) => {
            // The segment holding `first`.
            let segment = layout
                .segments
                .iter()
                .rposition(|s| s.first_seq <= first)
                .unwrap_or(0);
            let anchor = first_prev(layout, segment)?;
            let mut replayed = 0;
            let verified = walk(layout, segment, 0, anchor, |seq, _, record| {
                if (first..=last).contains(&seq)
                    && !is_checkpoint(record)
                    && let Some(r) = Record::from_json(record)
                {
                    replay.observe(r.ts_micros, &r.event);
                    replayed += 1;
                }
                // Not past the range: the rest is not read.
                Ok(seq < last)
            })?;
            Ok(Restored {
                verified,
                checkpoint: None,
                replayed,
                refused,
                checkpoint_at: None,
            })
        }
    }
}

/// From the log's start: record 1, or the checkpoint it starts with.
fn start(
    layout: &Layout,
    replay: &mut Replay,
    refused: Vec<String>,
) -> Result<Restored, AuditError> {
    let starts_with_checkpoint = first_prev(layout, 0)?.is_some_and(|a| a.head.seq > 0);
    if starts_with_checkpoint {
        let covered = load(layout, 0, 0, replay).map_err(|reason| AuditError::Bad {
            path: layout.segments[0].path.clone(),
            line: 1,
            reason: format!(
                "the log starts after record 1, and its first checkpoint does not hold: {reason}"
            ),
        })?;
        return forward(layout, 0, 0, Some(covered), replay, refused);
    }
    forward(layout, 0, 0, None, replay, refused)
}

/// Check the chain from byte `offset` of `segment` on and feed every
/// record that is not a checkpoint to `replay`.
fn forward(
    layout: &Layout,
    segment: usize,
    offset: u64,
    covered: Option<Head>,
    replay: &mut Replay,
    refused: Vec<String>,
) -> Result<Restored, AuditError> {
    let anchor = covered.clone().map(|head| Anchor {
        head,
        by_checkpoint: true,
    });
    let mut replayed = 0;
    let verified = walk(layout, segment, offset, anchor, |_, _, record| {
        if !is_checkpoint(record)
            && let Some(r) = Record::from_json(record)
        {
            replay.observe(r.ts_micros, &r.event);
            replayed += 1;
        }
        Ok(true)
    })?;
    Ok(Restored {
        checkpoint_at: covered.is_some().then_some((segment, offset)),
        verified,
        checkpoint: covered,
        replayed,
        refused,
    })
}

/// The `prev_hash` of the first record from `segment` on as an anchor
/// (`None` when no record follows).
fn first_prev(layout: &Layout, segment: usize) -> Result<Option<Anchor>, AuditError> {
    let mut cursor = Cursor::new(layout, segment, 0)?;
    let Some(at) = cursor.next_line()? else {
        return Ok(None);
    };
    let record: Value = serde_json::from_slice(at.line)
        .map_err(|e| cursor.bad(format!("not a JSON record: {e}")))?;
    let seq = record["seq"].as_u64().unwrap_or(1);
    let prev = record["prev_hash"].as_str().unwrap_or(GENESIS).to_string();
    Ok(Some(Anchor {
        head: Head {
            seq: seq.saturating_sub(1),
            hash: prev,
        },
        by_checkpoint: false,
    }))
}

/// Load the checkpoint whose marker is at byte `offset` of `segment` into
/// `replay`: the head it covers, or why it does not hold.
fn load(layout: &Layout, segment: usize, offset: u64, replay: &mut Replay) -> Result<Head, String> {
    let path = &layout.segments[segment].path;
    let at = |what: String| {
        format!(
            "the checkpoint at byte {offset} of {}: {what}",
            path.display()
        )
    };
    let mut cursor = Cursor::new(layout, segment, offset).map_err(|e| at(e.to_string()))?;
    let next = |cursor: &mut Cursor| -> Result<Option<Value>, String> {
        match cursor.next_line().map_err(|e| at(e.to_string()))? {
            Some(line) => serde_json::from_slice(line.line)
                .map(Some)
                .map_err(|e| at(format!("a record is not JSON: {e}"))),
            None => Ok(None),
        }
    };
    let marker = next(&mut cursor)?.ok_or_else(|| at("no marker".into()))?;
    let covered = covers(&marker).ok_or_else(|| at("the marker names no covered head".into()))?;
    let seq = marker["seq"].as_u64().unwrap_or(0);
    if covered.seq.checked_add(1) != Some(seq)
        || marker["prev_hash"].as_str() != Some(covered.hash.as_str())
    {
        return Err(at(format!(
            "it covers record {} but follows record {}",
            covered.seq,
            seq.saturating_sub(1)
        )));
    }
    if marker["hash"].as_str() != Some(record_hash(&marker).as_str()) {
        return Err(at("its marker's hash does not match its contents".into()));
    }
    // The record it covers, unless the checkpoint starts what is left of
    // a log (retention removed what came before).
    if let Some(before) = record_before(layout, segment, offset).map_err(at)? {
        let hash = record_hash(&before);
        if before["seq"].as_u64() != Some(covered.seq)
            || hash != covered.hash
            || before["hash"].as_str() != Some(hash.as_str())
        {
            return Err(at(format!(
                "record {} before it is not the head it covers",
                covered.seq
            )));
        }
    }
    let swarms = marker["params"]["swarms"]
        .as_u64()
        .filter(|n| *n <= MAX_CHECKPOINT_SWARMS)
        .ok_or_else(|| at("the marker does not say how many swarms it holds".into()))?;
    let mut prev = marker["hash"].as_str().unwrap_or_default().to_string();
    replay.clear();
    for expected in seq + 1..seq + 1 + swarms {
        let record = next(&mut cursor)?.ok_or_else(|| {
            at(format!(
                "it holds {} of its {swarms} swarms (a write cut short)",
                expected - seq - 1
            ))
        })?;
        let hash = record_hash(&record);
        if record["seq"].as_u64() != Some(expected)
            || record["prev_hash"].as_str() != Some(prev.as_str())
            || record["hash"].as_str() != Some(hash.as_str())
            || record["operation"].as_str() != Some(CHECKPOINT_SWARM)
        {
            return Err(at(format!("record {expected} is not its next swarm state")));
        }
        let swarm_id = record["swarm_id"].as_str().unwrap_or_default();
        replay
            .restore_swarm(swarm_id, &record["params"])
            .map_err(at)?;
        prev = hash;
    }
    Ok(covered)
}

/// The record just before byte `offset` of `segment` (the last of the
/// segment before when `offset` is 0); `None` only at the very start of
/// the log. A record that should be there and cannot be read is a reason
/// to refuse the checkpoint.
fn record_before(layout: &Layout, segment: usize, offset: u64) -> Result<Option<Value>, String> {
    let (path, end) = if offset > 0 {
        (&layout.segments[segment].path, offset)
    } else if segment > 0 {
        let path = &layout.segments[segment - 1].path;
        let len = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        (path, len)
    } else {
        return Ok(None);
    };
    let line = last_line_before(path, end)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "no whole record before it in {} (the record it covers is gone)",
                path.display()
            )
        })?;
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| format!("the record before it is not JSON: {e}"))
}

/// The whole line that ends (with its newline) at byte `end` of `path`.
fn last_line_before(path: &Path, end: u64) -> Result<Option<Vec<u8>>, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = super::read::open(path)?;
    let mut line = Vec::new();
    let mut pos = end;
    // Skip the newline that ends it.
    let mut first = true;
    while pos > 0 && line.len() <= super::MAX_RECORD_BYTES {
        let from = pos.saturating_sub(64 * 1024);
        let mut chunk = vec![0; (pos - from) as usize];
        file.seek(SeekFrom::Start(from)).map_err(io)?;
        file.read_exact(&mut chunk).map_err(io)?;
        if first {
            if chunk.last() != Some(&b'\n') {
                return Ok(None);
            }
            chunk.pop();
            first = false;
        }
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(at) => {
                let mut whole = chunk[at + 1..].to_vec();
                whole.extend_from_slice(&line);
                return Ok(Some(whole));
            }
            None => {
                chunk.extend_from_slice(&line);
                line = chunk;
                pos = from;
            }
        }
    }
    Ok((pos == 0 && !first).then_some(line))
}

/// The offset of the newest checkpoint marker line that starts before
/// byte `before` of the segment at `path`.
fn marker_before(path: &Path, before: u64) -> Result<Option<u64>, AuditError> {
    const CHUNK: u64 = 1024 * 1024;
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = super::read::open(path)?;
    let mut end = before;
    while end > 0 {
        let from = end.saturating_sub(CHUNK);
        // One byte before, to see the newline a line starts after, and
        // enough after to hold a marker that starts in the chunk.
        let read_from = from.saturating_sub(1);
        let want = (end - read_from) as usize + MARKER_PREFIX.len();
        let mut chunk = Vec::with_capacity(want);
        file.seek(SeekFrom::Start(read_from)).map_err(io)?;
        (&mut file)
            .take(want as u64)
            .read_to_end(&mut chunk)
            .map_err(io)?;
        for pos in (from..end).rev() {
            let i = (pos - read_from) as usize;
            let starts_line = pos == 0 || chunk.get(i - 1) == Some(&b'\n');
            if starts_line && chunk.get(i..).is_some_and(|c| c.starts_with(MARKER_PREFIX)) {
                return Ok(Some(pos));
            }
        }
        end = from;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::{AuditLog, AuditOptions, FsyncPolicy, Retention, segment_name, verify};
    use super::*;
    use crate::contract::ServiceContract;
    use crate::events::{Event, EventSink};
    use crate::limits::LimitKind;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chassis-checkpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Three swarms with settings of their own: `s0` quarantines after
    /// three failures in a row.
    fn contracts() -> Vec<ServiceContract> {
        (0..3)
            .map(|i| {
                let mut c = ServiceContract::builder(format!("s{i}")).build().unwrap();
                c.reputation.failure_window = 3 + i;
                c.reputation.max_failure_rate_percent = 60.0;
                c.slo_targets.response_time_p95_ms = 2.0 + f64::from(i);
                c
            })
            .collect()
    }

    /// The `n`th event of a mixed load: task ends of every kind, limits
    /// before their task's end, violations, and a release now and then.
    fn event(n: u64) -> Event {
        let swarm = format!("s{}", n % 3);
        let task = format!("t{}", n / 2);
        match n % 11 {
            0 => Event::LimitExceeded {
                swarm_id: swarm,
                task_id: task,
                limit: LimitKind::Timeout,
                detail: "slow".into(),
            },
            1 | 4 | 7 => Event::TaskComplete {
                swarm_id: swarm,
                task_id: task,
                wall_ms: (n % 17) as f64 * 0.37,
            },
            2 | 8 => Event::TaskFailed {
                swarm_id: swarm,
                task_id: task,
                kind: "trap".into(),
                error: "unreachable".into(),
                guest_error: None,
                wall_ms: 1.5,
            },
            3 => Event::HttpProxy {
                swarm_id: swarm,
                task_id: task,
                allowed: false,
                method: "GET".into(),
                url: "http://10.0.0.1/".into(),
                status: None,
                bytes_out: 0,
                bytes_in: 0,
                elapsed_ms: 0.1,
                reason: Some("private address".into()),
                security_violation: true,
            },
            5 if n.is_multiple_of(5) => Event::Released {
                swarm_id: swarm,
                score: 0.5,
            },
            _ => Event::TaskStart {
                swarm_id: swarm,
                task_id: task,
                task_type: "echo".into(),
            },
        }
    }

    /// The load of `c`'s swarm, naming its settings.
    fn loaded(c: &ServiceContract) -> Event {
        Event::ModuleLoaded {
            swarm_id: c.swarm_id.clone(),
            origin: "test".into(),
            digest: String::new(),
            task_types: vec!["echo".into()],
            settings: Some(c.health_settings()),
        }
    }

    fn options(segment_max_bytes: u64) -> AuditOptions {
        AuditOptions {
            segment_max_bytes,
            ..AuditOptions::new(FsyncPolicy::Never)
        }
    }

    /// A log of `records` events in segments of about `segment_bytes`,
    /// closed cleanly (a checkpoint at its end).
    fn log(dir: &Path, records: u64, segment_bytes: u64, retention: Retention) -> PathBuf {
        let path = dir.join("audit");
        let log = AuditLog::open_with(
            &path,
            AuditOptions {
                retention,
                ..options(segment_bytes)
            },
        )
        .unwrap();
        for c in contracts() {
            log.record(&loaded(&c));
        }
        for n in 0..records {
            log.record(&event(n));
        }
        log.close().unwrap();
        path
    }

    /// Each swarm's report after reading the log at `path` from `from`.
    fn reports(path: &Path, from: From) -> (Vec<crate::SloReport>, Restored) {
        let contracts = contracts();
        crate::report::from_log(path, &contracts, from).unwrap()
    }

    /// A host restarting on a log of many segments starts from its newest
    /// checkpoint, replays nothing after a clean shutdown and only the
    /// records after the checkpoint after a crash, and reaches the state a
    /// replay of the whole log reaches.
    #[test]
    fn the_newest_checkpoint_gives_the_state_of_a_full_replay() {
        let dir = scratch("full");
        let path = log(&dir, 6000, 64 * 1024, Retention::default());
        let segments = super::super::segments(&path).unwrap();
        assert!(segments.len() > 5, "{}", segments.len());
        // The tail reads back across segments, the chain linked.
        let v = verify(&path).unwrap();
        let whole = super::super::tail(&path, usize::MAX, u64::MAX, |_| true).unwrap();
        assert_eq!(
            (whole.records.len() as u64, whole.chain.clone()),
            (v.records, Ok(()))
        );
        assert_eq!(whole.head, Some(v.head()));
        let newest = super::super::tail(&path, 3000, u64::MAX, |_| true).unwrap();
        let seqs: Vec<u64> = newest
            .records
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (v.last_seq - 2999..=v.last_seq).rev().collect::<Vec<_>>()
        );
        assert_eq!(newest.chain, Ok(()));
        let (full, from_start) = reports(&path, From::Start);
        assert_eq!(from_start.checkpoint, None);
        assert!(from_start.replayed >= 6000);
        assert!(full.iter().all(|r| r.slo.tasks > 100), "{full:?}");
        assert!(full[0].reputation.quarantined, "{:?}", full[0].reputation);
        let (latest, restored) = reports(&path, From::Latest);
        assert_eq!(latest, full);
        // After a clean shutdown: nothing to replay.
        assert_eq!(restored.replayed, 0);
        let covered = restored.checkpoint.clone().unwrap();
        assert_eq!(covered.seq + 4, restored.verified.last_seq);
        // Without the shutdown checkpoint (a crash): the records after the
        // newest segment's checkpoint, and the same state.
        let last = &segments.last().unwrap().path;
        let text = std::fs::read_to_string(last).unwrap();
        let shutdown = text
            .rfind("{\"component\":\"IF.chassis\",\"operation\":\"checkpoint\",")
            .unwrap();
        assert!(shutdown > 0);
        std::fs::write(last, &text[..shutdown]).unwrap();
        let (crashed, restored) = reports(&path, From::Latest);
        let (crashed_full, _) = reports(&path, From::Start);
        assert_eq!(crashed, crashed_full);
        assert!(
            restored.replayed > 0 && restored.replayed < 1000,
            "{restored:?}"
        );
        // A host opening it gets the same state.
        let log = AuditLog::open_with(&path, options(64 * 1024)).unwrap();
        assert_eq!(log.restored().replayed, restored.replayed);
        for (c, report) in contracts().iter().zip(&crashed_full) {
            assert_eq!(&log.history(&c.swarm_id).unwrap().report(c), report);
        }
        drop(log);
        // And the old way: every event in memory, replayed swarm by swarm.
        let events = super::super::events(&path).unwrap();
        for (c, report) in contracts().iter().zip(&crashed_full) {
            assert_eq!(&crate::report::replay(&events, c), report);
        }
        verify(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A log cut at any byte of a segment close (the new segment empty or
    /// missing, its checkpoint's marker or swarm states part written)
    /// opens, verifies, and restores the state of a full replay of what
    /// remains.
    #[test]
    fn a_log_cut_anywhere_in_a_segment_close_restores_the_right_state() {
        let dir = scratch("cuts");
        let source = log(&dir, 900, 16 * 1024, Retention::default());
        let segments = super::super::segments(&source).unwrap();
        assert!(segments.len() >= 3, "{}", segments.len());
        // The last segment begins with a checkpoint of three swarms.
        let last = segments.last().unwrap();
        let text = std::fs::read(&last.path).unwrap();
        let checkpoint_end = text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(3)
            .map(|(i, _)| i + 1)
            .unwrap();
        let mut cuts: Vec<Option<usize>> = vec![None];
        cuts.extend((0..=checkpoint_end + 200).step_by(37).map(Some));
        for (i, cut) in cuts.into_iter().enumerate() {
            let copy = dir.join(format!("cut-{i}"));
            std::fs::create_dir_all(&copy).unwrap();
            for s in &segments[..segments.len() - 1] {
                std::fs::copy(&s.path, copy.join(s.path.file_name().unwrap())).unwrap();
            }
            if let Some(cut) = cut {
                std::fs::write(copy.join(segment_name(last.first_seq)), &text[..cut]).unwrap();
            }
            let log = AuditLog::open_with(&copy, options(16 * 1024)).unwrap();
            let histories: Vec<_> = contracts()
                .iter()
                .map(|c| log.history(&c.swarm_id).map(|h| h.report(c)))
                .collect();
            log.close().unwrap();
            let v = verify(&copy).unwrap_or_else(|e| panic!("cut {cut:?}: {e}"));
            assert_eq!(v.partial_tail_bytes, 0);
            let (full, _) = reports(&copy, From::Start);
            for (h, r) in histories.iter().zip(&full) {
                assert_eq!(h.as_ref(), Some(r), "cut {cut:?}");
            }
            std::fs::remove_dir_all(&copy).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Recompute `seq`, `prev_hash` and `hash` of `lines` from `head` on.
    fn rechain(lines: &mut [Value], mut head: Head) {
        for line in lines {
            line["seq"] = json!(head.seq + 1);
            line["prev_hash"] = json!(head.hash);
            let hash = record_hash(line);
            line["hash"] = json!(hash);
            head = Head {
                seq: head.seq + 1,
                hash,
            };
        }
    }

    /// A checkpoint whose records chain but whose state is not one, or
    /// whose covered head is not the record before it, is refused by name,
    /// and the state comes from the checkpoint before it.
    #[test]
    fn a_checkpoint_that_does_not_hold_is_passed_over() {
        let dir = scratch("bad");
        let path = log(&dir, 1200, 16 * 1024, Retention::default());
        let (good, _) = reports(&path, From::Start);
        let segments = super::super::segments(&path).unwrap();
        let last = &segments.last().unwrap().path;
        let mut lines: Vec<Value> = std::fs::read_to_string(last)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let anchor = covers(&lines[0]).unwrap();
        for (damage, why) in [
            (
                Box::new(|lines: &mut Vec<Value>| lines[2]["params"] = json!({"slo": 1}))
                    as Box<dyn Fn(&mut Vec<Value>)>,
                "bad settings",
            ),
            (
                Box::new(|lines: &mut Vec<Value>| {
                    lines[0]["params"]["covers"]["hash"] = json!(GENESIS);
                }),
                "it covers record",
            ),
        ] {
            let mut bad = lines.clone();
            damage(&mut bad);
            // The shutdown checkpoint goes too: this one is the newest.
            let shutdown = bad.iter().rposition(|l| covers(l).is_some()).unwrap();
            bad.truncate(shutdown);
            rechain(&mut bad, anchor.clone());
            let text: String = bad.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(last, text).unwrap();
            let (reports, restored) = reports(&path, From::Latest);
            assert!(
                restored.refused.len() == 1 && restored.refused[0].contains(why),
                "{:?}",
                restored.refused
            );
            assert!(restored.checkpoint.unwrap().seq < anchor.seq);
            assert_eq!(reports.len(), good.len());
            verify(&path).unwrap();
        }
        // Put back: the shutdown checkpoint gone, the state is the good one.
        lines.truncate(lines.iter().rposition(|l| covers(l).is_some()).unwrap());
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(last, text).unwrap();
        let (reports, restored) = reports(&path, From::Latest);
        assert!(restored.refused.is_empty());
        assert_eq!(reports, good);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Retention removes the oldest segments, only up to a checkpoint;
    /// what remains verifies from it, a head from before it passes as
    /// covered, and a cut tail is still caught. Archived segments verify
    /// as a log of their own.
    #[test]
    fn retention_keeps_a_log_that_verifies_from_its_checkpoint() {
        let dir = scratch("retention");
        let path = log(
            &dir,
            4000,
            16 * 1024,
            Retention {
                keep_segments: Some(3),
                ..Retention::default()
            },
        );
        let kept = super::super::segments(&path).unwrap();
        assert!(kept.len() <= 3, "{kept:?}");
        let v = verify(&path).unwrap();
        let anchor = v.anchor.clone().unwrap();
        assert_eq!(anchor.seq + 1, v.first_seq);
        assert_eq!(v.first_seq, kept[0].first_seq);
        let archive = path.join(super::super::ARCHIVE_DIR);
        let old = verify(&archive).unwrap();
        assert_eq!((old.first_seq, old.last_seq), (1, anchor.seq));
        assert_eq!(old.head, anchor.hash);
        // Heads from before, at, and after the cut.
        for head in [
            Head {
                seq: 5,
                hash: GENESIS.replace('0', "a"),
            },
            anchor.clone(),
            v.head(),
        ] {
            super::super::verify_against(&path, &head).unwrap();
        }
        let records: Vec<Value> = super::super::read(&path, &Default::default()).unwrap();
        assert!(records.iter().any(|r| r["operation"] == "retention"));
        // Its tail, read whole, starts at the checkpoint, the chain linked.
        let whole = super::super::tail(&path, usize::MAX, u64::MAX, |_| true).unwrap();
        assert_eq!(
            (whole.records.len() as u64, whole.chain.clone()),
            (v.records, Ok(()))
        );
        // The same state as before retention removed anything.
        let (after, restored) = reports(&path, From::Start);
        assert_eq!(restored.checkpoint, Some(anchor));
        let (latest, _) = reports(&path, From::Latest);
        assert_eq!(after, latest);
        // Segments taken away without a retention record saying so fail
        // verification, though what is left starts at a checkpoint.
        std::fs::create_dir(dir.join("bare")).unwrap();
        let bare = log(&dir.join("bare"), 1500, 16 * 1024, Retention::default());
        let bare_segments = super::super::segments(&bare).unwrap();
        for s in &bare_segments[..2] {
            std::fs::remove_file(&s.path).unwrap();
        }
        let e = verify(&bare).unwrap_err().to_string();
        assert!(e.contains("no retention record"), "{e}");
        // A cut tail is caught against the head.
        let last = &kept.last().unwrap().path;
        let text = std::fs::read_to_string(last).unwrap();
        let cut = text[..text.len() - 1].rfind('\n').unwrap() + 1;
        std::fs::write(last, &text[..cut]).unwrap();
        let e = super::super::verify_against(&path, &v.head()).unwrap_err();
        assert!(e.to_string().contains("cut"), "{e}");
        // An archived segment never replaces another log's of that name:
        // retention stops there, records why, and the log still verifies.
        std::fs::create_dir(dir.join("other")).unwrap();
        let taken = dir.join("taken-archive");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join(segment_name(1)), "another log's\n").unwrap();
        let other = log(
            &dir.join("other"),
            1500,
            16 * 1024,
            Retention {
                keep_segments: Some(2),
                archive_dir: Some(taken.clone()),
                ..Retention::default()
            },
        );
        assert_eq!(
            std::fs::read_to_string(taken.join(segment_name(1))).unwrap(),
            "another log's\n"
        );
        assert_eq!(super::super::segments(&other).unwrap()[0].first_seq, 1);
        verify(&other).unwrap();
        // Deleting instead of archiving.
        std::fs::create_dir(dir.join("deleted")).unwrap();
        let deleted = log(
            &dir.join("deleted"),
            3000,
            16 * 1024,
            Retention {
                keep_bytes: Some(40 * 1024),
                delete: true,
                ..Retention::default()
            },
        );
        assert!(!deleted.join(super::super::ARCHIVE_DIR).exists());
        let bytes: u64 = super::super::segments(&deleted)
            .unwrap()
            .iter()
            .map(|s| std::fs::metadata(&s.path).unwrap().len())
            .sum();
        assert!(bytes <= 40 * 1024 + 16 * 1024 + 4096, "{bytes}");
        assert!(verify(&deleted).unwrap().anchor.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A single-file log becomes the first segment of a directory of its
    /// name, and its chain goes on in the next segments.
    #[test]
    fn a_single_file_log_becomes_the_first_segment() {
        let dir = scratch("legacy");
        let file = dir.join("audit.jsonl");
        let mut text = String::new();
        let mut head = GENESIS.to_string();
        for n in 0..50u64 {
            head = super::super::record::append_record(
                &mut text,
                n + 1,
                &head,
                SystemTime::now(),
                &event(n),
                None,
            );
        }
        std::fs::write(&file, &text).unwrap();
        let before = reports(&file, From::Start).0;
        assert_eq!(verify(&file).unwrap().last_seq, 50);
        let log = AuditLog::open_with(&file, options(2048)).unwrap();
        for n in 50..100 {
            log.record(&event(n));
        }
        log.close().unwrap();
        assert!(file.is_dir());
        let segments = super::super::segments(&file).unwrap();
        assert_eq!(segments[0].first_seq, 1);
        assert!(segments.len() > 2);
        let v = verify(&file).unwrap();
        assert!(v.last_seq > 100 && v.anchor.is_none(), "{v:?}");
        // The first 50 records are the file's, unchanged.
        let first = std::fs::read_to_string(&segments[0].path).unwrap();
        assert!(first.starts_with(&text));
        assert_ne!(before, reports(&file, From::Start).0);
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = Duration::ZERO;
    }

    /// A checkpoint larger than the segment size does not close a segment
    /// after every record: a segment closes on what follows its
    /// checkpoint. Closing a segment that holds nothing yet does nothing.
    #[test]
    fn a_large_checkpoint_does_not_close_every_segment() {
        let dir = scratch("large");
        let path = dir.join("audit");
        let log = AuditLog::open_with(&path, options(4096)).unwrap();
        log.close_segment().unwrap();
        log.close_segment().unwrap();
        // Forty swarms with wide histograms: a checkpoint of many KiB.
        for i in 0..4000u64 {
            log.record(&Event::TaskComplete {
                swarm_id: format!("s{}", i % 40),
                task_id: format!("t{i}"),
                wall_ms: (i * 7919 % 100_000) as f64 / 10.0,
            });
        }
        log.close().unwrap();
        let segments = super::super::segments(&path).unwrap();
        let checkpoint = std::fs::metadata(&segments.last().unwrap().path)
            .unwrap()
            .len();
        assert!(checkpoint > 4096, "{checkpoint}");
        // About 4000 records of ~200 bytes in 4 KiB segments: a few
        // hundred, not one per record.
        assert!(
            segments.len() > 20 && segments.len() < 1000,
            "{} segments",
            segments.len()
        );
        verify(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A link to a log's directory is followed; a link to a single-file
    /// log is refused rather than moved.
    #[test]
    fn links_to_a_log() {
        let dir = scratch("links");
        let real = dir.join("real");
        AuditLog::open(&real, FsyncPolicy::Never)
            .unwrap()
            .close()
            .unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        AuditLog::open(&link, FsyncPolicy::Never)
            .unwrap()
            .close()
            .unwrap();
        assert!(link.is_symlink() && real.is_dir());
        let file = dir.join("single.jsonl");
        std::fs::write(&file, "").unwrap();
        let file_link = dir.join("single-link");
        std::os::unix::fs::symlink(&file, &file_link).unwrap();
        let e = AuditLog::open(&file_link, FsyncPolicy::Never)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(file.is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
