//! The recordings routes: what is recorded (`/api/recordings`, `/api/recordings/{stream}`)
//! and any range of it as one seekable MP4 (`/recordings/{stream}.mp4?start=&duration=`),
//! planned by [`crate::record::playback`] and streamed from the segment files with `Range`
//! support.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tracing::warn;

use super::{error, json_body, Api};
use crate::record::library::{spans, SegmentMeta, Span};
use crate::record::playback::{self, Plan, PlanError};
use crate::record::utc;

/// Bytes read from disk per body chunk.
const READ_CHUNK: usize = 256 * 1024;
/// Duration when the query gives none.
const DEFAULT_DURATION_S: f64 = 60.0;

#[derive(Serialize)]
struct SpanView {
    start: String,
    end: String,
}

#[derive(Serialize)]
struct SegmentView {
    start: String,
    end: String,
    bytes: u64,
    path: String,
    video: Option<String>,
    audio: Option<String>,
}

fn span_views(spans: &[Span]) -> Vec<SpanView> {
    spans
        .iter()
        .map(|s| SpanView {
            start: utc::format_rfc3339(s.start),
            end: utc::format_rfc3339(s.end),
        })
        .collect()
}

fn segment_view(s: &SegmentMeta) -> SegmentView {
    SegmentView {
        start: utc::format_rfc3339(s.start),
        end: utc::format_rfc3339(s.end()),
        bytes: s.bytes,
        path: s.path.display().to_string(),
        video: s.video.clone(),
        audio: s.audio.clone(),
    }
}

pub(super) async fn list(State(api): State<Arc<Api>>) -> Response {
    let rec = &api.recordings;
    let streams: Vec<serde_json::Value> = rec
        .streams()
        .into_iter()
        .map(|name| {
            let segs = rec.segments(&name);
            serde_json::json!({
                "stream": name,
                "recording": rec.is_recording(&name),
                "spans": span_views(&spans(&segs)),
                "segments": segs.len(),
                "bytes": segs.iter().map(|s| s.bytes).sum::<u64>(),
            })
        })
        .collect();
    let entries: Vec<_> = rec.entries().iter().map(|e| e.status()).collect();
    json_body(&serde_json::json!({ "streams": streams, "entries": entries }))
}

pub(super) async fn one(
    State(api): State<Arc<Api>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(name) = match name {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let segs = api.recordings.segments(&name);
    if segs.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("no recording of {name:?}"));
    }
    json_body(&serde_json::json!({
        "stream": name,
        "recording": api.recordings.is_recording(&name),
        "spans": span_views(&spans(&segs)),
        "segments": segs.iter().map(segment_view).collect::<Vec<_>>(),
    }))
}

/// `start` and `duration` from the query.
fn range_query(query: Option<&str>) -> Result<(i64, f64), String> {
    let mut start = None;
    let mut duration = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "start" => {
                start = Some(utc::parse_rfc3339(&v).ok_or_else(|| {
                    format!("start = {v:?} is not an RFC 3339 time (e.g. 2026-12-07T10:15:00Z)")
                })?)
            }
            "duration" => {
                let d: f64 = v
                    .parse()
                    .map_err(|_| format!("duration = {v:?} is not a number of seconds"))?;
                if !(d > 0.0 && d <= playback::MAX_DURATION_S) {
                    return Err(format!(
                        "duration = {v} is outside (0, {}] seconds",
                        playback::MAX_DURATION_S
                    ));
                }
                duration = Some(d);
            }
            _ => {}
        }
    }
    let start =
        start.ok_or("start=RFC3339 is required, e.g. ?start=2026-12-07T10:15:00Z&duration=60")?;
    Ok((start, duration.unwrap_or(DEFAULT_DURATION_S)))
}

/// A single `Range: bytes=...` against a file of `len` bytes: `Ok(None)` without one (or with
/// a form we serve whole, such as several ranges), `Err(())` if it cannot be satisfied.
fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (first, last) = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let first: u64 = a.parse().map_err(|_| ())?;
            let last = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
            };
            (first, last)
        }
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (true, true) => return Err(()),
    };
    if first >= len || first > last {
        return Err(());
    }
    Ok(Some((first, last)))
}

pub(super) async fn mp4(
    State(api): State<Arc<Api>>,
    file: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Path(file) = match file {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(stream) = file.strip_suffix(".mp4") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such path: /recordings/{file} (recordings are /recordings/{{stream}}.mp4)"),
        );
    };
    let (start, duration_s) = match range_query(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let duration_ms = (duration_s * 1000.0).round() as u64;
    let key = format!("{stream}\n{start}\n{duration_ms}");
    let plan = match api.plans.get(&key) {
        Some(p) => p,
        None => {
            let segments = api.recordings.segments(stream);
            let name = stream.to_owned();
            let planned = tokio::task::spawn_blocking(move || {
                playback::plan(&name, &segments, start, duration_ms)
            })
            .await;
            match planned {
                Ok(Ok(p)) => {
                    let p = Arc::new(p);
                    api.plans.put(key, p.clone());
                    p
                }
                Ok(Err(e @ PlanError::NotFound { .. })) => {
                    return error(StatusCode::NOT_FOUND, e.to_string())
                }
                Ok(Err(e @ PlanError::TooLong)) => {
                    return error(StatusCode::BAD_REQUEST, e.to_string())
                }
                Ok(Err(PlanError::Io(e))) => {
                    warn!(stream = %stream, error = %e, "cannot read a recording");
                    api.plans.clear();
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot read the recording: {e}"),
                    );
                }
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("planning failed: {e}"),
                    )
                }
            }
        }
    };
    let len = plan.len;
    let (status, first, last) = match byte_range(&headers, len) {
        Ok(None) => (StatusCode::OK, 0, len - 1),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Err(()) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let mut resp = Response::new(body(plan.clone(), first, last + 1));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(last + 1 - first));
    if let Ok(v) = HeaderValue::from_str(&plan.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if plan.live {
            "no-cache"
        } else {
            "private, max-age=600"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"{stream}-{}.mp4\"",
        utc::format_file_stem(plan.start)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp.into_response()
}

/// The bytes `[from, to)` of the planned file, read off the reactor a chunk at a time.
fn body(plan: Arc<Plan>, from: u64, to: u64) -> Body {
    struct Reader {
        plan: Arc<Plan>,
        pos: u64,
        to: u64,
        files: Vec<Option<std::fs::File>>,
    }
    let state = Reader {
        plan,
        pos: from,
        to,
        files: Vec::new(),
    };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut r = state?;
        if r.pos >= r.to {
            return None;
        }
        let n = ((r.to - r.pos) as usize).min(READ_CHUNK);
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(n);
            let res = r.plan.read(r.pos, n, &mut r.files, &mut out);
            (r, out, res)
        })
        .await;
        match read {
            Ok((mut r, out, Ok(()))) => {
                r.pos += out.len() as u64;
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), Some(r)))
            }
            Ok((_, _, Err(e))) => {
                // A segment deleted (retention) or damaged under a reader: the connection
                // ends short, which the client sees.
                warn!(error = %e, "recording read failed mid-response");
                Some((Err(e), None))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        byte_range(&h, len)
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(range("bytes=1000-1999", 5000), Ok(Some((1000, 1999))));
        assert_eq!(range("bytes=1000-", 5000), Ok(Some((1000, 4999))));
        assert_eq!(range("bytes=-500", 5000), Ok(Some((4500, 4999))));
        assert_eq!(range("bytes=4000-9999", 5000), Ok(Some((4000, 4999))));
        assert_eq!(range("bytes=-9999", 5000), Ok(Some((0, 4999))));
        assert_eq!(range("bytes=5000-", 5000), Err(()));
        assert_eq!(range("bytes=20-10", 5000), Err(()));
        assert_eq!(range("bytes=-0", 5000), Err(()));
        assert_eq!(range("bytes=x-1", 5000), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 5000), Ok(None));
        assert_eq!(range("items=0-1", 5000), Ok(None));
        assert_eq!(byte_range(&HeaderMap::new(), 5000), Ok(None));
    }

    #[test]
    fn range_queries() {
        assert_eq!(
            range_query(Some("start=1970-01-01T00:00:10Z&duration=6")),
            Ok((10_000, 6.0))
        );
        assert_eq!(
            range_query(Some("start=1970-01-01T01:00:10%2B01:00")),
            Ok((10_000, DEFAULT_DURATION_S))
        );
        for bad in [
            None,
            Some("duration=5"),
            Some("start=yesterday"),
            Some("start=1970-01-01T00:00:10Z&duration=0"),
            Some("start=1970-01-01T00:00:10Z&duration=1e9"),
        ] {
            assert!(range_query(bad).is_err(), "{bad:?}");
        }
    }
}
