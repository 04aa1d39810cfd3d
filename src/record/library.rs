//! What is recorded: each `[[record]]` entry's segments by stream, its counters, and the
//! retention that keeps it within its limits.
//!
//! The files are the truth: at start every entry's folder is scanned (torn tails cut off,
//! see [`super::scan`]) and the in-memory index is built from what is there; recorders then
//! add to it as they write. The index holds one small record per segment (not per part), so
//! a week of 10-minute segments is about a thousand records per stream.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::{is_recordable_name, RecordConfig};
use super::retention::{self, Candidate, Limits};
use super::scan;
use super::utc::{self, UtcMs};

/// Segments further apart than this are in different spans.
pub const SPAN_GAP_MS: i64 = 1000;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub path: PathBuf,
    /// UTC time of its first frame.
    pub start: UtcMs,
    /// Media time from its first frame to the end of its last complete part.
    pub duration_ms: u64,
    pub bytes: u64,
    /// Its tracks, described (`h264 1280x720`, `aac 48000 Hz 2 ch`).
    pub video: Option<String>,
    pub audio: Option<String>,
    /// Being written now.
    pub open: bool,
}

impl SegmentMeta {
    pub fn end(&self) -> UtcMs {
        self.start + self.duration_ms as i64
    }
}

/// An entry's counters and state, for the API and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EntryStatus {
    /// The entry's `stream` and `path` as configured.
    pub stream: String,
    pub path: String,
    /// Streams being recorded now.
    pub recording: Vec<String>,
    pub bytes_written: u64,
    pub segments_written: u64,
    pub parts_written: u64,
    /// Frames not recorded because the disk could not keep up (dropped to the next keyframe)
    /// or a write failed.
    pub dropped_frames: u64,
    /// Frames the fragmenter did not place (video before a segment's first keyframe, codecs
    /// that are not recorded).
    pub skipped_frames: u64,
    pub write_errors: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Free bytes on the entry's disk at the last retention pass.
    pub disk_free_bytes: Option<u64>,
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    /// What the entry holds now.
    pub segments: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct EntryState {
    streams: BTreeMap<String, Vec<SegmentMeta>>,
    status: EntryStatus,
    recording: BTreeSet<String>,
}

/// One `[[record]]` entry.
#[derive(Debug)]
pub struct Entry {
    pub config: RecordConfig,
    state: Mutex<EntryState>,
    /// One retention pass at a time (recorders of a `"*"` entry close segments at once).
    retention: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Entry {
    fn new(config: RecordConfig) -> Entry {
        let status = EntryStatus {
            stream: config.stream.clone(),
            path: config.path.display().to_string(),
            ..EntryStatus::default()
        };
        Entry {
            config,
            state: Mutex::new(EntryState {
                status,
                ..EntryState::default()
            }),
            retention: Mutex::new(()),
        }
    }

    /// The folder of `stream`'s segments.
    pub fn dir(&self, stream: &str) -> PathBuf {
        self.config.path.join(stream)
    }

    /// Scans the entry's folder (blocking): every stream folder it records, every segment.
    fn load(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.config.path) else {
            return; // nothing recorded yet: the folder is made at the first segment
        };
        let mut found = BTreeMap::new();
        for d in dirs.flatten() {
            let Ok(name) = d.file_name().into_string() else {
                continue;
            };
            if !is_recordable_name(&name) || !self.config.matches(&name) || !d.path().is_dir() {
                continue;
            }
            let segments = load_stream_dir(&d.path());
            if !segments.is_empty() {
                found.insert(name, segments);
            }
        }
        let mut st = lock(&self.state);
        st.streams = found;
        st.refresh_totals();
    }

    pub fn segment_opened(&self, stream: &str, meta: SegmentMeta) {
        let mut st = lock(&self.state);
        st.status.segments_written += 1;
        st.status.bytes_written += meta.bytes;
        st.recording.insert(stream.to_owned());
        let list = st.streams.entry(stream.to_owned()).or_default();
        let at = list.partition_point(|s| s.start <= meta.start);
        list.insert(at, meta);
        st.refresh_totals();
    }

    /// A part was written to the open segment at `path`: it is now `bytes` long and lasts
    /// `duration_ms`.
    pub fn part_written(
        &self,
        stream: &str,
        path: &Path,
        added: u64,
        bytes: u64,
        duration_ms: u64,
    ) {
        let mut st = lock(&self.state);
        st.status.parts_written += 1;
        st.status.bytes_written += added;
        if let Some(s) = st.find(stream, path) {
            s.bytes = bytes;
            s.duration_ms = duration_ms;
        }
        st.status.bytes += added;
    }

    /// The segment at `path` is closed (or, with `bytes == None`, failed and may be torn:
    /// it is rescanned).
    pub fn segment_closed(&self, stream: &str, path: &Path) {
        let mut st = lock(&self.state);
        let mut remove = false;
        if let Some(s) = st.find(stream, path) {
            s.open = false;
            remove = s.bytes == 0;
        }
        if remove {
            if let Some(list) = st.streams.get_mut(stream) {
                list.retain(|s| s.path != path);
            }
        }
        st.refresh_totals();
    }

    /// Whether `stream` is being recorded now.
    pub fn set_recording(&self, stream: &str, on: bool) {
        let mut st = lock(&self.state);
        if on {
            st.recording.insert(stream.to_owned());
        } else {
            st.recording.remove(stream);
        }
    }

    pub fn count_dropped(&self, frames: u64) {
        if frames > 0 {
            lock(&self.state).status.dropped_frames += frames;
        }
    }

    pub fn count_skipped(&self, frames: u64) {
        if frames > 0 {
            lock(&self.state).status.skipped_frames += frames;
        }
    }

    pub fn write_failed(&self, error: String) {
        let mut st = lock(&self.state);
        st.status.write_errors += 1;
        st.status.last_error = Some(error);
        st.status.last_error_at = Some(utc::format_rfc3339(utc::from_system(
            std::time::SystemTime::now(),
        )));
    }

    pub fn status(&self) -> EntryStatus {
        let st = lock(&self.state);
        let mut s = st.status.clone();
        s.recording = st.recording.iter().cloned().collect();
        s
    }

    /// A copy of `stream`'s segments, oldest first.
    pub fn segments(&self, stream: &str) -> Vec<SegmentMeta> {
        lock(&self.state)
            .streams
            .get(stream)
            .cloned()
            .unwrap_or_default()
    }

    pub fn streams(&self) -> Vec<String> {
        lock(&self.state).streams.keys().cloned().collect()
    }

    /// Deletes what the entry's limits say must go (blocking: statvfs and unlink).
    pub fn retention_pass(&self, now: UtcMs) {
        let _one = lock(&self.retention);
        let free = disk_free(&self.config.path);
        let limits = Limits {
            keep_ms: (self.config.keep_s * 1000.0) as u64,
            keep_bytes: self.config.keep_bytes,
            min_free_bytes: self.config.min_free_bytes,
        };
        let all: Vec<(String, SegmentMeta)> = {
            let st = lock(&self.state);
            st.streams
                .iter()
                .flat_map(|(name, list)| list.iter().map(move |s| (name.clone(), s.clone())))
                .collect()
        };
        let candidates: Vec<Candidate> = all
            .iter()
            .map(|(_, s)| Candidate {
                start: s.start,
                end: s.end(),
                bytes: s.bytes,
                open: s.open,
            })
            .collect();
        let doomed = retention::select(&candidates, now, limits, free);
        let mut deleted = Vec::new();
        for i in doomed {
            let (stream, seg) = &all[i];
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "retention cannot delete a segment");
                    continue;
                }
            }
            tracing::info!(stream = %stream, path = %seg.path.display(), bytes = seg.bytes, "retention deleted a segment");
            deleted.push((stream.clone(), seg.path.clone(), seg.bytes));
        }
        let mut st = lock(&self.state);
        for (stream, path, bytes) in &deleted {
            if let Some(list) = st.streams.get_mut(stream) {
                list.retain(|s| &s.path != path);
            }
            st.status.segments_deleted += 1;
            st.status.bytes_deleted += bytes;
        }
        st.streams.retain(|_, l| !l.is_empty());
        let freed: u64 = deleted.iter().map(|d| d.2).sum();
        st.status.disk_free_bytes = free.map(|f| f + freed);
        st.refresh_totals();
    }
}

impl EntryState {
    fn find(&mut self, stream: &str, path: &Path) -> Option<&mut SegmentMeta> {
        self.streams
            .get_mut(stream)?
            .iter_mut()
            .rev()
            .find(|s| s.path == path)
    }

    fn refresh_totals(&mut self) {
        self.status.segments = self.streams.values().map(|l| l.len() as u64).sum();
        self.status.bytes = self.streams.values().flatten().map(|s| s.bytes).sum();
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `path` (or its nearest
/// existing parent).
pub fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `s` points to writable memory of the right
    // size; statvfs writes it fully when it returns 0, and only then is it read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let s = unsafe { s.assume_init() };
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Every segment in one stream's folder, torn tails cut, sorted by start. Files that are not
/// segments are left alone (and logged); segments without a single whole part are deleted.
fn load_stream_dir(dir: &Path) -> Vec<SegmentMeta> {
    let Ok(files) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in files.flatten() {
        let path = f.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".mp4") else {
            continue;
        };
        // `<stem>-N.mp4`: a second segment that started in the same millisecond.
        let base = stem.get(..24).unwrap_or(stem);
        let Some(start) = utc::parse_file_stem(base) else {
            continue;
        };
        match scan::recover(&path) {
            Ok(s) if s.parts == 0 => {
                tracing::info!(path = %path.display(), "segment without a whole part (the recorder stopped at once); deleting it");
                let _ = std::fs::remove_file(&path);
            }
            Ok(s) => out.push(SegmentMeta {
                start,
                duration_ms: s.duration_ms,
                bytes: s.file_len,
                video: s.tracks.iter().find(|t| t.is_video()).map(|t| t.describe()),
                audio: s
                    .tracks
                    .iter()
                    .find(|t| !t.is_video())
                    .map(|t| t.describe()),
                open: false,
                path,
            }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "not a segment; left alone");
            }
        }
    }
    out.sort_by(|a, b| (a.start, &a.path).cmp(&(b.start, &b.path)));
    out
}

/// Every entry. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Recordings {
    entries: Arc<Vec<Arc<Entry>>>,
}

/// A run of segments without a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: UtcMs,
    pub end: UtcMs,
}

impl Recordings {
    /// Scans every entry's folder (blocking; call it off the reactor).
    pub fn load(configs: &[RecordConfig]) -> Recordings {
        let entries: Vec<Arc<Entry>> = configs
            .iter()
            .cloned()
            .map(|c| Arc::new(Entry::new(c)))
            .collect();
        for e in &entries {
            e.load();
            let s = e.status();
            tracing::info!(stream = %e.config.stream, path = %e.config.path.display(), segments = s.segments, bytes = s.bytes, "recordings indexed");
        }
        Recordings {
            entries: Arc::new(entries),
        }
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Streams with at least one segment, sorted.
    pub fn streams(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.entries.iter().flat_map(|e| e.streams()).collect();
        set.into_iter().collect()
    }

    /// `stream`'s segments from every entry that records it, by start; where two entries hold
    /// the same time (a stream recorded twice), the first entry's segment is kept.
    pub fn segments(&self, stream: &str) -> Vec<SegmentMeta> {
        let mut all: Vec<SegmentMeta> = self
            .entries
            .iter()
            .flat_map(|e| e.segments(stream))
            .collect();
        all.sort_by_key(|s| s.start);
        let mut out: Vec<SegmentMeta> = Vec::with_capacity(all.len());
        for s in all {
            if let Some(last) = out.last() {
                if s.start < last.end() - SPAN_GAP_MS && s.end() <= last.end() {
                    continue;
                }
            }
            out.push(s);
        }
        out
    }

    /// Whether `stream` is recorded now by any entry.
    pub fn is_recording(&self, stream: &str) -> bool {
        self.entries
            .iter()
            .any(|e| lock(&e.state).recording.contains(stream))
    }
}

/// Runs of segments without a gap over [`SPAN_GAP_MS`].
pub fn spans(segments: &[SegmentMeta]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in segments {
        match out.last_mut() {
            Some(span) if s.start <= span.end + SPAN_GAP_MS => span.end = span.end.max(s.end()),
            _ => out.push(Span {
                start: s.start,
                end: s.end(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(start: i64, duration_ms: u64) -> SegmentMeta {
        SegmentMeta {
            path: PathBuf::from(format!("{start}.mp4")),
            start,
            duration_ms,
            bytes: 1,
            video: None,
            audio: None,
            open: false,
        }
    }

    #[test]
    fn a_gap_over_a_second_starts_a_new_span() {
        let s = [
            meta(0, 4000),
            meta(4000, 4000),
            meta(9000, 1000),
            meta(11_001, 5),
        ];
        assert_eq!(
            spans(&s),
            [
                Span {
                    start: 0,
                    end: 10_000
                },
                Span {
                    start: 11_001,
                    end: 11_006
                },
            ]
        );
        assert!(spans(&[]).is_empty());
    }
}
