//! H.264 rendition and snapshot speed on one core, replaying `fixtures/h264-main-3mbps-aac.mp4`
//! (x264 main, 1280x720, 25 fps, 4 s = 100 frames, B-frames, ~3 Mbit/s).
//!
//! - `h264_720p_to_360p/*`: the whole clip per iteration: `transcode` is decode + scale +
//!   encode through a fresh `VideoTranscoder` (800 kbit/s, IDR every second); `decode`,
//!   `scale` and `encode` are the stages alone. Throughput is in frames: frames per second.
//! - `scale_1280x720_to_640x360/*`: one I420 picture, our scaler against `fast_image_resize`
//!   (convolution, bilinear filter: the same triangle filter with antialiasing support).
//! - `snapshot_720p/*`: `snapshot_jpeg` of the first IDR (fresh decoder, decode, JPEG q80),
//!   and the JPEG encoding alone.
//!
//! `taskset -c 1 cargo bench -p codecs --bench video`

#[path = "../tests/common/mp4_video.rs"]
mod mp4_video;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use codecs::h264::{
    encode_jpeg, snapshot_jpeg, Decoder, DecoderLimits, Encoder, EncoderConfig, RenditionSpec,
    Scaler, VideoInput, VideoTranscoder, I420,
};
use fast_image_resize as fir;

fn decode_all(v: &mp4_video::Video) -> Vec<I420> {
    let mut d = Decoder::new(DecoderLimits::default()).unwrap();
    d.configure(&v.config).unwrap();
    let mut out = Vec::new();
    for s in &v.samples {
        if let Some(p) = d.decode(&s.data).unwrap() {
            out.push(p.clone());
        }
    }
    out.extend(d.flush().unwrap().into_iter().map(|(p, _)| p));
    out
}

/// fast_image_resize on each plane.
struct FirScaler {
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
}

impl FirScaler {
    fn scale(&mut self, src: &I420, dst: &mut I420) {
        let (sw, sh) = (src.width(), src.height());
        let (dw, dh) = (dst.width(), dst.height());
        let (sy, su, sv) = src.planes();
        let (dy, du, dv) = dst.planes_mut();
        for (s, d, (w, h), (ow, oh)) in [
            (sy, dy, (sw, sh), (dw, dh)),
            (su, du, (sw / 2, sh / 2), (dw / 2, dh / 2)),
            (sv, dv, (sw / 2, sh / 2), (dw / 2, dh / 2)),
        ] {
            let from = fir::images::ImageRef::new(w, h, s, fir::PixelType::U8).unwrap();
            let mut to = fir::images::Image::from_slice_u8(ow, oh, d, fir::PixelType::U8).unwrap();
            self.resizer.resize(&from, &mut to, &self.options).unwrap();
        }
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

fn bench(c: &mut Criterion) {
    let v = mp4_video::load("h264-main-3mbps-aac.mp4");
    assert_eq!((v.width, v.height), (1280, 720));
    let frames = decode_all(&v);
    assert_eq!(frames.len(), 100);
    let mut ours = Scaler::new(1280, 720, 640, 360).unwrap();
    let mut scaled: Vec<I420> = Vec::new();
    for f in &frames {
        let mut s = I420::new(640, 360);
        ours.scale(f, &mut s).unwrap();
        scaled.push(s);
    }
    let spec = RenditionSpec {
        width: None,
        height: Some(360),
        bitrate_bps: 800_000,
        keyframe_interval: Duration::from_secs(1),
        limits: DecoderLimits::default(),
    };

    let mut g = c.benchmark_group("h264_720p_to_360p");
    g.throughput(Throughput::Elements(100));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("transcode", |b| {
        b.iter(|| {
            let mut t = VideoTranscoder::new(spec).unwrap();
            t.set_config(&v.config).unwrap();
            let mut n = 0;
            for s in &v.samples {
                let input = VideoInput {
                    data: &s.data,
                    pts_ms: s.pts_ms,
                    keyframe: s.keyframe,
                };
                n += usize::from(t.push(input).unwrap().is_some());
            }
            n += t.finish().unwrap().len();
            assert_eq!(n, 100);
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode_all(&v).len()));
    g.bench_function("scale", |b| {
        let mut dst = I420::new(640, 360);
        b.iter(|| {
            for f in &frames {
                ours.scale(f, &mut dst).unwrap();
            }
        })
    });
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut e = Encoder::new(EncoderConfig {
                width: 640,
                height: 360,
                bitrate_bps: 800_000,
                frame_rate: 25.0,
                keyframe_interval: Duration::from_secs(1),
            })
            .unwrap();
            let mut bytes = 0;
            for (i, f) in scaled.iter().enumerate() {
                let out = e.encode(f, i as i64 * 40, i % 25 == 0).unwrap();
                bytes += out.map_or(0, |o| o.data.len());
            }
            bytes
        })
    });
    g.finish();

    let mut fir_scaler = FirScaler {
        resizer: fir::Resizer::new(),
        options: fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)),
    };
    let mut theirs = I420::new(640, 360);
    fir_scaler.scale(&frames[0], &mut theirs);
    eprintln!(
        "scaler agreement, ours vs fast_image_resize on frame 0: luma {:.1} dB, chroma {:.1} dB",
        psnr(scaled[0].planes().0, theirs.planes().0),
        psnr(scaled[0].planes().1, theirs.planes().1),
    );
    let mut g = c.benchmark_group("scale_1280x720_to_640x360");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours", |b| {
        let mut dst = I420::new(640, 360);
        b.iter(|| ours.scale(&frames[0], &mut dst).unwrap())
    });
    g.bench_function("fast_image_resize", |b| {
        let mut dst = I420::new(640, 360);
        b.iter(|| fir_scaler.scale(&frames[0], &mut dst))
    });
    g.finish();

    let idr = &v.samples[0];
    assert!(idr.keyframe);
    let mut g = c.benchmark_group("snapshot_720p");
    g.sample_size(20);
    g.bench_function("decode_idr_and_jpeg", |b| {
        b.iter(|| {
            snapshot_jpeg(&v.config, &idr.data, 80, DecoderLimits::default())
                .unwrap()
                .jpeg
                .len()
        })
    });
    g.bench_function("jpeg_only", |b| {
        b.iter(|| encode_jpeg(&frames[0], 80, false).unwrap().jpeg.len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
