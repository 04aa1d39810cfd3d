//! The HLS routes: `/hls/{stream}/index.m3u8` (an LL-HLS media playlist, with blocking reload)
//! and `/hls/{stream}/{file}` (init segments, parts, segments), served from the muxers of
//! [`crate::hls`].
//!
//! Caching, so that an nginx `proxy_cache` or a CDN in front works: media files have stable,
//! never reused names and are `immutable`; a plain playlist lives 1 s; a blocking reload's
//! answer (`_HLS_msn`/`_HLS_part` in the URL, so a distinct cache key) lives a few seconds,
//! since every client asking for that part gets the same answer; playlists carry an `ETag`
//! and answer `If-None-Match` with 304. CORS is open (`*`), as players on other origins need.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;

use super::{error, Api, Peer};
use crate::hls::playlist::{parse_file_name, FileName, Found};
use crate::hls::HlsStream;

/// How long a first playlist request waits for the muxer's first part.
const FIRST_MEDIA_WAIT: Duration = Duration::from_secs(10);
/// How far ahead of the newest part a blocking request may ask (the spec's Advance Part
/// Limit is 3; segments: 2).
const ADVANCE_PARTS: usize = 3;

/// Why a request is refused; made a JSON error at the end.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    (status, message.into())
}

fn with_cors(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// `name=value` pairs of the query, decoded.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                k.to_owned(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

/// The stream's muxer if the stream exists (published, or a configured camera), started if
/// needed.
fn muxer(api: &Api, name: &str) -> Result<Arc<HlsStream>, Refusal> {
    let Some(hls) = &api.hls else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "HLS is off ([hls] enabled = false)",
        ));
    };
    let known = hls.knows(name);
    if !known {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no stream named {name:?}"),
        ));
    }
    hls.stream(name).ok_or_else(|| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many HLS streams at once",
        )
    })
}

pub(super) async fn file(
    State(api): State<Arc<Api>>,
    Path((name, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(Peer(p))| p);
    let r = if file == "index.m3u8" {
        playlist(&api, &name, query.as_deref(), peer, &headers).await
    } else {
        media(&api, &name, &file).await
    };
    with_cors(r.unwrap_or_else(|(status, message)| error(status, message)))
}

async fn playlist(
    api: &Api,
    name: &str,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let s = muxer(api, name)?;
    let Some(hls) = &api.hls else {
        return Err(refuse(StatusCode::NOT_FOUND, "HLS is off"));
    };
    let counters = hls.counters();
    counters.playlist_requests.fetch_add(1, Ordering::Relaxed);
    s.touch(peer);
    let pairs = query_pairs(query);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let token = get("token").map(str::to_owned);
    let msn: Option<u64> = match get("_HLS_msn") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("_HLS_msn = {v:?} is not a number"),
            )
        })?),
    };
    let part: Option<usize> = match get("_HLS_part") {
        None => None,
        Some(_) if msn.is_none() => {
            return Err(refuse(StatusCode::BAD_REQUEST, "_HLS_part needs _HLS_msn"));
        }
        Some(v) => Some(v.parse().map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("_HLS_part = {v:?} is not a number"),
            )
        })?),
    };
    // A playlist of parts alone is valid LL-HLS, but plain clients (ffmpeg, VLC) give up on
    // it: a new muxer's first answer waits for its first whole segment, which, since the muxer
    // starts with the frame saver's GOP, is the rest of the current GOP.
    if !s
        .wait_for(FIRST_MEDIA_WAIT, |st| st.last_msn().is_some())
        .await
    {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("stream {name:?} has no H.264 or AAC media to play (yet)"),
        ));
    }
    let config = hls.config();
    let target = Duration::from_secs_f64(config.segment_s.max(config.part_ms as f64 / 1000.0));
    if let Some(m) = msn {
        // The spec's 400: far in the future.
        let (cur_msn, cur_part) = s.state().next_part().unwrap_or((0, 0));
        let too_far =
            m > cur_msn + 2 || (m == cur_msn && part.is_some_and(|p| p > cur_part + ADVANCE_PARTS));
        if too_far {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("_HLS_msn={m} _HLS_part={part:?} is too far ahead of the playlist (next part {cur_msn}.{cur_part})"),
            ));
        }
        counters.blocking_requests.fetch_add(1, Ordering::Relaxed);
        let waiting_stream = s.blocking.fetch_add(1, Ordering::Relaxed) + 1;
        let waiting_total = counters.blocking_waiting.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = BlockingGuard { s: &s, counters };
        if waiting_stream > config.max_blocking_per_stream
            || waiting_total > config.max_blocking_total
        {
            drop(guard);
            counters.blocking_refused.fetch_add(1, Ordering::Relaxed);
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many blocking playlist requests",
            ));
        }
        // Three target durations, as the spec suggests; then the playlist as it is.
        if !s.wait_for(target * 3, |st| st.has(m, part)).await {
            counters.blocking_timed_out.fetch_add(1, Ordering::Relaxed);
        }
        drop(guard);
    }
    let suffix = match &token {
        Some(t) => format!(
            "?token={}",
            percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => String::new(),
    };
    let text = s.state().playlist(&suffix);
    let etag = format!("\"{:016x}\"", fnv(text.as_bytes()));
    let cache = if msn.is_some() {
        "public, max-age=6"
    } else {
        "public, max-age=1"
    };
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        counters
            .bytes_served
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        text.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

struct BlockingGuard<'a> {
    s: &'a HlsStream,
    counters: &'a crate::hls::HlsCounters,
}

impl Drop for BlockingGuard<'_> {
    fn drop(&mut self) {
        self.s.blocking.fetch_sub(1, Ordering::Relaxed);
        self.counters
            .blocking_waiting
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
    })
}

async fn media(api: &Api, name: &str, file: &str) -> Result<Response, Refusal> {
    let s = muxer(api, name)?;
    let Some(hls) = &api.hls else {
        return Err(refuse(StatusCode::NOT_FOUND, "HLS is off"));
    };
    s.touch(None);
    let epoch = s.state().epoch;
    let gone = || {
        refuse(
            StatusCode::NOT_FOUND,
            format!("no such HLS file: {file} (an old or another muxer's name)"),
        )
    };
    let Some(what) = parse_file_name(epoch, file) else {
        return Err(gone());
    };
    let counters = hls.counters();
    let (counter, content_type) = match what {
        FileName::Init(_) => (&counters.init_requests, "video/mp4"),
        FileName::Segment(_) => (&counters.segment_requests, "video/iso.segment"),
        FileName::Part(..) => (&counters.part_requests, "video/iso.segment"),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let found = s.state().find(what);
    let chunks = match found {
        Found::Bytes(b) => b,
        Found::Gone => return Err(gone()),
        Found::Soon => {
            // The preload hint (or the segment being made): held until it exists.
            let c = hls.config();
            let wait = Duration::from_secs_f64(c.segment_s * 3.0 + 1.0);
            s.wait_for(wait, |st| matches!(st.find(what), Found::Bytes(_)))
                .await;
            match s.state().find(what) {
                Found::Bytes(b) => b,
                _ => return Err(gone()),
            }
        }
    };
    let len: usize = chunks.iter().map(Bytes::len).sum();
    counters
        .bytes_served
        .fetch_add(len as u64, Ordering::Relaxed);
    let body = Body::from_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<Bytes, std::io::Error>),
    ));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{file}\"")) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}
