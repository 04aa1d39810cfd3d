//! End-to-end: real Speex (ffmpeg's libspeex, from the committed FLV fixture) and G.711
//! (ffmpeg's encoders) through `AudioTranscoder`, the AAC checked by an independent decoder
//! (ffmpeg's native AAC decoder reading ADTS): a 1 kHz tone must come out at 1 kHz ± 2% and
//! with the input's duration ± 2%. Needs `ffmpeg` on PATH (test.sh installs it).

use std::io::Write;
use std::process::{Command, Stdio};

use codecs::{AacFrame, AudioTranscoder, InputCodec, InputFormat, OutputConfig};

fn speex_packets() -> Vec<(u64, Vec<u8>)> {
    codecs::test_input::speex_fixture()
        .into_iter()
        .map(|t| (u64::from(t.timestamp_ms), t.packet))
        .collect()
}

/// 10 s of 1 kHz at 8 kHz encoded by ffmpeg as `format` (alaw / mulaw), in 20 ms packets.
fn g711_packets(format: &str) -> Vec<(u64, Vec<u8>)> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("sine=frequency=1000:sample_rate=8000:duration=10")
        .args(["-f", format, "-"])
        .output()
        .expect("ffmpeg on PATH");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 80000);
    out.stdout
        .chunks(160)
        .enumerate()
        .map(|(i, c)| (i as u64 * 20, c.to_vec()))
        .collect()
}

fn adts(frame: &[u8], rate_index: u8, channels: u8) -> Vec<u8> {
    let len = frame.len() + 7;
    let mut h = vec![
        0xff,
        0xf1,                                           // MPEG-4, layer 0, no CRC
        (1 << 6) | (rate_index << 2) | (channels >> 2), // profile LC (2 - 1)
        ((channels & 3) << 6) | (len >> 11) as u8,
        (len >> 3) as u8,
        ((len & 7) << 5) as u8 | 0x1f,
        0xfc,
    ];
    h.extend_from_slice(frame);
    h
}

/// Decodes ADTS with ffmpeg to mono s16le at the stream's rate.
fn ffmpeg_decode(frames: &[AacFrame], rate: u32, channels: u8) -> Vec<i16> {
    let rate_index = if rate == 48000 { 3 } else { 4 };
    let mut adts_bytes = Vec::new();
    for f in frames {
        adts_bytes.extend(adts(&f.data, rate_index, channels));
    }
    let mut child = Command::new("ffmpeg")
        .args([
            "-v", "error", "-f", "aac", "-i", "-", "-ac", "1", "-f", "s16le", "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg on PATH");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&adts_bytes));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "ffmpeg could not decode our AAC");
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Frequency from zero crossings over the middle 80% of the signal.
fn frequency(pcm: &[i16], rate: u32) -> f64 {
    let mid = &pcm[pcm.len() / 10..pcm.len() * 9 / 10];
    let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (mid.len() as f64 / f64::from(rate))
}

struct Run {
    frames: Vec<AacFrame>,
    stats: codecs::TranscoderStats,
}

fn transcode(input: InputFormat, output: OutputConfig, packets: &[(u64, Vec<u8>)]) -> Run {
    let mut t = AudioTranscoder::new(input, output).unwrap();
    let mut frames = Vec::new();
    for (ts, p) in packets {
        if let Err(e) = t.push(p, *ts) {
            assert!(e.is_recoverable(), "{e}");
        }
        while let Some(f) = t.pull() {
            frames.push(f);
        }
    }
    t.finish().unwrap();
    while let Some(f) = t.pull() {
        frames.push(f);
    }
    Run {
        frames,
        stats: t.stats(),
    }
}

/// Frequency from the median distance between zero crossings: holds across silent gaps.
fn median_frequency(pcm: &[i16], rate: u32) -> f64 {
    let crossings: Vec<usize> = pcm
        .windows(2)
        .enumerate()
        .filter(|(_, w)| (w[0] < 0) != (w[1] < 0))
        .map(|(i, _)| i)
        .collect();
    let mut gaps: Vec<usize> = crossings.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let half_period = gaps[gaps.len() / 2] as f64;
    f64::from(rate) / (2.0 * half_period)
}

fn check_tone(run: &Run, output: OutputConfig, input_secs: f64, what: &str) {
    let pcm = ffmpeg_decode(&run.frames, output.sample_rate, 1);
    let hz = if run.stats.decode_errors == 0 {
        frequency(&pcm, output.sample_rate)
    } else {
        median_frequency(&pcm, output.sample_rate)
    };
    let secs = pcm.len() as f64 / f64::from(output.sample_rate);
    eprintln!(
        "{what}: {} AAC frames, decoded {secs:.3} s of {hz:.1} Hz; {:?}",
        run.frames.len(),
        run.stats
    );
    assert!((hz - 1000.0).abs() <= 20.0, "{what}: {hz} Hz");
    assert!(
        (secs - input_secs).abs() <= input_secs * 0.02,
        "{what}: {secs} s"
    );
    let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 1000, "{what}: peak {peak}");
    // Timestamps: non-decreasing, 1024 samples apart.
    let step = 1_024_000.0 / f64::from(output.sample_rate);
    for w in run.frames.windows(2) {
        let d = w[1].timestamp_ms as f64 - w[0].timestamp_ms as f64;
        assert!(d == 0.0 || (d - step).abs() <= 1.0, "{what}: step {d}");
    }
    let last = run.frames.last().unwrap().timestamp_ms as f64 / 1000.0;
    assert!(
        (last - input_secs).abs() < 0.1,
        "{what}: last frame at {last} s"
    );
}

#[test]
fn flv_speex_tone_survives_at_48k_and_44k1() {
    let packets = speex_packets();
    assert_eq!(packets.len(), 500);
    for output in [
        OutputConfig::default(),
        OutputConfig {
            sample_rate: 44100,
            bitrate: 64_000,
        },
    ] {
        let run = transcode(InputFormat::FLV_SPEEX, output, &packets);
        assert_eq!(run.stats.packets_in, 500);
        assert_eq!(run.stats.decode_errors, 0);
        assert_eq!(run.stats.samples_filled + run.stats.samples_dropped, 0);
        check_tone(&run, output, 10.0, "speex");
    }
}

#[test]
fn g711_tones_survive() {
    for (codec, format) in [(InputCodec::Pcma, "alaw"), (InputCodec::Pcmu, "mulaw")] {
        let packets = g711_packets(format);
        let input = InputFormat {
            codec,
            sample_rate: 8000,
            channels: 1,
        };
        let run = transcode(input, OutputConfig::default(), &packets);
        assert_eq!(run.stats.decode_errors, 0);
        check_tone(&run, OutputConfig::default(), 10.0, format);
    }
}

#[test]
fn malformed_speex_packets_are_counted_and_survived() {
    let mut packets = speex_packets();
    let mut corrupted = 0;
    for (i, (_, p)) in packets.iter_mut().enumerate() {
        match i % 25 {
            3 => p.clear(),                            // empty
            7 => p.truncate(p.len() / 3),              // cut short
            11 => p.iter_mut().for_each(|b| *b = !*b), // inverted bits
            17 => *p = vec![0x60; 40],                 // narrowband mode 12: invalid
            _ => continue,
        }
        corrupted += 1;
    }
    let run = transcode(InputFormat::FLV_SPEEX, OutputConfig::default(), &packets);
    assert_eq!(run.stats.packets_in, 500);
    assert!(
        run.stats.decode_errors >= 40 && run.stats.decode_errors <= corrupted,
        "{} of {corrupted}",
        run.stats.decode_errors
    );
    // Silence in place of the bad packets: the tone's frequency and length hold.
    check_tone(&run, OutputConfig::default(), 10.0, "corrupted speex");
}

#[test]
fn truncated_g711_is_counted_and_survived() {
    let mut packets = g711_packets("alaw");
    // Stereo view of mono bytes: an odd-length packet ends inside a sample.
    for (i, (_, p)) in packets.iter_mut().enumerate() {
        if i % 10 == 0 {
            p.pop();
        }
    }
    packets[5].1.clear();
    let input = InputFormat {
        codec: InputCodec::Pcma,
        sample_rate: 8000,
        channels: 2,
    };
    let output = OutputConfig {
        sample_rate: 48000,
        bitrate: 128_000,
    };
    let run = transcode(input, output, &packets);
    assert_eq!(
        run.stats.decode_errors, 51,
        "50 odd-length packets and one empty"
    );
    assert!(!run.frames.is_empty());
    let pcm = ffmpeg_decode(&run.frames, 48000, 2);
    assert!(pcm.len() > 48000 * 4, "{}", pcm.len());
}
