//! Create/feed/destroy loops for the openh264 wrappers, measuring RSS (/proc/self/status
//! VmRSS): 300 video transcoders (decode + scale + encode of 10 frames, plus a corrupt
//! access unit) and 300 snapshots must not grow RSS by more than 2 MiB. One test in its own
//! binary, so no other test allocates while it measures.

#[path = "common/mp4_video.rs"]
mod mp4_video;

use std::time::Duration;

use codecs::h264::{snapshot_jpeg, DecoderLimits, RenditionSpec, VideoInput, VideoTranscoder};

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn spec() -> RenditionSpec {
    RenditionSpec {
        width: Some(320),
        height: None,
        bitrate_bps: 300_000,
        keyframe_interval: Duration::from_secs(1),
        limits: DecoderLimits::default(),
    }
}

fn cycle(v: &mp4_video::Video) -> usize {
    let mut t = VideoTranscoder::new(spec()).unwrap();
    t.set_config(&v.config).unwrap();
    let mut frames = 0;
    for s in &v.samples[..10] {
        let input = VideoInput {
            data: &s.data,
            pts_ms: s.pts_ms,
            keyframe: s.keyframe,
        };
        frames += usize::from(t.push(input).unwrap().is_some());
    }
    let corrupt = [0, 0, 0, 5, 0x41, 0xff, 0x00, 0x12, 0x34];
    let _ = t.push(VideoInput {
        data: &corrupt,
        pts_ms: 400,
        keyframe: false,
    });
    frames + t.finish().unwrap().len()
}

#[test]
fn three_hundred_transcoders_and_snapshots_do_not_grow_rss() {
    let v = mp4_video::load("h264-baseline-aac.mp4");
    assert_eq!((v.width, v.height), (640, 360));
    for _ in 0..20 {
        cycle(&v);
    }
    let before = rss_kib();
    let mut frames = 0;
    for _ in 0..300 {
        frames += cycle(&v);
    }
    let growth = rss_kib() - before;
    eprintln!("300 video transcoders, {frames} frames: RSS {growth:+} KiB");
    assert_eq!(frames, 300 * 10);
    assert!(growth <= 2048, "RSS grew {growth} KiB");

    let key = &v.samples[0];
    for _ in 0..20 {
        snapshot_jpeg(&v.config, &key.data, 80, DecoderLimits::default()).unwrap();
    }
    let before = rss_kib();
    for _ in 0..300 {
        snapshot_jpeg(&v.config, &key.data, 80, DecoderLimits::default()).unwrap();
    }
    let growth = rss_kib() - before;
    eprintln!("300 snapshots: RSS {growth:+} KiB");
    assert!(growth <= 2048, "RSS grew {growth} KiB");

    // The measurement can see a leak of this size: 20 live transcoders show up.
    let before = rss_kib();
    let mut live = Vec::new();
    for _ in 0..20 {
        let mut t = VideoTranscoder::new(spec()).unwrap();
        t.set_config(&v.config).unwrap();
        let s = &v.samples[0];
        t.push(VideoInput {
            data: &s.data,
            pts_ms: 0,
            keyframe: true,
        })
        .unwrap();
        live.push(t);
    }
    let held = rss_kib() - before;
    eprintln!("20 live transcoders: RSS {held:+} KiB");
    assert!(held > 2048, "{held} KiB");
    drop(live);
}
