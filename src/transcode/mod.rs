//! Transcoding in the server: turns media players cannot use into media they can, off the
//! async reactor, behind bounded queues. The codecs themselves live in the `codecs` crate;
//! this module owns the threads, the queues, the policy (`[audio]` in the config) and the
//! status the HTTP API shows.
//!
//! Audio: a publisher's Speex or G.711 is decoded, resampled and encoded to AAC-LC on a
//! thread of its own per stream ([`AudioStage`]); the AAC frames come back to the stream's
//! ingest task, which writes them into the stream's pages like any other frame. If the
//! transcoder falls behind, input is dropped (counted and logged), never queued without bound.

mod audio;

pub use audio::{AudioStage, Offer, TranscodedAudio};
pub use codecs::{InputCodec, InputFormat};

use std::collections::BTreeMap;

use serde::Deserialize;

/// What to do with audio players cannot use (Speex, G.711).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioPolicy {
    /// Transcode it to AAC-LC (the default).
    #[default]
    Aac,
    /// Pass it through unchanged.
    Off,
}

/// The `[audio]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Default policy for every stream.
    pub transcode: AudioPolicy,
    /// AAC output sample rate: 48000 (default: every input rate, 8/16/32 kHz, divides it,
    /// so resampling is by an integer factor) or 44100.
    pub sample_rate: u32,
    /// AAC bit rate in bits/s, all channels (16000..=320000). Default 64000.
    pub bitrate: u32,
    /// Per-stream (publisher or camera name) overrides of `transcode`.
    pub streams: BTreeMap<String, AudioPolicy>,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            transcode: AudioPolicy::Aac,
            sample_rate: 48_000,
            bitrate: 64_000,
            streams: BTreeMap::new(),
        }
    }
}

impl AudioConfig {
    /// The policy for one stream.
    pub fn policy(&self, stream: &str) -> AudioPolicy {
        self.streams.get(stream).copied().unwrap_or(self.transcode)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.sample_rate, 44_100 | 48_000) {
            return Err(format!(
                "[audio] sample_rate = {} must be 44100 or 48000",
                self.sample_rate
            ));
        }
        if !(16_000..=320_000).contains(&self.bitrate) {
            return Err(format!(
                "[audio] bitrate = {} is outside 16000..=320000",
                self.bitrate
            ));
        }
        Ok(())
    }

    pub(crate) fn output(&self) -> codecs::OutputConfig {
        codecs::OutputConfig {
            sample_rate: self.sample_rate,
            bitrate: self.bitrate,
        }
    }
}
