//! The black-box harness: the real `moment` binary on 127.0.0.1 (port 0, its address read from
//! its log), and real peers around it: ffmpeg publishers, ffmpeg decoding players, ffprobe,
//! rtmpdump, and a small hand-driven RTMP client (`rtmp`) for what no tool does on purpose
//! (stop reading, send garbage).
//!
//! Every process started here has a hard timeout and is killed when its handle drops, so a
//! failing or hanging test never leaves processes behind. The server's stderr is drained into a
//! buffer for the whole run, so tests can assert on log lines; when a test panics, the tail of
//! the server log is printed.
//!
//! What does not live here: assertions about what a user sees (those are in the tests).

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod flv;
pub mod rtmp;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server may take to log its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A config for the common case: port 0 and the embedded demo as `live/demo`.
pub const DEMO_CONFIG: &str = "[rtmp]\nlisten = \"127.0.0.1:0\"\n\n[[file]]\nname = \"demo\"\n";

/// A fixture in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// Fails (not skips) when a peer tool is missing, saying which Debian package provides it.
pub fn require_tools() {
    // Every test that needs the tools fails with the same message (a poisoned `Once` would
    // give the later ones a useless one).
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        for (tool, package) in [
            ("ffmpeg", "ffmpeg"),
            ("ffprobe", "ffmpeg"),
            ("rtmpdump", "rtmpdump"),
        ] {
            let found = Command::new(tool)
                .arg(if tool == "rtmpdump" { "-h" } else { "-version" })
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !found {
                return Err(format!(
                    "`{tool}` is not installed: the black-box tests need it \
                     (Debian/Ubuntu: `sudo apt-get install {package}`)"
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = check {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Bytes a child wrote, collected by a thread.
#[derive(Clone, Default)]
struct Sink(Arc<(Mutex<Vec<u8>>, Condvar)>);

impl Sink {
    fn drain(&self, mut from: impl Read + Send + 'static) -> JoinHandle<()> {
        let sink = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (m, c) = &*sink.0;
                        m.lock().unwrap().extend_from_slice(&buf[..n]);
                        c.notify_all();
                    }
                }
            }
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0 .0.lock().unwrap()).into_owned()
    }
}

/// How a child process ended.
#[derive(Debug)]
pub struct Finished {
    /// `None`: it was still running at the timeout and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// A child process with a hard timeout: a watchdog kills it at the deadline, and dropping the
/// handle kills it too.
pub struct Proc {
    name: String,
    child: Arc<Mutex<Child>>,
    stdout: Sink,
    stderr: Sink,
    readers: Vec<JoinHandle<()>>,
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Proc {
    /// Starts `cmd` (stdin null; stdout and stderr collected unless the caller set them) with
    /// a hard timeout.
    pub fn spawn(name: &str, mut cmd: Command, hard_timeout: Duration) -> Proc {
        Self::spawn_with(name, &mut cmd, hard_timeout, true)
    }

    /// Like [`Proc::spawn`], but stdout is left for the caller to take with [`Proc::take_stdout`].
    pub fn spawn_piped(name: &str, mut cmd: Command, hard_timeout: Duration) -> Proc {
        Self::spawn_with(name, &mut cmd, hard_timeout, false)
    }

    fn spawn_with(name: &str, cmd: &mut Command, hard_timeout: Duration, collect: bool) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = Sink::default();
        let stderr = Sink::default();
        let mut readers = vec![stderr.drain(child.stderr.take().unwrap())];
        if collect {
            readers.push(stdout.drain(child.stdout.take().unwrap()));
        }
        let child = Arc::new(Mutex::new(child));
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        {
            let child = child.clone();
            let done = done.clone();
            let name = name.to_owned();
            std::thread::spawn(move || {
                let (m, c) = &*done;
                let guard = m.lock().unwrap();
                let (guard, timeout) = c
                    .wait_timeout_while(guard, hard_timeout, |done| !*done)
                    .unwrap();
                drop(guard);
                if timeout.timed_out() {
                    let mut ch = child.lock().unwrap();
                    if matches!(ch.try_wait(), Ok(None)) {
                        eprintln!("harness: {name} ran past its hard timeout {hard_timeout:?}; killing it");
                        let _ = ch.kill();
                    }
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            readers,
            done,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .lock()
            .unwrap()
            .stdout
            .take()
            .expect("stdout already taken or collected")
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// Sends a signal (e.g. `libc::SIGINT`) if the process is still running.
    pub fn signal(&self, sig: i32) {
        let mut ch = self.child.lock().unwrap();
        if matches!(ch.try_wait(), Ok(None)) {
            // SAFETY: kill(2) has no memory effects; the pid is our unreaped child (we hold the
            // lock and it has not been waited for), so it cannot have been reused.
            unsafe {
                libc::kill(ch.id() as libc::pid_t, sig);
            }
        }
    }

    /// Waits up to `timeout` for the exit; then kills the process. Returns its output so far.
    pub fn wait(&mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = self.child.lock().unwrap().try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            self.kill();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Finished {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    pub fn kill(&self) {
        let mut ch = self.child.lock().unwrap();
        let _ = ch.kill();
        let _ = ch.wait();
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        let (m, c) = &*self.done;
        *m.lock().unwrap() = true;
        c.notify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// The `moment` binary, running, with its log collected. Dropping it sends SIGTERM, then
/// SIGKILL if it has not exited within 3 s.
pub struct Server {
    proc: Option<Proc>,
    pub addr: SocketAddr,
    log: Sink,
    _dir: Option<tempfile::TempDir>,
}

/// Why a server did not start.
#[derive(Debug)]
pub struct StartFailed {
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl Server {
    /// Starts the server with `config` (TOML) written to a temporary file. Panics (with the log)
    /// if it does not start listening.
    pub fn start(config: &str) -> Server {
        Self::try_start(Some(config), &[]).unwrap_or_else(|e| {
            panic!(
                "moment did not start (exit {:?}); its log:\n{}",
                e.status, e.log
            )
        })
    }

    /// Starts the server with a config (written to a temporary file, given with `--config`)
    /// or, with `None`, with `extra_args` only.
    pub fn try_start(config: Option<&str>, extra_args: &[&str]) -> Result<Server, StartFailed> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moment"));
        let dir = config.map(|text| {
            // No HTTP API unless a test asks for it: parallel servers would all try 8080.
            let text = if text.contains("[http]") {
                text.to_owned()
            } else {
                format!("{text}\n[http]\nenabled = false\n")
            };
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("moment.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
            dir
        });
        cmd.args(extra_args).env_remove("RUST_LOG");
        let mut proc = Proc::spawn_piped("moment", cmd, Duration::from_secs(600));
        // The server writes nothing to stdout; stderr is drained by the Proc.
        drop(proc.take_stdout());
        let log = proc.stderr.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            let text = log.text();
            if let Some(addr) = listening_addr(&text) {
                break addr;
            }
            if !proc.is_running() || Instant::now() >= deadline {
                let fin = proc.wait(Duration::from_secs(1));
                return Err(StartFailed {
                    status: fin.status,
                    log: fin.stderr,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Server {
            proc: Some(proc),
            addr,
            log,
            _dir: dir,
        })
    }

    pub fn url(&self, name: &str) -> String {
        format!("rtmp://{}/live/{name}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().unwrap().pid()
    }

    pub fn is_running(&self) -> bool {
        self.proc.as_ref().is_some_and(Proc::is_running)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the log has more than `already` lines containing `needle`; false at timeout.
    pub fn wait_log_count(&self, needle: &str, already: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_count(needle) > already {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until a log line contains `needle`; false at timeout.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_log_count(needle, 0, timeout)
    }

    /// The server's resident set size in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Finished {
        let mut proc = self.proc.take().expect("server already stopped");
        proc.signal(libc::SIGTERM);
        proc.wait(timeout)
    }

    /// Kills the server with SIGKILL (no shutdown of any kind, as a crash) and waits for it.
    pub fn signal_kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal(libc::SIGKILL);
            proc.wait(Duration::from_secs(5));
        }
    }

    /// Asserts the process is still running, printing the log if not.
    pub fn assert_alive(&self, after: &str) {
        assert!(
            self.is_running(),
            "the server died after {after}; its log:\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("---- moment log (last {} lines) ----", tail.len());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            eprintln!("---- end of moment log ----");
        }
        if let Some(mut proc) = self.proc.take() {
            proc.signal(libc::SIGTERM);
            proc.wait(Duration::from_secs(3));
        }
    }
}

/// The address in the server's `RTMP listening addr=…` log line.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .find(|l| l.contains("RTMP listening"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .and_then(|a| a.parse().ok())
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

// ---------------------------------------------------------------------------------------------
// Peers

/// An ffmpeg publisher: `-re -stream_loop -1 -i FIXTURE -c copy -f flv URL`. Runs until dropped
/// (or `hard_timeout`).
pub fn publish(fixture_name: &str, url: &str, hard_timeout: Duration) -> Proc {
    require_tools();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-stream_loop", "-1", "-i"])
        .arg(fixture(fixture_name))
        .args(["-c", "copy", "-f", "flv", url]);
    Proc::spawn(
        &format!("ffmpeg publisher {fixture_name}"),
        cmd,
        hard_timeout,
    )
}

/// An ffmpeg publisher without `-re`: it sends as fast as the server takes it, so whatever a
/// player does not read piles up at once.
pub fn publish_fast(fixture_name: &str, url: &str, hard_timeout: Duration) -> Proc {
    require_tools();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-stream_loop", "-1", "-i"])
        .arg(fixture(fixture_name))
        .args(["-c", "copy", "-f", "flv", url]);
    Proc::spawn(
        &format!("fast ffmpeg publisher {fixture_name}"),
        cmd,
        hard_timeout,
    )
}

/// One stream as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedStream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub sample_rate: Option<u64>,
    pub channels: Option<u64>,
}

/// Runs `ffprobe -of json -show_streams` on `input` (a URL or a file). Panics with ffprobe's
/// stderr if it fails or takes longer than `timeout`.
pub fn ffprobe(input: &str, timeout: Duration) -> Vec<ProbedStream> {
    require_tools();
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-hide_banner",
        "-v",
        "error",
        "-of",
        "json",
        "-show_streams",
        input,
    ]);
    let mut p = Proc::spawn("ffprobe", cmd, timeout);
    let fin = p.wait(timeout);
    assert!(
        fin.success(),
        "ffprobe {input} failed (status {:?}): {}",
        fin.status,
        fin.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&fin.stdout)
        .unwrap_or_else(|e| panic!("ffprobe output is not JSON ({e}): {}", fin.stdout));
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    streams
        .iter()
        .map(|s| ProbedStream {
            codec_type: s["codec_type"].as_str().unwrap_or_default().to_owned(),
            codec_name: s["codec_name"].as_str().unwrap_or_default().to_owned(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
            sample_rate: s["sample_rate"].as_str().and_then(|r| r.parse().ok()),
            channels: s["channels"].as_u64(),
        })
        .collect()
}

/// Media kind of a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// A decoded frame as the player saw it: when it arrived and its pts in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    pub at: Instant,
    pub kind: Kind,
    pub pts_s: f64,
}

#[derive(Default)]
struct PlayerState {
    frames: Vec<Decoded>,
    /// Stream index → (kind, time base).
    streams: Vec<(usize, Kind, f64)>,
    /// Per stream index, `#dimensions` and `#sample_rate` header lines.
    headers: Vec<String>,
}

/// A decoding ffmpeg player: `ffmpeg -loglevel error -i URL -map 0 -f framecrc -`, so every
/// decoded frame is one line on stdout (read as it arrives, with its arrival time) and every
/// decode problem is a line on stderr.
pub struct Player {
    proc: Proc,
    state: Arc<Mutex<PlayerState>>,
    reader: Option<JoinHandle<()>>,
    pub started: Instant,
}

impl Player {
    /// Plays `url` for `seconds` of media (`-t`), or until stopped if `None`.
    pub fn start(url: &str, seconds: Option<f64>, hard_timeout: Duration) -> Player {
        require_tools();
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-threads",
            "1",
        ])
        .args(["-i", url, "-map", "0", "-fps_mode", "passthrough"]);
        if let Some(t) = seconds {
            cmd.args(["-t", &format!("{t}")]);
        }
        cmd.args(["-flush_packets", "1", "-f", "framecrc", "-"]);
        let mut proc = Proc::spawn_piped("ffmpeg player", cmd, hard_timeout);
        let stdout = proc.take_stdout();
        let state = Arc::new(Mutex::new(PlayerState::default()));
        let st = state.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                let mut s = st.lock().unwrap();
                if let Some(h) = line.strip_prefix('#') {
                    parse_framecrc_header(h, &mut s);
                    continue;
                }
                let mut fields = line.split(',').map(str::trim);
                let (Some(idx), Some(_dts), Some(pts)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let (Ok(idx), Ok(pts)) = (idx.parse::<usize>(), pts.parse::<i64>()) else {
                    continue;
                };
                if let Some(&(_, kind, tb)) = s.streams.iter().find(|(i, _, _)| *i == idx) {
                    s.frames.push(Decoded {
                        at: now,
                        kind,
                        pts_s: pts as f64 * tb,
                    });
                }
            }
        });
        Player {
            proc,
            state,
            reader: Some(reader),
            started: Instant::now(),
        }
    }

    pub fn frames(&self) -> Vec<Decoded> {
        self.state.lock().unwrap().frames.clone()
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.state
            .lock()
            .unwrap()
            .frames
            .iter()
            .filter(|f| f.kind == kind)
            .count()
    }

    /// The framecrc header lines (`#dimensions 0: 640x360`, `#sample_rate 1: 48000`, ...).
    pub fn headers(&self) -> Vec<String> {
        self.state.lock().unwrap().headers.clone()
    }

    /// Waits until `n` frames of `kind` were decoded; false at timeout.
    pub fn wait_frames(&self, kind: Kind, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count(kind) < n {
            if Instant::now() >= deadline || (!self.proc.is_running() && self.count(kind) < n) {
                return self.count(kind) >= n;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        true
    }

    /// Frames of `kind` that arrived in `[from, to)`, per second of wall time.
    pub fn wall_rate(&self, kind: Kind, from: Instant, to: Instant) -> f64 {
        let n = self
            .frames()
            .iter()
            .filter(|f| f.kind == kind && f.at >= from && f.at < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    }

    /// Frames of `kind` per second of media time (count over pts span): below the published
    /// rate if frames were lost.
    pub fn media_rate(&self, kind: Kind) -> f64 {
        let f: Vec<f64> = self
            .frames()
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.pts_s)
            .collect();
        if f.len() < 2 {
            return 0.0;
        }
        let lo = f.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = f.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (f.len() - 1) as f64 / (hi - lo)
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits for the exit (or kills at `timeout`); returns the status and stderr.
    pub fn finish(&mut self, timeout: Duration) -> Finished {
        let fin = self.proc.wait(timeout);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        fin
    }

    /// Stops the player now (SIGKILL: nothing more is decoded) and returns its stderr.
    pub fn stop(&mut self) -> Finished {
        self.proc.kill();
        self.finish(Duration::from_secs(1))
    }
}

fn parse_framecrc_header(h: &str, s: &mut PlayerState) {
    // "#tb 0: 1/25", "#media_type 0: video", "#dimensions 0: 640x360", "#sample_rate 1: 48000"
    let Some((key, rest)) = h.split_once(' ') else {
        return;
    };
    let Some((idx, value)) = rest.split_once(':') else {
        return;
    };
    let Ok(idx) = idx.trim().parse::<usize>() else {
        return;
    };
    let value = value.trim();
    match key {
        "tb" => {
            if let Some((n, d)) = value.split_once('/') {
                let tb = n.parse::<f64>().unwrap_or(1.0) / d.parse::<f64>().unwrap_or(1.0);
                match s.streams.iter_mut().find(|(i, _, _)| *i == idx) {
                    Some(e) => e.2 = tb,
                    None => s.streams.push((idx, Kind::Video, tb)),
                }
            }
        }
        "media_type" => {
            let kind = if value == "audio" {
                Kind::Audio
            } else {
                Kind::Video
            };
            match s.streams.iter_mut().find(|(i, _, _)| *i == idx) {
                Some(e) => e.1 = kind,
                None => s.streams.push((idx, kind, 1.0)),
            }
        }
        _ => s.headers.push(h.to_owned()),
    }
}

/// `rtmpdump --live -r URL -o FILE` for `seconds` of wall time, then SIGINT (rtmpdump closes the
/// file cleanly). Returns the dumped FLV's bytes and rtmpdump's stderr.
pub fn rtmpdump(url: &str, seconds: f64, out: &Path) -> (Vec<u8>, Finished) {
    let p = rtmpdump_start(url, out);
    rtmpdump_finish(p, seconds, out)
}

pub fn rtmpdump_start(url: &str, out: &Path) -> Proc {
    require_tools();
    let mut cmd = Command::new("rtmpdump");
    cmd.args(["--live", "-r", url, "-o"]).arg(out);
    Proc::spawn("rtmpdump", cmd, Duration::from_secs(120))
}

pub fn rtmpdump_finish(mut p: Proc, seconds: f64, out: &Path) -> (Vec<u8>, Finished) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
    p.signal(libc::SIGINT);
    let fin = p.wait(Duration::from_secs(10));
    let bytes = std::fs::read(out).unwrap_or_default();
    (bytes, fin)
}

/// Asserts `actual` is within `tolerance` (a fraction) of `expected`.
#[track_caller]
pub fn assert_near(what: &str, actual: f64, expected: f64, tolerance: f64) {
    let err = (actual - expected).abs() / expected;
    assert!(
        err <= tolerance,
        "{what}: {actual:.3}, expected {expected:.3} ± {:.0}%",
        tolerance * 100.0
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An HTTP response as a test sees it.
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 GET with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to HTTP");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

pub fn http_addr(server: &Server) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if let Some(a) = log
            .lines()
            .find(|l| l.contains("HTTP listening"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .and_then(|a| a.parse().ok())
        {
            return a;
        }
        assert!(Instant::now() < deadline, "no HTTP listener: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
