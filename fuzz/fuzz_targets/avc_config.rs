//! H.264 configuration: `AvcDecoderConfig::parse`/`to_bytes`/`parsed_sps`/
//! `from_parameter_sets` and `Sps::parse`.
//!
//! The first input byte picks a mode:
//! - raw: the rest is an AVCDecoderConfigurationRecord. If it parses, `to_bytes` gives back the
//!   bytes it was parsed from (up to the reserved bits) and parses to an equal value;
//!   `parsed_sps` is `Sps::parse` of the first SPS. The rest is also tried as an SPS
//!   (with a type-7 NAL header forced) and, cut at a fuzzer-chosen byte, as SPS + PPS for
//!   `from_parameter_sets`, whose record must round-trip too.
//! - generated: an SPS is *written* from fuzzer-chosen syntax elements (every profile branch,
//!   chroma formats, scaling lists, POC types, interlace, cropping, large exp-Golomb values)
//!   with emulation prevention, and `Sps::parse` must return exactly the width, height,
//!   profile and level the spec computes, or an error exactly when the size or cropping is out
//!   of range; `from_parameter_sets` with it builds a record that round-trips.
//!
//! Invariants: no panic; the round trips above; a parsed SPS has width and height ≥ 1.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "common/sps_writer.rs"]
mod sps_writer;
use moment::media::{AvcDecoderConfig, Sps};
use sps_writer::{escape, ue_value, BitWriter, HIGH_PROFILES};

fn check_record(rec: &AvcDecoderConfig, parsed_from: Option<&[u8]>) {
    let bytes = rec.to_bytes();
    assert_eq!(AvcDecoderConfig::parse(&bytes).as_ref(), Ok(rec));
    if let Some(orig) = parsed_from {
        // The same bytes, except reserved bits: 6 bits before lengthSizeMinusOne and 3 before
        // numOfSequenceParameterSets.
        let mut expect = orig[..bytes.len()].to_vec();
        expect[4] |= 0xfc;
        expect[5] |= 0xe0;
        assert_eq!(bytes, expect);
    }
    match (rec.parsed_sps(), rec.sps.first()) {
        (Ok(sps), Some(first)) => {
            assert_eq!(Sps::parse(first), Ok(sps));
            check_sps(&sps);
        }
        (Err(e), Some(first)) => assert_eq!(Sps::parse(first), Err(e)),
        (Err(_), None) => {}
        (Ok(_), None) => panic!("parsed_sps without an SPS"),
    }
}

fn check_sps(sps: &Sps) {
    assert!(sps.width >= 1 && sps.height >= 1, "{sps:?}");
}

fn raw(mut u: Unstructured<'_>) -> Result<()> {
    let cut = usize::from(u.arbitrary::<u16>()?);
    let data = u.take_rest();
    if let Ok(rec) = AvcDecoderConfig::parse(data) {
        assert!(matches!(rec.length_size, 1 | 2 | 4));
        assert!(rec.sps.len() <= 31 && rec.pps.len() <= 255);
        check_record(&rec, Some(data));
    }
    let mut nal = data.to_vec();
    if let Some(b) = nal.first_mut() {
        *b = (*b & 0xe0) | 7;
    }
    if let Ok(sps) = Sps::parse(&nal) {
        check_sps(&sps);
    }
    let cut = cut % (nal.len() + 1);
    let (sps, pps) = nal.split_at(cut);
    if let Ok(rec) = AvcDecoderConfig::from_parameter_sets(sps, pps) {
        let parsed = Sps::parse(sps).unwrap();
        assert_eq!(rec.profile_indication, parsed.profile_idc);
        assert_eq!(rec.level_indication, parsed.level_idc);
        assert_eq!(rec.length_size, 4);
        check_record(&rec, None);
    }
    Ok(())
}

fn generated(u: &mut Unstructured<'_>) -> Result<()> {
    let mut w = BitWriter::default();
    let profile_idc = if u.arbitrary()? {
        *u.choose(&HIGH_PROFILES)?
    } else {
        *u.choose(&[66u8, 77, 88])?
    };
    let constraint_flags: u8 = u.arbitrary()?;
    let level_idc: u8 = u.arbitrary()?;
    w.bits(8, profile_idc.into());
    w.bits(8, constraint_flags.into());
    w.bits(8, level_idc.into());
    w.ue(u.int_in_range(0..=31)?); // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = u.int_in_range(0..=3)?;
        w.ue(chroma_format_idc);
        if chroma_format_idc == 3 {
            separate_colour_plane = u.arbitrary()?;
            w.bit(separate_colour_plane);
        }
        w.ue(u.int_in_range(0..=6)?); // bit_depth_luma_minus8
        w.ue(u.int_in_range(0..=6)?); // bit_depth_chroma_minus8
        w.bit(u.arbitrary()?); // qpprime_y_zero_transform_bypass_flag
        let matrix: bool = u.arbitrary()?;
        w.bit(matrix);
        if matrix {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                let present: bool = u.arbitrary()?;
                w.bit(present);
                if present {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
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
    let poc_type = u.int_in_range(0..=2)?;
    w.ue(poc_type);
    let mut cycle_too_long = false;
    match poc_type {
        0 => w.ue(u.int_in_range(0..=12)?),
        1 => {
            w.bit(u.arbitrary()?);
            w.se(u.arbitrary::<i32>()?.max(-i32::MAX));
            w.se(u.arbitrary::<i32>()?.max(-i32::MAX));
            let cycle = u.int_in_range(0..=300)?;
            w.ue(cycle);
            cycle_too_long = cycle > 255;
            for _ in 0..cycle.min(256) {
                w.se(u.int_in_range(-1000..=1000)?);
            }
        }
        _ => {}
    }
    w.ue(u.int_in_range(0..=16)?); // max_num_ref_frames
    w.bit(u.arbitrary()?); // gaps_in_frame_num_value_allowed_flag
    let width_mbs_minus1 = ue_value(u, 256)?;
    let height_map_units_minus1 = ue_value(u, 256)?;
    w.ue(width_mbs_minus1);
    w.ue(height_map_units_minus1);
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
    w.bit(false); // vui_parameters_present_flag
    w.bit(true); // rbsp_stop_one_bit, then alignment zeros
    let mut nal = vec![0x67];
    nal.extend(escape(&w.out));

    // What the spec (7.4.2.1.1) says the size is.
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (crop_x, crop_y) = if chroma_array_type == 0 {
        (1, field_factor)
    } else {
        (sub_w, sub_h * field_factor)
    };
    let full_w = (u64::from(width_mbs_minus1) + 1) * 16;
    let full_h = (u64::from(height_map_units_minus1) + 1) * 16 * field_factor;
    let cw = crop_x * (u64::from(crop[0]) + u64::from(crop[1]));
    let ch = crop_y * (u64::from(crop[2]) + u64::from(crop[3]));
    let in_range = cw < full_w
        && ch < full_h
        && full_w <= u64::from(u32::MAX)
        && full_h <= u64::from(u32::MAX);

    let parsed = Sps::parse(&nal);
    if cycle_too_long || !in_range {
        assert!(parsed.is_err(), "{parsed:?} from {nal:02x?}");
        return Ok(());
    }
    let sps = parsed.unwrap_or_else(|e| panic!("{e} from {nal:02x?}"));
    assert_eq!(
        sps,
        Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            width: (full_w - cw) as u32,
            height: (full_h - ch) as u32,
        },
        "from {nal:02x?}"
    );
    // Every truncation of the SPS is an error or a value, never a panic.
    let cut = u.choose_index(nal.len())?;
    let _ = Sps::parse(&nal[..cut]);

    let pps = [0x68, 0xce, 0x38, 0x80];
    if nal.len() <= usize::from(u16::MAX) {
        let rec = AvcDecoderConfig::from_parameter_sets(&nal, &pps).unwrap();
        assert_eq!(rec.parsed_sps(), Ok(sps));
        check_record(&rec, None);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let _ = if mode & 1 == 0 {
        raw(u)
    } else {
        generated(&mut u)
    };
});
