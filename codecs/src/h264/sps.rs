//! Just enough of a sequence parameter set (ITU-T H.264 7.3.2.1.1 and E.1.1) to bound and
//! describe a stream before openh264 sees it: picture size (so a frame above the limits is
//! refused before anything is allocated), chroma format and bit depth (openh264 decodes
//! 8-bit 4:2:0 only), and from the VUI the sample range and the frame rate, when present.

use super::H264Error;

/// What this crate needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    /// `profile_idc`.
    pub profile: u8,
    /// `level_idc`.
    pub level: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    /// Luma bit depth.
    pub bit_depth_luma: u32,
    /// Chroma bit depth.
    pub bit_depth_chroma: u32,
    /// Decoded size in whole macroblocks (what the decoder allocates).
    pub coded_width: u64,
    /// See `coded_width`; frame height (both fields for interlaced streams).
    pub coded_height: u64,
    /// Displayed size after cropping.
    pub width: u64,
    /// See `width`.
    pub height: u64,
    /// `video_full_range_flag` (false when absent: limited range, 16..235).
    pub full_range: bool,
    /// Frames per second from the VUI timing info (`time_scale / (2 * num_units_in_tick)`),
    /// when present and plausible (1..=240).
    pub frame_rate: Option<f64>,
}

/// Parses an SPS NAL unit (header byte included).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, H264Error> {
    let bad = |_| H264Error::Malformed("truncated or invalid SPS");
    let rbsp = unescape(nal.get(1..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp);
    let profile = r.bits(8).map_err(bad)? as u8;
    let _constraints = r.bits(8).map_err(bad)?;
    let level = r.bits(8).map_err(bad)? as u8;
    let sps_id = r.ue().map_err(bad)?;
    if sps_id > 31 {
        return Err(H264Error::Malformed("SPS id above 31"));
    }
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    let mut bit_depth_chroma = 8;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue().map_err(bad)?;
        if chroma_format_idc > 3 {
            return Err(H264Error::Malformed("SPS chroma_format_idc above 3"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit().map_err(bad)?;
        }
        bit_depth_luma = r.ue().map_err(bad)? + 8;
        bit_depth_chroma = r.ue().map_err(bad)? + 8;
        if bit_depth_luma > 14 || bit_depth_chroma > 14 {
            return Err(H264Error::Malformed("SPS bit depth above 14"));
        }
        let _qpprime_y_zero_transform_bypass = r.bit().map_err(bad)?;
        if r.bit().map_err(bad)? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit().map_err(bad)? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 }).map_err(bad)?;
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue().map_err(bad)?;
    match r.ue().map_err(bad)? {
        0 => {
            let _log2_max_poc_lsb = r.ue().map_err(bad)?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.bit().map_err(bad)?;
            let _offset_for_non_ref_pic = r.ue().map_err(bad)?;
            let _offset_for_top_to_bottom_field = r.ue().map_err(bad)?;
            let cycle = r.ue().map_err(bad)?;
            if cycle > 255 {
                return Err(H264Error::Malformed("SPS POC cycle above 255"));
            }
            for _ in 0..cycle {
                r.ue().map_err(bad)?;
            }
        }
        2 => {}
        _ => return Err(H264Error::Malformed("SPS pic_order_cnt_type above 2")),
    }
    let _max_num_ref_frames = r.ue().map_err(bad)?;
    let _gaps_in_frame_num_allowed = r.bit().map_err(bad)?;
    let width_mbs = u64::from(r.ue().map_err(bad)?) + 1;
    let height_map_units = u64::from(r.ue().map_err(bad)?) + 1;
    let frame_mbs_only = r.bit().map_err(bad)?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.bit().map_err(bad)?;
    }
    let _direct_8x8_inference = r.bit().map_err(bad)?;
    let coded_width = width_mbs * 16;
    let coded_height = height_map_units * 16 * if frame_mbs_only { 1 } else { 2 };
    let (mut width, mut height) = (coded_width, coded_height);
    if r.bit().map_err(bad)? {
        let crop: [u64; 4] = [
            r.ue().map_err(bad)?.into(),
            r.ue().map_err(bad)?.into(),
            r.ue().map_err(bad)?.into(),
            r.ue().map_err(bad)?.into(),
        ];
        // Crop units (7-19 .. 7-22).
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (0, _) | (3, true) => (1, 1),
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let unit_y = sub_h * if frame_mbs_only { 1 } else { 2 };
        let crop_w = sub_w * (crop[0] + crop[1]);
        let crop_h = unit_y * (crop[2] + crop[3]);
        if crop_w >= coded_width || crop_h >= coded_height {
            return Err(H264Error::Malformed("SPS crops the whole picture"));
        }
        width -= crop_w;
        height -= crop_h;
    }
    let mut info = SpsInfo {
        profile,
        level,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        coded_width,
        coded_height,
        width,
        height,
        full_range: false,
        frame_rate: None,
    };
    // The VUI is optional and often sloppy: a truncated one keeps what was read.
    let _ = parse_vui(&mut r, &mut info);
    Ok(info)
}

fn parse_vui(r: &mut BitReader<'_>, info: &mut SpsInfo) -> Result<(), Truncated> {
    if !r.bit()? {
        return Ok(());
    }
    if r.bit()? {
        // aspect_ratio_info
        if r.bits(8)? == 255 {
            r.bits(32)?; // sar_width, sar_height
        }
    }
    if r.bit()? {
        r.bit()?; // overscan_appropriate
    }
    if r.bit()? {
        r.bits(3)?; // video_format
        info.full_range = r.bit()?;
        if r.bit()? {
            r.bits(24)?; // primaries, transfer, matrix
        }
    }
    if r.bit()? {
        r.ue()?;
        r.ue()?;
    }
    if r.bit()? {
        let units = r.bits(32)?;
        let scale = r.bits(32)?;
        if units > 0 {
            let fps = f64::from(scale) / (2.0 * f64::from(units));
            if (1.0..=240.0).contains(&fps) {
                info.frame_rate = Some(fps);
            }
        }
    }
    Ok(())
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), Truncated> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[derive(Debug)]
struct Truncated;

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool, Truncated> {
        let byte = self.data.get(self.pos / 8).ok_or(Truncated)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Result<u32, Truncated> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    /// Unsigned Exp-Golomb; values above 2^31 - 2 are refused.
    fn ue(&mut self) -> Result<u32, Truncated> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 30 {
                return Err(Truncated);
            }
        }
        Ok((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Result<i64, Truncated> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x264_sps_sizes_and_vui() {
        // ffmpeg/x264 640x360 High, level 3.1, 25 fps VUI timing (from fixtures/h264-high-aac.mp4).
        let sps = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x18, 0x31, 0x96,
        ];
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.profile, info.level), (100, 31));
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!((info.coded_width, info.coded_height), (640, 368));
        assert_eq!(info.chroma_format_idc, 1);
        assert_eq!(info.frame_rate, Some(25.0));
        // Every truncation is an error or a shorter parse, never a panic.
        for cut in 0..sps.len() {
            let _ = parse_sps(&sps[..cut]);
        }
    }

    #[test]
    fn main_720p_and_formats_openh264_cannot_decode() {
        // x264 main 1280x720 (fixtures/h264-main-3mbps-aac.mp4).
        let main = [
            0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0, 0x28, 0x02, 0xdd, 0x80, 0x88, 0x00, 0x00, 0x03,
            0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xc1, 0x8c, 0xb0,
        ];
        let info = parse_sps(&main).unwrap();
        assert_eq!((info.profile, info.width, info.height), (77, 1280, 720));
        assert_eq!((info.coded_width, info.coded_height), (1280, 720));
        // x264 64x64 High 10 (yuv420p10le) and High 4:2:2 (yuv422p), made by ffmpeg 5.1.
        let high10 = [
            0x67, 0x6e, 0x00, 0x0a, 0xa6, 0xcd, 0x94, 0x42, 0x6c, 0x04, 0x40, 0x00, 0x00, 0x03,
            0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc4, 0x89, 0x65, 0x80,
        ];
        let info = parse_sps(&high10).unwrap();
        assert_eq!(
            (info.profile, info.bit_depth_luma, info.chroma_format_idc),
            (110, 10, 1)
        );
        assert_eq!((info.width, info.height), (64, 64));
        let high422 = [
            0x67, 0x7a, 0x00, 0x0a, 0xbc, 0xd9, 0x44, 0x26, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00,
            0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x48, 0x96, 0x58,
        ];
        let info = parse_sps(&high422).unwrap();
        assert_eq!(
            (info.profile, info.bit_depth_luma, info.chroma_format_idc),
            (122, 8, 2)
        );
        assert_eq!((info.width, info.height), (64, 64));
    }

    #[test]
    fn unescape_removes_emulation_prevention() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }
}
