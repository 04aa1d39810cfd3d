use proptest::prelude::*;

use super::*;
use crate::fmp4::read::{box_header, parse_moof, parse_moov, TrackFragment};
use crate::media::{self, AvcDecoderConfig};
use crate::pages::{PagePool, PoolConfig, StreamWriter};

const SPS: [u8; 25] = [
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
];
const PPS: [u8; 4] = [0x68, 0xcb, 0x8c, 0xb2];
/// AAC-LC, 48 kHz, stereo.
const ASC: [u8; 2] = [0x11, 0x90];

struct Source {
    _pool: PagePool,
    w: StreamWriter,
}

impl Source {
    fn new() -> Source {
        let pool = PagePool::new(PoolConfig::default());
        let w = pool.writer("t", 1 << 30);
        Source { _pool: pool, w }
    }

    fn frame(&mut self, kind: MediaKind, ts: u32, body: Message) -> Frame {
        Frame::from_tag_body(kind, ts, body).unwrap()
    }

    fn video_header(&mut self, sps: &[u8]) -> Frame {
        let avcc = AvcDecoderConfig::from_parameter_sets(sps, &PPS)
            .unwrap()
            .to_bytes();
        let body = media::avc_sequence_header(&mut self.w, &avcc).unwrap();
        self.frame(MediaKind::Video, 0, body)
    }

    fn audio_header(&mut self) -> Frame {
        let body = media::aac_sequence_header(&mut self.w, &ASC).unwrap();
        self.frame(MediaKind::Audio, 0, body)
    }

    /// A video frame whose NAL carries `id`, so the sample can be recognised.
    fn video(&mut self, ts: u32, key: bool, cts: i32, id: u32, size: usize) -> Frame {
        let mut nal = vec![0u8; size.max(9)];
        nal[..4].copy_from_slice(&((size.max(9) - 4) as u32).to_be_bytes());
        nal[4] = if key { 0x65 } else { 0x41 };
        nal[5..9].copy_from_slice(&id.to_be_bytes());
        let body = media::video_body(&mut self.w, key, cts, &nal).unwrap();
        self.frame(MediaKind::Video, ts, body)
    }

    fn audio(&mut self, ts: u32, size: usize) -> Frame {
        let body = media::aac_body(&mut self.w, &vec![0x21; size]).unwrap();
        self.frame(MediaKind::Audio, ts, body)
    }
}

fn config(part_ms: u64, segment_ms: u64) -> FragmenterConfig {
    FragmenterConfig {
        part_ms,
        segment_ms,
        timeline: Timeline::PerSegment,
        max_part_bytes: 4 << 20,
    }
}

/// What a consumer would write, parsed back.
#[derive(Debug, Default)]
struct Written {
    segments: Vec<WrittenSegment>,
}

#[derive(Debug, Default)]
struct WrittenSegment {
    start_ms: u64,
    tracks: Vec<SampleEntry>,
    parts: Vec<(Part, Vec<TrackFragment>)>,
    ended: bool,
}

impl Written {
    fn take(&mut self, f: &mut Fragmenter) {
        while let Some(e) = f.pull() {
            match e {
                Event::SegmentStart(s) => {
                    if let Some(last) = self.segments.last() {
                        assert!(last.ended, "a segment starts before the last one ended");
                    }
                    // The init reads back as the tracks it announces.
                    let ftyp = box_header(&s.init).unwrap().unwrap();
                    let moov = &s.init[ftyp.size as usize + 8..];
                    assert_eq!(parse_moov(moov).unwrap(), s.tracks);
                    self.segments.push(WrittenSegment {
                        start_ms: s.start_ms,
                        tracks: s.tracks,
                        ..WrittenSegment::default()
                    });
                }
                Event::Part(p) => {
                    let seg = self.segments.last_mut().expect("a part before any segment");
                    assert!(!seg.ended, "a part after its segment ended");
                    let moof = box_header(&p.header).unwrap().unwrap();
                    let runs = parse_moof(&p.header[..moof.size as usize]).unwrap();
                    // The mdat holds exactly the payloads, and the runs point into it in order.
                    let mdat = box_header(&p.header[moof.size as usize..])
                        .unwrap()
                        .unwrap();
                    assert_eq!(mdat.size - mdat.header_len, p.payload_bytes());
                    assert_eq!(p.header.len() as u64, moof.size + mdat.header_len);
                    let mut offset = p.header.len() as u64;
                    let mut payloads = p.payloads.iter();
                    for r in &runs {
                        assert_eq!(r.data_offset, offset);
                        for s in &r.samples {
                            let pl = payloads.next().unwrap();
                            assert_eq!(s.size as usize, pl.len());
                            offset += u64::from(s.size);
                        }
                    }
                    assert!(payloads.next().is_none());
                    seg.parts.push((p, runs));
                }
                Event::SegmentEnd => {
                    let seg = self.segments.last_mut().expect("an end before any segment");
                    assert!(!seg.ended);
                    seg.ended = true;
                }
            }
        }
    }
}

impl WrittenSegment {
    /// Every sample of a track, as (decode time, info), checking that the parts' decode times
    /// run on without a gap or an overlap.
    fn track(&self, id: u32) -> Vec<(u64, SampleInfo)> {
        let mut out = Vec::new();
        let mut next: Option<u64> = None;
        for (_, runs) in &self.parts {
            for r in runs.iter().filter(|r| r.track_id == id) {
                if let Some(n) = next {
                    assert_eq!(
                        r.base_decode_time, n,
                        "track {id}: decode times jump between parts"
                    );
                }
                let mut t = r.base_decode_time;
                for s in &r.samples {
                    out.push((t, *s));
                    t += u64::from(s.duration);
                }
                next = Some(t);
            }
        }
        out
    }

    fn video_ids(&self) -> Vec<u32> {
        self.parts
            .iter()
            .flat_map(|(p, runs)| {
                let video = runs
                    .iter()
                    .find(|r| r.track_id == VIDEO_TRACK)
                    .map_or(0, |r| r.samples.len());
                p.payloads[..video].iter().map(|pl| {
                    let b: Vec<u8> = pl.slices().flatten().copied().collect();
                    u32::from_be_bytes([b[5], b[6], b[7], b[8]])
                })
            })
            .collect()
    }
}

#[test]
fn segments_start_at_keyframes_and_parts_last_their_target() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 4000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    f.push(&src.audio_header());
    // 10 s at 25 fps with a keyframe every 2 s, audio at 48 kHz in 1024-sample frames.
    let mut audio_t = 0.0f64;
    for i in 0..250u32 {
        let ts = i * 40;
        while audio_t < f64::from(ts + 40) {
            f.push(&src.audio(audio_t.round() as u32, 20));
            audio_t += 1024.0 / 48.0;
        }
        f.push(&src.video(ts, i % 50 == 0, 0, i, 300));
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);

    // Keyframes at 0, 2, 4, 6, 8 s; a segment is due after 4 s: cuts at 4 s and 8 s.
    let starts: Vec<u64> = out.segments.iter().map(|s| s.start_ms).collect();
    let origin = out.segments[0].start_ms;
    assert_eq!(starts, [origin, origin + 4000, origin + 8000]);
    for seg in &out.segments {
        assert!(seg.ended);
        assert_eq!(seg.tracks.len(), 2);
        let video = seg.track(VIDEO_TRACK);
        assert_eq!(video[0].0, 0, "each file's timeline starts at 0");
        assert!(sample_flags::is_sync(video[0].1.flags));
        assert!(video.iter().all(|(_, s)| s.duration == 3600));
        let audio = seg.track(AUDIO_TRACK);
        assert!(
            audio[0].0 < 1024,
            "audio starts with the segment: {}",
            audio[0].0
        );
        assert!(audio.iter().all(|(_, s)| s.duration == 1024));
        for (i, (p, _)) in seg.parts.iter().enumerate() {
            assert_eq!(p.independent, i == 0 || (p.start_ms - origin) % 2000 == 0);
            if i + 1 < seg.parts.len() {
                assert_eq!(p.duration_ms, 1000);
            }
        }
    }
    let ids: Vec<u32> = out.segments.iter().flat_map(|s| s.video_ids()).collect();
    assert_eq!(
        ids,
        (0..250).collect::<Vec<_>>(),
        "every video frame once, in order"
    );
}

#[test]
fn late_audio_lands_in_the_part_it_belongs_to() {
    // A transcoder's audio arrives 300 ms after the video of the same time.
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 60_000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    f.push(&src.audio_header());
    let frames = 1024.0 / 48.0;
    let mut next_audio = 0.0f64;
    for i in 0..150u32 {
        let ts = i * 40;
        f.push(&src.video(ts, i % 50 == 0, 0, i, 100));
        while next_audio + 300.0 <= f64::from(ts) {
            f.push(&src.audio(next_audio.round() as u32, 10));
            next_audio += frames;
        }
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    let seg = &out.segments[0];
    for (p, runs) in &seg.parts[..seg.parts.len() - 1] {
        let audio = runs.iter().find(|r| r.track_id == AUDIO_TRACK).unwrap();
        let end = audio.base_decode_time
            + audio
                .samples
                .iter()
                .map(|s| u64::from(s.duration))
                .sum::<u64>();
        let part_end = (p.start_ms + p.duration_ms - seg.start_ms) * 48;
        assert!(
            end.abs_diff(part_end) <= 1024,
            "audio of a part ends at {end}, the part at {part_end}"
        );
    }
    seg.track(AUDIO_TRACK);
}

#[test]
fn a_new_sequence_header_starts_a_new_segment_at_the_next_keyframe() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 600_000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    for i in 0..100u32 {
        if i == 60 {
            let mut sps = SPS;
            sps[5] = 0x50; // another picture size
            f.push(&src.video_header(&sps));
        }
        f.push(&src.video(i * 40, i % 25 == 0, 0, i, 50));
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    assert_eq!(out.segments.len(), 2);
    let origin = out.segments[0].start_ms;
    assert_eq!(out.segments[1].start_ms, origin + 75 * 40);
    assert_ne!(out.segments[0].tracks, out.segments[1].tracks);
    assert_eq!(out.segments[0].video_ids().len(), 75);
}

#[test]
fn an_audio_header_that_comes_after_the_first_part_waits_for_a_segment() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(500, 600_000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    for i in 0..100u32 {
        if i == 30 {
            f.push(&src.audio_header());
        }
        if i >= 30 {
            f.push(&src.audio(i * 40, 10));
            f.push(&src.audio(i * 40 + 21, 10));
        }
        f.push(&src.video(i * 40, i % 50 == 0, 0, i, 50));
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    assert_eq!(out.segments.len(), 2);
    assert_eq!(out.segments[0].tracks.len(), 1);
    assert_eq!(out.segments[1].tracks.len(), 2);
    assert!(!out.segments[1].track(AUDIO_TRACK).is_empty());
    assert!(f.skipped().audio > 0);
}

#[test]
fn an_audio_header_before_the_first_part_is_in_the_first_segment() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 600_000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    for i in 0..60u32 {
        if i == 5 {
            f.push(&src.audio_header());
        }
        if i >= 5 {
            f.push(&src.audio(i * 40, 10));
        }
        f.push(&src.video(i * 40, i % 50 == 0, 0, i, 50));
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    assert_eq!(out.segments.len(), 1);
    assert_eq!(out.segments[0].tracks.len(), 2);
}

#[test]
fn b_frames_keep_their_composition_offsets() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 600_000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    // I P B B: decode order with pts offsets 80, 120, 0, 0 ms... as x264 with 2 B-frames.
    let cts = [80, 120, 40, 40];
    for i in 0..40u32 {
        f.push(&src.video(i * 40, i % 20 == 0, cts[i as usize % 4], i, 50));
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    let v = out.segments[0].track(VIDEO_TRACK);
    for (i, (_, s)) in v.iter().enumerate() {
        assert_eq!(s.composition_offset, cts[i % 4] * 90);
    }
}

#[test]
fn stuck_timestamps_still_cut_parts_at_the_byte_bound() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(FragmenterConfig {
        max_part_bytes: 10_000,
        ..config(1000, 600_000)
    });
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    for i in 0..100u32 {
        f.push(&src.video(5000, i == 0, 0, i, 1000));
        out.take(&mut f);
        assert!(f.pending_bytes() <= 11_000, "{}", f.pending_bytes());
    }
    f.end_segment();
    out.take(&mut f);
    assert!(out.segments[0].parts.len() >= 9);
    assert_eq!(out.segments[0].video_ids().len(), 100);
}

#[test]
fn continuous_timeline_runs_on_across_segments() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(FragmenterConfig {
        timeline: Timeline::Continuous,
        ..config(200, 1000)
    });
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    for i in 0..100u32 {
        f.push(&src.video(7000 + i * 40, i % 25 == 0, 0, i, 50));
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    assert_eq!(out.segments.len(), 4);
    for (n, seg) in out.segments.iter().enumerate() {
        assert_eq!(seg.track(VIDEO_TRACK)[0].0, n as u64 * 90_000);
    }
}

#[test]
fn audio_only_streams_cut_anywhere() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 3000));
    let mut out = Written::default();
    f.push(&src.audio_header());
    let mut t = 0.0f64;
    while t < 10_000.0 {
        f.push(&src.audio(t.round() as u32, 10));
        t += 1024.0 / 48.0;
        out.take(&mut f);
    }
    f.end_segment();
    out.take(&mut f);
    assert_eq!(out.segments.len(), 4);
    for seg in &out.segments {
        assert!(seg.parts.iter().all(|(p, _)| p.independent));
        seg.track(AUDIO_TRACK);
    }
}

#[test]
fn end_segment_then_the_next_segment_waits_for_a_keyframe() {
    let mut src = Source::new();
    let mut f = Fragmenter::new(config(1000, 600_000));
    let mut out = Written::default();
    f.push(&src.video_header(&SPS));
    for i in 0..30u32 {
        f.push(&src.video(i * 40, i == 0, 0, i, 50));
    }
    f.end_segment();
    f.end_segment(); // twice is harmless
    for i in 30..60u32 {
        f.push(&src.video(i * 40, i == 40, 0, i, 50));
    }
    f.end_segment();
    out.take(&mut f);
    assert_eq!(out.segments.len(), 2);
    assert_eq!(out.segments[1].video_ids(), (40..60).collect::<Vec<_>>());
    assert_eq!(f.skipped().wait_keyframe, 10);
}

#[derive(Debug, Clone)]
enum Op {
    /// A video frame `step` ms after the last one.
    Video {
        step: u32,
        key: bool,
        size: usize,
    },
    /// An audio frame, its timestamp `jitter` ms off the sample clock, arriving `late` frames
    /// after its time.
    Audio {
        jitter: i32,
    },
    End,
    Header,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..100u32, proptest::bool::weighted(0.05), 1..5000usize)
            .prop_map(|(step, key, size)| Op::Video { step, key, size }),
        30 => (-3..3i32).prop_map(|jitter| Op::Audio { jitter }),
        1 => Just(Op::End),
        1 => Just(Op::Header),
    ]
}

proptest! {
    /// Whatever the stream: every event sequence is well formed, every part parses with its
    /// payloads where its runs say, decode times run on within a segment, every segment's
    /// video starts with a sync sample, pending memory stays bounded, and every media frame
    /// is in a part or counted as skipped.
    #[test]
    fn any_stream_gives_well_formed_segments(
        ops in proptest::collection::vec(op(), 1..400),
        part_ms in 100..2000u64,
        segment_ms in 0..5000u64,
    ) {
        let mut src = Source::new();
        let mut f = Fragmenter::new(FragmenterConfig { max_part_bytes: 200_000, ..config(part_ms, segment_ms) });
        let mut out = Written::default();
        f.push(&src.video_header(&SPS));
        f.push(&src.audio_header());
        let (mut vts, mut ats) = (0u32, 0.0f64);
        let mut media = 0u64;
        let mut id = 0;
        for op in ops {
            match op {
                Op::Video { step, key, size } => {
                    vts += step;
                    f.push(&src.video(vts, key, 0, id, size));
                    id += 1;
                    media += 1;
                }
                Op::Audio { jitter } => {
                    f.push(&src.audio((ats.round() as i64 + i64::from(jitter)).max(0) as u32, 10));
                    ats += 1024.0 / 48.0;
                    media += 1;
                }
                Op::End => f.end_segment(),
                Op::Header => {
                    let mut sps = SPS;
                    sps[5] ^= (id as u8 & 1) << 4;
                    f.push(&src.video_header(&sps));
                }
            }
            out.take(&mut f);
            prop_assert!(f.pending_bytes() <= 200_000 + 5000 + 2 * 4096 * 12);
        }
        f.end_segment();
        out.take(&mut f);
        let mut placed = 0u64;
        for seg in &out.segments {
            prop_assert!(seg.ended);
            let v = seg.track(VIDEO_TRACK);
            if let Some((t, s)) = v.first() {
                // A keyframe stamped with its predecessor's millisecond goes one tick later.
                prop_assert!(*t <= 1, "video starts at {}", t);
                prop_assert!(sample_flags::is_sync(s.flags));
            }
            let a = seg.track(AUDIO_TRACK);
            placed += (v.len() + a.len()) as u64;
        }
        let s = f.skipped();
        prop_assert_eq!(placed + s.wait_keyframe + s.audio + s.unsupported, media);
    }
}
