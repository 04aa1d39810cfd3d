//! The H.264 track of a committed MP4 fixture, as the server would see it from RTMP: the
//! avcC record and AVCC access units with presentation times. Shared by `tests/h264.rs` and
//! `benches/video.rs` (included with `#[path]`).

use std::io::BufReader;

use codecs::h264::AvcConfig;

/// One access unit.
#[derive(Debug, Clone)]
pub struct Sample {
    pub data: Vec<u8>,
    pub pts_ms: i64,
    pub keyframe: bool,
}

/// A fixture's video track.
#[derive(Debug, Clone)]
pub struct Video {
    pub config: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// In decode order.
    pub samples: Vec<Sample>,
}

pub fn fixture_path(name: &str) -> String {
    format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Reads `fixtures/{name}`'s video track.
pub fn load(name: &str) -> Video {
    let path = fixture_path(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let size = file.metadata().unwrap().len();
    let mut reader = mp4::Mp4Reader::read_header(BufReader::new(file), size).unwrap();
    let (id, track) = reader
        .tracks()
        .iter()
        .find(|(_, t)| matches!(t.track_type(), Ok(mp4::TrackType::Video)))
        .map(|(id, t)| (*id, t))
        .expect("a video track");
    let avcc = &track
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .avc1
        .as_ref()
        .expect("avc1")
        .avcc;
    let config = AvcConfig {
        profile: avcc.avc_profile_indication,
        compatibility: avcc.profile_compatibility,
        level: avcc.avc_level_indication,
        nal_length_size: avcc.length_size_minus_one + 1,
        sps: avcc
            .sequence_parameter_sets
            .iter()
            .map(|n| n.bytes.clone())
            .collect(),
        pps: avcc
            .picture_parameter_sets
            .iter()
            .map(|n| n.bytes.clone())
            .collect(),
    }
    .to_record();
    let timescale = i64::from(track.timescale());
    let (width, height) = (u32::from(track.width()), u32::from(track.height()));
    let mut samples = Vec::new();
    for n in 1..=reader.sample_count(id).unwrap() {
        let s = reader.read_sample(id, n).unwrap().expect("sample");
        let pts = s.start_time as i64 + i64::from(s.rendering_offset);
        samples.push(Sample {
            data: s.bytes.to_vec(),
            pts_ms: pts * 1000 / timescale,
            keyframe: s.is_sync,
        });
    }
    Video {
        config,
        width,
        height,
        samples,
    }
}
