//! Giving freed memory back to the system. glibc's allocator keeps the pages of freed blocks
//! in its arenas for reuse: after a subscription with a 100,000-item filter leaves, the process
//! would stay hundreds of megabytes larger than it needs. Two measures: large blocks always
//! get their own mappings ([`configure`]), and a trim runs shortly after such a subscription
//! leaves, once the rest of what it held (its connection's buffers, its executor) is freed
//! too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Filters with at least this many list items are worth a trim when they leave.
pub const LARGE_FILTER_ITEMS: usize = 1_000;

/// How long after the request the trim runs: the connection that held the subscription is
/// usually gone by then, and requests in between share one trim.
const TRIM_DELAY: Duration = Duration::from_millis(500);

static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Schedules one trim (no-op outside a Tokio runtime or when one is already scheduled).
pub fn trim_soon() {
    if SCHEDULED.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        SCHEDULED.store(false, Ordering::Release);
        return;
    };
    rt.spawn(async {
        tokio::time::sleep(TRIM_DELAY).await;
        SCHEDULED.store(false, Ordering::Release);
        // It walks every arena: not on a worker thread.
        let _ = tokio::task::spawn_blocking(trim).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
}

/// Blocks of 128 KiB and more (a long list's vectors and index tables, a large message) are
/// mapped on their own and unmapped when freed. glibc's default raises this threshold each
/// time such a block is freed, up to 32 MiB, after which they come from the arenas and their
/// pages stay with the process. Call before other threads start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure() {
    const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    // SAFETY: mallopt takes no pointers; it runs before any other thread allocates.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
