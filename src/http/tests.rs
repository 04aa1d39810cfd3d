//! The exposition's grammar and escaping, the rate meter, and the snapshot join.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::metrics::{self, escape_label_value, Exposition, Family, Kind};
use super::rates::{RateKey, RateMeter};
use super::view::{Inputs, RtmpTotals, Snapshot};
use crate::hub::{DropCounts, PlayerStats, SourceKind, StreamStats as HubStream};
use crate::pages::{PoolStats, StreamStats as PageStream};
use crate::status::{CameraStatus, TranscoderStatus};

#[test]
fn label_values_and_help_are_escaped() {
    let mut out = String::new();
    escape_label_value("a\\b\"c\nd", &mut out);
    assert_eq!(out, r#"a\\b\"c\nd"#);
    let mut x = Exposition::default();
    let mut f = Family::new("moment_x_total", Kind::Counter, "line\\one\ntwo");
    f.sample(&[("stream", "we\"ird\n")], 3u64);
    x.add(f);
    x.add(Family::new("moment_empty", Kind::Gauge, "left out"));
    let mut f = Family::new("moment_f", Kind::Gauge, "floats");
    f.sample(&[], f64::NAN)
        .sample(&[("k", "inf")], f64::INFINITY)
        .sample(&[("k", "half")], 0.5);
    x.add(f);
    assert_eq!(
        x.finish(),
        "# HELP moment_x_total line\\\\one\\ntwo\n# TYPE moment_x_total counter\n\
         moment_x_total{stream=\"we\\\"ird\\n\"} 3\n\
         # HELP moment_f floats\n# TYPE moment_f gauge\nmoment_f NaN\nmoment_f{k=\"inf\"} +Inf\n\
         moment_f{k=\"half\"} 0.5\n"
    );
    assert!(metrics::valid_name("moment_a:b_1"));
    assert!(
        !metrics::valid_name("1moment") && !metrics::valid_name("a-b") && !metrics::valid_name("")
    );
}

#[test]
fn rate_is_the_increase_over_the_window_and_restarts_when_a_counter_goes_down() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let key = RateKey::StreamIn("s".into());
    let mut m = RateMeter::new(Duration::from_secs(5));
    m.sample(at(0), [(key.clone(), 0)]);
    assert_eq!(m.rate(&key), None, "one sample is no rate");
    for s in 1..=10 {
        m.sample(at(s), [(key.clone(), s * 1000)]);
    }
    assert_eq!(m.rate(&key), Some(1000.0));
    // A burst shows in the 5-second average, then ages out.
    m.sample(at(11), [(key.clone(), 11_000 + 5000)]);
    assert_eq!(m.rate(&key), Some(2000.0));
    for s in 12..=17 {
        m.sample(at(s), [(key.clone(), s * 1000 + 5000)]);
    }
    assert_eq!(m.rate(&key), Some(1000.0));
    // The stream was re-created: its counter restarts, and so does the series.
    m.sample(at(18), [(key.clone(), 10)]);
    assert_eq!(m.rate(&key), None);
    m.sample(at(19), [(key.clone(), 510)]);
    assert_eq!(m.rate(&key), Some(500.0));
    // A key missing from a round is forgotten.
    m.sample(at(20), [(RateKey::PlayerOut(1), 0)]);
    assert_eq!(m.rate(&key), None);
    assert_eq!(m.len(), 1);
}

fn inputs() -> Inputs {
    let hub = HubStream {
        name: "cam\"1".into(),
        source: Some(SourceKind::Rtsp),
        publishing: true,
        players: 1,
        saver_frames: 3,
        saver_bytes: 300,
        frames_in: 10,
        bytes_in: 1000,
        dropped: DropCounts {
            inter: 2,
            ..DropCounts::default()
        },
        video_codec: Some("h264".into()),
        video_width: Some(640),
        video_height: Some(360),
        uptime_ms: Some(1500),
        ingest_dropped: 1,
        ..HubStream::default()
    };
    let player = PlayerStats {
        id: 7,
        frames_sent: 9,
        bytes_sent: 900,
        ..PlayerStats::default()
    };
    let page = |name: &str, held| PageStream {
        name: name.into(),
        held_bytes: held,
        live_bytes: held / 2,
        budget_bytes: 1 << 20,
    };
    let mut cameras = BTreeMap::new();
    cameras.insert(
        "cam\"1".to_owned(),
        CameraStatus {
            connected: true,
            ..CameraStatus::default()
        },
    );
    cameras.insert(
        "down".to_owned(),
        CameraStatus {
            last_error: Some("connection refused".into()),
            reconnects: 4,
            ..CameraStatus::default()
        },
    );
    let mut transcoders = BTreeMap::new();
    transcoders.insert(
        "cam\"1".to_owned(),
        vec![TranscoderStatus {
            name: "aac".into(),
            dropped_frames: 5,
            ..TranscoderStatus::default()
        }],
    );
    Inputs {
        hub: vec![(hub, vec![player])],
        // A republished stream: two accounts under one name, and one stream only in pages.
        pages: vec![
            page("cam\"1", 8192),
            page("cam\"1", 4096),
            page("gone", 8192),
        ],
        pool: PoolStats {
            held_bytes: 20480,
            ..PoolStats::default()
        },
        cameras,
        transcoders,
        rtmp: RtmpTotals {
            connections: 3,
            players: 1,
            ..RtmpTotals::default()
        },
        http_connections: 1,
        uptime_s: 2.5,
        records: Vec::new(),
        hls: Vec::new(),
        hls_counters: None,
    }
}

#[test]
fn snapshot_joins_hub_pages_cameras_and_transcoders_by_name() {
    let snap = Snapshot::build(inputs(), &RateMeter::new(Duration::from_secs(5)));
    let names: Vec<_> = snap.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["cam\"1", "down", "gone"]);
    let cam = &snap.streams[0];
    assert_eq!(cam.source, Some("camera"));
    assert_eq!(cam.pages.held_bytes, 12288);
    assert_eq!(cam.dropped.inter, 2);
    assert_eq!(cam.dropped.ingest, 1);
    assert_eq!(cam.players[0].bitrate_out_bps, None);
    assert_eq!(cam.transcoders.len(), 1);
    let down = &snap.streams[1];
    assert_eq!((down.source, down.publishing), (Some("camera"), false));
    assert_eq!(down.camera.as_ref().unwrap().reconnects, 4);
    assert_eq!(snap.streams[2].camera, None);
    assert_eq!(snap.totals.transcoder_dropped_frames, 5);

    let json = serde_json::to_value(cam).unwrap();
    assert_eq!(json["video"]["width"], 640);
    assert_eq!(json["camera"]["connected"], true);
    assert_eq!(json["transcoders"][0]["name"], "aac");
    assert!(serde_json::to_value(&snap.streams[2]).unwrap()["camera"].is_null());

    let text = metrics::render(&snap);
    assert!(
        text.contains("moment_stream_video_width_pixels{stream=\"cam\\\"1\"} 640\n"),
        "{text}"
    );
    assert!(
        text.contains("moment_camera_reconnects_total{stream=\"down\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("moment_transcoders_dropped_frames_total 5\n"),
        "{text}"
    );
    assert!(
        text.contains("moment_connections{protocol=\"rtmp\",role=\"other\"} 2\n"),
        "{text}"
    );
    assert!(text
        .contains("moment_stream_dropped_frames_total{stream=\"cam\\\"1\",reason=\"ingest\"} 1\n"));
    // One HELP and one TYPE per family, each before its samples.
    let mut seen = std::collections::HashSet::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap();
            assert!(seen.insert(current.to_owned()), "TYPE twice: {current}");
        } else if !line.starts_with('#') {
            assert!(
                line.starts_with(current),
                "{line} outside its family {current}"
            );
        }
    }
}
