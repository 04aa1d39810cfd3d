//! The looped file source against the committed fixtures.

use super::*;
use crate::hub::{Hub, HubConfig, PlayerItem, SourceKind};
use crate::media::{classify_message, Sps};
use crate::pages::{PagePool, PoolConfig};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn writer() -> (PagePool, StreamWriter) {
    let pool = PagePool::new(PoolConfig::default());
    let w = pool.writer("file", 1 << 30);
    (pool, w)
}

/// Frames (due ms, frame) until `until_ms` of media time.
fn collect(src: &mut FileSource, w: &mut StreamWriter, until_ms: u64) -> Vec<(u64, Frame)> {
    let mut out = Vec::new();
    loop {
        let (due, f) = src.next_frame(w).unwrap();
        if due >= until_ms {
            return out;
        }
        out.push((due, f));
    }
}

#[test]
fn starts_with_metadata_and_sequence_headers_that_parse() {
    let (_pool, mut w) = writer();
    let mut src = FileSource::from_bytes("demo", fixture("demo.mp4")).unwrap();
    let frames = collect(&mut src, &mut w, 1);
    let (meta, avc, aac) = (&frames[0].1, &frames[1].1, &frames[2].1);
    assert!(meta.is_metadata());
    let props = rml_amf0::deserialize(&mut &meta.payload.to_vec()[..]).unwrap()[1]
        .clone()
        .get_object_properties()
        .unwrap();
    assert_eq!(props["width"], rml_amf0::Amf0Value::Number(640.0));
    assert_eq!(props["height"], rml_amf0::Amf0Value::Number(360.0));
    assert_eq!(props["framerate"], rml_amf0::Amf0Value::Number(25.0));

    assert!(avc.sequence_header && avc.kind == MediaKind::Video);
    let record = AvcDecoderConfig::parse(&avc.payload.to_vec()[5..]).unwrap();
    let sps = Sps::parse(&record.sps[0]).unwrap();
    assert_eq!((sps.width, sps.height, sps.profile_idc), (640, 360, 66));

    assert!(aac.sequence_header && aac.kind == MediaKind::Audio);
    let asc = AudioSpecificConfig::parse(&aac.payload.to_vec()[2..]).unwrap();
    assert_eq!(
        asc,
        AudioSpecificConfig {
            object_type: 2,
            sample_rate: 48000,
            channels: 2
        }
    );
    assert!(frames[3].1.keyframe, "the first sample is a keyframe");
}

#[test]
fn frames_come_in_order_at_the_fixture_rate_with_keyframes_every_2s() {
    let (_pool, mut w) = writer();
    let mut src = FileSource::from_bytes("demo", fixture("demo.mp4")).unwrap();
    assert_eq!(src.loop_duration(), Duration::from_secs(6));
    let frames = collect(&mut src, &mut w, 6000);
    let video: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f.kind == MediaKind::Video && !f.sequence_header)
        .collect();
    let audio: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f.kind == MediaKind::Audio && !f.sequence_header)
        .collect();
    assert_eq!(video.len(), 150, "6 s at 25 fps");
    for (i, (due, f)) in video.iter().enumerate() {
        assert_eq!(u64::from(f.timestamp), *due);
        assert_eq!(f.timestamp, i as u32 * 40);
        assert_eq!(f.keyframe, i % 50 == 0, "frame {i}");
    }
    // AAC at 48 kHz: 1024 samples a frame, 21.33 ms.
    assert!((280..=283).contains(&audio.len()), "{}", audio.len());
    assert!(frames.windows(2).all(|p| p[0].0 <= p[1].0), "decode order");
}

#[test]
fn looping_keeps_timestamps_increasing() {
    let (_pool, mut w) = writer();
    let mut src = FileSource::from_bytes("demo", fixture("demo.mp4")).unwrap();
    let frames = collect(&mut src, &mut w, 15_000);
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let ts: Vec<u32> = frames
            .iter()
            .filter(|(_, f)| f.kind == kind && !f.sequence_header)
            .map(|(_, f)| f.timestamp)
            .collect();
        assert!(
            ts.windows(2).all(|p| p[0] < p[1]),
            "{kind:?} timestamps strictly increase"
        );
    }
    let keys: Vec<u32> = frames
        .iter()
        .filter(|(_, f)| f.keyframe)
        .map(|(_, f)| f.timestamp)
        .collect();
    assert_eq!(
        keys,
        vec![0, 2000, 4000, 6000, 8000, 10000, 12000, 14000],
        "the second loop starts 40 ms after 5960"
    );
    assert_eq!(
        frames.iter().filter(|(_, f)| f.sequence_header).count(),
        2,
        "headers only at start"
    );
}

#[test]
fn b_frame_file_carries_composition_offsets() {
    let (_pool, mut w) = writer();
    let mut src = FileSource::from_bytes("high", fixture("h264-high-aac.mp4")).unwrap();
    let frames = collect(&mut src, &mut w, 4000);
    let video: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f.kind == MediaKind::Video && !f.sequence_header)
        .collect();
    let cts: Vec<i32> = video
        .iter()
        .map(|(_, f)| {
            classify_message(MediaKind::Video, &f.payload)
                .unwrap()
                .composition_time
        })
        .collect();
    assert!(cts.iter().any(|&c| c > 0), "pts != dts somewhere");
    assert!(cts.iter().all(|&c| c >= 0));
    assert!(
        video
            .windows(2)
            .all(|p| p[0].1.timestamp < p[1].1.timestamp),
        "dts increases"
    );
    assert!(
        video.iter().any(|(_, f)| f.disposable),
        "non-reference B frames are marked disposable"
    );
    assert_eq!(src.avc_config().unwrap().profile_indication, 100);
}

#[test]
fn video_only_file_has_no_audio_header() {
    let (_pool, mut w) = writer();
    let mut src = FileSource::from_bytes("noaudio", fixture("h264-baseline-noaudio.mp4")).unwrap();
    let frames = collect(&mut src, &mut w, 1000);
    assert!(frames.iter().all(|(_, f)| f.kind != MediaKind::Audio));
    assert!(src.audio_config().is_none());
}

#[test]
fn garbage_is_an_error() {
    assert!(FileSource::from_bytes("junk", vec![0u8; 100]).is_err());
    assert!(FileSource::from_bytes("junk", Vec::new()).is_err());
    assert!(matches!(
        FileSource::open("missing", "/nonexistent.mp4"),
        Err(SourceError::Io { .. })
    ));
}

/// The denial-of-service inputs fuzzing found (`fuzz/regressions/mp4_file_source/`, each
/// named after its quirk) are refused by the structural check, quickly: before this check,
/// `mp4` 0.14 hung, panicked or allocated GiBs on them, or `from_bytes` walked 2^32 samples.
#[test]
fn fuzz_regressions_are_malformed_errors_within_a_second() {
    let dir = format!(
        "{}/fuzz/regressions/mp4_file_source",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 9, "{files:?}");
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let start = std::time::Instant::now();
        let result = FileSource::from_bytes("regression", bytes);
        let elapsed = start.elapsed();
        let file = path.file_name().unwrap().to_string_lossy();
        let err = result.expect_err(&file);
        assert!(err.is_malformed(), "{file}: {err}");
        assert!(elapsed < Duration::from_secs(1), "{file}: {elapsed:?}");
        assert!(err.to_string().contains("\"regression\""), "{file}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn run_paces_frames_in_real_time_through_the_hub() {
    let hub = Hub::new(HubConfig::default());
    let (_pool, w) = writer();
    let mut player = hub.play("demo").unwrap();
    let publisher = hub.publish("demo", SourceKind::File).unwrap();
    let src = FileSource::from_bytes("demo", fixture("demo.mp4")).unwrap();
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(src.run(publisher, w));
    let mut last_video = 0;
    loop {
        let Some(PlayerItem::Frame(f)) = player.next().await else {
            continue;
        };
        let elapsed = start.elapsed().as_millis() as i64;
        assert!(
            (elapsed - i64::from(f.timestamp)).abs() <= 5,
            "ts {} at {elapsed} ms",
            f.timestamp
        );
        if f.kind == MediaKind::Video {
            last_video = f.timestamp;
        }
        if last_video >= 13_000 {
            break;
        }
    }
    hub.shutdown();
    assert!(
        task.await.unwrap().is_ok(),
        "the source stops cleanly at shutdown"
    );
}
