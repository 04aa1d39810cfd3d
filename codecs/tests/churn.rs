//! Create/feed/destroy loops for every codec wrapper, measuring RSS (/proc/self/status
//! VmRSS): 1000 transcoders of each input kind must not grow RSS by more than 1 MiB.
//! One test in its own binary, so no other test allocates while it measures.

use codecs::test_input::speex_fixture;
use codecs::{AudioTranscoder, InputCodec, InputFormat, OutputConfig};

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn cycle(input: InputFormat, packets: &[Vec<u8>]) -> usize {
    let mut t = AudioTranscoder::new(input, OutputConfig::default()).unwrap();
    let mut frames = 0;
    for (i, p) in packets.iter().enumerate() {
        let _ = t.push(p, i as u64 * 20);
        while t.pull().is_some() {
            frames += 1;
        }
    }
    t.finish().unwrap();
    while t.pull().is_some() {
        frames += 1;
    }
    frames
}

#[test]
fn thousand_transcoders_each_kind_do_not_grow_rss() {
    // 10 packets (200 ms) per transcoder, plus a corrupt one: every path allocates.
    let mut speex: Vec<Vec<u8>> = speex_fixture()
        .into_iter()
        .map(|t| t.packet)
        .take(10)
        .collect();
    speex.push(vec![0x60; 40]);
    let mut pcma = vec![vec![0xd5u8; 160]; 10];
    pcma.push(vec![0xd5; 3]);
    let kinds = [
        (InputFormat::FLV_SPEEX, &speex),
        (
            InputFormat {
                codec: InputCodec::Pcma,
                sample_rate: 8000,
                channels: 2,
            },
            &pcma,
        ),
        (
            InputFormat {
                codec: InputCodec::Pcmu,
                sample_rate: 8000,
                channels: 1,
            },
            &pcma,
        ),
    ];
    for (input, packets) in kinds {
        for _ in 0..30 {
            cycle(input, packets);
        }
        let before = rss_kib();
        let mut frames = 0;
        for _ in 0..1000 {
            frames += cycle(input, packets);
        }
        let growth = rss_kib() - before;
        eprintln!(
            "{:?}: 1000 transcoders, {frames} frames, RSS {growth:+} KiB",
            input.codec
        );
        assert!(frames >= 1000 * 10);
        assert!(growth <= 1024, "{:?}: RSS grew {growth} KiB", input.codec);
    }
    // The measurement can see a leak of this size: 100 live transcoders show up.
    let before = rss_kib();
    let live: Vec<AudioTranscoder> = (0..100)
        .map(|_| AudioTranscoder::new(InputFormat::FLV_SPEEX, OutputConfig::default()).unwrap())
        .collect();
    let held = rss_kib() - before;
    eprintln!("100 live transcoders: RSS {held:+} KiB");
    assert!(held > 1024, "{held} KiB");
    drop(live);
}
