//! Hostile test guest: its allocator never returns for a large request.
//!
//! The host copies a task's payload into the guest through the guest's own
//! allocator (`cabi_realloc`), before `execute` starts. A payload over
//! 64 KiB makes this allocator spin, so the task must be stopped by its
//! deadline while the host is still passing arguments. Small payloads work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, json};

struct Spinning;

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator; only adds a loop before large requests.
unsafe impl GlobalAlloc for Spinning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > 64 * 1024 {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Spinning = Spinning;

/// The swarm.
pub struct AllocLoop;

impl Swarm for AllocLoop {
    const TASK_TYPES: &'static [&'static str] = &["size"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        Ok(json!({ "payload_bytes": request.raw_payload().len() }))
    }
}

export_swarm!(AllocLoop);
