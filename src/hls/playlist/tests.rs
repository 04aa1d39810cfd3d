use super::*;
use crate::fmp4::{Part, SegmentStart};

fn start(init: u8) -> Event {
    Event::SegmentStart(SegmentStart {
        init: vec![init; 10],
        tracks: Vec::new(),
        start_ms: 0,
    })
}

fn part(n: u8, independent: bool) -> Event {
    Event::Part(Part {
        sequence: 1,
        header: vec![n; 100],
        payloads: Vec::new(),
        independent,
        start_ms: 0,
        duration_ms: 200,
    })
}

/// `segments` segments of 5 parts each, all complete but the last (3 parts).
fn state(segments: usize) -> HlsState {
    let mut s = HlsState::new(77, 200, 3, 1 << 20);
    for i in 0..segments {
        s.apply(start(1));
        let parts = if i + 1 == segments { 3 } else { 5 };
        for k in 0..parts {
            s.apply(part(i as u8, k == 0));
        }
    }
    s
}

#[test]
fn names_are_per_epoch_and_parse_back() {
    assert_eq!(parse_file_name(77, "77-init0.mp4"), Some(FileName::Init(0)));
    assert_eq!(
        parse_file_name(77, "77-12.m4s"),
        Some(FileName::Segment(12))
    );
    assert_eq!(
        parse_file_name(77, "77-12.3.m4s"),
        Some(FileName::Part(12, 3))
    );
    for bad in [
        "78-12.m4s",
        "77-x.m4s",
        "77-12.m4",
        "12.m4s",
        "77-init.mp4",
        "77-1.2.3.m4s",
        "",
    ] {
        assert_eq!(parse_file_name(77, bad), None, "{bad}");
    }
}

#[test]
fn the_playlist_keeps_its_segments_and_lists_parts_near_the_end() {
    let s = state(6);
    let text = s.playlist("?token=t");
    // 3 complete segments kept, plus the one being built.
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
    assert_eq!(text.matches("#EXTINF:1.000,").count(), 3, "{text}");
    assert!(
        text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.750"),
        "{text}"
    );
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.250"), "{text}");
    assert!(
        text.contains("#EXT-X-MAP:URI=\"77-init0.mp4?token=t\""),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-PART:DURATION=0.200,URI=\"77-5.0.m4s?token=t\",INDEPENDENT=YES"),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-PART:DURATION=0.200,URI=\"77-5.2.m4s?token=t\"\n"),
        "{text}"
    );
    assert!(
        text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"77-5.3.m4s?token=t\"\n"),
        "{text}"
    );
    assert!(!text.contains("77-1.m4s"), "evicted: {text}");
    assert!(text.contains("77-4.m4s?token=t\n"), "{text}");
}

#[test]
fn blocking_conditions_and_what_a_name_finds() {
    let s = state(3);
    assert!(s.has(1, None));
    assert!(!s.has(2, None), "segment 2 is not complete");
    assert!(s.has(2, Some(2)));
    assert!(!s.has(2, Some(3)));
    assert!(!s.has(3, Some(0)));
    assert_eq!(s.next_part(), Some((2, 3)));
    assert!(matches!(s.find(FileName::Part(2, 1)), Found::Bytes(b) if b[0].len() == 100));
    assert!(matches!(s.find(FileName::Part(2, 3)), Found::Soon));
    assert!(matches!(s.find(FileName::Part(3, 0)), Found::Soon));
    assert!(matches!(s.find(FileName::Part(2, 5)), Found::Gone));
    assert!(matches!(s.find(FileName::Segment(1)), Found::Bytes(b) if b.len() == 5));
    assert!(matches!(s.find(FileName::Segment(2)), Found::Soon));
    assert!(matches!(s.find(FileName::Segment(9)), Found::Gone));
    assert!(matches!(s.find(FileName::Init(0)), Found::Bytes(_)));
    assert!(matches!(s.find(FileName::Init(1)), Found::Gone));
}

#[test]
fn a_format_change_is_a_discontinuity_with_its_own_init_and_memory_is_bounded() {
    let mut s = state(2);
    s.apply(start(2));
    s.apply(part(9, true));
    let text = s.playlist("");
    assert!(
        text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"77-init1.mp4\""),
        "{text}"
    );
    for _ in 0..4 {
        s.apply(start(2));
        s.apply(part(9, true));
    }
    let text = s.playlist("");
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
    assert!(!text.contains("init0"), "{text}");
    assert!(matches!(s.find(FileName::Init(0)), Found::Gone));
    let mut small = HlsState::new(1, 200, 100, 1000);
    for i in 0..50 {
        small.apply(start(1));
        small.apply(part(i, true));
    }
    assert!(small.bytes() <= 1000 + 200, "{}", small.bytes());
}
