//! The streaming page allocator: where every media payload of a stream lives, once.
//!
//! A stream's [`StreamWriter`] reserves each message in one call (its size is known before it
//! is written), fills it and publishes it as a [`Message`]: an immutable handle that any number
//! of players clone in O(1) and read as `IoSlice`s for `writev`. In the default
//! [`PageMode::Paged`] mode consecutive messages of a stream are packed into shared pages (a
//! message may span pages), so a 60-byte audio message costs 60 bytes and a 24-byte header,
//! not a page; a page goes back to the pool when the last message in it is dropped.
//! [`PageMode::Contiguous`] gives each message its own allocation instead, behind the same API,
//! so the two can be compared on one workload (`cargo bench --bench pages`).
//!
//! No lock on the hot path: a writer owns its current page; pages come from and return to
//! lock-free bounded queues (one shard per few writers) once per page, not per message, and the
//! global budget is leased to writers in steps, so writers on different threads do not share a
//! counter per page either. Accounting is exact and cheap to
//! read: bytes held (pages or blocks charged to a stream), payload bytes live per
//! stream, and in total with the pooled pages. A stream budget and a pool-wide budget are
//! checked at reservation; reaching either is a [`PagesError`] for the caller to act on.
//!
//! What does not live here: what a message means (media framing is in `media`), and who holds
//! messages for how long (the hub's frame saver and player queues).

mod message;
mod page;
mod sync;
mod writer;

#[cfg(all(test, moment_loom))]
mod loom_model;
#[cfg(all(test, not(moment_loom)))]
mod tests;

use std::sync::{Arc, Weak};

pub use message::{Message, Slices};
pub use writer::{MessageFill, StreamWriter};

use page::{FreeList, PagePtr, PAGE_DATA_START};
use sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// How messages are stored; the choice is invisible to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PageMode {
    /// Consecutive messages of a stream share pages from a recycling pool.
    #[default]
    Paged,
    /// One system allocation per message.
    Contiguous,
}

/// The allocator's settings (the `[pages]` config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Paged (default) or contiguous storage.
    pub mode: PageMode,
    /// Bytes per page, header included: default 8 KiB, from 1 KiB to 16 MiB.
    pub page_size: usize,
    /// All streams together may hold at most this many bytes in pages or blocks: default 1 GiB.
    pub global_budget_bytes: u64,
    /// Free pages kept for reuse (beyond that they go back to the system): default 1024
    /// (16 MiB at the default page size).
    pub max_pooled_pages: usize,
}

impl PoolConfig {
    pub const MIN_PAGE_SIZE: usize = 1024;
    pub const MAX_PAGE_SIZE: usize = 16 << 20;

    /// Checks the settings, naming the wrong one.
    pub fn validate(&self) -> Result<(), String> {
        if !(Self::MIN_PAGE_SIZE..=Self::MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(format!(
                "page_size = {} is outside {}..={}",
                self.page_size,
                Self::MIN_PAGE_SIZE,
                Self::MAX_PAGE_SIZE
            ));
        }
        Ok(())
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PageMode::Paged,
            page_size: 8 * 1024,
            global_budget_bytes: 1 << 30,
            max_pooled_pages: 1024,
        }
    }
}

/// Why a reservation failed. Nothing was allocated or charged when one is returned.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PagesError {
    #[error("global page budget of {budget} bytes reached ({held} held, {wanted} more wanted)")]
    GlobalBudget { budget: u64, held: u64, wanted: u64 },
    #[error("stream {stream:?} page budget of {budget} bytes reached ({held} held, {wanted} more wanted)")]
    StreamBudget {
        stream: String,
        budget: u64,
        held: u64,
        wanted: u64,
    },
    #[error("message of {len} bytes is larger than a message can be")]
    TooLarge { len: usize },
    #[error("message of {len} bytes overfills its reservation of {reserved} bytes")]
    Overfill { len: usize, reserved: usize },
}

impl PagesError {
    /// A budget (stream or global) was reached: the caller should shed load.
    pub fn is_budget(&self) -> bool {
        matches!(
            self,
            PagesError::GlobalBudget { .. } | PagesError::StreamBudget { .. }
        )
    }
}

/// One stream's counters; they stay readable after its writer is gone while its messages live.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    pub name: String,
    /// Bytes of pages (or blocks) charged to the stream, headers and unused space included.
    pub held_bytes: u64,
    /// Payload bytes of its live messages.
    pub live_bytes: u64,
    pub budget_bytes: u64,
}

/// The whole pool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    pub held_bytes: u64,
    pub live_bytes: u64,
    /// Free pages kept for reuse, and their bytes (not in `held_bytes`).
    pub pooled_pages: u64,
    pub pooled_bytes: u64,
    /// Streams with a writer or live messages.
    pub streams: u64,
    pub budget_bytes: u64,
}

/// One stream's budget and counters, shared by its writer, its pages and its messages.
pub(crate) struct Account {
    name: String,
    budget: u64,
    pub(crate) page_size: usize,
    held: AtomicU64,
    /// Global budget this stream has taken from the pool, never less than `held`. The writer
    /// takes it in `LEASE_PAGES`-page steps and gives back surplus, so the pool-wide counter is
    /// touched about once per step rather than once per page or message (writers on different
    /// threads never contend on it in the steady state). Only the writer changes it; the
    /// account returns it when it goes.
    lease: AtomicU64,
    /// The free-list shard this stream's pages return to.
    pub(crate) shard: usize,
    /// Payload bytes published, written only by the stream's writer (a load and a store, no
    /// read-modify-write), and payload bytes dropped, by whichever thread drops a message:
    /// live bytes are their difference.
    published: AtomicU64,
    dropped: AtomicU64,
    pub(crate) pool: Arc<PoolShared>,
}

/// How much global budget a writer takes from the pool at a time, in pages of the pool's size.
const LEASE_PAGES: u64 = 16;

// Counter orderings: the counters are statistics and budget checks, never used to order other
// memory accesses, so Relaxed throughout. A stream's `held` and `lease` only grow in its
// writer's thread, so the writer's check-then-add cannot overshoot the stream budget; the
// pool's `leased` uses add-then-check-and-undo, so concurrent writers cannot overshoot the
// global budget either.
impl Account {
    fn charge(&self, bytes: u64) -> Result<(), PagesError> {
        if bytes == 0 {
            return Ok(());
        }
        let held = self.held.load(Ordering::Relaxed);
        let need = held + bytes;
        if need > self.budget {
            return Err(PagesError::StreamBudget {
                stream: self.name.clone(),
                budget: self.budget,
                held,
                wanted: bytes,
            });
        }
        let step = LEASE_PAGES * self.page_size as u64;
        let mut lease = self.lease.load(Ordering::Relaxed);
        if need > lease {
            // A whole step if the pool has it, else exactly what is missing.
            let short = need - lease;
            let granted = [short.next_multiple_of(step), short]
                .into_iter()
                .find(|&n| self.pool.take_lease(n))
                .ok_or_else(|| PagesError::GlobalBudget {
                    budget: self.pool.config.global_budget_bytes,
                    held: self.pool.leased.load(Ordering::Relaxed),
                    wanted: bytes,
                })?;
            lease += granted;
        } else if lease > need + 2 * step {
            // Droppers lowered `held` since the lease grew: keep one step of slack, give back
            // the rest. (`need` may overstate what is held now, never understate it.)
            let surplus = lease - need - step;
            self.pool.leased.fetch_sub(surplus, Ordering::Relaxed);
            lease -= surplus;
        }
        self.lease.store(lease, Ordering::Relaxed);
        self.held.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn release_bytes(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn page_released(&self, page_size: usize) {
        self.release_bytes(page_size as u64);
    }

    /// Only the stream's writer calls this.
    fn message_published(&self, len: usize) {
        let p = self.published.load(Ordering::Relaxed);
        self.published.store(p + len as u64, Ordering::Relaxed);
    }

    fn message_dropped(&self, len: usize) {
        // Release, paired with the Acquire in `live_bytes`: a reader that sees this drop also
        // sees the publication it follows (which happened before the message reached us).
        self.dropped.fetch_add(len as u64, Ordering::Release);
    }

    fn live_bytes(&self) -> u64 {
        let dropped = self.dropped.load(Ordering::Acquire);
        self.published
            .load(Ordering::Relaxed)
            .saturating_sub(dropped)
    }

    fn stats(&self) -> StreamStats {
        StreamStats {
            name: self.name.clone(),
            held_bytes: self.held.load(Ordering::Relaxed),
            live_bytes: self.live_bytes(),
            budget_bytes: self.budget,
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.pool
            .leased
            .fetch_sub(self.lease.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

pub(crate) struct PoolShared {
    config: PoolConfig,
    pub(crate) free: FreeList,
    /// Global budget leased to streams (the global budget's counter): at least the bytes all
    /// streams hold together, at most the budget.
    leased: AtomicU64,
    /// Round-robin shard for the next writer.
    next_shard: AtomicUsize,
    /// Every stream account still alive, for stats; touched when a writer is made and when
    /// stats are read, never per message.
    accounts: Mutex<Vec<Weak<Account>>>,
}

impl PoolShared {
    fn take_lease(&self, bytes: u64) -> bool {
        let before = self.leased.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.config.global_budget_bytes {
            self.leased.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Releases a page whose last reference the caller just dropped.
///
/// # Safety
/// The caller owns the page: it is taken and no reference to it remains.
pub(crate) unsafe fn release_page(page: PagePtr) {
    // SAFETY: the page is taken, so its account is live; the reference is derived from the
    // count the page holds, which `release` hands back to us below and we drop only after the
    // call, so `free` stays valid throughout it.
    let account = unsafe { page.account() };
    // SAFETY: the caller owns the page; it came from its account's pool.
    let owned = unsafe { account.pool.free.release(page) };
    drop(owned);
}

/// The page allocator shared by all streams: cheap to clone, one per server.
#[derive(Clone)]
pub struct PagePool {
    shared: Arc<PoolShared>,
}

impl PagePool {
    /// A pool with these settings; a page size outside the valid range is clamped into it
    /// ([`PoolConfig::validate`] reports it to users first).
    pub fn new(mut config: PoolConfig) -> PagePool {
        config.page_size = config
            .page_size
            .clamp(PoolConfig::MIN_PAGE_SIZE, PoolConfig::MAX_PAGE_SIZE);
        const { assert!(PAGE_DATA_START + message::MSG_HEADER < PoolConfig::MIN_PAGE_SIZE) };
        PagePool {
            shared: Arc::new(PoolShared {
                free: FreeList::new(config.page_size, config.max_pooled_pages),
                config,
                leased: AtomicU64::new(0),
                next_shard: AtomicUsize::new(0),
                accounts: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// A writer for one stream, with its own byte budget.
    pub fn writer(&self, stream: &str, budget_bytes: u64) -> StreamWriter {
        let account = Arc::new(Account {
            name: stream.to_owned(),
            budget: budget_bytes,
            page_size: self.shared.config.page_size,
            held: AtomicU64::new(0),
            lease: AtomicU64::new(0),
            shard: self.shared.next_shard.fetch_add(1, Ordering::Relaxed)
                % self.shared.free.shards(),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pool: self.shared.clone(),
        });
        let mut accounts = sync::lock(&self.shared.accounts);
        accounts.retain(|a| a.strong_count() > 0);
        accounts.push(Arc::downgrade(&account));
        drop(accounts);
        StreamWriter::new(account, self.shared.config.mode)
    }

    /// Totals over all streams, plus the pooled pages.
    pub fn stats(&self) -> PoolStats {
        let mut total = PoolStats {
            budget_bytes: self.shared.config.global_budget_bytes,
            ..PoolStats::default()
        };
        for s in self.streams() {
            total.held_bytes += s.held_bytes;
            total.live_bytes += s.live_bytes;
            total.streams += 1;
        }
        let pooled = self.shared.free.pooled() as u64;
        total.pooled_pages = pooled;
        total.pooled_bytes = pooled * self.shared.free.page_size() as u64;
        total
    }

    /// Per-stream counters of every stream with a writer or live messages.
    pub fn streams(&self) -> Vec<StreamStats> {
        let accounts = sync::lock(&self.shared.accounts);
        accounts
            .iter()
            .filter_map(Weak::upgrade)
            .map(|a| a.stats())
            .collect()
    }
}
