//! The atomics and locks the allocator uses, swapped for loom's when the crate is built with
//! `RUSTFLAGS="--cfg moment_loom"` so the models in `loom_model.rs` explore every interleaving.
//! (`cfg(loom)` itself is not used: it would switch tokio into its own loom mode.)

#[cfg(moment_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(moment_loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(moment_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(moment_loom))]
pub(crate) use std::sync::Mutex;

/// Locks a mutex whose data cannot be left inconsistent by a panicking holder (plain
/// counters and lists of weak references), so poisoning is ignored rather than propagated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(moment_loom)]
    {
        m.lock().unwrap()
    }
    #[cfg(not(moment_loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
