//! Retention: when a segment closes, the oldest segments are archived
//! (moved to the archive directory) or deleted while the log keeps more
//! than its limits allow, and only up to a segment that starts with a
//! checkpoint that holds, so what remains verifies from it.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::segments::{self, ARCHIVE_DIR, Layout};
use super::{AuditError, Retention, checkpoint};

/// Apply `policy` to the log in `dir`: what was removed, as the params of
/// the `retention` record the writer writes, or `None` when nothing was.
pub(super) fn apply(dir: &Path, policy: &Retention) -> Result<Option<Value>, AuditError> {
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
    if let Some(archive) = &archive {
        crate::files::create_private_dir(archive).map_err(|e| io(archive, e))?;
    }
    for s in &segments[..cut] {
        match &archive {
            Some(archive) => {
                let to = archive.join(s.path.file_name().unwrap_or_default());
                std::fs::rename(&s.path, &to).map_err(|e| io(&s.path, e))?;
            }
            None => std::fs::remove_file(&s.path).map_err(|e| io(&s.path, e))?,
        }
    }
    segments::sync_dir(dir).map_err(|e| io(dir, e))?;
    if let Some(archive) = &archive {
        segments::sync_dir(archive).map_err(|e| io(archive, e))?;
    }
    let bytes: u64 = sizes[..cut].iter().sum();
    tracing::info!(target: "chassis::audit", "retention: {} {cut} segments of {}, records {} to {} ({bytes} bytes)", if archive.is_some() { "archived" } else { "deleted" }, dir.display(), segments[0].first_seq, segments[cut].first_seq - 1);
    Ok(Some(json!({
        "action": if archive.is_some() { "archive" } else { "delete" },
        "segments": cut,
        "first_seq": segments[0].first_seq,
        "last_seq": segments[cut].first_seq - 1,
        "bytes": bytes,
        "archive_dir": archive.map(|a| a.display().to_string()),
    })))
}
