//! Recording: every `[[record]]` entry writes its streams as fragmented MP4 segments, keeps
//! them within its limits, and serves any range of them as one seekable MP4.
//!
//! - [`config`]: the `[[record]]` keys.
//! - [`recorder`]: a hub output per recorded stream: frames into [`crate::fmp4::Fragmenter`],
//!   parts into a [`writer::SegmentFile`] off the reactor, with a byte bound.
//! - [`library`]: the index of what is on disk (built from the files at start) and the
//!   counters; [`retention`] chooses what goes; [`scan`] reads a segment back and cuts a torn
//!   tail; [`playback`] plans the MP4 of a time range from the index and the files.
//! - [`utc`]: the UTC times in file names and the API.
//!
//! Files: `<path>/<stream>/<UTC start, e.g. 2026-12-07T10-15-00.123Z>.mp4`, each a complete
//! fragmented MP4 (init segment, then one `moof` + `mdat` per part) that plays on its own.

pub mod config;
pub mod library;
pub mod playback;
pub mod recorder;
pub mod retention;
pub mod scan;
pub mod utc;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::RecordConfig;
pub use library::{Recordings, SegmentMeta, Span};

use crate::hub::Hub;
use library::Entry;

/// How often retention runs (and free space is read).
pub const RETENTION_EVERY: Duration = Duration::from_secs(10);

/// Indexes what is on disk (blocking: run it off the reactor before [`spawn`]).
pub fn load(configs: &[RecordConfig]) -> Recordings {
    Recordings::load(configs)
}

/// Starts the recorders of every entry and its retention, on `tasks`.
pub fn spawn(
    recordings: &Recordings,
    hub: &Hub,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    for entry in recordings.entries() {
        if entry.config.stream == "*" {
            tasks.spawn(follow_publishers(
                entry.clone(),
                hub.clone(),
                shutdown.clone(),
            ));
        } else {
            let stream = entry.config.stream.clone();
            info!(stream = %stream, path = %entry.config.path.display(), "recording");
            tasks.spawn(recorder::run(
                stream,
                entry.clone(),
                hub.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(retention(entry.clone(), shutdown.clone()));
    }
}

/// A `"*"` entry: a recorder for each stream while it publishes.
async fn follow_publishers(entry: Arc<Entry>, hub: Hub, shutdown: CancellationToken) {
    let mut changed = hub.publishing_changed();
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut warned = std::collections::HashSet::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        for stream in hub.publishing() {
            if running.contains_key(&stream) {
                continue;
            }
            if !config::is_recordable_name(&stream) {
                if warned.insert(stream.clone()) {
                    warn!(stream = %stream, "stream name cannot be a folder; not recorded");
                }
                continue;
            }
            info!(stream = %stream, path = %entry.config.path.display(), "recording (every stream)");
            let h = tokio::spawn(recorder::run(
                stream.clone(),
                entry.clone(),
                hub.clone(),
                shutdown.clone(),
            ));
            running.insert(stream, h);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = changed.changed() => if r.is_err() { break },
            // A recorder that ended while its stream still publishes (a republish raced it)
            // is started again on the next look.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (_, h) in running {
        let _ = h.await;
    }
}

async fn retention(entry: Arc<Entry>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let e = entry.clone();
        let now = utc::from_system(SystemTime::now());
        let _ = tokio::task::spawn_blocking(move || e.retention_pass(now)).await;
    }
}
