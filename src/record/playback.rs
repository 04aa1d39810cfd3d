//! The MP4 of a time range, built from the index and the segment files without copying them:
//! a progressive file (`ftyp`, `moov` with full sample tables, one `mdat`) whose `mdat` is
//! pieces of the segment files' `mdat`s, so its length is known before a byte is read and any
//! byte range of it maps to a few file reads (moonfire-nvr's `view.mp4` is the model).
//!
//! The range starts at the video keyframe at or before `start` (a player can decode from
//! there) and ends with the last sample that starts before `start + duration`. Across
//! segments, media times follow each segment's UTC start; a gap over
//! [`super::library::SPAN_GAP_MS`] (the camera was down) is closed up, so the file plays
//! through it instead of freezing. Audio starts at or after the keyframe (within one frame).
//!
//! Planning reads each segment's `moof`s (a few KiB per second of media) and is blocking:
//! callers run it off the reactor, and [`PlanCache`] keeps recent plans, since a browser asks
//! for one file in many ranges.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::library::{SegmentMeta, SPAN_GAP_MS};
use super::scan::{self, PartOnDisk};
use super::utc::UtcMs;
use crate::fmp4::boxes::{mdat_header, BoxWriter};
use crate::fmp4::init::{write_ftyp, write_mvhd, write_trak, AUDIO_TRACK, VIDEO_TRACK};
use crate::fmp4::{sample_flags, SampleEntry};

/// Longest range one request may ask for.
pub const MAX_DURATION_S: f64 = 24.0 * 3600.0;
/// Most samples one plan may hold (a day of 30 fps video and 48 kHz audio is 7 million).
const MAX_SAMPLES: usize = 8_000_000;

/// Why there is no file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no recording of {stream:?} in that range")]
    NotFound { stream: String },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the range holds more than {MAX_SAMPLES} samples: ask for a shorter duration")]
    TooLong,
}

/// A piece of the output read from a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePiece {
    pub file: usize,
    pub offset: u64,
    pub len: u64,
}

/// A planned file: `head` (`ftyp`, `moov`, `mdat` header), then the pieces, in order.
#[derive(Debug)]
pub struct Plan {
    pub head: Vec<u8>,
    pub files: Vec<PathBuf>,
    pub pieces: Vec<FilePiece>,
    /// Where each piece starts in the output.
    starts: Vec<u64>,
    pub len: u64,
    /// Changes whenever the bytes would.
    pub etag: String,
    /// UTC of the first sample (the keyframe) and the media duration, in ms.
    pub start: UtcMs,
    pub duration_ms: u64,
    /// Whether a segment still being written was read (the plan is then short-lived).
    pub live: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Output decode time, in the track's timescale.
    dts: u64,
    /// The duration written in the segment, for the last sample.
    duration: u32,
    size: u32,
    flags: u32,
    composition_offset: i32,
    /// 1-based sample description index.
    description: u32,
    /// The chunk it is in (0-based, per track).
    chunk: u32,
}

#[derive(Debug, Default)]
struct Track {
    entries: Vec<SampleEntry>,
    samples: Vec<Sample>,
    /// Output offset of each chunk, relative to the `mdat` payload start.
    chunk_offsets: Vec<u64>,
}

impl Track {
    fn description(&mut self, entry: &SampleEntry) -> u32 {
        if let Some(i) = self.entries.iter().position(|e| e == entry) {
            return i as u32 + 1;
        }
        self.entries.push(entry.clone());
        self.entries.len() as u32
    }
}

/// Plans `[start, start + duration_ms)` of `segments` (one stream's, by start). Blocking.
pub fn plan(
    stream: &str,
    segments: &[SegmentMeta],
    start: UtcMs,
    duration_ms: u64,
) -> Result<Plan, PlanError> {
    let end = start.saturating_add(duration_ms as i64);
    let chosen: Vec<&SegmentMeta> = segments
        .iter()
        .filter(|s| s.end() > start && s.start < end && s.duration_ms > 0)
        .collect();
    let not_found = || PlanError::NotFound {
        stream: stream.to_owned(),
    };
    if chosen.is_empty() {
        return Err(not_found());
    }
    let mut video = Track::default();
    let mut audio = Track::default();
    let mut pieces: Vec<FilePiece> = Vec::new();
    let mut files = Vec::new();
    let mut payload_len = 0u64;
    // The output's time 0 is the first keyframe's UTC time; each segment's media time is
    // placed at its UTC start, less the gaps closed up before it.
    let mut origin: Option<UtcMs> = None;
    let mut collapsed = 0i64;
    let mut out_end_ms = 0i64;
    let mut live = false;
    let mut count = 0usize;
    for seg in chosen {
        let file = File::open(&seg.path)?;
        let mut parts: Vec<PartOnDisk> = Vec::new();
        let scanned = scan::scan(&file, |p| parts.push(p.clone())).map_err(|e| match e {
            scan::ScanError::Io(e) => PlanError::Io(e),
            other => PlanError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                other.to_string(),
            )),
        })?;
        live |= seg.open;
        let entry = |id: u32| scanned.tracks.iter().find(|t| t.track_id() == id);
        let (ventry, aentry) = (entry(VIDEO_TRACK), entry(AUDIO_TRACK));
        let vdesc = ventry.map(|e| video.description(e));
        let adesc = aentry.map(|e| audio.description(e));
        let rate = aentry.map_or(1000, |e| u64::from(e.timescale()));
        // Where this segment's media time 0 goes in the output, in ms.
        let shift_ms = match origin {
            None => {
                // The keyframe at or before `start` (the segment's first sample if `start` is
                // before it).
                let want = (start - seg.start).max(0) as u64 * 90;
                let mut key = None;
                if ventry.is_some() {
                    'find: for p in &parts {
                        for r in p.runs.iter().filter(|r| r.track_id == VIDEO_TRACK) {
                            let mut t = r.base_decode_time;
                            for s in &r.samples {
                                if t > want {
                                    break 'find;
                                }
                                if sample_flags::is_sync(s.flags) {
                                    key = Some(t);
                                }
                                t += u64::from(s.duration);
                            }
                        }
                    }
                }
                // `start` before the segment's first keyframe (by less than a tick): that one.
                let first_sync = || {
                    parts
                        .iter()
                        .flat_map(|p| &p.runs)
                        .find(|r| r.track_id == VIDEO_TRACK)
                        .and_then(|r| {
                            let mut t = r.base_decode_time;
                            for s in &r.samples {
                                if sample_flags::is_sync(s.flags) {
                                    return Some(t);
                                }
                                t += u64::from(s.duration);
                            }
                            None
                        })
                };
                let key_ms = match key.or_else(first_sync) {
                    Some(t) => (t / 90) as i64,
                    None if ventry.is_some() => continue, // no keyframe in this segment
                    None => (start - seg.start).max(0),
                };
                origin = Some(seg.start + key_ms);
                -key_ms
            }
            Some(o) => {
                let natural = seg.start - o - collapsed;
                if natural - out_end_ms > SPAN_GAP_MS {
                    collapsed += natural - out_end_ms;
                    out_end_ms
                } else {
                    natural
                }
            }
        };
        let origin_utc = origin.unwrap_or(seg.start);
        let end_out_ms = end - origin_utc - collapsed;
        let file_index = files.len();
        files.push(seg.path.clone());
        for p in &parts {
            for r in &p.runs {
                let (track, desc, scale) = match r.track_id {
                    VIDEO_TRACK => (&mut video, vdesc, 90_000u64),
                    AUDIO_TRACK => (&mut audio, adesc, rate),
                    _ => continue,
                };
                let Some(desc) = desc else { continue };
                let shift = shift_ms * scale as i64 / 1000;
                let mut t = r.base_decode_time as i64 + shift;
                let mut offset = p.offset + r.data_offset;
                let mut piece: Option<FilePiece> = None;
                for s in &r.samples {
                    let here = t;
                    let at = offset;
                    t += i64::from(s.duration);
                    offset += u64::from(s.size);
                    let ms = here * 1000 / scale as i64;
                    if here < 0 || ms >= end_out_ms {
                        continue;
                    }
                    if track.samples.is_empty()
                        && r.track_id == VIDEO_TRACK
                        && !sample_flags::is_sync(s.flags)
                    {
                        continue;
                    }
                    count += 1;
                    if count > MAX_SAMPLES {
                        return Err(PlanError::TooLong);
                    }
                    let dts = match track.samples.last() {
                        Some(last) => (here as u64).max(last.dts + 1),
                        None => here as u64,
                    };
                    let chunk = match &mut piece {
                        Some(pc) if pc.offset + pc.len == at => {
                            pc.len += u64::from(s.size);
                            track.chunk_offsets.len() as u32 - 1
                        }
                        _ => {
                            if let Some(done) = piece.take() {
                                payload_len += done.len;
                                pieces.push(done);
                            }
                            piece = Some(FilePiece {
                                file: file_index,
                                offset: at,
                                len: u64::from(s.size),
                            });
                            track.chunk_offsets.push(payload_len);
                            track.chunk_offsets.len() as u32 - 1
                        }
                    };
                    track.samples.push(Sample {
                        dts,
                        duration: s.duration,
                        size: s.size,
                        flags: s.flags,
                        composition_offset: s.composition_offset,
                        description: desc,
                        chunk,
                    });
                    out_end_ms =
                        out_end_ms.max((dts + u64::from(s.duration)) as i64 * 1000 / scale as i64);
                }
                if let Some(done) = piece.take() {
                    payload_len += done.len;
                    pieces.push(done);
                }
            }
        }
    }
    let Some(origin) = origin else {
        return Err(not_found());
    };
    if video.samples.is_empty() && audio.samples.is_empty() {
        return Err(not_found());
    }
    // Join pieces that follow each other in the same file: fewer reads.
    let mut joined: Vec<FilePiece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match joined.last_mut() {
            Some(last) if last.file == p.file && last.offset + last.len == p.offset => {
                last.len += p.len
            }
            _ => joined.push(p),
        }
    }
    let duration_ms = out_end_ms.max(0) as u64;
    let mdat = mdat_header(payload_len);
    // Chunk offsets are 64-bit whatever their value, so the head's length does not depend on
    // them: write it once to learn it, then with the offsets.
    let probe = head(&video, &audio, duration_ms, 0, &mdat);
    let head = head(&video, &audio, duration_ms, probe.len() as u64, &mdat);
    debug_assert_eq!(probe.len(), head.len());
    let mut starts = Vec::with_capacity(joined.len());
    let mut at = head.len() as u64;
    for p in &joined {
        starts.push(at);
        at += p.len;
    }
    let etag = {
        // FNV-1a over what decides the bytes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for x in b {
                h = (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3);
            }
        };
        eat(&head);
        for p in &joined {
            eat(files[p.file].as_os_str().as_encoded_bytes());
            eat(&p.offset.to_le_bytes());
            eat(&p.len.to_le_bytes());
        }
        format!("\"{h:016x}\"")
    };
    Ok(Plan {
        len: at,
        head,
        files,
        pieces: joined,
        starts,
        etag,
        start: origin,
        duration_ms,
        live,
    })
}

/// `ftyp`, `moov` and the `mdat` header; chunk offsets count from the file's start, the
/// payload starting at `head_len`.
fn head(video: &Track, audio: &Track, duration_ms: u64, head_len: u64, mdat: &[u8]) -> Vec<u8> {
    let table_bytes = (video.samples.len() + audio.samples.len()) * 16 + 4096;
    let mut w = BoxWriter::with_capacity(table_bytes);
    write_ftyp(&mut w);
    let moov = w.open(b"moov");
    write_mvhd(&mut w, duration_ms, AUDIO_TRACK + 1);
    for track in [video, audio] {
        if track.samples.is_empty() {
            continue;
        }
        let entries: Vec<&SampleEntry> = track.entries.iter().collect();
        let scale = u64::from(entries[0].timescale());
        let last = track.samples[track.samples.len() - 1];
        let media_duration = last.dts + u64::from(last.duration) - track.samples[0].dts;
        write_trak(
            &mut w,
            &entries,
            media_duration * 1000 / scale,
            media_duration,
            |w| write_tables(w, track, head_len),
        );
    }
    w.close(moov);
    let mut out = w.into_vec();
    out.extend_from_slice(mdat);
    out
}

fn write_tables(w: &mut BoxWriter, track: &Track, head_len: u64) {
    let samples = &track.samples;
    let video = track.entries[0].is_video();
    // stts: run lengths of durations (to the next sample; the last keeps its own).
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let d = match samples.get(i + 1) {
            Some(n) => (n.dts - s.dts).min(u64::from(u32::MAX)) as u32,
            None => s.duration,
        };
        match runs.last_mut() {
            Some((n, dur)) if *dur == d => *n += 1,
            _ => runs.push((1, d)),
        }
    }
    let b = w.open_full(b"stts", 0, 0);
    w.u32(runs.len() as u32);
    for (n, d) in runs {
        w.u32(n);
        w.u32(d);
    }
    w.close(b);
    if video && samples.iter().any(|s| s.composition_offset != 0) {
        let negative = samples.iter().any(|s| s.composition_offset < 0);
        let mut runs: Vec<(u32, i32)> = Vec::new();
        for s in samples {
            match runs.last_mut() {
                Some((n, c)) if *c == s.composition_offset => *n += 1,
                _ => runs.push((1, s.composition_offset)),
            }
        }
        let b = w.open_full(b"ctts", u8::from(negative), 0);
        w.u32(runs.len() as u32);
        for (n, c) in runs {
            w.u32(n);
            w.i32(c);
        }
        w.close(b);
    }
    if video {
        let b = w.open_full(b"stss", 0, 0);
        let sync: Vec<u32> = samples
            .iter()
            .enumerate()
            .filter(|(_, s)| sample_flags::is_sync(s.flags))
            .map(|(i, _)| i as u32 + 1)
            .collect();
        w.u32(sync.len() as u32);
        for i in sync {
            w.u32(i);
        }
        w.close(b);
    }
    // stsc: runs of chunks with the same sample count and description.
    let mut per_chunk: Vec<(u32, u32)> = vec![(0, 1); track.chunk_offsets.len()];
    for s in samples {
        let c = &mut per_chunk[s.chunk as usize];
        c.0 += 1;
        c.1 = s.description;
    }
    let b = w.open_full(b"stsc", 0, 0);
    let mut entries: Vec<(u32, u32, u32)> = Vec::new();
    for (i, (n, d)) in per_chunk.iter().enumerate() {
        match entries.last() {
            Some((_, ln, ld)) if ln == n && ld == d => {}
            _ => entries.push((i as u32 + 1, *n, *d)),
        }
    }
    w.u32(entries.len() as u32);
    for (c, n, d) in entries {
        w.u32(c);
        w.u32(n);
        w.u32(d);
    }
    w.close(b);
    let b = w.open_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(samples.len() as u32);
    for s in samples {
        w.u32(s.size);
    }
    w.close(b);
    let b = w.open_full(b"co64", 0, 0);
    w.u32(track.chunk_offsets.len() as u32);
    for o in &track.chunk_offsets {
        w.u64(head_len + o);
    }
    w.close(b);
}

impl Plan {
    /// Reads `len` bytes of the output at `offset` into `out` (blocking). `open` keeps the
    /// files opened so far, for the next call.
    pub fn read(
        &self,
        offset: u64,
        len: usize,
        open: &mut Vec<Option<File>>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let end = (offset + len as u64).min(self.len);
        let mut pos = offset;
        if pos < self.head.len() as u64 {
            let to = end.min(self.head.len() as u64);
            out.extend_from_slice(&self.head[pos as usize..to as usize]);
            pos = to;
        }
        if open.len() < self.files.len() {
            open.resize_with(self.files.len(), || None);
        }
        // The piece holding `pos`.
        let mut i = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        while pos < end && i < self.pieces.len() {
            let p = &self.pieces[i];
            let within = pos - self.starts[i];
            let n = (p.len - within).min(end - pos) as usize;
            let file = match &mut open[p.file] {
                Some(f) => f,
                slot => slot.insert(File::open(&self.files[p.file])?),
            };
            let at = out.len();
            out.resize(at + n, 0);
            file.read_exact_at(&mut out[at..], p.offset + within)?;
            pos += n as u64;
            i += 1;
        }
        Ok(())
    }
}

/// Recent plans, by stream and range, so that the range requests of one player reuse one
/// plan. Bounded by count and by the bytes of their heads.
#[derive(Debug, Default)]
pub struct PlanCache {
    plans: Mutex<VecDeque<(String, Instant, Arc<Plan>)>>,
}

const CACHE_PLANS: usize = 16;
const CACHE_BYTES: usize = 64 << 20;
/// A plan that read a segment still being written is kept this long: the range may grow.
const LIVE_PLAN_TTL: Duration = Duration::from_secs(2);
const PLAN_TTL: Duration = Duration::from_secs(600);

impl PlanCache {
    pub fn get(&self, key: &str) -> Option<Arc<Plan>> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.retain(|(_, at, p)| at.elapsed() < if p.live { LIVE_PLAN_TTL } else { PLAN_TTL });
        plans
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, p)| p.clone())
    }

    pub fn put(&self, key: String, plan: Arc<Plan>) {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.retain(|(k, _, _)| *k != key);
        plans.push_front((key, Instant::now(), plan));
        while plans.len() > CACHE_PLANS
            || plans.iter().map(|(_, _, p)| p.head.len()).sum::<usize>() > CACHE_BYTES
        {
            if plans.pop_back().is_none() {
                break;
            }
        }
    }

    /// Forgets every plan (a file was deleted).
    pub fn clear(&self) {
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
