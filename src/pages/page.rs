//! Raw pages: one allocation of `page_size` bytes, a small header at its start and message
//! bytes after it, plus the shared free list that recycles them.
//!
//! A page's reference count is the number of published messages that touch it plus, while a
//! writer uses it, a large bias that the writer spends one message at a time without atomics
//! (the trick of Linux's page_frag cache) and gives back in one subtraction when it moves on.
//! Whoever takes the count to zero returns the page to the free list (or to the system
//! allocator when the list is full).

use std::alloc::{self, Layout};
use std::cell::UnsafeCell;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::sync::{fence, AtomicPtr, AtomicUsize, Ordering};
use super::Account;

/// Pages are aligned to a cache line so that headers of different pages never share one.
pub(crate) const PAGE_ALIGN: usize = 64;

/// The header at the start of every page. `repr(C)` so its size (and so where message bytes
/// start) does not depend on field reordering.
#[repr(C)]
pub(crate) struct PageHeader {
    refs: AtomicUsize,
    /// The page the same writer continued on after this one, set before any message spanning
    /// both is published; followed only by messages that span it.
    next: AtomicPtr<PageHeader>,
    /// The stream whose writer took the page: one strong count of its `Arc<Account>`, owned by
    /// the page while it is out of the free list, null while pooled. Written only while the
    /// page is unreachable by other threads (at take and at release).
    account: UnsafeCell<*const Account>,
}

/// Where message bytes start inside a page.
pub(crate) const PAGE_DATA_START: usize = {
    let h = std::mem::size_of::<PageHeader>();
    (h + 7) & !7
};

/// A page out of the free list, owned by whoever holds the pointer (a writer or a message).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct PagePtr(NonNull<PageHeader>);

// SAFETY: a PagePtr is an address; what may be done through it is governed by the page's
// reference count, whose operations are atomic. Moving the address between threads is sound.
unsafe impl Send for PagePtr {}

impl PagePtr {
    pub(crate) fn as_ptr(self) -> *mut PageHeader {
        self.0.as_ptr()
    }

    /// # Safety
    /// `p` must point to a live page header.
    pub(crate) unsafe fn from_raw(p: *mut PageHeader) -> PagePtr {
        // SAFETY: the caller promises `p` is a live page, hence non-null.
        PagePtr(unsafe { NonNull::new_unchecked(p) })
    }

    fn header(&self) -> &PageHeader {
        // SAFETY: a PagePtr only exists for a page that is allocated (it is freed only after
        // its last reference is dropped, and holders of a PagePtr keep a reference or own the
        // page outright).
        unsafe { self.0.as_ref() }
    }

    /// The first byte of the page.
    pub(crate) fn base(self) -> *mut u8 {
        self.0.as_ptr().cast()
    }

    /// Sets the count of a page nobody else can reach yet (just taken).
    pub(crate) fn init_refs(self, n: usize) {
        self.header().refs.store(n, Ordering::Relaxed);
    }

    /// Adds references; only ever done by a holder of references on the page.
    pub(crate) fn add_refs(self, n: usize) {
        // Relaxed: a new reference is only ever made from an existing one, as with
        // `Arc::clone`.
        self.header().refs.fetch_add(n, Ordering::Relaxed);
    }

    /// Drops `n` references; returns true when they were the last, in which case the caller
    /// owns the page and must release it.
    pub(crate) fn drop_refs(self, n: usize) -> bool {
        // Release so this holder's reads of the page happen before its reuse; the Acquire
        // fence on the last drop pairs with every other holder's Release (as in `Arc::drop`).
        if self.header().refs.fetch_sub(n, Ordering::Release) != n {
            return false;
        }
        fence(Ordering::Acquire);
        true
    }

    pub(crate) fn next(self) -> Option<PagePtr> {
        // Relaxed: `next` is written before the message that follows it is published, and
        // publication is what hands a message to other threads (a channel or lock), which
        // orders the write before any read here.
        NonNull::new(self.header().next.load(Ordering::Relaxed)).map(PagePtr)
    }

    pub(crate) fn set_next(self, next: Option<PagePtr>) {
        let p = next.map_or(ptr::null_mut(), PagePtr::as_ptr);
        self.header().next.store(p, Ordering::Relaxed);
    }

    /// The account of the stream that took the page.
    ///
    /// # Safety
    /// The page must be out of the free list (taken and not yet released).
    pub(crate) unsafe fn account<'a>(self) -> &'a Account {
        // SAFETY: while the page is taken, `account` holds a strong count of a live Account,
        // written before the page became reachable by other threads; the caller keeps the page
        // (and so that count) alive for the borrow.
        unsafe { &**self.header().account.get() }
    }
}

/// The pool's recycled pages: lock-free bounded queues, sharded so that writers on different
/// threads rarely touch the same one; a page returns to its stream's shard, and pages beyond a
/// shard's capacity go back to the system allocator. (Under loom, one mutex-protected Vec with
/// the same behaviour.)
pub(crate) struct FreeList {
    layout: Layout,
    #[cfg(not(moment_loom))]
    shards: Box<[Option<crossbeam_queue::ArrayQueue<PagePtr>>]>,
    #[cfg(moment_loom)]
    pages: super::sync::Mutex<Vec<PagePtr>>,
    #[cfg(moment_loom)]
    capacity: usize,
}

impl FreeList {
    pub(crate) fn new(page_size: usize, capacity: usize) -> FreeList {
        let layout = Layout::from_size_align(page_size, PAGE_ALIGN)
            .expect("page size checked by PoolConfig");
        #[cfg(not(moment_loom))]
        {
            // A few shards per core: enough that writers on different threads rarely share one.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let n = (cores * 4).clamp(4, 64);
            let per_shard = capacity.div_ceil(n);
            let shards = (0..n)
                .map(|_| (per_shard > 0).then(|| crossbeam_queue::ArrayQueue::new(per_shard)))
                .collect();
            FreeList { layout, shards }
        }
        #[cfg(moment_loom)]
        FreeList {
            layout,
            pages: super::sync::Mutex::new(Vec::new()),
            capacity,
        }
    }

    pub(crate) fn shards(&self) -> usize {
        #[cfg(not(moment_loom))]
        {
            self.shards.len()
        }
        #[cfg(moment_loom)]
        {
            1
        }
    }

    pub(crate) fn page_size(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn pooled(&self) -> usize {
        #[cfg(not(moment_loom))]
        {
            self.shards.iter().flatten().map(|q| q.len()).sum()
        }
        #[cfg(moment_loom)]
        {
            super::sync::lock(&self.pages).len()
        }
    }

    /// A pooled page, from `shard` first, then from the others.
    fn pop(&self, shard: usize) -> Option<PagePtr> {
        #[cfg(not(moment_loom))]
        {
            let n = self.shards.len();
            (0..n).find_map(|i| self.shards[(shard + i) % n].as_ref()?.pop())
        }
        #[cfg(moment_loom)]
        {
            let _ = shard;
            super::sync::lock(&self.pages).pop()
        }
    }

    fn push(&self, shard: usize, page: PagePtr) -> Result<(), PagePtr> {
        #[cfg(not(moment_loom))]
        {
            match &self.shards[shard] {
                Some(q) => q.push(page),
                None => Err(page),
            }
        }
        #[cfg(moment_loom)]
        {
            let _ = shard;
            let mut pages = super::sync::lock(&self.pages);
            if pages.len() >= self.capacity {
                return Err(page);
            }
            pages.push(page);
            Ok(())
        }
    }

    /// Takes a page for `account` (whose strong count the page now owns), with no successor
    /// and `refs` references, all the caller's.
    pub(crate) fn take(&self, account: Arc<Account>, refs: usize) -> PagePtr {
        let page = self.pop(account.shard).unwrap_or_else(|| self.allocate());
        page.init_refs(refs);
        // SAFETY: the page came from the free list or a fresh allocation, so no other thread
        // can reach it; its header is initialised (by `allocate`).
        unsafe { *page.header().account.get() = Arc::into_raw(account) };
        page
    }

    fn allocate(&self) -> PagePtr {
        // SAFETY: the layout has a non-zero size (PoolConfig requires at least 1 KiB).
        let raw = unsafe { alloc::alloc(self.layout) }.cast::<PageHeader>();
        let Some(raw) = NonNull::new(raw) else {
            alloc::handle_alloc_error(self.layout)
        };
        // SAFETY: `raw` is a fresh allocation, aligned for PageHeader and large enough for it.
        unsafe {
            raw.as_ptr().write(PageHeader {
                refs: AtomicUsize::new(0),
                next: AtomicPtr::new(ptr::null_mut()),
                account: UnsafeCell::new(ptr::null()),
            })
        };
        PagePtr(raw)
    }

    /// Gives back a page whose last reference is gone: clears its header and recycles it.
    /// Returns the account count the page held; the caller drops it after this call returns,
    /// since dropping it may drop the pool and this list with it.
    ///
    /// # Safety
    /// The caller owns the page: it was taken from this list and no reference to it remains.
    #[must_use = "drop the account only after release returns"]
    pub(crate) unsafe fn release(&self, page: PagePtr) -> Arc<Account> {
        // SAFETY: the caller owns the page, so nothing else reads its account field now.
        let account = unsafe { std::mem::replace(&mut *page.header().account.get(), ptr::null()) };
        page.set_next(None);
        debug_assert!(!account.is_null(), "released a page that was not taken");
        // SAFETY: `account` was made by `Arc::into_raw` in `take`; this reclaims that count.
        let account = unsafe { Arc::from_raw(account) };
        account.page_released(self.layout.size());
        if let Err(page) = self.push(account.shard, page) {
            // SAFETY: the page came from `allocate` with this layout and nothing refers to it.
            unsafe { self.free(page) };
        }
        account
    }

    /// # Safety
    /// `page` was allocated by this list and is owned by the caller.
    unsafe fn free(&self, page: PagePtr) {
        // SAFETY: the header was written by `allocate`; dropping it in place before the memory
        // goes lets loom retire its atomics.
        unsafe { ptr::drop_in_place(page.as_ptr()) };
        // SAFETY: allocated by `allocate` with `self.layout`.
        unsafe { alloc::dealloc(page.base(), self.layout) };
    }
}

impl Drop for FreeList {
    fn drop(&mut self) {
        while let Some(page) = self.pop(0) {
            // SAFETY: pooled pages are owned by the list, and the list is going away.
            unsafe { self.free(page) };
        }
    }
}
