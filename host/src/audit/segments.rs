//! The log on disk: a directory of segment files, each named by the
//! sequence number of its first record (`00000000000000000001.jsonl`,
//! twenty digits, so names sort as numbers), the newest one being written.
//! A log that is a single file (as logs were before segments) is read as
//! one segment starting at record 1; the writer turns it into a directory
//! holding it as its first segment ([`migrate`]).
//!
//! Here: finding the segments ([`Layout`]), the writer's lock, and reading
//! whole lines across segments ([`Cursor`]) from any point, each line with
//! the segment and line it came from.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::AuditError;
use super::read::{Line, Lines};

/// The file that the log's one writer holds locked.
pub(super) const LOCK_FILE: &str = "lock";

/// Where retention moves segments when it archives them (under the log).
pub const ARCHIVE_DIR: &str = "archive";

/// The name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

/// The first record's `seq` a segment's file name says, if it is one.
fn first_seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The sequence number of its first record (from its name; 1 for a log
    /// that is a single file).
    pub first_seq: u64,
    /// Its file.
    pub path: PathBuf,
}

/// A log as found on disk.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The log's directory (`None` for a single-file log).
    pub dir: Option<PathBuf>,
    /// The segments, oldest first.
    pub segments: Vec<Segment>,
}

impl Layout {
    /// The log at `path`: a directory of segments, or a single file. A
    /// directory without segments, a missing path, a fifo or a device is
    /// an error saying so.
    pub(super) fn find(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_dir() {
            // A regular file, or an error naming what it is instead.
            drop(crate::files::open_regular(path).map_err(io)?);
            return Ok(Self {
                dir: None,
                segments: vec![Segment {
                    first_seq: 1,
                    path: path.to_path_buf(),
                }],
            });
        }
        let segments = list(path)?;
        if segments.is_empty() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "holds no audit log segment (files named like {})",
                    segment_name(1)
                ),
            )));
        }
        Ok(Self {
            dir: Some(path.to_path_buf()),
            segments,
        })
    }

    /// The segment being written (the newest).
    pub(super) fn last(&self) -> &Segment {
        self.segments.last().expect("a layout has a segment")
    }
}

/// The segments in `dir`, oldest first (other files are left alone).
pub(super) fn list(dir: &Path) -> Result<Vec<Segment>, AuditError> {
    let io = |source| AuditError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if let Some(first_seq) = name.to_str().and_then(first_seq_of) {
            segments.push(Segment {
                first_seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Make the directory of a new log, or turn a single-file log into a
/// directory holding it as its first segment, and take the writer's lock.
/// A crash part way is finished by the next call: the file is moved into
/// a directory made beside it, which then takes the log's name.
pub(super) fn prepare(path: &Path) -> Result<File, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let staging = staging_dir(path);
    // A link to the log's directory is followed; a link to a single-file
    // log is not moved in its place.
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link to a single-file log: give the file itself (it becomes a directory of segments)",
            )));
        }
        Ok(_) => migrate(path, &staging)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if staging.is_dir() {
                // A migration that stopped after moving the file.
                std::fs::rename(&staging, path).map_err(io)?;
            } else {
                // Not its parents: a mistyped path is an error, not a tree.
                make_dir(path).map_err(io)?;
            }
            sync_parent(path).map_err(io)?;
        }
        Err(e) => return Err(io(e)),
    }
    let lock_path = path.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => AuditError::InUse {
            path: path.to_path_buf(),
        },
        std::fs::TryLockError::Error(e) => io(e),
    })?;
    Ok(lock)
}

/// Where a single-file log is moved while it becomes a directory.
fn staging_dir(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".segments");
    path.with_file_name(name)
}

/// Turn the single-file log at `path` into a directory holding it as its
/// first segment. The file is locked first, so a writer that has it open
/// (an older version's) is not moved under.
fn migrate(path: &Path, staging: &Path) -> Result<(), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::files::open_regular_append(path).map_err(io)?;
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => AuditError::InUse {
            path: path.to_path_buf(),
        },
        std::fs::TryLockError::Error(e) => io(e),
    })?;
    if !staging.is_dir() {
        make_dir(staging).map_err(io)?;
    }
    std::fs::rename(path, staging.join(segment_name(1))).map_err(io)?;
    sync_dir(staging).map_err(io)?;
    std::fs::rename(staging, path).map_err(io)?;
    sync_parent(path).map_err(io)?;
    tracing::info!(target: "chassis::audit", "{}: the single-file audit log is now the first segment of the directory of that name", path.display());
    Ok(())
}

/// Make the directory `dir` (mode 0700); its parent must exist.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// `fsync` a directory, so the names made or removed in it last.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// A whole line read by a [`Cursor`], and where it came from.
pub(super) struct At<'a> {
    /// The line, without its newline.
    pub line: &'a [u8],
    /// Index of its segment in the layout.
    pub segment: usize,
    /// Byte offset of the line in its segment.
    pub offset: u64,
}

/// Whole lines across a log's segments, in order, from a given point.
pub(super) struct Cursor {
    segments: Vec<Segment>,
    /// The segment being read.
    at: usize,
    lines: Option<Lines>,
    /// Bytes of a partial line at the end of the last segment.
    pub partial_tail_bytes: u64,
}

impl Cursor {
    /// Lines from byte `offset` of segment `at` on.
    pub(super) fn new(layout: &Layout, at: usize, offset: u64) -> Result<Self, AuditError> {
        let lines = match layout.segments.get(at) {
            Some(s) => Some(Lines::open_at(&s.path, offset)?),
            None => None,
        };
        Ok(Self {
            segments: layout.segments.clone(),
            at,
            lines,
            partial_tail_bytes: 0,
        })
    }

    /// The next whole line, `None` at the end. A partial line ends the
    /// log when it is in the last segment ([`Cursor::partial_tail_bytes`])
    /// and is an error anywhere else.
    pub(super) fn next_line(&mut self) -> Result<Option<At<'_>>, AuditError> {
        loop {
            let last = self.at + 1 >= self.segments.len();
            let Some(lines) = self.lines.as_mut() else {
                return Ok(None);
            };
            let offset = lines.offset();
            match lines.next_line()? {
                Line::Whole(_) => break,
                Line::Partial(bytes) if last => {
                    self.partial_tail_bytes = bytes as u64;
                    return Ok(None);
                }
                Line::Partial(_) => {
                    return Err(lines.bad_next(
                        "the segment ends in a partial record, but a later segment follows".into(),
                    ));
                }
                Line::End if last => return Ok(None),
                Line::End => {
                    let _ = offset;
                    self.at += 1;
                    self.lines = Some(Lines::open_at(&self.segments[self.at].path, 0)?);
                }
            }
        }
        let lines = self.lines.as_mut().expect("reading a segment");
        let (line, offset) = lines.current();
        Ok(Some(At {
            line,
            segment: self.at,
            offset,
        }))
    }

    /// The error for the last whole line read.
    pub(super) fn bad(&self, reason: String) -> AuditError {
        match &self.lines {
            Some(lines) => lines.bad(reason),
            None => AuditError::Bad {
                path: PathBuf::new(),
                line: 0,
                reason,
            },
        }
    }
}
