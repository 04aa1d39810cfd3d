//! The per-camera supervisor: opens sessions through an [`Opener`], feeds their units through
//! the [`Ingest`] core into ONE [`PublisherHandle`] held across sessions, and reconnects with
//! [`Backoff`] when a session fails, ends or stalls. Time is `tokio::time` (paused in tests)
//! and the camera is behind the `Opener` trait, so all of this runs in tests without sockets
//! or sleeps.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::config::CameraConfig;
use super::ingest::{AudioHandling, Ingest, IngestError, IngestStats, SessionInfo, Unit};
use crate::hub::{Hub, HubError, PublisherHandle, SourceKind};
use crate::media::{self, Frame, MediaKind};
use crate::pages::StreamWriter;
use crate::transcode::{AudioStage, InputCodec, InputFormat, TranscodedAudio};

pub use crate::status::RtpStats;

impl RtpStats {
    /// A snapshot of retina's counters (the frame counters come from the ingest core).
    pub fn from_counters(c: &retina::client::RtpCounters) -> RtpStats {
        use std::sync::atomic::Ordering::Relaxed;
        RtpStats {
            received: c.received.load(Relaxed),
            lost: c.lost.load(Relaxed),
            reordered: c.reordered.load(Relaxed),
            late: c.late.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            damaged: c.damaged.load(Relaxed),
            receiver_reports: c.receiver_reports.load(Relaxed),
            frames_dropped_after_loss: 0,
            loss_recoveries: 0,
        }
    }
}

/// How often a playing session's counters are copied into the camera's status.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Why a session could not be opened or ended. Messages come from retina and carry the RTSP
/// status (401, 404, ...) and the connection context.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RtspError {
    /// DESCRIBE, SETUP or PLAY failed (refused connection, 401, 404, bad SDP, ...).
    #[error("RTSP {stage} failed: {message}")]
    Open {
        stage: &'static str,
        message: String,
    },
    #[error("camera offers no H.264 video or AAC audio (tracks: {tracks})")]
    NoUsableTrack { tracks: String },
    #[error("opening took longer than {secs} s")]
    OpenTimeout { secs: f64 },
    /// RTP/RTCP or connection error while playing (garbage packets, reset connection, ...).
    #[error("RTSP session failed: {0}")]
    Session(String),
    #[error("camera ended the session")]
    Ended,
    #[error("camera sent RTCP BYE and no more RTP")]
    Bye,
    #[error("{track} timestamps jumped from {from_ms} ms to {to_ms} ms into the session")]
    TimestampJump {
        track: &'static str,
        from_ms: i64,
        to_ms: i64,
    },
    #[error("no frame for {secs} s")]
    Stalled { secs: f64 },
    #[error("no keyframe within {secs} s of connecting")]
    NoKeyframe { secs: f64 },
    #[error("unusable input: {0}")]
    Ingest(#[from] IngestError),
}

/// A way to reach a camera. The real one is [`RetinaOpener`](super::RetinaOpener); tests
/// script their own.
pub trait Opener: Send + Sync + 'static {
    type Session: CameraSession;
    /// DESCRIBE, SETUP and PLAY. Cancel-safe: dropping the future abandons the attempt.
    fn open(&self) -> impl Future<Output = Result<Self::Session, RtspError>> + Send;
}

/// A playing session.
pub trait CameraSession: Send + 'static {
    /// What the session carries; fixed for its life.
    fn info(&self) -> &SessionInfo;
    /// The transport in use (`tcp` or `udp`; `auto` when the session cannot tell).
    fn transport(&self) -> super::RtpTransport {
        super::RtpTransport::Auto
    }
    /// The camera's RTP counters so far.
    fn rtp_stats(&self) -> RtpStats {
        RtpStats::default()
    }
    /// The next unit; `Ok(None)` when the camera closed the session. Cancel-safe (the
    /// supervisor races it against timers).
    fn next_unit(&mut self) -> impl Future<Output = Result<Option<Unit>, RtspError>> + Send;
    /// Ends the session with a TEARDOWN where the transport allows, bounded in time. Dropping
    /// the session without it also tears down, in the background.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// What a camera is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// On demand, nobody playing: not connected.
    Idle,
    /// DESCRIBE/SETUP/PLAY sent, or waiting for the first keyframe.
    Connecting,
    /// Frames are flowing.
    Playing,
    /// Waiting to retry after a failure.
    Backoff,
    /// Shut down.
    Stopped,
}

/// A camera's status for the HTTP API. Fixed size: nothing here grows with reconnects.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CameraStatus {
    pub name: String,
    /// Without credentials.
    pub url: String,
    /// As configured (`auto`, `tcp`, `udp`).
    pub transport: super::RtpTransport,
    /// What the current (or last) session uses.
    pub transport_in_use: Option<super::RtpTransport>,
    pub on_demand: bool,
    pub state: CameraState,
    /// True while frames are flowing.
    pub connected: bool,
    pub last_error: Option<String>,
    /// Attempts made after a failure or a lost session.
    pub reconnects: u64,
    /// Sessions that delivered a keyframe.
    pub sessions: u64,
    /// Consecutive failed attempts (the backoff exponent).
    pub failures: u32,
    /// What happens to the camera's audio ("aac", "none", "pcma: video only until
    /// transcoding", ...), as of the last session.
    pub audio: String,
    pub ingest: IngestStats,
    pub rtp: RtpStats,
}

impl CameraStatus {
    pub fn new(config: &CameraConfig) -> CameraStatus {
        CameraStatus {
            name: config.name.clone(),
            url: config.redacted_url(),
            transport: config.transport,
            transport_in_use: None,
            on_demand: config.on_demand,
            state: if config.on_demand {
                CameraState::Idle
            } else {
                CameraState::Connecting
            },
            connected: false,
            last_error: None,
            reconnects: 0,
            sessions: 0,
            failures: 0,
            audio: "unknown".to_owned(),
            ingest: IngestStats::default(),
            rtp: RtpStats::default(),
        }
    }
}

/// The shared, live status of one camera.
pub type SharedStatus = Arc<Mutex<CameraStatus>>;

fn update(status: &SharedStatus, f: impl FnOnce(&mut CameraStatus)) {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
}

fn describe_audio(a: &AudioHandling) -> String {
    match a {
        AudioHandling::None => "none".into(),
        AudioHandling::Aac { .. } => "aac".into(),
        AudioHandling::NeedsTranscode { encoding, .. } => {
            format!("{encoding}: left out (video only until transcoding)")
        }
        AudioHandling::Unsupported { encoding } => format!("{encoding}: unsupported, left out"),
    }
}

/// How a session ended.
enum End {
    Shutdown,
    /// On demand: the last player left and the linger time passed.
    NoPlayers,
    /// `worked`: the session delivered a keyframe before failing.
    Failed {
        error: RtspError,
        worked: bool,
    },
}

/// Everything one camera's supervisor needs.
pub struct Camera<O: Opener> {
    pub config: CameraConfig,
    pub opener: O,
    pub hub: Hub,
    pub writer: StreamWriter,
    pub status: SharedStatus,
    /// Where G.711 audio goes to become AAC (kept across sessions).
    pub audio: AudioStage,
    /// Jitter seed (tests fix it).
    pub seed: u64,
}

impl<O: Opener> Camera<O> {
    /// Runs the camera until `shutdown` is cancelled or the hub shuts down: connects (at once,
    /// or on demand when a player arrives), publishes, and reconnects with capped exponential
    /// backoff and jitter after every failure. Ends with a TEARDOWN of the live session.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let cfg = self.config.clone();
        let name = cfg.name.clone();
        let mut backoff = Backoff::new(
            Duration::from_secs_f64(cfg.backoff_min_s),
            Duration::from_secs_f64(cfg.backoff_max_s),
            self.seed,
        );
        let mut ingest = Ingest::new(&name);
        let mut players = self.hub.players_changed();
        let mut publisher: Option<PublisherHandle> = None;
        let mut last_audio: Option<AudioHandling> = None;
        let mut first_attempt = true;
        info!(camera = %name, url = %cfg.redacted_url(), transport = %cfg.transport, on_demand = cfg.on_demand, "camera started");
        loop {
            if cfg.on_demand && self.hub.player_count(&name) == 0 {
                publisher = None;
                update(&self.status, |s| {
                    s.state = CameraState::Idle;
                    s.connected = false;
                });
                debug!(camera = %name, "on demand: waiting for a player");
                loop {
                    players.borrow_and_update();
                    if self.hub.player_count(&name) > 0 {
                        break;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return self.stopped(),
                        r = players.changed() => if r.is_err() { return self.stopped() },
                    }
                }
                info!(camera = %name, "on demand: a player arrived, connecting");
            }
            if publisher.is_none() {
                match self.hub.publish(&name, SourceKind::Rtsp) {
                    Ok(p) => publisher = Some(p),
                    Err(HubError::ShutDown { .. }) => return self.stopped(),
                    Err(e) => {
                        warn!(camera = %name, error = %e, "camera cannot publish its stream name");
                        let delay = backoff.next_delay();
                        update(&self.status, |s| {
                            s.last_error = Some(e.to_string());
                            s.state = CameraState::Backoff;
                            s.failures = backoff.failures();
                        });
                        tokio::select! {
                            _ = shutdown.cancelled() => return self.stopped(),
                            _ = tokio::time::sleep(delay) => continue,
                        }
                    }
                }
            }
            let Some(p) = publisher.as_mut() else {
                continue;
            };
            if !first_attempt {
                update(&self.status, |s| s.reconnects += 1);
            }
            first_attempt = false;
            update(&self.status, |s| s.state = CameraState::Connecting);
            let end = self
                .session(p, &mut ingest, &mut players, &mut last_audio, &shutdown)
                .await;
            ingest.end_session();
            update(&self.status, |s| {
                s.connected = false;
                s.ingest = ingest.stats();
                s.rtp.frames_dropped_after_loss = s.ingest.dropped_after_loss;
                s.rtp.loss_recoveries = s.ingest.loss_recoveries;
            });
            match end {
                End::Shutdown => return self.stopped(),
                End::NoPlayers => {
                    info!(camera = %name, "on demand: no players left, disconnected");
                    backoff.reset();
                    publisher = None;
                    first_attempt = true;
                }
                End::Failed { error, worked } => {
                    if worked {
                        backoff.reset();
                    }
                    // New players must not start on the lost session's GOP.
                    p.discontinuity();
                    let delay = backoff.next_delay();
                    warn!(camera = %name, error = %error, retry_in_ms = delay.as_millis() as u64, failures = backoff.failures(), "camera session lost");
                    update(&self.status, |s| {
                        s.last_error = Some(error.to_string());
                        s.state = CameraState::Backoff;
                        s.failures = backoff.failures();
                    });
                    tokio::select! {
                        _ = shutdown.cancelled() => return self.stopped(),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn stopped(&self) {
        update(&self.status, |s| {
            s.state = CameraState::Stopped;
            s.connected = false;
        });
        info!(camera = %self.config.name, "camera stopped");
    }

    /// One session, from DESCRIBE to its end.
    async fn session(
        &mut self,
        publisher: &mut PublisherHandle,
        ingest: &mut Ingest,
        players: &mut tokio::sync::watch::Receiver<u64>,
        last_audio: &mut Option<AudioHandling>,
        shutdown: &CancellationToken,
    ) -> End {
        // A copy, so that `self` stays free for the transcoder and the writer in the loop.
        let config = self.config.clone();
        let cfg = &config;
        let name = cfg.name.as_str();
        let started = Instant::now();
        let key_deadline = started + Duration::from_secs_f64(cfg.connect_timeout_s);
        let stall = Duration::from_secs_f64(cfg.stall_timeout_s);
        let failed = |error: RtspError, worked: bool| End::Failed { error, worked };
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            r = tokio::time::timeout_at(key_deadline, self.opener.open()) => r,
        };
        let mut session = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return failed(e, false),
            Err(_) => {
                return failed(
                    RtspError::OpenTimeout {
                        secs: cfg.connect_timeout_s,
                    },
                    false,
                )
            }
        };
        let info = session.info().clone();
        let transport = session.transport();
        info!(camera = %name, transport = %transport, "camera session open");
        update(&self.status, |s| s.transport_in_use = Some(transport));
        if last_audio.as_ref() != Some(&info.audio) {
            // Once per camera (and again only if the camera changes its audio).
            let what = describe_audio(&info.audio);
            match &info.audio {
                AudioHandling::NeedsTranscode { encoding, .. } => {
                    info!(camera = %name, audio = %encoding, video = info.video, "camera tracks; audio transcoded to AAC")
                }
                AudioHandling::Unsupported { encoding } => {
                    warn!(camera = %name, audio = %encoding, "camera audio codec unsupported; publishing video only")
                }
                _ => info!(camera = %name, audio = %what, video = info.video, "camera tracks"),
            }
            update(&self.status, |s| s.audio = what);
            *last_audio = Some(info.audio.clone());
        }
        let mut out: Vec<Frame> = Vec::with_capacity(4);
        if let Err(e) = ingest.start_session(&info, &mut self.writer, &mut out) {
            return failed(e.into(), false);
        }
        if let Err(end) = push_all(publisher, &mut out) {
            return end;
        }
        let transcode = match &info.audio {
            AudioHandling::NeedsTranscode {
                encoding,
                clock_rate,
                channels,
            } => Some(InputFormat {
                codec: if encoding == "pcmu" {
                    InputCodec::Pcmu
                } else {
                    InputCodec::Pcma
                },
                sample_rate: *clock_rate,
                channels: (*channels).clamp(1, 2) as u8,
            }),
            _ => None,
        };
        let mut worked = false;
        let mut linger_until: Option<Instant> = None;
        let mut status_due = Instant::now();
        loop {
            if Instant::now() >= status_due {
                status_due = Instant::now() + STATUS_EVERY;
                let rtp = session.rtp_stats();
                let stats = ingest.stats();
                update(&self.status, |s| {
                    s.ingest = stats;
                    s.rtp = RtpStats {
                        frames_dropped_after_loss: stats.dropped_after_loss,
                        loss_recoveries: stats.loss_recoveries,
                        ..rtp
                    };
                });
            }
            let linger = async {
                match linger_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let unit = tokio::select! {
                _ = shutdown.cancelled() => {
                    session.close().await;
                    return End::Shutdown;
                }
                _ = linger => {
                    session.close().await;
                    return End::NoPlayers;
                }
                r = players.changed(), if cfg.on_demand => {
                    if r.is_err() {
                        return End::Shutdown;
                    }
                    let n = self.hub.player_count(name);
                    linger_until = match (n, linger_until) {
                        (0, None) => {
                            debug!(camera = %name, linger_s = cfg.linger_s, "last player left");
                            Some(Instant::now() + Duration::from_secs_f64(cfg.linger_s))
                        }
                        (0, t) => t,
                        _ => None,
                    };
                    continue;
                }
                aac = self.audio.recv() => {
                    if let Err(end) = self.push_transcoded(publisher, aac) {
                        return end;
                    }
                    continue;
                }
                r = tokio::time::timeout(stall, session.next_unit()) => r,
            };
            let unit = match unit {
                Err(_) => {
                    return failed(
                        RtspError::Stalled {
                            secs: cfg.stall_timeout_s,
                        },
                        worked,
                    )
                }
                Ok(Err(e)) => return failed(e, worked),
                Ok(Ok(None)) => return failed(RtspError::Ended, worked),
                Ok(Ok(Some(u))) => u,
            };
            let unit = match (unit, transcode) {
                (Unit::Audio(a), Some(input)) => {
                    // G.711 goes to the transcoder; its AAC comes back through `recv` above.
                    if let Some(ts) = ingest.timestamp_of(a.elapsed_ms) {
                        self.audio.offer_packet(input, a.data, ts);
                    }
                    continue;
                }
                (unit, _) => unit,
            };
            if let Err(e) = ingest.push(unit, &mut self.writer, &mut out) {
                return failed(e.into(), worked);
            }
            if let Err(end) = push_all(publisher, &mut out) {
                return end;
            }
            if !worked {
                if ingest.has_keyframe() {
                    worked = true;
                    let ms = started.elapsed().as_millis() as u64;
                    info!(camera = %name, connect_ms = ms, "camera playing");
                    update(&self.status, |s| {
                        s.state = CameraState::Playing;
                        s.connected = true;
                        s.sessions += 1;
                        s.failures = 0;
                    });
                } else if Instant::now() >= key_deadline {
                    return failed(
                        RtspError::NoKeyframe {
                            secs: cfg.connect_timeout_s,
                        },
                        false,
                    );
                }
            }
        }
    }
}

impl<O: Opener> Camera<O> {
    /// AAC from the camera's audio transcoder: into the stream's pages, then to the hub.
    fn push_transcoded(
        &mut self,
        publisher: &mut PublisherHandle,
        aac: TranscodedAudio,
    ) -> Result<(), End> {
        let (written, timestamp) = match &aac {
            TranscodedAudio::SequenceHeader { asc, timestamp } => (
                media::aac_sequence_header(&mut self.writer, asc),
                *timestamp,
            ),
            TranscodedAudio::Frame { data, timestamp } => {
                (media::aac_body(&mut self.writer, data), *timestamp)
            }
        };
        let frame = written.map_err(|e| e.to_string()).and_then(|m| {
            Frame::from_tag_body(MediaKind::Audio, timestamp, m).map_err(|e| e.to_string())
        });
        match frame {
            Ok(frame) => push_all(publisher, &mut vec![frame]),
            Err(e) => {
                publisher.count_ingest_drop();
                debug!(camera = %self.config.name, error = %e, "transcoded audio dropped");
                Ok(())
            }
        }
    }
}

fn push_all(publisher: &mut PublisherHandle, out: &mut Vec<Frame>) -> Result<(), End> {
    for f in out.drain(..) {
        if let Err(HubError::ShutDown { .. }) = publisher.push(f) {
            return Err(End::Shutdown);
        }
    }
    Ok(())
}
