//! Asking the CPU for memory ahead of use.
//!
//! The flush pass touches each parked player once per tick (40 ms), long after the player's
//! state left the cache, so every player costs a few cache misses in a row: the connection,
//! its hub queue's lock, its chunk writer's header table. Asking for the next players' memory
//! while the current player's write runs in the kernel hides much of that wait: at 1000
//! players the server's user time fell from 31–38 to 20–27 ms/s (BENCHMARKS.md, item 8).

/// Asks the CPU to bring `value`'s bytes into its cache, without waiting for them. A no-op
/// where no prefetch instruction is wired.
pub fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = (value as *const T).cast::<i8>();
        for offset in (0..size_of_val(value)).step_by(64) {
            // SAFETY: SSE, which `_mm_prefetch` needs, is part of every x86_64 CPU, and a
            // prefetch is a hint: it never faults and reads nothing into the program.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
