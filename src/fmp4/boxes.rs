//! Writing ISO BMFF boxes into a byte buffer: a box is opened, filled and closed, and its size
//! is patched in when it closes, so nested boxes need no size arithmetic by hand.

/// A buffer that boxes are written into.
///
/// Contract: every [`open`](Self::open) / [`open_full`](Self::open_full) is matched by one
/// [`close`](Self::close) of the returned [`Open`], innermost first. A box that outgrows 4 GiB
/// cannot be written with a 32-bit size and is refused by `close` (the callers here write
/// headers of at most a few MiB; `mdat` sizes are written by [`mdat_header`]).
#[derive(Debug, Default)]
pub struct BoxWriter {
    buf: Vec<u8>,
}

/// A box that is open: where its size field is.
#[derive(Debug)]
#[must_use = "an open box must be closed"]
pub struct Open(usize);

impl BoxWriter {
    pub fn new() -> BoxWriter {
        BoxWriter::default()
    }

    pub fn with_capacity(n: usize) -> BoxWriter {
        BoxWriter {
            buf: Vec::with_capacity(n),
        }
    }

    /// Opens a plain box.
    pub fn open(&mut self, kind: &[u8; 4]) -> Open {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
        Open(at)
    }

    /// Opens a full box (version and 24-bit flags after the type).
    pub fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> Open {
        let b = self.open(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        b
    }

    /// Closes a box: writes its size.
    ///
    /// # Panics
    /// If the box is larger than a 32-bit size can say (no caller here comes near it).
    pub fn close(&mut self, b: Open) {
        let size = u32::try_from(self.buf.len() - b.0).expect("box under 4 GiB");
        self.buf[b.0..b.0 + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Overwrites a big-endian u32 written earlier at `at` (a field whose value is known only
    /// later, such as a `trun` data offset).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// The header of an `mdat` box holding `payload` bytes: 8 bytes, or 16 with a 64-bit size
/// when the box would not fit a 32-bit one.
pub fn mdat_header(payload: u64) -> Vec<u8> {
    match u32::try_from(payload + 8) {
        Ok(size) => {
            let mut h = size.to_be_bytes().to_vec();
            h.extend_from_slice(b"mdat");
            h
        }
        Err(_) => {
            let mut h = 1u32.to_be_bytes().to_vec();
            h.extend_from_slice(b"mdat");
            h.extend_from_slice(&(payload + 16).to_be_bytes());
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_boxes_get_their_sizes() {
        let mut w = BoxWriter::new();
        let outer = w.open(b"moov");
        let inner = w.open_full(b"mvhd", 1, 0x000102);
        w.u32(7);
        w.close(inner);
        w.close(outer);
        let b = w.into_vec();
        assert_eq!(&b[..8], &[0, 0, 0, 24, b'm', b'o', b'o', b'v']);
        assert_eq!(&b[8..16], &[0, 0, 0, 16, b'm', b'v', b'h', b'd']);
        assert_eq!(&b[16..20], &[1, 0, 1, 2]);
        assert_eq!(&b[20..], &[0, 0, 0, 7]);
    }

    #[test]
    fn mdat_takes_a_large_size_past_4_gib() {
        assert_eq!(mdat_header(10), [0, 0, 0, 18, b'm', b'd', b'a', b't']);
        let big = mdat_header(u64::from(u32::MAX));
        assert_eq!(big.len(), 16);
        assert_eq!(&big[..8], &[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        assert_eq!(
            u64::from_be_bytes(big[8..].try_into().unwrap()),
            u64::from(u32::MAX) + 16
        );
    }
}
