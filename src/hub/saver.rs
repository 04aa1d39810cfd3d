//! The frame saver (GOP cache): the frames a new player needs to start decoding at once.

use std::collections::VecDeque;

use crate::media::{Frame, MediaKind};

/// Bounds of a stream's frame saver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaverConfig {
    /// Bytes of payload the saver may hold. Default 16 MiB (a 2 s GOP at 60 Mbit/s). A GOP that
    /// outgrows it is dropped; new players then wait for the next keyframe.
    pub max_bytes: usize,
    /// Frames the saver may hold. Default 1500 (10 s of 60 fps video with 48 kHz AAC audio).
    pub max_frames: usize,
    /// Audio frames kept while the stream has no keyframe (audio-only streams, or video that
    /// has not sent one yet). Default 128 (about 2.7 s of 48 kHz AAC).
    pub audio_window_frames: usize,
}

impl Default for SaverConfig {
    fn default() -> Self {
        SaverConfig {
            max_bytes: 16 << 20,
            max_frames: 1500,
            audio_window_frames: 128,
        }
    }
}

/// Holds the frames since the last video keyframe (starting with it), or, with no keyframe, a
/// short window of audio. Sequence headers and metadata are not saved here; the hub keeps the
/// latest of each.
#[derive(Debug)]
pub(crate) struct FrameSaver {
    config: SaverConfig,
    frames: VecDeque<Frame>,
    bytes: usize,
    /// True while `frames` starts with a keyframe.
    gop: bool,
}

impl FrameSaver {
    pub(crate) fn new(config: SaverConfig) -> Self {
        FrameSaver {
            config,
            frames: VecDeque::new(),
            bytes: 0,
            gop: false,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.gop = false;
    }

    pub(crate) fn push(&mut self, frame: &Frame) {
        if frame.sequence_header || frame.kind == MediaKind::Data {
            return;
        }
        let len = frame.payload.len();
        if frame.kind == MediaKind::Video && frame.keyframe {
            self.clear();
            if len <= self.config.max_bytes && self.config.max_frames > 0 {
                self.gop = true;
                self.bytes = len;
                self.frames.push_back(frame.clone());
            }
            return;
        }
        if self.gop {
            if self.bytes + len > self.config.max_bytes
                || self.frames.len() >= self.config.max_frames
            {
                // The GOP outgrew its bounds: a partial GOP is useless to a new player.
                tracing::debug!(
                    frames = self.frames.len(),
                    bytes = self.bytes,
                    "frame saver: GOP over its bound, dropped"
                );
                self.clear();
            } else {
                self.bytes += len;
                self.frames.push_back(frame.clone());
                return;
            }
        }
        // No keyframe to start from: only a short window of audio is useful.
        if frame.kind == MediaKind::Audio {
            self.bytes += len;
            self.frames.push_back(frame.clone());
            while self.frames.len() > self.config.audio_window_frames.min(self.config.max_frames)
                || self.bytes > self.config.max_bytes
            {
                let Some(old) = self.frames.pop_front() else {
                    break;
                };
                self.bytes -= old.payload.len();
            }
        }
    }

    pub(crate) fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
