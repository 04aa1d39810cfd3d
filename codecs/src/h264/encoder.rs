//! H.264 encoding with openh264: I420 in, AVCC frames and avcC records out.
//!
//! openh264 writes constrained baseline whatever profile is asked for, so output has no
//! B-frames (dts = pts). It emits SPS and PPS before every IDR; [`Encoder::encode`] takes them
//! (and AUD/SEI) out of the frame and returns them as an avcC record in [`Encoded::config`].
//!
//! Settings: bitrate rate control with frame skipping (openh264 cannot hold a bitrate
//! without it, and says so on stderr at initialisation if it is off: a skipped frame is
//! `Ok(None)`), one thread, intra period from the frame-rate estimate
//! (`frame_rate × keyframe_interval` frames, the fallback for the time-based IDRs the caller
//! forces), scene-change detection on (it may add IDRs).

use std::time::Duration;

use openh264::encoder::{
    BitRate, EncoderConfig as OhConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::{OpenH264API, Timestamp};

use super::nal::{annexb_nal_units, nal_type, nal_unit_type, AvcConfig};
use super::{H264Error, I420};

/// Widest picture openh264 encodes (or tallest, for portrait).
pub const MAX_ENCODE_WIDTH: u32 = 3840;
/// Tallest picture openh264 encodes (or widest... see [`MAX_ENCODE_WIDTH`]).
pub const MAX_ENCODE_HEIGHT: u32 = 2160;

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// Even, 16..=3840 (or 2160 when it is the smaller side).
    pub width: u32,
    /// Even, 16..=2160 (or 3840 when it is the larger side).
    pub height: u32,
    /// Target bitrate, 10_000..=100_000_000.
    pub bitrate_bps: u32,
    /// Frame-rate estimate for rate control and the intra period, 1..=240.
    pub frame_rate: f32,
    /// Distance between IDRs openh264 inserts on its own (0: every frame).
    pub keyframe_interval: Duration,
}

impl EncoderConfig {
    fn validate(&self) -> Result<(), H264Error> {
        let (small, large) = (self.width.min(self.height), self.width.max(self.height));
        if small < 16 || large > MAX_ENCODE_WIDTH || small > MAX_ENCODE_HEIGHT {
            return Err(H264Error::Unsupported(format!(
                "encoder size {}x{} outside 16..=3840 by 16..=2160",
                self.width, self.height
            )));
        }
        if self.width % 2 == 1 || self.height % 2 == 1 {
            return Err(H264Error::Unsupported(format!(
                "encoder size {}x{} is odd",
                self.width, self.height
            )));
        }
        if !(10_000..=100_000_000).contains(&self.bitrate_bps) {
            return Err(H264Error::Unsupported(format!(
                "bitrate {} outside 10000..=100000000",
                self.bitrate_bps
            )));
        }
        if !(1.0..=240.0).contains(&self.frame_rate) {
            return Err(H264Error::Unsupported(format!(
                "frame rate {} outside 1..=240",
                self.frame_rate
            )));
        }
        Ok(())
    }

    /// openh264's intra period in frames: the interval at the estimated rate, at least 1.
    pub fn intra_period(&self) -> u32 {
        let frames = (self.keyframe_interval.as_secs_f64() * f64::from(self.frame_rate)).round();
        frames.clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

/// One encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// AVCC, 4-byte lengths, slices only (SPS/PPS/AUD/SEI taken out).
    pub data: Vec<u8>,
    /// An IDR.
    pub keyframe: bool,
    /// The avcC record built from the SPS/PPS that came with this frame (every IDR).
    pub config: Option<Vec<u8>>,
}

/// An openh264 encoder for one picture size.
pub struct Encoder {
    inner: openh264::encoder::Encoder,
    config: EncoderConfig,
    started: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder for `config`; openh264 itself is initialised by the first
    /// [`encode`](Self::encode).
    pub fn new(config: EncoderConfig) -> Result<Self, H264Error> {
        config.validate()?;
        let oh = OhConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.frame_rate))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(true)
            .usage_type(UsageType::CameraVideoRealTime)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.intra_period()))
            .num_threads(1);
        let inner = openh264::encoder::Encoder::with_api_config(OpenH264API::from_source(), oh)
            .map_err(|e| H264Error::Encode(e.to_string()))?;
        Ok(Encoder {
            inner,
            config,
            started: false,
        })
    }

    /// The settings.
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Encodes `frame` (of the configured size) stamped `pts_ms` (negative times are
    /// passed as 0: openh264 only uses them for its statistics). `force_keyframe` makes it an
    /// IDR. `None` if openh264's rate control skipped the frame (a forced keyframe too: force
    /// the next one).
    pub fn encode(
        &mut self,
        frame: &I420,
        pts_ms: i64,
        force_keyframe: bool,
    ) -> Result<Option<Encoded>, H264Error> {
        if (frame.width(), frame.height()) != (self.config.width, self.config.height) {
            return Err(H264Error::Unsupported(format!(
                "frame {}x{} given to a {}x{} encoder",
                frame.width(),
                frame.height(),
                self.config.width,
                self.config.height
            )));
        }
        // Before the first frame openh264 is not initialised yet, and that frame is an IDR.
        if force_keyframe && self.started {
            self.inner.force_intra_frame();
        }
        let ts = Timestamp::from_millis(u64::try_from(pts_ms).unwrap_or(0));
        let bs = self
            .inner
            .encode_at(frame, ts)
            .map_err(|e| H264Error::Encode(e.to_string()))?;
        self.started = true;
        match bs.frame_type() {
            FrameType::Skip => return Ok(None),
            FrameType::Invalid => return Err(H264Error::Encode("invalid frame".into())),
            _ => {}
        }
        let mut data = Vec::new();
        let mut keyframe = false;
        let (mut sps, mut pps) = (None, None);
        for l in 0..bs.num_layers() {
            let Some(layer) = bs.layer(l) else { continue };
            for n in 0..layer.nal_count() {
                let Some(with_start_code) = layer.nal_unit(n) else {
                    continue;
                };
                for nal in annexb_nal_units(with_start_code) {
                    match nal_unit_type(nal) {
                        nal_type::SPS => sps = Some(nal.to_vec()),
                        nal_type::PPS => pps = Some(nal.to_vec()),
                        nal_type::AUD | nal_type::SEI => {}
                        t => {
                            keyframe |= t == nal_type::IDR;
                            let len = u32::try_from(nal.len())
                                .map_err(|_| H264Error::Encode("NAL unit over 4 GiB".into()))?;
                            data.extend_from_slice(&len.to_be_bytes());
                            data.extend_from_slice(nal);
                        }
                    }
                }
            }
        }
        if data.is_empty() {
            return Ok(None);
        }
        let config = match (sps, pps) {
            (Some(s), Some(p)) => Some(AvcConfig::from_parameter_sets(&s, &p)?.to_record()),
            _ => None,
        };
        Ok(Some(Encoded {
            data,
            keyframe,
            config,
        }))
    }
}
