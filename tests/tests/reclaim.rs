//! Memory goes back after hostile tasks. In a test binary of its own, so no
//! other test's allocations move this process's resident size meanwhile.

use chassis::TaskError;
use chassis::{Error, TaskRequest};
use chassis_tests::{TestHost, guests, rss_bytes};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_reclaimed_after_a_thousand_memory_bombs() {
    let chassis = TestHost::new()
        .component(
            guests::MISBEHAVE,
            // Every task fails on purpose: the failure guard is off.
            "swarm_id = \"bomb\"\n[resource_limits]\nmax_memory_mb = 8\ntask_timeout_seconds = 5\n\
             [reputation]\nmax_failure_rate_percent = 100\n",
        )
        .build()
        .await;
    let bomb = || chassis.execute_task("bomb", TaskRequest::new("memory_bomb", json!({})));
    for _ in 0..20 {
        assert!(matches!(
            bomb().await,
            Err(Error::Task(TaskError::MemoryLimit { .. }))
        ));
    }
    let baseline = rss_bytes();
    for _ in 0..1000 {
        assert!(matches!(
            bomb().await,
            Err(Error::Task(TaskError::MemoryLimit { .. }))
        ));
    }
    let after = rss_bytes();
    let grown = after.saturating_sub(baseline);
    // 1,000 tasks touched 8 GB between them; the host keeps none of it.
    assert!(
        grown < 64 * 1024 * 1024,
        "RSS grew {grown} bytes ({baseline} -> {after})"
    );
    let o = chassis
        .execute_task("bomb", TaskRequest::new("burn", json!({"rounds": 10})))
        .await
        .unwrap();
    assert!(o.is_success());
}
