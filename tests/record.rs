//! Recording, black-box: the real `moment` binary records a looped file, an RTMP publisher's
//! Speex and a G.711 camera into fragmented MP4 segments, which ffmpeg and GStreamer decode;
//! the playback API serves a range across segment boundaries as one seekable MP4 (ranges
//! byte-exact); `kill -9` leaves segments that decode and a restart cuts torn tails; retention
//! keeps age, size and free-space limits, and a full disk is an error for the entry only.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixture, http_addr, http_get as get, Proc, Server};
use moment::record::utc;

fn config(record: &str, extra: &str) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}\n{record}\n"
    )
}

/// The `.mp4` files under `dir`, sorted by name (= by start).
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "mp4"));
    v.sort();
    v
}

/// Decodes a file completely with ffmpeg: (video frames, audio frames, ffmpeg's complaints).
fn decode(path: &Path) -> (u64, u64, String) {
    let count = |stream: &str| -> u64 {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", stream])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .expect("ffprobe");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_end_matches(',')
            .parse()
            .unwrap_or(0)
    };
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(&format!(" (exit {:?})", out.status));
    }
    (count("v"), count("a"), errors)
}

fn codecs(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
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

fn duration_s(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn segments_decode_and_any_range_plays_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let server = Server::start(&config(
        &format!(
            "[[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 4\npart_s = 1\n",
            rec.display()
        ),
        &format!(
            "[[file]]\nname = \"cam\"\npath = \"{}\"\n",
            fixture("h264-baseline-aac.mp4").display()
        ),
    ));
    let http = http_addr(&server);
    let stream_dir = rec.join("cam");
    wait_until("three closed segments", Duration::from_secs(40), || {
        segments(&stream_dir).len() >= 4
    });
    server.assert_alive("recording");

    let files = segments(&stream_dir);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "2026-12-07T10-15-00.123Z.mp4".len() && name.ends_with("Z.mp4"),
        "file named by its UTC start: {name}"
    );
    // Every closed segment decodes whole: 4 s of 25 fps video and 48 kHz AAC.
    for f in &files[..files.len() - 1] {
        let (video, audio, errors) = decode(f);
        assert!(errors.is_empty(), "{}: {errors}", f.display());
        assert_eq!(codecs(f), ["aac", "h264"], "{}", f.display());
        assert!(
            (95..=105).contains(&video),
            "{}: {video} video frames",
            f.display()
        );
        assert!(
            (180..=195).contains(&audio),
            "{}: {audio} audio frames",
            f.display()
        );
        // GStreamer's demuxer reads it too.
        let gst = Command::new("gst-launch-1.0")
            .args(["-q", "filesrc"])
            .arg(format!("location={}", f.display()))
            .args([
                "!",
                "qtdemux",
                "name=d",
                "d.video_0",
                "!",
                "queue",
                "!",
                "h264parse",
                "!",
                "avdec_h264",
                "!",
                "fakesink",
            ])
            .args([
                "d.audio_0",
                "!",
                "queue",
                "!",
                "aacparse",
                "!",
                "avdec_aac",
                "!",
                "fakesink",
            ])
            .output()
            .expect("gst-launch-1.0");
        assert!(
            gst.status.success(),
            "GStreamer: {}",
            String::from_utf8_lossy(&gst.stderr)
        );
    }
    // The open segment decodes up to its last part, as after a crash.
    let (video, _, errors) = decode(files.last().unwrap());
    assert!(
        errors.is_empty() && video > 0,
        "open segment: {video} frames, {errors}"
    );

    // The index.
    let r = get(http, "/api/recordings/cam", &[]);
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["stream"], "cam");
    assert_eq!(j["spans"].as_array().unwrap().len(), 1, "{j}");
    let segs = j["segments"].as_array().unwrap();
    assert!(segs.len() >= 4, "{j}");
    assert_eq!(segs[0]["video"], "h264 640x360");
    assert!(segs[0]["audio"]
        .as_str()
        .unwrap()
        .starts_with("aac 48000 Hz"));
    let list = get(http, "/api/recordings", &[]).json();
    assert_eq!(list["streams"][0]["stream"], "cam", "{list}");
    assert!(
        list["entries"][0]["parts_written"].as_u64().unwrap() >= 12,
        "{list}"
    );
    let streams = get(http, "/api/streams/cam", &[]).json();
    assert_eq!(streams["recording"], true);
    assert!(
        streams["players"].as_array().unwrap().is_empty(),
        "a recorder is not a player"
    );
    let metrics = String::from_utf8(get(http, "/metrics", &[]).body).unwrap();
    assert!(
        metrics.contains("moment_record_bytes_written_total{stream=\"cam\""),
        "{metrics}"
    );

    // 6 s from 2 s into the first segment: across its end into the next.
    let first_start = segs[0]["start"].as_str().unwrap().to_owned();
    let start = add_seconds(&first_start, 2.5);
    let url = format!("/recordings/cam.mp4?start={start}&duration=6");
    let whole = get(http, &url, &[]);
    assert_eq!(
        whole.status,
        200,
        "{}",
        String::from_utf8_lossy(&whole.body)
    );
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    assert_eq!(
        whole
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(whole.body.len())
    );
    let out = dir.path().join("range.mp4");
    std::fs::write(&out, &whole.body).unwrap();
    let (video, audio, errors) = decode(&out);
    assert!(errors.is_empty(), "playback file: {errors}");
    // It starts at the keyframe before `start` (2 s into the segment, every 2 s): 6.5 s.
    let d = duration_s(&out);
    assert!((6.3..=6.8).contains(&d), "duration {d}");
    assert!((158..=167).contains(&video), "{video} video frames");
    let out_probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=dts_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&out)
        .output()
        .expect("ffprobe");
    let dts: Vec<f64> = String::from_utf8_lossy(&out_probe.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert!(dts.len() > 150, "{} packets", dts.len());
    assert!(
        dts.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] < 0.05),
        "decode times increase without a gap across the segment boundary"
    );
    assert!((295..=310).contains(&audio), "{audio} audio frames");

    // Ranges are byte-exact, as a seeking <video> and `curl -r` need.
    let part = get(http, &url, &[("Range", "bytes=1000-1999")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[1000..2000]);
    assert_eq!(
        part.header("content-range").map(str::to_owned),
        Some(format!("bytes 1000-1999/{}", whole.body.len()))
    );
    let tail = get(http, &url, &[("Range", "bytes=-100")]);
    assert_eq!(tail.body, whole.body[whole.body.len() - 100..]);
    let past = get(
        http,
        &url,
        &[("Range", &format!("bytes={}-", whole.body.len()))],
    );
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range").map(str::to_owned),
        Some(format!("bytes */{}", whole.body.len()))
    );
    // Nothing there, or a bad query: clear errors.
    let none = get(
        http,
        "/recordings/cam.mp4?start=2001-01-01T00:00:00Z&duration=5",
        &[],
    );
    assert_eq!(none.status, 404);
    assert!(none.json()["error"]
        .as_str()
        .unwrap()
        .contains("no recording"));
    assert_eq!(
        get(
            http,
            "/recordings/nobody.mp4?start=2026-01-01T00:00:00Z",
            &[]
        )
        .status,
        404
    );
    assert_eq!(get(http, "/api/recordings/nobody", &[]).status, 404);
    let bad = get(http, "/recordings/cam.mp4?start=yesterday", &[]);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("RFC 3339"));
}

/// `2026-12-07T10:15:00.123Z` plus `s` seconds, in the same form.
fn add_seconds(t: &str, s: f64) -> String {
    let ms = utc::parse_rfc3339(t).expect("an RFC 3339 time");
    utc::format_rfc3339(ms + (s * 1000.0) as i64)
}

#[test]
fn kill_9_leaves_segments_that_decode_and_a_restart_cuts_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let record = format!(
        "[[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 4\npart_s = 0.5\n",
        rec.display()
    );
    let file = format!(
        "[[file]]\nname = \"cam\"\npath = \"{}\"\n",
        fixture("h264-main-3mbps-aac.mp4").display()
    );
    let stream_dir = rec.join("cam");
    let mut killed_at = Vec::new();
    for round in 0..2 {
        let mut server = Server::start(&config(&record, &file));
        wait_until("a segment", Duration::from_secs(30), || {
            segments(&stream_dir).len() > round * 2 + 1
        });
        // Mid-part, at an odd moment.
        std::thread::sleep(Duration::from_millis(1234 + 321 * round as u64));
        server.signal_kill();
        killed_at.push(utc::from_system(std::time::SystemTime::now()));
        // Down for longer than a span's gap.
        std::thread::sleep(Duration::from_millis(1500));
    }
    // A torn write of the kind a power cut leaves: the start of a moof, then nothing.
    let last = segments(&stream_dir).last().unwrap().clone();
    let good_len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(&[0, 0, 0x10, 0, b'm', b'o', b'o', b'f', 0, 0, 0, 0x10])
        .unwrap();
    let server = Server::start(&config(&record, "[[file]]\nname = \"other\"\n"));
    let http = http_addr(&server);
    assert!(server.log().contains("torn part"), "{}", server.log());
    assert!(std::fs::metadata(&last).unwrap().len() <= good_len);
    let files = segments(&stream_dir);
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let (video, audio, errors) = decode(f);
        assert!(errors.is_empty(), "{}: {errors}", f.display());
        assert!(video > 0 && audio > 0, "{}: {video}/{audio}", f.display());
    }
    // Listed with their real ends: each no longer than what it holds.
    let j = get(http, "/api/recordings/cam", &[]).json();
    let segs = j["segments"].as_array().unwrap();
    assert_eq!(segs.len(), files.len(), "{j}");
    for (s, f) in segs.iter().zip(&files) {
        let listed = seconds_between(s["start"].as_str().unwrap(), s["end"].as_str().unwrap());
        let real = duration_s(f);
        assert!(
            (listed - real).abs() < 0.1,
            "{}: listed {listed} s, holds {real} s",
            f.display()
        );
    }
    // Two runs of the server, down for 1.5 s between: two spans, each ending within part_s
    // (0.5 s, and the 40 ms the last frame waits for its successor) of its kill.
    let spans = j["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{j}");
    for (span, killed) in spans.iter().zip(&killed_at) {
        let end = utc::parse_rfc3339(span["end"].as_str().unwrap()).unwrap();
        let lost = (killed - end) as f64 / 1000.0;
        assert!(
            (0.0..0.75).contains(&lost),
            "lost {lost} s at the kill: {j}"
        );
    }
}

fn seconds_between(a: &str, b: &str) -> f64 {
    let ms = |t: &str| utc::parse_rfc3339(t).expect("an RFC 3339 time") as f64 / 1000.0;
    ms(b) - ms(a)
}

fn dir_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn retention_by_age_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let (old, big, tiny) = (
        dir.path().join("age"),
        dir.path().join("size"),
        dir.path().join("tiny"),
    );
    let server = Server::start(&config(
        &format!(
            "[[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\npart_s = 0.5\nkeep_s = 3\n\
             [[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\npart_s = 0.5\nkeep_bytes = 1500000\n\
             [[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\npart_s = 0.5\nkeep_bytes = 1\n",
            old.display(),
            big.display(),
            tiny.display()
        ),
        &format!("[[file]]\nname = \"cam\"\npath = \"{}\"\n", fixture("h264-main-3mbps-aac.mp4").display()),
    ));
    let http = http_addr(&server);
    // Retention runs at every segment's end (and every 10 s).
    std::thread::sleep(Duration::from_secs(16));
    server.assert_alive("recording");
    let j = get(http, "/api/recordings", &[]).json();
    let entries = j["entries"].as_array().unwrap();
    for e in entries {
        assert!(e["segments_deleted"].as_u64().unwrap() > 0, "{e}");
        assert!(e["segments_written"].as_u64().unwrap() >= 5, "{e}");
    }
    // By age: what ended more than keep_s ago goes, checked at each segment's end.
    let kept = segments(&old.join("cam"));
    assert!(kept.len() <= 4, "{kept:?}");
    // By size: under keep_bytes, give or take the segment being written (about 1.1 MB).
    let bytes = dir_bytes(&big.join("cam"));
    assert!(bytes <= 1_500_000 + 1_300_000, "{bytes} bytes kept");
    assert!(server.log().contains("retention deleted a segment"));
    // Never the segment being written: with room for nothing, it stays and grows (a closed
    // one goes at once; its successor's file appears with its first part).
    let mut seen_growing = false;
    let mut last: Option<(PathBuf, u64)> = None;
    for _ in 0..30 {
        let open = segments(&tiny.join("cam"));
        assert!(open.len() <= 1, "{open:?}");
        if let Some(f) = open.first() {
            let len = std::fs::metadata(f).map_or(0, |m| m.len());
            if let Some((p, l)) = &last {
                seen_growing |= p == f && len > *l;
            }
            last = Some((f.clone(), len));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen_growing,
        "the open segment was written while the entry was over its limit"
    );
}

/// A tmpfs of `mib` MiB at `dir` (the tests run as root, as CI does), unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_an_error_for_its_entry_and_min_free_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let (full, roomy) = (dir.path().join("full"), dir.path().join("roomy"));
    let _full = SmallDisk::mount(&full, 3);
    let _roomy = SmallDisk::mount(&roomy, 8);
    let server = Server::start(&config(
        &format!(
            "[[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\npart_s = 0.5\n\
             [[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\npart_s = 0.5\nmin_free_bytes = 4000000\n",
            full.display(),
            roomy.display()
        ),
        &format!("[[file]]\nname = \"cam\"\npath = \"{}\"\n", fixture("h264-main-3mbps-aac.mp4").display()),
    ));
    let http = http_addr(&server);
    // A player of the stream is not disturbed by either.
    let dump = dir.path().join("player.flv");
    let player = common::rtmpdump_start(&server.url("cam"), &dump);
    std::thread::sleep(Duration::from_secs(25));
    server.assert_alive("a full disk");
    let j = get(http, "/api/recordings", &[]).json();
    let e = &j["entries"];
    let full_entry = &e[0];
    assert!(
        full_entry["write_errors"].as_u64().unwrap() > 0,
        "{full_entry}"
    );
    assert!(
        full_entry["last_error"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{full_entry}"
    );
    assert!(
        full_entry["dropped_frames"].as_u64().unwrap() > 0,
        "{full_entry}"
    );
    assert!(server.log().contains("recording failed"));
    // The other entry kept free space above min_free_bytes (less one segment in writing).
    let roomy_entry = &e[1];
    assert_eq!(roomy_entry["write_errors"], 0, "{roomy_entry}");
    assert!(
        roomy_entry["segments_deleted"].as_u64().unwrap() > 0,
        "{roomy_entry}"
    );
    let free = roomy_entry["disk_free_bytes"].as_u64().unwrap();
    assert!(free >= 4_000_000 - 1_300_000, "{free} bytes free");
    // Space comes back: recording resumes on the full disk.
    let before = full_entry["segments_written"].as_u64().unwrap();
    for f in segments(&full.join("cam")) {
        std::fs::remove_file(f).unwrap();
    }
    wait_until("recording to resume", Duration::from_secs(20), || {
        let j = get(http, "/api/recordings", &[]).json();
        j["entries"][0]["segments_written"].as_u64().unwrap() > before
    });
    let (flv, _) = common::rtmpdump_finish(player, 0.5, &dump);
    assert!(flv.len() > 5_000_000, "the player got {} bytes", flv.len());
}

#[test]
fn speex_and_g711_are_recorded_as_aac() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let camera_port = free_port();
    let mut camera = Command::new("/usr/bin/python3");
    camera
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp_camera.py"))
        .arg(camera_port.to_string())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"));
    let _camera = Proc::spawn("rtsp camera", camera, Duration::from_secs(120));
    wait_until("the camera to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", camera_port)).is_ok()
    });
    let server = Server::start(&config(
        &format!(
            "[[record]]\nstream = \"*\"\npath = \"{}\"\nsegment_s = 2\npart_s = 0.5\n",
            rec.display()
        ),
        &format!("[[camera]]\nname = \"door\"\nurl = \"rtsp://127.0.0.1:{camera_port}/pcma\"\n"),
    ));
    let mut publish = Command::new("ffmpeg");
    publish
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(fixture("h264-speex16k.flv"))
        .args(["-c", "copy", "-f", "flv", &server.url("flash")]);
    let mut publisher = Proc::spawn("ffmpeg publisher", publish, Duration::from_secs(60));
    let fin = publisher.wait(Duration::from_secs(30));
    assert!(fin.success(), "publisher failed: {}", fin.stderr);
    wait_until("camera segments", Duration::from_secs(20), || {
        segments(&rec.join("door")).len() >= 3
    });
    for stream in ["door", "flash"] {
        let files = segments(&rec.join(stream));
        assert!(files.len() >= 2, "{stream}: {files:?}");
        let f = &files[0];
        assert_eq!(codecs(f), ["aac", "h264"], "{}", f.display());
        let (video, audio, errors) = decode(f);
        assert!(errors.is_empty(), "{}: {errors}", f.display());
        assert!(video > 0 && audio > 0, "{}: {video}/{audio}", f.display());
    }
    // The publisher left: its recorder closed its last segment (a "*" entry follows publishers).
    wait_until(
        "the publisher's recorder to stop",
        Duration::from_secs(10),
        || {
            server
                .log()
                .lines()
                .any(|l| l.contains("recorder stopped") && l.contains("stream=flash"))
        },
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_api_token_guards_recordings_and_a_query_token_serves_video_tags() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let server = Server::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n\
         [[file]]\nname = \"cam\"\n[[record]]\nstream = \"cam\"\npath = \"{}\"\nsegment_s = 2\n",
        rec.display()
    ));
    let http = http_addr(&server);
    wait_until("a part", Duration::from_secs(20), || {
        segments(&rec.join("cam"))
            .first()
            .is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 10_000))
    });
    assert_eq!(get(http, "/api/recordings", &[]).status, 401);
    assert_eq!(get(http, "/api/recordings/cam", &[]).status, 401);
    let auth = [("Authorization", "Bearer s3cret")];
    let j = get(http, "/api/recordings/cam", &auth).json();
    let start = j["segments"][0]["start"].as_str().unwrap().to_owned();
    let path = format!("/recordings/cam.mp4?start={start}&duration=1");
    assert_eq!(get(http, &path, &[]).status, 401);
    assert_eq!(get(http, &format!("{path}&token=wrong"), &[]).status, 401);
    let ok = get(http, &format!("{path}&token=s3cret"), &[]);
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(&ok.body[4..8], b"ftyp");
}
