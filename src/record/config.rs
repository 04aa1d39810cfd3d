//! `[[record]]`: which streams are recorded where, and for how long.

use std::path::PathBuf;

/// One `[[record]]` entry.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// A stream name, or `"*"` for every stream that publishes.
    pub stream: String,
    /// Files go to `<path>/<stream>/<UTC start>.mp4`. Relative to the working directory
    /// (to the config file's folder when loaded from a file).
    pub path: PathBuf,
    /// A new file at the first keyframe after this many seconds.
    pub segment_s: f64,
    /// A fragment (moof + mdat) at least this often: what a crash may lose.
    pub part_s: f64,
    /// fsync at least this often: what a power cut may lose.
    pub sync_s: f64,
    /// Delete segments that ended longer ago than this (0 = keep).
    pub keep_s: f64,
    /// Keep this entry's recordings under this many bytes, oldest first (0 = no limit).
    pub keep_bytes: u64,
    /// Delete this entry's oldest segments while the disk has less free than this.
    pub min_free_bytes: u64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            stream: String::new(),
            path: PathBuf::from("recordings"),
            segment_s: 600.0,
            part_s: 1.0,
            sync_s: 10.0,
            keep_s: 604_800.0,
            keep_bytes: 0,
            min_free_bytes: 0,
        }
    }
}

impl RecordConfig {
    /// Whether this entry records `stream`.
    pub fn matches(&self, stream: &str) -> bool {
        self.stream == "*" || self.stream == stream
    }

    pub fn validate(&self) -> Result<(), String> {
        let at = format!("[[record]] stream = {:?}", self.stream);
        if self.stream.is_empty() {
            return Err("[[record]] needs stream = \"<name>\" or \"*\"".into());
        }
        if self.stream != "*" && !is_recordable_name(&self.stream) {
            return Err(format!(
                "{at}: not a stream name that can be a folder (no '/', '\\', leading '.' or control characters)"
            ));
        }
        if self.path.as_os_str().is_empty() {
            return Err(format!("{at}: path is empty"));
        }
        for (key, v, min, max) in [
            ("segment_s", self.segment_s, 1.0, 86_400.0),
            ("part_s", self.part_s, 0.1, 60.0),
            ("sync_s", self.sync_s, 0.0, 3600.0),
            ("keep_s", self.keep_s, 0.0, 1e10),
        ] {
            if !(min..=max).contains(&v) {
                return Err(format!("{at}: {key} = {v} is outside {min}..={max}"));
            }
        }
        if self.part_s > self.segment_s {
            return Err(format!(
                "{at}: part_s = {} is above segment_s = {}",
                self.part_s, self.segment_s
            ));
        }
        Ok(())
    }
}

/// Whether a stream name can be a folder under a record path: `*` records whatever publishes,
/// and a publisher must not be able to write outside the path (`..`, `/`) or make names a
/// shell or a listing would show wrongly.
pub fn is_recordable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Checks all entries: each valid, and no stream recorded twice into the same path (the
/// two writers would fight over the same files).
pub fn validate_all(entries: &[RecordConfig]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        e.validate()?;
        if !seen.insert((e.stream.clone(), e.path.clone())) {
            return Err(format!(
                "[[record]] stream = {:?} with path = {:?} appears twice",
                e.stream, e.path
            ));
        }
    }
    let wildcard_paths: Vec<&PathBuf> = entries
        .iter()
        .filter(|e| e.stream == "*")
        .map(|e| &e.path)
        .collect();
    for e in entries.iter().filter(|e| e.stream != "*") {
        if wildcard_paths.contains(&&e.path) {
            return Err(format!(
                "[[record]] stream = {:?} and stream = \"*\" share path = {:?}: the stream would be recorded twice into the same files",
                e.stream, e.path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_escape_the_path() {
        for ok in ["door", "cam_1", "a b", "двор"] {
            assert!(is_recordable_name(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "a\nb", "../../etc"] {
            assert!(!is_recordable_name(bad), "{bad}");
        }
    }
}
