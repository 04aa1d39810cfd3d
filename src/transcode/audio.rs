//! A stream's audio stage: FLV audio players cannot use (Speex, G.711) goes to a transcoder
//! thread and comes back as AAC; everything else passes through untouched.
//!
//! Contract: the ingest task calls [`AudioStage::offer`] for every audio tag body and, while
//! the stage may produce output, awaits [`AudioStage::recv`] alongside its other work, writing
//! what comes back into the stream's pages. Dropping the stage ends its thread (the thread
//! notices its input channel closing and returns; nothing joins it on the reactor).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use codecs::{AudioTranscoder, InputCodec, InputFormat, OutputConfig, TranscoderStats};
use tracing::{info, warn};

use super::{AudioConfig, AudioPolicy};
use crate::status::{StatusBoard, TranscoderStatus};

/// Most input packets waiting for the transcoder thread (about 5 s of 20 ms packets).
const QUEUE_PACKETS: usize = 256;
/// Most input bytes waiting for it; beyond either bound input is dropped.
const QUEUE_BYTES: usize = 256 * 1024;
/// Most AAC frames waiting for the ingest task; the thread blocks beyond it (and then its
/// input queue fills and drops), so nothing grows.
const OUTPUT_FRAMES: usize = 64;
/// How often the stage's status is published for the API.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What the stage did with an offered audio body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Players can use it (or transcoding is off for this stream): push it as it is.
    Pass,
    /// Queued for the transcoder: AAC comes back through [`AudioStage::recv`].
    Taken,
    /// The transcoder is behind: the packet was dropped (counted and logged).
    Dropped,
}

/// AAC from the transcoder, ready to be written as FLV tag bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscodedAudio {
    /// The AudioSpecificConfig: send as the AAC sequence header before any frame. Stamped
    /// with the first frame's timestamp, so that a player's audio clock starts where the
    /// audio does (players keep each track's timestamps monotonic).
    SequenceHeader { asc: Vec<u8>, timestamp: u32 },
    /// One raw AAC-LC frame at this RTMP timestamp.
    Frame { data: Vec<u8>, timestamp: u32 },
}

struct Job {
    packet: Bytes,
    timestamp: u64,
}

/// Counters shared with the transcoder thread.
#[derive(Default)]
struct Shared {
    /// Set once the codec was created: a thread that ends without it could not use the input
    /// format at all (say, a camera whose SDP gives an impossible clock rate).
    started: AtomicBool,
    queued_packets: AtomicUsize,
    queued_bytes: AtomicUsize,
    stats: Mutex<TranscoderStats>,
}

struct Worker {
    input: InputFormat,
    jobs: SyncSender<Job>,
    output: tokio::sync::mpsc::Receiver<TranscodedAudio>,
    shared: Arc<Shared>,
}

/// One stream's audio stage; see the module docs.
pub struct AudioStage {
    stream: String,
    policy: AudioPolicy,
    output: OutputConfig,
    board: StatusBoard,
    worker: Option<Worker>,
    dropped: Arc<AtomicU64>,
    reported: Option<Instant>,
    passthrough_logged: bool,
    /// An input format the codec refused: its packets are dropped, not retried with a new
    /// thread each.
    unusable: Option<InputFormat>,
}

impl AudioStage {
    /// Whether this stream's policy transcodes (`[audio]`, with its per-stream overrides).
    pub fn transcodes(&self) -> bool {
        self.policy == AudioPolicy::Aac
    }

    pub fn new(stream: &str, config: &AudioConfig, board: StatusBoard) -> AudioStage {
        AudioStage {
            stream: stream.to_owned(),
            policy: config.policy(stream),
            output: config.output(),
            board,
            worker: None,
            dropped: Arc::default(),
            reported: None,
            passthrough_logged: false,
            unusable: None,
        }
    }

    /// Routes one FLV audio tag body (1-byte header, then the codec's packet).
    pub fn offer(&mut self, body: &Bytes, timestamp: u32) -> Offer {
        let Some(input) = body.first().and_then(|&h| transcodable(h)) else {
            // AAC, MP3 and the like: players use them as they are. A stream that switches
            // away from a transcoded codec ends its transcoder.
            if self.worker.take().is_some() {
                self.report(true);
            }
            return Offer::Pass;
        };
        self.offer_packet(input, body.slice(1..), timestamp)
    }

    /// Routes one packet of a codec players cannot use (an RTP payload of a camera's G.711,
    /// say): transcoded unless the stream's policy is `off`, which returns [`Offer::Pass`].
    pub fn offer_packet(&mut self, input: InputFormat, packet: Bytes, timestamp: u32) -> Offer {
        if self.policy == AudioPolicy::Off {
            if !self.passthrough_logged {
                self.passthrough_logged = true;
                info!(stream = %self.stream, codec = ?input.codec, "audio not transcoded ([audio] transcode = \"off\")");
            }
            return Offer::Pass;
        }
        if self.unusable == Some(input) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Offer::Dropped;
        }
        if self.worker.as_ref().is_none_or(|w| w.input != input) {
            info!(stream = %self.stream, codec = ?input.codec, rate = input.sample_rate, channels = input.channels, "transcoding audio to AAC");
            self.worker = Some(spawn(&self.stream, input, self.output));
        }
        let worker = self.worker.as_ref().expect("just made");
        let len = packet.len();
        let over = worker.shared.queued_bytes.load(Ordering::Relaxed) + len > QUEUE_BYTES;
        let sent = if over {
            Err(false)
        } else {
            match worker.jobs.try_send(Job {
                packet,
                timestamp: u64::from(timestamp),
            }) {
                Ok(()) => {
                    worker.shared.queued_packets.fetch_add(1, Ordering::Relaxed);
                    worker.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
                    Ok(())
                }
                Err(TrySendError::Full(_)) => Err(false),
                // The thread ended (its encoder failed): the next packet starts a new one.
                Err(TrySendError::Disconnected(_)) => Err(true),
            }
        };
        match sent {
            Ok(()) => {
                self.report(false);
                return Offer::Taken;
            }
            Err(true) => self.worker_ended(),
            Err(false) => {}
        }
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            warn!(stream = %self.stream, dropped, "audio transcoder behind: input dropped");
        }
        self.report(false);
        Offer::Dropped
    }

    /// The next AAC output; pends forever while no transcoder runs.
    pub async fn recv(&mut self) -> TranscodedAudio {
        loop {
            let Some(worker) = &mut self.worker else {
                return std::future::pending().await;
            };
            match worker.output.recv().await {
                Some(out) => return out,
                None => {
                    // The thread ended on its own (logged there).
                    self.worker_ended();
                    self.report(true);
                }
            }
        }
    }

    /// The transcoder thread ended on its own. If its codec never started, the input format
    /// is unusable and stays refused; otherwise (an encoder failure) the next packet starts
    /// a new one.
    fn worker_ended(&mut self) {
        if let Some(w) = self.worker.take() {
            if !w.shared.started.load(Ordering::Acquire) {
                self.unusable = Some(w.input);
            }
        }
    }

    /// Publishes the stage's status for the API, at most once per `REPORT_EVERY`.
    fn report(&mut self, now: bool) {
        if !now && self.reported.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.reported = Some(Instant::now());
        let list = match &self.worker {
            None => Vec::new(),
            Some(w) => {
                let stats = *w.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                vec![TranscoderStatus {
                    name: "aac".into(),
                    input: codec_name(w.input.codec).into(),
                    output: "aac".into(),
                    output_stream: Some(self.stream.clone()),
                    queue_frames: w.shared.queued_packets.load(Ordering::Relaxed),
                    queue_bytes: w.shared.queued_bytes.load(Ordering::Relaxed),
                    dropped_frames: self.dropped.load(Ordering::Relaxed) + stats.frames_dropped,
                    ..TranscoderStatus::default()
                }]
            }
        };
        self.board.set_transcoders(&self.stream, list);
    }
}

impl Drop for AudioStage {
    fn drop(&mut self) {
        if self.worker.take().is_some() {
            self.board.set_transcoders(&self.stream, Vec::new());
        }
    }
}

/// The transcoder input an FLV audio header calls for, if players cannot use its codec.
fn transcodable(header: u8) -> Option<InputFormat> {
    let channels = if header & 1 == 1 { 2 } else { 1 };
    match header >> 4 {
        // FLV Speex is always 16 kHz wideband mono, whatever the rate bits say.
        11 => Some(InputFormat::FLV_SPEEX),
        // FLV G.711 is 8 kHz (the rate bits cannot express it).
        7 => Some(InputFormat {
            codec: InputCodec::Pcma,
            sample_rate: 8000,
            channels,
        }),
        8 => Some(InputFormat {
            codec: InputCodec::Pcmu,
            sample_rate: 8000,
            channels,
        }),
        _ => None,
    }
}

fn codec_name(c: InputCodec) -> &'static str {
    match c {
        InputCodec::Speex => "speex",
        InputCodec::Pcma => "pcma",
        InputCodec::Pcmu => "pcmu",
    }
}

fn spawn(stream: &str, input: InputFormat, output: OutputConfig) -> Worker {
    let (jobs, job_rx) = sync_channel(QUEUE_PACKETS);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(OUTPUT_FRAMES);
    let shared = Arc::new(Shared::default());
    let thread_shared = shared.clone();
    let name = stream.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("aac-{stream}"))
        .spawn(move || run(&name, input, output, job_rx, out_tx, &thread_shared));
    if let Err(e) = spawned {
        // Out of threads: the job channel's receiver is gone, so offers see Disconnected and
        // the stream's audio is dropped (counted) rather than the server failing.
        warn!(stream = %stream, error = %e, "cannot start the audio transcoder thread");
    }
    Worker {
        input,
        jobs,
        output: out_rx,
        shared,
    }
}

/// The transcoder thread: the codec is created here because it is not `Send`.
fn run(
    stream: &str,
    input: InputFormat,
    output: OutputConfig,
    jobs: Receiver<Job>,
    out: tokio::sync::mpsc::Sender<TranscodedAudio>,
    shared: &Shared,
) {
    let mut transcoder = match AudioTranscoder::new(input, output) {
        Ok(t) => t,
        Err(e) => {
            warn!(stream = %stream, error = %e, "cannot create the audio transcoder");
            return;
        }
    };
    shared.started.store(true, Ordering::Release);
    // The sequence header goes out with the first frame, which gives it its timestamp.
    let mut asc = Some(transcoder.audio_specific_config());
    let mut errors_logged = 0u64;
    while let Ok(job) = jobs.recv() {
        shared.queued_packets.fetch_sub(1, Ordering::Relaxed);
        shared
            .queued_bytes
            .fetch_sub(job.packet.len(), Ordering::Relaxed);
        if let Err(e) = transcoder.push(&job.packet, job.timestamp) {
            if !e.is_recoverable() {
                warn!(stream = %stream, error = %e, "audio transcoder failed; a new one starts with the next packet");
                return;
            }
            let errors = transcoder.stats().decode_errors;
            if errors.is_power_of_two() && errors > errors_logged {
                errors_logged = errors;
                warn!(stream = %stream, error = %e, errors, "bad audio packet (replaced by silence)");
            }
        }
        while let Some(frame) = transcoder.pull() {
            let timestamp = frame.timestamp_ms as u32;
            if let Some(asc) = asc.take() {
                let header = TranscodedAudio::SequenceHeader { asc, timestamp };
                if out.blocking_send(header).is_err() {
                    return;
                }
            }
            let frame = TranscodedAudio::Frame {
                data: frame.data,
                timestamp,
            };
            if out.blocking_send(frame).is_err() {
                return;
            }
        }
        *shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = transcoder.stats();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's Speex tags as FLV tag bodies (header byte included), with timestamps.
    fn speex_packets() -> Vec<(Bytes, u32)> {
        codecs::test_input::speex_fixture()
            .into_iter()
            .map(|t| {
                let mut body = vec![t.header];
                body.extend_from_slice(&t.packet);
                (Bytes::from(body), t.timestamp_ms)
            })
            .collect()
    }

    #[tokio::test]
    async fn speex_comes_back_as_aac_with_a_header_first_and_its_thread_ends() {
        let board = StatusBoard::default();
        let mut stage = AudioStage::new("s", &AudioConfig::default(), board.clone());
        let packets = speex_packets();
        assert!(packets.len() > 400, "{} speex tags", packets.len());
        let mut got = Vec::new();
        for (body, ts) in &packets[..100] {
            assert_eq!(stage.offer(body, *ts), Offer::Taken);
            // Keep the output flowing, as the ingest task does.
            while let Ok(Some(out)) = tokio::time::timeout(Duration::from_millis(1), stage.recv())
                .await
                .map(Some)
            {
                got.push(out);
            }
        }
        while let Ok(out) = tokio::time::timeout(Duration::from_millis(500), stage.recv()).await {
            got.push(out);
        }
        assert!(
            matches!(got[0], TranscodedAudio::SequenceHeader { ref asc, timestamp: 0 } if asc.len() == 2),
            "{:?}",
            got[0]
        );
        let frames: Vec<u32> = got[1..]
            .iter()
            .map(|o| match o {
                TranscodedAudio::Frame { timestamp, .. } => *timestamp,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // 100 packets of 20 ms = 2 s = about 93 AAC frames of 1024 samples at 48 kHz (the
        // encoder holds back its last frames until more input comes).
        assert!((85..=94).contains(&frames.len()), "{} frames", frames.len());
        // The first frames saturate at 0 (the encoder's delay is subtracted), then 21-22 ms
        // apart: 1024 samples at 48 kHz.
        assert!(
            frames.windows(2).all(|w| w[1] >= w[0]),
            "never backwards: {frames:?}"
        );
        assert!(
            frames
                .windows(2)
                .skip(3)
                .all(|w| (21..=22).contains(&(w[1] - w[0]))),
            "{frames:?}"
        );
        let (_, t) = board.snapshot();
        assert_eq!(t["s"][0].input, "speex");
        drop(stage);
        assert!(
            board.snapshot().1.is_empty(),
            "status removed with the stage"
        );
    }

    #[test]
    fn an_impossible_format_is_refused_once_not_retried_per_packet() {
        let mut stage = AudioStage::new("cam", &AudioConfig::default(), StatusBoard::default());
        // G.711 at 1 Hz, as a camera's lying SDP may say: the codec refuses it.
        let lying = InputFormat {
            codec: InputCodec::Pcma,
            sample_rate: 1,
            channels: 1,
        };
        let packet = Bytes::from_static(&[0xd5; 160]);
        let mut offers = Vec::new();
        for i in 0..200 {
            offers.push(stage.offer_packet(lying, packet.clone(), i * 20));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stage.unusable, Some(lying));
        assert!(stage.worker.is_none());
        assert!(offers.iter().rev().take(100).all(|o| *o == Offer::Dropped));
    }

    #[test]
    fn aac_passes_and_off_passes_speex() {
        let aac = Bytes::from_static(&[0xAF, 1, 0x21, 0x10]);
        let mut stage = AudioStage::new("s", &AudioConfig::default(), StatusBoard::default());
        assert_eq!(stage.offer(&aac, 0), Offer::Pass);
        let mut config = AudioConfig::default();
        config.streams.insert("legacy".into(), AudioPolicy::Off);
        let mut off = AudioStage::new("legacy", &config, StatusBoard::default());
        let speex = Bytes::from_static(&[0xB2, 1, 2, 3]);
        assert_eq!(off.offer(&speex, 0), Offer::Pass);
        assert!(off.worker.is_none());
    }

    #[test]
    fn a_stalled_consumer_makes_the_stage_drop_input_not_grow() {
        let mut stage = AudioStage::new("s", &AudioConfig::default(), StatusBoard::default());
        let packets = speex_packets();
        // Nobody calls recv: the output channel fills, the thread blocks, the input queue
        // fills, and offers start dropping.
        let mut dropped = 0;
        for (body, ts) in packets.iter().cycle().take(2000) {
            if stage.offer(body, *ts) == Offer::Dropped {
                dropped += 1;
            }
        }
        assert!(dropped > 1000, "{dropped} dropped");
        let w = stage.worker.as_ref().unwrap();
        assert!(w.shared.queued_packets.load(Ordering::Relaxed) <= QUEUE_PACKETS);
        assert!(w.shared.queued_bytes.load(Ordering::Relaxed) <= QUEUE_BYTES);
    }
}
