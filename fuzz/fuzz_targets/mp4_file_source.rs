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
//!   does), so the loop does too.
//!
//! Known bugs, filtered out so the fuzzer can look for others (see `regressions/` and
//! `README.md`); set `MOMENT_FUZZ_MP4_KNOWN_BUGS=1` to let them through (reproduce the hang
//! with `-timeout=5`), `MOMENT_FUZZ_DEBUG=1` to print why `from_bytes` refused an input:
//! - the `mp4` crate (0.14) loops forever on a zero-size box inside any container it walks
//!   (moov, trak, ...; only the top level checks for size 0), and up to 2^32 times on one in
//!   a `dref` (its loop is bounded by the declared entry count);
//! - `mp4`'s `read_sample` allocates the sample size from `stsz` before reading, and
//!   `FileSource::from_bytes` reads every sample to build its timeline: one 4-byte `stsz`
//!   entry of 0xFFFFFFF0 in a 1 KB file allocates 4 GiB;
//! - `mp4`'s `read_sample` unwraps `sample_time` (track.rs:553, marked `// XXX`), which fails
//!   for a sample that `stts` gives no time to, or when 1 + the `stts` sample counts
//!   overflows u32: a panic in `FileSource::from_bytes`;
//! - moment's own: `FileSource::from_bytes` reads every sample `stsz` declares
//!   (src/source/file.rs:249-252); with a fixed sample size `stsz` declares up to 2^32 − 1
//!   samples in 20 bytes, and a 1 KB file keeps it busy for minutes (a CPU DoS);
//! - `mp4`'s `sample_offset` divides by an `stsc` entry's `samples_per_chunk` (track.rs:456):
//!   0 is a divide-by-zero panic (in release builds too);
//! - `mp4`'s `Mp4Track::duration` divides by the `mdhd` timescale (track.rs:209), which
//!   `FileSource::from_bytes` calls for the H.264 track (src/source/file.rs:189): timescale 0
//!   is a divide-by-zero panic. (Here moment can check first: `track.timescale() == 0`.)
//! - `mp4`'s `MetaBox::read_box` allocates `size - 8` bytes for each child of a `meta` whose
//!   handler is not `mdir`, before reading: a 4-byte size field allocates up to 4 GiB (and
//!   a size below 8 underflows);
//! - `mp4`'s `HdlrBox::read_box` allocates its name as `size - 33` bytes from the box header
//!   before reading (any `hdlr`: in `mdia` or `meta`);
//! - `mp4`'s `chunk_offset` computes `chunk_id as usize - 1` (track.rs:322), which overflows
//!   for an `stsc` entry with `first_chunk` 0: a panic with overflow checks (as here), a
//!   wrap and an error in moment's release builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moment::media::{classify, Codec, MediaKind};
use moment::pages::{PagePool, PoolConfig};
use moment::source::{FileSource, SourceError};

/// Boxes whose children `mp4` 0.14 reads in a `while current < end` loop that a zero-size
/// child never advances.
const CONTAINERS: [&[u8; 4]; 12] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"udta", b"mvex", b"moof", b"traf",
    b"meta", b"ilst",
];

/// Which known `mp4` bug the boxes from `pos` to `end` of `file` would hit, if any. Walks
/// like `mp4` does: while `pos < end` a header is read, even one that runs past `end`; then
/// the position moves to the header start + size; containers are walked recursively.
fn known_mp4_bug(
    file: &[u8],
    mut pos: usize,
    end: usize,
    in_container: bool,
    in_ilst: bool,
) -> Option<&'static str> {
    while pos < end {
        let b = file.get(pos..pos + 8)?;
        let mut size = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let typ: [u8; 4] = b[4..8].try_into().unwrap();
        let mut hdr = 8;
        if size == 1 {
            let l = file.get(pos + 8..pos + 16)?;
            size = match u64::from_be_bytes(l.try_into().unwrap()) {
                0 => 0,
                1..=15 => return None, // mp4: "64-bit box size too small"
                l => l - 8,
            };
            hdr = 16;
        }
        if size == 0 {
            return in_container.then_some("zero-size box in a container");
        }
        // mp4 takes the box start as 8 bytes before the end of the header.
        let box_start = pos + hdr - 8;
        let box_end = usize::try_from(size).ok()?.checked_add(box_start)?;
        let body = &file
            [(pos + hdr).min(file.len())..box_end.min(file.len()).max((pos + hdr).min(file.len()))];
        if &typ == b"stsz" {
            // version/flags, sample_size, sample_count, then sizes if sample_size is 0.
            let big = |w: &[u8]| u32::from_be_bytes(w.try_into().unwrap()) as usize > file.len();
            if body.get(4..8).is_some_and(big)
                || body.get(12..).is_some_and(|e| e.chunks_exact(4).any(big))
            {
                return Some("stsz sample larger than the file");
            }
        }
        if &typ == b"stbl" {
            let (timed, sized) = (stts_samples(body), stsz_samples(body));
            if timed < sized {
                return Some("sample without an stts entry");
            }
            if timed >= u64::from(u32::MAX) {
                return Some("stts sample counts overflow u32");
            }
            if sized > file.len() as u64 {
                return Some("more stsz samples than bytes in the file");
            }
        }
        if &typ == b"hdlr" && box_end > file.len() {
            return Some("hdlr larger than the file");
        }
        if &typ == b"dref" {
            // version/flags, entry_count, then boxes: read entry_count times, a zero-size one
            // without moving (up to 2^32 times).
            if let Some(bug) = known_mp4_bug(file, pos + hdr + 8, box_end, true, false) {
                return Some(bug);
            }
        }
        if &typ == b"mdhd" {
            // Version 0: 4-byte times; version 1: 8-byte. The timescale follows them.
            let at = if body.first() == Some(&1) { 20 } else { 12 };
            if body.get(at..at + 4) == Some(&[0; 4]) {
                return Some("mdhd timescale 0");
            }
        }
        if &typ == b"stsc" {
            // version/flags, entry_count, then (first_chunk, samples_per_chunk, index).
            let n = body
                .get(4..8)
                .map_or(0, |n| u32::from_be_bytes(n.try_into().unwrap()));
            let entries = body.get(8..).unwrap_or_default().chunks_exact(12);
            let entries: Vec<&[u8]> = entries.take(n as usize).collect();
            if entries.iter().any(|e| e[4..8] == [0; 4]) {
                return Some("stsc samples_per_chunk 0");
            }
            if entries.iter().any(|e| e[..4] == [0; 4]) {
                return Some("stsc first_chunk 0");
            }
        }
        if CONTAINERS.contains(&&typ) || in_ilst {
            // meta: as mp4 reads it, version/flags 0 then children, or children at once if
            // the box starts with an hdlr box (QuickTime).
            let children = match (&typ, body.get(..4), body.get(4..8)) {
                (b"meta", Some([0, 0, 0, 0]), _) => Some(pos + hdr + 4),
                (b"meta", Some(_), Some(b"hdlr")) => Some(pos + hdr),
                (b"meta", _, _) => None,
                _ => Some(pos + hdr),
            };
            if let (b"meta", Some(start)) = (&typ, children) {
                if meta_child_too_large(file, start, box_end) {
                    return Some("meta child box larger than the file");
                }
            }
            if let Some(start) = children {
                if let Some(bug) = known_mp4_bug(file, start, box_end, true, &typ == b"ilst") {
                    return Some(bug);
                }
            }
        }
        pos = box_end;
    }
    None
}

/// Whether a child box of a `meta` (other than `hdlr`) declares a size beyond the file or
/// below its header: `mp4` allocates `size - 8` bytes for it when the handler is not `mdir`.
fn meta_child_too_large(file: &[u8], mut pos: usize, end: usize) -> bool {
    while pos < end {
        let Some(b) = file.get(pos..pos + 8) else {
            return false;
        };
        let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if &b[4..8] != b"hdlr" && (size > file.len() || size < 8) {
            return true;
        }
        if size == 0 {
            return false;
        }
        pos += size;
    }
    false
}

/// The body of the first direct child of type `typ` in `body`.
fn child<'a>(body: &'a [u8], typ: &[u8; 4]) -> Option<&'a [u8]> {
    let mut pos = 0usize;
    while body.len() - pos >= 8 {
        let b = &body[pos..];
        let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if size < 8 {
            return None;
        }
        if &b[4..8] == typ {
            return Some(&b[8..size.min(b.len())]);
        }
        pos += size.min(b.len());
    }
    None
}

/// Samples the `stts` in a `stbl` body gives times to (0 if none).
fn stts_samples(stbl: &[u8]) -> u64 {
    let Some(stts) = child(stbl, b"stts") else {
        return 0;
    };
    let Some(n) = stts.get(4..8) else { return 0 };
    let n = u32::from_be_bytes(n.try_into().unwrap()) as usize;
    let entries = stts.get(8..).unwrap_or_default().chunks_exact(8).take(n);
    entries
        .map(|e| u64::from(u32::from_be_bytes(e[..4].try_into().unwrap())))
        .sum()
}

/// `sample_count` of the `stsz` in a `stbl` body (0 if none).
fn stsz_samples(stbl: &[u8]) -> u64 {
    child(stbl, b"stsz")
        .and_then(|b| b.get(8..12))
        .map_or(0, |n| u64::from(u32::from_be_bytes(n.try_into().unwrap())))
}

fuzz_target!(|data: &[u8]| {
    let debug = std::env::var_os("MOMENT_FUZZ_DEBUG").is_some();
    if let Some(bug) = known_mp4_bug(data, 0, data.len(), false, false) {
        if debug {
            eprintln!("known bug: {bug}");
        }
        if std::env::var_os("MOMENT_FUZZ_MP4_KNOWN_BUGS").is_none() {
            return;
        }
    }
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
