//! ffmpeg publishes each fixture; ffprobe, a decoding ffmpeg and rtmpdump play it at the same
//! time. Each must see the codecs and dimensions that were published, at the published frame
//! rates, without decode errors.

mod common;

use std::time::{Duration, Instant};

use common::{assert_near, ffprobe, flv, publish, Kind, Player, Server};

const CONFIG: &str = "[rtmp]\nlisten = \"127.0.0.1:0\"\n";

/// What a fixture is, as a player must see it.
struct Published {
    fixture: &'static str,
    width: u64,
    height: u64,
    audio_codec: &'static str,
    /// FLV sound format: 10 AAC, 11 Speex.
    flv_sound_format: u8,
    sample_rate: u64,
    /// Audio frames per second: AAC 1024 samples a frame, Speex 320 (20 ms at 16 kHz).
    audio_rate: f64,
    /// Config lines added to [`CONFIG`].
    extra_config: &'static str,
}

/// Seconds of media the decoding player plays, and seconds rtmpdump records.
const PLAY_S: f64 = 8.0;

fn publish_and_play(p: Published) {
    let server = Server::start(&format!("{CONFIG}{}", p.extra_config));
    let url = server.url("cam");
    let _publisher = publish(p.fixture, &url, Duration::from_secs(120));
    assert!(
        server.wait_log("publish started stream=cam", Duration::from_secs(10)),
        "the publisher of {} never started",
        p.fixture
    );
    let video_rate = 25.0;
    let audio_rate = p.audio_rate;

    // All three players at once.
    let dir = tempfile::tempdir().unwrap();
    let dump_path = dir.path().join("dump.flv");
    let dump = common::rtmpdump_start(&url, &dump_path);
    let mut player = Player::start(&url, Some(PLAY_S), Duration::from_secs(60));
    let streams = ffprobe(&url, Duration::from_secs(20));

    // ffprobe: codecs and dimensions as published.
    let v = streams.iter().find(|s| s.codec_type == "video");
    let v = v.unwrap_or_else(|| panic!("ffprobe found no video: {streams:?}"));
    assert_eq!(v.codec_name, "h264", "{streams:?}");
    assert_eq!((v.width, v.height), (Some(p.width), Some(p.height)));
    let a = streams.iter().find(|s| s.codec_type == "audio");
    let a = a.unwrap_or_else(|| panic!("ffprobe found no audio: {streams:?}"));
    assert_eq!(a.codec_name, p.audio_codec, "{streams:?}");
    assert_eq!(a.sample_rate, Some(p.sample_rate));

    // The decoding player: no errors, full rate by wall clock and by media time.
    let fin = player.finish(Duration::from_secs(40));
    assert!(
        fin.success(),
        "the ffmpeg player failed (status {:?}): {}",
        fin.status,
        fin.stderr
    );
    assert_eq!(fin.stderr.trim(), "", "ffmpeg reported decode errors");
    let dims = format!("{}x{}", p.width, p.height);
    assert!(
        player
            .headers()
            .iter()
            .any(|h| h.starts_with("dimensions") && h.ends_with(&dims)),
        "decoded video is not {dims}: {:?}",
        player.headers()
    );
    let frames = player.frames();
    let first = frames
        .iter()
        .find(|f| f.kind == Kind::Video)
        .expect("no video frame decoded")
        .at;
    // After the first second (the saver's burst is over), frames arrive at the published rate.
    let (from, to) = (
        first + Duration::from_secs(1),
        first + Duration::from_secs(5),
    );
    eprintln!(
        "{}: wall video {:.2}/s audio {:.2}/s; media video {:.2}/s audio {:.2}/s (audio expected {audio_rate:.3})",
        p.fixture,
        player.wall_rate(Kind::Video, from, to),
        player.wall_rate(Kind::Audio, from, to),
        player.media_rate(Kind::Video),
        player.media_rate(Kind::Audio),
    );
    assert!(
        frames.last().unwrap().at >= to,
        "the player ended early: {} frames",
        frames.len()
    );
    assert_near(
        "video frames/s (wall)",
        player.wall_rate(Kind::Video, from, to),
        video_rate,
        0.06,
    );
    assert_near(
        "audio frames/s (wall)",
        player.wall_rate(Kind::Audio, from, to),
        audio_rate,
        0.06,
    );
    assert_near(
        "video frames/s (media)",
        player.media_rate(Kind::Video),
        video_rate,
        0.02,
    );
    assert_near(
        "audio frames/s (media)",
        player.media_rate(Kind::Audio),
        audio_rate,
        0.02,
    );
    let video_frames = player.count(Kind::Video) as f64;
    assert_near(
        "video frames in -t",
        video_frames,
        PLAY_S * video_rate,
        0.03,
    );

    // rtmpdump: FLV tags with the published codecs, at the published rates.
    let (bytes, fin) = common::rtmpdump_finish(dump, 2.0, &dump_path);
    assert!(!fin.timed_out(), "rtmpdump did not stop on SIGINT");
    let tags = flv::parse(&bytes);
    let video: Vec<_> = tags
        .iter()
        .filter(|t| t.kind == 9 && t.is_frame())
        .collect();
    let audio: Vec<_> = tags
        .iter()
        .filter(|t| t.kind == 8 && t.is_frame())
        .collect();
    assert!(
        video.len() as f64 >= 6.0 * video_rate,
        "rtmpdump got {} video frames in about {PLAY_S} s: {}",
        video.len(),
        fin.stderr
    );
    assert!(
        video.iter().all(|t| t.codec() == Some(7)),
        "video is not all AVC"
    );
    assert!(
        audio.iter().all(|t| t.codec() == Some(p.flv_sound_format)),
        "audio is not all sound format {}",
        p.flv_sound_format
    );
    assert_near(
        "rtmpdump video frames/s",
        flv::media_rate(&tags, 9),
        video_rate,
        0.02,
    );
    assert_near(
        "rtmpdump audio frames/s",
        flv::media_rate(&tags, 8),
        audio_rate,
        0.02,
    );
    std::fs::write(&dump_path, &bytes).unwrap();
    let dumped = ffprobe(dump_path.to_str().unwrap(), Duration::from_secs(20));
    assert!(
        dumped.iter().any(|s| s.codec_type == "video"
            && s.codec_name == "h264"
            && (s.width, s.height) == (Some(p.width), Some(p.height))),
        "rtmpdump's file: {dumped:?}"
    );
    assert!(
        dumped
            .iter()
            .any(|s| s.codec_type == "audio" && s.codec_name == p.audio_codec),
        "rtmpdump's file: {dumped:?}"
    );
    server.assert_alive("playing");
}

#[test]
fn baseline_aac() {
    publish_and_play(Published {
        fixture: "h264-baseline-aac.mp4",
        width: 640,
        height: 360,
        audio_codec: "aac",
        flv_sound_format: 10,
        sample_rate: 48000,
        audio_rate: 48000.0 / 1024.0,
        extra_config: "",
    });
}

#[test]
fn high_profile_with_b_frames_aac() {
    publish_and_play(Published {
        fixture: "h264-high-aac.mp4",
        width: 640,
        height: 360,
        audio_codec: "aac",
        flv_sound_format: 10,
        sample_rate: 48000,
        audio_rate: 48000.0 / 1024.0,
        extra_config: "",
    });
}

/// A Flash-era publisher's Speex reaches players as AAC (transcoded in-process, 48 kHz mono).
#[test]
fn speex_flv_is_served_as_aac() {
    publish_and_play(Published {
        fixture: "h264-speex16k.flv",
        width: 640,
        height: 360,
        audio_codec: "aac",
        flv_sound_format: 10,
        sample_rate: 48000,
        audio_rate: 48000.0 / 1024.0,
        extra_config: "",
    });
}

#[test]
fn speex_flv_is_passed_through_with_transcoding_off() {
    publish_and_play(Published {
        fixture: "h264-speex16k.flv",
        width: 640,
        height: 360,
        audio_codec: "speex",
        flv_sound_format: 11,
        sample_rate: 16000,
        audio_rate: 16000.0 / 320.0,
        extra_config: "[audio]\ntranscode = \"off\"\n",
    });
}

/// B-frames reach the player with their composition-time offsets (pts ≠ dts).
#[test]
fn b_frames_keep_composition_offsets() {
    let server = Server::start(CONFIG);
    let url = server.url("high");
    let _publisher = publish("h264-high-aac.mp4", &url, Duration::from_secs(60));
    assert!(server.wait_log("publish started stream=high", Duration::from_secs(10)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("high.flv");
    let (bytes, _) = common::rtmpdump(&url, 3.0, &path);
    let tags = flv::parse(&bytes);
    let offsets = tags
        .iter()
        .filter(|t| t.kind == 9 && t.is_frame() && t.body.len() >= 5)
        .filter(|t| t.body[2..5] != [0, 0, 0])
        .count();
    assert!(
        offsets > 10,
        "only {offsets} video frames carry a composition-time offset"
    );
}

/// A player may come before the publisher: it gets video once the publisher starts.
#[test]
fn player_before_publisher() {
    let server = Server::start(CONFIG);
    let url = server.url("later");
    let mut player = Player::start(&url, Some(4.0), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        player.is_running(),
        "the player gave up before the publisher came"
    );
    let published = Instant::now();
    let _publisher = publish("h264-baseline-aac.mp4", &url, Duration::from_secs(60));
    assert!(
        player.wait_frames(Kind::Video, 25, Duration::from_secs(15)),
        "the early player got {} video frames in 15 s after the publisher started",
        player.count(Kind::Video)
    );
    let fin = player.finish(Duration::from_secs(20));
    assert!(fin.success(), "player failed: {}", fin.stderr);
    assert_eq!(fin.stderr.trim(), "", "ffmpeg reported errors");
    assert_near(
        "video frames in 4 s",
        player.count(Kind::Video) as f64,
        100.0,
        0.05,
    );
    assert!(player.count(Kind::Audio) > 100, "no audio");
    eprintln!(
        "first frame {:?} after the publisher started",
        player.frames()[0].at - published
    );
}
