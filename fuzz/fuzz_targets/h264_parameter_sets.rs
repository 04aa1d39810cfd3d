//! H.264 framing and parameter sets in `codecs::h264`: `AvcConfig::parse`/`to_record`,
//! `avcc_to_annexb`, `annexb_to_avcc`, `sps::parse_sps`, and `Decoder::configure`.
//!
//! These run on what a peer sends before any picture: FLV's AVC sequence header, an RTSP
//! camera's SDP/SPS (which may lie), and the length prefixes of every access unit.
//!
//! The first input byte picks a mode:
//! - raw (even): the rest is tried as an avcC record; if it parses, `to_record` gives back
//!   the bytes it came from (up to the reserved bits) and parses to an equal value, every SPS
//!   in it goes through `parse_sps`, and `Decoder::configure` (limits 256x256) succeeds only
//!   if every SPS parses, fits and is 8-bit 4:2:0. The rest is also an access unit for
//!   `avcc_to_annexb` with each NAL length size 1..=4, checked against a model (and on error
//!   `out` is unchanged), whose Annex B goes back through `annexb_to_avcc`; and it is Annex B
//!   for `annexb_to_avcc`, and an SPS (type-7 header forced) for `parse_sps`.
//! - generated (odd): an SPS is written from fuzzer-chosen syntax elements (profiles with
//!   and without the high-profile branch, chroma formats, bit depths, scaling lists, POC
//!   types, interlace, cropping, a VUI with range and timing, large exp-Golomb values), with
//!   emulation prevention; `parse_sps` must return exactly what the spec (7.4.2.1.1, E.2.1)
//!   computes, or fail exactly when a field is out of range.
//!
//! Invariants: no panic; the above; a parsed SPS has 1 ≤ width ≤ coded width (a multiple of
//! 16), the same for heights, and a frame rate in 1..=240 if any; `annexb_to_avcc` output
//! is 4-byte AVCC of non-empty NAL units without start codes or trailing zeros, no longer
//! in payload than its input.
#![no_main]

use codecs::h264::nal::avcc_nal_units;
use codecs::h264::sps::{parse_sps, SpsInfo};
use codecs::h264::{annexb_to_avcc, avcc_to_annexb, AvcConfig, Decoder, DecoderLimits, H264Error};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "common/sps_writer.rs"]
mod sps_writer;
use sps_writer::{escape, ue_value, BitWriter, HIGH_PROFILES};

const LIMITS: DecoderLimits = DecoderLimits {
    max_width: 256,
    max_height: 256,
};

fn check_sps(info: &SpsInfo) {
    assert!(
        info.width >= 1 && info.width <= info.coded_width,
        "{info:?}"
    );
    assert!(
        info.height >= 1 && info.height <= info.coded_height,
        "{info:?}"
    );
    assert!(
        info.coded_width % 16 == 0 && info.coded_height % 16 == 0,
        "{info:?}"
    );
    assert!(info.chroma_format_idc <= 3, "{info:?}");
    assert!((8..=14).contains(&info.bit_depth_luma), "{info:?}");
    assert!((8..=14).contains(&info.bit_depth_chroma), "{info:?}");
    if let Some(fps) = info.frame_rate {
        assert!((1.0..=240.0).contains(&fps), "{info:?}");
    }
}

/// Whether `Decoder::configure` may accept an SPS: what `DecoderLimits::check_sps` says.
fn decodable(info: &SpsInfo) -> bool {
    info.width <= 256
        && info.height <= 256
        && info.coded_width <= 256
        && info.coded_height <= 256
        && info.chroma_format_idc == 1
        && info.bit_depth_luma == 8
        && info.bit_depth_chroma == 8
}

fn check_record(data: &[u8]) {
    let Ok(rec) = AvcConfig::parse(data) else {
        return;
    };
    assert!(matches!(rec.nal_length_size, 1 | 2 | 4));
    assert!((1..=31).contains(&rec.sps.len()) && (1..=255).contains(&rec.pps.len()));
    assert!(rec
        .sps
        .iter()
        .all(|s| s.first().map(|b| b & 0x1f) == Some(7)));
    assert!(rec
        .pps
        .iter()
        .all(|s| s.first().map(|b| b & 0x1f) == Some(8)));
    let bytes = rec.to_record();
    assert_eq!(AvcConfig::parse(&bytes).as_ref(), Ok(&rec));
    // The bytes it came from, except the reserved bits (6 before lengthSizeMinusOne, 3
    // before numOfSequenceParameterSets) and whatever follows (the high-profile extension).
    let mut expect = data[..bytes.len()].to_vec();
    expect[4] |= 0xfc;
    expect[5] |= 0xe0;
    assert_eq!(bytes, expect);

    let infos: Vec<_> = rec.sps.iter().map(|s| parse_sps(s)).collect();
    for info in infos.iter().flatten() {
        check_sps(info);
    }
    let all_ok = infos.iter().all(|i| i.as_ref().is_ok_and(decodable));
    let mut decoder = Decoder::new(LIMITS).unwrap();
    match decoder.configure(data) {
        Ok(()) => {
            assert!(all_ok, "configure accepted {infos:?}");
            assert_eq!(decoder.config_record(), Some(data));
            assert_eq!(decoder.sps(), infos.last().unwrap().as_ref().ok());
            // The same record again is a no-op.
            decoder.configure(data).unwrap();
        }
        // openh264 may refuse parameter sets our parser takes.
        Err(H264Error::Decode(_)) => {}
        Err(e) => {
            assert!(!all_ok, "configure refused {infos:?}: {e}");
            assert!(e.is_recoverable() || matches!(e, H264Error::Unsupported(_)));
            assert_eq!(decoder.config_record(), None);
        }
    }
}

/// The NAL units of an AVCC buffer, as the spec's framing says; `None` if a length is wrong.
fn model_avcc(data: &[u8], size: usize) -> Option<Vec<&[u8]>> {
    if !matches!(size, 1 | 2 | 4) {
        return data.is_empty().then(Vec::new);
    }
    let mut rest = data;
    let mut nals = Vec::new();
    while !rest.is_empty() {
        if rest.len() < size {
            return None;
        }
        let len = rest[..size]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        rest = &rest[size..];
        if rest.len() < len {
            return None;
        }
        if len > 0 {
            nals.push(&rest[..len]);
        }
        rest = &rest[len..];
    }
    Some(nals)
}

/// A NAL unit that survives Annex B unchanged: no start code inside, no trailing zero.
fn clean(nal: &[u8]) -> bool {
    nal.last() != Some(&0) && !nal.windows(3).any(|w| w == [0, 0, 1])
}

/// Checks `avcc` is what `annexb_to_avcc` may produce from `input`.
fn check_annexb_output(avcc: &[u8], input_len: usize) {
    let nals: Vec<&[u8]> = avcc_nal_units(avcc, 4).map(|n| n.unwrap()).collect();
    assert_eq!(avcc.len(), nals.iter().map(|n| n.len() + 4).sum::<usize>());
    assert!(nals.iter().all(|n| clean(n)), "{avcc:02x?}");
    assert!(nals.iter().map(|n| n.len()).sum::<usize>() <= input_len);
}

fn framing(data: &[u8], prefix: u8) {
    for size in 1..=4u8 {
        let mut out = vec![prefix; usize::from(prefix % 4)];
        let before = out.clone();
        let result = avcc_to_annexb(data, size, &mut out);
        match model_avcc(data, usize::from(size)) {
            Some(nals) => {
                result.unwrap_or_else(|e| panic!("size {size}: {e}"));
                let mut expect = before.clone();
                for n in &nals {
                    expect.extend_from_slice(&[0, 0, 0, 1]);
                    expect.extend_from_slice(n);
                }
                assert_eq!(out, expect, "size {size}");
                let mut back = before.clone();
                annexb_to_avcc(&out[before.len()..], &mut back);
                assert_eq!(&back[..before.len()], &before[..]);
                check_annexb_output(&back[before.len()..], out.len() - before.len());
                if nals.iter().all(|n| clean(n)) {
                    let mut four = before.clone();
                    for n in &nals {
                        four.extend_from_slice(&(n.len() as u32).to_be_bytes());
                        four.extend_from_slice(n);
                    }
                    assert_eq!(back, four, "size {size}");
                }
            }
            None => {
                assert!(result.is_err(), "size {size}");
                assert_eq!(out, before, "size {size}: out changed on error");
            }
        }
    }
    let mut avcc = Vec::new();
    annexb_to_avcc(data, &mut avcc);
    check_annexb_output(&avcc, data.len());
}

fn raw(data: &[u8]) {
    check_record(data);
    framing(data, data.first().copied().unwrap_or(0));
    let mut nal = data.to_vec();
    if let Some(b) = nal.first_mut() {
        *b = (*b & 0xe0) | 7;
    }
    if let Ok(info) = parse_sps(&nal) {
        check_sps(&info);
    }
}

/// The parser refuses exp-Golomb codes with more than 30 leading zeros (values ≥ 2^31 − 1).
const UE_MAX: u32 = (1 << 31) - 2;

fn generated(u: &mut Unstructured<'_>) -> Result<()> {
    let mut w = BitWriter::default();
    // Out of range or refused: the parse must fail.
    let mut invalid = false;
    let profile: u8 = if u.arbitrary()? {
        *u.choose(&HIGH_PROFILES)?
    } else {
        *u.choose(&[66u8, 77, 88])?
    };
    let level: u8 = u.arbitrary()?;
    w.bits(8, profile.into());
    w.bits(8, u.arbitrary::<u8>()?.into());
    w.bits(8, level.into());
    let sps_id = ue_value(u, 31)?;
    invalid |= sps_id > 31;
    w.ue(sps_id);
    let (mut chroma_format_idc, mut separate, mut depth_y, mut depth_c) = (1, false, 8, 8);
    if HIGH_PROFILES.contains(&profile) {
        chroma_format_idc = u.int_in_range(0..=4)?;
        invalid |= chroma_format_idc > 3;
        w.ue(chroma_format_idc);
        if chroma_format_idc == 3 {
            separate = u.arbitrary()?;
            w.bit(separate);
        }
        let (dy, dc) = (u.int_in_range(0..=7)?, u.int_in_range(0..=7)?);
        invalid |= dy > 6 || dc > 6;
        w.ue(dy);
        w.ue(dc);
        (depth_y, depth_c) = (dy + 8, dc + 8);
        w.bit(u.arbitrary()?); // qpprime_y_zero_transform_bypass_flag
        let matrix: bool = u.arbitrary()?;
        w.bit(matrix);
        if matrix {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                let present: bool = u.arbitrary()?;
                w.bit(present);
                if present {
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..if i < 6 { 16 } else { 64 } {
                        if next != 0 {
                            let delta = u.int_in_range(-128..=127)?;
                            w.se(delta);
                            next = (last + delta).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    w.ue(u.int_in_range(0..=12)?); // log2_max_frame_num_minus4
    let poc_type = u.int_in_range(0..=3)?;
    invalid |= poc_type > 2;
    w.ue(poc_type);
    match poc_type {
        0 => w.ue(u.int_in_range(0..=12)?),
        1 => {
            w.bit(u.arbitrary()?);
            w.se(u.int_in_range(1 - (1 << 30)..=(1 << 30) - 1)?);
            w.se(u.int_in_range(1 - (1 << 30)..=(1 << 30) - 1)?);
            let cycle = u.int_in_range(0..=300)?;
            invalid |= cycle > 255;
            w.ue(cycle);
            for _ in 0..cycle.min(256) {
                w.se(u.int_in_range(-1000..=1000)?);
            }
        }
        _ => {}
    }
    w.ue(u.int_in_range(0..=16)?); // max_num_ref_frames
    w.bit(u.arbitrary()?); // gaps_in_frame_num_value_allowed_flag
    let width_mbs_minus1 = ue_value(u, 32)?;
    let height_units_minus1 = ue_value(u, 32)?;
    w.ue(width_mbs_minus1);
    w.ue(height_units_minus1);
    let frame_mbs_only: bool = u.arbitrary()?;
    w.bit(frame_mbs_only);
    if !frame_mbs_only {
        w.bit(u.arbitrary()?); // mb_adaptive_frame_field_flag
    }
    w.bit(u.arbitrary()?); // direct_8x8_inference_flag
    let cropping: bool = u.arbitrary()?;
    w.bit(cropping);
    let mut crop = [0u32; 4];
    if cropping {
        for c in &mut crop {
            *c = ue_value(u, 16)?;
            w.ue(*c);
        }
    }
    invalid |= [width_mbs_minus1, height_units_minus1]
        .iter()
        .chain(&crop)
        .any(|&v| v > UE_MAX);
    // VUI: range and timing are what the parser keeps.
    let (mut full_range, mut frame_rate) = (false, None);
    let vui: bool = u.arbitrary()?;
    w.bit(vui);
    if vui {
        let aspect: bool = u.arbitrary()?;
        w.bit(aspect);
        if aspect {
            let idc: u8 = if u.arbitrary()? { 255 } else { u.arbitrary()? };
            w.bits(8, idc.into());
            if idc == 255 {
                w.bits(32, u.arbitrary::<u32>()?.into());
            }
        }
        let overscan: bool = u.arbitrary()?;
        w.bit(overscan);
        if overscan {
            w.bit(u.arbitrary()?);
        }
        let signal: bool = u.arbitrary()?;
        w.bit(signal);
        if signal {
            w.bits(3, u.int_in_range(0..=7)?);
            full_range = u.arbitrary()?;
            w.bit(full_range);
            let colour: bool = u.arbitrary()?;
            w.bit(colour);
            if colour {
                w.bits(24, u.int_in_range(0..=0xff_ffff)?);
            }
        }
        let chroma_loc: bool = u.arbitrary()?;
        w.bit(chroma_loc);
        if chroma_loc {
            w.ue(u.int_in_range(0..=5)?);
            w.ue(u.int_in_range(0..=5)?);
        }
        let timing: bool = u.arbitrary()?;
        w.bit(timing);
        if timing {
            let units: u32 = if u.arbitrary()? {
                u.arbitrary()?
            } else {
                u.int_in_range(0..=3000)?
            };
            let scale: u32 = if u.arbitrary()? {
                u.arbitrary()?
            } else {
                u.int_in_range(0..=200_000)?
            };
            w.bits(32, units.into());
            w.bits(32, scale.into());
            if units > 0 {
                let fps = f64::from(scale) / (2.0 * f64::from(units));
                frame_rate = (1.0..=240.0).contains(&fps).then_some(fps);
            }
            // Fixed frame rate flag and the rest of the VUI: not read.
            w.bit(u.arbitrary()?);
        }
    }
    w.bit(true); // rbsp_stop_one_bit, then alignment zeros
    let mut nal = vec![0x67];
    nal.extend(escape(&w.out));

    // What the spec (7.4.2.1.1) says the size is.
    let field: u64 = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate { 0 } else { chroma_format_idc };
    let (crop_x, crop_y) = match chroma_array_type {
        1 => (2, 2 * field),
        2 => (2, field),
        _ => (1, field),
    };
    let coded_width = (u64::from(width_mbs_minus1) + 1) * 16;
    let coded_height = (u64::from(height_units_minus1) + 1) * 16 * field;
    let cw = crop_x * (u64::from(crop[0]) + u64::from(crop[1]));
    let ch = crop_y * (u64::from(crop[2]) + u64::from(crop[3]));
    invalid |= cw >= coded_width || ch >= coded_height;

    let parsed = parse_sps(&nal);
    if invalid {
        assert!(parsed.is_err(), "{parsed:?} from {nal:02x?}");
        return Ok(());
    }
    let info = parsed.unwrap_or_else(|e| panic!("{e} from {nal:02x?}"));
    assert_eq!(
        info,
        SpsInfo {
            profile,
            level,
            chroma_format_idc,
            bit_depth_luma: depth_y,
            bit_depth_chroma: depth_c,
            coded_width,
            coded_height,
            width: coded_width - cw,
            height: coded_height - ch,
            full_range,
            frame_rate,
        },
        "from {nal:02x?}"
    );
    check_sps(&info);
    // Every truncation is an error or a value, never a panic.
    let cut = u.choose_index(nal.len())?;
    if let Ok(info) = parse_sps(&nal[..cut]) {
        check_sps(&info);
    }
    // Through an avcC record into a decoder.
    if let Ok(rec) = AvcConfig::from_parameter_sets(&nal, &[0x68, 0xce, 0x38, 0x80]) {
        check_record(&rec.to_record());
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        let _ = generated(&mut Unstructured::new(rest));
    }
});
