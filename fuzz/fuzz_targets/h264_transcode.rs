//! A rendition's pipeline, `codecs::h264::VideoTranscoder` (openh264 decode → scale →
//! openh264 encode), and `snapshot_jpeg`, fed by a peer that lies: sequence headers and access
//! units from the fuzzer, in any order, with times that jump anywhere.
//!
//! Input: one header byte, then records until the data ends.
//! - header: bits 0-2 the output size (source, 64 wide, 48 high, 64x64, 16x16, 32 wide,
//!   16 high, 100x30), bits 3-4 the keyframe interval (0, 100 ms, 1 s, 2 s). The limits are
//!   256x256 and the bitrate 100 kbit/s, so every picture is small and executions are quick.
//! - record: `kind`, `delta`, a big-endian u16 length, then that many bytes of payload (or what
//!   is left). `kind & 3`: 0 `set_config(payload)`, 1 `push(payload)` (a keyframe if
//!   `kind & 4`), 2 `snapshot_jpeg(last config, payload, quality = delta)`, 3 `finish()`.
//!   Each record moves the presentation time by `delta as i8` ms, or, if `kind & 0x80`, by
//!   `delta as i8` × 2^56 (saturating), so times go backwards and reach the ends of `i64`.
//!
//! The seeds (`seeds/h264_transcode/`) are this format around a real stream: the avcC record
//! and first access units of a 64x64 x264 baseline clip (see `README.md`).
//!
//! Invariants:
//! - no panic, hang or large allocation (run with `-rss_limit_mb`/`-malloc_limit_mb`);
//! - errors from bad input are never encoder failures (`H264Error::Encode`) nor JPEG failures:
//!   the encoder and the JPEG writer only see pictures we made. After an error that is not
//!   recoverable (`Unsupported`: an SPS openh264 cannot decode) the run stops, as the server
//!   would drop the rendition;
//! - every output is 4-byte AVCC of non-empty NAL units without parameter sets or AUDs; the
//!   first output is a keyframe carrying an avcC record; every record parses, and its SPS says
//!   the output size (`output_size`), which is even, at least 16, at most 3840x2160, and the
//!   requested one when both sides are given;
//! - output times are input times (or 0, for a picture `finish` flushes without a time);
//! - the counters add up: `frames_in` pushes, `encoded` outputs of which `keyframes`
//!   keyframes and `configs` configs, `source_configs` `set_config` calls;
//! - a snapshot is a JPEG (SOI … EOI) no larger than the limits.
//!
//! `MOMENT_FUZZ_DEBUG=1` prints the transcoder's counters at the end of each input.
#![no_main]

use std::time::Duration;

use codecs::h264::nal::avcc_nal_units;
use codecs::h264::sps::parse_sps;
use codecs::h264::{
    fit_size, snapshot_jpeg, AvcConfig, DecoderLimits, H264Error, RenditionSpec, VideoInput,
    VideoOutput, VideoTranscoder,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecoderLimits = DecoderLimits {
    max_width: 256,
    max_height: 256,
};

const SIZES: [(Option<u32>, Option<u32>); 8] = [
    (None, None),
    (Some(64), None),
    (None, Some(48)),
    (Some(64), Some(64)),
    (Some(16), Some(16)),
    (Some(32), None),
    (None, Some(16)),
    (Some(100), Some(30)),
];

const INTERVALS_MS: [u64; 4] = [0, 100, 1000, 2000];

#[derive(Default)]
struct Tally {
    pushes: u64,
    configs_in: u64,
    outputs: u64,
    keyframes: u64,
    configs_out: u64,
}

fn check_error(e: &H264Error) {
    assert!(
        !matches!(e, H264Error::Encode(_) | H264Error::Jpeg(_)),
        "bad input made the encoder fail: {e}"
    );
}

/// `last`: the last output of its call, so the encoder that made it is the current one.
fn check_output(
    t: &VideoTranscoder,
    out: &VideoOutput,
    last: bool,
    tally: &mut Tally,
    times: &[i64],
) {
    if tally.outputs == 0 {
        assert!(out.keyframe && out.config.is_some(), "first output {out:?}");
    }
    tally.outputs += 1;
    tally.keyframes += u64::from(out.keyframe);
    // (A picture flushed without a pending time gets 0.)
    assert!(
        times.contains(&out.pts_ms) || out.pts_ms == 0,
        "output time {} never went in",
        out.pts_ms
    );
    let nals: Vec<&[u8]> = avcc_nal_units(&out.data, 4)
        .map(|n| n.unwrap_or_else(|e| panic!("output framing: {e}")))
        .collect();
    assert!(!nals.is_empty());
    for n in &nals {
        assert!(
            !matches!(n[0] & 0x1f, 7 | 8 | 9),
            "NAL type {} in a frame",
            n[0] & 0x1f
        );
    }
    let (w, h) = t.output_size().expect("an output without an encoder");
    assert!(w % 2 == 0 && h % 2 == 0 && w.min(h) >= 16, "{w}x{h}");
    assert!(w.max(h) <= 3840 && w.min(h) <= 2160, "{w}x{h}");
    let spec = t.spec();
    if let (Some(_), Some(_)) = (spec.width, spec.height) {
        assert_eq!((w, h), fit_size(1, 1, spec.width, spec.height));
    }
    if let Some(record) = &out.config {
        tally.configs_out += 1;
        let rec = AvcConfig::parse(record).unwrap_or_else(|e| panic!("output avcC: {e}"));
        assert_eq!(rec.nal_length_size, 4);
        let sps = parse_sps(&rec.sps[0]).unwrap_or_else(|e| panic!("output SPS: {e}"));
        assert_eq!((sps.chroma_format_idc, sps.bit_depth_luma), (1, 8));
        if last {
            assert_eq!((sps.width, sps.height), (u64::from(w), u64::from(h)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&header, mut rest)) = data.split_first() else {
        return;
    };
    let (width, height) = SIZES[usize::from(header & 7)];
    let spec = RenditionSpec {
        width,
        height,
        bitrate_bps: 100_000,
        keyframe_interval: Duration::from_millis(INTERVALS_MS[usize::from((header >> 3) & 3)]),
        limits: LIMITS,
    };
    let mut t = VideoTranscoder::new(spec).unwrap();
    let mut tally = Tally::default();
    let mut pts = 0i64;
    let mut times = Vec::new();
    let mut config: &[u8] = &[];
    while let [kind, delta, hi, lo, after @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(after.len());
        let (payload, after) = after.split_at(len);
        rest = after;
        let step = i64::from(*delta as i8);
        pts = if kind & 0x80 != 0 {
            pts.saturating_add(step.saturating_mul(1 << 56))
        } else {
            pts.saturating_add(step)
        };
        let result = match kind & 3 {
            0 => {
                tally.configs_in += 1;
                let r = t.set_config(payload);
                if r.is_ok() {
                    config = payload;
                }
                r.map(|()| Vec::new())
            }
            1 => {
                tally.pushes += 1;
                times.push(pts);
                let input = VideoInput {
                    data: payload,
                    pts_ms: pts,
                    keyframe: kind & 4 != 0,
                };
                t.push(input).map(|o| o.into_iter().collect())
            }
            2 => {
                match snapshot_jpeg(config, payload, *delta, LIMITS) {
                    Ok(s) => {
                        assert!(s.width <= 256 && s.height <= 256 && s.width * s.height > 0);
                        assert!(
                            s.jpeg.starts_with(&[0xff, 0xd8]) && s.jpeg.ends_with(&[0xff, 0xd9])
                        );
                    }
                    Err(e) => check_error(&e),
                }
                Ok(Vec::new())
            }
            _ => t.finish(),
        };
        match result {
            Ok(outputs) => {
                for (i, out) in outputs.iter().enumerate() {
                    check_output(&t, out, i + 1 == outputs.len(), &mut tally, &times);
                }
            }
            Err(e) => {
                check_error(&e);
                if !e.is_recoverable() {
                    break;
                }
            }
        }
    }
    let stats = t.stats();
    if std::env::var_os("MOMENT_FUZZ_DEBUG").is_some() {
        eprintln!("{stats:?}");
    }
    assert_eq!(stats.frames_in, tally.pushes);
    assert_eq!(stats.source_configs, tally.configs_in);
    assert_eq!(stats.encoded, tally.outputs);
    assert_eq!(stats.keyframes, tally.keyframes);
    assert_eq!(stats.configs, tally.configs_out);
    assert!(stats.decoded <= stats.frames_in);
});
