//! Supervisor and ingest tests: a scripted [`Opener`] on paused tokio time (no sockets, no
//! sleeps), a real hub and page pool, and a hub player that checks what players would see.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ingest::{AudioUnit, VideoUnit};
use super::*;
use crate::hub::{HubConfig, PlayerItem, TryNext};
use crate::media::{AvcDecoderConfig, MediaKind};
use crate::pages::{PagePool, PoolConfig};

/// A 640x360 baseline avcC (SPS/PPS from fixtures/demo.mp4 via the file source).
fn avcc() -> Bytes {
    let src = crate::source::FileSource::from_bytes("t", crate::source::DEMO_MP4).unwrap();
    Bytes::from(src.avc_config().unwrap().to_bytes())
}

fn asc() -> Bytes {
    Bytes::from_static(&[0x12, 0x10]) // AAC-LC 44.1 kHz stereo
}

fn video(ms: i64, key: bool) -> Unit {
    Unit::Video(VideoUnit {
        elapsed_ms: ms,
        keyframe: key,
        disposable: false,
        after_loss: false,
        data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        params: None,
    })
}

#[derive(Clone, Debug)]
enum Step {
    Unit(u64, Unit),
    /// Never yields again (a stalled camera).
    Stall,
    /// The camera closes the session.
    End,
    Error(&'static str),
}

#[derive(Clone, Debug)]
enum Plan {
    Fail(&'static str),
    Session(SessionInfo, Vec<Step>),
}

#[derive(Default)]
struct Log {
    attempts: Vec<Instant>,
    closed: usize,
    live: usize,
}

struct FakeOpener {
    plans: Mutex<VecDeque<Plan>>,
    /// Used once `plans` is empty.
    last: Plan,
    log: Arc<Mutex<Log>>,
}

struct FakeSession {
    info: SessionInfo,
    steps: VecDeque<Step>,
    log: Arc<Mutex<Log>>,
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        self.log.lock().unwrap().live -= 1;
    }
}

impl Opener for FakeOpener {
    type Session = FakeSession;
    async fn open(&self) -> Result<FakeSession, RtspError> {
        self.log.lock().unwrap().attempts.push(Instant::now());
        let plan = self
            .plans
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.last.clone());
        match plan {
            Plan::Fail(m) => Err(RtspError::Open {
                stage: "DESCRIBE",
                message: m.to_owned(),
            }),
            Plan::Session(info, steps) => {
                self.log.lock().unwrap().live += 1;
                Ok(FakeSession {
                    info,
                    steps: steps.into(),
                    log: self.log.clone(),
                })
            }
        }
    }
}

impl CameraSession for FakeSession {
    fn info(&self) -> &SessionInfo {
        &self.info
    }
    async fn next_unit(&mut self) -> Result<Option<Unit>, RtspError> {
        match self.steps.front().cloned() {
            None | Some(Step::End) => Ok(None),
            Some(Step::Stall) => std::future::pending().await,
            Some(Step::Error(m)) => {
                self.steps.pop_front();
                Err(RtspError::Session(m.to_owned()))
            }
            Some(Step::Unit(delay_ms, u)) => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                self.steps.pop_front();
                Ok(Some(u))
            }
        }
    }
    async fn close(self) {
        self.log.lock().unwrap().closed += 1;
    }
}

fn av_info() -> SessionInfo {
    SessionInfo {
        video: true,
        video_params: Some(avcc()),
        audio: AudioHandling::Aac { asc: asc() },
    }
}

/// A GOP of `n` frames at 40 ms, audio in between, starting with a keyframe.
fn gop(n: i64) -> Vec<Step> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Step::Unit(40, video(i * 40, i == 0)));
        v.push(Step::Unit(
            0,
            Unit::Audio(AudioUnit {
                elapsed_ms: i * 40 + 10,
                data: Bytes::from_static(&[1, 2, 3]),
            }),
        ));
    }
    v
}

struct Rig {
    hub: Hub,
    status: SharedStatus,
    log: Arc<Mutex<Log>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn rig(config: CameraConfig, plans: Vec<Plan>, last: Plan) -> Rig {
    let hub = Hub::new(HubConfig::default());
    let pool = PagePool::new(PoolConfig::default());
    let status = Arc::new(Mutex::new(CameraStatus::new(&config)));
    let log = Arc::new(Mutex::new(Log::default()));
    let camera = Camera {
        writer: pool.writer(&config.name, 64 << 20),
        audio: crate::transcode::AudioStage::new(
            &config.name,
            &crate::transcode::AudioConfig::default(),
            crate::status::StatusBoard::default(),
        ),
        config,
        opener: FakeOpener {
            plans: Mutex::new(plans.into()),
            last,
            log: log.clone(),
        },
        hub: hub.clone(),
        status: status.clone(),
        seed: 42,
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(camera.run(shutdown.clone()));
    Rig {
        hub,
        status,
        log,
        shutdown,
        task,
    }
}

fn cfg() -> CameraConfig {
    let mut c = CameraConfig::new("cam", "rtsp://u:p@h/x");
    c.stall_timeout_s = 2.0;
    c.connect_timeout_s = 5.0;
    c
}

fn status(r: &Rig) -> CameraStatus {
    r.status.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_with_jitter_up_to_the_cap() {
    let r = rig(cfg(), vec![], Plan::Fail("connection refused"));
    tokio::time::sleep(Duration::from_secs(200)).await;
    let attempts = r.log.lock().unwrap().attempts.clone();
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(gaps.len() >= 8, "{gaps:?}");
    for (i, g) in gaps.iter().enumerate() {
        let base = (0.5 * 2f64.powi(i as i32)).min(30.0);
        assert!(
            *g >= base * 0.75 - 0.01 && *g <= (base * 1.25).min(30.0) + 0.01,
            "gap {i} = {g} (base {base})"
        );
    }
    let s = status(&r);
    assert_eq!(s.reconnects as usize, attempts.len() - 1);
    assert_eq!(s.state, CameraState::Backoff);
    assert!(!s.connected);
    assert!(s.last_error.unwrap().contains("connection refused"));
    assert_eq!(s.url, "rtsp://h/x", "credentials never shown");
    r.shutdown.cancel();
    let status_after = r.status.clone();
    r.task.await.unwrap();
    assert_eq!(status_after.lock().unwrap().state, CameraState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_worked_resets_the_backoff_and_players_see_one_timeline() {
    let mut plans = vec![Plan::Fail("refused"), Plan::Fail("refused")];
    for _ in 0..3 {
        let mut steps = gop(25);
        steps.push(Step::End);
        plans.push(Plan::Session(av_info(), steps));
    }
    let r = rig(cfg(), plans, Plan::Session(av_info(), vec![Step::Stall]));
    let mut player = r.hub.play("cam").unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let attempts = r.log.lock().unwrap().attempts.clone();
    // refused, refused, 3 sessions ending, then the stalled one.
    assert!(attempts.len() >= 6, "{}", attempts.len());
    // After a session that worked, the next delay is back at ~0.5 s.
    let gap = (attempts[3] - attempts[2]).as_secs_f64();
    assert!(gap < 1.0 + 25.0 * 0.04 + 0.1, "{gap}");
    let s = status(&r);
    assert_eq!(s.sessions, 3);
    assert!(s.last_error.unwrap().contains("no frame for 2 s"));

    let (mut last, mut frames, mut headers, mut publish) = (0u32, 0, 0, 0);
    let mut breaks = 0;
    loop {
        match player.try_next() {
            TryNext::Item(PlayerItem::Frame(f)) => {
                assert!(f.timestamp >= last, "{} after {last}", f.timestamp);
                last = f.timestamp;
                if f.sequence_header {
                    headers += 1;
                } else if f.kind != MediaKind::Data {
                    frames += 1;
                }
            }
            TryNext::Item(PlayerItem::PublishStarted { .. }) => publish += 1,
            TryNext::Item(PlayerItem::Discontinuity) => breaks += 1,
            TryNext::Item(other) => panic!("player saw {other:?}"),
            TryNext::Empty | TryNext::Ended => break,
        }
    }
    assert_eq!(publish, 1, "one publisher for the camera's life");
    assert!(
        breaks >= 3,
        "each lost session that sent something is a discontinuity for outputs: {breaks}"
    );
    assert_eq!(frames, 3 * 50);
    assert!(headers >= 6, "headers for each session: {headers}");
    assert!(last >= 3 * 25 * 40, "{last}");
    r.shutdown.cancel();
    let log = r.log.clone();
    r.task.await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.live, 0, "no session outlives its use");
}

#[tokio::test(start_paused = true)]
async fn a_camera_without_keyframes_is_retried_not_buffered() {
    let steps: Vec<Step> = (0..1000)
        .map(|i| Step::Unit(40, video(i * 40, false)))
        .collect();
    let r = rig(cfg(), vec![], Plan::Session(av_info(), steps));
    tokio::time::sleep(Duration::from_secs(16)).await;
    let s = status(&r);
    assert!(s.last_error.unwrap().contains("no keyframe within 5 s"));
    assert!(s.reconnects >= 2);
    assert_eq!(s.sessions, 0);
    assert_eq!(r.hub.stream_stats("cam").unwrap().saver_frames, 0);
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn garbage_parameters_and_session_errors_end_the_session_without_a_panic() {
    let bad = SessionInfo {
        video: true,
        video_params: Some(Bytes::from_static(&[1, 2, 3])),
        audio: AudioHandling::None,
    };
    let mut changed = gop(3);
    changed.push(Step::Unit(
        40,
        Unit::Video(VideoUnit {
            elapsed_ms: 200,
            keyframe: true,
            disposable: false,
            after_loss: false,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            params: Some(Bytes::from_static(&[0xff; 9])),
        }),
    ));
    let plans = vec![
        Plan::Session(bad, vec![]),
        Plan::Session(av_info(), vec![Step::Error("garbage RTP")]),
        Plan::Session(av_info(), changed),
    ];
    let r = rig(cfg(), plans, Plan::Fail("gone"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = status(&r);
    assert!(s.reconnects >= 3);
    assert_eq!(s.sessions, 1);
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn on_demand_connects_for_players_and_leaves_after_the_linger() {
    let mut c = cfg();
    c.on_demand = true;
    c.linger_s = 3.0;
    let mut steps = gop(10000);
    steps.push(Step::Stall);
    let r = rig(c, vec![], Plan::Session(av_info(), steps));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        r.log.lock().unwrap().attempts.is_empty(),
        "no player, no connection"
    );
    assert_eq!(status(&r).state, CameraState::Idle);
    let player = r.hub.play("cam").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.log.lock().unwrap().attempts.len(), 1);
    assert!(status(&r).connected);
    drop(player);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.log.lock().unwrap().live, 1, "still lingering");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.log.lock().unwrap().live, 0, "closed after the linger");
    assert_eq!(r.log.lock().unwrap().closed, 1);
    assert_eq!(status(&r).state, CameraState::Idle);
    assert!(!r
        .hub
        .stats()
        .iter()
        .any(|s| s.name == "cam" && s.publishing));
    // A player returning within the linger keeps the session.
    let p2 = r.hub.play("cam").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(p2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _p3 = r.hub.play("cam").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(r.log.lock().unwrap().attempts.len(), 2);
    assert_eq!(r.log.lock().unwrap().live, 1);
    r.shutdown.cancel();
    let log = r.log.clone();
    r.task.await.unwrap();
    assert_eq!(log.lock().unwrap().closed, 2, "TEARDOWN on shutdown");
    assert_eq!(log.lock().unwrap().live, 0);
}

#[test]
fn ingest_emits_new_headers_on_a_parameter_change_and_waits_for_a_keyframe() {
    let pool = PagePool::new(PoolConfig::default());
    let mut w = pool.writer("t", 1 << 20);
    let mut ing = Ingest::new("t");
    let mut out = Vec::new();
    ing.start_session(&av_info(), &mut w, &mut out).unwrap();
    let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.sequence_header)).collect();
    assert_eq!(
        kinds,
        [
            (MediaKind::Data, false),
            (MediaKind::Video, true),
            (MediaKind::Audio, true)
        ]
    );
    out.clear();
    ing.push(video(0, false), &mut w, &mut out).unwrap();
    assert!(out.is_empty(), "no inter frame before the first keyframe");
    ing.push(video(40, true), &mut w, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert!(ing.has_keyframe());
    // A new SPS (other size): metadata, header, then the keyframe.
    let mut c = AvcDecoderConfig::parse(&avcc()).unwrap();
    c.level_indication = c.level_indication.wrapping_add(1);
    let changed = Bytes::from(c.to_bytes());
    out.clear();
    let unit = Unit::Video(VideoUnit {
        elapsed_ms: 80,
        keyframe: true,
        disposable: false,
        after_loss: false,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        params: Some(changed),
    });
    ing.push(unit, &mut w, &mut out).unwrap();
    let kinds: Vec<_> = out
        .iter()
        .map(|f| (f.kind, f.sequence_header, f.keyframe))
        .collect();
    assert_eq!(
        kinds,
        [
            (MediaKind::Data, false, false),
            (MediaKind::Video, true, false),
            (MediaKind::Video, false, true)
        ]
    );
    // The next session continues the timeline.
    ing.end_session();
    out.clear();
    ing.start_session(&av_info(), &mut w, &mut out).unwrap();
    // The first session started at one gap; its last frame was 80 ms in; the next session
    // starts one gap after that, its headers half a gap before its start.
    let gap = ingest::SESSION_GAP_MS;
    assert!(out.iter().all(|f| f.timestamp == gap + 80 + gap - gap / 2));
    // Lying parameters are an error, not a panic.
    let bad = SessionInfo {
        video_params: Some(Bytes::from_static(&[1])),
        ..av_info()
    };
    assert!(ing.start_session(&bad, &mut w, &mut out).is_err());
    assert!(matches!(
        ing.push(video(0, true), &mut w, &mut Vec::new()),
        Err(IngestError::VideoParams(_)) | Ok(())
    ));
}

/// A 320x240 High avcC whose SPS states `max_num_reorder_frames` = 2 (x264 `-bf 2`).
fn avcc_with_b_frames() -> Bytes {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let sps = hex("6764000dacd94141fb011000000300100000030320f1429960");
    let pps = hex("68ebe3cb22c0");
    Bytes::from(
        AvcDecoderConfig::from_parameter_sets(&sps, &pps)
            .unwrap()
            .to_bytes(),
    )
}

fn video_frames(out: &[crate::media::Frame]) -> Vec<(u32, i32, bool)> {
    out.iter()
        .filter(|f| f.kind == MediaKind::Video && !f.sequence_header)
        .map(|f| {
            let b = f.payload.to_vec();
            let cts = (i32::from(b[2]) << 16 | i32::from(b[3]) << 8 | i32::from(b[4])) << 8 >> 8;
            (f.timestamp, cts, f.keyframe)
        })
        .collect()
}

#[test]
fn ingest_gives_b_frames_increasing_decode_times_and_their_offsets() {
    let pool = PagePool::new(PoolConfig::default());
    let mut w = pool.writer("t", 1 << 20);
    let mut ing = Ingest::new("t");
    let mut out = Vec::new();
    let info = SessionInfo {
        video_params: Some(avcc_with_b_frames()),
        ..av_info()
    };
    ing.start_session(&info, &mut w, &mut out).unwrap();
    // Decode order I0 P3 B1 B2 P6 B4 B5 (presentation times in ms).
    for (i, pts) in [0, 120, 40, 80, 240, 160, 200].into_iter().enumerate() {
        ing.push(video(pts, i == 0), &mut w, &mut out).unwrap();
    }
    let frames = video_frames(&out);
    assert_eq!(frames.len(), 7);
    for w in frames.windows(2) {
        assert!(w[1].0 > w[0].0, "decode times must increase: {frames:?}");
    }
    let base = i64::from(ingest::SESSION_GAP_MS);
    for ((dts, cts, _), pts) in frames.iter().zip([0, 120, 40, 80, 240, 160, 200]) {
        assert!(*cts >= 0);
        assert_eq!(
            i64::from(*dts) + i64::from(*cts),
            base + pts,
            "pts = dts + cts"
        );
    }
    let headers_at = out.iter().find(|f| f.sequence_header).unwrap().timestamp;
    assert!(
        headers_at < frames[0].0,
        "headers before the first decode time"
    );
}

#[test]
fn ingest_drops_video_after_a_loss_until_the_next_keyframe() {
    let pool = PagePool::new(PoolConfig::default());
    let mut w = pool.writer("t", 1 << 20);
    let mut ing = Ingest::new("t");
    let mut out = Vec::new();
    ing.start_session(&av_info(), &mut w, &mut out).unwrap();
    out.clear();
    let lossy = |ms: i64, key: bool| match video(ms, key) {
        Unit::Video(v) => Unit::Video(VideoUnit {
            after_loss: true,
            ..v
        }),
        u => u,
    };
    ing.push(video(0, true), &mut w, &mut out).unwrap();
    ing.push(video(40, false), &mut w, &mut out).unwrap();
    ing.push(lossy(80, false), &mut w, &mut out).unwrap();
    ing.push(video(120, false), &mut w, &mut out).unwrap();
    let audio = Unit::Audio(AudioUnit {
        elapsed_ms: 130,
        data: Bytes::from_static(&[1, 2, 3]),
    });
    ing.push(audio, &mut w, &mut out).unwrap();
    ing.push(video(160, true), &mut w, &mut out).unwrap();
    ing.push(video(200, false), &mut w, &mut out).unwrap();
    let shown: Vec<_> = video_frames(&out).iter().map(|f| f.0).collect();
    let base = ingest::SESSION_GAP_MS;
    assert_eq!(shown, [0, 40, 160, 200].map(|t| base + t));
    assert!(
        out.iter().any(|f| f.kind == MediaKind::Audio),
        "audio goes on"
    );
    let stats = ing.stats();
    assert_eq!(stats.dropped_after_loss, 2);
    assert_eq!(stats.loss_recoveries, 1);
    assert_eq!(stats.dropped_wait_key, 0);
    // A keyframe that itself follows a loss is fine.
    out.clear();
    ing.push(lossy(240, true), &mut w, &mut out).unwrap();
    assert_eq!(video_frames(&out).len(), 1);
}
