//! `[rtmp] publish_key`: publishing needs `?key=` with the right key on the stream name;
//! playing stays open.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ffprobe, fixture, Proc, Server};

fn publish_once(url: &str) -> common::Finished {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re", "-t", "3", "-i"])
        .arg(fixture("h264-baseline-aac.mp4"))
        .args(["-c", "copy", "-f", "flv", url]);
    let mut p = Proc::spawn("ffmpeg publisher", cmd, Duration::from_secs(30));
    p.wait(Duration::from_secs(20))
}

#[test]
fn publishing_needs_the_key_and_playing_does_not() {
    let server = Server::start(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\npublish_key = \"s3cret\"\n\n[[file]]\nname = \"demo\"\n",
    );
    let url = server.url("cam");

    let none = publish_once(&url);
    assert!(!none.success(), "published without a key");
    assert!(server.wait_log("publish key required", Duration::from_secs(5)));
    let wrong = publish_once(&format!("{url}?key=guess"));
    assert!(!wrong.success(), "published with a wrong key");
    assert!(server.wait_log("wrong publish key", Duration::from_secs(5)));
    assert!(
        !server.log().contains("guess"),
        "the key a publisher gave is not logged"
    );

    let good = publish_once(&format!("{url}?key=s3cret"));
    assert!(good.success(), "the right key was refused: {}", good.stderr);
    assert!(server.log().contains("publish started stream=cam"));
    assert!(!server.log().contains("s3cret"), "keys are not logged");

    // Playing needs no key.
    let streams = ffprobe(&server.url("demo"), Duration::from_secs(20));
    assert!(
        streams.iter().any(|s| s.codec_name == "h264"),
        "{streams:?}"
    );
}
