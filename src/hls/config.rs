//! `[hls]`: low-latency HLS on the `[http]` listener.

/// The `[hls]` section.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Served on the [http] listener.
    pub enabled: bool,
    /// LL-HLS part target.
    pub part_ms: u64,
    /// Segment target (cut at keyframes).
    pub segment_s: f64,
    /// Segments kept in the playlist.
    pub segments: usize,
    /// A stream's muxer stops this long after its last request.
    pub idle_s: f64,
    /// Most bytes a stream's muxer keeps (its segments and parts); the oldest segments go
    /// first, whatever `segments` says.
    pub max_stream_bytes: usize,
    /// Most playlist requests waiting for a future part (blocking reload), per stream and in
    /// total; more are answered 503.
    pub max_blocking_per_stream: usize,
    pub max_blocking_total: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            enabled: true,
            part_ms: 200,
            segment_s: 1.0,
            segments: 7,
            idle_s: 60.0,
            max_stream_bytes: 64 << 20,
            max_blocking_per_stream: 256,
            max_blocking_total: 2048,
        }
    }
}

impl HlsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(50..=5000).contains(&self.part_ms) {
            return Err(format!(
                "[hls] part_ms = {} is outside 50..=5000",
                self.part_ms
            ));
        }
        if !(0.2..=60.0).contains(&self.segment_s) || self.segment_s * 1000.0 < self.part_ms as f64
        {
            return Err(format!(
                "[hls] segment_s = {} must be within 0.2..=60 and at least part_ms",
                self.segment_s
            ));
        }
        if !(2..=100).contains(&self.segments) {
            return Err(format!(
                "[hls] segments = {} is outside 2..=100",
                self.segments
            ));
        }
        if !(1.0..=86_400.0).contains(&self.idle_s) {
            return Err(format!(
                "[hls] idle_s = {} is outside 1..=86400",
                self.idle_s
            ));
        }
        if self.max_stream_bytes < 1 << 20 {
            return Err("[hls] max_stream_bytes must be at least 1 MiB".into());
        }
        if self.max_blocking_per_stream == 0 || self.max_blocking_total == 0 {
            return Err(
                "[hls] max_blocking_per_stream and max_blocking_total must be at least 1".into(),
            );
        }
        Ok(())
    }
}
