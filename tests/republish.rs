//! One stream name, several publishers over time: a new publisher's codecs replace the old
//! ones for every player (no stale sequence header), and a second simultaneous publisher is
//! refused without disturbing the first.

mod common;

use std::time::{Duration, Instant};

use common::rtmp::Client;
use common::{ffprobe, publish, Kind, Player, Server};

/// Speex passes through here (no transcoding to AAC), so that the republish really changes the
/// audio codec players see.
const CONFIG: &str = "[rtmp]\nlisten = \"127.0.0.1:0\"\n[audio]\ntranscode = \"off\"\n";

#[test]
fn republish_with_another_audio_codec() {
    let server = Server::start(CONFIG);
    let url = server.url("swap");
    let mut first = publish("h264-baseline-aac.mp4", &url, Duration::from_secs(60));
    assert!(server.wait_log("publish started stream=swap", Duration::from_secs(10)));

    // A player connected throughout both publishers.
    let throughout = Client::play(server.addr, "swap").into_recorder();
    std::thread::sleep(Duration::from_secs(3));
    let before = throughout.media();
    assert!(
        before
            .iter()
            .any(|m| m.type_id == 8 && m.codec() == Some(10)),
        "the first publisher's AAC never reached the player"
    );

    // The first publisher stops the way a user stops ffmpeg.
    let stopped = server.log_count("publish stopped stream=swap");
    first.signal(libc::SIGINT);
    let fin = first.wait(Duration::from_secs(10));
    assert!(!fin.timed_out(), "the first publisher did not stop");
    assert!(
        server.wait_log_count(
            "publish stopped stream=swap",
            stopped,
            Duration::from_secs(10)
        ),
        "the server did not notice the publisher left"
    );
    let switched = Instant::now();
    let started = server.log_count("publish started stream=swap");
    let _second = publish("h264-speex16k.flv", &url, Duration::from_secs(60));
    assert!(server.wait_log_count(
        "publish started stream=swap",
        started,
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_secs(4));

    // Frames of the first publisher may still be on their way when it stops (player queue,
    // merged writes, socket buffers), so split by order, not by arrival time: from the first
    // Speex message on, only Speex.
    let media = throughout.media();
    let first_speex = media
        .iter()
        .position(|m| m.type_id == 8 && m.codec() == Some(11))
        .unwrap_or_else(|| {
            panic!(
                "the player connected throughout never got Speex (ended: {}, statuses: {:?})",
                throughout.ended(),
                throughout.statuses()
            )
        });
    assert!(
        media[first_speex].at >= switched,
        "Speex before the second publisher started"
    );
    let after = &media[first_speex..];
    let audio: Vec<_> = after.iter().filter(|m| m.type_id == 8).collect();
    assert!(
        audio.len() > 50,
        "the player connected throughout got {} audio messages from the second publisher",
        audio.len(),
    );
    let aac = audio.iter().filter(|m| m.codec() == Some(10)).count();
    assert_eq!(
        aac, 0,
        "AAC (stale) after the Speex publisher's first audio"
    );
    assert!(
        audio.iter().all(|m| m.codec() == Some(11)),
        "audio is not Speex"
    );
    assert!(
        after.iter().filter(|m| m.type_id == 9).count() > 50,
        "the player connected throughout got no video from the second publisher"
    );

    // A new player sees Speex only: no stale AAC header from the first publisher.
    let streams = ffprobe(&url, Duration::from_secs(20));
    assert!(
        streams
            .iter()
            .any(|s| s.codec_type == "audio" && s.codec_name == "speex"),
        "{streams:?}"
    );
    assert!(
        !streams.iter().any(|s| s.codec_name == "aac"),
        "stale AAC: {streams:?}"
    );
    let mut player = Player::start(&url, Some(3.0), Duration::from_secs(30));
    let fin = player.finish(Duration::from_secs(25));
    assert!(fin.success(), "new player failed: {}", fin.stderr);
    assert_eq!(fin.stderr.trim(), "", "new player reported decode errors");
    assert!(
        player.count(Kind::Audio) > 100,
        "new player decoded no Speex"
    );
}

#[test]
fn second_publisher_on_a_name_is_refused() {
    let server = Server::start(CONFIG);
    let url = server.url("dup");
    let first = publish("h264-baseline-aac.mp4", &url, Duration::from_secs(60));
    assert!(server.wait_log("publish started stream=dup", Duration::from_secs(10)));

    let mut second = publish("h264-baseline-noaudio.mp4", &url, Duration::from_secs(30));
    let fin = second.wait(Duration::from_secs(20));
    assert!(
        !fin.timed_out(),
        "the second publisher was not refused: it kept running"
    );
    assert!(!fin.success(), "the second publisher exited 0");
    assert!(
        server.wait_log("publish refused", Duration::from_secs(5)),
        "the server did not log the refusal"
    );
    let refusal = server
        .log()
        .lines()
        .find(|l| l.contains("publish refused"))
        .unwrap()
        .to_owned();
    assert!(
        refusal.contains("dup"),
        "refusal does not name the stream: {refusal}"
    );

    // The first publisher keeps going, and players still get its frames.
    assert!(first.is_running(), "the first publisher stopped");
    let mut player = Player::start(&url, Some(3.0), Duration::from_secs(30));
    let fin = player.finish(Duration::from_secs(25));
    assert!(fin.success(), "player failed: {}", fin.stderr);
    assert_eq!(fin.stderr.trim(), "");
    assert!(
        player.count(Kind::Video) >= 70,
        "{} video frames",
        player.count(Kind::Video)
    );
    assert!(
        player.count(Kind::Audio) >= 100,
        "the first publisher's audio is gone"
    );
    assert!(first.is_running(), "the first publisher stopped");
}
