//! A log's records by swarm, from one pass over it: what a host that
//! continues a log (`chassis serve`) restores each swarm from as it loads,
//! without reading the log again for every load.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::AuditError;
use super::read::{Lines, Record, each_record};

/// Each swarm's records of a log as it was when [`BySwarm::read`] read it,
/// in order (records this version does not know are left out), handed out
/// once per swarm by [`BySwarm::take`].
#[derive(Debug)]
pub struct BySwarm {
    path: PathBuf,
    swarms: HashMap<String, Vec<Record>>,
    /// Swarms handed their records already.
    taken: HashSet<String>,
    /// Passes over the log so far.
    passes: u32,
}

impl BySwarm {
    /// Read the log at `path` once, front to back, as [`super::events`]
    /// does, keeping each swarm's records apart.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref();
        let mut swarms: HashMap<String, Vec<Record>> = HashMap::new();
        each_record(&mut Lines::open(path)?, |value| {
            if let Some(record) = Record::from_json(&value) {
                swarms
                    .entry(record.event.swarm_id().to_string())
                    .or_default()
                    .push(record);
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            swarms,
            taken: HashSet::new(),
            passes: 1,
        })
    }

    /// The records of `swarm_id`, for its load: the first time, those of
    /// the pass [`BySwarm::read`] made, without reading the log (a swarm not
    /// loaded since has no records a restore counts but those). A swarm
    /// handed its records before has been loaded, and unloaded, since: its
    /// records then include the ones written meanwhile, and the log is read
    /// again for it alone.
    pub fn take(&mut self, swarm_id: &str) -> Result<Vec<Record>, AuditError> {
        if self.taken.insert(swarm_id.to_string()) {
            return Ok(self.swarms.remove(swarm_id).unwrap_or_default());
        }
        self.passes += 1;
        let mut mine = Vec::new();
        each_record(&mut Lines::open(&self.path)?, |value| {
            if value["swarm_id"].as_str() == Some(swarm_id)
                && let Some(record) = Record::from_json(&value)
            {
                mine.push(record);
            }
        })?;
        Ok(mine)
    }

    /// Passes made over the log: one, and one for each swarm handed its
    /// records a second time.
    pub fn passes(&self) -> u32 {
        self.passes
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::GENESIS;
    use super::super::record::append_record;
    use super::*;
    use crate::events::Event;

    fn failed(swarm: &str, task: &str) -> Event {
        Event::TaskFailed {
            swarm_id: swarm.into(),
            task_id: task.into(),
            kind: "trap".into(),
            error: "e".into(),
            guest_error: None,
            wall_ms: 1.0,
        }
    }

    /// A log of `n` swarms, `i + 1` records for swarm `s{i}`, interleaved.
    fn log(dir: &Path, n: usize) -> PathBuf {
        let mut text = String::new();
        let mut head = GENESIS.to_string();
        let mut seq = 0;
        for round in 0..n {
            for i in round..n {
                seq += 1;
                let event = failed(&format!("s{i}"), &format!("t{seq}"));
                head = append_record(&mut text, seq, &head, SystemTime::now(), &event, None);
            }
        }
        // A record being written is not one yet.
        text.push_str("{\"component\"");
        let path = dir.join("audit.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chassis-by-swarm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// N swarms are restored from one pass: once read, the log is not read
    /// again (it can even be gone) for each swarm's first load.
    #[test]
    fn many_swarms_are_restored_from_one_pass_over_the_log() {
        let dir = scratch("one-pass");
        let path = log(&dir, 20);
        let mut by_swarm = BySwarm::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        for i in 0..20 {
            let records = by_swarm.take(&format!("s{i}")).unwrap();
            assert_eq!(records.len(), i + 1, "s{i}");
            assert!(
                records
                    .iter()
                    .all(|r| r.event.swarm_id() == format!("s{i}"))
            );
            assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
        }
        assert!(by_swarm.take("never-seen").unwrap().is_empty());
        assert_eq!(by_swarm.passes(), 1);
        // A swarm loaded again: read again, for it alone (here the log is
        // gone, and that is the error).
        let err = by_swarm.take("s3").unwrap_err();
        assert!(err.to_string().contains("audit.jsonl"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A swarm handed its records a second time gets those written since
    /// the first pass too.
    #[test]
    fn a_swarm_loaded_again_gets_the_records_written_since() {
        let dir = scratch("again");
        let path = log(&dir, 3);
        let mut by_swarm = BySwarm::read(&path).unwrap();
        assert_eq!(by_swarm.take("s1").unwrap().len(), 2);
        // The host went on writing (over the partial line, as it does).
        let text = std::fs::read_to_string(&path).unwrap();
        let whole = &text[..text.rfind('\n').unwrap() + 1];
        let mut more = whole.to_string();
        let last: serde_json::Value = serde_json::from_str(whole.lines().last().unwrap()).unwrap();
        append_record(
            &mut more,
            last["seq"].as_u64().unwrap() + 1,
            last["hash"].as_str().unwrap(),
            SystemTime::now(),
            &failed("s1", "later"),
            None,
        );
        std::fs::write(&path, more).unwrap();
        let again = by_swarm.take("s1").unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(by_swarm.passes(), 2);
        super::super::verify(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
