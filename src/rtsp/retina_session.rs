//! The socket glue: an [`Opener`] over retina. DESCRIBE with the URL's credentials, SETUP of
//! the first H.264 track and of AAC audio when there is some (over interleaved TCP or UDP),
//! PLAY, then retina's depacketizer in `FrameFormat::MP4` (AVCC video with the avcC record out
//! of band, raw AAC). Everything here is translation; decisions are in the supervisor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{
    Credentials, Demuxed, InitialTimestampPolicy, PlayOptions, SessionGroup, SessionOptions,
    SetupOptions, TcpTransportOptions, TeardownPolicy, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tracing::{debug, info, warn};

use super::config::{CameraConfig, RtpTransport};
use super::ingest::{AudioHandling, AudioUnit, SessionInfo, Unit, VideoUnit};
use super::supervisor::{CameraSession, Opener, RtspError};

/// How long a clean shutdown waits for the TEARDOWN answer.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

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

/// A playing retina session.
pub struct RetinaSession {
    demuxed: std::pin::Pin<Box<Demuxed>>,
    info: SessionInfo,
    group: Arc<SessionGroup>,
    video_stream: Option<usize>,
    sent_params: bool,
}

impl Opener for RetinaOpener {
    type Session = RetinaSession;

    async fn open(&self) -> Result<RetinaSession, RtspError> {
        let stale = self.group.stale_sessions();
        if stale.num_sessions > 0 {
            debug!(camera = %self.name, stale = stale.num_sessions, "earlier sessions still being torn down");
        }
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
            .user_agent(format!("moment/{}", env!("CARGO_PKG_VERSION")));
        let mut session = retina::client::Session::describe(self.url.clone(), options)
            .await
            .map_err(open("DESCRIBE"))?;

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
            return Err(RtspError::NoUsableTrack { tracks });
        }
        let transport = match self.transport {
            RtpTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtpTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
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
                .map_err(open("SETUP"))?;
        }
        let playing = session
            .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
            .await
            .map_err(open("PLAY"))?;
        let demuxed = playing.demuxed().map_err(open("PLAY"))?;
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
        })
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
            let item = match self.demuxed.next().await {
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
                    if f.loss() > 0 {
                        debug!(lost = f.loss(), "RTP packets lost before a video frame");
                    }
                    return Ok(Some(Unit::Video(VideoUnit {
                        elapsed_ms: elapsed_ms(f.timestamp()),
                        keyframe: f.is_random_access_point(),
                        disposable: f.is_disposable(),
                        params,
                        data: Bytes::from(f.into_data()),
                    })));
                }
                CodecItem::AudioFrame(f) => {
                    return Ok(Some(Unit::Audio(AudioUnit {
                        elapsed_ms: elapsed_ms(f.timestamp()),
                        data: Bytes::copy_from_slice(f.data()),
                    })));
                }
                _ => continue,
            }
        }
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
