//! `notes`: a swarm that keeps state between tasks in its object store
//! (the `storage` import; `config/notes.toml` grants it).
//!
//! - `count`: `{"counter": "visits"}` → `{"counter": "visits", "value": n}`:
//!   adds one to the counter kept in the object `counters/<counter>` and
//!   answers the new value (1 the first time);
//! - `put`: `{"name": "docs/a", "note": <any JSON>}` → `{"name", "bytes"}`;
//! - `get`: `{"name": "docs/a"}` → `{"name", "note"}` (`note` is null when
//!   there is none);
//! - `list`: `{"prefix": "docs/"}` → `{"names": [...]}`;
//! - `stat`: `{"name": "docs/a"}` → `{"name", "exists", "size"}` (`size`
//!   is null when there is none);
//! - `page`: `{"prefix": "docs/", "cursor": null, "limit": 10}` → one page
//!   `{"names", "cursor"}` (`cursor` is null on the last);
//! - `delete`: `{"name": "docs/a"}` → `{"deleted": "docs/a"}`;
//! - `usage`: `{}` → the namespace's bytes and objects against its quota;
//! - `fill`: `{"n": N, "bytes": B}` → N writes of a B-byte object over the
//!   names `fill/0`..`fill/15`, and `scan`: `{"n": N}` → N reads of them:
//!   load for the benchmark (`cargo xtask bench`, figure (i)).
//!
//! Names go to the host as given: the host checks them (a name that tries
//! to leave the swarm's namespace is refused and recorded).

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, info, json, storage};
use serde::Deserialize;

/// The swarm.
pub struct Notes;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    counter: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    name: String,
    note: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fill {
    n: u32,
    #[serde(default)]
    bytes: usize,
}

/// The names `fill` and `scan` go over.
fn filled(i: u32) -> String {
    format!("fill/{}", i % 16)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageOf {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    cursor: Option<String>,
    limit: u32,
}

impl Swarm for Notes {
    const TASK_TYPES: &'static [&'static str] = &[
        "count", "put", "get", "list", "stat", "page", "delete", "usage", "fill", "scan",
    ];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "count" => {
                let Count { counter } = request.payload()?;
                let name = format!("counters/{counter}");
                let value = match storage::get(&name)? {
                    Some(bytes) => {
                        let bytes: [u8; 8] = bytes
                            .try_into()
                            .map_err(|_| TaskError::failed(format!("{name} is not a counter")))?;
                        u64::from_le_bytes(bytes) + 1
                    }
                    None => 1,
                };
                storage::set(&name, &value.to_le_bytes())?;
                info!("{name} = {value}");
                Ok(json!({ "counter": counter, "value": value }))
            }
            "put" => {
                let Put { name, note } = request.payload()?;
                let bytes = serde_json::to_vec(&note)
                    .map_err(|e| TaskError::failed(format!("serializing the note: {e}")))?;
                storage::set(&name, &bytes)?;
                Ok(json!({ "name": name, "bytes": bytes.len() }))
            }
            "get" => {
                let Named { name } = request.payload()?;
                let note: Option<Value> = storage::get_json(&name)?;
                Ok(json!({ "name": name, "note": note }))
            }
            "list" => {
                let List { prefix } = request.payload()?;
                Ok(json!({ "names": storage::list(&prefix)? }))
            }
            "stat" => {
                let Named { name } = request.payload()?;
                let exists = storage::exists(&name)?;
                let size = storage::stat(&name)?.map(|i| i.size);
                Ok(json!({ "name": name, "exists": exists, "size": size }))
            }
            "page" => {
                let PageOf {
                    prefix,
                    cursor,
                    limit,
                } = request.payload()?;
                let (names, cursor) = storage::list_page(&prefix, cursor.as_deref(), limit)?;
                Ok(json!({ "names": names, "cursor": cursor }))
            }
            "delete" => {
                let Named { name } = request.payload()?;
                storage::delete(&name)?;
                Ok(json!({ "deleted": name }))
            }
            "usage" => {
                let u = storage::usage()?;
                Ok(json!({
                    "bytes": u.bytes,
                    "objects": u.objects,
                    "max_bytes": u.max_bytes,
                    "max_objects": u.max_objects,
                    "max_object_bytes": u.max_object_bytes,
                    "read_only": u.read_only,
                }))
            }
            "fill" => {
                let f: Fill = request.payload()?;
                let value = vec![7u8; f.bytes];
                for i in 0..f.n {
                    storage::set(&filled(i), &value)?;
                }
                Ok(json!({ "writes": f.n }))
            }
            "scan" => {
                let f: Fill = request.payload()?;
                let mut bytes = 0;
                for i in 0..f.n {
                    bytes += storage::get(&filled(i))?.map_or(0, |v| v.len());
                }
                Ok(json!({ "reads": f.n, "bytes": bytes }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Notes);
