//! The server as a user first meets it: the embedded default config and its demo stream.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{ffprobe, Server, DEMO_CONFIG};

/// Asserts ffprobe sees the demo: H.264 640x360 and AAC 48 kHz stereo.
fn assert_is_demo(url: &str) {
    let streams = ffprobe(url, Duration::from_secs(20));
    let video = streams
        .iter()
        .find(|s| s.codec_type == "video")
        .unwrap_or_else(|| panic!("no video stream in {streams:?}"));
    assert_eq!(video.codec_name, "h264");
    assert_eq!((video.width, video.height), (Some(640), Some(360)));
    let audio = streams
        .iter()
        .find(|s| s.codec_type == "audio")
        .unwrap_or_else(|| panic!("no audio stream in {streams:?}"));
    assert_eq!(audio.codec_name, "aac");
    assert_eq!(audio.sample_rate, Some(48000));
    assert_eq!(audio.channels, Some(2));
}

#[test]
fn demo_file_without_path_is_the_embedded_demo() {
    let server = Server::start(DEMO_CONFIG);
    assert_is_demo(&server.url("demo"));
    server.assert_alive("ffprobe");
}

#[test]
fn no_arguments_serves_the_demo_on_port_1935() {
    // The embedded default listens on 127.0.0.1:1935, which another program may hold.
    match TcpListener::bind("127.0.0.1:1935") {
        Ok(l) => drop(l),
        Err(e) => {
            eprintln!(
                "SKIPPED no_arguments_serves_the_demo_on_port_1935: 127.0.0.1:1935 is busy ({e})"
            );
            return;
        }
    }
    let server = match Server::try_start(None, &[]) {
        Ok(s) => s,
        Err(e) if e.log.contains("cannot listen for RTMP on 127.0.0.1:1935") => {
            // Taken between our check and the server's bind.
            eprintln!("SKIPPED no_arguments_serves_the_demo_on_port_1935: port taken meanwhile");
            return;
        }
        Err(e) => panic!("moment without arguments did not start: {e:?}"),
    };
    assert_eq!(server.addr.to_string(), "127.0.0.1:1935");
    assert_is_demo("rtmp://127.0.0.1:1935/live/demo");
}
