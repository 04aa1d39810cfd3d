//! MP4 files into `FileSource::from_bytes`, then up to 200 `next_frame` calls.
//!
//! A file source reads files an operator configured, but they come from anywhere (uploads,
//! recordings of other servers), so a bad file must be an error for that source only.
//! Run with `-rss_limit_mb=512 -malloc_limit_mb=256`: the `mp4` crate sizes some allocations
//! from box headers, and an allocation that large from a small file is a finding.
//!
//! Invariants:
//! - no panic, no absurd allocation;
//! - the first frames are `onMetaData` (a data frame that `is_metadata`), then the AVC and
//!   AAC sequence headers of the tracks the source reports, all due at 0;
//! - due times never go backwards, and each frame's timestamp is its due time (mod 2^32);
//! - every frame's flags are what `classify` says about its payload, and the codec is H.264
//!   for video and AAC for audio;
//! - after an error other than a page-budget one, the caller stops (as `FileSource::run`
//!   does), so the loop does too;
//! - a malformed file (one the `mp4` crate 0.14 would hang, panic or over-allocate on) is
//!   refused by the structural check in `FileSource::from_bytes` (`SourceError::Malformed`);
//!   nothing is filtered out here. The inputs that used to hit `mp4` bugs are in
//!   `regressions/mp4_file_source/` (see `README.md`). `MOMENT_FUZZ_DEBUG=1` prints why
//!   `from_bytes` refused an input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moment::media::{classify, Codec, MediaKind};
use moment::pages::{PagePool, PoolConfig};
use moment::source::{FileSource, SourceError};

fuzz_target!(|data: &[u8]| {
    let debug = std::env::var_os("MOMENT_FUZZ_DEBUG").is_some();
    let mut src = match FileSource::from_bytes("fuzz", data.to_vec()) {
        Ok(src) => src,
        Err(e) => {
            if debug {
                eprintln!("from_bytes: {e}");
            }
            return;
        }
    };
    assert!(src.avc_config().is_some() || src.audio_config().is_some());
    let _ = src.metadata();
    let _ = src.loop_duration();
    let mut headers = vec![MediaKind::Data];
    if src.avc_config().is_some() {
        headers.push(MediaKind::Video);
    }
    if src.audio_config().is_some() {
        headers.push(MediaKind::Audio);
    }
    let pool = PagePool::new(PoolConfig::default());
    // A budget far above the seed files' frames, far below the malloc limit.
    let mut w = pool.writer("fuzz", 64 << 20);
    let mut last_due = 0u64;
    let mut i = 0; // frames returned so far
    for _ in 0..200 {
        let (due, frame) = match src.next_frame(&mut w) {
            Ok(f) => f,
            Err(SourceError::Pages { .. }) => continue,
            Err(_) => break,
        };
        if let Some(&kind) = headers.get(i) {
            assert_eq!(frame.kind, kind, "header {i}");
            assert_eq!(due, 0);
            if kind == MediaKind::Data {
                assert!(frame.is_metadata());
            } else {
                assert!(frame.sequence_header);
            }
        } else {
            assert_ne!(frame.kind, MediaKind::Data);
        }
        assert!(due >= last_due, "due {due} after {last_due}");
        last_due = due;
        assert_eq!(frame.timestamp, due as u32);
        i += 1;
        let body = frame.payload.to_vec();
        let info = classify(frame.kind, &body).expect("a built body classifies");
        assert_eq!(frame.keyframe, info.keyframe);
        assert_eq!(frame.sequence_header, info.sequence_header);
        assert_eq!(frame.disposable, info.disposable);
        match frame.kind {
            MediaKind::Video => assert_eq!(info.codec, Some(Codec::Avc)),
            MediaKind::Audio => assert_eq!(info.codec, Some(Codec::Aac)),
            MediaKind::Data => {}
        }
    }
});
