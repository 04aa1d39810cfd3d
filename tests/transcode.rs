//! A Flash-era publisher's Speex reaches players as AAC that sounds like the input: as long
//! (within 2%) and at the same pitch (a 1 kHz tone comes out at 1 kHz), measured on the PCM a
//! real decoder (ffmpeg) makes of what a real player (rtmpdump) recorded.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_near, fixture, rtmpdump_finish, rtmpdump_start, Proc, Server};

/// The fixture's audio: 10 s of a 1 kHz sine, Speex 16 kHz wideband.
const INPUT_SECONDS: f64 = 10.0;

#[test]
fn speex_becomes_aac_of_the_same_length_and_pitch() {
    let server = Server::start("[rtmp]\nlisten = \"127.0.0.1:0\"\n");
    let url = server.url("speex");
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("speex.flv");
    // The player waits for the publisher, so it records the stream from its first frame.
    let recorder = rtmpdump_start(&url, &dump);
    std::thread::sleep(Duration::from_millis(500));
    let mut publish = Command::new("ffmpeg");
    publish
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(fixture("h264-speex16k.flv"))
        .args(["-c", "copy", "-f", "flv", &url]);
    let mut publisher = Proc::spawn("ffmpeg publisher", publish, Duration::from_secs(60));
    let fin = publisher.wait(Duration::from_secs(30));
    assert!(fin.success(), "publisher failed: {}", fin.stderr);
    let (flv, _) = rtmpdump_finish(recorder, 2.0, &dump);
    assert!(
        flv.len() > 100_000,
        "the player recorded {} bytes",
        flv.len()
    );
    assert!(server.log().contains("transcoding audio to AAC"));

    // Decode what the player got.
    let raw = dir.path().join("audio.raw");
    let mut decode = Command::new("ffmpeg");
    decode
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&dump)
        .args([
            "-vn",
            "-c:a",
            "pcm_s16le",
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-y",
        ])
        .arg(&raw);
    let mut decoder = Proc::spawn("ffmpeg decoder", decode, Duration::from_secs(60));
    let fin = decoder.wait(Duration::from_secs(30));
    assert!(
        fin.success(),
        "decoding the recording failed: {}",
        fin.stderr
    );
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a", "-show_entries"])
        .args(["stream=codec_name", "-of", "csv=p=0"])
        .arg(&dump)
        .output()
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "aac");

    // In sync with the video: the fixture's audio and video both start at 0, so the first AAC
    // frame must be within one AAC frame (1024 samples at 48 kHz, 21.3 ms) of the first
    // video frame.
    let first_pts = |stream: &str| -> f64 {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", stream, "-show_entries"])
            .args([
                "packet=pts_time",
                "-of",
                "csv=p=0",
                "-read_intervals",
                "%+#1",
            ])
            .arg(&dump)
            .output()
            .expect("ffprobe");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .next()
            .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("no {stream} packet: {text}"))
    };
    let (audio0, video0) = (first_pts("a"), first_pts("v"));
    eprintln!("first audio pts {audio0:.3} s, first video pts {video0:.3} s");
    assert!(
        (audio0 - video0).abs() <= 0.0215,
        "audio starts {:.1} ms from the video",
        (audio0 - video0) * 1000.0
    );

    let bytes = std::fs::read(&raw).unwrap();
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let seconds = samples.len() as f64 / 48_000.0;
    assert_near("decoded audio seconds", seconds, INPUT_SECONDS, 0.02);
    // Pitch from the median spacing of rising zero crossings, which a dropped or repeated
    // frame here and there cannot move.
    let rising: Vec<usize> = (1..samples.len())
        .filter(|&i| samples[i - 1] < 0 && samples[i] >= 0)
        .collect();
    let mut periods: Vec<usize> = rising.windows(2).map(|w| w[1] - w[0]).collect();
    periods.sort_unstable();
    let period = periods[periods.len() / 2] as f64;
    assert_near("tone frequency (Hz)", 48_000.0 / period, 1000.0, 0.02);
    eprintln!(
        "decoded {seconds:.3} s of AAC for {INPUT_SECONDS} s of Speex; tone {:.1} Hz (median period), {:.1} Hz (mean)",
        48_000.0 / period,
        rising.len() as f64 / seconds
    );
    // And overall: as many cycles as 1 kHz makes in the decoded time.
    assert_near(
        "mean frequency (Hz)",
        rising.len() as f64 / seconds,
        1000.0,
        0.02,
    );
}
