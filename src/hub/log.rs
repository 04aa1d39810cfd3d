//! A stream's fan-out log: what the publisher says to every player (frames and publish
//! markers), appended once and read by each player with its own cursor.
//!
//! The publisher appends under the stream's lock; players read without any lock: each slot is
//! written once ([`OnceLock`], release/acquire) and never changed, and the log is a chain of
//! fixed-size segments that a cursor follows. A segment is freed when the last cursor (and the
//! writer) has moved past it, so the log keeps only what the slowest cursor has not read; the
//! hub moves the cursors of players that fall behind (see `hub::StreamState::catch_up`), which
//! bounds it.
//!
//! Sans-IO and runtime-agnostic: no waiting here (the hub wakes readers).

use std::sync::{Arc, OnceLock};

use super::PlayerItem;

/// Items per segment. A segment is about 3 KiB; the hub catches up cursors more than one
/// segment behind, so a stream's log holds two or three of them.
pub(crate) const SEGMENT: usize = 64;

struct Segment {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: [OnceLock<PlayerItem>; SEGMENT],
    /// Set (once) when the writer starts the next segment, before it writes into it.
    next: OnceLock<Arc<Segment>>,
}

impl Segment {
    fn new(base: u64) -> Arc<Segment> {
        Arc::new(Segment {
            base,
            slots: std::array::from_fn(|_| OnceLock::new()),
            next: OnceLock::new(),
        })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Free a chain of segments nobody references iteratively, not by recursion.
        let mut next = self.next.take();
        while let Some(seg) = next {
            match Arc::try_unwrap(seg) {
                Ok(mut seg) => next = seg.next.take(),
                Err(_) => break,
            }
        }
    }
}

/// The appending end of a log. One per stream; the caller serialises appends (the stream lock).
pub(crate) struct LogWriter {
    tail: Arc<Segment>,
    /// Slots of `tail` written.
    len: usize,
}

impl LogWriter {
    pub(crate) fn new() -> LogWriter {
        LogWriter {
            tail: Segment::new(0),
            len: 0,
        }
    }

    /// Appends an item for every cursor. Returns true when it started a new segment (the
    /// moment for the hub to move cursors that lag, so old segments can be freed).
    pub(crate) fn push(&mut self, item: PlayerItem) -> bool {
        let mut rolled = false;
        if self.len == SEGMENT {
            let next = Segment::new(self.tail.base + SEGMENT as u64);
            // Linked before anything is written into it: a cursor at the end of `tail` that
            // sees `next` finds its slots in order.
            let _ = self.tail.next.set(next.clone());
            self.tail = next;
            self.len = 0;
            rolled = true;
        }
        let set = self.tail.slots[self.len].set(item);
        debug_assert!(set.is_ok(), "a slot is written once");
        self.len += 1;
        rolled
    }

    /// The sequence number the next item will get.
    pub(crate) fn end(&self) -> u64 {
        self.tail.base + self.len as u64
    }

    /// A cursor at the end: it reads what is appended from now on.
    pub(crate) fn cursor(&self) -> LogCursor {
        LogCursor {
            seg: self.tail.clone(),
            idx: self.len,
        }
    }
}

/// A reader's position in a log. Holding it keeps its segment and every later one alive.
pub(crate) struct LogCursor {
    seg: Arc<Segment>,
    idx: usize,
}

impl LogCursor {
    /// The next item (a clone: one reference count per frame), or `None` at the end for now.
    pub(crate) fn next(&mut self) -> Option<PlayerItem> {
        if self.idx == SEGMENT {
            let next = self.seg.next.get()?.clone();
            self.seg = next;
            self.idx = 0;
        }
        let item = self.seg.slots[self.idx].get()?.clone();
        self.idx += 1;
        Some(item)
    }

    /// The sequence number of the next item this cursor reads.
    pub(crate) fn position(&self) -> u64 {
        self.seg.base + self.idx as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::SourceKind;
    use proptest::prelude::*;

    fn marker(i: u64) -> PlayerItem {
        // Markers are enough to check order: encode the sequence number in the variant.
        match i % 2 {
            0 => PlayerItem::PublishStarted {
                source: SourceKind::Rtmp,
            },
            _ => PlayerItem::PublishStopped,
        }
    }

    fn is(i: u64, item: &PlayerItem) -> bool {
        matches!(
            (i % 2, item),
            (0, PlayerItem::PublishStarted { .. }) | (1, PlayerItem::PublishStopped)
        )
    }

    proptest! {
        /// Whatever the interleaving of appends and reads: every cursor reads every item
        /// appended after it was made, once, in order, and its position counts them.
        #[test]
        fn cursors_read_everything_in_order(
            ops in proptest::collection::vec((0..3usize, 0..200usize), 1..200)
        ) {
            let mut w = LogWriter::new();
            let mut cursors: Vec<(LogCursor, u64)> = Vec::new();
            for (who, n) in ops {
                match who {
                    0 => for _ in 0..n {
                        let seq = w.end();
                        w.push(marker(seq));
                    },
                    1 => cursors.push((w.cursor(), w.end())),
                    _ => for (c, expect) in &mut cursors {
                        for _ in 0..n {
                            match c.next() {
                                Some(item) => {
                                    prop_assert!(is(*expect, &item));
                                    *expect += 1;
                                }
                                None => {
                                    prop_assert_eq!(*expect, w.end());
                                    break;
                                }
                            }
                            prop_assert_eq!(c.position(), *expect);
                        }
                    },
                }
            }
            for (c, expect) in &mut cursors {
                while let Some(item) = c.next() {
                    prop_assert!(is(*expect, &item));
                    *expect += 1;
                }
                prop_assert_eq!(*expect, w.end());
            }
        }
    }

    #[test]
    fn segments_are_freed_once_every_cursor_has_passed_them() {
        let mut w = LogWriter::new();
        let first = Arc::downgrade(&w.tail);
        let mut c = w.cursor();
        for i in 0..3 * SEGMENT as u64 {
            w.push(marker(i));
        }
        assert!(first.upgrade().is_some(), "the cursor keeps its segment");
        while c.next().is_some() {}
        assert_eq!(c.position(), 3 * SEGMENT as u64);
        assert!(first.upgrade().is_none(), "read segments are freed");
    }

    #[test]
    fn a_long_unread_chain_is_freed_without_recursion() {
        let mut w = LogWriter::new();
        let c = w.cursor();
        for i in 0..200_000 {
            w.push(marker(i));
        }
        let w2 = LogWriter::new();
        drop(std::mem::replace(&mut w, w2));
        drop(c); // frees ~3000 segments in a row
    }

    #[test]
    fn concurrent_reader_sees_every_item() {
        let mut w = LogWriter::new();
        let mut c = w.cursor();
        const N: u64 = 10_000;
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            while n < N {
                match c.next() {
                    Some(item) => {
                        assert!(is(n, &item));
                        n += 1;
                    }
                    None => std::thread::yield_now(),
                }
            }
        });
        for i in 0..N {
            w.push(marker(i));
        }
        reader.join().unwrap();
    }
}
