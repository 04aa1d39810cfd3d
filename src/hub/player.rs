//! A player's side of the hub: its bounded queue with the drop policy, its timestamp rebasing,
//! and the [`PlayerSubscription`] a connection reads from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::log::LogCursor;
use super::{HubInner, SourceKind, Stream};
use crate::media::{Frame, MediaKind};

/// Bounds of each player's queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlayerQueueConfig {
    /// Queued payload bytes above which video is dropped: disposable frames first, then inter
    /// frames (the player then resynchronises at the next keyframe). Default 2 MiB (about 5 s
    /// at 3 Mbit/s).
    pub soft_bytes: usize,
    /// Queued payload bytes above which audio is dropped too (oldest first), and, if keyframes,
    /// headers and metadata alone still exceed it, the player is disconnected. Default 8 MiB.
    pub hard_bytes: usize,
}

impl Default for PlayerQueueConfig {
    fn default() -> Self {
        PlayerQueueConfig {
            soft_bytes: 2 << 20,
            hard_bytes: 8 << 20,
        }
    }
}

/// A player's id, unique within a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PlayerId(pub u64);

impl std::fmt::Display for PlayerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a player reads, in order.
#[derive(Debug, Clone)]
pub enum PlayerItem {
    /// A publisher started on the stream (also the first item when one is already there).
    /// A republish may bring other codecs: its sequence headers follow.
    PublishStarted { source: SourceKind },
    /// A frame, its timestamp rebased for this player (never going backwards).
    Frame(Frame),
    /// The publisher left. The player stays subscribed and waits for the next one.
    PublishStopped,
    /// The source lost its input and resumed on the same publish (a camera reconnected):
    /// timestamps run on without a jump, but wall-clock time did not stand still. Players
    /// play on; outputs that keep wall-clock time (the recorder) start afresh.
    Discontinuity,
    /// The hub disconnected this player; `next` returns `None` after this.
    Kicked(KickReason),
}

/// Why the hub disconnected a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KickReason {
    #[error("player too slow: {queued_bytes} bytes queued (with the next frame) over the hard bound of {hard_bytes}")]
    QueueFull {
        queued_bytes: usize,
        hard_bytes: usize,
    },
    /// In paged storage the frames a player keeps (audio, keyframes) keep their pages alive,
    /// with the bytes of the frames dropped between them: this player pins more of the
    /// stream's pages than its hard bound.
    #[error("player too slow: its queue pins {pinned_bytes} bytes of the stream's pages, over the hard bound of {hard_bytes}")]
    PagesPinned {
        pinned_bytes: usize,
        hard_bytes: usize,
    },
    #[error("disconnected by request")]
    Requested,
}

/// Why a frame was not delivered to a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A disposable (unreferenced) video frame, dropped over the soft bound.
    Disposable,
    /// An inter video frame dropped over the soft bound (the player resynchronises).
    Inter,
    /// A video frame skipped while waiting for a keyframe to resynchronise or start.
    Resync,
    /// An audio frame dropped over the hard bound.
    Audio,
}

/// Frames dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    pub disposable: u64,
    pub inter: u64,
    pub resync: u64,
    pub audio: u64,
}

impl DropCounts {
    pub(crate) fn add(&mut self, reason: DropReason, n: u64) {
        match reason {
            DropReason::Disposable => self.disposable += n,
            DropReason::Inter => self.inter += n,
            DropReason::Resync => self.resync += n,
            DropReason::Audio => self.audio += n,
        }
    }

    pub(crate) fn merge(&mut self, other: &DropCounts) {
        self.disposable += other.disposable;
        self.inter += other.inter;
        self.resync += other.resync;
        self.audio += other.audio;
    }

    pub fn total(&self) -> u64 {
        self.disposable + self.inter + self.resync + self.audio
    }
}

/// A player's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlayerStats {
    pub id: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub dropped: DropCounts,
    pub queued_items: usize,
    pub queued_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoSync {
    /// Video frames other than sequence headers are skipped until a keyframe.
    WaitKeyframe,
    Synced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueState {
    Open,
    /// Disconnected: the queue holds only the `Kicked` item, then ends.
    Kicked,
    /// Hub shut down: what is queued is delivered, then the queue ends.
    Closed,
}

/// What happened to an offered item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    Queued,
    /// The offered frame was not queued (evictions of queued frames are counted separately).
    Dropped(DropReason),
    /// The player was disconnected by this offer.
    Kicked(KickReason),
    /// The queue no longer takes items.
    Ignored,
}

/// What a queued entry is, for the drop policy. Disposable video frames count as
/// `Disposable`, not `Inter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Disposable,
    Inter,
    Audio,
    /// Keyframes, sequence headers, metadata, markers: only a kick removes them.
    Kept,
}

impl Class {
    fn of(f: &Frame) -> Class {
        match f.kind {
            _ if f.sequence_header => Class::Kept,
            MediaKind::Video if f.disposable => Class::Disposable,
            MediaKind::Video if !f.keyframe => Class::Inter,
            MediaKind::Audio => Class::Audio,
            _ => Class::Kept,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Entry capacity above which a drained queue gives its memory back.
const SHRINK_ABOVE: usize = 64;

/// The queue cost of a `PublishStarted`/`PublishStopped` marker.
const MARKER_BYTES: usize = 64;

struct Entry {
    item: PlayerItem,
    bytes: usize,
    class: Class,
}

/// The bounded queue and drop policy, without any synchronisation (sans-IO).
///
/// Contract: [`offer`](Self::offer) never blocks and never lets the queued bytes exceed
/// `hard_bytes` (plus one frame larger than the bound on its own, which kicks instead).
pub(crate) struct PlayerQueue {
    config: PlayerQueueConfig,
    items: VecDeque<Entry>,
    bytes: usize,
    /// Queued entries per [`Class`], so eviction scans only when there is something to evict.
    counts: [usize; 4],
    video: VideoSync,
    state: QueueState,
    stats: PlayerStats,
}

impl PlayerQueue {
    pub(crate) fn new(id: PlayerId, config: PlayerQueueConfig) -> Self {
        PlayerQueue {
            config,
            items: VecDeque::new(),
            bytes: 0,
            counts: [0; 4],
            video: VideoSync::WaitKeyframe,
            state: QueueState::Open,
            stats: PlayerStats {
                id: id.0,
                ..PlayerStats::default()
            },
        }
    }

    /// Offers an item; `dropped` accumulates every frame this call dropped (the offered one
    /// and evicted queued ones), for the stream's counters.
    pub(crate) fn offer(&mut self, item: PlayerItem, dropped: &mut DropCounts) -> Offer {
        if self.state != QueueState::Open {
            return Offer::Ignored;
        }
        let frame = match item {
            PlayerItem::Frame(f) => f,
            marker => {
                if let PlayerItem::PublishStarted { .. } = marker {
                    self.video = VideoSync::WaitKeyframe;
                }
                // Markers cost a nominal size, so a flapping publisher cannot pile them up
                // without bound in the queue of a player that does not read.
                if self.bytes + MARKER_BYTES > self.config.hard_bytes {
                    let reason = KickReason::QueueFull {
                        queued_bytes: self.bytes + MARKER_BYTES,
                        hard_bytes: self.config.hard_bytes,
                    };
                    self.kick(reason);
                    return Offer::Kicked(reason);
                }
                self.bytes += MARKER_BYTES;
                self.push_entry(Entry {
                    item: marker,
                    bytes: MARKER_BYTES,
                    class: Class::Kept,
                });
                return Offer::Queued;
            }
        };
        let essential = frame.sequence_header || frame.kind == MediaKind::Data;
        let is_video = frame.kind == MediaKind::Video && !essential;
        let is_inter = is_video && !frame.keyframe;
        let is_audio = frame.kind == MediaKind::Audio && !essential;
        let len = frame.payload.len();

        if is_inter && self.video == VideoSync::WaitKeyframe {
            return self.refuse(DropReason::Resync, dropped);
        }
        if self.bytes + len > self.config.soft_bytes {
            if frame.disposable && is_video {
                return self.refuse(DropReason::Disposable, dropped);
            }
            self.evict(
                Class::Disposable,
                DropReason::Disposable,
                dropped,
                usize::MAX,
            );
        }
        if self.bytes + len > self.config.soft_bytes {
            self.evict(Class::Inter, DropReason::Inter, dropped, usize::MAX);
            self.video = VideoSync::WaitKeyframe;
            if is_inter {
                return self.refuse(DropReason::Inter, dropped);
            }
        }
        if self.bytes + len > self.config.hard_bytes {
            let target = self.config.hard_bytes.saturating_sub(len);
            self.evict(Class::Audio, DropReason::Audio, dropped, target);
            if is_audio && self.bytes + len > self.config.hard_bytes {
                return self.refuse(DropReason::Audio, dropped);
            }
        }
        if self.bytes + len > self.config.hard_bytes {
            let reason = KickReason::QueueFull {
                queued_bytes: self.bytes + len,
                hard_bytes: self.config.hard_bytes,
            };
            self.kick(reason);
            return Offer::Kicked(reason);
        }
        if is_video && frame.keyframe {
            self.video = VideoSync::Synced;
        }
        let class = Class::of(&frame);
        let paged = frame.payload.is_paged();
        self.bytes += len;
        self.push_entry(Entry {
            item: PlayerItem::Frame(frame),
            bytes: len,
            class,
        });
        if paged {
            let pinned = self.pinned_bytes();
            if pinned > self.config.hard_bytes {
                let reason = KickReason::PagesPinned {
                    pinned_bytes: pinned,
                    hard_bytes: self.config.hard_bytes,
                };
                self.kick(reason);
                return Offer::Kicked(reason);
            }
        }
        Offer::Queued
    }

    /// Stream bytes between the oldest and the newest media frame queued (headers and metadata
    /// left out: each pins only its own page). In paged storage this is about what the queue
    /// keeps alive, since a kept frame keeps its whole page; `bytes` counts only what is queued.
    fn pinned_bytes(&self) -> usize {
        // (start, end) of a queued media frame in the stream.
        let media = |e: &Entry| match &e.item {
            PlayerItem::Frame(f) if !f.sequence_header && f.kind != MediaKind::Data => {
                Some((f.position, f.position + f.payload.len() as u64))
            }
            _ => None,
        };
        match (
            self.items.iter().find_map(media),
            self.items.iter().rev().find_map(media),
        ) {
            (Some((first, _)), Some((_, last))) => last.saturating_sub(first) as usize,
            _ => 0,
        }
    }

    fn push_entry(&mut self, e: Entry) {
        self.counts[e.class.index()] += 1;
        self.items.push_back(e);
    }

    fn refuse(&mut self, reason: DropReason, dropped: &mut DropCounts) -> Offer {
        self.stats.dropped.add(reason, 1);
        dropped.add(reason, 1);
        Offer::Dropped(reason)
    }

    /// Removes queued frames of `class`, oldest first, until at most `target` bytes are queued
    /// (`usize::MAX`: every one of them).
    fn evict(&mut self, class: Class, reason: DropReason, dropped: &mut DropCounts, target: usize) {
        if self.counts[class.index()] == 0 {
            return;
        }
        let all = target == usize::MAX;
        let mut n = 0;
        let mut bytes = self.bytes;
        self.items.retain(|e| {
            if e.class != class || (!all && bytes <= target) {
                return true;
            }
            bytes -= e.bytes;
            n += 1;
            false
        });
        self.bytes = bytes;
        self.counts[class.index()] -= n;
        self.stats.dropped.add(reason, n as u64);
        dropped.add(reason, n as u64);
    }

    pub(crate) fn kick(&mut self, reason: KickReason) {
        if self.state == QueueState::Kicked {
            return;
        }
        self.items.clear();
        self.bytes = 0;
        self.counts = [0; 4];
        self.push_entry(Entry {
            item: PlayerItem::Kicked(reason),
            bytes: 0,
            class: Class::Kept,
        });
        self.state = QueueState::Kicked;
    }

    pub(crate) fn close(&mut self) {
        if self.state == QueueState::Open {
            self.state = QueueState::Closed;
        }
    }

    /// The next item, `Ok(None)` if none is queued yet, `Err(())` once the queue has ended.
    pub(crate) fn pop(&mut self) -> Result<Option<PlayerItem>, ()> {
        if self.items.is_empty() && self.items.capacity() > SHRINK_ABOVE {
            // Drained after a burst (the GOP at join): steady state needs a few entries (a
            // streaming player takes 2-5 per tick), and each one kept costs every player.
            self.items.shrink_to(SHRINK_ABOVE / 8);
        }
        match self.items.pop_front() {
            Some(e) => {
                self.bytes -= e.bytes;
                self.counts[e.class.index()] -= 1;
                if let PlayerItem::Frame(f) = &e.item {
                    self.stats.frames_sent += 1;
                    self.stats.bytes_sent += f.payload.len() as u64;
                }
                Ok(Some(e.item))
            }
            None if self.state == QueueState::Open => Ok(None),
            None => Err(()),
        }
    }

    pub(crate) fn stats(&self) -> PlayerStats {
        PlayerStats {
            queued_items: self.items.len(),
            queued_bytes: self.bytes,
            ..self.stats.clone()
        }
    }
}

/// Rewrites a player's timestamps so that each track's never go backwards.
///
/// Monotonic per track (audio, video, data), as RTMP players and FLV muxers require; the
/// tracks may interleave, as publishers' do (an audio frame a few ms behind the last video
/// frame is normal, and transcoded audio comes back later than the video it belongs with).
/// After a `PublishStarted` (republish, possibly with its clock back at 0) the next frame
/// continues at the latest timestamp the player saw on any track. Within one publisher, a
/// track stepping back by more than [`Rebaser::RESET_MS`] is a source clock reset and is
/// rebased the same way; smaller steps back within a track are clamped to its last
/// timestamp. A step forward across 2^32 is forward time (wrap-around).
#[derive(Debug, Default)]
pub(crate) struct Rebaser {
    offset: u32,
    /// The last output per track (audio, video, data).
    last: [Option<u32>; 3],
    /// The latest output on any track, where a rebased timeline continues.
    latest: Option<u32>,
    rebase_next: bool,
}

impl Rebaser {
    pub(crate) const RESET_MS: i32 = 1000;

    pub(crate) fn publish_started(&mut self) {
        self.rebase_next = true;
    }

    pub(crate) fn map(&mut self, kind: MediaKind, ts: u32) -> u32 {
        let track = match kind {
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
            MediaKind::Data => 2,
        };
        let Some(latest) = self.latest else {
            self.rebase_next = false;
            let out = ts.wrapping_add(self.offset);
            self.last[track] = Some(out);
            self.latest = Some(out);
            return out;
        };
        if std::mem::take(&mut self.rebase_next) {
            self.offset = latest.wrapping_sub(ts);
            self.last = [None; 3];
        }
        let mut out = ts.wrapping_add(self.offset);
        if let Some(last) = self.last[track] {
            let step = out.wrapping_sub(last) as i32;
            if step < -Self::RESET_MS {
                self.offset = latest.wrapping_sub(ts);
                self.last = [None; 3];
                out = latest;
            } else if step < 0 {
                out = last;
            }
        }
        self.last[track] = Some(out);
        if (out.wrapping_sub(latest) as i32) > 0 {
            self.latest = Some(out);
        }
        out
    }
}

/// A player's queue and its cursor in the stream's fan-out log, locked together.
///
/// Frames reach the queue lazily: the publisher appends each item once to the stream's log
/// (see [`super::log`]), and whoever next looks at this player — the player itself before it
/// takes items, or the hub for a player that lags or for statistics — offers the queue every
/// log item past the cursor, in order. Every item pushed before a take is offered before it,
/// exactly as if the publisher had offered it to every queue at push time, so the drop policy
/// sees the same sequence of offers and takes and decides the same.
pub(crate) struct PlayerReader {
    pub(crate) queue: PlayerQueue,
    /// `None` once the queue takes no more items (kicked, or closed at shutdown): a player
    /// whose connection has yet to notice must not keep the log's segments alive.
    cursor: Option<LogCursor>,
}

impl PlayerReader {
    /// Offers the queue every log item past the cursor. `dropped` accumulates the frames this
    /// dropped; returns the kick it caused, if any.
    pub(crate) fn catch_up(&mut self, dropped: &mut DropCounts) -> Option<KickReason> {
        let cursor = self.cursor.as_mut()?;
        while let Some(item) = cursor.next() {
            if let Offer::Kicked(reason) = self.queue.offer(item, dropped) {
                self.cursor = None;
                return Some(reason);
            }
        }
        None
    }

    /// The log sequence number of the next item this player has not been offered (`u64::MAX`
    /// once it takes no more).
    pub(crate) fn position(&self) -> u64 {
        self.cursor.as_ref().map_or(u64::MAX, LogCursor::position)
    }

    /// Disconnects the player: it reads `Kicked(reason)`, then nothing.
    pub(crate) fn kick(&mut self, reason: KickReason) {
        self.queue.kick(reason);
        self.cursor = None;
    }

    /// Ends the player's queue after what it holds (hub shutdown; catch it up first).
    pub(crate) fn close(&mut self) {
        self.queue.close();
        self.cursor = None;
    }
}

/// The hub's side of one player, shared between the publisher (catching up a lagging player)
/// and the reader.
/// Who reads a subscription: a player (a viewer), or an output of the server's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Player,
    /// A recorder, a relay, a muxer: not a viewer in the stream's statistics. With
    /// `keeps_source`, it keeps an on-demand source connected as a player would.
    Output {
        keeps_source: bool,
    },
}

impl Reader {
    /// Whether it keeps an on-demand source connected.
    pub fn keeps_source(self) -> bool {
        match self {
            Reader::Player => true,
            Reader::Output { keeps_source } => keeps_source,
        }
    }
}

pub(crate) struct PlayerShared {
    pub(crate) id: PlayerId,
    pub(crate) reader_kind: Reader,
    reader: Mutex<PlayerReader>,
}

impl PlayerShared {
    #[cfg(test)]
    pub(crate) fn new(id: PlayerId, config: PlayerQueueConfig, cursor: LogCursor) -> Self {
        Self::new_for(id, Reader::Player, config, cursor)
    }

    pub(crate) fn new_for(
        id: PlayerId,
        reader_kind: Reader,
        config: PlayerQueueConfig,
        cursor: LogCursor,
    ) -> Self {
        PlayerShared {
            id,
            reader_kind,
            reader: Mutex::new(PlayerReader {
                queue: PlayerQueue::new(id, config),
                cursor: Some(cursor),
            }),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PlayerReader> {
        // A panic while holding the lock leaves the queue consistent enough to read from.
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`PlayerSubscription::try_next`] found.
#[derive(Debug)]
pub enum TryNext {
    Item(PlayerItem),
    /// Nothing queued now; `next().await` would wait.
    Empty,
    /// The subscription ended (hub shut down or player kicked).
    Ended,
}

/// A player's subscription to a stream, from [`Hub::play`](super::Hub::play). Dropping it
/// unsubscribes.
///
/// Contract: read with [`next`](Self::next) (or [`try_next`](Self::try_next) /
/// [`try_take`](Self::try_take) to batch what is ready) as fast as the connection can send; the
/// hub never waits for a player, it drops frames for it (see [`PlayerQueueConfig`]) and finally
/// disconnects it. A reader may let items wait (e.g. until its next write): they wait in its
/// queue under the same bounds.
pub struct PlayerSubscription {
    pub(crate) hub: Arc<HubInner>,
    pub(crate) stream: Arc<Stream>,
    pub(crate) shared: Arc<PlayerShared>,
    pub(crate) rebaser: Rebaser,
}

impl PlayerSubscription {
    pub fn id(&self) -> PlayerId {
        self.shared.id
    }

    pub fn stream_name(&self) -> &str {
        &self.stream.name
    }

    /// The next item: first `PublishStarted`, metadata and sequence headers, then the saved GOP
    /// from its keyframe, then live frames. Waits while nothing is queued, also before any
    /// publisher exists and between publishers. `None` only after the hub shut down (once the
    /// queue is drained) or after a `Kicked` item.
    pub async fn next(&mut self) -> Option<PlayerItem> {
        loop {
            match self.try_next() {
                TryNext::Item(item) => return Some(item),
                TryNext::Ended => return None,
                TryNext::Empty => {}
            }
            // Registered before looking again, so an append in between is not missed.
            let stream = self.stream.clone();
            let notified = stream.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_next() {
                TryNext::Item(item) => return Some(item),
                TryNext::Ended => return None,
                TryNext::Empty => notified.await,
            }
        }
    }

    /// Runs `f` on the queue once it has been offered everything published so far, then adds
    /// what that dropped (and a kick) to the stream's counters.
    fn with_queue<R>(&mut self, f: impl FnOnce(&mut PlayerQueue, &mut Rebaser) -> R) -> R {
        let mut dropped = DropCounts::default();
        let mut r = self.shared.lock();
        let kicked = r.catch_up(&mut dropped);
        let out = f(&mut r.queue, &mut self.rebaser);
        drop(r);
        if kicked.is_some() || dropped.total() > 0 {
            self.stream.report(self.shared.id, &dropped, kicked);
        }
        out
    }

    /// The next item if one is queued, without waiting.
    pub fn try_next(&mut self) -> TryNext {
        self.with_queue(|q, rebaser| match q.pop() {
            Ok(Some(PlayerItem::Frame(mut f))) => {
                f.timestamp = rebaser.map(f.kind, f.timestamp);
                TryNext::Item(PlayerItem::Frame(f))
            }
            Ok(Some(item)) => {
                if let PlayerItem::PublishStarted { .. } = item {
                    rebaser.publish_started();
                }
                TryNext::Item(item)
            }
            Ok(None) => TryNext::Empty,
            Err(()) => TryNext::Ended,
        })
    }

    /// Asks for the queue's lock and state ahead of a `try_take` (see `crate::prefetch`).
    pub fn prefetch(&self) {
        crate::prefetch::prefetch(&*self.shared);
    }

    /// Moves queued items into `out` (appending, in order) until their payload bytes reach
    /// `max_bytes` or the queue is empty: one lock for a whole batch. Returns false once the
    /// subscription has ended (as [`TryNext::Ended`]) and nothing more was taken.
    pub fn try_take(&mut self, out: &mut Vec<PlayerItem>, max_bytes: usize) -> bool {
        let before = out.len();
        self.with_queue(|q, rebaser| {
            let mut taken = 0;
            while taken < max_bytes {
                match q.pop() {
                    Ok(Some(item)) => {
                        let item = match item {
                            PlayerItem::Frame(mut f) => {
                                taken += f.payload.len();
                                f.timestamp = rebaser.map(f.kind, f.timestamp);
                                PlayerItem::Frame(f)
                            }
                            PlayerItem::PublishStarted { .. } => {
                                rebaser.publish_started();
                                item
                            }
                            other => other,
                        };
                        out.push(item);
                    }
                    Ok(None) => break,
                    Err(()) => return out.len() > before,
                }
            }
            true
        })
    }

    pub fn stats(&self) -> PlayerStats {
        self.shared.lock().queue.stats()
    }

    /// Whether the hub disconnected this player, without taking anything from its queue: for
    /// a connection whose socket is too full to take more items. (The queue is offered what
    /// was published meanwhile first, which may be what disconnects it.)
    pub fn is_kicked(&mut self) -> bool {
        self.with_queue(|q, _| q.state == QueueState::Kicked)
    }
}

impl Drop for PlayerSubscription {
    fn drop(&mut self) {
        self.hub.remove_player(&self.stream, self.shared.id);
    }
}

impl std::fmt::Debug for PlayerSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerSubscription")
            .field("stream", &self.stream.name)
            .field("id", &self.shared.id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::{PagePool, PoolConfig};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Key(usize),
        Inter(usize),
        Disposable(usize),
        Audio(usize),
        Header,
        Republish,
        Pop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (100..20_000usize).prop_map(Op::Key),
            (10..5_000usize).prop_map(Op::Inter),
            (10..2_000usize).prop_map(Op::Disposable),
            (10..500usize).prop_map(Op::Audio),
            Just(Op::Header),
            Just(Op::Republish),
            (0..20usize).prop_map(Op::Pop),
        ]
    }

    proptest! {
        /// Whatever a publisher sends and however slowly the player reads: the queue stays
        /// under its hard bound, every video frame delivered has its reference chain back to
        /// a delivered keyframe, and sequence headers are never dropped.
        #[test]
        fn queue_invariants(ops in proptest::collection::vec(op(), 1..400)) {
            let pool = PagePool::new(PoolConfig::default());
            let mut w = pool.writer("p", 1 << 30);
            let config = PlayerQueueConfig { soft_bytes: 30_000, hard_bytes: 80_000 };
            let mut q = PlayerQueue::new(PlayerId(1), config.clone());
            let mut dropped = DropCounts::default();
            let mut next_id = 0u32;
            // id -> the previous reference frame it needs (None after a keyframe)
            let mut needs: std::collections::HashMap<u32, Option<u32>> = Default::default();
            let mut last_ref: Option<u32> = None;
            let (mut headers_in, mut headers_out) = (0, 0);
            let mut last_delivered_ref: Option<u32> = None;
            let mut kicked = false;
            for op in ops {
                let frame = |kind, key: bool, disp: bool, header: bool, size: usize, id: u32, w: &mut crate::pages::StreamWriter| {
                    let mut body = vec![0u8; size.max(4)];
                    body[..4].copy_from_slice(&id.to_be_bytes());
                    Frame { kind, timestamp: 0, keyframe: key, sequence_header: header, disposable: disp, payload: w.write(&[&body]).unwrap(), position: 0 }
                };
                let offered = match op {
                    Op::Pop(n) => {
                        for _ in 0..n {
                            match q.pop() {
                                Ok(Some(PlayerItem::Frame(f))) => {
                                    if f.sequence_header { headers_out += 1; continue; }
                                    if f.kind != MediaKind::Video { continue; }
                                    let b = f.payload.to_vec();
                                    let id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                                    if !f.keyframe {
                                        prop_assert_eq!(needs[&id], last_delivered_ref, "frame {} without its reference", id);
                                    }
                                    if !f.disposable { last_delivered_ref = Some(id); }
                                }
                                Ok(Some(PlayerItem::Kicked(_))) => kicked = true,
                                Ok(Some(PlayerItem::PublishStarted { .. })) => last_delivered_ref = None,
                                _ => {}
                            }
                        }
                        continue;
                    }
                    Op::Republish => {
                        last_ref = None;
                        PlayerItem::PublishStarted { source: SourceKind::Rtmp }
                    }
                    Op::Header => {
                        headers_in += 1;
                        PlayerItem::Frame(frame(MediaKind::Video, false, false, true, 30, u32::MAX, &mut w))
                    }
                    Op::Audio(n) => PlayerItem::Frame(frame(MediaKind::Audio, false, false, false, n, u32::MAX, &mut w)),
                    Op::Key(n) | Op::Inter(n) | Op::Disposable(n) => {
                        let key = matches!(op, Op::Key(_));
                        let disp = matches!(op, Op::Disposable(_));
                        let id = next_id;
                        next_id += 1;
                        if key { last_ref = None; }
                        needs.insert(id, last_ref);
                        if !disp { last_ref = Some(id); }
                        PlayerItem::Frame(frame(MediaKind::Video, key, disp, false, n, id, &mut w))
                    }
                };
                if let Offer::Kicked(_) = q.offer(offered, &mut dropped) {
                    kicked = true;
                }
                if !kicked {
                    prop_assert!(q.bytes <= config.hard_bytes);
                }
            }
            if !kicked {
                while let Ok(Some(item)) = q.pop() {
                    if let PlayerItem::Frame(f) = item { if f.sequence_header { headers_out += 1; } }
                }
                prop_assert_eq!(headers_in, headers_out, "sequence headers are never dropped");
            }
        }
    }

    fn same_item(a: &PlayerItem, b: &PlayerItem) -> bool {
        match (a, b) {
            (PlayerItem::Frame(a), PlayerItem::Frame(b)) => {
                a.payload.ptr_eq(&b.payload) && a.timestamp == b.timestamp
            }
            (PlayerItem::PublishStarted { .. }, PlayerItem::PublishStarted { .. })
            | (PlayerItem::PublishStopped, PlayerItem::PublishStopped) => true,
            (PlayerItem::Kicked(a), PlayerItem::Kicked(b)) => a == b,
            _ => false,
        }
    }

    proptest! {
        /// The lazy fan-out decides as the eager one: a player whose queue is offered the
        /// stream's log only when it takes items (or when the hub catches it up, at any moment)
        /// gets the same items, drops the same frames and is kicked for the same reason at the
        /// same point as a queue offered every item at push time. This is what lets the
        /// publisher append once instead of offering to every queue.
        #[test]
        fn log_reader_decides_as_eager_offers(
            ops in proptest::collection::vec(op(), 1..400),
            catch_ups in proptest::collection::vec(any::<bool>(), 400),
        ) {
            let pool = PagePool::new(PoolConfig::default());
            let mut w = pool.writer("p", 1 << 30);
            let config = PlayerQueueConfig { soft_bytes: 30_000, hard_bytes: 80_000 };
            let mut eager = PlayerQueue::new(PlayerId(1), config.clone());
            let mut eager_dropped = DropCounts::default();
            let mut log = super::super::log::LogWriter::new();
            let lazy = PlayerShared::new(PlayerId(1), config, log.cursor());
            let mut lazy_dropped = DropCounts::default();
            let (mut eager_kick, mut lazy_kick) = (None, None);
            let mut ts = 0;
            for (op, catch_up) in ops.into_iter().zip(catch_ups) {
                ts += 10;
                let frame = |kind, key: bool, disp: bool, header: bool, size: usize, w: &mut crate::pages::StreamWriter| {
                    Frame { kind, timestamp: ts, keyframe: key, sequence_header: header, disposable: disp, payload: w.write(&[&vec![0u8; size]]).unwrap(), position: ts as u64 * 1000 }
                };
                let item = match op {
                    Op::Pop(n) => {
                        let mut r = lazy.lock();
                        if let Some(k) = r.catch_up(&mut lazy_dropped) { lazy_kick = Some(k); }
                        for _ in 0..n {
                            let (a, b) = (eager.pop(), r.queue.pop());
                            match (&a, &b) {
                                (Ok(Some(a)), Ok(Some(b))) => prop_assert!(same_item(a, b), "{:?} vs {:?}", a, b),
                                (Ok(None), Ok(None)) | (Err(()), Err(())) => {}
                                _ => prop_assert!(false, "{:?} vs {:?}", a, b),
                            }
                        }
                        continue;
                    }
                    Op::Republish => PlayerItem::PublishStarted { source: SourceKind::Rtmp },
                    Op::Header => PlayerItem::Frame(frame(MediaKind::Video, false, false, true, 30, &mut w)),
                    Op::Audio(n) => PlayerItem::Frame(frame(MediaKind::Audio, false, false, false, n, &mut w)),
                    Op::Key(n) => PlayerItem::Frame(frame(MediaKind::Video, true, false, false, n, &mut w)),
                    Op::Inter(n) => PlayerItem::Frame(frame(MediaKind::Video, false, false, false, n, &mut w)),
                    Op::Disposable(n) => PlayerItem::Frame(frame(MediaKind::Video, false, true, false, n, &mut w)),
                };
                if let Offer::Kicked(k) = eager.offer(item.clone(), &mut eager_dropped) {
                    eager_kick = Some(k);
                }
                log.push(item);
                if catch_up {
                    if let Some(k) = lazy.lock().catch_up(&mut lazy_dropped) { lazy_kick = Some(k); }
                }
            }
            let mut r = lazy.lock();
            if let Some(k) = r.catch_up(&mut lazy_dropped) { lazy_kick = Some(k); }
            prop_assert_eq!(eager_kick, lazy_kick);
            prop_assert_eq!(eager_dropped, lazy_dropped);
            prop_assert_eq!(eager.stats(), r.queue.stats());
            loop {
                let (a, b) = (eager.pop(), r.queue.pop());
                match (&a, &b) {
                    (Ok(Some(a)), Ok(Some(b))) => prop_assert!(same_item(a, b)),
                    (Ok(None), Ok(None)) | (Err(()), Err(())) => break,
                    _ => prop_assert!(false, "{:?} vs {:?}", a, b),
                }
            }
        }
    }

    #[test]
    fn rebaser_is_monotonic_across_reset_wrap_and_jitter() {
        use MediaKind::Video;
        let mut r = Rebaser::default();
        assert_eq!(r.map(Video, 5000), 5000);
        assert_eq!(r.map(Video, 4990), 5000, "small step back is clamped");
        assert_eq!(r.map(Video, 5040), 5040);
        assert_eq!(r.map(Video, 0), 5040, "clock reset is rebased");
        assert_eq!(r.map(Video, 40), 5080);
        r.publish_started();
        assert_eq!(
            r.map(Video, 100_000),
            5080,
            "republish continues at the last timestamp"
        );
        assert_eq!(r.map(Video, 100_040), 5120);

        let mut r = Rebaser::default();
        assert_eq!(r.map(Video, u32::MAX - 10), u32::MAX - 10);
        assert_eq!(r.map(Video, 30), 30, "wrap-around is forward time");
    }

    #[test]
    fn rebaser_lets_tracks_interleave() {
        use MediaKind::{Audio, Video};
        let mut r = Rebaser::default();
        assert_eq!(r.map(Video, 1000), 1000);
        assert_eq!(r.map(Video, 1040), 1040);
        // Audio a little behind the video (as transcoded audio arrives) keeps its times.
        assert_eq!(r.map(Audio, 1000), 1000);
        assert_eq!(r.map(Audio, 1021), 1021);
        assert_eq!(r.map(Audio, 1043), 1043);
        assert_eq!(r.map(Audio, 1030), 1043, "within a track, never backwards");
        // A republish continues every track after the latest time seen on any.
        r.publish_started();
        assert_eq!(r.map(Audio, 0), 1043);
        assert_eq!(r.map(Video, 0), 1043);
        assert_eq!(r.map(Video, 40), 1083);
    }
}
