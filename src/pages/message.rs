//! Published messages: immutable payloads shared by any number of players.
//!
//! A message's header sits right before its payload (in its first page, or at the start of its
//! own block in contiguous mode) and carries the message's reference count, so cloning a
//! [`Message`] is one atomic increment and never touches the payload.

use std::alloc::{self, Layout};
use std::io::IoSlice;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::page::{PagePtr, PAGE_DATA_START};
use super::sync::{fence, AtomicUsize, Ordering};
use super::Account;

#[repr(C)]
pub(crate) struct MsgHeader {
    pub(crate) refs: AtomicUsize,
    pub(crate) len: u32,
    /// Pages the header and payload span (at least 1); 0 marks a contiguous block.
    pub(crate) npages: u32,
    /// Paged: the page holding this header. Contiguous: one strong count of the account.
    pub(crate) link: *const (),
}

pub(crate) const MSG_HEADER: usize = std::mem::size_of::<MsgHeader>();
pub(crate) const MSG_ALIGN: usize = std::mem::align_of::<MsgHeader>();

pub(crate) fn contiguous_layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(MSG_HEADER.checked_add(len)?, MSG_ALIGN).ok()
}

/// A published message: an immutable payload in a stream's pages (or its own block in
/// contiguous mode). Cloning is O(1) and never copies the payload; the memory is recycled
/// when the last clone of every message sharing it is dropped.
pub struct Message {
    hdr: NonNull<MsgHeader>,
}

// SAFETY: after publication the payload and header fields are never written again; the only
// shared mutable state is the reference counts (message and page), which are atomic, and the
// account counters, which are atomic too. So a Message may be sent and shared across threads.
unsafe impl Send for Message {}
// SAFETY: as above: `&Message` only reads immutable bytes or does atomic increments.
unsafe impl Sync for Message {}

impl Message {
    /// # Safety
    /// `hdr` points to a header initialised with `refs == 1` whose reference the new Message
    /// takes over, with its pages (or block) set up as `npages`/`link` describe.
    pub(crate) unsafe fn from_header(hdr: NonNull<MsgHeader>) -> Message {
        Message { hdr }
    }

    fn header(&self) -> &MsgHeader {
        // SAFETY: the header lives as long as any Message referring to it (its page or block is
        // kept by the message's own references).
        unsafe { self.hdr.as_ref() }
    }

    fn payload_start(&self) -> *const u8 {
        // SAFETY: the payload starts right after the header, within the same allocation (a
        // page always has room for a header plus at least its end; see the writer).
        unsafe { self.hdr.as_ptr().cast::<u8>().add(MSG_HEADER) }
    }

    pub fn len(&self) -> usize {
        self.header().len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as consecutive byte slices, in order: one per page it spans (none are
    /// empty), or exactly one in contiguous mode.
    pub fn slices(&self) -> Slices<'_> {
        let h = self.header();
        let len = h.len as usize;
        if h.npages == 0 {
            return Slices {
                page: None,
                start: self.payload_start(),
                first_len: len,
                remaining: len,
                page_size: 0,
                _message: PhantomData,
            };
        }
        // SAFETY: for a paged message `link` is its first page, which it keeps a reference on.
        let page = unsafe { PagePtr::from_raw(h.link.cast_mut().cast()) };
        // SAFETY: the page is taken (the message references it), so its account is live.
        let page_size = unsafe { page.account() }.page_size;
        let offset = self.payload_start() as usize - page.base() as usize;
        let first_len = len.min(page_size - offset);
        Slices {
            page: Some(page),
            start: self.payload_start(),
            first_len,
            remaining: len,
            page_size,
            _message: PhantomData,
        }
    }

    /// Appends the payload's slices to `out`, for `write_vectored`.
    pub fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.extend(self.slices().map(IoSlice::new));
    }

    /// A copy of the payload (for tests and the rare consumer that needs one buffer).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for s in self.slices() {
            v.extend_from_slice(s);
        }
        v
    }

    /// Whether the message lives in shared pages (paged mode), where it keeps its pages — and
    /// so the bytes of its neighbours in them — alive; false for a contiguous block.
    pub fn is_paged(&self) -> bool {
        self.header().npages != 0
    }

    /// Whether two handles are clones of one published message.
    pub fn ptr_eq(&self, other: &Message) -> bool {
        self.hdr == other.hdr
    }
}

impl Clone for Message {
    fn clone(&self) -> Message {
        // Relaxed: a clone is made from a live handle, as in `Arc::clone`. Overflow would need
        // usize::MAX handles, each a pointer in memory: impossible.
        self.header().refs.fetch_add(1, Ordering::Relaxed);
        Message { hdr: self.hdr }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // Release/Acquire as in `Arc::drop`: every holder's reads of the payload happen before
        // whoever drops the last clone recycles the memory.
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let (len, npages, link) = {
            let h = self.header();
            (h.len as usize, h.npages, h.link)
        };
        if npages == 0 {
            // SAFETY: a contiguous block's link is the account count it owns (`Arc::into_raw`).
            let account = unsafe { Arc::from_raw(link.cast::<Account>()) };
            let layout = contiguous_layout(len).expect("layout was valid when allocated");
            account.message_dropped(len);
            account.release_bytes(layout.size() as u64);
            // SAFETY: this was the last reference to the block, allocated with this layout.
            unsafe { alloc::dealloc(self.hdr.as_ptr().cast(), layout) };
            drop(account);
            return;
        }
        // SAFETY: `link` is the first page, referenced by this message until released below.
        let mut page = unsafe { PagePtr::from_raw(link.cast_mut().cast()) };
        // SAFETY: the page is taken while this message references it.
        unsafe { page.account() }.message_dropped(len);
        for i in 0..npages {
            // Read the successor before dropping our reference: once dropped, the page may be
            // recycled and its `next` reset by another thread.
            let next = page.next();
            if page.drop_refs(1) {
                // SAFETY: we dropped the last reference, so we own the page.
                unsafe { super::release_page(page) };
            }
            if i + 1 < npages {
                page = next.expect("a spanned page has a successor");
            }
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.len())
            .field("slices", &self.slices().count())
            .finish()
    }
}

/// The slices of a message's payload: see [`Message::slices`].
pub struct Slices<'a> {
    page: Option<PagePtr>,
    start: *const u8,
    first_len: usize,
    remaining: usize,
    page_size: usize,
    _message: PhantomData<&'a Message>,
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        let n = self.first_len.min(self.remaining);
        if n == 0 {
            // The header filled its page exactly: the payload starts on the next page.
            self.advance_page();
            return self.next();
        }
        // SAFETY: `start..start+n` lies within a page (or block) the message keeps alive for
        // 'a, and those bytes were written before publication and are never written again.
        let s = unsafe { std::slice::from_raw_parts(self.start, n) };
        self.remaining -= n;
        if self.remaining > 0 {
            self.advance_page();
        }
        Some(s)
    }
}

impl Slices<'_> {
    fn advance_page(&mut self) {
        let page = self
            .page
            .and_then(PagePtr::next)
            .expect("a message's bytes continue on the next page");
        self.page = Some(page);
        // SAFETY: message bytes of a page start at PAGE_DATA_START, within the page.
        self.start = unsafe { page.base().add(PAGE_DATA_START) };
        self.first_len = self.page_size - PAGE_DATA_START;
    }
}
