//! RTSP ingest against real servers and imperfect networks (issue: UDP done right, auto
//! transport, B-frames). Cameras are VLC's RTSP server (a second, independent implementation
//! beside gst-rtsp-server, fed an endless MPEG-TS by ffmpeg so that its stream never ends) and
//! gst-rtsp-server (tests/rtsp_camera.py), the lossy path is tests/lossy_rtsp_proxy.py (netem
//! is not in every kernel the tests run on), players are ffmpeg and ffprobe. 127.0.0.1 only.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_addr, http_get, Kind, Player, Server};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "{what} is not listening on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process group (a shell pipeline and everything it starts), killed as a whole on drop.
struct Group {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Group {
    fn start(script: &str) -> Group {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .process_group(0)
            .spawn()
            .expect("sh");
        Group { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group (its pgid is its pid, from
        // process_group(0)); no memory is touched.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// VLC's RTSP server at rtsp://127.0.0.1:PORT/cam, fed the fixture looped for ever. VLC
/// refuses to run as root; `runuser -u nobody` as the user did. (Looping inside VLC
/// ends the RTP stream at each loop with a BYE, since VLC re-creates its tracks.)
fn vlc_camera(port: u16, fixture: &str) -> Group {
    assert!(
        Path::new("/usr/bin/cvlc").exists(),
        "VLC is not installed: these tests need its RTSP server \
         (Debian/Ubuntu: `sudo apt-get install vlc-bin vlc-plugin-base`, as ./test.sh does)"
    );
    let fixture = Path::new(MANIFEST).join("fixtures").join(fixture);
    let g = Group::start(&format!(
        "ffmpeg -nostdin -v error -re -stream_loop -1 -i '{}' -c copy -f mpegts - | \
         runuser -u nobody -- cvlc -I dummy -q - \
         --sout '#rtp{{sdp=rtsp://127.0.0.1:{port}/cam}}' --sout-keep",
        fixture.display()
    ));
    wait_listening(port, "VLC's RTSP server");
    // VLC's SDP lists each track once its input has produced it (and answers 500 before
    // that): a session opened too early would be video only for its whole life.
    let end = Instant::now() + Duration::from_secs(20);
    while !describes_audio_and_video(port) {
        assert!(
            Instant::now() < end,
            "VLC never described both tracks: {}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    g
}

/// True when a DESCRIBE of /cam answers with an SDP that has a video and an audio track.
fn describes_audio_and_video(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("DESCRIBE rtsp://127.0.0.1:{port}/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if text.contains("m=video") && text.contains("m=audio") {
            return true;
        }
    }
    false
}

/// gst-rtsp-server with tests/rtsp_camera.py's mounts.
fn gst_camera(port: u16) -> Group {
    let g = Group::start(&format!(
        "exec /usr/bin/python3 '{}' {port} '{}'",
        Path::new(MANIFEST).join("tests/rtsp_camera.py").display(),
        Path::new(MANIFEST).join("fixtures").display()
    ));
    wait_listening(port, "gst-rtsp-server");
    g
}

/// tests/lossy_rtsp_proxy.py in front of a camera.
fn lossy_proxy(port: u16, camera_port: u16, loss: f64, reorder: f64) -> Group {
    let g = Group::start(&format!(
        "exec /usr/bin/python3 '{}' {port} {camera_port} {loss} {reorder} 7",
        Path::new(MANIFEST)
            .join("tests/lossy_rtsp_proxy.py")
            .display()
    ));
    wait_listening(port, "the lossy proxy");
    g
}

fn server_with_cameras(cameras: &str) -> (Server, SocketAddr) {
    let server = Server::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\n{cameras}"
    ));
    let http = http_addr(&server);
    (server, http)
}

fn camera_toml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[camera]]\nname = \"{name}\"\nurl = \"{url}\"\nbackoff_min_s = 0.2\nbackoff_max_s = 1.0\n{extra}\n"
    )
}

/// `camera` of stream `name` in /api/streams.
fn camera_status(http: SocketAddr, name: &str) -> serde_json::Value {
    http_get(http, "/api/streams", &[]).json()["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .map(|s| s["camera"].clone())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_playing(server: &Server, http: SocketAddr, name: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while camera_status(http, name)["connected"] != true {
        assert!(
            Instant::now() < end,
            "{name} never played: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The codec names ffprobe reports for an RTMP stream, sorted.
fn probe_codecs(url: &str) -> Vec<String> {
    let mut v: Vec<String> = common::ffprobe(url, Duration::from_secs(25))
        .into_iter()
        .map(|s| s.codec_name)
        .collect();
    v.sort();
    v
}

fn rtp(status: &serde_json::Value, key: &str) -> u64 {
    status["rtp"][key].as_u64().unwrap_or(0)
}

#[test]
fn vlc_camera_plays_over_udp_and_auto_falls_back_from_tcp() {
    common::require_tools();
    let port = free_port();
    let vlc = vlc_camera(port, "h264-baseline-aac.mp4");
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let (server, http) = server_with_cameras(
        &[
            camera_toml("udp", &url, "transport = \"udp\""),
            camera_toml("auto", &url, ""),
            camera_toml("tcp", &url, "transport = \"tcp\""),
        ]
        .concat(),
    );
    for name in ["udp", "auto"] {
        wait_playing(&server, http, name);
        assert_eq!(
            probe_codecs(&server.url(name)),
            ["aac", "h264"],
            "{name}: {}\nVLC: {}",
            server.log(),
            vlc.log()
        );
        let status = camera_status(http, name);
        assert_eq!(status["transport"], "udp", "{name}: {status}");
        assert!(rtp(&status, "received") > 100, "{name}: {status}");
    }
    // VLC's server answers an interleaved SETUP with 461; auto says so once and goes on.
    let log = server.log();
    let fallbacks = log
        .lines()
        .filter(|l| l.contains("camera=auto") && l.contains("camera refused the transport"))
        .count();
    assert_eq!(fallbacks, 1, "{log}");
    assert!(log.contains("461"), "{log}");
    // Told to use TCP only, the camera stays down, and its status says why and what to do.
    let tcp = camera_status(http, "tcp");
    let error = tcp["last_error"].as_str().unwrap_or_default();
    assert_eq!(tcp["connected"], false, "{tcp}");
    assert!(
        error.contains("461") && error.contains("transport = \"auto\""),
        "{tcp}"
    );
}

#[test]
fn vlc_udp_session_lasts_three_minutes_without_a_reconnect() {
    common::require_tools();
    let port = free_port();
    let _vlc = vlc_camera(port, "h264-baseline-aac.mp4");
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let (server, http) = server_with_cameras(&camera_toml("door", &url, "transport = \"udp\""));
    wait_playing(&server, http, "door");
    // VLC answers DESCRIBE with 500 until its input has started: attempts before the first
    // session do not count.
    let reconnects_before = camera_status(http, "door")["reconnects"].clone();
    let lost_before = server.log().matches("camera session lost").count();
    // VLC ends a session it has not heard from for 60 s; three of those pass here.
    let seconds = 185.0;
    let mut player = Player::start(&server.url("door"), Some(seconds), Duration::from_secs(260));
    let fin = player.finish(Duration::from_secs(250));
    let status = camera_status(http, "door");
    assert_eq!(
        status["reconnects"],
        reconnects_before,
        "{status}\n{}",
        server.log()
    );
    assert_eq!(
        server.log().matches("camera session lost").count(),
        lost_before,
        "{}",
        server.log()
    );
    // 25 fps for the whole time (a reconnect or a stall would cost seconds of frames).
    let video = player.count(Kind::Video);
    assert!(
        video as f64 >= seconds * 25.0 * 0.98,
        "{video} video frames in {seconds} s; player: {}",
        fin.stderr
    );
    // And the audio (48 kHz AAC: 46.9 frames a second) the whole time too.
    let audio = player.count(Kind::Audio);
    assert!(
        audio as f64 >= seconds * 46.0 * 0.98,
        "{audio} audio frames in {seconds} s"
    );
    assert!(
        fin.stderr.trim().is_empty(),
        "decode errors: {}",
        fin.stderr
    );
    // RTCP receiver reports went out the whole time (about one per 5 s per track).
    assert!(rtp(&status, "receiver_reports") >= 50, "{status}");
    assert_eq!(rtp(&status, "lost"), 0, "{status}");
}

#[test]
fn loss_and_reordering_cost_frames_not_the_session() {
    common::require_tools();
    let cam_port = free_port();
    let _cam = gst_camera(cam_port);
    let proxy_port = free_port();
    // 1 % of packets lost, 5 % swapped with the next one.
    let proxy = lossy_proxy(proxy_port, cam_port, 0.01, 0.05);
    let url = format!("rtsp://127.0.0.1:{proxy_port}/cam");
    let (server, http) = server_with_cameras(&camera_toml("lossy", &url, "transport = \"udp\""));
    wait_playing(&server, http, "lossy");
    let seconds = 20.0;
    let mut player = Player::start(&server.url("lossy"), Some(seconds), Duration::from_secs(90));
    let fin = player.finish(Duration::from_secs(80));
    let status = camera_status(http, "lossy");
    let context = format!("{status}\nproxy: {}\nserver: {}", proxy.log(), server.log());
    assert_eq!(status["reconnects"], 0, "{context}");
    assert!(rtp(&status, "lost") > 0, "loss is counted: {context}");
    assert!(
        rtp(&status, "reordered") > 0,
        "reordering is put right: {context}"
    );
    assert!(
        rtp(&status, "loss_recoveries") > 0,
        "video resumed after a loss: {context}"
    );
    assert!(rtp(&status, "frames_dropped_after_loss") > 0, "{context}");
    // What players got decodes cleanly, and video kept coming after the losses.
    assert!(
        fin.stderr.trim().is_empty(),
        "decode errors: {}\n{context}",
        fin.stderr
    );
    let frames = player.frames();
    let video: Vec<f64> = frames
        .iter()
        .filter(|f| f.kind == Kind::Video)
        .map(|f| f.pts_s)
        .collect();
    assert!(video.len() > 100, "{} video frames: {context}", video.len());
    let last = video.iter().cloned().fold(f64::MIN, f64::max);
    let first = video.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        last - first > seconds * 0.7,
        "video from {first} to {last} s"
    );
    // Metrics say the same.
    let metrics = String::from_utf8_lossy(&http_get(http, "/metrics", &[]).body).into_owned();
    assert!(
        metrics.contains("moment_camera_rtp_packets_total{stream=\"lossy\",kind=\"reordered\"}"),
        "{metrics}"
    );
}

#[test]
fn b_frame_camera_gives_players_increasing_decode_times() {
    common::require_tools();
    let cam_port = free_port();
    let _cam = gst_camera(cam_port);
    // /camhigh: x264 high profile with B-frames (b-pyramid, reorder depth 2).
    let url = format!("rtsp://127.0.0.1:{cam_port}/camhigh");
    let (server, http) = server_with_cameras(&camera_toml("bframes", &url, ""));
    wait_playing(&server, http, "bframes");
    let out = Command::new("timeout")
        .args(["30", "ffprobe", "-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "packet=pts,dts", "-of", "csv=p=0"])
        .args(["-read_intervals", "%+8", &server.url("bframes")])
        .output()
        .expect("ffprobe");
    let packets: Vec<(i64, i64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(|x| x.trim().parse::<i64>());
            Some((f.next()?.ok()?, f.next()?.ok()?))
        })
        .collect();
    assert!(packets.len() > 100, "{} packets", packets.len());
    let reordered = packets.windows(2).filter(|w| w[1].0 < w[0].0).count();
    assert!(reordered > 10, "the camera does reorder (pts goes back)");
    for w in packets.windows(2) {
        assert!(
            w[1].1 > w[0].1,
            "dts not increasing: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    for (pts, dts) in &packets {
        assert!(pts >= dts, "pts {pts} before dts {dts}");
    }
    // And it decodes without a complaint. (Timestamps pass through: the test camera's loop
    // point puts two frames 24 ms apart, which a constant-rate muxer would refuse.)
    let mut player = Player::start(&server.url("bframes"), Some(6.0), Duration::from_secs(60));
    let fin = player.finish(Duration::from_secs(50));
    assert!(
        fin.stderr.trim().is_empty(),
        "decode errors: {}",
        fin.stderr
    );
    assert!(
        player.count(Kind::Video) >= 75,
        "{} frames",
        player.count(Kind::Video)
    );
}
