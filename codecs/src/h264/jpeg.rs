//! JPEG snapshots: decode one IDR at source size, encode it with `jpeg-encoder` (pure
//! Rust, baseline JFIF, 4:2:0).
//!
//! The I420 planes go to the JPEG encoder row by row (no RGB conversion, no full-picture
//! copy): luma as is, each chroma sample twice across (the encoder's 4:2:0 subsampling
//! averages the pair back). JFIF wants full-range samples, so limited-range video (the
//! usual case; the SPS's VUI says which) is expanded, 16..235 → 0..255 and 16..240 →
//! 0..255, by table. The BT.709/601 matrix difference is not corrected (JFIF means 601:
//! HD sources come out with slightly shifted hues).
//!
//! Bounds: the JPEG (at most about w × h × 1.5 bytes at quality 100) and the decoder's
//! buffers ([`DecoderLimits`]); one row of each component inside the encoder.

use jpeg_encoder::{Encoder, ImageBuffer, JpegColorType, SamplingFactor};

use super::{Decoder, DecoderLimits, H264Error, I420};

/// A JPEG of a decoded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The JPEG file.
    pub jpeg: Vec<u8>,
    /// Its width (the source's, after cropping).
    pub width: u32,
    /// Its height.
    pub height: u32,
}

/// Decodes `keyframe_avcc` (an IDR access unit, AVCC as in FLV) with the parameter sets of
/// `avcc_record` on a fresh decoder bounded by `limits`, and encodes the picture as a JPEG
/// at `quality` (clamped to 1..=100). Blocking: a 720p snapshot costs a few tens of ms.
pub fn snapshot_jpeg(
    avcc_record: &[u8],
    keyframe_avcc: &[u8],
    quality: u8,
    limits: DecoderLimits,
) -> Result<Snapshot, H264Error> {
    let mut decoder = Decoder::new(limits)?;
    decoder.configure(avcc_record)?;
    let full_range = decoder.sps().is_some_and(|s| s.full_range);
    let jpeg = match decoder.decode(keyframe_avcc)? {
        Some(picture) => encode_jpeg(picture, quality, full_range)?,
        // Main/high streams hold the picture for reordering: flush it out.
        None => {
            let flushed = decoder.flush()?;
            let (picture, _) = flushed.first().ok_or(H264Error::NoPicture)?;
            encode_jpeg(picture, quality, full_range)?
        }
    };
    Ok(jpeg)
}

/// Encodes `picture` as a baseline 4:2:0 JPEG at `quality` (clamped to 1..=100);
/// `full_range` says whether its samples are already 0..255.
pub fn encode_jpeg(picture: &I420, quality: u8, full_range: bool) -> Result<Snapshot, H264Error> {
    let (width, height) = (picture.width(), picture.height());
    let (Ok(w16), Ok(h16)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(H264Error::Jpeg(format!(
            "{width}x{height} is too large for JPEG"
        )));
    };
    let mut jpeg = Vec::with_capacity(width as usize * height as usize / 4);
    let mut encoder = Encoder::new(&mut jpeg, quality.clamp(1, 100));
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    let image = Planes {
        picture,
        width: w16,
        height: h16,
        luma: range_table(full_range, 219),
        chroma: range_table(full_range, 224),
    };
    encoder
        .encode_image(image)
        .map_err(|e| H264Error::Jpeg(e.to_string()))?;
    Ok(Snapshot {
        jpeg,
        width,
        height,
    })
}

/// Limited → full range: `span` is 219 for luma (16..=235), 224 for chroma (16..=240,
/// centred on 128).
fn range_table(full_range: bool, span: i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (i, v) in t.iter_mut().enumerate() {
        let i = i as i32;
        *v = if full_range {
            i as u8
        } else if span == 219 {
            ((i - 16) * 255 + span / 2).div_euclid(span).clamp(0, 255) as u8
        } else {
            (128 + ((i - 128) * 255).div_euclid(span)).clamp(0, 255) as u8
        };
    }
    t
}

struct Planes<'a> {
    picture: &'a I420,
    width: u16,
    height: u16,
    luma: [u8; 256],
    chroma: [u8; 256],
}

impl ImageBuffer for Planes<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, row: u16, buffers: &mut [Vec<u8>; 4]) {
        let w = usize::from(self.width);
        let cw = w.div_ceil(2);
        let (y, u, v) = self.picture.planes();
        let row = usize::from(row);
        let crow = row / 2;
        // Exactly `w` values per component and row, whatever the planes hold.
        match y.get(row * w..(row + 1) * w) {
            Some(luma) => buffers[0].extend(luma.iter().map(|&p| self.luma[usize::from(p)])),
            None => buffers[0].extend(std::iter::repeat_n(0, w)),
        }
        for (plane, out) in [(u, 1), (v, 2)] {
            let c = plane.get(crow * cw..(crow + 1) * cw).unwrap_or_default();
            let buf = &mut buffers[out];
            for x in 0..w {
                buf.push(c.get(x / 2).map_or(128, |&p| self.chroma[usize::from(p)]));
            }
        }
    }
}
