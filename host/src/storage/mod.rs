//! Where swarms' objects are kept: the stores behind the `storage` import.
//!
//! Each swarm has one namespace, its swarm id; the import
//! (`imports::storage`) checks names ([`names`]), the contract's grant and
//! the call rate, records every operation, and then asks the host's
//! [`Store`]. The store keeps the quota exact: a write that would take the
//! namespace over its bytes or object count is refused whole, under the
//! namespace's lock, so concurrent writers cannot pass it together.
//!
//! - [`files::FileStore`] keeps objects as files under a data directory,
//!   each written whole (temporary file, fsync, rename, fsync of the
//!   directory): after a crash an object is its old version or its new one.
//! - `nats::NatsStore` (feature `nats`) keeps them in a JetStream
//!   key-value bucket that every worker of a fleet shares; the quota holds
//!   across workers by compare-and-set.
//!
//! Data flow: import call → [`names::check`] → [`Store`] method (on a
//! blocking thread for files) → answer, and one `StorageAccess` event.
//! A store's [`StoreError::Unavailable`] carries details for the host's
//! log (paths, the system's error); the guest is told only that the store
//! failed.

pub mod files;
pub mod names;
#[cfg(feature = "nats")]
pub mod nats;

use std::future::Future;
use std::pin::Pin;

pub(crate) use crate::caps::{MAX_OBJECT_BYTES, MAX_OBJECTS_LISTED as MAX_LIST};

/// A namespace's bounds, from the swarm's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes of all objects together.
    pub max_bytes: u64,
    /// Number of objects.
    pub max_objects: u64,
    /// Bytes of one object.
    pub max_object_bytes: u64,
}

/// What a namespace holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of all objects.
    pub bytes: u64,
    /// Number of objects.
    pub objects: u64,
}

/// What a store knows of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Names, in byte order.
    pub keys: Vec<String>,
    /// The last name of this page when more follow.
    pub cursor: Option<String>,
}

/// Why a store refused or failed an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The write would take the namespace over its quota.
    #[error(
        "the write would hold {bytes} bytes in {objects} objects, over the quota of {max_bytes} bytes (max_total_bytes) and {max_objects} objects (max_objects)"
    )]
    Quota {
        /// Bytes after the write.
        bytes: u64,
        /// Objects after the write.
        objects: u64,
        /// The quota's bytes.
        max_bytes: u64,
        /// The quota's objects.
        max_objects: u64,
    },
    /// The object is over `max_object_bytes`.
    #[error("{size} bytes, over max_object_bytes = {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The store itself failed (a disk, a connection); nothing changed.
    #[error("the store failed: {0}")]
    Unavailable(String),
}

/// A boxed future, for [`Store`]'s methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where objects are kept, by namespace (a swarm id) and name (checked by
/// [`names::check`] before a store sees it).
pub trait Store: Send + Sync + 'static {
    /// The object's bytes, or `None`.
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Write the object whole, within `quota`.
    fn set<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        value: Vec<u8>,
        quota: Quota,
    ) -> StoreFuture<'a, ()>;

    /// Remove the object; whether it existed.
    fn delete<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, bool>;

    /// The object's size and time, or `None`.
    fn stat<'a>(&'a self, namespace: &'a str, name: &'a str)
    -> StoreFuture<'a, Option<ObjectInfo>>;

    /// Up to `limit` names starting with `prefix`, after `after`, in byte
    /// order.
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page>;

    /// What the namespace holds.
    fn usage<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Usage>;
}

/// Where a listing of `prefix` after the cursor `after` starts: just after
/// the cursor, or at the prefix when the cursor is before it (or none).
pub(crate) fn list_start<'a>(prefix: &'a str, after: Option<&'a str>) -> std::ops::Bound<&'a str> {
    match after {
        Some(after) if after >= prefix => std::ops::Bound::Excluded(after),
        _ => std::ops::Bound::Included(prefix),
    }
}

/// The page of up to `limit` names from `names` (in byte order, from the
/// listing's start) that begin with `prefix`, with the cursor when more
/// follow.
pub(crate) fn page_of<'a>(
    names: impl Iterator<Item = &'a String>,
    prefix: &str,
    limit: usize,
) -> Page {
    let mut keys: Vec<String> = names
        .take_while(|name| name.starts_with(prefix))
        .take(limit.saturating_add(1))
        .cloned()
        .collect();
    let more = keys.len() > limit;
    keys.truncate(limit);
    let cursor = if more { keys.last().cloned() } else { None };
    Page { keys, cursor }
}

/// Whether a write of `new_size` bytes over an object of `old` bytes (or
/// none) keeps `usage` within `quota`: the usage after it, or why not.
pub(crate) fn after_write(
    usage: Usage,
    old: Option<u64>,
    new_size: u64,
    quota: Quota,
) -> Result<Usage, StoreError> {
    if new_size > quota.max_object_bytes {
        return Err(StoreError::TooLarge {
            size: new_size,
            max: quota.max_object_bytes,
        });
    }
    let after = Usage {
        bytes: usage
            .bytes
            .saturating_sub(old.unwrap_or(0))
            .saturating_add(new_size),
        objects: usage.objects.saturating_add(u64::from(old.is_none())),
    };
    if after.bytes > quota.max_bytes || after.objects > quota.max_objects {
        return Err(StoreError::Quota {
            bytes: after.bytes,
            objects: after.objects,
            max_bytes: quota.max_bytes,
            max_objects: quota.max_objects,
        });
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quota holds exactly: a write that lands on the bound passes,
    /// one byte or one object over is refused; a replacement counts only
    /// its difference.
    #[test]
    fn the_quota_is_exact_at_the_bound() {
        let quota = Quota {
            max_bytes: 100,
            max_objects: 2,
            max_object_bytes: 60,
        };
        let used = Usage {
            bytes: 40,
            objects: 1,
        };
        assert_eq!(
            after_write(used, None, 60, quota),
            Ok(Usage {
                bytes: 100,
                objects: 2
            })
        );
        assert!(matches!(
            after_write(used, None, 61, quota),
            Err(StoreError::TooLarge { size: 61, max: 60 })
        ));
        let full = Usage {
            bytes: 100,
            objects: 2,
        };
        assert!(matches!(
            after_write(full, None, 0, quota),
            Err(StoreError::Quota { objects: 3, .. })
        ));
        assert_eq!(after_write(full, Some(60), 60, quota), Ok(full));
        assert!(matches!(
            after_write(full, Some(59), 60, quota),
            Err(StoreError::Quota { bytes: 101, .. })
        ));
    }
}
