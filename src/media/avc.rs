//! H.264: the AVCDecoderConfigurationRecord (`avcC`, the FLV AVC sequence header) and enough of
//! the sequence parameter set to report width, height, profile and level.

use super::bits::{unescape_rbsp, BitReader};
use super::MediaError;

/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

/// What [`Sps::parse`] extracts from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Displayed width in pixels, after cropping.
    pub width: u32,
    /// Displayed height in pixels, after cropping.
    pub height: u32,
    /// How many frames may precede a frame in decode order and follow it in display order
    /// (`max_num_reorder_frames` of the VUI's bitstream restriction), when the SPS says.
    /// 0 means no B-frame reordering; `None` means the SPS does not say.
    pub max_num_reorder_frames: Option<u32>,
}

impl Sps {
    /// Parses an SPS NAL unit (starting with its one-byte NAL header, type 7).
    pub fn parse(nal: &[u8]) -> Result<Sps, MediaError> {
        const WHAT: &str = "H.264 SPS";
        let header = *nal.first().ok_or(MediaError::Truncated {
            what: WHAT,
            need: 1,
            have: 0,
        })?;
        if header & 0x1f != NAL_SPS {
            return Err(MediaError::Invalid {
                what: WHAT,
                detail: "NAL unit type is not 7",
            });
        }
        let rbsp = unescape_rbsp(&nal[1..]);
        let mut r = BitReader::new(&rbsp, WHAT);
        let profile_idc = r.bits(8)? as u8;
        let constraint_flags = r.bits(8)? as u8;
        let level_idc = r.bits(8)? as u8;
        let _sps_id = r.ue()?;
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()?;
            }
            let _bit_depth_luma = r.ue()?;
            let _bit_depth_chroma = r.ue()?;
            let _qpprime_y_zero_transform_bypass = r.bit()?;
            if r.bit()? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let _log2_max_frame_num_minus4 = r.ue()?;
        match r.ue()? {
            0 => {
                let _log2_max_poc_lsb_minus4 = r.ue()?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.bit()?;
                let _offset_for_non_ref_pic = r.se()?;
                let _offset_for_top_to_bottom_field = r.se()?;
                let cycle = r.ue()?;
                if cycle > 255 {
                    return Err(MediaError::Invalid {
                        what: WHAT,
                        detail: "num_ref_frames_in_pic_order_cnt_cycle > 255",
                    });
                }
                for _ in 0..cycle {
                    r.se()?;
                }
            }
            _ => {}
        }
        let _max_num_ref_frames = r.ue()?;
        let _gaps_in_frame_num_allowed = r.bit()?;
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.bit()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.bit()?;
        }
        let _direct_8x8_inference = r.bit()?;
        let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
        if r.bit()? {
            crop_l = r.ue()?.into();
            crop_r = r.ue()?.into();
            crop_t = r.ue()?.into();
            crop_b = r.ue()?.into();
        }
        let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (crop_unit_x, crop_unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let full_w = width_mbs * 16;
        let full_h = height_map_units * 16 * field_factor;
        let crop_w = crop_unit_x * (crop_l + crop_r);
        let crop_h = crop_unit_y * (crop_t + crop_b);
        if crop_w >= full_w
            || crop_h >= full_h
            || full_w > u64::from(u32::MAX)
            || full_h > u64::from(u32::MAX)
        {
            return Err(MediaError::Invalid {
                what: WHAT,
                detail: "picture size or cropping out of range",
            });
        }
        // The VUI is optional and often malformed in cheap cameras: what it says about
        // reordering is used when it parses, and the SPS is good without it.
        let vui_present = r.bit().unwrap_or(false);
        let max_num_reorder_frames = if vui_present {
            vui_max_num_reorder_frames(&mut r).ok().flatten()
        } else {
            None
        };
        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            width: (full_w - crop_w) as u32,
            height: (full_h - crop_h) as u32,
            max_num_reorder_frames,
        })
    }
}

/// Reads `vui_parameters()` (H.264 E.1.1) up to the bitstream restriction's
/// `max_num_reorder_frames`; `None` when the VUI has no bitstream restriction.
fn vui_max_num_reorder_frames(r: &mut BitReader<'_>) -> Result<Option<u32>, MediaError> {
    const EXTENDED_SAR: u32 = 255;
    // aspect_ratio_info_present_flag, then aspect_ratio_idc (and an explicit SAR).
    if r.bit()? && r.bits(8)? == EXTENDED_SAR {
        r.bits(16)?;
        r.bits(16)?;
    }
    if r.bit()? {
        let _overscan_appropriate = r.bit()?;
    }
    if r.bit()? {
        let _video_format = r.bits(3)?;
        let _full_range = r.bit()?;
        if r.bit()? {
            let _primaries_transfer_matrix = r.bits(24)?;
        }
    }
    if r.bit()? {
        let _chroma_loc_top = r.ue()?;
        let _chroma_loc_bottom = r.ue()?;
    }
    if r.bit()? {
        let _num_units_in_tick = r.bits(32)?;
        let _time_scale = r.bits(32)?;
        let _fixed_frame_rate = r.bit()?;
    }
    let nal_hrd = r.bit()?;
    if nal_hrd {
        skip_hrd_parameters(r)?;
    }
    let vcl_hrd = r.bit()?;
    if vcl_hrd {
        skip_hrd_parameters(r)?;
    }
    if nal_hrd || vcl_hrd {
        let _low_delay_hrd = r.bit()?;
    }
    let _pic_struct_present = r.bit()?;
    if !r.bit()? {
        return Ok(None);
    }
    let _motion_vectors_over_pic_boundaries = r.bit()?;
    let _max_bytes_per_pic_denom = r.ue()?;
    let _max_bits_per_mb_denom = r.ue()?;
    let _log2_max_mv_length_horizontal = r.ue()?;
    let _log2_max_mv_length_vertical = r.ue()?;
    Ok(Some(r.ue()?))
}

/// Skips `hrd_parameters()` (H.264 E.1.2).
fn skip_hrd_parameters(r: &mut BitReader<'_>) -> Result<(), MediaError> {
    let cpb_cnt = r.ue()? + 1;
    if cpb_cnt > 32 {
        return Err(MediaError::Invalid {
            what: "H.264 SPS",
            detail: "cpb_cnt_minus1 > 31",
        });
    }
    let _bit_rate_scale = r.bits(4)?;
    let _cpb_size_scale = r.bits(4)?;
    for _ in 0..cpb_cnt {
        let _bit_rate_value = r.ue()?;
        let _cpb_size_value = r.ue()?;
        let _cbr = r.bit()?;
    }
    let _delays_and_lengths = r.bits(20)?;
    Ok(())
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), MediaError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1): the body of an FLV AVC
/// sequence header after its 5-byte tag header, and the `avcC` box of an MP4 `avc1` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    pub profile_indication: u8,
    pub profile_compatibility: u8,
    pub level_indication: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4; FLV always uses 4).
    pub length_size: u8,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl AvcDecoderConfig {
    /// Builds a record with 4-byte NAL lengths from one SPS and one PPS (each with its NAL
    /// header byte), taking profile and level from the SPS.
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<AvcDecoderConfig, MediaError> {
        let parsed = Sps::parse(sps)?;
        if pps.is_empty()
            || pps[0] & 0x1f != NAL_PPS
            || pps.len() > usize::from(u16::MAX)
            || sps.len() > usize::from(u16::MAX)
        {
            return Err(MediaError::Invalid {
                what: "H.264 PPS",
                detail: "not a PPS NAL unit of at most 65535 bytes",
            });
        }
        Ok(AvcDecoderConfig {
            profile_indication: parsed.profile_idc,
            profile_compatibility: parsed.constraint_flags,
            level_indication: parsed.level_idc,
            length_size: 4,
            sps: vec![sps.to_vec()],
            pps: vec![pps.to_vec()],
        })
    }

    /// Parses a record. Trailing bytes (the high-profile chroma extension) are ignored.
    pub fn parse(data: &[u8]) -> Result<AvcDecoderConfig, MediaError> {
        const WHAT: &str = "AVCDecoderConfigurationRecord";
        let mut c = Cursor {
            data,
            pos: 0,
            what: WHAT,
        };
        if c.u8()? != 1 {
            return Err(MediaError::Invalid {
                what: WHAT,
                detail: "configurationVersion is not 1",
            });
        }
        let profile_indication = c.u8()?;
        let profile_compatibility = c.u8()?;
        let level_indication = c.u8()?;
        let length_size = (c.u8()? & 0x03) + 1;
        if length_size == 3 {
            return Err(MediaError::Invalid {
                what: WHAT,
                detail: "NAL length size of 3 bytes",
            });
        }
        let num_sps = c.u8()? & 0x1f;
        let mut sps = Vec::with_capacity(usize::from(num_sps));
        for _ in 0..num_sps {
            let len = usize::from(c.u16()?);
            sps.push(c.take(len)?.to_vec());
        }
        let num_pps = c.u8()?;
        let mut pps = Vec::with_capacity(usize::from(num_pps));
        for _ in 0..num_pps {
            let len = usize::from(c.u16()?);
            pps.push(c.take(len)?.to_vec());
        }
        Ok(AvcDecoderConfig {
            profile_indication,
            profile_compatibility,
            level_indication,
            length_size,
            sps,
            pps,
        })
    }

    /// The first SPS, parsed.
    pub fn parsed_sps(&self) -> Result<Sps, MediaError> {
        let sps = self.sps.first().ok_or(MediaError::Invalid {
            what: "AVCDecoderConfigurationRecord",
            detail: "no SPS",
        })?;
        Sps::parse(sps)
    }

    /// Serialises the record (without the FLV tag header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = 7 + self
            .sps
            .iter()
            .chain(&self.pps)
            .map(|p| 2 + p.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&[
            1,
            self.profile_indication,
            self.profile_compatibility,
            self.level_indication,
            0xfc | (self.length_size.clamp(1, 4) - 1),
            0xe0 | (self.sps.len().min(31) as u8),
        ]);
        for p in self.sps.iter().take(31) {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out.push(self.pps.len().min(255) as u8);
        for p in self.pps.iter().take(255) {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }
}

/// A bounds-checked byte cursor for the small fixed layouts in this module.
pub(crate) struct Cursor<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(MediaError::Truncated {
            what: self.what,
            need: self.pos + n,
            have: self.data.len(),
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, MediaError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, MediaError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS of fixtures/demo.mp4 (x264 baseline 640x360: 23 macroblock rows cropped by 8 lines).
    pub(crate) const DEMO_SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
    ];

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn vui_bitstream_restriction_gives_the_reorder_depth() {
        // x264 high 320x240, `-bf 0` and `-bf 2` (b-pyramid): num_reorder_frames 0 and 2.
        let no_b = hex("6764000dacb20283f60220000003002000000641e28549");
        let two_b = hex("6764000dacd94141fb011000000300100000030320f1429960");
        let a = Sps::parse(&no_b).unwrap();
        let b = Sps::parse(&two_b).unwrap();
        assert_eq!(
            (a.width, a.height, a.max_num_reorder_frames),
            (320, 240, Some(0))
        );
        assert_eq!(
            (b.width, b.height, b.max_num_reorder_frames),
            (320, 240, Some(2))
        );
        // x264 writes the restriction for baseline too.
        assert_eq!(
            Sps::parse(DEMO_SPS_640X360).unwrap().max_num_reorder_frames,
            Some(0)
        );
        // A VUI cut short still gives the picture size.
        let cut = &two_b[..two_b.len() - 4];
        let c = Sps::parse(cut).unwrap();
        assert_eq!(
            (c.width, c.height, c.max_num_reorder_frames),
            (320, 240, None)
        );
    }

    #[test]
    fn sps_with_cropping_and_emulation_prevention() {
        let sps = Sps::parse(DEMO_SPS_640X360).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!((sps.profile_idc, sps.level_idc), (66, 30));
    }

    #[test]
    fn avcc_round_trip_and_every_truncation_is_an_error() {
        let rec = AvcDecoderConfig::from_parameter_sets(
            DEMO_SPS_640X360,
            &[0x68, 0xcb, 0x83, 0xcb, 0x20],
        )
        .unwrap();
        let bytes = rec.to_bytes();
        assert_eq!(AvcDecoderConfig::parse(&bytes).unwrap(), rec);
        for split in 0..bytes.len() {
            assert!(
                AvcDecoderConfig::parse(&bytes[..split]).is_err(),
                "split at {split}"
            );
        }
        assert_eq!(rec.parsed_sps().unwrap().width, 640);
    }

    #[test]
    fn sps_truncated_at_every_byte_is_an_error_not_a_panic() {
        for split in 0..DEMO_SPS_640X360.len() - 1 {
            let _ = Sps::parse(&DEMO_SPS_640X360[..split]);
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data: Vec<u8>) {
            let _ = AvcDecoderConfig::parse(&data);
            let mut nal = data.clone();
            nal.insert(0, 0x67);
            let _ = Sps::parse(&nal);
        }
    }
}
