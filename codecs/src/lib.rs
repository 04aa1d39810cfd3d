//! Codec modules for moment: each module wraps one codec library behind a safe, pure-data
//! API (`push(input) -> outputs`) with bounded internal buffers.
//!
//! What lives here: decoders, encoders, resamplers and scalers, and nothing that does I/O,
//! spawns tasks or logs — the server decides threads, queues and what to print. (Exceptions
//! it cannot switch off: libspeex prints a notice to stderr on a corrupt frame, see
//! [`speex`]; openh264's encoder can print a warning while it initialises, before its log
//! level can be set, for settings [`h264`] does not use.)
//!
//! - [`g711`]: A-law / µ-law → PCM (pure Rust tables).
//! - [`speex`]: Speex → PCM (libspeex via `speex-safe`; not `Send`).
//! - [`resample`]: PCM rate conversion (`speexdsp-resampler`, pure Rust).
//! - [`aac`]: PCM → raw AAC-LC + AudioSpecificConfig (libfdk-aac via `fdk-aac`).
//! - [`transcode`]: [`AudioTranscoder`], the pipeline the server uses for Speex/G.711 → AAC.
//! - [`h264`]: H.264 decode → scale → encode ([`h264::VideoTranscoder`], one per rendition)
//!   and JPEG snapshots (openh264 via `openh264`, vendored C++ and assembly; the scaler is
//!   ours; JPEG via `jpeg-encoder`, pure Rust).
//!
//! This crate contains no `unsafe` code of its own.
#![forbid(unsafe_code)]

pub mod aac;
pub mod g711;
pub mod h264;
pub mod resample;
pub mod speex;
#[doc(hidden)]
pub mod test_input;
pub mod transcode;

pub use transcode::{
    AacFrame, AudioTranscoder, InputCodec, InputFormat, OutputConfig, TranscodeError,
    TranscoderStats,
};
