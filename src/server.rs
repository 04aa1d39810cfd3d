//! The composition root: builds the page pool, the hub, the file sources, cameras, renditions,
//! recorders and the RTMP listener from a [`Config`], runs them until the shutdown token is cancelled,
//! then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, FileConfig};
use crate::http;
use crate::hub::{Hub, SourceKind};
use crate::pages::PagePool;
use crate::rtmp::server::{self as rtmp_server, Context, Counters};
use crate::source::{FileSource, SourceError, DEMO_MP4};
use crate::status::StatusBoard;

/// How long connections get to close after the first shutdown signal.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for RTMP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("file source {name:?}: {source}")]
    File { name: String, source: SourceError },
    #[error("{0}")]
    Camera(String),
}

/// A server that is listening: its address, and the task that runs it to the end.
pub struct Started {
    pub rtmp_addr: SocketAddr,
    /// `None` when `[http] enabled = false`, or when its address could not be bound.
    pub http_addr: Option<SocketAddr>,
    pub context: Arc<Context>,
    /// Where cameras and transcoders report their state for the HTTP API.
    pub status: StatusBoard,
    /// Each `[[camera]]`'s live status (for the HTTP API).
    pub cameras: crate::rtsp::Cameras,
    /// What `[[record]]` entries hold and do.
    pub recordings: crate::record::Recordings,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds and starts everything; returns once the server is listening. The returned task ends
/// after `shutdown` is cancelled and the connections have drained.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Started, StartError> {
    let pool = PagePool::new(config.pages.pool());
    let hub = Hub::new(config.hub.clone());
    // Parse every file before listening, so a bad file is a start-up error naming it.
    let files = config
        .file
        .iter()
        .map(|f| load_file(f).map(|bytes| (f.name.clone(), bytes)))
        .collect::<Result<Vec<_>, _>>()?;
    let addr = config.rtmp.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let rtmp_addr = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    // The recordings on disk are indexed (torn tails of a crash cut off) before anything
    // records or serves them.
    let record_configs = config.record.clone();
    let recordings = tokio::task::spawn_blocking(move || crate::record::load(&record_configs))
        .await
        .unwrap_or_default();
    let status = StatusBoard::default();
    let context = Arc::new(Context {
        hub: hub.clone(),
        pool: pool.clone(),
        config: config.rtmp.clone(),
        stream_budget_bytes: config.pages.stream_budget_bytes,
        counters: Counters::default(),
        audio: config.audio.clone(),
        status: status.clone(),
    });
    info!(addr = %rtmp_addr, "RTMP listening");
    // The API is secondary to the video: a busy HTTP port (a second instance on the default
    // 8080, say) is a loud error, not a reason to serve no video.
    let http_listener = match config.http.enabled {
        false => None,
        true => match bind(config.http.listen).await {
            Ok(pair) => Some(pair),
            Err(e) => {
                error!(addr = %config.http.listen, error = %e, "cannot listen for HTTP; running without the API and metrics");
                None
            }
        },
    };
    let http = http_listener.map(|(listener, http_addr)| {
        info!(addr = %http_addr, auth = config.http.token.is_some(), "HTTP listening");
        let hls = config.hls.enabled.then(|| {
            let configured = config
                .camera
                .iter()
                .map(|c| c.name.clone())
                .chain(config.rendition.iter().map(|r| r.name.clone()))
                .chain(config.file.iter().map(|f| f.name.clone()))
                .collect();
            crate::hls::Hls::new(
                config.hls.clone(),
                hub.clone(),
                configured,
                shutdown.clone(),
            )
        });
        let api = http::Api::new(
            context.clone(),
            status.clone(),
            recordings.clone(),
            hls,
            config.http.token.clone(),
        );
        (http_addr, http::serve(listener, api, shutdown.clone()))
    });
    let http_addr = http.as_ref().map(|(addr, _)| *addr);
    let serve_http = async move {
        if let Some((_, serve)) = http {
            serve.await;
        }
    };
    let mut sources = tokio::task::JoinSet::new();
    for (name, bytes) in files {
        info!(stream = %name, url = %format!("rtmp://{rtmp_addr}/{}/{name}", rtmp_server::APP), "file source");
        sources.spawn(run_file(
            name,
            bytes,
            hub.clone(),
            pool.clone(),
            config.pages.stream_budget_bytes,
        ));
    }
    let cameras = crate::rtsp::spawn_cameras(
        &config.camera,
        &crate::rtsp::CameraEnv {
            hub: &hub,
            pool: &pool,
            stream_budget_bytes: config.pages.stream_budget_bytes,
            audio: &config.audio,
            board: &status,
        },
        &shutdown,
        &mut sources,
    )
    .map_err(StartError::Camera)?;
    status.attach_cameras(std::sync::Arc::new(cameras.clone()));
    crate::rendition::spawn_renditions(
        &config.rendition,
        &hub,
        &pool,
        config.pages.stream_budget_bytes,
        &status,
        &shutdown,
        &mut sources,
    );
    crate::record::spawn(&recordings, &hub, &shutdown, &mut sources);
    let ctx = context.clone();
    let task = tokio::spawn(async move {
        let serve = rtmp_server::serve(listener, ctx, shutdown.clone(), DRAIN);
        let stop_sources = async {
            shutdown.cancelled().await;
        };
        tokio::join!(serve, stop_sources, serve_http);
        // Connections are closed: end the sources and what is left of the streams.
        hub.shutdown();
        let _ = tokio::time::timeout(DRAIN, async {
            while sources.join_next().await.is_some() {}
        })
        .await;
        sources.abort_all();
        let s = pool.stats();
        info!(
            held_bytes = s.held_bytes,
            live_bytes = s.live_bytes,
            "stopped"
        );
    });
    Ok(Started {
        rtmp_addr,
        http_addr,
        context,
        status,
        cameras,
        recordings,
        task,
    })
}

async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

fn load_file(f: &FileConfig) -> Result<Bytes, StartError> {
    let bytes = match &f.path {
        None => Bytes::from_static(DEMO_MP4),
        Some(path) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|source| StartError::File {
                name: f.name.clone(),
                source: SourceError::Io {
                    name: f.name.clone(),
                    path: path.display().to_string(),
                    source,
                },
            })?,
    };
    // Parse once now so that an unusable file fails the start, not a background task.
    FileSource::from_bytes(&f.name, bytes.clone()).map_err(|source| StartError::File {
        name: f.name.clone(),
        source,
    })?;
    Ok(bytes)
}

/// Runs a looped file until the hub shuts down; restarts it (after a pause) if it fails.
async fn run_file(name: String, bytes: Bytes, hub: Hub, pool: PagePool, budget: u64) {
    loop {
        let source = match FileSource::from_bytes(&name, bytes.clone()) {
            Ok(s) => s,
            Err(e) => {
                error!(stream = %name, error = %e, "file source cannot start");
                return;
            }
        };
        let publisher = match hub.publish(&name, SourceKind::File) {
            Ok(p) => p,
            Err(crate::hub::HubError::ShutDown { .. }) => return,
            Err(e) => {
                // Someone else publishes this name: try again later.
                warn!(stream = %name, error = %e, "file source waiting for the stream name");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        match source.run(publisher, pool.writer(&name, budget)).await {
            Ok(()) => return,
            Err(e) => {
                warn!(stream = %name, error = %e, "file source failed; restarting in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
