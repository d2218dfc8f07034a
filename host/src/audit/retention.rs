//! Retention: when a segment closes, the oldest segments are archived
//! (moved to the archive directory) or deleted while the log keeps more
//! than its limits allow, and only up to a segment that starts with a
//! checkpoint that holds, so what remains verifies from it. The writer
//! records what is to go (a `retention` record, synced) before it goes:
//! a log that starts after record 1 without such a record had segments
//! taken from it, and `verify` says so.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::segments::{self, ARCHIVE_DIR, Layout, Segment};
use super::{AuditError, Retention, checkpoint};

/// What retention is to remove: the oldest segments, up to a segment that
/// starts with a checkpoint.
pub(super) struct Plan {
    dir: PathBuf,
    remove: Vec<Segment>,
    /// The first record of the oldest segment kept.
    kept_from: u64,
    bytes: u64,
    /// Where they go (`None`: deleted).
    archive: Option<PathBuf>,
}

/// What `policy` would remove from the log in `dir` now (`None`: nothing).
pub(super) fn plan(dir: &Path, policy: &Retention) -> Result<Option<Plan>, AuditError> {
    let io = |path: &Path, source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let segments = segments::list(dir)?;
    let n = segments.len();
    if n <= 1 {
        return Ok(None);
    }
    let mut sizes = Vec::with_capacity(n);
    let mut written = Vec::with_capacity(n);
    for s in &segments {
        let meta = std::fs::metadata(&s.path).map_err(|e| io(&s.path, e))?;
        sizes.push(meta.len());
        written.push(meta.modified().unwrap_or_else(|_| SystemTime::now()));
    }
    let now = SystemTime::now();
    let too_much = |cut: usize| {
        policy.keep_segments.is_some_and(|k| n - cut > k)
            || policy
                .keep_bytes
                .is_some_and(|b| sizes[cut..].iter().sum::<u64>() > b)
            || policy
                .keep_age
                .is_some_and(|age| now.duration_since(written[cut]).unwrap_or_default() > age)
    };
    // Never the segment being written.
    let mut cut = 0;
    while cut < n - 1 && too_much(cut) {
        cut += 1;
    }
    // What remains starts with a checkpoint that holds.
    let layout = Layout {
        dir: Some(dir.to_path_buf()),
        segments: segments.clone(),
    };
    while cut > 0 && !checkpoint::holds_at_start(&layout, cut) {
        cut -= 1;
    }
    if cut == 0 {
        return Ok(None);
    }
    let archive = (!policy.delete).then(|| {
        policy
            .archive_dir
            .clone()
            .unwrap_or_else(|| dir.join(ARCHIVE_DIR))
    });
    Ok(Some(Plan {
        dir: dir.to_path_buf(),
        kept_from: segments[cut].first_seq,
        bytes: sizes[..cut].iter().sum(),
        remove: segments[..cut].to_vec(),
        archive,
    }))
}

impl Plan {
    /// The `retention` record's params, written (and synced) before the
    /// segments go: the action, how many segments, the records they hold
    /// (`first_seq` to `last_seq`), their bytes, and where they go.
    pub(super) fn record(&self) -> Value {
        json!({
            "action": if self.archive.is_some() { "archive" } else { "delete" },
            "segments": self.remove.len(),
            "first_seq": self.remove[0].first_seq,
            "last_seq": self.kept_from - 1,
            "bytes": self.bytes,
            "archive_dir": self.archive.as_ref().map(|a| a.display().to_string()),
        })
    }

    /// Archive or delete the segments, oldest first. An archived segment
    /// never replaces a file of that name in the archive (another log's):
    /// that is an error, and the segment stays.
    pub(super) fn carry_out(&self) -> Result<(), AuditError> {
        let io = |path: &Path, source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(archive) = &self.archive {
            crate::files::create_private_dir(archive).map_err(|e| io(archive, e))?;
        }
        for s in &self.remove {
            match &self.archive {
                Some(archive) => {
                    let to = archive.join(s.path.file_name().unwrap_or_default());
                    // A link fails where the name is taken; then the
                    // segment's own name goes.
                    std::fs::hard_link(&s.path, &to).map_err(|e| io(&to, e))?;
                    std::fs::remove_file(&s.path).map_err(|e| io(&s.path, e))?;
                }
                None => std::fs::remove_file(&s.path).map_err(|e| io(&s.path, e))?,
            }
        }
        segments::sync_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        if let Some(archive) = &self.archive {
            segments::sync_dir(archive).map_err(|e| io(archive, e))?;
        }
        tracing::info!(target: "chassis::audit", "retention: {} {} segments of {}, records {} to {} ({} bytes)", if self.archive.is_some() { "archived" } else { "deleted" }, self.remove.len(), self.dir.display(), self.remove[0].first_seq, self.kept_from - 1, self.bytes);
        Ok(())
    }
}
