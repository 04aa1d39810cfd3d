//! Renditions and snapshots, black-box: the real `moment` binary re-encodes a looped file's
//! H.264 (`fixtures/h264-baseline-aac.mp4`, 640x360 at 25 fps) with openh264 while ffmpeg
//! players watch; ffprobe and ffmpeg judge the output, /proc shows the codec thread come and go,
//! and ffprobe decodes the snapshot JPEGs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{assert_near, ffprobe, fixture, publish, Kind, Player, Server};

/// Source frame rate of the fixture.
const SOURCE_FPS: f64 = 25.0;

fn config(linger_s: f64, http: bool) -> String {
    let mut text = format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n\n\
         [[file]]\nname = \"cam\"\npath = \"{}\"\n\n\
         [[rendition]]\nsource = \"cam\"\nname = \"cam_small\"\nwidth = 320\n\
         bitrate_kbps = 300\nkeyframe_interval_s = 1\nlinger_s = {linger_s}\n",
        fixture("h264-baseline-aac.mp4").display()
    );
    if http {
        text.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n");
    }
    text
}

/// Names of the server's threads that belong to a rendition's codec (`rend:<name>`).
fn codec_threads(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .filter(|c| c.starts_with("rend:"))
        .collect()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn rendition_plays_at_its_size_and_rate_while_the_source_players_are_unaffected() {
    let server = Server::start(&config(1.0, false));
    // A source player alongside, watching the whole time.
    let mut source = Player::start(&server.url("cam"), Some(8.0), Duration::from_secs(60));
    assert!(source.wait_frames(Kind::Video, 10, Duration::from_secs(10)));

    let probed = ffprobe(&server.url("cam_small"), Duration::from_secs(30));
    let video = probed
        .iter()
        .find(|s| s.codec_type == "video")
        .unwrap_or_else(|| panic!("no video in the rendition: {probed:?}"));
    assert_eq!(video.codec_name, "h264");
    assert_eq!(
        (video.width, video.height),
        (Some(320), Some(180)),
        "keeps 16:9"
    );
    let audio = probed.iter().find(|s| s.codec_type == "audio");
    assert_eq!(
        audio.map(|a| a.codec_name.as_str()),
        Some("aac"),
        "the source's audio passes through: {probed:?}"
    );

    // 5 s of the rendition, decoded.
    let mut player = Player::start(&server.url("cam_small"), Some(5.0), Duration::from_secs(60));
    let fin = player.finish(Duration::from_secs(30));
    assert!(fin.success(), "rendition player failed: {}", fin.stderr);
    assert!(
        fin.stderr.trim().is_empty(),
        "decoding the rendition reported errors:\n{}",
        fin.stderr
    );
    assert!(
        player
            .headers()
            .iter()
            .any(|h| h.contains("dimensions") && h.contains("320x180")),
        "{:?}",
        player.headers()
    );
    let frames = player.count(Kind::Video);
    assert!(
        frames as f64 >= 5.0 * SOURCE_FPS * 0.85,
        "{frames} video frames in 5 s of the rendition"
    );
    assert_near(
        "rendition frame rate",
        player.media_rate(Kind::Video),
        SOURCE_FPS,
        0.1,
    );
    assert!(
        player.count(Kind::Audio) > 100,
        "audio frames: {}",
        player.count(Kind::Audio)
    );

    let fin = source.finish(Duration::from_secs(30));
    assert!(fin.success(), "source player failed: {}", fin.stderr);
    assert!(
        fin.stderr.trim().is_empty(),
        "source player errors:\n{}",
        fin.stderr
    );
    assert_near(
        "source frame rate",
        source.media_rate(Kind::Video),
        SOURCE_FPS,
        0.05,
    );
    assert!(
        source.count(Kind::Video) as f64 >= 8.0 * SOURCE_FPS * 0.95,
        "the source player lost frames: {}",
        source.count(Kind::Video)
    );
    server.assert_alive("the rendition test");
}

#[test]
fn a_rendition_of_a_speex_publisher_waits_for_it_and_carries_the_transcoded_aac() {
    let server = Server::start(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n\n\
         [[rendition]]\nsource = \"flash\"\nname = \"flash_small\"\nheight = 180\n\
         bitrate_kbps = 300\nlinger_s = 1\n",
    );
    // The player comes first: the rendition starts, its source has no publisher yet.
    let mut player = Player::start(
        &server.url("flash_small"),
        Some(4.0),
        Duration::from_secs(60),
    );
    assert!(server.wait_log(
        "a player arrived: rendition starting",
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_millis(500));
    let _publisher = publish(
        "h264-speex16k.flv",
        &server.url("flash"),
        Duration::from_secs(60),
    );
    let fin = player.finish(Duration::from_secs(40));
    assert!(fin.success(), "rendition player failed: {}", fin.stderr);
    assert!(
        fin.stderr.trim().is_empty(),
        "decode errors:\n{}",
        fin.stderr
    );
    let headers = player.headers();
    assert!(
        headers
            .iter()
            .any(|h| h.contains("dimensions") && h.contains("320x180")),
        "{headers:?}"
    );
    assert!(
        player.count(Kind::Video) as f64 >= 4.0 * SOURCE_FPS * 0.85,
        "video frames: {}",
        player.count(Kind::Video)
    );
    // Speex from the publisher became AAC at the source; the rendition passes that through.
    assert!(
        headers
            .iter()
            .any(|h| h.contains("sample_rate") && h.contains("48000")),
        "{headers:?}"
    );
    assert!(
        player.count(Kind::Audio) > 50,
        "audio frames: {}",
        player.count(Kind::Audio)
    );
    assert!(server.log().contains("transcoding audio to AAC"));
}

#[test]
fn the_codec_thread_runs_only_while_the_rendition_has_players() {
    let server = Server::start(&config(0.5, false));
    assert!(server.wait_log("rendition ready", Duration::from_secs(10)));
    assert!(
        codec_threads(server.pid()).is_empty(),
        "a codec thread before any player"
    );

    for run in 1..=2 {
        let mut player =
            Player::start(&server.url("cam_small"), Some(2.0), Duration::from_secs(60));
        assert!(
            player.wait_frames(Kind::Video, 5, Duration::from_secs(15)),
            "run {run}: no rendition frames"
        );
        assert_eq!(
            codec_threads(server.pid()),
            vec!["rend:cam_small".to_owned()],
            "run {run}: one codec thread while playing"
        );
        let fin = player.finish(Duration::from_secs(30));
        assert!(fin.success(), "run {run}: {}", fin.stderr);
        assert!(
            server.wait_log_count(
                "rendition stopped, codec thread ended",
                run - 1,
                Duration::from_secs(10)
            ),
            "run {run}: the rendition did not stop after its last player left"
        );
        assert!(
            wait_until(Duration::from_secs(2), || codec_threads(server.pid())
                .is_empty()),
            "run {run}: codec thread still there: {:?}",
            codec_threads(server.pid())
        );
    }
    server.assert_alive("two runs");
}

/// A minimal HTTP/1.1 GET: status, headers (lower-case names) and body.
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

fn http_addr(server: &Server) -> SocketAddr {
    let log = server.log();
    log.lines()
        .find(|l| l.contains("HTTP listening"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP address in the log:\n{log}"))
}

/// Decodes a JPEG with ffprobe (an independent decoder) and returns its size.
fn jpeg_size(jpeg: &[u8]) -> (u64, u64) {
    assert!(
        jpeg.starts_with(&[0xff, 0xd8]),
        "not a JPEG (no SOI marker)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shot.jpg");
    std::fs::write(&path, jpeg).unwrap();
    let probed = ffprobe(path.to_str().unwrap(), Duration::from_secs(20));
    let v = &probed[0];
    assert_eq!(v.codec_name, "mjpeg", "{probed:?}");
    (v.width.unwrap(), v.height.unwrap())
}

#[test]
fn snapshots_are_jpegs_of_the_stream_size() {
    let server = Server::start(&config(1.0, true));
    let http = http_addr(&server);
    assert!(wait_until(Duration::from_secs(10), || get(
        http,
        "/snapshot/cam.jpg"
    )
    .0 == 200));
    let (status, headers, jpeg) = get(http, "/snapshot/cam.jpg");
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("content-type".into(), "image/jpeg".into())),
        "{headers:?}"
    );
    assert_eq!(jpeg_size(&jpeg), (640, 360));

    // A rendition nobody plays has no keyframe: try again later.
    let (status, headers, _) = get(http, "/snapshot/cam_small.jpg");
    assert_eq!(status, 503);
    assert!(
        headers.iter().any(|(k, _)| k == "retry-after"),
        "{headers:?}"
    );
    // While it plays, its snapshot has its own size.
    let mut player = Player::start(&server.url("cam_small"), Some(4.0), Duration::from_secs(60));
    assert!(player.wait_frames(Kind::Video, 5, Duration::from_secs(15)));
    let (status, _, jpeg) = get(http, "/snapshot/cam_small.jpg");
    assert_eq!(status, 200);
    assert_eq!(jpeg_size(&jpeg), (320, 180));
    player.finish(Duration::from_secs(30));

    for (path, want) in [
        ("/snapshot/nobody.jpg", 404),
        ("/snapshot/cam.png", 404),
        ("/snapshot/", 404),
    ] {
        let (status, _, body) = get(http, path);
        assert_eq!(status, want, "{path}: {}", String::from_utf8_lossy(&body));
    }
    server.assert_alive("snapshots");
}

#[test]
fn snapshots_take_the_api_token_as_a_header_or_a_query() {
    let mut text = config(1.0, true);
    text.push_str("token = \"s3cret\"\n");
    let server = Server::start(&text);
    let http = http_addr(&server);
    assert_eq!(get(http, "/snapshot/cam.jpg").0, 401);
    assert_eq!(get(http, "/snapshot/cam.jpg?token=wrong").0, 401);
    assert_eq!(
        get(http, "/api/streams?token=s3cret").0,
        401,
        "query tokens are for snapshots only"
    );
    assert!(wait_until(Duration::from_secs(10), || get(
        http,
        "/snapshot/cam.jpg?token=s3cret"
    )
    .0 == 200));
}
