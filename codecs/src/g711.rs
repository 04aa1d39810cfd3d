//! G.711 (ITU-T G.711) A-law and µ-law decoding: pure Rust, one 256-entry table per law, built
//! at compile time from the segment/quantisation rule of the Recommendation.
//!
//! Output samples are 16-bit linear PCM, the 13-bit (A-law) and 14-bit (µ-law) G.711 values
//! left-justified as in the ITU-T G.191 reference code: A-law spans ±32256, µ-law ±32124.
//! There is no framing in G.711, so the only malformed input is a packet that ends inside an
//! interleaved multi-channel sample; those trailing bytes are dropped and reported.

use thiserror::Error;

/// Which companding law the bytes use (`PCMA` = A-law, `PCMU` = µ-law).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// A-law (RTP payload type 8, FLV sound format 7).
    A,
    /// µ-law (RTP payload type 0, FLV sound format 8).
    Mu,
}

/// A packet that could not be decoded in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum G711Error {
    /// The packet was empty.
    #[error("empty G.711 packet")]
    Empty,
    /// The packet ended inside an interleaved sample; the whole samples before were decoded.
    #[error("G.711 packet of {len} bytes is not a whole number of {channels}-channel samples")]
    Truncated {
        /// Packet length in bytes.
        len: usize,
        /// Channels per interleaved sample.
        channels: u8,
    },
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mantissa = ((a & 0x0f) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        s => (mantissa + 0x108) << (s - 1),
    };
    // Sign bit set means positive in A-law.
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn ulaw_to_linear(code: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !code;
    let segment = ((u & 0x70) >> 4) as i32;
    let magnitude = ((((u & 0x0f) as i32) << 3) + BIAS) << segment;
    // Sign bit set means negative in µ-law (after inversion).
    if u & 0x80 != 0 {
        (BIAS - magnitude) as i16
    } else {
        (magnitude - BIAS) as i16
    }
}

const fn build(law: Law) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match law {
            Law::A => alaw_to_linear(i as u8),
            Law::Mu => ulaw_to_linear(i as u8),
        };
        i += 1;
    }
    table
}

/// A-law code → linear sample.
pub static ALAW_TABLE: [i16; 256] = build(Law::A);
/// µ-law code → linear sample.
pub static ULAW_TABLE: [i16; 256] = build(Law::Mu);

/// A stateless G.711 decoder for one law and channel count.
///
/// Holds no buffers: the caller's output `Vec` grows by exactly one `i16` per input byte.
#[derive(Debug, Clone, Copy)]
pub struct G711Decoder {
    table: &'static [i16; 256],
    channels: u8,
}

impl G711Decoder {
    /// A decoder for `law` with `channels` interleaved channels (at least 1).
    pub fn new(law: Law, channels: u8) -> G711Decoder {
        G711Decoder {
            table: match law {
                Law::A => &ALAW_TABLE,
                Law::Mu => &ULAW_TABLE,
            },
            channels: channels.max(1),
        }
    }

    /// Decodes `packet`, appending interleaved samples to `out`.
    ///
    /// On [`G711Error::Truncated`] every whole sample before the cut has been appended.
    pub fn decode(&self, packet: &[u8], out: &mut Vec<i16>) -> Result<(), G711Error> {
        if packet.is_empty() {
            return Err(G711Error::Empty);
        }
        let whole = packet.len() - packet.len() % usize::from(self.channels);
        out.extend(packet[..whole].iter().map(|&b| self.table[usize::from(b)]));
        if whole == packet.len() {
            Ok(())
        } else {
            Err(G711Error::Truncated {
                len: packet.len(),
                channels: self.channels,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Encoders written independently from ITU-T G.191 `g711.c` (alaw_compress /
    // ulaw_compress), working on 16-bit input: every code must survive decode → encode.
    fn alaw_compress(linear: i16) -> u8 {
        let mut ix: i32 = if linear < 0 {
            (!i32::from(linear)) >> 4
        } else {
            i32::from(linear) >> 4
        };
        if ix > 15 {
            let mut iexp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            ix -= 16;
            ix += iexp << 4;
        }
        if linear >= 0 {
            ix |= 0x80;
        }
        (ix ^ 0x55) as u8
    }

    fn ulaw_compress(linear: i16) -> u8 {
        let absno: i32 = if linear < 0 {
            ((!i32::from(linear)) >> 2) + 33
        } else {
            (i32::from(linear) >> 2) + 33
        };
        let absno = absno.min(0x1fff);
        let mut i = absno >> 6;
        let mut segno = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high_nibble = 0x8 - segno;
        let low_nibble = 0xf - ((absno >> segno) & 0xf);
        let mut code = (high_nibble << 4) | low_nibble;
        if linear >= 0 {
            code |= 0x80;
        }
        code as u8
    }

    #[test]
    fn alaw_reference_values() {
        // G.191 alaw_expand output (13 bits) shifted left by 3.
        assert_eq!(ALAW_TABLE[0xd5], 8);
        assert_eq!(ALAW_TABLE[0x55], -8);
        assert_eq!(ALAW_TABLE[0xaa], 32256);
        assert_eq!(ALAW_TABLE[0x2a], -32256);
        assert_eq!(ALAW_TABLE[0xd4], 24);
        assert_eq!(ALAW_TABLE[0xc5], 264); // first code of segment 1
        assert_eq!(ALAW_TABLE[0xf5], 528); // first code of segment 2
        for code in 0..=255u8 {
            assert_eq!(
                alaw_compress(ALAW_TABLE[usize::from(code)]),
                code,
                "{code:#x}"
            );
        }
    }

    #[test]
    fn ulaw_reference_values() {
        assert_eq!(ULAW_TABLE[0xff], 0);
        assert_eq!(ULAW_TABLE[0x7f], 0);
        assert_eq!(ULAW_TABLE[0xfe], 8);
        assert_eq!(ULAW_TABLE[0x7e], -8);
        assert_eq!(ULAW_TABLE[0x80], 32124);
        assert_eq!(ULAW_TABLE[0x00], -32124);
        assert_eq!(ULAW_TABLE[0xef], 132); // first code of segment 1
        for code in 0..=255u8 {
            if code == 0x7f {
                continue; // µ-law has two zeros; 0 encodes as 0xff.
            }
            assert_eq!(
                ulaw_compress(ULAW_TABLE[usize::from(code)]),
                code,
                "{code:#x}"
            );
        }
    }

    #[test]
    fn tables_are_odd_symmetric_and_monotonic() {
        for code in 0..128usize {
            assert_eq!(ALAW_TABLE[code], -ALAW_TABLE[code | 0x80]);
            assert_eq!(ULAW_TABLE[code], -ULAW_TABLE[code | 0x80]);
        }
        // Ordering by magnitude: in µ-law 0xff is the smallest positive, 0x80 the largest.
        for code in 0x80..0xffusize {
            assert!(ULAW_TABLE[code] > ULAW_TABLE[code + 1]);
        }
    }

    #[test]
    fn truncated_stereo_packet_keeps_whole_samples() {
        let d = G711Decoder::new(Law::A, 2);
        let mut out = Vec::new();
        assert_eq!(
            d.decode(&[0xd5, 0x55, 0xd5], &mut out),
            Err(G711Error::Truncated {
                len: 3,
                channels: 2
            })
        );
        assert_eq!(out, vec![8, -8]);
        assert_eq!(d.decode(&[], &mut out), Err(G711Error::Empty));
        assert_eq!(out.len(), 2);
    }
}
