//! Locking shared state.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, going on past a poisoned lock: a panic elsewhere while it was held must not take
/// every connection down with it, and each holder leaves the state whole between its own
/// statements (no holder keeps it half-updated across a call that can panic).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
