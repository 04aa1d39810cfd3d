//! Fragmented MP4 (ISO/IEC 14496-12, shaped as CMAF): the one writer the recorder and the HLS
//! muxer share. Sans-IO: frames in, bytes and payload handles out; no files, no sockets.
//!
//! - [`fragmenter`]: the hub's frames cut into segments (each at a keyframe, with its init
//!   segment) and parts (`moof` + `mdat`), with exact decode times and sample flags.
//! - [`init`]: sample entries (`avc1`/`avcC`, `mp4a`/`esds`), `trak`, and the init segment.
//! - [`fragment`]: a part's `moof` and `mdat` header; the sample bytes are not copied here, the
//!   caller writes them after the header straight from the stream's pages.
//! - [`read`]: reading the same boxes back (crash recovery, the playback index).
//! - [`boxes`]: the box writer underneath.
//!
//! ## Design notes: why our own boxes
//! The `mp4` crate writes progressive files only (the `moov` at the end, its tables in memory),
//! which a crash loses. `mp4-atom` 0.17 does write fragment boxes, and we tried it (a 25-sample
//! `moof` encodes in about 1.6 µs, fast enough): but its `trun` data offset is only known by
//! encoding the `moof` twice, every part allocates a `Vec` of entries and the avcC as a
//! `Vec<Vec<u8>>` of parameter sets, its box types changed shape in each recent minor
//! version (`Traf::trun` went from `Option` to `Vec`, `TrunSamples` is new in 0.17), and it
//! brings `num` (bigint, complex, rational) and `derive_more` for the dozen boxes we write.
//! Writing them ourselves is about as many lines as adapting to it, patches the data offsets
//! in one pass, and lets the reader treat a truncated tail as "need more", which recovery
//! needs. mp4-atom stays useful as an independent reader of what we write (a test), and
//! ffprobe, GStreamer's qtdemux and Chromium check the files in the black-box tests.

pub mod boxes;
pub mod fragment;
pub mod fragmenter;
pub mod init;
pub mod read;

pub use fragment::{fragment_header, sample_flags, Run, SampleInfo};
pub use fragmenter::{
    Event, Fragmenter, FragmenterConfig, Part, Payload, SegmentStart, Skipped, Timeline,
};
pub use init::{init_segment, SampleEntry, AUDIO_TRACK, VIDEO_TIMESCALE, VIDEO_TRACK};
