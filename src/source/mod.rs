//! Media sources the server runs itself (as opposed to publishers that connect to it): for
//! now a looped MP4 file. A source turns its input into [`Frame`](crate::media::Frame)s and
//! pushes them through a [`PublisherHandle`](crate::hub::PublisherHandle); pacing uses
//! `tokio::time`, so tests run on paused time.

pub mod file;

pub use file::{FileSource, SourceError};

/// The demo stream compiled into the binary (`fixtures/demo.mp4`: 6 s of H.264 baseline
/// 640x360 + AAC, made by `fixtures/make-fixtures.sh`), served by the default config.
pub const DEMO_MP4: &[u8] = include_bytes!("../../fixtures/demo.mp4");
