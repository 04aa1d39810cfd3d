//! Speex / G.711 → AAC-LC: decode, resample, encode, and timestamp the AAC frames.
//!
//! # Timestamps
//! AAC frame timestamps come from sample counts, anchored at input timestamps. The first
//! packet anchors the timeline; each later packet's timestamp is compared with where the
//! samples say it should be (`drift`):
//! - `|drift| < JITTER_MS` (30 ms): jitter, ignored;
//! - `JITTER_MS <= drift <= RESYNC_MS` (100 ms): lost audio, filled with silence
//!   (`samples_filled`);
//! - `-RESYNC_MS <= drift <= -JITTER_MS`: overlapping audio, that many samples are dropped
//!   from the start of the packet (`samples_dropped`);
//! - `|drift| > RESYNC_MS`: a discontinuity: the packet re-anchors the timeline (`resyncs`);
//!   audio stays continuous, timestamps jump with the input's.
//!
//! Frame `k` is stamped with the time of its first decoded sample: the encoder's delay
//! (`AacEncoder::delay`) is subtracted, so audio stays in sync with video when played without
//! an edit list, as FLV is; the first frames of a stream starting at 0 saturate at 0.
//!
//! # Threading
//! [`AudioTranscoder`] is not `Send` (the Speex decoder inside is not): create it on the
//! thread that runs it, from the `Copy + Send` [`InputFormat`] and [`OutputConfig`]; see the
//! example on [`AudioTranscoder`].
//!
//! # Bounds
//! A packet is at most [`MAX_PACKET_BYTES`] (G.711: 2 s at 8 kHz mono) or 2000 bytes (Speex,
//! at most 50 frames); at most [`MAX_QUEUED_FRAMES`] AAC frames wait for `pull` (more only if
//! the caller breaks the contract: the oldest are then dropped and counted); PCM scratch is
//! reused and sized by the largest packet; anchors at most [`MAX_ANCHORS`].

use std::collections::VecDeque;

use thiserror::Error;

use crate::aac::{AacConfig, AacEncoder, AacError, FRAME_SAMPLES};
use crate::g711::{G711Decoder, G711Error, Law};
use crate::resample::{ResampleError, Resampler};
use crate::speex::{Band, SpeexDecoder, SpeexError};

/// Differences between a packet's timestamp and the sample count below this are jitter.
pub const JITTER_MS: i64 = 30;
/// Differences above this re-anchor the timeline instead of filling or dropping.
pub const RESYNC_MS: i64 = 100;
/// Largest accepted G.711 packet in bytes.
pub const MAX_PACKET_BYTES: usize = 16 * 1024;
/// Most AAC frames held for `pull` (about 2.7 s at 48 kHz).
pub const MAX_QUEUED_FRAMES: usize = 128;
/// Most timestamp anchors held (only needed while their samples are inside the pipeline).
pub const MAX_ANCHORS: usize = 16;

/// Input codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCodec {
    /// Speex (FLV sound format 11): mono; 16 kHz wideband in FLV, 8 or 32 kHz also accepted.
    Speex,
    /// G.711 A-law (FLV sound format 7, RTP PCMA).
    Pcma,
    /// G.711 µ-law (FLV sound format 8, RTP PCMU).
    Pcmu,
}

/// What the packets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFormat {
    /// Codec.
    pub codec: InputCodec,
    /// Sample rate in Hz. Speex: 8000, 16000 (FLV) or 32000. G.711: usually 8000; 4000..=48000.
    pub sample_rate: u32,
    /// Channels: Speex 1; G.711 1 or 2 (interleaved bytes).
    pub channels: u8,
}

impl InputFormat {
    /// FLV Speex: always 16 kHz wideband mono, whatever the tag header's rate bits say.
    pub const FLV_SPEEX: InputFormat = InputFormat {
        codec: InputCodec::Speex,
        sample_rate: 16000,
        channels: 1,
    };
}

/// What to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputConfig {
    /// 44100 or 48000.
    pub sample_rate: u32,
    /// AAC-LC constant bitrate in bits per second, all channels (16000..=320000).
    pub bitrate: u32,
}

impl Default for OutputConfig {
    /// 48 kHz, 64 kbit/s per channel (set for mono; use 128000 for stereo G.711).
    ///
    /// 48 kHz rather than 44.1: every input rate (8, 16, 32 kHz) divides it, so resampling is
    /// by an integer factor (a short polyphase filter, no fractional phase) and one
    /// millisecond is exactly 48 samples, so sample counts map to timestamps without rounding
    /// drift; every AAC player takes 48 kHz (the FLV tag header says "44 kHz" for AAC
    /// regardless: players read the rate from the AudioSpecificConfig).
    fn default() -> OutputConfig {
        OutputConfig {
            sample_rate: 48000,
            bitrate: 64_000,
        }
    }
}

/// One raw AAC-LC frame (1024 samples per channel) for an FLV AAC raw tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFrame {
    /// The raw frame, no ADTS header.
    pub data: Vec<u8>,
    /// Presentation time of its first sample, in the input's milliseconds.
    pub timestamp_ms: u64,
}

/// Counters, monotonically increasing over the transcoder's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscoderStats {
    /// Packets given to `push`.
    pub packets_in: u64,
    /// Packets that were (partly) undecodable: corrupt, empty, truncated, too large.
    pub decode_errors: u64,
    /// AAC frames returned by `pull`.
    pub frames_out: u64,
    /// Decoded input samples (per channel) dropped because their timestamps overlapped.
    pub samples_dropped: u64,
    /// Silence samples (per channel, at the input rate) inserted for gaps and bad packets.
    pub samples_filled: u64,
    /// Times the timeline was re-anchored on a jump of more than `RESYNC_MS`.
    pub resyncs: u64,
    /// AAC frames dropped because `pull` was not called (contract broken).
    pub frames_dropped: u64,
}

/// Why a transcoder could not be created or a packet not transcoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TranscodeError {
    /// `new` was given a format it cannot handle.
    #[error("unsupported audio format: {0}")]
    Unsupported(String),
    /// A bad Speex packet; counted, replaced by silence where the module says so.
    #[error(transparent)]
    Speex(#[from] SpeexError),
    /// A bad G.711 packet; counted, whole samples kept.
    #[error(transparent)]
    G711(#[from] G711Error),
    /// A G.711 packet above [`MAX_PACKET_BYTES`]; counted, ignored.
    #[error("G.711 packet of {0} bytes exceeds {MAX_PACKET_BYTES}")]
    TooLarge(usize),
    /// libfdk-aac failed: drop this transcoder and create another.
    #[error(transparent)]
    Encoder(#[from] AacError),
}

impl TranscodeError {
    /// Whether the transcoder is still usable: true for every bad-packet error, false when the
    /// encoder failed (or for `new`'s `Unsupported`).
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            TranscodeError::Speex(_) | TranscodeError::G711(_) | TranscodeError::TooLarge(_)
        )
    }
}

enum Decoder {
    Speex(SpeexDecoder),
    G711(G711Decoder),
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// Input sample (per channel) this anchor stamps.
    sample: u64,
    ts_ms: u64,
}

/// Maps sample positions to milliseconds, piecewise from anchors.
struct Timeline {
    in_rate: i128,
    out_rate: i128,
    /// Encoder delay in output samples.
    delay: i128,
    anchors: VecDeque<Anchor>,
    /// Input samples (per channel) fed into the pipeline so far.
    samples: u64,
}

impl Timeline {
    /// Where the next input sample should be, in ms, once anchored.
    fn expected_ms(&self) -> Option<i64> {
        let a = self.anchors.back()?;
        let elapsed = i128::from(self.samples - a.sample) * 1000 / self.in_rate;
        Some((i128::from(a.ts_ms) + elapsed) as i64)
    }

    fn anchor(&mut self, ts_ms: u64) {
        if self.anchors.len() == MAX_ANCHORS {
            self.anchors.pop_front();
        }
        self.anchors.push_back(Anchor {
            sample: self.samples,
            ts_ms,
        });
    }

    /// Timestamp of AAC frame `k`, and forget anchors it has passed.
    fn frame_ms(&mut self, k: u64) -> u64 {
        // Frame start in output samples, scaled by in_rate to compare with input positions
        // scaled by out_rate (exact integers).
        let pos = (i128::from(k) * FRAME_SAMPLES as i128 - self.delay) * self.in_rate;
        while self.anchors.len() > 1 && i128::from(self.anchors[1].sample) * self.out_rate <= pos {
            self.anchors.pop_front();
        }
        let Some(a) = self.anchors.front() else {
            return 0;
        };
        let den = self.in_rate * self.out_rate;
        let num = (pos - i128::from(a.sample) * self.out_rate) * 1000;
        let ms = i128::from(a.ts_ms) + (num + den / 2).div_euclid(den);
        ms.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// Speex / G.711 packets in, timestamped raw AAC-LC frames out.
///
/// Contract: between any two calls to [`push`](Self::push) (and after
/// [`finish`](Self::finish)), call [`pull`](Self::pull) until it returns `None`.
///
/// Not `Send`: build it on the thread that runs it, e.g.
/// ```
/// use codecs::transcode::{AudioTranscoder, InputFormat, OutputConfig};
/// let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, u64)>(64);
/// let worker = std::thread::spawn(move || {
///     let mut t = AudioTranscoder::new(InputFormat::FLV_SPEEX, OutputConfig::default())?;
///     let _asc = t.audio_specific_config(); // for the FLV AAC sequence header
///     for (packet, ts) in rx {
///         let _ = t.push(&packet, ts); // bad packets: counted, survived
///         while let Some(frame) = t.pull() { /* send frame.data at frame.timestamp_ms */ }
///     }
///     Ok::<_, codecs::transcode::TranscodeError>(t.stats())
/// });
/// drop(tx);
/// worker.join().unwrap().unwrap();
/// ```
pub struct AudioTranscoder {
    input: InputFormat,
    output: OutputConfig,
    decoder: Decoder,
    resampler: Resampler,
    encoder: AacEncoder,
    timeline: Timeline,
    frames: VecDeque<AacFrame>,
    stats: TranscoderStats,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    /// Index of the next AAC frame from the encoder.
    next_frame: u64,
}

impl std::fmt::Debug for AudioTranscoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioTranscoder")
            .field("input", &self.input)
            .field("output", &self.output)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AudioTranscoder {
    /// A transcoder from `input` to AAC-LC per `output`, with as many channels as the input.
    pub fn new(input: InputFormat, output: OutputConfig) -> Result<Self, TranscodeError> {
        let unsupported = |what: &str| Err(TranscodeError::Unsupported(what.to_owned()));
        if !matches!(output.sample_rate, 44100 | 48000) {
            return unsupported("output sample rate must be 44100 or 48000");
        }
        if !(16_000..=320_000).contains(&output.bitrate) {
            return unsupported("output bitrate must be 16000..=320000");
        }
        let decoder = match input.codec {
            InputCodec::Speex => {
                if input.channels != 1 {
                    return unsupported("Speex is mono");
                }
                match Band::from_sample_rate(input.sample_rate) {
                    Some(band) => Decoder::Speex(SpeexDecoder::new(band)),
                    None => return unsupported("Speex rate must be 8000, 16000 or 32000"),
                }
            }
            InputCodec::Pcma | InputCodec::Pcmu => {
                if !(1..=2).contains(&input.channels) {
                    return unsupported("G.711 channels must be 1 or 2");
                }
                if !(4000..=48000).contains(&input.sample_rate) {
                    return unsupported("G.711 rate must be 4000..=48000");
                }
                let law = if input.codec == InputCodec::Pcma {
                    Law::A
                } else {
                    Law::Mu
                };
                Decoder::G711(G711Decoder::new(law, input.channels))
            }
        };
        let resampler = Resampler::new(input.channels, input.sample_rate, output.sample_rate)
            .map_err(|e: ResampleError| TranscodeError::Unsupported(e.to_string()))?;
        let encoder = AacEncoder::new(AacConfig {
            sample_rate: output.sample_rate,
            channels: input.channels,
            bitrate: output.bitrate,
        })
        .map_err(|e| TranscodeError::Unsupported(e.to_string()))?;
        let timeline = Timeline {
            in_rate: i128::from(input.sample_rate),
            out_rate: i128::from(output.sample_rate),
            delay: encoder.delay() as i128,
            anchors: VecDeque::with_capacity(MAX_ANCHORS),
            samples: 0,
        };
        Ok(AudioTranscoder {
            input,
            output,
            decoder,
            resampler,
            encoder,
            timeline,
            frames: VecDeque::new(),
            stats: TranscoderStats::default(),
            pcm: Vec::new(),
            resampled: Vec::new(),
            next_frame: 0,
        })
    }

    /// The AudioSpecificConfig for the FLV AAC sequence header (2 bytes).
    pub fn audio_specific_config(&self) -> Vec<u8> {
        self.encoder.audio_specific_config().to_vec()
    }

    /// Output channels (the input's).
    pub fn channels(&self) -> u8 {
        self.input.channels
    }

    /// Output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.output.sample_rate
    }

    /// Counters so far.
    pub fn stats(&self) -> TranscoderStats {
        self.stats
    }

    /// Transcodes one packet (an FLV audio tag body after its 1-byte header, or an RTP
    /// payload) stamped `timestamp_ms`. Then call [`pull`](Self::pull) until `None`.
    ///
    /// A bad packet returns an error with [`TranscodeError::is_recoverable`] true: it has
    /// been counted in `decode_errors`, whatever could be decoded was kept (Speex: silence in
    /// its place), and the transcoder goes on. Only an encoder failure is fatal.
    pub fn push(&mut self, packet: &[u8], timestamp_ms: u64) -> Result<(), TranscodeError> {
        self.stats.packets_in += 1;
        if matches!(self.decoder, Decoder::G711(_)) && packet.len() > MAX_PACKET_BYTES {
            self.stats.decode_errors += 1;
            return Err(TranscodeError::TooLarge(packet.len()));
        }

        let ch = usize::from(self.input.channels);
        let in_rate = u64::from(self.input.sample_rate);
        self.pcm.clear();
        // Timeline: anchor, fill a gap, or mark an overlap to drop.
        let mut drop_samples = 0u64;
        match self.timeline.expected_ms() {
            None => self.timeline.anchor(timestamp_ms),
            Some(expected) => {
                let drift = (timestamp_ms as i64).saturating_sub(expected);
                if drift.abs() > RESYNC_MS {
                    self.timeline.anchor(timestamp_ms);
                    self.stats.resyncs += 1;
                } else if drift >= JITTER_MS {
                    let fill = drift as u64 * in_rate / 1000;
                    self.pcm.resize(fill as usize * ch, 0);
                    self.stats.samples_filled += fill;
                } else if drift <= -JITTER_MS {
                    drop_samples = drift.unsigned_abs() * in_rate / 1000;
                }
            }
        }
        let filled = self.pcm.len();

        let decoded = match &mut self.decoder {
            Decoder::Speex(d) => d.decode(packet, &mut self.pcm).map(drop).map_err(|e| {
                if matches!(
                    e,
                    SpeexError::Corrupt { frames_decoded: 0 }
                        | SpeexError::Empty
                        | SpeexError::NoFrame
                        | SpeexError::TooLarge { .. }
                ) {
                    // One frame of silence was substituted.
                    self.stats.samples_filled += Band::from_sample_rate(self.input.sample_rate)
                        .map_or(0, |b| b.frame_size() as u64);
                }
                TranscodeError::from(e)
            }),
            Decoder::G711(d) => d
                .decode(packet, &mut self.pcm)
                .map_err(TranscodeError::from),
        };
        if decoded.is_err() {
            self.stats.decode_errors += 1;
        }

        // Drop the overlapping start of this packet's samples.
        let new = (self.pcm.len() - filled) / ch;
        let dropped = drop_samples.min(new as u64) as usize;
        if dropped > 0 {
            self.pcm.drain(filled..filled + dropped * ch);
            self.stats.samples_dropped += dropped as u64;
        }

        self.timeline.samples += (self.pcm.len() / ch) as u64;
        self.resampled.clear();
        self.resampler.process(&self.pcm, &mut self.resampled);
        self.encoder.push(&self.resampled)?;
        self.collect();
        decoded
    }

    /// The next AAC frame, in order, if any.
    pub fn pull(&mut self) -> Option<AacFrame> {
        let f = self.frames.pop_front()?;
        self.stats.frames_out += 1;
        Some(f)
    }

    /// End of stream: pushes the resampler's and encoder's tails out as frames (padded with
    /// silence to a whole frame). Then call [`pull`](Self::pull) until `None`. Pushing more
    /// afterwards works, but the padding has become part of the audio.
    pub fn finish(&mut self) -> Result<(), TranscodeError> {
        self.resampled.clear();
        self.resampler.flush(&mut self.resampled);
        // Only the part of the flush that carries real samples counts; the encoder's flush
        // adds what it needs on top.
        self.encoder.push(&self.resampled)?;
        self.encoder.flush()?;
        self.collect();
        Ok(())
    }

    fn collect(&mut self) {
        while let Some(data) = self.encoder.pull() {
            let k = self.next_frame;
            let timestamp_ms = self.timeline.frame_ms(k);
            if self.frames.len() == MAX_QUEUED_FRAMES {
                self.frames.pop_front();
                self.stats.frames_dropped += 1;
            }
            self.frames.push_back(AacFrame { data, timestamp_ms });
            self.next_frame += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCMA: InputFormat = InputFormat {
        codec: InputCodec::Pcma,
        sample_rate: 8000,
        channels: 1,
    };

    /// 20 ms of A-law 1 kHz-ish tone (the pattern does not matter for timing).
    fn packet() -> Vec<u8> {
        (0..160).map(|i| [0xd5, 0xa5, 0x2a, 0xa5][i % 4]).collect()
    }

    fn drain(t: &mut AudioTranscoder, into: &mut Vec<AacFrame>) {
        while let Some(f) = t.pull() {
            into.push(f);
        }
    }

    #[test]
    fn rejects_unsupported_formats() {
        let out = OutputConfig::default();
        let bad = [
            InputFormat {
                channels: 2,
                ..InputFormat::FLV_SPEEX
            },
            InputFormat {
                sample_rate: 11025,
                ..InputFormat::FLV_SPEEX
            },
            InputFormat {
                channels: 3,
                ..PCMA
            },
            InputFormat {
                sample_rate: 1000,
                ..PCMA
            },
        ];
        for input in bad {
            assert!(AudioTranscoder::new(input, out).is_err(), "{input:?}");
        }
        assert!(AudioTranscoder::new(
            PCMA,
            OutputConfig {
                sample_rate: 32000,
                ..out
            }
        )
        .is_err());
        assert!(AudioTranscoder::new(
            PCMA,
            OutputConfig {
                bitrate: 1000,
                ..out
            }
        )
        .is_err());
        let t = AudioTranscoder::new(PCMA, out).unwrap();
        assert_eq!(t.audio_specific_config(), vec![0x11, 0x88]);
    }

    #[test]
    fn timestamps_follow_sample_counts_minus_encoder_delay() {
        let mut t = AudioTranscoder::new(PCMA, OutputConfig::default()).unwrap();
        let delay = t.encoder.delay() as f64;
        let mut frames = Vec::new();
        for i in 0..250u64 {
            // ±10 ms of jitter is absorbed.
            let jitter = [0, 10, 0, 0, 7][i as usize % 5];
            t.push(&packet(), 5000 + i * 20 + jitter).unwrap();
            drain(&mut t, &mut frames);
        }
        assert!(frames.len() >= 230);
        for (k, f) in frames.iter().enumerate() {
            let expect = 5000.0 + (k as f64 * 1024.0 - delay) / 48.0;
            assert!(
                (f.timestamp_ms as f64 - expect).abs() <= 0.5,
                "frame {k}: {}",
                f.timestamp_ms
            );
        }
        let s = t.stats();
        assert_eq!((s.packets_in, s.decode_errors, s.resyncs), (250, 0, 0));
        assert_eq!((s.samples_filled, s.samples_dropped), (0, 0));
        assert_eq!(s.frames_out, frames.len() as u64);
    }

    #[test]
    fn stream_starting_at_zero_saturates_the_priming_frames() {
        let mut t = AudioTranscoder::new(PCMA, OutputConfig::default()).unwrap();
        let mut frames = Vec::new();
        for i in 0..50u64 {
            t.push(&packet(), i * 20).unwrap();
            drain(&mut t, &mut frames);
        }
        assert_eq!(frames[0].timestamp_ms, 0);
        assert!(frames
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
    }

    #[test]
    fn small_gap_is_filled_small_overlap_dropped_big_jump_resyncs() {
        let mut t = AudioTranscoder::new(PCMA, OutputConfig::default()).unwrap();
        let mut frames = Vec::new();
        let mut ts = 0;
        let push = |t: &mut AudioTranscoder, ts: u64, frames: &mut Vec<AacFrame>| {
            t.push(&packet(), ts).unwrap();
            drain(t, frames);
        };
        for _ in 0..50 {
            push(&mut t, ts, &mut frames);
            ts += 20;
        }
        // Two packets lost: 40 ms gap, filled.
        ts += 40;
        push(&mut t, ts, &mut frames);
        ts += 20;
        assert_eq!(t.stats().samples_filled, 320);
        // A packet 40 ms behind the sample count overlaps entirely: dropped.
        push(&mut t, ts - 40, &mut frames);
        assert_eq!(
            t.stats().samples_dropped,
            160,
            "all of the packet (160) overlapped"
        );
        for _ in 0..50 {
            push(&mut t, ts, &mut frames);
            ts += 20;
        }
        assert_eq!(t.stats().resyncs, 0);
        let before = frames.len();
        // Publisher jumps ahead by 10 s.
        ts += 10_000;
        for _ in 0..100 {
            push(&mut t, ts, &mut frames);
            ts += 20;
        }
        let s = t.stats();
        assert_eq!(s.resyncs, 1);
        assert_eq!(s.samples_filled, 320);
        // Steps between consecutive frames: 21.33 ms, except one of about 10 s.
        let steps: Vec<u64> = frames[before - 5..]
            .windows(2)
            .map(|w| w[1].timestamp_ms - w[0].timestamp_ms)
            .collect();
        assert_eq!(steps.iter().filter(|&&d| d > 1000).count(), 1, "{steps:?}");
        assert!(steps
            .iter()
            .all(|&d| (21..=22).contains(&d) || (10_000..10_030).contains(&d)));
    }

    #[test]
    fn unpulled_frames_are_bounded_and_counted() {
        let mut t = AudioTranscoder::new(PCMA, OutputConfig::default()).unwrap();
        for i in 0..1000u64 {
            t.push(&packet(), i * 20).unwrap();
        }
        assert_eq!(t.frames.len(), MAX_QUEUED_FRAMES);
        assert!(t.stats().frames_dropped > 0);
    }

    #[test]
    fn bad_packets_are_counted_and_survived() {
        let mut t = AudioTranscoder::new(InputFormat::FLV_SPEEX, OutputConfig::default()).unwrap();
        let e = t.push(&[], 0).unwrap_err();
        assert!(e.is_recoverable());
        assert!(t.push(&[0x60, 0, 0, 0], 20).unwrap_err().is_recoverable());
        assert!(t.push(&vec![0; 3000], 40).unwrap_err().is_recoverable());
        assert_eq!(t.stats().decode_errors, 3);
        assert_eq!(t.stats().samples_filled, 3 * 320);

        let mut g = AudioTranscoder::new(
            InputFormat {
                channels: 2,
                ..PCMA
            },
            OutputConfig {
                bitrate: 128_000,
                ..OutputConfig::default()
            },
        )
        .unwrap();
        assert!(g.push(&[0xd5; 321], 0).unwrap_err().is_recoverable());
        assert!(g
            .push(&vec![0xd5; MAX_PACKET_BYTES + 1], 20)
            .unwrap_err()
            .is_recoverable());
        assert_eq!(g.stats().decode_errors, 2);
    }
}
