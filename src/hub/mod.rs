//! The stream hub: streams by name, each with at most one publisher, its latest sequence
//! headers and metadata, its frame saver (GOP cache) and its players.
//!
//! The hub is runtime-agnostic: a publisher's [`PublisherHandle::push`] is a synchronous,
//! never-blocking call that appends the frame once to the stream's fan-out log ([`log`]);
//! each player offers its own bounded queue what it has not yet seen there when it next
//! reads, so a push costs the same for 1 player as for 1000, and a player's thread does its
//! own work. Players wait with one `tokio::sync::Notify` per stream. No sockets here: the RTMP
//! (and later HLS, recorder) glue reads [`PlayerSubscription`]s and feeds [`PublisherHandle`]s.
//!
//! Locks, always taken in this order and never across an `.await`: the hub's stream map, a
//! stream's state, a player's queue (with its log cursor). Reading the log takes no lock.

mod log;
mod player;
mod saver;

pub use player::{
    DropCounts, DropReason, KickReason, PlayerId, PlayerItem, PlayerQueueConfig, PlayerStats,
    PlayerSubscription, Reader, TryNext,
};
pub use saver::SaverConfig;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use log::{LogWriter, SEGMENT};
use player::{PlayerShared, Rebaser};
use saver::FrameSaver;

use crate::media::{Codec, Frame, MediaKind};

/// Hub configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Per-stream frame saver bounds (defaults: 16 MiB, 1500 frames, 128 audio frames).
    pub saver: SaverConfig,
    /// Per-player queue bounds (defaults: soft 2 MiB, hard 8 MiB).
    pub player: PlayerQueueConfig,
}

/// Where a stream's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An RTMP publisher.
    Rtmp,
    /// An RTSP camera pulled by the server.
    Rtsp,
    /// A looped file.
    File,
    /// A rendition: another stream's video decoded, scaled and re-encoded (`[[rendition]]`).
    Rendition,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Rtmp => "rtmp",
            SourceKind::Rtsp => "rtsp",
            SourceKind::File => "file",
            SourceKind::Rendition => "rendition",
        })
    }
}

/// Errors from the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// Someone already publishes this stream (RTMP: `NetStream.Publish.BadName`).
    #[error("stream {stream:?} already has a publisher ({source_kind})")]
    AlreadyPublishing {
        stream: String,
        source_kind: SourceKind,
    },
    /// The hub is shutting down; no new publishers, players or frames.
    #[error("hub is shutting down (stream {stream:?})")]
    ShutDown { stream: String },
}

/// A stream's statistics, for the HTTP API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    pub name: String,
    /// The current publisher's kind, if one is publishing.
    pub source: Option<SourceKind>,
    pub publishing: bool,
    /// Players (viewers); the server's own outputs (recorders) are `outputs`.
    pub players: usize,
    pub outputs: usize,
    pub saver_frames: usize,
    pub saver_bytes: usize,
    /// Frames and payload bytes pushed since the stream entry was created.
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Frames dropped for players, by reason, summed over all players ever.
    pub dropped: DropCounts,
    /// Players disconnected by the hub: queue over its hard bound, or on request.
    pub players_kicked: u64,
    /// The current publisher's codecs, from its frame headers (cleared at unpublish).
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Milliseconds since the current publisher started; `None` while nobody publishes.
    pub uptime_ms: Option<u64>,
    /// Displayed picture size, from the current publisher's H.264 sequence header.
    pub video_width: Option<u32>,
    pub video_height: Option<u32>,
    /// From the current publisher's AAC sequence header (AudioSpecificConfig).
    pub audio_sample_rate: Option<u32>,
    pub audio_channels: Option<u8>,
    /// Frames the source could not store (page budget) and so never reached the hub, as
    /// reported with [`PublisherHandle::count_ingest_drop`].
    pub ingest_dropped: u64,
}

/// What [`Hub::latest_keyframe`] returns: a video keyframe with the sequence header that
/// decodes it.
#[derive(Debug, Clone)]
pub struct LatestKeyframe {
    pub video_codec: Option<Codec>,
    /// The FLV body of the video sequence header (for H.264: 5 header bytes, then `avcC`).
    pub header: Frame,
    /// The FLV body of the keyframe (for H.264: 5 header bytes, then AVCC NAL units).
    pub keyframe: Frame,
}

/// A set of named streams. Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    config: HubConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_id: AtomicU64,
    /// Set once by `shutdown`; read under the stream map lock, so Relaxed suffices.
    shut_down: AtomicBool,
    /// Bumped whenever a player joins or leaves any stream (see [`Hub::players_changed`]).
    players_changed: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever a publish starts or stops (see [`Hub::publishing_changed`]).
    publishing_changed: tokio::sync::watch::Sender<u64>,
}

pub(crate) struct Stream {
    pub(crate) name: String,
    state: Mutex<StreamState>,
    /// Woken whenever something is appended to the log or a player is kicked or closed; a
    /// waiting player then looks at its queue.
    pub(crate) wake: tokio::sync::Notify,
}

struct Publisher {
    id: u64,
    source: SourceKind,
    since: Instant,
}

struct StreamState {
    publisher: Option<Publisher>,
    metadata: Option<Frame>,
    video_header: Option<Frame>,
    audio_header: Option<Frame>,
    video_codec: Option<Codec>,
    audio_codec: Option<Codec>,
    /// (width, height) and (sample rate, channels) from the sequence headers, for stats.
    video_size: Option<(u32, u32)>,
    audio_format: Option<(u32, u8)>,
    saver: FrameSaver,
    last_timestamp: u32,
    /// What every player gets, appended once (players read it with their own cursors).
    log: LogWriter,
    players: Vec<Arc<PlayerShared>>,
    frames_in: u64,
    bytes_in: u64,
    dropped: DropCounts,
    players_kicked: u64,
    ingest_dropped: u64,
    /// A frame was pushed since the last discontinuity (or publish).
    pushed_since_break: bool,
}

impl StreamState {
    /// Forgets everything the previous publisher said, so no player ever gets a stale header.
    fn forget_publisher_media(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.video_codec = None;
        self.audio_codec = None;
        self.video_size = None;
        self.audio_format = None;
        self.saver.clear();
    }

    /// Appends `item` to the log for every player. Each new log segment, players more than a
    /// segment behind (whose sockets are full, or who do not read) are caught up here, so the
    /// log stays short and a stalled player meets its drop policy and bounds as it would have
    /// at push time. The caller wakes the stream's waiting players.
    fn offer_all(&mut self, stream: &str, item: PlayerItem) {
        if self.log.push(item) {
            let behind = self.log.end().saturating_sub(SEGMENT as u64);
            self.catch_up(stream, behind);
        }
    }

    /// Offers every player whose log cursor is before `behind` what it has not seen yet
    /// (`u64::MAX`: every player), counting drops and disconnecting those this kicks.
    fn catch_up(&mut self, stream: &str, behind: u64) {
        let mut kicked = Vec::new();
        for p in &self.players {
            let mut r = p.lock();
            if r.position() < behind {
                if let Some(reason) = r.catch_up(&mut self.dropped) {
                    tracing::warn!(stream = %stream, player = %p.id, %reason, "player disconnected");
                    kicked.push(p.id);
                }
            }
        }
        if !kicked.is_empty() {
            self.players_kicked += kicked.len() as u64;
            self.players.retain(|p| !kicked.contains(&p.id));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                config,
                streams: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                shut_down: AtomicBool::new(false),
                players_changed: tokio::sync::watch::Sender::new(0),
                publishing_changed: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Starts publishing `name`. Players already waiting get `PublishStarted`. Refused with
    /// [`HubError::AlreadyPublishing`] while another handle for `name` is alive. Dropping the
    /// handle unpublishes.
    pub fn publish(&self, name: &str, source: SourceKind) -> Result<PublisherHandle, HubError> {
        let mut streams = lock(&self.inner.streams);
        let stream = self.inner.open_stream(&mut streams, name)?;
        let mut st = lock(&stream.state);
        if let Some(p) = &st.publisher {
            return Err(HubError::AlreadyPublishing {
                stream: name.to_owned(),
                source_kind: p.source,
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        st.publisher = Some(Publisher {
            id,
            source,
            since: Instant::now(),
        });
        st.forget_publisher_media();
        st.offer_all(name, PlayerItem::PublishStarted { source });
        tracing::info!(stream = %name, %source, publisher = id, players = st.players.len(), "publish started");
        drop(st);
        drop(streams);
        stream.wake.notify_waiters();
        self.inner.bump_publishing();
        Ok(PublisherHandle {
            hub: self.inner.clone(),
            stream,
            id,
        })
    }

    /// Subscribes a player to `name`, which may have no publisher yet: the player then waits.
    pub fn play(&self, name: &str) -> Result<PlayerSubscription, HubError> {
        self.subscribe(name, Reader::Player, self.inner.config.player.clone())
    }

    /// Subscribes an output of the server (a recorder, a relay) to `name` as a player is, with
    /// its own queue bounds; it is not counted among the stream's players.
    pub fn subscribe_output(
        &self,
        name: &str,
        keeps_source: bool,
        queue: PlayerQueueConfig,
    ) -> Result<PlayerSubscription, HubError> {
        self.subscribe(name, Reader::Output { keeps_source }, queue)
    }

    fn subscribe(
        &self,
        name: &str,
        reader: Reader,
        queue: PlayerQueueConfig,
    ) -> Result<PlayerSubscription, HubError> {
        let mut streams = lock(&self.inner.streams);
        let stream = self.inner.open_stream(&mut streams, name)?;
        let id = PlayerId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut st = lock(&stream.state);
        // The player reads the log from here on; what came before reaches it through the
        // headers and the saved GOP below.
        let shared = Arc::new(PlayerShared::new_for(id, reader, queue, st.log.cursor()));
        if let Some(p) = &st.publisher {
            let mut r = shared.lock();
            let q = &mut r.queue;
            let mut dropped = DropCounts::default();
            q.offer(
                PlayerItem::PublishStarted { source: p.source },
                &mut dropped,
            );
            // Headers carry the timestamp the player starts at, so its clock does not jump.
            let start = st
                .saver
                .frames()
                .next()
                .map_or(st.last_timestamp, |f| f.timestamp);
            for h in [&st.metadata, &st.video_header, &st.audio_header]
                .into_iter()
                .flatten()
            {
                let mut h = h.clone();
                h.timestamp = start;
                q.offer(PlayerItem::Frame(h), &mut dropped);
            }
            for f in st.saver.frames() {
                q.offer(PlayerItem::Frame(f.clone()), &mut dropped);
            }
            drop(r);
            st.dropped.merge(&dropped);
        }
        st.players.push(shared.clone());
        tracing::info!(stream = %name, player = %id, ?reader, publishing = st.publisher.is_some(), "player subscribed");
        drop(st);
        drop(streams);
        self.inner.bump_players();
        Ok(PlayerSubscription {
            hub: self.inner.clone(),
            stream,
            shared,
            rebaser: Rebaser::default(),
        })
    }

    /// Disconnects a player (it reads `Kicked(Requested)`, then `None`). False if not found.
    pub fn kick_player(&self, name: &str, id: PlayerId) -> bool {
        let Some(stream) = lock(&self.inner.streams).get(name).cloned() else {
            return false;
        };
        let mut st = lock(&stream.state);
        let Some(i) = st.players.iter().position(|p| p.id == id) else {
            return false;
        };
        let p = st.players.swap_remove(i);
        p.lock().kick(KickReason::Requested);
        st.players_kicked += 1;
        tracing::info!(stream = %name, player = %id, "player kicked by request");
        drop(st);
        stream.wake.notify_waiters();
        self.inner.bump_players();
        true
    }

    /// Readers of `name` that keep an on-demand source connected: its players and the
    /// outputs configured for it by name (0 if the stream does not exist).
    pub fn player_count(&self, name: &str) -> usize {
        let Some(stream) = lock(&self.inner.streams).get(name).cloned() else {
            return 0;
        };
        let st = lock(&stream.state);
        st.players
            .iter()
            .filter(|p| p.reader_kind.keeps_source())
            .count()
    }

    /// A receiver that changes whenever a publish starts or stops on any stream; pair it with
    /// [`publishing`](Self::publishing) (outputs for every stream, `"*"`).
    pub fn publishing_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.publishing_changed.subscribe()
    }

    /// The names of the streams that have a publisher now, sorted.
    pub fn publishing(&self) -> Vec<String> {
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).values().cloned().collect();
        let mut out: Vec<String> = streams
            .iter()
            .filter(|s| lock(&s.state).publisher.is_some())
            .map(|s| s.name.clone())
            .collect();
        out.sort();
        out
    }

    /// A receiver that changes whenever a player joins or leaves any stream; pair it with
    /// [`player_count`](Self::player_count) to learn whether a stream is watched (on-demand
    /// sources). The value is a change counter, meaningless in itself.
    pub fn players_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.players_changed.subscribe()
    }

    /// The current publisher's video sequence header and the keyframe that starts its latest
    /// saved GOP, for stills (`/snapshot`). `None` without a publisher, without a video header,
    /// or while the saver holds no keyframe (a GOP over the saver's bounds, or audio only).
    /// Both are clones: one reference count each, no copy of the payload.
    pub fn latest_keyframe(&self, name: &str) -> Option<LatestKeyframe> {
        let stream = lock(&self.inner.streams).get(name).cloned()?;
        let st = lock(&stream.state);
        st.publisher.as_ref()?;
        let header = st.video_header.clone()?;
        let keyframe = st
            .saver
            .frames()
            .next()
            .filter(|f| f.kind == MediaKind::Video && f.keyframe)?
            .clone();
        Some(LatestKeyframe {
            video_codec: st.video_codec,
            header,
            keyframe,
        })
    }

    /// Statistics of one stream.
    pub fn stream_stats(&self, name: &str) -> Option<StreamStats> {
        let stream = lock(&self.inner.streams).get(name).cloned()?;
        Some(stream.stats())
    }

    /// Statistics of every stream, sorted by name.
    pub fn stats(&self) -> Vec<StreamStats> {
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).values().cloned().collect();
        let mut out: Vec<StreamStats> = streams.iter().map(|s| s.stats()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Counters of each player of a stream.
    pub fn player_stats(&self, name: &str) -> Vec<PlayerStats> {
        let Some(stream) = lock(&self.inner.streams).get(name).cloned() else {
            return Vec::new();
        };
        let mut st = lock(&stream.state);
        st.catch_up(&stream.name, u64::MAX);
        st.players
            .iter()
            .filter(|p| p.reader_kind == Reader::Player)
            .map(|p| p.lock().queue.stats())
            .collect()
    }

    /// Stops the hub: no new publishers or players, pushes fail with [`HubError::ShutDown`],
    /// and each player gets what is queued for it, then `None`.
    pub fn shutdown(&self) {
        let streams = lock(&self.inner.streams);
        self.inner.shut_down.store(true, Ordering::Relaxed);
        for stream in streams.values() {
            let mut st = lock(&stream.state);
            // What was pushed before the shutdown is still delivered.
            st.catch_up(&stream.name, u64::MAX);
            for p in &st.players {
                p.lock().close();
            }
            drop(st);
            stream.wake.notify_waiters();
        }
        tracing::info!(streams = streams.len(), "hub shut down");
    }
}

impl HubInner {
    fn bump_players(&self) {
        self.players_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn bump_publishing(&self) {
        self.publishing_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The stream called `name`, made if new; refused once the hub is shutting down. The
    /// caller holds the stream map's lock (taken before any stream's, always).
    fn open_stream(
        &self,
        streams: &mut HashMap<String, Arc<Stream>>,
        name: &str,
    ) -> Result<Arc<Stream>, HubError> {
        if self.shut_down.load(Ordering::Relaxed) {
            return Err(HubError::ShutDown {
                stream: name.to_owned(),
            });
        }
        Ok(streams
            .entry(name.to_owned())
            .or_insert_with(|| self.new_stream(name))
            .clone())
    }

    fn new_stream(&self, name: &str) -> Arc<Stream> {
        Arc::new(Stream {
            name: name.to_owned(),
            state: Mutex::new(StreamState {
                publisher: None,
                metadata: None,
                video_header: None,
                audio_header: None,
                video_codec: None,
                audio_codec: None,
                video_size: None,
                audio_format: None,
                saver: FrameSaver::new(self.config.saver.clone()),
                last_timestamp: 0,
                log: LogWriter::new(),
                players: Vec::new(),
                frames_in: 0,
                bytes_in: 0,
                dropped: DropCounts::default(),
                players_kicked: 0,
                ingest_dropped: 0,
                pushed_since_break: false,
            }),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Removes the stream's entry if nobody publishes or plays it any more.
    fn forget_if_idle(
        streams: &mut HashMap<String, Arc<Stream>>,
        stream: &Arc<Stream>,
        st: &StreamState,
    ) {
        if st.publisher.is_none() && st.players.is_empty() {
            if let Some(s) = streams.get(&stream.name) {
                if Arc::ptr_eq(s, stream) {
                    streams.remove(&stream.name);
                }
            }
        }
    }

    pub(crate) fn remove_player(&self, stream: &Arc<Stream>, id: PlayerId) {
        let mut streams = lock(&self.streams);
        let mut st = lock(&stream.state);
        st.players.retain(|p| p.id != id);
        Self::forget_if_idle(&mut streams, stream, &st);
        drop(st);
        drop(streams);
        self.bump_players();
    }

    fn unpublish(&self, stream: &Arc<Stream>, id: u64) {
        let mut streams = lock(&self.streams);
        let mut st = lock(&stream.state);
        let stopped = st.publisher.as_ref().is_some_and(|p| p.id == id);
        if stopped {
            st.publisher = None;
            st.forget_publisher_media();
            st.offer_all(&stream.name, PlayerItem::PublishStopped);
            tracing::info!(stream = %stream.name, publisher = id, "publish stopped");
        }
        Self::forget_if_idle(&mut streams, stream, &st);
        drop(st);
        drop(streams);
        stream.wake.notify_waiters();
        if stopped {
            self.bump_publishing();
        }
    }
}

impl Stream {
    /// A player's own catch-up dropped frames or disconnected it: add that to the stream's
    /// counters (taken after the player's queue lock is released: the stream's comes first).
    pub(crate) fn report(&self, id: PlayerId, dropped: &DropCounts, kicked: Option<KickReason>) {
        let mut st = lock(&self.state);
        st.dropped.merge(dropped);
        if let Some(reason) = kicked {
            tracing::warn!(stream = %self.name, player = %id, %reason, "player disconnected");
            st.players_kicked += 1;
            st.players.retain(|p| p.id != id);
        }
    }

    fn stats(&self) -> StreamStats {
        let mut st = lock(&self.state);
        st.catch_up(&self.name, u64::MAX);
        StreamStats {
            name: self.name.clone(),
            source: st.publisher.as_ref().map(|p| p.source),
            publishing: st.publisher.is_some(),
            players: st
                .players
                .iter()
                .filter(|p| p.reader_kind == Reader::Player)
                .count(),
            outputs: st
                .players
                .iter()
                .filter(|p| p.reader_kind != Reader::Player)
                .count(),
            saver_frames: st.saver.len(),
            saver_bytes: st.saver.bytes(),
            frames_in: st.frames_in,
            bytes_in: st.bytes_in,
            dropped: st.dropped,
            players_kicked: st.players_kicked,
            video_codec: st.video_codec.map(|c| c.to_string()),
            audio_codec: st.audio_codec.map(|c| c.to_string()),
            uptime_ms: st
                .publisher
                .as_ref()
                .map(|p| p.since.elapsed().as_millis() as u64),
            video_width: st.video_size.map(|s| s.0),
            video_height: st.video_size.map(|s| s.1),
            audio_sample_rate: st.audio_format.map(|f| f.0),
            audio_channels: st.audio_format.map(|f| f.1),
            ingest_dropped: st.ingest_dropped,
        }
    }
}

/// The right to publish one stream. Dropping it unpublishes: players get `PublishStopped` and
/// wait for the next publisher; headers, metadata and saved frames are forgotten.
pub struct PublisherHandle {
    hub: Arc<HubInner>,
    stream: Arc<Stream>,
    id: u64,
}

impl PublisherHandle {
    pub fn stream_name(&self) -> &str {
        &self.stream.name
    }

    /// Hands a frame to the stream: records it if it is a sequence header or `onMetaData`,
    /// saves it for new players, and appends it to the log every player reads (each player
    /// later takes one `Message` clone, never a payload copy). Never blocks; a slow player
    /// loses frames, not the publisher.
    /// Fails only once the hub is shutting down (the publisher should then stop).
    pub fn push(&mut self, mut frame: Frame) -> Result<(), HubError> {
        if self.hub.shut_down.load(Ordering::Relaxed) {
            return Err(HubError::ShutDown {
                stream: self.stream.name.clone(),
            });
        }
        let mut st = lock(&self.stream.state);
        st.frames_in += 1;
        st.pushed_since_break = true;
        frame.position = st.bytes_in;
        st.bytes_in += frame.payload.len() as u64;
        if frame.kind == MediaKind::Data {
            if frame.is_metadata() {
                st.metadata = Some(frame.clone());
            }
        } else {
            let codec_slot = match frame.kind {
                MediaKind::Video => &mut st.video_codec,
                _ => &mut st.audio_codec,
            };
            if frame.sequence_header || codec_slot.is_none() {
                *codec_slot = frame.codec();
            }
            if frame.sequence_header {
                match frame.kind {
                    MediaKind::Video => {
                        st.video_size = frame.avc_picture_size();
                        st.video_header = Some(frame.clone());
                    }
                    _ => {
                        st.audio_format = frame.aac_format();
                        st.audio_header = Some(frame.clone());
                    }
                }
            }
        }
        st.saver.push(&frame);
        st.last_timestamp = frame.timestamp;
        let name = &self.stream.name;
        st.offer_all(name, PlayerItem::Frame(frame));
        drop(st);
        self.stream.wake.notify_waiters();
        Ok(())
    }
}

impl PublisherHandle {
    /// Counts a frame the source could not store (page budget) and so never pushed, for the
    /// stream's statistics.
    pub fn count_ingest_drop(&mut self) {
        lock(&self.stream.state).ingest_dropped += 1;
    }

    /// The source lost its input and will resume later on the same handle (an RTSP camera
    /// reconnecting): the saved GOP is forgotten so that players arriving meanwhile do not
    /// start on stale frames; they wait for the next keyframe. Headers stay until replaced.
    /// Readers get [`PlayerItem::Discontinuity`].
    /// Readers get it once however many times the source fails before it sends again.
    pub fn discontinuity(&mut self) {
        let mut st = lock(&self.stream.state);
        st.saver.clear();
        if !std::mem::take(&mut st.pushed_since_break) {
            return;
        }
        st.offer_all(&self.stream.name, PlayerItem::Discontinuity);
        drop(st);
        self.stream.wake.notify_waiters();
    }
}

impl Drop for PublisherHandle {
    fn drop(&mut self) {
        self.hub.unpublish(&self.stream, self.id);
    }
}

impl std::fmt::Debug for PublisherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherHandle")
            .field("stream", &self.stream.name)
            .field("id", &self.id)
            .finish()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("streams", &lock(&self.inner.streams).len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
