//! Speex decoding over `speex-safe` (libspeex 1.2.1, vendored and statically linked).
//!
//! One packet holds one or more Speex frames (FLV: one tag body after its 1-byte audio header;
//! Flash sends one 20 ms wideband frame per tag, but several are legal). Frames are decoded
//! until libspeex reports the end of the packet (fewer than 5 bits left, or the terminator
//! code 15 that `speex_bits_insert_terminator` writes as padding).
//!
//! Loss and corruption: a packet that is empty, too large, or whose first frame is corrupt is
//! replaced by one frame of silence and reported as an error; a corrupt frame after good ones
//! ends the packet (the good frames are kept). libspeex's packet-loss concealment needs a null
//! `SpeexBits` pointer, which `speex-safe` cannot pass, hence silence rather than concealment.
//! Gaps between packets are the caller's to detect from timestamps (see `transcode`).
//!
//! Threading: [`SpeexDecoder`] is neither `Send` nor `Sync` (it owns libspeex's raw decoder
//! state through `speex-safe`). Create it on the thread that uses it.
//!
//! Bounds: a packet is at most [`MAX_PACKET_BYTES`] (libspeex's own bit-buffer size; larger
//! would make libspeex print a notice and grow its buffer) and yields at most
//! [`MAX_FRAMES_PER_PACKET`] frames, so one `decode` appends at most
//! `MAX_FRAMES_PER_PACKET * frame_size` samples. The decoder keeps one 2000-byte scratch copy.
//!
//! Caveat: libspeex was built by `speex-sys` without `DISABLE_NOTIFICATIONS`, so a corrupt
//! frame makes libspeex itself write "notification: Invalid mode encountered..." to stderr.

use speex_safe::{DynamicDecoder, ModeId, SpeexBits};
use thiserror::Error;

/// Largest accepted packet, in bytes (libspeex allocates 2000 bytes for its bit buffer).
pub const MAX_PACKET_BYTES: usize = 2000;
/// Most frames decoded from one packet (1 s of audio at 20 ms per frame).
pub const MAX_FRAMES_PER_PACKET: usize = 50;

/// Speex bands. FLV Speex is always wideband (16 kHz), whatever the tag's rate bits say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    /// 8 kHz, 160 samples per frame.
    Narrow,
    /// 16 kHz, 320 samples per frame.
    Wide,
    /// 32 kHz, 640 samples per frame.
    UltraWide,
}

impl Band {
    /// The band decoding at `sample_rate` (8000, 16000 or 32000).
    pub fn from_sample_rate(sample_rate: u32) -> Option<Band> {
        match sample_rate {
            8000 => Some(Band::Narrow),
            16000 => Some(Band::Wide),
            32000 => Some(Band::UltraWide),
            _ => None,
        }
    }

    /// Output sample rate in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            Band::Narrow => 8000,
            Band::Wide => 16000,
            Band::UltraWide => 32000,
        }
    }

    /// Samples per frame.
    pub fn frame_size(self) -> usize {
        match self {
            Band::Narrow => 160,
            Band::Wide => 320,
            Band::UltraWide => 640,
        }
    }
}

/// Why (part of) a packet was not decoded. Every variant is recoverable: the decoder stays
/// usable, and the output holds what could be decoded (or one frame of silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SpeexError {
    /// The packet was empty.
    #[error("empty Speex packet")]
    Empty,
    /// The packet exceeded [`MAX_PACKET_BYTES`].
    #[error("Speex packet of {len} bytes exceeds {MAX_PACKET_BYTES}")]
    TooLarge {
        /// Packet length in bytes.
        len: usize,
    },
    /// libspeex reported a corrupt stream after `frames_decoded` good frames.
    #[error("corrupt Speex frame after {frames_decoded} good frames")]
    Corrupt {
        /// Frames decoded (and kept) before the corrupt one.
        frames_decoded: usize,
    },
    /// The packet held no frame at all (only padding or a terminator).
    #[error("Speex packet holds no frame")]
    NoFrame,
    /// More than [`MAX_FRAMES_PER_PACKET`] frames; the first ones were kept.
    #[error("Speex packet holds more than {MAX_FRAMES_PER_PACKET} frames")]
    TooManyFrames,
}

/// A Speex decoder for one band, mono. Not `Send`: see the module documentation.
pub struct SpeexDecoder {
    decoder: DynamicDecoder,
    bits: SpeexBits<'static>,
    band: Band,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for SpeexDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeexDecoder")
            .field("band", &self.band)
            .finish_non_exhaustive()
    }
}

impl SpeexDecoder {
    /// A decoder for `band`, with libspeex's perceptual enhancer on (its default).
    pub fn new(band: Band) -> SpeexDecoder {
        let decoder = DynamicDecoder::new(match band {
            Band::Narrow => ModeId::NarrowBand,
            Band::Wide => ModeId::WideBand,
            Band::UltraWide => ModeId::UltraWideBand,
        });
        SpeexDecoder {
            decoder,
            bits: SpeexBits::new(),
            band,
            scratch: Vec::with_capacity(MAX_PACKET_BYTES),
        }
    }

    /// The band this decoder was made for.
    pub fn band(&self) -> Band {
        self.band
    }

    /// Decodes every frame of `packet`, appending mono samples to `out`; returns the number of
    /// frames appended (on error, including the frame of silence if one was substituted).
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, SpeexError> {
        let frame_size = self.band.frame_size();
        let silence = |out: &mut Vec<i16>| out.resize(out.len() + frame_size, 0);
        if packet.is_empty() {
            silence(out);
            return Err(SpeexError::Empty);
        }
        if packet.len() > MAX_PACKET_BYTES {
            silence(out);
            return Err(SpeexError::TooLarge { len: packet.len() });
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(packet);
        self.bits.read_from(&mut self.scratch);

        let mut frames = 0;
        loop {
            if frames == MAX_FRAMES_PER_PACKET {
                return Err(SpeexError::TooManyFrames);
            }
            let start = out.len();
            out.resize(start + frame_size, 0);
            // speex-safe's `decode_int` panics only on a return value outside {0, -1, -2};
            // libspeex 1.2.1's nb/sb decoders return only those (the in-band handlers it
            // installs return 0), so this cannot panic.
            match self.decoder.decode_int(&mut self.bits, &mut out[start..]) {
                Ok(()) => frames += 1,
                Err(e) => {
                    out.truncate(start);
                    return match (is_end_of_stream(&e), frames) {
                        (true, 0) => {
                            silence(out);
                            Err(SpeexError::NoFrame)
                        }
                        (true, n) => Ok(n),
                        (false, 0) => {
                            silence(out);
                            Err(SpeexError::Corrupt { frames_decoded: 0 })
                        }
                        (false, n) => Err(SpeexError::Corrupt { frames_decoded: n }),
                    };
                }
            }
        }
    }
}

/// Whether a `speex-safe` decode error is `DecoderError::EndOfStream`.
///
/// speex-safe 0.6 does not export `DecoderError` (its module is `pub(crate)`), so the variant
/// cannot be named: this compares its derived `Debug` text, without allocating.
fn is_end_of_stream(e: &impl std::fmt::Debug) -> bool {
    struct Matches<'a> {
        rest: &'a str,
        ok: bool,
    }
    impl std::fmt::Write for Matches<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match self.rest.strip_prefix(s) {
                Some(rest) => self.rest = rest,
                None => self.ok = false,
            }
            Ok(())
        }
    }
    let mut m = Matches {
        rest: "EndOfStream",
        ok: true,
    };
    let _ = std::fmt::write(&mut m, format_args!("{e:?}"));
    m.ok && m.rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use speex_safe::{DynamicEncoder, SpeexBits};

    /// `frames` wideband frames of a 1 kHz tone, `per_packet` frames per packet.
    fn encode_tone(band: Band, frames: usize, per_packet: usize) -> Vec<Vec<u8>> {
        let mut enc = DynamicEncoder::new(match band {
            Band::Narrow => ModeId::NarrowBand,
            Band::Wide => ModeId::WideBand,
            Band::UltraWide => ModeId::UltraWideBand,
        });
        let n = band.frame_size();
        let rate = band.sample_rate() as f32;
        let mut packets = Vec::new();
        let mut bits = SpeexBits::new();
        for f in 0..frames {
            let mut pcm: Vec<i16> = (0..n)
                .map(|i| {
                    let t = (f * n + i) as f32 / rate;
                    (8000.0 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin()) as i16
                })
                .collect();
            enc.encode_int(&mut pcm, &mut bits);
            if (f + 1) % per_packet == 0 {
                bits.insert_terminator();
                let mut buf = vec![0u8; 2000];
                let len = bits.write(&mut buf) as usize;
                buf.truncate(len);
                packets.push(buf);
                bits.reset();
            }
        }
        packets
    }

    #[test]
    fn decodes_each_band_one_and_several_frames_per_packet() {
        for band in [Band::Narrow, Band::Wide, Band::UltraWide] {
            for per_packet in [1, 3] {
                let packets = encode_tone(band, 30, per_packet);
                let mut dec = SpeexDecoder::new(band);
                let mut out = Vec::new();
                for p in &packets {
                    assert_eq!(dec.decode(p, &mut out), Ok(per_packet), "{band:?}");
                }
                assert_eq!(out.len(), 30 * band.frame_size());
                let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
                assert!(peak > 2000, "{band:?} decoded a tone of peak {peak}");
            }
        }
    }

    #[test]
    fn wideband_decoder_takes_narrowband_packets() {
        let packets = encode_tone(Band::Narrow, 10, 1);
        let mut dec = SpeexDecoder::new(Band::Wide);
        let mut out = Vec::new();
        for p in &packets {
            assert_eq!(dec.decode(p, &mut out), Ok(1));
        }
        assert_eq!(out.len(), 10 * 320);
    }

    #[test]
    fn malformed_packets_give_silence_and_errors_never_panics() {
        let mut dec = SpeexDecoder::new(Band::Wide);
        let mut out = Vec::new();
        assert_eq!(dec.decode(&[], &mut out), Err(SpeexError::Empty));
        assert_eq!(out.len(), 320);
        assert_eq!(
            dec.decode(&[0; MAX_PACKET_BYTES + 1], &mut out),
            Err(SpeexError::TooLarge {
                len: MAX_PACKET_BYTES + 1
            })
        );
        // Narrowband mode 15 (terminator) right away: no frame.
        out.clear();
        assert_eq!(
            dec.decode(&[0b0111_1111], &mut out),
            Err(SpeexError::NoFrame)
        );
        assert_eq!(out, vec![0; 320]);
        // Narrowband mode 12: invalid.
        out.clear();
        assert_eq!(
            dec.decode(&[0b0110_0000, 0, 0, 0], &mut out),
            Err(SpeexError::Corrupt { frames_decoded: 0 })
        );
        assert_eq!(out.len(), 320);
        // A good frame then garbage: the good frame is kept.
        let good = encode_tone(Band::Wide, 1, 1).remove(0);
        let mut glued = good.clone();
        glued.truncate(glued.len() - 1);
        glued.extend_from_slice(&[0xff; 8]);
        out.clear();
        let r = dec.decode(&glued, &mut out);
        assert!(
            r.is_ok() || matches!(r, Err(SpeexError::Corrupt { .. })),
            "{r:?}"
        );
        // Pseudo-random garbage of every length: no panic, bounded output.
        let mut x = 0x1234_5678u32;
        for len in 1..400 {
            let p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            out.clear();
            let _ = dec.decode(&p, &mut out);
            assert!(out.len() <= MAX_FRAMES_PER_PACKET * 320);
            assert_eq!(out.len() % 320, 0);
        }
    }

    #[test]
    fn end_of_stream_matcher() {
        #[derive(Debug)]
        enum E {
            EndOfStream,
            EndOfStreamX,
            CorruptStream,
        }
        assert!(is_end_of_stream(&E::EndOfStream));
        assert!(!is_end_of_stream(&E::EndOfStreamX));
        assert!(!is_end_of_stream(&E::CorruptStream));
    }
}
