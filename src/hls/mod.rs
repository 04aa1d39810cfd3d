//! Low-latency HLS: a muxer per watched stream, started by the first request and stopped
//! `idle_s` after the last, serving every viewer from the same bytes.
//!
//! - [`config`]: the `[hls]` keys.
//! - [`playlist`]: the sans-IO state (segments, parts, init segments) and the LL-HLS playlist.
//! - here: the muxer task (a hub output feeding [`crate::fmp4::Fragmenter`] on one continuous
//!   timeline) and the registry of muxers the HTTP layer asks.
//!
//! The muxer subscribes like a player, so it starts with the frame saver's GOP: the first
//! playlist has media at once. Memory per stream is its kept segments (`segments`, and at most
//! `max_stream_bytes`), shown in the metrics; an idle muxer and its memory are gone.

pub mod config;
pub mod playlist;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::HlsConfig;
use playlist::HlsState;

use crate::fmp4::{Fragmenter, FragmenterConfig, Timeline};
use crate::hub::{Hub, PlayerItem, PlayerQueueConfig};

/// Most muxers at once: a request for a stream starts one, so this bounds what clients can
/// make the server hold.
pub const MAX_MUXERS: usize = 256;
/// A viewer is a client address that asked for a playlist within this long.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(10);
const QUEUE: PlayerQueueConfig = PlayerQueueConfig {
    soft_bytes: 8 << 20,
    hard_bytes: 32 << 20,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Request and byte counters, for the metrics.
#[derive(Debug, Default)]
pub struct HlsCounters {
    pub playlist_requests: AtomicU64,
    pub blocking_requests: AtomicU64,
    pub part_requests: AtomicU64,
    pub segment_requests: AtomicU64,
    pub init_requests: AtomicU64,
    pub bytes_served: AtomicU64,
    /// Blocking requests waiting now.
    pub blocking_waiting: AtomicUsize,
    /// Blocking requests refused (over the bounds) or that timed out.
    pub blocking_refused: AtomicU64,
    pub blocking_timed_out: AtomicU64,
    pub muxers_started: AtomicU64,
}

/// One stream's muxer, as requests see it.
#[derive(Debug)]
pub struct HlsStream {
    pub name: String,
    state: Mutex<HlsState>,
    changed: tokio::sync::Notify,
    last_request: Mutex<Instant>,
    viewers: Mutex<HashMap<SocketAddr, Instant>>,
    /// Blocking requests of this stream waiting now.
    pub blocking: AtomicUsize,
    stopped: AtomicBool,
}

impl HlsStream {
    pub fn state(&self) -> MutexGuard<'_, HlsState> {
        lock(&self.state)
    }

    /// A request came: the muxer stays; `peer` (if known) is a viewer for a while.
    pub fn touch(&self, peer: Option<SocketAddr>) {
        let now = Instant::now();
        *lock(&self.last_request) = now;
        if let Some(p) = peer {
            let mut v = lock(&self.viewers);
            if v.len() < 4096 || v.contains_key(&p) {
                v.insert(p, now);
            }
            v.retain(|_, t| now.duration_since(*t) < VIEWER_WINDOW);
        }
    }

    pub fn viewers(&self) -> usize {
        let now = Instant::now();
        lock(&self.viewers)
            .values()
            .filter(|t| now.duration_since(**t) < VIEWER_WINDOW)
            .count()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Waits until `ready` holds for the state (true), the timeout passes or the muxer stops
    /// (false).
    pub async fn wait_for(&self, timeout: Duration, ready: impl Fn(&HlsState) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready(&self.state()) {
                return true;
            }
            if self.is_stopped() {
                return false;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return ready(&self.state());
            }
        }
    }
}

/// A muxer's figures, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MuxerStats {
    pub stream: String,
    pub bytes: usize,
    pub viewers: usize,
    pub segments: usize,
    pub blocking: usize,
}

/// Every running muxer. Cheap to clone.
#[derive(Clone)]
pub struct Hls {
    inner: Arc<HlsInner>,
}

struct HlsInner {
    config: HlsConfig,
    hub: Hub,
    /// Streams the server makes itself (cameras, renditions, files): a request may start
    /// them (on-demand sources connect for the muxer as for a player).
    configured: std::collections::HashSet<String>,
    shutdown: CancellationToken,
    streams: Mutex<HashMap<String, Arc<HlsStream>>>,
    counters: HlsCounters,
}

impl std::fmt::Debug for Hls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hls")
            .field("muxers", &lock(&self.inner.streams).len())
            .finish()
    }
}

impl Hls {
    pub fn new(
        config: HlsConfig,
        hub: Hub,
        configured: std::collections::HashSet<String>,
        shutdown: CancellationToken,
    ) -> Hls {
        Hls {
            inner: Arc::new(HlsInner {
                config,
                hub,
                configured,
                shutdown,
                streams: Mutex::new(HashMap::new()),
                counters: HlsCounters::default(),
            }),
        }
    }

    pub fn config(&self) -> &HlsConfig {
        &self.inner.config
    }

    /// Whether a request for `name` may start a muxer: it publishes now, the server makes it
    /// (a camera, a rendition, a file), or a muxer already runs for it.
    pub fn knows(&self, name: &str) -> bool {
        self.inner.configured.contains(name)
            || self
                .inner
                .hub
                .stream_stats(name)
                .is_some_and(|s| s.publishing)
            || lock(&self.inner.streams).contains_key(name)
    }

    pub fn counters(&self) -> &HlsCounters {
        &self.inner.counters
    }

    /// The muxer of `name`, started if it is not running (`None` at the muxer bound, or when
    /// shutting down).
    pub fn stream(&self, name: &str) -> Option<Arc<HlsStream>> {
        if self.inner.shutdown.is_cancelled() {
            return None;
        }
        let mut streams = lock(&self.inner.streams);
        if let Some(s) = streams.get(name) {
            if !s.is_stopped() {
                return Some(s.clone());
            }
        }
        if streams.len() >= MAX_MUXERS {
            warn!(stream = %name, muxers = streams.len(), "HLS muxer bound reached; not starting another");
            return None;
        }
        let epoch = crate::record::utc::from_system(SystemTime::now()).max(0) as u64;
        let c = &self.inner.config;
        let s = Arc::new(HlsStream {
            name: name.to_owned(),
            state: Mutex::new(HlsState::new(
                epoch,
                c.part_ms,
                c.segments,
                c.max_stream_bytes,
            )),
            changed: tokio::sync::Notify::new(),
            last_request: Mutex::new(Instant::now()),
            viewers: Mutex::new(HashMap::new()),
            blocking: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        streams.insert(name.to_owned(), s.clone());
        self.inner
            .counters
            .muxers_started
            .fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run(s.clone(), self.inner.clone()));
        Some(s)
    }

    pub fn stats(&self) -> Vec<MuxerStats> {
        let streams: Vec<Arc<HlsStream>> = lock(&self.inner.streams).values().cloned().collect();
        let mut out: Vec<MuxerStats> = streams
            .iter()
            .map(|s| {
                let st = s.state();
                MuxerStats {
                    stream: s.name.clone(),
                    bytes: st.bytes(),
                    viewers: s.viewers(),
                    segments: st.segments.len(),
                    blocking: s.blocking.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
    }
}

/// The muxer task: until idle, shut down, or dropped by the hub.
async fn run(stream: Arc<HlsStream>, inner: Arc<HlsInner>) {
    let c = &inner.config;
    let idle = Duration::from_secs_f64(c.idle_s);
    let name = stream.name.clone();
    info!(stream = %name, "HLS muxer started");
    match inner.hub.subscribe_output(&name, true, QUEUE) {
        Ok(mut sub) => {
            let mut fragmenter = Fragmenter::new(FragmenterConfig {
                part_ms: c.part_ms,
                segment_ms: (c.segment_s * 1000.0) as u64,
                timeline: Timeline::Continuous,
                max_part_bytes: 8 << 20,
            });
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    item = sub.next() => match item {
                        Some(PlayerItem::Frame(f)) => {
                            fragmenter.push(&f);
                            drain(&stream, &mut fragmenter, false);
                        }
                        Some(PlayerItem::PublishStarted { .. } | PlayerItem::PublishStopped | PlayerItem::Discontinuity) => {
                            fragmenter.end_segment();
                            drain(&stream, &mut fragmenter, true);
                        }
                        Some(PlayerItem::Kicked(reason)) => {
                            warn!(stream = %name, %reason, "HLS muxer dropped by the hub; the next request starts another");
                            break;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        if lock(&stream.last_request).elapsed() >= idle {
                            info!(stream = %name, idle_s = c.idle_s, "HLS muxer idle; stopped");
                            break;
                        }
                    }
                    _ = inner.shutdown.cancelled() => break,
                }
            }
        }
        Err(e) => warn!(stream = %name, error = %e, "HLS muxer cannot subscribe"),
    }
    stream.stopped.store(true, Ordering::Relaxed);
    stream.changed.notify_waiters();
    let mut streams = lock(&inner.streams);
    if streams.get(&name).is_some_and(|s| Arc::ptr_eq(s, &stream)) {
        streams.remove(&name);
    }
}

fn drain(stream: &HlsStream, fragmenter: &mut Fragmenter, broke: bool) {
    let mut st = stream.state();
    let before = st.version;
    while let Some(ev) = fragmenter.pull() {
        st.apply(ev);
    }
    if broke {
        st.discontinuity();
    }
    let changed = st.version != before;
    drop(st);
    if changed {
        stream.changed.notify_waiters();
    }
}
