//! Our RTMP chunk serializer: one per connection, sans-IO.
//!
//! Queued messages become chunk headers (fmt 0/1/2/3, compressed against the previous header
//! on the same chunk stream) written into **one per-connection byte buffer**, and payload
//! segments that **reference** the shared [`Message`] pages. Nothing of a media payload is
//! copied: [`ChunkWriter::io_slices`] hands out slices of the `Message`'s own pages.
//! Small control payloads (commands, acknowledgements) are copied into the header buffer.
//!
//! Contract: queue with [`ChunkWriter::queue`] / [`ChunkWriter::queue_raw`]; to send, fill a
//! `Vec<IoSlice>` with [`ChunkWriter::io_slices`], `write_vectored` it, and report the number
//! of bytes written with [`ChunkWriter::advance`] (a partial write is fine). Bound the backlog
//! with [`ChunkWriter::pending_bytes`].
//!
//! Header compression follows ffmpeg's `ff_rtmp_packet_write` semantics: a fmt-3 header that
//! starts a message means "previous timestamp field again"; we only emit it after a fmt-1/2
//! header with the same (non-extended) delta, which every reader interprets the same way.
//! A timestamp going backwards (including a u32 wrap) or a new message stream id gets a fmt-0
//! header. Extended timestamps (field >= 0xFFFFFF) are repeated on fmt-3 continuation chunks,
//! as the spec, ffmpeg and rml_rtmp's reader expect.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::{RtmpError, MAX_RTMP_MESSAGE_LEN};
use crate::pages::Message;

/// The chunk size both directions start with (RTMP spec 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
const EXTENDED: u32 = 0xFF_FFFF;
/// Compact the header buffer once this many consumed bytes sit at its front.
const COMPACT_AT: usize = 64 * 1024;
/// Segment capacity above which a drained writer shrinks its buffers.
const SHRINK_ABOVE: usize = 64;

/// The header fields of one outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Chunk stream id, 2..=65599.
    pub csid: u32,
    /// Absolute timestamp in ms (wraps at u32).
    pub timestamp: u32,
    /// RTMP message type id (8 audio, 9 video, 18 data, 20 command, ...).
    pub type_id: u8,
    /// Message stream id (0 for connection-level messages).
    pub stream_id: u32,
}

/// The payload of an outgoing message.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// A shared media payload: referenced, never copied.
    Shared(&'a Message),
    /// Small owned bytes (control messages, commands): copied into the header buffer.
    Inline(&'a [u8]),
}

impl Payload<'_> {
    fn len(&self) -> usize {
        match self {
            Payload::Shared(m) => m.len(),
            Payload::Inline(b) => b.len(),
        }
    }
}

/// The last header sent on a chunk stream.
#[derive(Debug, Clone, Copy)]
struct Prev {
    timestamp: u32,
    /// The timestamp field as written: absolute after fmt 0, a delta after fmt 1/2/3.
    ts_field: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
    fmt: u8,
}

#[derive(Debug)]
enum Segment {
    /// Bytes `[start, end)` of the header buffer, as absolute offsets (`index = off - base`).
    Own { start: usize, end: usize },
    /// Bytes `[start, end)` of queued message number `msg` (absolute count).
    Shared { msg: u64, start: usize, end: usize },
}

impl Segment {
    fn len(&self) -> usize {
        match *self {
            Segment::Own { start, end } | Segment::Shared { start, end, .. } => end - start,
        }
    }
}

/// A drained writer's buffers, kept by its thread for the next writer that queues.
///
/// A streaming player's output is written whole at each tick, so between ticks its writer is
/// empty and its buffers need not be its own: one set per thread goes from player to player
/// during a flush pass, without allocating, and a thousand players hold none (they were
/// 3.3 KB of each player's memory at 3 Mbit/s).
struct Spare {
    bytes: Vec<u8>,
    segments: VecDeque<Segment>,
    messages: VecDeque<Message>,
}

thread_local! {
    static SPARE: std::cell::Cell<Option<Spare>> = const { std::cell::Cell::new(None) };
}

/// Per-connection chunk writer. See the module docs for the contract.
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    prev: Vec<(u32, Prev)>,
    bytes: Vec<u8>,
    bytes_base: usize,
    segments: VecDeque<Segment>,
    /// Bytes of `segments[0]` already written.
    front_done: usize,
    messages: VecDeque<Message>,
    messages_base: u64,
    pending: usize,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter::new()
    }
}

impl ChunkWriter {
    /// A writer with the RTMP default chunk size of 128 bytes.
    pub fn new() -> ChunkWriter {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
            prev: Vec::new(),
            bytes: Vec::new(),
            bytes_base: 0,
            segments: VecDeque::new(),
            front_done: 0,
            messages: VecDeque::new(),
            messages_base: 0,
            pending: 0,
        }
    }

    /// The chunk size used for messages queued from now on.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the chunk size for messages queued from now on. The caller must have queued a
    /// Set Chunk Size message (type 1) with this value first, so the peer switches at the same
    /// point in the byte stream. Clamped to `1..=0xFFFFFF` (no message is longer).
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, EXTENDED);
    }

    /// Asks for the previous-header table, read by every message queued (see
    /// `crate::prefetch`).
    pub fn prefetch(&self) {
        crate::prefetch::prefetch(self.prev.as_slice());
    }

    /// Bytes queued and not yet reported written through [`ChunkWriter::advance`].
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Queues bytes without chunking (the handshake).
    pub fn queue_raw(&mut self, raw: &[u8]) {
        self.push_own(raw);
    }

    /// Queues one message, split into chunks of the current chunk size.
    ///
    /// Errors (and queues nothing) if the payload exceeds the 24-bit RTMP length or the csid is
    /// outside 2..=65599.
    pub fn queue(&mut self, header: MessageHeader, payload: Payload<'_>) -> Result<(), RtmpError> {
        match payload {
            Payload::Shared(m) => self.queue_message(header, m.clone()),
            Payload::Inline(_) => self.queue_inner(header, payload),
        }
    }

    /// Like [`ChunkWriter::queue`] with [`Payload::Shared`], taking the caller's handle instead
    /// of cloning it: on the fan-out path every clone is an atomic increment (and its drop a
    /// decrement) on a cache line that all players' threads share.
    pub fn queue_message(
        &mut self,
        header: MessageHeader,
        message: Message,
    ) -> Result<(), RtmpError> {
        self.queue_inner(header, Payload::Shared(&message))?;
        if !message.is_empty() {
            self.messages.push_back(message);
        }
        Ok(())
    }

    /// Queues the chunks of one message; shared payloads are referenced as the next entry of
    /// `messages`, which the caller pushes after success.
    fn queue_inner(
        &mut self,
        header: MessageHeader,
        payload: Payload<'_>,
    ) -> Result<(), RtmpError> {
        let len = payload.len();
        if len > MAX_RTMP_MESSAGE_LEN {
            return Err(RtmpError::Output {
                what: format!("payload of {len} bytes exceeds the 24-bit RTMP message length"),
            });
        }
        if !(2..=65599).contains(&header.csid) {
            return Err(RtmpError::Output {
                what: format!("invalid chunk stream id {}", header.csid),
            });
        }
        let len = len as u32;
        let prev_idx = self.prev.iter().position(|(c, _)| *c == header.csid);
        let prev = prev_idx.map(|i| self.prev[i].1);
        let (fmt, ts_field) = match prev {
            Some(p) if p.stream_id == header.stream_id && header.timestamp >= p.timestamp => {
                let delta = header.timestamp - p.timestamp;
                if p.len != len || p.type_id != header.type_id {
                    (1, delta)
                } else if p.fmt != 0 && delta == p.ts_field && delta < EXTENDED {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, header.timestamp),
        };
        let extended = ts_field >= EXTENDED;

        let mut hdr = [0u8; 18];
        let mut n = basic_header(&mut hdr, fmt, header.csid);
        if fmt < 3 {
            hdr[n..n + 3].copy_from_slice(&ts_field.min(EXTENDED).to_be_bytes()[1..]);
            n += 3;
        }
        if fmt < 2 {
            hdr[n..n + 3].copy_from_slice(&len.to_be_bytes()[1..]);
            hdr[n + 3] = header.type_id;
            n += 4;
        }
        if fmt == 0 {
            hdr[n..n + 4].copy_from_slice(&header.stream_id.to_le_bytes());
            n += 4;
        }
        if extended {
            hdr[n..n + 4].copy_from_slice(&ts_field.to_be_bytes());
            n += 4;
        }
        let mut cont = [0u8; 7];
        let mut cn = basic_header(&mut cont, 3, header.csid);
        if extended {
            cont[cn..cn + 4].copy_from_slice(&ts_field.to_be_bytes());
            cn += 4;
        }

        let msg_index = self.messages_base + self.messages.len() as u64;
        let chunk = self.chunk_size as usize;
        let len = len as usize;
        let mut off = 0;
        self.push_own(&hdr[..n]);
        loop {
            let end = (off + chunk).min(len);
            match payload {
                Payload::Inline(b) => self.push_own(&b[off..end]),
                Payload::Shared(_) if end > off => {
                    self.segments.push_back(Segment::Shared {
                        msg: msg_index,
                        start: off,
                        end,
                    });
                    self.pending += end - off;
                }
                Payload::Shared(_) => {}
            }
            off = end;
            if off >= len {
                break;
            }
            self.push_own(&cont[..cn]);
        }
        let p = Prev {
            timestamp: header.timestamp,
            ts_field,
            len: len as u32,
            type_id: header.type_id,
            stream_id: header.stream_id,
            fmt,
        };
        match prev_idx {
            Some(i) => self.prev[i].1 = p,
            None => self.prev.push((header.csid, p)),
        }
        Ok(())
    }

    fn push_own(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        if self.bytes.capacity() == 0 && self.segments.capacity() == 0 {
            self.borrow_spare();
        }
        let start = self.bytes_base + self.bytes.len();
        self.bytes.extend_from_slice(b);
        let end = start + b.len();
        self.pending += b.len();
        if let Some(Segment::Own { end: last_end, .. }) = self.segments.back_mut() {
            if *last_end == start {
                *last_end = end;
                return;
            }
        }
        self.segments.push_back(Segment::Own { start, end });
    }

    /// Appends slices covering everything pending, in order, for `write_vectored`.
    /// Media payload slices point into the shared pages of the queued [`Message`]s.
    pub fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        self.io_slices_max(out, usize::MAX);
    }

    /// Like [`ChunkWriter::io_slices`] but stops once `out` holds `max` slices
    /// (e.g. IOV_MAX = 1024 on Linux).
    pub fn io_slices_max<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize) {
        for (i, seg) in self.segments.iter().enumerate() {
            let skip = if i == 0 { self.front_done } else { 0 };
            match *seg {
                Segment::Own { start, end } => {
                    if out.len() >= max {
                        return;
                    }
                    let b = self.bytes_base;
                    out.push(IoSlice::new(&self.bytes[start + skip - b..end - b]));
                }
                Segment::Shared { msg, start, end } => {
                    let m = &self.messages[(msg - self.messages_base) as usize];
                    let (s, e) = (start + skip, end);
                    let mut pos = 0;
                    for sl in m.slices() {
                        let (sl_start, sl_end) = (pos, pos + sl.len());
                        pos = sl_end;
                        if sl_end <= s {
                            continue;
                        }
                        if sl_start >= e {
                            break;
                        }
                        if out.len() >= max {
                            return;
                        }
                        out.push(IoSlice::new(
                            &sl[s.max(sl_start) - sl_start..e.min(sl_end) - sl_start],
                        ));
                    }
                }
            }
        }
    }

    /// Marks the first `n` pending bytes as written, releasing finished [`Message`] references.
    ///
    /// # Panics
    /// If `n` exceeds [`ChunkWriter::pending_bytes`] (a caller bug, like `Buf::advance`).
    pub fn advance(&mut self, mut n: usize) {
        assert!(
            n <= self.pending,
            "advance({n}) past the {} pending bytes",
            self.pending
        );
        self.pending -= n;
        while n > 0 {
            let Some(seg) = self.segments.front() else {
                break;
            };
            let left = seg.len() - self.front_done;
            if n < left {
                self.front_done += n;
                break;
            }
            n -= left;
            self.front_done = 0;
            if let Some(Segment::Shared { msg, end, .. }) = self.segments.pop_front() {
                let m = &self.messages[(msg - self.messages_base) as usize];
                if end == m.len() {
                    debug_assert_eq!(msg, self.messages_base);
                    self.messages.pop_front();
                    self.messages_base += 1;
                }
            }
        }
        if self.segments.is_empty() {
            self.bytes.clear();
            self.bytes_base = 0;
            self.front_done = 0;
            self.return_spare();
        } else if self.bytes.len() > COMPACT_AT {
            self.compact();
        }
    }

    /// Takes this thread's spare buffers, if it has them, for a writer that has none.
    fn borrow_spare(&mut self) {
        if let Some(spare) = SPARE.take() {
            debug_assert!(spare.bytes.is_empty() && spare.segments.is_empty());
            debug_assert!(spare.messages.is_empty());
            self.bytes = spare.bytes;
            self.segments = spare.segments;
            self.messages = spare.messages;
        }
    }

    /// A drained writer's buffers go to the thread's spare (if it has none), else are freed.
    fn return_spare(&mut self) {
        debug_assert!(self.messages.is_empty());
        let mut spare = Spare {
            bytes: std::mem::take(&mut self.bytes),
            segments: std::mem::take(&mut self.segments),
            messages: std::mem::take(&mut self.messages),
        };
        if spare.segments.capacity() == 0 && spare.bytes.capacity() == 0 {
            return;
        }
        // A burst (a new player's GOP) grows these; steady output needs a few entries.
        if spare.segments.capacity() > SHRINK_ABOVE {
            spare.segments.shrink_to(SHRINK_ABOVE / 4);
            spare.messages.shrink_to(SHRINK_ABOVE / 4);
        }
        if spare.bytes.capacity() > 16 * SHRINK_ABOVE {
            spare.bytes.shrink_to(4 * SHRINK_ABOVE);
        }
        let had = SPARE.take();
        SPARE.set(Some(had.unwrap_or(spare)));
    }

    /// Drops consumed bytes from the front of the header buffer when they dominate it.
    fn compact(&mut self) {
        let lowest = self
            .segments
            .iter()
            .enumerate()
            .find_map(|(i, s)| match *s {
                Segment::Own { start, .. } => {
                    Some(start + if i == 0 { self.front_done } else { 0 })
                }
                Segment::Shared { .. } => None,
            });
        let lowest = lowest.unwrap_or(self.bytes_base + self.bytes.len());
        let consumed = lowest - self.bytes_base;
        if consumed >= COMPACT_AT && consumed * 2 >= self.bytes.len() {
            self.bytes.drain(..consumed);
            self.bytes_base = lowest;
        }
    }
}

/// Writes the basic header (fmt + csid) and returns its length.
fn basic_header(out: &mut [u8], fmt: u8, csid: u32) -> usize {
    let f = fmt << 6;
    match csid {
        2..=63 => {
            out[0] = f | csid as u8;
            1
        }
        64..=319 => {
            out[0] = f;
            out[1] = (csid - 64) as u8;
            2
        }
        _ => {
            let v = csid - 64;
            out[0] = f | 1;
            out[1] = (v & 0xff) as u8;
            out[2] = (v >> 8) as u8;
            3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::{PagePool, PoolConfig};
    use rml_rtmp::chunk_io::ChunkDeserializer;

    fn message(bytes: &[u8]) -> Message {
        let pool = PagePool::new(PoolConfig::default());
        let mut w = pool.writer("test", 1 << 30);
        w.write(&[bytes]).unwrap()
    }

    fn drain(w: &mut ChunkWriter) -> Vec<u8> {
        let mut v = Vec::new();
        let mut out = Vec::new();
        w.io_slices(&mut out);
        for s in &out {
            v.extend_from_slice(s);
        }
        let n = v.len();
        drop(out);
        w.advance(n);
        assert_eq!(w.pending_bytes(), 0);
        v
    }

    fn h(csid: u32, timestamp: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        }
    }

    #[test]
    fn fmt0_then_fmt1_fmt2_fmt3_hand_computed() {
        let mut w = ChunkWriter::new();
        w.queue(h(6, 1000, 8, 1), Payload::Inline(&[0xaf, 1, 2]))
            .unwrap();
        w.queue(h(6, 1020, 8, 1), Payload::Inline(&[0xaf, 1, 2, 3]))
            .unwrap(); // len changed: fmt1
        w.queue(h(6, 1030, 8, 1), Payload::Inline(&[0xaf, 4, 5, 6]))
            .unwrap(); // delta changed: fmt2
        w.queue(h(6, 1040, 8, 1), Payload::Inline(&[0xaf, 7, 8, 9]))
            .unwrap(); // same delta: fmt3
        let out = drain(&mut w);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0x06, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x03, 0x08, 0x01, 0x00, 0x00, 0x00, 0xaf, 1, 2,
            0x46, 0x00, 0x00, 0x14, 0x00, 0x00, 0x04, 0x08, 0xaf, 1, 2, 3,
            0x86, 0x00, 0x00, 0x0a, 0xaf, 4, 5, 6,
            0xc6, 0xaf, 7, 8, 9,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn split_into_chunks_with_extended_timestamp_repeated() {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(2);
        w.queue(h(300, 0x0100_0000, 9, 1), Payload::Inline(&[1, 2, 3, 4, 5]))
            .unwrap();
        let out = drain(&mut w);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0x00, 0xec, // fmt0, 2-byte basic header: csid 300 = 64 + 236
            0xff, 0xff, 0xff, 0x00, 0x00, 0x05, 0x09, 0x01, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 1, 2,
            0xc0, 0xec, 0x01, 0x00, 0x00, 0x00, 3, 4,
            0xc0, 0xec, 0x01, 0x00, 0x00, 0x00, 5,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn three_byte_basic_header_and_backwards_timestamp_is_fmt0() {
        let mut w = ChunkWriter::new();
        w.queue(h(64 + 256 + 2, 50, 8, 1), Payload::Inline(&[1]))
            .unwrap();
        w.queue(h(64 + 256 + 2, 40, 8, 1), Payload::Inline(&[2]))
            .unwrap();
        let out = drain(&mut w);
        assert_eq!(&out[..3], &[0x01, 0x02, 0x01]);
        // 3 + 11 + 1 payload byte, then a fmt-0 header again with the absolute timestamp 40.
        assert_eq!(&out[15..18], &[0x01, 0x02, 0x01]);
        assert_eq!(&out[18..21], &[0, 0, 40]);
    }

    #[test]
    fn media_payload_is_referenced_not_copied() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let msg = message(&payload);
        // Where payload byte `off` lives: the message's own slices (it may span pages).
        let page_slices: Vec<&[u8]> = msg.slices().collect();
        let addr_of = |mut off: usize| {
            for s in &page_slices {
                if off < s.len() {
                    return s.as_ptr() as usize + off;
                }
                off -= s.len();
            }
            panic!("offset past the payload");
        };
        let mut players: Vec<ChunkWriter> = (0..3).map(|_| ChunkWriter::new()).collect();
        for w in &mut players {
            w.set_chunk_size(4096);
            w.queue(h(7, 0, 9, 1), Payload::Shared(&msg)).unwrap();
        }
        for w in &players {
            let mut out = Vec::new();
            w.io_slices(&mut out);
            // Payload slices are the ones inside the message's pages; the rest are chunk headers
            // from the writer's own buffer.
            let in_pages = |p: usize| {
                page_slices
                    .iter()
                    .any(|s| (s.as_ptr() as usize..s.as_ptr() as usize + s.len()).contains(&p))
            };
            let payload_slices: Vec<&IoSlice> = out
                .iter()
                .filter(|s| in_pages(s.as_ptr() as usize))
                .collect();
            assert_eq!(
                out.len() - payload_slices.len(),
                3,
                "one header per 4096-byte chunk, no payload copied into the header buffer"
            );
            assert!(
                payload_slices.len() >= 3,
                "at least one slice per 4096-byte chunk"
            );
            let mut off = 0;
            for s in payload_slices {
                assert_eq!(
                    s.as_ptr() as usize,
                    addr_of(off),
                    "payload slice must point into the message's page"
                );
                off += s.len();
            }
            assert_eq!(off, payload.len());
        }
        assert!(players.iter().all(|w| w.messages.len() == 1));
        for w in &mut players {
            let n = w.pending_bytes();
            w.advance(n);
            assert!(w.messages.is_empty(), "finished messages are released");
        }
    }

    #[test]
    fn partial_writes_resume_exactly() {
        let msg = message(&(0..5000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        let mut reference = ChunkWriter::new();
        let mut w = ChunkWriter::new();
        for x in [&mut reference, &mut w] {
            x.queue(h(3, 0, 20, 0), Payload::Inline(b"hello")).unwrap();
            x.queue(h(7, 10, 9, 1), Payload::Shared(&msg)).unwrap();
            x.queue(h(6, 20, 8, 1), Payload::Inline(&[1, 2, 3]))
                .unwrap();
        }
        let expected = drain(&mut reference);
        for step in [1usize, 3, 127, 128, 129, 1000] {
            let mut w2 = ChunkWriter::new();
            w2.queue(h(3, 0, 20, 0), Payload::Inline(b"hello")).unwrap();
            w2.queue(h(7, 10, 9, 1), Payload::Shared(&msg)).unwrap();
            w2.queue(h(6, 20, 8, 1), Payload::Inline(&[1, 2, 3]))
                .unwrap();
            let mut got = Vec::new();
            while w2.pending_bytes() > 0 {
                let mut out = Vec::new();
                w2.io_slices(&mut out);
                let mut take = step;
                for s in &out {
                    let t = take.min(s.len());
                    got.extend_from_slice(&s[..t]);
                    take -= t;
                    if take == 0 {
                        break;
                    }
                }
                let n = step.min(w2.pending_bytes());
                drop(out);
                w2.advance(n);
            }
            assert_eq!(got, expected, "step {step}");
        }
        let _ = drain(&mut w);
    }

    #[test]
    fn header_buffer_is_compacted_under_partial_writes() {
        let mut w = ChunkWriter::new();
        let big = vec![5u8; 1000];
        for i in 0..1000u32 {
            w.queue(h(3, i, 20, 0), Payload::Inline(&big)).unwrap();
            let n = w.pending_bytes() - 10;
            w.advance(n);
        }
        assert!(
            w.bytes.len() < 3 * COMPACT_AT,
            "header buffer grew to {}",
            w.bytes.len()
        );
    }

    /// Round trip through rml_rtmp's `ChunkDeserializer` at many chunk sizes and timestamps,
    /// including extended timestamps and u32 wrap-around.
    #[test]
    fn round_trip_through_rml_deserializer() {
        let payloads: Vec<Message> = [0usize, 1, 127, 128, 129, 300, 4095, 4096, 4097, 20_000]
            .iter()
            .map(|&n| message(&(0..n).map(|i| (i * 31 + n) as u8).collect::<Vec<_>>()))
            .collect();
        let timestamp_runs: [&[u32]; 5] = [
            &[0, 20, 40, 60, 61, 61, 100],
            &[
                0xFF_FFF0, 0xFF_FFFE, 0xFF_FFFF, 0x100_0000, 0x100_0010, 0x100_0020, 0x100_0030,
            ],
            &[u32::MAX - 30, u32::MAX - 10, u32::MAX, 5, 25, 45],
            &[0x7FFF_FFFF, 0x8000_0000, 0x8000_0020],
            &[0, 0x100_0000, 0x200_0000, 0x300_0000],
        ];
        for chunk_size in [1u32, 2, 7, 128, 129, 4096, 65536, 0xFF_FFFF] {
            for run in timestamp_runs {
                let mut w = ChunkWriter::new();
                w.set_chunk_size(chunk_size);
                let mut de = ChunkDeserializer::new();
                de.set_max_chunk_size(chunk_size as usize).unwrap();
                let mut expected = Vec::new();
                for (i, &ts) in run.iter().enumerate() {
                    for (j, p) in payloads.iter().enumerate() {
                        if p.is_empty() {
                            continue; // rml's deserializer never completes empty messages
                        }
                        let (csid, type_id) = if (i + j) % 3 == 0 { (6, 8) } else { (7, 9) };
                        // Same payload twice in a row exercises fmt 2/3.
                        for _ in 0..2 {
                            w.queue(h(csid, ts, type_id, 1), Payload::Shared(p))
                                .unwrap();
                            expected.push((ts, type_id, p.to_vec()));
                        }
                    }
                }
                let bytes = drain(&mut w);
                let mut got = Vec::new();
                let mut first = true;
                loop {
                    let input: &[u8] = if first { &bytes } else { &[] };
                    first = false;
                    match de.get_next_message(input).unwrap() {
                        Some(m) => got.push((m.timestamp.value, m.type_id, m.data.to_vec())),
                        None => break,
                    }
                }
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "chunk size {chunk_size} run {run:?}"
                );
                for (g, e) in got.iter().zip(&expected) {
                    assert_eq!((g.0, g.1), (e.0, e.1), "chunk size {chunk_size}");
                    assert!(g.2 == e.2, "payload mismatch at chunk size {chunk_size}");
                }
            }
        }
    }

    #[test]
    fn oversized_message_and_bad_csid_are_errors() {
        let mut w = ChunkWriter::new();
        let big = vec![0u8; MAX_RTMP_MESSAGE_LEN + 1];
        assert!(w.queue(h(3, 0, 20, 0), Payload::Inline(&big)).is_err());
        assert!(w.queue(h(1, 0, 20, 0), Payload::Inline(&[1])).is_err());
        assert!(w.queue(h(65600, 0, 20, 0), Payload::Inline(&[1])).is_err());
        assert_eq!(w.pending_bytes(), 0);
    }
}
