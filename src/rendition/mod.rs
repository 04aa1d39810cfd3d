//! Renditions (`[[rendition]]`): another stream's H.264 decoded, scaled and re-encoded in
//! process (openh264, in the `codecs` crate), published as a stream of its own while someone
//! plays it.
//!
//! - A rendition holds its stream name from start-up, so players may come at any time and no
//!   publisher can take the name; it does nothing until its first player arrives.
//! - Then it subscribes to its source like a player (an on-demand camera connects for it),
//!   feeds the video to a codec thread of its own ([`worker`]) and passes the audio through
//!   (AAC, or the AAC the audio stage made). The first frame out is a keyframe with its
//!   sequence header; players that came meanwhile start with it.
//! - A linger time (`linger_s`) after the last player leaves, the run ends: the subscription
//!   is dropped, the codec thread is joined, and its codec instances and buffers are freed.
//!   The next player starts a new run.
//! - Bounds: the codec thread's input queue is bounded in frames and bytes; when it is full the
//!   rendition drops source frames up to the next keyframe (counted), so neither latency nor
//!   memory grows when the encoder cannot keep up. Decoder errors recover at the next IDR.
//! - The codec thread's CPU time, frames and drops show in `/api/streams` (`transcoders`) and
//!   in `/metrics`.

mod config;
mod supervisor;
mod worker;

pub use config::{validate_all, RenditionConfig, MAX_HEIGHT, MAX_WIDTH};
pub use worker::{QUEUE_BYTES, QUEUE_FRAMES};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::pages::PagePool;
use crate::status::StatusBoard;

/// Spawns one supervisor per rendition into `tasks`; they end when `shutdown` is cancelled or
/// the hub shuts down, each after joining its codec thread.
pub fn spawn_renditions(
    configs: &[RenditionConfig],
    hub: &Hub,
    pool: &PagePool,
    stream_budget_bytes: u64,
    board: &StatusBoard,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    for config in configs {
        let rendition = supervisor::Rendition {
            config: config.clone(),
            hub: hub.clone(),
            writer: pool.writer(&config.name, stream_budget_bytes),
            board: board.clone(),
        };
        tasks.spawn(rendition.run(shutdown.clone()));
    }
}
