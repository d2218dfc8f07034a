//! [`NatsStore`]: objects in a NATS JetStream key-value bucket, shared by
//! every worker connected to the same NATS server or cluster.
//!
//! Layout: one bucket, [`BUCKET`], keeping one revision per key. An object
//! is the entry `o.<hex(namespace)>.<hex(name)>` (hex, so a name is never a
//! subject's wildcard or separator and byte order is kept); a namespace's
//! usage is the entry `u.<hex(namespace)>`, JSON `{"bytes", "objects"}`.
//! A put of one entry is whole: a reader sees the old value or the new one.
//!
//! The quota is held across workers by compare-and-set on revisions:
//! a write reads the object's revision and the usage's, writes the new
//! usage only if no one changed it since (`update` with the revision it
//! read), then the object only if no one changed it since; when the object
//! lost the race, the usage is given back and the whole write tried again.
//! So concurrent writers on any machines cannot pass the quota together. A
//! worker that dies between the two writes leaves the usage counted
//! higher than the objects: the quota errs on the safe side, never over.
//!
//! Listing reads the namespace's keys (headers only, the latest revision of
//! each) through an ordered consumer filtered to the namespace, sorts them
//! and cuts the page: its cost grows with the namespace's object count,
//! which the contract bounds (`max_objects`).
//!
//! The largest object is also bounded by the server's `max_payload`
//! (1 MiB unless the server is configured otherwise): a larger one is
//! refused as too large, naming that bound.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{ObjectInfo, Page, Quota, Store, StoreError, StoreFuture, Usage, after_write};

/// The key-value bucket of swarms' objects.
pub const BUCKET: &str = "chassis_storage";

/// Tries of one write against other writers before it is given up.
const MAX_TRIES: u32 = 200;

/// Bytes of a message's own framing kept free under `max_payload`.
const PAYLOAD_SLACK: u64 = 1024;

/// Swarms' objects in [`BUCKET`].
#[derive(Clone)]
pub struct NatsStore {
    kv: kv::Store,
    client: async_nats::Client,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("bucket", &self.kv.name)
            .finish()
    }
}

/// A namespace's usage entry.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Counted {
    bytes: u64,
    objects: u64,
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("NATS bucket {BUCKET}: {what}: {e}"))
}

fn object_key(namespace: &str, name: &str) -> String {
    format!("o.{}.{}", hex::encode(namespace), hex::encode(name))
}

fn usage_key(namespace: &str) -> String {
    format!("u.{}", hex::encode(namespace))
}

/// Whether an entry holds a value (not a delete or purge marker).
fn present(entry: &kv::Entry) -> bool {
    entry.operation == kv::Operation::Put
}

impl NatsStore {
    /// Connect to `url` (one or several, comma-separated) and open the
    /// bucket, made if missing with `replicas` copies.
    pub async fn connect(url: &str, replicas: usize) -> Result<Self, StoreError> {
        let client = async_nats::ConnectOptions::new()
            .name("chassis-storage")
            .connect(
                url.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to NATS at {url}: {e}")))?;
        Self::open(&jetstream::new(client), replicas).await
    }

    /// Open the bucket through a JetStream context already connected,
    /// made if missing with `replicas` copies.
    pub async fn open(jetstream: &jetstream::Context, replicas: usize) -> Result<Self, StoreError> {
        let kv = jetstream
            .create_or_update_key_value(kv::Config {
                bucket: BUCKET.to_string(),
                description: "chassis: swarms' objects (storage import), one namespace per swarm"
                    .to_string(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| failed("opening", e))?;
        Ok(Self {
            kv,
            client: jetstream.client(),
        })
    }

    /// Entries in the bucket, of every namespace (objects and usage
    /// records), as the server counts them.
    pub async fn entry_count(&self) -> Result<u64, StoreError> {
        let status = self
            .kv
            .status()
            .await
            .map_err(|e| failed("reading the status", e))?;
        Ok(status.values())
    }

    /// The largest value the server takes in one message.
    fn max_value(&self) -> u64 {
        (self.client.server_info().max_payload as u64).saturating_sub(PAYLOAD_SLACK)
    }

    async fn entry(&self, key: &str) -> Result<Option<kv::Entry>, StoreError> {
        self.kv.entry(key).await.map_err(|e| failed("reading", e))
    }

    /// The usage and the revision to update it at (`None`: no entry yet).
    async fn counted(&self, namespace: &str) -> Result<(Counted, Option<u64>), StoreError> {
        match self.entry(&usage_key(namespace)).await? {
            Some(entry) if present(&entry) => {
                let counted = serde_json::from_slice(&entry.value)
                    .map_err(|e| failed("the usage entry", e))?;
                Ok((counted, Some(entry.revision)))
            }
            Some(entry) => Ok((Counted::default(), Some(entry.revision))),
            None => Ok((Counted::default(), None)),
        }
    }

    /// Write `key` if its revision is still `revision` (`None`: if it has
    /// none); `Ok(false)` when another writer got there first.
    async fn put_at(
        &self,
        key: &str,
        value: bytes::Bytes,
        revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        let result = match revision {
            Some(revision) => self.kv.update(key, value, revision).await,
            None => self.kv.update(key, value, 0).await,
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(failed("writing", e)),
        }
    }

    /// Change the namespace's usage by `change` (which may refuse it),
    /// under compare-and-set: read again and retried when another writer
    /// changed it in between.
    async fn adjust(
        &self,
        namespace: &str,
        change: impl Fn(Usage) -> Result<Usage, StoreError>,
    ) -> Result<(), StoreError> {
        for _ in 0..MAX_TRIES {
            let (counted, revision) = self.counted(namespace).await?;
            let after = change(Usage {
                bytes: counted.bytes,
                objects: counted.objects,
            })?;
            let body = serde_json::to_vec(&Counted {
                bytes: after.bytes,
                objects: after.objects,
            })
            .map_err(|e| failed("the usage entry", e))?;
            if self
                .put_at(&usage_key(namespace), body.into(), revision)
                .await?
            {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        Err(failed(
            "updating the usage",
            format!("other writers changed it {MAX_TRIES} times in a row"),
        ))
    }

    async fn set_whole(
        &self,
        namespace: &str,
        name: &str,
        value: Vec<u8>,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let size = value.len() as u64;
        let max_value = self.max_value();
        if size > quota.max_object_bytes.min(max_value) {
            return Err(StoreError::TooLarge {
                size,
                max: quota.max_object_bytes.min(max_value),
            });
        }
        let key = object_key(namespace, name);
        let value = bytes::Bytes::from(value);
        for _ in 0..MAX_TRIES {
            let entry = self.entry(&key).await?;
            let old = entry
                .as_ref()
                .filter(|e| present(e))
                .map(|e| e.value.len() as u64);
            let revision = entry.as_ref().map(|e| e.revision);
            self.adjust(namespace, |usage| after_write(usage, old, size, quota))
                .await?;
            // An error here leaves the usage counted: the write may have
            // landed before the answer was lost.
            if self.put_at(&key, value.clone(), revision).await? {
                return Ok(());
            }
            // Another writer changed the object between the two reads and
            // this write: give the usage back and start again from it.
            self.adjust(namespace, |usage| Ok(undo(usage, old, size)))
                .await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Err(failed(
            "writing",
            format!("other writers changed the object {MAX_TRIES} times in a row"),
        ))
    }

    async fn delete_whole(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let key = object_key(namespace, name);
        for _ in 0..MAX_TRIES {
            let Some(entry) = self.entry(&key).await?.filter(present) else {
                return Ok(false);
            };
            match self
                .kv
                .delete_expect_revision(&key, Some(entry.revision))
                .await
            {
                Ok(()) => {
                    let size = entry.value.len() as u64;
                    self.adjust(namespace, |usage| {
                        Ok(Usage {
                            bytes: usage.bytes.saturating_sub(size),
                            objects: usage.objects.saturating_sub(1),
                        })
                    })
                    .await?;
                    return Ok(true);
                }
                Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(failed("deleting", e)),
            }
        }
        Err(failed(
            "deleting",
            format!("other writers changed the object {MAX_TRIES} times in a row"),
        ))
    }

    /// Every name in `namespace`, sorted.
    async fn names(&self, namespace: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}o.{}.", self.kv.prefix, hex::encode(namespace));
        let consumer = self
            .kv
            .stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("chassis storage listing".to_string()),
                filter_subject: format!("{prefix}>"),
                headers_only: true,
                replay_policy: consumer::ReplayPolicy::Instant,
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| failed("listing", e))?;
        let mut names = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(names);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| failed("listing", e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| failed("listing", e))?;
            let pending = message.info().map_err(|e| failed("listing", e))?.pending;
            let removed = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
            if !removed
                && let Some(name) = message
                    .subject
                    .as_str()
                    .strip_prefix(&prefix)
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| String::from_utf8(b).ok())
            {
                names.push(name);
            }
            if pending == 0 {
                break;
            }
        }
        names.sort_unstable();
        Ok(names)
    }
}

/// The usage before a write of `size` bytes over `old` was counted.
fn undo(usage: Usage, old: Option<u64>, size: u64) -> Usage {
    Usage {
        bytes: usage
            .bytes
            .saturating_sub(size)
            .saturating_add(old.unwrap_or(0)),
        objects: usage.objects.saturating_sub(u64::from(old.is_none())),
    }
}

impl Store for NatsStore {
    fn get<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            Ok(self
                .entry(&object_key(namespace, name))
                .await?
                .filter(present)
                .map(|e| e.value.to_vec()))
        })
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        value: Vec<u8>,
        quota: Quota,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.set_whole(namespace, name, value, quota))
    }

    fn delete<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.delete_whole(namespace, name))
    }

    fn stat<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<ObjectInfo>> {
        Box::pin(async move {
            Ok(self
                .entry(&object_key(namespace, name))
                .await?
                .filter(present)
                .map(|e| ObjectInfo {
                    size: e.value.len() as u64,
                    modified_ms: u64::try_from(e.created.unix_timestamp_nanos() / 1_000_000)
                        .unwrap_or(0),
                }))
        })
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let names = self.names(namespace).await?;
            Ok(page(&names, prefix, after, limit))
        })
    }

    fn usage<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Usage> {
        Box::pin(async move {
            let (counted, _) = self.counted(namespace).await?;
            Ok(Usage {
                bytes: counted.bytes,
                objects: counted.objects,
            })
        })
    }
}

/// Up to `limit` of the sorted `names` that start with `prefix`, after
/// `after`.
fn page(names: &[String], prefix: &str, after: Option<&str>, limit: usize) -> Page {
    let start = match after {
        Some(after) if after >= prefix => names.partition_point(|n| n.as_str() <= after),
        _ => names.partition_point(|n| n.as_str() < prefix),
    };
    let mut keys: Vec<String> = names[start..]
        .iter()
        .take_while(|n| n.starts_with(prefix))
        .take(limit.saturating_add(1))
        .cloned()
        .collect();
    let more = keys.len() > limit;
    keys.truncate(limit);
    let cursor = if more { keys.last().cloned() } else { None };
    Page { keys, cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page starts after the cursor, keeps to the prefix and says when
    /// more follow, as the file store's does.
    #[test]
    fn pages_follow_the_prefix_and_the_cursor() {
        let names: Vec<String> = ["a/1", "a/2", "a/3", "b/1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let first = page(&names, "a/", None, 2);
        assert_eq!(first.keys, ["a/1", "a/2"]);
        assert_eq!(first.cursor.as_deref(), Some("a/2"));
        let second = page(&names, "a/", first.cursor.as_deref(), 2);
        assert_eq!(second.keys, ["a/3"]);
        assert_eq!(second.cursor, None);
        assert_eq!(page(&names, "", Some("a/3"), 10).keys, ["b/1"]);
        assert!(page(&names, "c", None, 10).keys.is_empty());
    }

    /// Keys are hex, so any name makes a valid key whose order is the
    /// name's byte order.
    #[test]
    fn keys_keep_byte_order_and_hold_no_separator() {
        let a = object_key("notes", "a.b/c");
        let b = object_key("notes", "a.b/d");
        assert!(a < b);
        assert_eq!(a.matches('.').count(), 2);
        assert_eq!(
            undo(
                Usage {
                    bytes: 10,
                    objects: 2
                },
                None,
                4
            ),
            Usage {
                bytes: 6,
                objects: 1
            }
        );
    }
}
