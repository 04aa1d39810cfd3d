//! What the parts of the server that the hub does not describe report about themselves:
//! cameras (their connection state), transcoders and renditions (their queues), recorders
//! (what they wrote). Plain data behind one lock, written by the supervisors when their state
//! changes and read by the HTTP API per request; nothing here is on a media path.
//!
//! This module sits below everything that reports into it and imports none of them, so the
//! sources, the RTMP server and the outputs never depend on `http`, which only reads it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A camera's connection state, as its supervisor reports it (`camera` in `/api/streams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CameraStatus {
    /// The camera's URL with any credentials removed, if the supervisor gives one.
    pub url: Option<String>,
    /// True while an RTSP session is up and delivering frames.
    pub connected: bool,
    /// Why the last session failed or could not start; kept after a reconnect succeeds.
    pub last_error: Option<String>,
    /// Sessions started after the first one.
    pub reconnects: u64,
    /// The transport of the current (or last) session: `"tcp"` or `"udp"`.
    pub transport: Option<String>,
    /// RTP reception over the camera's life.
    pub rtp: RtpStats,
}

/// A camera's RTP reception, summed over its sessions and tracks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RtpStats {
    /// Packets accepted in order.
    pub received: u64,
    /// Sequence numbers that never arrived in time.
    pub lost: u64,
    /// UDP packets that arrived out of order and were put back in place.
    pub reordered: u64,
    /// UDP packets that arrived after their place was given up on (dropped).
    pub late: u64,
    /// UDP packets received twice (the copy dropped).
    pub duplicates: u64,
    /// Packets of access units that could not be put together (the unit was dropped).
    pub damaged: u64,
    /// RTCP receiver reports sent (UDP).
    pub receiver_reports: u64,
    /// Video frames dropped after a loss until the next keyframe.
    pub frames_dropped_after_loss: u64,
    /// Times video resumed at a keyframe after a loss, the session going on.
    pub loss_recoveries: u64,
}

/// One transcoder working for a stream (`transcoders` in `/api/streams`). The optional
/// fields are a rendition's (`null` for audio transcoders).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TranscoderStatus {
    /// What it makes, e.g. `"aac"` (audio) or `"360p"` (a rendition).
    pub name: String,
    /// Input and output codecs, e.g. `"speex"` → `"aac"`.
    pub input: String,
    pub output: String,
    /// The stream its output is published as (the same stream for audio transcoding).
    pub output_stream: Option<String>,
    /// Frames waiting in its bounded input queue, and their payload bytes.
    pub queue_frames: usize,
    pub queue_bytes: usize,
    /// Frames it dropped because it fell behind (it then resumes at a keyframe).
    pub dropped_frames: u64,
    /// True while it runs (a rendition runs only while it has players).
    pub running: Option<bool>,
    /// Times it was started.
    pub runs: Option<u64>,
    /// Frames it took in and put out, and source frames the decoder refused.
    pub frames_in: Option<u64>,
    pub frames_out: Option<u64>,
    pub decode_errors: Option<u64>,
    /// Frames the encoder's rate control skipped to hold the bit rate (a bit rate too low for
    /// the size).
    pub encoder_skipped: Option<u64>,
    /// CPU time its codec threads used, over all its runs.
    pub cpu_seconds: Option<f64>,
}

/// Cameras that keep their own live status (the `[[camera]]` supervisors), read by the board
/// at each snapshot instead of reporting every change.
pub trait CameraReports: Send + Sync + std::fmt::Debug {
    /// Each camera's status, by the stream it publishes.
    fn camera_reports(&self) -> Vec<(String, CameraStatus)>;
}

/// Where cameras and transcoders report their state, by stream name. Cheap to clone; all
/// clones are the same board.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Mutex<Board>>,
}

#[derive(Debug, Default)]
struct Board {
    cameras: BTreeMap<String, CameraStatus>,
    /// The RTSP supervisors' own status, read at each snapshot.
    rtsp: Option<Arc<dyn CameraReports>>,
    transcoders: BTreeMap<String, Vec<TranscoderStatus>>,
}

impl StatusBoard {
    fn lock(&self) -> MutexGuard<'_, Board> {
        // Every update is a plain assignment: the data is consistent even after a panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes (creating it if needed) the status of the camera that publishes `stream`.
    pub fn update_camera(&self, stream: &str, f: impl FnOnce(&mut CameraStatus)) {
        f(self.lock().cameras.entry(stream.to_owned()).or_default());
    }

    /// Shows the `[[camera]]` supervisors' status (read fresh at every request).
    pub fn attach_cameras(&self, cameras: Arc<dyn CameraReports>) {
        self.lock().rtsp = Some(cameras);
    }

    /// Forgets a camera (it was removed from the configuration).
    pub fn remove_camera(&self, stream: &str) {
        self.lock().cameras.remove(stream);
    }

    /// Replaces the list of transcoders working for `stream` (empty: none).
    pub fn set_transcoders(&self, stream: &str, transcoders: Vec<TranscoderStatus>) {
        let mut board = self.lock();
        if transcoders.is_empty() {
            board.transcoders.remove(stream);
        } else {
            board.transcoders.insert(stream.to_owned(), transcoders);
        }
    }

    pub fn camera(&self, stream: &str) -> Option<CameraStatus> {
        self.lock().cameras.get(stream).cloned()
    }

    /// Every camera and every stream's transcoders, by stream name.
    pub fn snapshot(
        &self,
    ) -> (
        BTreeMap<String, CameraStatus>,
        BTreeMap<String, Vec<TranscoderStatus>>,
    ) {
        let board = self.lock();
        let mut cameras = board.cameras.clone();
        for (name, c) in board.rtsp.iter().flat_map(|r| r.camera_reports()) {
            cameras.insert(name, c);
        }
        (cameras, board.transcoders.clone())
    }
}
