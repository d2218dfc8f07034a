//! Every load-time refusal, each checked for an error that names the
//! problem, and the host still serving afterwards.

use chassis::{Chassis, Error, TaskRequest};
use chassis_tests::{component, contract, contract_path};
use serde_json::json;

/// The host keeps working after a refusal.
async fn still_serves(chassis: &Chassis) {
    if chassis.describe("hello-world").is_err() {
        chassis.load(contract_path("hello-world")).await.unwrap();
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
    let chassis = Chassis::new().unwrap();
    chassis.load(contract_path("hello-world")).await.unwrap();
    let err = chassis
        .load(contract_path("hello-world"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyLoaded(ref id) if id == "hello-world"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already loaded"), "{err}");
    // Same id from bytes is refused too.
    let err = chassis
        .load_bytes(
            &component("analyzer"),
            contract("swarm_id = \"hello-world\""),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyLoaded(_)), "{err:?}");
    still_serves(&chassis).await;
}

#[tokio::test]
async fn bytes_that_are_not_wasm_are_refused() {
    let chassis = Chassis::new().unwrap();
    let err = chassis
        .load_bytes(b"#!/bin/sh\nrm -rf /\n", contract("swarm_id = \"text\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotWasm { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("not a valid wasm file") && text.contains("bad magic number"),
        "{text}"
    );
    assert!(text.contains("text"), "names the swarm: {text}");
    still_serves(&chassis).await;
}

#[tokio::test]
async fn a_core_module_is_refused_as_not_a_component() {
    let chassis = Chassis::new().unwrap();
    // The smallest valid core module: magic + version 1.
    let err = chassis
        .load_bytes(b"\0asm\x01\0\0\0", contract("swarm_id = \"core\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CoreModule { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("core WebAssembly module") && text.contains("component is expected"),
        "{text}"
    );
    still_serves(&chassis).await;
}

#[tokio::test]
async fn a_broken_component_is_refused_with_the_reason() {
    let chassis = Chassis::new().unwrap();
    let mut bytes = component("hello_world");
    bytes.truncate(bytes.len() / 2);
    let err = chassis
        .load_bytes(&bytes, contract("swarm_id = \"broken\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidComponent { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid component"), "{err}");
    still_serves(&chassis).await;
}

#[tokio::test]
async fn a_component_without_the_task_export_is_refused() {
    let chassis = Chassis::new().unwrap();
    // The smallest valid component: no imports, no exports.
    let err = chassis
        .load_bytes(b"\0asm\x0d\0\x01\0", contract("swarm_id = \"empty\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingTaskExport { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("does not export `infrafabric:chassis/task@0.1.0`"),
        "{text}"
    );
    assert!(text.contains("exports: nothing"), "{text}");
    still_serves(&chassis).await;
}

/// Load `file_stem` under `contract_text` and return the refused imports.
async fn refused_imports(file_stem: &str, contract_text: &str) -> Vec<(String, String)> {
    let chassis = Chassis::new().unwrap();
    let err = chassis
        .load_bytes(&component(file_stem), contract(contract_text))
        .await
        .unwrap_err();
    let text = err.to_string();
    let Error::ImportNotPermitted { refusals, .. } = err else {
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
        "guardian_council",
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
        "egress",
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
        "fs_escape",
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
        "net_escape",
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
    let refused = refused_imports("sandbox_probe", "swarm_id = \"probe\"\n").await;
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
async fn contract_file_problems_name_the_file() {
    let dir = std::env::temp_dir().join(format!("chassis-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chassis = Chassis::new().unwrap();

    let missing_module = dir.join("no-module.toml");
    std::fs::write(&missing_module, "swarm_id = \"m\"\n").unwrap();
    let err = chassis.load(&missing_module).await.unwrap_err();
    assert!(matches!(err, Error::MissingWasmModule { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("no-module.toml: wasm_module: missing"),
        "{err}"
    );

    let absent = dir.join("absent.toml");
    std::fs::write(
        &absent,
        "swarm_id = \"a\"\nwasm_module = \"nowhere.wasm\"\n",
    )
    .unwrap();
    let err = chassis.load(&absent).await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("nowhere.wasm: cannot read component"),
        "{err}"
    );

    let invalid = dir.join("invalid.toml");
    std::fs::write(
        &invalid,
        "swarm_id = \"i\"\nwasm_module = \"x.wasm\"\n[resource_limits]\nmax_memory_mb = 0\n",
    )
    .unwrap();
    let err = chassis.load(&invalid).await.unwrap_err();
    assert!(matches!(err, Error::Contract(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("invalid.toml:4:") && text.contains("resource_limits.max_memory_mb"),
        "{text}"
    );

    let not_wasm = dir.join("not-wasm.toml");
    std::fs::write(dir.join("fake.wasm"), "not wasm at all").unwrap();
    std::fs::write(&not_wasm, "swarm_id = \"n\"\nwasm_module = \"fake.wasm\"\n").unwrap();
    let err = chassis.load(&not_wasm).await.unwrap_err();
    assert!(
        err.to_string().contains("fake.wasm: not a valid wasm file"),
        "{err}"
    );

    std::fs::remove_dir_all(&dir).ok();
    still_serves(&chassis).await;
}

#[tokio::test]
async fn load_bytes_validates_a_contract_built_in_code() {
    let chassis = Chassis::new().unwrap();
    let mut c = contract("swarm_id = \"code\"");
    c.resource_limits.max_cpu_percent = 0;
    let err = chassis
        .load_bytes(&component("hello_world"), c)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Contract(_)), "{err:?}");
    assert!(
        err.to_string().contains("resource_limits.max_cpu_percent"),
        "{err}"
    );
}

/// A fresh, private cache directory under target/tmp.
fn cache_dir(name: &str) -> std::path::PathBuf {
    let dir = chassis_tests::root()
        .join("target/tmp")
        .join(format!("cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn load_cached(dir: &std::path::Path) -> (Chassis, chassis::SwarmInfo) {
    let chassis = Chassis::with_config(chassis::ChassisConfig::new().with_cache_dir(dir)).unwrap();
    let info = chassis.load(contract_path("hello-world")).await.unwrap();
    (chassis, info)
}

#[tokio::test]
async fn a_second_load_comes_from_the_component_cache_and_runs() {
    use chassis::cache::CacheUse;
    let dir = cache_dir("second");
    let (_, first) = load_cached(&dir).await;
    assert_eq!(first.cache, CacheUse::Miss);
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "one entry, no temporary files left");

    let (chassis, second) = load_cached(&dir).await;
    assert_eq!(second.cache, CacheUse::Hit);
    assert_eq!(second.task_types, first.task_types);
    still_serves(&chassis).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled_not_loaded() {
    use chassis::cache::CacheUse;
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
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_cache_directory_others_can_write_is_refused_with_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cache_dir("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Chassis::with_config(chassis::ChassisConfig::new().with_cache_dir(&dir))
        .err()
        .expect("refused");
    assert!(matches!(err, Error::Cache(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.display().to_string()) && text.contains("writable by group or others"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
