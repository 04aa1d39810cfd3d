//! `GET /snapshot/{name}.jpg`: a JPEG of the stream's latest keyframe at the stream's size,
//! for dashboards.
//!
//! The keyframe is the one the stream's frame saver starts its GOP with (see
//! [`Hub::latest_keyframe`](crate::hub::Hub::latest_keyframe)); it is decoded on request on the
//! blocking pool (openh264, then a JPEG encoder, in `codecs::h264`), never on the reactor.
//! Bounds: at most [`DECODERS`] decodes at a time (others wait up to [`WAIT`], then get 503);
//! a stream's JPEG is reused while its keyframe is unchanged or younger than [`FRESH_FOR`]; at
//! most [`MAX_CACHED`] JPEGs are kept, the oldest going first.
//!
//! Answers: 200 `image/jpeg`; 404 no such stream; 503 with `Retry-After` while the stream has
//! no keyframe (nothing published yet, or an on-demand source still connecting) or all
//! decoders are busy; 422 when the stream's video is not H.264 or a format the decoder refuses
//! (10-bit, 4:2:2, over 4096x2304); 500 when the keyframe does not decode.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use codecs::h264::H264Error;
use tokio::sync::Semaphore;

use super::error;
use crate::hub::{Hub, LatestKeyframe};
use crate::media::Codec;

/// Simultaneous decodes (each takes one core for a few to tens of milliseconds).
pub const DECODERS: usize = 2;
/// How long a request waits for a decoder before 503.
pub const WAIT: Duration = Duration::from_secs(5);
/// A JPEG of an older keyframe is still served for this long.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Most JPEGs kept.
pub const MAX_CACHED: usize = 64;
/// JPEG quality (1..=100).
pub const QUALITY: u8 = 85;

struct Cached {
    /// Identifies the keyframe it shows: (position in the stream, timestamp).
    keyframe: (u64, u32),
    made: Instant,
    jpeg: Bytes,
}

/// The snapshot cache and the decoder slots.
pub struct Snapshots {
    cache: Mutex<HashMap<String, Cached>>,
    decoders: Semaphore,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            cache: Mutex::new(HashMap::new()),
            decoders: Semaphore::new(DECODERS),
        }
    }
}

fn keyframe_id(k: &LatestKeyframe) -> (u64, u32) {
    (k.keyframe.position, k.keyframe.timestamp)
}

impl Snapshots {
    fn cached(&self, name: &str, keyframe: (u64, u32)) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let c = cache.get(name)?;
        (c.keyframe == keyframe || c.made.elapsed() < FRESH_FOR).then(|| c.jpeg.clone())
    }

    fn store(&self, name: &str, keyframe: (u64, u32), jpeg: Bytes) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.contains_key(name) && cache.len() >= MAX_CACHED {
            let oldest = cache
                .iter()
                .min_by_key(|(_, c)| c.made)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                cache.remove(&k);
            }
        }
        cache.insert(
            name.to_owned(),
            Cached {
                keyframe,
                made: Instant::now(),
                jpeg,
            },
        );
    }

    /// The response for `GET /snapshot/{file}` (`file` = `<stream>.jpg`).
    pub async fn respond(&self, hub: &Hub, file: &str) -> Response {
        let Some(name) = file.strip_suffix(".jpg") else {
            return error(
                StatusCode::NOT_FOUND,
                format!("no such snapshot: {file:?} (ask for /snapshot/<stream>.jpg)"),
            );
        };
        let Some(latest) = hub.latest_keyframe(name) else {
            if hub.stream_stats(name).is_none() {
                return error(StatusCode::NOT_FOUND, format!("no stream named {name:?}"));
            }
            return busy(format!("stream {name:?} has no keyframe yet"));
        };
        if latest.video_codec != Some(Codec::Avc) {
            let codec = latest
                .video_codec
                .map_or("unknown".into(), |c| c.to_string());
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("stream {name:?} carries {codec} video; snapshots need H.264"),
            );
        }
        let id = keyframe_id(&latest);
        if let Some(jpeg) = self.cached(name, id) {
            return jpeg_response(jpeg);
        }
        let Ok(Ok(_slot)) = tokio::time::timeout(WAIT, self.decoders.acquire()).await else {
            return busy("every snapshot decoder is busy".into());
        };
        // Another request may have made it while this one waited.
        if let Some(jpeg) = self.cached(name, id) {
            return jpeg_response(jpeg);
        }
        let started = Instant::now();
        let header = latest.header.payload.to_vec();
        let keyframe = latest.keyframe.payload.to_vec();
        let made = tokio::task::spawn_blocking(move || {
            // Both bodies start with the 5-byte FLV AVC header.
            let (Some(record), Some(nalus)) = (header.get(5..), keyframe.get(5..)) else {
                return Err(H264Error::Malformed("truncated H.264 tag body"));
            };
            codecs::h264::snapshot_jpeg(record, nalus, QUALITY, Default::default())
        })
        .await;
        match made {
            Ok(Ok(shot)) => {
                tracing::debug!(stream = %name, width = shot.width, height = shot.height, bytes = shot.jpeg.len(), ms = started.elapsed().as_millis() as u64, "snapshot made");
                let jpeg = Bytes::from(shot.jpeg);
                self.store(name, id, jpeg.clone());
                jpeg_response(jpeg)
            }
            Ok(Err(e @ (H264Error::Unsupported(_) | H264Error::TooLarge { .. }))) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the video of {name:?} cannot be decoded here: {e}"),
            ),
            Ok(Err(e)) => {
                tracing::warn!(stream = %name, error = %e, "snapshot: the latest keyframe does not decode");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the latest keyframe of {name:?} does not decode: {e}"),
                )
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("snapshot decoder failed: {e}"),
            ),
        }
    }
}

fn busy(message: String) -> Response {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn jpeg_response(jpeg: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static("max-age=1")),
        ],
        jpeg,
    )
        .into_response()
}
