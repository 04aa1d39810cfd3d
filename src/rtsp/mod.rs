//! RTSP cameras pulled by the server (`[[camera]]` in the config), each published as
//! `live/<name>` by a supervisor that reconnects forever with capped exponential backoff.
//!
//! - [`config`]: the `[[camera]]` keys.
//! - [`dts`]: decode timestamps for B-frame cameras (RTP carries presentation times only).
//! - [`ingest`]: the sans-IO core, session units in, FLV-body [`Frame`](crate::media::Frame)s
//!   out, one timeline across sessions.
//! - [`backoff`]: reconnect delays (pure arithmetic).
//! - [`supervisor`]: the per-camera loop over the [`Opener`] and [`CameraSession`] traits,
//!   stall and keyframe timeouts, on-demand connect/linger, [`CameraStatus`].
//! - [`retina_session`]: the only module that touches sockets: the [`Opener`] over retina.
//!
//! Not here: RTSP serving (players use RTMP), audio transcoding (G.711 is left out with a log
//! line, see [`AudioHandling`]; the transcoder hooks in there).

pub mod backoff;
pub mod config;
pub mod dts;
pub mod ingest;
pub mod retina_session;
pub mod supervisor;

pub use backoff::Backoff;
pub use config::{CameraConfig, RtpTransport};
pub use ingest::{AudioHandling, Ingest, IngestError, IngestStats, SessionInfo, Unit};
pub use retina_session::RetinaOpener;
pub use supervisor::{
    Camera, CameraSession, CameraState, CameraStatus, Opener, RtpStats, RtspError, SharedStatus,
};

use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::pages::PagePool;

/// The status of every configured camera, for the HTTP API. Cheap to clone.
#[derive(Clone, Default)]
pub struct Cameras {
    list: Arc<Vec<SharedStatus>>,
}

impl Cameras {
    /// A snapshot of each camera's status, in config order.
    pub fn statuses(&self) -> Vec<CameraStatus> {
        self.list
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// One camera's status.
    pub fn status(&self, name: &str) -> Option<CameraStatus> {
        self.statuses().into_iter().find(|s| s.name == name)
    }
}

impl crate::status::CameraReports for Cameras {
    fn camera_reports(&self) -> Vec<(String, crate::status::CameraStatus)> {
        self.statuses()
            .into_iter()
            .map(|c| {
                let report = crate::status::CameraStatus {
                    url: Some(c.url),
                    connected: c.connected,
                    last_error: c.last_error,
                    reconnects: c.reconnects,
                    transport: c.transport_in_use.map(|t| t.to_string()),
                    rtp: c.rtp,
                };
                (c.name, report)
            })
            .collect()
    }
}

impl std::fmt::Debug for Cameras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cameras")
            .field("count", &self.list.len())
            .finish()
    }
}

/// What every camera supervisor publishes into and reports to.
pub struct CameraEnv<'a> {
    pub hub: &'a Hub,
    pub pool: &'a PagePool,
    /// Page budget of each camera's stream.
    pub stream_budget_bytes: u64,
    pub audio: &'a crate::transcode::AudioConfig,
    pub board: &'a crate::status::StatusBoard,
}

/// Spawns one supervisor per camera into `tasks`; they end when `shutdown` is cancelled
/// (with a TEARDOWN) or the hub shuts down.
pub fn spawn_cameras(
    configs: &[CameraConfig],
    env: &CameraEnv<'_>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Cameras, String> {
    let CameraEnv {
        hub,
        pool,
        stream_budget_bytes,
        audio,
        board,
    } = *env;
    let mut list = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        let stage = crate::transcode::AudioStage::new(&config.name, audio, board.clone());
        let opener = RetinaOpener::new(config, stage.transcodes())
            .map_err(|e| format!("camera {:?}: {e}", config.name))?;
        let status = Arc::new(Mutex::new(CameraStatus::new(config)));
        list.push(status.clone());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((i as u64) << 32);
        let camera = Camera {
            config: config.clone(),
            opener,
            hub: hub.clone(),
            writer: pool.writer(&config.name, stream_budget_bytes),
            status,
            audio: stage,
            seed,
        };
        tasks.spawn(camera.run(shutdown.clone()));
    }
    Ok(Cameras {
        list: Arc::new(list),
    })
}

#[cfg(test)]
mod tests;
