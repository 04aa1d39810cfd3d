//! One stream recorded by one `[[record]]` entry: a hub output that feeds the fragmenter and
//! hands parts to a segment file off the reactor.
//!
//! Memory: the hub queue of the subscription is the byte bound (a recorder whose disk cannot
//! keep up stops taking from it, so the hub drops video to the next keyframe for it, counted
//! there); besides it, at most [`MAX_WRITE_BEHIND`] bytes of parts wait for the write in
//! progress. A part is the frames' own pages (reference counts), never a copy.
//!
//! Errors: a write that fails (a full disk, a folder made read-only) ends the segment, is
//! logged and shown as the entry's `last_error`; frames are then counted as dropped for
//! [`RETRY_AFTER`] and recording resumes with a new segment at the next keyframe.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::library::{Entry, SegmentMeta};
use super::utc::{self, UtcMs};
use super::writer::SegmentFile;
use crate::fmp4::{Event, Fragmenter, FragmenterConfig, Part, Timeline};
use crate::hub::{Hub, HubError, PlayerItem, PlayerQueueConfig, TryNext};

/// Most part bytes waiting for the write in progress.
pub const MAX_WRITE_BEHIND: usize = 16 << 20;
/// How long after a failed write recording is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The recorder's hub queue: more than a player's, since a disk stalls for longer than a
/// socket (a sync, a busy array) and video dropped from a recording is gone for good.
pub const QUEUE: PlayerQueueConfig = PlayerQueueConfig {
    soft_bytes: 16 << 20,
    hard_bytes: 48 << 20,
};

/// When the segment's first frame arrived, from the frames' arrival times: each frame read at
/// wall time `w` with media time `t` says the stream's media time 0 was at most `w - t` (it
/// can only have arrived later than it was made); the smallest over the last few seconds is
/// the estimate (reading a GOP from the hub's saver at once, or a recorder that was busy,
/// only makes `w` later). Sans-IO: times are given.
#[derive(Debug, Default, Clone)]
pub struct UtcEstimator {
    /// The best (w - t) seen in the current and in the previous window, with the window's
    /// start.
    current: Option<i64>,
    previous: Option<i64>,
    window_start: Option<UtcMs>,
    /// The last media timestamp, extended past 32 bits.
    last_ts: Option<(u32, i64)>,
}

const ESTIMATE_WINDOW_MS: i64 = 5000;

impl UtcEstimator {
    pub fn reset(&mut self) {
        *self = UtcEstimator::default();
    }

    fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.last_ts {
            None => i64::from(ts),
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        self.last_ts = Some((ts, ext));
        ext
    }

    /// A frame with timestamp `ts` was read at `now`.
    pub fn observe(&mut self, now: UtcMs, ts: u32) {
        let t = self.extend(ts);
        let offset = now - t;
        match self.window_start {
            Some(s) if now - s < ESTIMATE_WINDOW_MS => {}
            _ => {
                self.previous = self.current.take();
                self.window_start = Some(now);
            }
        }
        self.current = Some(self.current.map_or(offset, |c| c.min(offset)));
    }

    /// The UTC time of media timestamp `ts` (the stream's, as last observed), if any frame
    /// was seen.
    pub fn utc_of(&self, ts: u32) -> Option<UtcMs> {
        let best = match (self.current, self.previous) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let (last, ext) = self.last_ts?;
        Some(best + ext + i64::from(ts.wrapping_sub(last) as i32))
    }
}

/// What the blocking writer is asked to do, in order.
#[derive(Debug)]
enum Job {
    Open {
        dir: PathBuf,
        stem: String,
        init: Vec<u8>,
        start: UtcMs,
        video: Option<String>,
        audio: Option<String>,
    },
    Part {
        part: Part,
        /// The segment's media time at the part's end.
        duration_ms: u64,
        frames: u64,
    },
    Close,
}

impl Job {
    fn bytes(&self) -> usize {
        match self {
            Job::Part { part, .. } => part.bytes() as usize,
            Job::Open { init, .. } => init.len(),
            Job::Close => 0,
        }
    }
}

/// The blocking side: the open file, moved into `spawn_blocking` with a batch of jobs and
/// back.
#[derive(Debug, Default)]
struct Writer {
    file: Option<SegmentFile>,
    /// A write failed: jobs up to the next `Open` are dropped.
    failed: bool,
}

/// What a batch did, for the index and the counters (applied on the recorder's task).
#[derive(Debug)]
enum Done {
    Opened(SegmentMeta),
    Wrote {
        path: PathBuf,
        added: u64,
        len: u64,
        duration_ms: u64,
    },
    Closed(PathBuf),
    Dropped(u64),
    Failed(String),
}

impl Writer {
    fn run(&mut self, jobs: Vec<Job>, sync_every: Duration) -> Vec<Done> {
        let mut done = Vec::new();
        for job in jobs {
            match job {
                Job::Open {
                    dir,
                    stem,
                    init,
                    start,
                    video,
                    audio,
                } => {
                    self.close(&mut done);
                    self.failed = false;
                    match SegmentFile::create(&dir, &stem, &init, sync_every) {
                        Ok(f) => {
                            done.push(Done::Opened(SegmentMeta {
                                path: f.path().to_owned(),
                                start,
                                duration_ms: 0,
                                bytes: f.len(),
                                video,
                                audio,
                                open: true,
                            }));
                            self.file = Some(f);
                        }
                        Err(e) => {
                            self.failed = true;
                            done.push(Done::Failed(describe_write_error(&dir, &e)));
                        }
                    }
                }
                Job::Part {
                    part,
                    duration_ms,
                    frames,
                } => {
                    let Some(f) = self.file.as_mut().filter(|_| !self.failed) else {
                        done.push(Done::Dropped(frames));
                        continue;
                    };
                    let before = f.len();
                    match f.write_part(&part) {
                        Ok(()) => done.push(Done::Wrote {
                            path: f.path().to_owned(),
                            added: f.len() - before,
                            len: f.len(),
                            duration_ms,
                        }),
                        Err(e) => {
                            self.failed = true;
                            done.push(Done::Dropped(frames));
                            done.push(Done::Failed(describe_write_error(f.path(), &e)));
                            self.close(&mut done);
                        }
                    }
                }
                Job::Close => self.close(&mut done),
            }
        }
        done
    }

    fn close(&mut self, done: &mut Vec<Done>) {
        if let Some(f) = self.file.take() {
            let path = f.path().to_owned();
            if let Err(e) = f.finish() {
                done.push(Done::Failed(describe_write_error(&path, &e)));
            }
            done.push(Done::Closed(path));
        }
    }
}

fn describe_write_error(path: &std::path::Path, e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) => " (the disk is full)",
        Some(libc::EACCES) | Some(libc::EPERM) => " (no permission)",
        Some(libc::EROFS) => " (read-only filesystem)",
        _ => "",
    };
    format!("cannot write in {}: {e}{hint}", path.display())
}

/// Records `stream` for `entry` until `shutdown` (or, for a `"*"` entry, until its publisher
/// leaves). `now` is the wall clock (injectable for tests).
pub async fn run(stream: String, entry: Arc<Entry>, hub: Hub, shutdown: CancellationToken) {
    let keeps_source = entry.config.stream != "*";
    let follow_publisher = !keeps_source;
    let config = FragmenterConfig {
        part_ms: (entry.config.part_s * 1000.0) as u64,
        segment_ms: (entry.config.segment_s * 1000.0) as u64,
        timeline: Timeline::PerSegment,
        max_part_bytes: 8 << 20,
    };
    let sync_every = Duration::from_secs_f64(entry.config.sync_s);
    let mut r = Recorder {
        stream: stream.clone(),
        entry: entry.clone(),
        fragmenter: Fragmenter::new(config),
        clock: UtcEstimator::default(),
        jobs: VecDeque::new(),
        queued_bytes: 0,
        paused_until: None,
        segment_origin_ms: 0,
        skipped_reported: 0,
    };
    let mut writer = Some(Writer::default());
    let mut inflight: Option<tokio::task::JoinHandle<(Writer, Vec<Done>)>> = None;
    let mut dropped_reported = 0;
    'subscribe: loop {
        let mut sub = match hub.subscribe_output(&stream, keeps_source, QUEUE) {
            Ok(s) => s,
            Err(HubError::ShutDown { .. }) => break,
            Err(e) => {
                warn!(stream = %stream, error = %e, "recorder cannot subscribe");
                return;
            }
        };
        entry.set_recording(&stream, true);
        let mut ended = false;
        loop {
            // Take what is ready, unless the disk is behind.
            while r.queued_bytes < MAX_WRITE_BEHIND {
                match sub.try_next() {
                    TryNext::Item(item) => {
                        if r.take(item) && follow_publisher {
                            ended = true;
                        }
                    }
                    TryNext::Empty => break,
                    TryNext::Ended => {
                        ended = true;
                        break;
                    }
                }
                if ended {
                    break;
                }
            }
            let d = sub.stats().dropped.total();
            entry.count_dropped(d - dropped_reported);
            dropped_reported = d;
            r.report_skipped();
            if writer.is_some() && !r.jobs.is_empty() {
                let mut w = writer.take().unwrap_or_default();
                let batch: Vec<Job> = r.jobs.drain(..).collect();
                inflight = Some(tokio::task::spawn_blocking(move || {
                    let done = w.run(batch, sync_every);
                    (w, done)
                }));
            }
            if ended || shutdown.is_cancelled() {
                break;
            }
            let can_read = r.queued_bytes < MAX_WRITE_BEHIND;
            tokio::select! {
                item = sub.next(), if can_read => match item {
                    Some(item) => {
                        if r.take(item) && follow_publisher {
                            ended = true;
                        }
                    }
                    None => ended = true,
                },
                joined = async {
                    match inflight.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if inflight.is_some() => {
                    inflight = None;
                    match joined {
                        Ok((w, done)) => {
                            writer = Some(w);
                            r.apply(done);
                        }
                        Err(e) => {
                            // The writer panicked: its file is lost; start afresh.
                            warn!(stream = %stream, error = %e, "recorder's writer failed");
                            writer = Some(Writer::default());
                            r.failed("writer task failed".into());
                        }
                    }
                    r.queued_bytes = r.jobs.iter().map(Job::bytes).sum();
                },
                _ = shutdown.cancelled() => {}
            }
            if ended {
                break;
            }
        }
        // The stream ended, the hub shut down or kicked us: flush what is pending.
        let kicked = sub.is_kicked();
        drop(sub);
        r.fragmenter.end_segment();
        r.drain_fragmenter();
        r.jobs.push_back(Job::Close);
        if let Some(h) = inflight.take() {
            if let Ok((w, done)) = h.await {
                writer = Some(w);
                r.apply(done);
            }
        }
        let mut w = writer.take().unwrap_or_default();
        let batch: Vec<Job> = r.jobs.drain(..).collect();
        if let Ok((w, done)) = tokio::task::spawn_blocking(move || {
            let done = w.run(batch, sync_every);
            (w, done)
        })
        .await
        {
            writer = Some(w);
            r.apply(done);
        } else {
            writer = Some(Writer::default());
        }
        r.queued_bytes = 0;
        entry.set_recording(&stream, false);
        if kicked && !shutdown.is_cancelled() {
            warn!(stream = %stream, "recorder fell too far behind and was dropped by the hub; subscribing again");
            continue 'subscribe;
        }
        break;
    }
    info!(stream = %stream, path = %entry.config.path.display(), "recorder stopped");
}

/// The recorder's state on its task.
struct Recorder {
    stream: String,
    entry: Arc<Entry>,
    fragmenter: Fragmenter,
    clock: UtcEstimator,
    jobs: VecDeque<Job>,
    queued_bytes: usize,
    paused_until: Option<Instant>,
    /// Where the open segment's media time starts, on the fragmenter's clock.
    segment_origin_ms: u64,
    skipped_reported: u64,
}

impl Recorder {
    /// Takes one hub item; true if the publisher left.
    fn take(&mut self, item: PlayerItem) -> bool {
        match item {
            PlayerItem::Frame(f) => {
                let now = utc::from_system(SystemTime::now());
                self.clock.observe(now, f.timestamp);
                if let Some(until) = self.paused_until {
                    if Instant::now() < until {
                        if !f.sequence_header && f.kind != crate::media::MediaKind::Data {
                            self.entry.count_dropped(1);
                        } else {
                            self.fragmenter.push(&f);
                        }
                        return false;
                    }
                    self.paused_until = None;
                }
                self.fragmenter.push(&f);
                self.drain_fragmenter();
                false
            }
            PlayerItem::PublishStarted { .. } | PlayerItem::Discontinuity => {
                self.fragmenter.end_segment();
                self.drain_fragmenter();
                self.clock.reset();
                false
            }
            PlayerItem::PublishStopped => {
                self.fragmenter.end_segment();
                self.drain_fragmenter();
                self.clock.reset();
                true
            }
            PlayerItem::Kicked(_) => false,
        }
    }

    fn drain_fragmenter(&mut self) {
        while let Some(ev) = self.fragmenter.pull() {
            match ev {
                Event::SegmentStart(s) => {
                    // The fragmenter's clock is the stream's timestamps extended past 32
                    // bits: its low 32 bits are the timestamp.
                    let start_ts = s.start_ms as u32;
                    let start = self
                        .clock
                        .utc_of(start_ts)
                        .unwrap_or_else(|| utc::from_system(SystemTime::now()));
                    let video = s.tracks.iter().find(|t| t.is_video()).map(|t| t.describe());
                    let audio = s
                        .tracks
                        .iter()
                        .find(|t| !t.is_video())
                        .map(|t| t.describe());
                    self.push_job(Job::Open {
                        dir: self.entry.dir(&self.stream),
                        stem: utc::format_file_stem(start),
                        init: s.init,
                        start,
                        video,
                        audio,
                    });
                    // Remember where the segment's media time starts.
                    self.segment_origin_ms = s.start_ms;
                }
                Event::Part(p) => {
                    let duration_ms =
                        (p.start_ms + p.duration_ms).saturating_sub(self.segment_origin_ms);
                    let frames = p.payloads.len() as u64;
                    self.push_job(Job::Part {
                        part: p,
                        duration_ms,
                        frames,
                    });
                }
                Event::SegmentEnd => self.push_job(Job::Close),
            }
        }
    }

    fn push_job(&mut self, job: Job) {
        self.queued_bytes += job.bytes();
        self.jobs.push_back(job);
    }

    fn report_skipped(&mut self) {
        let s = self.fragmenter.skipped();
        let total = s.wait_keyframe + s.unsupported + s.audio;
        self.entry.count_skipped(total - self.skipped_reported);
        self.skipped_reported = total;
    }

    fn apply(&mut self, done: Vec<Done>) {
        for d in done {
            match d {
                Done::Opened(meta) => {
                    info!(stream = %self.stream, path = %meta.path.display(), start = %utc::format_rfc3339(meta.start), "segment started");
                    self.entry.segment_opened(&self.stream, meta);
                }
                Done::Wrote {
                    path,
                    added,
                    len,
                    duration_ms,
                } => {
                    self.entry
                        .part_written(&self.stream, &path, added, len, duration_ms);
                }
                Done::Closed(path) => {
                    self.entry.segment_closed(&self.stream, &path);
                    // The limits hold at every segment, not only at the periodic pass.
                    self.retention_now();
                }
                Done::Dropped(n) => self.entry.count_dropped(n),
                Done::Failed(e) => self.failed(e),
            }
        }
    }

    /// Runs a retention pass off the reactor, without waiting for it.
    fn retention_now(&self) {
        let entry = self.entry.clone();
        let now = utc::from_system(SystemTime::now());
        tokio::task::spawn_blocking(move || entry.retention_pass(now));
    }

    /// A write failed: the segment is over; frames are dropped for a while, then a new
    /// segment starts at a keyframe. Retention runs at once: a full disk may be the entry's
    /// own doing, which `min_free_bytes` undoes.
    fn failed(&mut self, error: String) {
        self.retention_now();
        warn!(stream = %self.stream, path = %self.entry.config.path.display(), error = %error, retry_in_s = RETRY_AFTER.as_secs(), "recording failed");
        self.entry.write_failed(error);
        self.fragmenter.end_segment();
        // What the fragmenter still gives belongs to the failed segment.
        while let Some(ev) = self.fragmenter.pull() {
            if let Event::Part(p) = ev {
                self.entry.count_dropped(p.payloads.len() as u64);
            }
        }
        for job in self.jobs.drain(..) {
            if let Job::Part { frames, .. } = job {
                self.entry.count_dropped(frames);
            }
        }
        self.jobs.push_back(Job::Close);
        self.paused_until = Some(Instant::now() + RETRY_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_earliest_arrival_less_media_time() {
        let mut c = UtcEstimator::default();
        assert_eq!(c.utc_of(0), None);
        // A GOP read at once from the saver at 10_000: frames 0..2000 ms.
        for ts in (0..=2000).step_by(40) {
            c.observe(10_000, ts);
        }
        assert_eq!(c.utc_of(0), Some(8000));
        // Live frames arrive on time, a few late.
        c.observe(10_040, 2040);
        c.observe(10_100, 2080);
        assert_eq!(c.utc_of(0), Some(8000));
        assert_eq!(c.utc_of(2000), Some(10_000));
    }

    #[test]
    fn old_windows_are_forgotten_and_timestamps_wrap() {
        let mut c = UtcEstimator::default();
        c.observe(0, u32::MAX - 999);
        // The wall clock was stepped forward by 1 s: after two windows the estimate follows.
        for i in 0..400u32 {
            let ts = (u32::MAX - 999).wrapping_add(i * 40);
            c.observe(1000 + i64::from(i) * 40, ts);
        }
        let ts = (u32::MAX - 999).wrapping_add(399 * 40);
        assert_eq!(c.utc_of(ts), Some(1000 + 399 * 40));
    }
}
