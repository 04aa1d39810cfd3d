//! The sans-IO heart of a camera: turns what an RTSP session yields ([`Unit`]s, already out of
//! retina's types) into [`Frame`]s with FLV tag bodies written into the camera's pages.
//!
//! One [`Ingest`] lives as long as the camera, across any number of RTSP sessions, so that the
//! one publisher it feeds sees a single stream: each session's timestamps continue a frame
//! after the previous session's last, each session starts with sequence headers (new ones if
//! the camera's parameters changed) and with a keyframe. Nothing here is kept per frame or per
//! session beyond the current parameters: memory is flat across reconnects.

use bytes::Bytes;

use super::dts::DecodeTimes;

use crate::media::{
    self, AudioSpecificConfig, AvcDecoderConfig, Frame, MediaError, MediaKind, StreamMetadata,
};
use crate::pages::{Message, PagesError, StreamWriter};

/// Gap between the last frame of one session and the first of the next, in ms (about one
/// frame at 25 fps; players see a short freeze, never time going back).
pub const SESSION_GAP_MS: u32 = 40;

/// One depacketized unit from a session, with its time since the session's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    Video(VideoUnit),
    Audio(AudioUnit),
}

/// An H.264 access unit in AVCC form (4-byte-length-prefixed NAL units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoUnit {
    /// Presentation time since the session started (RTP-Info `rtptime` or first packet), ms.
    pub elapsed_ms: i64,
    pub keyframe: bool,
    pub disposable: bool,
    /// Packets were lost (or damaged) since the previous video unit: this one may reference
    /// what is missing, so video waits for the next keyframe.
    pub after_loss: bool,
    pub data: Bytes,
    /// The avcC record, when this unit brought new parameters (the session reports it on
    /// change; repeating an unchanged one is harmless).
    pub params: Option<Bytes>,
}

/// A raw AAC frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioUnit {
    pub elapsed_ms: i64,
    pub data: Bytes,
}

/// What the camera's audio is, and what we do with it. The transcoding issue adds a variant
/// that routes G.711 to an AAC encoder; today such audio is left out (video only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudioHandling {
    /// No audio track.
    #[default]
    None,
    /// AAC: passed through with this AudioSpecificConfig.
    Aac { asc: Bytes },
    /// Audio that RTMP players cannot use but the transcoder can (G.711 A-law/µ-law): set up,
    /// and its units go to the camera's AAC transcoder instead of [`Ingest::push`].
    NeedsTranscode {
        encoding: String,
        clock_rate: u32,
        channels: u16,
    },
    /// Audio nobody here can use: not set up.
    Unsupported { encoding: String },
}

impl AudioHandling {
    /// True when the session should SETUP the audio track.
    pub fn passes_through(&self) -> bool {
        matches!(self, AudioHandling::Aac { .. })
    }
}

/// What a session offers, known after DESCRIBE (video parameters may come later, in band).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// True when an H.264 track was set up.
    pub video: bool,
    /// The avcC record from the SDP (`sprop-parameter-sets`), if it had one.
    pub video_params: Option<Bytes>,
    pub audio: AudioHandling,
}

/// A camera's input that cannot be used; the session is dropped and reopened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("H.264 parameters: {0}")]
    VideoParams(MediaError),
    #[error("H.264 NAL length size {0} (FLV needs 4)")]
    LengthSize(u8),
    #[error("AAC AudioSpecificConfig: {0}")]
    AudioConfig(MediaError),
    #[error("a unit arrived outside a session")]
    NoSession,
}

/// Counters over the camera's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestStats {
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Video frames dropped while waiting for a session's first keyframe.
    pub dropped_wait_key: u64,
    /// Video frames dropped after RTP loss, until the next keyframe (the session lives on).
    pub dropped_after_loss: u64,
    /// Times video restarted at a keyframe after a loss.
    pub loss_recoveries: u64,
    /// Frames dropped because the stream's page budget was full.
    pub dropped_budget: u64,
    /// Audio frames of a kind that was not set up (should not happen; counted, not fatal).
    pub dropped_other: u64,
}

#[derive(Debug)]
struct Session {
    /// Output timestamp of elapsed 0.
    base: u32,
    avcc: Option<Bytes>,
    asc: Option<Bytes>,
    /// Video is held back (dropped) until a keyframe: at the start and after a loss.
    wait_key: bool,
    /// Why: false at the start (or after the page budget), true after RTP loss.
    waiting_after_loss: bool,
    keyframes: u64,
    /// Decode times from presentation times (B-frames).
    dts: DecodeTimes,
    /// New parameters arrived: `onMetaData` and the sequence header go out with the next
    /// keyframe.
    header_due: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct Ingest {
    name: String,
    /// Highest timestamp emitted, over all sessions.
    last_ts: Option<u32>,
    session: Option<Session>,
    metadata: StreamMetadata,
    stats: IngestStats,
}

impl Ingest {
    pub fn new(name: &str) -> Ingest {
        Ingest {
            name: name.to_owned(),
            last_ts: None,
            session: None,
            metadata: StreamMetadata::default(),
            stats: IngestStats::default(),
        }
    }

    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// True once the current session has delivered a keyframe (it then counts as working).
    pub fn has_keyframe(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.keyframes > 0)
    }

    /// Starts a session: appends `onMetaData` and the sequence headers known so far to `out`.
    /// Timestamps continue [`SESSION_GAP_MS`] after the last frame of the previous session.
    pub fn start_session(
        &mut self,
        info: &SessionInfo,
        w: &mut StreamWriter,
        out: &mut Vec<Frame>,
    ) -> Result<(), IngestError> {
        // The first session starts one gap in too, so that B-frame decode times a few ms
        // before a session's first presentation time never wrap below zero.
        let base = self
            .last_ts
            .map_or(SESSION_GAP_MS, |t| t.wrapping_add(SESSION_GAP_MS));
        let asc = match &info.audio {
            AudioHandling::Aac { asc } => {
                let parsed = AudioSpecificConfig::parse(asc).map_err(IngestError::AudioConfig)?;
                self.metadata.audio_codec_id = Some(10);
                self.metadata.audio_sample_rate = Some(parsed.sample_rate);
                self.metadata.audio_channels = Some(parsed.channels);
                Some(asc.clone())
            }
            _ => {
                self.metadata.audio_codec_id = None;
                self.metadata.audio_sample_rate = None;
                self.metadata.audio_channels = None;
                None
            }
        };
        self.metadata.encoder = Some("moment rtsp ingest".to_owned());
        self.metadata.video_codec_id = info.video.then_some(7);
        self.session = Some(Session {
            base,
            avcc: None,
            asc: asc.clone(),
            wait_key: true,
            waiting_after_loss: false,
            keyframes: 0,
            dts: DecodeTimes::default(),
            header_due: false,
        });
        if let Some(avcc) = &info.video_params {
            self.set_video_params(avcc)?;
        }
        // Headers a little before `base`: B-frame decode times may start just before it.
        let header_ts = self.timestamp(base, -i64::from(SESSION_GAP_MS / 2));
        self.emit_metadata(header_ts, w, out);
        if let Some(avcc) = self.session.as_ref().and_then(|s| s.avcc.clone()) {
            self.emit(
                MediaKind::Video,
                header_ts,
                media::avc_sequence_header(w, &avcc),
                out,
            );
        }
        if let Some(asc) = asc {
            self.emit(
                MediaKind::Audio,
                header_ts,
                media::aac_sequence_header(w, &asc),
                out,
            );
        }
        Ok(())
    }

    /// The stream timestamp of a unit `elapsed_ms` into the session (for audio that goes to a
    /// transcoder before it becomes a frame); `None` outside a session.
    pub fn timestamp_of(&mut self, elapsed_ms: i64) -> Option<u32> {
        let base = self.session.as_ref()?.base;
        Some(self.timestamp(base, elapsed_ms))
    }

    /// Ends the session (lost, stalled or closed). The next one continues the timeline.
    pub fn end_session(&mut self) {
        self.session = None;
    }

    /// Turns one unit into frames, appended to `out`: for video with new parameters, the new
    /// `onMetaData` and sequence header first. Video before the session's first keyframe (or
    /// after a frame lost to the page budget) is dropped, never buffered. An error means the
    /// camera's input is unusable and the session should end.
    pub fn push(
        &mut self,
        unit: Unit,
        w: &mut StreamWriter,
        out: &mut Vec<Frame>,
    ) -> Result<(), IngestError> {
        let Some(s) = &self.session else {
            return Err(IngestError::NoSession);
        };
        let base = s.base;
        match unit {
            Unit::Video(v) => {
                if let Some(p) = &v.params {
                    if self.set_video_params(p)? {
                        tracing::info!(camera = %self.name, width = ?self.metadata.width, height = ?self.metadata.height, "camera video parameters changed");
                        if let Some(s) = &mut self.session {
                            // Sent with the next keyframe, at its decode time.
                            s.header_due = true;
                            s.wait_key = true;
                        }
                    }
                }
                let Some(s) = &mut self.session else {
                    return Err(IngestError::NoSession);
                };
                if v.after_loss && !v.keyframe && !s.wait_key {
                    s.wait_key = true;
                    s.waiting_after_loss = true;
                }
                if s.avcc.is_none() || (s.wait_key && !v.keyframe) {
                    if s.waiting_after_loss {
                        self.stats.dropped_after_loss += 1;
                    } else {
                        self.stats.dropped_wait_key += 1;
                    }
                    return Ok(());
                }
                if s.wait_key {
                    // A new run of decodable frames: earlier presentation times are no use.
                    s.dts.restart();
                    if s.waiting_after_loss {
                        self.stats.loss_recoveries += 1;
                    }
                }
                s.wait_key = false;
                s.waiting_after_loss = false;
                if v.keyframe {
                    s.keyframes += 1;
                }
                let times = s.dts.next(v.elapsed_ms);
                let header = std::mem::take(&mut s.header_due)
                    .then(|| s.avcc.clone())
                    .flatten();
                let ts = self.timestamp(base, times.dts);
                if let Some(avcc) = header {
                    self.emit_metadata(ts, w, out);
                    let seq = media::avc_sequence_header(w, &avcc);
                    self.emit(MediaKind::Video, ts, seq, out);
                }
                let body = media::video_body(w, v.keyframe, times.cts(), &v.data);
                if !self.emit(MediaKind::Video, ts, body, out) {
                    if let Some(s) = &mut self.session {
                        s.wait_key = true;
                    }
                }
            }
            Unit::Audio(a) => {
                if s.asc.is_none() {
                    self.stats.dropped_other += 1;
                    return Ok(());
                }
                let ts = self.timestamp(base, a.elapsed_ms);
                self.emit(MediaKind::Audio, ts, media::aac_body(w, &a.data), out);
            }
        }
        Ok(())
    }

    /// Records new avcC parameters; true if they differ from the session's current ones.
    fn set_video_params(&mut self, avcc: &Bytes) -> Result<bool, IngestError> {
        let s = self.session.as_mut().ok_or(IngestError::NoSession)?;
        if s.avcc.as_ref() == Some(avcc) {
            return Ok(false);
        }
        let config = AvcDecoderConfig::parse(avcc).map_err(IngestError::VideoParams)?;
        if config.length_size != 4 {
            return Err(IngestError::LengthSize(config.length_size));
        }
        let sps = config.parsed_sps().map_err(IngestError::VideoParams)?;
        // Baseline (66) and constrained profiles have no B-frames whatever the VUI says.
        let depth = if sps.profile_idc == 66 {
            Some(0)
        } else {
            sps.max_num_reorder_frames
        };
        s.dts.set_depth(depth);
        s.avcc = Some(avcc.clone());
        self.metadata.width = Some(sps.width);
        self.metadata.height = Some(sps.height);
        self.metadata.video_codec_id = Some(7);
        Ok(true)
    }

    fn timestamp(&mut self, base: u32, elapsed_ms: i64) -> u32 {
        // Elapsed time before the session's start (B-frame decode times, reordered packets)
        // may reach back up to half the session gap; earlier is pinned there. The hub's
        // per-player rebaser clamps the small steps back between tracks.
        let back = i64::from(SESSION_GAP_MS / 2);
        let ts = if elapsed_ms < 0 {
            base.wrapping_sub(elapsed_ms.unsigned_abs().min(back as u64) as u32)
        } else {
            base.wrapping_add(elapsed_ms.min(i64::from(u32::MAX)) as u32)
        };
        let later = match self.last_ts {
            None => true,
            Some(last) => (ts.wrapping_sub(last) as i32) > 0,
        };
        if later {
            self.last_ts = Some(ts);
        }
        ts
    }

    fn emit_metadata(&mut self, ts: u32, w: &mut StreamWriter, out: &mut Vec<Frame>) {
        match media::metadata_body(w, &self.metadata) {
            Ok(body) => {
                self.emit(MediaKind::Data, ts, Ok(body), out);
            }
            Err(e) => {
                self.stats.dropped_budget += 1;
                tracing::warn!(camera = %self.name, error = %e, "onMetaData dropped");
            }
        }
    }

    /// Wraps a written body in a frame; false if it was lost (page budget).
    fn emit(
        &mut self,
        kind: MediaKind,
        ts: u32,
        body: Result<Message, PagesError>,
        out: &mut Vec<Frame>,
    ) -> bool {
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                self.stats.dropped_budget += 1;
                if self.stats.dropped_budget.is_power_of_two() {
                    tracing::warn!(camera = %self.name, error = %e, dropped = self.stats.dropped_budget, "frame dropped: page budget");
                }
                return false;
            }
        };
        match Frame::from_tag_body(kind, ts, body) {
            Ok(f) => {
                self.stats.frames_out += 1;
                self.stats.bytes_out += f.payload.len() as u64;
                out.push(f);
                true
            }
            Err(e) => {
                // Our own builders wrote it: a bug, but the camera's, not the server's, problem.
                tracing::error!(camera = %self.name, error = %e, "built an unclassifiable tag body");
                false
            }
        }
    }
}
