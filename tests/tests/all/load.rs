//! Load-time refusals that need more than a case folder of
//! `tests/cases/load/` (see `cases.rs`): refusals that depend on what is
//! already loaded, on the host's configuration, cache or secrets, on files
//! that cannot be committed (devices, fifos), or whose check goes beyond the
//! error's text (the refused imports one by one, the events, the sizes).
//! Each names the problem, and the host still serves afterwards.

use chassis::{Chassis, Error, TaskRequest};
use chassis::{LoadError, TaskError};
use chassis_tests::{Host, TestHost, component, contract, guests, scratch_dir};
use serde_json::json;

/// The host keeps working after a refusal: it still loads, and serves.
async fn still_serves(chassis: &Chassis) {
    if chassis.describe("hello-world").is_err() {
        chassis
            .load(guests::example(guests::HELLO_WORLD))
            .await
            .unwrap();
    }
    let o = chassis
        .execute_task(
            "hello-world",
            TaskRequest::new("hello", json!({"name": "after"})),
        )
        .await
        .unwrap();
    assert_eq!(o.output["greeting"], json!("Hello, after!"));
}

#[tokio::test]
async fn a_second_load_of_the_same_id_is_already_loaded() {
    let chassis = TestHost::new().example(guests::HELLO_WORLD).build().await;
    let err = chassis
        .load(guests::example(guests::HELLO_WORLD))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::AlreadyLoaded(ref id)) if id == "hello-world"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already loaded"), "{err}");
    // Same id from bytes is refused too.
    let err = chassis
        .load_bytes(
            &component(guests::ANALYZER),
            contract("swarm_id = \"hello-world\""),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::AlreadyLoaded(_))),
        "{err:?}"
    );
    still_serves(&chassis).await;
}

#[tokio::test]
async fn a_broken_component_is_refused_with_the_reason() {
    let chassis = TestHost::new().build().await;
    let mut bytes = component(guests::HELLO_WORLD);
    bytes.truncate(bytes.len() / 2);
    let err = chassis
        .load_bytes(&bytes, contract("swarm_id = \"broken\""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::InvalidComponent { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid component"), "{err}");
    still_serves(&chassis).await;
}

/// Load `guest` under `contract_text` and return the refused imports.
async fn refused_imports(guest: &str, contract_text: &str) -> Vec<(String, String)> {
    let chassis = TestHost::new().build().await;
    let err = chassis
        .load_bytes(&component(guest), contract(contract_text))
        .await
        .unwrap_err();
    let text = err.to_string();
    let Error::Load(LoadError::ImportNotPermitted { refusals, .. }) = err else {
        panic!("expected an import refusal, got {text}");
    };
    for r in &refusals {
        assert!(
            text.contains(&r.import) && text.contains(&r.field),
            "{text}"
        );
    }
    assert!(
        chassis.list().is_empty(),
        "nothing is loaded after a refusal"
    );
    still_serves(&chassis).await;
    refusals.into_iter().map(|r| (r.import, r.field)).collect()
}

#[tokio::test]
async fn credentials_import_needs_scoped_credentials() {
    let refused = refused_imports(
        guests::GUARDIAN_COUNCIL,
        "swarm_id = \"gc\"\n[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n",
    )
    .await;
    assert_eq!(
        refused,
        vec![(
            "infrafabric:chassis/credentials@0.1.0".to_string(),
            "security.scoped_credentials".to_string()
        )]
    );
}

#[tokio::test]
async fn http_proxy_import_needs_proxy_only_network_access() {
    let refused = refused_imports(
        guests::EGRESS,
        "swarm_id = \"eg\"\n[security]\nscoped_credentials = [\"k\"]\nnetwork_access = \"none\"\n",
    )
    .await;
    assert_eq!(
        refused,
        vec![(
            "infrafabric:chassis/http-proxy@0.1.0".to_string(),
            "security.network_access".to_string()
        )]
    );
}

#[tokio::test]
async fn filesystem_imports_are_always_refused() {
    let refused = refused_imports(
        guests::FS_ESCAPE,
        "swarm_id = \"fs\"\n[security]\nwasi_capabilities = [\"wasi:clocks/wall-clock\"]\n",
    )
    .await;
    assert!(!refused.is_empty());
    for (import, field) in &refused {
        assert!(import.starts_with("wasi:filesystem/"), "{import}");
        assert_eq!(field, "security.filesystem_access");
    }
}

#[tokio::test]
async fn socket_imports_are_always_refused() {
    // Even a contract with proxy access (and the clock sockets use for
    // timeouts) gets no sockets of its own.
    let refused = refused_imports(
        guests::NET_ESCAPE,
        "swarm_id = \"net\"\n[security]\nnetwork_access = \"proxy_only\"\n\
         wasi_capabilities = [\"wasi:clocks/monotonic-clock\"]\n",
    )
    .await;
    let names: Vec<&str> = refused.iter().map(|(i, _)| i.as_str()).collect();
    assert!(
        names.iter().any(|i| i.starts_with("wasi:sockets/tcp")),
        "{names:?}"
    );
    for (import, field) in &refused {
        assert!(import.starts_with("wasi:sockets/"), "{import}");
        assert_eq!(field, "security.network_access");
    }
}

#[tokio::test]
async fn clock_and_random_imports_need_wasi_capabilities() {
    let refused = refused_imports(guests::SANDBOX_PROBE, "swarm_id = \"probe\"\n").await;
    let names: Vec<&str> = refused
        .iter()
        .map(|(i, _)| i.split('@').next().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock"]
    );
    assert!(
        refused
            .iter()
            .all(|(_, f)| f == "security.wasi_capabilities")
    );
}

#[tokio::test]
async fn load_bytes_validates_a_contract_built_in_code() {
    let chassis = TestHost::new().build().await;
    let mut c = contract("swarm_id = \"code\"");
    c.resource_limits.max_cpu_percent = 0;
    let err = chassis
        .load_bytes(&component(guests::HELLO_WORLD), c)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::Contract(_))),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("resource_limits.max_cpu_percent"),
        "{err}"
    );
}

/// A fresh, private cache directory (not created yet) under target/tmp.
fn cache_dir(name: &str) -> std::path::PathBuf {
    scratch_dir(&format!("load-cache-{name}")).join("cache")
}

/// A host using the cache `dir`, with hello-world loaded.
async fn load_cached(dir: &std::path::Path) -> (Host, chassis::SwarmInfo) {
    let host = TestHost::new()
        .config(|c| c.with_cache_dir(dir))
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    let info = host.info().clone();
    (host, info)
}

#[tokio::test]
async fn a_second_load_comes_from_the_component_cache_and_runs() {
    use chassis::CacheUse;
    let dir = cache_dir("second");
    let (_, first) = load_cached(&dir).await;
    assert_eq!(first.cache, CacheUse::Miss);
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "one entry, no temporary files left");

    let (chassis, second) = load_cached(&dir).await;
    assert_eq!(second.cache, CacheUse::Hit);
    assert_eq!(second.task_types, first.task_types);
    still_serves(&chassis).await;
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled_not_loaded() {
    use chassis::CacheUse;
    let dir = cache_dir("corrupt");
    load_cached(&dir).await;
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for damage in [
        // Machine code changed behind the digest's back.
        |b: &mut Vec<u8>| {
            let mid = b.len() / 2;
            b[mid] ^= 0x5a;
        },
        // Cut short, as by a crash mid-write of someone else's tool.
        |b: &mut Vec<u8>| b.truncate(b.len() / 3),
        // Not an entry at all.
        |b: &mut Vec<u8>| *b = b"\0asm garbage".to_vec(),
    ] {
        let mut bytes = std::fs::read(&entry).unwrap();
        damage(&mut bytes);
        std::fs::write(&entry, &bytes).unwrap();
        let (chassis, info) = load_cached(&dir).await;
        assert_eq!(info.cache, CacheUse::Replaced);
        still_serves(&chassis).await;
        // The entry was rewritten whole: the next load is a hit again.
        let (_, info) = load_cached(&dir).await;
        assert_eq!(info.cache, CacheUse::Hit);
    }
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn a_cache_directory_others_can_write_is_refused_with_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cache_dir("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = TestHost::new()
        .config(|c| c.with_cache_dir(&dir))
        .try_build()
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::Cache(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.display().to_string()) && text.contains("writable by group or others"),
        "{text}"
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

/// A host that records events, with hello-world loaded as the bystander.
fn host_with_sink() -> TestHost {
    TestHost::new().memory_sink().example(guests::HELLO_WORLD)
}

#[tokio::test]
async fn a_describe_answer_of_one_3_mib_nul_name_is_refused_and_bounded() {
    let chassis = host_with_sink().build().await;
    let err = chassis
        .load_bytes(&component(guests::LIAR), contract("swarm_id = \"liar\""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::BadTaskTypes { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("3145728 bytes long"), "{text}");
    assert!(
        text.len() < 400 && !text.contains('\0'),
        "{} bytes",
        text.len()
    );
    // The refusal's record is as small as its message; nothing is loaded.
    let events = chassis.events();
    let rejected = events
        .iter()
        .find_map(|e| match e {
            chassis::Event::LoadRejected { swarm_id, reason } if swarm_id == "liar" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .expect("a load_rejected event");
    assert!(rejected.len() < 400, "{}", rejected.len());
    assert!(
        !events.iter().any(
            |e| matches!(e, chassis::Event::ModuleLoaded { swarm_id, .. } if swarm_id == "liar")
        )
    );
    assert!(chassis.describe("liar").is_err());
    still_serves(&chassis).await;
}

#[tokio::test]
async fn an_unknown_task_type_error_is_bounded_and_escaped() {
    let chassis = TestHost::new().example(guests::HELLO_WORLD).build().await;
    let asked = format!("\u{1b}[2K{}", "x".repeat(100_000));
    let err = chassis
        .execute_task("hello-world", TaskRequest::new(asked, json!({})))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Task(TaskError::TaskNotExported { .. })),
        "{text}"
    );
    assert!(text.len() < 512, "{} bytes", text.len());
    assert!(
        !text.contains('\u{1b}') && text.contains("\\u{1b}[2K"),
        "{text}"
    );
    assert!(text.contains("hello, echo, add"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_that_loops_while_loading_is_stopped_by_the_load_timeout() {
    let chassis = host_with_sink()
        .config(|c| c.with_load_timeout(std::time::Duration::from_millis(500)))
        .build()
        .await;
    // The contract allows five minutes per task; loading gets its own limit.
    let slow_bytes = component(guests::SLOW_LOAD);
    let slow = chassis.load_bytes(
        &slow_bytes,
        contract("swarm_id = \"slow-load\"\n[resource_limits]\ntask_timeout_seconds = 300\n"),
    );
    // A bystander loads and runs beside it.
    let other = async {
        let c = chassis.clone();
        c.load_bytes(
            &component(guests::HELLO_WORLD),
            contract("swarm_id = \"beside\""),
        )
        .await
        .unwrap();
        c.execute_task("beside", TaskRequest::new("hello", json!({"name": "b"})))
            .await
            .unwrap()
    };
    let (err, beside) = tokio::join!(slow, other);
    let err = err.unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::LoadTimeout { seconds, .. }) if seconds == 0.5),
        "{err:?}"
    );
    assert!(err.to_string().contains("load timeout"), "{err}");
    assert_eq!(beside.output["greeting"], json!("Hello, b!"));
    assert!(chassis.events().iter().any(|e| matches!(e,
        chassis::Event::LoadRejected { swarm_id, reason } if swarm_id == "slow-load" && reason.contains("load timeout"))));
    still_serves(&chassis).await;
}

#[tokio::test]
async fn special_and_oversized_component_files_are_refused_without_reading_them() {
    let dir = scratch_dir("load-files");
    let write_contract = |name: &str, module: &str| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("swarm_id = \"{name}\"\nwasm_module = \"{module}\"\n"),
        )
        .unwrap();
        path
    };
    let fifo = dir.join("component.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A limit that hello-world (the bystander) fits exactly, and a larger
    // real component.
    let limit = component(guests::HELLO_WORLD).len();
    let big = component(guests::GUARDIAN_COUNCIL);
    assert!(big.len() > limit);
    std::fs::write(dir.join("big.wasm"), &big).unwrap();
    let chassis = TestHost::new()
        .config(|c| c.with_max_component_bytes(limit as u64))
        .build()
        .await;
    for (name, module, expected) in [
        ("zero", "/dev/zero", "character device"),
        ("fifo", fifo.to_str().unwrap(), "fifo"),
        ("dir", "/", "directory"),
        ("big", "big.wasm", "over the limit"),
    ] {
        let err = chassis
            .load(write_contract(name, module))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::Load(LoadError::Io { .. })),
            "{name}: {err:?}"
        );
        assert!(
            text.contains(expected) && text.contains("cannot read component"),
            "{name}: {text}"
        );
    }
    // Bytes handed over directly are held to the same limit.
    let err = chassis
        .load_bytes(&big, contract("swarm_id = \"big-bytes\""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the host's limit"), "{err}");
    // A contract that is a device is refused the same way.
    let err = chassis::ServiceContract::from_file("/dev/zero").unwrap_err();
    assert!(err.to_string().contains("character device"), "{err}");
    still_serves(&chassis).await;
}

#[tokio::test]
async fn a_malformed_signing_key_is_refused_at_load() {
    let chassis = TestHost::new()
        .secret("guardian-council", "guardian_signing_key", "ed25519:zz")
        .build()
        .await;
    let err = chassis
        .load(guests::example(guests::GUARDIAN_COUNCIL))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(LoadError::BadSecret { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("guardian_signing_key") && text.contains("64 hex digits"),
        "{text}"
    );
    assert!(!text.contains("zz"), "the value is never shown: {text}");
    still_serves(&chassis).await;
}
