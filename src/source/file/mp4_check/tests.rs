//! The check against the committed fixtures (accepted, with the same samples `mp4` reads)
//! and against hand-made malformed boxes.

use super::*;
use std::io::Cursor;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const FIXTURES: [&str; 5] = [
    "demo.mp4",
    "h264-baseline-aac.mp4",
    "h264-baseline-noaudio.mp4",
    "h264-high-aac.mp4",
    "h264-main-3mbps-aac.mp4",
];

/// Our one-pass sample walk describes every sample exactly as `mp4`'s `read_sample` does
/// (on trusted files, where `read_sample` is safe).
#[test]
fn fixture_samples_match_mp4_read_sample() {
    for f in FIXTURES {
        let bytes = fixture(f);
        let tracks = check(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        let size = bytes.len() as u64;
        let mut reader = mp4::Mp4Reader::read_header(Cursor::new(&bytes[..]), size).unwrap();
        assert_eq!(tracks.len(), reader.tracks().len(), "{f}");
        for t in &tracks {
            let mt = &reader.tracks()[&t.track_id];
            assert_eq!(t.timescale, mt.timescale());
            assert_eq!(t.sample_count(), u64::from(mt.sample_count()));
            let samples: Vec<SampleInfo> = t.samples().collect();
            assert_eq!(samples.len() as u64, t.sample_count());
            for (i, s) in samples.iter().enumerate() {
                let m = reader
                    .read_sample(t.track_id, i as u32 + 1)
                    .unwrap()
                    .unwrap();
                let at = format!("{f} track {} sample {}", t.track_id, i + 1);
                assert_eq!(s.start_time, m.start_time, "{at}");
                assert_eq!(s.duration, m.duration, "{at}");
                assert_eq!(s.rendering_offset, m.rendering_offset, "{at}");
                assert_eq!(s.is_sync, m.is_sync, "{at}");
                let range = s.offset as usize..s.offset as usize + s.size as usize;
                assert_eq!(&bytes[range], &m.bytes[..], "{at}");
            }
        }
    }
}

fn bx(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend_from_slice(body);
    v
}

fn what(file: &[u8]) -> String {
    check(file).unwrap_err().to_string()
}

#[test]
fn zero_size_box_is_refused_except_a_last_top_level_mdat() {
    let mut moov = bx(b"moov", &[0, 0, 0, 0, b'f', b'r', b'e', b'e']);
    assert!(what(&moov).contains("size 0"), "{}", what(&moov));
    moov.truncate(0);
    moov.extend(bx(b"ftyp", b"isom\0\0\0\0"));
    moov.extend([0, 0, 0, 0]);
    moov.extend(b"mdat anything");
    assert!(check(&moov).unwrap().is_empty());
    let free0 = [0, 0, 0, 0, b'f', b'r', b'e', b'e'];
    assert!(what(&free0).contains("size 0"));
}

#[test]
fn boxes_must_fit_their_parent_and_tile_it() {
    // A child declaring 100 bytes in a 16-byte moov.
    let mut moov = bx(b"moov", &bx(b"free", &[0; 8]));
    moov[11] = 100;
    assert!(
        what(&moov).contains("runs past its parent"),
        "{}",
        what(&moov)
    );
    // 4 bytes left over after the last child.
    let moov = bx(b"moov", &[bx(b"free", &[]), vec![0; 4]].concat());
    assert!(what(&moov).contains("4 trailing bytes"), "{}", what(&moov));
    // Sizes 2..=7 and 64-bit sizes inside moov.
    let moov = bx(b"moov", &[0, 0, 0, 4, b'f', b'r', b'e', b'e']);
    assert!(what(&moov).contains("smaller than its header"));
    let moov = bx(
        b"moov",
        &[0, 0, 0, 1, b'f', b'r', b'e', b'e', 0, 0, 0, 0, 0, 0, 0, 16],
    );
    assert!(what(&moov).contains("64-bit"));
    // A top-level box past the end of the file.
    let mut free = bx(b"free", &[0; 8]);
    free[3] = 200;
    assert!(what(&free).contains("runs past"));
}

#[test]
fn error_names_the_box_path_and_offset() {
    let file = [
        bx(b"ftyp", b"isom\0\0\0\0"),
        bx(b"moov", &bx(b"udta", &[0; 3])),
    ]
    .concat();
    let e = check(&file).unwrap_err();
    assert_eq!(e.path, "moov/udta");
    assert_eq!(e.offset, 16 + 8 + 8);
    assert!(e.what.contains("3 trailing bytes"), "{e}");
}

#[test]
fn meta_children_and_emsg_strings_are_bounded() {
    // meta (version 0) whose hdlr is too short for its fields.
    let meta = bx(b"meta", &[vec![0; 4], bx(b"hdlr", &[0; 10])].concat());
    let e = check(&bx(b"moov", &meta)).unwrap_err();
    assert_eq!(e.path, "moov/meta/hdlr", "{e}");
    // emsg v0 with an unterminated string.
    assert!(what(&bx(b"emsg", &[0, 0, 0, 0, b'a', b'b'])).contains("string"));
    // emsg v0 with both strings but no room for the fields after them.
    assert!(what(&bx(b"emsg", &[0, 0, 0, 0, b'a', 0, 0, 1, 2])).contains("fields"));
    let ok = bx(
        b"emsg",
        &[&[0u8, 0, 0, 0, b'a', 0, 0][..], &[0; 16]].concat(),
    );
    assert!(check(&ok).is_ok());
}

#[test]
fn fragmented_files_and_second_moov_are_refused() {
    assert!(what(&bx(b"moof", &[])).contains("fragmented"));
    assert!(what(&[bx(b"moov", &[]), bx(b"moov", &[])].concat()).contains("second moov"));
}
