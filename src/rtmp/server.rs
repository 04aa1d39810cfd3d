//! The RTMP socket layer: the listener and one task per connection, joining a
//! [`ServerSession`] (protocol) to the stream [`Hub`] (media).
//!
//! A publisher's media payloads are copied once, from the socket buffer into its stream's pages;
//! a player's output is chunk headers plus references to those pages, written with `writev`.
//! A player's output buffer is kept small (`OUTPUT_HIGH`): what it cannot send yet stays in its
//! hub queue, where the drop policy for slow players applies. Every connection has deadlines
//! (handshake, idle input, stalled output) and a bad peer only ever closes its own connection.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{RtmpError, ServerSession, SessionConfig, SessionEvent};
use crate::config::RtmpConfig;
use crate::http::StatusBoard;
use crate::hub::{Hub, HubError, PlayerItem, PlayerSubscription, PublisherHandle, SourceKind};
use crate::media::{self, Frame, MediaKind};
use crate::pages::{PagePool, StreamWriter};
use crate::transcode::{AudioConfig, AudioStage, Offer, TranscodedAudio};

/// The only application served: `rtmp://HOST/live/NAME`.
pub const APP: &str = "live";

/// A player's session output above which no more items are taken from its hub queue.
const OUTPUT_HIGH: usize = 256 * 1024;
/// Pending output at which a player's merged write goes out without waiting for the delay.
const FLUSH_BYTES: usize = 64 * 1024;
/// A publisher's read buffer.
const READ_BUF: usize = 64 * 1024;
/// Linux's IOV_MAX: the most slices one writev takes.
const MAX_IOV: usize = 1024;
/// How long a closing connection may take to flush its last bytes.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// What every connection task shares.
pub struct Context {
    pub hub: Hub,
    pub pool: PagePool,
    pub config: RtmpConfig,
    /// Page budget of each published stream.
    pub stream_budget_bytes: u64,
    pub counters: Counters,
    /// What happens to publishers' audio that players cannot use.
    pub audio: AudioConfig,
    /// Where transcoders report their queues for the HTTP API.
    pub status: StatusBoard,
}

/// Process-wide RTMP counters, for logs and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub publishers: AtomicU64,
    pub players: AtomicU64,
    pub connections_refused: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// Accepts connections until `shutdown` is cancelled, then waits (at most `drain`) for the
/// connections to close: players flush what they have, then close.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        ctx.counters.connections_refused.fetch_add(1, Ordering::Relaxed);
                        warn!(%peer, max = ctx.config.max_connections, "connection limit reached; closing new connection");
                        continue;
                    };
                    next_id += 1;
                    let span = tracing::info_span!("rtmp", conn = next_id, %peer);
                    let ctx = ctx.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(
                        async move {
                            Connection::new(socket, ctx, shutdown).run().await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            left = tasks.len(),
            "connections still open after the drain period; aborting them"
        );
        tasks.shutdown().await;
    }
}

/// What a connection is doing.
enum Role {
    /// Handshaking or connected, neither publishing nor playing.
    Idle,
    Publishing(Publishing),
    Playing(Playing),
}

struct Publishing {
    name: String,
    publisher: PublisherHandle,
    writer: StreamWriter,
    /// Speex/G.711 go through here to AAC; other audio passes.
    audio: AudioStage,
    /// After a dropped video frame, the decoder needs a keyframe: drop video until one.
    skip_video: bool,
    dropped: u64,
    malformed: u64,
}

struct Playing {
    stream_id: u32,
    name: String,
    sub: PlayerSubscription,
    paused: bool,
    /// After a pause, frames were discarded: send video again from a keyframe.
    skip_video: bool,
    /// Items taken from the hub queue in one lock, reused (no allocation per batch).
    batch: Vec<PlayerItem>,
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    PeerClosed,
    Shutdown,
    /// Our decision (timeout, kick, rejection); already logged.
    Closed,
    Rtmp(RtmpError),
    Io(io::Error),
}

impl From<RtmpError> for End {
    fn from(e: RtmpError) -> End {
        End::Rtmp(e)
    }
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Io(e)
    }
}

struct Connection {
    socket: TcpStream,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    session: ServerSession,
    role: Role,
    started: Instant,
    /// Whether the connection ever published or played (ends the handshake deadline).
    engaged: bool,
    last_input: Instant,
    /// Last time output was written, or found empty.
    last_output: Instant,
    /// When a player's hub items are taken and its output written at the latest (merged
    /// writes, on a tick grid shared by all players); in the past while a flush is going on.
    flush_at: Option<Instant>,
    /// Flush ticks in a row that found nothing to send (after one, wait for items instead).
    idle_ticks: u8,
}

impl Connection {
    fn new(socket: TcpStream, ctx: Arc<Context>, shutdown: CancellationToken) -> Connection {
        // Small control messages must not wait for Nagle; media goes out in large writev calls.
        let _ = socket.set_nodelay(true);
        let config = SessionConfig {
            chunk_size: ctx.config.chunk_size,
            limits: super::ReaderLimits {
                max_message_len: ctx.config.max_message_bytes,
                ..Default::default()
            },
            ..SessionConfig::default()
        };
        let now = Instant::now();
        Connection {
            socket,
            ctx,
            shutdown,
            session: ServerSession::new(config),
            role: Role::Idle,
            started: now,
            engaged: false,
            last_input: now,
            last_output: now,
            flush_at: None,
            idle_ticks: 0,
        }
    }

    async fn run(mut self) {
        self.ctx
            .counters
            .connections
            .fetch_add(1, Ordering::Relaxed);
        debug!("connection opened");
        let end = self.drive().await;
        match &end {
            Ok(End::PeerClosed) | Ok(End::Shutdown) | Ok(End::Closed) => {}
            Err(End::Rtmp(e)) => warn!(error = %e, "closing connection: bad input from peer"),
            Err(End::Io(e)) => debug!(error = %e, "connection I/O error"),
            Ok(e) | Err(e) => debug!(end = ?e, "connection ended"),
        }
        // Whatever was queued (a rejection's status, a kicked player's last bytes) goes out
        // if the peer still reads.
        let _ = tokio::time::timeout(CLOSE_FLUSH, self.flush()).await;
        self.stop_role("connection closed");
        self.ctx
            .counters
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        debug!(?end, "connection closed");
    }

    async fn drive(&mut self) -> Result<End, End> {
        // Players and idle connections read little (commands, acknowledgements); a publisher's
        // buffer grows to READ_BUF when it starts publishing.
        let mut buf = vec![0u8; 1024];
        // One timer for the flush tick and the deadlines, reset only when it must fire earlier
        // or has fired (firing early is harmless: the checks are idempotent). One cancellation
        // future for the whole connection. Re-creating either on every loop turn cost a timer
        // wheel insert/remove and a mutex per turn.
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        let cancelled = self.shutdown.clone().cancelled_owned();
        tokio::pin!(cancelled);
        loop {
            let now = Instant::now();
            let playing = matches!(self.role, Role::Playing(_));
            if playing {
                // A player takes items from its hub queue only when its flush is due: until
                // then they wait there (bounded, with the drop policy), and the connection
                // sleeps instead of waking for every frame.
                if self.flush_at.is_some_and(|t| t <= now) {
                    self.pull_player_items()?;
                    if self.session.pending_bytes() == 0 {
                        // Nothing left to send: wait for the next tick, then for items if that
                        // tick finds none (a streaming player wakes once per tick).
                        self.flush_at = match self.idle_ticks {
                            0 => Some(next_tick(now, self.write_delay())),
                            _ => None,
                        };
                        self.idle_ticks = self.idle_ticks.saturating_add(1);
                    } else {
                        self.idle_ticks = 0;
                    }
                }
            } else {
                self.pull_player_items()?;
            }
            if self.session.is_closed() {
                return Ok(End::Closed);
            }
            let pending = self.session.pending_bytes();
            if pending == 0 {
                self.last_output = now;
                if !playing {
                    self.flush_at = None;
                }
            } else if self.flush_at.is_none() {
                self.flush_at = Some(if playing {
                    next_tick(now, self.write_delay())
                } else {
                    now
                });
            }
            let due = self.flush_at.is_some_and(|t| t <= now);
            let write_now = pending > 0 && (pending >= FLUSH_BYTES || due);
            // A player waits for items only with no flush scheduled (a scheduled flush takes
            // them); a publisher always waits for its transcoded audio.
            let wait_role = match self.role {
                Role::Playing(_) => self.flush_at.is_none(),
                Role::Publishing(_) => true,
                Role::Idle => false,
            };
            let deadline = self.deadline();
            let mut wake = deadline;
            if let Some(t) = self.flush_at.filter(|_| !write_now) {
                wake = wake.min(t);
            }
            if timer.is_elapsed() || wake < timer.deadline() {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(End::Shutdown),
                ready = self.socket.writable(), if write_now => {
                    ready?;
                    self.write_some()?;
                }
                ready = self.socket.readable() => {
                    ready?;
                    if buf.len() < READ_BUF && matches!(self.role, Role::Publishing(_)) {
                        buf.resize(READ_BUF, 0);
                    }
                    match self.socket.try_read(&mut buf) {
                        Ok(0) => return Ok(End::PeerClosed),
                        Ok(n) => {
                            self.last_input = Instant::now();
                            self.ctx.counters.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                            self.session.handle_input(&buf[..n])?;
                            self.handle_events()?;
                            // Answers to commands go out at once.
                            if !matches!(self.role, Role::Playing(_)) || self.flush_at.is_none() {
                                self.flush_at = Some(Instant::now());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                event = role_event(&mut self.role), if wait_role => match event {
                    RoleEvent::Item(Some(item)) => {
                        self.idle_ticks = 0;
                        self.handle_item(item)?;
                    }
                    RoleEvent::Item(None) => return Ok(End::Shutdown),
                    RoleEvent::Audio(audio) => self.ingest_transcoded(audio)?,
                },
                _ = &mut timer, if !timer.is_elapsed() => {
                    // Most turns are flush ticks; the deadlines are checked when one is due.
                    if timer.deadline() >= deadline {
                        self.check_deadlines()?;
                    }
                }
            }
        }
    }

    fn write_delay(&self) -> Duration {
        Duration::from_millis(self.ctx.config.write_delay_ms)
    }

    /// Writes what the socket takes now. Returns the bytes written.
    fn write_some(&mut self) -> Result<usize, End> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(64);
        self.session.io_slices_max(&mut slices, MAX_IOV);
        match self.socket.try_write_vectored(&slices) {
            Ok(n) => {
                drop(slices);
                self.session.advance(n);
                self.ctx
                    .counters
                    .bytes_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.last_output = Instant::now();
                // A player's flush goes on (taking more items) until its queue is empty.
                if self.session.pending_bytes() == 0 && !matches!(self.role, Role::Playing(_)) {
                    self.flush_at = None;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes everything pending (used when closing).
    async fn flush(&mut self) -> Result<(), End> {
        while self.session.pending_bytes() > 0 {
            self.socket.writable().await?;
            self.write_some()?;
        }
        Ok(())
    }

    /// The earliest deadline that applies now.
    fn deadline(&self) -> Instant {
        let c = &self.ctx.config;
        let far = Instant::now() + Duration::from_secs(3600);
        let mut d = far;
        if !self.engaged {
            d = d.min(self.started + Duration::from_secs(c.handshake_timeout_s));
        }
        if !matches!(self.role, Role::Playing(_)) {
            d = d.min(self.last_input + Duration::from_secs(c.idle_timeout_s));
        }
        if self.session.pending_bytes() > 0 {
            d = d.min(self.last_output + Duration::from_secs(c.send_timeout_s));
        }
        if matches!(self.role, Role::Playing(_)) && self.session.pending_bytes() >= OUTPUT_HIGH {
            // A player whose socket is full does not take items: look for a kick now and then.
            d = d.min(Instant::now() + Duration::from_millis(500));
        }
        d
    }

    fn check_deadlines(&mut self) -> Result<(), End> {
        let c = &self.ctx.config;
        let now = Instant::now();
        if !self.engaged && now >= self.started + Duration::from_secs(c.handshake_timeout_s) {
            info!(
                timeout_s = c.handshake_timeout_s,
                "closing connection: no publish or play in time"
            );
            return Err(End::Closed);
        }
        if !matches!(self.role, Role::Playing(_))
            && now >= self.last_input + Duration::from_secs(c.idle_timeout_s)
        {
            info!(timeout_s = c.idle_timeout_s, "closing connection: no input");
            return Err(End::Closed);
        }
        if self.session.pending_bytes() > 0
            && now >= self.last_output + Duration::from_secs(c.send_timeout_s)
        {
            warn!(
                timeout_s = c.send_timeout_s,
                pending = self.session.pending_bytes(),
                "closing connection: peer stopped reading"
            );
            return Err(End::Closed);
        }
        let full = self.session.pending_bytes() >= OUTPUT_HIGH;
        if let Role::Playing(p) = &mut self.role {
            // A player that takes items finds its `Kicked` item there; only one whose socket is
            // full (so it takes none) needs to look.
            if full && p.sub.is_kicked() {
                warn!(stream = %p.name, "player disconnected by the hub: too slow");
                return Err(End::Closed);
            }
        }
        Ok(())
    }

    fn handle_events(&mut self) -> Result<(), End> {
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::Connected { app } => debug!(%app, "connected"),
                SessionEvent::PublishRequested {
                    app,
                    stream_name,
                    stream_id,
                } => self.start_publish(&app, &stream_name, stream_id)?,
                SessionEvent::PlayRequested {
                    app,
                    stream_name,
                    stream_id,
                } => self.start_play(&app, &stream_name, stream_id)?,
                SessionEvent::Media {
                    kind,
                    timestamp,
                    payload,
                } => self.ingest(kind, timestamp, payload)?,
                SessionEvent::Metadata { payload } => self.ingest_metadata(payload)?,
                SessionEvent::PublishStopped { .. } => self.stop_role("publisher sent unpublish"),
                SessionEvent::PlayStopped { .. } => self.stop_role("player stopped"),
                SessionEvent::Paused { paused, .. } => {
                    if let Role::Playing(p) = &mut self.role {
                        debug!(stream = %p.name, paused, "pause");
                        p.paused = paused;
                        if paused {
                            p.skip_video = true;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn start_publish(&mut self, app: &str, requested: &str, stream_id: u32) -> Result<(), End> {
        let checked = self
            .check_request(app, requested)
            .and_then(|name| self.check_publish_key(app, requested).map(|()| name));
        let name = match checked {
            Ok(name) => name,
            Err(reason) => {
                // The requested name is logged without its query: it may hold a key.
                let stream = requested.split('?').next().unwrap_or_default();
                warn!(%stream, %reason, "publish refused");
                self.session.reject_publish(stream_id, &reason)?;
                return Ok(());
            }
        };
        if !matches!(self.role, Role::Idle) {
            warn!(stream = %name, "publish refused: connection already publishing or playing");
            self.session.reject_publish(stream_id, "connection busy")?;
            return Ok(());
        }
        match self.ctx.hub.publish(&name, SourceKind::Rtmp) {
            Ok(publisher) => {
                self.session.accept_publish(stream_id)?;
                let writer = self.ctx.pool.writer(&name, self.ctx.stream_budget_bytes);
                self.ctx.counters.publishers.fetch_add(1, Ordering::Relaxed);
                info!(stream = %name, "publish started");
                self.engaged = true;
                let audio = AudioStage::new(&name, &self.ctx.audio, self.ctx.status.clone());
                self.role = Role::Publishing(Publishing {
                    name,
                    publisher,
                    writer,
                    audio,
                    skip_video: false,
                    dropped: 0,
                    malformed: 0,
                });
            }
            Err(e @ HubError::AlreadyPublishing { .. }) => {
                warn!(stream = %name, error = %e, "publish refused");
                self.session
                    .reject_publish(stream_id, "stream already being published")?;
            }
            Err(e) => {
                self.session
                    .reject_publish(stream_id, "server shutting down")?;
                info!(error = %e, "publish refused");
            }
        }
        Ok(())
    }

    fn start_play(&mut self, app: &str, requested: &str, stream_id: u32) -> Result<(), End> {
        let name = match self.check_request(app, requested) {
            Ok(name) => name,
            Err(reason) => {
                warn!(%app, stream = %requested, %reason, "play refused");
                self.session.reject_play(stream_id, &reason)?;
                return Ok(());
            }
        };
        if !matches!(self.role, Role::Idle) {
            warn!(stream = %name, "play refused: connection already publishing or playing");
            self.session.reject_play(stream_id, "connection busy")?;
            return Ok(());
        }
        match self.ctx.hub.play(&name) {
            Ok(sub) => {
                self.session.accept_play(stream_id)?;
                self.ctx.counters.players.fetch_add(1, Ordering::Relaxed);
                info!(stream = %name, player = %sub.id(), "play started");
                self.engaged = true;
                self.role = Role::Playing(Playing {
                    stream_id,
                    name,
                    sub,
                    paused: false,
                    skip_video: false,
                    batch: Vec::new(),
                });
            }
            Err(e) => {
                info!(error = %e, "play refused");
                self.session
                    .reject_play(stream_id, "server shutting down")?;
            }
        }
        Ok(())
    }

    /// The stream name of a publish/play request, or why it is refused.
    fn check_request(&self, app: &str, requested: &str) -> Result<String, String> {
        // Clients put query strings (tokens) on the app or the name: not part of either.
        let app = app
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        if app != APP {
            return Err(format!(
                "unknown application {app:?} (only {APP:?} is served)"
            ));
        }
        let name = requested.split('?').next().unwrap_or_default();
        if name.is_empty()
            || name.len() > 256
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control)
        {
            return Err(format!("invalid stream name {name:?}"));
        }
        Ok(name.to_owned())
    }

    /// With `[rtmp] publish_key` set, a publisher must give `?key=<it>` on the stream name (or
    /// the application, as some encoders put it there).
    fn check_publish_key(&self, app: &str, requested: &str) -> Result<(), String> {
        let Some(expected) = &self.ctx.config.publish_key else {
            return Ok(());
        };
        let given = [app, requested]
            .iter()
            .filter_map(|s| s.split_once('?').map(|(_, q)| q))
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("key="));
        match given {
            Some(k) if k == expected => Ok(()),
            Some(_) => Err("wrong publish key".into()),
            None => Err("publish key required (?key=...)".into()),
        }
    }

    fn stop_role(&mut self, why: &str) {
        match std::mem::replace(&mut self.role, Role::Idle) {
            Role::Idle => {}
            Role::Publishing(p) => {
                self.ctx.counters.publishers.fetch_sub(1, Ordering::Relaxed);
                info!(stream = %p.name, dropped = p.dropped, malformed = p.malformed, %why, "publish stopped");
            }
            Role::Playing(p) => {
                self.ctx.counters.players.fetch_sub(1, Ordering::Relaxed);
                let s = p.sub.stats();
                info!(
                    stream = %p.name,
                    player = %p.sub.id(),
                    frames = s.frames_sent,
                    dropped = s.dropped.total(),
                    %why,
                    "play stopped"
                );
            }
        }
    }

    /// A publisher's media message: into the stream's pages once, then to the hub.
    fn ingest(&mut self, kind: MediaKind, timestamp: u32, payload: Bytes) -> Result<(), End> {
        let Role::Publishing(p) = &mut self.role else {
            debug!("media from a connection that is not publishing; ignored");
            return Ok(());
        };
        if payload.is_empty() {
            return Ok(());
        }
        if kind == MediaKind::Audio && p.audio.offer(&payload, timestamp) != Offer::Pass {
            return Ok(());
        }
        if kind == MediaKind::Video && p.skip_video {
            match media::classify(kind, &payload) {
                Ok(info) if info.keyframe || info.sequence_header => {}
                _ => {
                    p.dropped += 1;
                    return Ok(());
                }
            }
        }
        let message = match p.writer.write(&[&payload]) {
            Ok(m) => m,
            Err(e) => {
                p.dropped += 1;
                p.publisher.count_ingest_drop();
                if kind == MediaKind::Video {
                    p.skip_video = true;
                }
                if p.dropped.is_power_of_two() {
                    warn!(stream = %p.name, error = %e, dropped = p.dropped, "frame dropped: page budget");
                }
                return Ok(());
            }
        };
        let frame = match Frame::from_tag_body(kind, timestamp, message) {
            Ok(f) => f,
            Err(e) => {
                p.malformed += 1;
                if p.malformed.is_power_of_two() {
                    warn!(stream = %p.name, error = %e, malformed = p.malformed, "malformed media message skipped");
                }
                return Ok(());
            }
        };
        if kind == MediaKind::Video && (frame.keyframe || frame.sequence_header) {
            p.skip_video = false;
        }
        push(p, frame)
    }

    /// AAC from the publisher's audio transcoder: into the stream's pages, then to the hub.
    fn ingest_transcoded(&mut self, audio: TranscodedAudio) -> Result<(), End> {
        let Role::Publishing(p) = &mut self.role else {
            return Ok(());
        };
        let (written, timestamp) = match &audio {
            TranscodedAudio::SequenceHeader { asc, timestamp } => {
                (media::aac_sequence_header(&mut p.writer, asc), *timestamp)
            }
            TranscodedAudio::Frame { data, timestamp } => {
                (media::aac_body(&mut p.writer, data), *timestamp)
            }
        };
        let message = match written {
            Ok(m) => m,
            Err(e) => {
                p.dropped += 1;
                p.publisher.count_ingest_drop();
                if p.dropped.is_power_of_two() {
                    warn!(stream = %p.name, error = %e, dropped = p.dropped, "transcoded audio dropped: page budget");
                }
                return Ok(());
            }
        };
        match Frame::from_tag_body(MediaKind::Audio, timestamp, message) {
            Ok(frame) => push(p, frame),
            Err(e) => {
                warn!(stream = %p.name, error = %e, "transcoded audio unreadable");
                Ok(())
            }
        }
    }

    fn ingest_metadata(&mut self, payload: Bytes) -> Result<(), End> {
        let Role::Publishing(p) = &mut self.role else {
            return Ok(());
        };
        let message = match p.writer.write(&[&payload]) {
            Ok(m) => m,
            Err(e) => {
                warn!(stream = %p.name, error = %e, "metadata dropped: page budget");
                return Ok(());
            }
        };
        match Frame::from_tag_body(MediaKind::Data, 0, message) {
            Ok(frame) => push(p, frame),
            Err(e) => {
                warn!(stream = %p.name, error = %e, "malformed metadata skipped");
                Ok(())
            }
        }
    }

    /// Moves what a player's hub queue holds into its session output, up to `OUTPUT_HIGH`,
    /// taking items in batches (one queue lock each).
    fn pull_player_items(&mut self) -> Result<(), End> {
        while self.session.pending_bytes() < OUTPUT_HIGH {
            let budget = OUTPUT_HIGH - self.session.pending_bytes();
            let Role::Playing(p) = &mut self.role else {
                return Ok(());
            };
            let mut batch = std::mem::take(&mut p.batch);
            if !p.sub.try_take(&mut batch, budget) {
                return Err(End::Shutdown);
            }
            if batch.is_empty() {
                p.batch = batch;
                return Ok(());
            }
            let mut result = Ok(());
            for item in batch.drain(..) {
                if result.is_ok() {
                    result = self.handle_item(item);
                }
            }
            if let Role::Playing(p) = &mut self.role {
                if batch.capacity() > 64 {
                    batch = Vec::new(); // after the join burst; steady batches are a few items
                }
                p.batch = batch;
            }
            result?;
        }
        Ok(())
    }

    fn handle_item(&mut self, item: PlayerItem) -> Result<(), End> {
        let Role::Playing(p) = &mut self.role else {
            return Ok(());
        };
        match item {
            PlayerItem::Frame(f) => {
                if p.paused {
                    return Ok(());
                }
                if f.kind == MediaKind::Video && p.skip_video {
                    if !(f.keyframe || f.sequence_header) {
                        return Ok(());
                    }
                    p.skip_video = false;
                }
                let sid = p.stream_id;
                match f.kind {
                    // onMetaData goes out at timestamp 0, as players expect it.
                    MediaKind::Data => self.session.send_metadata(sid, f.payload)?,
                    kind => self.session.send_media(sid, kind, f.timestamp, f.payload)?,
                }
            }
            PlayerItem::PublishStarted { source } => {
                debug!(stream = %p.name, ?source, "publisher arrived");
            }
            PlayerItem::PublishStopped => {
                debug!(stream = %p.name, "publisher left");
                let sid = p.stream_id;
                self.session.send_unpublish_notify(sid)?;
            }
            PlayerItem::Kicked(reason) => {
                warn!(stream = %p.name, %reason, "player disconnected: too slow");
                return Err(End::Closed);
            }
        }
        Ok(())
    }
}

fn push(p: &mut Publishing, frame: Frame) -> Result<(), End> {
    match p.publisher.push(frame) {
        Ok(()) => Ok(()),
        Err(HubError::ShutDown { .. }) => Err(End::Shutdown),
        Err(e) => {
            warn!(stream = %p.name, error = %e, "frame refused by the hub");
            Ok(())
        }
    }
}

/// The first tick of the grid of multiples of `delay` (from a process-wide origin) that is
/// after `now`: players whose output waits share flush instants, so one timer turn serves them
/// all. With a zero delay, `now`.
fn next_tick(now: Instant, delay: Duration) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let step = delay.as_nanos();
    if step == 0 {
        return now;
    }
    match now.checked_duration_since(origin) {
        Some(since) => {
            let ticks = since.as_nanos() / step + 1;
            origin + Duration::from_nanos((ticks * step).min(u64::MAX as u128) as u64)
        }
        None => now + delay,
    }
}

/// What a connection's role has for it, besides its socket.
enum RoleEvent {
    /// A player's next hub item (`None`: the subscription ended).
    Item(Option<PlayerItem>),
    /// A publisher's transcoded audio.
    Audio(TranscodedAudio),
}

/// Waits for the role's next event; never resolves while idle.
async fn role_event(role: &mut Role) -> RoleEvent {
    match role {
        Role::Playing(p) => RoleEvent::Item(p.sub.next().await),
        Role::Publishing(p) => RoleEvent::Audio(p.audio.recv().await),
        Role::Idle => std::future::pending().await,
    }
}
