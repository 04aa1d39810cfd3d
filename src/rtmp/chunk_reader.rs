//! Our RTMP chunk deserializer: one per connection, sans-IO, with limits.
//!
//! Why not rml_rtmp's `ChunkDeserializer` (read in rml_rtmp 0.8.0 `chunk_io/deserializer.rs`):
//! - it keeps **one** payload buffer for all chunk streams, so a chunk of another chunk stream
//!   arriving in the middle of a split message (legal, and what publishers do when audio
//!   interleaves a large video frame) corrupts the message or underflows `length -
//!   current_payload_length` and panics (pinned by `rml_deserializer_panics_on_interleaved_chunk_streams`);
//! - it `reserve`s the peer-declared message length (up to 16 MiB) on the first chunk;
//! - it accepts chunk sizes up to 2^31 and buffers every input byte until a whole chunk is
//!   there, so a peer can make it hold a 2 GiB chunk;
//! - a fmt-1/2 extended delta below 0xFFFFFF underflows a `u32` subtraction (panics in debug).
//!
//! This reader consumes payload bytes as they arrive (at most one partial header, 18 bytes,
//! is staged), keeps a partial message per chunk stream, and checks, before allocating:
//! the declared message length against [`ReaderLimits::max_message_len`], the number of
//! chunk streams against [`ReaderLimits::max_chunk_streams`], and the bytes held in partial
//! messages against [`ReaderLimits::max_partial_bytes`]. Partial payload buffers grow with the
//! bytes actually received, not with the declared length.
//!
//! Timestamps: fmt 0 carries an absolute timestamp, fmt 1/2 a delta, and a fmt-3 header that
//! starts a message re-applies the previous timestamp field (as ffmpeg and rml_rtmp do). All
//! arithmetic wraps at u32. Extended timestamps are read on fmt-3 continuation chunks when the
//! message's header was extended (as the spec and ffmpeg's writer do) and then ignored.

use std::collections::HashMap;

use bytes::Bytes;

use super::chunk_writer::DEFAULT_CHUNK_SIZE;
use super::{RtmpError, MAX_RTMP_MESSAGE_LEN};

const EXTENDED: u32 = 0xFF_FFFF;
const MAX_HEADER: usize = 18;

/// Limits on what a peer may make the reader hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Largest accepted message, checked against the declared length before allocating.
    /// Default 4 MiB: a 4K intra frame at 50 Mbit/s is about 2 MB.
    pub max_message_len: usize,
    /// Most chunk streams a peer may use (ffmpeg and OBS use fewer than 10). Default 64.
    pub max_chunk_streams: usize,
    /// Most bytes held across all partial messages. Default 8 MiB (a large video frame plus
    /// interleaved audio).
    pub max_partial_bytes: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_message_len: 4 << 20,
            max_chunk_streams: 64,
            max_partial_bytes: 8 << 20,
        }
    }
}

/// One complete message read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    /// Absolute timestamp in ms, resolved from deltas with wrapping arithmetic.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The last fmt 0/1/2 timestamp field (absolute after fmt 0, delta after fmt 1/2).
    ts_field: u32,
    extended: bool,
    len: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload received so far of the message in progress.
    buf: Vec<u8>,
    in_progress: bool,
}

/// Per-connection chunk reader. See the module docs.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: usize,
    limits: ReaderLimits,
    streams: HashMap<u32, ChunkStream>,
    hdr: [u8; MAX_HEADER],
    hdr_len: usize,
    /// In the payload of a chunk: (csid, bytes left in this chunk).
    current: Option<(u32, usize)>,
    partial_bytes: usize,
}

impl ChunkReader {
    pub fn new(limits: ReaderLimits) -> ChunkReader {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            limits,
            streams: HashMap::new(),
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            current: None,
            partial_bytes: 0,
        }
    }

    /// Applies the peer's Set Chunk Size. Zero is an error; anything above 0xFFFFFF is clamped
    /// to it, which changes nothing since no message is longer, and allocates nothing.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        let size = size & 0x7FFF_FFFF; // the spec reserves bit 31 (must be 0)
        if size == 0 {
            return Err(RtmpError::message("Set Chunk Size", "chunk size 0"));
        }
        self.chunk_size = size.min(EXTENDED) as usize;
        Ok(())
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Drops the partial message on `csid` (the peer's Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            self.partial_bytes -= s.buf.len();
            s.buf = Vec::new();
            s.in_progress = false;
        }
    }

    /// Bytes held in partial messages.
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// Consumes bytes from the front of `input` until one message completes (`Ok(Some)`) or
    /// `input` is empty (`Ok(None)`: more input needed; everything was consumed and kept).
    ///
    /// Contract: call until it returns `Ok(None)`, applying a Set Chunk Size or Abort message
    /// before the next call. After an `Err` the reader is in an unspecified state: close.
    pub fn read(&mut self, input: &mut &[u8]) -> Result<Option<RawMessage>, RtmpError> {
        loop {
            if let Some((csid, left)) = self.current {
                let take = left.min(input.len());
                if self.partial_bytes + take > self.limits.max_partial_bytes {
                    return Err(RtmpError::limit(
                        csid,
                        format!(
                            "partial messages would hold {} bytes, limit {}",
                            self.partial_bytes + take,
                            self.limits.max_partial_bytes
                        ),
                    ));
                }
                let s = self
                    .streams
                    .get_mut(&csid)
                    .expect("current chunk stream exists");
                s.buf.extend_from_slice(&input[..take]);
                *input = &input[take..];
                self.partial_bytes += take;
                if take < left {
                    self.current = Some((csid, left - take));
                    return Ok(None);
                }
                self.current = None;
                if s.buf.len() == s.len as usize {
                    self.partial_bytes -= s.buf.len();
                    s.in_progress = false;
                    let payload = Bytes::from(std::mem::take(&mut s.buf));
                    return Ok(Some(RawMessage {
                        csid,
                        timestamp: s.timestamp,
                        type_id: s.type_id,
                        stream_id: s.stream_id,
                        payload,
                    }));
                }
                continue;
            }
            // Header: stage bytes until the whole header is known.
            loop {
                let need = self.header_need()?;
                if self.hdr_len >= need {
                    break;
                }
                if input.is_empty() {
                    return Ok(None);
                }
                let take = (need - self.hdr_len).min(input.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[..take]);
                self.hdr_len += take;
                *input = &input[take..];
            }
            if let Some(done) = self.apply_header()? {
                return Ok(Some(done));
            }
        }
    }

    /// The header length needed to know more (or the full length, once known).
    fn header_need(&self) -> Result<usize, RtmpError> {
        let h = &self.hdr[..self.hdr_len];
        if h.is_empty() {
            return Ok(1);
        }
        let basic = match h[0] & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        if h.len() < basic {
            return Ok(basic);
        }
        let fmt = h[0] >> 6;
        let mh = [11, 7, 3, 0][fmt as usize];
        if h.len() < basic + mh {
            return Ok(basic + mh);
        }
        let extended = if fmt < 3 {
            u24(&h[basic..]) == EXTENDED
        } else {
            let csid = csid_of(h);
            match self.streams.get(&csid) {
                Some(s) => s.extended,
                None => {
                    return Err(RtmpError::chunk(
                        csid,
                        "fmt 3 header with no previous header",
                    ))
                }
            }
        };
        Ok(basic + mh + if extended { 4 } else { 0 })
    }

    /// Applies a complete staged header; returns a message if it is complete already (length 0).
    fn apply_header(&mut self) -> Result<Option<RawMessage>, RtmpError> {
        let h = self.hdr;
        let n = self.hdr_len;
        self.hdr_len = 0;
        let fmt = h[0] >> 6;
        let csid = csid_of(&h[..n]);
        let basic = match h[0] & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let m = &h[basic..n];
        if !self.streams.contains_key(&csid) {
            if fmt != 0 {
                return Err(RtmpError::chunk(
                    csid,
                    format!("fmt {fmt} header with no previous header"),
                ));
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(RtmpError::limit(
                    csid,
                    format!("more than {} chunk streams", self.limits.max_chunk_streams),
                ));
            }
            self.streams.insert(csid, ChunkStream::default());
        }
        let s = self.streams.get_mut(&csid).expect("inserted above");
        if fmt < 3 && s.in_progress {
            return Err(RtmpError::chunk(
                csid,
                format!(
                    "fmt {fmt} header while {} of {} bytes of the previous message are pending",
                    s.buf.len(),
                    s.len
                ),
            ));
        }
        let ext = |off: usize| u32::from_be_bytes([m[off], m[off + 1], m[off + 2], m[off + 3]]);
        match fmt {
            0..=2 => {
                let field = u24(m);
                s.extended = field == EXTENDED;
                let ext_off = [11, 7, 3][fmt as usize];
                let value = if s.extended { ext(ext_off) } else { field };
                if fmt == 0 {
                    s.timestamp = value;
                    s.stream_id = u32::from_le_bytes([m[7], m[8], m[9], m[10]]);
                } else {
                    s.timestamp = s.timestamp.wrapping_add(value);
                }
                if fmt < 2 {
                    s.len = u24(&m[3..]);
                    s.type_id = m[6];
                }
                s.ts_field = value;
            }
            _ if s.in_progress => {} // continuation: any extended timestamp repeats the header's
            _ => {
                let delta = if s.extended { ext(0) } else { s.ts_field };
                s.timestamp = s.timestamp.wrapping_add(delta);
            }
        }
        if !s.in_progress {
            if s.len as usize > self.limits.max_message_len {
                return Err(RtmpError::limit(
                    csid,
                    format!(
                        "message of {} bytes (type {}) exceeds the limit of {}",
                        s.len, s.type_id, self.limits.max_message_len
                    ),
                ));
            }
            if s.len == 0 {
                return Ok(Some(RawMessage {
                    csid,
                    timestamp: s.timestamp,
                    type_id: s.type_id,
                    stream_id: s.stream_id,
                    payload: Bytes::new(),
                }));
            }
            s.in_progress = true;
            // Grow with what arrives; reserve at most one chunk up front.
            s.buf = Vec::with_capacity((s.len as usize).min(self.chunk_size).min(64 * 1024));
        }
        let left = (s.len as usize - s.buf.len()).min(self.chunk_size);
        self.current = Some((csid, left));
        Ok(None)
    }
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn csid_of(h: &[u8]) -> u32 {
    match h[0] & 0x3f {
        0 => 64 + h[1] as u32,
        1 => 64 + h[1] as u32 + 256 * h[2] as u32,
        x => x as u32,
    }
}

const _: () = assert!(MAX_RTMP_MESSAGE_LEN == EXTENDED as usize);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk_writer::{ChunkWriter, MessageHeader, Payload};

    fn read_all(r: &mut ChunkReader, mut input: &[u8]) -> Result<Vec<RawMessage>, RtmpError> {
        let mut v = Vec::new();
        while let Some(m) = r.read(&mut input)? {
            if m.type_id == 1 {
                let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                r.set_chunk_size(size)?;
            }
            v.push(m);
        }
        assert!(input.is_empty());
        Ok(v)
    }

    fn written(msgs: &[(u32, u32, u8, Vec<u8>)], chunk_size: u32) -> Vec<u8> {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(chunk_size);
        for (csid, ts, ty, p) in msgs {
            let hd = MessageHeader {
                csid: *csid,
                timestamp: *ts,
                type_id: *ty,
                stream_id: 1,
            };
            w.queue(hd, Payload::Inline(p)).unwrap();
        }
        let mut out = Vec::new();
        w.io_slices(&mut out);
        out.iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn round_trip_with_our_writer_at_every_split_point() {
        let msgs: Vec<(u32, u32, u8, Vec<u8>)> = vec![
            (6, 0, 8, vec![1; 300]),
            (7, 0, 9, vec![2; 10]),
            (7, 40, 9, vec![3; 10]),
            (7, 80, 9, vec![4; 10]),
            (6, 0xFF_FFFF, 8, vec![5; 200]),
            (6, 0x100_0100, 8, vec![6; 200]),
            (400, u32::MAX, 18, vec![7; 129]),
            (400, 3, 18, vec![8; 129]),
            (3, 0, 20, vec![]),
        ];
        let bytes = written(&msgs, 128);
        for split in 0..=bytes.len() {
            let mut r = ChunkReader::new(ReaderLimits::default());
            let mut got = read_all(&mut r, &bytes[..split]).unwrap();
            got.extend(read_all(&mut r, &bytes[split..]).unwrap());
            let got: Vec<_> = got
                .into_iter()
                .map(|m| (m.csid, m.timestamp, m.type_id, m.payload.to_vec()))
                .collect();
            assert_eq!(got, msgs, "split at {split}");
        }
    }

    #[test]
    fn interleaved_chunk_streams() {
        // Video message of 200 bytes split at 128, with an audio message between its chunks.
        let mut b = vec![0x07, 0, 0, 10, 0, 0, 200, 9, 1, 0, 0, 0];
        b.extend([0xaa; 128]);
        b.extend([0x06, 0, 0, 10, 0, 0, 2, 8, 1, 0, 0, 0, 0xaf, 0x01]);
        b.push(0xc7);
        b.extend([0xbb; 72]);
        let mut r = ChunkReader::new(ReaderLimits::default());
        let got = read_all(&mut r, &b).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].csid, &got[0].payload[..]), (6, &[0xaf, 0x01][..]));
        assert_eq!(got[1].csid, 7);
        assert_eq!(&got[1].payload[..128], &[0xaa; 128][..]);
        assert_eq!(&got[1].payload[128..], &[0xbb; 72][..]);
    }

    #[test]
    fn rml_deserializer_panics_on_interleaved_chunk_streams() {
        // Why we do not use rml_rtmp's ChunkDeserializer: the same bytes as above panic there.
        let mut b = vec![0x07, 0, 0, 10, 0, 0, 200, 9, 1, 0, 0, 0];
        b.extend([0xaa; 128]);
        b.extend([0x06, 0, 0, 10, 0, 0, 2, 8, 1, 0, 0, 0, 0xaf, 0x01]);
        b.push(0xc7);
        b.extend([0xbb; 72]);
        let result = std::panic::catch_unwind(|| {
            let mut de = rml_rtmp::chunk_io::ChunkDeserializer::new();
            let mut first = true;
            loop {
                let input: &[u8] = if first { &b } else { &[] };
                first = false;
                match de.get_next_message(input) {
                    Ok(Some(m)) if m.type_id == 9 && m.data.len() == 200 => return true,
                    Ok(Some(_)) => continue,
                    _ => return false,
                }
            }
        });
        assert!(
            !matches!(result, Ok(true)),
            "rml now handles interleaving; reconsider using it"
        );
    }

    #[test]
    fn declared_length_over_limit_is_rejected_before_allocation() {
        let limits = ReaderLimits {
            max_message_len: 1000,
            ..ReaderLimits::default()
        };
        let mut r = ChunkReader::new(limits);
        let b = [0x07, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        let e = read_all(&mut r, &b).unwrap_err();
        assert!(e.is_limit(), "{e}");
        assert_eq!(r.partial_bytes(), 0);
    }

    #[test]
    fn huge_chunk_size_is_clamped_and_allocates_nothing() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        r.set_chunk_size(0x7FFF_FFFF).unwrap();
        assert_eq!(r.chunk_size(), 0xFF_FFFF);
        assert!(r.set_chunk_size(0).is_err());
        // A 1 MB message declared, 10 bytes sent: only 10 bytes held.
        let mut b = vec![0x07, 0, 0, 0, 0x10, 0, 0, 9, 1, 0, 0, 0];
        b.extend([1; 10]);
        assert!(read_all(&mut r, &b).unwrap().is_empty());
        assert_eq!(r.partial_bytes(), 10);
        assert!(r.streams[&7].buf.capacity() <= 64 * 1024);
    }

    #[test]
    fn too_many_chunk_streams() {
        let limits = ReaderLimits {
            max_chunk_streams: 3,
            ..ReaderLimits::default()
        };
        let mut r = ChunkReader::new(limits);
        let mut b = Vec::new();
        for csid in 3..10u8 {
            b.extend([csid, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0]);
        }
        assert!(read_all(&mut r, &b).unwrap_err().is_limit());
    }

    #[test]
    fn partial_bytes_limit() {
        let limits = ReaderLimits {
            max_partial_bytes: 300,
            ..ReaderLimits::default()
        };
        let mut r = ChunkReader::new(limits);
        let mut b = Vec::new();
        for csid in 3..6u8 {
            b.extend([csid, 0, 0, 0, 0, 1, 0, 8, 1, 0, 0, 0]);
            b.extend([0; 128]);
        }
        assert!(read_all(&mut r, &b).unwrap_err().is_limit());
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        assert!(read_all(&mut r, &[0x43, 0, 0, 0, 0, 0, 1, 8])
            .unwrap_err()
            .is_protocol());
        let mut r = ChunkReader::new(ReaderLimits::default());
        assert!(read_all(&mut r, &[0xc3]).unwrap_err().is_protocol());
        // fmt 0 in the middle of a split message
        let mut r = ChunkReader::new(ReaderLimits::default());
        let mut b = vec![0x03, 0, 0, 0, 0, 1, 0, 8, 1, 0, 0, 0];
        b.extend([0; 128]);
        b.extend([0x03, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0]);
        assert!(read_all(&mut r, &b).unwrap_err().is_protocol());
    }

    #[test]
    fn abort_drops_partial_message() {
        let mut r = ChunkReader::new(ReaderLimits::default());
        let mut b = vec![0x07, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0];
        b.extend([0; 128]);
        assert!(read_all(&mut r, &b).unwrap().is_empty());
        assert_eq!(r.partial_bytes(), 128);
        r.abort(7);
        assert_eq!(r.partial_bytes(), 0);
        let b = [0x07, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0x17];
        assert_eq!(read_all(&mut r, &b).unwrap().len(), 1);
    }
}
