//! Frames in, fragmented MP4 out: cuts a stream into segments (each starting at a keyframe,
//! with its init segment) and each segment into parts (`moof` + `mdat`), as a recording or an
//! LL-HLS playlist wants them.
//!
//! Contract: feed every item a hub subscription gives with [`Fragmenter::push`] (sequence
//! headers and frames, as FLV tag bodies) and call [`Fragmenter::end_segment`] where the
//! stream breaks (its publisher left, a camera reconnected); between any two calls, call
//! [`Fragmenter::pull`] until it returns `None`. Events come in this order: `SegmentStart`,
//! one or more `Part`s, `SegmentEnd`, and again.
//!
//! Timing: video decode times are the stream's milliseconds at 90 kHz, exact; composition
//! offsets come from the FLV composition time. AAC decode times run on the sample clock, 1024
//! samples a frame, and follow the millisecond timestamps only when they drift by more than
//! half a frame (a gap, or a publisher's clock), so durations are exact and do not jitter
//! with millisecond rounding. A sample's duration is the distance to the next sample of its
//! track, so the last sample of each track waits for its successor before its part is cut;
//! a cut also waits (at most [`MAX_AUDIO_WAIT_MS`] of video) for audio to pass it, so audio
//! that arrives late (a transcoder's) still lands in the part it belongs to.
//!
//! Memory: what is pending is at most one part and the audio wait, as clones of the frames'
//! payload handles (no byte is copied); a part is cut early at [`FragmenterConfig::max_part_bytes`]
//! so broken timestamps cannot make it grow.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::fragment::{fragment_header, sample_flags, Run, SampleInfo};
use super::init::{init_segment, SampleEntry, AAC_FRAME_SAMPLES, AUDIO_TRACK, VIDEO_TRACK};
use crate::media::{classify_message, Codec, Frame, MediaKind};
use crate::pages::Message;

/// How long a cut waits for late audio, in milliseconds of video after the cut.
pub const MAX_AUDIO_WAIT_MS: u64 = 1000;
/// Most samples in one part, whatever their timestamps say.
const MAX_PART_SAMPLES: usize = 4096;
/// The duration given to a track's last sample when the stream ends: 25 fps.
const DEFAULT_VIDEO_DURATION: u32 = 3600;

/// How decode times are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeline {
    /// From 0 at each segment's start: every segment is a file that stands alone.
    PerSegment,
    /// From 0 at the first segment, running on across segments (HLS: one init, one timeline).
    Continuous,
}

/// Where the fragmenter cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmenterConfig {
    /// A part is cut once it holds this much media time.
    pub part_ms: u64,
    /// A segment is cut at the first keyframe (audio frame, for audio-only streams) after this
    /// much media time.
    pub segment_ms: u64,
    pub timeline: Timeline,
    /// A part is cut once its samples hold this many bytes, whatever its duration.
    pub max_part_bytes: usize,
}

/// A sample's bytes: a frame's payload without its FLV header. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct Payload {
    message: Message,
    skip: usize,
}

impl Payload {
    pub fn len(&self) -> usize {
        self.message.len() - self.skip
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample's bytes as slices of its pages, in order.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        let mut skip = self.skip;
        self.message.slices().filter_map(move |s| {
            if skip >= s.len() {
                skip -= s.len();
                return None;
            }
            let out = &s[skip..];
            skip = 0;
            Some(out)
        })
    }

    /// Appends the sample's slices to `out`, for `write_vectored`.
    pub fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.extend(self.slices().map(IoSlice::new));
    }
}

/// A segment begins: the init segment of its file (or playlist), and when it starts.
#[derive(Debug, Clone)]
pub struct SegmentStart {
    /// `ftyp` + `moov` for the segment's tracks.
    pub init: Vec<u8>,
    /// The tracks it holds (video first).
    pub tracks: Vec<SampleEntry>,
    /// Its first sample's decode time on the stream's millisecond clock.
    pub start_ms: u64,
}

/// A part: the `moof` + `mdat` header, then the payloads, in order, are its bytes.
#[derive(Debug, Clone)]
pub struct Part {
    /// The `mfhd` sequence number (from 1, over the fragmenter's life).
    pub sequence: u32,
    pub header: Vec<u8>,
    pub payloads: Vec<Payload>,
    /// It begins with a video keyframe (always true for audio-only streams).
    pub independent: bool,
    /// Where it starts and how long it lasts, on the stream's millisecond clock.
    pub start_ms: u64,
    pub duration_ms: u64,
}

impl Part {
    /// The part's size on disk or on the wire.
    pub fn bytes(&self) -> u64 {
        self.header.len() as u64 + self.payloads.iter().map(|p| p.len() as u64).sum::<u64>()
    }

    /// Payload bytes (the frames' bytes, without any header).
    pub fn payload_bytes(&self) -> u64 {
        self.payloads.iter().map(|p| p.len() as u64).sum()
    }
}

/// What [`Fragmenter::pull`] gives.
#[derive(Debug, Clone)]
pub enum Event {
    SegmentStart(SegmentStart),
    Part(Part),
    /// The segment that started last has had its last part.
    SegmentEnd,
}

/// Frames the fragmenter did not put in any part, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Video before the first keyframe of a segment.
    pub wait_keyframe: u64,
    /// Frames of a codec that is not recorded (not H.264 or AAC), or of a track whose
    /// sequence header is missing or did not parse.
    pub unsupported: u64,
    /// Audio older than its segment's start, or of a configuration that changed until the
    /// segment that carries it starts.
    pub audio: u64,
}

#[derive(Debug)]
struct Pending {
    /// Decode time in the track's timescale, on the stream's clock.
    dts: u64,
    composition_offset: i32,
    flags: u32,
    payload: Payload,
}

#[derive(Debug, Default)]
struct TrackQueue {
    samples: VecDeque<Pending>,
    bytes: usize,
    /// The last sample's duration, for the end of the stream.
    last_duration: Option<u32>,
}

impl TrackQueue {
    fn push(&mut self, p: Pending) {
        self.bytes += p.payload.len();
        self.samples.push_back(p);
    }

    fn clear(&mut self) {
        self.samples.clear();
        self.bytes = 0;
    }
}

/// A place to cut: before the `video` first samples of the video queue and the audio samples
/// before `at_ms`.
#[derive(Debug, Clone, Copy)]
struct Cut {
    at_ms: u64,
    video: usize,
    segment: bool,
}

#[derive(Debug)]
struct Segment {
    start_ms: u64,
    /// Tracks, fixed when the first part is cut; `None` until then.
    tracks: Option<(Option<SampleEntry>, Option<SampleEntry>)>,
    /// Whether its `SegmentStart` was given (it is, with its first part).
    announced: bool,
    /// Where the next part starts.
    part_start_ms: u64,
    /// Where the last cut, and the last segment cut, were placed (cuts wait in `cuts` for
    /// audio, so these run ahead of the parts given).
    last_cut_ms: u64,
    last_segment_cut_ms: u64,
}

impl Segment {
    fn new(start_ms: u64) -> Segment {
        Segment {
            start_ms,
            tracks: None,
            announced: false,
            part_start_ms: start_ms,
            last_cut_ms: start_ms,
            last_segment_cut_ms: start_ms,
        }
    }

    /// Whether the segment's tracks, once fixed, leave out video (or audio).
    fn lacks(&self, video: bool) -> bool {
        match &self.tracks {
            Some((v, a)) => {
                if video {
                    v.is_none()
                } else {
                    a.is_none()
                }
            }
            None => false,
        }
    }

    /// Queues the cuts a new sample calls for, before it.
    fn plan(
        &mut self,
        cuts: &mut VecDeque<Cut>,
        next: NextSample,
        config: &FragmenterConfig,
        format_changed: &mut bool,
    ) {
        let NextSample {
            ms,
            video,
            may_start,
            over,
        } = next;
        let since_segment = ms.saturating_sub(self.last_segment_cut_ms);
        let since_cut = ms.saturating_sub(self.last_cut_ms);
        let segment_due = may_start && (since_segment >= config.segment_ms || *format_changed);
        if segment_due || (since_cut >= config.part_ms && since_cut > 0) || over {
            self.last_cut_ms = self.last_cut_ms.max(ms);
            if segment_due {
                self.last_segment_cut_ms = self.last_cut_ms;
                *format_changed = false;
            }
            cuts.push_back(Cut {
                at_ms: ms,
                video,
                segment: segment_due,
            });
        }
    }
}

/// The sample about to be queued, as [`Segment::plan`] sees it.
#[derive(Debug, Clone, Copy)]
struct NextSample {
    ms: u64,
    /// Video samples queued before it.
    video: usize,
    /// It may start a segment (a keyframe, or any audio frame of an audio-only stream).
    may_start: bool,
    /// The queue is over its bounds: cut whatever the time.
    over: bool,
}

/// Extends 32-bit millisecond timestamps to 64 bits, across wrap-around, for all tracks.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<(u32, u64)>,
}

impl Unwrap {
    fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            // Start far from 0, so that a track a little behind the first one stays positive.
            None => u64::from(ts) + (1 << 32),
            Some((last_ts, last_ext)) => {
                let step = i64::from(ts.wrapping_sub(last_ts) as i32);
                last_ext.saturating_add_signed(step)
            }
        };
        self.last = Some((ts, ext));
        ext
    }
}

/// The fragmenter; see the module docs.
#[derive(Debug)]
pub struct Fragmenter {
    config: FragmenterConfig,
    video_entry: Option<SampleEntry>,
    audio_entry: Option<SampleEntry>,
    /// A sequence header changed mid-segment: the next keyframe starts a new segment.
    format_changed: bool,
    unwrap: Unwrap,
    video: TrackQueue,
    audio: TrackQueue,
    /// The audio sample clock: where the next frame is expected.
    audio_next: Option<u64>,
    last_video_dts: Option<u64>,
    /// The latest video time seen, in ms (for the audio wait).
    video_now_ms: u64,
    segment: Option<Segment>,
    cuts: VecDeque<Cut>,
    /// Where the timeline starts (Continuous) once the first segment has.
    origin_ms: Option<u64>,
    sequence: u32,
    events: VecDeque<Event>,
    skipped: Skipped,
}

impl Fragmenter {
    pub fn new(config: FragmenterConfig) -> Fragmenter {
        Fragmenter {
            config,
            video_entry: None,
            audio_entry: None,
            format_changed: false,
            unwrap: Unwrap::default(),
            video: TrackQueue::default(),
            audio: TrackQueue::default(),
            audio_next: None,
            last_video_dts: None,
            video_now_ms: 0,
            segment: None,
            cuts: VecDeque::new(),
            origin_ms: None,
            sequence: 0,
            events: VecDeque::new(),
            skipped: Skipped::default(),
        }
    }

    pub fn skipped(&self) -> Skipped {
        self.skipped
    }

    /// Whether a segment is open (started and not yet ended).
    pub fn in_segment(&self) -> bool {
        self.segment.is_some()
    }

    /// The next event, if any.
    pub fn pull(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Payload bytes waiting to be cut into parts.
    pub fn pending_bytes(&self) -> usize {
        self.video.bytes + self.audio.bytes
    }

    /// Takes one hub frame (sequence header, media frame or metadata).
    pub fn push(&mut self, frame: &Frame) {
        let Ok(info) = classify_message(frame.kind, &frame.payload) else {
            self.skipped.unsupported += 1;
            return;
        };
        match frame.kind {
            MediaKind::Data => {}
            MediaKind::Video if info.codec != Some(Codec::Avc) || frame.payload.len() < 5 => {
                self.skipped.unsupported += 1;
            }
            MediaKind::Audio if info.codec != Some(Codec::Aac) || frame.payload.len() < 2 => {
                self.skipped.unsupported += 1;
            }
            MediaKind::Video if frame.sequence_header => {
                let entry = SampleEntry::avc(&frame.payload.to_vec()[5..]).ok();
                self.set_entry(true, entry);
            }
            MediaKind::Audio if frame.sequence_header => {
                let entry = SampleEntry::aac(&frame.payload.to_vec()[2..]).ok();
                self.set_entry(false, entry);
            }
            MediaKind::Video => {
                let ms = self.unwrap.extend(frame.timestamp);
                self.push_video(frame, ms, info.composition_time);
            }
            MediaKind::Audio => {
                let ms = self.unwrap.extend(frame.timestamp);
                self.push_audio(frame, ms);
            }
        }
        self.run_cuts(false);
    }

    /// Ends the open segment now (the stream stopped or broke): what is pending becomes its
    /// last part, each track's last sample lasting as long as the one before it. The next
    /// segment starts at the next keyframe.
    pub fn end_segment(&mut self) {
        if self.segment.is_none() {
            // Audio that waited for a keyframe that never came.
            self.drop_audio_before(u64::MAX);
            self.audio_next = None;
            return;
        }
        self.run_cuts(true);
        let end = self.latest_ms();
        let video = self.video.samples.len();
        self.cut(
            Cut {
                at_ms: u64::MAX,
                video,
                segment: true,
            },
            end,
        );
        self.segment = None;
        self.video.clear();
        self.audio.clear();
        self.audio_next = None;
        self.last_video_dts = None;
        self.cuts.clear();
    }

    fn set_entry(&mut self, video: bool, entry: Option<SampleEntry>) {
        let slot = if video {
            &mut self.video_entry
        } else {
            &mut self.audio_entry
        };
        if *slot == entry {
            return;
        }
        if entry.is_none() {
            self.skipped.unsupported += 1;
        }
        *slot = entry;
        let in_file = match self.segment.as_ref().and_then(|s| s.tracks.as_ref()) {
            // Tracks not fixed yet: the first part takes the new entry.
            None => return,
            Some((v, a)) => {
                if video {
                    v.clone()
                } else {
                    a.clone()
                }
            }
        };
        if in_file != *slot {
            self.format_changed = true;
        }
    }

    /// The track set of the open segment, once fixed, else what it would be now.
    fn segment_has(&self, video: bool) -> bool {
        match self.segment.as_ref().and_then(|s| s.tracks.as_ref()) {
            Some((v, a)) => {
                if video {
                    v.is_some()
                } else {
                    a.is_some()
                }
            }
            None => {
                if video {
                    self.video_entry.is_some()
                } else {
                    self.audio_entry.is_some()
                }
            }
        }
    }

    fn push_video(&mut self, frame: &Frame, ms: u64, composition_ms: i32) {
        if self.video_entry.is_none() {
            self.skipped.unsupported += 1;
            return;
        }
        let key = frame.keyframe;
        match &mut self.segment {
            None if !key => {
                self.skipped.wait_keyframe += 1;
                return;
            }
            None => self.start_segment(ms),
            // A segment without video (the stream had none when it started) takes video from
            // the segment that its next keyframe starts.
            Some(seg) if seg.lacks(true) && !key => {
                self.skipped.wait_keyframe += 1;
                return;
            }
            Some(seg) => {
                if seg.lacks(true) {
                    self.format_changed = true;
                }
                let over = self.video.bytes + self.audio.bytes >= self.config.max_part_bytes
                    || self.video.samples.len() >= MAX_PART_SAMPLES;
                let n = self.video.samples.len();
                let next = NextSample {
                    ms,
                    video: n,
                    may_start: key,
                    over,
                };
                seg.plan(&mut self.cuts, next, &self.config, &mut self.format_changed);
            }
        }
        let mut dts = ms * 90;
        if let Some(last) = self.last_video_dts {
            dts = dts.max(last + 1);
        }
        self.last_video_dts = Some(dts);
        self.video_now_ms = self.video_now_ms.max(ms);
        let flags = if key {
            sample_flags::SYNC
        } else if frame.disposable {
            sample_flags::NON_SYNC | sample_flags::DISPOSABLE
        } else {
            sample_flags::NON_SYNC
        };
        self.video.push(Pending {
            dts,
            composition_offset: composition_ms.saturating_mul(90),
            flags,
            payload: Payload {
                message: frame.payload.clone(),
                skip: 5,
            },
        });
    }

    fn push_audio(&mut self, frame: &Frame, ms: u64) {
        let Some(SampleEntry::Aac { sample_rate, .. }) = &self.audio_entry else {
            self.skipped.unsupported += 1;
            return;
        };
        let rate = u64::from(*sample_rate);
        let audio_only = self.video_entry.is_none();
        match &mut self.segment {
            // Before the first keyframe, audio waits (at most MAX_AUDIO_WAIT_MS of it): a
            // publisher sends the audio of a keyframe's time before the keyframe as often as
            // after it, and the segment should start with sound.
            None if !audio_only => {}
            None => self.start_segment(ms),
            Some(seg) if audio_only => {
                let over = self.audio.bytes >= self.config.max_part_bytes
                    || self.audio.samples.len() >= MAX_PART_SAMPLES;
                let next = NextSample {
                    ms,
                    video: 0,
                    may_start: true,
                    over,
                };
                seg.plan(&mut self.cuts, next, &self.config, &mut self.format_changed);
            }
            Some(_) => {}
        }
        let seg_start_ms = match &self.segment {
            Some(seg) => {
                // Audio of a configuration the segment does not carry waits for the next
                // segment.
                if let Some((_, a)) = &seg.tracks {
                    if a.as_ref() != self.audio_entry.as_ref() {
                        self.skipped.audio += 1;
                        return;
                    }
                }
                Some(seg.start_ms)
            }
            None => None,
        };
        let from_ms = ms * rate / 1000;
        let dts = match self.audio_next {
            Some(next) if from_ms.abs_diff(next) <= u64::from(AAC_FRAME_SAMPLES / 2) => next,
            Some(next) if from_ms < next => {
                // More than half a frame early: the publisher's audio overlaps what was
                // already placed. Dropping it keeps decode times increasing and audio in step
                // with the video.
                self.skipped.audio += 1;
                return;
            }
            _ => from_ms,
        };
        if seg_start_ms.is_some_and(|start| dts < start * rate / 1000) {
            self.skipped.audio += 1;
            return;
        }
        self.audio_next = Some(dts + u64::from(AAC_FRAME_SAMPLES));
        self.audio.push(Pending {
            dts,
            composition_offset: 0,
            flags: sample_flags::SYNC,
            payload: Payload {
                message: frame.payload.clone(),
                skip: 2,
            },
        });
        if seg_start_ms.is_none() {
            let keep_from = dts.saturating_sub(MAX_AUDIO_WAIT_MS * rate / 1000);
            self.drop_audio_before(keep_from);
            while self.audio.bytes > self.config.max_part_bytes && self.audio.samples.len() > 1 {
                if let Some(s) = self.audio.samples.pop_front() {
                    self.audio.bytes -= s.payload.len();
                    self.skipped.audio += 1;
                }
            }
            return;
        }
        if !audio_only && self.audio.bytes >= self.config.max_part_bytes {
            // Video stopped while audio goes on (or timestamps are broken): cut anyway.
            let video = self.video.samples.len();
            self.cuts.push_back(Cut {
                at_ms: ms + 1,
                video,
                segment: false,
            });
        }
    }

    fn start_segment(&mut self, ms: u64) {
        self.origin_ms.get_or_insert(ms);
        self.segment = Some(Segment::new(ms));
        self.format_changed = false;
        let start = ms * self.audio_rate() / 1000;
        self.drop_audio_before(start);
    }

    /// Drops waiting audio decoded before `samples`, counted as skipped.
    fn drop_audio_before(&mut self, samples: u64) {
        while self.audio.samples.front().is_some_and(|s| s.dts < samples) {
            if let Some(s) = self.audio.samples.pop_front() {
                self.audio.bytes -= s.payload.len();
                self.skipped.audio += 1;
            }
        }
    }

    fn audio_rate(&self) -> u64 {
        match &self.audio_entry {
            Some(SampleEntry::Aac { sample_rate, .. }) => u64::from(*sample_rate),
            _ => 1000,
        }
    }

    /// Performs the cuts whose audio has arrived (all of them with `force`).
    fn run_cuts(&mut self, force: bool) {
        while let Some(&cut) = self.cuts.front() {
            let audio_in = self.segment_has(false) && self.video_entry.is_some();
            let rate = self.audio_rate();
            let at = cut.at_ms * rate / 1000;
            let audio_passed = self.audio.samples.back().is_some_and(|s| s.dts >= at);
            let waited = self.video_now_ms.saturating_sub(cut.at_ms) >= MAX_AUDIO_WAIT_MS;
            let forced = self.audio.bytes >= self.config.max_part_bytes;
            if !(force || !audio_in || audio_passed || waited || forced) {
                return;
            }
            self.cuts.pop_front();
            self.cut(cut, cut.at_ms);
            // Later cuts counted their video from the queue as it was.
            for c in &mut self.cuts {
                c.video = c.video.saturating_sub(cut.video);
            }
        }
    }

    /// The latest time any pending sample ends at, in ms (for the stream's end).
    fn latest_ms(&self) -> u64 {
        let v = self.video.samples.back().map(|s| {
            (s.dts + u64::from(self.video.last_duration.unwrap_or(DEFAULT_VIDEO_DURATION))) / 90
        });
        let rate = self.audio_rate();
        let a = self
            .audio
            .samples
            .back()
            .map(|s| (s.dts + u64::from(AAC_FRAME_SAMPLES)) * 1000 / rate);
        v.into_iter()
            .chain(a)
            .max()
            .or_else(|| self.segment.as_ref().map(|s| s.part_start_ms))
            .unwrap_or(0)
    }

    /// Emits the part before `cut` (and, for a segment cut, ends the segment and starts the
    /// next at `cut.at_ms`). `end_ms` is where the part ends.
    fn cut(&mut self, cut: Cut, end_ms: u64) {
        let rate = self.audio_rate();
        let Some(seg) = &mut self.segment else {
            return;
        };
        let tracks = seg
            .tracks
            .get_or_insert_with(|| (self.video_entry.clone(), self.audio_entry.clone()))
            .clone();
        let (has_video, has_audio) = (tracks.0.is_some(), tracks.1.is_some());
        let seg_start_ms = seg.start_ms;
        let part_start = seg.part_start_ms;
        let base_ms = match self.config.timeline {
            Timeline::PerSegment => seg_start_ms,
            Timeline::Continuous => self.origin_ms.unwrap_or(seg_start_ms),
        };
        let end_segment = cut.at_ms == u64::MAX;

        // Video: the samples before the cut; each lasts until the next one.
        let n = cut.video.min(self.video.samples.len());
        let mut payloads = Vec::with_capacity(n + 64);
        let mut vinfo = Vec::with_capacity(n);
        let mut vbase = None;
        let mut independent = !has_video;
        if has_video {
            independent = n > 0 && self.video.samples[0].flags == sample_flags::SYNC;
            for i in 0..n {
                let s = &self.video.samples[i];
                let duration = match self.video.samples.get(i + 1) {
                    Some(next) => (next.dts - s.dts).min(u64::from(u32::MAX)) as u32,
                    None => self.video.last_duration.unwrap_or(DEFAULT_VIDEO_DURATION),
                };
                vbase.get_or_insert(s.dts);
                vinfo.push(SampleInfo {
                    duration,
                    size: s.payload.len() as u32,
                    flags: s.flags,
                    composition_offset: s.composition_offset,
                });
            }
            if let Some(last) = vinfo.last() {
                self.video.last_duration = Some(last.duration);
            }
        }
        for s in self.video.samples.drain(..n) {
            self.video.bytes -= s.payload.len();
            if has_video {
                payloads.push(s.payload);
            } else {
                self.skipped.wait_keyframe += 1;
            }
        }

        // Audio: the samples decoded before the cut.
        let mut ainfo = Vec::new();
        let mut abase = None;
        if has_audio {
            let end_samples = cut.at_ms.saturating_mul(rate) / 1000;
            let take = self
                .audio
                .samples
                .iter()
                .take_while(|s| end_segment || s.dts < end_samples)
                .count();
            for i in 0..take {
                let s = &self.audio.samples[i];
                let duration = match self.audio.samples.get(i + 1) {
                    Some(next) => (next.dts - s.dts).min(u64::from(u32::MAX)) as u32,
                    None => AAC_FRAME_SAMPLES,
                };
                abase.get_or_insert(s.dts);
                ainfo.push(SampleInfo {
                    duration,
                    size: s.payload.len() as u32,
                    flags: sample_flags::SYNC,
                    composition_offset: 0,
                });
            }
            for s in self.audio.samples.drain(..take) {
                self.audio.bytes -= s.payload.len();
                payloads.push(s.payload);
            }
        }

        if !vinfo.is_empty() || !ainfo.is_empty() {
            if !seg.announced {
                seg.announced = true;
                let entries: Vec<SampleEntry> =
                    [tracks.0, tracks.1].into_iter().flatten().collect();
                let refs: Vec<&SampleEntry> = entries.iter().collect();
                self.events.push_back(Event::SegmentStart(SegmentStart {
                    init: init_segment(&refs),
                    start_ms: seg_start_ms,
                    tracks: entries,
                }));
            }
            self.sequence += 1;
            let mut runs = Vec::with_capacity(2);
            if let Some(b) = vbase {
                runs.push(Run {
                    track_id: VIDEO_TRACK,
                    base_decode_time: b.saturating_sub(base_ms * 90),
                    samples: &vinfo,
                    video: true,
                });
            }
            if let Some(b) = abase {
                runs.push(Run {
                    track_id: AUDIO_TRACK,
                    base_decode_time: b.saturating_sub(base_ms * rate / 1000),
                    samples: &ainfo,
                    video: false,
                });
            }
            let end = if end_segment { end_ms } else { cut.at_ms };
            self.events.push_back(Event::Part(Part {
                sequence: self.sequence,
                header: fragment_header(self.sequence, &runs),
                payloads,
                independent,
                start_ms: part_start,
                duration_ms: end.saturating_sub(part_start),
            }));
        }
        seg.part_start_ms = if end_segment { end_ms } else { cut.at_ms };
        if !cut.segment {
            return;
        }
        if seg.announced {
            self.events.push_back(Event::SegmentEnd);
        }
        if end_segment {
            return;
        }
        // The next segment starts at the cut's keyframe; its tracks are fixed at its first
        // part. Audio older than its start has no place in it.
        let mut next = Segment::new(cut.at_ms);
        next.last_cut_ms = seg.last_cut_ms.max(cut.at_ms);
        next.last_segment_cut_ms = seg.last_segment_cut_ms.max(cut.at_ms);
        self.segment = Some(next);
        self.drop_audio_before(cut.at_ms * rate / 1000);
    }
}

#[cfg(test)]
mod tests;
