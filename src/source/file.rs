//! A looped MP4 file (H.264 `avc1` + AAC `mp4a`) published as a live stream.
//!
//! The pure part, [`FileSource::next_frame`], yields frames with the time they are due; the
//! async [`FileSource::run`] sleeps until each is due and pushes it. Timestamps continue across
//! loops: the next loop starts one frame duration after the previous loop's last frame.
//!
//! Files are checked before the `mp4` crate sees them (see [`mp4_check`]): `mp4` 0.14 hangs,
//! panics or allocates gigabytes on some malformed files. `mp4` is then used only for the
//! header (codec configurations, handler types); the sample timeline comes from the sample
//! tables the check validated, and samples are sliced out of the file as they are played.

mod mp4_check;

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use mp4::{MediaType, Mp4Reader, TrackType};

use crate::hub::{HubError, PublisherHandle};
use crate::media::{
    self, AudioSpecificConfig, AvcDecoderConfig, Frame, MediaError, MediaKind, StreamMetadata,
};
use crate::pages::{PagesError, StreamWriter};

pub use mp4_check::{MalformedMp4, MAX_SAMPLES};

/// Errors from opening or playing a file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("file source {name:?}: reading {path}: {source}")]
    Io {
        name: String,
        path: String,
        source: std::io::Error,
    },
    /// The file failed the structural check that runs before the `mp4` crate parses it.
    #[error("file source {name:?}: malformed MP4: {source}")]
    Malformed { name: String, source: MalformedMp4 },
    #[error("file source {name:?}: MP4 {context}: {source}")]
    Mp4 {
        name: String,
        context: &'static str,
        source: mp4::Error,
    },
    #[error("file source {name:?}: {context}: {source}")]
    Media {
        name: String,
        context: &'static str,
        source: MediaError,
    },
    #[error("file source {name:?}: {detail}")]
    Unsupported { name: String, detail: String },
    #[error("file source {name:?}: no page space for a frame: {source}")]
    Pages { name: String, source: PagesError },
}

impl SourceError {
    /// Whether the file is malformed (refused before it was parsed), as opposed to unreadable,
    /// unsupported or failing later.
    pub fn is_malformed(&self) -> bool {
        matches!(self, SourceError::Malformed { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Video,
    Audio,
}

/// One sample of the timeline: where it is in the file and when it is due.
#[derive(Debug, Clone, Copy)]
struct Timed {
    track: Track,
    is_sync: bool,
    size: u32,
    /// `ctts` offset in timescale units.
    rendering_offset: i32,
    dts_ms: u64,
    offset: u64,
}

#[derive(Debug)]
struct VideoTrack {
    id: u32,
    timescale: u32,
    config: AvcDecoderConfig,
}

#[derive(Debug)]
struct AudioTrack {
    id: u32,
    config: AudioSpecificConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Next: metadata (0), AVC sequence header (1), AAC sequence header (2).
    Header(u8),
    /// Next: `timeline[i]`.
    Sample(usize),
}

/// A looped MP4 file. See the module docs.
pub struct FileSource {
    name: String,
    /// The whole file; samples are slices of it.
    bytes: Bytes,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    timeline: Vec<Timed>,
    loop_ms: u64,
    metadata: StreamMetadata,
    position: Position,
    loop_base_ms: u64,
    /// After a dropped video frame, video is skipped until the next sync sample.
    video_wait_key: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.name)
            .field("loop_ms", &self.loop_ms)
            .finish()
    }
}

impl FileSource {
    /// Reads an MP4 file into memory; see [`from_bytes`](Self::from_bytes).
    pub fn open(name: &str, path: impl AsRef<Path>) -> Result<FileSource, SourceError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
            name: name.to_owned(),
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(name, bytes)
    }

    /// Parses an MP4 held in memory (e.g. `include_bytes!`). Uses the first H.264 and the first
    /// AAC track; at least one is needed. `name` is for errors and logs.
    ///
    /// Any input gives a source or an error, in time and memory linear in its size (the
    /// timeline keeps 32 bytes per sample, at most [`MAX_SAMPLES`]); a file that fails the
    /// structural check is [`SourceError::Malformed`]. No sample is read here.
    pub fn from_bytes(name: &str, bytes: impl Into<Bytes>) -> Result<FileSource, SourceError> {
        let bytes: Bytes = bytes.into();
        let tables = mp4_check::check(&bytes).map_err(|source| SourceError::Malformed {
            name: name.to_owned(),
            source,
        })?;
        let size = bytes.len() as u64;
        // The check rejects everything known to make `mp4` panic; this is the last line of
        // defence should it miss something. Catching the unwind is sound here: the closure
        // owns its reader (a cursor over a reference-counted, immutable `Bytes`), `mp4` keeps
        // no global state, and nothing of ours is borrowed mutably inside, so a panic leaves
        // no half-updated state behind; everything `read_header` built is dropped in the
        // unwind. (Under libFuzzer the panic hook aborts first, so fuzzing still sees it.)
        let reader = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Mp4Reader::read_header(Cursor::new(bytes.clone()), size)
        }))
        .map_err(|_| SourceError::Unsupported {
            name: name.to_owned(),
            detail: "the mp4 crate panicked reading the header".into(),
        })?
        .map_err(|source| SourceError::Mp4 {
            name: name.to_owned(),
            context: "header",
            source,
        })?;
        let tables_of = |id: u32| {
            tables
                .iter()
                .find(|t| t.track_id == id)
                .ok_or_else(|| SourceError::Unsupported {
                    name: name.to_owned(),
                    detail: format!("track {id} has no sample tables"),
                })
        };

        let mut ids: Vec<u32> = reader.tracks().keys().copied().collect();
        ids.sort_unstable();
        let (mut video, mut audio) = (None, None);
        let mut metadata = StreamMetadata {
            encoder: Some("moment file source".to_owned()),
            ..StreamMetadata::default()
        };
        for id in ids {
            let track = &reader.tracks()[&id];
            match (track.track_type(), track.media_type()) {
                (Ok(TrackType::Video), Ok(MediaType::H264)) if video.is_none() => {
                    let avcc = &track
                        .trak
                        .mdia
                        .minf
                        .stbl
                        .stsd
                        .avc1
                        .as_ref()
                        .map(|a| &a.avcc);
                    let avcc = avcc.ok_or_else(|| SourceError::Unsupported {
                        name: name.to_owned(),
                        detail: "avc1 without avcC".into(),
                    })?;
                    let config = AvcDecoderConfig {
                        profile_indication: avcc.avc_profile_indication,
                        profile_compatibility: avcc.profile_compatibility,
                        level_indication: avcc.avc_level_indication,
                        length_size: avcc.length_size_minus_one + 1,
                        sps: avcc
                            .sequence_parameter_sets
                            .iter()
                            .map(|n| n.bytes.clone())
                            .collect(),
                        pps: avcc
                            .picture_parameter_sets
                            .iter()
                            .map(|n| n.bytes.clone())
                            .collect(),
                    };
                    if config.length_size != 4 {
                        return Err(SourceError::Unsupported {
                            name: name.to_owned(),
                            detail: format!(
                                "H.264 NAL length size {} (FLV needs 4)",
                                config.length_size
                            ),
                        });
                    }
                    let sps = config.parsed_sps().map_err(|source| SourceError::Media {
                        name: name.to_owned(),
                        context: "parsing the SPS in avcC",
                        source,
                    })?;
                    metadata.width = Some(sps.width);
                    metadata.height = Some(sps.height);
                    metadata.video_codec_id = Some(7);
                    // As `mp4`'s `Mp4Track::duration` and `bitrate`, which overflow or divide
                    // by zero on some files.
                    let t = tables_of(id)?;
                    let micros = u128::from(t.duration) * 1_000_000 / u128::from(t.timescale);
                    let duration = Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX));
                    let secs = duration.as_secs_f64();
                    if secs > 0.0 {
                        metadata.framerate =
                            Some((t.sample_count() as f64 / secs * 100.0).round() / 100.0);
                    }
                    let bitrate = match duration.as_secs() {
                        0 => 0,
                        s => (t.total_sample_size() * 8 / s) as u32,
                    };
                    metadata.video_data_rate = Some(f64::from(bitrate) / 1000.0);
                    video = Some(VideoTrack {
                        id,
                        timescale: t.timescale,
                        config,
                    });
                }
                (Ok(TrackType::Audio), Ok(MediaType::AAC)) if audio.is_none() => {
                    let mp4a = track.trak.mdia.minf.stbl.stsd.mp4a.as_ref();
                    let dec = mp4a
                        .and_then(|a| a.esds.as_ref())
                        .map(|e| &e.es_desc.dec_config.dec_specific);
                    let dec = dec.ok_or_else(|| SourceError::Unsupported {
                        name: name.to_owned(),
                        detail: "mp4a without esds".into(),
                    })?;
                    let sample_rate = media::SAMPLE_RATES
                        .get(usize::from(dec.freq_index))
                        .copied()
                        .unwrap_or_else(|| mp4a.map_or(0, |a| u32::from(a.samplerate.value())));
                    let config = AudioSpecificConfig {
                        object_type: dec.profile,
                        sample_rate,
                        channels: dec.chan_conf,
                    };
                    metadata.audio_codec_id = Some(10);
                    metadata.audio_sample_rate = Some(sample_rate);
                    metadata.audio_channels = Some(dec.chan_conf);
                    let bitrate = mp4a
                        .and_then(|a| a.esds.as_ref())
                        .map_or(0, |e| e.es_desc.dec_config.avg_bitrate);
                    metadata.audio_data_rate = Some(f64::from(bitrate) / 1000.0);
                    audio = Some(AudioTrack { id, config });
                }
                _ => {}
            }
        }
        if video.is_none() && audio.is_none() {
            return Err(SourceError::Unsupported {
                name: name.to_owned(),
                detail: "no H.264 or AAC track".into(),
            });
        }

        // The timeline: every sample's place and decode time, both tracks merged, from the
        // validated tables in one pass (no sample is read).
        // The loop lasts as long as the video (last frame + one frame duration) when there is
        // video: AAC priming and padding make the audio track a little longer, and audio
        // samples past the video's end are left out so the next loop does not overlap.
        let mut timeline = Vec::new();
        let mut loop_ms = 0u64;
        for (track, id) in [
            (Track::Video, video.as_ref().map(|v| v.id)),
            (Track::Audio, audio.as_ref().map(|a| a.id)),
        ] {
            let Some(id) = id else { continue };
            let video_end = loop_ms;
            let t = tables_of(id)?;
            let to_ms = |time: u64| {
                u64::try_from(u128::from(time) * 1000 / u128::from(t.timescale)).map_err(|_| {
                    SourceError::Unsupported {
                        name: name.to_owned(),
                        detail: format!("track {id}: a time of {time} does not fit in u64 ms"),
                    }
                })
            };
            timeline.reserve(t.sample_count() as usize);
            for s in t.samples() {
                let dts_ms = to_ms(s.start_time)?;
                if video_end > 0 && dts_ms >= video_end {
                    break;
                }
                timeline.push(Timed {
                    track,
                    is_sync: s.is_sync,
                    size: s.size,
                    rendering_offset: s.rendering_offset,
                    dts_ms,
                    offset: s.offset,
                });
                if video_end == 0 {
                    // The check bounded every track's end time to u64.
                    loop_ms = loop_ms.max(to_ms(s.start_time + u64::from(s.duration))?);
                }
            }
        }
        timeline.sort_by_key(|t| t.dts_ms);
        if timeline.is_empty() || loop_ms == 0 {
            return Err(SourceError::Unsupported {
                name: name.to_owned(),
                detail: "no samples".into(),
            });
        }
        Ok(FileSource {
            name: name.to_owned(),
            bytes,
            video,
            audio,
            timeline,
            loop_ms,
            metadata,
            position: Position::Header(0),
            loop_base_ms: 0,
            video_wait_key: false,
        })
    }

    /// What `onMetaData` says.
    pub fn metadata(&self) -> &StreamMetadata {
        &self.metadata
    }

    pub fn avc_config(&self) -> Option<&AvcDecoderConfig> {
        self.video.as_ref().map(|v| &v.config)
    }

    pub fn audio_config(&self) -> Option<&AudioSpecificConfig> {
        self.audio.as_ref().map(|a| &a.config)
    }

    /// One pass through the file: the time from one loop's first frame to the next's.
    pub fn loop_duration(&self) -> Duration {
        Duration::from_millis(self.loop_ms)
    }

    /// The next frame and the time it is due, in ms since the start. First `onMetaData` and the
    /// sequence headers (due at 0), then the samples in decode order, looping forever.
    ///
    /// A page budget error loses that frame (and, for video, the rest of its GOP); the caller
    /// may log it and call again.
    pub fn next_frame(&mut self, writer: &mut StreamWriter) -> Result<(u64, Frame), SourceError> {
        loop {
            match self.position {
                Position::Header(n) => {
                    self.position = if n >= 2 {
                        Position::Sample(0)
                    } else {
                        Position::Header(n + 1)
                    };
                    if let Some(frame) = self.header(n, writer)? {
                        return Ok((0, frame));
                    }
                }
                Position::Sample(i) => {
                    let Some(&t) = self.timeline.get(i) else {
                        self.loop_base_ms = self.loop_base_ms.saturating_add(self.loop_ms);
                        self.position = Position::Sample(0);
                        tracing::debug!(source = %self.name, base_ms = self.loop_base_ms, "file source looped");
                        continue;
                    };
                    self.position = Position::Sample(i + 1);
                    if let Some(frame) = self.sample(t, writer)? {
                        return Ok((self.loop_base_ms.saturating_add(t.dts_ms), frame));
                    }
                }
            }
        }
    }

    fn header(&mut self, n: u8, w: &mut StreamWriter) -> Result<Option<Frame>, SourceError> {
        let pages = |source| SourceError::Pages {
            name: self.name.clone(),
            source,
        };
        let (kind, body) = match n {
            0 => {
                let body = media::metadata_body(w, &self.metadata).map_err(|source| {
                    SourceError::Media {
                        name: self.name.clone(),
                        context: "writing onMetaData",
                        source,
                    }
                })?;
                (MediaKind::Data, body)
            }
            1 => match &self.video {
                Some(v) => (
                    MediaKind::Video,
                    media::avc_sequence_header(w, &v.config.to_bytes()).map_err(pages)?,
                ),
                None => return Ok(None),
            },
            _ => match &self.audio {
                Some(a) => (
                    MediaKind::Audio,
                    media::aac_sequence_header(w, &a.config.to_bytes()).map_err(pages)?,
                ),
                None => return Ok(None),
            },
        };
        self.frame(kind, 0, body).map(Some)
    }

    fn sample(&mut self, t: Timed, w: &mut StreamWriter) -> Result<Option<Frame>, SourceError> {
        // The check put every sample inside the file.
        let bytes = &self.bytes[t.offset as usize..t.offset as usize + t.size as usize];
        let ts = self.loop_base_ms.saturating_add(t.dts_ms) as u32;
        let (kind, written) = match t.track {
            Track::Video => {
                if self.video_wait_key && !t.is_sync {
                    return Ok(None);
                }
                let timescale = i64::from(self.video.as_ref().map_or(1, |v| v.timescale.max(1)));
                let cts = (i64::from(t.rendering_offset) * 1000 / timescale) as i32;
                (
                    MediaKind::Video,
                    media::video_body(w, t.is_sync, cts, bytes),
                )
            }
            Track::Audio => (MediaKind::Audio, media::aac_body(w, bytes)),
        };
        match written {
            Ok(body) => {
                if kind == MediaKind::Video {
                    self.video_wait_key = false;
                }
                self.frame(kind, ts, body).map(Some)
            }
            Err(source) => {
                if kind == MediaKind::Video {
                    self.video_wait_key = true;
                }
                Err(SourceError::Pages {
                    name: self.name.clone(),
                    source,
                })
            }
        }
    }

    fn frame(
        &self,
        kind: MediaKind,
        ts: u32,
        body: crate::pages::Message,
    ) -> Result<Frame, SourceError> {
        Frame::from_tag_body(kind, ts, body).map_err(|source| SourceError::Media {
            name: self.name.clone(),
            context: "classifying a built tag body",
            source,
        })
    }

    /// Publishes the file in real time (paced with `tokio::time`), looping until the hub shuts
    /// down, which returns `Ok(())`. Frames lost to a full page budget are logged and skipped.
    pub async fn run(
        mut self,
        mut publisher: PublisherHandle,
        mut writer: StreamWriter,
    ) -> Result<(), SourceError> {
        let start = tokio::time::Instant::now();
        tracing::info!(source = %self.name, stream = %publisher.stream_name(), loop_ms = self.loop_ms, "file source started");
        loop {
            let (due_ms, frame) = match self.next_frame(&mut writer) {
                Ok(f) => f,
                Err(e @ SourceError::Pages { .. }) => {
                    tracing::warn!(source = %self.name, error = %e, "frame skipped");
                    // Let players drain before trying again.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            tokio::time::sleep_until(start + Duration::from_millis(due_ms)).await;
            match publisher.push(frame) {
                Ok(()) => {}
                Err(HubError::ShutDown { .. }) => return Ok(()),
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "push refused");
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
