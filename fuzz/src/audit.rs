//! Target `audit`: `chassis::audit::verify` against every kind of change
//! to a valid log — byte flips, field edits, deleted, inserted, swapped
//! and duplicated lines, a cut at any byte. The property: `verify` never
//! panics; when it accepts a changed log, the records it accepts are the
//! original's (all of them, or the first ones: a cut tail, which the
//! original head then catches with `verify_against`), and reading it back
//! from its newest checkpoint that holds gives the swarms' state a replay
//! from its start gives (the log ends with the checkpoint its writer wrote
//! at close, so a cut can fall anywhere in it).
//!
//! The valid log is written once per run by the real writer
//! (`AuditLog`), with events of every kind the host records; each case
//! changes its text and verifies it from a file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chassis::audit::{AuditLog, Filter, FsyncPolicy, Head};
use chassis::{Event, EventSink};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};
use serde_json::Value;

/// The valid log every case starts from.
struct Seed {
    text: Vec<u8>,
    records: Vec<Value>,
    head: Head,
}

static SEED: OnceLock<Seed> = OnceLock::new();

fn events() -> Vec<Event> {
    let s = |x: &str| x.to_string();
    let mut all = Vec::new();
    for i in 0..6 {
        let task = format!("task-{i}");
        all.push(Event::TaskStart {
            swarm_id: s("hello-world"),
            task_id: task.clone(),
            task_type: s("hello"),
        });
        all.push(Event::CredentialAccess {
            swarm_id: s("api-client"),
            task_id: task.clone(),
            key: s("api_token"),
            operation: s("get"),
            allowed: i % 2 == 0,
            reason: (i % 2 == 1).then(|| s("not in scoped_credentials")),
            security_violation: i % 2 == 1,
        });
        all.push(Event::TaskComplete {
            swarm_id: s("hello-world"),
            task_id: task,
            wall_ms: 1.5 + f64::from(i),
        });
    }
    all.push(Event::ModuleUnloaded {
        swarm_id: s("guest \"text\"\n\u{1b}[31m"),
    });
    all
}

fn seed(root: &Path) -> &'static Seed {
    SEED.get_or_init(|| {
        let dir = root.join("target/fuzz");
        std::fs::create_dir_all(&dir).expect("target/fuzz");
        let path = dir.join(format!("audit-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let log = AuditLog::open(&path, FsyncPolicy::Never).expect("a new audit log");
        for event in events() {
            log.record(&event);
        }
        log.close().expect("the log closes");
        let verified = chassis::audit::verify(&path).expect("the seed log verifies");
        let seed = Seed {
            text: chassis::audit::segments(&path)
                .expect("the seed log's segments")
                .iter()
                .flat_map(|s| std::fs::read(&s.path).expect("a segment of the seed log"))
                .collect(),
            records: chassis::audit::read(&path, &Filter::default()).expect("its records"),
            head: verified.head(),
        };
        let _ = std::fs::remove_dir_all(&path);
        seed
    })
}

/// One change to the log's text.
#[derive(Debug, Clone)]
enum Change {
    FlipByte {
        at: usize,
        mask: u8,
    },
    EditField {
        line: usize,
        field: usize,
        value: i64,
    },
    DeleteLine(usize),
    DuplicateLine(usize),
    MoveLine {
        from: usize,
        to: usize,
    },
    SwapLines(usize, usize),
    CutAt(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Change::FlipByte { at, mask }),
        (any::<usize>(), any::<usize>(), any::<i64>())
            .prop_map(|(line, field, value)| Change::EditField { line, field, value }),
        any::<usize>().prop_map(Change::DeleteLine),
        any::<usize>().prop_map(Change::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Change::MoveLine { from, to }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Change::SwapLines(a, b)),
        any::<usize>().prop_map(Change::CutAt),
    ]
}

fn apply(text: &[u8], changes: &[Change]) -> Vec<u8> {
    let mut text = text.to_vec();
    for change in changes {
        let mut lines: Vec<Vec<u8>> = text
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        let n = lines.len().max(1);
        match change {
            Change::FlipByte { at, mask } if !text.is_empty() => {
                let at = at % text.len();
                text[at] ^= mask;
                continue;
            }
            Change::CutAt(at) => {
                text.truncate(at % (text.len() + 1));
                continue;
            }
            Change::EditField { line, field, value } if !lines.is_empty() => {
                let l = &mut lines[line % n];
                if let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(l) {
                    let keys: Vec<String> = record.keys().cloned().collect();
                    let key = &keys[field % keys.len().max(1)];
                    record.insert(key.clone(), Value::from(*value));
                    *l = serde_json::to_vec(&record).expect("a record prints");
                    l.push(b'\n');
                }
            }
            Change::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Change::DuplicateLine(i) if !lines.is_empty() => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Change::MoveLine { from, to } if !lines.is_empty() => {
                let line = lines.remove(from % n);
                lines.insert(to % lines.len().max(1), line);
            }
            Change::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            _ => {}
        }
        text = lines.concat();
    }
    text
}

/// A scratch file for this thread's cases.
fn scratch(root: &Path) -> PathBuf {
    root.join("target/fuzz").join(format!(
        "audit-case-{}-{:?}.jsonl",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// The property, for one changed log.
fn check(root: &Path, changed: &[u8]) -> Result<(), String> {
    let seed = seed(root);
    let path = scratch(root);
    std::fs::write(&path, changed).map_err(|e| e.to_string())?;
    let verified = match chassis::audit::verify(&path) {
        Ok(v) => v,
        Err(_) => return Ok(()),
    };
    let records = chassis::audit::read(&path, &Filter::default())
        .map_err(|e| format!("verify accepted a log that read refuses: {e}"))?;
    let accepted = verified.records as usize;
    if records.len() != accepted {
        return Err(format!(
            "verify counted {accepted} records, read found {}",
            records.len()
        ));
    }
    let state = |from| {
        let mut replay = chassis::replay::Replay::new();
        chassis::audit::replay_into(&path, &mut replay, from)
            .map(|_| replay.state())
            .map_err(|e| format!("verify accepted a log that a replay from {from:?} refuses: {e}"))
    };
    if state(chassis::audit::From::Latest)? != state(chassis::audit::From::Start)? {
        return Err(format!(
            "from the newest checkpoint, the state of a log of {accepted} records is not the state of a replay from its start"
        ));
    }
    // What verify accepts is a run of the original's records that starts
    // at record 1, or at a checkpoint (what retention leaves).
    let start = verified.first_seq.saturating_sub(1) as usize;
    if start + accepted > seed.records.len() || records[..] != seed.records[start..start + accepted]
    {
        return Err(format!(
            "verify accepted a log whose records differ from the original's ({accepted} records from record {})",
            start + 1
        ));
    }
    if start > 0 && seed.records[start]["operation"] != "checkpoint" {
        return Err(format!(
            "verify accepted a log starting at record {}, which is no checkpoint",
            start + 1
        ));
    }
    if start + accepted < seed.records.len()
        && chassis::audit::verify_against(&path, &seed.head).is_ok()
    {
        return Err(format!(
            "a log cut to {accepted} of {} records passed against the original head",
            seed.records.len()
        ));
    }
    Ok(())
}

/// Replay a stored log: `verify` and `read` never panic, and agree: a log
/// `verify` accepts, `read` reads, with the same number of records.
pub fn replay(root: &Path, log: &[u8]) -> Result<(), String> {
    let path = scratch(root);
    std::fs::create_dir_all(path.parent().expect("a directory")).map_err(|e| e.to_string())?;
    std::fs::write(&path, log).map_err(|e| e.to_string())?;
    let _ = chassis::audit::verify_against(&path, &seed(root).head);
    if let Ok(verified) = chassis::audit::verify(&path) {
        let records = chassis::audit::read(&path, &Filter::default())
            .map_err(|e| format!("verify accepted a log that read refuses: {e}"))?;
        if records.len() as u64 != verified.records {
            return Err(format!(
                "verify counted {} records, read found {}",
                verified.records,
                records.len()
            ));
        }
    }
    Ok(())
}

/// One batch of cases.
pub(crate) fn fuzz(
    root: &Path,
    runner: &mut TestRunner,
    slowest: &mut std::time::Duration,
) -> Result<(), (String, Vec<u8>)> {
    let seed = seed(root);
    let strategy = proptest::collection::vec(change(), 1..4)
        .prop_map(|changes| apply(&seed.text, &changes))
        .prop_filter("a change", |text| *text != seed.text);
    let slowest_here = std::cell::Cell::new(*slowest);
    let result = runner.run(&strategy, |changed| {
        crate::timed(&slowest_here, || check(root, &changed)).map_err(TestCaseError::fail)
    });
    *slowest = slowest_here.get();
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, input)) => Err((reason.to_string(), input)),
        Err(TestError::Abort(reason)) => Err((reason.to_string(), Vec::new())),
    }
}
