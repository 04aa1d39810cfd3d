//! The HTTP API: stream state as JSON, Prometheus metrics, and a liveness check, so an operator
//! sees where memory goes and what every stream, player and camera does.
//!
//! | route | what | auth |
//! | --- | --- | --- |
//! | `GET /api/streams` | `{"streams": [StreamView, ...]}`, sorted by name | token |
//! | `GET /api/streams/{name}` | one [`StreamView`]; 404 if no such stream | token |
//! | `GET /metrics` | Prometheus text exposition ([`metrics`]) | token |
//! | `GET /snapshot/{name}.jpg` | a JPEG of the stream's latest keyframe ([`snapshot`]) | token, or `?token=` |
//! | `GET /api/recordings` | every recorded stream with its spans, and each `[[record]]` entry's status | token |
//! | `GET /api/recordings/{stream}` | `{"stream", "spans", "segments"}`; 404 if nothing is recorded | token |
//! | `GET /recordings/{stream}.mp4?start=RFC3339&duration=S` | that range as one seekable MP4, `Range` honoured ([`recordings`]) | token, or `?token=` |
//! | `GET /hls/{stream}/index.m3u8` | LL-HLS media playlist, blocking reload with `_HLS_msn`/`_HLS_part` ([`hls`]) | token, or `?token=` |
//! | `GET /hls/{stream}/{file}` | init segments, parts and segments (immutable) | token, or `?token=` |
//! | `GET /` | the dashboard ([`pages`]) | token, or `?token=` |
//! | `GET /watch/{stream}` | the player page | token, or `?token=` |
//! | `GET /static/{file}` | the pages' CSS and scripts (hls.js) | open |
//! | `GET /healthz` | `{"status":"ok"}` | open |
//!
//! With `[http] token` set, the token routes need `Authorization: Bearer <token>` (snapshots
//! and recordings also take `?token=<token>`, since an `<img>` or `<video>` tag cannot send a header); without one the listener must be on a loopback address (the config check refuses anything else).
//! Every error is a 4xx/5xx with a JSON body `{"error": "...", "status": N}`: unknown path
//! (404), wrong method (405, with `Allow`), missing or wrong token (401), a request body (no
//! route takes one: 413), an over-long URI (414). Two errors come from the HTTP parser before
//! any route sees the request and so carry no JSON: a malformed request (400) and a request
//! head over 16 KiB (431); both then close the connection.
//!
//! Rates (`bitrate_in_bps`, `bitrate_out_bps`) come from a sampler task that reads the hub's
//! byte counters every second; a rate is the increase over the last 5 s ([`rates`]).
//!
//! What lives here: the socket glue (one hyper connection per task, a connection limit,
//! header timeout) and the request handling; the data model ([`view`]) and the exposition
//! ([`metrics`]) are pure functions of a [`Snapshot`]. What does not: the counters themselves,
//! which belong to the hub, the page pool and the RTMP layer; cameras and transcoders report
//! into the [`StatusBoard`].

pub mod hls;
pub mod metrics;
pub mod pages;
pub mod rates;
pub mod recordings;
pub mod snapshot;
pub mod view;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use view::{Snapshot, StreamView};

use crate::rtmp::server::Context;
use crate::status::StatusBoard;
use rates::{RateKey, RateMeter};
use view::{Inputs, RtmpTotals};

/// Most simultaneous HTTP connections; more are closed at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest request head (request line and headers) hyper buffers; longer gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest URI accepted; longer gets 414.
pub const MAX_URI_BYTES: usize = 4096;
/// Time a client has to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time open connections get to finish their request at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the handlers share.
pub struct Api {
    ctx: Arc<Context>,
    board: StatusBoard,
    rates: Mutex<RateMeter>,
    token: Option<String>,
    started: Instant,
    connections: AtomicU64,
    snapshots: snapshot::Snapshots,
    recordings: crate::record::Recordings,
    plans: crate::record::playback::PlanCache,
    /// `None` with `[hls] enabled = false`.
    hls: Option<crate::hls::Hls>,
}

/// The client's address, put in each request's extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl Api {
    /// The API over a running RTMP server's hub, pages and counters, and the board cameras and
    /// transcoders report to. `token`: the bearer token the API requires, if any.
    pub fn new(
        ctx: Arc<Context>,
        board: StatusBoard,
        recordings: crate::record::Recordings,
        hls: Option<crate::hls::Hls>,
        token: Option<String>,
    ) -> Arc<Api> {
        Arc::new(Api {
            recordings,
            hls,
            plans: crate::record::playback::PlanCache::default(),
            ctx,
            board,
            rates: Mutex::new(RateMeter::new(rates::WINDOW)),
            token,
            started: Instant::now(),
            connections: AtomicU64::new(0),
            snapshots: snapshot::Snapshots::default(),
        })
    }

    /// Everything the API shows, read now.
    pub fn snapshot(&self) -> Snapshot {
        let hub = &self.ctx.hub;
        let streams = hub
            .stats()
            .into_iter()
            .map(|s| {
                let players = hub.player_stats(&s.name);
                (s, players)
            })
            .collect();
        let (cameras, transcoders) = self.board.snapshot();
        let inputs = Inputs {
            hub: streams,
            pages: self.ctx.pool.streams(),
            pool: self.ctx.pool.stats(),
            cameras,
            transcoders,
            rtmp: RtmpTotals::read(&self.ctx.counters),
            http_connections: self.connections.load(Ordering::Relaxed),
            uptime_s: self.started.elapsed().as_secs_f64(),
            records: self
                .recordings
                .entries()
                .iter()
                .map(|e| e.status())
                .collect(),
            hls: self.hls.as_ref().map(|h| h.stats()).unwrap_or_default(),
            hls_counters: self
                .hls
                .as_ref()
                .map(|h| view::HlsTotals::read(h.counters())),
        };
        let rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot::build(inputs, &rates)
    }

    /// Reads the byte counters into the rate meter (the sampler task calls this each second).
    pub fn sample_rates(&self, now: Instant) {
        let hub = &self.ctx.hub;
        let mut readings = Vec::new();
        for s in hub.stats() {
            for p in hub.player_stats(&s.name) {
                readings.push((RateKey::PlayerOut(p.id), p.bytes_sent));
            }
            readings.push((RateKey::StreamIn(s.name), s.bytes_in));
        }
        self.rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sample(now, readings);
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            return true;
        }
        // Pages, snapshots, HLS and recordings are for browsers, <img> and <video> tags and
        // players, which cannot send headers: a query token will do.
        let path = req.uri().path();
        let query_ok = path == "/"
            || ["/snapshot/", "/recordings/", "/hls/", "/watch/"]
                .iter()
                .any(|p| path.starts_with(p));
        query_ok
            && req.uri().query().is_some_and(|q| {
                q.split('&').any(|pair| {
                    pair.strip_prefix("token=").is_some_and(|t| {
                        let t = percent_encoding::percent_decode_str(t).decode_utf8_lossy();
                        constant_time_eq(t.as_bytes(), expected.as_bytes())
                    })
                })
            })
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON error response: `{"error": message, "status": code}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "status": status.as_u16() });
    (status, json_body(&body)).into_response()
}

fn json_body(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response()
        }
        Err(e) => {
            warn!(error = %e, "cannot serialise an API response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The routes, with their auth and error handling.
pub fn router(api: Arc<Api>) -> Router {
    let protected = Router::new()
        .route("/api/streams", get(list_streams))
        .route("/api/streams/{name}", get(one_stream))
        .route("/metrics", get(metrics_text))
        .route("/snapshot/{file}", get(snapshot_jpeg))
        .route("/api/recordings", get(recordings::list))
        .route("/api/recordings/{stream}", get(recordings::one))
        .route("/recordings/{file}", get(recordings::mp4))
        .route("/hls/{stream}/{file}", get(hls::file))
        .route("/", get(pages::index))
        .route("/watch/{stream}", get(pages::watch))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/static/{*path}", get(pages::static_file))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(guard))
        .layer(middleware::map_response(json_errors))
        .with_state(api)
}

async fn healthz() -> Response {
    json_body(&serde_json::json!({ "status": "ok" }))
}

async fn list_streams(State(api): State<Arc<Api>>) -> Response {
    let snap = api.snapshot();
    json_body(&serde_json::json!({ "streams": snap.streams }))
}

async fn one_stream(
    State(api): State<Arc<Api>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(name) = match name {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let snap = api.snapshot();
    match snap.streams.into_iter().find(|s| s.name == name) {
        Some(s) => json_body(&s),
        None => error(StatusCode::NOT_FOUND, format!("no stream named {name:?}")),
    }
}

async fn snapshot_jpeg(
    State(api): State<Arc<Api>>,
    file: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(file) = match file {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    api.snapshots.respond(&api.ctx.hub, &file).await
}

async fn metrics_text(State(api): State<Arc<Api>>) -> Response {
    let text = metrics::render(&api.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", req.uri().path()),
    )
}

async fn require_token(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    if api.authorized(&req) {
        return next.run(req).await;
    }
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token (Authorization: Bearer ...)",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"moment\""),
    );
    resp
}

/// Refuses what no route takes: over-long URIs and request bodies.
async fn guard(req: Request, next: Next) -> Response {
    if req.uri().to_string().len() > MAX_URI_BYTES {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("URI longer than {MAX_URI_BYTES} bytes"),
        );
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted",
        );
    }
    next.run(req).await
}

/// Gives every error response that is not JSON yet (axum's 405, extractor rejections) the
/// JSON error body, keeping its status and headers such as `Allow`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let fresh = error(status, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

/// Serves HTTP until `shutdown` is cancelled, with the rate sampler alongside; then gives open
/// connections a moment to finish their request.
pub async fn serve(listener: TcpListener, api: Arc<Api>, shutdown: CancellationToken) {
    let router = router(api.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    let sampler = tokio::spawn(sample_rates(api.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        debug!(%peer, "HTTP connection limit reached; closing new connection");
                        continue;
                    };
                    let service = TowerToHyperService::new(
                        router.clone().layer(axum::Extension(Peer(peer))),
                    );
                    let conn = builder.serve_connection(TokioIo::new(socket), service);
                    let api = api.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        api.connections.fetch_add(1, Ordering::Relaxed);
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => if let Err(e) = r {
                                debug!(%peer, error = %e, "HTTP connection ended with an error");
                            },
                            _ = shutdown.cancelled() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
                            }
                        }
                        api.connections.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    sampler.abort();
}

async fn sample_rates(api: Arc<Api>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(rates::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => api.sample_rates(Instant::now()),
        }
    }
}
