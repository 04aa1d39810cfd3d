//! Speex → AAC and G.711 → AAC speed on one core, replaying real input: the Speex packets of
//! `fixtures/h264-speex16k.flv` (ffmpeg libspeex, 16 kHz wideband, 10 s) and 10 s of A-law.
//! Each iteration transcodes the whole 10 s clip with a fresh transcoder (creation included);
//! criterion's throughput is in input packets, and real-time factor = 10 s / iteration time.
//!
//! `cargo bench -p codecs --bench audio`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use codecs::test_input::speex_fixture;
use codecs::{AudioTranscoder, InputCodec, InputFormat, OutputConfig};

/// 10 s of 1 kHz at 8 kHz, A-law, 20 ms packets (encoded with G.191's rule).
fn alaw_packets() -> Vec<Vec<u8>> {
    let alaw = |x: i16| -> u8 {
        let mut ix: i32 = if x < 0 {
            (!i32::from(x)) >> 4
        } else {
            i32::from(x) >> 4
        };
        if ix > 15 {
            let mut e = 1;
            while ix > 31 {
                ix >>= 1;
                e += 1;
            }
            ix = ix - 16 + (e << 4);
        }
        if x >= 0 {
            ix |= 0x80;
        }
        (ix ^ 0x55) as u8
    };
    let pcm: Vec<u8> = (0..80_000)
        .map(|i| alaw((10000.0 * (i as f32 * std::f32::consts::PI / 4.0).sin()) as i16))
        .collect();
    pcm.chunks(160).map(<[u8]>::to_vec).collect()
}

fn run(input: InputFormat, packets: &[Vec<u8>]) -> usize {
    let mut t = AudioTranscoder::new(input, OutputConfig::default()).unwrap();
    let mut bytes = 0;
    for (i, p) in packets.iter().enumerate() {
        t.push(p, i as u64 * 20).unwrap();
        while let Some(f) = t.pull() {
            bytes += f.data.len();
        }
    }
    t.finish().unwrap();
    while let Some(f) = t.pull() {
        bytes += f.data.len();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let speex: Vec<Vec<u8>> = speex_fixture().into_iter().map(|t| t.packet).collect();
    let alaw = alaw_packets();
    assert_eq!((speex.len(), alaw.len()), (500, 500));
    let pcma = InputFormat {
        codec: InputCodec::Pcma,
        sample_rate: 8000,
        channels: 1,
    };
    let mut g = c.benchmark_group("audio_transcode_10s");
    g.throughput(Throughput::Elements(500));
    g.bench_function("speex16k_to_aac48k", |b| {
        b.iter(|| run(InputFormat::FLV_SPEEX, &speex))
    });
    g.bench_function("pcma8k_to_aac48k", |b| b.iter(|| run(pcma, &alaw)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
