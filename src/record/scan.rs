//! Reading a segment file back: its tracks, its parts, where its last complete part ends.
//! Blocking file I/O (callers run it off the reactor); parsing is [`crate::fmp4::read`].
//!
//! A segment is `ftyp`, `moov`, then `moof` + `mdat` pairs. A crash (`kill -9`, a power cut)
//! can leave a torn tail: a box header without all its bytes, a `moof` without its `mdat`, a
//! `moof` that does not parse. Everything up to the last complete pair is good (each part is
//! written whole after the ones before it); [`scan`] says where that is, and [`recover`] cuts
//! the file there, so every player and tool reads it cleanly.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::fmp4::read::{box_header, parse_moof, parse_moov, TrackFragment};
use crate::fmp4::SampleEntry;

/// Largest `moov` or `moof` read into memory; ours are a few KiB.
const MAX_META_BOX: u64 = 16 << 20;

/// One complete part of a segment file.
#[derive(Debug, Clone)]
pub struct PartOnDisk {
    /// Where its `moof` starts.
    pub offset: u64,
    /// Its `moof`'s size; the `mdat` follows.
    pub moof_len: u64,
    /// The runs of its tracks; sample data offsets are relative to `offset`.
    pub runs: Vec<TrackFragment>,
}

/// What a segment file holds.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    pub tracks: Vec<SampleEntry>,
    /// Where the last complete part ends (the init segment's end if none is).
    pub complete_len: u64,
    pub file_len: u64,
    pub parts: usize,
    /// From the start of the file's timeline to the end of its last sample, in ms.
    pub duration_ms: u64,
    /// Payload bytes of the samples.
    pub media_bytes: u64,
}

impl SegmentScan {
    /// Whether the file ends in a torn part.
    pub fn has_torn_tail(&self) -> bool {
        self.complete_len < self.file_len
    }
}

/// Why a file is not a segment at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a recording: {0}")]
    NotASegment(String),
}

fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads a box header at `offset`: `None` if the file ends before it does.
fn header_at(
    file: &File,
    offset: u64,
    file_len: u64,
) -> Result<Option<crate::fmp4::read::BoxHeader>, ScanError> {
    let n = (file_len - offset).min(16);
    let buf = read_at(file, offset, n)?;
    box_header(&buf).map_err(|e| ScanError::NotASegment(e.to_string()))
}

/// Scans a segment: calls `on_part` for each complete part, in order. A torn tail is not an
/// error (see the module docs); a file that does not start with `ftyp` and `moov` is.
pub fn scan(file: &File, mut on_part: impl FnMut(&PartOnDisk)) -> Result<SegmentScan, ScanError> {
    let file_len = file.metadata()?.len();
    let not = |m: &str| ScanError::NotASegment(m.to_owned());
    let ftyp = header_at(file, 0, file_len)?.ok_or_else(|| not("shorter than an ftyp"))?;
    if &ftyp.kind != b"ftyp" {
        return Err(not("does not start with ftyp"));
    }
    let mut pos = ftyp.size;
    let moov = match header_at(file, pos.min(file_len), file_len)? {
        Some(h) if &h.kind == b"moov" && h.size <= MAX_META_BOX && pos + h.size <= file_len => h,
        Some(h) if &h.kind != b"moov" => return Err(not("ftyp is not followed by moov")),
        _ => return Err(not("the moov is cut short")),
    };
    let body = read_at(file, pos + moov.header_len, moov.size - moov.header_len)?;
    let tracks = parse_moov(&body).map_err(|e| ScanError::NotASegment(e.to_string()))?;
    if tracks.is_empty() {
        return Err(not("no H.264 or AAC track"));
    }
    pos += moov.size;
    let mut scan = SegmentScan {
        tracks,
        complete_len: pos,
        file_len,
        parts: 0,
        duration_ms: 0,
        media_bytes: 0,
    };
    while pos < file_len {
        let Ok(Some(h)) = header_at(file, pos, file_len) else {
            break;
        };
        if &h.kind != b"moof" || h.size > MAX_META_BOX || pos + h.size > file_len {
            break;
        }
        let mdat_at = pos + h.size;
        let mdat = match header_at(file, mdat_at.min(file_len), file_len) {
            Ok(Some(m)) if &m.kind == b"mdat" && mdat_at + m.size <= file_len => m,
            _ => break,
        };
        let Ok(moof) = read_at(file, pos, h.size) else {
            break;
        };
        let Ok(runs) = parse_moof(&moof) else {
            break;
        };
        // Every sample must lie inside the mdat that follows.
        let data_start = h.size + mdat.header_len;
        let data_end = h.size + mdat.size;
        let inside = runs.iter().all(|r| {
            let bytes: u64 = r.samples.iter().map(|s| u64::from(s.size)).sum();
            r.data_offset >= data_start && r.data_offset + bytes <= data_end
        });
        if !inside {
            break;
        }
        let part = PartOnDisk {
            offset: pos,
            moof_len: h.size,
            runs,
        };
        for r in &part.runs {
            let timescale = scan
                .tracks
                .iter()
                .find(|t| t.track_id() == r.track_id)
                .map_or(1000, |t| u64::from(t.timescale()));
            let end: u64 =
                r.base_decode_time + r.samples.iter().map(|s| u64::from(s.duration)).sum::<u64>();
            scan.duration_ms = scan.duration_ms.max(end * 1000 / timescale);
            scan.media_bytes += r.samples.iter().map(|s| u64::from(s.size)).sum::<u64>();
        }
        on_part(&part);
        scan.parts += 1;
        pos = mdat_at + mdat.size;
        scan.complete_len = pos;
    }
    Ok(scan)
}

/// Scans a segment and cuts a torn tail off it. Returns the scan (of the file as it now is).
pub fn recover(path: &Path) -> Result<SegmentScan, ScanError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut s = scan(&file, |_| {})?;
    if s.has_torn_tail() {
        tracing::warn!(path = %path.display(), good_bytes = s.complete_len, file_bytes = s.file_len, parts = s.parts, "segment ends in a torn part (a crash?); cutting it off");
        file.set_len(s.complete_len)?;
        file.sync_all()?;
        s.file_len = s.complete_len;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{fragment_header, init_segment, Run, SampleInfo, AUDIO_TRACK};
    use std::io::Write;

    /// An audio-only segment of `parts` parts of 10 samples of 7 bytes, as bytes.
    fn segment(parts: u32) -> Vec<u8> {
        let entry = SampleEntry::aac(&[0x11, 0x90]).unwrap();
        let mut out = init_segment(&[&entry]);
        for p in 0..parts {
            let samples = vec![
                SampleInfo {
                    duration: 1024,
                    size: 7,
                    flags: crate::fmp4::sample_flags::SYNC,
                    composition_offset: 0,
                };
                10
            ];
            let run = Run {
                track_id: AUDIO_TRACK,
                base_decode_time: u64::from(p) * 10240,
                samples: &samples,
                video: false,
            };
            out.extend(fragment_header(p + 1, &[run]));
            out.extend(std::iter::repeat_n(0x21, 70));
        }
        out
    }

    #[test]
    fn every_cut_of_a_file_keeps_its_complete_parts() {
        let whole = segment(3);
        let init_len = init_segment(&[&SampleEntry::aac(&[0x11, 0x90]).unwrap()]).len();
        let part_len = (whole.len() - init_len) / 3;
        let dir = tempfile::tempdir().unwrap();
        for cut in init_len..=whole.len() {
            let path = dir.path().join("s.mp4");
            std::fs::File::create(&path)
                .unwrap()
                .write_all(&whole[..cut])
                .unwrap();
            let s = recover(&path).unwrap();
            let parts = (cut - init_len) / part_len;
            assert_eq!(s.parts, parts, "cut at {cut}");
            assert_eq!(s.complete_len as usize, init_len + parts * part_len);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), s.complete_len);
            assert_eq!(s.duration_ms, parts as u64 * 10240 * 1000 / 48000);
        }
        for cut in [0, 5, 20, init_len - 1] {
            let path = dir.path().join("t.mp4");
            std::fs::File::create(&path)
                .unwrap()
                .write_all(&whole[..cut])
                .unwrap();
            assert!(
                matches!(recover(&path), Err(ScanError::NotASegment(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_after_the_parts_is_cut() {
        let mut bytes = segment(2);
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0, 0, 0, 9, b'm', b'o', b'o', b'f', 1, 2, 3]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.mp4");
        std::fs::write(&path, &bytes).unwrap();
        let s = recover(&path).unwrap();
        assert_eq!((s.parts, s.complete_len), (2, good));
    }
}
