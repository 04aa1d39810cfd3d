//! The server's configuration: a TOML file (`--config`), or the embedded default
//! (`src/default.toml`, printed by `--print-config`). Unknown keys and wrong values are errors
//! that name the key and its line; every default is documented in the embedded file, which a
//! test keeps equal to the defaults here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hub::HubConfig;
use crate::pages::{PageMode, PoolConfig};
use crate::transcode::AudioConfig;

/// The embedded default configuration, comments included.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub rtmp: RtmpConfig,
    #[serde(default)]
    pub pages: PagesConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub hub: HubConfig,
    /// What happens to audio players cannot use (Speex, G.711).
    #[serde(default)]
    pub audio: AudioConfig,
    /// Looped files, each published as `live/<name>`.
    #[serde(default)]
    pub file: Vec<FileConfig>,
    /// RTSP cameras, each published as `live/<name>` (see [`crate::rtsp`]).
    #[serde(default)]
    pub camera: Vec<crate::rtsp::CameraConfig>,
    /// Other streams' video at another size and bit rate, each published as `live/<name>`
    /// while someone plays it (see [`crate::rendition`]).
    #[serde(default)]
    pub rendition: Vec<crate::rendition::RenditionConfig>,
    /// Low-latency HLS on the [http] listener (see [`crate::hls`]).
    #[serde(default)]
    pub hls: crate::hls::HlsConfig,
    /// Streams recorded to disk (see [`crate::record`]).
    #[serde(default)]
    pub record: Vec<crate::record::RecordConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub chunk_size: u32,
    pub max_message_bytes: usize,
    pub handshake_timeout_s: u64,
    pub idle_timeout_s: u64,
    pub send_timeout_s: u64,
    pub write_delay_ms: u64,
    /// When set, publishing needs `?key=<this>` on the stream name; playing stays open.
    pub publish_key: Option<String>,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1935)),
            max_connections: 2000,
            chunk_size: 4096,
            max_message_bytes: 4 << 20,
            handshake_timeout_s: 10,
            idle_timeout_s: 30,
            send_timeout_s: 20,
            write_delay_ms: 40,
            publish_key: None,
        }
    }
}

/// The HTTP API, metrics and health check (`src/http/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether to serve HTTP at all (default: true).
    pub enabled: bool,
    /// Default 127.0.0.1:8080. A non-loopback address needs `token`.
    pub listen: SocketAddr,
    /// When set, `/api/...` and `/metrics` need `Authorization: Bearer <token>`; `/healthz`
    /// stays open.
    pub token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    pub mode: PageMode,
    pub page_size: usize,
    pub global_budget_bytes: u64,
    pub stream_budget_bytes: u64,
    pub max_pooled_pages: usize,
}

impl Default for PagesConfig {
    fn default() -> Self {
        let pool = PoolConfig::default();
        PagesConfig {
            mode: pool.mode,
            page_size: pool.page_size,
            global_budget_bytes: pool.global_budget_bytes,
            stream_budget_bytes: 64 << 20,
            max_pooled_pages: pool.max_pooled_pages,
        }
    }
}

impl PagesConfig {
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            mode: self.mode,
            page_size: self.page_size,
            global_budget_bytes: self.global_budget_bytes,
            max_pooled_pages: self.max_pooled_pages,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Played as `rtmp://HOST/live/<name>`.
    pub name: String,
    /// An MP4 with H.264 and/or AAC; omitted: the demo compiled into the binary.
    pub path: Option<PathBuf>,
}

/// A configuration that could not be used, with what and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        Config::parse(DEFAULT_TOML, "embedded default").expect("the embedded default is valid")
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        // Relative file paths are relative to the config file, as a user reading it expects.
        let base = path.parent().unwrap_or(Path::new("."));
        for f in &mut config.file {
            if let Some(p) = &f.path {
                if p.is_relative() && !p.exists() {
                    f.path = Some(base.join(p));
                }
            }
        }
        // Recording folders too: a server started from another folder (a service) must not
        // write somewhere else.
        for r in &mut config.record {
            if r.path.is_relative() {
                r.path = base.join(&r.path);
            }
        }
        Ok(config)
    }

    /// Parses and checks a configuration; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        // toml's message names the key and shows the line.
        let config: Config = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.pages
            .pool()
            .validate()
            .map_err(|e| format!("[pages] {e}"))?;
        self.audio.validate()?;
        let r = &self.rtmp;
        if !(128..=0xFF_FFFF).contains(&r.chunk_size) {
            return Err(format!(
                "[rtmp] chunk_size = {} is outside 128..=16777215",
                r.chunk_size
            ));
        }
        if !(1024..=crate::rtmp::MAX_RTMP_MESSAGE_LEN).contains(&r.max_message_bytes) {
            return Err(format!(
                "[rtmp] max_message_bytes = {} is outside 1024..=16777215",
                r.max_message_bytes
            ));
        }
        if r.max_connections == 0 {
            return Err("[rtmp] max_connections must be at least 1".into());
        }
        if r.write_delay_ms > 1000 {
            return Err(format!(
                "[rtmp] write_delay_ms = {} is above 1000",
                r.write_delay_ms
            ));
        }
        let h = &self.http;
        if h.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err("[http] token is empty: set a token or remove the key".into());
        }
        if h.enabled && h.token.is_none() && !h.listen.ip().is_loopback() {
            return Err(format!(
                "[http] listen = \"{}\" is not a loopback address and no token is set: the API \
                 would be open to the network; set [http] token, or listen on 127.0.0.1",
                h.listen
            ));
        }
        let p = &self.hub.player;
        if p.soft_bytes > p.hard_bytes {
            return Err(format!(
                "[hub.player] soft_bytes = {} is above hard_bytes = {}",
                p.soft_bytes, p.hard_bytes
            ));
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.file {
            if f.name.is_empty() || f.name.contains(['/', '?', ' ']) {
                return Err(format!("[[file]] name = {:?} is not a stream name", f.name));
            }
            if !names.insert(f.name.clone()) {
                return Err(format!("[[file]] name = {:?} appears twice", f.name));
            }
        }
        for c in &self.camera {
            c.validate()?;
            if !names.insert(c.name.clone()) {
                return Err(format!(
                    "[[camera]] name = {:?} is already a stream name",
                    c.name
                ));
            }
        }
        crate::rendition::validate_all(&self.rendition, &mut names)?;
        crate::record::config::validate_all(&self.record)?;
        self.hls.validate()?;
        if !self.record.is_empty() && !self.http.enabled {
            tracing::debug!("recording without [http]: no playback API");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_the_code_defaults() {
        let expected = Config {
            rtmp: RtmpConfig::default(),
            pages: PagesConfig::default(),
            http: HttpConfig::default(),
            hub: HubConfig::default(),
            audio: AudioConfig::default(),
            file: vec![FileConfig {
                name: "demo".into(),
                path: None,
            }],
            camera: Vec::new(),
            rendition: Vec::new(),
            hls: crate::hls::HlsConfig::default(),
            record: Vec::new(),
        };
        assert_eq!(Config::embedded(), expected);
    }

    #[test]
    fn an_empty_file_is_all_defaults_without_files() {
        let c = Config::parse("", "test").unwrap();
        assert_eq!(c.rtmp, RtmpConfig::default());
        assert!(c.file.is_empty());
    }

    #[test]
    fn audio_policy_per_stream() {
        let c = Config::parse(
            "[audio]\ntranscode = \"aac\"\n[audio.streams]\nlegacy = \"off\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.audio.policy("legacy"), crate::transcode::AudioPolicy::Off);
        assert_eq!(c.audio.policy("door"), crate::transcode::AudioPolicy::Aac);
        let err = Config::parse("[audio]\nsample_rate = 22050\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sample_rate"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it_and_its_line() {
        let err = Config::parse("[rtmp]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
    }

    #[test]
    fn http_on_a_network_address_needs_a_token() {
        let err = Config::parse("[http]\nlisten = \"0.0.0.0:8080\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[http]") && err.contains("token"), "{err}");
        let c = Config::parse("[http]\nlisten = \"0.0.0.0:8080\"\ntoken = \"s3\"\n", "t").unwrap();
        assert_eq!(c.http.token.as_deref(), Some("s3"));
        Config::parse("[http]\nlisten = \"0.0.0.0:8080\"\nenabled = false\n", "t").unwrap();
        Config::parse("[http]\nlisten = \"[::1]:0\"\n", "t").unwrap();
        assert!(Config::parse("[http]\ntoken = \" \"\n", "t").is_err());
    }

    #[test]
    fn camera_sections_take_defaults_and_check_values() {
        let c = Config::parse(
            "[[camera]]\nname = \"door\"\nurl = \"rtsp://u:p@192.0.2.10:554/stream1\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.camera,
            vec![crate::rtsp::CameraConfig::new(
                "door",
                "rtsp://u:p@192.0.2.10:554/stream1"
            )]
        );
        assert_eq!(c.camera[0].redacted_url(), "rtsp://192.0.2.10:554/stream1");
        let c = Config::parse(
            "[[camera]]\nname = \"a\"\nurl = \"rtsp://h/x\"\ntransport = \"udp\"\non_demand = true\nlinger_s = 2\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.camera[0].transport, crate::rtsp::RtpTransport::Udp);
        assert!(c.camera[0].on_demand);
        for (bad, key) in [
            ("transport = \"sctp\"", "transport"),
            ("url = \"http://h/x\"", "rtsp://"),
            ("stall_timeout_s = -1", "stall_timeout_s"),
            ("backoff_min_s = 40", "backoff_min_s"),
            ("colour = 1", "colour"),
        ] {
            let text = if bad.starts_with("url") {
                format!("[[camera]]\nname = \"a\"\n{bad}\n")
            } else {
                format!("[[camera]]\nname = \"a\"\nurl = \"rtsp://h/x\"\n{bad}\n")
            };
            let err = Config::parse(&text, "t").unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        let err = Config::parse(
            "[[file]]\nname = \"a\"\n[[camera]]\nname = \"a\"\nurl = \"rtsp://h/x\"\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("already"), "{err}");
    }

    #[test]
    fn rendition_sections_take_defaults_and_check_values() {
        let c = Config::parse(
            "[[rendition]]\nsource = \"door\"\nname = \"door_360p\"\nheight = 360\n",
            "t",
        )
        .unwrap();
        let mut expected = crate::rendition::RenditionConfig::new("door", "door_360p");
        expected.height = Some(360);
        assert_eq!(c.rendition, vec![expected]);
        let c = Config::parse(
            "[[rendition]]\nsource = \"door\"\nname = \"small\"\nwidth = 640\nheight = 360\nbitrate_kbps = 600\nkeyframe_interval_s = 2\nlinger_s = 0\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.rendition[0].width, Some(640));
        assert_eq!(c.rendition[0].linger_s, 0.0);
        for (bad, key) in [
            ("width = 8", "width"),
            ("height = 99999", "height"),
            ("bitrate_kbps = 1", "bitrate_kbps"),
            ("keyframe_interval_s = 0", "keyframe_interval_s"),
            ("linger_s = -1", "linger_s"),
            ("fps = 30", "fps"),
        ] {
            let text = format!("[[rendition]]\nsource = \"door\"\nname = \"small\"\n{bad}\n");
            let err = Config::parse(&text, "t").unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        for (text, what) in [
            ("[[rendition]]\nsource = \"a\"\nname = \"a\"\n", "itself"),
            ("[[file]]\nname = \"a\"\n[[rendition]]\nsource = \"b\"\nname = \"a\"\n", "already"),
            (
                "[[rendition]]\nsource = \"a\"\nname = \"b\"\n[[rendition]]\nsource = \"b\"\nname = \"c\"\n",
                "itself a rendition",
            ),
            ("[[rendition]]\nname = \"b\"\n", "source"),
        ] {
            let err = Config::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err}");
        }
    }

    #[test]
    fn record_sections_take_defaults_and_check_values() {
        let c = Config::parse("[[record]]\nstream = \"door\"\n", "t").unwrap();
        let expected = crate::record::RecordConfig {
            stream: "door".into(),
            ..Default::default()
        };
        assert_eq!(c.record, vec![expected]);
        assert_eq!(c.record[0].segment_s, 600.0);
        assert_eq!(c.record[0].keep_s, 604_800.0);
        for (text, what) in [
            ("[[record]]\npath = \"r\"\n", "stream"),
            ("[[record]]\nstream = \"../x\"\n", "folder"),
            ("[[record]]\nstream = \"a\"\nsegment_s = 0\n", "segment_s"),
            ("[[record]]\nstream = \"a\"\npart_s = 0.01\n", "part_s"),
            (
                "[[record]]\nstream = \"a\"\npart_s = 5\nsegment_s = 2\n",
                "above segment_s",
            ),
            ("[[record]]\nstream = \"a\"\nkeep_s = -1\n", "keep_s"),
            (
                "[[record]]\nstream = \"a\"\n[[record]]\nstream = \"a\"\n",
                "twice",
            ),
            (
                "[[record]]\nstream = \"a\"\n[[record]]\nstream = \"*\"\n",
                "share path",
            ),
            ("[[record]]\nstream = \"a\"\nkeep_days = 3\n", "keep_days"),
        ] {
            let err = Config::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err}");
        }
        Config::parse(
            "[[record]]\nstream = \"a\"\n[[record]]\nstream = \"*\"\npath = \"all\"\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn wrong_value_is_an_error_naming_the_key() {
        let err = Config::parse("[rtmp]\nlisten = \"nowhere\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = Config::parse("[pages]\nmode = \"sparse\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mode") || err.contains("sparse"), "{err}");
        let err = Config::parse("[pages]\npage_size = 10\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("page_size"), "{err}");
        let err = Config::parse("[[file]]\nname = \"a\"\n[[file]]\nname = \"a\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }
}
