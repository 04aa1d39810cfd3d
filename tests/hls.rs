//! LL-HLS and the web pages, black-box: the real `moment` binary serving a looped file, read
//! by ffprobe and ffmpeg (plain HLS clients), parsed by a real playlist parser (m3u8-rs),
//! asked for blocking reloads and preload-hinted parts, played by hls.js in headless Chromium
//! (`tests/chromium_check.py`), and fetched by 20 viewers through a real nginx `proxy_cache`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixture, http_addr, http_get as get, Proc, Server};

fn config(extra: &str) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[file]]\nname = \"cam\"\npath = \"{}\"\n{extra}\n",
        fixture("h264-baseline-aac.mp4").display()
    )
}

/// The URIs and tags of a playlist, parsed by m3u8-rs (LL-HLS tags are its unknown tags).
fn parse(text: &str) -> (m3u8_rs::MediaPlaylist, Vec<String>) {
    let pl = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist ({other:?}):\n{text}"),
    };
    let tags = pl
        .unknown_tags
        .iter()
        .chain(pl.segments.iter().flat_map(|s| &s.unknown_tags))
        .map(|t| t.tag.clone())
        .collect();
    (pl, tags)
}

/// (msn, part) of the playlist's preload hint.
fn preload_hint(text: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .expect("a preload hint");
    let uri = line
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let name = uri.split('?').next().unwrap();
    let (_, rest) = name.split_once('-').unwrap();
    let (msn, part) = rest.trim_end_matches(".m4s").split_once('.').unwrap();
    (msn.parse().unwrap(), part.parse().unwrap())
}

#[test]
fn plain_clients_decode_it_and_the_playlist_is_ll_hls() {
    let server = Server::start(&config(""));
    let http = http_addr(&server);
    let url = format!("http://{http}/hls/cam/index.m3u8");
    let t0 = Instant::now();
    let first = get(http, "/hls/cam/index.m3u8", &[]);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    // The saver's GOP: the first answer waits at most for the rest of one GOP (2 s).
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "first playlist took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        first.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(first.header("access-control-allow-origin"), Some("*"));
    assert_eq!(first.header("cache-control"), Some("public, max-age=1"));
    let etag = first.header("etag").unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(3));
    let text = String::from_utf8(get(http, "/hls/cam/index.m3u8", &[]).body).unwrap();
    let (pl, tags) = parse(&text);
    assert_eq!(pl.version, Some(9));
    assert!(!pl.segments.is_empty(), "{text}");
    assert!(
        pl.segments
            .iter()
            .all(|s| (1.9..=2.1).contains(&s.duration)),
        "2 s GOPs: {text}"
    );
    for tag in ["X-PART", "X-SERVER-CONTROL", "X-PART-INF"] {
        assert!(
            tags.iter().any(|t| t == tag),
            "{tag} missing: {tags:?}\n{text}"
        );
    }
    // m3u8-rs keeps no tag after the last segment, which is where the preload hint goes.
    let last = text.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI="),
        "{text}"
    );
    assert!(
        text.contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK="),
        "{text}"
    );
    // An unchanged playlist answers 304 to its ETag; the changed one does not.
    let again = get(http, "/hls/cam/index.m3u8", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 200, "the playlist moved on since");
    let now = get(http, "/hls/cam/index.m3u8", &[]);
    let same = get(
        http,
        "/hls/cam/index.m3u8",
        &[("If-None-Match", now.header("etag").unwrap())],
    );
    assert!(same.status == 304 || same.status == 200);

    // Media: immutable names with the right types.
    let seg = &pl.segments[0].uri;
    let r = get(http, &format!("/hls/cam/{seg}"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("video/iso.segment"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(&r.body[4..8], b"moof");
    let init = text
        .split("#EXT-X-MAP:URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = get(http, &format!("/hls/cam/{init}"), &[]);
    assert_eq!((r.status, &r.body[4..8]), (200, &b"ftyp"[..]));
    assert_eq!(
        get(http, "/hls/cam/123-4.m4s", &[]).status,
        404,
        "another muxer's name"
    );
    assert_eq!(get(http, "/hls/nobody/index.m3u8", &[]).status, 404);

    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ])
        .output()
        .expect("ffprobe");
    let mut codecs: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    // ffprobe lists an HLS program's streams under the program and again on their own.
    codecs.sort();
    codecs.dedup();
    assert_eq!(codecs, ["aac", "h264"]);
    // 6 s decoded at the source rate, without an error.
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &url,
            "-t",
            "6",
            "-f",
            "framecrc",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg: {errors}"
    );
    let crc = String::from_utf8_lossy(&out.stdout);
    let count = |s: &str| crc.lines().filter(|l| l.starts_with(s)).count();
    let (video, audio) = (count("0,"), count("1,"));
    assert!(
        (145..=155).contains(&video),
        "{video} video frames in 6 s (25 fps)"
    );
    assert!(
        (275..=290).contains(&audio),
        "{audio} audio frames in 6 s (46.9/s)"
    );
    server.assert_alive("HLS clients");
}

#[test]
fn blocking_reload_returns_when_the_part_exists_and_refuses_the_far_future() {
    let server = Server::start(&config("[hls]\npart_ms = 200\n"));
    let http = http_addr(&server);
    let text = String::from_utf8(get(http, "/hls/cam/index.m3u8", &[]).body).unwrap();
    let (msn, part) = preload_hint(&text);
    let t0 = Instant::now();
    let r = get(
        http,
        &format!("/hls/cam/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
        &[],
    );
    let waited = t0.elapsed();
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        body.contains(&format!("-{msn}.{part}.m4s\"")),
        "the asked part is listed: {body}"
    );
    assert!(waited < Duration::from_secs(2), "blocked for {waited:?}");
    assert_eq!(r.header("cache-control"), Some("public, max-age=6"));
    // The preload-hinted part itself is held until it exists.
    let (msn, part) = preload_hint(&body);
    let name = body
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .unwrap();
    let uri = name
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = get(http, &format!("/hls/cam/{uri}"), &[]);
    assert_eq!(r.status, 200, "hinted part {msn}.{part}");
    assert_eq!(&r.body[4..8], b"moof");
    // Far in the future: 400, at once.
    let t0 = Instant::now();
    let r = get(
        http,
        &format!("/hls/cam/index.m3u8?_HLS_msn={}", msn + 10),
        &[],
    );
    assert_eq!(r.status, 400);
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert_eq!(
        get(http, "/hls/cam/index.m3u8?_HLS_part=1", &[]).status,
        400
    );
    let metrics = String::from_utf8(get(http, "/metrics", &[]).body).unwrap();
    assert!(
        metrics.contains("moment_hls_requests_total{kind=\"blocking\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("moment_hls_muxer_bytes{stream=\"cam\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("moment_hls_viewers{stream=\"cam\"} "),
        "{metrics}"
    );
}

#[test]
fn with_a_token_every_uri_carries_it() {
    let server = Server::start(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n[[file]]\nname = \"cam\"\n",
    );
    let http = http_addr(&server);
    assert_eq!(get(http, "/hls/cam/index.m3u8", &[]).status, 401);
    assert_eq!(get(http, "/", &[]).status, 401);
    assert_eq!(
        get(http, "/static/style.css", &[]).status,
        200,
        "static files hold no data"
    );
    let r = get(http, "/hls/cam/index.m3u8?token=s3cret", &[]);
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    for line in text
        .lines()
        .filter(|l| l.contains(".m4s") || l.contains(".mp4"))
    {
        assert!(line.contains("?token=s3cret"), "{line}");
    }
    let url = format!("http://{http}/hls/cam/index.m3u8?token=s3cret");
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &url,
            "-t",
            "2",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(http, "/watch/cam?token=s3cret", &[]).status, 200);
}

/// `tests/chromium_check.py`: the value of `expr` on `url` at each of `at` seconds.
fn chromium(url: &str, expr: &str, at: &[f64], screenshot: &Path) -> Vec<serde_json::Value> {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chromium_check.py"))
        .arg(url)
        .args(["--expr", expr, "--screenshot"])
        .arg(screenshot);
    for a in at {
        cmd.args(["--at", &a.to_string()]);
    }
    let mut p = Proc::spawn("chromium", cmd, Duration::from_secs(90));
    let fin = p.wait(Duration::from_secs(80));
    assert!(fin.success(), "chromium_check.py failed: {}", fin.stderr);
    let j: serde_json::Value =
        serde_json::from_str(fin.stdout.trim()).expect("JSON from chromium_check.py");
    assert_eq!(j["console_errors"].as_array().map(Vec::len), Some(0), "{j}");
    j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].clone())
        .collect()
}

#[test]
fn the_watch_page_plays_in_chromium_and_the_dashboard_shows_every_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&format!(
        "{}[[file]]\nname = \"lobby\"\n[[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\n",
        config(""),
        dir.path().join("rec").display()
    ));
    let http = http_addr(&server);
    let shot = dir.path().join("watch.png");
    let status = "document.getElementById('status').textContent";
    let samples = chromium(
        &format!("http://{http}/watch/cam"),
        status,
        &[2.0, 10.0],
        &shot,
    );
    let s: Vec<serde_json::Value> = samples
        .iter()
        .map(|v| serde_json::from_str(v.as_str().unwrap()).unwrap())
        .collect();
    let advanced = s[1]["currentTime"].as_f64().unwrap() - s[0]["currentTime"].as_f64().unwrap();
    assert!(
        advanced >= 3.0,
        "currentTime advanced {advanced} s in 8 s: {s:?}"
    );
    assert_eq!(s[1]["errors"].as_array().unwrap().len(), 0, "{s:?}");
    assert!(
        s[1]["engine"].as_str().unwrap().starts_with("hls.js"),
        "{s:?}"
    );
    let latency = s[1]["latency"].as_f64().expect("hls.js reports a latency");
    assert!(latency > 0.0 && latency < 6.0, "latency {latency}");
    eprintln!(
        "hls.js latency after 10 s: {latency:.2} s; screenshot {}",
        shot.display()
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    let cards =
        "JSON.stringify([...document.querySelectorAll('.card')].map(c => c.dataset.stream))";
    let dash = dir.path().join("dashboard.png");
    let samples = chromium(&format!("http://{http}/"), cards, &[4.0], &dash);
    let names: Vec<String> = serde_json::from_str(samples[0].as_str().unwrap()).unwrap();
    assert_eq!(names, ["cam", "lobby"]);
    if let Ok(keep) = std::env::var("MOMENT_KEEP_SCREENSHOTS") {
        std::fs::copy(&shot, Path::new(&keep).join("watch.png")).unwrap();
        std::fs::copy(&dash, Path::new(&keep).join("dashboard.png")).unwrap();
    }
}

#[test]
fn twenty_viewers_through_nginx_proxy_cache_make_a_few_origin_fetches_per_part() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(""));
    let http = http_addr(&server);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::write(
        prefix.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  proxy_cache_path {p}/cache keys_zone=hls:10m max_size=200m;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location /hls/ {{\n\
                 proxy_pass http://{http};\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_cache hls;\n      proxy_cache_lock on;\n      proxy_cache_lock_timeout 10s;\n\
                 proxy_cache_key $uri$is_args$args;\n      add_header X-Cache $upstream_cache_status;\n    }}\n  }}\n}}\n",
            p = prefix.display()
        ),
    )
    .unwrap();
    let mut nginx = Command::new("nginx");
    nginx
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-e")
        .arg(prefix.join("error.log"));
    let _nginx = Proc::spawn("nginx", nginx, Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Warm the muxer up, then 20 viewers for 10 s through the cache.
    assert_eq!(get(http, "/hls/cam/index.m3u8", &[]).status, 200);
    let url = format!("http://127.0.0.1:{port}/hls/cam/index.m3u8");
    let viewers: Vec<Proc> = (0..20)
        .map(|i| {
            let mut c = Command::new("ffmpeg");
            c.args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-i",
                &url,
                "-t",
                "10",
                "-f",
                "null",
                "-",
            ]);
            Proc::spawn(&format!("viewer {i}"), c, Duration::from_secs(60))
        })
        .collect();
    for mut v in viewers {
        let fin = v.wait(Duration::from_secs(40));
        assert!(fin.success(), "{}: {}", v.name(), fin.stderr);
    }
    let metrics = String::from_utf8(get(http, "/metrics", &[]).body).unwrap();
    let value = |kind: &str| -> u64 {
        let key = format!("moment_hls_requests_total{{kind=\"{kind}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let media = value("segment") + value("part");
    let playlist = value("playlist");
    // Each viewer fetched about 6 segments (10 s of 2 s segments): 120 fetches without the
    // cache; with it, the origin sees each segment about once.
    eprintln!("origin fetches through nginx: {media} media, {playlist} playlists");
    assert!(
        media <= 3 * 8,
        "{media} origin media fetches for 20 viewers of ~7 segments"
    );
    assert!(playlist <= 40, "{playlist} origin playlist fetches");
}

#[test]
fn an_idle_muxer_goes_and_a_rendition_starts_for_its_first_hls_viewer() {
    let server = Server::start(&config(
        "[hls]\nidle_s = 2\n[[rendition]]\nsource = \"cam\"\nname = \"cam_small\"\nheight = 180\n",
    ));
    let http = http_addr(&server);
    let muxer_bytes = |stream: &str| -> Option<u64> {
        let metrics = String::from_utf8(get(http, "/metrics", &[]).body).unwrap();
        let key = format!("moment_hls_muxer_bytes{{stream=\"{stream}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map(|v| v.trim().parse().unwrap())
    };
    assert_eq!(get(http, "/hls/cam/index.m3u8", &[]).status, 200);
    assert!(muxer_bytes("cam").is_some_and(|b| b > 10_000));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        muxer_bytes("cam"),
        None,
        "the idle muxer and its memory are gone"
    );
    // A rendition runs only while watched: an HLS viewer is one.
    let r = get(http, "/hls/cam_small/index.m3u8", &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let url = format!("http://{http}/hls/cam_small/index.m3u8");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=height",
            "-of",
            "csv=p=0",
            &url,
        ])
        .output()
        .expect("ffprobe");
    let heights = String::from_utf8_lossy(&out.stdout);
    assert!(
        heights
            .lines()
            .any(|l| l.trim().trim_end_matches(',') == "180"),
        "{heights}"
    );
}
