//! Hub behaviour as a player sees it.

use super::*;
use crate::media::{self, AudioSpecificConfig, Frame, MediaKind};
use crate::pages::{PagePool, PoolConfig, StreamWriter};

struct Src {
    _pool: PagePool,
    w: StreamWriter,
    next_id: u32,
}

impl Src {
    fn new() -> Src {
        Src::with_mode(crate::pages::PageMode::Paged)
    }

    fn with_mode(mode: crate::pages::PageMode) -> Src {
        let pool = PagePool::new(PoolConfig {
            mode,
            ..PoolConfig::default()
        });
        let w = pool.writer("test", 1 << 30);
        Src {
            _pool: pool,
            w,
            next_id: 0,
        }
    }

    /// A video frame of `size` bytes whose first NAL carries a frame index (for gap checks).
    fn video(&mut self, ts: u32, key: bool, disposable: bool, size: usize) -> Frame {
        let id = self.next_id;
        self.next_id += 1;
        let nal_header: u8 = match (key, disposable) {
            (true, _) => 0x65,
            (false, false) => 0x41,
            (false, true) => 0x01,
        };
        let mut nalus = vec![0u8; size.max(9)];
        nalus[..4].copy_from_slice(&((size.max(9) - 4) as u32).to_be_bytes());
        nalus[4] = nal_header;
        nalus[5..9].copy_from_slice(&id.to_be_bytes());
        let body = media::video_body(&mut self.w, key, 0, &nalus).unwrap();
        Frame::from_tag_body(MediaKind::Video, ts, body).unwrap()
    }

    fn avc_header(&mut self, ts: u32) -> Frame {
        let body =
            media::avc_sequence_header(&mut self.w, &[1, 66, 0xc0, 30, 0xff, 0xe0, 0]).unwrap();
        Frame::from_tag_body(MediaKind::Video, ts, body).unwrap()
    }

    fn aac_header(&mut self, ts: u32) -> Frame {
        let asc = AudioSpecificConfig {
            object_type: 2,
            sample_rate: 48000,
            channels: 2,
        }
        .to_bytes();
        let body = media::aac_sequence_header(&mut self.w, &asc).unwrap();
        Frame::from_tag_body(MediaKind::Audio, ts, body).unwrap()
    }

    fn aac(&mut self, ts: u32, size: usize) -> Frame {
        let body = media::aac_body(&mut self.w, &vec![0x21; size]).unwrap();
        Frame::from_tag_body(MediaKind::Audio, ts, body).unwrap()
    }

    fn speex(&mut self, ts: u32) -> Frame {
        let body = self.w.write(&[&[0xb2], &[0x55; 40]]).unwrap();
        Frame::from_tag_body(MediaKind::Audio, ts, body).unwrap()
    }
}

fn frame_id(f: &Frame) -> u32 {
    let b = f.payload.to_vec();
    u32::from_be_bytes([b[10], b[11], b[12], b[13]])
}

/// Everything queued for the player right now.
fn ready(p: &mut PlayerSubscription) -> Vec<PlayerItem> {
    let mut out = Vec::new();
    while let TryNext::Item(item) = p.try_next() {
        out.push(item);
    }
    out
}

fn frames(items: &[PlayerItem]) -> Vec<&Frame> {
    items
        .iter()
        .filter_map(|i| {
            if let PlayerItem::Frame(f) = i {
                Some(f)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn second_publisher_is_refused_until_the_first_leaves() {
    let hub = Hub::new(HubConfig::default());
    let first = hub.publish("live", SourceKind::Rtmp).unwrap();
    let err = hub.publish("live", SourceKind::Rtmp).unwrap_err();
    assert!(matches!(err, HubError::AlreadyPublishing { ref stream, .. } if stream == "live"));
    drop(first);
    assert!(hub.publish("live", SourceKind::File).is_ok());
    assert!(
        hub.stream_stats("live").is_none(),
        "an idle stream is forgotten"
    );
}

#[test]
fn republish_with_other_codecs_yields_no_stale_header() {
    let hub = Hub::new(HubConfig::default());
    let mut src = Src::new();
    let mut watcher = hub.play("live").unwrap();
    {
        let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
        p.push(src.avc_header(0)).unwrap();
        p.push(src.aac_header(0)).unwrap();
        p.push(src.video(0, true, false, 100)).unwrap();
        p.push(src.aac(10, 50)).unwrap();
    }
    ready(&mut watcher);
    // The same name comes back with Speex audio (node-media-server kept the AAC header).
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    p.push(src.avc_header(0)).unwrap();
    p.push(src.video(0, true, false, 100)).unwrap();
    p.push(src.speex(20)).unwrap();

    let mut late = hub.play("live").unwrap();
    for (who, items) in [
        ("late player", ready(&mut late)),
        ("watching player", ready(&mut watcher)),
    ] {
        assert!(
            matches!(
                items[0],
                PlayerItem::PublishStarted {
                    source: SourceKind::Rtmp
                }
            ),
            "{who}: {items:?}"
        );
        let aac_headers = frames(&items)
            .iter()
            .filter(|f| f.kind == MediaKind::Audio && f.sequence_header)
            .count();
        assert_eq!(aac_headers, 0, "{who} got a stale AAC header");
        let kinds: Vec<_> = frames(&items)
            .iter()
            .map(|f| (f.kind, f.sequence_header, f.codec()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (MediaKind::Video, true, Some(Codec::Avc)),
                (MediaKind::Video, false, Some(Codec::Avc)),
                (MediaKind::Audio, false, Some(Codec::Speex))
            ],
            "{who}"
        );
    }
    let stats = hub.stream_stats("live").unwrap();
    assert_eq!(stats.audio_codec.as_deref(), Some("speex"));
    assert_eq!(stats.video_codec.as_deref(), Some("h264"));
}

#[test]
fn late_player_gets_headers_then_starts_at_the_last_keyframe() {
    let hub = Hub::new(HubConfig::default());
    let mut src = Src::new();
    let mut p = hub.publish("live", SourceKind::File).unwrap();
    p.push(src.avc_header(0)).unwrap();
    p.push(src.aac_header(0)).unwrap();
    for i in 0..100u32 {
        p.push(src.video(i * 40, i % 50 == 0, false, 200)).unwrap();
        p.push(src.aac(i * 40 + 5, 30)).unwrap();
    }
    let mut player = hub.play("live").unwrap();
    let items = ready(&mut player);
    let fs = frames(&items);
    assert!(fs[0].sequence_header && fs[0].kind == MediaKind::Video);
    assert!(fs[1].sequence_header && fs[1].kind == MediaKind::Audio);
    assert_eq!(
        fs[0].timestamp, 2000,
        "headers are stamped at the start of the saved GOP"
    );
    assert!(fs[2].keyframe);
    assert_eq!(fs[2].timestamp, 2000);
    assert_eq!(
        fs.len(),
        2 + 100,
        "50 video + 50 audio frames since the keyframe"
    );
    let stats = hub.stream_stats("live").unwrap();
    assert_eq!(
        (stats.saver_frames, stats.players, stats.publishing),
        (100, 1, true)
    );
}

#[test]
fn never_keyframe_stream_stays_bounded() {
    let config = HubConfig {
        saver: SaverConfig {
            max_bytes: 1 << 20,
            max_frames: 300,
            audio_window_frames: 64,
        },
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    let mut src = Src::new();
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    for i in 0..5000u32 {
        p.push(src.video(i * 40, false, false, 500)).unwrap();
        p.push(src.aac(i * 40, 100)).unwrap();
    }
    let stats = hub.stream_stats("live").unwrap();
    assert_eq!(stats.saver_frames, 64, "only a short audio window is kept");
    assert!(stats.saver_bytes <= 64 * 102);

    // A single GOP longer than the frame bound is not kept either.
    p.push(src.video(300_000, true, false, 500)).unwrap();
    for i in 0..1000u32 {
        p.push(src.video(300_000 + i * 40, false, false, 500))
            .unwrap();
        let s = hub.stream_stats("live").unwrap();
        assert!(s.saver_frames <= 300 && s.saver_bytes <= 1 << 20);
    }
    // A new player therefore gets no video until the next keyframe.
    let mut player = hub.play("live").unwrap();
    assert!(frames(&ready(&mut player))
        .iter()
        .all(|f| f.kind != MediaKind::Video || f.sequence_header));
    p.push(src.video(400_000, false, false, 500)).unwrap();
    assert!(
        frames(&ready(&mut player)).is_empty(),
        "inter frames before the first keyframe are skipped"
    );
    p.push(src.video(400_040, true, false, 500)).unwrap();
    assert!(frames(&ready(&mut player))[0].keyframe);
    assert!(hub.player_stats("live")[0].dropped.resync >= 1);
}

/// In paged storage a stalled player that keeps audio and keyframes while dropping inter
/// frames keeps whole pages alive: it is disconnected once its queue pins more of the stream
/// than its hard bound, long before the stream's page budget fills.
#[test]
fn a_stalled_player_pinning_pages_is_kicked_at_its_hard_bound() {
    let config = HubConfig {
        player: PlayerQueueConfig {
            soft_bytes: 20_000,
            hard_bytes: 60_000,
        },
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    let mut src = Src::new();
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    p.push(src.avc_header(0)).unwrap();
    let player = hub.play("live").unwrap();
    let mut kicked_at = None;
    for i in 0..1000u32 {
        p.push(src.video(i * 40, i % 50 == 0, false, 2000)).unwrap();
        p.push(src.aac(i * 40, 100)).unwrap();
        if hub.player_stats("live").is_empty() {
            kicked_at = Some(i);
            break;
        }
        let s = &hub.player_stats("live")[0];
        assert!(
            s.queued_bytes <= 20_000 + 2_100,
            "payload stays near the soft bound"
        );
    }
    // 60 000 bytes of stream at 2100 bytes a frame pair: about the 29th pair.
    let i = kicked_at.expect("the stalled player was disconnected");
    assert!((25..=35).contains(&i), "kicked at pair {i}");
    drop(player);
}

#[test]
fn slow_player_drops_disposable_then_inter_then_audio_then_is_kicked() {
    let config = HubConfig {
        player: PlayerQueueConfig {
            soft_bytes: 20_000,
            hard_bytes: 60_000,
        },
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    // Contiguous storage: kept frames pin only themselves, so the payload policy alone acts
    // (paged storage adds the pinned-pages bound: see the next test).
    let mut src = Src::with_mode(crate::pages::PageMode::Contiguous);
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    p.push(src.avc_header(0)).unwrap();
    p.push(src.aac_header(0)).unwrap();
    let mut player = hub.play("live").unwrap();

    let mut ts = 0;
    let push_video =
        |p: &mut PublisherHandle, src: &mut Src, ts: u32, key: bool, disp: bool, size: usize| {
            p.push(src.video(ts, key, disp, size)).unwrap();
        };

    // Phase 1: a GOP of P and disposable B frames with audio, up to the soft bound: B frames go first.
    push_video(&mut p, &mut src, ts, true, false, 4000);
    let mut first_drop = None;
    for i in 1..200u32 {
        ts = i * 40;
        push_video(&mut p, &mut src, ts, false, i % 2 == 0, 1000);
        p.push(src.aac(ts, 100)).unwrap();
        let d = hub.player_stats("live")[0].dropped;
        if first_drop.is_none() && d.total() > 0 {
            first_drop = Some(d);
        }
    }
    let first = first_drop.expect("the player fell behind");
    assert!(
        first.disposable > 0 && first.inter == 0 && first.audio == 0,
        "{first:?}"
    );
    let d = hub.player_stats("live")[0].dropped;
    assert!(d.inter > 0, "inter frames go next: {d:?}");
    assert_eq!(d.audio, 0, "audio is kept below the hard bound: {d:?}");

    // Phase 2: keyframes and audio only accumulate; past the hard bound audio goes, then the player.
    let mut kicked_at = None;
    for i in 200..2000u32 {
        ts = i * 40;
        push_video(&mut p, &mut src, ts, i % 50 == 0, false, 8000);
        p.push(src.aac(ts, 100)).unwrap();
        if hub.player_stats("live").is_empty() {
            kicked_at = Some(i);
            break;
        }
        let s = hub.player_stats("live")[0].clone();
        assert!(
            s.queued_bytes <= 60_000,
            "queue stays under the hard bound: {s:?}"
        );
    }
    assert!(
        kicked_at.is_some(),
        "a player that never reads is disconnected"
    );
    let stats = hub.stream_stats("live").unwrap();
    assert!(stats.dropped.audio > 0, "{stats:?}");
    assert_eq!(stats.players_kicked, 1);

    let items = ready(&mut player);
    assert!(
        matches!(
            items.last(),
            Some(PlayerItem::Kicked(KickReason::QueueFull {
                hard_bytes: 60_000,
                ..
            }))
        ),
        "{:?}",
        items.last()
    );
    assert!(matches!(player.try_next(), TryNext::Ended));
}

#[test]
fn slow_player_gets_only_decodable_video() {
    let config = HubConfig {
        player: PlayerQueueConfig {
            soft_bytes: 30_000,
            hard_bytes: 1 << 20,
        },
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    let mut src = Src::new();
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    p.push(src.avc_header(0)).unwrap();
    let mut player = hub.play("live").unwrap();
    let mut prev_ref: HashMap<u32, Option<u32>> = HashMap::new();
    let mut last_ref = None;
    let mut delivered = Vec::new();
    for i in 0..3000u32 {
        let key = i % 50 == 0;
        let disp = !key && i % 3 == 1;
        let f = src.video(i * 40, key, disp, 1500);
        let id = frame_id(&f);
        if key {
            last_ref = None;
        }
        prev_ref.insert(id, last_ref);
        if !disp {
            last_ref = Some(id);
        }
        p.push(f).unwrap();
        // The player reads 2 frames per 3 pushed: always behind.
        if i % 3 != 0 {
            if let TryNext::Item(item) = player.try_next() {
                delivered.push(item);
            }
        }
    }
    let d = player.stats().dropped;
    assert!(d.disposable > 0 && d.inter > 0, "{d:?}");
    let mut last_delivered_ref: Option<u32> = None;
    for f in frames(&delivered)
        .into_iter()
        .filter(|f| !f.sequence_header)
    {
        let id = frame_id(f);
        if !f.keyframe {
            assert_eq!(
                prev_ref[&id], last_delivered_ref,
                "frame {id} delivered without its reference"
            );
        }
        if !f.disposable {
            last_delivered_ref = Some(id);
        }
    }
}

#[test]
fn publisher_memory_is_shared_by_players() {
    let pool = PagePool::new(PoolConfig::default());
    let mut w = pool.writer("live", 1 << 30);
    let hub = Hub::new(HubConfig::default());
    let players: Vec<_> = (0..20).map(|_| hub.play("live").unwrap()).collect();
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    let body = media::video_body(&mut w, true, 0, &[0, 0, 0, 1, 0x65]).unwrap();
    let len = body.len() as u64;
    p.push(Frame::from_tag_body(MediaKind::Video, 0, body).unwrap())
        .unwrap();
    assert_eq!(
        pool.stats().live_bytes,
        len,
        "one payload, referenced by saver and 20 queues"
    );
    assert_eq!(
        hub.player_stats("live")
            .iter()
            .map(|s| s.queued_items)
            .sum::<usize>(),
        40
    );
    drop(players);
}

#[tokio::test]
async fn player_before_publisher_waits_then_starts() {
    let hub = Hub::new(HubConfig::default());
    let mut player = hub.play("cam").unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = player.next().await {
            let done = matches!(item, PlayerItem::PublishStopped);
            got.push(item);
            if done {
                break;
            }
        }
        got
    });
    tokio::task::yield_now().await;
    let mut src = Src::new();
    {
        let mut p = hub.publish("cam", SourceKind::Rtsp).unwrap();
        p.push(src.avc_header(0)).unwrap();
        p.push(src.video(0, true, false, 100)).unwrap();
        p.push(src.video(40, false, false, 100)).unwrap();
    }
    let got = reader.await.unwrap();
    assert!(matches!(
        got[0],
        PlayerItem::PublishStarted {
            source: SourceKind::Rtsp
        }
    ));
    let fs = frames(&got);
    assert!(fs[0].sequence_header && fs[1].keyframe && !fs[2].keyframe);
    assert!(matches!(got.last(), Some(PlayerItem::PublishStopped)));
}

#[tokio::test]
async fn timestamps_stay_monotonic_across_a_republish_with_reset_clock() {
    let hub = Hub::new(HubConfig::default());
    let mut player = hub.play("live").unwrap();
    let mut src = Src::new();
    let mut seen = Vec::new();
    for run in 0..3 {
        let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
        // The third run starts just below the 32-bit wrap.
        let base: u32 = if run == 2 { u32::MAX - 500 } else { 0 };
        p.push(src.avc_header(base)).unwrap();
        p.push(src.aac_header(base)).unwrap();
        for i in 0..100u32 {
            let t = base.wrapping_add(i * 40);
            p.push(src.video(t, i % 50 == 0, false, 100)).unwrap();
            // Audio slightly behind video: interleaving jitter.
            p.push(src.aac(t.wrapping_sub(10), 20)).unwrap();
        }
        drop(p);
        while let TryNext::Item(item) = player.try_next() {
            if let PlayerItem::Frame(f) = item {
                seen.push((f.kind, f.timestamp));
            }
        }
    }
    assert_eq!(seen.len(), 3 * 202);
    // Each track never goes back (tracks may interleave, as the audio here runs 10 ms behind).
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let track: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect();
        for w in track.windows(2) {
            assert!(
                w[1].wrapping_sub(w[0]) as i32 >= 0,
                "{kind:?} timestamp went back: {} -> {}",
                w[0],
                w[1]
            );
        }
    }
    let seen: Vec<u32> = seen.iter().map(|(_, t)| *t).collect();
    let span = seen.last().unwrap().wrapping_sub(seen[0]);
    assert!(
        (3 * 3960 - 100..3 * 3960 + 100).contains(&span),
        "no jump: span {span}"
    );
}

#[tokio::test]
async fn shutdown_ends_players_and_refuses_pushes() {
    let hub = Hub::new(HubConfig::default());
    let mut src = Src::new();
    let mut player = hub.play("live").unwrap();
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    p.push(src.aac(0, 10)).unwrap();
    hub.shutdown();
    assert!(matches!(
        p.push(src.aac(20, 10)),
        Err(HubError::ShutDown { .. })
    ));
    assert!(matches!(
        player.next().await,
        Some(PlayerItem::PublishStarted { .. })
    ));
    assert!(
        matches!(player.next().await, Some(PlayerItem::Frame(_))),
        "queued frames are delivered"
    );
    assert!(player.next().await.is_none());
    assert!(hub.play("other").is_err());
}

#[tokio::test]
async fn kicked_player_reads_why_then_ends() {
    let hub = Hub::new(HubConfig::default());
    let mut player = hub.play("live").unwrap();
    assert!(hub.kick_player("live", player.id()));
    assert!(matches!(
        player.next().await,
        Some(PlayerItem::Kicked(KickReason::Requested))
    ));
    assert!(player.next().await.is_none());
}

#[test]
fn stats_report_picture_size_audio_format_and_uptime_of_the_current_publisher() {
    // SPS of fixtures/demo.mp4 (x264 baseline 640x360).
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
    ];
    let hub = Hub::new(HubConfig::default());
    let mut src = Src::new();
    let mut publisher = hub.publish("s", SourceKind::Rtmp).unwrap();
    let before = hub.stream_stats("s").unwrap();
    assert_eq!((before.video_width, before.audio_sample_rate), (None, None));
    assert!(before.uptime_ms.is_some());
    let record = media::AvcDecoderConfig::from_parameter_sets(SPS, &[0x68, 0xcb, 0x83, 0xcb, 0x20])
        .unwrap()
        .to_bytes();
    let body = media::avc_sequence_header(&mut src.w, &record).unwrap();
    publisher
        .push(Frame::from_tag_body(MediaKind::Video, 0, body).unwrap())
        .unwrap();
    publisher.push(src.aac_header(0)).unwrap();
    publisher.count_ingest_drop();
    let s = hub.stream_stats("s").unwrap();
    assert_eq!((s.video_width, s.video_height), (Some(640), Some(360)));
    assert_eq!(
        (s.audio_sample_rate, s.audio_channels),
        (Some(48000), Some(2))
    );
    assert_eq!(s.ingest_dropped, 1);
    // A header that does not parse gives no size, and no error.
    publisher.push(src.avc_header(40)).unwrap();
    assert_eq!(hub.stream_stats("s").unwrap().video_width, None);
    let _player = hub.play("s").unwrap();
    drop(publisher);
    let s = hub.stream_stats("s").unwrap();
    assert_eq!(
        (s.uptime_ms, s.video_width, s.audio_sample_rate),
        (None, None, None)
    );
}

#[test]
fn latest_keyframe_follows_the_saved_gop_and_ends_with_the_publisher() {
    let hub = Hub::new(HubConfig::default());
    let mut src = Src::new();
    assert!(hub.latest_keyframe("cam").is_none(), "unknown stream");
    let mut publisher = hub.publish("cam", SourceKind::Rtmp).unwrap();
    publisher.push(src.avc_header(0)).unwrap();
    publisher.push(src.video(0, false, false, 100)).unwrap();
    assert!(
        hub.latest_keyframe("cam").is_none(),
        "no keyframe has arrived yet"
    );
    publisher.push(src.video(40, true, false, 100)).unwrap();
    publisher.push(src.video(80, false, false, 100)).unwrap();
    let first = hub.latest_keyframe("cam").unwrap();
    assert_eq!(first.video_codec, Some(Codec::Avc));
    assert!(first.header.sequence_header);
    assert!(first.keyframe.keyframe);
    assert_eq!(first.keyframe.timestamp, 40);
    publisher.push(src.video(120, true, false, 100)).unwrap();
    let second = hub.latest_keyframe("cam").unwrap();
    assert_eq!(second.keyframe.timestamp, 120);
    assert_eq!(frame_id(&second.keyframe), frame_id(&first.keyframe) + 2);
    drop(publisher);
    assert!(hub.latest_keyframe("cam").is_none(), "publisher gone");
}

/// A kicked player whose connection has not yet dropped its subscription (it is still flushing
/// its last bytes to a peer that does not read) must not keep the stream's log, and so every
/// frame published since, alive.
#[test]
fn a_kicked_subscription_pins_no_frames() {
    let config = HubConfig {
        player: PlayerQueueConfig {
            soft_bytes: 20_000,
            hard_bytes: 60_000,
        },
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    let mut src = Src::with_mode(crate::pages::PageMode::Contiguous);
    let mut p = hub.publish("live", SourceKind::Rtmp).unwrap();
    let stalled = hub.play("live").unwrap();
    for i in 0..5000u32 {
        p.push(src.video(i * 40, i % 50 == 0, false, 2000)).unwrap();
        p.push(src.aac(i * 40, 100)).unwrap();
    }
    assert_eq!(hub.stream_stats("live").unwrap().players_kicked, 1);
    let live = src._pool.stats().live_bytes;
    // The saver's GOP (50 frame pairs) and at most three log segments.
    assert!(
        live < 50 * 2100 + 3 * 64 * 2000,
        "{live} bytes live while a kicked player holds its subscription"
    );
    drop(stalled);
}

#[test]
fn outputs_read_like_players_but_count_apart() {
    let hub = Hub::new(HubConfig::default());
    let mut src = Src::new();
    let recorder = hub
        .subscribe_output("cam", false, PlayerQueueConfig::default())
        .unwrap();
    let named = hub
        .subscribe_output("cam", true, PlayerQueueConfig::default())
        .unwrap();
    assert_eq!(
        hub.player_count("cam"),
        1,
        "only the output named for it keeps a source on"
    );
    let changed = hub.publishing_changed();
    let mut p = hub.publish("cam", SourceKind::Rtsp).unwrap();
    assert!(changed.has_changed().unwrap());
    assert_eq!(hub.publishing(), ["cam"]);
    let _player = hub.play("cam").unwrap();
    let stats = hub.stream_stats("cam").unwrap();
    assert_eq!((stats.players, stats.outputs), (1, 2));
    assert_eq!(hub.player_stats("cam").len(), 1);

    p.push(src.avc_header(0)).unwrap();
    p.push(src.video(0, true, false, 100)).unwrap();
    p.discontinuity();
    p.push(src.video(40, true, false, 100)).unwrap();
    for mut sub in [recorder, named] {
        let mut items = Vec::new();
        while let TryNext::Item(i) = sub.try_next() {
            items.push(i);
        }
        let kinds: Vec<&str> = items
            .iter()
            .map(|i| match i {
                PlayerItem::PublishStarted { .. } => "start",
                PlayerItem::Frame(f) if f.sequence_header => "header",
                PlayerItem::Frame(_) => "frame",
                PlayerItem::Discontinuity => "discontinuity",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["start", "header", "frame", "discontinuity", "frame"]
        );
    }
    drop(p);
    assert!(hub.publishing().is_empty());
}
