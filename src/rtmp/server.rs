//! The RTMP socket layer: the listener and one task per connection, joining a
//! [`ServerSession`] (protocol) to the stream [`Hub`] (media).
//!
//! A publisher's media payloads are copied once, from the socket buffer into its stream's pages;
//! a player's output is chunk headers plus references to those pages, written with `writev`.
//! A player's output buffer is kept small (`OUTPUT_HIGH`): what it cannot send yet stays in its
//! hub queue, where the drop policy for slow players applies. Every connection has deadlines
//! (handshake, idle input, stalled output) and a bad peer only ever closes its own connection.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Span};

use super::flush_pass::{next_tick, FlushPass, Streamer};
use super::{RtmpError, ServerSession, SessionConfig, SessionEvent};
use crate::config::RtmpConfig;
use crate::hub::{Hub, HubError, PlayerItem, PlayerSubscription, PublisherHandle, SourceKind};
use crate::media::{self, Frame, MediaKind};
use crate::pages::{PagePool, StreamWriter};
use crate::status::StatusBoard;
use crate::transcode::{AudioConfig, AudioStage, Offer, TranscodedAudio};

/// The only application served: `rtmp://HOST/live/NAME`.
pub const APP: &str = "live";

/// A player's session output above which no more items are taken from its hub queue.
const OUTPUT_HIGH: usize = 256 * 1024;
/// Pending output at which a player's merged write goes out without waiting for the delay.
const FLUSH_BYTES: usize = 64 * 1024;
/// The read buffer (one per thread).
const READ_BUF: usize = 64 * 1024;
/// Linux's IOV_MAX: the most slices one writev takes.
const MAX_IOV: usize = 1024;
/// Tick waits after which a streaming player polls its socket for input (~200 ms at 40 ms).
const READ_POLL_TICKS: u8 = 4;
/// Ticks in a row with nothing to send after which a parked player goes back to its task, to
/// wait for items there instead of being looked at every tick (a stream gone quiet).
const PARKED_IDLE_TICKS: u8 = 25;
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
    let stopping = Stopping::start(shutdown.clone());
    // One shard of the flush pass per worker thread; none without a tick (`write_delay_ms = 0`
    // writes each item at once).
    let pass = (ctx.config.write_delay_ms > 0).then(|| {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        FlushPass::start(
            workers,
            Duration::from_millis(ctx.config.write_delay_ms),
            shutdown.clone(),
        )
    });
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
                    // Entered only where the connection logs, not on every poll (a player is
                    // polled every tick; entering a span each time cost 1.6% of the server).
                    let span = tracing::info_span!("rtmp", conn = next_id, %peer);
                    let ctx = ctx.clone();
                    let shutdown = shutdown.clone();
                    let stopping = stopping.clone();
                    let pass = pass.clone().map(|pass| (pass, next_id as usize));
                    // Made here, so the task holds a pointer, not its arguments.
                    let conn = Box::new(Connection::new(socket, ctx, shutdown, stopping, span, pass));
                    tasks.spawn(async move {
                        conn.run().await;
                        drop(permit);
                    });
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

/// Shutdown as a flag players read when their tick timer fires: a player waiting for a tick
/// does not poll the cancellation token (each poll takes the token's lock, which every
/// connection shares: 1.7% of the server with 300 players), so it learns of a shutdown at its
/// next tick, at most `write_delay_ms` later.
#[derive(Clone)]
struct Stopping(Arc<AtomicBool>);

impl Stopping {
    fn start(shutdown: CancellationToken) -> Stopping {
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            // Release/Acquire: nothing else is published with the flag; a plain handshake.
            set.store(true, Ordering::Release);
        });
        Stopping(flag)
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// When a connection's pending output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Nothing scheduled: a player waits for hub items.
    Idle,
    /// Now (answers to commands, and everything but players' media); for a player, a flush in
    /// progress, taking items from its hub queue until it is empty.
    Now,
    /// At the next tick: a player's media, merged into one write per tick.
    Tick,
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
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    PeerClosed,
    Shutdown,
    /// Our decision (timeout, kick, rejection); already logged.
    Closed,
    /// Not an end: a player streams steadily, and its connection parks in the flush pass.
    Park,
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
    stopping: Stopping,
    span: Span,
    session: ServerSession,
    role: Role,
    started: Instant,
    /// Whether the connection ever published or played (ends the handshake deadline).
    engaged: bool,
    last_input: Instant,
    /// Last time output was written, or found empty.
    last_output: Instant,
    /// When output is written (for a player: when its hub items are taken).
    flush: Flush,
    /// The last write found the socket full: wait until it is writable.
    write_blocked: bool,
    /// Flush ticks in a row that found nothing to send (after one, wait for items instead).
    idle_ticks: u8,
    /// Waits for a tick since the socket's read readiness was last polled.
    unpolled_ticks: u8,
    /// With `Flush::Tick`: the tick (of the grid shared by all players) it waits for.
    tick_at: Option<Instant>,
    /// `write_delay_ms`: the tick grid's step.
    delay: Duration,
    /// Where a steadily streaming player parks, and in which shard.
    pass: Option<(Arc<FlushPass<Connection>>, usize)>,
}

impl Connection {
    fn new(
        socket: TcpStream,
        ctx: Arc<Context>,
        shutdown: CancellationToken,
        stopping: Stopping,
        span: Span,
        pass: Option<(Arc<FlushPass<Connection>>, usize)>,
    ) -> Connection {
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
        let delay = Duration::from_millis(ctx.config.write_delay_ms);
        Connection {
            socket,
            ctx,
            shutdown,
            stopping,
            span,
            session: ServerSession::new(config),
            role: Role::Idle,
            started: now,
            engaged: false,
            last_input: now,
            last_output: now,
            flush: Flush::Idle,
            write_blocked: false,
            idle_ticks: 0,
            unpolled_ticks: 0,
            tick_at: None,
            delay,
            pass,
        }
    }

    /// The connection's task. It holds only the boxed connection and, while the connection is
    /// not parked, its boxed `drive` loop: a parked player's task is a few words.
    async fn run(self: Box<Self>) {
        let mut conn = self;
        let span = conn.span.clone();
        span.in_scope(|| {
            conn.ctx
                .counters
                .connections
                .fetch_add(1, Ordering::Relaxed);
            debug!("connection opened");
        });
        let end = loop {
            let end = Box::pin(conn.drive()).await;
            let (Ok(End::Park), Some((pass, shard))) = (&end, &conn.pass) else {
                break end;
            };
            let (pass, shard) = (pass.clone(), *shard);
            match pass.park(shard, conn).await {
                Some((back, outcome)) => {
                    conn = back;
                    if let Some(end) = outcome {
                        break end;
                    }
                }
                // The runtime is going away, and the connection went with the pass.
                None => return,
            }
        };
        Box::pin(conn.close(end)).await;
    }

    async fn close(&mut self, end: Result<End, End>) {
        let span = self.span.clone();
        span.in_scope(|| match &end {
            Ok(End::PeerClosed) | Ok(End::Shutdown) | Ok(End::Closed) => {}
            Err(End::Rtmp(e)) => warn!(error = %e, "closing connection: bad input from peer"),
            Err(End::Io(e)) => debug!(error = %e, "connection I/O error"),
            Ok(e) | Err(e) => debug!(end = ?e, "connection ended"),
        });
        // Whatever was queued (a rejection's status, a kicked player's last bytes) goes out
        // if the peer still reads.
        let _ = tokio::time::timeout(CLOSE_FLUSH, self.flush()).await;
        span.in_scope(|| {
            self.stop_role("connection closed");
            self.ctx
                .counters
                .connections
                .fetch_sub(1, Ordering::Relaxed);
            debug!(?end, "connection closed");
        });
    }

    async fn drive(&mut self) -> Result<End, End> {
        // One timer for the flush tick and the deadlines, reset only when it must fire earlier
        // or has fired (firing early is harmless: the checks are idempotent). One cancellation
        // future for the whole connection, polled only when not waiting for a tick (each poll
        // takes the token's lock, which every connection shares; a player waiting for a tick
        // reads the `Stopping` flag when the tick comes instead). A shared tick broadcast to
        // all players (one timer for the process) was tried and measured worse: waking every
        // player from one thread made the other worker steal them (context switches 3.7% ->
        // 7.4% of the server) for less than the timer wheel's cost it saved.
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
                if self.flush_due() {
                    self.flush = Flush::Now;
                    self.tick_at = None;
                    self.pull_player_items()?;
                    if self.session.pending_bytes() == 0 {
                        // Nothing left to send: wait for the next tick, then for items if that
                        // tick finds none (a streaming player wakes once per tick).
                        self.flush = match self.idle_ticks {
                            0 => {
                                self.tick_at = Some(next_tick(now, self.delay));
                                Flush::Tick
                            }
                            _ => Flush::Idle,
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
                    self.flush = Flush::Idle;
                }
            } else if self.flush == Flush::Idle {
                self.flush = if playing {
                    self.tick_at = Some(next_tick(now, self.delay));
                    Flush::Tick
                } else {
                    Flush::Now
                };
            }
            if pending > 0 && !self.write_blocked && (pending >= FLUSH_BYTES || self.flush_due()) {
                // Written at once; only a full socket makes the connection wait to write.
                if self.write_some()? == 0 {
                    self.write_blocked = true;
                }
                continue;
            }
            let tick_wait = playing && self.flush == Flush::Tick;
            if tick_wait && self.stopping.is_set() {
                return Ok(End::Shutdown);
            }
            // A player waits for items only with no flush scheduled (a scheduled flush takes
            // them); a publisher always waits for its transcoded audio.
            let wait_role = match self.role {
                Role::Playing(_) => self.flush == Flush::Idle,
                Role::Publishing(_) => true,
                Role::Idle => false,
            };
            let deadline = self.deadline();
            let wake = match self.tick_at {
                Some(t) if tick_wait => deadline.min(t),
                _ => deadline,
            };
            if timer.is_elapsed() || wake < timer.deadline() {
                timer.as_mut().reset(wake);
            }
            // A streaming player polls its socket's read readiness only every few ticks: each
            // poll takes the socket's waiter lock, and a player's input (acknowledgements, a
            // pause, a close) can wait that long. The waker registered by the last poll stays
            // registered, and readiness is kept until read, so nothing is lost, only delayed.
            let poll_read = !tick_wait || self.unpolled_ticks >= READ_POLL_TICKS;
            if tick_wait && !poll_read && self.pass.is_some() && pending == 0 && !self.write_blocked
            {
                // Streaming steadily: the flush pass writes its ticks until something needs
                // this task (input, a full socket, a kick, shutdown).
                return Ok(End::Park);
            }
            if poll_read {
                self.unpolled_ticks = 0;
            } else {
                self.unpolled_ticks += 1;
            }
            let socket = &self.socket;
            tokio::select! {
                biased;
                _ = &mut cancelled, if !tick_wait => return Ok(End::Shutdown),
                ready = socket.writable(), if self.write_blocked => {
                    ready?;
                    self.write_blocked = false;
                }
                // Readiness without a waiter list entry made and dropped on every turn.
                ready = std::future::poll_fn(|cx| socket.poll_read_ready(cx)), if poll_read => {
                    ready?;
                    if let Some(end) = self.read_input()? {
                        return Ok(end);
                    }
                }
                event = role_event(&mut self.role), if wait_role => {
                    let span = self.span.clone();
                    let _entered = span.enter();
                    match event {
                        RoleEvent::Item(Some(item)) => {
                            self.idle_ticks = 0;
                            self.handle_item(item)?;
                        }
                        RoleEvent::Item(None) => return Ok(End::Shutdown),
                        RoleEvent::Audio(audio) => self.ingest_transcoded(audio)?,
                    }
                }
                _ = &mut timer, if !timer.is_elapsed() => {
                    // Most turns are flush ticks; the deadlines are checked when one is due.
                    if timer.deadline() >= deadline {
                        let span = self.span.clone();
                        let _entered = span.enter();
                        self.check_deadlines()?;
                    }
                }
            }
        }
    }

    /// Reads what the socket has into the session and handles it. `Some` when the peer closed.
    fn read_input(&mut self) -> Result<Option<End>, End> {
        // One read buffer per thread, not per connection: what is read goes into the session
        // at once, and a thousand players would otherwise each hold a buffer for the few bytes
        // they send.
        thread_local! {
            static READ: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        READ.with_borrow_mut(|buf| {
            if buf.is_empty() {
                buf.resize(READ_BUF, 0);
            }
            match self.socket.try_read(buf) {
                Ok(0) => Ok(Some(End::PeerClosed)),
                Ok(n) => {
                    let span = self.span.clone();
                    let _entered = span.enter();
                    self.last_input = Instant::now();
                    self.ctx
                        .counters
                        .bytes_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    self.session.handle_input(&buf[..n])?;
                    self.handle_events()?;
                    // Answers to commands go out at once.
                    if !matches!(self.role, Role::Playing(_)) || self.flush == Flush::Idle {
                        self.flush = Flush::Now;
                    }
                    Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Whether pending output (for a player: its hub items) should be written now.
    fn flush_due(&self) -> bool {
        match self.flush {
            Flush::Idle => false,
            Flush::Now => true,
            Flush::Tick => self.tick_at.is_none_or(|t| Instant::now() >= t),
        }
    }

    /// Writes what the socket takes now. Returns the bytes written (0: the socket is full).
    fn write_some(&mut self) -> Result<usize, End> {
        // One slice list per thread, reused (no allocation per write, no memory per player).
        thread_local! {
            static IOV: std::cell::Cell<Vec<IoSlice<'static>>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut slices = recycle(IOV.take());
        self.session.io_slices_max(&mut slices, MAX_IOV);
        let written = send_vectored(&self.socket, &slices);
        IOV.set(recycle(slices));
        match written {
            Ok(n) => {
                self.session.advance(n);
                self.ctx
                    .counters
                    .bytes_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.last_output = Instant::now();
                // A player's flush goes on (taking more items) until its queue is empty.
                if self.session.pending_bytes() == 0 && !matches!(self.role, Role::Playing(_)) {
                    self.flush = Flush::Idle;
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
            if self.write_some()? == 0 {
                self.socket.writable().await?;
            }
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
        // One batch per thread, not per player: it is emptied before this returns.
        thread_local! {
            static BATCH: std::cell::Cell<Vec<PlayerItem>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut batch = BATCH.take();
        let result = self.pull_into(&mut batch);
        batch.clear();
        if batch.capacity() > 1024 {
            batch = Vec::new(); // after a join burst; steady batches are a few items
        }
        BATCH.set(batch);
        result
    }

    fn pull_into(&mut self, batch: &mut Vec<PlayerItem>) -> Result<(), End> {
        while self.session.pending_bytes() < OUTPUT_HIGH {
            let budget = OUTPUT_HIGH - self.session.pending_bytes();
            let Role::Playing(p) = &mut self.role else {
                return Ok(());
            };
            if !p.sub.try_take(batch, budget) {
                return Err(End::Shutdown);
            }
            if batch.is_empty() {
                return Ok(());
            }
            for item in batch.drain(..) {
                self.handle_item(item)?;
            }
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
            // The rare items log; only they enter the connection's span (this is the hot path).
            PlayerItem::PublishStarted { source } => {
                let _entered = self.span.enter();
                debug!(stream = %p.name, ?source, "publisher arrived");
            }
            // Timestamps run on across a camera's reconnect: a player plays on.
            PlayerItem::Discontinuity => {}
            PlayerItem::PublishStopped => {
                let _entered = self.span.enter();
                debug!(stream = %p.name, "publisher left");
                let sid = p.stream_id;
                self.session.send_unpublish_notify(sid)?;
            }
            PlayerItem::Kicked(reason) => {
                let _entered = self.span.enter();
                warn!(stream = %p.name, %reason, "player disconnected: too slow");
                return Err(End::Closed);
            }
        }
        Ok(())
    }
}

/// A parked player's tick in the flush pass. Back to the task with `None` to go on there, with
/// `Some(end)` to close.
impl Streamer for Connection {
    type Outcome = Option<Result<End, End>>;

    fn on_tick(&mut self, tick: u64) -> Option<Self::Outcome> {
        let phase = self.pass.as_ref().map_or(0, |(_, shard)| *shard as u64);
        if (tick + phase) % u64::from(READ_POLL_TICKS) == 0 && self.input_ready() {
            // The task reads it on its first turn.
            self.unpolled_ticks = READ_POLL_TICKS;
            return Some(None);
        }
        match self.flush_parked() {
            Ok(true) => None,
            Ok(false) => Some(None),
            Err(end) => Some(Some(Err(end))),
        }
    }

    fn on_stop(&mut self) -> Self::Outcome {
        Some(Ok(End::Shutdown))
    }

    fn prefetch(&self) {
        self.session.prefetch();
        if let Role::Playing(p) = &self.role {
            p.sub.prefetch();
        }
    }
}

impl Connection {
    /// Whether the peer sent something (or closed), without reading it: the noop waker
    /// replaces the task's, which registers its own again when it polls.
    fn input_ready(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.socket.poll_read_ready(&mut cx).is_ready()
    }

    /// A parked player's flush: its hub items into one write. `Ok(false)` when its task must
    /// take over: the write was partial or found the socket full, the session closed, or the
    /// stream has been quiet for `PARKED_IDLE_TICKS`.
    fn flush_parked(&mut self) -> Result<bool, End> {
        self.pull_player_items()?;
        if self.session.is_closed() {
            return Ok(false);
        }
        if self.session.pending_bytes() == 0 {
            self.last_output = Instant::now();
            self.idle_ticks = self.idle_ticks.saturating_add(1);
            if self.idle_ticks >= PARKED_IDLE_TICKS {
                // The task waits for the next item instead.
                self.flush = Flush::Idle;
                self.tick_at = None;
                return Ok(false);
            }
            return Ok(true);
        }
        self.idle_ticks = 0;
        if self.write_some()? == 0 {
            self.write_blocked = true;
        }
        Ok(self.session.pending_bytes() == 0)
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

/// One gather write of what the socket takes now; a full socket is `WouldBlock`. (`sendmsg`
/// instead of `writev`, skipping the VFS layer, measured no better: the syscall entry and the
/// TCP path dominate.)
fn send_vectored(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.try_write_vectored(slices)
}

/// An emptied slice list with another lifetime, keeping its allocation (the in-place
/// `collect` of an empty vector into one of the same layout): one `Vec<IoSlice>` per
/// connection instead of one per write.
fn recycle<'b>(mut v: Vec<IoSlice<'_>>) -> Vec<IoSlice<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
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
