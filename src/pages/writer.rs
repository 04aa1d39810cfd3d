//! A stream's writer: reserves each message in one call, fills it, publishes it.
//!
//! In paged mode the writer owns its current page and packs consecutive messages into it, so a
//! 60-byte audio message costs 60 bytes plus a 24-byte header, not a page; a message that does
//! not fit continues on pages taken (and charged to the budgets) at reservation time, so
//! filling never fails and never takes a lock.

use std::alloc;
use std::ptr::NonNull;
use std::sync::Arc;

use super::message::{contiguous_layout, Message, MsgHeader, MSG_ALIGN, MSG_HEADER};
use super::page::{PagePtr, PAGE_DATA_START};
use super::sync::AtomicUsize;
use super::{release_page, Account, PageMode, PagesError};

/// Writes one stream's messages. Not `Sync`: one writer per stream, used through `&mut`.
/// Dropping it ends the stream's writing; published messages stay valid.
pub struct StreamWriter {
    account: Arc<Account>,
    mode: PageMode,
    /// Paged mode: the page new messages go to, and how many of its references the writer
    /// still holds (its bias; each message published in the page takes one).
    current: Option<PagePtr>,
    bias: usize,
    /// Offset in `current` where free space starts.
    cursor: usize,
}

/// Where a reservation's bytes go.
enum Target {
    Paged {
        /// The page holding the message header, and the header's offset in it.
        first: PagePtr,
        header_offset: usize,
        /// The page being filled, the fill offset in it, and how many pages from `first` up
        /// to and including it.
        page: PagePtr,
        pos: usize,
        spanned: u32,
    },
    Contiguous {
        block: NonNull<u8>,
    },
}

/// A reserved message being filled. [`publish`](MessageFill::publish) turns it into a
/// [`Message`]; dropping it instead abandons the reservation and returns its pages.
pub struct MessageFill<'w> {
    writer: &'w mut StreamWriter,
    target: Target,
    reserved: usize,
    written: usize,
}

impl StreamWriter {
    pub(crate) fn new(account: Arc<Account>, mode: PageMode) -> StreamWriter {
        StreamWriter {
            account,
            mode,
            current: None,
            bias: 0,
            cursor: 0,
        }
    }

    pub fn mode(&self) -> PageMode {
        self.mode
    }

    /// Reserves a message of up to `len` bytes. Fails, with nothing reserved, when the stream's
    /// or the pool's byte budget cannot take the pages (or block) it needs; the caller then
    /// drops the message or disconnects its source.
    pub fn reserve(&mut self, len: usize) -> Result<MessageFill<'_>, PagesError> {
        if len > u32::MAX as usize {
            return Err(PagesError::TooLarge { len });
        }
        let target = match self.mode {
            PageMode::Paged => self.reserve_paged(len)?,
            PageMode::Contiguous => self.reserve_contiguous(len)?,
        };
        Ok(MessageFill {
            writer: self,
            target,
            reserved: len,
            written: 0,
        })
    }

    /// Reserves, fills and publishes a message made of `parts`, in that order.
    pub fn write(&mut self, parts: &[&[u8]]) -> Result<Message, PagesError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut fill = self.reserve(len)?;
        for p in parts {
            fill.put(p)?;
        }
        Ok(fill.publish())
    }

    /// This stream's counters.
    pub fn stats(&self) -> super::StreamStats {
        self.account.stats()
    }

    fn reserve_paged(&mut self, len: usize) -> Result<Target, PagesError> {
        let page_size = self.account.page_size;
        let header_offset = self.cursor.next_multiple_of(MSG_ALIGN);
        let in_current = self
            .current
            .filter(|_| header_offset + MSG_HEADER <= page_size);
        let header_offset = if in_current.is_some() {
            header_offset
        } else {
            PAGE_DATA_START
        };
        let first_room = page_size - header_offset - MSG_HEADER;
        let per_page = page_size - PAGE_DATA_START;
        let more_pages = len.saturating_sub(first_room).div_ceil(per_page);
        let new_pages = more_pages + usize::from(in_current.is_none());
        self.account.charge((new_pages * page_size) as u64)?;
        // Take and chain the new pages behind the page the header goes to.
        let free = &self.account.pool.free;
        let first = in_current.unwrap_or_else(|| free.take(self.account.clone(), WRITER_BIAS));
        let mut last = first;
        for _ in 0..more_pages {
            let page = free.take(self.account.clone(), WRITER_BIAS);
            last.set_next(Some(page));
            last = page;
        }
        Ok(Target::Paged {
            first,
            header_offset,
            page: first,
            pos: header_offset + MSG_HEADER,
            spanned: 1,
        })
    }

    fn reserve_contiguous(&mut self, len: usize) -> Result<Target, PagesError> {
        let layout = contiguous_layout(len).ok_or(PagesError::TooLarge { len })?;
        self.account.charge(layout.size() as u64)?;
        // SAFETY: the layout's size is at least MSG_HEADER, so non-zero.
        let block = unsafe { alloc::alloc(layout) };
        let Some(block) = NonNull::new(block) else {
            alloc::handle_alloc_error(layout)
        };
        Ok(Target::Contiguous { block })
    }
}

impl StreamWriter {
    /// Shrinks an unfilled contiguous block to what was written, so the block's layout (and
    /// the account's charge) is always `MSG_HEADER + len`.
    fn shrink_block(&self, block: NonNull<u8>, reserved: usize, len: usize) -> NonNull<u8> {
        let old = contiguous_layout(reserved).expect("valid when reserved");
        let new = contiguous_layout(len).expect("smaller than a valid layout");
        // SAFETY: `block` was allocated with `old`; the new size is non-zero and smaller.
        let p = unsafe { alloc::realloc(block.as_ptr(), old, new.size()) };
        let Some(p) = NonNull::new(p) else {
            alloc::handle_alloc_error(new)
        };
        self.account.release_bytes((old.size() - new.size()) as u64);
        p
    }
}

/// References a writer holds on a page it writes to: far more than messages can fit in one,
/// so the bias never runs out (it is topped up if it ever would).
const WRITER_BIAS: usize = 1 << 30;

/// Gives back `refs` references on a page the writer is done with.
fn leave(page: PagePtr, refs: usize) {
    if page.drop_refs(refs) {
        // SAFETY: those were the last references, so the page is ours to release.
        unsafe { release_page(page) };
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if let Some(page) = self.current.take() {
            leave(page, self.bias);
        }
    }
}

impl MessageFill<'_> {
    /// Bytes still free in the reservation.
    pub fn remaining(&self) -> usize {
        self.reserved - self.written
    }

    /// Appends `bytes` to the message. Writing past the reservation is an error and writes
    /// nothing.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), PagesError> {
        if bytes.len() > self.remaining() {
            return Err(PagesError::Overfill {
                len: self.written + bytes.len(),
                reserved: self.reserved,
            });
        }
        match &mut self.target {
            Target::Contiguous { block } => {
                // SAFETY: the block holds MSG_HEADER + reserved bytes and written + len fits.
                unsafe {
                    let dst = block.as_ptr().add(MSG_HEADER + self.written);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
                }
            }
            Target::Paged {
                page, pos, spanned, ..
            } => {
                let page_size = self.writer.account.page_size;
                let mut rest = bytes;
                while !rest.is_empty() {
                    if *pos == page_size {
                        *page = page
                            .next()
                            .expect("pages for the whole reservation were chained");
                        *pos = PAGE_DATA_START;
                        *spanned += 1;
                    }
                    let n = rest.len().min(page_size - *pos);
                    // SAFETY: `pos..pos+n` lies inside a page this reservation owns the free
                    // space of: no published message covers it and no other writer uses it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(rest.as_ptr(), page.base().add(*pos), n)
                    };
                    *pos += n;
                    rest = &rest[n..];
                }
            }
        }
        self.written += bytes.len();
        Ok(())
    }

    /// Publishes the bytes written so far as an immutable message. A reservation that was not
    /// filled gives its unused space (and pages) back.
    pub fn publish(self) -> Message {
        let mut this = std::mem::ManuallyDrop::new(self);
        let len = this.written;
        let header = match this.target {
            Target::Contiguous { mut block } => {
                if len < this.reserved {
                    block = this.writer.shrink_block(block, this.reserved, len);
                }
                let hdr = block.cast::<MsgHeader>();
                let account = Arc::into_raw(this.writer.account.clone()).cast::<()>();
                // SAFETY: the block starts with room for an aligned header.
                unsafe {
                    hdr.as_ptr().write(MsgHeader {
                        refs: AtomicUsize::new(1),
                        len: len as u32,
                        npages: 0,
                        link: account,
                    })
                };
                hdr
            }
            Target::Paged {
                first,
                header_offset,
                page,
                pos,
                spanned,
            } => {
                let w = &mut *this.writer;
                // Return the pages chained past the last one written to.
                let mut unused = page.next();
                page.set_next(None);
                while let Some(p) = unused {
                    unused = p.next();
                    // SAFETY: taken by this reservation, never referenced: ours to release.
                    unsafe { release_page(p) };
                }
                // The message takes one of the writer's references on every page it spans; the
                // writer keeps the rest on the last one (its new current page) and gives back
                // the rest on the others.
                let mut p = first;
                let mut last_bias = 0;
                for i in 0..spanned {
                    let held = if w.current == Some(p) {
                        w.bias
                    } else {
                        WRITER_BIAS
                    };
                    if i + 1 < spanned {
                        let next = p.next().expect("spanned pages are chained");
                        leave(p, held - 1);
                        p = next;
                    } else {
                        last_bias = held - 1;
                    }
                }
                if w.current != Some(first) {
                    // The message started on a fresh page: the old current page is left behind.
                    if let Some(old) = w.current {
                        leave(old, w.bias);
                    }
                }
                if last_bias == 0 {
                    page.add_refs(WRITER_BIAS);
                    last_bias = WRITER_BIAS;
                }
                w.current = Some(page);
                w.bias = last_bias;
                w.cursor = pos;
                // SAFETY: the header offset was chosen so the header fits in `first`, aligned.
                let hdr = unsafe { first.base().add(header_offset) }.cast::<MsgHeader>();
                // SAFETY: as above; the space is this reservation's.
                unsafe {
                    hdr.write(MsgHeader {
                        refs: AtomicUsize::new(1),
                        len: len as u32,
                        npages: spanned,
                        link: first.base().cast_const().cast(),
                    })
                };
                // SAFETY: just written, non-null (inside a page).
                unsafe { NonNull::new_unchecked(hdr) }
            }
        };
        this.writer.account.message_published(len);
        // SAFETY: the header was initialised above with one reference, owned by this Message.
        unsafe { Message::from_header(header) }
    }
}

impl Drop for MessageFill<'_> {
    /// An abandoned reservation: give back what it took.
    fn drop(&mut self) {
        match self.target {
            Target::Contiguous { block } => {
                let layout = contiguous_layout(self.reserved).expect("valid when reserved");
                // SAFETY: allocated in reserve_contiguous with this layout, never published.
                unsafe { alloc::dealloc(block.as_ptr(), layout) };
                self.writer.account.release_bytes(layout.size() as u64);
            }
            Target::Paged { first, .. } => {
                let in_current = self.writer.current == Some(first);
                let mut next = first.next();
                first.set_next(None);
                while let Some(p) = next {
                    next = p.next();
                    // SAFETY: taken by this reservation and never referenced: ours to release.
                    unsafe { release_page(p) };
                }
                if !in_current {
                    // SAFETY: as above (the header's page was new too).
                    unsafe { release_page(first) };
                }
            }
        }
    }
}
