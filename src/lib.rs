//! moment: a live video server. RTSP cameras, RTMP publishers and looped files in; RTMP players
//! out; every payload stored once in a stream's pages (see [`pages`]).

pub mod config;
pub mod fmp4;
pub mod hls;
pub mod http;
pub mod hub;
pub mod media;
pub mod pages;
pub mod prefetch;
pub mod record;
pub mod rendition;
pub mod rtmp;
pub mod rtsp;
pub mod server;
pub mod source;
pub mod status;
pub mod transcode;
