//! H.264 video: decode (openh264), scale (safe Rust), encode (openh264), and JPEG snapshots
//! (`jpeg-encoder`), for renditions of a live stream and `GET /snapshot/{name}.jpg`.
//!
//! What lives here: NAL framing ([`avcc_to_annexb`], [`AvcConfig`]), [`Decoder`],
//! [`Scaler`], [`Encoder`], [`snapshot_jpeg`], and [`VideoTranscoder`], the pipeline the
//! server runs per rendition. What does not: FLV/RTMP parsing, threads, queues, logging.
//!
//! # Input and output
//! Input is what FLV/RTMP carries: an avcC record (the AVC sequence header) and access units
//! of length-prefixed NAL units (AVCC), each with a presentation time in milliseconds.
//! Output is the same shape: AVCC with 4-byte lengths and an avcC record built from the
//! SPS/PPS openh264 emits (SPS, PPS, AUD and SEI NAL units are taken out of the frames).
//! openh264 encodes constrained baseline (no B-frames), so output dts = pts.
//!
//! # Profiles
//! openh264's decoder is a baseline decoder that also takes main and high 8-bit 4:2:0
//! streams (CABAC, B-frames, 8x8 transforms): the three fixtures (baseline 640x360, main
//! 1280x720 with B-frames, high 640x360 with B-frames) decode to the same frames, in the
//! same order, as ffmpeg's (`tests/h264.rs`): bit-exact for baseline; for main and high,
//! some B-frames differ by 1..8 levels in a few pixels (at most 180 of 921600, above 75 dB
//! PSNR), an openh264 inexactness that is invisible but not zero. Streams with another chroma format or bit depth (High 10, 4:2:2,
//! 4:4:4) are refused with [`H264Error::Unsupported`] from the SPS, before openh264 sees
//! them. Interlaced (field) coding is not supported by openh264.
//!
//! # Presentation times
//! openh264 returns pictures in presentation order (it reorders B-frames itself, with a
//! delay of up to a few frames; main/high streams without B-frames are held one frame), but
//! the `openh264` crate gives no way to attach a timestamp to an input frame without
//! `unsafe`. So the [`Decoder`] keeps the presentation times of the access units it has been
//! given and not yet returned (at most [`MAX_PENDING_PTS`]) and stamps each returned picture
//! with the smallest: pictures come out in presentation order, so the k-th picture out has
//! the k-th smallest time in. openh264's reordering does not survive a decode error (it
//! then returns B-frame streams in decode order), so an error restarts openh264 with the
//! parameter sets it had (at most [`decoder::MAX_KEPT_PARAMETER_SETS`]) and clears the set:
//! the stream resumes at the next IDR, with the right times (`tests/h264.rs` checks every
//! picture and time after errors against a clean decode).
//!
//! # Bounds
//! - A picture is at most [`DecoderLimits`] (default 4096x2304, level 5.2): an SPS declaring
//!   more is refused before openh264 allocates anything ([`H264Error::TooLarge`]); a picture
//!   that comes out larger anyway is refused too.
//! - An access unit is at most [`MAX_ACCESS_UNIT_BYTES`] (8 MiB); an avcC record at most
//!   [`nal::MAX_CONFIG_BYTES`] (64 KiB).
//! - Encoder output is at most 3840x2160 (or 2160x3840), openh264's limit; [`fit_size`]
//!   never asks for more, nor for less than 16x16.
//! - Buffers, all reused between frames: the Annex B scratch (one access unit plus 4 bytes
//!   per NAL unit), the decoded picture (w × h × 1.5 bytes), the scaled picture
//!   (dst_w × dst_h × 1.5), the scaler's intermediate rows (src_w × dst_h × 1.5) and tables
//!   (see [`Scaler`]), the encoder's output (one frame), and [`RATE_WINDOW`]
//!   times. Inside openh264: its reference pictures and reorder buffer (at most 16
//!   pictures of the stream's size, which the SPS check bounds).
//! - Measured RSS (`tests/h264_churn.rs` and by hand): a decoder holds about 8 MiB for a
//!   640x360 stream and 21 MiB for 1280x720; an encoder 2.5 MiB at 640x360 and 5.5 MiB at
//!   1280x720. A [`VideoTranscoder`] is one of each; nothing grows with time.
//!
//! # Threading
//! Every type here is `Send` (the openh264 crate declares its handles `Send`, and they are
//! used only through `&mut self`). openh264 runs single-threaded inside each decoder and
//! encoder: one rendition costs one core at most.

use thiserror::Error;

pub mod decoder;
pub mod encoder;
pub mod jpeg;
pub mod nal;
pub mod scale;
pub mod sps;
pub mod transcode;

pub use decoder::{Decoder, DecoderLimits, MAX_ACCESS_UNIT_BYTES, MAX_PENDING_PTS};
pub use encoder::{Encoded, Encoder, EncoderConfig, MAX_ENCODE_HEIGHT, MAX_ENCODE_WIDTH};
pub use jpeg::{encode_jpeg, snapshot_jpeg, Snapshot};
pub use nal::{annexb_to_avcc, avcc_to_annexb, AvcConfig};
pub use scale::{fit_size, Scaler, MAX_TAPS, MIN_DIMENSION};
pub use transcode::{
    RenditionSpec, VideoInput, VideoOutput, VideoTranscoder, VideoTranscoderStats, RATE_WINDOW,
};

/// Why H.264 input could not be decoded, or video not encoded.
///
/// Match on the variant (or use [`H264Error::is_recoverable`]), never on the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum H264Error {
    /// The bitstream's framing is wrong: a NAL length, an avcC record, an SPS.
    #[error("malformed H.264: {0}")]
    Malformed(&'static str),
    /// A picture (declared by an SPS, or decoded) is larger than the limits.
    #[error("picture {width}x{height} exceeds the limit {max_width}x{max_height}")]
    TooLarge {
        /// Width of the picture.
        width: u64,
        /// Height of the picture.
        height: u64,
        /// The limit's width.
        max_width: u32,
        /// The limit's height.
        max_height: u32,
    },
    /// An access unit above [`MAX_ACCESS_UNIT_BYTES`].
    #[error("access unit of {0} bytes exceeds {MAX_ACCESS_UNIT_BYTES}")]
    AccessUnitTooLarge(usize),
    /// A stream or setting openh264 cannot handle (chroma format, bit depth, size).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// openh264's decoder refused the access unit.
    #[error("H.264 decoding failed: {0}")]
    Decode(String),
    /// openh264's encoder failed: drop the encoder (or transcoder) and create another.
    #[error("H.264 encoding failed: {0}")]
    Encode(String),
    /// The JPEG encoder failed.
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
    /// A snapshot's access unit produced no picture (not a keyframe, or no slice in it).
    #[error("no picture decoded")]
    NoPicture,
}

impl H264Error {
    /// Whether the decoder or transcoder that returned this can take more input: true for
    /// bad input (the stream recovers at the next IDR), false for an encoder failure or an
    /// unusable configuration.
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, H264Error::Encode(_) | H264Error::Unsupported(_))
    }
}

/// A picture in I420 (planar 4:2:0, 8-bit): tightly packed Y (w × h), then U and V
/// (⌈w/2⌉ × ⌈h/2⌉ each), in one buffer that [`I420::resize`] reuses.
#[derive(Clone, PartialEq, Eq)]
pub struct I420 {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for I420 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl I420 {
    /// A black picture of `width` × `height`.
    pub fn new(width: u32, height: u32) -> Self {
        let mut p = I420 {
            width: 0,
            height: 0,
            data: Vec::new(),
        };
        p.resize(width, height);
        p
    }

    /// Changes the size, reusing the buffer (contents unspecified: every plane is
    /// overwritten by whoever fills it).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        let (y, c) = Self::plane_sizes(width, height);
        if self.data.len() != y + 2 * c {
            self.data.clear();
            self.data.resize(y, 16);
            self.data.resize(y + 2 * c, 128);
        }
    }

    fn plane_sizes(width: u32, height: u32) -> (usize, usize) {
        let (w, h) = (width as usize, height as usize);
        (w * h, w.div_ceil(2) * h.div_ceil(2))
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width and height of the U and V planes.
    pub fn chroma_size(&self) -> (u32, u32) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    /// The Y, U and V planes (rows of `width`, `width.div_ceil(2)`, `width.div_ceil(2)`).
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let (y, c) = Self::plane_sizes(self.width, self.height);
        let (luma, chroma) = self.data.split_at(y);
        let (u, v) = chroma.split_at(c);
        (luma, u, v)
    }

    /// The planes, writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (y, c) = Self::plane_sizes(self.width, self.height);
        let (luma, chroma) = self.data.split_at_mut(y);
        let (u, v) = chroma.split_at_mut(c);
        (luma, u, v)
    }
}

impl openh264::formats::YUVSource for I420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let c = self.width.div_ceil(2) as usize;
        (self.width as usize, c, c)
    }

    fn y(&self) -> &[u8] {
        self.planes().0
    }

    fn u(&self) -> &[u8] {
        self.planes().1
    }

    fn v(&self) -> &[u8] {
        self.planes().2
    }
}
