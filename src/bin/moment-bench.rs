//! `moment-bench`: an RTMP load client. N players on one URL, in one process, that read and
//! discard, counting per player: bytes, messages, time to the first video frame and to the first
//! keyframe, stalls (no data for more than 1 s once media flows) and video timestamp jumps
//! (frames dropped). A player is "complete" when it stayed connected, got video, never stalled,
//! saw no timestamp jump and is at most 2 s behind the stream at the end.
//!
//! With `--server-pid`, it also measures the server: CPU seconds (utime + stime) of the whole
//! process tree over the window, and resident memory (sum of VmRSS over the tree) idle before
//! the players join, peak, and at the end with every player still connected. It prints a
//! human summary and one machine-readable line starting with `RESULT ` (JSON).
//!
//! The RTMP client side is ours: `rml_rtmp::handshake::Handshake` (client), AMF0 commands built
//! with `rml_amf0`, our `ChunkWriter` to chunk them and our `ChunkReader` to read (rml_rtmp's
//! deserializer panics on interleaved chunk streams). It answers the server's Window
//! Acknowledgement Size with Acknowledgements (nginx-rtmp stops sending without them), Set Chunk
//! Size and ping requests.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use moment::rtmp::{ChunkReader, ChunkWriter, MessageHeader, Payload, ReaderLimits};

/// An RTMP fan-out load client (see the module docs).
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// rtmp://HOST:PORT/APP/STREAM
    #[arg(long)]
    url: String,
    /// Number of players.
    #[arg(short = 'n', long, default_value_t = 100)]
    players: usize,
    /// Seconds from the first connection to the end of the measurement.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds over which the players connect, evenly spaced. The default, 2 s, is one GOP of
    /// the fixtures, so players join at every phase of the GOP (a server that waits for the next
    /// keyframe then shows its real average).
    #[arg(long, default_value_t = 2.0)]
    ramp_s: f64,
    /// A gap longer than this between two reads (once data flows) is a stall.
    #[arg(long, default_value_t = 1000)]
    stall_ms: u64,
    /// A forward jump of the video timestamp longer than this is counted as frames lost.
    #[arg(long, default_value_t = 500)]
    jump_ms: u32,
    /// Players that stop reading `--stall-after` seconds after connecting (a fraction of N,
    /// spread evenly over the player indices). Their sockets stay open.
    #[arg(long, default_value_t = 0.0)]
    stall_fraction: f64,
    /// Seconds after connecting at which the `--stall-fraction` players stop reading.
    #[arg(long, default_value_t = 5.0)]
    stall_after: f64,
    /// PID of the server whose process tree is measured (CPU, RSS).
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label printed in the RESULT line (e.g. the server's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// What one player saw.
#[derive(Debug, Default, Clone)]
struct PlayerReport {
    bytes: u64,
    messages: u64,
    video: u64,
    audio: u64,
    /// From the start of the TCP connect.
    first_byte_ms: Option<f64>,
    first_video_ms: Option<f64>,
    first_key_ms: Option<f64>,
    stalls: u32,
    max_gap_ms: f64,
    ts_jumps: u32,
    /// Wall time since the first video frame minus the video timestamps covered (ms): how far
    /// behind the stream the player is at the end (negative after a GOP-cache burst).
    lag_ms: Option<f64>,
    /// Why the player ended before the window did (error or close).
    ended: Option<String>,
    stalled_by_design: bool,
    connected_s: f64,
    /// When data last arrived, from the start of the TCP connect.
    last_read_ms: Option<f64>,
    /// When the first stall ended, from the start of the TCP connect.
    first_stall_ms: Option<f64>,
    /// For each video frame from `SETTLE_MS` after the first one on (the join burst is over by
    /// then): its arrival minus its timestamp, in ms from an arbitrary origin. Minus the
    /// player's smallest, it is how much later than the earliest a frame came: the server's
    /// batching plus the publisher's and this client's jitter.
    delays_ms: Vec<f32>,
}

/// After the first video frame, how long the join burst (the GOP a server may send first) is
/// given to end before frame delays are recorded.
const SETTLE_MS: f64 = 3000.0;
/// Frame delays recorded per player (two minutes at 25 fps): a long run with thousands of
/// players keeps the client's memory bounded, and the spread is then that of the first minutes.
const MAX_DELAYS: usize = 3000;

struct Url {
    addr: String,
    app: String,
    stream: String,
    tc_url: String,
}

fn parse_url(url: &str) -> anyhow::Result<Url> {
    let rest = url
        .strip_prefix("rtmp://")
        .ok_or_else(|| anyhow!("URL must start with rtmp://"))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| anyhow!("URL needs /APP/STREAM"))?;
    let (app, stream) = path
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("URL needs /APP/STREAM"))?;
    let addr = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:1935")
    };
    Ok(Url {
        addr,
        app: app.to_owned(),
        stream: stream.to_owned(),
        tc_url: format!("rtmp://{host}/{app}"),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = Arc::new(parse_url(&args.url)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args, url));
    // Closing thousands of sockets one by one is not part of the measurement.
    runtime.shutdown_background();
    result
}

async fn run(args: Args, url: Arc<Url>) -> anyhow::Result<()> {
    let pid = args.server_pid;
    let idle = pid.map(ProcTree::sample).transpose()?;
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(
        idle.as_ref().map_or(0, |s| s.rss_kb),
    ));
    if let Some(p) = pid {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok(s) = ProcTree::sample(p) {
                    peak.fetch_max(s.rss_kb, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let stalled = stalled_set(args.players, args.stall_fraction);
    let mut handles = Vec::with_capacity(args.players);
    for (i, &stall) in stalled.iter().enumerate() {
        let at = start + Duration::from_secs_f64(i as f64 * args.ramp_s / args.players as f64);
        tokio::time::sleep_until(at.into()).await;
        let (url, args) = (url.clone(), args.clone());
        handles.push(tokio::spawn(async move {
            let mut report = PlayerReport {
                stalled_by_design: stall,
                ..PlayerReport::default()
            };
            let t0 = Instant::now();
            let stall_at = stall.then(|| t0 + Duration::from_secs_f64(args.stall_after));
            let played = tokio::time::timeout_at(
                end.into(),
                play(&url, &args, t0, stall_at, end, &mut report),
            )
            .await;
            if let Ok(Err(e)) = played {
                report.ended = Some(format!("{e:#}"));
            }
            finish(&mut report, t0, Instant::now().min(end), &args);
            report
        }));
    }
    tokio::time::sleep_until(end.into()).await;
    let after = pid.map(ProcTree::sample).transpose()?;
    let window = start.elapsed().as_secs_f64();
    let mut reports = Vec::with_capacity(handles.len());
    for h in handles {
        reports.push(h.await?);
    }
    let server = match (idle, after) {
        (Some(i), Some(a)) => Some((i, a, peak.load(std::sync::atomic::Ordering::Relaxed))),
        _ => None,
    };
    summarize(&args, window, &reports, server);
    Ok(())
}

/// Which players stop reading: `round(n * fraction)` of them, spread over the indices.
fn stalled_set(n: usize, fraction: f64) -> Vec<bool> {
    let f = fraction.clamp(0.0, 1.0);
    (0..n)
        .map(|i| ((i + 1) as f64 * f).floor() > (i as f64 * f).floor())
        .collect()
}

/// Closes a report at the end of the window: the final silence counts as a stall.
fn finish(r: &mut PlayerReport, t0: Instant, now: Instant, args: &Args) {
    r.connected_s = now.duration_since(t0).as_secs_f64();
    let media = r.audio + r.video > 0;
    if let (Some(last), None, false, true) = (r.last_read_ms, &r.ended, r.stalled_by_design, media)
    {
        let silence = r.connected_s * 1000.0 - last;
        r.max_gap_ms = r.max_gap_ms.max(silence);
        if silence > args.stall_ms as f64 {
            r.stalls += 1;
        }
    }
}

const CSID_COMMAND: u32 = 3;
const CSID_STREAM: u32 = 8;
const CSID_CONTROL: u32 = 2;

/// One player: handshake, connect, createStream, play, then read until `end`.
async fn play(
    url: &Url,
    args: &Args,
    t0: Instant,
    stall_at: Option<Instant>,
    end: Instant,
    r: &mut PlayerReport,
) -> anyhow::Result<()> {
    let mut sock = TcpStream::connect(&url.addr).await.context("connect")?;
    sock.set_nodelay(true)?;
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| anyhow!("handshake: {e:?}"))?;
    sock.write_all(&c0c1).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let leftover = loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            bail!("closed during the handshake");
        }
        r.bytes += n as u64;
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| anyhow!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let mut out = Output::default();
    let connect = vec![
        Amf0Value::Utf8String("connect".into()),
        Amf0Value::Number(1.0),
        Amf0Value::Object(HashMap::from([
            ("app".into(), Amf0Value::Utf8String(url.app.clone())),
            (
                "flashVer".into(),
                Amf0Value::Utf8String("LNX 9,0,124,2".into()),
            ),
            ("tcUrl".into(), Amf0Value::Utf8String(url.tc_url.clone())),
            ("fpad".into(), Amf0Value::Boolean(false)),
            ("capabilities".into(), Amf0Value::Number(15.0)),
            ("audioCodecs".into(), Amf0Value::Number(4071.0)),
            ("videoCodecs".into(), Amf0Value::Number(252.0)),
            ("videoFunction".into(), Amf0Value::Number(1.0)),
        ])),
    ];
    out.command(CSID_COMMAND, 0, &connect)?;
    out.flush(&mut sock).await?;

    let mut reader = ChunkReader::new(ReaderLimits::default());
    let mut st = ReadState::default();
    let mut received: u64 = r.bytes;
    let mut acked: u64 = 0;
    let mut window: Option<u64> = None;
    let mut last_read: Option<Instant> = None;
    let stall = Duration::from_millis(args.stall_ms);
    let mut pending_input = leftover;
    loop {
        if !pending_input.is_empty() {
            let mut input = &pending_input[..];
            while let Some(m) = reader.read(&mut input)? {
                handle_message(
                    m,
                    url,
                    t0,
                    r,
                    &mut st,
                    &mut reader,
                    &mut window,
                    &mut out,
                    args,
                )?;
            }
            pending_input.clear();
        }
        if let Some(w) = window {
            if w > 0 && received - acked >= w {
                acked = received;
                out.control(3, &(received as u32).to_be_bytes())?;
            }
        }
        if !out.is_empty() {
            out.flush(&mut sock).await?;
        }
        if let Some(at) = stall_at {
            if Instant::now() >= at {
                // Stop reading; keep the socket open until the end of the window.
                tokio::time::sleep_until(end.into()).await;
                return Ok(());
            }
        }
        let read = match stall_at {
            Some(at) => match tokio::time::timeout_at(at.into(), sock.read(&mut buf)).await {
                Ok(x) => x,
                Err(_) => continue,
            },
            None => sock.read(&mut buf).await,
        };
        let n = read.context("read")?;
        let now = Instant::now();
        if n == 0 {
            bail!("closed by the server");
        }
        // Stalls count once media flows; the wait before it is the time to the first frame.
        if let (Some(last), true) = (last_read, r.audio + r.video > 0) {
            let gap = now.duration_since(last);
            r.max_gap_ms = r.max_gap_ms.max(gap.as_secs_f64() * 1000.0);
            if gap > stall {
                r.stalls += 1;
                r.first_stall_ms
                    .get_or_insert(now.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        last_read = Some(now);
        r.last_read_ms = Some(now.duration_since(t0).as_secs_f64() * 1000.0);
        r.bytes += n as u64;
        received += n as u64;
        pending_input.extend_from_slice(&buf[..n]);
    }
}

#[derive(Default)]
struct ReadState {
    first_video_ts: Option<u32>,
    last_video_ts: Option<u32>,
    first_video_at: Option<Instant>,
    playing: bool,
}

#[allow(clippy::too_many_arguments)]
fn handle_message(
    m: moment::rtmp::RawMessage,
    url: &Url,
    t0: Instant,
    r: &mut PlayerReport,
    st: &mut ReadState,
    reader: &mut ChunkReader,
    window: &mut Option<u64>,
    out: &mut Output,
    args: &Args,
) -> anyhow::Result<()> {
    r.messages += 1;
    let ms = || t0.elapsed().as_secs_f64() * 1000.0;
    match m.type_id {
        1 => {
            let size = be32(&m.payload).ok_or_else(|| anyhow!("short Set Chunk Size"))?;
            reader.set_chunk_size(size)?;
        }
        5 => *window = be32(&m.payload).map(u64::from),
        4 => {
            let p = &m.payload;
            if p.len() >= 6 && u16::from_be_bytes([p[0], p[1]]) == 6 {
                let mut b = [0u8; 6];
                b[..2].copy_from_slice(&7u16.to_be_bytes());
                b[2..].copy_from_slice(&p[2..6]);
                out.control(4, &b)?;
            }
        }
        8 => {
            r.audio += 1;
            r.first_byte_ms.get_or_insert_with(ms);
        }
        9 => {
            r.video += 1;
            r.first_byte_ms.get_or_insert_with(ms);
            let p = &m.payload;
            // FLV video tag body: frame type in the high nibble; AVC packet type 0 is the
            // sequence header, 1 a NALU.
            let seq_header = p.len() >= 2 && p[0] & 0x0f == 7 && p[1] == 0;
            if !seq_header && !p.is_empty() {
                let key = p[0] >> 4 == 1;
                let now = Instant::now();
                if r.first_video_ms.is_none() {
                    r.first_video_ms = Some(ms());
                    st.first_video_ts = Some(m.timestamp);
                    st.first_video_at = Some(now);
                }
                if key {
                    r.first_key_ms.get_or_insert_with(ms);
                }
                if let Some(last) = st.last_video_ts {
                    if m.timestamp.wrapping_sub(last) as i32 > args.jump_ms as i32 {
                        r.ts_jumps += 1;
                    }
                }
                st.last_video_ts = Some(m.timestamp);
                let covered = m.timestamp.wrapping_sub(st.first_video_ts.unwrap_or(0)) as f64;
                let wall = now
                    .duration_since(st.first_video_at.unwrap_or(now))
                    .as_secs_f64()
                    * 1000.0;
                r.lag_ms = Some(wall - covered);
                if wall >= SETTLE_MS && r.delays_ms.len() < MAX_DELAYS {
                    r.delays_ms.push((wall - covered) as f32);
                }
            }
        }
        18 => {}
        20 => {
            let values = rml_amf0::deserialize(&mut Cursor::new(&m.payload[..]))
                .map_err(|e| anyhow!("bad command from the server: {e}"))?;
            let name = match values.first() {
                Some(Amf0Value::Utf8String(s)) => s.as_str(),
                _ => return Ok(()),
            };
            let txn = match values.get(1) {
                Some(Amf0Value::Number(n)) => *n,
                _ => 0.0,
            };
            match (name, txn as u32) {
                ("_result", 1) => {
                    // Connected: set our window, create the stream.
                    out.control(5, &2_500_000u32.to_be_bytes())?;
                    out.command(
                        CSID_COMMAND,
                        0,
                        &[
                            Amf0Value::Utf8String("createStream".into()),
                            Amf0Value::Number(2.0),
                            Amf0Value::Null,
                        ],
                    )?;
                }
                ("_result", 2) if !st.playing => {
                    let sid = match values.get(3) {
                        Some(Amf0Value::Number(n)) => *n as u32,
                        _ => bail!("createStream result without a stream id"),
                    };
                    st.playing = true;
                    // Set Buffer Length (user control 3) as players do, then play.
                    let mut b = [0u8; 10];
                    b[..2].copy_from_slice(&3u16.to_be_bytes());
                    b[2..6].copy_from_slice(&sid.to_be_bytes());
                    b[6..].copy_from_slice(&3000u32.to_be_bytes());
                    out.control(4, &b)?;
                    out.command(
                        CSID_STREAM,
                        sid,
                        &[
                            Amf0Value::Utf8String("play".into()),
                            Amf0Value::Number(0.0),
                            Amf0Value::Null,
                            Amf0Value::Utf8String(url.stream.clone()),
                            Amf0Value::Number(-1000.0),
                        ],
                    )?;
                }
                ("_error", _) => bail!("command refused: {values:?}"),
                ("onStatus", _) => {
                    if let Some(Amf0Value::Object(info)) = values.get(3) {
                        if let Some(Amf0Value::Utf8String(level)) = info.get("level") {
                            if level == "error" {
                                bail!("onStatus error: {:?}", info.get("code"));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

fn be32(p: &[u8]) -> Option<u32> {
    p.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Outgoing messages, chunked by our `ChunkWriter` (chunk size 128: every command is small).
#[derive(Default)]
struct Output {
    writer: ChunkWriter,
}

impl Output {
    fn command(&mut self, csid: u32, stream_id: u32, values: &[Amf0Value]) -> anyhow::Result<()> {
        let body = rml_amf0::serialize(&values.to_vec()).map_err(|e| anyhow!("amf0: {e}"))?;
        self.queue(csid, 20, stream_id, &body)
    }

    fn control(&mut self, type_id: u8, body: &[u8]) -> anyhow::Result<()> {
        self.queue(CSID_CONTROL, type_id, 0, body)
    }

    fn queue(&mut self, csid: u32, type_id: u8, stream_id: u32, body: &[u8]) -> anyhow::Result<()> {
        let header = MessageHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        self.writer.queue(header, Payload::Inline(body))?;
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }

    async fn flush(&mut self, sock: &mut TcpStream) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(self.writer.pending_bytes());
        let mut slices = Vec::new();
        self.writer.io_slices(&mut slices);
        for s in &slices {
            bytes.extend_from_slice(s);
        }
        drop(slices);
        self.writer.advance(bytes.len());
        sock.write_all(&bytes).await?;
        Ok(())
    }
}

/// CPU and memory of a process and its descendants, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcTree {
    cpu_s: f64,
    rss_kb: u64,
    pss_kb: u64,
    at: Instant,
}

impl ProcTree {
    fn sample(pid: u32) -> anyhow::Result<ProcTree> {
        let hz = clock_ticks();
        let mut pids = vec![pid];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        let (mut ticks, mut rss_kb, mut pss_kb) = (0u64, 0u64, 0u64);
        for p in pids {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state is field 3; utime 14, stime 15.
            let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
            let f: Vec<&str> = after.split_whitespace().collect();
            if f.len() > 13 {
                ticks += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
            }
            rss_kb += status_kb(Path::new(&format!("/proc/{p}/status")), "VmRSS:");
            pss_kb += status_kb(Path::new(&format!("/proc/{p}/smaps_rollup")), "Pss:");
        }
        if ticks == 0 && rss_kb == 0 {
            bail!("server process {pid} not found");
        }
        Ok(ProcTree {
            cpu_s: ticks as f64 / hz,
            rss_kb,
            pss_kb,
            at: Instant::now(),
        })
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
        }
    }
    out
}

fn status_kb(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    // getconf CLK_TCK; 100 on every Linux this runs on, and std has no sysconf.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i])
}

fn summarize(
    args: &Args,
    window: f64,
    reports: &[PlayerReport],
    server: Option<(ProcTree, ProcTree, u64)>,
) {
    let active: Vec<&PlayerReport> = reports.iter().filter(|r| !r.stalled_by_design).collect();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    let messages: u64 = reports.iter().map(|r| r.messages).sum();
    let player_s: f64 = reports.iter().map(|r| r.connected_s).sum();
    let lag_limit = 2000.0;
    let complete = |r: &PlayerReport| {
        r.ended.is_none()
            && r.first_video_ms.is_some()
            && r.stalls == 0
            && r.ts_jumps == 0
            && r.lag_ms.is_some_and(|l| l <= lag_limit)
    };
    let ok = active.iter().filter(|r| complete(r)).count();
    let ended = active.iter().filter(|r| r.ended.is_some()).count();
    let no_video = active.iter().filter(|r| r.first_video_ms.is_none()).count();
    let stalls: u32 = active.iter().map(|r| r.stalls).sum();
    let stalled_players = active.iter().filter(|r| r.stalls > 0).count();
    let jumps: u32 = active.iter().map(|r| r.ts_jumps).sum();
    let lagging = active
        .iter()
        .filter(|r| r.lag_ms.is_some_and(|l| l > lag_limit))
        .count();
    let mut ttff: Vec<f64> = active.iter().filter_map(|r| r.first_video_ms).collect();
    ttff.sort_by(f64::total_cmp);
    let mut ttfk: Vec<f64> = active.iter().filter_map(|r| r.first_key_ms).collect();
    ttfk.sort_by(f64::total_cmp);
    let mut lag: Vec<f64> = active.iter().filter_map(|r| r.lag_ms).collect();
    lag.sort_by(f64::total_cmp);
    let mut first_stall: Vec<f64> = active.iter().filter_map(|r| r.first_stall_ms).collect();
    first_stall.sort_by(f64::total_cmp);
    let mut max_gap: Vec<f64> = active.iter().map(|r| r.max_gap_ms).collect();
    max_gap.sort_by(f64::total_cmp);
    // Each frame's delay beyond its player's smallest, all players pooled.
    let mut spread: Vec<f64> = active
        .iter()
        .flat_map(|r| {
            let min = r.delays_ms.iter().copied().fold(f32::INFINITY, f32::min);
            r.delays_ms.iter().map(move |d| f64::from(d - min))
        })
        .collect();
    spread.sort_by(f64::total_cmp);
    let mut errors: HashMap<&str, usize> = HashMap::new();
    for r in &active {
        if let Some(e) = &r.ended {
            *errors.entry(e.as_str()).or_default() += 1;
        }
    }
    let n = reports.len();
    let gb = bytes as f64 / 1e9;
    let f = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.1}"));
    println!(
        "players {n} ({} stalled by design), window {window:.1} s, {:.1} MB received ({:.1} Mbit/s), {messages} messages",
        n - active.len(),
        bytes as f64 / 1e6,
        bytes as f64 * 8.0 / 1e6 / window
    );
    println!(
        "complete {ok}/{} | ended early {ended} | no video {no_video} | stalls {stalls} on {stalled_players} players | ts jumps {jumps} | lagging > {lag_limit} ms {lagging}",
        active.len()
    );
    println!(
        "first video frame ms: median {} p99 {} max {} | first keyframe ms: median {} p99 {} | lag ms: median {} max {}",
        f(percentile(&ttff, 0.5)),
        f(percentile(&ttff, 0.99)),
        f(ttff.last().copied()),
        f(percentile(&ttfk, 0.5)),
        f(percentile(&ttfk, 0.99)),
        f(percentile(&lag, 0.5)),
        f(lag.last().copied()),
    );
    println!(
        "longest gap between reads ms: median {} p99 {} max {} | first stall at ms: median {} min {}",
        f(percentile(&max_gap, 0.5)),
        f(percentile(&max_gap, 0.99)),
        f(max_gap.last().copied()),
        f(percentile(&first_stall, 0.5)),
        f(first_stall.first().copied()),
    );
    println!(
        "video frame delay beyond the player's earliest ms (batching + jitter): median {} p99 {} max {}",
        f(percentile(&spread, 0.5)),
        f(percentile(&spread, 0.99)),
        f(spread.last().copied()),
    );
    for (e, count) in &errors {
        println!("  {count} players ended: {e}");
    }
    let mut json = serde_json::json!({
        "label": args.label,
        "url": args.url,
        "players": n,
        "stalled_by_design": n - active.len(),
        "window_s": window,
        "bytes": bytes,
        "messages": messages,
        "player_seconds": player_s,
        "complete": ok,
        "active": active.len(),
        "ended_early": ended,
        "no_video": no_video,
        "stalls": stalls,
        "players_with_stalls": stalled_players,
        "ts_jumps": jumps,
        "lagging": lagging,
        "ttff_median_ms": percentile(&ttff, 0.5),
        "ttff_p99_ms": percentile(&ttff, 0.99),
        "ttfk_median_ms": percentile(&ttfk, 0.5),
        "ttfk_p99_ms": percentile(&ttfk, 0.99),
        "lag_median_ms": percentile(&lag, 0.5),
        "delay_spread_median_ms": percentile(&spread, 0.5),
        "delay_spread_p99_ms": percentile(&spread, 0.99),
        "delay_spread_max_ms": spread.last().copied(),
        "max_gap_p99_ms": percentile(&max_gap, 0.99),
    });
    if let Some((idle, after, peak_kb)) = server {
        let cpu = after.cpu_s - idle.cpu_s;
        let secs = after.at.duration_since(idle.at).as_secs_f64();
        let rss_per_player_kb = (after.rss_kb as f64 - idle.rss_kb as f64) / n.max(1) as f64;
        println!(
            "server: cpu {cpu:.2} s ({:.1}% of a core) | {:.2} ms per player-second | {:.1} s per GB | rss idle {:.1} MB, end {:.1} MB, peak {:.1} MB, per player {:.1} KB | pss end {:.1} MB",
            100.0 * cpu / secs,
            1000.0 * cpu / player_s.max(1e-9),
            if gb > 0.0 { cpu / gb } else { f64::NAN },
            idle.rss_kb as f64 / 1024.0,
            after.rss_kb as f64 / 1024.0,
            peak_kb as f64 / 1024.0,
            rss_per_player_kb,
            after.pss_kb as f64 / 1024.0,
        );
        let o = json.as_object_mut().expect("an object");
        o.insert("server_cpu_s".into(), cpu.into());
        o.insert("server_cpu_pct".into(), (100.0 * cpu / secs).into());
        o.insert(
            "server_cpu_ms_per_player_s".into(),
            (1000.0 * cpu / player_s.max(1e-9)).into(),
        );
        o.insert(
            "server_cpu_s_per_gb".into(),
            (if gb > 0.0 { cpu / gb } else { 0.0 }).into(),
        );
        o.insert("server_rss_idle_kb".into(), idle.rss_kb.into());
        o.insert("server_rss_end_kb".into(), after.rss_kb.into());
        o.insert("server_rss_peak_kb".into(), peak_kb.into());
        o.insert("server_pss_end_kb".into(), after.pss_kb.into());
        o.insert("server_rss_per_player_kb".into(), rss_per_player_kb.into());
    }
    println!("RESULT {json}");
}
