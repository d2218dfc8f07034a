//! Reading the files the host is pointed at (components, contracts, secrets,
//! payloads) without trusting them: only regular files, never more than a
//! size limit, and never blocking on a fifo or a device.
//!
//! The file is opened non-blocking (so opening a fifo with no writer returns
//! at once), then checked on the open handle (no race with a rename): it
//! must be a regular file no larger than the limit. It is read through a
//! bound of limit + 1 bytes, so a file that grows while it is read is
//! refused too. Also: directories and files the host keeps for itself (the
//! component cache, the object store), made readable by their owner only.
//! A leaf module: it depends on nothing else in the crate.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest contract file, in bytes.
pub const MAX_CONTRACT_BYTES: u64 = 1024 * 1024;

/// Largest secrets file, in bytes.
pub const MAX_SECRETS_BYTES: u64 = 1024 * 1024;

/// The whole of the regular file at `path`, if it holds at most `limit`
/// bytes. Errors say what the file is when it is not a regular file, and
/// its size and the limit when it is too large.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(len, limit));
    }
    read_limited(file, limit)
}

/// The regular file at `path`, opened for reading without blocking (a fifo
/// or a device is refused, not waited on), for a caller that reads it in
/// bounded pieces. Errors say what the file is when it is not a regular
/// file.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    regular_only(file)
}

/// A file opened to be written at its end (made if missing), without
/// blocking on a fifo (one with no reader is refused by the system, one
/// with a reader by the check), and refused unless it is a regular file.
pub(crate) fn open_regular_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a fifo; only regular files are written",
                )
            } else {
                e
            }
        })?;
    regular_only(file)
}

/// `file`, if it is a regular file; else an error saying what it is.
fn regular_only(file: File) -> io::Result<File> {
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a fifo"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {what}; only regular files are read"),
        ));
    }
    Ok(file)
}

/// What `reader` yields, if at most `limit` bytes.
pub(crate) fn read_limited(reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub(crate) fn read_bounded_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

fn too_large(bytes: u64, limit: u64) -> io::Error {
    let more = if bytes > limit { "more than" } else { "at" };
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("is {more} {bytes} bytes, over the limit of {limit} bytes"),
    )
}

/// Make `dir` and its missing parents, each created mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Create (or truncate) `path` for writing, mode 0600 when created.
pub(crate) fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// The mode of `dir` when its group or others may write it, `None` when
/// only its owner may.
pub(crate) fn writable_by_others(dir: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    Ok((mode & 0o022 != 0).then_some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("chassis-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn regular_files_under_the_limit_are_read() {
        let p = tmp("ok");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap(), b"hello");
        let err = read_bounded(&p, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(
            err.to_string().contains("over the limit of 4 bytes"),
            "{err}"
        );
    }

    #[test]
    fn special_files_are_refused_without_blocking_or_reading() {
        let err = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let err = read_bounded(Path::new("/"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        // A fifo with no writer: opening it must not wait for one.
        let fifo = tmp("fifo");
        let _ = std::fs::remove_file(&fifo);
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read_bounded(&fifo, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
        // A stream is cut at the limit, not read whole.
        let err = read_limited(std::io::repeat(0), 1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    }
}
