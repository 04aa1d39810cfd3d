//! [`VideoTranscoder`]: one rendition of a live H.264 stream: decode, scale, encode.
//!
//! # Keyframes
//! An IDR is forced when `pts - last_idr_pts >= keyframe_interval` (by time, so variable
//! frame rates keep the schedule), when the presentation time jumps backwards, and on the
//! first frame after a (re)built encoder; openh264's own intra period (from the frame-rate
//! estimate) and scene-change detection may add IDRs. The first output is always an IDR
//! carrying `config`. openh264's rate control may drop a picture (counted in
//! `encoder_skipped`); a forced IDR that is dropped stays due for the next picture.
//!
//! # Frame rate
//! openh264's rate control divides the bitrate by a frame rate fixed when the encoder is
//! built, and so does its intra period (in frames). The estimate is the median spacing of the
//! last [`RATE_WINDOW`] output times once there are 8, else the SPS's VUI timing, else 30
//! fps. At each IDR due (by time, or by openh264's frame count, which a wrong estimate makes
//! come early) the estimate is taken again and, if it is off by more than 20%, the encoder
//! is rebuilt with it (counted in `encoder_rebuilds`; the IDR was due anyway, and `config`
//! comes only if the avcC changed). So a source whose real rate differs from its SPS gets
//! one early IDR, then keyframes on time.
//!
//! # Errors and recovery
//! Until the first keyframe decodes, and after any decode error, non-keyframes are skipped
//! (counted in `skipped_until_keyframe`) without reaching the decoder; a keyframe that
//! decodes resumes the stream. Bad input returns an error with
//! [`H264Error::is_recoverable`] true and is counted in `decode_errors`; the transcoder
//! never returns a picture it knows is damaged. Only encoder errors are fatal.
//!
//! # Bounds
//! The decoder's, scaler's and encoder's (see the [module docs](super#bounds)), plus
//! [`RATE_WINDOW`] times.

use std::collections::VecDeque;
use std::time::Duration;

use super::{fit_size, Decoder, DecoderLimits, Encoder, EncoderConfig, H264Error, Scaler, I420};

/// Output times kept for the frame-rate estimate.
pub const RATE_WINDOW: usize = 32;
/// Frame rate assumed when nothing says otherwise.
const DEFAULT_FRAME_RATE: f32 = 30.0;

/// What one rendition should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenditionSpec {
    /// Output width; `None`: from `height` and the source's aspect ratio (or the source's).
    pub width: Option<u32>,
    /// Output height; `None`: from `width` and the source's aspect ratio (or the source's).
    pub height: Option<u32>,
    /// Target bitrate (10_000..=100_000_000).
    pub bitrate_bps: u32,
    /// Time between IDRs.
    pub keyframe_interval: Duration,
    /// Largest source picture accepted.
    pub limits: DecoderLimits,
}

/// One source access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInput<'a> {
    /// AVCC NAL units (an FLV video tag's data after its 5-byte AVC header).
    pub data: &'a [u8],
    /// Presentation time (FLV: timestamp + composition time).
    pub pts_ms: i64,
    /// The source says it is a keyframe (FLV frame type 1).
    pub keyframe: bool,
}

/// One encoded frame of the rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoOutput {
    /// AVCC, 4-byte lengths.
    pub data: Vec<u8>,
    /// An IDR.
    pub keyframe: bool,
    /// Presentation time, which is also the decode time (no B-frames).
    pub pts_ms: i64,
    /// The avcC record (the FLV AVC sequence header to send before this frame): on the
    /// first output and whenever it changes.
    pub config: Option<Vec<u8>>,
}

/// Counters, monotonically increasing over the transcoder's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoTranscoderStats {
    /// Access units given to `push`.
    pub frames_in: u64,
    /// Pictures the decoder returned.
    pub decoded: u64,
    /// Frames the encoder returned (= outputs).
    pub encoded: u64,
    /// Pictures openh264's rate control dropped (no output for them).
    pub encoder_skipped: u64,
    /// Access units refused by our checks or by openh264.
    pub decode_errors: u64,
    /// Non-keyframes skipped while waiting for a keyframe (at the start, after an error or a
    /// new sequence header).
    pub skipped_until_keyframe: u64,
    /// Encoders built after the first (size change, frame-rate correction).
    pub encoder_rebuilds: u64,
    /// IDRs in the output.
    pub keyframes: u64,
    /// avcC records in the output.
    pub configs: u64,
    /// Source sequence headers given to `set_config`.
    pub source_configs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Skip non-keyframes: nothing decoded yet, or the last access unit failed.
    WaitingForKeyframe,
    Decoding,
}

/// The scaler and encoder for the current source size.
struct Stage {
    src: (u32, u32),
    scaler: Option<Scaler>,
    scaled: I420,
    encoder: Encoder,
    /// No frame encoded yet: the next is an IDR.
    fresh: bool,
    /// Frames encoded since the last IDR (openh264's intra period counts them).
    frames_since_idr: u64,
}

/// Decode → scale → encode for one rendition.
///
/// Contract: call [`set_config`](Self::set_config) with each source sequence header, then
/// [`push`](Self::push) each access unit in decode order; each push returns at most one
/// output frame (decoding delays pictures of main/high sources by their reorder depth).
///
/// `Send` (so are [`Decoder`] and [`Encoder`]: the openh264 crate declares its handles
/// `Send`, and each is used only through `&mut self`); the server may as well build it on the
/// rendition thread that runs it, e.g.
/// ```no_run
/// use codecs::h264::{RenditionSpec, VideoInput, VideoTranscoder};
/// # fn run(spec: RenditionSpec, rx: std::sync::mpsc::Receiver<(Vec<u8>, i64, bool)>, header: Vec<u8>)
/// # -> Result<(), codecs::h264::H264Error> {
/// let worker = std::thread::spawn(move || {
///     let mut t = VideoTranscoder::new(spec)?;
///     t.set_config(&header)?;
///     for (data, pts_ms, keyframe) in rx {
///         match t.push(VideoInput { data: &data, pts_ms, keyframe }) {
///             Ok(Some(out)) => { /* publish out.config (if any), then out.data at out.pts_ms */ }
///             Ok(None) => {}
///             Err(e) if e.is_recoverable() => {} // counted; resumes at the next keyframe
///             Err(e) => return Err(e),
///         }
///     }
///     Ok(t.stats())
/// });
/// # Ok(()) }
/// ```
pub struct VideoTranscoder {
    decoder: Decoder,
    sync: Sync,
    encoding: Encoding,
    stats: VideoTranscoderStats,
}

/// The encoding side: what turns a decoded picture into output. Kept apart from the decoder
/// because a decoded picture borrows the decoder while it is encoded.
struct Encoding {
    spec: RenditionSpec,
    stage: Option<Stage>,
    last_idr_pts: Option<i64>,
    last_config: Option<Vec<u8>>,
    times: VecDeque<i64>,
}

impl std::fmt::Debug for VideoTranscoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoTranscoder")
            .field("spec", &self.encoding.spec)
            .field("sync", &self.sync)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VideoTranscoder {
    /// A transcoder for `spec`. Fails on a bitrate outside 10 kbit/s..=100 Mbit/s or a
    /// requested size openh264 cannot encode; the source size is known at the first picture.
    pub fn new(spec: RenditionSpec) -> Result<Self, H264Error> {
        if !(10_000..=100_000_000).contains(&spec.bitrate_bps) {
            return Err(H264Error::Unsupported(format!(
                "bitrate {} outside 10000..=100000000",
                spec.bitrate_bps
            )));
        }
        Ok(VideoTranscoder {
            decoder: Decoder::new(spec.limits)?,
            sync: Sync::WaitingForKeyframe,
            encoding: Encoding {
                spec,
                stage: None,
                last_idr_pts: None,
                last_config: None,
                times: VecDeque::with_capacity(RATE_WINDOW),
            },
            stats: VideoTranscoderStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> VideoTranscoderStats {
        self.stats
    }

    /// The rendition's spec.
    pub fn spec(&self) -> RenditionSpec {
        self.encoding.spec
    }

    /// The output size, once the first picture has been decoded.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        self.encoding.stage.as_ref().map(|s| {
            let c = s.encoder.config();
            (c.width, c.height)
        })
    }

    /// Takes the source's avcC record. The same record again changes nothing; a new one
    /// restarts the decoder and waits for a keyframe (a new size rebuilds the scaler and
    /// encoder when its first picture comes out).
    pub fn set_config(&mut self, avcc_record: &[u8]) -> Result<(), H264Error> {
        self.stats.source_configs += 1;
        if self.decoder.config_record() == Some(avcc_record) {
            return Ok(());
        }
        // A new sequence starts at its keyframe (and a bad header leaves nothing to decode).
        self.sync = Sync::WaitingForKeyframe;
        self.decoder.configure(avcc_record)
    }

    /// Transcodes one access unit; see the [module docs](self) for keyframes and recovery.
    pub fn push(&mut self, input: VideoInput<'_>) -> Result<Option<VideoOutput>, H264Error> {
        self.stats.frames_in += 1;
        if self.sync == Sync::WaitingForKeyframe && !input.keyframe {
            self.stats.skipped_until_keyframe += 1;
            return Ok(None);
        }
        // (Read before decoding: the picture borrows the decoder. An in-band SPS in this
        // access unit counts from the next one.)
        let fps_hint = self.decoder.sps().and_then(|s| s.frame_rate);
        let decoded = match self.decoder.decode_at(input.data, input.pts_ms) {
            Ok(d) => d,
            Err(e) => {
                self.stats.decode_errors += 1;
                self.sync = Sync::WaitingForKeyframe;
                return Err(e);
            }
        };
        self.sync = Sync::Decoding;
        let Some((picture, pts)) = decoded else {
            return Ok(None);
        };
        self.stats.decoded += 1;
        self.encoding
            .encode(&mut self.stats, fps_hint, picture, pts)
    }

    /// End of stream: the pictures the decoder still holds, transcoded.
    pub fn finish(&mut self) -> Result<Vec<VideoOutput>, H264Error> {
        let fps_hint = self.decoder.sps().and_then(|s| s.frame_rate);
        let mut out = Vec::new();
        for (picture, pts) in self.decoder.flush()? {
            self.stats.decoded += 1;
            if let Some(o) = self
                .encoding
                .encode(&mut self.stats, fps_hint, &picture, pts)?
            {
                out.push(o);
            }
        }
        Ok(out)
    }
}

impl Encoding {
    /// Scales and encodes one decoded picture (rebuilding the scaler and encoder for a new
    /// source size, or a frame rate that was estimated wrong), forcing an IDR when one is due.
    fn encode(
        &mut self,
        stats: &mut VideoTranscoderStats,
        fps_hint: Option<f64>,
        picture: &I420,
        pts: i64,
    ) -> Result<Option<VideoOutput>, H264Error> {
        let Encoding {
            spec,
            stage,
            last_idr_pts,
            last_config,
            times,
        } = self;
        let size = (picture.width(), picture.height());
        if times.len() == RATE_WINDOW {
            times.pop_front();
        }
        times.push_back(pts);
        let estimate = estimate_fps(times, fps_hint);

        let due_by_time = match *last_idr_pts {
            None => true,
            Some(last) => {
                let since = pts.saturating_sub(last);
                since < 0 || since as u128 >= spec.keyframe_interval.as_millis()
            }
        };
        // openh264's own intra period makes this frame an IDR anyway: as good a moment to
        // correct the frame rate (a wrong estimate is what makes the two schedules differ).
        let due_by_count = stage.as_ref().is_some_and(|s| {
            s.frames_since_idr + 1 >= u64::from(s.encoder.config().intra_period())
        });
        let due = due_by_time || due_by_count;
        let rebuild_for_rate = due
            && stage.as_ref().is_some_and(|s| {
                let current = s.encoder.config().frame_rate;
                (estimate / current - 1.0).abs() > 0.2
            });
        if stage.as_ref().is_none_or(|s| s.src != size) || rebuild_for_rate {
            let (w, h) = fit_size(size.0, size.1, spec.width, spec.height);
            let scaler = if (w, h) == size {
                None
            } else {
                Some(Scaler::new(size.0, size.1, w, h)?)
            };
            let encoder = Encoder::new(EncoderConfig {
                width: w,
                height: h,
                bitrate_bps: spec.bitrate_bps,
                frame_rate: estimate,
                keyframe_interval: spec.keyframe_interval,
            })?;
            if stage.is_some() {
                stats.encoder_rebuilds += 1;
            }
            *stage = Some(Stage {
                src: size,
                scaler,
                scaled: I420::new(w, h),
                encoder,
                fresh: true,
                frames_since_idr: 0,
            });
        }
        let Some(st) = stage.as_mut() else {
            return Ok(None);
        };
        let force = due || st.fresh || last_config.is_none();
        st.fresh = false;
        let frame = match &mut st.scaler {
            Some(scaler) => {
                scaler.scale(picture, &mut st.scaled)?;
                &st.scaled
            }
            None => picture,
        };
        let Some(encoded) = st.encoder.encode(frame, pts, force)? else {
            // Skipped by rate control. A forced IDR stays due (`last_idr_pts`, `last_config`
            // unchanged); `fresh` is only for a new encoder's first frame, which openh264
            // makes an IDR anyway.
            stats.encoder_skipped += 1;
            return Ok(None);
        };
        stats.encoded += 1;
        if encoded.keyframe {
            stats.keyframes += 1;
            *last_idr_pts = Some(pts);
            st.frames_since_idr = 0;
        } else {
            st.frames_since_idr += 1;
        }
        let config = match encoded.config {
            Some(c) if last_config.as_ref() != Some(&c) => {
                stats.configs += 1;
                *last_config = Some(c.clone());
                Some(c)
            }
            _ => None,
        };
        Ok(Some(VideoOutput {
            data: encoded.data,
            keyframe: encoded.keyframe,
            pts_ms: pts,
            config,
        }))
    }
}

/// Median frame spacing of `times` (at least 8), else the SPS's rate, else 30 fps; 1..=240.
fn estimate_fps(times: &VecDeque<i64>, hint: Option<f64>) -> f32 {
    if times.len() >= 8 {
        let mut gaps: Vec<i64> = times
            .iter()
            .zip(times.iter().skip(1))
            // Saturating: times are whatever the source says, up to the ends of i64.
            .map(|(a, b)| b.saturating_sub(*a))
            .filter(|&d| d > 0)
            .collect();
        if gaps.len() >= 4 {
            gaps.sort_unstable();
            let median = gaps[gaps.len() / 2] as f32;
            return (1000.0 / median).clamp(1.0, 240.0);
        }
    }
    hint.map_or(DEFAULT_FRAME_RATE, |f| f as f32)
        .clamp(1.0, 240.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_send() {
        // The openh264 crate declares its handles Send; each is only used through `&mut`.
        fn is_send<T: Send>() {}
        is_send::<VideoTranscoder>();
        is_send::<Decoder>();
        is_send::<Encoder>();
        is_send::<Scaler>();
    }

    #[test]
    fn frame_rate_estimate() {
        let mut t: VecDeque<i64> = (0..8).map(|i| i * 40).collect();
        assert_eq!(estimate_fps(&t, Some(50.0)), 25.0);
        t.truncate(3);
        assert_eq!(estimate_fps(&t, Some(50.0)), 50.0);
        assert_eq!(estimate_fps(&t, None), 30.0);
        // Jitter and a gap do not move the median.
        let t: VecDeque<i64> = [0, 33, 67, 100, 133, 500, 533, 567, 600].into();
        assert!((estimate_fps(&t, None) - 30.3).abs() < 0.1);
    }
}
