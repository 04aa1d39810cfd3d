//! A stream's HLS state and its LL-HLS media playlist (RFC 8216bis), sans-IO: fragmenter
//! events in, bytes and playlist text out.
//!
//! Names are stable and never reused: every muxer has an `epoch` (its start time in ms), and
//! every file is `<epoch>-<what>`, so a part, a segment or an init segment can be cached
//! forever (`immutable`), and a muxer that restarts (a republish, an idle stop) makes new
//! names rather than new bytes under old ones.
//!
//! Each part is muxed once into one contiguous buffer ([`Bytes`]) that every viewer is served
//! from; a segment is its parts' buffers in order (no copy either).

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::Bytes;

use crate::fmp4::{Event, Part};

#[derive(Debug, Clone)]
pub struct HlsPart {
    pub bytes: Bytes,
    pub duration_s: f64,
    pub independent: bool,
}

#[derive(Debug, Clone)]
pub struct HlsSegment {
    pub msn: u64,
    /// Which init segment its samples need.
    pub init: u32,
    /// The first segment after a format change (or the stream's restart).
    pub discontinuity: bool,
    pub parts: Vec<HlsPart>,
    pub complete: bool,
}

impl HlsSegment {
    pub fn duration_s(&self) -> f64 {
        self.parts.iter().map(|p| p.duration_s).sum()
    }

    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }
}

/// What a file name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileName {
    Init(u32),
    Segment(u64),
    Part(u64, usize),
}

/// Parses `<epoch>-init<N>.mp4`, `<epoch>-<msn>.m4s` and `<epoch>-<msn>.<part>.m4s`; `None` for
/// another epoch or anything else.
pub fn parse_file_name(epoch: u64, name: &str) -> Option<FileName> {
    let (e, rest) = name.split_once('-')?;
    if e.parse::<u64>().ok()? != epoch {
        return None;
    }
    if let Some(n) = rest
        .strip_prefix("init")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return Some(FileName::Init(n.parse().ok()?));
    }
    let stem = rest.strip_suffix(".m4s")?;
    match stem.split_once('.') {
        Some((m, p)) => Some(FileName::Part(m.parse().ok()?, p.parse().ok()?)),
        None => Some(FileName::Segment(stem.parse().ok()?)),
    }
}

/// What a request for a file finds.
#[derive(Debug, Clone)]
pub enum Found {
    Bytes(Vec<Bytes>),
    /// Not yet made, but next: a request may wait for it (the preload hint).
    Soon,
    Gone,
}

/// A stream's HLS state.
#[derive(Debug)]
pub struct HlsState {
    pub epoch: u64,
    part_target_s: f64,
    segments_kept: usize,
    max_bytes: usize,
    inits: Vec<(u32, Bytes)>,
    pub segments: VecDeque<HlsSegment>,
    next_msn: u64,
    bytes: usize,
    /// The init of the segment being built, and whether a new one just started.
    current_init: Option<u32>,
    pending_discontinuity: bool,
    /// Discontinuity tags evicted from the playlist's head so far.
    discontinuity_sequence: u64,
    /// Bumped on every part: waiters compare it.
    pub version: u64,
}

impl HlsState {
    pub fn new(epoch: u64, part_ms: u64, segments_kept: usize, max_bytes: usize) -> HlsState {
        HlsState {
            epoch,
            // Parts are cut once they reach part_ms, so at one frame over it; 25 % covers
            // frames down to 12 fps at 200 ms.
            part_target_s: part_ms as f64 * 1.25 / 1000.0,
            segments_kept,
            max_bytes,
            inits: Vec::new(),
            segments: VecDeque::new(),
            next_msn: 0,
            bytes: 0,
            current_init: None,
            pending_discontinuity: false,
            discontinuity_sequence: 0,
            version: 0,
        }
    }

    /// Bytes held (parts and init segments).
    pub fn bytes(&self) -> usize {
        self.bytes + self.inits.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Whether the playlist has anything to play.
    pub fn has_media(&self) -> bool {
        self.segments.iter().any(|s| !s.parts.is_empty())
    }

    /// The stream broke (publisher left, camera reconnected): the segment being built ends.
    pub fn discontinuity(&mut self) {
        self.close_segment();
        // Before any segment there is nothing to be discontinuous with.
        if !self.segments.is_empty() {
            self.pending_discontinuity = true;
        }
    }

    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::SegmentStart(s) => {
                // A new init only when the tracks changed.
                let same = self.inits.last().is_some_and(|(_, b)| b[..] == s.init[..]);
                if !same {
                    let id = self.inits.last().map_or(0, |(i, _)| i + 1);
                    self.inits.push((id, Bytes::from(s.init)));
                    if self.current_init.is_some() {
                        self.pending_discontinuity = true;
                    }
                }
                self.current_init = self.inits.last().map(|(i, _)| *i);
                self.close_segment();
                let msn = self.next_msn;
                self.next_msn += 1;
                self.segments.push_back(HlsSegment {
                    msn,
                    init: self.current_init.unwrap_or(0),
                    discontinuity: std::mem::take(&mut self.pending_discontinuity),
                    parts: Vec::new(),
                    complete: false,
                });
            }
            Event::Part(p) => self.add_part(p),
            Event::SegmentEnd => self.close_segment(),
        }
        self.evict();
    }

    fn add_part(&mut self, p: Part) {
        let Some(seg) = self.segments.back_mut().filter(|s| !s.complete) else {
            return;
        };
        let mut buf = Vec::with_capacity(p.bytes() as usize);
        buf.extend_from_slice(&p.header);
        for pl in &p.payloads {
            for s in pl.slices() {
                buf.extend_from_slice(s);
            }
        }
        self.bytes += buf.len();
        seg.parts.push(HlsPart {
            bytes: Bytes::from(buf),
            duration_s: p.duration_ms as f64 / 1000.0,
            independent: p.independent,
        });
        self.version += 1;
    }

    fn close_segment(&mut self) {
        if let Some(seg) = self.segments.back_mut() {
            if !seg.complete {
                seg.complete = true;
                self.version += 1;
            }
        }
        // A segment that never got a part is not listed.
        if self.segments.back().is_some_and(|s| s.parts.is_empty()) {
            self.segments.pop_back();
        }
    }

    fn evict(&mut self) {
        let complete = |s: &VecDeque<HlsSegment>| s.iter().filter(|x| x.complete).count();
        while (complete(&self.segments) > self.segments_kept || self.bytes > self.max_bytes)
            && self.segments.len() > 1
        {
            if let Some(s) = self.segments.pop_front() {
                self.bytes -= s.bytes();
                if s.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
        let oldest_init = self.segments.front().map_or(u32::MAX, |s| s.init);
        self.inits
            .retain(|(i, _)| *i >= oldest_init || Some(*i) == self.current_init);
    }

    /// The last complete segment's msn and the (msn, part count) of where parts are added.
    pub fn last_msn(&self) -> Option<u64> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.complete)
            .map(|s| s.msn)
    }

    /// Whether the playlist holds part `part` of segment `msn` (or, with `None`, the complete
    /// segment `msn`), or anything later.
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        let Some(last) = self.segments.back() else {
            return false;
        };
        match part {
            None => self.last_msn().is_some_and(|m| m >= msn),
            Some(p) => {
                last.msn > msn || (last.msn == msn && (last.parts.len() > p || last.complete))
            }
        }
    }

    /// The next part to be made: (msn, part index).
    pub fn next_part(&self) -> Option<(u64, usize)> {
        let last = self.segments.back()?;
        Some(if last.complete {
            (last.msn + 1, 0)
        } else {
            (last.msn, last.parts.len())
        })
    }

    pub fn find(&self, name: FileName) -> Found {
        match name {
            FileName::Init(i) => match self.inits.iter().find(|(id, _)| *id == i) {
                Some((_, b)) => Found::Bytes(vec![b.clone()]),
                None => Found::Gone,
            },
            FileName::Segment(m) => match self.segments.iter().find(|s| s.msn == m) {
                Some(s) if s.complete => {
                    Found::Bytes(s.parts.iter().map(|p| p.bytes.clone()).collect())
                }
                Some(_) => Found::Soon,
                None if self.segments.back().is_some_and(|s| m == s.msn + 1) => Found::Soon,
                None => Found::Gone,
            },
            FileName::Part(m, p) => match self.segments.iter().find(|s| s.msn == m) {
                Some(s) if p < s.parts.len() => Found::Bytes(vec![s.parts[p].bytes.clone()]),
                _ if self.next_part() == Some((m, p)) => Found::Soon,
                // The hint named the next segment's part 0 while this one was still open.
                _ if self
                    .next_part()
                    .is_some_and(|(nm, _)| nm + 1 == m && p == 0) =>
                {
                    Found::Soon
                }
                _ => Found::Gone,
            },
        }
    }

    /// The LL-HLS media playlist. `query` (e.g. `?token=...`) is appended to every URI.
    pub fn playlist(&self, query: &str) -> String {
        let mut out = String::with_capacity(4096);
        let listed: Vec<&HlsSegment> = self.segments.iter().collect();
        let max_seg = listed
            .iter()
            .filter(|s| s.complete)
            .map(|s| s.duration_s())
            .fold(1.0f64, f64::max);
        let part_target = listed
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.duration_s)
            .fold(self.part_target_s, f64::max);
        let e = self.epoch;
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:9");
        let _ = writeln!(
            out,
            "#EXT-X-TARGETDURATION:{}",
            max_seg.round().max(1.0) as u64
        );
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
            part_target * 3.0
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA-SEQUENCE:{}",
            listed.first().map_or(0, |s| s.msn)
        );
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence
        );
        // Parts are listed for the segments within three part-hold-backs of the end.
        let with_parts_from = {
            let mut t = 0.0;
            let mut from = listed.len();
            for (i, s) in listed.iter().enumerate().rev() {
                from = i;
                t += s.duration_s();
                if t >= part_target * 9.0 {
                    break;
                }
            }
            from
        };
        let mut init = None;
        for (i, s) in listed.iter().enumerate() {
            if s.discontinuity {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            if init != Some(s.init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{e}-init{}.mp4{query}\"", s.init);
                init = Some(s.init);
            }
            if i >= with_parts_from {
                for (k, p) in s.parts.iter().enumerate() {
                    let independent = if p.independent {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={:.3},URI=\"{e}-{}.{k}.m4s{query}\"{independent}",
                        p.duration_s, s.msn
                    );
                }
            }
            if s.complete {
                let _ = writeln!(out, "#EXTINF:{:.3},", s.duration_s());
                let _ = writeln!(out, "{e}-{}.m4s{query}", s.msn);
            }
        }
        if let Some((m, p)) = self.next_part() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{e}-{m}.{p}.m4s{query}\""
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
