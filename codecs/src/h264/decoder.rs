//! H.264 decoding with openh264 (`openh264` crate 0.9, vendored C++ built from source).
//!
//! The [`Decoder`] takes AVCC access units, checks every NAL length and every SPS (size
//! against [`DecoderLimits`], 8-bit 4:2:0) before openh264 sees a byte, converts to Annex B
//! in a reused buffer, and copies each picture openh264 returns into a reused [`I420`].
//! Presentation times: see the [module docs](super#presentation-times).

use openh264::decoder::{DecodeOptions, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use super::nal::{avcc_nal_units, nal_type, nal_unit_type, AvcConfig};
use super::sps::{parse_sps, SpsInfo};
use super::{H264Error, I420};

/// Largest access unit accepted, in bytes (a 4096x2304 IDR at very high quality fits).
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;

/// Most presentation times held for pictures openh264 has not returned yet (its reorder
/// buffer holds at most 16 pictures).
pub const MAX_PENDING_PTS: usize = 16;

/// Most parameter sets kept to restart openh264 after an error (the avcC record's and those
/// seen in band, newest kept), and the largest one kept.
pub const MAX_KEPT_PARAMETER_SETS: usize = 16;
const MAX_KEPT_PARAMETER_SET_BYTES: usize = 4096;

/// The largest picture a [`Decoder`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Widest picture, in pixels.
    pub max_width: u32,
    /// Tallest picture, in pixels.
    pub max_height: u32,
}

impl Default for DecoderLimits {
    /// 4096x2304: the largest 16:9 picture of level 5.2 (36864 macroblocks), and what
    /// openh264 supports.
    fn default() -> Self {
        DecoderLimits {
            max_width: 4096,
            max_height: 2304,
        }
    }
}

impl DecoderLimits {
    fn check(&self, width: u64, height: u64) -> Result<(), H264Error> {
        if width > u64::from(self.max_width) || height > u64::from(self.max_height) {
            return Err(H264Error::TooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        Ok(())
    }

    /// Checks an SPS: displayed size within the limits, coded size (whole macroblocks, what
    /// gets allocated) within the limits rounded up to whole macroblock pairs, 8-bit 4:2:0.
    fn check_sps(&self, sps: &SpsInfo) -> Result<(), H264Error> {
        self.check(sps.width, sps.height)?;
        let round = |v: u32| u64::from(v).div_ceil(32) * 32;
        if sps.coded_width > round(self.max_width) || sps.coded_height > round(self.max_height) {
            return Err(H264Error::TooLarge {
                width: sps.coded_width,
                height: sps.coded_height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        if sps.chroma_format_idc != 1 || sps.bit_depth_luma != 8 || sps.bit_depth_chroma != 8 {
            return Err(H264Error::Unsupported(format!(
                "chroma format {} at {}/{} bits (openh264 decodes 8-bit 4:2:0)",
                sps.chroma_format_idc, sps.bit_depth_luma, sps.bit_depth_chroma
            )));
        }
        Ok(())
    }
}

/// An H.264 decoder: AVCC access units in, I420 pictures out in presentation order.
pub struct Decoder {
    inner: openh264::decoder::Decoder,
    limits: DecoderLimits,
    /// The avcC record last given to [`Decoder::configure`].
    record: Option<Vec<u8>>,
    nal_length_size: u8,
    sps: Option<SpsInfo>,
    annexb: Vec<u8>,
    picture: I420,
    /// Presentation times of access units given to openh264 and not yet returned, sorted.
    pending: Vec<i64>,
    /// SPS and PPS NAL units to give a restarted openh264, oldest first.
    parameter_sets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("limits", &self.limits)
            .field("sps", &self.sps)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn new_inner() -> Result<openh264::decoder::Decoder, H264Error> {
    // No flushing after each access unit: that would force pictures out of openh264's reorder
    // buffer before their B-frames arrive. Error concealment stays off (the crate's default):
    // a damaged picture is an error, not a smeared picture.
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    openh264::decoder::Decoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| H264Error::Decode(e.to_string()))
}

impl Decoder {
    /// A decoder refusing pictures above `limits`. Accepts in-band SPS/PPS, so
    /// [`configure`](Self::configure) is needed only for AVCC streams that carry their
    /// parameter sets out of band (all FLV/MP4 ones) or a NAL length size other than 4.
    pub fn new(limits: DecoderLimits) -> Result<Self, H264Error> {
        Ok(Decoder {
            inner: new_inner()?,
            limits,
            record: None,
            nal_length_size: 4,
            sps: None,
            annexb: Vec::new(),
            picture: I420::new(0, 0),
            pending: Vec::new(),
            parameter_sets: Vec::new(),
        })
    }

    /// Takes an avcC record (FLV's AVC sequence header). The same record again is a no-op; a
    /// different one restarts openh264 (pictures it still held are dropped): the stream goes
    /// on from the next IDR.
    pub fn configure(&mut self, avcc_record: &[u8]) -> Result<(), H264Error> {
        if self.record.as_deref() == Some(avcc_record) {
            return Ok(());
        }
        let config = AvcConfig::parse(avcc_record)?;
        let mut last = None;
        for sps in &config.sps {
            let info = parse_sps(sps)?;
            self.limits.check_sps(&info)?;
            last = Some(info);
        }
        if self.record.is_some() {
            self.inner = new_inner()?;
            self.pending.clear();
        }
        self.nal_length_size = config.nal_length_size;
        self.sps = last;
        self.parameter_sets.clear();
        for set in config.sps.iter().chain(&config.pps) {
            keep_parameter_set(&mut self.parameter_sets, set);
        }
        self.annexb.clear();
        config.write_annexb(&mut self.annexb);
        // Parameter sets alone yield no picture.
        self.record = None;
        self.inner
            .decode(&self.annexb)
            .map_err(|e| H264Error::Decode(e.to_string()))?;
        self.record = Some(avcc_record.to_vec());
        Ok(())
    }

    /// After openh264 refused an access unit: a fresh openh264 that knows the parameter sets.
    ///
    /// openh264 keeps going after an error, but its reorder state does not survive one: on
    /// B-frame streams it then returns pictures in decode order, and the times taken from
    /// [`Decoder::pending`] would be wrong. Pictures it held are dropped (the stream resumes at
    /// the next IDR anyway).
    fn restart(&mut self) -> Result<(), H264Error> {
        self.inner = new_inner()?;
        self.pending.clear();
        self.annexb.clear();
        for set in &self.parameter_sets {
            self.annexb.extend_from_slice(&[0, 0, 0, 1]);
            self.annexb.extend_from_slice(set);
        }
        if !self.annexb.is_empty() {
            self.inner
                .decode(&self.annexb)
                .map_err(|e| H264Error::Decode(e.to_string()))?;
        }
        Ok(())
    }

    /// The avcC record last accepted by [`configure`](Self::configure).
    pub fn config_record(&self) -> Option<&[u8]> {
        self.record.as_deref()
    }

    /// The last SPS seen (in the avcC record or in band).
    pub fn sps(&self) -> Option<&SpsInfo> {
        self.sps.as_ref()
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> DecoderLimits {
        self.limits
    }

    /// Decodes one access unit, ignoring times; see [`decode_at`](Self::decode_at).
    pub fn decode(&mut self, access_unit_avcc: &[u8]) -> Result<Option<&I420>, H264Error> {
        Ok(self.decode_at(access_unit_avcc, 0)?.map(|(p, _)| p))
    }

    /// Decodes one access unit with presentation time `pts_ms`. Returns the next picture in
    /// presentation order with its presentation time, or `None` while openh264 holds it
    /// (parameter sets only, or reordering).
    ///
    /// Errors: malformed framing or SPS, a picture over the limits (nothing reaches openh264
    /// then), or openh264 refusing the access unit (then the stream should restart at an
    /// IDR; without error concealment openh264 returns no damaged pictures). SVC/MVC
    /// extension NAL units are dropped: the base layer decodes without them.
    pub fn decode_at(
        &mut self,
        access_unit_avcc: &[u8],
        pts_ms: i64,
    ) -> Result<Option<(&I420, i64)>, H264Error> {
        if access_unit_avcc.len() > MAX_ACCESS_UNIT_BYTES {
            return Err(H264Error::AccessUnitTooLarge(access_unit_avcc.len()));
        }
        self.annexb.clear();
        let mut has_slice = false;
        let mut has_parameter_sets = false;
        for nal in avcc_nal_units(access_unit_avcc, self.nal_length_size) {
            let nal = nal?;
            match nal_unit_type(nal) {
                nal_type::SPS => {
                    let info = parse_sps(nal)?;
                    self.limits.check_sps(&info)?;
                    self.sps = Some(info);
                    has_parameter_sets = true;
                }
                nal_type::PPS => has_parameter_sets = true,
                nal_type::PREFIX | nal_type::SUBSET_SPS | nal_type::SLICE_EXT => continue,
                nal_type::SLICE..=nal_type::IDR => has_slice = true,
                _ => {}
            }
            self.annexb.extend_from_slice(&[0, 0, 0, 1]);
            self.annexb.extend_from_slice(nal);
        }
        if self.annexb.is_empty() {
            return Ok(None);
        }
        if has_slice {
            if self.pending.len() == MAX_PENDING_PTS {
                self.pending.remove(0);
            }
            let at = self.pending.partition_point(|&p| p <= pts_ms);
            self.pending.insert(at, pts_ms);
        }
        let options = DecodeOptions::new().flush_after_decode(Flush::NoFlush);
        let decoded = match self.inner.decode_with_options(&self.annexb, options) {
            Ok(d) => d,
            Err(e) => {
                let error = H264Error::Decode(e.to_string());
                self.restart()?;
                return Err(error);
            }
        };
        if has_parameter_sets {
            // Kept only once openh264 has taken them, so garbage cannot poison a restart.
            for nal in avcc_nal_units(access_unit_avcc, self.nal_length_size).flatten() {
                if matches!(nal_unit_type(nal), nal_type::SPS | nal_type::PPS) {
                    keep_parameter_set(&mut self.parameter_sets, nal);
                }
            }
        }
        let Some(yuv) = decoded else {
            return Ok(None);
        };
        copy_picture(&yuv, &mut self.picture, self.limits)?;
        let pts = if self.pending.is_empty() {
            pts_ms
        } else {
            self.pending.remove(0)
        };
        Ok(Some((&self.picture, pts)))
    }

    /// End of stream: every picture openh264 still holds, in presentation order, with its
    /// time (at most 16).
    pub fn flush(&mut self) -> Result<Vec<(I420, i64)>, H264Error> {
        let limits = self.limits;
        let remaining = self
            .inner
            .flush_remaining()
            .map_err(|e| H264Error::Decode(e.to_string()))?;
        let mut out = Vec::with_capacity(remaining.len());
        for yuv in &remaining {
            let mut picture = I420::new(0, 0);
            copy_picture(yuv, &mut picture, limits)?;
            let pts = if self.pending.is_empty() {
                0
            } else {
                self.pending.remove(0)
            };
            out.push((picture, pts));
        }
        self.pending.clear();
        Ok(out)
    }
}

fn keep_parameter_set(kept: &mut Vec<Vec<u8>>, nal: &[u8]) {
    if nal.len() > MAX_KEPT_PARAMETER_SET_BYTES || kept.iter().any(|s| s == nal) {
        return;
    }
    if kept.len() == MAX_KEPT_PARAMETER_SETS {
        kept.remove(0);
    }
    kept.push(nal.to_vec());
}

/// Copies openh264's strided planes into `dst`, checking sizes instead of trusting them.
fn copy_picture(
    yuv: &openh264::decoder::DecodedYUV<'_>,
    dst: &mut I420,
    limits: DecoderLimits,
) -> Result<(), H264Error> {
    let (w, h) = yuv.dimensions();
    limits.check(w as u64, h as u64)?;
    if w == 0 || h == 0 {
        return Err(H264Error::Decode("empty picture".into()));
    }
    let (ys, us, vs) = yuv.strides();
    dst.resize(w as u32, h as u32);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (y, u, v) = dst.planes_mut();
    let short = || H264Error::Decode("picture planes shorter than their size".into());
    for (src, stride, dst, pw, ph) in [
        (yuv.y(), ys, y, w, h),
        (yuv.u(), us, u, cw, ch),
        (yuv.v(), vs, v, cw, ch),
    ] {
        if stride < pw {
            return Err(short());
        }
        for (row, out) in dst.chunks_exact_mut(pw).take(ph).enumerate() {
            let from = row * stride;
            out.copy_from_slice(src.get(from..from + pw).ok_or_else(short)?);
        }
    }
    Ok(())
}
