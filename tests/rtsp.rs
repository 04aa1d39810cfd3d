//! Black-box tests of RTSP camera ingest: the real server binary, a real RTSP camera
//! (GStreamer gst-rtsp-server in tests/rtsp_camera.py) and real players (ffprobe, rtmpdump),
//! all on 127.0.0.1. The camera is killed with SIGKILL to simulate a power loss.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moment-rtsp-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Polls `f` every 50 ms until it returns Some or `secs` pass.
fn wait_for<T>(secs: f64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The GStreamer test camera; killed (SIGKILL) on drop.
struct Camera {
    port: u16,
    auth: bool,
    log: PathBuf,
    child: Option<Child>,
}

impl Camera {
    fn start(dir: &Path, port: u16, auth: bool) -> Camera {
        let mut c = Camera {
            port,
            auth,
            log: dir.join(format!("camera-{port}.log")),
            child: None,
        };
        c.restart();
        c
    }

    fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(Path::new(MANIFEST).join("tests/rtsp_camera.py"))
            .arg(self.port.to_string())
            .arg(Path::new(MANIFEST).join("fixtures"));
        if self.auth {
            cmd.arg("--auth");
        }
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tests/rtsp_camera.py");
        self.child = Some(child);
        let port = self.port;
        wait_for(10.0, || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        })
        .expect("camera listening");
    }

    /// SIGKILL: no TEARDOWN, no RTCP BYE, like pulling the power.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn count(&self, needle: &str) -> usize {
        read(&self.log).matches(needle).count()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server binary with a config; killed on drop.
struct Server {
    addr: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Server {
    fn start(dir: &Path, config: &str) -> Server {
        let cfg = dir.join("moment.toml");
        std::fs::write(
            &cfg,
            format!("[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nenabled = false\n\n{config}"),
        )
        .unwrap();
        let log = dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_moment"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr = wait_for(10.0, || {
            let text = read(&log);
            let at = text.find("RTMP listening addr=")?;
            let rest = &text[at + "RTMP listening addr=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("server did not start: {}", read(&log)));
        Server { addr, log, child }
    }

    fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.addr)
    }

    fn log(&self) -> String {
        read(&self.log)
    }

    /// Lines of the log that mention `camera=<name>` and contain `needle`.
    fn count(&self, camera: &str, needle: &str) -> usize {
        let tag = format!("camera={camera}");
        self.log()
            .lines()
            .filter(|l| l.contains(&tag) && l.contains(needle))
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The codec names ffprobe reports for an RTMP stream.
fn probe_codecs(url: &str) -> Vec<String> {
    let out = Command::new("timeout")
        .args(["25", "ffprobe", "-v", "error", "-rw_timeout", "20000000"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn camera_toml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[camera]]\nname = \"{name}\"\nurl = \"{url}\"\nbackoff_min_s = 0.2\nbackoff_max_s = 1.0\n{extra}\n"
    )
}

#[test]
fn cameras_over_tcp_and_udp_play_as_h264_and_aac() {
    let dir = tmp_dir("codecs");
    let cam = Camera::start(&dir, free_port(), false);
    let base = format!("rtsp://127.0.0.1:{}", cam.port);
    let config = [
        camera_toml("tcp", &format!("{base}/cam"), ""),
        camera_toml("udp", &format!("{base}/cam"), "transport = \"udp\""),
        camera_toml("pcma", &format!("{base}/pcma"), ""),
        camera_toml("video", &format!("{base}/video"), ""),
    ]
    .concat();
    let server = Server::start(&dir, &config);
    let probes: Vec<_> = ["tcp", "udp", "pcma", "video"]
        .into_iter()
        .map(|n| {
            let url = server.url(n);
            (n, std::thread::spawn(move || probe_codecs(&url)))
        })
        .collect();
    let log = || server.log();
    for (name, p) in probes {
        let codecs = p.join().unwrap();
        let want: &[&str] = match name {
            // The camera's G.711 comes out as AAC, transcoded in-process.
            "tcp" | "udp" | "pcma" => &["aac", "h264"],
            _ => &["h264"],
        };
        assert_eq!(codecs, want, "{name}: {}", log());
    }
    assert!(
        server.count("pcma", "audio transcoded to AAC") == 1,
        "one line saying pcma audio is transcoded: {}",
        log()
    );
    assert!(server.count("udp", "camera playing") >= 1, "{}", log());
}

#[test]
fn players_stay_connected_across_camera_power_losses() {
    let dir = tmp_dir("restarts");
    let mut cam = Camera::start(&dir, free_port(), false);
    let config = camera_toml(
        "door",
        &format!("rtsp://127.0.0.1:{}/cam", cam.port),
        "stall_timeout_s = 3",
    );
    let server = Server::start(&dir, &config);
    let flv = dir.join("door.flv");
    let mut player = Command::new("rtmpdump")
        .args(["-q", "-v", "-r", &server.url("door"), "-o"])
        .arg(&flv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtmpdump");
    let size = || std::fs::metadata(&flv).map_or(0, |m| m.len());
    let grown = |from: u64| wait_for(20.0, || (size() > from + 60_000).then_some(()));
    grown(0).unwrap_or_else(|| panic!("no media before the first restart: {}", server.log()));
    for (cycle, down_ms) in [(1, 300u64), (2, 1500), (3, 50)] {
        cam.kill();
        std::thread::sleep(Duration::from_millis(down_ms));
        cam.restart();
        let before = size();
        grown(before).unwrap_or_else(|| {
            panic!(
                "cycle {cycle}: the player got nothing after the camera returned: {}",
                server.log()
            )
        });
        assert!(
            player.try_wait().unwrap().is_none(),
            "cycle {cycle}: the player was disconnected"
        );
    }
    let _ = player.kill();
    let _ = player.wait();
    assert!(
        server.count("door", "camera session lost") >= 3,
        "{}",
        server.log()
    );
    assert!(
        server.count("door", "camera playing") >= 4,
        "{}",
        server.log()
    );

    // Timestamps as the player saw them: monotonic per stream, over the whole recording.
    for stream in ["v", "a"] {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", stream, "-show_entries"])
            .args(["packet=dts", "-of", "csv=p=0"])
            .arg(&flv)
            .output()
            .unwrap();
        let dts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
            .collect();
        assert!(dts.len() > 100, "{stream}: {} packets", dts.len());
        for w in dts.windows(2) {
            assert!(w[1] >= w[0], "{stream}: dts went back {} -> {}", w[0], w[1]);
        }
    }
}

#[test]
fn bad_cameras_are_logged_and_retried_while_other_streams_play() {
    let dir = tmp_dir("bad");
    let secure = Camera::start(&dir, free_port(), true);
    let open = Camera::start(&dir, free_port(), false);
    let closed = free_port();
    let config = [
        camera_toml(
            "wrongpw",
            &format!("rtsp://user:bad@127.0.0.1:{}/cam", secure.port),
            "",
        ),
        camera_toml(
            "rightpw",
            &format!("rtsp://user:pass@127.0.0.1:{}/cam", secure.port),
            "",
        ),
        camera_toml(
            "nopath",
            &format!("rtsp://127.0.0.1:{}/nope", open.port),
            "",
        ),
        camera_toml("closed", &format!("rtsp://127.0.0.1:{closed}/cam"), ""),
        "[[file]]\nname = \"demo\"\n".to_owned(),
    ]
    .concat();
    let server = Server::start(&dir, &config);
    let (demo, rightpw) = (server.url("demo"), server.url("rightpw"));
    let a = std::thread::spawn(move || probe_codecs(&demo));
    let b = std::thread::spawn(move || probe_codecs(&rightpw));
    assert_eq!(a.join().unwrap(), ["aac", "h264"], "{}", server.log());
    assert_eq!(b.join().unwrap(), ["aac", "h264"], "{}", server.log());
    // Several attempts each, with backoff, and a clear reason.
    for (name, reason) in [("wrongpw", "401"), ("nopath", "404"), ("closed", "refused")] {
        wait_for(15.0, || {
            (server.count(name, "camera session lost") >= 3).then_some(())
        })
        .unwrap_or_else(|| panic!("{name}: fewer than 3 attempts: {}", server.log()));
        assert!(
            server.count(name, reason) >= 1,
            "{name}: no line says {reason}: {}",
            server.log()
        );
        assert!(server.count(name, "retry_in_ms=") >= 3);
    }
    assert!(
        !server.log().contains(":bad@"),
        "credentials leaked into the log"
    );
    assert!(!server.log().contains("panicked"));
}

#[test]
fn on_demand_camera_connects_only_while_played() {
    let dir = tmp_dir("ondemand");
    let cam = Camera::start(&dir, free_port(), false);
    let config = camera_toml(
        "od",
        &format!("rtsp://127.0.0.1:{}/cam", cam.port),
        "on_demand = true\nlinger_s = 1",
    );
    // The readiness probe's connection is the only one so far.
    wait_for(5.0, || (cam.count("client closed") >= 1).then_some(())).unwrap();
    let probe = cam.count("client connected");
    let server = Server::start(&dir, &config);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        cam.count("client connected"),
        probe,
        "connected without a player"
    );
    assert_eq!(
        probe_codecs(&server.url("od")),
        ["aac", "h264"],
        "{}",
        server.log()
    );
    assert!(cam.count("client connected") > probe);
    wait_for(10.0, || {
        (cam.count("client closed") >= cam.count("client connected")).then_some(())
    })
    .unwrap_or_else(|| panic!("camera connection left open: {}", read(&cam.log)));
    assert!(
        server.count("od", "no players left") >= 1,
        "{}",
        server.log()
    );
}
