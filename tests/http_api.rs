//! The HTTP API, metrics and health check, black-box: the real `moment` binary on 127.0.0.1
//! with ffmpeg publishing `fixtures/h264-baseline-aac.mp4` and ffmpeg players, asked over HTTP
//! what a monitoring system or an operator would ask.
//!
//! Helpers are self-contained: the server runs from a temp config with both listeners on port
//! 0 and is found through its `RTMP listening addr=` / `HTTP listening addr=` log lines; every
//! child process is killed on drop and has a deadline of its own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/h264-baseline-aac.mp4"
);
/// Longest any child process may live.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// A child process that is killed when dropped, or when its deadline passes.
struct Proc {
    child: Child,
    done: Arc<AtomicBool>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let done = Arc::new(AtomicBool::new(false));
        let (pid, flag) = (child.id(), done.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + CHILD_DEADLINE;
            while Instant::now() < until {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if !flag.load(Ordering::Relaxed) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        });
        Proc { child, done }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.done.store(true, Ordering::Relaxed);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server binary with a temp config; its log is kept for failure messages.
struct Server {
    _proc: Proc,
    rtmp: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "moment-http-api-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn log_addr(line: &str, what: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(what)? + what.len()..];
    let rest = rest.trim_start().strip_prefix("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Server {
    /// Starts the server with `[rtmp]` and `[http]` on port 0, plus `extra_http` lines in
    /// `[http]` and `extra` sections after it.
    fn start(extra_http: &str, extra: &str) -> Server {
        let dir = TempDir::new();
        let config = dir.0.join("moment.toml");
        std::fs::write(
            &config,
            format!(
                "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra_http}\n{extra}\n"
            ),
        )
        .unwrap();
        let mut proc = Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_moment"))
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let stderr = proc.child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = log_addr(&line, "RTMP listening") {
                    let _ = tx.send(("rtmp", a));
                }
                if let Some(a) = log_addr(&line, "HTTP listening") {
                    let _ = tx.send(("http", a));
                }
                log2.lock().unwrap().push(line);
            }
        });
        let (mut rtmp, mut http) = (None, None);
        let until = Instant::now() + Duration::from_secs(20);
        while rtmp.is_none() || http.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("rtmp", a)) => rtmp = Some(a),
                Ok((_, a)) => http = Some(a),
                Err(_) => panic!(
                    "server did not log both addresses; log:\n{}",
                    log.lock().unwrap().join("\n")
                ),
            }
        }
        Server {
            _proc: proc,
            rtmp: rtmp.unwrap(),
            http: http.unwrap(),
            log,
            _dir: dir,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.rtmp)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn get(&self, path: &str) -> Resp {
        request(self.http, "GET", path, None)
    }

    fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
    }

    /// Polls `f` every 200 ms until it returns `Some`, or fails naming `what` after `limit`.
    fn wait_for<T>(&self, what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let until = Instant::now() + limit;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request with hyper's client, with a 10 s deadline.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Resp {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", addr.to_string());
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = send
                .send_request(req.body(Empty::<Bytes>::new()).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Resp {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer in 10 s"))
    })
}

/// Sends raw bytes and returns what comes back before the server closes (5 s at most).
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn ffmpeg(args: &[&str]) -> Proc {
    Proc::spawn(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Checks every line against the text exposition grammar (version 0.0.4) and returns the
/// number of sample lines.
fn check_exposition_grammar(text: &str) -> usize {
    fn name_ok(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value_ok(v: &str) -> bool {
        matches!(v, "NaN" | "+Inf" | "-Inf") || v.parse::<f64>().is_ok()
    }
    let mut samples = 0;
    let mut typed: HashMap<String, String> = HashMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(name_ok(name), "bad HELP line: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(name_ok(name), "bad TYPE line: {line}");
            assert!(
                matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ),
                "bad TYPE line: {line}"
            );
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE given twice: {line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            assert!(name.starts_with("moment_"), "no moment_ prefix: {line}");
            continue;
        }
        assert!(!line.starts_with('#') || line.starts_with("# "), "{line}");
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // name [ "{" label="value" {"," label="value"} [","] "}" ] SP value [SP timestamp]
        let name_end = line.find(['{', ' ']).expect(line);
        let name = &line[..name_end];
        assert!(name_ok(name), "bad metric name in: {line}");
        assert!(typed.contains_key(name), "sample before its TYPE: {line}");
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let eq = r.find('=').expect(line);
                assert!(name_ok(&r[..eq]), "bad label name in: {line}");
                r = r[eq + 1..].strip_prefix('"').expect(line);
                // The value runs to the first unescaped quote; only \\ \" \n are escapes.
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next().expect(line) {
                        (_, '\\') => {
                            let (_, e) = chars.next().expect(line);
                            assert!(matches!(e, '\\' | '"' | 'n'), "bad escape in: {line}");
                        }
                        (_, '\n') => panic!("raw line feed in: {line}"),
                        (i, '"') => break i,
                        _ => {}
                    }
                };
                r = &r[end + 1..];
                r = r.strip_prefix(',').unwrap_or(r);
            }
            rest = r;
        }
        let mut parts = rest.strip_prefix(' ').expect(line).split(' ');
        assert!(value_ok(parts.next().unwrap()), "bad value in: {line}");
        if let Some(ts) = parts.next() {
            assert!(ts.parse::<i64>().is_ok(), "bad timestamp in: {line}");
        }
        assert!(parts.next().is_none(), "trailing text in: {line}");
        samples += 1;
    }
    samples
}

/// The metrics, checked against the grammar and parsed with `prometheus-parse`.
fn scrape(server: &Server) -> Vec<prometheus_parse::Sample> {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let lines = check_exposition_grammar(&r.body);
    let scrape = prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(scrape.samples.len(), lines, "every sample line parses");
    for s in &scrape.samples {
        assert!(
            matches!(
                s.value,
                prometheus_parse::Value::Counter(_) | prometheus_parse::Value::Gauge(_)
            ),
            "{} has no TYPE",
            s.metric
        );
        assert!(
            scrape.docs.contains_key(&s.metric),
            "{} has no HELP",
            s.metric
        );
    }
    scrape.samples
}

fn metric(
    samples: &[prometheus_parse::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn a_live_stream_with_two_players_is_reported_and_its_pages_return_to_idle() {
    let server = Server::start("", "");
    let idle = scrape(&server);
    let idle_held = metric(&idle, "moment_pages_held_bytes", &[]).unwrap();
    let idle_live = metric(&idle, "moment_pages_live_bytes", &[]).unwrap();
    assert_eq!(
        server.json("/api/streams")["streams"],
        serde_json::json!([])
    );

    let url = server.url("x");
    let mut publisher = ffmpeg(&[
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        FIXTURE,
        "-c",
        "copy",
        "-t",
        "60",
        "-f",
        "flv",
        &url,
    ]);
    server.wait_for(
        "the stream to publish h264 640x360 + aac",
        Duration::from_secs(20),
        || {
            let r = server.get("/api/streams/x");
            let s: Value = serde_json::from_str(&r.body).ok()?;
            (s["publishing"] == true && s["video"]["width"] == 640 && s["audio"]["codec"] == "aac")
                .then_some(())
        },
    );
    let mut players: Vec<Proc> = (0..2)
        .map(|_| ffmpeg(&["-i", &url, "-t", "60", "-f", "null", "-"]))
        .collect();
    let s = server.wait_for(
        "two players with measured bitrates",
        Duration::from_secs(20),
        || {
            let s = server.json("/api/streams/x");
            let players = s["players"].as_array()?;
            let measured = players.len() == 2
                && players.iter().all(|p| {
                    p["bytes_sent"].as_u64() > Some(0) && p["bitrate_out_bps"].as_u64() > Some(0)
                });
            (measured && s["bitrate_in_bps"].as_u64() > Some(0)).then_some(s)
        },
    );
    assert_eq!(s["name"], "x");
    assert_eq!(s["source"], "publisher");
    assert_eq!(
        s["video"],
        serde_json::json!({"codec": "h264", "width": 640, "height": 360})
    );
    assert_eq!(s["audio"]["codec"], "aac");
    assert!(s["uptime_s"].as_f64() > Some(0.0), "{s}");
    assert!(
        s["pages"]["held_bytes"].as_u64() >= s["pages"]["live_bytes"].as_u64(),
        "{s}"
    );
    assert!(s["pages"]["live_bytes"].as_u64() > Some(0), "{s}");
    assert!(s["saver"]["frames"].as_u64() > Some(0), "{s}");
    assert!(
        s["dropped"].is_object() && s["dropped"]["ingest"].is_u64(),
        "{s}"
    );
    assert_eq!(s["transcoders"], serde_json::json!([]));
    assert!(s["camera"].is_null());
    // The fixture is about 500 kbit/s of video and audio.
    let bps = s["bitrate_in_bps"].as_u64().unwrap();
    assert!((100_000..5_000_000).contains(&bps), "bitrate in {bps}");

    let list = server.json("/api/streams");
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
    assert_eq!(list["streams"][0]["name"], "x");

    // Bytes keep growing, in and out.
    let before = server.json("/api/streams/x");
    let m1 = scrape(&server);
    std::thread::sleep(Duration::from_millis(1500));
    let after = server.json("/api/streams/x");
    let m2 = scrape(&server);
    assert!(after["bytes_in"].as_u64() > before["bytes_in"].as_u64());
    let sent = |v: &Value| -> u64 {
        v["players"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["bytes_sent"].as_u64().unwrap())
            .sum()
    };
    assert!(sent(&after) > sent(&before), "{before}\n{after}");
    let x = [("stream", "x")];
    for name in [
        "moment_stream_received_bytes_total",
        "moment_stream_received_frames_total",
    ] {
        assert!(metric(&m2, name, &x) > metric(&m1, name, &x), "{name}");
    }
    let rtmp = [("protocol", "rtmp")];
    assert!(
        metric(&m2, "moment_sent_bytes_total", &rtmp)
            > metric(&m1, "moment_sent_bytes_total", &rtmp)
    );

    // The metrics say what the API says.
    assert_eq!(metric(&m2, "moment_stream_players", &x), Some(2.0));
    assert_eq!(
        metric(&m2, "moment_stream_video_width_pixels", &x),
        Some(640.0)
    );
    assert_eq!(
        metric(&m2, "moment_stream_video_height_pixels", &x),
        Some(360.0)
    );
    assert_eq!(
        metric(
            &m2,
            "moment_stream_info",
            &[
                ("stream", "x"),
                ("source", "publisher"),
                ("video_codec", "h264"),
                ("audio_codec", "aac")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m2,
            "moment_connections",
            &[("protocol", "rtmp"), ("role", "player")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m2,
            "moment_connections",
            &[("protocol", "rtmp"), ("role", "publisher")]
        ),
        Some(1.0)
    );
    assert!(metric(&m2, "moment_pages_held_bytes", &[]) > Some(idle_held));
    assert!(metric(&m2, "moment_stream_page_live_bytes", &x) > Some(0.0));
    assert!(metric(&m2, "moment_stream_input_bytes_per_second", &x) > Some(0.0));
    let player_series = m2
        .iter()
        .filter(|s| {
            s.metric == "moment_player_sent_bytes_total" && s.labels.get("stream") == Some("x")
        })
        .count();
    assert_eq!(player_series, 2);
    assert_eq!(
        metric(
            &m2,
            "moment_stream_dropped_frames_total",
            &[("stream", "x"), ("reason", "ingest")]
        ),
        Some(0.0)
    );

    // Everything stops: the stream goes, and its pages with it.
    for p in &mut players {
        p.stop();
    }
    publisher.stop();
    server.wait_for(
        "the pages to return to the idle level",
        Duration::from_secs(20),
        || {
            let m = scrape(&server);
            let streams = server.json("/api/streams");
            (metric(&m, "moment_pages_held_bytes", &[]) == Some(idle_held)
                && metric(&m, "moment_pages_live_bytes", &[]) == Some(idle_live)
                && streams["streams"] == serde_json::json!([]))
            .then_some(())
        },
    );
    let m = scrape(&server);
    assert_eq!(
        metric(
            &m,
            "moment_connections",
            &[("protocol", "rtmp"), ("role", "player")]
        ),
        Some(0.0)
    );
    assert_eq!(metric(&m, "moment_streams", &[]), Some(0.0));
}

/// A JSON error with this status: `{"error": "...", "status": N}`.
fn assert_json_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "{r:?}"
    );
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{r:?}");
    assert_eq!(v["status"], status, "{r:?}");
}

#[test]
fn bad_requests_get_json_errors_and_the_token_guards_the_api() {
    let server = Server::start("token = \"s3cret\"", "[[file]]\nname = \"demo\"\n");
    let addr = server.http;
    let get = |path: &str, token: Option<&str>| request(addr, "GET", path, token);
    let token = Some("s3cret");

    // Liveness needs no token.
    let r = get("/healthz", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["status"],
        "ok"
    );

    // The API and the metrics do.
    for path in ["/api/streams", "/api/streams/demo", "/metrics"] {
        for bad in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            let r = get(path, bad);
            assert_json_error(&r, 401);
            assert!(r
                .headers
                .get("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
        assert_eq!(get(path, token).status, 200, "{path}");
    }
    let r = raw(addr, b"GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Basic czNjcmV0\r\nconnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let demo = server.wait_for("the demo stream", Duration::from_secs(10), || {
        let v: Value = serde_json::from_str(&get("/api/streams/demo", token).body).ok()?;
        (v["publishing"] == true).then_some(v)
    });
    assert_eq!(demo["source"], "file");

    // Unknown things are 404, wrong methods 405 (with Allow), bad names 400.
    assert_json_error(&get("/api/streams/nope", token), 404);
    assert_json_error(&get("/nope", token), 404);
    assert_json_error(&get("/api/streams/demo/more", token), 404);
    assert_json_error(&get("/api/streams/%FF%FE", token), 400);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(addr, method, "/api/streams", token);
        assert_json_error(&r, 405);
        assert!(
            r.headers.get("allow").is_some_and(|a| a.contains("GET")),
            "{r:?}"
        );
    }
    assert_json_error(&request(addr, "POST", "/healthz", None), 405);

    // Oversized requests: a long URI, a body.
    let long = format!("/api/streams/{}", "a".repeat(5000));
    assert_json_error(&get(&long, token), 414);
    let r = raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("\"error\""), "{r}");

    // What the HTTP parser refuses before any route: still a 4xx, never a crash.
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    let r = raw(addr, huge_header.as_bytes());
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");
    let r = raw(addr, b"NOT HTTP AT ALL\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r}");

    // And the server is still well.
    assert_eq!(get("/healthz", None).status, 200);
    assert_eq!(get("/api/streams/demo", token).status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn an_open_api_on_a_network_address_is_refused_at_start() {
    let dir = TempDir::new();
    let config = dir.0.join("moment.toml");
    std::fs::write(
        &config,
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let mut proc = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_moment"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "the server started with an open API"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    proc.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("[http]") && err.contains("token"), "{err}");
}

#[test]
fn a_busy_http_port_leaves_the_video_running() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = TempDir::new();
    let config = dir.0.join("moment.toml");
    std::fs::write(
        &config,
        format!("[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut proc = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_moment"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = proc.child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut rtmp, mut http_error, mut started) = (None, false, false);
    let until = Instant::now() + Duration::from_secs(20);
    while !(rtmp.is_some() && http_error && started) {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the server logs RTMP, the HTTP error, and its start");
        rtmp = rtmp.or(log_addr(&line, "RTMP listening"));
        http_error |= line.contains("ERROR") && line.contains("cannot listen for HTTP");
        started |= line.contains("moment started");
        assert!(!line.contains("HTTP listening"), "{line}");
    }
    // The RTMP side answers (the handshake's first bytes come back).
    let mut s = TcpStream::connect(rtmp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    s.write_all(&c0c1).unwrap();
    let mut s0 = [0u8; 1];
    s.read_exact(&mut s0).unwrap();
    assert_eq!(s0[0], 3);
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "the server is running"
    );
    drop(busy);
}
