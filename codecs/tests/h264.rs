//! H.264 end to end on the committed fixtures (ffmpeg/x264 output, see fixtures/README.md):
//! framing round trips, decoding every profile as ffmpeg does, 720p → 360p renditions
//! checked by our decoder and by ffmpeg, the keyframe schedule, recovery from garbage, and
//! JPEG snapshots read back by an independent decoder (`jpeg-decoder`).
//!
//! The ffmpeg checks need `ffmpeg`/`ffprobe` on PATH (test.sh installs them) and are
//! skipped with a message otherwise.

#[path = "common/mp4_video.rs"]
mod mp4_video;

use std::process::Command;
use std::time::Duration;

use codecs::h264::{
    annexb_to_avcc, avcc_to_annexb, fit_size, snapshot_jpeg, AvcConfig, Decoder, DecoderLimits,
    H264Error, RenditionSpec, VideoInput, VideoOutput, VideoTranscoder, I420,
};
use mp4_video::{fixture_path, load, Sample, Video};

const BASELINE: &str = "h264-baseline-aac.mp4";
const HIGH: &str = "h264-high-aac.mp4";
const MAIN_720P: &str = "h264-main-3mbps-aac.mp4";

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("-version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: `{tool}` is not on PATH; the ffmpeg cross-check did not run");
    }
    found
}

/// Decodes every sample (and the flush) with our decoder: pictures and times.
fn decode_all(v: &Video) -> Vec<(I420, i64)> {
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    d.configure(&v.config).unwrap();
    let mut out = Vec::new();
    for s in &v.samples {
        if let Some((p, pts)) = d.decode_at(&s.data, s.pts_ms).unwrap() {
            out.push((p.clone(), pts));
        }
    }
    out.extend(d.flush().unwrap());
    out
}

/// ffmpeg's decode of `input` (a file path), every frame, as I420.
fn ffmpeg_frames(input: &str, format: Option<&str>, w: u32, h: u32) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .args(["-i", input, "-map", "0:v", "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = (w * h * 3 / 2) as usize;
    assert_eq!(out.stdout.len() % size, 0);
    out.stdout.chunks(size).map(<[u8]>::to_vec).collect()
}

fn planes_concat(p: &I420) -> Vec<u8> {
    let (y, u, v) = p.planes();
    [y, u, v].concat()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

#[test]
fn avcc_annexb_round_trip_on_real_access_units() {
    for name in [BASELINE, HIGH, MAIN_720P] {
        let v = load(name);
        let config = AvcConfig::parse(&v.config).unwrap();
        assert_eq!(AvcConfig::parse(&config.to_record()).unwrap(), config);
        for s in v.samples.iter().take(60) {
            let mut annexb = Vec::new();
            avcc_to_annexb(&s.data, config.nal_length_size, &mut annexb).unwrap();
            let mut back = Vec::new();
            annexb_to_avcc(&annexb, &mut back);
            assert_eq!(back, s.data, "{name}");
        }
    }
}

#[test]
fn truncated_access_units_are_errors_at_every_split_point() {
    let v = load(BASELINE);
    // A P-frame with several NAL units would do as well; the IDR is the largest.
    let au = &v.samples[0].data;
    let mut nal_ends = Vec::new();
    let mut at = 0;
    while at < au.len() {
        at += 4 + u32::from_be_bytes(au[at..at + 4].try_into().unwrap()) as usize;
        nal_ends.push(at);
    }
    let mut out = Vec::new();
    for cut in 1..au.len() {
        let r = avcc_to_annexb(&au[..cut], 4, &mut out);
        assert_eq!(r.is_ok(), nal_ends.contains(&cut), "cut at {cut}");
        out.clear();
    }
}

#[test]
fn every_fixture_profile_decodes_as_ffmpeg_does() {
    for (name, w, h, frames) in [
        (BASELINE, 640, 360, 250),
        (HIGH, 640, 360, 250),
        (MAIN_720P, 1280, 720, 100),
    ] {
        let v = load(name);
        assert_eq!((v.width, v.height), (w, h));
        let ours = decode_all(&v);
        assert_eq!(ours.len(), frames, "{name}");
        assert!(ours.iter().all(|(p, _)| (p.width(), p.height()) == (w, h)));
        // Presentation order, with the inputs' presentation times.
        let mut want: Vec<i64> = v.samples.iter().map(|s| s.pts_ms).collect();
        want.sort_unstable();
        let got: Vec<i64> = ours.iter().map(|(_, pts)| *pts).collect();
        assert_eq!(got, want, "{name}");
        if !have("ffmpeg") {
            continue;
        }
        let reference = ffmpeg_frames(&fixture_path(name), None, w, h);
        assert_eq!(reference.len(), frames, "{name}: ffmpeg's frame count");
        let mut inexact = 0;
        for (i, ((p, _), r)) in ours.iter().zip(&reference).enumerate() {
            // H.264 decoding is specified to the bit, and openh264 is exact on baseline.
            // On the B-frames of main/high streams it is off by a few levels in a few pixels
            // (1..180 of 921600 per frame, at most 8 levels: above 75 dB PSNR).
            let p = planes_concat(p);
            if p != *r {
                inexact += 1;
                let db = psnr(&p, r);
                assert!(
                    name != BASELINE && db > 75.0,
                    "{name}: frame {i}: {db:.1} dB"
                );
            }
        }
        eprintln!("{name}: {inexact} of {frames} frames not bit-exact with ffmpeg");
    }
}

fn spec(width: Option<u32>, height: Option<u32>, interval_ms: u64) -> RenditionSpec {
    RenditionSpec {
        width,
        height,
        bitrate_bps: 800_000,
        keyframe_interval: Duration::from_millis(interval_ms),
        limits: DecoderLimits::default(),
    }
}

/// Runs `samples` through a transcoder; outputs in order, and the transcoder.
fn transcode(
    spec: RenditionSpec,
    config: &[u8],
    samples: &[Sample],
) -> (Vec<VideoOutput>, VideoTranscoder) {
    let mut t = VideoTranscoder::new(spec).unwrap();
    t.set_config(config).unwrap();
    let mut out = Vec::new();
    for s in samples {
        let input = VideoInput {
            data: &s.data,
            pts_ms: s.pts_ms,
            keyframe: s.keyframe,
        };
        if let Some(o) = t.push(input).unwrap() {
            out.push(o);
        }
    }
    out.extend(t.finish().unwrap());
    (out, t)
}

/// The rendition as an Annex B elementary stream: parameter sets before each keyframe.
fn annexb_stream(outputs: &[VideoOutput]) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut config = None;
    for o in outputs {
        if let Some(c) = &o.config {
            config = Some(AvcConfig::parse(c).unwrap());
        }
        if o.keyframe {
            config.as_ref().unwrap().write_annexb(&mut stream);
        }
        avcc_to_annexb(&o.data, 4, &mut stream).unwrap();
    }
    stream
}

/// The 4 s 720p fixture twice in a row (8 s; the second copy 4 s later), as a publisher
/// looping it would send.
fn main_720p_8s() -> Video {
    let mut v = load(MAIN_720P);
    let second: Vec<Sample> = v
        .samples
        .iter()
        .map(|s| Sample {
            pts_ms: s.pts_ms + 4000,
            ..s.clone()
        })
        .collect();
    v.samples.extend(second);
    v
}

#[test]
fn rendition_720p_to_360p_decodes_with_ours_and_ffmpeg() {
    let v = main_720p_8s();
    let (out, t) = transcode(spec(None, Some(360), 1000), &v.config, &v.samples);
    let s = t.stats();
    eprintln!("{s:?}");
    assert_eq!(t.output_size(), Some((640, 360)));
    assert_eq!(out.len(), 200);
    assert_eq!((s.decoded, s.encoded, s.decode_errors), (200, 200, 0));
    // The SPS's VUI says 25 fps and the times agree: no rebuild for the rate.
    assert_eq!(s.encoder_rebuilds, 0);
    assert!(out[0].keyframe && out[0].config.is_some());
    // One output per source frame, at the source's presentation times, increasing.
    let mut want: Vec<i64> = v.samples.iter().map(|s| s.pts_ms).collect();
    want.sort_unstable();
    assert_eq!(out.iter().map(|o| o.pts_ms).collect::<Vec<_>>(), want);
    // Keyframes every second (the source has them every 2 s).
    let keys: Vec<i64> = out
        .iter()
        .filter(|o| o.keyframe)
        .map(|o| o.pts_ms)
        .collect();
    assert_eq!(keys, [80, 1080, 2080, 3080, 4080, 5080, 6080, 7080]);
    // The output is constrained baseline.
    let config = AvcConfig::parse(out[0].config.as_ref().unwrap()).unwrap();
    assert_eq!(config.profile, 66);
    // Bitrate near the target over 8 s (rate control, not a promise: within 40%).
    let bytes: usize = out.iter().map(|o| o.data.len()).sum();
    let kbps = bytes as f64 * 8.0 / 8.0 / 1000.0;
    assert!((480.0..=1120.0).contains(&kbps), "{kbps} kbit/s");

    // Our decoder: every frame, 640x360, and close to the source scaled down.
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    let source = decode_all(&v);
    let mut scaler = codecs::h264::Scaler::new(1280, 720, 640, 360).unwrap();
    let mut scaled = I420::new(640, 360);
    let mut decoded = 0;
    let mut worst = f64::INFINITY;
    for (o, (src, _)) in out.iter().zip(&source) {
        if let Some(c) = &o.config {
            d.configure(c).unwrap();
        }
        let p = d.decode(&o.data).unwrap().expect("baseline: no delay");
        assert_eq!((p.width(), p.height()), (640, 360));
        scaler.scale(src, &mut scaled).unwrap();
        worst = worst.min(psnr(p.planes().0, scaled.planes().0));
        decoded += 1;
    }
    assert_eq!(decoded, 200);
    eprintln!("worst luma PSNR against the scaled source: {worst:.1} dB");
    assert!(worst > 30.0, "{worst} dB");

    // ffmpeg: the same frame count, no errors, and the same pictures.
    if !have("ffprobe") || !have("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rendition.h264");
    std::fs::write(&path, annexb_stream(&out)).unwrap();
    let path = path.to_str().unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_frames,profile,has_b_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1", path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success() && probe.stderr.is_empty(),
        "{text} {probe:?}"
    );
    for want in [
        "width=640",
        "height=360",
        "nb_read_frames=200",
        "has_b_frames=0",
    ] {
        assert!(text.lines().any(|l| l == want), "ffprobe: {text}");
    }
    let check = Command::new("ffmpeg")
        .args(["-v", "error", "-i", path, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "{check:?}"
    );
    let reference = ffmpeg_frames(path, Some("h264"), 640, 360);
    assert_eq!(reference.len(), 200);
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    for (o, r) in out.iter().zip(&reference) {
        if let Some(c) = &o.config {
            d.configure(c).unwrap();
        }
        let p = d.decode(&o.data).unwrap().unwrap();
        assert!(
            planes_concat(p) == *r,
            "ffmpeg decodes our output differently"
        );
    }
}

#[test]
fn keyframes_follow_time_not_frame_count() {
    let v = load(BASELINE);
    // A variable frame rate: the 250 frames spread over 10 s unevenly (20 to 70 ms apart).
    let mut pts = 0;
    let samples: Vec<Sample> = v
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = pts;
            pts += [20, 70, 30, 40][i % 4];
            Sample {
                pts_ms: at,
                ..s.clone()
            }
        })
        .collect();
    let (out, t) = transcode(spec(Some(320), None, 1500), &v.config, &samples);
    assert_eq!(out.len(), 250);
    assert_eq!(t.output_size(), Some((320, 180)));
    let keys: Vec<i64> = out
        .iter()
        .filter(|o| o.keyframe)
        .map(|o| o.pts_ms)
        .collect();
    eprintln!("keyframes at {keys:?}; {:?}", t.stats());
    assert_eq!(keys[0], 0);
    for pair in keys.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((1500..1570).contains(&gap), "keyframes {keys:?}");
    }
    assert_eq!(keys.len(), 7); // 0, 1.5, ... 9 s
}

/// Found by `fuzz/fuzz_targets/h264_transcode.rs`
/// (`fuzz/regressions/h264_transcode/frame_rate_estimate_overflows_on_time_jump_from_i64_max_to_min`):
/// the frame-rate estimate subtracted neighbouring output times, which overflowed (a panic
/// with overflow checks) when a source's times jumped between the ends of `i64`.
#[test]
fn time_jump_between_the_ends_of_i64_is_not_an_overflow() {
    let v = load(BASELINE);
    let extremes = [i64::MAX, i64::MIN, i64::MAX, 0, i64::MIN];
    let samples: Vec<Sample> = v.samples[..12]
        .iter()
        .enumerate()
        .map(|(i, s)| Sample {
            pts_ms: extremes
                .get(i.wrapping_sub(7))
                .copied()
                .unwrap_or(i as i64 * 40),
            ..s.clone()
        })
        .collect();
    let (out, _) = transcode(spec(Some(64), None, 1000), &v.config, &samples);
    assert_eq!(out.len(), 12);
}

/// Non-keyframe access units of the baseline fixture, corrupted in the ways a broken
/// publisher or network would: random bytes, lying lengths, truncation, random slices.
fn garbage(seed: &mut u64, good: &[u8]) -> Vec<u8> {
    let mut next = || {
        // xorshift64*
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let kind = next() % 6;
    let len = (next() % 2000) as usize + 1;
    let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    match kind {
        0 => bytes,
        1 => {
            // A length that claims more than there is.
            let mut v = (len as u32 + 10).to_be_bytes().to_vec();
            v.extend(bytes);
            v
        }
        2 => good[..(next() as usize % good.len()).max(1)].to_vec(),
        3 | 4 => {
            // A well-framed slice NAL (IDR or not) with a random body.
            bytes[0] = if kind == 3 { 0x65 } else { 0x41 };
            let mut v = (len as u32).to_be_bytes().to_vec();
            v.extend(bytes);
            v
        }
        _ => {
            // The real access unit with bytes flipped after its first 8.
            let mut v = good.to_vec();
            for _ in 0..8 {
                let at = 8 + next() as usize % (v.len() - 8).max(1);
                if at < v.len() {
                    v[at] ^= next() as u8 | 1;
                }
            }
            v
        }
    }
}

#[test]
fn garbage_recovers_at_the_next_idr_and_never_panics() {
    let v = load(BASELINE);
    let mut t = VideoTranscoder::new(spec(Some(320), None, 2000)).unwrap();
    t.set_config(&v.config).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut outputs = Vec::new();
    let mut errors = 0;
    let mut push = |t: &mut VideoTranscoder, s: &Sample, data: &[u8], outputs: &mut Vec<_>| {
        let input = VideoInput {
            data,
            pts_ms: s.pts_ms,
            keyframe: s.keyframe,
        };
        match t.push(input) {
            Ok(Some(o)) => outputs.push((s.pts_ms, o)),
            Ok(None) => {}
            Err(e) => {
                assert!(e.is_recoverable(), "{e}");
                errors += 1;
            }
        }
    };
    for (i, s) in v.samples.iter().enumerate() {
        // Frames 60..70 (mid-GOP: keyframes are every 50) arrive corrupted.
        if (60..70).contains(&i) {
            let bad = garbage(&mut seed, &s.data);
            push(&mut t, s, &bad, &mut outputs);
        } else {
            push(&mut t, s, &s.data, &mut outputs);
        }
    }
    let st = t.stats();
    eprintln!("{st:?}, {errors} errors");
    assert!(st.decode_errors >= 1);
    // Nothing from the damaged GOP after the first error; output resumes at frame 100's IDR.
    let resumed = outputs.iter().find(|(pts, _)| *pts > 60 * 40).unwrap();
    assert_eq!(resumed.0, 100 * 40);
    assert!(resumed.1.keyframe);
    assert!(outputs
        .iter()
        .all(|(pts, _)| *pts < 70 * 40 || *pts >= 100 * 40));
    assert_eq!(
        outputs.len() + st.skipped_until_keyframe as usize + errors,
        250
    );
    // Every output decodes.
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    for (_, o) in &outputs {
        if let Some(c) = &o.config {
            d.configure(c).unwrap();
        }
        assert!(d.decode(&o.data).unwrap().is_some());
    }

    // Thousands of hostile access units, with keyframe flags set, between real ones.
    let mut t = VideoTranscoder::new(spec(Some(160), None, 2000)).unwrap();
    t.set_config(&v.config).unwrap();
    for round in 0..3000 {
        let s = &v.samples[round % v.samples.len()];
        let bad = garbage(&mut seed, &s.data);
        let _ = t.push(VideoInput {
            data: &bad,
            pts_ms: round as i64 * 40,
            keyframe: round % 3 == 0,
        });
        if round % 7 == 0 {
            let _ = t.push(VideoInput {
                data: &s.data,
                pts_ms: round as i64 * 40 + 20,
                keyframe: s.keyframe,
            });
        }
        if round % 500 == 0 {
            // Hostile sequence headers too.
            let _ = t.set_config(&bad);
            t.set_config(&v.config).unwrap();
        }
    }
    eprintln!("after 3000 hostile access units: {:?}", t.stats());
    // And it still transcodes a clean stream afterwards.
    let mut clean = 0;
    for s in &v.samples {
        let input = VideoInput {
            data: &s.data,
            pts_ms: 1_000_000 + s.pts_ms,
            keyframe: s.keyframe,
        };
        if let Ok(Some(_)) = t.push(input) {
            clean += 1;
        }
    }
    assert!(clean >= 200, "{clean}");
}

#[test]
fn limits_refuse_large_pictures_before_decoding() {
    let v = load(MAIN_720P);
    let small = DecoderLimits {
        max_width: 640,
        max_height: 480,
    };
    let mut d = Decoder::new(small).unwrap();
    assert!(matches!(
        d.configure(&v.config),
        Err(H264Error::TooLarge {
            width: 1280,
            height: 720,
            ..
        })
    ));
    // In band: an access unit carrying the 720p SPS is refused too.
    let config = AvcConfig::parse(&v.config).unwrap();
    let mut au = Vec::new();
    for set in config.sps.iter().chain(&config.pps) {
        au.extend_from_slice(&(set.len() as u32).to_be_bytes());
        au.extend_from_slice(set);
    }
    au.extend_from_slice(&v.samples[0].data);
    assert!(matches!(d.decode(&au), Err(H264Error::TooLarge { .. })));
    let mut t = VideoTranscoder::new(RenditionSpec {
        limits: small,
        ..spec(None, Some(360), 1000)
    })
    .unwrap();
    assert!(t.set_config(&v.config).is_err());
    let r = t.push(VideoInput {
        data: &au,
        pts_ms: 0,
        keyframe: true,
    });
    assert!(matches!(r, Err(H264Error::TooLarge { .. })));
    assert_eq!(t.stats().decode_errors, 1);
}

#[test]
fn snapshot_is_a_jpeg_of_the_source_size() {
    for (name, w, h) in [
        (BASELINE, 640, 360),
        (HIGH, 640, 360),
        (MAIN_720P, 1280, 720),
    ] {
        let v = load(name);
        let key = v.samples.iter().find(|s| s.keyframe).unwrap();
        let snap = snapshot_jpeg(&v.config, &key.data, 85, DecoderLimits::default()).unwrap();
        assert_eq!((snap.width, snap.height), (w, h));
        let mut dec = jpeg_decoder::Decoder::new(&snap.jpeg[..]);
        let pixels = dec.decode().unwrap();
        let info = dec.info().unwrap();
        assert_eq!((u32::from(info.width), u32::from(info.height)), (w, h));
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        // Compare brightness with our decode of the same IDR (limited range expanded).
        let ours = &decode_all(&v)[0].0;
        let (y, _, _) = ours.planes();
        let mut diff = 0.0;
        for (px, &l) in pixels.chunks_exact(3).zip(y) {
            let luma =
                0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]);
            let full = (f64::from(l) - 16.0) * 255.0 / 219.0;
            diff += (luma - full.clamp(0.0, 255.0)).abs();
        }
        let mean = diff / f64::from(w * h);
        eprintln!(
            "{name}: {} bytes, mean luma difference {mean:.2}",
            snap.jpeg.len()
        );
        assert!(mean < 4.0, "{name}: {mean}");
    }
    // Not a keyframe, or garbage: an error, not a picture.
    let v = load(BASELINE);
    let p = &v.samples[1].data;
    assert!(snapshot_jpeg(&v.config, p, 85, DecoderLimits::default()).is_err());
    assert!(snapshot_jpeg(&v.config, &[0, 0, 0, 9, 1], 85, DecoderLimits::default()).is_err());
    assert!(snapshot_jpeg(&[1, 2, 3], &v.samples[0].data, 85, DecoderLimits::default()).is_err());
}

#[test]
fn fit_size_keeps_the_aspect_ratio() {
    assert_eq!(fit_size(1280, 720, None, Some(360)), (640, 360));
    assert_eq!(fit_size(1280, 720, Some(640), None), (640, 360));
    assert_eq!(fit_size(1920, 1080, None, Some(480)), (854, 480));
    assert_eq!(fit_size(720, 1280, Some(360), None), (360, 640));
}

#[test]
fn new_sequence_header_with_another_size_rebuilds_the_encoder() {
    let small = load(BASELINE);
    let large = load(MAIN_720P);
    // Source size out; enough bitrate for 720p that rate control drops no frame.
    let mut t = VideoTranscoder::new(RenditionSpec {
        bitrate_bps: 3_000_000,
        ..spec(None, None, 2000)
    })
    .unwrap();
    let mut out = Vec::new();
    t.set_config(&small.config).unwrap();
    for s in &small.samples[..50] {
        let input = VideoInput {
            data: &s.data,
            pts_ms: s.pts_ms,
            keyframe: s.keyframe,
        };
        out.extend(t.push(input).unwrap());
    }
    assert_eq!(t.output_size(), Some((640, 360)));
    // The publisher switches to 720p: new sequence header, then its frames from 2 s on.
    t.set_config(&large.config).unwrap();
    // The same header again (as publishers resend it) changes nothing.
    t.set_config(&large.config).unwrap();
    for s in &large.samples {
        let input = VideoInput {
            data: &s.data,
            pts_ms: 2000 + s.pts_ms,
            keyframe: s.keyframe,
        };
        out.extend(t.push(input).unwrap());
    }
    out.extend(t.finish().unwrap());
    let st = t.stats();
    assert_eq!(t.output_size(), Some((1280, 720)));
    assert_eq!(
        (st.encoder_rebuilds, st.configs, st.decode_errors),
        (1, 2, 0)
    );
    assert_eq!((st.encoded, st.encoder_skipped), (150, 0));
    let switch = out.iter().position(|o| o.pts_ms >= 2000).unwrap();
    assert!(out[switch].keyframe && out[switch].config.is_some());
    assert_eq!(out.len(), 150);
    // The rendition plays through the switch.
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    for o in &out {
        if let Some(c) = &o.config {
            d.configure(c).unwrap();
        }
        let p = d.decode(&o.data).unwrap().unwrap();
        let want = if o.pts_ms < 2000 { 640 } else { 1280 };
        assert_eq!(p.width(), want);
    }
}

#[test]
fn formats_openh264_cannot_decode_are_refused_from_the_sps() {
    // x264 High 10 (yuv420p10le) 64x64, from ffmpeg 5.1; any PPS will do.
    let high10 = [
        0x67, 0x6e, 0x00, 0x0a, 0xa6, 0xcd, 0x94, 0x42, 0x6c, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
        0x40, 0x00, 0x00, 0x0c, 0x83, 0xc4, 0x89, 0x65, 0x80,
    ];
    let record = AvcConfig::from_parameter_sets(&high10, &[0x68, 0xeb, 0xec, 0xb2])
        .unwrap()
        .to_record();
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    let e = d.configure(&record).unwrap_err();
    assert!(matches!(e, H264Error::Unsupported(_)), "{e}");
    let mut t = VideoTranscoder::new(spec(None, None, 2000)).unwrap();
    assert!(t.set_config(&record).is_err());
}

#[test]
fn pictures_keep_their_times_across_errors_in_a_b_frame_stream() {
    for name in [HIGH, MAIN_720P] {
        let v = load(name);
        let clean: std::collections::HashMap<i64, Vec<u8>> = decode_all(&v)
            .iter()
            .map(|(p, pts)| (*pts, planes_concat(p)))
            .collect();
        let mut d = Decoder::new(DecoderLimits::default()).unwrap();
        d.configure(&v.config).unwrap();
        let mut seed = 7;
        let mut waiting = false;
        let mut got = Vec::new();
        for (i, s) in v.samples.iter().enumerate() {
            // Decode order 30..33 (mid-GOP, B-frames around) arrive corrupted.
            let bad;
            let data = if (30..33).contains(&i) {
                bad = garbage(&mut seed, &s.data);
                &bad
            } else {
                &s.data
            };
            if waiting && !s.keyframe {
                continue;
            }
            match d.decode_at(data, s.pts_ms) {
                Ok(Some((p, pts))) => got.push((pts, planes_concat(p))),
                Ok(None) => {}
                Err(_) => waiting = true,
            }
            if s.keyframe {
                waiting = false;
            }
        }
        for (p, pts) in d.flush().unwrap() {
            got.push((pts, planes_concat(&p)));
        }
        let times: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{name}: {times:?}");
        let wrong: Vec<i64> = got
            .iter()
            .filter(|(t, p)| clean.get(t) != Some(p))
            .map(|(t, _)| *t)
            .collect();
        eprintln!(
            "{name}: {} pictures, wrong times or content at {wrong:?}",
            got.len()
        );
        assert!(wrong.is_empty(), "{name}: {wrong:?}");
    }
}

#[test]
fn a_frame_rate_unlike_the_sps_rebuilds_the_encoder_at_a_scheduled_keyframe() {
    // The baseline fixture's VUI says 25 fps; stamp it at 50 (20 ms apart).
    let v = load(BASELINE);
    let samples: Vec<Sample> = v
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| Sample {
            pts_ms: i as i64 * 20,
            ..s.clone()
        })
        .collect();
    let (out, t) = transcode(spec(Some(320), None, 1000), &v.config, &samples);
    let st = t.stats();
    assert_eq!(st.encoder_rebuilds, 1, "{st:?}");
    assert_eq!(out.len() as u64 + st.encoder_skipped, 250);
    // openh264's intra period, 25 frames at the SPS's 25 fps, comes at 0.5 s: the encoder is
    // rebuilt for 50 fps there, and the keyframes are on time from then on.
    let keys: Vec<i64> = out
        .iter()
        .filter(|o| o.keyframe)
        .map(|o| o.pts_ms)
        .collect();
    assert_eq!(keys, [0, 500, 1500, 2500, 3500, 4500]);
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    for o in &out {
        if let Some(c) = &o.config {
            d.configure(c).unwrap();
        }
        assert!(d.decode(&o.data).unwrap().is_some());
    }
}
