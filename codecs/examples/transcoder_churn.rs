//! Soak: create, feed, finish and drop `AudioTranscoder`s (Speex and G.711 alternately) N
//! times, printing VmRSS before and after. Run by `bench/transcoder-churn.sh`.
//!
//! `cargo run --release -p codecs --example transcoder_churn -- [cycles] [packets per cycle]`

use codecs::test_input::speex_fixture;
use codecs::{AudioTranscoder, InputCodec, InputFormat, OutputConfig};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn cycle(input: InputFormat, packets: &[Vec<u8>], n: usize) -> u64 {
    let mut t = AudioTranscoder::new(input, OutputConfig::default()).expect("transcoder");
    let mut bytes = 0;
    for (i, p) in packets.iter().cycle().take(n).enumerate() {
        let _ = t.push(p, i as u64 * 20);
        while let Some(f) = t.pull() {
            bytes += f.data.len() as u64;
        }
    }
    t.finish().expect("finish");
    while let Some(f) = t.pull() {
        bytes += f.data.len() as u64;
    }
    bytes
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cycles: usize = args.next().map_or(1000, |a| a.parse().expect("cycles"));
    let per_cycle: usize = args.next().map_or(25, |a| a.parse().expect("packets"));
    let speex: Vec<Vec<u8>> = speex_fixture().into_iter().map(|t| t.packet).collect();
    let pcma = vec![vec![0xd5u8; 160]];
    let g711 = InputFormat {
        codec: InputCodec::Pcma,
        sample_rate: 8000,
        channels: 1,
    };
    // Warm-up: let the allocator reach its steady state.
    for _ in 0..50 {
        cycle(InputFormat::FLV_SPEEX, &speex, per_cycle);
        cycle(g711, &pcma, per_cycle);
    }
    let before = rss_kib();
    let start = std::time::Instant::now();
    let mut bytes = 0;
    for _ in 0..cycles {
        bytes += cycle(InputFormat::FLV_SPEEX, &speex, per_cycle);
        bytes += cycle(g711, &pcma, per_cycle);
    }
    let after = rss_kib();
    println!(
        "{cycles} cycles x (Speex + G.711) transcoders, {per_cycle} packets each: \
         VmRSS {before} KiB -> {after} KiB ({:+} KiB), {bytes} AAC bytes, {:.1} s",
        after as i64 - before as i64,
        start.elapsed().as_secs_f64()
    );
}
