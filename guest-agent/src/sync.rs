//! Lock helpers: a panicking thread must not wedge the agent, so poisoned locks are
//! taken over (every critical section leaves its data consistent before it can panic).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking over a poisoned lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
