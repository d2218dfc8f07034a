//! CPU: a CPU-bound task held to its `max_cpu_percent` share, and a task's
//! reported CPU time being its own rather than the wall time it held a
//! thread. In a test binary of their own, one test at a time: they measure
//! CPU use, and the second keeps every core busy while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chassis::TaskRequest;
use chassis_tests::{TestHost, guests, thread_cpu_time};
use serde_json::json;
use tokio::sync::Mutex;

/// Held by each test: they run one at a time.
static ALONE: Mutex<()> = Mutex::const_new(());

// On the test's own thread, so that thread's CPU time is the task's.
#[tokio::test]
async fn a_cpu_bound_task_is_held_to_its_share() {
    let _alone = ALONE.lock().await;
    let chassis = [("misbehave", 100), ("quarter", 25)]
        .into_iter()
        .fold(TestHost::new(), |host, (id, percent)| {
            host.component(
                guests::MISBEHAVE,
                format!(
                    "swarm_id = \"{id}\"\n[resource_limits]\nmax_cpu_percent = {percent}\ntask_timeout_seconds = 30\n"
                ),
            )
        })
        .build()
        .await;
    let burn = json!({"rounds": 200_000_000u64});
    let unthrottled = chassis
        .execute_task("misbehave", TaskRequest::new("burn", burn.clone()))
        .await
        .unwrap();
    let cpu_before = thread_cpu_time();
    let wall_before = Instant::now();
    let throttled = chassis
        .execute_task("quarter", TaskRequest::new("burn", burn))
        .await
        .unwrap();
    let cpu_share =
        (thread_cpu_time() - cpu_before).as_secs_f64() / wall_before.elapsed().as_secs_f64();
    eprintln!(
        "burn: unthrottled {:.0} ms wall; at 25 %: {:.0} ms wall ({:.1}x), {:.0} % of a core",
        unthrottled.usage.wall_ms,
        throttled.usage.wall_ms,
        throttled.usage.wall_ms / unthrottled.usage.wall_ms,
        cpu_share * 100.0
    );
    // Same work, same answer.
    assert_eq!(unthrottled.output, throttled.output);
    assert_eq!(unthrottled.usage.throttled_ms, 0.0);
    // At 25 % the task sleeps about three times as long as it runs.
    let u = &throttled.usage;
    let sleep_per_run = u.throttled_ms / u.cpu_ms;
    assert!((2.0..4.5).contains(&sleep_per_run), "{u:?}");
    // The sleeps were real: wall time covers running plus sleeping, and the
    // task's thread used well under a core meanwhile.
    assert!(u.wall_ms >= 0.95 * (u.cpu_ms + u.throttled_ms), "{u:?}");
    // About 4 times the unthrottled wall time, at about a quarter of a core.
    let slowdown = throttled.usage.wall_ms / unthrottled.usage.wall_ms;
    assert!((2.5..6.5).contains(&slowdown), "{slowdown:.2}x");
    assert!(
        (0.1..0.4).contains(&cpu_share),
        "the task used {cpu_share:.2} of a core"
    );
}

// On the test's own thread, so that thread's CPU time is the task's.
#[tokio::test]
async fn cpu_time_is_the_tasks_own_on_a_busy_machine() {
    let _alone = ALONE.lock().await;
    let chassis = TestHost::new()
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"burner\"\n[resource_limits]\nmax_cpu_percent = 100\ntask_timeout_seconds = 60\n",
        )
        .build()
        .await;
    // Twice as many spinning threads as cores: the task's thread gets about
    // a third to a half of a core, so its wall time is well over its CPU time.
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..2 * cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    let cpu_before = thread_cpu_time();
    let wall_before = Instant::now();
    let o = chassis
        .execute_task(
            "burner",
            TaskRequest::new("burn", json!({"rounds": 300_000_000u64})),
        )
        .await
        .unwrap();
    let thread_cpu_ms = (thread_cpu_time() - cpu_before).as_secs_f64() * 1000.0;
    let wall_ms = wall_before.elapsed().as_secs_f64() * 1000.0;
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    let u = &o.usage;
    eprintln!(
        "wall {wall_ms:.0} ms, thread CPU {thread_cpu_ms:.0} ms, reported CPU {:.0} ms",
        u.cpu_ms
    );
    // The machine really was oversubscribed.
    assert!(
        thread_cpu_ms < 0.8 * wall_ms,
        "{thread_cpu_ms} of {wall_ms}"
    );
    // What the task reports is what its thread used (the clock read from
    // /proc has 10 ms ticks), not the wall time it was scheduled for.
    assert!(u.cpu_ms <= thread_cpu_ms * 1.1 + 20.0, "{u:?}");
    assert!(u.cpu_ms >= thread_cpu_ms * 0.7, "{u:?}");
    assert!(u.cpu_ms < 0.85 * u.wall_ms, "{u:?}");
}

/// `[swarm_limits] max_cpu_percent`: eight CPU-bound tasks each free to
/// use half a core use half of one together under a swarm share of 50 %
/// (each throttled to its part of it), while the same eight under a
/// contract without the swarm share use more than a core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_within_their_own_share_keep_to_their_swarms() {
    let _alone = ALONE.lock().await;
    let limits = "[resource_limits]\nmax_cpu_percent = 50\nmax_concurrent_tasks = 8\ntask_timeout_seconds = 120\n";
    let chassis = TestHost::new()
        .component(
            guests::HOG,
            format!("swarm_id = \"capped\"\n{limits}[swarm_limits]\nmax_cpu_percent = 50\n"),
        )
        .component(guests::HOG, format!("swarm_id = \"free\"\n{limits}"))
        .build()
        .await;
    let cores_used = |id: &'static str| {
        let chassis = chassis.chassis.clone();
        async move {
            let started = Instant::now();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let chassis = chassis.clone();
                    tokio::spawn(async move {
                        chassis
                            .execute_task(
                                id,
                                TaskRequest::new("burn", json!({"rounds": 60_000_000u64})),
                            )
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
            let cpu: f64 = outcomes.iter().map(|o| o.usage.cpu_ms).sum();
            let throttled = outcomes
                .iter()
                .filter(|o| o.usage.throttled_ms > 0.0)
                .count();
            (cpu / started.elapsed().as_secs_f64() / 1000.0, throttled)
        }
    };
    let (free, _) = cores_used("free").await;
    let (capped, throttled) = cores_used("capped").await;
    eprintln!("eight burns: {free:.2} cores without the swarm share, {capped:.2} under 50 %");
    assert!(free > 1.0, "without the swarm's share: {free:.2} cores");
    assert!(
        (0.2..0.7).contains(&capped),
        "under a swarm share of 50 %: {capped:.2} cores"
    );
    assert_eq!(throttled, 8, "every task was throttled to its part");
}
