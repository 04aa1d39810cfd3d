//! The socket glue: an [`Opener`] over retina. DESCRIBE with the URL's credentials, SETUP of
//! the first H.264 track and of AAC audio when there is some (over interleaved TCP or UDP, or
//! `auto`: TCP, then UDP if the camera refuses it), PLAY, then retina's depacketizer in
//! `FrameFormat::MP4` (AVCC video with the avcC record out of band, raw AAC).
//!
//! retina is moment's patched copy (`third_party/retina`, see its PATCH.md): over UDP it puts
//! reordered packets back in place, sends RTCP receiver reports and keeps the session alive the
//! way VLC expects, and a damaged access unit costs that unit, not the session. What it counts
//! comes back through one [`RtpCounters`] per camera.
//!
//! Everything here is translation; decisions are in the supervisor and the ingest core.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{
    Credentials, Demuxed, InitialTimestampPolicy, PlayOptions, RtpCounters, SessionGroup,
    SessionOptions, SetupOptions, TcpTransportOptions, TeardownPolicy, Transport,
    UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tracing::{debug, info, warn};

use super::config::{CameraConfig, RtpTransport};
use super::ingest::{AudioHandling, AudioUnit, SessionInfo, Unit, VideoUnit};
use super::supervisor::{CameraSession, Opener, RtpStats, RtspError};

/// How long a clean shutdown waits for the TEARDOWN answer.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

/// A track's timestamps moving this far forward between two frames (or back, beyond B-frame
/// reordering) is a camera restart inside the session: the session is reopened at once, and
/// players' timestamps continue as across any reconnect.
const MAX_FORWARD_JUMP_MS: i64 = 5_000;
const MAX_BACKWARD_JUMP_MS: i64 = 1_000;

/// RTCP packet type of a BYE (RFC 3550 §6.6).
const RTCP_BYE: u8 = 203;

/// After a BYE, how long RTP may still come before the session counts as ended. Servers that
/// loop a file (VLC) send a BYE at each loop and go on with the same source; a camera that
/// really leaves sends nothing more, and is reopened this soon instead of after the stall
/// timeout.
const BYE_GRACE: Duration = Duration::from_secs(2);

/// Opens retina sessions to one camera. All its sessions share one retina [`SessionGroup`],
/// which tracks sessions dropped without a confirmed TEARDOWN (UDP, buggy live555 servers)
/// until they expire; their count is logged before each attempt. Attempts do not wait for
/// them: after a power loss the camera has forgotten them, and waiting up to 65 s would only
/// delay the reconnect.
pub struct RetinaOpener {
    name: String,
    url: url::Url,
    creds: Option<Credentials>,
    transport: RtpTransport,
    /// `auto`: the transport that last worked (tried first), as [`TransportKind`] bits.
    preferred: AtomicU8,
    udp: UdpTransportOptions,
    counters: Arc<RtpCounters>,
    group: Arc<SessionGroup>,
    /// The last track list logged, so it is logged once, not per reconnect.
    logged_tracks: Mutex<String>,
    /// Whether G.711 audio is set up (for the transcoder) or left out.
    transcode_audio: bool,
}

impl RetinaOpener {
    /// Takes the credentials out of the URL (retina sends them only when asked).
    /// `transcode_audio`: set up G.711 audio for the AAC transcoder (else it is left out).
    pub fn new(config: &CameraConfig, transcode_audio: bool) -> Result<RetinaOpener, String> {
        let mut url = url::Url::parse(&config.url).map_err(|e| e.to_string())?;
        let creds = (!url.username().is_empty()).then(|| Credentials {
            username: percent_decode(url.username()),
            password: percent_decode(url.password().unwrap_or("")),
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(RetinaOpener {
            name: config.name.clone(),
            url,
            creds,
            transport: config.transport,
            preferred: AtomicU8::new(TransportKind::Tcp as u8),
            udp: UdpTransportOptions::default().reorder(
                config.reorder_packets,
                Duration::from_millis(config.reorder_ms),
            ),
            counters: Arc::new(RtpCounters::default()),
            group: Arc::new(SessionGroup::default().named(config.name.clone())),
            logged_tracks: Mutex::new(String::new()),
            transcode_audio,
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The transport of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum TransportKind {
    Tcp = 0,
    Udp = 1,
}

impl TransportKind {
    fn config(self) -> RtpTransport {
        match self {
            TransportKind::Tcp => RtpTransport::Tcp,
            TransportKind::Udp => RtpTransport::Udp,
        }
    }

    fn other(self) -> TransportKind {
        match self {
            TransportKind::Tcp => TransportKind::Udp,
            TransportKind::Udp => TransportKind::Tcp,
        }
    }
}

/// A playing retina session.
pub struct RetinaSession {
    demuxed: std::pin::Pin<Box<Demuxed>>,
    info: SessionInfo,
    group: Arc<SessionGroup>,
    video_stream: Option<usize>,
    sent_params: bool,
    transport: RtpTransport,
    counters: Arc<RtpCounters>,
    /// `damaged` as of the last video frame: a rise means the next one may be broken. (Lost
    /// video packets show in the frame's own `loss()`; lost audio must not stop video.)
    loss_mark: u64,
    /// Last elapsed ms per track (video, audio), to tell a timestamp jump.
    last_elapsed: [Option<i64>; 2],
    /// When the last RTCP BYE came, if no frame came after it.
    bye_at: Option<tokio::time::Instant>,
}

/// An attempt that failed; `at_setup` when the camera refused the transport (SETUP), which
/// `auto` answers with the other one.
struct Failed {
    error: RtspError,
    at_setup: bool,
}

impl Opener for RetinaOpener {
    type Session = RetinaSession;

    async fn open(&self) -> Result<RetinaSession, RtspError> {
        let stale = self.group.stale_sessions();
        if stale.num_sessions > 0 {
            debug!(camera = %self.name, stale = stale.num_sessions, "earlier sessions still being torn down");
        }
        let first = match self.transport {
            RtpTransport::Tcp => TransportKind::Tcp,
            RtpTransport::Udp => TransportKind::Udp,
            RtpTransport::Auto => match self.preferred.load(Ordering::Relaxed) {
                1 => TransportKind::Udp,
                _ => TransportKind::Tcp,
            },
        };
        match self.attempt(first).await {
            Ok(s) => Ok(s),
            Err(Failed {
                error,
                at_setup: true,
            }) if self.transport == RtpTransport::Auto => {
                let next = first.other();
                info!(camera = %self.name, refused = %first.config(), error = %error, trying = %next.config(), "camera refused the transport; trying the other one");
                let s = self.attempt(next).await.map_err(|f| f.error)?;
                self.preferred.store(next as u8, Ordering::Relaxed);
                Ok(s)
            }
            Err(Failed {
                error: RtspError::Open { stage, message },
                at_setup: true,
            }) => Err(RtspError::Open {
                stage,
                message: format!(
                    "{message} (the camera refuses RTP over {}; transport = \"auto\" would try the other one)",
                    first.config()
                ),
            }),
            Err(f) => Err(f.error),
        }
    }
}

impl RetinaOpener {
    /// DESCRIBE, SETUP and PLAY over one transport.
    async fn attempt(&self, kind: TransportKind) -> Result<RetinaSession, Failed> {
        let fail = |error: RtspError| Failed {
            error,
            at_setup: false,
        };
        let open = |stage: &'static str| {
            move |e: retina::Error| RtspError::Open {
                stage,
                message: one_line(&e),
            }
        };
        let options = SessionOptions::default()
            .creds(self.creds.clone())
            .session_group(self.group.clone())
            .teardown(TeardownPolicy::Auto)
            .rtp_counters(self.counters.clone())
            .user_agent(format!("moment/{}", env!("CARGO_PKG_VERSION")));
        let mut session = retina::client::Session::describe(self.url.clone(), options)
            .await
            .map_err(open("DESCRIBE"))
            .map_err(fail)?;

        let mut video = None;
        let mut audio = None;
        let mut handling = AudioHandling::None;
        let mut tracks = Vec::new();
        for (i, s) in session.streams().iter().enumerate() {
            tracks.push(format!("{}/{}", s.media(), s.encoding_name()));
            match (s.media(), s.encoding_name()) {
                ("video", "h264") if video.is_none() => {
                    let params = match s.parameters() {
                        Some(ParametersRef::Video(v)) => {
                            Some(Bytes::copy_from_slice(v.extra_data()))
                        }
                        _ => None,
                    };
                    video = Some((i, params));
                }
                ("audio", enc) if matches!(handling, AudioHandling::None) => {
                    handling = match (enc, s.parameters()) {
                        ("mpeg4-generic", Some(ParametersRef::Audio(a)))
                            if !a.extra_data().is_empty() =>
                        {
                            audio = Some(i);
                            AudioHandling::Aac {
                                asc: Bytes::copy_from_slice(a.extra_data()),
                            }
                        }
                        ("pcma" | "pcmu", _) if self.transcode_audio => {
                            audio = Some(i);
                            AudioHandling::NeedsTranscode {
                                encoding: enc.to_owned(),
                                clock_rate: s.clock_rate_hz(),
                                channels: s.channels().map_or(1, |c| c.get()),
                            }
                        }
                        ("pcma" | "pcmu", _) => AudioHandling::Unsupported {
                            encoding: format!("{enc} ([audio] transcode = \"off\")"),
                        },
                        (enc, _) => AudioHandling::Unsupported {
                            encoding: if enc == "mpeg4-generic" {
                                "mpeg4-generic (no usable config in the SDP)".to_owned()
                            } else {
                                enc.to_owned()
                            },
                        },
                    };
                }
                _ => {}
            }
        }
        let tracks = tracks.join(", ");
        {
            let mut logged = self.logged_tracks.lock().unwrap_or_else(|e| e.into_inner());
            if *logged != tracks {
                info!(camera = %self.name, %tracks, "camera described");
                for t in tracks.split(", ") {
                    if !t.starts_with("video/h264") && !t.starts_with("audio/") {
                        warn!(camera = %self.name, track = %t, "camera track codec not supported; skipped");
                    }
                }
                *logged = tracks.clone();
            }
        }
        if video.is_none() && audio.is_none() {
            return Err(fail(RtspError::NoUsableTrack { tracks }));
        }
        let transport = match kind {
            TransportKind::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            TransportKind::Udp => Transport::Udp(self.udp.clone()),
        };
        for i in video.iter().map(|v| v.0).chain(audio) {
            session
                .setup(
                    i,
                    SetupOptions::default()
                        .transport(transport.clone())
                        .frame_format(FrameFormat::MP4),
                )
                .await
                .map_err(|e| Failed {
                    error: open("SETUP")(e),
                    at_setup: true,
                })?;
        }
        let playing = session
            .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
            .await
            .map_err(open("PLAY"))
            .map_err(fail)?;
        let demuxed = playing.demuxed().map_err(open("PLAY")).map_err(fail)?;
        Ok(RetinaSession {
            demuxed: Box::pin(demuxed),
            info: SessionInfo {
                video: video.is_some(),
                video_params: video.as_ref().and_then(|v| v.1.clone()),
                audio: handling,
            },
            group: self.group.clone(),
            video_stream: video.map(|v| v.0),
            sent_params: false,
            transport: kind.config(),
            loss_mark: self.loss_count(),
            counters: self.counters.clone(),
            last_elapsed: [None, None],
            bye_at: None,
        })
    }

    fn loss_count(&self) -> u64 {
        loss_count(&self.counters)
    }
}

fn loss_count(c: &RtpCounters) -> u64 {
    c.damaged.load(Ordering::Relaxed)
}

impl RetinaSession {
    /// Checks a track's new elapsed time against its last one.
    fn check_jump(&mut self, track: usize, elapsed_ms: i64) -> Result<(), RtspError> {
        if let Some(last) = self.last_elapsed[track] {
            let step = elapsed_ms - last;
            if !(-MAX_BACKWARD_JUMP_MS..=MAX_FORWARD_JUMP_MS).contains(&step) {
                return Err(RtspError::TimestampJump {
                    track: ["video", "audio"][track],
                    from_ms: last,
                    to_ms: elapsed_ms,
                });
            }
        }
        self.last_elapsed[track] = Some(elapsed_ms);
        Ok(())
    }
}

/// retina's errors span lines (connection and message context); logs want one line.
fn one_line(e: &retina::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn elapsed_ms(t: retina::Timestamp) -> i64 {
    let rate = i64::from(t.clock_rate().get());
    t.elapsed().saturating_mul(1000) / rate
}

impl CameraSession for RetinaSession {
    fn info(&self) -> &SessionInfo {
        &self.info
    }

    async fn next_unit(&mut self) -> Result<Option<Unit>, RtspError> {
        loop {
            let next = match self.bye_at {
                None => self.demuxed.next().await,
                Some(at) => {
                    match tokio::time::timeout_at(at + BYE_GRACE, self.demuxed.next()).await {
                        Ok(next) => next,
                        Err(_) => return Err(RtspError::Bye),
                    }
                }
            };
            let item = match next {
                None => return Ok(None),
                Some(Err(e)) => return Err(RtspError::Session(one_line(&e))),
                Some(Ok(item)) => item,
            };
            match item {
                CodecItem::VideoFrame(f) if Some(f.stream_id()) == self.video_stream => {
                    let params = if f.has_new_parameters() || !self.sent_params {
                        match self.demuxed.streams()[f.stream_id()].parameters() {
                            Some(ParametersRef::Video(v)) => {
                                self.sent_params = true;
                                Some(Bytes::copy_from_slice(v.extra_data()))
                            }
                            _ => None,
                        }
                    } else {
                        None
                    };
                    // Video packets lost before this frame (its own `loss()`), or a damaged
                    // unit dropped since the last one, may leave it without its references;
                    // the ingest core then waits for a keyframe. (`damaged` is counted per
                    // session, so a damaged audio unit costs video too; it is rare.)
                    let losses = loss_count(&self.counters);
                    let after_loss = f.loss() > 0 || losses != self.loss_mark;
                    self.loss_mark = losses;
                    if after_loss {
                        debug!(lost = f.loss(), "RTP loss before a video frame");
                    }
                    self.bye_at = None;
                    let elapsed = elapsed_ms(f.timestamp());
                    self.check_jump(0, elapsed)?;
                    return Ok(Some(Unit::Video(VideoUnit {
                        elapsed_ms: elapsed,
                        keyframe: f.is_random_access_point(),
                        disposable: f.is_disposable(),
                        after_loss,
                        params,
                        data: Bytes::from(f.into_data()),
                    })));
                }
                CodecItem::AudioFrame(f) => {
                    self.bye_at = None;
                    let elapsed = elapsed_ms(f.timestamp());
                    self.check_jump(1, elapsed)?;
                    return Ok(Some(Unit::Audio(AudioUnit {
                        elapsed_ms: elapsed,
                        data: Bytes::copy_from_slice(f.data()),
                    })));
                }
                CodecItem::Rtcp(rtcp) => {
                    if self.bye_at.is_none() && rtcp.pkts().any(|p| p.payload_type() == RTCP_BYE) {
                        debug!("RTCP BYE; the session ends unless RTP goes on");
                        self.bye_at = Some(tokio::time::Instant::now());
                    }
                    continue;
                }
                _ => continue,
            }
        }
    }

    fn transport(&self) -> RtpTransport {
        self.transport
    }

    fn rtp_stats(&self) -> RtpStats {
        RtpStats::from_counters(&self.counters)
    }

    async fn close(self) {
        let group = self.group.clone();
        // Dropping the session starts retina's TEARDOWN (per the group's policy).
        drop(self);
        match tokio::time::timeout(TEARDOWN_WAIT, group.await_teardown()).await {
            Ok(Ok(())) => debug!("RTSP TEARDOWN done"),
            Ok(Err(e)) => debug!(error = %e, "RTSP TEARDOWN failed"),
            Err(_) => debug!("RTSP TEARDOWN timed out"),
        }
    }
}
