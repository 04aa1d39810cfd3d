//! `[[rendition]]`: another stream's video at another size and bit rate.

use std::time::Duration;

use serde::Deserialize;

/// One `[[rendition]]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    /// The stream whose video is re-encoded: a camera, a publisher or a file.
    pub source: String,
    /// Played as `rtmp://HOST/live/<name>`.
    pub name: String,
    /// Output size in pixels. With one of the two omitted the source's aspect is kept; with
    /// both omitted the source's size is kept (a lower bit rate only). Rounded down to even.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Video bit rate in kbit/s. Default 600.
    #[serde(default = "defaults::bitrate_kbps")]
    pub bitrate_kbps: u32,
    /// Seconds between keyframes. Default 2.
    #[serde(default = "defaults::keyframe_interval_s")]
    pub keyframe_interval_s: f64,
    /// Seconds the rendition keeps running after its last player left (a player that
    /// reconnects at once finds it warm). Default 5.
    #[serde(default = "defaults::linger_s")]
    pub linger_s: f64,
}

mod defaults {
    pub fn bitrate_kbps() -> u32 {
        600
    }
    pub fn keyframe_interval_s() -> f64 {
        2.0
    }
    pub fn linger_s() -> f64 {
        5.0
    }
}

/// Largest output width and height accepted (4K UHD).
pub const MAX_WIDTH: u32 = 3840;
pub const MAX_HEIGHT: u32 = 2160;

impl RenditionConfig {
    /// A rendition with every optional key at its default.
    pub fn new(source: &str, name: &str) -> RenditionConfig {
        RenditionConfig {
            source: source.to_owned(),
            name: name.to_owned(),
            width: None,
            height: None,
            bitrate_kbps: defaults::bitrate_kbps(),
            keyframe_interval_s: defaults::keyframe_interval_s(),
            linger_s: defaults::linger_s(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let r = format!("[[rendition]] name = {:?}", self.name);
        let is_stream_name = |s: &str| !s.is_empty() && !s.contains(['/', '?', ' ']);
        if !is_stream_name(&self.name) {
            return Err(format!("{r}: not a stream name"));
        }
        if !is_stream_name(&self.source) {
            return Err(format!(
                "{r}: source = {:?} is not a stream name",
                self.source
            ));
        }
        if self.source == self.name {
            return Err(format!("{r}: source is the rendition itself"));
        }
        for (key, value, max) in [
            ("width", self.width, MAX_WIDTH),
            ("height", self.height, MAX_HEIGHT),
        ] {
            if let Some(v) = value {
                if !(16..=max).contains(&v) {
                    return Err(format!("{r}: {key} = {v} is outside 16..={max}"));
                }
            }
        }
        if !(50..=50_000).contains(&self.bitrate_kbps) {
            return Err(format!(
                "{r}: bitrate_kbps = {} is outside 50..=50000",
                self.bitrate_kbps
            ));
        }
        if !(0.5..=20.0).contains(&self.keyframe_interval_s) {
            return Err(format!(
                "{r}: keyframe_interval_s = {} is outside 0.5..=20",
                self.keyframe_interval_s
            ));
        }
        if !(0.0..=3600.0).contains(&self.linger_s) {
            return Err(format!(
                "{r}: linger_s = {} is outside 0..=3600",
                self.linger_s
            ));
        }
        Ok(())
    }

    pub fn keyframe_interval(&self) -> Duration {
        Duration::from_secs_f64(self.keyframe_interval_s)
    }

    pub fn linger(&self) -> Duration {
        Duration::from_secs_f64(self.linger_s)
    }
}

/// Checks the renditions against each other and against the other stream names: names are
/// unique, and a rendition's source is not a rendition (a chain could keep itself running).
pub fn validate_all(
    renditions: &[RenditionConfig],
    names: &mut std::collections::HashSet<String>,
) -> Result<(), String> {
    for r in renditions {
        r.validate()?;
        if !names.insert(r.name.clone()) {
            return Err(format!(
                "[[rendition]] name = {:?} is already a stream name",
                r.name
            ));
        }
    }
    for r in renditions {
        if renditions.iter().any(|other| other.name == r.source) {
            return Err(format!(
                "[[rendition]] name = {:?}: source = {:?} is itself a rendition; use its source",
                r.name, r.source
            ));
        }
    }
    Ok(())
}
