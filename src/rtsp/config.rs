//! `[[camera]]` sections: one RTSP camera each, published as `live/<name>`.

use serde::Deserialize;

/// How RTP travels from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RtpTransport {
    /// Interleaved TCP first; UDP when the camera refuses it (461 Unsupported transport, or
    /// any refused SETUP). The default. What worked is tried first on reconnects.
    #[default]
    Auto,
    /// Interleaved in the RTSP TCP connection (passes firewalls and NAT).
    Tcp,
    /// RTP/RTCP on UDP port pairs, with a reorder buffer and RTCP receiver reports.
    Udp,
}

impl std::fmt::Display for RtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RtpTransport::Auto => "auto",
            RtpTransport::Tcp => "tcp",
            RtpTransport::Udp => "udp",
        })
    }
}

/// One camera. Every key but `name` and `url` has a default, documented in `default.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Played as `rtmp://HOST/live/<name>`.
    pub name: String,
    /// `rtsp://[user:pass@]host[:port]/path`; credentials are taken out of the URL and sent
    /// only when the camera asks (basic or digest), never logged.
    pub url: String,
    /// `auto` (default), `tcp` or `udp`.
    #[serde(default)]
    pub transport: RtpTransport,
    /// UDP: packets held behind a missing one so that reordered packets are put back in
    /// place (0 turns reordering off). Default 64.
    #[serde(default = "defaults::reorder_packets")]
    pub reorder_packets: usize,
    /// UDP: the longest a packet waits for a missing one before it is given up as lost, ms.
    /// Default 100.
    #[serde(default = "defaults::reorder_ms")]
    pub reorder_ms: u64,
    /// Default false: connect at start and stay connected. True: connect only while the
    /// stream has players.
    #[serde(default)]
    pub on_demand: bool,
    /// On demand: seconds the camera stays connected after the last player left. Default 10.
    #[serde(default = "defaults::linger_s")]
    pub linger_s: f64,
    /// Seconds without a single frame after which the session is dropped and reopened.
    /// Default 10.
    #[serde(default = "defaults::stall_timeout_s")]
    pub stall_timeout_s: f64,
    /// Seconds a new session may take from the first byte sent to its first keyframe
    /// (DESCRIBE, SETUP, PLAY and the wait for an IDR); longer is a failed attempt. Default 20.
    #[serde(default = "defaults::connect_timeout_s")]
    pub connect_timeout_s: f64,
    /// Reconnect delay after the first failure, in seconds; doubles per failure (with ±25 %
    /// jitter) up to `backoff_max_s`. Defaults 0.5 and 30.
    #[serde(default = "defaults::backoff_min_s")]
    pub backoff_min_s: f64,
    #[serde(default = "defaults::backoff_max_s")]
    pub backoff_max_s: f64,
}

pub(crate) mod defaults {
    pub fn reorder_packets() -> usize {
        64
    }
    pub fn reorder_ms() -> u64 {
        100
    }
    pub fn linger_s() -> f64 {
        10.0
    }
    pub fn stall_timeout_s() -> f64 {
        10.0
    }
    pub fn connect_timeout_s() -> f64 {
        20.0
    }
    pub fn backoff_min_s() -> f64 {
        0.5
    }
    pub fn backoff_max_s() -> f64 {
        30.0
    }
}

impl CameraConfig {
    /// A camera with every optional key at its default.
    pub fn new(name: &str, url: &str) -> CameraConfig {
        CameraConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            transport: RtpTransport::default(),
            reorder_packets: defaults::reorder_packets(),
            reorder_ms: defaults::reorder_ms(),
            on_demand: false,
            linger_s: defaults::linger_s(),
            stall_timeout_s: defaults::stall_timeout_s(),
            connect_timeout_s: defaults::connect_timeout_s(),
            backoff_min_s: defaults::backoff_min_s(),
            backoff_max_s: defaults::backoff_max_s(),
        }
    }

    /// Checks values that serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let c = format!("[[camera]] name = {:?}", self.name);
        if self.name.is_empty() || self.name.contains(['/', '?', ' ']) {
            return Err(format!("{c}: not a stream name"));
        }
        let url = url::Url::parse(&self.url).map_err(|e| format!("{c}: url: {e}"))?;
        if url.scheme() != "rtsp" {
            return Err(format!("{c}: url must start with rtsp://"));
        }
        if url.host_str().is_none() {
            return Err(format!("{c}: url has no host"));
        }
        for (key, v, min) in [
            ("linger_s", self.linger_s, 0.0),
            ("stall_timeout_s", self.stall_timeout_s, 0.5),
            ("connect_timeout_s", self.connect_timeout_s, 0.5),
            ("backoff_min_s", self.backoff_min_s, 0.01),
            ("backoff_max_s", self.backoff_max_s, 0.01),
        ] {
            if !(v.is_finite() && (min..=86_400.0).contains(&v)) {
                return Err(format!("{c}: {key} = {v} is outside {min}..=86400"));
            }
        }
        if self.reorder_packets > 1024 {
            return Err(format!(
                "{c}: reorder_packets = {} is above 1024",
                self.reorder_packets
            ));
        }
        if self.reorder_ms > 2000 {
            return Err(format!(
                "{c}: reorder_ms = {} is above 2000",
                self.reorder_ms
            ));
        }
        if self.backoff_min_s > self.backoff_max_s {
            return Err(format!(
                "{c}: backoff_min_s = {} is above backoff_max_s = {}",
                self.backoff_min_s, self.backoff_max_s
            ));
        }
        Ok(())
    }

    /// The URL without credentials, for logs and the status API.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// `url` with any user name and password removed.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_owned(),
    }
}
