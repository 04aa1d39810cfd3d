//! Media as the hub and players see it: [`Frame`]s whose payload is an FLV tag body stored once
//! in a stream's pages, the parsers that classify those bodies, the codec configuration records
//! (H.264 `avcC` with SPS, AAC AudioSpecificConfig) and the builders that write FLV bodies and
//! `onMetaData` into a [`StreamWriter`](crate::pages::StreamWriter).
//!
//! Everything here is pure: no I/O, no clocks, no async. Every parser takes bytes and returns a
//! [`MediaError`] on garbage, never panics. Protocol framing (RTMP chunks, MP4 boxes) lives with
//! the protocol; this module only knows tag bodies.

mod aac;
mod avc;
mod bits;
mod flv;
mod meta;

pub use aac::{AudioSpecificConfig, SAMPLE_RATES};
pub use avc::{AvcDecoderConfig, Sps, NAL_PPS, NAL_SPS};
pub use flv::{aac_body, aac_sequence_header, avc_sequence_header, video_body, AAC_TAG_HEADER};
pub use meta::{is_on_metadata, metadata_body, strip_set_data_frame, StreamMetadata};

use crate::pages::Message;

/// Errors from parsing tag bodies and codec configurations. They describe the input, never a
/// bug: a peer that sends one gets its connection closed, nobody else notices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("{what}: truncated, needs {need} bytes, has {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{what}: {detail}")]
    Invalid {
        what: &'static str,
        detail: &'static str,
    },
    #[error("onMetaData: AMF0 serialisation failed: {0}")]
    Amf0(String),
}

/// Which RTMP message type a frame travels as (8 audio, 9 video, 18 data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    Data,
}

/// A codec, as named by an FLV tag body header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 (FLV codec id 7, or enhanced-RTMP `avc1`).
    Avc,
    /// H.265 (codec id 12 as used by some Chinese servers, or enhanced-RTMP `hvc1`).
    Hevc,
    /// Enhanced-RTMP `av01`.
    Av1,
    /// Enhanced-RTMP `vp09`.
    Vp9,
    /// Any other FLV video codec id (2 Sorenson, 4 VP6, ...).
    OtherVideo(u8),
    /// AAC (sound format 10).
    Aac,
    /// MP3 (sound format 2).
    Mp3,
    /// G.711 A-law (7).
    G711A,
    /// G.711 µ-law (8).
    G711U,
    /// Speex (11).
    Speex,
    /// Any other FLV sound format.
    OtherAudio(u8),
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::Avc => f.write_str("h264"),
            Codec::Hevc => f.write_str("h265"),
            Codec::Av1 => f.write_str("av1"),
            Codec::Vp9 => f.write_str("vp9"),
            Codec::OtherVideo(id) => write!(f, "flv-video-{id}"),
            Codec::Aac => f.write_str("aac"),
            Codec::Mp3 => f.write_str("mp3"),
            Codec::G711A => f.write_str("pcma"),
            Codec::G711U => f.write_str("pcmu"),
            Codec::Speex => f.write_str("speex"),
            Codec::OtherAudio(id) => write!(f, "flv-audio-{id}"),
        }
    }
}

/// What the header of an FLV tag body says about it (see [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TagInfo {
    /// `None` for data tags.
    pub codec: Option<Codec>,
    /// A video key frame (FLV frame type 1) that is not a sequence header.
    pub keyframe: bool,
    /// An AVC/HEVC decoder configuration or an AAC AudioSpecificConfig.
    pub sequence_header: bool,
    /// Nothing references this frame: FLV frame type 3, or an H.264 slice with `nal_ref_idc` 0.
    pub disposable: bool,
    /// pts − dts in ms (AVC/HEVC only; 0 otherwise).
    pub composition_time: i32,
}

/// Classifies an FLV tag body from its header bytes (and, for H.264, the NAL headers).
///
/// An empty body, or a video/AAC body too short for its fixed header, is an error. A NAL walk
/// that runs off the end is not: the frame is then simply not disposable.
pub fn classify(kind: MediaKind, body: &[u8]) -> Result<TagInfo, MediaError> {
    classify_with(kind, body.len(), |i| body.get(i).copied())
}

/// [`classify`] over a payload that may span several pages. Allocates only when it does.
pub fn classify_message(kind: MediaKind, payload: &Message) -> Result<TagInfo, MediaError> {
    let mut slices = payload.slices();
    let first = slices.next().unwrap_or(&[]);
    match slices.next() {
        None => classify(kind, first),
        Some(second) => {
            let parts: Vec<&[u8]> = [first, second].into_iter().chain(slices).collect();
            classify_slices(kind, &parts)
        }
    }
}

/// [`classify`] over a body split into consecutive parts (e.g. the pages of a message).
pub fn classify_slices(kind: MediaKind, parts: &[&[u8]]) -> Result<TagInfo, MediaError> {
    let len = parts.iter().map(|p| p.len()).sum();
    classify_with(kind, len, |mut i| {
        for p in parts {
            if i < p.len() {
                return Some(p[i]);
            }
            i -= p.len();
        }
        None
    })
}

fn classify_with(
    kind: MediaKind,
    len: usize,
    byte: impl Fn(usize) -> Option<u8>,
) -> Result<TagInfo, MediaError> {
    let need = |what: &'static str, n: usize| -> Result<(), MediaError> {
        if len < n {
            Err(MediaError::Truncated {
                what,
                need: n,
                have: len,
            })
        } else {
            Ok(())
        }
    };
    match kind {
        MediaKind::Data => Ok(TagInfo::default()),
        MediaKind::Audio => {
            need("FLV audio tag body", 1)?;
            let b0 = byte(0).unwrap_or(0);
            let codec = match b0 >> 4 {
                10 => Codec::Aac,
                2 | 14 => Codec::Mp3,
                7 => Codec::G711A,
                8 => Codec::G711U,
                11 => Codec::Speex,
                other => Codec::OtherAudio(other),
            };
            let mut info = TagInfo {
                codec: Some(codec),
                ..TagInfo::default()
            };
            if codec == Codec::Aac {
                need("FLV AAC tag body", 2)?;
                info.sequence_header = byte(1) == Some(0);
            }
            Ok(info)
        }
        MediaKind::Video => {
            need("FLV video tag body", 1)?;
            let b0 = byte(0).unwrap_or(0);
            if b0 & 0x80 != 0 {
                // Enhanced RTMP: [1 | frame type:3 | packet type:4] [fourcc:4] ...
                need("enhanced-RTMP video tag body", 5)?;
                let frame_type = (b0 >> 4) & 0x07;
                let packet_type = b0 & 0x0f;
                let fourcc = [byte(1), byte(2), byte(3), byte(4)].map(|b| b.unwrap_or(0));
                let codec = match &fourcc {
                    b"avc1" => Codec::Avc,
                    b"hvc1" => Codec::Hevc,
                    b"av01" => Codec::Av1,
                    b"vp09" => Codec::Vp9,
                    _ => Codec::OtherVideo(0x80),
                };
                let sequence_header = packet_type == 0;
                return Ok(TagInfo {
                    codec: Some(codec),
                    keyframe: frame_type == 1 && !sequence_header,
                    sequence_header,
                    disposable: frame_type == 3 || frame_type == 5,
                    composition_time: 0,
                });
            }
            let frame_type = b0 >> 4;
            let codec = match b0 & 0x0f {
                7 => Codec::Avc,
                12 => Codec::Hevc,
                other => Codec::OtherVideo(other),
            };
            let mut info = TagInfo {
                codec: Some(codec),
                keyframe: frame_type == 1,
                disposable: frame_type == 3 || frame_type == 5,
                ..TagInfo::default()
            };
            if matches!(codec, Codec::Avc | Codec::Hevc) {
                need("FLV AVC tag body", 5)?;
                let packet_type = byte(1).unwrap_or(0);
                let cts = [byte(2), byte(3), byte(4)].map(|b| b.unwrap_or(0));
                // Sign-extend the 24-bit composition time.
                info.composition_time =
                    i32::from_be_bytes([cts[0], cts[0], cts[1], cts[2]]) << 8 >> 8;
                match packet_type {
                    0 => {
                        info.sequence_header = true;
                        info.keyframe = false;
                        info.composition_time = 0;
                    }
                    1 if codec == Codec::Avc && !info.disposable => {
                        info.disposable = first_slice_is_unreferenced(len, &byte);
                    }
                    1 => {}
                    _ => info.keyframe = false, // end of sequence
                }
            }
            Ok(info)
        }
    }
}

/// Walks 4-byte-length-prefixed NAL units from offset 5 to the first coded slice (type 1..=5)
/// and reports whether its `nal_ref_idc` is 0. Gives up (false) on a malformed walk.
fn first_slice_is_unreferenced(len: usize, byte: &impl Fn(usize) -> Option<u8>) -> bool {
    let mut pos = 5usize;
    for _ in 0..64 {
        let Some(l) = (0..4).try_fold(0u32, |acc, i| {
            byte(pos + i).map(|b| (acc << 8) | u32::from(b))
        }) else {
            return false;
        };
        let Some(header) = byte(pos + 4) else {
            return false;
        };
        if (1..=5).contains(&(header & 0x1f)) {
            return header & 0x60 == 0;
        }
        pos = match pos.checked_add(4).and_then(|p| p.checked_add(l as usize)) {
            Some(p) if p < len => p,
            _ => return false,
        };
    }
    false
}

/// A unit of media on its way from a source to players.
///
/// `payload` is the FLV tag body exactly as players receive it; cloning a frame clones a
/// reference to its pages, never the bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: MediaKind,
    /// Decode timestamp in ms on the RTMP clock; wraps at 2^32.
    pub timestamp: u32,
    pub keyframe: bool,
    pub sequence_header: bool,
    pub disposable: bool,
    pub payload: Message,
    /// Where the frame sits in its stream: the payload bytes pushed to the stream before it.
    /// Set by the hub when the frame is pushed (0 until then). In paged storage a frame keeps
    /// its pages, and so its neighbours' bytes, alive: a player queue holding frames from
    /// `a.position` to `b.position` pins about that many bytes, whatever it dropped between.
    pub position: u64,
}

impl Frame {
    /// Builds a frame from a tag body, filling the flags with [`classify_message`].
    pub fn from_tag_body(
        kind: MediaKind,
        timestamp: u32,
        payload: Message,
    ) -> Result<Frame, MediaError> {
        let info = classify_message(kind, &payload)?;
        Ok(Frame {
            kind,
            timestamp,
            keyframe: info.keyframe,
            sequence_header: info.sequence_header,
            disposable: info.disposable,
            payload,
            position: 0,
        })
    }

    /// The codec named by the payload header (`None` for data frames or an empty payload).
    pub fn codec(&self) -> Option<Codec> {
        classify_message(self.kind, &self.payload)
            .ok()
            .and_then(|i| i.codec)
    }

    /// Width and height from an H.264 sequence header (legacy FLV or enhanced-RTMP `avc1`: the
    /// record starts 5 bytes into the tag body in both); `None` for other frames, other codecs
    /// or bad headers.
    pub fn avc_picture_size(&self) -> Option<(u32, u32)> {
        if !self.sequence_header || self.codec() != Some(Codec::Avc) {
            return None;
        }
        let body = self.payload.to_vec();
        let sps = AvcDecoderConfig::parse(body.get(5..)?)
            .ok()?
            .parsed_sps()
            .ok()?;
        Some((sps.width, sps.height))
    }

    /// Sample rate and channels from an AAC sequence header (the AudioSpecificConfig follows
    /// the 2-byte tag header); `None` for other frames, other codecs or bad headers.
    pub fn aac_format(&self) -> Option<(u32, u8)> {
        if !self.sequence_header || self.codec() != Some(Codec::Aac) {
            return None;
        }
        let body = self.payload.to_vec();
        let asc = AudioSpecificConfig::parse(body.get(2..)?).ok()?;
        Some((asc.sample_rate, asc.channels))
    }

    /// True for a data frame carrying `onMetaData` (whose 13-byte AMF0 name may span pages).
    pub fn is_metadata(&self) -> bool {
        self.kind == MediaKind::Data
            && is_on_metadata(
                &self
                    .payload
                    .slices()
                    .flatten()
                    .take(13)
                    .copied()
                    .collect::<Vec<u8>>(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::{PagePool, PoolConfig};

    fn body(bytes: &[u8]) -> TagInfo {
        classify(MediaKind::Video, bytes).unwrap()
    }

    #[test]
    fn avc_headers() {
        let seq = body(&[0x17, 0, 0, 0, 0, 1, 2, 3]);
        assert!(seq.sequence_header && !seq.keyframe && !seq.disposable);
        let key = body(&[0x17, 1, 0, 0, 0x28, 0, 0, 0, 1, 0x65]);
        assert!(key.keyframe && !key.sequence_header);
        assert_eq!(key.composition_time, 40);
        let neg = body(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        assert_eq!(neg.composition_time, -40);
        assert!(!neg.disposable && !neg.keyframe);
        assert!(
            body(&[0x37, 1, 0, 0, 0]).disposable,
            "FLV disposable inter frame"
        );
    }

    #[test]
    fn h264_nal_ref_idc_zero_after_aud_and_sei_is_disposable() {
        // AUD (type 9), SEI (type 6), then a non-reference P slice (0x01 = ref_idc 0, type 1).
        let mut b = vec![0x27, 1, 0, 0, 0];
        b.extend_from_slice(&[0, 0, 0, 2, 0x09, 0xf0]);
        b.extend_from_slice(&[0, 0, 0, 2, 0x06, 0x05]);
        b.extend_from_slice(&[0, 0, 0, 3, 0x01, 0x9a, 0x00]);
        assert!(body(&b).disposable);
        let last = b.len() - 3;
        b[last] = 0x21; // ref_idc 1
        assert!(!body(&b).disposable);
    }

    #[test]
    fn audio_headers() {
        let seq = classify(MediaKind::Audio, &[0xaf, 0, 0x11, 0x90]).unwrap();
        assert!(seq.sequence_header);
        assert_eq!(seq.codec, Some(Codec::Aac));
        let raw = classify(MediaKind::Audio, &[0xaf, 1, 0x21]).unwrap();
        assert!(!raw.sequence_header && !raw.keyframe);
        assert_eq!(
            classify(MediaKind::Audio, &[0xb2, 0x00]).unwrap().codec,
            Some(Codec::Speex)
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_a_frame_never_a_panic() {
        let mut b = vec![0x17, 1, 0, 0, 0];
        b.extend_from_slice(&[0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
        for split in 0..b.len() {
            let r = classify(MediaKind::Video, &b[..split]);
            assert_eq!(r.is_err(), split < 5, "split at {split}");
        }
        assert!(classify(MediaKind::Audio, &[]).is_err());
        assert!(classify(MediaKind::Audio, &[0xaf]).is_err());
        assert!(classify(MediaKind::Video, &[0x9f, b'h', b'v']).is_err());
    }

    #[test]
    fn classify_is_the_same_at_every_page_split() {
        let mut b = vec![0x27, 1, 0, 0, 0x50];
        b.extend_from_slice(&[
            0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x06, 0x05, 0, 0, 0, 2, 0x01, 0x9a,
        ]);
        let whole = classify(MediaKind::Video, &b).unwrap();
        assert!(whole.disposable);
        for a in 0..=b.len() {
            for c in a..=b.len() {
                let parts = [&b[..a], &b[a..c], &b[c..]];
                assert_eq!(
                    classify_slices(MediaKind::Video, &parts).unwrap(),
                    whole,
                    "split at {a}, {c}"
                );
            }
        }
    }

    #[test]
    fn frame_from_pages() {
        let pool = PagePool::new(PoolConfig::default());
        let mut w = pool.writer("t", 1 << 20);
        let msg = w
            .write(&[&[0x17, 1, 0, 0, 0], &[0, 0, 0, 1], &[0x65]])
            .unwrap();
        let f = Frame::from_tag_body(MediaKind::Video, 7, msg).unwrap();
        assert!(f.keyframe && !f.sequence_header && !f.disposable);
        assert_eq!(f.codec(), Some(Codec::Avc));
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(data: Vec<u8>) {
            for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
                let _ = classify(kind, &data);
            }
        }
    }
}
