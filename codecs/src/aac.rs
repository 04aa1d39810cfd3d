//! AAC-LC encoding over `fdk-aac` 0.8 (Fraunhofer FDK AAC, vendored and statically linked;
//! Fraunhofer's licence applies to the binary: see the README).
//!
//! Output is raw AAC frames (no ADTS), one per 1024 input samples per channel, plus the
//! AudioSpecificConfig: what an FLV AAC sequence header and AAC raw tags carry.
//!
//! Push/pull contract: between two calls to [`AacEncoder::push`] (or before
//! [`AacEncoder::flush`]), call [`AacEncoder::pull`] until it returns `None`.
//!
//! Bounds: fewer than 1024 samples per channel wait for the next push; queued frames are
//! `input samples / 1024` of one push (plus the encoder's delay at flush). Inside libfdk-aac:
//! a fixed state of a few hundred KiB, allocated at `new` and freed on drop.
//!
//! Caveats of the wrapper, handled here: no end-of-stream flush (libfdk's `numInSamples = -1`
//! cannot be passed), so [`AacEncoder::flush`] feeds silence until every real sample has been
//! encoded; `Encoder::encode` takes `&self` while the handle is `Sync`, which would let two
//! threads encode at once: this module only calls it through `&mut self`.

use std::collections::VecDeque;

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use thiserror::Error;

/// Samples per channel in one AAC-LC frame.
pub const FRAME_SAMPLES: usize = 1024;
/// Largest raw AAC-LC frame: 6144 bits per channel (ISO/IEC 14496-3 4.5.3.2), two channels.
const MAX_FRAME_BYTES: usize = 2 * 6144 / 8;

/// Errors from libfdk-aac.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AacError {
    /// The configuration was refused (rate, channels or bitrate).
    #[error("AAC encoder configuration refused: {0}")]
    Config(String),
    /// Encoding failed; the encoder should be dropped and re-created.
    #[error("AAC encoding failed: {0}")]
    Encode(String),
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo, interleaved input).
    pub channels: u8,
    /// Constant bitrate, bits per second for all channels.
    pub bitrate: u32,
}

/// An AAC-LC encoder producing raw frames.
pub struct AacEncoder {
    encoder: Encoder,
    config: AacConfig,
    asc: Vec<u8>,
    delay: usize,
    pending: Vec<i16>,
    out_buf: Vec<u8>,
    frames: VecDeque<Vec<u8>>,
    /// Real (not flush-padding) samples per channel pushed so far.
    samples_in: u64,
    /// Frames produced so far.
    frames_out: u64,
}

impl std::fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacEncoder")
            .field("config", &self.config)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl AacEncoder {
    /// Opens an AAC-LC CBR encoder.
    pub fn new(config: AacConfig) -> Result<AacEncoder, AacError> {
        let channels = match config.channels {
            1 => ChannelMode::Mono,
            2 => ChannelMode::Stereo,
            n => return Err(AacError::Config(format!("{n} channels"))),
        };
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(config.bitrate),
            sample_rate: config.sample_rate,
            transport: Transport::Raw,
            channels,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| AacError::Config(e.to_string()))?;
        let info = encoder
            .info()
            .map_err(|e| AacError::Config(e.to_string()))?;
        if info.frameLength as usize != FRAME_SAMPLES {
            return Err(AacError::Config(format!(
                "frame length {}",
                info.frameLength
            )));
        }
        let conf_len = (info.confSize as usize).min(info.confBuf.len());
        Ok(AacEncoder {
            encoder,
            config,
            asc: info.confBuf[..conf_len].to_vec(),
            delay: info.nDelay as usize,
            pending: Vec::with_capacity(FRAME_SAMPLES * usize::from(config.channels)),
            out_buf: vec![0; MAX_FRAME_BYTES.max(info.maxOutBufBytes as usize)],
            frames: VecDeque::new(),
            samples_in: 0,
            frames_out: 0,
        })
    }

    /// The AudioSpecificConfig (2 bytes for AAC-LC at a standard rate).
    pub fn audio_specific_config(&self) -> &[u8] {
        &self.asc
    }

    /// The encoder's delay in samples per channel: decoding frame `k` (without an edit list,
    /// as FLV players do) yields input sample `k * 1024 - delay` first.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// The configuration this encoder was opened with.
    pub fn config(&self) -> AacConfig {
        self.config
    }

    /// Frames produced so far (the index of the next frame).
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Encodes interleaved `pcm`; complete frames become available from [`Self::pull`].
    pub fn push(&mut self, pcm: &[i16]) -> Result<(), AacError> {
        let ch = usize::from(self.config.channels);
        self.samples_in += (pcm.len() / ch) as u64;
        self.encode(pcm)
    }

    /// The next encoded frame, if any.
    pub fn pull(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// Feeds silence until every real sample pushed so far (and the encoder's delay) has come
    /// out as frames. The padding becomes part of the stream, so call this at its end.
    pub fn flush(&mut self) -> Result<(), AacError> {
        let needed_frames = (self.samples_in + self.delay as u64).div_ceil(FRAME_SAMPLES as u64);
        let ch = usize::from(self.config.channels);
        let zeros = vec![0i16; FRAME_SAMPLES * ch];
        // Each round is one frame of input; fdk emits one frame per frame in, after its delay.
        let mut rounds = 0;
        while self.frames_out < needed_frames && rounds < 8 + self.delay / FRAME_SAMPLES {
            self.encode(&zeros)?;
            rounds += 1;
        }
        Ok(())
    }

    fn encode(&mut self, pcm: &[i16]) -> Result<(), AacError> {
        let frame = FRAME_SAMPLES * usize::from(self.config.channels);
        let mut pcm = pcm;
        loop {
            // Assemble one whole frame of input in `pending`.
            let take = (frame - self.pending.len()).min(pcm.len());
            self.pending.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.pending.len() < frame {
                return Ok(());
            }
            let mut offset = 0;
            while offset < frame {
                let info = self
                    .encoder
                    .encode(&self.pending[offset..], &mut self.out_buf)
                    .map_err(|e| AacError::Encode(e.to_string()))?;
                if info.output_size > 0 {
                    let n = info.output_size.min(self.out_buf.len());
                    self.frames.push_back(self.out_buf[..n].to_vec());
                    self.frames_out += 1;
                }
                if info.input_consumed == 0 {
                    if info.output_size == 0 {
                        return Err(AacError::Encode("encoder made no progress".into()));
                    }
                } else {
                    offset += info.input_consumed;
                }
            }
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sample_rate: u32, channels: u8) -> AacConfig {
        AacConfig {
            sample_rate,
            channels,
            bitrate: 64_000 * u32::from(channels),
        }
    }

    #[test]
    fn audio_specific_config_is_lc_at_the_rate() {
        // object type 2, rate index 3 (48 kHz) / 4 (44.1 kHz), channel configuration.
        assert_eq!(
            AacEncoder::new(cfg(48000, 1))
                .unwrap()
                .audio_specific_config(),
            [0x11, 0x88]
        );
        assert_eq!(
            AacEncoder::new(cfg(48000, 2))
                .unwrap()
                .audio_specific_config(),
            [0x11, 0x90]
        );
        assert_eq!(
            AacEncoder::new(cfg(44100, 1))
                .unwrap()
                .audio_specific_config(),
            [0x12, 0x08]
        );
        assert!(AacEncoder::new(cfg(48000, 3)).is_err());
    }

    #[test]
    fn one_frame_per_1024_samples_and_flush_drains_the_tail() {
        let mut e = AacEncoder::new(cfg(48000, 1)).unwrap();
        let pcm: Vec<i16> = (0..48000)
            .map(|i| (8000.0 * (i as f32 * 0.1309).sin()) as i16)
            .collect();
        let mut frames = Vec::new();
        for chunk in pcm.chunks(441) {
            e.push(chunk).unwrap();
            while let Some(f) = e.pull() {
                assert!(!f.is_empty() && f.len() <= MAX_FRAME_BYTES);
                frames.push(f);
            }
        }
        let before = frames.len();
        e.flush().unwrap();
        while let Some(f) = e.pull() {
            frames.push(f);
        }
        let delay = e.delay();
        assert!(delay > 0 && delay < 4096, "delay {delay}");
        assert_eq!(
            frames.len(),
            (48000 + delay).div_ceil(1024),
            "before flush: {before}"
        );
        assert!(before < frames.len());
    }
}
