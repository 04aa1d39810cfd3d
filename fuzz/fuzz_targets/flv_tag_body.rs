//! FLV tag bodies: `classify`, `classify_slices`, `Frame::from_tag_body` over paged messages,
//! `strip_set_data_frame` and `is_on_metadata`.
//!
//! Input (structured with `Unstructured`): the media kind, the page mode, up to 8 split points, the sizes of
//! up to 4 messages written to the same stream first (so the body starts at a fuzzer-chosen
//! offset in a 1 KiB page, paged or contiguous, and spans pages at varying places), then the body.
//!
//! Invariants:
//! - `classify_slices` on the body cut at the split points equals `classify` on the whole,
//!   error or not;
//! - `Frame::from_tag_body` on the body written into pages fails exactly when `classify` does
//!   and otherwise carries its flags; `codec()` agrees; the payload reads back as the body;
//!   `is_metadata()` is true exactly for a data body starting with "onMetaData";
//! - a classified tag is never both a key frame and a sequence header; data tags have no
//!   codec, audio/video tags have one; a sequence header has composition time 0, and the
//!   composition time fits in 24 signed bits;
//! - `strip_set_data_frame` removes exactly the 16-byte AMF0 string "@setDataFrame";
//!   `is_on_metadata` is a prefix test for the 13-byte AMF0 string "onMetaData".
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use moment::media::{
    classify, classify_slices, is_on_metadata, strip_set_data_frame, Frame, MediaKind,
};
use moment::pages::{PageMode, PagePool, PoolConfig};

const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

fn check(mut u: Unstructured<'_>) -> Result<()> {
    let kind = *u.choose(&[MediaKind::Audio, MediaKind::Video, MediaKind::Data])?;
    let mode = *u.choose(&[PageMode::Paged, PageMode::Contiguous])?;
    let mut splits = Vec::new();
    for _ in 0..u.int_in_range(0..=8u8)? {
        splits.push(usize::from(u.arbitrary::<u16>()?));
    }
    let mut before = Vec::new();
    for _ in 0..u.int_in_range(0..=4u8)? {
        before.push(usize::from(u.int_in_range(0..=3000u16)?));
    }
    let mut body = u.take_rest().to_vec();
    if kind == MediaKind::Data && splits.len() % 2 == 1 {
        // Often a metadata body, to reach the prefix checks past their first byte.
        let prefix = if splits.len() == 1 {
            SET_DATA_FRAME
        } else {
            ON_METADATA
        };
        body.splice(0..0, prefix.iter().copied());
    }

    let whole = classify(kind, &body);
    for split in &mut splits {
        *split %= body.len() + 1;
    }
    splits.sort_unstable();
    let mut parts = Vec::new();
    let mut start = 0;
    for &s in &splits {
        parts.push(&body[start..s]);
        start = s;
    }
    parts.push(&body[start..]);
    assert_eq!(classify_slices(kind, &parts), whole, "splits {splits:?}");

    if let Ok(info) = &whole {
        assert!(!(info.keyframe && info.sequence_header), "{info:?}");
        assert_eq!(info.codec.is_none(), kind == MediaKind::Data, "{info:?}");
        if info.sequence_header {
            assert_eq!(info.composition_time, 0);
        }
        assert!((-(1 << 23)..(1 << 23)).contains(&info.composition_time));
    }

    let pool = PagePool::new(PoolConfig {
        mode,
        page_size: PoolConfig::MIN_PAGE_SIZE,
        ..PoolConfig::default()
    });
    let mut w = pool.writer("fuzz", 1 << 24);
    let mut keep = Vec::new();
    for n in before {
        keep.push(w.write(&[&vec![0x55; n]]).unwrap());
    }
    let msg = w.write(&parts).unwrap();
    assert_eq!(msg.to_vec(), body);
    match Frame::from_tag_body(kind, 0, msg) {
        Ok(frame) => {
            let info = whole.as_ref().expect("a frame where classify failed");
            assert_eq!(frame.keyframe, info.keyframe);
            assert_eq!(frame.sequence_header, info.sequence_header);
            assert_eq!(frame.disposable, info.disposable);
            assert_eq!(frame.codec(), info.codec);
            assert_eq!(
                frame.is_metadata(),
                kind == MediaKind::Data && is_on_metadata(&body),
                "is_metadata of a {}-byte body starting {:?} in slices of {:?} bytes",
                body.len(),
                &body[..body.len().min(16)],
                frame.payload.slices().map(|s| s.len()).collect::<Vec<_>>()
            );
        }
        Err(e) => assert_eq!(Err(e), whole),
    }

    assert_eq!(is_on_metadata(&body), body.starts_with(ON_METADATA));
    match strip_set_data_frame(&body) {
        Some(rest) => {
            assert_eq!(rest.len() + SET_DATA_FRAME.len(), body.len());
            assert_eq!(&body[..SET_DATA_FRAME.len()], SET_DATA_FRAME);
            assert_eq!(&body[SET_DATA_FRAME.len()..], rest);
        }
        None => assert!(!body.starts_with(SET_DATA_FRAME)),
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(Unstructured::new(data));
});
