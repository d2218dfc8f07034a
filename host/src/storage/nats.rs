//! [`NatsStore`]: objects in a NATS JetStream key-value bucket, shared by
//! every worker connected to the same NATS server or cluster.
//!
//! Layout: one bucket, [`BUCKET`], keeping one revision per key. An object
//! is the entry `o.<hex(namespace)>.<hex(name)>` (hex, so a name is never a
//! subject's wildcard or separator and byte order is kept); a namespace's
//! usage is the entry `u.<hex(namespace)>`, JSON `{"bytes", "objects"}`.
//! A put of one entry is whole: a reader sees the old value or the new one.
//!
//! The quota is held across workers by compare-and-set on revisions. A
//! write reads the object's revision and the usage's; it reserves what the
//! write adds (growth, and one object when it is new) by writing the usage
//! only if no one changed it since (`update` at the revision it read), then
//! writes the object only if no one changed it since. When the object lost
//! the race, the reservation is given back and the whole write tried again;
//! when it landed, what a smaller object frees is given back after. So the
//! usage is never lower than what is kept: writers on any machines cannot
//! pass the quota together, and a worker that dies between the steps, or a
//! put whose answer is lost, leaves the usage counted higher (the quota errs
//! toward refusing). A write, once started, is run to its end on a task of
//! its own even when the caller stops waiting (the import gives up at the
//! task's deadline).
//!
//! A delete writes a delete marker at the object's revision (so a writer in
//! between wins), gives back the object's usage, then purges the marker, so
//! deleted names do not pile up in the bucket (a purge that fails is
//! logged; the marker left reads as no object). Once an object or a marker
//! is written, the call answers done: a give-back that fails after it is
//! logged and leaves the usage counted higher.
//!
//! Listing reads the namespace's keys (headers only, the latest revision of
//! each) through an ordered consumer filtered to the namespace, removed
//! after; it sorts them and cuts the page: its cost grows with the
//! namespace's object count, which the contract bounds (`max_objects`).
//!
//! With `replicas` above 1, reads are answered by any replica and may be a
//! moment behind a write made through another worker; the compare-and-set
//! writes are decided by the stream's leader.
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

/// How long a listing waits for the server's next key.
const LIST_STALL: Duration = Duration::from_secs(5);

/// Bytes of a message's own framing kept free under `max_payload`.
const PAYLOAD_SLACK: u64 = 1024;

/// Swarms' objects in [`BUCKET`].
#[derive(Clone)]
pub struct NatsStore {
    kv: kv::Store,
    jetstream: jetstream::Context,
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
        let client = crate::serve::queue::connect(
            url,
            &crate::serve::queue::trust::NatsAuth::default(),
            "chassis",
        )
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
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
            jetstream: jetstream.clone(),
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
        (self.client.max_payload() as u64).saturating_sub(PAYLOAD_SLACK)
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
        for tried in 0..MAX_TRIES {
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
            // A replica behind the leader answers the read with an old
            // revision until it catches up: wait a little longer each time.
            tokio::time::sleep(Duration::from_millis(u64::from(tried.min(20)))).await;
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
        value: bytes::Bytes,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let size = value.len() as u64;
        let max = quota.max_object_bytes.min(self.max_value());
        if size > max {
            return Err(StoreError::TooLarge { size, max });
        }
        let key = object_key(namespace, name);
        for _ in 0..MAX_TRIES {
            let entry = self.entry(&key).await?;
            let old = entry
                .as_ref()
                .filter(|e| present(e))
                .map(|e| e.value.len() as u64);
            let revision = entry.as_ref().map(|e| e.revision);
            // Reserve what the write adds; a shrink is given back only
            // once the smaller object is kept.
            let grows = size.saturating_sub(old.unwrap_or(0));
            let new_object = u64::from(old.is_none());
            self.adjust(namespace, |usage| {
                // Whether it fits once written; what is counted meanwhile.
                after_write(usage, old, size, quota)?;
                Ok(Usage {
                    bytes: usage.bytes.saturating_add(grows),
                    objects: usage.objects.saturating_add(new_object),
                })
            })
            .await?;
            // An error here leaves the reservation counted: the write may
            // have landed before the answer was lost.
            if self.put_at(&key, value.clone(), revision).await? {
                let frees = old.unwrap_or(0).saturating_sub(size);
                if frees > 0 {
                    // The write is made: a give-back that fails leaves the
                    // usage counted higher, which is safe; not an error.
                    if let Err(e) = self
                        .adjust(namespace, |usage| Ok(less(usage, frees, 0)))
                        .await
                    {
                        tracing::warn!(target: "chassis::storage", "{e}; {frees} bytes stay counted");
                    }
                }
                return Ok(());
            }
            // Another writer changed the object between the two reads and
            // this write: give the reservation back and start again.
            self.adjust(namespace, |usage| Ok(less(usage, grows, new_object)))
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
        let subject = format!(
            "{}{key}",
            self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix)
        );
        for _ in 0..MAX_TRIES {
            let Some(entry) = self.entry(&key).await?.filter(present) else {
                return Ok(false);
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("KV-Operation", "DEL");
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                entry.revision.to_string().as_str(),
            );
            let acked = match self
                .jetstream
                .publish_with_headers(subject.clone(), headers, bytes::Bytes::new())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) => {
                    // The delete is made: a give-back that fails leaves the
                    // usage counted higher, which is safe; not an error.
                    let size = entry.value.len() as u64;
                    if let Err(e) = self
                        .adjust(namespace, |usage| Ok(less(usage, size, 1)))
                        .await
                    {
                        tracing::warn!(target: "chassis::storage", "{e}; {size} bytes and one object stay counted");
                    }
                    // The marker itself, if nothing was written after it.
                    if let Err(e) = self
                        .kv
                        .stream
                        .purge()
                        .filter(subject.as_str())
                        .sequence(ack.sequence + 1)
                        .await
                    {
                        tracing::warn!(target: "chassis::storage", "NATS bucket {BUCKET}: purging a delete marker: {e}");
                    }
                    return Ok(true);
                }
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence =>
                {
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

    /// The names a listing's consumer delivers under `prefix`, until it
    /// says none are pending (or goes quiet for [`LIST_STALL`]).
    async fn read_names(
        &self,
        consumer: consumer::Consumer<consumer::push::OrderedConfig>,
        prefix: &str,
        names: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| failed("listing", e))?;
        loop {
            let Some(message) = tokio::time::timeout(LIST_STALL, messages.next())
                .await
                .map_err(|_| failed("listing", "the server sent nothing for 5 s"))?
            else {
                return Ok(());
            };
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
                    .strip_prefix(prefix)
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| String::from_utf8(b).ok())
            {
                names.push(name);
            }
            if pending == 0 {
                return Ok(());
            }
        }
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
        let consumer_name = consumer.cached_info().name.clone();
        let mut names = Vec::new();
        let listed = if consumer.cached_info().num_pending > 0 {
            self.read_names(consumer, &prefix, &mut names).await
        } else {
            Ok(())
        };
        // Not left to expire: a listing per task would keep many alive.
        if let Err(e) = self.kv.stream.delete_consumer(&consumer_name).await {
            tracing::debug!(target: "chassis::storage", "NATS bucket {BUCKET}: removing a listing's consumer: {e}");
        }
        listed?;
        names.sort_unstable();
        Ok(names)
    }
}

/// `usage` less `bytes` and `objects`.
fn less(usage: Usage, bytes: u64, objects: u64) -> Usage {
    Usage {
        bytes: usage.bytes.saturating_sub(bytes),
        objects: usage.objects.saturating_sub(objects),
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
        let (this, namespace, name) = (self.clone(), namespace.to_string(), name.to_string());
        Box::pin(finished(tokio::spawn(async move {
            this.set_whole(&namespace, &name, value.into(), quota).await
        })))
    }

    fn delete<'a>(&'a self, namespace: &'a str, name: &'a str) -> StoreFuture<'a, bool> {
        let (this, namespace, name) = (self.clone(), namespace.to_string(), name.to_string());
        Box::pin(finished(tokio::spawn(async move {
            this.delete_whole(&namespace, &name).await
        })))
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

/// What a write run on its own task came to.
async fn finished<T>(
    write: tokio::task::JoinHandle<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    write
        .await
        .unwrap_or_else(|e| Err(failed("the write's task", e)))
}

/// Up to `limit` of the sorted `names` that start with `prefix`, after
/// `after`.
fn page(names: &[String], prefix: &str, after: Option<&str>, limit: usize) -> Page {
    let start = match super::list_start(prefix, after) {
        std::ops::Bound::Excluded(after) => names.partition_point(|n| n.as_str() <= after),
        std::ops::Bound::Included(from) => names.partition_point(|n| n.as_str() < from),
        std::ops::Bound::Unbounded => 0,
    };
    super::page_of(names[start..].iter(), prefix, limit)
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
    }
}
