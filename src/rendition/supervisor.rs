//! One rendition's life: it holds its stream name for good, waits for a player, then reads the
//! source like a player would, re-encodes its video on a codec thread, passes its audio
//! through, and stops a linger time after the last player left.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use codecs::h264::{DecoderLimits, RenditionSpec, VideoOutput};

use super::worker::{CodecWorker, ErrorKind, Offered, Output};
use super::RenditionConfig;
use crate::hub::{Hub, HubError, PlayerItem, PublisherHandle, SourceKind};
use crate::media::{self, AvcDecoderConfig, Codec, Frame, MediaKind, StreamMetadata};
use crate::pages::StreamWriter;
use crate::status::{StatusBoard, TranscoderStatus};

/// How often a running rendition's counters reach the API.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Pause before a run that failed (codec refused the source, say) is retried.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// How a run ended.
enum End {
    Shutdown,
    /// The last player left and the linger time passed.
    NoPlayers,
    /// The run could not go on; retried after a pause while players wait.
    Failed(String),
}

/// Everything one rendition's supervisor needs.
pub struct Rendition {
    pub config: RenditionConfig,
    pub hub: Hub,
    pub writer: StreamWriter,
    pub board: StatusBoard,
}

/// What the API shows of a rendition, kept across runs.
#[derive(Debug, Default, Clone)]
struct Counters {
    running: bool,
    runs: u64,
    source_size: Option<(u32, u32)>,
    output_size: Option<(u32, u32)>,
    frames_in: u64,
    frames_out: u64,
    /// Source frames dropped because the codec thread was behind (earlier runs included).
    dropped: u64,
    decode_errors: u64,
    encoder_skipped: u64,
    /// CPU seconds of the codec threads (earlier runs included).
    cpu_ns: u64,
    queue: (usize, usize),
}

/// The per-run state that is not the worker.
struct Run {
    /// The source's audio header, for the rendition's `onMetaData`.
    audio: Option<(Codec, Option<(u32, u8)>)>,
    /// The codec thread has not produced its first keyframe yet.
    waiting_for_keyframe: bool,
    /// Counters of earlier runs, to which this run's are added.
    base: Counters,
    /// Why the codec last refused the source's format (logged once per reason).
    unusable: Option<String>,
}

impl Rendition {
    /// Runs until `shutdown` is cancelled or the hub shuts down.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let name = self.config.name.clone();
        let mut publisher = loop {
            match self.hub.publish(&name, SourceKind::Rendition) {
                Ok(p) => break p,
                Err(HubError::ShutDown { .. }) => return,
                Err(e) => {
                    // Only a publisher that came first can hold the name; it may leave.
                    warn!(rendition = %name, error = %e, "rendition cannot publish its stream name; retrying in 5 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        };
        let mut counters = Counters::default();
        self.report(&counters);
        info!(rendition = %name, source = %self.config.source, width = ?self.config.width, height = ?self.config.height, bitrate_kbps = self.config.bitrate_kbps, "rendition ready; starts with its first player");
        let mut players = self.hub.players_changed();
        loop {
            loop {
                players.borrow_and_update();
                if self.hub.player_count(&name) > 0 {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return self.stopped(&counters),
                    r = players.changed() => if r.is_err() { return self.stopped(&counters) },
                }
            }
            info!(rendition = %name, source = %self.config.source, "a player arrived: rendition starting");
            let end = self
                .run_once(&mut publisher, &mut counters, &mut players, &shutdown)
                .await;
            counters.running = false;
            counters.queue = (0, 0);
            // Players arriving later must not start on this run's GOP.
            publisher.discontinuity();
            self.report(&counters);
            match end {
                End::Shutdown => return self.stopped(&counters),
                End::NoPlayers => {
                    info!(rendition = %name, "no players left: rendition stopped, codec thread ended");
                }
                End::Failed(why) => {
                    warn!(rendition = %name, error = %why, retry_in_s = RETRY_AFTER.as_secs(), "rendition failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return self.stopped(&counters),
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                }
            }
        }
    }

    fn stopped(&self, counters: &Counters) {
        self.report(counters);
        info!(rendition = %self.config.name, "rendition stopped");
    }

    fn spec(&self) -> RenditionSpec {
        RenditionSpec {
            width: self.config.width,
            height: self.config.height,
            bitrate_bps: self.config.bitrate_kbps.saturating_mul(1000),
            keyframe_interval: self.config.keyframe_interval(),
            limits: DecoderLimits::default(),
        }
    }

    /// One run: from the first player to the linger time after the last.
    async fn run_once(
        &mut self,
        publisher: &mut PublisherHandle,
        counters: &mut Counters,
        players: &mut tokio::sync::watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> End {
        let name = self.config.name.clone();
        let mut source = match self.hub.play(&self.config.source) {
            Ok(s) => s,
            Err(HubError::ShutDown { .. }) => return End::Shutdown,
            Err(e) => return End::Failed(e.to_string()),
        };
        let mut worker = match CodecWorker::spawn(&name, self.spec()) {
            Ok(w) => w,
            Err(e) => return End::Failed(format!("cannot start the codec thread: {e}")),
        };
        counters.running = true;
        counters.runs += 1;
        let mut run = Run {
            audio: None,
            waiting_for_keyframe: true,
            base: counters.clone(),
            unusable: None,
        };
        let mut linger_until: Option<Instant> = None;
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let linger = async {
                match linger_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break End::Shutdown,
                _ = linger => break End::NoPlayers,
                r = players.changed() => {
                    if r.is_err() {
                        break End::Shutdown;
                    }
                    let n = self.hub.player_count(&name);
                    linger_until = match (n, linger_until) {
                        (0, None) => {
                            debug!(rendition = %name, linger_s = self.config.linger_s, "last player left");
                            Some(Instant::now() + self.config.linger())
                        }
                        (0, t) => t,
                        _ => None,
                    };
                }
                out = worker.recv() => match out {
                    Some(Output::Video(video)) => {
                        if let Err(why) = self.publish_video(publisher, &mut run, counters, video) {
                            break End::Failed(why);
                        }
                    }
                    Some(Output::Error { message, kind: ErrorKind::Fatal }) => break End::Failed(message),
                    Some(Output::Error { message, kind: ErrorKind::Unusable }) => {
                        // Once per distinct reason: every frame of such a source says it again.
                        if run.unusable.as_deref() != Some(message.as_str()) {
                            warn!(rendition = %name, source = %self.config.source, error = %message, "source video cannot be re-encoded; the rendition carries audio only until the source changes");
                            run.unusable = Some(message);
                        }
                    }
                    Some(Output::Error { message, kind: ErrorKind::Input }) => {
                        debug!(rendition = %name, error = %message, "codec error; resuming at the next keyframe");
                    }
                    None => break End::Failed("the codec thread ended".into()),
                },
                item = source.next() => match item {
                    Some(item) => self.source_item(publisher, &mut worker, &mut run, counters, item),
                    None => {
                        if self.hub.player_count(&name) == 0 {
                            break End::NoPlayers;
                        }
                        break End::Failed(format!("subscription to {:?} ended", self.config.source));
                    }
                },
                _ = report.tick() => {
                    self.update_from_worker(&worker, &run, counters);
                    self.report(counters);
                }
            }
        };
        drop(source);
        self.update_from_worker(&worker, &run, counters);
        worker.stop().await;
        end
    }

    fn update_from_worker(&self, worker: &CodecWorker, run: &Run, counters: &mut Counters) {
        let shared = worker.shared();
        let stats = shared.stats();
        counters.queue = shared.queued();
        counters.cpu_ns = run.base.cpu_ns + shared.cpu_ns();
        counters.dropped = run.base.dropped + worker.dropped();
        counters.decode_errors = run.base.decode_errors + stats.decode_errors;
        counters.encoder_skipped = run.base.encoder_skipped + stats.encoder_skipped;
    }

    /// One item from the source's subscription.
    fn source_item(
        &mut self,
        publisher: &mut PublisherHandle,
        worker: &mut CodecWorker,
        run: &mut Run,
        counters: &mut Counters,
        item: PlayerItem,
    ) {
        let frame = match item {
            PlayerItem::Frame(f) => f,
            PlayerItem::PublishStarted { .. }
            | PlayerItem::PublishStopped
            | PlayerItem::Discontinuity => {
                // The source's next publisher starts with a sequence header and a keyframe;
                // nothing of the last one may be decoded with it.
                run.audio = None;
                return;
            }
            PlayerItem::Kicked(reason) => {
                warn!(rendition = %self.config.name, source = %self.config.source, %reason, "rendition's subscription to its source was dropped");
                return;
            }
        };
        match frame.kind {
            MediaKind::Video => {
                let mut body = frame.payload.to_vec();
                // Legacy FLV H.264 only: codec id 7, then the AVC packet type and the
                // composition time (enhanced-RTMP bodies set the top bit of the first byte).
                if body.len() < 5 || body[0] & 0x8f != 7 {
                    if frame.sequence_header {
                        warn!(rendition = %self.config.name, codec = ?frame.codec(), "source video is not H.264: nothing to re-encode");
                    }
                    return;
                }
                if frame.sequence_header {
                    counters.source_size = frame.avc_picture_size();
                    body.drain(..5);
                    worker.offer_config(body);
                    return;
                }
                if body[1] != 1 {
                    return; // end of sequence
                }
                let pts_ms = i64::from(frame.timestamp) + i64::from(composition_time(&body));
                counters.frames_in += 1;
                body.drain(..5);
                if worker.offer_frame(body, pts_ms, frame.keyframe) == Offered::Dropped {
                    debug!(rendition = %self.config.name, "codec thread behind: source frame dropped until the next keyframe");
                }
            }
            MediaKind::Audio => {
                if frame.sequence_header {
                    run.audio = frame.codec().map(|c| (c, frame.aac_format()));
                }
                // Audio passes through, copied into the rendition's pages (a few hundred
                // bytes a frame; sharing the source's pages would tie the two streams' memory).
                let parts: Vec<&[u8]> = frame.payload.slices().collect();
                match self.writer.write(&parts) {
                    Ok(payload) => {
                        let f = Frame {
                            payload,
                            position: 0,
                            ..frame
                        };
                        if publisher.push(f).is_err() {
                            debug!(rendition = %self.config.name, "hub shut down");
                        }
                    }
                    Err(_) => publisher.count_ingest_drop(),
                }
            }
            // The source's onMetaData describes the source; the rendition writes its own.
            MediaKind::Data => {}
        }
    }

    /// One encoded frame from the codec thread: its sequence header first when it has one.
    fn publish_video(
        &mut self,
        publisher: &mut PublisherHandle,
        run: &mut Run,
        counters: &mut Counters,
        video: VideoOutput,
    ) -> Result<(), String> {
        if run.waiting_for_keyframe && !video.keyframe {
            return Ok(());
        }
        let timestamp = video.pts_ms.clamp(0, i64::from(u32::MAX)) as u32;
        if let Some(record) = &video.config {
            let size = AvcDecoderConfig::parse(record)
                .and_then(|c| c.parsed_sps())
                .map(|sps| (sps.width, sps.height))
                .map_err(|e| format!("encoder made an unusable avcC: {e}"))?;
            if counters.output_size != Some(size) || run.waiting_for_keyframe {
                counters.output_size = Some(size);
                self.push_metadata(publisher, run, size, timestamp);
            }
            let header = media::avc_sequence_header(&mut self.writer, record)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    Frame::from_tag_body(MediaKind::Video, timestamp, p).map_err(|e| e.to_string())
                });
            match header {
                Ok(h) => {
                    let _ = publisher.push(h);
                }
                Err(e) => {
                    publisher.count_ingest_drop();
                    return Err(format!("cannot store the sequence header: {e}"));
                }
            }
        }
        if run.waiting_for_keyframe {
            run.waiting_for_keyframe = false;
            info!(rendition = %self.config.name, width = counters.output_size.map(|s| s.0), height = counters.output_size.map(|s| s.1), "rendition's first keyframe");
        }
        match media::video_body(&mut self.writer, video.keyframe, 0, &video.data) {
            Ok(payload) => match Frame::from_tag_body(MediaKind::Video, timestamp, payload) {
                Ok(f) => {
                    counters.frames_out += 1;
                    let _ = publisher.push(f);
                }
                Err(e) => {
                    debug!(rendition = %self.config.name, error = %e, "encoder output unusable")
                }
            },
            Err(_) => publisher.count_ingest_drop(),
        }
        Ok(())
    }

    fn push_metadata(
        &mut self,
        publisher: &mut PublisherHandle,
        run: &Run,
        (width, height): (u32, u32),
        timestamp: u32,
    ) {
        let (audio_codec_id, audio_format) = match run.audio {
            Some((Codec::Aac, format)) => (Some(10), format),
            _ => (None, None),
        };
        let meta = StreamMetadata {
            width: Some(width),
            height: Some(height),
            video_codec_id: Some(7),
            video_data_rate: Some(f64::from(self.config.bitrate_kbps)),
            audio_codec_id,
            audio_sample_rate: audio_format.map(|f| f.0),
            audio_channels: audio_format.map(|f| f.1),
            encoder: Some(format!("moment rendition of {}", self.config.source)),
            ..StreamMetadata::default()
        };
        if let Ok(payload) = media::metadata_body(&mut self.writer, &meta) {
            if let Ok(f) = Frame::from_tag_body(MediaKind::Data, timestamp, payload) {
                let _ = publisher.push(f);
            }
        }
    }

    fn report(&self, c: &Counters) {
        let size = |s: Option<(u32, u32)>| s.map_or_else(String::new, |(w, h)| format!(" {w}x{h}"));
        self.board.set_transcoders(
            &self.config.name,
            vec![TranscoderStatus {
                name: "rendition".into(),
                input: format!("{} h264{}", self.config.source, size(c.source_size)),
                output: format!("h264{}", size(c.output_size)),
                output_stream: Some(self.config.name.clone()),
                queue_frames: c.queue.0,
                queue_bytes: c.queue.1,
                dropped_frames: c.dropped,
                running: Some(c.running),
                runs: Some(c.runs),
                frames_in: Some(c.frames_in),
                frames_out: Some(c.frames_out),
                decode_errors: Some(c.decode_errors),
                encoder_skipped: Some(c.encoder_skipped),
                cpu_seconds: Some(c.cpu_ns as f64 / 1e9),
            }],
        );
    }
}

/// The composition time of a legacy FLV AVC body of at least 5 bytes (signed 24 bits after
/// the packet type).
fn composition_time(body: &[u8]) -> i32 {
    (i32::from(body[2] as i8) << 16) | (i32::from(body[3]) << 8) | i32::from(body[4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_time_is_signed_24_bits() {
        assert_eq!(composition_time(&[0x17, 1, 0, 0, 40]), 40);
        assert_eq!(composition_time(&[0x27, 1, 0x00, 0x01, 0x00]), 256);
        assert_eq!(composition_time(&[0x27, 1, 0xff, 0xff, 0xd8]), -40);
    }
}
