//! The API's view of the server: one [`Snapshot`] taken per request from the hub, the page
//! pool, the RTMP counters, the status board and the rate meter, rendered as JSON
//! (`/api/streams`) or Prometheus text (`/metrics`), so both always say the same thing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::rates::{RateKey, RateMeter};
use crate::hub::{DropCounts, PlayerStats, SourceKind, StreamStats as HubStream};
use crate::pages::{PoolStats, StreamStats as PageStream};
use crate::record::library::EntryStatus;
use crate::rtmp::server::Counters;
use crate::status::{CameraStatus, TranscoderStatus};

/// One stream, as `/api/streams/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamView {
    pub name: String,
    /// `publisher` (RTMP), `camera` (RTSP), `file` (looped file) or `rendition` (made by a
    /// transcoder); `null` while nothing publishes (a configured camera stays `camera`).
    pub source: Option<&'static str>,
    pub publishing: bool,
    /// Seconds since the current publisher started; `null` while nobody publishes.
    pub uptime_s: Option<f64>,
    pub video: Option<VideoView>,
    pub audio: Option<AudioView>,
    /// Payload bits per second in, over the last 5 s; `null` until measured.
    pub bitrate_in_bps: Option<u64>,
    /// Frames and payload bytes received since the stream appeared.
    pub frames_in: u64,
    pub bytes_in: u64,
    pub players: Vec<PlayerView>,
    pub saver: SaverView,
    pub pages: PagesView,
    pub dropped: DroppedView,
    /// Players the hub disconnected (too slow, or on request).
    pub players_kicked: u64,
    /// Transcoders working for this stream (none yet: the transcoding issues fill this).
    pub transcoders: Vec<TranscoderStatus>,
    /// The camera publishing this stream; `null` for other sources.
    pub camera: Option<CameraStatus>,
    /// Whether a `[[record]]` entry is writing it now.
    pub recording: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoView {
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudioView {
    pub codec: String,
    pub sample_rate: Option<u32>,
    pub channels: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayerView {
    pub id: u64,
    /// Payload bits per second out, over the last 5 s; `null` until measured.
    pub bitrate_out_bps: Option<u64>,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// What waits in its hub queue.
    pub queued_frames: usize,
    pub queued_bytes: usize,
    pub dropped: DropCounts,
}

/// The frame saver (GOP cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SaverView {
    pub frames: usize,
    pub bytes: usize,
}

/// The stream's pages: `held` is what it costs (pages charged to it), `live` the payload in
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PagesView {
    pub held_bytes: u64,
    pub live_bytes: u64,
    pub budget_bytes: u64,
}

/// Frames dropped, by reason: for players over their queue bounds (summed over every player
/// the stream had), and at ingest (the page budget was full).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DroppedView {
    pub disposable: u64,
    pub inter: u64,
    pub resync: u64,
    pub audio: u64,
    pub ingest: u64,
}

impl DroppedView {
    /// (reason, count) pairs, for the metrics.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("disposable", self.disposable),
            ("inter", self.inter),
            ("resync", self.resync),
            ("audio", self.audio),
            ("ingest", self.ingest),
        ]
    }
}

/// Process-wide totals, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub pages: PoolStats,
    pub rtmp: RtmpTotals,
    pub http_connections: u64,
    pub transcoder_dropped_frames: u64,
    pub uptime_s: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RtmpTotals {
    /// Open connections, and how many of them publish or play.
    pub connections: u64,
    pub publishers: u64,
    pub players: u64,
    pub refused: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl RtmpTotals {
    pub fn read(c: &Counters) -> RtmpTotals {
        // Statistics only: Relaxed, and a reader may see counters from slightly different
        // moments.
        RtmpTotals {
            connections: c.connections.load(Ordering::Relaxed),
            publishers: c.publishers.load(Ordering::Relaxed),
            players: c.players.load(Ordering::Relaxed),
            refused: c.connections_refused.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// What the API renders.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub streams: Vec<StreamView>,
    pub totals: Totals,
    /// Each `[[record]]` entry.
    pub records: Vec<EntryStatus>,
    /// Each running HLS muxer, and the HLS counters (`None` with HLS off).
    pub hls: Vec<crate::hls::MuxerStats>,
    pub hls_counters: Option<HlsTotals>,
}

/// HLS request counters, read once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HlsTotals {
    pub playlist_requests: u64,
    pub blocking_requests: u64,
    pub part_requests: u64,
    pub segment_requests: u64,
    pub init_requests: u64,
    pub bytes_served: u64,
    pub blocking_waiting: u64,
    pub blocking_refused: u64,
    pub blocking_timed_out: u64,
    pub muxers_started: u64,
}

impl HlsTotals {
    pub fn read(c: &crate::hls::HlsCounters) -> HlsTotals {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        HlsTotals {
            playlist_requests: l(&c.playlist_requests),
            blocking_requests: l(&c.blocking_requests),
            part_requests: l(&c.part_requests),
            segment_requests: l(&c.segment_requests),
            init_requests: l(&c.init_requests),
            bytes_served: l(&c.bytes_served),
            blocking_waiting: c.blocking_waiting.load(Ordering::Relaxed) as u64,
            blocking_refused: l(&c.blocking_refused),
            blocking_timed_out: l(&c.blocking_timed_out),
            muxers_started: l(&c.muxers_started),
        }
    }
}

/// What a snapshot is made of, read from the live server by the caller.
pub struct Inputs {
    pub hub: Vec<(HubStream, Vec<PlayerStats>)>,
    pub pages: Vec<PageStream>,
    pub pool: PoolStats,
    pub cameras: BTreeMap<String, CameraStatus>,
    pub transcoders: BTreeMap<String, Vec<TranscoderStatus>>,
    pub rtmp: RtmpTotals,
    pub http_connections: u64,
    pub uptime_s: f64,
    pub records: Vec<EntryStatus>,
    pub hls: Vec<crate::hls::MuxerStats>,
    pub hls_counters: Option<HlsTotals>,
}

/// The API's name for a source kind.
pub fn source_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Rtmp => "publisher",
        SourceKind::Rtsp => "camera",
        SourceKind::File => "file",
        SourceKind::Rendition => "rendition",
    }
}

fn bps(bytes_per_s: Option<f64>) -> Option<u64> {
    bytes_per_s.map(|b| (b * 8.0).round() as u64)
}

impl Snapshot {
    /// Joins the inputs by stream name: every stream the hub, the page pool (a stream whose
    /// messages are still alive), a camera or a transcoder knows of, sorted by name.
    pub fn build(inputs: Inputs, rates: &RateMeter) -> Snapshot {
        let Inputs {
            hub,
            pages,
            pool,
            mut cameras,
            mut transcoders,
            rtmp,
            http_connections,
            uptime_s,
            records,
            hls,
            hls_counters,
        } = inputs;
        let recording: BTreeSet<&str> = records
            .iter()
            .flat_map(|r| r.recording.iter().map(String::as_str))
            .collect();
        let mut page_by_name: BTreeMap<String, PagesView> = BTreeMap::new();
        for p in pages {
            // A republished stream has a new writer while the old one's messages may live.
            let v = page_by_name.entry(p.name).or_default();
            v.held_bytes += p.held_bytes;
            v.live_bytes += p.live_bytes;
            v.budget_bytes = v.budget_bytes.max(p.budget_bytes);
        }
        let mut hub_by_name: BTreeMap<String, (HubStream, Vec<PlayerStats>)> = hub
            .into_iter()
            .map(|(s, players)| (s.name.clone(), (s, players)))
            .collect();
        let names: BTreeSet<String> = hub_by_name
            .keys()
            .chain(page_by_name.keys())
            .chain(cameras.keys())
            .chain(transcoders.keys())
            .cloned()
            .collect();
        let transcoder_dropped_frames = transcoders
            .values()
            .flatten()
            .map(|t| t.dropped_frames)
            .sum();
        let streams = names
            .into_iter()
            .map(|name| {
                let (hs, players) = hub_by_name.remove(&name).unwrap_or_else(|| {
                    (
                        HubStream {
                            name: name.clone(),
                            ..HubStream::default()
                        },
                        Vec::new(),
                    )
                });
                let camera = cameras.remove(&name);
                let source = hs
                    .source
                    .map(source_name)
                    .or(camera.as_ref().map(|_| "camera"));
                StreamView {
                    source,
                    publishing: hs.publishing,
                    uptime_s: hs.uptime_ms.map(|ms| ms as f64 / 1000.0),
                    video: hs.video_codec.map(|codec| VideoView {
                        codec,
                        width: hs.video_width,
                        height: hs.video_height,
                    }),
                    audio: hs.audio_codec.map(|codec| AudioView {
                        codec,
                        sample_rate: hs.audio_sample_rate,
                        channels: hs.audio_channels,
                    }),
                    bitrate_in_bps: bps(rates.rate(&RateKey::StreamIn(name.clone()))),
                    frames_in: hs.frames_in,
                    bytes_in: hs.bytes_in,
                    players: players
                        .into_iter()
                        .map(|p| PlayerView {
                            id: p.id,
                            bitrate_out_bps: bps(rates.rate(&RateKey::PlayerOut(p.id))),
                            frames_sent: p.frames_sent,
                            bytes_sent: p.bytes_sent,
                            queued_frames: p.queued_items,
                            queued_bytes: p.queued_bytes,
                            dropped: p.dropped,
                        })
                        .collect(),
                    saver: SaverView {
                        frames: hs.saver_frames,
                        bytes: hs.saver_bytes,
                    },
                    pages: page_by_name.remove(&name).unwrap_or_default(),
                    dropped: DroppedView {
                        disposable: hs.dropped.disposable,
                        inter: hs.dropped.inter,
                        resync: hs.dropped.resync,
                        audio: hs.dropped.audio,
                        ingest: hs.ingest_dropped,
                    },
                    players_kicked: hs.players_kicked,
                    transcoders: transcoders.remove(&name).unwrap_or_default(),
                    camera,
                    recording: recording.contains(name.as_str()),
                    name,
                }
            })
            .collect();
        Snapshot {
            streams,
            records,
            hls,
            hls_counters,
            totals: Totals {
                pages: pool,
                rtmp,
                http_connections,
                transcoder_dropped_frames,
                uptime_s,
            },
        }
    }
}
